//! What the tests of `tests/cluster.rs` share: two `rws serve --redis`
//! nodes behind the round-robin proxy ([`Cluster`]), a stateful client that
//! notices a dead node quickly and what it received ([`Echoes`]), a paced
//! stream, and the pieces for reading what a node wrote (WebSocket frames
//! from a proxy capture, a scripted HELLO straight to a node).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::prelude::*;
use bytes::Bytes;
use resilient_ws::{
    protocol::{Frame, NegotiateResponse},
    testing::{EventRecorder, FaultProxy, RecordedEvent},
    IncomingMessage, ResilientWebSocket, ResilientWebSocketBuilder,
};
use tokio::sync::watch;

use crate::common::{self, wait_until, In, RwsServe, ServeSpec, TestPeer, TestRedis};

/// The longest any one phase may take; only reached when something is
/// broken (the suite runs on a loaded machine).
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The nodes' names (`--node-id`).
pub(crate) const NODES: [&str; 2] = ["a", "b"];

// ---------------------------------------------------------------------------
// the cluster

/// Two `rws serve --echo --redis` nodes and the round-robin proxy in front.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<RwsServe>,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) proxy: FaultProxy,
    pub(crate) prefix: String,
}

impl Cluster {
    /// Starts both nodes on free ports, sharing `redis` under a fresh
    /// prefix, with quick heartbeats and shutdowns; `env` is added to each
    /// node's environment (`RUST_LOG`, say).
    pub(crate) async fn start(
        redis: &TestRedis,
        test: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Cluster {
        let prefix = TestRedis::unique_prefix(test);
        let mut nodes = Vec::new();
        for id in NODES {
            let mut spec = ServeSpec::new(&[
                "--echo",
                "--redis",
                redis.url(),
                "--node-id",
                id,
                "--redis-prefix",
                &prefix,
                "--resume-window",
                "30s",
            ]);
            spec.args.extend(extra.iter().map(|a| a.to_string()));
            // Defaults unless `extra` sets them: a silent client is noticed
            // within a second; on SIGTERM a node drains briefly and tells
            // its clients to come back at once.
            for (flag, value) in [
                ("--keep-alive", "100ms"),
                ("--client-timeout", "1s"),
                ("--shutdown-drain", "1s"),
                ("--shutdown-reconnect-after", "0"),
                ("--shutdown-spread", "20ms"),
            ] {
                if !extra.contains(&flag) {
                    spec.args.extend([flag.to_owned(), value.to_owned()]);
                }
            }
            for (k, v) in env {
                spec = spec.env(k, v);
            }
            nodes.push(RwsServe::start_spec_async("127.0.0.1:0", &spec).await);
        }
        let addrs: Vec<SocketAddr> = nodes.iter().map(RwsServe::socket_addr).collect();
        let proxy = FaultProxy::start_round_robin(addrs.clone()).await.unwrap();
        Cluster {
            nodes,
            addrs,
            proxy,
            prefix,
        }
    }

    /// Which node holds the client's socket: the upstream of the newest
    /// open connection that carried bytes both ways (an older one may be a
    /// pooled negotiate connection or a socket the client gave up on).
    /// Waits for one, bounded.
    pub(crate) async fn socket_node(&self) -> usize {
        let mut found = None;
        let seen = wait_until(
            || {
                found = self
                    .proxy
                    .connections()
                    .iter()
                    .rev()
                    .find(|c| c.from_upstream > 0 && c.to_upstream > 0)
                    .and_then(|c| self.addrs.iter().position(|a| *a == c.upstream));
                found.is_some()
            },
            WAIT,
        )
        .await;
        assert!(seen, "no client socket through the proxy");
        found.unwrap()
    }

    /// The session's next server seq in Redis: one more than the messages
    /// ever appended to its stream.
    pub(crate) fn next_seq(&self, redis: &TestRedis, sid: &str) -> u64 {
        redis::cmd("HGET")
            .arg(format!("{}:{{{sid}}}:meta", self.prefix))
            .arg("next_seq")
            .query(&mut redis.connection())
            .expect("the session's meta")
    }

    /// The one session's id, from its keys in Redis.
    pub(crate) fn session_id(&self, redis: &TestRedis) -> String {
        let metas: Vec<String> = redis
            .keys(&self.prefix)
            .into_iter()
            .filter(|k| k.ends_with(":meta"))
            .collect();
        assert_eq!(metas.len(), 1, "one session: {metas:?}");
        let k = &metas[0];
        let open = k.find('{').expect("a {sid} tag");
        let close = k.find('}').expect("a {sid} tag");
        k[open + 1..close].to_owned()
    }
}

// ---------------------------------------------------------------------------
// the client

/// What the client received, in order, and how many so far (to wait on).
#[derive(Clone)]
pub(crate) struct Echoes {
    texts: Arc<Mutex<Vec<String>>>,
    count: Arc<watch::Sender<usize>>,
}

impl Echoes {
    pub(crate) fn new() -> Echoes {
        Echoes {
            texts: Arc::default(),
            count: Arc::new(watch::channel(0).0),
        }
    }

    pub(crate) fn texts(&self) -> Vec<String> {
        self.texts.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits (up to `limit`) until at least `n` arrived.
    pub(crate) async fn wait(&self, n: usize, limit: Duration) -> bool {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

pub(crate) struct EchoSink(Echoes);

impl Actor for EchoSink {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for EchoSink {
    type Result = ();

    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        let text = msg.payload.as_text().unwrap_or("<binary>").to_owned();
        self.0.texts.lock().unwrap().push(text);
        self.0.count.send_modify(|c| *c += 1);
    }
}

/// A stateful client that notices a dead or paused node quickly: a
/// heartbeat every 100 ms, given up after 400 ms of silence; reconnects at
/// once; room for the whole stream in its outbox.
pub(crate) fn client(url: String) -> ResilientWebSocketBuilder {
    common::stateful(url)
        .heartbeat(Duration::from_millis(100), Some(Duration::from_millis(400)))
        .connection_timeout(Duration::from_secs(2))
        .buffering(true, 50_000)
}

/// Connects a recorded client through the cluster's proxy.
pub(crate) async fn connect(cluster: &Cluster) -> (ResilientWebSocket, EventRecorder, Echoes) {
    let rec = EventRecorder::start();
    let echoes = Echoes::new();
    let sink = EchoSink(echoes.clone()).start();
    let ws = tokio::time::timeout(
        WAIT,
        rec.attach(client(cluster.proxy.ws_url()))
            .on_message(sink.recipient())
            .connect(),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    (ws, rec, echoes)
}

/// Sends `m{from}`..`m{to}` paced at 100 messages per 10 ms (so the stream
/// spans the faults), on its own task; gives the client back at the end.
pub(crate) fn stream(
    ws: ResilientWebSocket,
    range: std::ops::Range<usize>,
) -> actix_rt::task::JoinHandle<ResilientWebSocket> {
    actix_rt::spawn(async move {
        for i in range {
            // Stateful mode never drops: a full window or an outage makes
            // this wait.
            ws.send(format!("m{i}")).await.expect("send");
            if i % 100 == 99 {
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
        }
        ws
    })
}

pub(crate) fn sessions_lost(rec: &EventRecorder) -> usize {
    rec.events()
        .iter()
        .filter(|e| matches!(e, RecordedEvent::SessionLost(_)))
        .count()
}

/// One WebSocket frame a server sent (unmasked): its opcode and payload.
pub(crate) fn ws_frames(mut bytes: &[u8]) -> Result<Vec<(u8, Bytes)>, String> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 2 {
            return Err(format!("a truncated frame header: {bytes:?}"));
        }
        let opcode = bytes[0] & 0x0f;
        if bytes[1] & 0x80 != 0 {
            return Err("a masked frame from a server".into());
        }
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return Err("a truncated length".into()),
            n => (n as usize, 2),
        };
        if bytes.len() < header + len {
            return Err(format!("a truncated frame (opcode {opcode}, {len} bytes)"));
        }
        frames.push((opcode, Bytes::copy_from_slice(&bytes[header..header + len])));
        bytes = &bytes[header + len..];
    }
    Ok(frames)
}

/// Opens a protocol socket straight to a node and sends HELLO; expects
/// WELCOME.
pub(crate) async fn hello_at(
    addr: SocketAddr,
    neg: &NegotiateResponse,
    last_received: u64,
) -> (TestPeer, bool, u64) {
    let mut peer = TestPeer::open_at(addr, true, &[]).await.expect("upgrade");
    peer.send_frame(Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: neg.reconnect_token.clone(),
        last_received,
        first_seq: 1,
    })
    .await;
    match peer.recv(WAIT).await {
        In::Frame(Frame::Welcome {
            resumed,
            last_received,
        }) => (peer, resumed, last_received),
        other => panic!("expected WELCOME, got {other:?}"),
    }
}
