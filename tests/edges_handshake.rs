//! Edges of the handshake, limits, unauthenticated peers, pongs and message
//! ids (issue 11, items 1 (server), 12, 13, 15). Real sockets on 127.0.0.1;
//! scripted peers are [`RawServer`] (a server) and [`RawConn::connect`] (a
//! client). Every wait is bounded.

mod common;

use std::time::Duration;

use common::{
    assert_too_large, close_code_of, connect_recorded, decode, held_acks, negotiate,
    negotiate_body, pongs_until, protocol_socket, raw_pair, reliable_raw, stateful, wait_until,
    welcome, ChildGuard, Inbox,
};
use resilient_ws::{
    protocol::{Frame, SUBPROTOCOL},
    server::{ReliableServer, ServerOptions},
    testing::{
        opcode, EventRecorder, FaultProxy, RawConn, RawFrame, RawServer, RecordedEvent, TestServer,
    },
    ConnectionState, ReconnectMode, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(10);

/// `pings` as ping frames in one buffer, so they arrive back to back
/// (masked with a zero key when sent by a client).
fn ping_burst(pings: &[Vec<u8>], masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pings {
        assert!(p.len() < 126);
        out.push(0x80 | opcode::PING);
        if masked {
            out.push(0x80 | p.len() as u8);
            out.extend_from_slice(&[0, 0, 0, 0]);
        } else {
            out.push(p.len() as u8);
        }
        out.extend_from_slice(p);
    }
    out
}

/// Sends the ten pings of Autobahn cases 2.10/2.11 ("payload-0" to
/// "payload-9") in one burst (`masked` as a client does) and expects ten
/// pongs with their payloads, in order.
async fn ten_pings_get_ten_pongs(conn: &mut RawConn, masked: bool) {
    let pings: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("payload-{i}").into_bytes())
        .collect();
    conn.send_raw(&ping_burst(&pings, masked)).await.unwrap();
    assert_eq!(read_pongs(conn, 10).await, pings);
}

/// Reads frames until `n` pongs arrived (skipping anything else); their
/// payloads in order.
async fn read_pongs(conn: &mut RawConn, n: usize) -> Vec<Vec<u8>> {
    let mut pongs = Vec::new();
    let read = async {
        while pongs.len() < n {
            let f: RawFrame = conn.read_frame().await.expect("a frame");
            if f.opcode == opcode::PONG {
                pongs.push(f.payload);
            }
        }
    };
    let done = tokio::time::timeout(WAIT, read).await;
    assert!(done.is_ok(), "only {} pongs: {:?}", pongs.len(), pongs);
    pongs
}

// ---------------------------------------------------------------------------
// Item 13: every ping of a burst gets its pong; a flood stays bounded.

#[actix_rt::test]
async fn client_answers_each_of_ten_pings_in_a_row_autobahn_2_10() {
    let server = RawServer::bind().await.unwrap();
    let (ws, mut conn) = raw_pair(
        &server,
        ResilientWebSocket::builder(server.ws_url()).reconnect_mode(ReconnectMode::None),
    )
    .await;
    ten_pings_get_ten_pongs(&mut conn, false).await;
    assert_eq!(ws.state(), ConnectionState::Connected);
}

#[actix_rt::test]
async fn client_still_bounds_a_sustained_ping_flood() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let b = rec
        .attach(ResilientWebSocket::builder(server.ws_url()))
        .reconnect_mode(ReconnectMode::None);
    let (ws, mut conn) = raw_pair(&server, b).await;
    let pings = 20_000u32;
    let all: Vec<Vec<u8>> = (0..pings).map(|i| i.to_be_bytes().to_vec()).collect();
    conn.send_raw(&ping_burst(&all, false)).await.unwrap();
    // The newest ping is answered; pongs are far fewer than pings.
    let last = (pings - 1).to_be_bytes().to_vec();
    let pongs = pongs_until(&mut conn, &last).await;
    // The burst allowance plus one per 50 ms for however long reading took.
    assert!(pongs < 1000, "{pongs} pongs for {pings} pings");
    assert_eq!(ws.state(), ConnectionState::Connected);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}

#[actix_rt::test]
async fn server_answers_each_of_ten_pings_in_a_row_on_a_protocol_socket() {
    let (server, _reliable): (TestServer, ReliableServer) =
        TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let (mut c, _neg) = reliable_raw(&server).await;
    ten_pings_get_ten_pongs(&mut c, true).await;
    server.stop().await;
}

#[actix_rt::test]
async fn server_answers_each_of_ten_pings_in_a_row_on_a_plain_socket() {
    let (server, _reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let mut c = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    ten_pings_get_ten_pongs(&mut c, true).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Item 15: message ids the application can deduplicate with.

#[actix_rt::test]
async fn incoming_messages_carry_their_seq_in_reliable_mode_and_none_in_raw_mode() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let log = Inbox::attach(&reliable);
    let (ws, rec) = connect_recorded(stateful(server.ws_url())).await;
    assert!(wait_until(|| log.opened().len() == 1, WAIT).await);
    let id = log.opened()[0].clone();
    for i in 0..3 {
        reliable.send_to(&id, format!("s{i}")).await.unwrap();
    }
    rec.wait_messages(3, WAIT).await;
    let seqs: Vec<Option<u64>> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            RecordedEvent::Message(m) => Some(m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![Some(1), Some(2), Some(3)]);
    ws.disconnect().await.unwrap();

    // Raw mode: no seq.
    let plain = TestServer::echo().await.unwrap();
    let (ws, rec) = connect_recorded(ResilientWebSocket::builder(plain.ws_url())).await;
    ws.send("x").await.unwrap();
    rec.wait_messages(1, WAIT).await;
    let m = rec.events().into_iter().find_map(|e| match e {
        RecordedEvent::Message(m) => Some(m),
        _ => None,
    });
    assert_eq!(m.unwrap().seq, None);
}

#[actix_rt::test]
async fn the_client_id_survives_a_lost_session_so_a_resent_message_is_recognised() {
    // Acks held long, so the messages are unacked when the link dies.
    let (server, reliable) = TestServer::reliable(held_acks(Duration::from_millis(200))).unwrap();
    let log = Inbox::attach(&reliable);
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (ws, rec) = connect_recorded(
        stateful(proxy.ws_url())
            .reconnect_delays(Duration::from_millis(600), Duration::from_millis(600), 0)
            .close_timeout(Duration::from_millis(200)),
    )
    .await;
    ws.send("a").await.unwrap();
    ws.send("b").await.unwrap();
    assert!(wait_until(|| log.received().len() == 2, WAIT).await);
    proxy.cut_all();
    assert!(rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::SessionLost(_)))
        .await
        .is_some());
    assert!(wait_until(|| log.received().len() == 4, WAIT).await);
    let got = log.received();
    // Delivered twice (at least once across a lost session), in two
    // sessions, by one client: (client_id, seq) names each message.
    assert_ne!(got[0].connection_id, got[2].connection_id);
    let ids: Vec<(&str, u64, &str)> = got
        .iter()
        .map(|m| (m.client_id.as_str(), m.seq, m.payload.as_text().unwrap()))
        .collect();
    let client = got[0].client_id.as_str();
    assert_eq!(client.len(), 32, "128 random bits in hex: {client}");
    assert_eq!(
        ids,
        vec![
            (client, 1, "a"),
            (client, 2, "b"),
            (client, 1, "a"),
            (client, 2, "b")
        ]
    );
    // Another client has another id.
    let other = stateful(server.ws_url()).connect().await.unwrap();
    other.send("c").await.unwrap();
    assert!(wait_until(|| log.received().len() == 5, WAIT).await);
    assert_ne!(log.received()[4].client_id, client);
    ws.disconnect().await.unwrap();
    other.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_negotiate_without_a_body_uses_the_connection_id_as_client_id() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let log = Inbox::attach(&reliable);
    let (mut c, _neg) = reliable_raw(&server).await;
    c.send_binary(
        &Frame::Data {
            seq: 1,
            payload: "v1".into(),
        }
        .to_bytes(),
    )
    .await
    .unwrap();
    assert!(wait_until(|| log.received().len() == 1, WAIT).await);
    let m = &log.received()[0];
    assert_eq!(m.client_id, m.connection_id);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Item 1 (server part): the client's limit is respected by send_to and
// broadcast.

#[actix_rt::test]
async fn send_to_and_broadcast_refuse_a_message_over_the_clients_limit() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let log = Inbox::attach(&reliable);
    let (small, rec) = connect_recorded(stateful(server.ws_url()).max_message_size(1000)).await;
    assert!(wait_until(|| log.opened().len() == 1, WAIT).await);
    let small_id = log.opened()[0].clone();
    let (big, big_rec) = connect_recorded(stateful(server.ws_url())).await;
    assert!(wait_until(|| log.opened().len() == 2, WAIT).await);

    let over = "x".repeat(1001);
    let r = reliable.send_to(&small_id, over.clone()).await;
    assert!(
        matches!(
            r,
            Err(resilient_ws::server::ServerError::MessageTooLarge {
                size: 1001,
                max: 1000
            })
        ),
        "{r:?}"
    );
    // The broadcast skips the small client and reaches the other one.
    assert_eq!(reliable.broadcast(over.clone()), 1);
    assert_eq!(big_rec.wait_messages(1, WAIT).await[0].len(), 1001);
    assert_eq!(reliable.stats().broadcast_skipped, 1);
    // Exactly the limit passes, and the small client is still fine.
    reliable.send_to(&small_id, "y".repeat(1000)).await.unwrap();
    assert_eq!(rec.wait_messages(1, WAIT).await[0].len(), 1000);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    assert_eq!(small.state(), ConnectionState::Connected);
    small.disconnect().await.unwrap();
    big.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn against_a_server_that_ignores_the_limit_the_client_closes_1009() {
    // A v1 server that predates the negotiate body: it sends a DATA payload
    // over the client's limit; the client refuses it with a clear error.
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(server.ws_url()).max_message_size(1000))
        .reconnect_mode(ReconnectMode::Stateful)
        .build()
        .unwrap();
    let script = async {
        server
            .respond_json(200, &negotiate_body(None, 1 << 20, 100))
            .await
            .unwrap();
        let mut conn = server.accept_with(Some(SUBPROTOCOL)).await.unwrap();
        let hello = conn.read_frame().await.unwrap();
        assert_eq!(hello.payload[0], 0x01, "HELLO first");
        welcome(&mut conn, 0).await;
        conn
    };
    let (mut conn, res) = tokio::join!(script, ws.connect());
    res.unwrap();
    let over = Frame::Data {
        seq: 1,
        payload: "x".repeat(1001).into(),
    };
    conn.send_binary(&over.to_bytes()).await.unwrap();
    let close = tokio::time::timeout(WAIT, async {
        loop {
            let f = conn.read_frame().await.unwrap();
            if f.opcode == opcode::CLOSE {
                return f.close_code();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(close, Some(1009));
    let e = rec
        .wait_until(WAIT, |ev| {
            ev.iter().find_map(|e| match e {
                RecordedEvent::Error(e) => Some(e.error.clone()),
                _ => None,
            })
        })
        .await
        .expect("an error event");
    assert_too_large(&e, 1001, 1000);
}

#[actix_rt::test]
async fn a_durable_client_keeps_its_client_id_across_a_crash_and_a_lost_session() {
    use std::io::Write as _;
    use std::process::Stdio;

    // Acks held long: what the first process sent is unacked when it
    // dies, so the second one re-sends it in a new session.
    let (server, reliable) = TestServer::reliable(held_acks(Duration::from_millis(200))).unwrap();
    let log = Inbox::attach(&reliable);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("client.store");
    let spawn = || {
        ChildGuard(
            common::rws_command()
                .args(["connect", &server.ws_url(), "--mode", "stateful"])
                .arg("--store")
                .arg(&store)
                .args(["--initial-delay", "50ms", "--max-delay", "200ms"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn rws connect"),
        )
    };
    let mut first = spawn();
    first.stdin.as_mut().unwrap().write_all(b"a\nb\n").unwrap();
    assert!(wait_until(|| log.received().len() == 2, WAIT).await);
    first.kill().unwrap();
    first.wait().unwrap();
    // The session expires: the second process starts a new one.
    assert!(wait_until(|| reliable.sessions() == 0, WAIT).await);
    let mut second = spawn();
    second.stdin.take().unwrap().write_all(b"c\n").unwrap();
    assert!(wait_until(|| log.received().len() == 5, WAIT).await);
    let got = log.received();
    let seen: Vec<(u64, &str)> = got
        .iter()
        .map(|m| (m.seq, m.payload.as_text().unwrap()))
        .collect();
    assert_eq!(seen, vec![(1, "a"), (2, "b"), (1, "a"), (2, "b"), (3, "c")]);
    assert_ne!(got[0].connection_id, got[2].connection_id, "a new session");
    assert!(
        got.iter().all(|m| m.client_id == got[0].client_id),
        "one client id: {:?}",
        got.iter().map(|m| &m.client_id).collect::<Vec<_>>()
    );
    assert_ne!(got[0].client_id, got[0].connection_id);
}

// ---------------------------------------------------------------------------
// Item 12: unauthenticated peers are cheap to serve.

#[actix_rt::test]
async fn before_hello_a_socket_may_send_no_more_than_a_hello() {
    let mut options = ServerOptions::default();
    // Longer than the test waits: only the size rules may close.
    options.hello_timeout = Duration::from_secs(60);
    let (server, _reliable) = TestServer::reliable(options).unwrap();
    // One message larger than the largest HELLO.
    let mut c = protocol_socket(&server).await;
    c.send_binary(&vec![0x01; resilient_ws::protocol::MAX_HELLO_LEN + 1])
        .await
        .unwrap();
    assert_eq!(close_code_of(&mut c).await, Some(1009));
    // Small pings adding up to more than a HELLO.
    let mut c = protocol_socket(&server).await;
    for _ in 0..5 {
        c.send_frame(true, opcode::PING, &[7; 120]).await.unwrap();
    }
    assert_eq!(close_code_of(&mut c).await, Some(1008));
    // Pings within the budget, then the largest HELLO, are fine.
    let neg = negotiate(&server).await;
    let mut c = protocol_socket(&server).await;
    for _ in 0..3 {
        c.send_frame(true, opcode::PING, &[7; 100]).await.unwrap();
    }
    let hello = Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: neg.reconnect_token.clone(),
        last_received: 0,
        first_seq: 1,
    };
    c.send_binary(&hello.to_bytes()).await.unwrap();
    let welcome = tokio::time::timeout(WAIT, async {
        loop {
            let f = c.read_frame().await.unwrap();
            if f.opcode == opcode::BINARY {
                return decode(&f);
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");
    // After HELLO the full limit applies: a message of 100 KB is data.
    c.send_binary(
        &Frame::Data {
            seq: 1,
            payload: "z".repeat(100_000).into(),
        }
        .to_bytes(),
    )
    .await
    .unwrap();
    c.send_close(1000, "").await.unwrap();
    assert_eq!(close_code_of(&mut c).await, Some(1000));
    server.stop().await;
}

#[actix_rt::test]
async fn the_sockets_waiting_for_hello_are_capped() {
    let mut options = ServerOptions::default();
    options.max_awaiting_hello = 2;
    options.hello_timeout = Duration::from_secs(60);
    let (server, _reliable) = TestServer::reliable(options).unwrap();
    let a = protocol_socket(&server).await;
    let _b = protocol_socket(&server).await;
    let third = RawConn::connect(
        server.addr(),
        "/ws",
        &[("Sec-WebSocket-Protocol", SUBPROTOCOL)],
    )
    .await
    .unwrap_err();
    assert!(third.to_string().contains("503"), "{third}");
    // Plain sockets are not protocol sockets: not counted.
    let plain = RawConn::connect(server.addr(), "/ws", &[]).await;
    assert!(plain.is_ok(), "{plain:?}");
    // A waiting socket goes away: there is room again.
    drop(a);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match RawConn::connect(
            server.addr(),
            "/ws",
            &[("Sec-WebSocket-Protocol", SUBPROTOCOL)],
        )
        .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(e.to_string().contains("503"), "{e}");
                assert!(std::time::Instant::now() < deadline, "no room freed");
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    server.stop().await;
}

async fn negotiate_status(server: &TestServer, body: &str) -> (u16, Option<String>) {
    let resp = tokio::time::timeout(
        WAIT,
        awc::Client::default()
            .post(format!("http://{}/ws/negotiate", server.addr()))
            .send_body(body.to_owned()),
    )
    .await
    .unwrap()
    .unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), retry)
}

#[actix_rt::test]
async fn anonymous_negotiates_are_limited_per_address() {
    let mut options = ServerOptions::default();
    options.anonymous_negotiate_limit = Some(resilient_ws::server::NegotiateRateLimit {
        max_requests: 3,
        window: Duration::from_secs(60),
    });
    let (server, reliable) = TestServer::reliable(options.clone()).unwrap();
    for _ in 0..3 {
        assert_eq!(negotiate_status(&server, "").await.0, 200);
    }
    let (status, retry) = negotiate_status(&server, "").await;
    assert_eq!(status, 429);
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    assert_eq!(reliable.sessions(), 3, "no session for the refused one");
    server.stop().await;

    // Authenticated callers are bounded per identity instead.
    let authed = options.with_auth(|_| Ok("user-1".to_owned()));
    let (server, _reliable) = TestServer::reliable(authed).unwrap();
    for _ in 0..5 {
        assert_eq!(negotiate_status(&server, "").await.0, 200);
    }
    server.stop().await;
}

#[actix_rt::test]
async fn negotiate_bodies_are_checked() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let ok = r#"{"client_id":"app-1","max_message_size":5000}"#;
    assert_eq!(negotiate_status(&server, ok).await.0, 200);
    assert_eq!(negotiate_status(&server, "{}").await.0, 200);
    for bad in [
        r#"{"client_id":"no spaces"}"#,
        r#"{"max_message_size":0}"#,
        "[1]",
        "{",
    ] {
        assert_eq!(negotiate_status(&server, bad).await.0, 400, "{bad}");
    }
    let huge = format!(r#"{{"pad":"{}"}}"#, "a".repeat(10_000));
    assert_eq!(negotiate_status(&server, &huge).await.0, 413);
    assert_eq!(reliable.sessions(), 2);
    server.stop().await;
}

#[actix_rt::test]
async fn a_negotiate_url_to_another_host_is_not_followed_and_gets_no_token() {
    let negotiator = RawServer::bind().await.unwrap();
    let elsewhere = RawServer::bind().await.unwrap();
    // "localhost" is another host than the 127.0.0.1 the client was given.
    let moved = format!("ws://localhost:{}/ws", elsewhere.addr().port());
    let ws = stateful(negotiator.ws_url())
        .auth_token(|| async { Ok("secret-token".to_owned()) })
        .build()
        .unwrap();
    let body = negotiate_body(Some(&moved), 1 << 20, 100);
    let (req, res) = tokio::join!(negotiator.respond_json(200, &body), ws.connect());
    let req = req.unwrap();
    assert_eq!(req.header("authorization"), Some("Bearer secret-token"));
    let e = res.unwrap_err();
    assert!(
        matches!(&e, resilient_ws::Error::Negotiate(m) if m.contains("another host")),
        "{e:?}"
    );
    // Nothing reached the other host: connect() has returned, and the
    // attempt that would have gone there was the one that failed.
    let contacted = tokio::time::timeout(Duration::from_millis(50), elsewhere.accept_tcp()).await;
    assert!(contacted.is_err(), "the other host was contacted");

    // (A downgrade from wss to ws: see the transport unit tests.)
}

#[actix_rt::test]
async fn an_allowed_negotiate_redirect_is_followed_with_the_token() {
    let negotiator = RawServer::bind().await.unwrap();
    let elsewhere = RawServer::bind().await.unwrap();
    let moved = format!("ws://localhost:{}/ws", elsewhere.addr().port());
    let mut opts = resilient_ws::ClientOptions::default();
    opts.allow_negotiate_redirect = true;
    let ws = ResilientWebSocket::builder(negotiator.ws_url())
        .options(opts)
        .reconnect_mode(ReconnectMode::Stateful)
        .heartbeat(Duration::ZERO, None)
        .auth_token(|| async { Ok("secret-token".to_owned()) })
        .build()
        .unwrap();
    let script = async {
        negotiator
            .respond_json(200, &negotiate_body(Some(&moved), 1 << 20, 100))
            .await
            .unwrap();
        let mut conn = elsewhere.accept_with(Some(SUBPROTOCOL)).await.unwrap();
        assert_eq!(
            conn.request.header("authorization"),
            Some("Bearer secret-token")
        );
        conn.read_frame().await.unwrap();
        welcome(&mut conn, 0).await;
        conn
    };
    let (_conn, res) = tokio::join!(script, ws.connect());
    res.unwrap();
    assert_eq!(ws.state(), ConnectionState::Connected);
}

#[actix_rt::test]
async fn an_echo_server_does_not_echo_more_than_the_client_accepts() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let log = Inbox::attach(&reliable);
    let (ws, rec) = connect_recorded(stateful(server.ws_url()).max_message_size(1000)).await;
    ws.send("x".repeat(1001)).await.unwrap();
    ws.send("small").await.unwrap();
    // The server got both; only the one the client accepts came back.
    assert!(wait_until(|| log.received().len() == 2, WAIT).await);
    let got = rec.wait_messages(1, WAIT).await;
    assert_eq!(got, vec![resilient_ws::Payload::Text("small".into())]);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    assert_eq!(ws.state(), ConnectionState::Connected);
    ws.disconnect().await.unwrap();
}
