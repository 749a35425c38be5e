//! Helpers shared by the integration tests (each test file that needs them
//! says `mod common;`). They exist so that the scaffolding every test file
//! used to write for itself (a client built for quick reconnects, a bounded
//! poll, what the server application received, a scripted protocol peer, a
//! child process that must not outlive its test) is written once and means
//! the same thing everywhere.
//!
//! Every wait here is bounded, so a broken test fails instead of hanging.

// Each test file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use std::{
    ops::{Deref, DerefMut},
    process::Child,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use bytes::Bytes;
use resilient_ws::{
    protocol::{new_connection_id, new_reconnect_token, Frame, NegotiateResponse, SUBPROTOCOL},
    server::{MessageReceived, ReliableServer, ServerOptions, SessionOpened},
    testing::{opcode, EventRecorder, RawConn, RawFrame, RawServer, TestServer},
    Error, IncomingMessage, Payload, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

/// How long one step of a scripted peer may take (a negotiate, a handshake,
/// reading up to a Close) before the test fails. Generous: the suite runs
/// on a loaded machine, and it only matters when something is broken.
const STEP: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Clients and waiting.

/// A stateful client that reconnects at once (5-50 ms), counts any uptime
/// as stable and sends no heartbeats, so tests of the reliable protocol are
/// quick and see only the frames they cause.
pub fn stateful(url: impl Into<String>) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateful)
        .reconnect_delays(Duration::from_millis(5), Duration::from_millis(50), 0)
        .min_uptime(Duration::ZERO)
        .heartbeat(Duration::ZERO, None)
}

/// Connects the client `b` describes with a fresh [`EventRecorder`]
/// attached: most tests want both, and the recorder must be attached before
/// the client exists to see its first events.
pub async fn connect_recorded(b: ResilientWebSocketBuilder) -> (ResilientWebSocket, EventRecorder) {
    let rec = EventRecorder::start();
    let ws = rec.attach(b).connect().await.unwrap();
    (ws, rec)
}

/// Connects the client `b` describes to a scripted server; the server's
/// side of the socket. The server must accept while the client connects.
pub async fn raw_pair(
    server: &RawServer,
    b: ResilientWebSocketBuilder,
) -> (ResilientWebSocket, RawConn) {
    let ws = b.build().unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    (ws, conn.unwrap())
}

/// Polls `f` every 10 ms until it holds or `limit` passed; whether it
/// holds. Tests wait for a condition rather than sleep for a guessed time.
pub async fn wait_until(mut f: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// Asserts that `err` refuses a message of `size` bytes over a limit of
/// `max`: tests of limits check both numbers, not only the kind of error.
pub fn assert_too_large(err: &Error, size: usize, max: usize) {
    assert!(
        matches!(err, Error::MessageTooLarge { size: s, max: m } if *s == size && *m == max),
        "not MessageTooLarge {{ size: {size}, max: {max} }}: {err:?}"
    );
}

// ---------------------------------------------------------------------------
// The server application's side.

/// Server options that hold acks long (30 s, a million messages), so what a
/// client sent is still unacknowledged when its link dies; sessions can be
/// resumed for `resume_window`. For tests of replay and of lost sessions.
pub fn held_acks(resume_window: Duration) -> ServerOptions {
    ServerOptions {
        resume_window,
        ack_interval: Duration::from_secs(30),
        ack_threshold: 1_000_000,
        ..ServerOptions::default()
    }
}

/// What a [`ReliableServer`]'s application saw: the sessions opened and the
/// messages received, in order. Tests check delivery from the server's own
/// events, not from what a client believes it sent.
#[derive(Clone, Default)]
pub struct Inbox {
    opened: Arc<Mutex<Vec<String>>>,
    received: Arc<Mutex<Vec<MessageReceived>>>,
}

struct InboxActor(Inbox);

impl Actor for InboxActor {
    type Context = Context<Self>;
}

impl Handler<SessionOpened> for InboxActor {
    type Result = ();
    fn handle(&mut self, m: SessionOpened, _: &mut Context<Self>) {
        self.0.opened.lock().unwrap().push(m.connection_id);
    }
}

impl Handler<MessageReceived> for InboxActor {
    type Result = ();
    fn handle(&mut self, m: MessageReceived, _: &mut Context<Self>) {
        self.0.received.lock().unwrap().push(m);
    }
}

impl Inbox {
    /// Subscribes a new inbox to `reliable`'s opened sessions and messages.
    pub fn attach(reliable: &ReliableServer) -> Inbox {
        let inbox = Inbox::default();
        let addr = InboxActor(inbox.clone()).start();
        reliable.on_session_opened(addr.clone().recipient());
        reliable.on_message(addr.recipient());
        inbox
    }

    /// The connection ids of the sessions opened so far.
    pub fn opened(&self) -> Vec<String> {
        self.opened.lock().unwrap().clone()
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<MessageReceived> {
        self.received.lock().unwrap().clone()
    }

    /// How many messages were received.
    pub fn len(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Whether no message was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every message as (connection id, seq, text); `<binary>` for binary.
    pub fn all(&self) -> Vec<(String, u64, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|m| {
                let text = m.payload.as_text().unwrap_or("<binary>").to_string();
                (m.connection_id.clone(), m.seq, text)
            })
            .collect()
    }

    /// Every message as (seq, text).
    pub fn seq_texts(&self) -> Vec<(u64, String)> {
        self.all().into_iter().map(|m| (m.1, m.2)).collect()
    }

    /// Every message's text.
    pub fn texts(&self) -> Vec<String> {
        self.all().into_iter().map(|m| m.2).collect()
    }
}

/// A subscriber (of a client's [`IncomingMessage`]s or a server's
/// [`MessageReceived`]) that handles nothing until its [`SlowGate`] is
/// released, then records the payloads: the slowest application there is,
/// for tests of backpressure. It blocks its thread, so it runs on an
/// arbiter of its own.
pub struct Slow(SlowGate);

/// Releases a [`Slow`] subscriber and reads what it recorded.
#[derive(Clone)]
pub struct SlowGate {
    latch: Arc<(Mutex<bool>, Condvar)>,
    got: Arc<Mutex<Vec<Payload>>>,
}

impl Slow {
    /// Starts a held subscriber on `arbiter`'s thread.
    pub fn start_on(arbiter: &Arbiter) -> (Addr<Slow>, SlowGate) {
        let gate = SlowGate {
            latch: Arc::new((Mutex::new(false), Condvar::new())),
            got: Arc::new(Mutex::new(Vec::new())),
        };
        let g = gate.clone();
        let addr = Slow::start_in_arbiter(&arbiter.handle(), move |_| Slow(g));
        (addr, gate)
    }

    fn take(&self, payload: Payload) {
        let (lock, cv) = &*self.0.latch;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.0.got.lock().unwrap().push(payload);
    }
}

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Slow {
    type Result = ();
    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        self.take(msg.payload);
    }
}

impl Handler<MessageReceived> for Slow {
    type Result = ();
    fn handle(&mut self, msg: MessageReceived, _: &mut Context<Self>) {
        self.take(msg.payload);
    }
}

impl SlowGate {
    /// Lets the subscriber handle everything, from now on.
    pub fn release(&self) {
        *self.latch.0.lock().unwrap() = true;
        self.latch.1.notify_all();
    }

    /// What the subscriber handled so far.
    pub fn got(&self) -> Vec<Payload> {
        self.got.lock().unwrap().clone()
    }

    /// How many messages the subscriber handled so far.
    pub fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Whether the subscriber handled nothing yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---------------------------------------------------------------------------
// A scripted client of the reliable protocol (a [`RawConn`]), for tests of
// what the server does with frames a well-behaved client would not send.

/// POSTs negotiate to `server` with `headers`: the parsed answer, or the
/// HTTP status when it is not 200.
pub async fn negotiate_with(
    server: &TestServer,
    headers: &[(&str, &str)],
) -> Result<NegotiateResponse, u16> {
    let mut req = awc::Client::default().post(format!("http://{}/ws/negotiate", server.addr()));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut resp = tokio::time::timeout(STEP, req.send())
        .await
        .unwrap()
        .unwrap();
    if resp.status().as_u16() != 200 {
        return Err(resp.status().as_u16());
    }
    let body = resp.body().await.unwrap();
    Ok(NegotiateResponse::parse(&body).unwrap())
}

/// POSTs negotiate to `server`, which must answer 200.
pub async fn negotiate(server: &TestServer) -> NegotiateResponse {
    negotiate_with(server, &[]).await.expect("negotiate 200")
}

/// A socket upgraded with the protocol's subprotocol; nothing sent yet.
pub async fn protocol_socket(server: &TestServer) -> RawConn {
    RawConn::connect(
        server.addr(),
        "/ws",
        &[("Sec-WebSocket-Protocol", SUBPROTOCOL)],
    )
    .await
    .unwrap()
}

/// A protocol socket attached to `neg`'s session: HELLO (claiming
/// `last_received`) sent, WELCOME read.
pub async fn attach_raw(
    server: &TestServer,
    neg: &NegotiateResponse,
    last_received: u64,
) -> RawConn {
    let mut c = protocol_socket(server).await;
    let hello = Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: neg.reconnect_token.clone(),
        last_received,
        first_seq: 1,
    };
    c.send_binary(&hello.to_bytes()).await.unwrap();
    let welcome = tokio::time::timeout(STEP, c.read_frame())
        .await
        .expect("a WELCOME in time")
        .unwrap();
    assert!(
        matches!(decode(&welcome), Frame::Welcome { .. }),
        "{welcome:?}"
    );
    c
}

/// A raw protocol client of a fresh session: negotiate, upgrade, HELLO,
/// WELCOME.
pub async fn reliable_raw(server: &TestServer) -> (RawConn, NegotiateResponse) {
    let neg = negotiate(server).await;
    let conn = attach_raw(server, &neg, 0).await;
    (conn, neg)
}

/// The protocol frame a binary WebSocket frame carries.
pub fn decode(f: &RawFrame) -> Frame {
    assert_eq!(f.opcode, opcode::BINARY, "{f:?}");
    Frame::decode(Bytes::from(f.payload.clone())).unwrap()
}

/// A DATA frame, encoded.
pub fn data(seq: u64, payload: impl Into<Payload>) -> Vec<u8> {
    Frame::Data {
        seq,
        payload: payload.into(),
    }
    .to_bytes()
    .to_vec()
}

// ---------------------------------------------------------------------------
// Reading a raw socket, from either side.

/// Reads frames until a Close, handing each other frame to `each`; the
/// Close's code (`None`: the stream ended first).
pub async fn read_until_close(conn: &mut RawConn, mut each: impl FnMut(RawFrame)) -> Option<u16> {
    let read = async {
        loop {
            match conn.read_frame().await {
                Ok(f) if f.opcode == opcode::CLOSE => return f.close_code(),
                Ok(f) => each(f),
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(STEP, read)
        .await
        .expect("a close in time")
}

/// Reads frames until a Close; its code (`None`: the stream ended first).
pub async fn close_code_of(conn: &mut RawConn) -> Option<u16> {
    read_until_close(conn, |_| {}).await
}

/// Reads frames, every one a pong, until the pong of the ping carrying
/// `last`; how many pongs came. For ping floods, where pongs are coalesced
/// but the newest ping must be answered.
pub async fn pongs_until(conn: &mut RawConn, last: &[u8]) -> u32 {
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
    tokio::time::timeout(STEP, read)
        .await
        .expect("the newest ping answered");
    pongs
}

// ---------------------------------------------------------------------------
// A scripted reliable server (a `RawServer`), for tests of the client.

/// A negotiate answer for a fresh session (new ids), its socket at `url`
/// (`None`: the negotiate URL's host), with the given limit and ack timer.
pub fn negotiate_body(url: Option<&str>, max_message_size: usize, ack_interval_ms: u64) -> String {
    serde_json::json!({
        "protocol": SUBPROTOCOL, "version": 1, "connection_id": new_connection_id(),
        "reconnect_token": new_reconnect_token(), "url": url,
        "resume_window_ms": 30000, "max_message_size": max_message_size,
        "max_unacked_bytes": 1048576, "ack_interval_ms": ack_interval_ms, "ack_threshold": 64
    })
    .to_string()
}

/// Answers a client's HELLO with a WELCOME of a fresh session that has
/// received up to `last_received`.
pub async fn welcome(conn: &mut RawConn, last_received: u64) {
    let welcome = Frame::Welcome {
        resumed: false,
        last_received,
    };
    conn.send_binary(&welcome.to_bytes()).await.unwrap();
}

// ---------------------------------------------------------------------------
// Child processes.

/// A child process (an `rws` the test started) that is killed and reaped
/// when dropped, so a failing test leaves no process behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}
