//! Taking messages in: `send()`'s `Enqueue` and an `OutgoingMessage`, the
//! outbox's bound (the credits it issues, see `client/admission.rs`) and
//! overflow policy, the senders waiting for a place, expiry, and drop
//! reports.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use actix::prelude::*;
use actix_rt::time::Instant;
use tokio::sync::oneshot;

use super::{flow::Flush, inbox::Drain, messages::*, QueueActor};
use crate::client::{
    admission::{Admission, Credits, Ticket},
    receipt::ReceiptTx,
    stats::Counters,
    store_writer::{writer_stopped, Done},
};
use crate::{
    events::{ErrorEvent, MessageDropped, Payload},
    options::{OverflowPolicy, ReconnectMode},
    queue::{Dropped, MessageId, StoreOp},
    Error,
};

/// Drops the messages whose time to live ran out.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Expire;

/// The outbox's bound, kept by credits (see `client/admission.rs`).
#[derive(Default)]
pub(super) struct Gate {
    /// `None`: the overflow policy never refuses, nothing to count.
    credits: Option<Arc<Credits>>,
    /// Places this actor holds for messages in the outbox: credits
    /// senders took, and places it gave asks itself.
    held: isize,
    /// Asks that found the outbox full, in order, waiting for a place.
    parked: VecDeque<Parked>,
    /// How long an ask may wait: `None` refuses at once, `Some(None)`
    /// waits without end (reliable mode never drops).
    wait: Option<Option<Duration>>,
    /// The bound, for the refusal.
    max: usize,
}

/// A `send()` waiting for a place in the outbox.
struct Parked {
    payload: Payload,
    priority: u8,
    done: Option<Done>,
    answer: oneshot::Sender<crate::Result<()>>,
    deadline: Option<Instant>,
    id: MessageId,
    receipt: Option<ReceiptTx>,
}

impl Gate {
    /// The gate of a client's admission.
    pub(super) fn new(admission: &Admission) -> Self {
        let opts = admission.options();
        let wait = if opts.reconnect_mode == ReconnectMode::Stateful {
            Some(None)
        } else if let OverflowPolicy::Wait(t) = opts.overflow_policy {
            Some(Some(t))
        } else {
            None
        };
        Gate {
            credits: admission.credits(),
            held: 0,
            parked: VecDeque::new(),
            wait,
            max: Admission::bound(opts),
        }
    }

    /// Takes a free place for an ask, if the senders left one.
    fn take(&mut self) -> bool {
        let taken = self.credits.as_ref().is_some_and(|c| c.try_take());
        if taken {
            self.held += 1;
        }
        taken
    }

    fn full(&self) -> Error {
        Error::BufferFull(self.max)
    }
}

/// A user's actor sending through `ResilientWebSocket::sender()`: the
/// facade's `try_send`, answered from here.
impl Handler<OutgoingMessage> for QueueActor {
    type Result = crate::Result<()>;

    fn handle(&mut self, msg: OutgoingMessage, ctx: &mut Context<Self>) -> Self::Result {
        // After the `send()`s that came before it.
        self.drain_inbox(ctx);
        let ticket = match &self.admission {
            Some(admission) => admission.admit(&msg.payload)?,
            None => Ticket::Free,
        };
        let ticket = match ticket {
            // Never waits: straight to the socket, or refused.
            Ticket::Ask if self.can_pass(msg.payload.len()) => Ticket::Free,
            Ticket::Ask => return Err(self.gate.full()),
            t => t,
        };
        let enqueue = Enqueue {
            payload: msg.payload,
            priority: msg.priority,
            done: None,
            ticket,
            answer: None,
            id: self.shared.next_message_id(),
            receipt: None,
        };
        self.receive(enqueue, ctx);
        self.end_turn(ctx);
        Ok(())
    }
}

impl Handler<Drain> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.drain_inbox(ctx);
    }
}

impl Handler<Expire> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: Expire, ctx: &mut Context<Self>) {
        self.expiry = None;
        for d in self.queue.drain_expired(std::time::Instant::now()) {
            self.report(d);
        }
        self.update_buffered();
        self.schedule_expiry(ctx);
        self.end_turn(ctx);
    }
}

impl QueueActor {
    /// The end of every turn that may have freed places or changed what the
    /// store must follow: waiting senders get the places first, the rest go
    /// back to the credits; then this turn's changes go to the store.
    pub(super) fn end_turn(&mut self, ctx: &mut Context<Self>) {
        self.settle(ctx);
        self.submit();
    }

    /// Takes in everything `send()` left in the inbox, as one burst: one
    /// turn (credits settled, the store told) and one batch to the
    /// connection for all of it.
    pub(super) fn drain_inbox(&mut self, ctx: &mut Context<Self>) {
        let Some(inbox) = self.inbox.as_mut() else {
            return;
        };
        let taken = inbox.take();
        if taken.is_empty() {
            return;
        }
        // The burst is all here: no `Flush` to wait for (`take_in`
        // schedules none while one counts as scheduled), the batch goes
        // below.
        let scheduled = std::mem::replace(&mut self.flush_scheduled, true);
        self.burst_now = Some(std::time::Instant::now());
        for msg in taken {
            self.receive(msg, ctx);
        }
        self.burst_now = None;
        self.flush();
        // A `Flush` scheduled before still comes; it finds nothing.
        self.flush_scheduled = scheduled;
        self.end_turn(ctx);
    }

    /// An `Enqueue` arrived: a message with a credit (or that needs none) is
    /// taken; an ask is decided here, by the policy, and answered.
    pub(super) fn receive(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        let Enqueue {
            payload,
            priority,
            done,
            ticket,
            answer,
            id,
            receipt,
        } = msg;
        match ticket {
            Ticket::Credit => self.gate.held += 1,
            Ticket::Free => {}
            Ticket::Ask => {
                let Some(answer) = answer else {
                    return;
                };
                if self.durable.as_ref().is_some_and(|d| d.dead) {
                    let _ = answer.send(Err(Error::Store(writer_stopped())));
                    return;
                }
                // A place the senders left, or none needed: straight to
                // the socket.
                if !self.gate.take() && !self.can_pass(payload.len()) {
                    match self.gate.wait {
                        None => {
                            let _ = answer.send(Err(self.gate.full()));
                        }
                        Some(limit) => {
                            let parked = Parked {
                                payload,
                                priority,
                                done,
                                answer,
                                deadline: limit.map(|t| Instant::now() + t),
                                id,
                                receipt,
                            };
                            self.park(parked, limit, ctx);
                        }
                    }
                    return;
                }
                let _ = answer.send(Ok(()));
            }
        }
        self.take_in(payload, priority, done, (id, receipt), ctx);
    }

    /// An ask waits for a place, up to `limit` (`None`: without end).
    fn park(&mut self, parked: Parked, limit: Option<Duration>, ctx: &mut Context<Self>) {
        self.gate.parked.push_back(parked);
        if let Some(t) = limit {
            ctx.run_later(t, |act, ctx| {
                act.expire_parked();
                act.end_turn(ctx);
            });
        }
    }

    /// Refuses the waiting senders whose wait ran out.
    fn expire_parked(&mut self) {
        let now = Instant::now();
        let parked = std::mem::take(&mut self.gate.parked);
        for p in parked {
            if p.deadline.is_some_and(|d| d <= now) {
                let _ = p.answer.send(Err(self.gate.full()));
            } else {
                self.gate.parked.push_back(p);
            }
        }
    }

    /// Refuses every waiting sender with `error` (the store's writer died).
    pub(super) fn refuse_parked(&mut self, error: impl Fn() -> Error) {
        for p in std::mem::take(&mut self.gate.parked) {
            let _ = p.answer.send(Err(error()));
        }
    }

    /// Gives the places freed this turn to the waiting senders, in order,
    /// and the rest back to the credits (or takes credits back when the
    /// outbox holds more than its places: restored or put back).
    pub(super) fn settle(&mut self, ctx: &mut Context<Self>) {
        if self.gate.credits.is_none() {
            return;
        }
        while self.gate.held > self.queue.len() as isize {
            let Some(p) = self.gate.parked.pop_front() else {
                break;
            };
            if p.answer.is_closed() {
                // The `send()` gave up (dropped): its message is not taken.
                continue;
            }
            if p.deadline.is_some_and(|d| d <= Instant::now()) {
                let _ = p.answer.send(Err(self.gate.full()));
                continue;
            }
            let _ = p.answer.send(Ok(()));
            // The freed place is its own now.
            self.take_in(p.payload, p.priority, p.done, (p.id, p.receipt), ctx);
        }
        self.rebalance();
    }

    /// Makes the credits match the places the outbox holds.
    pub(super) fn rebalance(&mut self) {
        let Some(credits) = &self.gate.credits else {
            return;
        };
        let delta = self.gate.held - self.queue.len() as isize;
        if delta != 0 {
            credits.adjust(delta);
            self.gate.held -= delta;
        }
    }

    pub(super) fn report(&mut self, d: Dropped) {
        log::debug!("dropped message {} ({:?})", d.id, d.reason);
        if let Some(key) = self.take_key(d.id) {
            self.record_remove(key);
        }
        Counters::add(&self.shared.counters.dropped, 1);
        let (id, reason) = (d.id, d.reason);
        self.receipts.fail(id, || Error::Dropped { id, reason });
        self.dropped.publish(MessageDropped {
            id: d.id,
            payload: d.payload,
            reason: d.reason,
        });
    }

    pub(super) fn update_buffered(&self) {
        self.shared.set_buffered(self.queue.len());
        if let Some(w) = &self.window {
            self.shared.set_window(w.len());
        }
    }

    pub(super) fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        if self.expiry.is_some() {
            return;
        }
        if let Some(at) = self.queue.next_expiry() {
            let now = std::time::Instant::now();
            let wait = at.saturating_duration_since(now) + Duration::from_millis(1);
            self.expiry = Some(ctx.notify_later(Expire, wait));
        }
    }

    /// Takes a message admitted (by a credit, the policy, or a place
    /// given to an ask): straight to the socket when it can, else into the
    /// outbox. `tag`: the id `send()` gave it, and its receipt if any.
    pub(super) fn take_in(
        &mut self,
        payload: Payload,
        priority: u8,
        done: Option<Done>,
        tag: (MessageId, Option<ReceiptTx>),
        ctx: &mut Context<Self>,
    ) {
        let (id, receipt) = tag;
        if self.durable.as_ref().is_some_and(|d| d.dead) {
            if let Some(tx) = receipt {
                let _ = tx.send(Err(Error::Store(writer_stopped())));
            }
            match done {
                Some(done) => {
                    let _ = done.send(Err(writer_stopped()));
                }
                None => self.errors.publish(ErrorEvent {
                    error: writer_stopped().into(),
                }),
            }
            return;
        }
        let passes = self.can_pass(payload.len());
        // With a durable store, a message that waits is stored under a new
        // key; one that passes in reliable mode is stored by its seq (in
        // `outbound`); one that passes in raw mode is not stored at all.
        let key = match self.durable.as_mut() {
            Some(d) => {
                if let Some(done) = done {
                    if passes && self.window.is_none() {
                        let _ = done.send(Ok(()));
                    } else {
                        d.waiters.push(done);
                    }
                }
                let key = d.next_key;
                d.next_key += 1;
                if !passes {
                    d.ops.push(StoreOp::Admit {
                        key,
                        priority,
                        payload: payload.clone(),
                    });
                }
                key
            }
            None => {
                if let Some(done) = done {
                    let _ = done.send(Ok(()));
                }
                0
            }
        };
        if passes {
            let place = self.pass_place(id, priority);
            let mut out = self.outbound(payload, None, place);
            if let Some(tx) = receipt {
                self.attach(&mut out, id, tx);
            }
            self.batch.push(out);
            if !self.flush_scheduled {
                // Runs after the messages already in the mailbox: a burst
                // becomes one batch.
                self.flush_scheduled = true;
                ctx.notify(Flush);
            }
            return;
        }
        if let Some(tx) = receipt {
            // Before the enqueue: a policy that drops this very message
            // reports it, and the report fails the receipt.
            self.receipts.wait(id, tx);
        }
        match self.queue.enqueue_with_id(
            id,
            payload,
            priority,
            self.burst_now.unwrap_or_else(std::time::Instant::now),
        ) {
            Ok(outcome) => {
                if let Some(d) = self.durable.as_mut() {
                    d.keys.insert(outcome.id, key);
                }
                if let Some(d) = outcome.dropped {
                    self.report(d);
                }
                self.schedule_expiry(ctx);
            }
            // Not with credits (the queue has no bound of its own then) nor
            // with the policies that drop: reported, should it ever happen.
            Err(e) => {
                let error: Error = e.into();
                self.receipts.fail(id, || error.clone());
                self.errors.publish(ErrorEvent { error });
            }
        }
        self.update_buffered();
        if self.up {
            self.drain_backlog();
        }
    }
}
