//! The inbound side of a socket, shared by the client and the server:
//!
//! - [`Assembler`] turns decoded frames into whole messages: joins
//!   fragments, enforces the message size and fragment count limits, and
//!   validates UTF-8 (awc's codec does not);
//! - [`PongLimiter`] answers every ping of a burst and few of a flood
//!   (client; the server uses its [`PongBucket`]);
//! - [`InboundFanout`] and [`Gated`] bound how many inbound messages may wait
//!   for slow subscribers: past the bound the socket is not read until they
//!   catch up (backpressure to the peer through TCP).

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use actix::Recipient;
use actix_http::ws::{CloseReason, Frame, Item, ProtocolError};
use actix_rt::time::Instant;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{task::AtomicWaker, Stream};

use crate::{close_code, events::IncomingMessage, events::Payload, Error};

/// What one frame amounts to.
#[derive(Debug, PartialEq)]
pub(crate) enum Inbound {
    /// A complete data message.
    Message(Payload),
    /// A fragment was stored; nothing to deliver yet.
    Partial,
    /// A ping to answer with a pong carrying the same bytes.
    Ping(Bytes),
    /// A pong, with its payload (our pings carry their send time).
    Pong(Bytes),
    /// The peer's Close frame.
    Close(Option<CloseReason>),
}

/// Joins fragmented messages frame by frame.
#[derive(Debug)]
pub(crate) struct Assembler {
    max_message_size: usize,
    max_fragments: usize,
    /// The message being joined: whether it is text, and the bytes so far.
    /// `None` between messages, so an idle connection holds no buffer.
    partial: Option<(bool, BytesMut)>,
    /// Frames of the message being joined, the first included.
    fragments: usize,
}

impl Assembler {
    /// An assembler with the default fragment limit
    /// ([`DEFAULT_MAX_FRAGMENTS`]).
    #[cfg(test)]
    pub(crate) fn new(max_message_size: usize) -> Self {
        Self::with_limits(max_message_size, DEFAULT_MAX_FRAGMENTS)
    }

    /// An assembler that accepts messages of at most `max_message_size`
    /// bytes in at most `max_fragments` frames.
    pub(crate) fn with_limits(max_message_size: usize, max_fragments: usize) -> Self {
        Assembler {
            max_message_size,
            max_fragments: max_fragments.max(1),
            partial: None,
            fragments: 0,
        }
    }

    /// Feeds one frame. An error means the connection must be closed with
    /// the error's close code.
    pub(crate) fn push(&mut self, frame: Frame) -> Result<Inbound, Error> {
        match frame {
            Frame::Text(b) => Ok(Inbound::Message(Payload::Text(self.text(b)?))),
            Frame::Binary(b) => {
                self.check_size(b.len())?;
                Ok(Inbound::Message(Payload::Binary(b)))
            }
            Frame::Continuation(item) => self.continuation(item),
            Frame::Ping(b) => Ok(Inbound::Ping(b)),
            Frame::Pong(b) => Ok(Inbound::Pong(b)),
            Frame::Close(r) => Ok(Inbound::Close(r)),
        }
    }

    fn continuation(&mut self, item: Item) -> Result<Inbound, Error> {
        match item {
            Item::FirstText(b) => self.start(true, b),
            Item::FirstBinary(b) => self.start(false, b),
            Item::Continue(b) => {
                self.append(b)?;
                Ok(Inbound::Partial)
            }
            Item::Last(b) => {
                self.append(b)?;
                let (is_text, buf) = self.partial.take().ok_or_else(not_started)?;
                let bytes = buf.freeze();
                if is_text {
                    Ok(Inbound::Message(Payload::Text(self.text(bytes)?)))
                } else {
                    Ok(Inbound::Message(Payload::Binary(bytes)))
                }
            }
        }
    }

    fn start(&mut self, is_text: bool, b: Bytes) -> Result<Inbound, Error> {
        // The codec rejects a second first fragment, so any partial here is stale.
        self.partial = Some((is_text, BytesMut::new()));
        self.fragments = 0;
        self.append(b)?;
        Ok(Inbound::Partial)
    }

    fn append(&mut self, b: Bytes) -> Result<(), Error> {
        let max = self.max_message_size;
        let (_, buf) = self.partial.as_mut().ok_or_else(not_started)?;
        let size = buf.len() + b.len();
        if size > max {
            self.partial = None;
            return Err(Error::MessageTooLarge { size, max });
        }
        self.fragments += 1;
        if self.fragments > self.max_fragments {
            self.partial = None;
            return Err(Error::Protocol {
                close_code: close_code::MESSAGE_TOO_BIG,
                message: format!("message in more than {} fragments", self.max_fragments),
            });
        }
        buf.extend_from_slice(&b);
        Ok(())
    }

    fn check_size(&self, size: usize) -> Result<(), Error> {
        if size > self.max_message_size {
            return Err(Error::MessageTooLarge {
                size,
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    fn text(&self, b: Bytes) -> Result<ByteString, Error> {
        self.check_size(b.len())?;
        ByteString::try_from(b).map_err(|_| Error::Protocol {
            close_code: close_code::INVALID_PAYLOAD,
            message: "text message is not valid UTF-8".into(),
        })
    }
}

/// The default limit on the frames of one fragmented message.
pub(crate) const DEFAULT_MAX_FRAGMENTS: usize = 4096;

/// The sustained pong rate under a ping flood: one pong per this interval
/// once a burst used up the bucket (see [`PongBucket`]).
pub(crate) const PONG_MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How many pings in a row are each answered at once before pongs are
/// rate limited. A keep-alive or a test suite's burst (Autobahn cases 2.10
/// and 2.11 send ten) gets every pong; only a sustained flood is
/// coalesced.
pub(crate) const PONG_BURST: u32 = 64;

/// A token bucket for pongs (kept as GCRA, a single timestamp): up to
/// [`PONG_BURST`] pongs at once, refilled at one per
/// [`PONG_MIN_INTERVAL`]. Shared by the client and the server so both
/// answer a burst alike.
#[derive(Debug, Default)]
pub(crate) struct PongBucket {
    /// When the bucket is full again (the "theoretical arrival time"):
    /// each pong pushes it one interval later.
    full_at: Option<Instant>,
}

impl PongBucket {
    /// How long until a pong may go out (zero: now).
    pub(crate) fn wait(&self, now: Instant) -> Duration {
        let tolerance = PONG_MIN_INTERVAL * (PONG_BURST - 1);
        match self.full_at {
            Some(full_at) if full_at > now + tolerance => full_at - (now + tolerance),
            _ => Duration::ZERO,
        }
    }

    /// Takes a token if one is there.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if !self.wait(now).is_zero() {
            return false;
        }
        self.take(now);
        true
    }

    /// Takes a token whether or not one is there (a coalesced pong that is
    /// due goes out anyway).
    pub(crate) fn take(&mut self, now: Instant) {
        let base = self.full_at.filter(|t| *t > now).unwrap_or(now);
        self.full_at = Some(base + PONG_MIN_INTERVAL);
    }
}

/// Answers pings through a [`PongBucket`]: every ping of a burst gets its
/// own pong at once, in order; under a sustained flood the pings that
/// find the bucket empty are coalesced into one pong, sent as soon as a
/// token is back, carrying the newest ping's payload (RFC 6455 §5.5.3
/// allows answering only the most recent ping). So a flood costs at most
/// [`PONG_BURST`] pongs plus one per [`PONG_MIN_INTERVAL`].
#[derive(Debug, Default)]
pub(crate) struct PongLimiter {
    bucket: PongBucket,
    /// The newest ping not answered yet.
    pending: Option<Bytes>,
}

/// What to do with a ping.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PongAction {
    /// Write this pong now.
    Send(Bytes),
    /// Call [`PongLimiter::flush`] after this delay (a timer is needed).
    Later(Duration),
    /// A pong is already scheduled; it will carry this ping's payload.
    Coalesced,
}

impl PongLimiter {
    /// A ping arrived at `now`.
    pub(crate) fn on_ping(&mut self, payload: Bytes, now: Instant) -> PongAction {
        // Once a pong is scheduled, later pings join it: answering one of
        // them earlier would send pongs out of order.
        if self.pending.is_some() {
            self.pending = Some(payload);
            return PongAction::Coalesced;
        }
        if self.bucket.try_take(now) {
            return PongAction::Send(payload);
        }
        self.pending = Some(payload);
        PongAction::Later(self.bucket.wait(now))
    }

    /// The timer fired: the pong to write, if a ping is still unanswered.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<Bytes> {
        let p = self.pending.take()?;
        self.bucket.take(now);
        Some(p)
    }
}

/// Pauses a socket's stream: while paused, the stream is not polled, so
/// nothing more is read from the socket and TCP pushes back on the peer.
/// Paused while at least one subscriber is *blocked* (at its bound).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    blocked: AtomicUsize,
    waker: AtomicWaker,
}

impl Gate {
    pub(crate) fn is_paused(&self) -> bool {
        self.blocked.load(Ordering::Acquire) > 0
    }

    fn block(&self) {
        self.blocked.fetch_add(1, Ordering::AcqRel);
    }

    fn unblock(&self) {
        if self.blocked.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }
}

/// A stream of decoded frames, read only while its [`Gate`] is open, and
/// never again after a decoding error.
///
/// awc's codec leaves the bytes it could not decode in its buffer, so its
/// stream yields the same error again and again: after the first one this
/// stream stays pending (the socket is being failed; the close timer ends
/// it). An oversize frame is the exception: the codec skips it, so reading
/// goes on and the peer's answer to our 1009 is seen at once.
pub(crate) struct Gated<S> {
    inner: S,
    gate: Arc<Gate>,
    failed: bool,
}

impl<S> Gated<S> {
    pub(crate) fn new(inner: S, gate: Arc<Gate>) -> Self {
        Gated {
            inner,
            gate,
            failed: false,
        }
    }
}

impl<S, T> Stream for Gated<S>
where
    S: Stream<Item = Result<T, ProtocolError>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.failed {
            return Poll::Pending;
        }
        if self.gate.is_paused() {
            self.gate.waker.register(cx.waker());
            // Resumed between the check and the registration: go on.
            if self.gate.is_paused() {
                return Poll::Pending;
            }
        }
        let item = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Err(e))) = &item {
            self.failed = !matches!(e, ProtocolError::Overflow);
        }
        item
    }
}

/// The defaults of the inbound backlog bound (see [`InboundFanout`]).
pub(crate) const DEFAULT_MAX_INBOUND_BACKLOG: usize = 1024;
/// See [`DEFAULT_MAX_INBOUND_BACKLOG`].
pub(crate) const DEFAULT_MAX_INBOUND_BACKLOG_BYTES: usize = 16 * 1024 * 1024;

/// One subscriber's progress: what was handed to it and what it handled,
/// as running totals (messages and payload bytes).
#[derive(Default)]
struct Progress {
    handled: AtomicU64,
    handled_bytes: AtomicU64,
}

struct Subscriber {
    r: Recipient<IncomingMessage>,
    sent: u64,
    sent_bytes: u64,
    /// The count at the last marker, so that one goes out every so often.
    last_marker: u64,
    progress: Arc<Progress>,
}

/// The fan-out of inbound messages, with a bound on how many wait for a
/// subscriber (in its mailbox, queued or being handled).
///
/// actix's `do_send` ignores a mailbox's capacity, so a peer faster than a
/// subscriber would otherwise grow the client's memory without bound. The
/// policy: messages are handed over with `try_send`/`do_send` (cheap), and
/// every so often one with `send` (a *marker*), whose reply says that the
/// subscriber has handled everything up to it (a mailbox is FIFO). When a
/// subscriber has `max_messages` messages or `max_bytes` payload bytes
/// waiting, the socket's [`Gate`] closes: nothing more is read until the
/// subscriber's marker comes back. Nothing is dropped; the peer is slowed
/// down by TCP flow control (in reliable mode its unacked window fills).
pub(crate) struct InboundFanout {
    subs: Vec<Subscriber>,
    gate: Arc<Gate>,
    max_messages: u64,
    max_bytes: u64,
}

impl Default for InboundFanout {
    fn default() -> Self {
        InboundFanout {
            subs: Vec::new(),
            gate: Arc::new(Gate::default()),
            max_messages: DEFAULT_MAX_INBOUND_BACKLOG as u64,
            max_bytes: DEFAULT_MAX_INBOUND_BACKLOG_BYTES as u64,
        }
    }
}

impl InboundFanout {
    /// Sets the bound (values below 1 act as 1).
    pub(crate) fn set_limits(&mut self, max_messages: usize, max_bytes: usize) {
        self.max_messages = max_messages.max(1) as u64;
        self.max_bytes = max_bytes.max(1) as u64;
    }

    pub(crate) fn add(&mut self, r: Recipient<IncomingMessage>) {
        self.subs.push(Subscriber {
            r,
            sent: 0,
            sent_bytes: 0,
            last_marker: 0,
            progress: Arc::default(),
        });
    }

    /// The gate of every socket this fan-out feeds.
    pub(crate) fn gate(&self) -> Arc<Gate> {
        self.gate.clone()
    }

    /// Whether reading is paused for a slow subscriber.
    pub(crate) fn paused(&self) -> bool {
        self.gate.is_paused()
    }

    /// Hands `msg` to every subscriber; closes the gate if one of them is
    /// now at the bound.
    pub(crate) fn publish(&mut self, msg: IncomingMessage) {
        let len = msg.payload.len() as u64;
        let (max_messages, max_bytes) = (self.max_messages, self.max_bytes);
        let marker_every = (max_messages / 4).max(1);
        let gate = &self.gate;
        self.subs.retain_mut(|s| {
            let handled = s.progress.handled.load(Ordering::Acquire);
            let handled_bytes = s.progress.handled_bytes.load(Ordering::Acquire);
            s.sent += 1;
            s.sent_bytes += len;
            let at_bound = s.sent - handled >= max_messages
                || s.sent_bytes.saturating_sub(handled_bytes) >= max_bytes;
            if !at_bound && s.sent - s.last_marker < marker_every {
                // The shared fan-out rule; false removes a gone subscriber.
                return !crate::fanout::deliver(&s.r, msg.clone());
            }
            // A marker. A fresh clone of the recipient is never parked, so
            // `send` always enqueues (like `do_send`) and its reply says the
            // subscriber handled everything up to here.
            s.last_marker = s.sent;
            let (n, bytes) = (s.sent, s.sent_bytes);
            let progress = s.progress.clone();
            let reply = s.r.clone().send(msg.clone());
            let blocking = at_bound.then(|| {
                gate.block();
                gate.clone()
            });
            actix_rt::spawn(async move {
                // An error means the subscriber is gone: it waits for
                // nothing any more.
                let _ = reply.await;
                progress.handled.fetch_max(n, Ordering::AcqRel);
                progress.handled_bytes.fetch_max(bytes, Ordering::AcqRel);
                if let Some(gate) = blocking {
                    // Nothing was read since this marker: the subscriber
                    // has caught up completely.
                    gate.unblock();
                }
            });
            s.r.connected()
        });
    }
}

/// What an I/O error of kind `InvalidData` from actix's WebSocket codec
/// stands for, when it is the peer breaking the protocol rather than the
/// network failing: (close code, reason). actix reports a frame with RSV
/// bits as such an error (by its message only), and actix-ws a text frame
/// that is not UTF-8 (with the `Utf8Error` inside). Shared by the client
/// and the server so both answer alike.
pub(crate) fn codec_violation(e: &std::io::Error) -> Option<(u16, &'static str)> {
    if e.kind() != std::io::ErrorKind::InvalidData {
        return None;
    }
    if e.get_ref()
        .is_some_and(|inner| inner.is::<std::str::Utf8Error>())
    {
        return Some((
            close_code::INVALID_PAYLOAD,
            "text message is not valid UTF-8",
        ));
    }
    e.to_string()
        .contains("reserved bits")
        .then_some((close_code::PROTOCOL_ERROR, "frame with reserved bits set"))
}

fn not_started() -> Error {
    Error::Protocol {
        close_code: close_code::PROTOCOL_ERROR,
        message: "continuation frame without a first fragment".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: Inbound) -> Payload {
        match i {
            Inbound::Message(p) => p,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn joins_text_fragments() {
        let mut a = Assembler::new(100);
        let first = Frame::Continuation(Item::FirstText(Bytes::from_static(b"he")));
        assert_eq!(a.push(first).unwrap(), Inbound::Partial);
        let mid = Frame::Continuation(Item::Continue(Bytes::from_static(b"ll")));
        assert_eq!(a.push(mid).unwrap(), Inbound::Partial);
        let last = Frame::Continuation(Item::Last(Bytes::from_static(b"o")));
        assert_eq!(msg(a.push(last).unwrap()), Payload::Text("hello".into()));
        assert!(a.partial.is_none(), "buffer released after the message");
    }

    #[test]
    fn joins_binary_fragments() {
        let mut a = Assembler::new(100);
        a.push(Frame::Continuation(Item::FirstBinary(Bytes::from_static(
            &[1],
        ))))
        .unwrap();
        let p = msg(a
            .push(Frame::Continuation(Item::Last(Bytes::from_static(&[2]))))
            .unwrap());
        assert_eq!(p, Payload::Binary(Bytes::from_static(&[1, 2])));
    }

    #[test]
    fn utf8_split_across_fragments_is_valid() {
        let mut a = Assembler::new(100);
        let euro = "€".as_bytes();
        a.push(Frame::Continuation(Item::FirstText(
            Bytes::copy_from_slice(&euro[..1]),
        )))
        .unwrap();
        let p = a
            .push(Frame::Continuation(Item::Last(Bytes::copy_from_slice(
                &euro[1..],
            ))))
            .unwrap();
        assert_eq!(msg(p), Payload::Text("€".into()));
    }

    #[test]
    fn invalid_utf8_is_1007() {
        let mut a = Assembler::new(100);
        let err = a
            .push(Frame::Text(Bytes::from_static(&[0xff, 0xfe])))
            .unwrap_err();
        assert_eq!(err.close_code(), Some(1007));
    }

    #[test]
    fn oversize_single_frame_and_fragments_are_1009() {
        let mut a = Assembler::new(4);
        let err = a
            .push(Frame::Binary(Bytes::from_static(b"12345")))
            .unwrap_err();
        assert_eq!(err.close_code(), Some(1009));
        assert!(a.push(Frame::Binary(Bytes::from_static(b"1234"))).is_ok());
        a.push(Frame::Continuation(Item::FirstBinary(Bytes::from_static(
            b"123",
        ))))
        .unwrap();
        let err = a
            .push(Frame::Continuation(Item::Continue(Bytes::from_static(
                b"45",
            ))))
            .unwrap_err();
        assert!(matches!(err, Error::MessageTooLarge { size: 5, max: 4 }));
        assert!(a.partial.is_none(), "an oversize message frees its buffer");
    }

    #[test]
    fn continuation_without_start_is_protocol_error() {
        let mut a = Assembler::new(4);
        let err = a
            .push(Frame::Continuation(Item::Last(Bytes::from_static(b"x"))))
            .unwrap_err();
        assert_eq!(err.close_code(), Some(1002));
    }

    #[test]
    fn control_frames_pass_through() {
        let mut a = Assembler::new(4);
        assert_eq!(
            a.push(Frame::Ping(Bytes::from_static(b"p"))).unwrap(),
            Inbound::Ping(Bytes::from_static(b"p"))
        );
        assert_eq!(
            a.push(Frame::Pong(Bytes::new())).unwrap(),
            Inbound::Pong(Bytes::new())
        );
        assert_eq!(a.push(Frame::Close(None)).unwrap(), Inbound::Close(None));
    }

    #[test]
    fn fragment_count_is_bounded_and_reset_per_message() {
        let mut a = Assembler::with_limits(100, 3);
        let first = || Frame::Continuation(Item::FirstBinary(Bytes::from_static(b"a")));
        let more = || Frame::Continuation(Item::Continue(Bytes::from_static(b"b")));
        let last = || Frame::Continuation(Item::Last(Bytes::from_static(b"c")));
        for _ in 0..2 {
            // Exactly 3 frames, twice: the count starts again per message.
            a.push(first()).unwrap();
            a.push(more()).unwrap();
            assert_eq!(
                msg(a.push(last()).unwrap()),
                Payload::Binary(Bytes::from_static(b"abc"))
            );
        }
        a.push(first()).unwrap();
        a.push(more()).unwrap();
        a.push(more()).unwrap();
        // The fourth frame of a message with a limit of 3.
        let e = a.push(more()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Protocol {
                    close_code: 1009,
                    ..
                }
            ),
            "{e:?}"
        );
        let mut one = Assembler::with_limits(100, 1);
        one.push(first()).unwrap();
        let e = one.push(last()).unwrap_err();
        assert_eq!(e.close_code(), Some(1009));
        assert!(one.partial.is_none());
    }

    #[test]
    fn a_burst_gets_every_pong_and_a_flood_one_per_interval() {
        let mut p = PongLimiter::default();
        let t0 = Instant::now();
        let b = |n: u32| Bytes::from(n.to_be_bytes().to_vec());
        // A burst: each ping answered at once, in order.
        for i in 0..PONG_BURST {
            assert_eq!(p.on_ping(b(i), t0), PongAction::Send(b(i)), "ping {i}");
        }
        // The bucket is empty: the next ping waits for one token.
        assert_eq!(p.on_ping(b(100), t0), PongAction::Later(PONG_MIN_INTERVAL));
        assert_eq!(p.on_ping(b(101), t0), PongAction::Coalesced);
        let t1 = t0 + PONG_MIN_INTERVAL;
        assert_eq!(p.flush(t1), Some(b(101)), "the newest payload");
        assert_eq!(p.flush(t1), None);
        // Still flooded: one pong per interval.
        assert_eq!(p.on_ping(b(102), t1), PongAction::Later(PONG_MIN_INTERVAL));
        // A sustained flood over 1 s costs at most burst + 1 s / interval.
        let mut p = PongLimiter::default();
        let mut pongs = 0u32;
        let mut due: Option<Instant> = None;
        for ms in 0..1000u64 {
            let now = t0 + Duration::from_millis(ms);
            if due.is_some_and(|d| d <= now) {
                due = None;
                pongs += u32::from(p.flush(now).is_some());
            }
            for _ in 0..10 {
                match p.on_ping(b(1), now) {
                    PongAction::Send(_) => pongs += 1,
                    PongAction::Later(d) => due = Some(now + d),
                    PongAction::Coalesced => {}
                }
            }
        }
        assert!(pongs <= PONG_BURST + 21, "{pongs} pongs");
        // After a quiet spell the bucket is full again.
        let later = t0 + PONG_MIN_INTERVAL * (PONG_BURST + 30);
        let mut q = PongLimiter::default();
        for _ in 0..PONG_BURST {
            q.on_ping(b(0), t0);
        }
        for i in 0..PONG_BURST {
            assert_eq!(q.on_ping(b(i), later), PongAction::Send(b(i)));
        }
    }
}
