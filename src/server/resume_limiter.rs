//! [`ResumeLimiter`]: counts events per peer address (failed resumes,
//! anonymous negotiates) in fixed windows, so that the routes can refuse an
//! address that guesses tokens or floods negotiate.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::options::FailedResumeLimit;

/// The most peer addresses the [`ResumeLimiter`] tracks at once.
const MAX_TRACKED_PEERS: usize = 65_536;

/// Counts failed resumes per peer address (an IPv4 address, or an IPv6
/// `/64`) in fixed windows that start at an address's first failure; see
/// [`FailedResumeLimit`].
pub(crate) struct ResumeLimiter {
    limit: Option<FailedResumeLimit>,
    peers: Mutex<HashMap<IpAddr, PeerFailures>>,
    /// What is counted, for the log line.
    what: &'static str,
}

struct PeerFailures {
    since: Instant,
    failures: u32,
}

impl ResumeLimiter {
    pub(crate) fn new(limit: Option<FailedResumeLimit>) -> Self {
        Self::counting(limit, "failed resumes")
    }

    /// A limiter of other events per address (`what` names them in logs).
    pub(crate) fn counting(limit: Option<FailedResumeLimit>, what: &'static str) -> Self {
        ResumeLimiter {
            limit,
            peers: Mutex::new(HashMap::new()),
            what,
        }
    }

    /// The key an address counts under: IPv4 (also IPv4-mapped IPv6) as
    /// is, other IPv6 addresses by their `/64`.
    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut seg = v6.segments();
                    seg[4..].fill(0);
                    IpAddr::V6(seg.into())
                }
            },
        }
    }

    /// How much longer `ip` is refused, if it is (at `now`).
    pub(crate) fn blocked_for(&self, ip: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let (limit, ip) = (self.limit?, ip?);
        let peers = self.peers.lock().expect("limiter lock");
        let p = peers.get(&Self::key(ip))?;
        let left = limit.window.checked_sub(now.duration_since(p.since))?;
        (p.failures >= limit.max_failures && !left.is_zero()).then_some(left)
    }

    /// Counts a failed resume from `ip` (at `now`).
    pub(crate) fn record_failure(&self, ip: Option<IpAddr>, now: Instant) {
        let (Some(limit), Some(ip)) = (self.limit, ip) else {
            return;
        };
        let key = Self::key(ip);
        let mut peers = self.peers.lock().expect("limiter lock");
        if !peers.contains_key(&key) && peers.len() >= MAX_TRACKED_PEERS {
            peers.retain(|_, p| now.duration_since(p.since) < limit.window);
            if peers.len() >= MAX_TRACKED_PEERS {
                return;
            }
        }
        let p = peers.entry(key).or_insert(PeerFailures {
            since: now,
            failures: 0,
        });
        if now.duration_since(p.since) >= limit.window {
            *p = PeerFailures {
                since: now,
                failures: 0,
            };
        }
        p.failures = p.failures.saturating_add(1);
        if p.failures == limit.max_failures {
            log::warn!(
                "{} {} from {key} within {:?}: refusing it for the rest of the window",
                p.failures,
                self.what,
                limit.window
            );
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.peers.lock().expect("limiter lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_failures: u32, window_ms: u64) -> ResumeLimiter {
        ResumeLimiter::new(Some(FailedResumeLimit {
            max_failures,
            window: Duration::from_millis(window_ms),
        }))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn refuses_at_the_limit_until_the_window_ends() {
        let l = limiter(3, 1000);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..2 {
            l.record_failure(a, t0 + Duration::from_millis(i));
            assert_eq!(l.blocked_for(a, t0 + Duration::from_millis(i)), None);
        }
        l.record_failure(a, t0 + Duration::from_millis(10));
        let left = l.blocked_for(a, t0 + Duration::from_millis(10)).unwrap();
        assert_eq!(
            left,
            Duration::from_millis(990),
            "counted from the first failure"
        );
        // Another address is not affected.
        assert_eq!(l.blocked_for(ip("10.0.0.2"), t0), None);
        // The window ends: free again, and counting starts over.
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(l.blocked_for(a, later), None);
        l.record_failure(a, later);
        assert_eq!(l.blocked_for(a, later), None);
        // No address (a Unix socket, say): never limited.
        l.record_failure(None, t0);
        assert_eq!(l.blocked_for(None, t0), None);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = limiter(2, 60_000);
        let t = Instant::now();
        l.record_failure(ip("2001:db8:1:2::1"), t);
        l.record_failure(ip("2001:db8:1:2:ffff::9"), t);
        assert!(l.blocked_for(ip("2001:db8:1:2::77"), t).is_some());
        assert!(l.blocked_for(ip("2001:db8:1:3::1"), t).is_none());
        l.record_failure(ip("::ffff:192.0.2.1"), t);
        l.record_failure(ip("192.0.2.1"), t);
        assert!(l.blocked_for(ip("192.0.2.1"), t).is_some());
        assert!(l.blocked_for(ip("::ffff:192.0.2.1"), t).is_some());
    }

    #[test]
    fn off_means_never_refused() {
        let l = ResumeLimiter::new(None);
        let t = Instant::now();
        for _ in 0..1000 {
            l.record_failure(ip("10.0.0.1"), t);
        }
        assert_eq!(l.blocked_for(ip("10.0.0.1"), t), None);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let l = limiter(1, 1000);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_PEERS as u32 {
            l.record_failure(Some(IpAddr::V4(i.into())), t0);
        }
        assert_eq!(l.tracked(), MAX_TRACKED_PEERS);
        // Full and nothing expired: a new address is not tracked.
        let new = ip("255.255.255.255");
        l.record_failure(new, t0);
        assert_eq!(l.tracked(), MAX_TRACKED_PEERS);
        assert_eq!(l.blocked_for(new, t0), None);
        // Once the windows ended, the old entries make room.
        let later = t0 + Duration::from_secs(2);
        l.record_failure(new, later);
        assert_eq!(l.tracked(), 1);
        assert!(l.blocked_for(new, later).is_some());
    }
}
