//! Edges of the handshake, limits, unauthenticated peers, pongs and message
//! ids (issue 11, items 1 (server), 12, 13, 15). Real sockets on 127.0.0.1;
//! scripted peers are [`RawServer`] (a server) and [`RawConn::connect`] (a
//! client). Every wait is bounded.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::prelude::*;
use bytes::Bytes;
use resilient_ws::{
    protocol::{Frame, NegotiateResponse, SUBPROTOCOL},
    server::{MessageReceived, ReliableServer, ServerOptions, SessionOpened},
    testing::{
        opcode, EventRecorder, FaultProxy, RawConn, RawFrame, RawServer, RecordedEvent, TestServer,
    },
    ConnectionState, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

const WAIT: Duration = Duration::from_secs(10);

/// What the server application saw.
#[derive(Clone, Default)]
struct ServerLog {
    opened: Arc<Mutex<Vec<String>>>,
    received: Arc<Mutex<Vec<MessageReceived>>>,
}

struct ServerLogActor(ServerLog);
impl Actor for ServerLogActor {
    type Context = Context<Self>;
}
impl Handler<SessionOpened> for ServerLogActor {
    type Result = ();
    fn handle(&mut self, m: SessionOpened, _: &mut Context<Self>) {
        self.0.opened.lock().unwrap().push(m.connection_id);
    }
}
impl Handler<MessageReceived> for ServerLogActor {
    type Result = ();
    fn handle(&mut self, m: MessageReceived, _: &mut Context<Self>) {
        self.0.received.lock().unwrap().push(m);
    }
}

impl ServerLog {
    fn attach(reliable: &ReliableServer) -> ServerLog {
        let log = ServerLog::default();
        let addr = ServerLogActor(log.clone()).start();
        reliable.on_session_opened(addr.clone().recipient());
        reliable.on_message(addr.recipient());
        log
    }

    fn received(&self) -> Vec<MessageReceived> {
        self.received.lock().unwrap().clone()
    }

    fn opened(&self) -> Vec<String> {
        self.opened.lock().unwrap().clone()
    }
}

/// Polls `f` until it holds (bounded).
async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

fn stateful(url: String) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateful)
        .reconnect_delays(Duration::from_millis(5), Duration::from_millis(50), 0)
        .min_uptime(Duration::ZERO)
        .heartbeat(Duration::ZERO, None)
}

/// Ten pings of Autobahn cases 2.10/2.11: "payload-0".."payload-9".
fn ten_payloads() -> Vec<Vec<u8>> {
    (0..10)
        .map(|i| format!("payload-{i}").into_bytes())
        .collect()
}

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

async fn negotiate(server: &TestServer) -> NegotiateResponse {
    let mut resp = tokio::time::timeout(
        WAIT,
        awc::Client::default()
            .post(format!("http://{}/ws/negotiate", server.addr()))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    NegotiateResponse::parse(&resp.body().await.unwrap()).unwrap()
}

/// A raw protocol client past its WELCOME.
async fn reliable_raw(server: &TestServer) -> RawConn {
    let neg = negotiate(server).await;
    let mut c = RawConn::connect(
        server.addr(),
        "/ws",
        &[("Sec-WebSocket-Protocol", SUBPROTOCOL)],
    )
    .await
    .unwrap();
    let hello = Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: neg.reconnect_token.clone(),
        last_received: 0,
        first_seq: 1,
    };
    c.send_binary(&hello.to_bytes()).await.unwrap();
    let welcome = tokio::time::timeout(WAIT, c.read_frame())
        .await
        .unwrap()
        .unwrap();
    let frame = Frame::decode(Bytes::from(welcome.payload)).unwrap();
    assert!(matches!(frame, Frame::Welcome { .. }), "{frame:?}");
    c
}

// ---------------------------------------------------------------------------
// Item 13: every ping of a burst gets its pong; a flood stays bounded.

#[actix_rt::test]
async fn client_answers_each_of_ten_pings_in_a_row_autobahn_2_10() {
    let server = RawServer::bind().await.unwrap();
    let ws = ResilientWebSocket::builder(server.ws_url())
        .reconnect_mode(ReconnectMode::None)
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let pings = ten_payloads();
    conn.send_raw(&ping_burst(&pings, false)).await.unwrap();
    assert_eq!(read_pongs(&mut conn, 10).await, pings);
    assert_eq!(ws.state(), ConnectionState::Connected);
}

#[actix_rt::test]
async fn client_still_bounds_a_sustained_ping_flood() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(ResilientWebSocket::builder(server.ws_url()))
        .reconnect_mode(ReconnectMode::None)
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let pings = 20_000u32;
    let all: Vec<Vec<u8>> = (0..pings).map(|i| i.to_be_bytes().to_vec()).collect();
    conn.send_raw(&ping_burst(&all, false)).await.unwrap();
    // The newest ping is answered; pongs are far fewer than pings.
    let last = (pings - 1).to_be_bytes().to_vec();
    let mut pongs = 0u32;
    let read = async {
        loop {
            let f = conn.read_frame().await.unwrap();
            assert_eq!(f.opcode, opcode::PONG, "{f:?}");
            pongs += 1;
            if f.payload == last {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the newest ping answered");
    // The burst allowance plus one per 50 ms for however long reading took.
    assert!(pongs < 1000, "{pongs} pongs for {pings} pings");
    assert_eq!(ws.state(), ConnectionState::Connected);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}

#[actix_rt::test]
async fn server_answers_each_of_ten_pings_in_a_row_on_a_protocol_socket() {
    let (server, _reliable): (TestServer, ReliableServer) =
        TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let mut c = reliable_raw(&server).await;
    let pings = ten_payloads();
    c.send_raw(&ping_burst(&pings, true)).await.unwrap();
    assert_eq!(read_pongs(&mut c, 10).await, pings);
    server.stop().await;
}

#[actix_rt::test]
async fn server_answers_each_of_ten_pings_in_a_row_on_a_plain_socket() {
    let (server, _reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let mut c = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    let pings = ten_payloads();
    c.send_raw(&ping_burst(&pings, true)).await.unwrap();
    assert_eq!(read_pongs(&mut c, 10).await, pings);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Item 15: message ids the application can deduplicate with.

#[actix_rt::test]
async fn incoming_messages_carry_their_seq_in_reliable_mode_and_none_in_raw_mode() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let log = ServerLog::attach(&reliable);
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(server.ws_url()))
        .connect()
        .await
        .unwrap();
    assert!(wait_until(|| log.opened().len() == 1).await);
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
    let rec = EventRecorder::start();
    let ws = rec
        .attach(ResilientWebSocket::builder(plain.ws_url()))
        .connect()
        .await
        .unwrap();
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
    let options = ServerOptions {
        resume_window: Duration::from_millis(200),
        // Acks held long, so the messages are unacked when the link dies.
        ack_interval: Duration::from_secs(30),
        ack_threshold: 1_000_000,
        ..ServerOptions::default()
    };
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let log = ServerLog::attach(&reliable);
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            stateful(proxy.ws_url())
                .reconnect_delays(Duration::from_millis(600), Duration::from_millis(600), 0)
                .close_timeout(Duration::from_millis(200)),
        )
        .connect()
        .await
        .unwrap();
    ws.send("a").await.unwrap();
    ws.send("b").await.unwrap();
    assert!(wait_until(|| log.received().len() == 2).await);
    proxy.cut_all();
    assert!(rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::SessionLost(_)))
        .await
        .is_some());
    assert!(wait_until(|| log.received().len() == 4).await);
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
    assert!(wait_until(|| log.received().len() == 5).await);
    assert_ne!(log.received()[4].client_id, client);
    ws.disconnect().await.unwrap();
    other.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_negotiate_without_a_body_uses_the_connection_id_as_client_id() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let log = ServerLog::attach(&reliable);
    let mut c = reliable_raw(&server).await;
    c.send_binary(
        &Frame::Data {
            seq: 1,
            payload: "v1".into(),
        }
        .to_bytes(),
    )
    .await
    .unwrap();
    assert!(wait_until(|| log.received().len() == 1).await);
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
    let log = ServerLog::attach(&reliable);
    let rec = EventRecorder::start();
    let small = rec
        .attach(stateful(server.ws_url()).max_message_size(1000))
        .connect()
        .await
        .unwrap();
    assert!(wait_until(|| log.opened().len() == 1).await);
    let small_id = log.opened()[0].clone();
    let big_rec = EventRecorder::start();
    let big = big_rec
        .attach(stateful(server.ws_url()))
        .connect()
        .await
        .unwrap();
    assert!(wait_until(|| log.opened().len() == 2).await);

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
            .respond_json(200, &negotiate_body(None))
            .await
            .unwrap();
        let mut conn = server.accept_with(Some(SUBPROTOCOL)).await.unwrap();
        let hello = conn.read_frame().await.unwrap();
        assert_eq!(hello.payload[0], 0x01, "HELLO first");
        let welcome = Frame::Welcome {
            resumed: false,
            last_received: 0,
        };
        conn.send_binary(&welcome.to_bytes()).await.unwrap();
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
    assert!(
        matches!(
            e,
            resilient_ws::Error::MessageTooLarge {
                size: 1001,
                max: 1000
            }
        ),
        "{e:?}"
    );
}

/// A valid negotiate response, with `url` if given.
fn negotiate_body(url: Option<&str>) -> String {
    serde_json::json!({
        "protocol": SUBPROTOCOL,
        "version": 1,
        "connection_id": "0123456789abcdef0123456789abcdef",
        "reconnect_token": "Qm9vZ2llV29vZ2llQm9vZ2llV29vZ2llQm9vZ2llV29",
        "url": url,
        "resume_window_ms": 30000,
        "max_message_size": 1048576,
        "max_unacked_bytes": 1048576,
        "ack_interval_ms": 100,
        "ack_threshold": 64,
    })
    .to_string()
}

#[actix_rt::test]
async fn a_durable_client_keeps_its_client_id_across_a_crash_and_a_lost_session() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let options = ServerOptions {
        resume_window: Duration::from_millis(200),
        // Acks held long: what the first process sent is unacked when it
        // dies, so the second one re-sends it in a new session.
        ack_interval: Duration::from_secs(30),
        ack_threshold: 1_000_000,
        ..ServerOptions::default()
    };
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let log = ServerLog::attach(&reliable);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("client.store");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_rws"))
            .args(["connect", &server.ws_url(), "--mode", "stateful"])
            .arg("--store")
            .arg(&store)
            .args(["--initial-delay", "50ms", "--max-delay", "200ms"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rws connect")
    };
    let mut first = spawn();
    first.stdin.as_mut().unwrap().write_all(b"a\nb\n").unwrap();
    assert!(wait_until(|| log.received().len() == 2).await);
    first.kill().unwrap();
    first.wait().unwrap();
    // The session expires: the second process starts a new one.
    assert!(wait_until(|| reliable.sessions() == 0).await);
    let mut second = spawn();
    second.stdin.take().unwrap().write_all(b"c\n").unwrap();
    assert!(wait_until(|| log.received().len() == 5).await);
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
    let _ = second.kill();
    let _ = second.wait();
}

// ---------------------------------------------------------------------------
// Item 12: unauthenticated peers are cheap to serve.

async fn protocol_socket(server: &TestServer) -> RawConn {
    RawConn::connect(
        server.addr(),
        "/ws",
        &[("Sec-WebSocket-Protocol", SUBPROTOCOL)],
    )
    .await
    .unwrap()
}

/// Reads frames until a Close; its code (`None`: the stream ended first).
async fn close_code_of(conn: &mut RawConn) -> Option<u16> {
    let read = async {
        loop {
            match conn.read_frame().await {
                Ok(f) if f.opcode == opcode::CLOSE => return f.close_code(),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the socket is closed in time")
}

#[actix_rt::test]
async fn before_hello_a_socket_may_send_no_more_than_a_hello() {
    let options = ServerOptions {
        // Longer than the test waits: only the size rules may close.
        hello_timeout: Duration::from_secs(60),
        ..ServerOptions::default()
    };
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
                return Frame::decode(Bytes::from(f.payload)).unwrap();
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
    let options = ServerOptions {
        max_awaiting_hello: 2,
        hello_timeout: Duration::from_secs(60),
        ..ServerOptions::default()
    };
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
    let options = ServerOptions {
        anonymous_negotiate_limit: Some(resilient_ws::server::NegotiateRateLimit {
            max_requests: 3,
            window: Duration::from_secs(60),
        }),
        ..ServerOptions::default()
    };
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
    let body = negotiate_body(Some(&moved));
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
    let opts = resilient_ws::ClientOptions {
        allow_negotiate_redirect: true,
        ..Default::default()
    };
    let ws = ResilientWebSocket::builder(negotiator.ws_url())
        .options(opts)
        .reconnect_mode(ReconnectMode::Stateful)
        .heartbeat(Duration::ZERO, None)
        .auth_token(|| async { Ok("secret-token".to_owned()) })
        .build()
        .unwrap();
    let script = async {
        negotiator
            .respond_json(200, &negotiate_body(Some(&moved)))
            .await
            .unwrap();
        let mut conn = elsewhere.accept_with(Some(SUBPROTOCOL)).await.unwrap();
        assert_eq!(
            conn.request.header("authorization"),
            Some("Bearer secret-token")
        );
        conn.read_frame().await.unwrap();
        let welcome = Frame::Welcome {
            resumed: false,
            last_received: 0,
        };
        conn.send_binary(&welcome.to_bytes()).await.unwrap();
        conn
    };
    let (_conn, res) = tokio::join!(script, ws.connect());
    res.unwrap();
    assert_eq!(ws.state(), ConnectionState::Connected);
}

#[actix_rt::test]
async fn an_echo_server_does_not_echo_more_than_the_client_accepts() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let log = ServerLog::attach(&reliable);
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(server.ws_url()).max_message_size(1000))
        .connect()
        .await
        .unwrap();
    ws.send("x".repeat(1001)).await.unwrap();
    ws.send("small").await.unwrap();
    // The server got both; only the one the client accepts came back.
    assert!(wait_until(|| log.received().len() == 2).await);
    let got = rec.wait_messages(1, WAIT).await;
    assert_eq!(got, vec![resilient_ws::Payload::Text("small".into())]);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    assert_eq!(ws.state(), ConnectionState::Connected);
    ws.disconnect().await.unwrap();
}
