//! The server's reporter: an actor subscribed to a
//! [`ReliableServer`]'s events that reads its
//! [`ServerStats`](crate::server::ServerStats) on an interval. It uses only
//! the server's public handle, so the server's internals stay free to
//! change.

use std::time::Duration;

use ::metrics::{counter, gauge, Label};
use actix::prelude::*;

use super::{names, MetricsReporter, Reporting, StopReporting};
use crate::server::{ExpireReason, ReliableServer, SessionExpired, SessionOpened, SessionResumed};

impl MetricsReporter {
    /// Reports `server`'s metrics with the label `server` = this
    /// reporter's name (the `rws_server_*` table in the
    /// [module docs](super)).
    ///
    /// The reporter subscribes to the server's session events only (not
    /// to [`MessageReceived`](crate::server::MessageReceived): a
    /// subscriber there would hold each message's ack until it counted it,
    /// on a server that has no other one); the message counts come from
    /// [`stats`](ReliableServer::stats). It holds a handle of the server
    /// and ends when the server [shuts down](ReliableServer::shutdown) or
    /// on [`Reporting::stop`].
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
        counter!(names::SERVER_RECEIVED, l.clone()).absolute(s.messages_received);
        counter!(names::SERVER_ACKED, l.clone()).absolute(s.messages_acked);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerOptions;

    #[actix_rt::test]
    async fn a_server_reporter_does_not_subscribe_to_the_messages() {
        let server = ReliableServer::echo(ServerOptions::default());
        let reporting = MetricsReporter::new("no-messages").server(&server);
        // Without a MessageReceived subscriber an echo session acks each
        // message at once instead of after a reporter's mailbox.
        assert!(server.shared.events.received.is_empty());
        assert!(reporting.is_running());
        reporting.stop();
    }
}
