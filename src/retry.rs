//! Retry policies: how long to wait before the next reconnect attempt, and
//! when to give up.

use std::{fmt, sync::Arc, time::Duration};

use rand::Rng;

use crate::Error;

/// What a [`RetryPolicy`] sees before each reconnect attempt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryContext {
    /// The number of the attempt about to be made: 1 for the first retry.
    pub attempt: u32,
    /// How long ago the connection was lost.
    pub elapsed: Duration,
    /// Why the connection (or the previous attempt) ended: an I/O error, a
    /// refused upgrade with its HTTP status ([`Error::http_status`]), a close
    /// code and reason ([`Error::close_code`]), a heartbeat timeout, a
    /// connect timeout, ...
    pub error: Error,
}

impl RetryContext {
    /// The context of attempt `attempt`, `elapsed` after the loss, caused
    /// by `error`: for a test of a custom [`RetryPolicy`] (the struct is
    /// `#[non_exhaustive]`).
    pub fn new(attempt: u32, elapsed: Duration, error: Error) -> Self {
        RetryContext {
            attempt,
            elapsed,
            error,
        }
    }
}

/// Decides the delay before each reconnect attempt, or that the client
/// should stop trying (`None`).
///
/// # Examples
/// A policy that retries forever every 500 ms, except after a 401:
/// ```
/// use std::time::Duration;
/// use resilient_ws::{RetryContext, RetryPolicy};
///
/// struct Steady;
/// impl RetryPolicy for Steady {
///     fn next_delay(&self, ctx: &RetryContext) -> Option<Duration> {
///         (ctx.error.http_status() != Some(401)).then_some(Duration::from_millis(500))
///     }
/// }
/// ```
pub trait RetryPolicy: Send + Sync + 'static {
    /// The delay before attempt `ctx.attempt`, or `None` to give up.
    fn next_delay(&self, ctx: &RetryContext) -> Option<Duration>;
}

/// A shareable retry policy.
#[derive(Clone)]
pub struct SharedRetryPolicy(pub(crate) Arc<dyn RetryPolicy>);

impl SharedRetryPolicy {
    /// Wraps a policy.
    pub fn new(p: impl RetryPolicy) -> Self {
        SharedRetryPolicy(Arc::new(p))
    }
}

impl fmt::Debug for SharedRetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetryPolicy(..)")
    }
}

/// The default policy: exponential backoff with full jitter.
///
/// Attempt `n` waits a uniformly random time in
/// `[initial, min(max, initial * 2^n)]`, so clients that lost the same server
/// at the same moment spread their retries instead of returning as a herd.
/// It gives up after `max_attempts` (0 = never), and at once on errors that
/// retrying cannot fix: HTTP 401 or 403 on the upgrade, close code 1008
/// (policy violation), and an invalid URL or configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExponentialBackoff {
    /// The shortest delay (`reconnect_initial_delay`).
    pub initial: Duration,
    /// The longest delay (`reconnect_max_delay`).
    pub max: Duration,
    /// How many attempts before giving up; 0 means never give up.
    pub max_attempts: u32,
}

impl ExponentialBackoff {
    /// Delays from `initial` up to `max`, giving up after `max_attempts`
    /// (0: never). The struct is `#[non_exhaustive]`, so it is built here.
    pub fn new(initial: Duration, max: Duration, max_attempts: u32) -> Self {
        ExponentialBackoff {
            initial,
            max,
            max_attempts,
        }
    }
}

impl ExponentialBackoff {
    /// The upper bound of attempt `attempt`'s delay (before jitter).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Whether retrying cannot help with this error.
    pub fn is_terminal(error: &Error) -> bool {
        matches!(error.http_status(), Some(401 | 403))
            || matches!(error, Error::Closed { code: 1008, .. })
            || matches!(
                error,
                Error::InvalidUrl(_) | Error::InvalidConfig(_) | Error::ProtocolNotSupported(_)
            )
    }
}

impl RetryPolicy for ExponentialBackoff {
    fn next_delay(&self, ctx: &RetryContext) -> Option<Duration> {
        if Self::is_terminal(&ctx.error) {
            return None;
        }
        if self.max_attempts != 0 && ctx.attempt > self.max_attempts {
            return None;
        }
        let low = self.initial.min(self.max);
        let high = self.ceiling(ctx.attempt).max(low);
        if high == low {
            return Some(low);
        }
        let nanos = rand::rng().random_range(low.as_nanos()..=high.as_nanos());
        Some(Duration::from_nanos(nanos as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(attempt: u32, error: Error) -> RetryContext {
        RetryContext {
            attempt,
            elapsed: Duration::ZERO,
            error,
        }
    }

    fn policy(max_attempts: u32) -> ExponentialBackoff {
        ExponentialBackoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_attempts,
        }
    }

    #[test]
    fn delays_stay_within_the_doubling_ceiling_and_the_cap() {
        let p = policy(0);
        for attempt in 1..=12 {
            let ceiling = Duration::from_secs(1 << attempt.min(5)).min(Duration::from_secs(30));
            assert_eq!(p.ceiling(attempt), ceiling);
            for _ in 0..200 {
                let d = p.next_delay(&ctx(attempt, Error::ConnectionLost)).unwrap();
                assert!(d >= Duration::from_secs(1), "{d:?}");
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn delays_are_jittered() {
        let p = policy(0);
        let delays: std::collections::HashSet<_> = (0..50)
            .map(|_| p.next_delay(&ctx(5, Error::ConnectionLost)).unwrap())
            .collect();
        assert!(delays.len() > 40, "jitter spreads delays: {delays:?}");
        let mean = delays.iter().map(Duration::as_secs_f64).sum::<f64>() / delays.len() as f64;
        assert!(
            mean > 5.0 && mean < 26.0,
            "uniform over [1, 30]: mean {mean}"
        );
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = policy(3);
        assert!(p.next_delay(&ctx(3, Error::ConnectionLost)).is_some());
        assert!(p.next_delay(&ctx(4, Error::ConnectionLost)).is_none());
        assert!(policy(0)
            .next_delay(&ctx(10_000, Error::ConnectionLost))
            .is_some());
    }

    #[test]
    fn auth_failures_and_policy_closes_are_terminal() {
        let p = policy(0);
        for status in [401, 403] {
            assert!(p
                .next_delay(&ctx(
                    1,
                    Error::UpgradeRejected {
                        status,
                        retry_after: None
                    }
                ))
                .is_none());
        }
        let closed = Error::Closed {
            code: 1008,
            reason: String::new(),
        };
        assert!(p.next_delay(&ctx(1, closed)).is_none());
        for transient in [
            Error::UpgradeRejected {
                status: 503,
                retry_after: None,
            },
            Error::Closed {
                code: 1013,
                reason: String::new(),
            },
            Error::Closed {
                code: 1011,
                reason: String::new(),
            },
            Error::ConnectTimeout(Duration::from_secs(1)),
        ] {
            assert!(p.next_delay(&ctx(1, transient)).is_some());
        }
    }
}
