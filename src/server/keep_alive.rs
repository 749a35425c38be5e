//! A server socket's liveness, both ways: answering the client's pings
//! ([`PongSlot`]: every ping of a burst answered, a flood coalesced) and
//! the server's own heartbeat ([`KeepAlive`]: a ping per interval, a
//! timeout for a silent client).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    time::Duration,
};

use bytes::Bytes;

use super::options::ServerOptions;
use crate::ws::{PongBucket, PONG_BURST};

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

/// Where the answer to one ping goes (see [`PongSlot::route`]).
#[derive(Debug)]
pub(crate) enum PongRoute {
    /// A pong of its own: queue it (the slot counts it until
    /// [`written`](PongSlot::written)).
    Own(Bytes),
    /// Kept in the slot, which was empty: tell the writer to answer it.
    WakeWriter,
    /// Kept in the slot in place of an older ping the writer already
    /// knows about.
    Kept,
}

impl PongSlot {
    /// Decides how `ping` is answered.
    pub(crate) fn route(&self, ping: Bytes) -> PongRoute {
        if self.direct() {
            self.queued.fetch_add(1, Ordering::Relaxed);
            PongRoute::Own(ping)
        } else if self.put(ping) {
            PongRoute::WakeWriter
        } else {
            PongRoute::Kept
        }
    }

    /// The writer wrote a pong [`route`](Self::route) gave its own.
    pub(crate) fn written(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// Keeps `ping`; `true` if the writer must be told (the slot was empty).
    fn put(&self, ping: Bytes) -> bool {
        self.newest
            .lock()
            .expect("pong lock")
            .replace(ping)
            .is_none()
    }

    /// The newest kept ping, for the writer.
    pub(crate) fn take(&self) -> Option<Bytes> {
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

/// How long a socket's writer may still try to write the Close frame after
/// a heartbeat timeout before it is aborted: a half-open peer never takes
/// the bytes, and the writer must not wait for it forever.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Aborts a writer that is still trying after [`CLOSE_GRACE`].
pub(crate) fn abort_later(writer: tokio::task::AbortHandle) {
    actix_rt::spawn(async move {
        tokio::time::sleep(CLOSE_GRACE).await;
        writer.abort();
    });
}

/// The server's heartbeat of one socket
/// ([`ServerOptions::keep_alive_interval`],
/// [`client_timeout`](ServerOptions::client_timeout)): a ping every
/// interval, and the verdict "silent" once no frame came for the timeout.
/// Without it a half-open client (a dead link that never closes) holds its
/// socket, its tasks and its session's attachment forever.
pub(crate) struct KeepAlive {
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

    pub(crate) fn of(options: &ServerOptions) -> Self {
        Self::new(options.keep_alive_interval, options.client_timeout)
    }

    /// A frame arrived (or reading was paused by us, not the client).
    pub(crate) fn seen(&mut self) {
        self.last_seen = tokio::time::Instant::now();
    }

    /// Waits for the next tick (forever when off); `true` when the socket
    /// has been silent past the timeout, else it is time for a ping.
    pub(crate) async fn tick(&mut self) -> bool {
        match &mut self.ticker {
            Some(t) => {
                t.tick().await;
                self.last_seen.elapsed() >= self.timeout
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_and_calls_a_silent_client_silent() {
        let start = Instant::now();
        let mut k = KeepAlive::new(Duration::from_millis(100), Duration::from_millis(250));
        assert!(!k.tick().await, "100 ms: ping");
        assert!(!k.tick().await, "200 ms: ping");
        assert!(k.tick().await, "300 ms: silent past 250 ms");
        assert_eq!(start.elapsed(), Duration::from_millis(300));

        k.seen();
        assert!(!k.tick().await, "a frame resets the silence");
        assert!(!k.tick().await);
        assert!(k.tick().await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_interval_never_ticks() {
        let mut k = KeepAlive::new(Duration::ZERO, Duration::from_millis(1));
        let waited = tokio::time::timeout(Duration::from_secs(3600), k.tick()).await;
        assert!(waited.is_err(), "off: no ping, no timeout");
    }

    #[test]
    fn the_slot_keeps_only_the_newest_ping_and_pongs_are_counted_until_written() {
        let slot = PongSlot::default();
        let mut own = 0;
        while let PongRoute::Own(_) = slot.route(Bytes::from_static(b"p")) {
            own += 1;
            assert!(own <= PONG_BURST as usize, "the burst is bounded");
        }
        assert_eq!(own, PONG_BURST as usize);
        // The ping that ended the loop went to the empty slot (and woke
        // the writer); later ones replace it.
        assert!(matches!(
            slot.route(Bytes::from_static(b"2")),
            PongRoute::Kept
        ));
        assert!(matches!(
            slot.route(Bytes::from_static(b"3")),
            PongRoute::Kept
        ));
        assert_eq!(slot.take().as_deref(), Some(&b"3"[..]));
        assert_eq!(slot.take(), None);
        for _ in 0..own {
            slot.written();
        }
        assert_eq!(slot.queued.load(Ordering::Relaxed), 0);
    }
}
