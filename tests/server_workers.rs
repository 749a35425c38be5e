//! Sessions spread over the workers of a multi-worker server (issue 16):
//! each session actor runs on the worker of its first socket (in Redis
//! mode, of each socket), so sessions spread as their sockets do; and
//! everything a session does still works from there: exactly once both
//! ways through cuts, resumes on either worker, `send_to` from another
//! thread (also before the first socket), `broadcast`, the shutdown
//! drain, the resume window.

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use actix_web::{dev::ServerHandle, App, HttpServer};
use common::{assert_exactly_once_in_order, numbered, stateful, wait_until, Inbox};
use resilient_ws::{
    close_code,
    protocol::ShutdownAdvice,
    server::{reliable_route, ExpireReason, ReliableServer, ServerOptions},
    testing::{EventRecorder, FaultProxy},
    Payload, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(60);

/// How many clients each test opens: enough that both workers get some.
const CLIENTS: usize = 6;

/// `reliable` served at `/ws` on 127.0.0.1 by an actix-web server with
/// two workers.
fn serve_two_workers(reliable: &ReliableServer) -> (SocketAddr, ServerHandle) {
    serve_workers(reliable, 2)
}

/// `reliable` served at `/ws` on 127.0.0.1 by an actix-web server with
/// `workers` workers.
fn serve_workers(reliable: &ReliableServer, workers: usize) -> (SocketAddr, ServerHandle) {
    let reliable = reliable.clone();
    let server = HttpServer::new(move || {
        let reliable = reliable.clone();
        App::new().configure(move |c| reliable_route(c, "/ws", reliable))
    })
    .workers(workers)
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (addr, handle)
}

/// `n` recorded stateful clients of `url`, connected at once (so their
/// connections interleave over the workers).
async fn clients(url: &str, n: usize) -> Vec<(ResilientWebSocket, EventRecorder)> {
    futures_util::future::join_all(
        (0..n).map(|_| common::connect_recorded(stateful(url).buffering(true, 10_000))),
    )
    .await
}

/// The threads the sessions `ids` run on; asserts they are at least two,
/// none of them this (the test's) thread, where `ReliableServer::start`
/// ran.
fn assert_spread(reliable: &ReliableServer, ids: &[String]) {
    let threads: HashSet<_> = ids
        .iter()
        .map(|id| reliable.session_thread(id).expect("a live session"))
        .collect();
    assert!(
        threads.len() >= 2,
        "{} sessions on {} thread(s): {threads:?}",
        ids.len(),
        threads.len()
    );
    assert!(
        !threads.contains(&std::thread::current().id()),
        "no session on the thread that started the server"
    );
}

fn texts(payloads: &[Payload]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| p.as_text().unwrap_or("<binary>").to_string())
        .collect()
}

/// Streams `n` messages from each client through random cuts; asserts
/// that each client's echoes and the server's deliveries are each stream
/// exactly once in order.
async fn stream_through_cuts(
    clients: &[(ResilientWebSocket, EventRecorder)],
    inbox: Option<&Inbox>,
    proxy: &FaultProxy,
    n: usize,
) {
    let cutter = {
        let proxy = proxy.clone();
        actix_rt::spawn(async move {
            for _ in 0..4 {
                actix_rt::time::sleep(Duration::from_millis(120)).await;
                proxy.cut_all();
            }
        })
    };
    for (k, (ws, _)) in clients.iter().enumerate() {
        for m in numbered(&format!("c{k}-"), 0..n) {
            ws.send(m).await.unwrap();
        }
    }
    for (k, (_, rec)) in clients.iter().enumerate() {
        let got = rec.wait_messages(n, WAIT).await;
        assert_exactly_once_in_order(
            &texts(&got),
            &numbered(&format!("c{k}-"), 0..n),
            &format!("echoes of client {k}"),
        );
    }
    let _ = cutter.await;
    let Some(inbox) = inbox else { return };
    // What the server's application got: each client's stream once, in
    // order, from one session each.
    assert!(
        wait_until(|| inbox.len() >= n * clients.len(), WAIT).await,
        "the server got every message"
    );
    let mut by_client: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sessions: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (id, _, text) in inbox.all() {
        let client = text.split('-').next().unwrap().to_string();
        sessions.entry(client.clone()).or_default().insert(id);
        by_client.entry(client).or_default().push(text);
    }
    for k in 0..clients.len() {
        let client = format!("c{k}");
        assert_exactly_once_in_order(
            &by_client[&client],
            &numbered(&format!("c{k}-"), 0..n),
            &format!("server's deliveries from client {k}"),
        );
        assert_eq!(sessions[&client].len(), 1, "one session per client");
    }
}

#[actix_rt::test]
async fn sessions_on_both_workers_stream_exactly_once_both_ways_through_cuts() {
    let reliable = ReliableServer::echo(ServerOptions::default());
    let inbox = Inbox::attach(&reliable);
    let (addr, http) = serve_two_workers(&reliable);
    let proxy = FaultProxy::start(addr).await.unwrap();
    let clients = clients(&proxy.ws_url(), CLIENTS).await;
    assert!(
        wait_until(|| inbox.opened().len() == CLIENTS, WAIT).await,
        "every session opened"
    );
    assert_spread(&reliable, &inbox.opened());

    stream_through_cuts(&clients, Some(&inbox), &proxy, 300).await;
    assert!(
        proxy.connections_total() > CLIENTS,
        "the cuts made the clients resume"
    );
    let (here, elsewhere) = reliable.attach_affinity();
    eprintln!("sockets on their session's worker: {here}, on the other: {elsewhere}");
    assert!(here + elsewhere > CLIENTS as u64, "every attach counted");
    for (ws, _) in &clients {
        ws.disconnect().await.unwrap();
    }
    http.stop(true).await;
}

#[actix_rt::test]
async fn send_to_from_another_thread_and_broadcast_reach_sessions_on_both_workers() {
    let reliable = ReliableServer::start(ServerOptions::default());
    let inbox = Inbox::attach(&reliable);
    let (addr, http) = serve_two_workers(&reliable);
    let clients = clients(&format!("ws://{addr}/ws"), CLIENTS).await;
    assert!(
        wait_until(|| inbox.opened().len() == CLIENTS, WAIT).await,
        "every session opened"
    );
    let ids = inbox.opened();
    assert_spread(&reliable, &ids);
    let (here, elsewhere) = reliable.attach_affinity();
    eprintln!("direct: sockets on their session's worker: {here}, on the other: {elsewhere}");
    assert_eq!(here + elsewhere, CLIENTS as u64, "every attach counted");

    // Another thread, with its own runtime: neither a worker nor the
    // thread that started the server.
    let (from, ids2) = (reliable.clone(), ids.clone());
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            for id in &ids2 {
                from.send_to(id, format!("to {id}")).await.unwrap();
                from.try_send_to(id, format!("again {id}")).unwrap();
            }
        })
    })
    .join()
    .unwrap();
    assert_eq!(reliable.broadcast("to all"), CLIENTS, "every session");

    // Which client holds which session: its first message says.
    for (ws, rec) in &clients {
        let got = texts(&rec.wait_messages(3, WAIT).await);
        let id = got[0].strip_prefix("to ").expect("send_to's message first");
        assert!(ids.contains(&id.to_string()));
        assert_eq!(
            got,
            vec![format!("to {id}"), format!("again {id}"), "to all".into()]
        );
        ws.disconnect().await.unwrap();
    }
    http.stop(true).await;
}

#[actix_rt::test]
async fn shutdown_drains_the_sessions_of_both_workers() {
    let reliable = ReliableServer::echo(ServerOptions::default());
    let inbox = Inbox::attach(&reliable);
    let (addr, http) = serve_two_workers(&reliable);
    let clients = clients(&format!("ws://{addr}/ws"), CLIENTS).await;
    assert!(wait_until(|| inbox.opened().len() == CLIENTS, WAIT).await);
    assert_spread(&reliable, &inbox.opened());
    for (k, (ws, rec)) in clients.iter().enumerate() {
        ws.send(format!("before {k}")).await.unwrap();
        assert_eq!(
            texts(&rec.wait_messages(1, WAIT).await),
            [format!("before {k}")]
        );
    }

    let advice = ShutdownAdvice {
        reconnect_after_ms: 60_000,
        spread_ms: 0,
    };
    tokio::time::timeout(WAIT, reliable.shutdown(advice))
        .await
        .expect("every session drained in time")
        .unwrap();
    for (k, (_, rec)) in clients.iter().enumerate() {
        let closed = rec
            .wait_until(WAIT, |evs| {
                evs.iter().find_map(|e| match e {
                    resilient_ws::testing::RecordedEvent::Closed(c) => Some(c.clone()),
                    _ => None,
                })
            })
            .await
            .unwrap_or_else(|| panic!("client {k}'s socket closed"));
        assert_eq!(closed.code, Some(close_code::SERVICE_RESTART), "client {k}");
        assert_eq!(ShutdownAdvice::from_reason(&closed.reason), Some(advice));
    }
    // Drained, not ended: the sessions stay for their resume window.
    assert_eq!(reliable.sessions(), CLIENTS);
    assert!(inbox.expired().is_empty());
    http.stop(true).await;
}

#[actix_rt::test]
async fn sessions_on_both_workers_expire_after_the_resume_window() {
    let mut options = ServerOptions::default();
    options.resume_window = Duration::from_millis(300);
    let reliable = ReliableServer::start(options);
    let inbox = Inbox::attach(&reliable);
    let (addr, http) = serve_two_workers(&reliable);
    let proxy = FaultProxy::start(addr).await.unwrap();
    let clients = clients(&proxy.ws_url(), CLIENTS).await;
    assert!(wait_until(|| inbox.opened().len() == CLIENTS, WAIT).await);
    assert_spread(&reliable, &inbox.opened());

    // The clients cannot come back: each session's window runs out on
    // its own worker.
    proxy.refuse(true);
    proxy.cut_all();
    assert!(
        wait_until(|| inbox.expired().len() == CLIENTS, WAIT).await,
        "every session expired: {:?}",
        inbox.expired()
    );
    let mut ended: Vec<String> = inbox
        .expired()
        .iter()
        .map(|e| {
            assert_eq!(e.reason, ExpireReason::ResumeWindow);
            e.connection_id.clone()
        })
        .collect();
    let mut opened = inbox.opened();
    ended.sort();
    opened.sort();
    assert_eq!(ended, opened, "each session once");
    assert!(wait_until(|| reliable.sessions() == 0, WAIT).await);
    drop(clients);
    http.stop(true).await;
}

#[cfg(feature = "redis")]
#[actix_rt::test]
async fn redis_mode_starts_each_session_on_its_sockets_worker_and_stays_exactly_once() {
    use common::TestRedis;
    use resilient_ws::server::{RedisSessionStore, SessionStore};

    let redis = TestRedis::start();
    let store = RedisSessionStore::connect(redis.url(), "node-w")
        .await
        .expect("connect to redis")
        .with_prefix(TestRedis::unique_prefix("workers"));
    let mut options = ServerOptions::default();
    options.store = SessionStore::Redis(store);
    let reliable = ReliableServer::echo(options);
    let inbox = Inbox::attach(&reliable);
    let (addr, http) = serve_two_workers(&reliable);
    let proxy = FaultProxy::start(addr).await.unwrap();
    let clients = clients(&proxy.ws_url(), CLIENTS).await;
    assert!(wait_until(|| inbox.opened().len() == CLIENTS, WAIT).await);
    assert!(
        wait_until(|| reliable.sessions() == CLIENTS, WAIT).await,
        "every session attached here"
    );
    assert_spread(&reliable, &inbox.opened());
    // The HELLO starts the actor on the socket's worker: no hop between
    // threads per message.
    assert_eq!(reliable.attach_affinity(), (CLIENTS as u64, 0));

    stream_through_cuts(&clients, Some(&inbox), &proxy, 200).await;
    let (here, elsewhere) = reliable.attach_affinity();
    assert!(here > CLIENTS as u64, "the resumes attached too");
    assert_eq!(elsewhere, 0, "each resume's actor on its socket's worker");
    for (ws, _) in &clients {
        ws.disconnect().await.unwrap();
    }
    http.stop(true).await;
}

/// The actix arbiter threads of process `pid` (the main one and the
/// workers are named `actix-rt|system:..`, cut to 15 characters).
#[cfg(feature = "cli")]
fn arbiter_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("actix-rt|system"))
        .count()
}

#[cfg(feature = "cli")]
#[actix_rt::test]
async fn rws_serve_workers_flag_sets_the_workers_whose_sessions_stream_exactly_once() {
    let serve = common::RwsServe::start_async("127.0.0.1:0", &["--workers", "3"]).await;
    // Three, not this machine's default (its physical cores). The workers
    // start just after the address is printed.
    let pid = serve.child.id();
    wait_until(|| arbiter_threads(pid) >= 3, WAIT).await;
    assert_eq!(
        arbiter_threads(pid),
        3,
        "--workers 3: three worker arbiters (the main thread is `rws`)"
    );
    let proxy = FaultProxy::start(serve.addr().parse().unwrap())
        .await
        .unwrap();
    let clients = clients(&proxy.ws_url(), CLIENTS).await;
    stream_through_cuts(&clients, None, &proxy, 200).await;
    for (ws, _) in &clients {
        ws.disconnect().await.unwrap();
    }
}

#[actix_rt::test]
async fn a_client_negotiating_and_streaming_has_its_session_on_its_sockets_worker() {
    // Our client upgrades on a new connection, which actix-web deals to
    // the next worker: the session, created by the negotiate on one
    // worker, starts on the socket's (no hop between threads per message:
    // what the round trip depends on).
    let reliable = ReliableServer::echo(ServerOptions::default());
    let (addr, http) = serve_two_workers(&reliable);
    for k in 0..4u64 {
        let (ws, rec) = common::connect_recorded(stateful(format!("ws://{addr}/ws"))).await;
        ws.send(format!("m{k}")).await.unwrap();
        assert_eq!(texts(&rec.wait_messages(1, WAIT).await), [format!("m{k}")]);
        assert_eq!(
            reliable.attach_affinity(),
            (k + 1, 0),
            "client {k}'s socket and session on one thread"
        );
        ws.disconnect().await.unwrap();
    }
    http.stop(true).await;
}

#[actix_rt::test]
async fn a_message_sent_before_the_first_socket_waits_for_it_on_the_sockets_worker() {
    use bytes::Bytes;
    use resilient_ws::protocol::Frame;

    let reliable = ReliableServer::echo(ServerOptions::default());
    let (addr, http) = serve_two_workers(&reliable);
    let neg = common::negotiate_at(addr, &[]).await.expect("negotiate");
    // The actor waits for its first socket: the message waits in its
    // mailbox (from this thread, which is no worker).
    reliable
        .send_to(&neg.connection_id, "early")
        .await
        .expect("queued for the session");
    let mut conn = common::protocol_socket_at(addr).await;
    let hello = Frame::hello(&neg.connection_id, &neg.reconnect_token, 0, 1).unwrap();
    conn.send_binary(&hello.to_bytes()).await.unwrap();
    let got = loop {
        let f = tokio::time::timeout(WAIT, conn.read_frame())
            .await
            .expect("a frame in time")
            .unwrap();
        if let Frame::Data { seq, payload } = Frame::decode(Bytes::from(f.payload)).unwrap() {
            break (seq, payload);
        }
    };
    assert_eq!(got, (1, "early".into()));
    assert_eq!(
        reliable.attach_affinity(),
        (1, 0),
        "started on the socket's worker"
    );
    let thread = reliable.session_thread(&neg.connection_id).unwrap();
    assert_ne!(thread, std::thread::current().id());
    drop(conn);
    http.stop(true).await;
}

#[actix_rt::test]
async fn a_session_resumes_from_either_worker_exactly_once() {
    use bytes::Bytes;
    use resilient_ws::protocol::Frame;

    // Each raw socket is a new TCP connection, dealt to the workers in
    // turn: the session (which starts on its first socket's worker and
    // cannot move) is resumed from its own worker and from the other one.
    let reliable = ReliableServer::echo(ServerOptions::default());
    let inbox = Inbox::attach(&reliable);
    let (addr, http) = serve_two_workers(&reliable);
    let neg = common::negotiate_at(addr, &[]).await.expect("negotiate");
    let mut echoed = 0u64;
    for seq in 1..=12u64 {
        let mut conn = common::protocol_socket_at(addr).await;
        let hello = Frame::hello(&neg.connection_id, &neg.reconnect_token, echoed, 1).unwrap();
        conn.send_binary(&hello.to_bytes()).await.unwrap();
        let payload = format!("m{seq}");
        conn.send_binary(&common::data(seq, payload.as_str()))
            .await
            .unwrap();
        // Frames until the echo: the WELCOME (saying what the server got),
        // ACKs, then DATA `seq` (nothing replayed: every echo was read).
        let echo = loop {
            let f = tokio::time::timeout(WAIT, conn.read_frame())
                .await
                .expect("a frame in time")
                .unwrap();
            match Frame::decode(Bytes::from(f.payload)).unwrap() {
                Frame::Welcome { last_received, .. } => {
                    assert_eq!(
                        last_received,
                        seq - 1,
                        "the server has every earlier message"
                    )
                }
                Frame::Data { seq: s, payload } => break (s, payload),
                _ => {}
            }
        };
        assert_eq!(echo, (seq, payload.as_str().into()), "socket {seq}");
        echoed = seq;
        conn.send_binary(&Frame::Ack { seq }.to_bytes())
            .await
            .unwrap();
        // Dropped without a close frame (1000 would end the session): the
        // next HELLO resumes it.
        drop(conn);
    }
    let (here, elsewhere) = reliable.attach_affinity();
    assert_eq!(here + elsewhere, 12);
    assert!(
        here > 0 && elsewhere > 0,
        "resumed on both workers: {here} on the session's, {elsewhere} on the other"
    );
    assert!(wait_until(|| inbox.len() >= 12, WAIT).await);
    let got: Vec<String> = inbox.all().into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(got, (1..=12).map(|i| format!("m{i}")).collect::<Vec<_>>());
    http.stop(true).await;
}

#[actix_rt::test]
async fn one_worker_runs_its_sessions_itself() {
    // With one worker a session's actor is on that worker (not on the
    // thread that started the server): one worker is one thread.
    let reliable = ReliableServer::echo(ServerOptions::default());
    let inbox = Inbox::attach(&reliable);
    let (addr, http) = serve_workers(&reliable, 1);
    let clients = clients(&format!("ws://{addr}/ws"), 3).await;
    assert!(wait_until(|| inbox.opened().len() == 3, WAIT).await);
    let threads: HashSet<_> = inbox
        .opened()
        .iter()
        .map(|id| reliable.session_thread(id).expect("a live session"))
        .collect();
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert!(!threads.contains(&std::thread::current().id()));
    assert_eq!(
        reliable.attach_affinity(),
        (3, 0),
        "sockets on that worker too"
    );
    for (k, (ws, rec)) in clients.iter().enumerate() {
        ws.send(format!("m{k}")).await.unwrap();
        assert_eq!(texts(&rec.wait_messages(1, WAIT).await), [format!("m{k}")]);
    }
    for (ws, _) in &clients {
        ws.disconnect().await.unwrap();
    }
    http.stop(true).await;
}
