//! Pongs under a ping flood: every ping of a burst answered, a sustained
//! flood coalesced. One token bucket ([`PongBucket`]) for both ends, so the
//! client and the server answer a burst alike.

use std::time::Duration;

use actix_rt::time::Instant;
use bytes::Bytes;

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

#[cfg(test)]
mod tests {
    use super::*;

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
