//! The `HeartbeatActor`: pings on an interval and declares the link dead
//! when nothing arrived for the heartbeat timeout.
//!
//! Any inbound frame counts as life. The connection records the time of the
//! last one in [`Shared`] (an atomic store per frame, cheaper than a message
//! per frame), and this actor checks it when its deadline comes. That
//! catches a half-open link: a peer that stops answering without closing TCP.

use std::time::Duration;

use std::sync::Arc;

use actix::{prelude::*, WeakRecipient};
use actix_rt::time::Instant;

use super::{
    connection::messages::{HeartbeatTimeout, SendPing},
    shared::{LiveGuard, Shared},
};

/// Start watching the socket of generation `gen`: ping it through `ping`
/// every interval, and tell `timeout` when it fell silent.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Watch {
    pub(crate) gen: u64,
    /// Weak: the heartbeat must not keep the connection alive (the last
    /// handle's drop ends the client).
    pub(crate) ping: WeakRecipient<SendPing>,
    /// Weak, for the same reason.
    pub(crate) timeout: WeakRecipient<HeartbeatTimeout>,
}

/// Stop watching (the socket of generation `gen` is gone).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Unwatch {
    pub(crate) gen: u64,
}

struct Watching {
    _live: LiveGuard,
    gen: u64,
    to_ping: WeakRecipient<SendPing>,
    to_timeout: WeakRecipient<HeartbeatTimeout>,
    ping: SpawnHandle,
    deadline: SpawnHandle,
}

/// Pings and watches for silence on one connection at a time.
pub struct HeartbeatActor {
    interval: Duration,
    timeout: Duration,
    shared: Arc<Shared>,
    watching: Option<Watching>,
}

impl HeartbeatActor {
    pub(crate) fn new(interval: Duration, timeout: Duration, shared: Arc<Shared>) -> Self {
        HeartbeatActor {
            interval,
            timeout,
            shared,
            watching: None,
        }
    }

    fn stop_watching(&mut self, ctx: &mut Context<Self>) {
        if let Some(w) = self.watching.take() {
            ctx.cancel_future(w.ping);
            ctx.cancel_future(w.deadline);
        }
    }

    /// Schedules the silence check for when the timeout would expire if
    /// nothing more arrives.
    fn schedule_deadline(&mut self, ctx: &mut Context<Self>, after: Duration) -> SpawnHandle {
        ctx.run_later(after, |act, ctx| {
            let silent_for = Instant::now().saturating_duration_since(act.shared.last_seen());
            let Some(w) = act.watching.as_mut() else {
                return;
            };
            if silent_for >= act.timeout {
                log::debug!("heartbeat: silent for {silent_for:?}, declaring the link dead");
                if let Some(conn) = w.to_timeout.upgrade() {
                    conn.do_send(HeartbeatTimeout {
                        gen: w.gen,
                        timeout: act.timeout,
                    });
                }
                act.stop_watching(ctx);
            } else {
                let left = act.timeout - silent_for;
                let handle = act.schedule_deadline(ctx, left);
                if let Some(w) = act.watching.as_mut() {
                    w.deadline = handle;
                }
            }
        })
    }
}

impl Actor for HeartbeatActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.shared.counters.actor_started();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.counters.actor_stopped();
    }
}

impl Handler<Watch> for HeartbeatActor {
    type Result = ();

    fn handle(&mut self, msg: Watch, ctx: &mut Context<Self>) {
        self.stop_watching(ctx);
        if self.interval.is_zero() {
            return;
        }
        let gen = msg.gen;
        let ping = ctx.run_interval(self.interval, move |act, _| {
            if let Some(conn) = act.watching.as_ref().and_then(|w| w.to_ping.upgrade()) {
                conn.do_send(SendPing { gen });
            }
        });
        let deadline = self.schedule_deadline(ctx, self.timeout);
        self.watching = Some(Watching {
            _live: LiveGuard::new(self.shared.clone()),
            gen,
            to_ping: msg.ping,
            to_timeout: msg.timeout,
            ping,
            deadline,
        });
    }
}

impl Handler<Unwatch> for HeartbeatActor {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, ctx: &mut Context<Self>) {
        if self.watching.as_ref().is_some_and(|w| w.gen == msg.gen) {
            self.stop_watching(ctx);
        }
    }
}
