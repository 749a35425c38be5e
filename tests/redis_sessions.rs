//! Redis-backed sessions (issue 13), in process: two `ReliableServer`
//! nodes with different node ids share one real Redis; real stateful
//! clients move between them with no affinity. Multi-process tests (kills,
//! pauses, Redis stopped under load) are in tests/cluster.rs.

mod common;

use std::{net::SocketAddr, time::Duration};

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

#[path = "redis_sessions/support.rs"]
mod support;

use support::*;

#[actix_rt::test]
async fn negotiate_on_one_node_and_the_socket_on_another_exchange_exactly_once() {
    let redis = TestRedis::shared();
    let (a, b, prefix) = cluster(&redis, "split", ServerOptions::default()).await;
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
    // The client's close (1000) ends the session: its keys go, B reports it.
    ws.disconnect().await.unwrap();
    assert!(
        wait_until(|| redis.keys(&prefix).is_empty(), WAIT).await,
        "{:?}",
        redis.keys(&prefix)
    );
    assert!(wait_until(|| b.inbox.expired().len() == 1, WAIT).await);
    assert_eq!(b.inbox.expired()[0].reason, ExpireReason::Closed);
    assert!(a.inbox.expired().is_empty());
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
    // try_send_to from A does not wait for Redis: queued, in order.
    for i in 0..100 {
        a.server.try_send_to(&cid_b, format!("y{i}")).unwrap();
    }
    rec_b.wait_messages(200, WAIT).await;
    let ys: Vec<String> = texts(&rec_b)
        .into_iter()
        .filter(|t| t.starts_with('y'))
        .collect();
    assert_exactly_once_in_order(&ys, &numbered("y", 0..100), "try_send_to A -> B");

    // broadcast from B reaches both clients.
    let local = b.server.broadcast("all");
    assert_eq!(local, 1, "the local count: the session attached at B");
    rec_a.wait_messages(1, WAIT).await;
    rec_b.wait_messages(201, WAIT).await;
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

/// Redis goes away under an attached, streaming client: negotiate answers
/// 503 with Retry-After, a HELLO is closed with 1013, the attached session
/// echoes nothing it cannot record and closes with 1013 after
/// `store_unavailable_timeout`; once Redis is back the client resumes and
/// every message arrives exactly once, in order.
#[actix_rt::test]
async fn while_redis_is_down_nothing_is_sent_unrecorded_and_nothing_is_lost_after() {
    let mut redis = TestRedis::start_persistent();
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
    let a = start("a", redis.url().to_owned(), options.clone()).await;
    let b = start("b", redis.url().to_owned(), options).await;
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

    redis.stop();
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

    redis.restart();
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

/// Group commit: a streaming echo session costs Redis far fewer commands
/// than messages (`INFO commandstats`, the measure: at most 0.1
/// per message, each way counted once).
#[actix_rt::test]
async fn a_streaming_session_costs_at_most_a_tenth_of_a_redis_command_per_message() {
    let redis = TestRedis::start();
    let (a, _b, _) = cluster(&redis, "cost", ServerOptions::default()).await;
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(a.http.ws_url()).buffering(true, 30_000))
        .connect()
        .await
        .unwrap();
    let calls = || -> u64 {
        let mut c = redis.connection();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut c)
            .unwrap();
        info.lines()
            .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let before = calls();
    let n = 20_000;
    for i in 0..n {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(n, WAIT).await;
    let used = calls() - before;

    assert_exactly_once_in_order(&texts(&rec), &numbered("m", 0..n), "echoes");
    let per_message = used as f64 / n as f64;
    println!("{used} Redis commands for {n} messages: {per_message:.4} per message");
    assert!(per_message <= 0.1, "{used} commands for {n} messages");
    ws.disconnect().await.unwrap();
}

/// A graceful shutdown of the node holding a streaming client (what a
/// deploy does): everything it took is recorded before its 1012, so the
/// client goes on at the other node with nothing lost or doubled, and the
/// drain does not wait for the client's acks (the next node replays).
#[actix_rt::test]
async fn a_drained_node_hands_its_sessions_to_the_other_node() {
    let redis = TestRedis::shared();
    let options = server_options(|o| o.shutdown_drain_timeout = Duration::from_secs(20));
    let (a, b, _) = cluster(&redis, "drain", options).await;
    let proxy = FaultProxy::start(a.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(proxy.ws_url()).buffering(true, 10_000))
        .connect()
        .await
        .unwrap();
    let n = 3000;
    for i in 0..n / 2 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(n / 4, WAIT).await;
    proxy.set_upstream(b.addr());
    let started = std::time::Instant::now();
    a.server
        .shutdown(resilient_ws::protocol::ShutdownAdvice {
            reconnect_after_ms: 0,
            spread_ms: 0,
        })
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drained on the record, not on the client's acks: {:?}",
        started.elapsed()
    );
    for i in n / 2..n {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(n, WAIT).await;
    assert_exactly_once_in_order(&texts(&rec), &numbered("m", 0..n), "echoes across a drain");
    b.inbox.wait_messages(1, WAIT).await;
    let mut delivered = received_texts(&a.inbox);
    delivered.extend(received_texts(&b.inbox));
    assert_exactly_once_in_order(&delivered, &numbered("m", 0..n), "client -> A then B");
    ws.disconnect().await.unwrap();
}

/// Fencing at the node: when another node takes the session, the old
/// owner closes its socket with 4002 and writes nothing more to it; what
/// it had sent is replayed by the new owner from Redis.
#[actix_rt::test]
async fn a_node_whose_session_was_taken_closes_with_4002_and_writes_nothing_more() {
    let redis = TestRedis::shared();
    let (a, b, _) = cluster(&redis, "taken", ServerOptions::default()).await;
    let neg = negotiate_at(a.addr(), &[]).await.unwrap();
    let mut on_a = common::attach_raw(&a.http, &neg, 0).await;
    for i in 1..=5 {
        a.server
            .send_to(&neg.connection_id, format!("s{i}"))
            .await
            .unwrap();
    }
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        let f = tokio::time::timeout(WAIT, on_a.read_frame())
            .await
            .unwrap()
            .unwrap();
        if let Frame::Data { seq, .. } = common::decode(&f) {
            seqs.push(seq);
        }
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);

    // The client claims 2 on B: B takes the session, replays 3..5.
    let mut on_b = common::attach_raw(&b.http, &neg, 2).await;
    let mut replay = Vec::new();
    while replay.len() < 3 {
        let f = tokio::time::timeout(WAIT, on_b.read_frame())
            .await
            .unwrap()
            .unwrap();
        if let Frame::Data { seq, payload } = common::decode(&f) {
            replay.push((seq, payload.as_text().unwrap().to_owned()));
        }
    }
    assert_eq!(
        replay,
        vec![(3, "s3".into()), (4, "s4".into()), (5, "s5".into())]
    );
    let mut after = Vec::new();
    let code = common::read_until_close(&mut on_a, |f| after.push(f)).await;
    assert_eq!(code, Some(4002), "replaced");
    assert!(after.is_empty(), "nothing more written at A: {after:?}");
    assert!(wait_until(|| a.server.sessions() == 0, WAIT).await);

    // A's next send goes through Redis to B.
    a.server.send_to(&neg.connection_id, "s6").await.unwrap();
    let f = tokio::time::timeout(WAIT, on_b.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(common::decode(&f), Frame::Data { seq: 6, .. }));
}

/// A second HELLO on the same node (the first socket half-open) takes the
/// session from this node's own actor: the old socket gets 4002, the new
/// one goes on, and the node counts one session, one socket.
#[actix_rt::test]
async fn a_second_hello_on_the_same_node_replaces_the_first_socket() {
    let redis = TestRedis::shared();
    let (a, _b, _) = cluster(&redis, "same", ServerOptions::default()).await;
    let neg = negotiate_at(a.addr(), &[]).await.unwrap();
    let mut first = common::attach_raw(&a.http, &neg, 0).await;
    a.server.send_to(&neg.connection_id, "one").await.unwrap();
    let f = tokio::time::timeout(WAIT, first.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(common::decode(&f), Frame::Data { seq: 1, .. }));
    let mut second = common::attach_raw(&a.http, &neg, 1).await;
    assert_eq!(close_code_of(&mut first).await, Some(4002));
    a.server.send_to(&neg.connection_id, "two").await.unwrap();
    let f = tokio::time::timeout(WAIT, second.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(common::decode(&f), Frame::Data { seq: 2, .. }));
    assert!(
        wait_until(
            || a.server.sessions() == 1 && a.server.stats().attached == 1,
            WAIT
        )
        .await,
        "{:?}",
        a.server.stats()
    );
}

/// Two `rws serve --redis` processes behind a load balancer with no
/// affinity, each killed (SIGKILL) and restarted in turn while a
/// stateful client streams: every echo exactly once, in order.
#[actix_rt::test]
async fn kills_of_either_process_under_a_stream_lose_and_double_nothing() {
    let redis = TestRedis::shared();
    let prefix = TestRedis::unique_prefix("kills");
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let addrs = [port(), port()];
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
    let start = move |addr: SocketAddr, a: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            common::RwsServe::start(&addr.to_string(), &a)
        })
    };
    let mut nodes = [
        Some(start(addrs[0], args("k-a")).await.unwrap()),
        Some(start(addrs[1], args("k-b")).await.unwrap()),
    ];
    let rr = RoundRobin::start(addrs.to_vec()).await;
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(rr.ws_url()).buffering(true, 20_000))
        .connect()
        .await
        .unwrap();
    let n = 6000;
    let mut killed = 0;
    for i in 0..n {
        ws.send(format!("m{i}")).await.unwrap();
        if i % 1000 == 999 {
            let k = killed % 2;
            nodes[k] = None; // SIGKILL
            nodes[k] = Some(start(addrs[k], args(["k-a", "k-b"][k])).await.unwrap());
            killed += 1;
        }
        if i % 100 == 99 {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }
    rec.wait_messages(n, Duration::from_secs(60)).await;
    assert_exactly_once_in_order(&texts(&rec), &numbered("m", 0..n), "echoes across kills");
    let reconnects = ws.stats().reconnects;
    println!("{killed} kills, {reconnects} reconnects");
    assert!(reconnects >= 2, "kills hit the socket's node: {reconnects}");
    assert!(
        rec.events()
            .iter()
            .all(|e| !matches!(e, resilient_ws::testing::RecordedEvent::SessionLost(_))),
        "the session survived every kill"
    );
    ws.disconnect().await.unwrap();
}
