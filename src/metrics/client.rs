//! The client's reporter: an actor subscribed to the client's events that
//! reads its [`Stats`] on an interval.
//!
//! It holds no handle of the client (only the stats reader), so it never
//! keeps a client alive: once the client's actors are gone it stops too.

use std::time::Duration;

use ::metrics::{counter, gauge, histogram, Label};
use actix::prelude::*;

use super::{names, MetricsReporter, Reporting, StopReporting};
use crate::{
    message::DropReason, ConnectionState, MessageDropped, Reconnected, Reconnecting,
    ResilientWebSocket, StateChanged, Stats,
};

impl MetricsReporter {
    /// Reports `ws`'s metrics with the label `client` = this reporter's
    /// name (the `rws_client_*` table in the [module docs](super)).
    ///
    /// Call it in a running actix `System`, before or after `connect()`.
    /// A second reporter on the same client reports its events and stats
    /// too, but the heartbeat RTT keeps the first reporter's labels.
    pub fn client(&self, ws: &ResilientWebSocket) -> Reporting {
        super::describe();
        let labels = self.labels("client");
        ws.report_rtt(labels.clone());
        let addr = ClientReporter {
            stats: Box::new(ws.stats_reader()),
            labels,
            interval: self.interval,
        }
        .start();
        ws.subscribe_state(addr.clone().recipient());
        ws.subscribe_reconnecting(addr.clone().recipient());
        ws.subscribe_reconnected(addr.clone().recipient());
        ws.subscribe_dropped(addr.clone().recipient());
        // The state before the subscription took effect: a client that
        // connected already has no StateChanged left to tell.
        gauge!(names::CLIENT_CONNECTED, self.labels("client")).set(f64::from(u8::from(
            ws.state() == ConnectionState::Connected,
        )));
        Reporting {
            stop: addr.recipient(),
        }
    }
}

/// `DropReason` as a label value (snake case, like the serialized enums).
fn drop_reason(r: DropReason) -> &'static str {
    match r {
        DropReason::Overflow => "overflow",
        DropReason::Expired => "expired",
        DropReason::RetriesExhausted => "retries_exhausted",
    }
}

struct ClientReporter {
    /// Reads the client's counters without keeping the client alive.
    stats: Box<dyn Fn() -> Stats + Send + Sync>,
    labels: Vec<Label>,
    interval: Duration,
}

impl ClientReporter {
    fn poll(&mut self, ctx: &mut Context<Self>) {
        let s = (self.stats)();
        let l = &self.labels;
        gauge!(names::CLIENT_BUFFERED, l.clone()).set(s.messages_buffered as f64);
        counter!(names::CLIENT_SENT, l.clone()).absolute(s.messages_sent);
        counter!(names::CLIENT_RECEIVED, l.clone()).absolute(s.messages_received);
        counter!(names::CLIENT_WRITE_BATCHES, l.clone()).absolute(s.write_batches);
        if s.live_actors == 0 {
            // The last handle was dropped and the client stopped.
            gauge!(names::CLIENT_CONNECTED, l.clone()).set(0.0);
            ctx.stop();
        }
    }
}

impl Actor for ClientReporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.poll(ctx);
        ctx.run_interval(self.interval, Self::poll);
    }
}

impl Handler<StopReporting> for ClientReporter {
    type Result = ();
    fn handle(&mut self, _: StopReporting, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<StateChanged> for ClientReporter {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Context<Self>) {
        let up = msg.current == ConnectionState::Connected;
        gauge!(names::CLIENT_CONNECTED, self.labels.clone()).set(f64::from(u8::from(up)));
    }
}

impl Handler<Reconnecting> for ClientReporter {
    type Result = ();
    fn handle(&mut self, _: Reconnecting, _: &mut Context<Self>) {
        counter!(names::CLIENT_RECONNECT_ATTEMPTS, self.labels.clone()).increment(1);
    }
}

impl Handler<Reconnected> for ClientReporter {
    type Result = ();
    fn handle(&mut self, msg: Reconnected, _: &mut Context<Self>) {
        counter!(names::CLIENT_RECONNECTS, self.labels.clone()).increment(1);
        histogram!(names::CLIENT_DOWNTIME, self.labels.clone()).record(msg.downtime.as_secs_f64());
    }
}

impl Handler<MessageDropped> for ClientReporter {
    type Result = ();
    fn handle(&mut self, msg: MessageDropped, _: &mut Context<Self>) {
        let mut labels = self.labels.clone();
        labels.push(Label::new("reason", drop_reason(msg.reason)));
        counter!(names::CLIENT_DROPPED, labels).increment(1);
    }
}
