//! The reliable-protocol server (docs/PROTOCOL.md, server side) against a
//! hand-written protocol peer (`common::TestPeer`, awc + the frame codec),
//! on real sockets on 127.0.0.1: negotiate, acks, resume, sessions that are
//! gone, protocol violations. Plain clients, access, shutdown, session
//! ends and backpressure are in server_operations.rs. Every wait is
//! bounded.

mod common;

use std::time::Duration;

use awc::ws;
use bytes::Bytes;
use common::{
    data_seqs, negotiate, negotiate_with, text, user_auth, wait_until, In, Inbox, ServerEvent,
    TestPeer,
};
use resilient_ws::{
    close_code,
    protocol::{Frame, NegotiateResponse, SUBPROTOCOL},
    server::ServerOptions,
    testing::TestServer,
};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// 1. Negotiate, handshake, echo, acks.

#[actix_rt::test]
async fn negotiate_handshake_and_echo_with_acks() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let rec = Inbox::attach(&reliable);

    let neg = negotiate(&server).await;
    assert_eq!(neg.protocol, SUBPROTOCOL);
    assert_eq!(neg.version, 1);
    assert_eq!(neg.connection_id.len(), 32);
    assert_eq!(neg.reconnect_token.len(), 43);
    assert_eq!(neg.url, None);
    assert_eq!(neg.resume_window_ms, 30_000);
    assert_eq!(neg.max_message_size, 1024 * 1024);
    assert_eq!(neg.max_unacked_bytes, 1024 * 1024);
    assert_eq!(neg.ack_interval_ms, 100);
    assert_eq!(neg.ack_threshold, 64);
    assert_eq!(reliable.sessions(), 1);

    let mut p = TestPeer::connect(&server).await;
    assert_eq!(p.protocol.as_deref(), Some(SUBPROTOCOL));
    p.send_frame(Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: neg.reconnect_token.clone(),
        last_received: 0,
        first_seq: 1,
    })
    .await;
    assert_eq!(
        p.recv(WAIT).await,
        In::Frame(Frame::Welcome {
            resumed: false,
            last_received: 0
        })
    );
    assert!(
        rec.wait(WAIT, |e| e
            .iter()
            .any(|e| matches!(e, ServerEvent::Opened(o) if o.connection_id == neg.connection_id && o.identity.is_empty())))
            .await
    );
    assert!(wait_until(|| reliable.stats().attached == 1, WAIT).await);

    for i in 1..=100u64 {
        p.data(i, format!("m{i}")).await;
    }
    let mut echoed = Vec::new();
    let mut highest_ack = 0;
    while echoed.len() < 100 || highest_ack < 100 {
        match p.recv(WAIT).await {
            In::Frame(Frame::Data { seq, payload }) => echoed.push((seq, payload)),
            In::Frame(Frame::Ack { seq }) => {
                assert!(seq >= highest_ack, "acks are cumulative");
                highest_ack = seq;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for (i, (seq, payload)) in echoed.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(*seq, n);
        assert_eq!(text(payload), format!("m{n}"));
    }
    assert_eq!(highest_ack, 100);
    let msgs = rec.received();
    assert_eq!(
        msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    p.ack(100).await;
    p.close().await;
    assert!(wait_until(|| reliable.stats().attached == 0, WAIT).await);
    assert_eq!(reliable.sessions(), 1, "the session outlives its socket");
    server.stop().await;
}

#[actix_rt::test]
async fn acks_come_at_the_threshold_and_on_the_timer() {
    let mut options = ServerOptions::default();
    options.ack_threshold = 5;
    options.ack_interval = Duration::from_millis(1000);
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let rec = Inbox::attach(&reliable);
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;

    // Five deliveries: an ack at once, well before the timer.
    for i in 1..=5 {
        p.data(i, "x").await;
    }
    assert_eq!(
        p.recv(Duration::from_millis(800)).await,
        In::Frame(Frame::Ack { seq: 5 })
    );
    // One more: no ack until the interval passed, then one.
    p.data(6, "x").await;
    let start = std::time::Instant::now();
    assert_eq!(p.recv(WAIT).await, In::Frame(Frame::Ack { seq: 6 }));
    assert!(start.elapsed() >= Duration::from_millis(900));
    // After a resume, a duplicate is dropped but still acked.
    drop(p);
    let (mut p, resumed, last) = TestPeer::attach(&server, &neg, 0).await;
    assert!(resumed);
    assert_eq!(last, 6);
    p.data(6, "x").await;
    assert_eq!(p.recv(WAIT).await, In::Frame(Frame::Ack { seq: 6 }));
    assert_eq!(rec.received().len(), 6);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Resume.

#[actix_rt::test]
async fn resume_replays_what_was_missed_and_drops_duplicates() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let rec = Inbox::attach(&reliable);
    let neg = negotiate(&server).await;
    let (mut p, resumed, _) = TestPeer::attach(&server, &neg, 0).await;
    assert!(!resumed);

    for i in 1..=10u64 {
        p.data(i, format!("c{i}")).await;
    }
    assert_eq!(rec.wait_messages(10, WAIT).await.len(), 10);
    // Read only the first three echoes, then cut the socket abruptly.
    let got = p.recv_data(3).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    drop(p);

    let (mut p, resumed, last_received) = TestPeer::attach(&server, &neg, 3).await;
    assert!(resumed);
    assert_eq!(last_received, 10);
    // The server replays exactly what we did not get, in order.
    let replay = p.recv_data(7).await;
    assert_eq!(
        replay.iter().map(|g| g.0).collect::<Vec<_>>(),
        (4..=10).collect::<Vec<_>>()
    );
    for (seq, payload) in &replay {
        assert_eq!(text(payload), format!("c{seq}"));
    }
    // Client-side replay overlap: 9 and 10 are duplicates, 11 is new.
    p.data(9, "c9").await;
    p.data(10, "c10").await;
    p.data(11, "c11").await;
    let next = p.recv_data(1).await;
    assert_eq!(next[0].0, 11);
    assert_eq!(text(&next[0].1), "c11");
    // Nothing more arrives (no duplicate echo).
    let rest = p.drain(Duration::from_millis(300)).await;
    assert!(data_seqs(&rest).is_empty(), "unexpected {rest:?}");

    let msgs = rec.received();
    assert_eq!(
        msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>(),
        "each message delivered exactly once, in order"
    );
    assert!(rec
        .events()
        .iter()
        .any(|e| matches!(e, ServerEvent::Resumed(r) if r.connection_id == neg.connection_id)));
    server.stop().await;
}

#[actix_rt::test]
async fn a_newer_socket_replaces_the_older_with_4002() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let neg = negotiate(&server).await;
    let (mut old, _, _) = TestPeer::attach(&server, &neg, 0).await;
    old.data(1, "a").await;
    assert_eq!(old.recv_data(1).await[0].0, 1);

    let (mut new, resumed, last) = TestPeer::attach(&server, &neg, 1).await;
    assert!(resumed);
    assert_eq!(last, 1);
    assert_eq!(
        old.expect_close().await.map(|c| c.0),
        Some(close_code::REPLACED)
    );
    new.data(2, "b").await;
    let got = new.recv_data(1).await;
    assert_eq!((got[0].0, text(&got[0].1)), (2, "b"));
    assert_eq!(reliable.stats().attached, 1);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Session gone: 4001, indistinguishable; the real session is untouched.

#[actix_rt::test]
async fn wrong_token_identity_or_id_is_4001_and_the_session_is_untouched() {
    let (server, reliable) =
        TestServer::reliable_echo(user_auth(ServerOptions::default())).unwrap();
    let rec = Inbox::attach(&reliable);
    let alice = [("x-user", "alice")];
    let bob = [("x-user", "bob")];
    let neg = negotiate_with(&server, &alice).await.unwrap();

    let mut a = TestPeer::hello_with(&server, &alice, &neg, 0, 1).await;
    assert!(matches!(
        a.recv(WAIT).await,
        In::Frame(Frame::Welcome { resumed: false, .. })
    ));
    a.data(1, "one").await;
    assert_eq!(a.recv_data(1).await[0].0, 1);

    let mut forged = neg.clone();
    forged.reconnect_token = resilient_ws::protocol::new_reconnect_token();
    let mut unknown = neg.clone();
    unknown.connection_id = resilient_ws::protocol::new_connection_id();
    let cases: [(&[(&str, &str)], &NegotiateResponse); 3] =
        [(&alice, &forged), (&bob, &neg), (&alice, &unknown)];
    let mut reasons = Vec::new();
    for (headers, n) in cases {
        let mut p = TestPeer::hello_with(&server, headers, n, 0, 1).await;
        let close = p.expect_close().await.expect("a close frame");
        assert_eq!(close.0, close_code::SESSION_GONE);
        reasons.push(close.1);
    }
    assert!(
        reasons.iter().all(|r| r == &reasons[0]),
        "the cases are indistinguishable: {reasons:?}"
    );

    // The real socket was not replaced and still works.
    a.data(2, "two").await;
    let got = a.recv_data(1).await;
    assert_eq!((got[0].0, text(&got[0].1)), (2, "two"));
    drop(a);

    // And the right peer resumes it.
    let mut a = TestPeer::hello_with(&server, &alice, &neg, 2, 1).await;
    assert_eq!(
        a.recv(WAIT).await,
        In::Frame(Frame::Welcome {
            resumed: true,
            last_received: 2
        })
    );
    a.data(3, "three").await;
    assert_eq!(a.recv_data(1).await[0].0, 3);
    assert_eq!(
        rec.received().iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(rec
        .events()
        .iter()
        .any(|e| matches!(e, ServerEvent::Opened(o) if o.identity == "alice")));
    server.stop().await;
}

#[actix_rt::test]
async fn a_session_past_its_resume_window_is_4001() {
    let mut options = ServerOptions::default();
    options.resume_window = Duration::from_millis(200);
    let (server, reliable) = TestServer::reliable_echo(options).unwrap();
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    p.data(1, "x").await;
    assert_eq!(p.recv_data(1).await[0].0, 1);
    // Within the window a resume works...
    drop(p);
    assert!(wait_until(|| reliable.stats().attached == 0, WAIT).await);
    let (p, resumed, last) = TestPeer::attach(&server, &neg, 1).await;
    assert!(resumed);
    assert_eq!(last, 1);
    drop(p);
    // ...after it, the session is gone.
    assert!(wait_until(|| reliable.sessions() == 0, WAIT).await);
    let mut p = TestPeer::hello_with(&server, &[], &neg, 1, 1).await;
    assert_eq!(
        p.expect_close().await.map(|c| c.0),
        Some(close_code::SESSION_GONE)
    );
    server.stop().await;
}

/// The resume window counts from the last detach: the timer of an earlier
/// detach (the session resumed since) neither ends it early nor lingers
/// (it is cancelled on resume).
#[actix_rt::test]
async fn an_earlier_detachs_resume_window_timer_does_not_end_a_resumed_session() {
    let window = Duration::from_millis(1000);
    let mut options = ServerOptions::default();
    options.resume_window = window;
    let (server, reliable) = TestServer::reliable_echo(options).unwrap();
    let neg = negotiate(&server).await;
    let (p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    let first_detach = tokio::time::Instant::now();
    drop(p);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (p, resumed, _) = TestPeer::attach(&server, &neg, 0).await;
    assert!(resumed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(p);
    let second_detach = tokio::time::Instant::now();
    // Past the first detach's window, within the second's.
    tokio::time::sleep_until(first_detach + window + Duration::from_millis(200)).await;
    assert!(
        second_detach.elapsed() < window,
        "the machine was too slow for this check"
    );
    assert_eq!(
        reliable.sessions(),
        1,
        "ended by the earlier detach's timer"
    );
    // The second detach's window ends it.
    assert!(wait_until(|| reliable.sessions() == 0, WAIT).await);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Protocol violations: 1002/1009, the session survives.

#[actix_rt::test]
async fn protocol_violations_close_the_socket_but_keep_the_session() {
    let mut options = ServerOptions::default();
    options.max_message_size = 1024;
    options.hello_timeout = Duration::from_millis(300);
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let rec = Inbox::attach(&reliable);
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    for i in 1..=3 {
        p.data(i, format!("d{i}")).await;
    }
    assert_eq!(rec.wait_messages(3, WAIT).await.len(), 3);
    p.close().await;

    type Script = Vec<ws::Message>;
    let bin = |f: Frame| ws::Message::Binary(f.to_bytes());
    let data = |seq: u64| {
        bin(Frame::Data {
            seq,
            payload: "z".into(),
        })
    };
    let cases: Vec<(&str, Script, u16)> = vec![
        ("gap", vec![data(5)], close_code::PROTOCOL_ERROR),
        (
            "backwards",
            vec![data(2), data(1)],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "ack for unsent",
            vec![bin(Frame::Ack { seq: 1 })],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "unknown frame type",
            vec![ws::Message::Binary(Bytes::from_static(&[0x09, 1]))],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "truncated DATA",
            vec![ws::Message::Binary(Bytes::from_static(&[0x03]))],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "text message",
            vec![ws::Message::Text("hello".into())],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "second HELLO",
            vec![bin(Frame::Hello {
                connection_id: neg.connection_id.clone(),
                reconnect_token: neg.reconnect_token.clone(),
                last_received: 0,
                first_seq: 1,
            })],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "payload too big",
            vec![bin(Frame::Data {
                seq: 4,
                payload: vec![0u8; 2000].into(),
            })],
            close_code::MESSAGE_TOO_BIG,
        ),
    ];
    for (name, script, code) in cases {
        let (mut p, resumed, last) = TestPeer::attach(&server, &neg, 0).await;
        assert!(resumed, "{name}");
        assert_eq!(last, 3, "{name}: delivered unchanged");
        for m in script {
            p.send(m).await;
        }
        let close = p.expect_close().await;
        assert_eq!(close.map(|c| c.0), Some(code), "{name}");
    }

    // Before the handshake: a first frame other than HELLO, and no HELLO.
    let mut p = TestPeer::connect(&server).await;
    p.data(4, "early").await;
    assert_eq!(
        p.expect_close().await.map(|c| c.0),
        Some(close_code::PROTOCOL_ERROR)
    );
    let mut p = TestPeer::connect(&server).await;
    let start = std::time::Instant::now();
    assert_eq!(
        p.expect_close().await.map(|c| c.0),
        Some(close_code::PROTOCOL_ERROR),
        "no HELLO in time"
    );
    assert!(start.elapsed() >= Duration::from_millis(250));

    // The session is intact: resume, deliver the next message.
    let (mut p, resumed, last) = TestPeer::attach(&server, &neg, 0).await;
    assert!(resumed);
    assert_eq!(last, 3);
    p.data(4, "d4").await;
    assert_eq!(p.recv(WAIT).await, In::Frame(Frame::Ack { seq: 4 }));
    assert_eq!(
        rec.received().iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(reliable.sessions(), 1);
    server.stop().await;
}
