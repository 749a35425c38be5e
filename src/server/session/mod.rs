//! The session actor: one per connection id, on the hub's arbiter. It owns
//! the session's sequence state in both directions and outlives its
//! sockets for the resume window (docs/PROTOCOL.md §4, §5).
//!
//! The socket task of the attached socket (on an actix-web worker thread)
//! sends it batches of decoded frames ([`Inbound`]); the session writes
//! outgoing frames into the socket's unbounded channel (bounded in practice
//! by `max_unacked_bytes` of data plus small acks).

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, Arc},
};

use actix::prelude::*;
use bytes::Bytes;

use super::{
    events::{ExpireReason, MessageReceived, SessionExpired, SessionOpened, SessionResumed},
    handle::{SendWindow, Shared},
    socket::{Outgoing, QueueMeter, ReadGate, SocketTx},
};
use crate::{
    close_code,
    protocol::{tokens_equal, Frame},
    ws, Payload,
};

/// A socket asks to attach after its HELLO.
#[derive(Message)]
#[rtype(result = "Result<(), AttachError>")]
pub(crate) struct Attach {
    pub(crate) socket_id: u64,
    pub(crate) tx: SocketTx,
    /// Counts the bytes written into `tx` and not yet onto the socket.
    pub(crate) meter: Arc<QueueMeter>,
    /// Closed by the session while its subscribers are behind.
    pub(crate) gate: Arc<ReadGate>,
    pub(crate) token: String,
    pub(crate) identity: String,
    pub(crate) last_received: u64,
    pub(crate) first_seq: u64,
}

/// Why a socket could not attach.
#[derive(Debug)]
pub(crate) enum AttachError {
    /// Close 4001: unknown or expired.
    Gone,
    /// Close 4001 too (the client cannot tell them apart): a wrong token or
    /// another identity's session, which counts toward the failed-resume
    /// limit.
    Refused,
    /// Close 1002 with this reason.
    Protocol(&'static str),
    /// Close 1012 with this reason: the server is shutting down.
    ShuttingDown(String),
}

/// Decoded DATA and ACK frames from the socket `socket_id`, in arrival
/// order (already checked for size and for going backwards on the socket).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Inbound {
    pub(crate) socket_id: u64,
    pub(crate) frames: Vec<Frame>,
    /// The socket's gate, told when the frames left the mailbox.
    pub(crate) gate: Arc<ReadGate>,
}

/// The socket `socket_id` ended (the socket task already closed it).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detached {
    pub(crate) socket_id: u64,
}

/// A server→client message from the application.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Outbound {
    pub(crate) payload: Payload,
    /// Whether the sender already counted it in the session's
    /// [`SendWindow`] (`send_to`); else the session counts it.
    pub(crate) reserved: bool,
}

/// Server shutdown: drain the attached socket, then close it with 1012 and
/// this reason; keep the session for the resume window. `done` fires (or is
/// dropped) once the socket is closed.
///
/// Draining: no more client messages are delivered (they stay unacked, so
/// the client re-sends them to the next server), the pending ACK goes out
/// now, queued messages are flushed as acks make room, and the socket is
/// closed once the client acked everything or `shutdown_drain_timeout`
/// passed. Without it a restart loses the pending ACK: the client re-sends
/// what was already delivered, and an echo arrives twice.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain {
    pub(crate) reason: String,
    pub(crate) done: tokio::sync::oneshot::Sender<()>,
}

/// A drain in progress (see [`Drain`]).
struct Draining {
    reason: String,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The application ends the session.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct EndSession;

/// A sent message kept until acked. The payload, not its encoded frame: the
/// socket's writer encodes (on its worker thread, not this arbiter's, and
/// into a buffer it reuses), and a replay encodes again.
struct Unacked {
    seq: u64,
    payload: Payload,
}

struct Attached {
    id: u64,
    tx: SocketTx,
    meter: Arc<QueueMeter>,
    gate: Arc<ReadGate>,
}

/// The client's messages on their way through the application's
/// [`MessageReceived`] subscribers (running totals): what was handed to
/// them and what they are known to have handled (learnt from markers, see
/// [`Subscribers::emit_marker`](super::events::Subscribers::emit_marker)).
/// The session acks only what was handled, and closes the socket's
/// [`ReadGate`] at the backlog bound.
#[derive(Default)]
struct Intake {
    handed: u64,
    handed_bytes: u64,
    handled: u64,
    handled_bytes: u64,
    /// `handed` and `handed_bytes` at the last marker.
    last_marker: (u64, u64),
    /// The highest client seq the subscribers handled: what is acked.
    taken: u64,
    paused: bool,
}

/// What [`Intake::hand`] decided for one message.
#[derive(Debug, PartialEq)]
struct HandStep {
    /// The backlog bound is reached: pause the socket's reader.
    pause: bool,
    /// Send it as a marker; its replies mean this many messages (and
    /// bytes) were handled.
    marker: Option<(u64, u64)>,
}

impl Intake {
    /// Counts one message of `len` bytes handed to the subscribers and
    /// decides whether it goes as a marker: the last message of a batch
    /// (so every handed message is covered by one) and one every quarter
    /// of the backlog bound (messages, or bytes: also a quarter of the
    /// unacked window, so a client whose window holds fewer messages never
    /// waits for a marker it cannot send).
    ///
    /// Not every message at the bound: a marker costs a reply channel and
    /// a future the session's context polls on every wake, and the
    /// reader's mailbox holds up to 1024 frames past the bound, so a
    /// client merely faster than its subscriber paid that on every
    /// message (and each poll walked every marker still out).
    fn hand(&mut self, len: u64, last_in_batch: bool, o: &super::ServerOptions) -> HandStep {
        self.handed += 1;
        self.handed_bytes += len;
        let pause = !self.paused && self.at_bound(o);
        let every = (o.max_inbound_backlog as u64 / 4).max(1);
        let every_bytes = (o.max_inbound_backlog_bytes.min(o.max_unacked_bytes) as u64 / 4).max(1);
        let due = last_in_batch
            || self.handed - self.last_marker.0 >= every
            || self.handed_bytes - self.last_marker.1 >= every_bytes;
        if due {
            self.last_marker = (self.handed, self.handed_bytes);
        }
        HandStep {
            pause,
            marker: due.then_some(self.last_marker),
        }
    }

    /// Whether the subscribers are a backlog bound behind.
    fn at_bound(&self, o: &super::ServerOptions) -> bool {
        self.handed - self.handled >= o.max_inbound_backlog as u64
            || self.handed_bytes - self.handled_bytes >= o.max_inbound_backlog_bytes as u64
    }
}

pub(crate) struct SessionActor {
    shared: Arc<Shared>,
    connection_id: String,
    token: String,
    identity: String,
    /// The client's stable id (negotiate's `client_id`, or the connection
    /// id), for [`MessageReceived`].
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
    ended: bool,
    // Client → server.
    delivered: u64,
    intake: Intake,
    ack_pending: u32,
    ack_timer: Option<SpawnHandle>,
    // Server → client.
    next_seq: u64,
    sent_up_to: u64,
    peer_acked: u64,
    unacked: VecDeque<Unacked>,
    unacked_bytes: usize,
    pending: VecDeque<Payload>,
    pending_bytes: usize,
    /// Set by a server shutdown (see [`Drain`]).
    draining: Option<Draining>,
    /// The application's view of `unacked` + `pending` bytes.
    window: Arc<SendWindow>,
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
            ended: false,
            delivered: 0,
            intake: Intake::default(),
            ack_pending: 0,
            ack_timer: None,
            next_seq: 1,
            sent_up_to: 0,
            peer_acked: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            draining: None,
            window,
        }
    }

    /// Starts the resume-window timer for the current generation.
    fn start_expiry(&mut self, ctx: &mut Context<Self>) {
        self.cancel_expiry(ctx);
        let generation = self.generation;
        let h = ctx.run_later(self.shared.options.resume_window, move |act, ctx| {
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
        self.ack_pending = 0;
        self.generation += 1;
        if !self.ended {
            self.start_expiry(ctx);
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
        let drained = self.unacked.is_empty()
            && self.pending.is_empty()
            && self.intake.taken == self.delivered;
        if !(drained || force || self.socket.is_none()) {
            return;
        }
        let reason = d.reason.clone();
        self.close_socket(ctx, close_code::SERVICE_RESTART, &reason);
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
        match reason {
            ExpireReason::ResumeWindow => {}
            ExpireReason::Overflow => {
                self.close_socket(ctx, close_code::SESSION_GONE, "session overflow")
            }
            ExpireReason::Closed => self.close_socket(ctx, close_code::NORMAL, "session closed"),
        }
        self.shared
            .remove_session(&self.connection_id, &self.identity);
        let undelivered = self.unacked.len() + self.pending.len();
        log::debug!(
            "session {} ended ({reason:?}), {undelivered} undelivered",
            self.connection_id
        );
        self.shared.events.expired.emit(SessionExpired {
            connection_id: self.connection_id.clone(),
            undelivered,
            reason,
        });
        self.unacked.clear();
        self.pending.clear();
        self.window.close();
        self.forget_backlog();
        ctx.stop();
    }

    /// Writes a frame carrying `data` payload bytes (0 but for DATA).
    fn write(&self, frame: Bytes, data: usize) {
        if let Some(s) = &self.socket {
            // Counted before it is queued: the writer (another thread) may
            // write it and count it off at once.
            s.meter.add(data);
            if s.tx.send(Outgoing::Metered(frame, data)).is_err() {
                s.meter.sub(data);
            }
        }
    }

    /// Whether a message of `len` bytes fits the unacked buffer now.
    fn fits(&self, len: usize) -> bool {
        self.unacked.is_empty()
            || self.unacked_bytes.saturating_add(len) <= self.shared.options.max_unacked_bytes
    }

    /// Writes a DATA frame (the writer encodes it), metered like `write`.
    fn write_data(&self, seq: u64, payload: Payload) {
        if let Some(s) = &self.socket {
            let data = payload.len();
            s.meter.add(data);
            if s.tx.send(Outgoing::Data(seq, payload)).is_err() {
                s.meter.sub(data);
            }
        }
    }

    /// Numbers a message, keeps it until acked, and sends it if attached.
    fn assign(&mut self, payload: Payload) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked_bytes += payload.len();
        if self.socket.is_some() {
            self.write_data(seq, payload.clone());
            self.sent_up_to = seq;
        }
        self.unacked.push_back(Unacked { seq, payload });
    }

    /// Moves queued messages into the unacked buffer while they fit.
    fn promote(&mut self) {
        while let Some(front) = self.pending.front() {
            let len = front.len();
            if !self.fits(len) {
                break;
            }
            let payload = self.pending.pop_front().expect("front exists");
            self.pending_bytes -= len;
            self.assign(payload);
        }
    }

    /// Drops every unacked message up to `seq` (an ack, explicit or by
    /// HELLO).
    fn release(&mut self, seq: u64) {
        if seq <= self.peer_acked {
            return;
        }
        self.peer_acked = seq;
        let before = self.unacked_bytes;
        while let Some(front) = self.unacked.front() {
            if front.seq > seq {
                break;
            }
            self.unacked_bytes -= front.payload.len();
            self.unacked.pop_front();
        }
        self.window.release(before - self.unacked_bytes);
    }

    fn send_ack(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.ack_timer.take() {
            ctx.cancel_future(h);
        }
        if self.ack_pending > 0 {
            self.ack_pending = 0;
            // What the subscribers took, not what was delivered: a client
            // faster than them fills its window and waits.
            self.write(
                Frame::Ack {
                    seq: self.intake.taken,
                }
                .to_bytes(),
                0,
            );
        }
    }

    fn schedule_ack(&mut self, ctx: &mut Context<Self>) {
        if self.ack_pending == 0 || self.socket.is_none() {
            return;
        }
        if self.ack_pending >= self.shared.options.ack_threshold {
            self.send_ack(ctx);
        } else if self.ack_timer.is_none() {
            let h = ctx.run_later(self.shared.options.ack_interval, |act, ctx| {
                act.ack_timer = None;
                act.send_ack(ctx);
            });
            self.ack_timer = Some(h);
        }
    }

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
                if seq <= self.delivered {
                    // A duplicate (replay of something delivered): drop it,
                    // but ack it.
                    self.ack_pending = self.ack_pending.saturating_add(1);
                } else if seq == self.delivered + 1 {
                    self.delivered = seq;
                    // Only what is needed: an event needs a copy of the id,
                    // and echoing as well a clone of the payload.
                    // Counted for the ack once taken: at once without
                    // subscribers, else when they handled it.
                    let echo = if self.shared.events.received.is_empty() {
                        self.intake.taken = seq;
                        self.ack_pending = self.ack_pending.saturating_add(1);
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
                        // The protocol forbids sending more than the
                        // client accepts, even its own message back.
                        if payload.len() > self.client_max {
                            log::warn!(
                                "echo of {} bytes not sent: the client accepts at most {}",
                                payload.len(),
                                self.client_max
                            );
                        } else {
                            self.queue_outbound(payload, false, ctx);
                        }
                    }
                } else {
                    return Err("sequence gap");
                }
            }
            Frame::Ack { seq } => {
                if seq > self.sent_up_to {
                    return Err("ack for a message never sent");
                }
                if seq > self.peer_acked {
                    self.release(seq);
                    self.promote();
                    self.check_drained(ctx, false);
                }
            }
            Frame::Hello { .. } => return Err("unexpected HELLO"),
            Frame::Welcome { .. } => return Err("unexpected WELCOME"),
        }
        Ok(())
    }
}

impl SessionActor {
    /// Hands a delivered message to the subscribers: cheaply (`try_send`),
    /// or as a marker whose replies advance `intake.handled` (which
    /// messages are markers: [`Intake::hand`]). At the backlog bound the
    /// socket's reader is paused; the markers already out reopen it once
    /// the subscribers catch up.
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
            self.shared.events.received.emit(msg);
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
            let newly = u32::try_from(seq - i.taken).unwrap_or(u32::MAX);
            i.taken = seq;
            self.ack_pending = self.ack_pending.saturating_add(newly);
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
    fn forget_backlog(&mut self) {
        let i = &mut self.intake;
        let left = usize::try_from(i.handed - i.handled).unwrap_or(usize::MAX);
        self.shared
            .inbound_backlog
            .fetch_sub(left, Ordering::Relaxed);
        i.handled = i.handed;
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A session that never gets a socket expires too.
        self.start_expiry(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.window.close();
        self.forget_backlog();
        if self.socket.take().is_some() {
            self.shared.socket_detached();
        }
        self.shared
            .remove_session(&self.connection_id, &self.identity);
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
        // Evaluate both checks to keep timing independent of which failed.
        let token_ok = tokens_equal(&msg.token, &self.token);
        let identity_ok = msg.identity == self.identity;
        if !(token_ok & identity_ok) {
            return Err(AttachError::Refused);
        }
        if !self.had_socket && msg.first_seq == 0 {
            return Err(AttachError::Protocol("first_seq must be at least 1"));
        }
        if msg.last_received > self.sent_up_to {
            return Err(AttachError::Protocol(
                "last_received is ahead of what was sent",
            ));
        }
        match self.socket.take() {
            Some(old) => {
                // The pending ACK first (the WELCOME below repeats it on
                // the new socket, but the old one may be all the client
                // still reads).
                if self.ack_pending > 0 {
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
        self.ack_pending = 0;
        self.generation += 1;
        self.cancel_expiry(ctx);
        let resumed = self.had_socket;
        if !resumed {
            self.delivered = msg.first_seq - 1;
            self.intake.taken = self.delivered;
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
                last_received: self.delivered,
            }
            .to_bytes(),
            0,
        );
        // HELLO's last_received is an implicit ack; replay the rest.
        self.release(msg.last_received);
        for u in &self.unacked {
            self.write_data(u.seq, u.payload.clone());
        }
        if let Some(last) = self.unacked.back() {
            self.sent_up_to = self.sent_up_to.max(last.seq);
        }
        self.promote();
        if resumed {
            self.shared.events.resumed.emit(SessionResumed {
                connection_id: self.connection_id.clone(),
            });
        } else {
            self.shared.events.opened.emit(SessionOpened {
                connection_id: self.connection_id.clone(),
                identity: self.identity.clone(),
            });
        }
        Ok(())
    }
}

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

impl Handler<Outbound> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Outbound, ctx: &mut Context<Self>) {
        self.queue_outbound(msg.payload, msg.reserved, ctx);
    }
}

impl SessionActor {
    /// A server→client message: sent now if the unacked buffer has room,
    /// else queued behind the others; too much queued ends the session.
    fn queue_outbound(&mut self, payload: Payload, reserved: bool, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        let len = payload.len();
        if !reserved {
            self.window.add(len);
        }
        if self.pending.is_empty() && self.fits(len) {
            self.assign(payload);
            return;
        }
        self.pending.push_back(payload);
        self.pending_bytes += len;
        if self.pending.len() > 1 && self.pending_bytes > self.shared.options.max_pending_bytes() {
            log::warn!(
                "session {}: {} bytes waiting for acks; ending the session",
                self.connection_id,
                self.pending_bytes
            );
            self.end(ctx, ExpireReason::Overflow);
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

#[cfg(test)]
mod tests {
    use super::{HandStep, Intake};
    use crate::server::ServerOptions;

    /// Hands `batches` batches of `per_batch` messages of `len` bytes to
    /// subscribers that handle nothing; answers (markers, the 1-based
    /// message at which the reader was paused).
    fn slow_subscriber(
        o: &ServerOptions,
        batches: usize,
        per_batch: usize,
        len: u64,
    ) -> (Vec<(u64, u64)>, Option<u64>) {
        let mut intake = Intake::default();
        let (mut markers, mut paused_at) = (Vec::new(), None);
        for _ in 0..batches {
            for k in 0..per_batch {
                let HandStep { pause, marker } = intake.hand(len, k + 1 == per_batch, o);
                if pause {
                    assert!(paused_at.is_none(), "paused twice without a reopen");
                    paused_at = Some(intake.handed);
                    intake.paused = true;
                }
                markers.extend(marker);
            }
        }
        (markers, paused_at)
    }

    /// Past the backlog bound (the reader's mailbox still holds up to four
    /// batches), messages go out as plain events: markers stay one per
    /// batch end and quarter of the bound, instead of one per message
    /// (each a reply channel and a future the session polls on every
    /// wake), which cost the 64 B stateful echo ~10 % of its throughput.
    #[test]
    fn past_the_backlog_bound_markers_stay_one_per_batch() {
        let o = ServerOptions::default();
        assert_eq!(o.max_inbound_backlog, 1024);
        let (markers, paused_at) = slow_subscriber(&o, 8, 256, 64);
        assert_eq!(paused_at, Some(1024), "the reader pauses at the bound");
        // Every batch's last message is a marker (so every message is
        // covered by one), and nothing else is at this size.
        assert_eq!(
            markers.len(),
            8,
            "{} markers for 2048 messages",
            markers.len()
        );
        let want: Vec<(u64, u64)> = (1..=8u64).map(|b| (b * 256, b * 256 * 64)).collect();
        assert_eq!(markers, want);
    }

    /// Below the bound the marker spacing is unchanged: a quarter of the
    /// bound in messages, and a quarter of the smaller of the byte bound
    /// and the unacked window in bytes.
    #[test]
    fn markers_every_quarter_of_the_bound_in_messages_or_bytes() {
        let o = ServerOptions {
            max_inbound_backlog: 40,
            ..ServerOptions::default()
        };
        let (markers, _) = slow_subscriber(&o, 1, 25, 1);
        assert_eq!(markers, vec![(10, 10), (20, 20), (25, 25)]);
        let o = ServerOptions {
            max_unacked_bytes: 64 * 1024,
            ..ServerOptions::default()
        };
        let (markers, paused_at) = slow_subscriber(&o, 1, 40, 1024);
        assert_eq!(paused_at, None);
        let n: Vec<u64> = markers.iter().map(|m| m.0).collect();
        assert_eq!(n, vec![16, 32, 40]);
    }
}
