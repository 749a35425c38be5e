//! The reliable server as an operator runs it, against a hand-written
//! protocol peer (`common::TestPeer`) on real sockets on 127.0.0.1: plain
//! clients (echo, reject, broadcast), the origin allow-list and auth,
//! graceful shutdown, session expiry, server-side backpressure. (Moved
//! from server.rs, unchanged.) Every wait is bounded.

mod common;

use std::time::Duration;

use awc::ws;
use bytes::Bytes;
use common::{
    data_seqs, negotiate, negotiate_with, server_options, text, user_auth, wait_until, In, Inbox,
    ServerEvent, TestPeer,
};
use resilient_ws::{
    close_code,
    protocol::{Frame, ShutdownAdvice},
    server::{ExpireReason, PlainMode, ReliableServer, ServerOptions},
    testing::TestServer,
    Payload,
};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// 5. Plain clients.

#[actix_rt::test]
async fn a_plain_client_gets_echo_on_the_same_path() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let mut p = TestPeer::open(&server, false, &[]).await.unwrap();
    assert_eq!(p.protocol, None);
    p.send(ws::Message::Text("hi".into())).await;
    assert_eq!(p.recv(WAIT).await, In::Text("hi".into()));
    p.send(ws::Message::Binary(Bytes::from_static(b"\x00\x01")))
        .await;
    assert_eq!(
        p.recv(WAIT).await,
        In::Binary(Bytes::from_static(b"\x00\x01"))
    );
    assert_eq!(reliable.stats().plain_clients, 1);
    assert_eq!(reliable.sessions(), 0);
    p.close().await;
    assert!(wait_until(|| reliable.stats().plain_clients == 0, WAIT).await);
    server.stop().await;
}

#[actix_rt::test]
async fn plain_reject_mode_answers_426() {
    let mut options = ServerOptions::default();
    options.plain = PlainMode::Reject;
    let (server, _reliable) = TestServer::reliable(options).unwrap();
    assert_eq!(TestPeer::open(&server, false, &[]).await.err(), Some(426));
    // The protocol still works.
    let neg = negotiate(&server).await;
    let (_p, resumed, _) = TestPeer::attach(&server, &neg, 0).await;
    assert!(!resumed);
    server.stop().await;
}

#[actix_rt::test]
async fn broadcast_mode_reaches_sessions_and_plain_clients() {
    let mut options = ServerOptions::default();
    options.plain = PlainMode::Broadcast;
    let reliable = ReliableServer::broadcast_mode(options);
    let server =
        TestServer::serve_reliable(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), &reliable)
            .unwrap();
    let neg1 = negotiate(&server).await;
    let neg2 = negotiate(&server).await;
    let (mut r1, _, _) = TestPeer::attach(&server, &neg1, 0).await;
    let (mut r2, _, _) = TestPeer::attach(&server, &neg2, 0).await;
    let mut plain = TestPeer::open(&server, false, &[]).await.unwrap();
    assert!(wait_until(|| reliable.stats().plain_clients == 1, WAIT).await);

    // A session's message goes to every session and the plain client.
    r1.data(1, "from r1").await;
    assert_eq!(text(&r1.recv_data(1).await[0].1), "from r1");
    assert_eq!(text(&r2.recv_data(1).await[0].1), "from r1");
    assert_eq!(plain.recv(WAIT).await, In::Text("from r1".into()));
    // A plain client's message too.
    plain.send(ws::Message::Text("from plain".into())).await;
    assert_eq!(plain.recv(WAIT).await, In::Text("from plain".into()));
    assert_eq!(r1.recv_data(1).await[0], (2, "from plain".into()));
    assert_eq!(r2.recv_data(1).await[0], (2, "from plain".into()));
    // And the application's broadcast.
    assert_eq!(reliable.broadcast("from app"), 3);
    assert_eq!(plain.recv(WAIT).await, In::Text("from app".into()));
    assert_eq!(r1.recv_data(1).await[0], (3, "from app".into()));
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 6. Origin allow-list and auth.

#[actix_rt::test]
async fn origin_allow_list_and_auth_refusals() {
    let options = user_auth(server_options(|o| {
        o.allowed_origins = Some(vec!["http://good.example".into()]);
    }));
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let user = ("x-user", "u1");
    let bad_origin = ("origin", "http://evil.example");
    let good_origin = ("origin", "http://good.example");

    assert_eq!(
        negotiate_with(&server, &[user, bad_origin]).await.err(),
        Some(403)
    );
    assert_eq!(
        TestPeer::open(&server, true, &[user, bad_origin])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        TestPeer::open(&server, false, &[user, bad_origin])
            .await
            .err(),
        Some(403),
        "plain sockets are checked too"
    );
    // Auth refusals.
    assert_eq!(
        negotiate_with(&server, &[good_origin]).await.err(),
        Some(401)
    );
    assert_eq!(
        negotiate_with(&server, &[good_origin, ("x-user", "mallory")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(TestPeer::open(&server, true, &[]).await.err(), Some(401));
    assert_eq!(reliable.sessions(), 0);

    // Allowed origin, or none at all (not a browser), with a user.
    let neg = negotiate_with(&server, &[user, good_origin]).await.unwrap();
    negotiate_with(&server, &[user]).await.unwrap();
    let mut p = TestPeer::hello_with(&server, &[user, good_origin], &neg, 0, 1).await;
    assert!(matches!(
        p.recv(WAIT).await,
        In::Frame(Frame::Welcome { resumed: false, .. })
    ));
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 7. Graceful shutdown.

#[actix_rt::test]
async fn shutdown_closes_sockets_with_1012_and_advice() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    let mut plain = TestPeer::open(&server, false, &[]).await.unwrap();
    assert!(wait_until(|| reliable.stats().plain_clients == 1, WAIT).await);

    let advice = ShutdownAdvice {
        reconnect_after_ms: 1500,
        spread_ms: 700,
    };
    reliable.shutdown(advice).await.unwrap();
    assert!(reliable.is_shutting_down());
    let (code, reason) = p.expect_close().await.expect("a close frame");
    assert_eq!(code, close_code::SERVICE_RESTART);
    assert_eq!(ShutdownAdvice::from_reason(&reason), Some(advice));
    let (code, reason) = plain.expect_close().await.expect("a close frame");
    assert_eq!(code, close_code::SERVICE_RESTART);
    assert_eq!(ShutdownAdvice::from_reason(&reason), Some(advice));

    // The session is kept for its window; new work is refused.
    assert_eq!(reliable.sessions(), 1);
    assert_eq!(negotiate_with(&server, &[]).await.err(), Some(503));
    let mut p = TestPeer::hello_with(&server, &[], &neg, 0, 1).await;
    assert_eq!(
        p.expect_close().await.map(|c| c.0),
        Some(close_code::SERVICE_RESTART)
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 8. SessionExpired.

#[actix_rt::test]
async fn session_expired_reports_undelivered_messages() {
    let mut options = ServerOptions::default();
    options.resume_window = Duration::from_millis(200);
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let rec = Inbox::attach(&reliable);

    // A session that never gets a socket expires too.
    let lonely = negotiate(&server).await;

    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    for i in 1..=3 {
        reliable
            .send_to(&neg.connection_id, format!("s{i}"))
            .await
            .unwrap();
    }
    assert_eq!(p.recv_data(3).await.len(), 3);
    // Ack the first; the ack is processed before the DATA that follows it.
    p.ack(1).await;
    p.data(1, "after ack").await;
    rec.wait_messages(1, WAIT).await;
    drop(p);

    assert!(
        rec.wait(WAIT, |e| e
            .iter()
            .filter(|e| matches!(e, ServerEvent::Expired(_)))
            .count()
            == 2)
            .await
    );
    let expired = rec.expired();
    let of = |id: &str| expired.iter().find(|e| e.connection_id == id).unwrap();
    assert_eq!(of(&neg.connection_id).undelivered, 2);
    assert_eq!(of(&neg.connection_id).reason, ExpireReason::ResumeWindow);
    assert_eq!(of(&lonely.connection_id).undelivered, 0);
    assert_eq!(reliable.sessions(), 0);
    assert_eq!(
        reliable.send_to(&neg.connection_id, "late").await,
        Err(resilient_ws::server::ServerError::UnknownSession)
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 9. Server-side backpressure.

#[actix_rt::test]
async fn unacked_bytes_bound_what_a_non_acking_peer_receives() {
    let mut options = ServerOptions::default();
    options.max_unacked_bytes = 1000;
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let neg = negotiate(&server).await;
    // Messages queued before the first socket go out when it attaches.
    for i in 1..=5u64 {
        reliable
            .send_to(&neg.connection_id, vec![i as u8; 100])
            .await
            .unwrap();
    }
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    for i in 6..=20u64 {
        reliable
            .send_to(&neg.connection_id, vec![i as u8; 100])
            .await
            .unwrap();
    }
    let seqs = |got: Vec<(u64, Payload)>| got.into_iter().map(|g| g.0).collect::<Vec<_>>();
    assert_eq!(seqs(p.recv_data(10).await), (1..=10).collect::<Vec<_>>());
    let more = p.drain(Duration::from_millis(300)).await;
    assert!(data_seqs(&more).is_empty(), "1000 bytes at most: {more:?}");
    p.ack(5).await;
    assert_eq!(seqs(p.recv_data(5).await), (11..=15).collect::<Vec<_>>());
    let more = p.drain(Duration::from_millis(300)).await;
    assert!(data_seqs(&more).is_empty(), "{more:?}");
    p.ack(15).await;
    assert_eq!(seqs(p.recv_data(5).await), (16..=20).collect::<Vec<_>>());

    // After a resume, only the unacked ones come again.
    drop(p);
    let (mut p, resumed, _) = TestPeer::attach(&server, &neg, 17).await;
    assert!(resumed);
    assert_eq!(seqs(p.recv_data(3).await), vec![18, 19, 20]);
    let more = p.drain(Duration::from_millis(300)).await;
    assert!(data_seqs(&more).is_empty(), "{more:?}");
    server.stop().await;
}

#[actix_rt::test]
async fn a_peer_too_slow_for_the_pending_bound_ends_its_session_with_an_event() {
    let mut options = ServerOptions::default();
    options.max_unacked_bytes = 1000;
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let rec = Inbox::attach(&reliable);
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    // 10 fit the unacked buffer; 4000 bytes may wait; the 51st overflows.
    // (`send_to` would wait for room instead; `broadcast` does not.)
    for _ in 0..51 {
        reliable.broadcast(vec![0u8; 100]);
    }
    assert_eq!(
        p.expect_close().await.map(|c| c.0),
        Some(close_code::SESSION_GONE)
    );
    assert!(
        rec.wait(WAIT, |e| e.iter().any(|e| matches!(
            e,
            ServerEvent::Expired(x) if x.reason == ExpireReason::Overflow && x.undelivered == 51
        )))
        .await,
        "{:?}",
        rec.expired()
    );
    assert_eq!(reliable.sessions(), 0);
    server.stop().await;
}

#[actix_rt::test]
async fn close_session_ends_it_with_1000() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let rec = Inbox::attach(&reliable);
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    reliable.close_session(&neg.connection_id).unwrap();
    assert_eq!(
        p.expect_close().await.map(|c| c.0),
        Some(close_code::NORMAL)
    );
    assert!(
        rec.wait(WAIT, |e| e.iter().any(
            |e| matches!(e, ServerEvent::Expired(x) if x.reason == ExpireReason::Closed)
        ))
        .await
    );
    assert_eq!(reliable.sessions(), 0);
    let mut p = TestPeer::hello_with(&server, &[], &neg, 0, 1).await;
    assert_eq!(
        p.expect_close().await.map(|c| c.0),
        Some(close_code::SESSION_GONE)
    );
    server.stop().await;
}
