//! Redis-backed sessions (issue 13), in process: two `ReliableServer`
//! nodes with different node ids share one real Redis; real stateful
//! clients move between them with no affinity. Multi-process tests (kills,
//! pauses, Redis stopped under load) are in tests/cluster.rs.

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    assert_exactly_once_in_order, close_code_of, negotiate_at, numbered, server_options, stateful,
    wait_until, Inbox, TestRedis,
};
use resilient_ws::{
    protocol::Frame,
    server::{
        ExpireReason, RedisSessionStore, ReliableServer, ServerError, ServerOptions, SessionStore,
    },
    testing::{EventRecorder, FaultProxy, TestServer},
};

const WAIT: Duration = Duration::from_secs(30);

/// One node of a cluster: its HTTP server, its handle, what its
/// application saw.
struct Node {
    http: TestServer,
    server: ReliableServer,
    inbox: Inbox,
}

impl Node {
    async fn start(redis: &TestRedis, prefix: &str, id: &str, options: ServerOptions) -> Node {
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

    fn addr(&self) -> SocketAddr {
        self.http.addr()
    }
}

/// The session `node` opened (waits for its SessionOpened).
async fn opened_on(node: &Node) -> String {
    let opened = node
        .inbox
        .wait(WAIT, |evs| {
            evs.iter()
                .any(|e| matches!(e, common::ServerEvent::Opened(_)))
        })
        .await;
    assert!(opened, "a session opened");
    node.inbox.opened()[0].clone()
}

/// Short windows, so that tests of expiry are quick.
fn quick(window_ms: u64) -> ServerOptions {
    server_options(|o| {
        o.resume_window = Duration::from_millis(window_ms);
        o.ack_interval = Duration::from_millis(10);
    })
}

/// Two nodes on one Redis under a fresh prefix.
async fn cluster(redis: &TestRedis, name: &str, options: ServerOptions) -> (Node, Node, String) {
    let prefix = TestRedis::unique_prefix(name);
    let a = Node::start(redis, &prefix, "node-a", options.clone()).await;
    let b = Node::start(redis, &prefix, "node-b", options).await;
    (a, b, prefix)
}

/// A TCP proxy that sends its k-th connection to `upstreams[k % n]`: a
/// load balancer with no affinity at all. Records where each went.
#[derive(Clone)]
struct RoundRobin {
    addr: SocketAddr,
    routed: Arc<Mutex<Vec<SocketAddr>>>,
}

impl RoundRobin {
    async fn start(upstreams: Vec<SocketAddr>) -> RoundRobin {
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

    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

fn texts(rec: &EventRecorder) -> Vec<String> {
    rec.messages()
        .iter()
        .map(|p| p.as_text().unwrap().to_string())
        .collect()
}

fn received_texts(inbox: &Inbox) -> Vec<String> {
    inbox.all().into_iter().map(|m| m.2).collect()
}

#[actix_rt::test]
async fn negotiate_on_one_node_and_the_socket_on_another_exchange_exactly_once() {
    let redis = TestRedis::shared();
    let (a, b, _) = cluster(&redis, "split", ServerOptions::default()).await;
    let rr = RoundRobin::start(vec![a.addr(), b.addr()]).await;
    let rec = EventRecorder::start();
    let ws = rec.attach(stateful(rr.ws_url())).connect().await.unwrap();
    let routed = rr.routed.lock().unwrap().clone();
    assert_eq!(routed.len(), 2, "negotiate and the socket: {routed:?}");
    assert_eq!(
        routed,
        vec![a.addr(), b.addr()],
        "negotiate at A, socket at B"
    );
    let n = 500;
    for i in 0..n {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(n, WAIT).await;
    assert_exactly_once_in_order(&texts(&rec), &numbered("m", 0..n), "echoes (B -> client)");
    b.inbox.wait_messages(n, WAIT).await;
    assert_exactly_once_in_order(
        &received_texts(&b.inbox),
        &numbered("m", 0..n),
        "client -> B",
    );
    assert!(a.inbox.received().is_empty(), "nothing reached A");
    assert_eq!(b.inbox.opened().len(), 1, "B opened the session");
    ws.disconnect().await.unwrap();
}

/// The socket is cut mid-stream; while the client is away the
/// application sends from A; the client comes back through B.
#[actix_rt::test]
async fn a_client_resumes_on_the_other_node_with_nothing_lost_or_doubled() {
    let redis = TestRedis::shared();
    let (a, b, _) = cluster(&redis, "resume", ServerOptions::default()).await;
    let proxy = FaultProxy::start(a.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(proxy.ws_url()))
        .connect()
        .await
        .unwrap();
    let cid = opened_on(&a).await;
    let n = 400;
    for i in 0..n / 2 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(n / 2, WAIT).await;

    proxy.refuse(true);
    proxy.cut_all();
    // A records the detach and lets go: the session lives in Redis only.
    assert!(
        wait_until(|| a.server.sessions() == 0, WAIT).await,
        "A let go of the detached session"
    );
    for i in 0..50 {
        a.server.send_to(&cid, format!("s{i}")).await.unwrap();
    }
    for i in n / 2..n {
        ws.send(format!("m{i}")).await.unwrap();
    }
    proxy.set_upstream(b.addr());
    proxy.refuse(false);

    rec.wait_messages(n + 50, WAIT).await;
    let got = texts(&rec);
    let echoes: Vec<String> = got.iter().filter(|t| t.starts_with('m')).cloned().collect();
    let sent: Vec<String> = got.iter().filter(|t| t.starts_with('s')).cloned().collect();
    assert_exactly_once_in_order(&echoes, &numbered("m", 0..n), "echoes across nodes");
    assert_exactly_once_in_order(&sent, &numbered("s", 0..50), "send_to while away");
    b.inbox.wait_messages(n / 2, WAIT).await;
    let mut delivered = received_texts(&a.inbox);
    delivered.extend(received_texts(&b.inbox));
    assert_exactly_once_in_order(&delivered, &numbered("m", 0..n), "client -> A then B");
    assert_eq!(
        b.inbox
            .events()
            .iter()
            .filter(|e| matches!(e, common::ServerEvent::Resumed(_)))
            .count(),
        1
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn send_to_and_broadcast_reach_sessions_on_any_node() {
    let redis = TestRedis::shared();
    let (a, b, _) = cluster(&redis, "sendto", ServerOptions::default()).await;
    // One client on each node.
    let rec_b = EventRecorder::start();
    let on_b = rec_b
        .attach(stateful(b.http.ws_url()))
        .connect()
        .await
        .unwrap();
    let rec_a = EventRecorder::start();
    let on_a = rec_a
        .attach(stateful(a.http.ws_url()))
        .connect()
        .await
        .unwrap();
    let cid_b = opened_on(&b).await;

    // send_to from A to the session attached at B.
    for i in 0..100 {
        a.server.send_to(&cid_b, format!("x{i}")).await.unwrap();
    }
    rec_b.wait_messages(100, WAIT).await;
    assert_exactly_once_in_order(&texts(&rec_b), &numbered("x", 0..100), "A -> session at B");

    // broadcast from B reaches both clients.
    let local = b.server.broadcast("all");
    assert_eq!(local, 1, "the local count: the session attached at B");
    rec_a.wait_messages(1, WAIT).await;
    rec_b.wait_messages(101, WAIT).await;
    assert_eq!(texts(&rec_a), vec!["all".to_owned()]);
    assert_eq!(texts(&rec_b).last().map(String::as_str), Some("all"));

    // An unknown session is refused from any node.
    assert_eq!(
        a.server.send_to("no-such-session", "x").await,
        Err(ServerError::UnknownSession)
    );
    on_a.disconnect().await.unwrap();
    on_b.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn send_to_a_detached_session_is_delivered_when_it_resumes_elsewhere() {
    let redis = TestRedis::shared();
    let (a, b, _) = cluster(&redis, "detached", ServerOptions::default()).await;
    let proxy = FaultProxy::start(b.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(proxy.ws_url()))
        .connect()
        .await
        .unwrap();
    let cid = opened_on(&b).await;
    proxy.refuse(true);
    proxy.cut_all();
    assert!(wait_until(|| b.server.sessions() == 0, WAIT).await);
    for i in 0..20 {
        b.server.send_to(&cid, format!("d{i}")).await.unwrap();
    }
    proxy.set_upstream(a.addr());
    proxy.refuse(false);
    rec.wait_messages(20, WAIT).await;
    assert_exactly_once_in_order(&texts(&rec), &numbered("d", 0..20), "resumed at A");
    ws.disconnect().await.unwrap();
}

/// A session nobody resumes: its keys go with the window, and exactly one
/// node reports it, with what it never delivered.
#[actix_rt::test]
async fn keys_go_with_the_resume_window_and_session_expired_fires_once() {
    let redis = TestRedis::shared();
    let (a, b, prefix) = cluster(&redis, "expiry", quick(400)).await;
    let neg = negotiate_at(a.addr(), &[]).await.unwrap();
    for i in 0..3 {
        b.server
            .send_to(&neg.connection_id, format!("u{i}"))
            .await
            .unwrap();
    }
    assert!(
        redis.keys(&prefix).len() >= 2,
        "meta, stream (and the index): {:?}",
        redis.keys(&prefix)
    );
    let expired = || {
        let mut all = a.inbox.expired();
        all.extend(b.inbox.expired());
        all
    };
    assert!(wait_until(|| !expired().is_empty(), WAIT).await, "expired");
    assert!(
        wait_until(|| redis.keys(&prefix).is_empty(), WAIT).await,
        "no key left: {:?}",
        redis.keys(&prefix)
    );
    // Both sweepers ran past the deadline by now; still one event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = expired();
    assert_eq!(all.len(), 1, "once across the cluster: {all:?}");
    assert_eq!(all[0].connection_id, neg.connection_id);
    assert_eq!(all[0].undelivered, 3);
    assert_eq!(all[0].reason, ExpireReason::ResumeWindow);
    assert_eq!(
        b.server.send_to(&neg.connection_id, "late").await,
        Err(ServerError::UnknownSession)
    );
}

/// A HELLO at B with a wrong token, a forged one, or another identity's
/// session: 4001 as on one node; the right one still resumes.
#[actix_rt::test]
async fn a_wrong_forged_or_other_identitys_token_never_resumes_across_nodes() {
    let redis = TestRedis::shared();
    let (a, b, _) = cluster(
        &redis,
        "tokens",
        common::user_auth(ServerOptions::default()),
    )
    .await;
    let alice: &[(&str, &[u8])] = &[("x-user", b"alice")];
    let neg = negotiate_at(a.addr(), alice).await.unwrap();
    let hello = |token: &str| Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: token.to_owned(),
        last_received: 0,
        first_seq: 1,
    };
    let mut forged = neg.reconnect_token.clone();
    forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
    for (user, token, what) in [
        ("alice", "wrong", "a wrong token"),
        ("alice", forged.as_str(), "a forged token"),
        ("bob", neg.reconnect_token.as_str(), "another identity"),
    ] {
        let mut c = resilient_ws::testing::RawConn::connect(
            b.addr(),
            "/ws",
            &[
                (
                    "Sec-WebSocket-Protocol",
                    resilient_ws::protocol::SUBPROTOCOL,
                ),
                ("x-user", user),
            ],
        )
        .await
        .unwrap();
        c.send_binary(&hello(token).to_bytes()).await.unwrap();
        assert_eq!(close_code_of(&mut c).await, Some(4001), "{what}");
    }
    // The right token and identity still resume, at B.
    let mut c = resilient_ws::testing::RawConn::connect(
        b.addr(),
        "/ws",
        &[
            (
                "Sec-WebSocket-Protocol",
                resilient_ws::protocol::SUBPROTOCOL,
            ),
            ("x-user", "alice"),
        ],
    )
    .await
    .unwrap();
    c.send_binary(&hello(&neg.reconnect_token).to_bytes())
        .await
        .unwrap();
    let welcome = c.read_frame().await.unwrap();
    assert!(matches!(
        common::decode(&welcome),
        Frame::Welcome { resumed: false, .. }
    ));
}

/// Two `rws serve --redis` processes: the node holding the socket is
/// killed mid-stream (SIGKILL) and the client resumes on the other one.
#[actix_rt::test]
async fn a_stateful_client_resumes_across_two_rws_serve_processes_after_a_kill() {
    let redis = TestRedis::shared();
    let prefix = TestRedis::unique_prefix("procs");
    let args = |node: &str| {
        vec![
            "--redis".to_owned(),
            redis.url().to_owned(),
            "--node-id".to_owned(),
            node.to_owned(),
            "--redis-prefix".to_owned(),
            prefix.clone(),
        ]
    };
    let start = |a: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            common::RwsServe::start("127.0.0.1:0", &a)
        })
    };
    let a = start(args("proc-a")).await.unwrap();
    let b = start(args("proc-b")).await.unwrap();
    let proxy = FaultProxy::start(a.addr().parse().unwrap()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(proxy.ws_url()).buffering(true, 10_000))
        .connect()
        .await
        .unwrap();
    let n = 2000;
    for i in 0..n / 2 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(n / 4, WAIT).await;
    proxy.set_upstream(b.addr().parse().unwrap());
    drop(a); // SIGKILL, mid-stream
    proxy.cut_all();
    for i in n / 2..n {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(n, WAIT).await;
    assert_exactly_once_in_order(&texts(&rec), &numbered("m", 0..n), "echoes across a kill");
    assert!(ws.stats().reconnects >= 1, "the client resumed on B");
    assert!(
        rec.events()
            .iter()
            .all(|e| !matches!(e, resilient_ws::testing::RecordedEvent::SessionLost(_))),
        "the session survived the kill"
    );
    ws.disconnect().await.unwrap();
    drop(b);
}

/// A redis-server that keeps its data across a kill (append-only file,
/// fsync always), so a test can take Redis away and bring the same data
/// back: what an outage with persistence looks like.
struct DurableRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<common::ChildGuard>,
}

impl DurableRedis {
    fn start() -> DurableRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut r = DurableRedis {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.up();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn up(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(common::ChildGuard(child));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL; waits until the port is free.
    fn down(&mut self) {
        drop(self.child.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "redis-server down");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Redis goes away under an attached, streaming client: negotiate answers
/// 503 with Retry-After, a HELLO is closed with 1013, the attached session
/// echoes nothing it cannot record and closes with 1013 after
/// `store_unavailable_timeout`; once Redis is back the client resumes and
/// every message arrives exactly once, in order.
#[actix_rt::test]
async fn while_redis_is_down_nothing_is_sent_unrecorded_and_nothing_is_lost_after() {
    let mut redis = DurableRedis::start();
    let options = server_options(|o| {
        o.store_unavailable_timeout = Duration::from_millis(300);
    });
    let start = |id: &'static str, url: String, options: ServerOptions| async move {
        let store = RedisSessionStore::connect(&url, id).await.unwrap();
        let mut options = options;
        options.store = SessionStore::Redis(store);
        let server = ReliableServer::echo(options);
        let inbox = Inbox::attach(&server);
        let http =
            TestServer::serve_reliable(SocketAddr::from(([127, 0, 0, 1], 0)), &server).unwrap();
        Node {
            http,
            server,
            inbox,
        }
    };
    let a = start("a", redis.url(), options.clone()).await;
    let b = start("b", redis.url(), options).await;
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(a.http.ws_url()).buffering(true, 10_000))
        .connect()
        .await
        .unwrap();
    let spare = negotiate_at(b.addr(), &[]).await.unwrap();
    for i in 0..100 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(100, WAIT).await;

    redis.down();
    for i in 100..200 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    // Negotiate: 503 with Retry-After.
    let resp = awc::Client::default()
        .post(format!("http://{}/ws/negotiate", b.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"), "{resp:?}");
    // A HELLO: 1013, the client tries again later.
    let mut c = resilient_ws::testing::RawConn::connect(
        b.addr(),
        "/ws",
        &[(
            "Sec-WebSocket-Protocol",
            resilient_ws::protocol::SUBPROTOCOL,
        )],
    )
    .await
    .unwrap();
    let hello = Frame::Hello {
        connection_id: spare.connection_id.clone(),
        reconnect_token: spare.reconnect_token.clone(),
        last_received: 0,
        first_seq: 1,
    };
    c.send_binary(&hello.to_bytes()).await.unwrap();
    assert_eq!(close_code_of(&mut c).await, Some(1013));
    // The attached session gives up its socket after the timeout, having
    // sent nothing it could not record.
    assert!(
        wait_until(|| a.server.stats().attached == 0, WAIT).await,
        "closed after store_unavailable_timeout"
    );
    assert!(a.server.stats().store_errors > 0);
    assert_eq!(rec.messages().len(), 100, "no echo without its record");

    redis.up();
    rec.wait_messages(200, WAIT).await;
    assert_exactly_once_in_order(
        &texts(&rec),
        &numbered("m", 0..200),
        "echoes after the outage",
    );
    ws.disconnect().await.unwrap();
}

/// close_session on a node that does not hold the socket: the keys go,
/// the owner closes the socket, and the calling node reports it once.
#[actix_rt::test]
async fn close_session_from_another_node_ends_it_once() {
    let redis = TestRedis::shared();
    let (a, b, prefix) = cluster(&redis, "close", ServerOptions::default()).await;
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(b.http.ws_url()))
        .connect()
        .await
        .unwrap();
    let cid = opened_on(&b).await;
    ws.send("hello").await.unwrap();
    rec.wait_messages(1, WAIT).await;
    a.server.close_session(&cid).unwrap();
    assert!(
        wait_until(|| b.server.sessions() == 0, WAIT).await,
        "the owner let go"
    );
    assert!(
        wait_until(|| !a.inbox.expired().is_empty(), WAIT).await,
        "reported"
    );
    let expired = a.inbox.expired();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].connection_id, cid);
    assert_eq!(expired[0].reason, ExpireReason::Closed);
    assert!(b.inbox.expired().is_empty(), "reported by one node only");
    assert!(
        wait_until(|| redis.keys(&prefix).is_empty(), WAIT).await,
        "{:?}",
        redis.keys(&prefix)
    );
    assert_eq!(
        a.server.send_to(&cid, "late").await,
        Err(ServerError::UnknownSession)
    );
    let _ = ws.disconnect().await;
}
