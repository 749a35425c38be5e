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
    /// A heartbeat that pings every `interval` (zero: never, and watches
    /// nothing) and declares a socket dead after `timeout` of silence, read
    /// from `shared`'s last-seen time. Crate-internal: it needs the
    /// connection's `Shared`; its unit tests below show it alone.
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

#[cfg(test)]
mod tests {
    //! The heartbeat alone: paused time, and a recorder standing in for
    //! the connection through the weak recipients of `Watch`.

    use tokio::sync::mpsc;

    use super::*;

    /// What the fake connection was told, and when.
    #[derive(Debug, PartialEq)]
    enum Told {
        Ping { gen: u64 },
        Timeout { gen: u64, timeout: Duration },
    }

    /// Stands in for the `ConnectionActor`.
    struct FakeConn(mpsc::UnboundedSender<(Instant, Told)>);

    impl Actor for FakeConn {
        type Context = Context<Self>;
    }

    impl Handler<SendPing> for FakeConn {
        type Result = ();
        fn handle(&mut self, msg: SendPing, _: &mut Context<Self>) {
            let _ = self.0.send((Instant::now(), Told::Ping { gen: msg.gen }));
        }
    }

    impl Handler<HeartbeatTimeout> for FakeConn {
        type Result = ();
        fn handle(&mut self, msg: HeartbeatTimeout, _: &mut Context<Self>) {
            let _ = self.0.send((
                Instant::now(),
                Told::Timeout {
                    gen: msg.gen,
                    timeout: msg.timeout,
                },
            ));
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    /// Tokio's timers round up to the next millisecond, once per timer.
    fn near(got: Duration, want: Duration) -> bool {
        got >= want && got <= want + Duration::from_millis(10)
    }

    struct Setup {
        heartbeat: Addr<HeartbeatActor>,
        conn: Addr<FakeConn>,
        told: mpsc::UnboundedReceiver<(Instant, Told)>,
        shared: Arc<Shared>,
        start: Instant,
    }

    /// A heartbeat (interval 1 s, timeout 3 s) watching socket 7 of a fake
    /// connection, in paused time.
    fn watching(interval: Duration) -> Setup {
        tokio::time::pause();
        let shared = Arc::new(Shared::new());
        shared.touch();
        let heartbeat = HeartbeatActor::new(interval, 3 * SECOND, shared.clone()).start();
        let (tx, told) = mpsc::unbounded_channel();
        let conn = FakeConn(tx).start();
        heartbeat.do_send(Watch {
            gen: 7,
            ping: conn.downgrade().recipient(),
            timeout: conn.downgrade().recipient(),
        });
        Setup {
            heartbeat,
            conn,
            told,
            shared,
            start: Instant::now(),
        }
    }

    /// Everything the fake connection is told within `within` of now.
    async fn told_within(
        told: &mut mpsc::UnboundedReceiver<(Instant, Told)>,
        within: Duration,
    ) -> Vec<(Instant, Told)> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(Some(t)) = tokio::time::timeout_at(deadline, told.recv()).await {
            out.push(t);
        }
        out
    }

    #[actix_rt::test]
    async fn pings_every_interval_and_declares_a_silent_peer_dead_after_the_timeout() {
        let mut s = watching(SECOND);
        let told = told_within(&mut s.told, 10 * SECOND).await;
        let at = |i: usize| told[i].0 - s.start;

        assert_eq!(told[0].1, Told::Ping { gen: 7 });
        assert!(near(at(0), SECOND), "{told:?}");
        assert_eq!(told[1].1, Told::Ping { gen: 7 });
        assert!(near(at(1), 2 * SECOND), "{told:?}");
        let timeout = told
            .iter()
            .position(|(_, t)| matches!(t, Told::Timeout { .. }))
            .expect("a timeout");
        assert_eq!(
            told[timeout].1,
            Told::Timeout {
                gen: 7,
                timeout: 3 * SECOND
            }
        );
        assert!(near(at(timeout), 3 * SECOND), "{told:?}");
        // Watching ends with the timeout: no ping after it.
        assert!(
            told.iter()
                .all(|(t, _)| near(*t - s.start, 3 * SECOND) || *t - s.start < 3 * SECOND),
            "{told:?}"
        );
        assert_eq!(s.shared.counters.snapshot().live_socket_tasks, 0);
    }

    #[actix_rt::test]
    async fn a_frame_from_the_peer_pushes_the_deadline_back() {
        let mut s = watching(SECOND);
        // A frame arrives 2 s in: the peer is silent from then on.
        tokio::time::sleep(2 * SECOND).await;
        s.shared.touch();
        let told = told_within(&mut s.told, 10 * SECOND).await;
        let (when, _) = told
            .iter()
            .find(|(_, t)| matches!(t, Told::Timeout { .. }))
            .expect("a timeout");
        assert!(near(*when - s.start, 5 * SECOND), "{told:?}");
    }

    #[actix_rt::test]
    async fn unwatch_of_another_socket_is_ignored_and_of_this_one_stops_everything() {
        let mut s = watching(SECOND);
        s.heartbeat.do_send(Unwatch { gen: 6 });
        let first = s.told.recv().await.unwrap();
        assert_eq!(first.1, Told::Ping { gen: 7 }, "still watching 7");
        assert_eq!(s.shared.counters.snapshot().live_socket_tasks, 1);

        s.heartbeat.do_send(Unwatch { gen: 7 });
        let told = told_within(&mut s.told, 10 * SECOND).await;
        assert!(told.is_empty(), "nothing after Unwatch: {told:?}");
        assert_eq!(s.shared.counters.snapshot().live_socket_tasks, 0);
    }

    #[actix_rt::test]
    async fn a_zero_interval_watches_nothing() {
        let mut s = watching(Duration::ZERO);
        let told = told_within(&mut s.told, 60 * SECOND).await;
        assert!(told.is_empty(), "{told:?}");
        assert_eq!(s.shared.counters.snapshot().live_socket_tasks, 0);
    }

    #[actix_rt::test]
    async fn the_heartbeat_does_not_keep_the_connection_alive() {
        let s = watching(SECOND);
        let conn = s.conn.downgrade();
        drop(s.conn);
        // The fake connection goes although the heartbeat still watches it;
        // its next ping and the timeout find nobody, and nothing breaks.
        tokio::time::sleep(5 * SECOND).await;
        assert!(conn.upgrade().is_none(), "the heartbeat kept it alive");
        assert!(s.heartbeat.connected());
    }
}
