//! The client's frames in a session: DATA judged by the protocol's
//! [`Receiver`](crate::protocol::sequence::Receiver), handed to the
//! application's subscribers (with the [`Intake`](super::intake::Intake)'s
//! backpressure) and acked once taken; ACKs checked and applied by the
//! [`Sender`](crate::protocol::sequence::Sender).

use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::{
    super::events::MessageReceived,
    messages::{Inbound, Outbound},
    SessionActor,
};
use crate::{
    close_code,
    protocol::{sequence::Verdict, Frame},
};

impl Handler<Inbound> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        msg.gate.dequeued(msg.frames.len());
        if self.socket.as_ref().map(|s| s.id) != Some(msg.socket_id) {
            // A stale socket's frames: the client replays them on its new one.
            return;
        }
        // The batch's last DATA is handed over as a marker, so that the ack
        // for it (and all before) comes as soon as the subscribers took it.
        let last_data = msg
            .frames
            .iter()
            .rposition(|f| matches!(f, Frame::Data { .. }));
        for (i, frame) in msg.frames.into_iter().enumerate() {
            if self.ended {
                // Echoing overflowed the session: the rest has nowhere to go.
                return;
            }
            if let Err(reason) = self.on_frame(frame, Some(i) == last_data, ctx) {
                log::debug!("session {}: closing socket: {reason}", self.connection_id);
                self.close_socket(ctx, close_code::PROTOCOL_ERROR, reason);
                return;
            }
        }
        self.schedule_ack(ctx);
        #[cfg(feature = "redis")]
        self.kick(ctx);
    }
}

impl SessionActor {
    /// Handles one DATA or ACK; `Err` is a 1002 reason.
    fn on_frame(
        &mut self,
        frame: Frame,
        last_in_batch: bool,
        ctx: &mut Context<Self>,
    ) -> Result<(), &'static str> {
        match frame {
            Frame::Data { .. } if self.draining.is_some() => {
                // Shutting down: not delivered and not acked, so the client
                // re-sends it to the next server.
            }
            Frame::Data { seq, payload } => {
                // A duplicate (replay of something delivered) is dropped,
                // but counts for the ack.
                let verdict = self.receiver.on_data(seq).map_err(|e| e.reason())?;
                if verdict == Verdict::Deliver {
                    // Counted here, where a replay's duplicate is told apart.
                    self.shared
                        .messages_received
                        .fetch_add(1, Ordering::Relaxed);
                    self.deliver(seq, payload, last_in_batch, ctx);
                }
            }
            Frame::Ack { seq } => {
                let before = self.sender.acked();
                let freed = self.sender.on_ack(seq).map_err(|e| e.reason())?;
                if self.sender.acked() > before {
                    self.shared
                        .messages_acked
                        .fetch_add(self.sender.acked() - before, Ordering::Relaxed);
                    #[cfg(feature = "redis")]
                    if let Some(d) = &mut self.durable {
                        d.freed += freed as u64;
                    }
                    self.window.release(freed);
                    self.promote();
                    self.check_drained(ctx, false);
                }
            }
            Frame::Hello { .. } => return Err("unexpected HELLO"),
            Frame::Welcome { .. } => return Err("unexpected WELCOME"),
            // The socket's reader answers PINGs and refuses PONGs itself.
            Frame::Ping { .. } | Frame::Pong { .. } => return Err("unexpected keep-alive frame"),
        }
        Ok(())
    }

    /// The client's next message: to the subscribers (or counted as taken
    /// at once without any), and back to the client in echo mode.
    fn deliver(
        &mut self,
        seq: u64,
        payload: crate::Payload,
        last_in_batch: bool,
        ctx: &mut Context<Self>,
    ) {
        // Only what is needed: an event needs a copy of the id, and
        // echoing as well a clone of the payload.
        // Counted for the ack once taken: at once without subscribers, else
        // when they handled it.
        let echo = if self.shared.events.received.is_empty() {
            self.intake.taken = seq;
            self.receiver.count_for_ack(1);
            self.shared.echo.then_some(payload)
        } else {
            let echo = self.shared.echo.then(|| payload.clone());
            let msg = MessageReceived {
                connection_id: self.connection_id.clone(),
                seq,
                payload,
                client_id: self.client_id.clone(),
            };
            self.hand_over(msg, last_in_batch, ctx);
            echo
        };
        if let Some(payload) = echo {
            // The protocol forbids sending more than the client accepts,
            // even its own message back.
            if payload.len() > self.client_max {
                log::warn!(
                    "echo of {} bytes not sent: the client accepts at most {}",
                    payload.len(),
                    self.client_max
                );
            } else {
                #[cfg(feature = "redis")]
                if self.durable.is_some() {
                    // Recorded with the delivery it answers, in one commit.
                    self.window.add(payload.len());
                    return self.queue_durable(payload, true, ctx);
                }
                self.queue_outbound(
                    Outbound {
                        payload,
                        reserved: false,
                    },
                    ctx,
                );
            }
        }
    }

    /// Hands a delivered message to the subscribers: cheaply (`try_send`),
    /// or as a marker whose replies advance `intake.handled` (which
    /// messages are markers: [`Intake::hand`](super::intake::Intake::hand)).
    /// At the backlog bound the socket's reader is paused; the markers
    /// already out reopen it once the subscribers catch up.
    fn hand_over(&mut self, msg: MessageReceived, last_in_batch: bool, ctx: &mut Context<Self>) {
        let seq = msg.seq;
        let step = self.intake.hand(
            msg.payload.len() as u64,
            last_in_batch,
            &self.shared.options,
        );
        self.shared.inbound_backlog.fetch_add(1, Ordering::Relaxed);
        if step.pause {
            self.set_paused(true);
        }
        let Some((n, bytes)) = step.marker else {
            self.shared.events.received.publish(msg);
            return;
        };
        let replies = self.shared.events.received.emit_marker(msg);
        ctx.spawn(
            futures_util::future::join_all(replies)
                .into_actor(self)
                .map(move |_, act, ctx| act.on_handled(n, bytes, seq, ctx)),
        );
    }

    /// The subscribers handled every message up to the `n`th handed one
    /// (`bytes` in all), the client's `seq`.
    fn on_handled(&mut self, n: u64, bytes: u64, seq: u64, ctx: &mut Context<Self>) {
        let i = &mut self.intake;
        if n > i.handled {
            let done = usize::try_from(n - i.handled).unwrap_or(usize::MAX);
            self.shared
                .inbound_backlog
                .fetch_sub(done, Ordering::Relaxed);
            i.handled = n;
        }
        i.handled_bytes = i.handled_bytes.max(bytes);
        if seq > i.taken {
            let newly = seq - i.taken;
            i.taken = seq;
            self.receiver.count_for_ack(newly);
            self.schedule_ack(ctx);
        }
        if self.intake.paused && !self.intake.at_bound(&self.shared.options) {
            self.set_paused(false);
        }
        self.check_drained(ctx, false);
    }

    fn set_paused(&mut self, paused: bool) {
        self.intake.paused = paused;
        if let Some(s) = &self.socket {
            s.gate.set_paused(paused);
        }
    }

    /// The session ends: what it handed over no longer counts.
    pub(super) fn forget_backlog(&mut self) {
        let i = &mut self.intake;
        let left = usize::try_from(i.handed - i.handled).unwrap_or(usize::MAX);
        self.shared
            .inbound_backlog
            .fetch_sub(left, Ordering::Relaxed);
        i.handled = i.handed;
    }

    /// Sends the pending ACK now (the ack timer's, or before a close).
    pub(super) fn send_ack(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.ack_timer.take() {
            ctx.cancel_future(h);
        }
        if self.receiver.ack_pending() {
            // What the subscribers took, not what was delivered: a client
            // faster than them fills its window and waits. With a store,
            // also only what it recorded.
            let seq = self.ack_seq();
            #[cfg(feature = "redis")]
            if let Some(d) = &mut self.durable {
                if seq <= d.ack_written {
                    if seq == self.intake.taken {
                        self.receiver.ack_sent();
                    }
                    return;
                }
                d.ack_written = seq;
            }
            if seq == self.intake.taken {
                self.receiver.ack_sent();
            }
            self.write(Frame::Ack { seq }.to_bytes(), 0);
        }
    }

    /// The seq the next ACK carries.
    fn ack_seq(&self) -> u64 {
        #[cfg(feature = "redis")]
        if let Some(d) = &self.durable {
            return self.intake.taken.min(d.recorded_in);
        }
        self.intake.taken
    }

    /// Acks at once after the threshold, else within the ack interval.
    fn schedule_ack(&mut self, ctx: &mut Context<Self>) {
        if !self.receiver.ack_pending() || self.socket.is_none() {
            return;
        }
        if self.receiver.ack_due(self.shared.options.ack_threshold) {
            self.send_ack(ctx);
        } else if self.ack_timer.is_none() {
            let h = ctx.run_later(self.shared.options.ack_interval, |act, ctx| {
                act.ack_timer = None;
                act.send_ack(ctx);
            });
            self.ack_timer = Some(h);
        }
    }
}
