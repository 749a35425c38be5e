//! The `QueueActor`: the outbox between `send()` and the socket.
//!
//! It is a separate actor so that what it holds outlives every restart of
//! the `ConnectionActor`. While connected it is a pass-through that batches:
//! messages that arrive in one burst go to the connection as one
//! `WriteBatch` (one wake-up and one flush of the socket). While not
//! connected it stores them in a [`MessageQueue`] with the overflow policy
//! and time to live of the options, and on reconnect the backlog goes out
//! first, in order.

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{
    connection::{ConnectionActor, Disconnect, Shared, Subscribe, WriteBatch},
    stats::Counters,
    subscribers::Subscribers,
};
use crate::{
    events::{ErrorEvent, MessageDropped, Payload},
    queue::{Dropped, MessageQueue, QueueError, QueueOptions},
    Error,
};

/// How many backlog messages go to the connection in one batch.
const BACKLOG_BATCH: usize = 1024;

/// A message from `send()`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Enqueue {
    pub(crate) payload: Payload,
    pub(crate) priority: u8,
}

/// The connection's socket is up (`true`) or gone (`false`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkState(pub(crate) bool);

/// `disconnect()`: pass on after everything accepted before it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseAfterFlush(pub(crate) oneshot::Sender<()>);

/// Ends the current burst: hand the batch to the connection.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// Drops the messages whose time to live ran out.
#[derive(Message)]
#[rtype(result = "()")]
struct Expire;

/// Owns the outbox; see the module docs.
pub struct QueueActor {
    queue: MessageQueue,
    conn: Option<Addr<ConnectionActor>>,
    shared: Arc<Shared>,
    dropped: Subscribers<MessageDropped>,
    errors: Subscribers<ErrorEvent>,
    up: bool,
    /// The burst being collected while connected.
    batch: Vec<Payload>,
    flush_scheduled: bool,
    expiry: Option<SpawnHandle>,
}

impl QueueActor {
    pub(crate) fn new(
        opts: QueueOptions,
        shared: Arc<Shared>,
        dropped: Subscribers<MessageDropped>,
        errors: Subscribers<ErrorEvent>,
    ) -> Result<Self, QueueError> {
        Ok(QueueActor {
            queue: MessageQueue::new(opts)?,
            conn: None,
            shared,
            dropped,
            errors,
            up: false,
            batch: Vec::new(),
            flush_scheduled: false,
            expiry: None,
        })
    }

    /// The connection is started after this actor; it is told who it is.
    pub(crate) fn set_connection(&mut self, conn: Addr<ConnectionActor>) {
        self.conn = Some(conn);
    }

    fn report(&mut self, d: Dropped) {
        log::debug!("dropped message {} ({:?})", d.id, d.reason);
        Counters::add(&self.shared.counters.dropped, 1);
        self.dropped.publish(MessageDropped {
            id: d.id,
            payload: d.payload,
            reason: d.reason,
        });
    }

    fn update_buffered(&self) {
        self.shared.set_buffered(self.queue.len());
    }

    fn send_batch(&mut self, batch: Vec<Payload>) {
        if batch.is_empty() {
            return;
        }
        if let Some(conn) = &self.conn {
            // do_send: the batch was already admitted by the outbox's limits;
            // a bounded mailbox here could only lose it.
            conn.do_send(WriteBatch(batch));
        }
    }

    fn flush(&mut self) {
        self.flush_scheduled = false;
        let batch = std::mem::take(&mut self.batch);
        self.send_batch(batch);
    }

    fn drain_backlog(&mut self) {
        while !self.queue.is_empty() {
            let batch: Vec<Payload> = self
                .queue
                .dequeue_batch(BACKLOG_BATCH)
                .into_iter()
                .map(|m| m.payload)
                .collect();
            self.send_batch(batch);
        }
        self.update_buffered();
    }

    fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        if self.expiry.is_some() {
            return;
        }
        if let Some(at) = self.queue.next_expiry() {
            let now = std::time::Instant::now();
            let wait = at.saturating_duration_since(now) + Duration::from_millis(1);
            self.expiry = Some(ctx.notify_later(Expire, wait));
        }
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Must exceed any burst `send()` can produce between two polls.
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Enqueue> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        if self.up && self.queue.is_empty() {
            self.batch.push(msg.payload);
            if !self.flush_scheduled {
                // Runs after the messages already in the mailbox: a burst
                // becomes one batch.
                self.flush_scheduled = true;
                ctx.notify(Flush);
            }
            return;
        }
        match self.queue.enqueue(msg.payload, msg.priority) {
            Ok(outcome) => {
                if let Some(d) = outcome.dropped {
                    self.report(d);
                }
                self.schedule_expiry(ctx);
            }
            Err(e @ (QueueError::Full { .. } | QueueError::WouldWait { .. })) => {
                // `send()` checks for space first; this is the rare race.
                let error: Error = e.into();
                self.errors.publish(ErrorEvent { error });
            }
            Err(e) => self.errors.publish(ErrorEvent { error: e.into() }),
        }
        self.update_buffered();
        if self.up {
            self.drain_backlog();
        }
    }
}

impl Handler<Flush> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        self.flush();
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
    }
}

impl Handler<LinkState> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: LinkState, _: &mut Context<Self>) {
        self.up = msg.0;
        if self.up {
            self.drain_backlog();
        } else {
            // A batch in flight to a dead socket is kept by the connection
            // and written first on the next one.
            self.flush();
        }
    }
}

impl Handler<CloseAfterFlush> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: CloseAfterFlush, _: &mut Context<Self>) {
        self.flush();
        if self.up {
            self.drain_backlog();
        }
        // Same sender, same mailbox: the Disconnect arrives after the batch.
        match &self.conn {
            Some(conn) => conn.do_send(Disconnect(msg.0)),
            None => {
                let _ = msg.0.send(());
            }
        }
    }
}

impl Handler<Subscribe<MessageDropped>> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe<MessageDropped>, _: &mut Context<Self>) {
        self.dropped.add(msg.0);
    }
}

impl Handler<Subscribe<ErrorEvent>> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe<ErrorEvent>, _: &mut Context<Self>) {
        self.errors.add(msg.0);
    }
}
