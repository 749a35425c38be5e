//! The `ReconnectSupervisor`: counts attempts and asks the retry policy for
//! the delay before each one.
//!
//! It is its own actor so that the attempt count and the time of the loss
//! survive the `ConnectionActor`'s restarts (a restart is how a reconnect
//! happens, and it resets everything in the connection's context).

use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;

use super::shared::Shared;
use crate::{
    retry::{RetryContext, SharedRetryPolicy},
    Error,
};

/// The connection is up: remember since when, for `min_uptime`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ConnectionUp;

/// What the supervisor answers when the connection came back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recovery {
    pub(crate) attempts: u32,
    pub(crate) downtime: Duration,
}

/// The connection is up again after a loss: how long it took.
#[derive(Message)]
#[rtype(result = "Option<Recovery>")]
pub(crate) struct TakeRecovery;

/// The connection (or an attempt) ended with `error`: when to try again?
#[derive(Message)]
#[rtype(result = "NextAttempt")]
pub(crate) struct AskRetry {
    pub(crate) error: Error,
}

/// The supervisor's answer.
#[derive(Debug)]
pub(crate) enum NextAttempt {
    /// Wait `delay`, then make attempt number `attempt`.
    After { attempt: u32, delay: Duration },
    /// Stop: the policy gave up after `attempts` attempts.
    GiveUp { attempts: u32 },
}

/// Counts reconnect attempts and applies the retry policy.
pub struct ReconnectSupervisor {
    shared: std::sync::Arc<Shared>,
    policy: SharedRetryPolicy,
    min_uptime: Duration,
    /// The cap on a server's `Retry-After` (`max_retry_after`).
    max_retry_after: Duration,
    /// Attempts since the connection was last stable.
    attempt: u32,
    /// When the current outage began (`None` while connected).
    lost_at: Option<Instant>,
    /// When the current connection came up.
    up_since: Option<Instant>,
}

impl ReconnectSupervisor {
    /// A supervisor that asks `policy` for each delay and resets its count
    /// only after a connection lasted `min_uptime`. Crate-internal, like its
    /// messages; its unit tests below show it alone.
    pub(crate) fn new(
        policy: SharedRetryPolicy,
        min_uptime: Duration,
        shared: std::sync::Arc<Shared>,
    ) -> Self {
        ReconnectSupervisor {
            shared,
            policy,
            min_uptime,
            max_retry_after: crate::options::DEFAULT_MAX_RETRY_AFTER,
            attempt: 0,
            lost_at: None,
            up_since: None,
        }
    }
}

impl ReconnectSupervisor {
    /// Sets the cap on a server's `Retry-After` (zero ignores it).
    pub(crate) fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }
}

impl Actor for ReconnectSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.shared.counters.actor_started();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.counters.actor_stopped();
    }
}

impl Handler<ConnectionUp> for ReconnectSupervisor {
    type Result = ();

    fn handle(&mut self, _: ConnectionUp, _: &mut Context<Self>) {
        self.up_since = Some(Instant::now());
    }
}

impl Handler<TakeRecovery> for ReconnectSupervisor {
    type Result = Option<Recovery>;

    fn handle(&mut self, _: TakeRecovery, _: &mut Context<Self>) -> Option<Recovery> {
        let lost_at = self.lost_at.take()?;
        Some(Recovery {
            attempts: self.attempt,
            downtime: lost_at.elapsed(),
        })
    }
}

impl Handler<AskRetry> for ReconnectSupervisor {
    type Result = MessageResult<AskRetry>;

    fn handle(&mut self, msg: AskRetry, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        if let Some(up) = self.up_since.take() {
            // Only a connection that stayed up long enough resets the count;
            // a server that accepts and drops at once keeps backing off.
            if now.duration_since(up) >= self.min_uptime {
                self.attempt = 0;
            }
        }
        let lost_at = *self.lost_at.get_or_insert(now);
        self.attempt += 1;
        // A server that said when to come back (429/503 Retry-After) is
        // not asked again sooner, whatever the policy's backoff says; the
        // cap keeps a peer from parking the client for ages.
        let asked = msg.error.retry_after().map(|d| d.min(self.max_retry_after));
        let ctx = RetryContext {
            attempt: self.attempt,
            elapsed: now.duration_since(lost_at),
            error: msg.error,
        };
        MessageResult(match self.policy.0.next_delay(&ctx) {
            Some(delay) => NextAttempt::After {
                attempt: self.attempt,
                delay: asked.map_or(delay, |asked| delay.max(asked)),
            },
            None => {
                let attempts = self.attempt - 1;
                self.attempt = 0;
                self.lost_at = None;
                NextAttempt::GiveUp { attempts }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    //! The supervisor alone: its attempt count, the context the policy
    //! sees, `min_uptime` and the recovery report, in paused time.

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::retry::{ExponentialBackoff, RetryPolicy};

    /// Answers `attempt * 100 ms` up to `give_up_after` attempts, and
    /// records every context it was asked with.
    struct Recording {
        seen: Arc<Mutex<Vec<RetryContext>>>,
        give_up_after: u32,
    }

    impl RetryPolicy for Recording {
        fn next_delay(&self, ctx: &RetryContext) -> Option<Duration> {
            self.seen.lock().unwrap().push(ctx.clone());
            (ctx.attempt <= self.give_up_after).then(|| ctx.attempt * MS100)
        }
    }

    const MS100: Duration = Duration::from_millis(100);
    const SECOND: Duration = Duration::from_secs(1);

    /// Tokio's sleeps round up to the next millisecond, once per sleep.
    fn near(got: Duration, want: Duration) -> bool {
        got >= want && got <= want + Duration::from_millis(10)
    }

    fn start(
        give_up_after: u32,
        min_uptime: Duration,
    ) -> (Addr<ReconnectSupervisor>, Arc<Mutex<Vec<RetryContext>>>) {
        tokio::time::pause();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let policy = SharedRetryPolicy::new(Recording {
            seen: seen.clone(),
            give_up_after,
        });
        let shared = Arc::new(Shared::new());
        (
            ReconnectSupervisor::new(policy, min_uptime, shared).start(),
            seen,
        )
    }

    async fn ask(sup: &Addr<ReconnectSupervisor>, error: Error) -> NextAttempt {
        sup.send(AskRetry { error }).await.unwrap()
    }

    fn attempt(next: NextAttempt) -> u32 {
        match next {
            NextAttempt::After { attempt, .. } => attempt,
            NextAttempt::GiveUp { .. } => panic!("gave up: {next:?}"),
        }
    }

    #[actix_rt::test]
    async fn counts_attempts_until_the_policy_gives_up_then_starts_again() {
        let (sup, seen) = start(3, SECOND);
        for n in 1..=3 {
            match ask(&sup, Error::ConnectionLost).await {
                NextAttempt::After { attempt, delay } => {
                    assert_eq!(attempt, n);
                    assert_eq!(delay, n * MS100);
                }
                other => panic!("attempt {n}: {other:?}"),
            }
        }
        match ask(&sup, Error::HeartbeatTimeout(SECOND)).await {
            NextAttempt::GiveUp { attempts } => assert_eq!(attempts, 3),
            other => panic!("{other:?}"),
        }
        // The policy saw each error, numbered.
        let seen = seen.lock().unwrap().clone();
        let numbers: Vec<u32> = seen.iter().map(|c| c.attempt).collect();
        assert_eq!(numbers, vec![1, 2, 3, 4]);
        assert!(matches!(seen[3].error, Error::HeartbeatTimeout(_)));
        // A later loss starts from attempt 1.
        assert_eq!(attempt(ask(&sup, Error::ConnectionLost).await), 1);
    }

    #[actix_rt::test]
    async fn the_policy_sees_how_long_ago_the_connection_was_lost() {
        let (sup, seen) = start(10, SECOND);
        ask(&sup, Error::ConnectionLost).await;
        tokio::time::sleep(5 * SECOND).await;
        ask(&sup, Error::ConnectionLost).await;
        let elapsed: Vec<Duration> = seen.lock().unwrap().iter().map(|c| c.elapsed).collect();
        assert_eq!(elapsed[0], Duration::ZERO);
        assert!(near(elapsed[1], 5 * SECOND), "{elapsed:?}");
    }

    #[actix_rt::test]
    async fn only_a_connection_that_lasted_min_uptime_resets_the_count() {
        let (sup, _) = start(10, 10 * SECOND);
        assert_eq!(attempt(ask(&sup, Error::ConnectionLost).await), 1);
        // Up, but dropped again after 2 s: still backing off.
        sup.send(ConnectionUp).await.unwrap();
        tokio::time::sleep(2 * SECOND).await;
        assert_eq!(attempt(ask(&sup, Error::ConnectionLost).await), 2);
        // Up for 10 s: a fresh start.
        sup.send(ConnectionUp).await.unwrap();
        tokio::time::sleep(10 * SECOND).await;
        assert_eq!(attempt(ask(&sup, Error::ConnectionLost).await), 1);
    }

    #[actix_rt::test]
    async fn take_recovery_reports_the_outage_once() {
        let (sup, _) = start(10, SECOND);
        assert!(
            sup.send(TakeRecovery).await.unwrap().is_none(),
            "no loss yet"
        );
        ask(&sup, Error::ConnectionLost).await;
        tokio::time::sleep(3 * SECOND).await;
        ask(&sup, Error::ConnectionLost).await;
        tokio::time::sleep(SECOND).await;
        let r = sup.send(TakeRecovery).await.unwrap().expect("a recovery");
        assert_eq!(r.attempts, 2);
        assert!(near(r.downtime, 4 * SECOND), "{r:?}");
        assert!(sup.send(TakeRecovery).await.unwrap().is_none(), "once");
    }

    #[actix_rt::test]
    async fn a_retry_after_is_a_floor_under_the_policy_capped_by_max_retry_after() {
        tokio::time::pause();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let policy = SharedRetryPolicy::new(Recording {
            seen,
            give_up_after: 10,
        });
        let sup = ReconnectSupervisor::new(policy, SECOND, Arc::new(Shared::new()))
            .with_max_retry_after(60 * SECOND)
            .start();
        let busy = |secs| Error::UpgradeRejected {
            status: 503,
            retry_after: Some(secs * SECOND),
        };
        let delay = |next| match next {
            NextAttempt::After { delay, .. } => delay,
            other => panic!("{other:?}"),
        };
        // Longer than the policy's 100 ms: the server's wait.
        assert_eq!(delay(ask(&sup, busy(7)).await), 7 * SECOND);
        // Past the cap: the cap.
        assert_eq!(delay(ask(&sup, busy(3600)).await), 60 * SECOND);
        // Shorter than the policy's delay (attempt 3: 300 ms): the policy's.
        assert_eq!(delay(ask(&sup, busy(0)).await), 3 * MS100);
        // A negotiate refusal counts the same.
        let negotiate = Error::NegotiateRejected {
            status: 429,
            retry_after: Some(2 * SECOND),
        };
        assert_eq!(delay(ask(&sup, negotiate).await), 2 * SECOND);
    }

    #[actix_rt::test]
    async fn the_default_backoff_stops_at_once_on_a_401() {
        tokio::time::pause();
        let policy = SharedRetryPolicy::new(ExponentialBackoff {
            initial: SECOND,
            max: 8 * SECOND,
            max_attempts: 0,
        });
        let sup = ReconnectSupervisor::new(policy, SECOND, Arc::new(Shared::new())).start();
        let delay = match ask(&sup, Error::ConnectionLost).await {
            NextAttempt::After { attempt: 1, delay } => delay,
            other => panic!("{other:?}"),
        };
        assert!(delay >= SECOND && delay <= 2 * SECOND, "{delay:?}");
        let refused = Error::UpgradeRejected {
            status: 401,
            retry_after: None,
        };
        assert!(matches!(
            ask(&sup, refused).await,
            NextAttempt::GiveUp { attempts: 1 }
        ));
    }
}
