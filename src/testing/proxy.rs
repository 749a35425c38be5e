//! A fault-injecting TCP proxy on 127.0.0.1:0, between a client and a
//! server (or several: round robin), driven from the test: cut every
//! connection, blackhole the link, add latency, refuse new connections, move
//! the upstream, see which upstream each connection goes to and what it
//! sent.
//!
//! It is written here on plain tokio rather than taken from a toxiproxy
//! clone such as the `noxious` crate because it has to run inside the
//! test's own runtime (the current-thread actix/tokio runtime of
//! `#[actix_rt::test]`, or any tokio runtime: every task is `Send` and
//! started with `tokio::spawn`), be driven by plain method calls rather than
//! a separate control API, and offer what those tools do not: a "blackhole"
//! (a half-open, silently dead link), connection counts, and the bytes each
//! upstream sent on each connection (so a test of a server cluster can tell
//! which node holds a client's socket, and what a node wrote after a
//! fault). It is kept small: one accept loop, one task per connection. How
//! each fault behaves is documented on [`FaultProxy`].

mod table;

use std::{
    fmt, io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::{mpsc, watch},
    time::Instant,
};

pub use table::ProxiedConnection;
use table::{Counters, OpenGuard, Table, Tally};

/// The most bytes read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction (waiting out the latency) before the
/// proxy stops reading.
const IN_FLIGHT: usize = 64;

/// What the test asked for; every task watches it.
#[derive(Debug, Clone)]
struct Control {
    /// New connections go to these in turn (never empty).
    upstreams: Vec<SocketAddr>,
    /// Upstreams whose bytes are kept (see `FaultProxy::capture_from`).
    capture: Vec<SocketAddr>,
    latency: Duration,
    blackhole: bool,
    refuse: bool,
    /// Bumped by `cut_all`: a connection ends when it differs from the one
    /// it started under.
    generation: u64,
    stopped: bool,
}

/// Owned by the handles only: when the last one goes, the control channel
/// closes and every task ends.
#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
}

/// A TCP proxy on 127.0.0.1:0 in front of an upstream address, with faults
/// a test switches on and off.
///
/// Cheap to clone; every clone controls the same proxy. Dropping the last
/// clone stops it. Its tasks are `Send` and started with `tokio::spawn`, so
/// it runs in `#[actix_rt::test]` as in any tokio runtime.
///
/// # How each fault behaves
/// - [`cut_all`](Self::cut_all): both sockets of every current
///   connection are dropped at once. Each peer sees its TCP stream end
///   (FIN, or RST if the proxy had unread bytes from it), with no WebSocket
///   Close frame. New connections are still accepted.
/// - [`blackhole`](Self::blackhole): every connection, current or new,
///   stays open but nothing moves in either direction. The proxy stops
///   *reading*, so what a peer sends piles up in the kernel buffers (its
///   send buffer, the proxy's receive buffer) as it would behind a dead
///   link; at most one chunk per direction that was already being read is
///   held in the proxy. Nothing is dropped: turning it off delivers
///   everything that was held, in order, on connections still open.
/// - [`set_latency`](Self::set_latency): each chunk is forwarded that
///   long after it was read (in each direction, so a round trip takes twice
///   that), pipelined and in order.
/// - [`refuse`](Self::refuse): new connections are accepted and
///   closed at once, so a client fails fast (its upgrade request meets EOF
///   or a reset) as with a server that is down. Not accepting at all would
///   instead leave the client waiting on the listen backlog until its own
///   timeout, which looks like a hung server, not a dead one.
/// - Dropping the last handle, or [`stop`](Self::stop), closes the
///   listener and every connection.
///
/// # Several upstreams
/// [`start_round_robin`](Self::start_round_robin) sends each new TCP
/// connection to the next upstream in turn, with no affinity (as a load
/// balancer without sticky sessions): a test of a server cluster sees a
/// client's negotiate, socket and reconnects land on different nodes.
/// [`connections`](Self::connections) tells which upstream each open
/// connection goes to (which node holds a client's socket) and
/// [`bytes_from`](Self::bytes_from) / [`capture_from`](Self::capture_from)
/// what a node sent (say, after it was paused and another node took its
/// session).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use resilient_ws::{testing::{FaultProxy, TestServer}, ReconnectMode, ResilientWebSocket};
///
/// #[actix::main]
/// async fn main() {
///     let server = TestServer::echo().await.unwrap();
///     let proxy = FaultProxy::start(server.addr()).await.unwrap();
///     let ws = ResilientWebSocket::builder(proxy.ws_url())
///         .reconnect_mode(ReconnectMode::None)
///         .connect()
///         .await
///         .unwrap();
///     assert_eq!(proxy.connections_open(), 1);
///     proxy.cut_all();
///     assert!(proxy.wait_open(0, Duration::from_secs(5)).await);
///     drop(ws);
/// }
/// ```
#[derive(Clone)]
pub struct FaultProxy {
    inner: Arc<Inner>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.inner.control.borrow();
        f.debug_struct("FaultProxy")
            .field("addr", &self.inner.addr)
            .field("upstreams", &c.upstreams)
            .field("latency", &c.latency)
            .field("blackhole", &c.blackhole)
            .field("refuse", &c.refuse)
            .field("stopped", &c.stopped)
            .field("connections_open", &*self.inner.counters.open.borrow())
            .finish()
    }
}

impl FaultProxy {
    /// Binds 127.0.0.1:0 and starts forwarding to `upstream` (on the current
    /// tokio runtime, with `tokio::spawn`).
    ///
    /// # Errors
    /// If binding fails.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        Self::start_round_robin(vec![upstream]).await
    }

    /// Binds 127.0.0.1:0 and forwards each new TCP connection to the next
    /// of `upstreams` in turn, with no affinity: what a load balancer
    /// without sticky sessions does, so a client's negotiate and its socket
    /// (or its next reconnect) may reach different servers. An upstream that
    /// is down costs the connection sent to it (the proxy closes it, the
    /// client retries and gets the next one).
    ///
    /// # Errors
    /// If `upstreams` is empty, or binding fails.
    pub async fn start_round_robin(upstreams: Vec<SocketAddr>) -> io::Result<FaultProxy> {
        check_upstreams(&upstreams)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (control, rx) = watch::channel(Control {
            upstreams,
            capture: Vec::new(),
            latency: Duration::ZERO,
            blackhole: false,
            refuse: false,
            generation: 0,
            stopped: false,
        });
        let counters = Arc::new(Counters {
            total: AtomicUsize::new(0),
            open: watch::channel(0).0,
            next_id: AtomicU64::new(0),
            table: Mutex::new(Table::default()),
        });
        tokio::spawn(accept_loop(listener, counters.clone(), rx));
        Ok(FaultProxy {
            inner: Arc::new(Inner {
                addr,
                control,
                counters,
            }),
        })
    }

    /// The proxy's address (what clients connect to).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.inner.addr)
    }

    /// The address new connections are forwarded to (with several, the
    /// first of them: see [`upstreams`](Self::upstreams)).
    pub fn upstream(&self) -> SocketAddr {
        self.inner.control.borrow().upstreams[0]
    }

    /// The addresses new connections are forwarded to, in turn.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.inner.control.borrow().upstreams.clone()
    }

    /// Forwards new connections to `upstream` (a server restarted on another
    /// port, say); current connections keep their old upstream.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.control(|c| c.upstreams = vec![upstream]);
    }

    /// Forwards new connections to each of `upstreams` in turn (taking a
    /// node out of the rotation as a load balancer's health check would,
    /// say); current connections keep their old upstream.
    ///
    /// # Errors
    /// If `upstreams` is empty (nothing changes then; to turn new
    /// connections away, use [`refuse`](Self::refuse)).
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) -> io::Result<()> {
        check_upstreams(&upstreams)?;
        self.control(|c| c.upstreams = upstreams);
        Ok(())
    }

    /// Closes every current connection at once, on both sides, without a
    /// Close frame. New connections are accepted as before.
    pub fn cut_all(&self) {
        self.control(|c| c.generation += 1);
    }

    /// While on, no byte is forwarded in either direction and the sockets
    /// stay open; the proxy stops reading, so data waits in the kernel
    /// buffers. Turning it off delivers what was held, in order.
    pub fn blackhole(&self, on: bool) {
        self.control(|c| c.blackhole = on);
    }

    /// Delays each forwarded chunk by `latency`, in both directions
    /// (`Duration::ZERO` turns it off). Applies to chunks read from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.control(|c| c.latency = latency);
    }

    /// While on, new connections are accepted and closed at once, like a
    /// server that is down; current connections are left alone.
    pub fn refuse(&self, on: bool) {
        self.control(|c| c.refuse = on);
    }

    /// Stops accepting (the port then refuses connections) and closes every
    /// connection. Dropping the last handle does the same.
    pub fn stop(&self) {
        self.control(|c| c.stopped = true);
    }

    /// Connections accepted since the start, refused ones included.
    pub fn connections_total(&self) -> usize {
        self.inner.counters.total.load(Ordering::SeqCst)
    }

    /// Connections open now (connecting upstream or forwarding).
    pub fn connections_open(&self) -> usize {
        *self.inner.counters.open.borrow()
    }

    /// The open connections (forwarding, or connecting upstream), oldest
    /// first, with their upstream and the bytes that passed so far.
    pub fn connections(&self) -> Vec<ProxiedConnection> {
        self.inner.counters.table().open.values().copied().collect()
    }

    /// How many open connections go to `upstream`.
    pub fn connections_to(&self, upstream: SocketAddr) -> usize {
        let table = self.inner.counters.table();
        table
            .open
            .values()
            .filter(|c| c.upstream == upstream)
            .count()
    }

    /// Bytes `upstream` sent to its clients through the proxy since the
    /// start, over every connection, closed ones included.
    pub fn bytes_from(&self, upstream: SocketAddr) -> u64 {
        let table = self.inner.counters.table();
        table.from_upstream.get(&upstream).copied().unwrap_or(0)
    }

    /// While on, every byte `upstream` sends from now on (on current and new
    /// connections) is also kept, per connection, for
    /// [`captured_from`](Self::captured_from): what a test reads to see
    /// what a server wrote after a fault (say, no data frame from a node
    /// that lost its session to another). Turning it off keeps what was
    /// captured.
    pub fn capture_from(&self, upstream: SocketAddr, on: bool) {
        self.control(|c| {
            c.capture.retain(|a| *a != upstream);
            if on {
                c.capture.push(upstream);
            }
        });
    }

    /// What `upstream` sent while captured: one buffer per connection that
    /// carried anything, in connection order (each the bytes in the order
    /// they came).
    pub fn captured_from(&self, upstream: SocketAddr) -> Vec<Bytes> {
        let table = self.inner.counters.table();
        table
            .captured
            .values()
            .filter(|(a, _)| *a == upstream)
            .map(|(_, b)| Bytes::copy_from_slice(b))
            .collect()
    }

    /// Waits until exactly `n` connections are open, up to `timeout`;
    /// `false` on timeout.
    pub async fn wait_open(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.inner.counters.open.subscribe();
        let wait = async {
            // The sender lives in `self`, so the channel cannot close here.
            rx.wait_for(|open| *open == n).await.is_ok()
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    fn control(&self, f: impl FnOnce(&mut Control)) {
        self.inner.control.send_modify(f);
    }
}

fn check_upstreams(upstreams: &[SocketAddr]) -> io::Result<()> {
    if upstreams.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a fault proxy needs at least one upstream",
        ));
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    counters: Arc<Counters>,
    mut control: watch::Receiver<Control>,
) {
    // Per new connection, not per client: a load balancer without affinity.
    let mut turn = 0usize;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            // Stopped, or every handle dropped (the channel closed).
            _ = control.wait_for(|c| c.stopped) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: do not spin.
                log::debug!("fault proxy: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        counters.total.fetch_add(1, Ordering::SeqCst);
        let (refuse, upstream, generation) = {
            let c = control.borrow();
            (
                c.refuse,
                c.upstreams[turn % c.upstreams.len()],
                c.generation,
            )
        };
        if refuse {
            drop(stream);
            continue;
        }
        turn = turn.wrapping_add(1);
        let open = OpenGuard::new(&counters, upstream);
        tokio::spawn(serve(stream, upstream, generation, control.clone(), open));
    }
}

/// One connection, until either side ends it, it is cut, or the proxy stops.
async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    generation: u64,
    control: watch::Receiver<Control>,
    open: OpenGuard,
) {
    let mut cancel = control.clone();
    let cancelled = async move {
        // Ends with `Err` as well when every handle is dropped.
        let _ = cancel
            .wait_for(|c| c.stopped || c.generation != generation)
            .await;
    };
    let tally = |from_upstream| Tally {
        counters: open.counters.clone(),
        id: open.id,
        upstream,
        from_upstream,
    };
    let (to_upstream, from_upstream) = (tally(false), tally(true));
    let forward = async move {
        let server = TcpStream::connect(upstream).await?;
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::try_join!(
            pump(client_read, server_write, control.clone(), to_upstream),
            pump(server_read, client_write, control, from_upstream),
        )
    };
    tokio::select! {
        r = forward => {
            if let Err(e) = r {
                log::debug!("fault proxy: connection ended: {e}");
            }
        }
        () = cancelled => {}
    }
    // Both sockets drop here, whichever way it ended.
    drop(open);
}

/// Copies one direction, delaying each chunk by the latency and holding
/// everything while blackholed. Ends with `Ok` after passing on the EOF
/// (a half-close), or with the first I/O error.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    control: watch::Receiver<Control>,
    tally: Tally,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(IN_FLIGHT);
    let mut read_control = control.clone();
    let read = async move {
        let mut buf = BytesMut::new();
        loop {
            passable(&mut read_control).await?;
            buf.reserve(CHUNK);
            if from.read_buf(&mut buf).await? == 0 {
                return Ok(()); // Dropping `tx` tells the writer.
            }
            let chunk = buf.split().freeze();
            let (due, capture) = {
                let c = read_control.borrow();
                let capture = tally.from_upstream && c.capture.contains(&tally.upstream);
                (Instant::now() + c.latency, capture)
            };
            tally.count(&chunk, capture);
            if tx.send((due, chunk)).await.is_err() {
                return Ok(()); // The writer failed; it reports why.
            }
        }
    };
    let mut write_control = control;
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            passable(&mut write_control).await?;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// Waits while the link is blackholed.
async fn passable(control: &mut watch::Receiver<Control>) -> io::Result<()> {
    match control.wait_for(|c| !c.blackhole).await {
        Ok(_) => Ok(()),
        Err(_) => Err(io::Error::other("fault proxy stopped")),
    }
}
