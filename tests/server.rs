//! The reliable-protocol server (docs/PROTOCOL.md, server side) against a
//! hand-written protocol peer (`TestPeer`, awc + the frame codec), on real
//! sockets on 127.0.0.1. Every wait is bounded.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::prelude::*;
use actix_codec::Framed;
use awc::{ws, BoxedSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use resilient_ws::{
    close_code,
    protocol::{Frame, NegotiateResponse, ShutdownAdvice, SUBPROTOCOL},
    server::{
        AuthRefusal, ExpireReason, MessageReceived, PlainMode, ReliableServer, ServerOptions,
        SessionExpired, SessionOpened, SessionResumed,
    },
    testing::TestServer,
    Payload,
};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A recorder for the server's events.

#[derive(Debug, Clone)]
enum Ev {
    Opened(SessionOpened),
    Resumed(SessionResumed),
    Expired(SessionExpired),
    Message(MessageReceived),
}

struct RecorderActor(Arc<Mutex<Vec<Ev>>>);

impl Actor for RecorderActor {
    type Context = Context<Self>;
}

macro_rules! record {
    ($ty:ty, $v:ident) => {
        impl Handler<$ty> for RecorderActor {
            type Result = ();
            fn handle(&mut self, msg: $ty, _: &mut Context<Self>) {
                self.0.lock().unwrap().push(Ev::$v(msg));
            }
        }
    };
}
record!(SessionOpened, Opened);
record!(SessionResumed, Resumed);
record!(SessionExpired, Expired);
record!(MessageReceived, Message);

#[derive(Clone)]
struct Recorder(Arc<Mutex<Vec<Ev>>>);

impl Recorder {
    fn attach(server: &ReliableServer) -> Recorder {
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = RecorderActor(log.clone()).start();
        server
            .on_session_opened(addr.clone().recipient())
            .on_session_resumed(addr.clone().recipient())
            .on_session_expired(addr.clone().recipient())
            .on_message(addr.recipient());
        Recorder(log)
    }

    fn events(&self) -> Vec<Ev> {
        self.0.lock().unwrap().clone()
    }

    fn messages(&self) -> Vec<MessageReceived> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn expired(&self) -> Vec<SessionExpired> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Expired(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Polls `check` until it is true or `timeout` passes.
    async fn wait(&self, timeout: Duration, mut check: impl FnMut(&[Ev]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check(&self.0.lock().unwrap()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_messages(&self, n: usize) -> Vec<MessageReceived> {
        self.wait(WAIT, |evs| {
            evs.iter().filter(|e| matches!(e, Ev::Message(_))).count() >= n
        })
        .await;
        self.messages()
    }
}

// ---------------------------------------------------------------------------
// A hand-written protocol client.

/// What the peer read from its socket.
#[derive(Debug, Clone, PartialEq)]
enum In {
    Frame(Frame),
    Text(String),
    Binary(Bytes),
    Close(Option<u16>, String),
    /// The TCP stream ended without a Close frame.
    End,
    /// Nothing within the wait.
    Timeout,
}

fn negotiate_url(server: &TestServer) -> String {
    format!("http://{}/ws/negotiate", server.addr())
}

/// POSTs negotiate with `headers`; the parsed response or the HTTP status.
async fn negotiate_with(
    server: &TestServer,
    headers: &[(&str, &str)],
) -> Result<NegotiateResponse, u16> {
    let mut req = awc::Client::default().post(negotiate_url(server));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("negotiate in time")
        .expect("negotiate request");
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let body = resp.body().await.expect("negotiate body");
    Ok(NegotiateResponse::parse(&body).expect("a valid negotiate response"))
}

async fn negotiate(server: &TestServer) -> NegotiateResponse {
    negotiate_with(server, &[]).await.expect("negotiate 200")
}

struct TestPeer {
    framed: Framed<BoxedSocket, ws::Codec>,
    /// The subprotocol the server answered with.
    protocol: Option<String>,
    /// Whether binary messages are protocol frames (decoded) or plain.
    reliable: bool,
}

impl TestPeer {
    /// Opens a socket (with the subprotocol when `reliable`), or the HTTP
    /// status of a refused upgrade.
    async fn open(
        server: &TestServer,
        reliable: bool,
        headers: &[(&str, &str)],
    ) -> Result<TestPeer, u16> {
        let mut req = awc::Client::default().ws(server.ws_url());
        if reliable {
            req = req.protocols([SUBPROTOCOL]);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match tokio::time::timeout(WAIT, req.connect())
            .await
            .expect("connect in time")
        {
            Ok((resp, framed)) => Ok(TestPeer {
                framed,
                protocol: resp
                    .headers()
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap().to_owned()),
                reliable,
            }),
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s.as_u16()),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    async fn connect(server: &TestServer) -> TestPeer {
        Self::open(server, true, &[]).await.expect("upgrade")
    }

    /// Opens a socket and sends HELLO; does not read the answer.
    async fn hello_with(
        server: &TestServer,
        headers: &[(&str, &str)],
        neg: &NegotiateResponse,
        last_received: u64,
        first_seq: u64,
    ) -> TestPeer {
        let mut p = Self::open(server, true, headers).await.expect("upgrade");
        p.send_frame(Frame::Hello {
            connection_id: neg.connection_id.clone(),
            reconnect_token: neg.reconnect_token.clone(),
            last_received,
            first_seq,
        })
        .await;
        p
    }

    /// Opens a socket, sends HELLO and expects WELCOME; returns it.
    async fn attach(
        server: &TestServer,
        neg: &NegotiateResponse,
        last_received: u64,
    ) -> (TestPeer, bool, u64) {
        let mut p = Self::hello_with(server, &[], neg, last_received, 1).await;
        match p.recv(WAIT).await {
            In::Frame(Frame::Welcome {
                resumed,
                last_received,
            }) => (p, resumed, last_received),
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    async fn send_frame(&mut self, f: Frame) {
        self.send(ws::Message::Binary(f.to_bytes())).await;
    }

    async fn send(&mut self, m: ws::Message) {
        tokio::time::timeout(WAIT, self.framed.send(m))
            .await
            .expect("send in time")
            .expect("send");
    }

    async fn data(&mut self, seq: u64, payload: impl Into<Payload>) {
        self.send_frame(Frame::Data {
            seq,
            payload: payload.into(),
        })
        .await;
    }

    async fn ack(&mut self, seq: u64) {
        self.send_frame(Frame::Ack { seq }).await;
    }

    /// The next meaningful thing from the socket (pings answered, pongs
    /// skipped), within `timeout`.
    async fn recv(&mut self, timeout: Duration) -> In {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let item = match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => return In::Timeout,
                Ok(item) => item,
            };
            match item {
                None | Some(Err(_)) => return In::End,
                Some(Ok(ws::Frame::Binary(b))) if self.reliable => {
                    return In::Frame(Frame::decode(b).expect("server frames decode"))
                }
                Some(Ok(ws::Frame::Binary(b))) => return In::Binary(b),
                Some(Ok(ws::Frame::Text(t))) => {
                    return In::Text(String::from_utf8(t.to_vec()).unwrap())
                }
                Some(Ok(ws::Frame::Close(r))) => {
                    return In::Close(
                        r.as_ref().map(|r| r.code.into()),
                        r.and_then(|r| r.description).unwrap_or_default(),
                    )
                }
                Some(Ok(ws::Frame::Ping(p))) => {
                    let _ = self.framed.send(ws::Message::Pong(p)).await;
                }
                Some(Ok(ws::Frame::Pong(_))) => {}
                Some(Ok(ws::Frame::Continuation(_))) => panic!("unexpected continuation"),
            }
        }
    }

    /// Reads until a Close frame (skipping everything else); its code and
    /// reason, `None` if the stream ended or timed out first.
    async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.recv(WAIT).await {
                In::Close(code, reason) => return Some((code.unwrap_or(1005), reason)),
                In::End | In::Timeout => return None,
                _ => {}
            }
        }
    }

    /// Reads server DATA until `n` arrived (skipping acks); panics on
    /// anything else.
    async fn recv_data(&mut self, n: usize) -> Vec<(u64, Payload)> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.recv(WAIT).await {
                In::Frame(Frame::Data { seq, payload }) => got.push((seq, payload)),
                In::Frame(Frame::Ack { .. }) => {}
                other => panic!("expected DATA, got {other:?} after {}", got.len()),
            }
        }
        got
    }

    /// Collects everything but pings for `window`.
    async fn drain(&mut self, window: Duration) -> Vec<In> {
        let deadline = tokio::time::Instant::now() + window;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                In::Timeout => return got,
                i @ (In::End | In::Close(..)) => {
                    got.push(i);
                    return got;
                }
                i => got.push(i),
            }
        }
    }

    /// Sends our Close and waits for the answer.
    /// Closes the socket with 1001 (going away): the socket ends, the
    /// session stays resumable. (A 1000 would end the session.)
    async fn close(mut self) {
        let _ = self
            .framed
            .send(ws::Message::Close(Some(ws::CloseCode::Away.into())))
            .await;
        let _ = self.expect_close().await;
    }
}

fn data_seqs(ins: &[In]) -> Vec<u64> {
    ins.iter()
        .filter_map(|i| match i {
            In::Frame(Frame::Data { seq, .. }) => Some(*seq),
            _ => None,
        })
        .collect()
}

fn text(p: &Payload) -> &str {
    p.as_text().expect("a text payload")
}

/// Waits until `f` holds, polling; bounded.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

fn user_auth(options: ServerOptions) -> ServerOptions {
    options.with_auth(
        |req| match req.headers().get("x-user").and_then(|v| v.to_str().ok()) {
            Some("mallory") => Err(AuthRefusal::Forbidden),
            Some(u) => Ok(u.to_owned()),
            None => Err(AuthRefusal::Unauthorized),
        },
    )
}

// ---------------------------------------------------------------------------
// 1. Negotiate, handshake, echo, acks.

#[actix_rt::test]
async fn negotiate_handshake_and_echo_with_acks() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let rec = Recorder::attach(&reliable);

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
            .any(|e| matches!(e, Ev::Opened(o) if o.connection_id == neg.connection_id && o.identity.is_empty())))
            .await
    );
    assert!(eventually(WAIT, || reliable.stats().attached == 1).await);

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
    let msgs = rec.messages();
    assert_eq!(
        msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    p.ack(100).await;
    p.close().await;
    assert!(eventually(WAIT, || reliable.stats().attached == 0).await);
    assert_eq!(reliable.sessions(), 1, "the session outlives its socket");
    server.stop().await;
}

#[actix_rt::test]
async fn acks_come_at_the_threshold_and_on_the_timer() {
    let options = ServerOptions {
        ack_threshold: 5,
        ack_interval: Duration::from_millis(1000),
        ..ServerOptions::default()
    };
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let rec = Recorder::attach(&reliable);
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
    assert_eq!(rec.messages().len(), 6);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Resume.

#[actix_rt::test]
async fn resume_replays_what_was_missed_and_drops_duplicates() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let rec = Recorder::attach(&reliable);
    let neg = negotiate(&server).await;
    let (mut p, resumed, _) = TestPeer::attach(&server, &neg, 0).await;
    assert!(!resumed);

    for i in 1..=10u64 {
        p.data(i, format!("c{i}")).await;
    }
    assert_eq!(rec.wait_messages(10).await.len(), 10);
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

    let msgs = rec.messages();
    assert_eq!(
        msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>(),
        "each message delivered exactly once, in order"
    );
    assert!(rec
        .events()
        .iter()
        .any(|e| matches!(e, Ev::Resumed(r) if r.connection_id == neg.connection_id)));
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
    let rec = Recorder::attach(&reliable);
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
        rec.messages().iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(rec
        .events()
        .iter()
        .any(|e| matches!(e, Ev::Opened(o) if o.identity == "alice")));
    server.stop().await;
}

#[actix_rt::test]
async fn a_session_past_its_resume_window_is_4001() {
    let options = ServerOptions {
        resume_window: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let (server, reliable) = TestServer::reliable_echo(options).unwrap();
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    p.data(1, "x").await;
    assert_eq!(p.recv_data(1).await[0].0, 1);
    // Within the window a resume works...
    drop(p);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (p, resumed, last) = TestPeer::attach(&server, &neg, 1).await;
    assert!(resumed);
    assert_eq!(last, 1);
    drop(p);
    // ...after it, the session is gone.
    assert!(eventually(WAIT, || reliable.sessions() == 0).await);
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
    let options = ServerOptions {
        resume_window: window,
        ..ServerOptions::default()
    };
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
    assert!(eventually(WAIT, || reliable.sessions() == 0).await);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Protocol violations: 1002/1009, the session survives.

#[actix_rt::test]
async fn protocol_violations_close_the_socket_but_keep_the_session() {
    let options = ServerOptions {
        max_message_size: 1024,
        hello_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let rec = Recorder::attach(&reliable);
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    for i in 1..=3 {
        p.data(i, format!("d{i}")).await;
    }
    assert_eq!(rec.wait_messages(3).await.len(), 3);
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
        rec.messages().iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(reliable.sessions(), 1);
    server.stop().await;
}

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
    assert!(eventually(WAIT, || reliable.stats().plain_clients == 0).await);
    server.stop().await;
}

#[actix_rt::test]
async fn plain_reject_mode_answers_426() {
    let options = ServerOptions {
        plain: PlainMode::Reject,
        ..ServerOptions::default()
    };
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
    let options = ServerOptions {
        plain: PlainMode::Broadcast,
        ..ServerOptions::default()
    };
    let reliable = ReliableServer::broadcast_mode(options);
    let server =
        TestServer::serve_reliable(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), &reliable)
            .unwrap();
    let neg1 = negotiate(&server).await;
    let neg2 = negotiate(&server).await;
    let (mut r1, _, _) = TestPeer::attach(&server, &neg1, 0).await;
    let (mut r2, _, _) = TestPeer::attach(&server, &neg2, 0).await;
    let mut plain = TestPeer::open(&server, false, &[]).await.unwrap();
    assert!(eventually(WAIT, || reliable.stats().plain_clients == 1).await);

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
    let options = user_auth(ServerOptions {
        allowed_origins: Some(vec!["http://good.example".into()]),
        ..ServerOptions::default()
    });
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
    assert!(eventually(WAIT, || reliable.stats().plain_clients == 1).await);

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
    let options = ServerOptions {
        resume_window: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let rec = Recorder::attach(&reliable);

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
    rec.wait_messages(1).await;
    drop(p);

    assert!(
        rec.wait(WAIT, |e| e
            .iter()
            .filter(|e| matches!(e, Ev::Expired(_)))
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
    let options = ServerOptions {
        max_unacked_bytes: 1000,
        ..ServerOptions::default()
    };
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
    let options = ServerOptions {
        max_unacked_bytes: 1000,
        ..ServerOptions::default()
    };
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let rec = Recorder::attach(&reliable);
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
            Ev::Expired(x) if x.reason == ExpireReason::Overflow && x.undelivered == 51
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
    let rec = Recorder::attach(&reliable);
    let neg = negotiate(&server).await;
    let (mut p, _, _) = TestPeer::attach(&server, &neg, 0).await;
    reliable.close_session(&neg.connection_id).unwrap();
    assert_eq!(
        p.expect_close().await.map(|c| c.0),
        Some(close_code::NORMAL)
    );
    assert!(
        rec.wait(WAIT, |e| e.iter().any(
            |e| matches!(e, Ev::Expired(x) if x.reason == ExpireReason::Closed)
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
