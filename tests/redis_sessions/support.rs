//! The scaffolding of tests/redis_sessions.rs: in-process nodes on one
//! Redis, a load balancer with no affinity, a Redis that keeps its data
//! across a kill.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use resilient_ws::{
    server::{RedisSessionStore, ReliableServer, ServerOptions, SessionStore},
    testing::{EventRecorder, TestServer},
};

use super::common::{server_options, Inbox, ServerEvent, TestRedis};

/// How long a step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// One node of a cluster: its HTTP server, its handle, what its
/// application saw.
pub struct Node {
    pub http: TestServer,
    pub server: ReliableServer,
    pub inbox: Inbox,
}

impl Node {
    pub async fn start(redis: &TestRedis, prefix: &str, id: &str, options: ServerOptions) -> Node {
        let store = RedisSessionStore::connect(redis.url(), id)
            .await
            .expect("connect to redis")
            .with_prefix(prefix);
        let mut options = options;
        options.store = SessionStore::Redis(store);
        let server = ReliableServer::echo(options);
        let inbox = Inbox::attach(&server);
        let http = TestServer::serve_reliable(SocketAddr::from(([127, 0, 0, 1], 0)), &server)
            .expect("bind");
        Node {
            http,
            server,
            inbox,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }
}

/// The session `node` opened (waits for its SessionOpened).
pub async fn opened_on(node: &Node) -> String {
    let opened = node
        .inbox
        .wait(WAIT, |evs| {
            evs.iter().any(|e| matches!(e, ServerEvent::Opened(_)))
        })
        .await;
    assert!(opened, "a session opened");
    node.inbox.opened()[0].clone()
}

/// Short windows, so that tests of expiry are quick.
pub fn quick(window_ms: u64) -> ServerOptions {
    server_options(|o| {
        o.resume_window = Duration::from_millis(window_ms);
        o.ack_interval = Duration::from_millis(10);
    })
}

/// Two nodes on one Redis under a fresh prefix.
pub async fn cluster(
    redis: &TestRedis,
    name: &str,
    options: ServerOptions,
) -> (Node, Node, String) {
    let prefix = TestRedis::unique_prefix(name);
    let a = Node::start(redis, &prefix, "node-a", options.clone()).await;
    let b = Node::start(redis, &prefix, "node-b", options).await;
    (a, b, prefix)
}

/// A TCP proxy that sends its k-th connection to `upstreams[k % n]`: a
/// load balancer with no affinity at all. Records where each went, closed
/// connections included (the kit's `FaultProxy::start_round_robin` shows
/// only the open ones, and the test of negotiate-at-A, socket-at-B must
/// see the negotiate's connection after it closed).
#[derive(Clone)]
pub struct RoundRobin {
    addr: SocketAddr,
    pub routed: Arc<Mutex<Vec<SocketAddr>>>,
}

impl RoundRobin {
    pub async fn start(upstreams: Vec<SocketAddr>) -> RoundRobin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routed = Arc::new(Mutex::new(Vec::new()));
        let log = routed.clone();
        actix_rt::spawn(async move {
            let mut k = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let up = upstreams[k % upstreams.len()];
                k += 1;
                log.lock().unwrap().push(up);
                actix_rt::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(up).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        RoundRobin { addr, routed }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

pub fn texts(rec: &EventRecorder) -> Vec<String> {
    rec.messages()
        .iter()
        .map(|p| p.as_text().unwrap().to_string())
        .collect()
}

pub fn received_texts(inbox: &Inbox) -> Vec<String> {
    inbox.all().into_iter().map(|m| m.2).collect()
}
