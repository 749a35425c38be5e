//! Per-socket I/O with actix-ws, on the actix-web worker thread that
//! accepted the socket.
//!
//! Each socket has two tasks:
//! - a *writer* that owns the actix-ws [`Session`](actix_ws::Session) and
//!   drains an unbounded channel of [`Outgoing`] items (the session actor
//!   and the reader feed it; actix-ws joins whatever is queued into one
//!   write);
//! - a *reader* that decodes incoming frames, does the per-socket checks
//!   (malformed, text, too big, sequence going backwards), and forwards the
//!   rest to the session actor in batches: everything already buffered is
//!   sent in one `do_send`, never one actor round trip per message.
//!
//! Two tasks rather than one so that a client that is slow to read never
//! stops the server from reading (and the other way round).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix::Addr;
use actix_http::ws::Frame as WsFrame;
use actix_ws::{AggregatedMessage, CloseReason, Message, MessageStream, ProtocolError};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::{
    handle::{broadcast_paced, PlainClient, ReliableServer},
    options::PlainMode,
    routes::HelloPermit,
    session::{Attach, AttachError, Detached, EndSession, Inbound, SessionActor},
};
use crate::{
    close_code,
    protocol::{encode_data, Frame, MAX_HELLO_LEN},
    ws::{self, codec_violation, Assembler, PongBucket, PONG_BURST},
    Payload,
};

/// The most frames forwarded to the session in one message.
const MAX_BATCH: usize = 256;

/// How many messages a plain client may fall behind before it is closed
/// with 1013 "too slow" (in [`PlainMode::Broadcast`](super::PlainMode::Broadcast)).
pub const PLAIN_CLIENT_BUFFER: usize = 1024;

/// The payload bytes an echo client's answers may take while waiting to be
/// written (a larger `max_message_size` raises it to one message): a
/// client that sends and never reads stops being read once this is full.
pub const ECHO_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Something for the writer task to write.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Binary(Bytes),
    /// A reliable-mode DATA frame, encoded by the writer.
    Data(u64, Payload),
    Text(ByteString),
    /// A pong; counted in the slot's queue while unwritten (a plain
    /// socket's pongs are bounded by its channel instead).
    Pong(Bytes, Option<Arc<PongSlot>>),
    /// A heartbeat ping (see [`KeepAlive`]).
    Ping,
    /// Answer the newest ping kept in this slot (if still there).
    LatestPong(Arc<PongSlot>),
    /// A frame from the session, carrying this many DATA payload bytes
    /// (see [`QueueMeter`]).
    Metered(Bytes, usize),
    /// An echo; the permit holds its bytes of the echo buffer until written.
    Echo(Payload, OwnedSemaphorePermit),
    /// Write this Close frame and end.
    Close(Option<CloseReason>),
    /// End without a Close frame (the connection is gone).
    Stop,
}

pub(crate) type SocketTx = mpsc::UnboundedSender<Outgoing>;

/// A close reason with `code` and (when not empty) `text`.
fn next_socket_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The largest WebSocket message accepted for a payload limit of `max`:
/// room for the frame type and a 10-byte varint.
pub(crate) fn max_ws_message(max: usize) -> usize {
    max.saturating_add(crate::protocol::MAX_DATA_HEADER_LEN)
}

/// What a protocol socket's session has queued for its writer and the
/// writer has not written yet: DATA payload bytes and frames.
///
/// The session's unacked window bounds what it sends, but a client can ack
/// blindly without reading; the meter catches that: the reader closes the
/// socket with 1013 ("too slow", try again later) once, in more than one frame, more than
/// twice the window (or twice the largest message, which may go out alone
/// when larger than the window) of DATA payload waits (a full window plus
/// its replay after a resume is the most a reading client can have
/// queued), or more frames than that plus [`EXTRA_FRAMES`] (acks a flood
/// of DATA caused).
#[derive(Debug, Default)]
pub(crate) struct QueueMeter {
    data: AtomicUsize,
    frames: AtomicUsize,
    /// The largest DATA payload queued so far.
    largest: AtomicUsize,
}

/// The most frames a socket's reader lets wait in its session's mailbox:
/// `do_send` ignores a mailbox's capacity, so without this a reader faster
/// than its session would pile up batches there.
const MAX_IN_MAILBOX: usize = 4 * MAX_BATCH;

/// Whether a protocol socket's reader may read: closed by its session
/// while too many of the client's messages wait for the application's
/// subscribers (see
/// [`ServerOptions::max_inbound_backlog`](super::ServerOptions::max_inbound_backlog)),
/// and while [`MAX_IN_MAILBOX`] frames wait for the session itself.
#[derive(Debug, Default)]
pub(crate) struct ReadGate {
    paused: AtomicBool,
    in_mailbox: AtomicUsize,
    open: Notify,
}

impl ReadGate {
    pub(crate) fn set_paused(&self, paused: bool) {
        if self.paused.swap(paused, Ordering::AcqRel) && !paused {
            self.open.notify_waiters();
        }
    }

    /// The reader hands the session `n` frames.
    fn queue(&self, n: usize) {
        self.in_mailbox.fetch_add(n, Ordering::AcqRel);
    }

    /// The session took `n` frames out of its mailbox.
    pub(crate) fn dequeued(&self, n: usize) {
        let before = self.in_mailbox.fetch_sub(n, Ordering::AcqRel);
        if before >= MAX_IN_MAILBOX && before - n < MAX_IN_MAILBOX {
            self.open.notify_waiters();
        }
    }

    fn is_closed(&self) -> bool {
        self.paused.load(Ordering::Acquire)
            || self.in_mailbox.load(Ordering::Acquire) >= MAX_IN_MAILBOX
    }

    /// Resolves once the gate is open.
    async fn opened(&self) {
        loop {
            let open = self.open.notified();
            tokio::pin!(open);
            // Registered before checking, so an opening in between is seen.
            open.as_mut().enable();
            if !self.is_closed() {
                return;
            }
            open.await;
        }
    }
}

/// Frames (acks, WELCOME) allowed in the queue beyond the DATA bound.
const EXTRA_FRAMES: usize = 4096;

// Relaxed throughout: these are counters read for an estimate, ordering
// nothing else, and they are touched twice per message on two threads.
impl QueueMeter {
    pub(crate) fn add(&self, data: usize) {
        self.data.fetch_add(data, Ordering::Relaxed);
        self.frames.fetch_add(1, Ordering::Relaxed);
        if data > self.largest.load(Ordering::Relaxed) {
            self.largest.fetch_max(data, Ordering::Relaxed);
        }
    }

    pub(crate) fn sub(&self, data: usize) {
        self.data.fetch_sub(data, Ordering::Relaxed);
        self.frames.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether the client is too slow for a session with
    /// `max_unacked_bytes` (see the type's docs).
    fn too_slow(&self, max_unacked_bytes: usize) -> bool {
        let window = max_unacked_bytes.max(self.largest.load(Ordering::Relaxed));
        let limit = window.saturating_mul(2);
        let frames = self.frames.load(Ordering::Relaxed);
        frames > 1
            && (self.data.load(Ordering::Relaxed) > limit
                || frames > limit.saturating_add(EXTRA_FRAMES))
    }
}

/// Writes `Outgoing` items until a Close/Stop, the channel ends, or the
/// connection is gone; then fires `done`.
async fn write_loop(
    mut ws: actix_ws::Session,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    meter: Arc<QueueMeter>,
    done: oneshot::Sender<()>,
) {
    while let Some(out) = rx.recv().await {
        let metered = match &out {
            Outgoing::Metered(_, data) => Some(*data),
            Outgoing::Data(_, payload) => Some(payload.len()),
            _ => None,
        };
        let go_on = write_one(&mut ws, out).await;
        if let Some(len) = metered {
            meter.sub(len);
        }
        if !go_on {
            break;
        }
    }
    let _ = done.send(());
}

/// A socket's pong state. Pings are answered through a [`PongBucket`]:
/// every ping of a burst gets its own pong, in order (Autobahn cases 2.10
/// and 2.11). Once the bucket is empty, or [`PONG_BURST`] pongs wait
/// unwritten (a client that floods and never reads), pings go to the slot
/// instead: at most one pong waits there, and later pings replace its
/// payload (RFC 6455 §5.5.3 allows answering only the most recent ping).
#[derive(Debug, Default)]
pub(crate) struct PongSlot {
    newest: Mutex<Option<Bytes>>,
    bucket: Mutex<PongBucket>,
    /// Pongs queued for the writer and not written yet.
    queued: AtomicUsize,
}

impl PongSlot {
    /// Keeps `ping`; `true` if the writer must be told (the slot was empty).
    fn put(&self, ping: Bytes) -> bool {
        self.newest
            .lock()
            .expect("pong lock")
            .replace(ping)
            .is_none()
    }

    fn take(&self) -> Option<Bytes> {
        self.newest.lock().expect("pong lock").take()
    }

    /// Whether a ping may be answered by a pong of its own now. Not while
    /// the slot holds a ping: its pong would then follow a newer one.
    fn direct(&self) -> bool {
        let slot_empty = self.newest.lock().expect("pong lock").is_none();
        slot_empty
            && self.queued.load(Ordering::Relaxed) < PONG_BURST as usize
            && self
                .bucket
                .lock()
                .expect("pong lock")
                .try_take(actix_rt::time::Instant::now())
    }
}

/// Answers a ping: its own pong while the bucket allows, else through
/// `slot` (one pong at a time in the channel).
fn answer_ping(tx: &SocketTx, slot: &Arc<PongSlot>, ping: Bytes) {
    if slot.direct() {
        slot.queued.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(Outgoing::Pong(ping, Some(slot.clone())));
    } else if slot.put(ping) {
        let _ = tx.send(Outgoing::LatestPong(slot.clone()));
    }
}

/// Writes one outgoing item; `false` once the socket is finished (closed,
/// told to stop, or failed).
async fn write_one(ws: &mut actix_ws::Session, out: Outgoing) -> bool {
    let sent = match out {
        Outgoing::Binary(b) | Outgoing::Metered(b, _) => ws.binary(b).await,
        Outgoing::Data(seq, payload) => ws.binary(encode_data(seq, &payload)).await,
        Outgoing::Text(t) => ws.text(t).await,
        Outgoing::Pong(p, slot) => {
            if let Some(slot) = slot {
                slot.queued.fetch_sub(1, Ordering::Relaxed);
            }
            ws.pong(&p).await
        }
        Outgoing::Ping => ws.ping(b"").await,
        Outgoing::LatestPong(slot) => match slot.take() {
            Some(p) => ws.pong(&p).await,
            None => Ok(()),
        },
        Outgoing::Echo(payload, _permit) => match payload {
            Payload::Text(t) => ws.text(t).await,
            Payload::Binary(b) => ws.binary(b).await,
        },
        Outgoing::Close(reason) => {
            let _ = ws.clone().close(reason).await;
            return false;
        }
        Outgoing::Stop => return false,
    };
    sent.is_ok()
}

/// What one incoming WebSocket message means for the reader.
enum Step {
    /// A protocol frame (DATA or ACK) for the session.
    Frame(Frame),
    /// A ping to answer.
    Ping(Bytes),
    /// Nothing to do (a pong).
    Skip,
    /// The client closed; answer with its code.
    Closed(Option<CloseReason>),
    /// Close with this code and reason.
    Violation(u16, String),
    /// The connection ended without a Close frame.
    End,
}

fn stream_error(e: ProtocolError) -> Step {
    match e {
        ProtocolError::Overflow => {
            Step::Violation(close_code::MESSAGE_TOO_BIG, "message too big".to_owned())
        }
        ProtocolError::Io(e) => match codec_violation(&e) {
            Some((code, reason)) => Step::Violation(code, reason.to_owned()),
            None => Step::End,
        },
        e => Step::Violation(close_code::PROTOCOL_ERROR, e.to_string()),
    }
}

/// A socket's messages with fragments joined by the client's
/// [`Assembler`]: the message size and fragment count limits and UTF-8
/// checks are the same on both ends.
pub(crate) struct Joined {
    inner: MessageStream,
    assembler: Assembler,
}

/// One item of [`Joined`]: a message, or how to end the socket.
type JoinedItem = Option<Result<AggregatedMessage, Step>>;

impl Joined {
    fn new(stream: MessageStream, max_message_size: usize, max_fragments: usize) -> Self {
        Joined {
            inner: stream.max_frame_size(max_message_size),
            assembler: Assembler::with_limits(max_message_size, max_fragments),
        }
    }

    /// The same socket with other limits (a protocol socket's grow once
    /// its HELLO arrived). Called between messages: nothing is half
    /// joined.
    fn relimit(self, max_message_size: usize, max_fragments: usize) -> Self {
        Self::new(self.inner, max_message_size, max_fragments)
    }

    /// The next whole message (or control frame).
    async fn next(&mut self) -> JoinedItem {
        loop {
            let msg = match self.inner.next().await? {
                Ok(m) => m,
                Err(e) => return Some(Err(stream_error(e))),
            };
            let frame = match msg {
                Message::Text(t) => WsFrame::Text(t.into_bytes()),
                Message::Binary(b) => WsFrame::Binary(b),
                Message::Continuation(item) => WsFrame::Continuation(item),
                Message::Ping(p) => WsFrame::Ping(p),
                Message::Pong(p) => WsFrame::Pong(p),
                Message::Close(r) => WsFrame::Close(r),
                Message::Nop => continue,
            };
            let item = match self.assembler.push(frame) {
                Ok(ws::Inbound::Partial) => continue,
                Ok(ws::Inbound::Message(Payload::Text(t))) => AggregatedMessage::Text(t),
                Ok(ws::Inbound::Message(Payload::Binary(b))) => AggregatedMessage::Binary(b),
                Ok(ws::Inbound::Ping(p)) => AggregatedMessage::Ping(p),
                Ok(ws::Inbound::Pong(p)) => AggregatedMessage::Pong(p),
                Ok(ws::Inbound::Close(r)) => AggregatedMessage::Close(r),
                Err(e) => {
                    let code = e.close_code().unwrap_or(close_code::PROTOCOL_ERROR);
                    return Some(Err(Step::Violation(code, e.to_string())));
                }
            };
            return Some(Ok(item));
        }
    }
}

/// Per-socket reader state: the checks that need no session state.
struct SocketChecks {
    max_message_size: usize,
    last_seq: u64,
}

impl SocketChecks {
    fn classify(&mut self, item: JoinedItem) -> Step {
        let msg = match item {
            None => return Step::End,
            Some(Err(step)) => return step,
            Some(Ok(m)) => m,
        };
        let bytes = match msg {
            AggregatedMessage::Binary(b) => b,
            AggregatedMessage::Text(_) => {
                return Step::Violation(close_code::PROTOCOL_ERROR, "text message".to_owned())
            }
            AggregatedMessage::Ping(p) => return Step::Ping(p),
            AggregatedMessage::Pong(_) => return Step::Skip,
            AggregatedMessage::Close(r) => return Step::Closed(r),
        };
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => return Step::Violation(e.close_code(), format!("malformed frame: {e}")),
        };
        match &frame {
            Frame::Data { seq, payload } => {
                if payload.len() > self.max_message_size {
                    return Step::Violation(
                        close_code::MESSAGE_TOO_BIG,
                        "message too big".to_owned(),
                    );
                }
                if *seq <= self.last_seq {
                    return Step::Violation(
                        close_code::PROTOCOL_ERROR,
                        "sequence went backwards".to_owned(),
                    );
                }
                self.last_seq = *seq;
            }
            Frame::Ack { .. } => {}
            Frame::Hello { .. } => {
                return Step::Violation(close_code::PROTOCOL_ERROR, "unexpected HELLO".to_owned())
            }
            Frame::Welcome { .. } => {
                return Step::Violation(close_code::PROTOCOL_ERROR, "unexpected WELCOME".to_owned())
            }
        }
        Step::Frame(frame)
    }
}

/// The HELLO fields the reader needs.
struct Hello {
    connection_id: String,
    reconnect_token: String,
    last_received: u64,
    first_seq: u64,
}

/// Waits for the HELLO (answering pings); `Err` is how to end the socket.
///
/// The socket is not authenticated yet, so it may cost little: the stream's
/// limits are a HELLO's size (a larger message is closed with 1009), and
/// what comes before the HELLO may add up to one HELLO's size too, counting
/// two bytes of frame header per message (more is closed with 1008).
async fn wait_hello(
    stream: &mut Joined,
    tx: &SocketTx,
    pongs: &Arc<PongSlot>,
    timeout: Duration,
) -> Result<Hello, Step> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut before_hello = 0usize;
    loop {
        let item = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(item) => item,
            Err(_) => {
                return Err(Step::Violation(
                    close_code::PROTOCOL_ERROR,
                    "no HELLO in time".to_owned(),
                ))
            }
        };
        let msg = match item {
            None => return Err(Step::End),
            Some(Err(step)) => return Err(step),
            Some(Ok(m)) => m,
        };
        if let AggregatedMessage::Ping(p) | AggregatedMessage::Pong(p) = &msg {
            before_hello += p.len() + 2;
            if before_hello > MAX_HELLO_LEN {
                return Err(Step::Violation(
                    close_code::POLICY_VIOLATION,
                    "too much before HELLO".to_owned(),
                ));
            }
        }
        match msg {
            AggregatedMessage::Ping(p) => answer_ping(tx, pongs, p),
            AggregatedMessage::Pong(_) => {}
            AggregatedMessage::Close(r) => return Err(Step::Closed(r)),
            AggregatedMessage::Text(_) => {
                return Err(Step::Violation(
                    close_code::PROTOCOL_ERROR,
                    "text message".to_owned(),
                ))
            }
            AggregatedMessage::Binary(b) => {
                return match Frame::decode(b) {
                    Ok(Frame::Hello {
                        connection_id,
                        reconnect_token,
                        last_received,
                        first_seq,
                    }) => Ok(Hello {
                        connection_id,
                        reconnect_token,
                        last_received,
                        first_seq,
                    }),
                    Ok(_) => Err(Step::Violation(
                        close_code::PROTOCOL_ERROR,
                        "the first frame must be HELLO".to_owned(),
                    )),
                    Err(e) => Err(Step::Violation(
                        e.close_code(),
                        format!("malformed frame: {e}"),
                    )),
                };
            }
        }
    }
}

/// How long a socket's writer may still try to write the Close frame after
/// a heartbeat timeout before it is aborted: a half-open peer never takes
/// the bytes, and the writer must not wait for it forever.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The server's heartbeat of one socket
/// ([`ServerOptions::keep_alive_interval`](super::ServerOptions::keep_alive_interval),
/// [`client_timeout`](super::ServerOptions::client_timeout)): a ping every
/// interval, and the verdict "silent" once no frame came for the timeout.
/// Without it a half-open client (a dead link that never closes) holds its
/// socket, its tasks and its session's attachment forever.
struct KeepAlive {
    ticker: Option<tokio::time::Interval>,
    timeout: Duration,
    last_seen: tokio::time::Instant,
}

impl KeepAlive {
    fn new(interval: Duration, timeout: Duration) -> Self {
        let now = tokio::time::Instant::now();
        let ticker = (!interval.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(now + interval, interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        KeepAlive {
            ticker,
            timeout,
            last_seen: now,
        }
    }

    fn of(server: &ReliableServer) -> Self {
        let o = &server.shared.options;
        Self::new(o.keep_alive_interval, o.client_timeout)
    }

    /// A frame arrived (or reading was paused by us, not the client).
    fn seen(&mut self) {
        self.last_seen = tokio::time::Instant::now();
    }

    /// Waits for the next tick (forever when off); `true` when the socket
    /// has been silent past the timeout, else it is time for a ping.
    async fn tick(&mut self) -> bool {
        match &mut self.ticker {
            Some(t) => {
                t.tick().await;
                self.last_seen.elapsed() >= self.timeout
            }
            None => std::future::pending().await,
        }
    }
}

/// Aborts a writer that is still trying after [`CLOSE_GRACE`].
fn abort_later(writer: tokio::task::AbortHandle) {
    actix_rt::spawn(async move {
        tokio::time::sleep(CLOSE_GRACE).await;
        writer.abort();
    });
}

/// Ends a socket the way `step` says (the writer does the writing).
fn finish(tx: &SocketTx, step: Step) {
    let out = match step {
        Step::Closed(reason) => Outgoing::Close(reason.map(|r| CloseReason {
            code: r.code,
            description: None,
        })),
        Step::Violation(code, text) => {
            log::debug!("reliable socket: closing with {code}: {text}");
            Outgoing::Close(Some(ws::close_reason(code, &text)))
        }
        _ => Outgoing::Stop,
    };
    let _ = tx.send(out);
}

/// Starts the tasks of a protocol socket.
pub(crate) fn spawn_reliable(
    server: ReliableServer,
    identity: String,
    peer: Option<std::net::IpAddr>,
    permit: HelloPermit,
    ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    let options = &server.shared.options;
    // Until HELLO, no message larger than a HELLO (see wait_hello).
    let stream = Joined::new(stream, MAX_HELLO_LEN, options.max_fragments);
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel();
    let meter = Arc::new(QueueMeter::default());
    let writer = actix_rt::spawn(write_loop(ws, rx, meter.clone(), done_tx));
    actix_rt::spawn(read_reliable(
        server,
        identity,
        peer,
        permit,
        stream,
        tx,
        meter,
        (done_rx, writer.abort_handle()),
    ));
}

#[allow(clippy::too_many_arguments)]
async fn read_reliable(
    server: ReliableServer,
    identity: String,
    peer: Option<std::net::IpAddr>,
    permit: HelloPermit,
    mut stream: Joined,
    tx: SocketTx,
    meter: Arc<QueueMeter>,
    (mut writer_done, writer): (oneshot::Receiver<()>, tokio::task::AbortHandle),
) {
    let shared = server.shared.clone();
    let pongs = Arc::new(PongSlot::default());
    let hello = tokio::select! {
        hello = wait_hello(&mut stream, &tx, &pongs, shared.options.hello_timeout) => hello,
        _ = &mut writer_done => return,
    };
    drop(permit);
    let mut stream = stream.relimit(
        max_ws_message(shared.options.max_message_size),
        shared.options.max_fragments,
    );
    let hello = match hello {
        Ok(h) => h,
        Err(step) => return finish(&tx, step),
    };
    if let Some(reason) = shared.shutdown_reason() {
        let _ = tx.send(Outgoing::Close(Some(ws::close_reason(
            close_code::SERVICE_RESTART,
            &reason,
        ))));
        return;
    }
    let socket_id = next_socket_id();
    let gate = Arc::new(ReadGate::default());
    let session: Option<Addr<SessionActor>> = shared.session(&hello.connection_id);
    let attached = match &session {
        None => Err(AttachError::Gone),
        Some(addr) => addr
            .send(Attach {
                socket_id,
                tx: tx.clone(),
                meter: meter.clone(),
                gate: gate.clone(),
                token: hello.reconnect_token,
                identity,
                last_received: hello.last_received,
                first_seq: hello.first_seq,
            })
            .await
            .unwrap_or(Err(AttachError::Gone)),
    };
    let session = match (attached, session) {
        (Ok(()), Some(addr)) => addr,
        (Err(AttachError::Protocol(text)), _) => {
            return finish(
                &tx,
                Step::Violation(close_code::PROTOCOL_ERROR, text.into()),
            )
        }
        (Err(AttachError::ShuttingDown(reason)), _) => {
            let _ = tx.send(Outgoing::Close(Some(ws::close_reason(
                close_code::SERVICE_RESTART,
                &reason,
            ))));
            return;
        }
        (refusal, _) => {
            // Only a wrong token (or identity) for a session that exists
            // counts: that is what guessing looks like. An unknown or
            // expired id is what every client sends once after a server
            // restart; counting it would lock out clients sharing an
            // address (a NAT, a proxy) just when they all come back.
            if matches!(refusal, Err(AttachError::Refused)) {
                shared
                    .resume_limiter
                    .record_failure(peer, std::time::Instant::now());
            }
            let _ = tx.send(Outgoing::Close(Some(ws::close_reason(
                close_code::SESSION_GONE,
                "session gone",
            ))));
            return;
        }
    };

    let mut checks = SocketChecks {
        max_message_size: shared.options.max_message_size,
        last_seq: 0,
    };
    let mut batch: Vec<Frame> = Vec::new();
    let mut keep_alive = KeepAlive::of(&server);
    let end = 'outer: loop {
        if gate.is_closed() {
            // The subscribers (or the session) are behind: the client's bytes wait in TCP
            // (and its window) until they catch up. Our pause is not the
            // client's silence, so the heartbeat only pings meanwhile.
            tokio::select! {
                () = gate.opened() => {}
                _ = &mut writer_done => break 'outer Step::End,
                _ = keep_alive.tick() => {
                    let _ = tx.send(Outgoing::Ping);
                }
            }
            keep_alive.seen();
            continue;
        }
        let item = tokio::select! {
            item = stream.next() => item,
            _ = &mut writer_done => break 'outer Step::End,
            silent = keep_alive.tick() => {
                if silent {
                    abort_later(writer.clone());
                    break 'outer Step::Violation(
                        close_code::GOING_AWAY,
                        "client timeout".to_owned(),
                    );
                }
                let _ = tx.send(Outgoing::Ping);
                continue;
            }
        };
        keep_alive.seen();
        if meter.too_slow(shared.options.max_unacked_bytes) {
            // Acks arrive but the data does not leave: the client acks
            // without reading. Drop the socket; the session stays.
            break 'outer Step::Violation(close_code::TRY_AGAIN_LATER, "too slow".to_owned());
        }
        let mut next = Some(item);
        while let Some(item) = next {
            match checks.classify(item) {
                Step::Frame(f) => {
                    batch.push(f);
                    if batch.len() >= MAX_BATCH {
                        let frames = std::mem::take(&mut batch);
                        gate.queue(frames.len());
                        session.do_send(Inbound {
                            socket_id,
                            frames,
                            gate: gate.clone(),
                        });
                    }
                }
                Step::Ping(p) => answer_ping(&tx, &pongs, p),
                Step::Skip => {}
                other => break 'outer other,
            }
            // Drain whatever is already buffered before handing over.
            next = stream.next().now_or_never();
        }
        if !batch.is_empty() {
            let frames = std::mem::take(&mut batch);
            gate.queue(frames.len());
            session.do_send(Inbound {
                socket_id,
                frames,
                gate: gate.clone(),
            });
        }
    };
    if !batch.is_empty() {
        gate.queue(batch.len());
        session.do_send(Inbound {
            socket_id,
            frames: batch,
            gate,
        });
    }
    // A client's normal close (1000) ends the session (PROTOCOL.md §6):
    // it will not resume, so nothing is kept for the resume window.
    let client_ended = matches!(
        &end,
        Step::Closed(Some(r)) if u16::from(r.code) == close_code::NORMAL
    );
    finish(&tx, end);
    if client_ended {
        session.do_send(EndSession);
    } else {
        session.do_send(Detached { socket_id });
    }
}

/// The close signal of a plain client: a reason and a wake-up for its
/// writer (so it can be closed even when its channel is full).
#[derive(Default)]
pub(crate) struct PlainCloser {
    reason: Mutex<Option<Option<CloseReason>>>,
    notify: Notify,
}

impl PlainCloser {
    /// Asks the writer to close with `code`/`text` (the first ask wins).
    pub(crate) fn close(&self, code: u16, text: &str) {
        let mut r = self.reason.lock().expect("closer lock");
        if r.is_none() {
            *r = Some(Some(ws::close_reason(code, text)));
            self.notify.notify_one();
        }
    }
}

async fn write_plain(
    mut ws: actix_ws::Session,
    mut rx: mpsc::Receiver<Outgoing>,
    closer: Arc<PlainCloser>,
    done: oneshot::Sender<()>,
) {
    loop {
        let out = tokio::select! {
            out = rx.recv() => match out {
                Some(out) => out,
                None => break,
            },
            _ = closer.notify.notified() => {
                let reason = closer.reason.lock().expect("closer lock").take().flatten();
                let _ = ws.close(reason).await;
                break;
            }
        };
        if !write_one(&mut ws, out).await {
            break;
        }
    }
    let _ = done.send(());
}

/// Starts the tasks of a plain (non-protocol) socket in `mode` (Echo or
/// Broadcast).
pub(crate) fn spawn_plain(
    server: ReliableServer,
    mode: PlainMode,
    ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    let options = &server.shared.options;
    let stream = Joined::new(stream, options.max_message_size, options.max_fragments);
    let (tx, rx) = mpsc::channel(PLAIN_CLIENT_BUFFER);
    let closer = Arc::new(PlainCloser::default());
    let (done_tx, done_rx) = oneshot::channel();
    let id = next_socket_id();
    server.shared.add_plain(
        id,
        PlainClient {
            tx: tx.clone(),
            closer: closer.clone(),
            broadcast: mode == PlainMode::Broadcast,
        },
    );
    if let Some(reason) = server.shared.shutdown_reason() {
        closer.close(close_code::SERVICE_RESTART, &reason);
    }
    let writer = actix_rt::spawn(write_plain(ws, rx, closer.clone(), done_tx));
    actix_rt::spawn(read_plain(
        server,
        mode,
        id,
        stream,
        tx,
        (done_rx, writer.abort_handle()),
        closer,
    ));
}

async fn read_plain(
    server: ReliableServer,
    mode: PlainMode,
    id: u64,
    mut stream: Joined,
    tx: mpsc::Sender<Outgoing>,
    (mut writer_done, writer): (oneshot::Receiver<()>, tokio::task::AbortHandle),
    closer: Arc<PlainCloser>,
) {
    let max = server.shared.options.max_message_size;
    let budget = ECHO_BUFFER_BYTES.max(max).min(Semaphore::MAX_PERMITS);
    let echo_bytes = Arc::new(Semaphore::new(budget));
    let mut keep_alive = KeepAlive::of(&server);
    let end = loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = &mut writer_done => break None,
            silent = keep_alive.tick() => {
                if silent {
                    log::debug!("plain socket: closing with 1001: client timeout");
                    closer.close(close_code::GOING_AWAY, "client timeout");
                    abort_later(writer);
                    break None;
                }
                // A full channel already has frames for the client to
                // answer; skip this ping then.
                let _ = tx.try_send(Outgoing::Ping);
                continue;
            }
        };
        keep_alive.seen();
        let payload = match item {
            None => break Some(Outgoing::Stop),
            Some(Err(step)) => {
                break Some(match step {
                    Step::Violation(code, text) => {
                        Outgoing::Close(Some(ws::close_reason(code, &text)))
                    }
                    _ => Outgoing::Stop,
                })
            }
            Some(Ok(AggregatedMessage::Close(r))) => {
                break Some(Outgoing::Close(r.map(|r| CloseReason {
                    code: r.code,
                    description: None,
                })))
            }
            Some(Ok(AggregatedMessage::Ping(p))) => {
                if tx.send(Outgoing::Pong(p, None)).await.is_err() {
                    break None;
                }
                continue;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => continue,
            Some(Ok(AggregatedMessage::Text(t))) => Payload::Text(t),
            Some(Ok(AggregatedMessage::Binary(b))) => Payload::Binary(b),
        };
        match mode {
            PlainMode::Broadcast => {
                // Paced: this client is not read while the sessions have no
                // room (see `broadcast_paced`).
                broadcast_paced(server.shared.clone(), payload).await;
            }
            _ => {
                // Echo: the client's own pace is the backpressure. Reading
                // stops while its unwritten answers hold the byte budget.
                let n = u32::try_from(payload.len().clamp(1, budget)).unwrap_or(u32::MAX);
                let permit = tokio::select! {
                    p = echo_bytes.clone().acquire_many_owned(n) => match p {
                        Ok(p) => p,
                        Err(_) => break None,
                    },
                    _ = &mut writer_done => break None,
                };
                if tx.send(Outgoing::Echo(payload, permit)).await.is_err() {
                    break None;
                }
            }
        }
    };
    server.shared.remove_plain(id);
    if let Some(out) = end {
        let _ = tx.send(out).await;
    }
}
