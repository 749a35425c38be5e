//! Reliable mode: acknowledging what was delivered, on a short timer or at
//! once past the threshold, and once more ahead of a Close we send. With a
//! durable store an ack claims only what the store holds.

use actix::prelude::*;
use actix_http::ws::Message as WsMessage;

use super::{actor::ConnectionActor, socket::Closing};
use crate::{protocol::Frame as ProtoFrame, queue::StoreOp};

impl ConnectionActor {
    /// Acks at once after the threshold, else within the ack interval.
    pub(super) fn schedule_ack(&mut self, ctx: &mut Context<Self>) {
        let Some(session) = self.reliable.session.as_ref() else {
            return;
        };
        if self.reliable.ack_now(session.ack_threshold) {
            self.send_ack(ctx);
            return;
        }
        let interval = session.ack_interval;
        if let Some(sock) = self.sock.as_mut() {
            if sock.ack_timer.is_none() {
                sock.ack_timer = Some(ctx.run_later(interval, |act, ctx| {
                    if let Some(sock) = act.sock.as_mut() {
                        sock.ack_timer = None;
                    }
                    act.send_ack(ctx);
                }));
            }
        }
    }

    pub(super) fn send_ack(&mut self, ctx: &mut Context<Self>) {
        if !self.reliable.ack_pending() {
            return;
        }
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        if let Some(h) = sock.ack_timer.take() {
            ctx.cancel_future(h);
        }
        if sock.closing != Closing::Open {
            return;
        }
        let seq = self.reliable.take_ack();
        let Some(store) = &self.store else {
            let _ = sock.write(WsMessage::Binary(ProtoFrame::Ack { seq }.to_bytes()));
            return;
        };
        // Acknowledge only what the store holds as delivered: after a crash
        // the server must still have everything past it.
        let gen = sock.gen;
        let durable = store.submit_wait(vec![StoreOp::Delivered(seq)]);
        let write = durable.into_actor(self).map(move |res, act, _| {
            if !matches!(res, Ok(Ok(()))) {
                return;
            }
            // Only for the socket (so the session) it was meant for: after a
            // lost session an old seq must not become the new one's claim.
            // A later socket just claims less and drops the replayed copies.
            if let Some(sock) = act.sock.as_mut().filter(|s| s.gen == gen) {
                act.durable_delivered = act.durable_delivered.max(seq);
                if sock.closing == Closing::Open {
                    let _ = sock.write(WsMessage::Binary(ProtoFrame::Ack { seq }.to_bytes()));
                }
            }
        });
        ctx.spawn(write);
    }

    /// Reliable mode: writes the pending ACK ahead of a Close we initiate,
    /// then runs `close`. Without it the peer keeps, and replays to a later
    /// session, what we had already delivered. With a durable store the ACK
    /// claims only what the store holds (see `send_ack`): the Close waits
    /// for that commit up to `close_timeout`, and goes without the ACK if
    /// the commit fails or is late.
    pub(super) fn ack_before_close(
        &mut self,
        ctx: &mut Context<Self>,
        close: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let pending = self.reliable.session.is_some() && self.reliable.ack_pending();
        let Some(sock) = self.sock.as_mut() else {
            return close(self, ctx);
        };
        if let Some(h) = sock.ack_timer.take() {
            ctx.cancel_future(h);
        }
        if !pending || sock.closing != Closing::Open {
            return close(self, ctx);
        }
        let seq = self.reliable.take_ack();
        let ack = WsMessage::Binary(ProtoFrame::Ack { seq }.to_bytes());
        let Some(store) = &self.store else {
            let _ = sock.write(ack);
            return close(self, ctx);
        };
        sock.closing = Closing::Acking;
        let gen = sock.gen;
        let durable = actix_rt::time::timeout(
            self.opts.close_timeout,
            store.submit_wait(vec![StoreOp::Delivered(seq)]),
        );
        let then = durable.into_actor(self).map(move |res, act, ctx| {
            let Some(sock) = act
                .sock
                .as_mut()
                .filter(|s| s.gen == gen && s.closing == Closing::Acking)
            else {
                return;
            };
            if matches!(res, Ok(Ok(Ok(())))) {
                act.durable_delivered = act.durable_delivered.max(seq);
                let _ = sock.write(ack);
            } else {
                log::debug!("closing without the last ack: its delivery is not durable");
            }
            sock.closing = Closing::Open;
            close(act, ctx);
        });
        ctx.spawn(then);
    }
}
