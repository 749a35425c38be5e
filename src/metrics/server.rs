//! The server's reporter: an actor subscribed to a
//! [`ReliableServer`]'s events that reads its
//! [`ServerStats`](crate::server::ServerStats) on an interval. It uses only
//! the server's public handle, so the server's internals stay free to
//! change.

use std::time::Duration;

use ::metrics::{counter, gauge, Label};
use actix::prelude::*;

use super::{names, MetricsReporter, Reporting, StopReporting};
use crate::server::{
    ExpireReason, MessageReceived, ReliableServer, SessionExpired, SessionOpened, SessionResumed,
};

impl MetricsReporter {
    /// Reports `server`'s metrics with the label `server` = this
    /// reporter's name (the `rws_server_*` table in the
    /// [module docs](super)).
    ///
    /// The reporter subscribes to the server's events, including
    /// [`MessageReceived`] unless
    /// [`server_messages(false)`](MetricsReporter::server_messages): each
    /// client message also goes to the reporter's mailbox (a counter
    /// increment). It holds a handle of the server and ends when the server
    /// [shuts down](ReliableServer::shutdown) or on [`Reporting::stop`].
    pub fn server(&self, server: &ReliableServer) -> Reporting {
        super::describe();
        let addr = ServerReporter {
            server: server.clone(),
            labels: self.labels("server"),
            interval: self.interval,
        }
        .start();
        server
            .on_session_opened(addr.clone().recipient())
            .on_session_resumed(addr.clone().recipient())
            .on_session_expired(addr.clone().recipient());
        if self.server_messages {
            server.on_message(addr.clone().recipient());
        }
        Reporting {
            stop: addr.recipient(),
        }
    }
}

/// `ExpireReason` as a label value.
fn expire_reason(r: ExpireReason) -> &'static str {
    match r {
        ExpireReason::ResumeWindow => "resume_window",
        ExpireReason::Overflow => "overflow",
        ExpireReason::Closed => "closed",
    }
}

struct ServerReporter {
    server: ReliableServer,
    labels: Vec<Label>,
    interval: Duration,
}

impl ServerReporter {
    fn poll(&mut self, ctx: &mut Context<Self>) {
        let s = self.server.stats();
        let l = &self.labels;
        gauge!(names::SERVER_SESSIONS, l.clone()).set(s.sessions as f64);
        gauge!(names::SERVER_ATTACHED, l.clone()).set(s.attached as f64);
        gauge!(names::SERVER_PLAIN_CLIENTS, l.clone()).set(s.plain_clients as f64);
        gauge!(names::SERVER_INBOUND_BACKLOG, l.clone()).set(s.inbound_backlog as f64);
        counter!(names::SERVER_BROADCAST_SKIPPED, l.clone()).absolute(s.broadcast_skipped);
        if self.server.is_shutting_down() {
            ctx.stop();
        }
    }
}

impl Actor for ServerReporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.poll(ctx);
        ctx.run_interval(self.interval, Self::poll);
    }
}

impl Handler<StopReporting> for ServerReporter {
    type Result = ();
    fn handle(&mut self, _: StopReporting, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<SessionOpened> for ServerReporter {
    type Result = ();
    fn handle(&mut self, _: SessionOpened, _: &mut Context<Self>) {
        counter!(names::SERVER_OPENED, self.labels.clone()).increment(1);
    }
}

impl Handler<SessionResumed> for ServerReporter {
    type Result = ();
    fn handle(&mut self, _: SessionResumed, _: &mut Context<Self>) {
        counter!(names::SERVER_RESUMES, self.labels.clone()).increment(1);
    }
}

impl Handler<SessionExpired> for ServerReporter {
    type Result = ();
    fn handle(&mut self, msg: SessionExpired, _: &mut Context<Self>) {
        let mut labels = self.labels.clone();
        labels.push(Label::new("reason", expire_reason(msg.reason)));
        counter!(names::SERVER_EXPIRED, labels).increment(1);
        counter!(names::SERVER_UNDELIVERED, self.labels.clone()).increment(msg.undelivered as u64);
    }
}

impl Handler<MessageReceived> for ServerReporter {
    type Result = ();
    fn handle(&mut self, _: MessageReceived, _: &mut Context<Self>) {
        counter!(names::SERVER_RECEIVED, self.labels.clone()).increment(1);
    }
}
