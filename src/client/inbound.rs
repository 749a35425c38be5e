//! The client's inbound backpressure: [`InboundFanout`] and [`Gated`] bound
//! how many inbound messages may wait for slow subscribers; past the bound
//! the socket is not read until they catch up (backpressure to the peer
//! through TCP). Frame assembly and pongs, which the server shares, are in
//! [`crate::ws`].

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use actix::Recipient;
use actix_http::ws::ProtocolError;
use futures_util::{task::AtomicWaker, Stream};

use super::shared::Shared;
use crate::{
    events::IncomingMessage,
    options::{DEFAULT_MAX_INBOUND_BACKLOG, DEFAULT_MAX_INBOUND_BACKLOG_BYTES},
};

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

/// While the peer streams, the frames between two records of its sign of
/// life (`Shared::touch`, a clock reading).
const TOUCH_EVERY: u32 = 32;

/// A stream of decoded frames, read only while its [`Gate`] is open, and
/// never again after a decoding error. It also records the peer's signs
/// of life for the heartbeat: at the first frame after the socket had
/// nothing to read, and every [`TOUCH_EVERY`] frames while it streams
/// (frames that follow each other without a wait arrive within
/// microseconds; a clock reading per frame was 2 % of the client's CPU
/// at 1 KiB).
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
    /// Where the signs of life go.
    life: Arc<Shared>,
    /// Frames since the last sign of life was recorded; [`TOUCH_EVERY`]
    /// after a wait, so the next frame records one.
    untold: u32,
}

impl<S> Gated<S> {
    pub(crate) fn new(inner: S, gate: Arc<Gate>, life: Arc<Shared>) -> Self {
        Gated {
            inner,
            gate,
            failed: false,
            life,
            untold: TOUCH_EVERY,
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
                self.untold = TOUCH_EVERY;
                return Poll::Pending;
            }
        }
        let item = Pin::new(&mut self.inner).poll_next(cx);
        match &item {
            Poll::Pending => self.untold = TOUCH_EVERY,
            Poll::Ready(Some(result)) => {
                if self.untold >= TOUCH_EVERY {
                    self.life.touch();
                    self.untold = 0;
                }
                self.untold += 1;
                if let Err(e) = result {
                    self.failed = !matches!(e, ProtocolError::Overflow);
                }
            }
            Poll::Ready(None) => {}
        }
        item
    }
}

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
        // The last subscriber gets the message itself, the others a clone
        // (a reference count each): one subscriber, no clone.
        let mut left = self.subs.len();
        let mut msg = Some(msg);
        let mut next = || {
            left -= 1;
            if left == 0 { msg.take() } else { msg.clone() }.expect("one message per subscriber")
        };
        self.subs.retain_mut(|s| {
            let handled = s.progress.handled.load(Ordering::Acquire);
            let handled_bytes = s.progress.handled_bytes.load(Ordering::Acquire);
            s.sent += 1;
            s.sent_bytes += len;
            let at_bound = s.sent - handled >= max_messages
                || s.sent_bytes.saturating_sub(handled_bytes) >= max_bytes;
            if !at_bound && s.sent - s.last_marker < marker_every {
                // The shared fan-out rule; false removes a gone subscriber.
                return !crate::fanout::deliver(&s.r, next());
            }
            // A marker. A fresh clone of the recipient is never parked, so
            // `send` always enqueues (like `do_send`) and its reply says the
            // subscriber handled everything up to here.
            s.last_marker = s.sent;
            let (n, bytes) = (s.sent, s.sent_bytes);
            let progress = s.progress.clone();
            let reply = s.r.clone().send(next());
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

#[cfg(test)]
mod tests {
    //! `Gated`'s record of the peer's signs of life, in paused time.

    use std::{collections::VecDeque, task::Poll, time::Duration};

    use futures_util::task::noop_waker_ref;

    use super::*;

    /// A socket's frames as a script: each poll takes the next answer.
    struct Script(VecDeque<Poll<Option<Result<u32, ProtocolError>>>>);

    impl Stream for Script {
        type Item = Result<u32, ProtocolError>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.get_mut().0.pop_front().unwrap_or(Poll::Pending)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn signs_of_life_are_recorded_after_each_wait_and_every_32_frames_of_a_stream() {
        let life = Arc::new(Shared::new());
        let start = life.last_seen();
        let mut script = VecDeque::new();
        for i in 0..40 {
            script.push_back(Poll::Ready(Some(Ok(i))));
        }
        script.push_back(Poll::Pending);
        script.push_back(Poll::Ready(Some(Ok(40))));
        let mut gated = Gated::new(Script(script), Arc::default(), life.clone());
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut seen = Vec::new();
        for _ in 0..42 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let _ = Pin::new(&mut gated).poll_next(&mut cx);
            seen.push((life.last_seen() - start).as_secs());
        }
        // The first frame (after the socket was opened), the 33rd of the
        // stream, and the first after the wait.
        let mut want = vec![1; 32];
        want.extend([33; 8]);
        want.extend([33, 42]);
        assert_eq!(seen, want);
    }
}
