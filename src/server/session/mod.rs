//! The session actor: one per connection id, on one of the server's
//! workers (see the Threading section of `server`). It owns
//! the session's sequence state in both directions (the protocol's
//! [`Sender`] and [`Receiver`]) and outlives its sockets for the resume
//! window (docs/PROTOCOL.md §4, §5).
//!
//! The socket task of the attached socket (on an actix-web worker thread)
//! sends it batches of decoded frames ([`Inbound`]); the session writes
//! outgoing frames into the socket's unbounded channel (bounded in practice
//! by `max_unacked_bytes` of data plus small acks).
//!
//! Layout: this file is the actor and its lifecycle (attach, detach, the
//! resume window, drain, end); [`messages`] its messages; `inbound.rs` the
//! client's frames and the acks; [`intake`] the backpressure toward the
//! application's subscribers; `outbound.rs` the server's messages.

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, Arc},
};

use actix::prelude::*;

use super::{
    events::{ExpireReason, SessionExpired, SessionOpened, SessionResumed},
    send_window::SendWindow,
    shared,
    socket_tx::{Outgoing, QueueMeter, ReadGate, SocketTx},
};
use crate::{
    close_code,
    protocol::{
        sequence::{Receiver, Sender},
        tokens_equal, Frame,
    },
    ws, Payload,
};

/// The server state as the session sees it; named here, not through the
/// hub, because the hub imports the session.
type Shared = shared::Shared<Addr<SessionActor>>;

#[cfg(feature = "redis")]
mod durable;
mod inbound;
mod intake;
mod messages;
mod outbound;
#[cfg(test)]
mod tests;

#[cfg(feature = "redis")]
pub(crate) use messages::StoreNotice;
pub(crate) use messages::{Attach, AttachError, Detached, Drain, EndSession, Inbound, Outbound};

use intake::Intake;

/// A drain in progress (see [`Drain`]).
struct Draining {
    reason: String,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Attached {
    id: u64,
    tx: SocketTx,
    meter: Arc<QueueMeter>,
    gate: Arc<ReadGate>,
}

pub(crate) struct SessionActor {
    shared: Arc<Shared>,
    connection_id: String,
    token: String,
    identity: String,
    /// The client's stable id (negotiate's `client_id`, or the connection
    /// id), for [`MessageReceived`](super::events::MessageReceived).
    client_id: String,
    /// The largest payload the client accepts (negotiate's
    /// `max_message_size`; `usize::MAX` when it stated none).
    client_max: usize,
    had_socket: bool,
    socket: Option<Attached>,
    /// Bumped on every attach/detach; a resume-window timer only fires for
    /// the generation it was started in.
    generation: u64,
    /// The running resume-window timer: cancelled when a socket attaches or
    /// the session ends, so timers of past detaches do not pile up in the
    /// context of a client that drops and resumes often.
    expiry: Option<SpawnHandle>,
    /// When a session that never had a socket expires: its resume window
    /// counts from the negotiate, which may be before the actor started
    /// (see `workers`). `None`: a window from the start.
    unattached_until: Option<actix_rt::time::Instant>,
    ended: bool,
    // Client → server.
    /// The sequence rules of the client's messages, and the ack count.
    receiver: Receiver,
    intake: Intake,
    ack_timer: Option<SpawnHandle>,
    // Server → client.
    /// Numbering, the unacked window (`max_unacked_bytes`) and replay.
    sender: Sender<Payload>,
    /// Waiting for room in `sender`'s window, in order.
    pending: VecDeque<Payload>,
    pending_bytes: usize,
    /// Set by a server shutdown (see [`Drain`]).
    draining: Option<Draining>,
    /// The application's view of `sender` + `pending` bytes.
    window: Arc<SendWindow>,
    /// With a Redis store: the session's state there and the group
    /// commit (`durable.rs`). `None` in memory mode, whose path stays as
    /// it was (no await, no allocation per message).
    #[cfg(feature = "redis")]
    durable: Option<Box<durable::Durable>>,
}

impl SessionActor {
    pub(crate) fn new(
        shared: Arc<Shared>,
        connection_id: String,
        token: String,
        identity: String,
        client_id: String,
        client_max: usize,
        window: Arc<SendWindow>,
    ) -> Self {
        let max_unacked_bytes = shared.options.max_unacked_bytes;
        SessionActor {
            shared,
            connection_id,
            token,
            identity,
            client_id,
            client_max,
            had_socket: false,
            socket: None,
            generation: 0,
            expiry: None,
            unattached_until: None,
            ended: false,
            receiver: Receiver::default(),
            intake: Intake::default(),
            ack_timer: None,
            sender: Sender::new(1, max_unacked_bytes),
            pending: VecDeque::new(),
            pending_bytes: 0,
            draining: None,
            window,
            #[cfg(feature = "redis")]
            durable: None,
        }
    }

    /// Sets when the session expires if it never gets a socket (its
    /// negotiate's time plus the resume window).
    pub(crate) fn unattached_until(mut self, deadline: actix_rt::time::Instant) -> Self {
        self.unattached_until = Some(deadline);
        self
    }

    /// Whether the session's state lives in a store (Redis mode).
    fn is_durable(&self) -> bool {
        #[cfg(feature = "redis")]
        {
            self.durable.is_some()
        }
        #[cfg(not(feature = "redis"))]
        {
            false
        }
    }

    /// Starts the resume-window timer for the current generation.
    fn start_expiry(&mut self, ctx: &mut Context<Self>) {
        self.start_expiry_in(ctx, self.shared.options.resume_window);
    }

    /// Starts a resume-window timer for the current generation that fires
    /// after `window`.
    fn start_expiry_in(&mut self, ctx: &mut Context<Self>, window: std::time::Duration) {
        self.cancel_expiry(ctx);
        let generation = self.generation;
        let h = ctx.run_later(window, move |act, ctx| {
            act.expiry = None;
            if act.socket.is_none() && act.generation == generation {
                act.end(ctx, ExpireReason::ResumeWindow);
            }
        });
        self.expiry = Some(h);
    }

    /// Stops the resume-window timer (a socket attached, or the session
    /// ended).
    fn cancel_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.expiry.take() {
            ctx.cancel_future(h);
        }
    }

    /// Drops the current socket (after it was told to close, or it ended)
    /// and starts the resume window.
    fn detach(&mut self, ctx: &mut Context<Self>) {
        if self.socket.take().is_some() {
            self.shared.socket_detached();
            self.window.set_attached(false);
        }
        if let Some(h) = self.ack_timer.take() {
            ctx.cancel_future(h);
        }
        // The next socket's HELLO claim stands for the ack not sent.
        self.receiver.new_socket();
        self.generation += 1;
        #[cfg(feature = "redis")]
        if self.durable.is_some() {
            self.detach_durable(ctx);
        }
        if !self.ended && !self.is_durable() {
            self.start_expiry(ctx);
        }
        // With a store the drain is done once the detach is recorded (a
        // process that exits sooner leaves the session marked attached).
        if self.is_durable() {
            return;
        }
        if let Some(done) = self.draining.as_mut().and_then(|d| d.done.take()) {
            let _ = done.send(());
        }
    }

    /// Closes the attached socket with `code` (the session stays). The
    /// pending ACK goes out first: a client that never hears it re-sends
    /// what was delivered (to this session, harmless; to the next one
    /// after a restart, a duplicate).
    fn close_socket(&mut self, ctx: &mut Context<Self>, code: u16, reason: &str) {
        self.send_ack(ctx);
        if let Some(s) = &self.socket {
            let _ =
                s.tx.send(Outgoing::Close(Some(ws::close_reason(code, reason))));
            self.detach(ctx);
        }
    }

    /// Ends a drain once the client acked everything (or `force`: the
    /// deadline passed, or the socket is gone): closes with 1012.
    fn check_drained(&mut self, ctx: &mut Context<Self>, force: bool) {
        let Some(d) = &self.draining else { return };
        // With a store, what is recorded is the next node's to send: the
        // drain waits for the records, not for the client's acks.
        let acked = || {
            self.sender.is_empty()
                && self.pending.is_empty()
                && self.intake.taken == self.receiver.delivered
        };
        #[cfg(feature = "redis")]
        let drained = match self.durable.as_ref() {
            Some(d) => d.is_idle(self.receiver.delivered),
            None => acked(),
        };
        #[cfg(not(feature = "redis"))]
        let drained = acked();
        if !(drained || force || self.socket.is_none()) {
            return;
        }
        let reason = d.reason.clone();
        self.close_socket(ctx, close_code::SERVICE_RESTART, &reason);
        if self.is_durable() {
            return;
        }
        if let Some(done) = self.draining.as_mut().and_then(|d| d.done.take()) {
            let _ = done.send(());
        }
    }

    /// Ends the session: closes its socket, forgets it, reports it.
    fn end(&mut self, ctx: &mut Context<Self>, reason: ExpireReason) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.cancel_expiry(ctx);
        #[cfg(feature = "redis")]
        if self.durable.is_some() {
            return self.end_durable(ctx, reason);
        }
        match reason {
            ExpireReason::ResumeWindow => {}
            ExpireReason::Overflow => {
                self.close_socket(ctx, close_code::SESSION_GONE, "session overflow")
            }
            ExpireReason::Closed => self.close_socket(ctx, close_code::NORMAL, "session closed"),
        }
        self.shared
            .remove_session(&self.connection_id, &self.identity);
        let undelivered = self.sender.len() + self.pending.len();
        log::debug!(
            "session {} ended ({reason:?}), {undelivered} undelivered",
            self.connection_id
        );
        self.shared.events.expired.publish(SessionExpired {
            connection_id: self.connection_id.clone(),
            undelivered,
            reason,
        });
        // Ended: what it kept for the client goes now, not with the actor.
        self.sender = Sender::new(self.sender.next_seq(), 0);
        self.pending.clear();
        self.window.close();
        self.forget_backlog();
        ctx.stop();
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A session that never gets a socket expires too (with a store,
        // the sweeper expires it).
        if !self.is_durable() {
            match self.unattached_until {
                Some(at) => {
                    let left = at.saturating_duration_since(actix_rt::time::Instant::now());
                    self.start_expiry_in(ctx, left);
                }
                None => self.start_expiry(ctx),
            }
        }
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.window.close();
        self.forget_backlog();
        if self.socket.take().is_some() {
            self.shared.socket_detached();
        }
        if self.is_durable() {
            // Another actor may hold the id now (this node took the
            // session again): remove only this one.
            let me = ctx.address();
            self.shared
                .sessions
                .remove_if(&self.connection_id, &self.identity, |a| *a == me);
        } else {
            self.shared
                .remove_session(&self.connection_id, &self.identity);
        }
    }
}

impl Handler<Attach> for SessionActor {
    type Result = Result<(), AttachError>;

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Self::Result {
        if self.ended {
            return Err(AttachError::Gone);
        }
        if let Some(reason) = self.shared.shutdown_reason() {
            return Err(AttachError::ShuttingDown(reason));
        }
        #[cfg(feature = "redis")]
        if self.durable.is_some() {
            return self.attach_durable(msg, ctx);
        }
        // Evaluate both checks to keep timing independent of which failed.
        let token_ok = tokens_equal(&msg.token, &self.token);
        let identity_ok = msg.identity == self.identity;
        if !(token_ok & identity_ok) {
            return Err(AttachError::Refused);
        }
        if !self.had_socket && msg.first_seq == 0 {
            return Err(AttachError::Protocol("first_seq must be at least 1"));
        }
        self.sender
            .check_claim(msg.last_received)
            .map_err(|e| AttachError::Protocol(e.reason()))?;
        match self.socket.take() {
            Some(old) => {
                // The pending ACK first (the WELCOME below repeats it on
                // the new socket, but the old one may be all the client
                // still reads).
                if self.receiver.ack_pending() {
                    let ack = Frame::Ack {
                        seq: self.intake.taken,
                    };
                    let _ = old.tx.send(Outgoing::Binary(ack.to_bytes()));
                }
                let _ = old.tx.send(Outgoing::Close(Some(ws::close_reason(
                    close_code::REPLACED,
                    "replaced",
                ))));
                // One socket replaces another: the attached count stays.
            }
            None => self.shared.socket_attached(),
        }
        if let Some(h) = self.ack_timer.take() {
            ctx.cancel_future(h);
        }
        self.receiver.new_socket();
        self.generation += 1;
        self.cancel_expiry(ctx);
        let resumed = self.had_socket;
        if !resumed {
            // §5: the client's first message of this session is first_seq.
            self.receiver = Receiver::new(msg.first_seq - 1);
            self.intake.taken = self.receiver.delivered;
            self.had_socket = true;
        }
        msg.gate.set_paused(self.intake.paused);
        self.socket = Some(Attached {
            id: msg.socket_id,
            tx: msg.tx,
            meter: msg.meter,
            gate: msg.gate,
        });
        self.window.set_attached(true);
        self.write(
            Frame::Welcome {
                resumed,
                last_received: self.receiver.delivered,
            }
            .to_bytes(),
            0,
        );
        // HELLO's last_received is an implicit ack; replay the rest. (The
        // claim was checked above, before anything changed.)
        let acked_before = self.sender.acked();
        let (freed, replay): (usize, Vec<(u64, Payload)>) = self
            .sender
            .resume(msg.last_received)
            .map(|(freed, replay)| (freed, replay.map(|m| (m.seq, m.payload.clone())).collect()))
            .unwrap_or_default();
        self.window.release(freed);
        self.shared
            .messages_acked
            .fetch_add(self.sender.acked() - acked_before, Ordering::Relaxed);
        for (seq, payload) in replay {
            self.write_data(seq, payload);
        }
        self.promote();
        if resumed {
            self.shared.events.resumed.publish(SessionResumed {
                connection_id: self.connection_id.clone(),
            });
        } else {
            self.shared.events.opened.publish(SessionOpened {
                connection_id: self.connection_id.clone(),
                identity: self.identity.clone(),
            });
        }
        Ok(())
    }
}

impl Handler<Detached> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Detached, ctx: &mut Context<Self>) {
        if self.socket.as_ref().map(|s| s.id) == Some(msg.socket_id) {
            self.detach(ctx);
        }
    }
}

impl Handler<Drain> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) {
        if self.socket.is_none() || self.ended {
            // Nothing attached: nothing to drain (`done` fires on drop).
            return;
        }
        self.draining = Some(Draining {
            reason: msg.reason,
            done: Some(msg.done),
        });
        // What was delivered is acked now, not on the timer: nothing more
        // will be delivered here.
        self.send_ack(ctx);
        let generation = self.generation;
        ctx.run_later(
            self.shared.options.shutdown_drain_timeout,
            move |act, ctx| {
                if act.generation == generation {
                    act.check_drained(ctx, true);
                }
            },
        );
        self.check_drained(ctx, false);
    }
}

impl Handler<EndSession> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: EndSession, ctx: &mut Context<Self>) {
        self.end(ctx, ExpireReason::Closed);
    }
}
