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
    /// Attempts since the connection was last stable.
    attempt: u32,
    /// When the current outage began (`None` while connected).
    lost_at: Option<Instant>,
    /// When the current connection came up.
    up_since: Option<Instant>,
}

impl ReconnectSupervisor {
    pub(crate) fn new(
        policy: SharedRetryPolicy,
        min_uptime: Duration,
        shared: std::sync::Arc<Shared>,
    ) -> Self {
        ReconnectSupervisor {
            shared,
            policy,
            min_uptime,
            attempt: 0,
            lost_at: None,
            up_since: None,
        }
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
        let ctx = RetryContext {
            attempt: self.attempt,
            elapsed: now.duration_since(lost_at),
            error: msg.error,
        };
        MessageResult(match self.policy.0.next_delay(&ctx) {
            Some(delay) => NextAttempt::After {
                attempt: self.attempt,
                delay,
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
