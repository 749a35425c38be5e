//! The channel from a socket's owners (its session actor, its reader) to
//! its writer task: what can be written ([`Outgoing`]), and the two gauges
//! that keep a socket's buffers bounded in both directions: [`QueueMeter`]
//! (written into the channel, not yet onto the socket) and [`ReadGate`]
//! (read from the socket, not yet taken by the session).

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use actix_ws::CloseReason;
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};

use super::keep_alive::{PongRoute, PongSlot};
use crate::Payload;

/// The most frames a reader forwards to its session in one message.
pub(crate) const MAX_BATCH: usize = 256;

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
    /// A heartbeat ping (see [`KeepAlive`](super::keep_alive::KeepAlive)).
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

/// A protocol socket's channel: unbounded, because what the session puts
/// in is bounded by its unacked window and the [`QueueMeter`] catches a
/// client that acks without reading.
pub(crate) type SocketTx = mpsc::UnboundedSender<Outgoing>;

/// A process-wide id for a socket (the session tells its sockets apart by
/// it, the plain clients are registered under it).
pub(crate) fn next_socket_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Answers a ping: its own pong while the slot's bucket allows, else
/// through the slot (one pong at a time in the channel).
pub(crate) fn answer_ping(tx: &SocketTx, slot: &Arc<PongSlot>, ping: Bytes) {
    match slot.route(ping) {
        PongRoute::Own(ping) => {
            let _ = tx.send(Outgoing::Pong(ping, Some(slot.clone())));
        }
        PongRoute::WakeWriter => {
            let _ = tx.send(Outgoing::LatestPong(slot.clone()));
        }
        PongRoute::Kept => {}
    }
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
    pub(crate) fn too_slow(&self, max_unacked_bytes: usize) -> bool {
        let window = max_unacked_bytes.max(self.largest.load(Ordering::Relaxed));
        let limit = window.saturating_mul(2);
        let frames = self.frames.load(Ordering::Relaxed);
        frames > 1
            && (self.data.load(Ordering::Relaxed) > limit
                || frames > limit.saturating_add(EXTRA_FRAMES))
    }
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
    pub(crate) fn queue(&self, n: usize) {
        self.in_mailbox.fetch_add(n, Ordering::AcqRel);
    }

    /// The session took `n` frames out of its mailbox.
    pub(crate) fn dequeued(&self, n: usize) {
        let before = self.in_mailbox.fetch_sub(n, Ordering::AcqRel);
        if before >= MAX_IN_MAILBOX && before - n < MAX_IN_MAILBOX {
            self.open.notify_waiters();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.paused.load(Ordering::Acquire)
            || self.in_mailbox.load(Ordering::Acquire) >= MAX_IN_MAILBOX
    }

    /// Resolves once the gate is open.
    pub(crate) async fn opened(&self) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn the_meter_calls_a_client_too_slow_past_twice_the_window() {
        let m = QueueMeter::default();
        m.add(250);
        assert!(!m.too_slow(100), "one frame alone is never too slow");
        m.add(0);
        m.add(250);
        assert!(
            !m.too_slow(100),
            "a message larger than the window widens it to that message: 500 <= 2 x 250"
        );
        m.add(1);
        assert!(m.too_slow(100), "501 > 2 x 250");
        m.sub(1);
        assert!(!m.too_slow(100));
        // Frames alone (acks) count too, with room for EXTRA_FRAMES.
        let acks = QueueMeter::default();
        for _ in 0..(2 * 10 + EXTRA_FRAMES) {
            acks.add(0);
        }
        assert!(!acks.too_slow(10));
        acks.add(0);
        assert!(acks.too_slow(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_closes_on_pause_and_on_a_full_mailbox() {
        let gate = Arc::new(ReadGate::default());
        assert!(!gate.is_closed());
        assert!(gate.opened().now_or_never().is_some(), "open: no wait");

        gate.set_paused(true);
        assert!(gate.is_closed());
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.opened().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "paused: the reader waits");
        gate.set_paused(false);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("unpausing wakes the reader")
            .unwrap();

        gate.queue(MAX_IN_MAILBOX);
        assert!(gate.is_closed(), "the session's mailbox is full");
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.opened().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        gate.dequeued(MAX_BATCH);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the session taking a batch wakes the reader")
            .unwrap();
        assert!(!gate.is_closed());
    }

    #[test]
    fn pings_get_their_own_pongs_then_only_the_newest_waits() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let slot = Arc::new(PongSlot::default());
        let burst = crate::ws::PONG_BURST as usize;
        for i in 0..burst {
            answer_ping(&tx, &slot, Bytes::from(vec![i as u8]));
        }
        for i in 0..burst {
            match rx.try_recv() {
                Ok(Outgoing::Pong(p, Some(_))) => assert_eq!(p[0], i as u8, "in order"),
                other => panic!("pong {i}: {other:?}"),
            }
        }
        // PONG_BURST pongs wait unwritten: the next pings go to the slot,
        // and the writer is told once.
        answer_ping(&tx, &slot, Bytes::from_static(b"old"));
        answer_ping(&tx, &slot, Bytes::from_static(b"new"));
        match rx.try_recv() {
            Ok(Outgoing::LatestPong(s)) => {
                assert_eq!(s.take().as_deref(), Some(&b"new"[..]), "the newest ping");
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.try_recv().is_err(), "one wake-up for the slot");
    }
}
