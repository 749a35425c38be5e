//! Taking messages in: `send()`'s `Enqueue` and an `OutgoingMessage`, the
//! outbox's bound and overflow policy, expiry, and drop reports.

use std::time::Duration;

use actix::prelude::*;

use super::{flow::Flush, messages::*, QueueActor};
use crate::client::{stats::Counters, store_writer::writer_stopped};
use crate::{
    events::{ErrorEvent, MessageDropped},
    queue::{Dropped, QueueError, StoreOp},
};

/// Drops the messages whose time to live ran out.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Expire;

/// A user's actor sending through `ResilientWebSocket::sender()`: the
/// facade's `try_send`, answered from here.
impl Handler<OutgoingMessage> for QueueActor {
    type Result = crate::Result<()>;

    fn handle(&mut self, msg: OutgoingMessage, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(admission) = &self.admission {
            admission.check(&msg.payload)?;
        }
        let enqueue = Enqueue {
            payload: msg.payload,
            priority: msg.priority,
            done: None,
        };
        self.enqueue(enqueue, ctx);
        self.submit();
        Ok(())
    }
}

impl Handler<Enqueue> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        self.enqueue(msg, ctx);
        self.submit();
    }
}

impl Handler<Expire> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: Expire, ctx: &mut Context<Self>) {
        self.expiry = None;
        for d in self.queue.drain_expired(std::time::Instant::now()) {
            self.report(d);
        }
        self.refill();
        self.update_buffered();
        self.schedule_expiry(ctx);
        self.submit();
    }
}

impl QueueActor {
    pub(super) fn report(&mut self, d: Dropped) {
        log::debug!("dropped message {} ({:?})", d.id, d.reason);
        if let Some(key) = self.take_key(d.id) {
            self.record_remove(key);
        }
        Counters::add(&self.shared.counters.dropped, 1);
        self.dropped.publish(MessageDropped {
            id: d.id,
            payload: d.payload,
            reason: d.reason,
        });
    }

    /// Moves sends that raced past a full outbox into it as space frees.
    pub(super) fn refill(&mut self) {
        while !self.queue.is_full() {
            let Some((payload, priority, key)) = self.overflow.pop_front() else {
                return;
            };
            match self.queue.enqueue(payload, priority) {
                Ok(outcome) => {
                    if let Some(d) = self.durable.as_mut() {
                        d.keys.insert(outcome.id, key);
                    }
                    if let Some(d) = outcome.dropped {
                        self.report(d);
                    }
                }
                Err(e) => {
                    if let Some(p) = e.into_payload() {
                        self.overflow.push_front((p, priority, key));
                    }
                    return;
                }
            }
        }
    }

    pub(super) fn update_buffered(&self) {
        self.shared
            .set_buffered(self.queue.len() + self.overflow.len());
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

    pub(super) fn enqueue(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        let Enqueue {
            payload,
            priority,
            done,
        } = msg;
        if self.durable.as_ref().is_some_and(|d| d.dead) {
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
            let out = self.outbound(payload, None);
            self.batch.push(out);
            if !self.flush_scheduled {
                // Runs after the messages already in the mailbox: a burst
                // becomes one batch.
                self.flush_scheduled = true;
                ctx.notify(Flush);
            }
            return;
        }
        if !self.overflow.is_empty() {
            // Keep the order: behind those already waiting.
            self.overflow.push_back((payload, priority, key));
            self.update_buffered();
            return;
        }
        match self.queue.enqueue(payload, priority) {
            Ok(outcome) => {
                if let Some(d) = self.durable.as_mut() {
                    d.keys.insert(outcome.id, key);
                }
                if let Some(d) = outcome.dropped {
                    self.report(d);
                }
                self.schedule_expiry(ctx);
            }
            Err(QueueError::Full { payload, .. } | QueueError::WouldWait { payload, .. }) => {
                // `send()` checked for space, but other sends were already
                // on their way: what `send()` accepted is never lost.
                self.overflow.push_back((payload, priority, key));
            }
            Err(e) => self.errors.publish(ErrorEvent { error: e.into() }),
        }
        self.update_buffered();
        if self.up {
            self.drain_backlog();
        }
    }
}
