//! `rws demo --redis URL`: the embedded demo's stream, served by a
//! cluster. Two `rws serve --echo --redis URL` nodes (child processes of
//! this binary) share the session through Redis; a round-robin proxy
//! without affinity sits in front, so the client's negotiate, socket and
//! reconnects land on either node. The node holding the client's socket is
//! killed with SIGKILL halfway through and started again: the client
//! resumes on the other node with nothing lost or doubled.
//!
//! The server's own numbered messages (`srv i`) come from a third node,
//! this process: a [`ReliableServer`] on the same Redis that holds no
//! socket and sends with `send_to`, which appends to the session's stream
//! for whichever node holds the socket now or next. What the server
//! application received is not visible here (it is another process): the
//! echoes show it, since the nodes echo every message once.

use std::{
    error::Error,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use resilient_ws::{
    server::{RedisSessionStore, ReliableServer, ServerOptions, SessionStore},
    testing::FaultProxy,
    ReconnectMode, ResilientWebSocket,
};

use super::{
    lock, per_tick, wait_arrived, ClientApp, Counts, DemoArgs, Report, Row, Setup, Shared, Tracker,
    POLL, TICK,
};

mod node;

use node::{Node, NodeSpec};

/// The nodes' ids.
const NODES: [&str; 2] = ["a", "b"];

/// How long the demo looks for the session's keys after connecting.
const FIND_SESSION: Duration = Duration::from_secs(10);

/// How long the demo waits at the end for the closed session's keys to go.
const SWEEP_WAIT: Duration = Duration::from_secs(3);

type BoxError = Box<dyn Error>;

pub(super) async fn stream(args: &DemoArgs, url: &str) -> Result<Report, BoxError> {
    let n = args.messages;
    let srv_n = args.server_messages.unwrap_or(n);
    let counts: Shared = Arc::new(std::sync::Mutex::new(Counts {
        at_server: Tracker::new(0),
        echoes: Tracker::new(n),
        from_server: Tracker::new(srv_n),
        stray: 0,
        server_sent: 0,
        server_done: srv_n == 0,
        sessions_lost: 0,
    }));

    // A prefix of this run's own: the demo may share a Redis with anything.
    let prefix = format!("rws-demo-{}", std::process::id());
    let exe = std::env::current_exe()?;
    let mut nodes = Vec::new();
    for name in NODES {
        let spec = NodeSpec {
            exe: exe.clone(),
            name: name.to_owned(),
            args: [
                "--echo",
                "--redis",
                url,
                "--redis-prefix",
                &prefix,
                // A silent client is let go within a second or so.
                "--keep-alive",
                "250ms",
                "--client-timeout",
                "1s",
            ]
            .map(String::from)
            .to_vec(),
        };
        nodes.push(blocking(move || Node::start(spec, "127.0.0.1:0")).await?);
    }
    let addrs = nodes
        .iter()
        .map(|node| node.addr().parse())
        .collect::<Result<Vec<_>, _>>()?;
    let proxy = FaultProxy::start_round_robin(addrs).await?;
    say!(
        "nodes {} on {} and {} on {} (Redis {url}, prefix {prefix}); round-robin proxy on {}",
        nodes[0].name(),
        nodes[0].addr(),
        nodes[1].name(),
        nodes[1].addr(),
        proxy.ws_url()
    );

    // The third node: sends the server's stream, holds no socket.
    let store = RedisSessionStore::connect(url, format!("demo-{}", std::process::id()))
        .await?
        .with_prefix(prefix.clone());
    let mut options = ServerOptions::default();
    options.store = SessionStore::Redis(store);
    let sender = ReliableServer::start(options);

    let client = ClientApp(counts.clone()).start();
    let ws = ResilientWebSocket::builder(proxy.ws_url())
        .reconnect_mode(ReconnectMode::Stateful)
        .reconnect_delays(Duration::from_millis(10), Duration::from_millis(100), 0)
        .min_uptime(Duration::ZERO)
        // A node that dies without closing its sockets is noticed in 1 s.
        .heartbeat(Duration::from_millis(250), Some(Duration::from_secs(1)))
        .buffering(true, 10_000)
        .on_message(client.clone().recipient())
        .on_session_lost(client.recipient())
        .connect()
        .await?;
    let sid = find_session(url, &prefix).await?;
    say!("client connected through the proxy (session {sid}); streaming {n} messages each way");

    let start = Instant::now();
    if srv_n > 0 {
        actix_rt::spawn(send_from_third_node(
            sender.clone(),
            sid.clone(),
            srv_n,
            counts.clone(),
        ));
    }
    let sent = Arc::new(AtomicU64::new(0));
    let killer = actix_rt::spawn(kill_halfway(nodes, proxy.clone(), n, sent.clone(), start));

    let chunk = per_tick(n);
    for i in 0..n {
        ws.send(format!("msg {i}")).await?;
        sent.fetch_add(1, Ordering::Relaxed);
        if (i + 1) % chunk == 0 {
            actix_rt::time::sleep(TICK).await;
        }
    }
    let arrived = |c: &Counts| {
        c.echoes.distinct >= n && c.server_done && c.from_server.distinct >= c.server_sent
    };
    let timed_out = wait_arrived(start, &counts, arrived).await;
    let elapsed = start.elapsed();
    let (nodes, killed) = killer.await?;
    let reconnects = ws.stats().reconnects;
    if actix_rt::time::timeout(Duration::from_secs(5), ws.disconnect())
        .await
        .is_err()
    {
        say!("the client did not close within 5 s");
    }
    // The client's close (1000) ends the session on the node that holds
    // it, which deletes its keys: wait for that before stopping the nodes
    // (shown, so a leak would be seen).
    match keys_left(url, &prefix).await {
        Ok(0) => say!("no Redis keys left under prefix {prefix}"),
        Ok(n) => say!("{n} Redis keys left under prefix {prefix}"),
        Err(e) => say!("cannot count the Redis keys left: {e}"),
    }
    proxy.stop();
    drop(nodes);

    let c = lock(&counts);
    Ok(Report {
        setup: Setup::Cluster { killed },
        to_server: None,
        echoes: Row::of(n, &c.echoes),
        from_server: (srv_n > 0).then(|| Row::of(c.server_sent, &c.from_server)),
        stray: c.stray,
        reconnects,
        sessions_lost: c.sessions_lost,
        elapsed,
        timed_out,
    })
}

/// Runs a blocking step (a child process starting or dying) off the
/// arbiter, so the client and the proxy go on meanwhile.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, BoxError> {
    Ok(actix_rt::task::spawn_blocking(f).await??)
}

/// The id of the one session under `prefix` (its `P:{sid}:meta` key,
/// docs/SCALING.md): the client does not show its id, and the third node
/// needs it for `send_to`.
async fn find_session(url: &str, prefix: &str) -> Result<String, BoxError> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let deadline = Instant::now() + FIND_SESSION;
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:{{*}}:meta"))
            .query_async(&mut conn)
            .await?;
        let sid = keys.iter().find_map(|k| {
            let open = k.find('{')?;
            let close = k[open..].find('}')? + open;
            Some(k[open + 1..close].to_owned())
        });
        match sid {
            Some(sid) if keys.len() == 1 => return Ok(sid),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "expected one session under prefix {prefix} in Redis, found {keys:?}"
                )
                .into())
            }
            _ => actix_rt::time::sleep(POLL).await,
        }
    }
}

/// How many keys are under `prefix`: polls for up to [`SWEEP_WAIT`] until
/// there are none.
async fn keys_left(url: &str, prefix: &str) -> Result<usize, BoxError> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let deadline = Instant::now() + SWEEP_WAIT;
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await?;
        if keys.is_empty() || Instant::now() > deadline {
            return Ok(keys.len());
        }
        actix_rt::time::sleep(POLL).await;
    }
}

/// The server's stream, `srv 0`, `srv 1`, ..., from the node that holds no
/// socket: each `send_to` is recorded in Redis, then delivered by the node
/// holding the socket (or the next one, after the kill).
async fn send_from_third_node(server: ReliableServer, sid: String, n: u64, counts: Shared) {
    let chunk = per_tick(n);
    for i in 0..n {
        if let Err(e) = server.send_to(&sid, format!("srv {i}")).await {
            say!("server: cannot send srv {i}: {e}");
            break;
        }
        lock(&counts).server_sent += 1;
        if (i + 1) % chunk == 0 {
            actix_rt::time::sleep(TICK).await;
        }
    }
    lock(&counts).server_done = true;
}

/// Once half the messages are sent, kills the node holding the client's
/// socket (SIGKILL) and starts it again; gives the nodes back with the
/// names of those killed.
async fn kill_halfway(
    mut nodes: Vec<Node>,
    proxy: FaultProxy,
    n: u64,
    sent: Arc<AtomicU64>,
    start: Instant,
) -> (Vec<Node>, Vec<String>) {
    let mut killed = Vec::new();
    while sent.load(Ordering::Relaxed) < n / 2 {
        actix_rt::time::sleep(POLL).await;
    }
    // The client's socket: the newest open connection that carried bytes
    // both ways (an older one may be a pooled negotiate connection).
    let owner = proxy
        .connections()
        .iter()
        .rev()
        .find(|c| c.from_upstream > 0 && c.to_upstream > 0)
        .and_then(|c| {
            nodes
                .iter()
                .position(|node| node.addr() == c.upstream.to_string())
        });
    let Some(i) = owner else {
        say!("no client socket through the proxy to kill the node of");
        return (nodes, killed);
    };
    let mut node = nodes.remove(i);
    let name = node.name().to_owned();
    say!(
        "killing node {name} (SIGKILL), which holds the client's socket, at {:.2}s (client sent {})",
        start.elapsed().as_secs_f64(),
        sent.load(Ordering::Relaxed)
    );
    let node = match blocking(move || node.kill().map(|()| node)).await {
        Ok(mut node) => {
            killed.push(name.clone());
            match blocking(move || node.restart().map(|()| node)).await {
                Ok(node) => {
                    say!(
                        "node {name} restarted on {} at {:.2}s",
                        node.addr(),
                        start.elapsed().as_secs_f64()
                    );
                    Some(node)
                }
                Err(e) => {
                    say!("node {name} did not restart: {e}");
                    None
                }
            }
        }
        Err(e) => {
            say!("cannot kill node {name}: {e}");
            None
        }
    };
    if let Some(node) = node {
        nodes.insert(i, node);
    }
    (nodes, killed)
}
