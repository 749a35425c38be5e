//! The `QueueActor`: the outbox between `send()` and the socket.
//!
//! It is a separate actor so that what it holds outlives every restart of
//! the `ConnectionActor`. While connected it is a pass-through that batches:
//! messages that arrive in one burst go to the connection as one
//! `WriteBatch` (one wake-up and one flush of the socket). While not
//! connected it stores them in a [`MessageQueue`] with the overflow policy
//! and time to live of the options, and on reconnect the backlog goes out
//! first, in order.
//!
//! It alone decides whether a message is taken, waits or is refused
//! (`admit.rs`): it issues credits, one per free place in the outbox, that
//! `send()` takes without a round trip; a `send()` that finds none asks,
//! and the actor answers by the overflow policy (refuse, or park the sender
//! until a place frees or its wait ends; reliable mode waits without end).
//! A credit reserves its place, so nothing that was taken can find the
//! outbox full: there is no buffer beside it for sends that raced.
//!
//! In reliable mode (`ReconnectMode::Stateful`) it also owns the sending
//! half of the session: it numbers messages as they leave the outbox, keeps
//! every sent message until the server acknowledges it (bounded in bytes:
//! when the window is full, messages wait in the outbox, and `send()` waits
//! when the outbox is full), and replays the unacknowledged ones after every
//! reconnect. Because it is not the `ConnectionActor`, none of that is lost
//! when the connection restarts.
//!
//! With a durable store it also records every change (accepted, left the
//! outbox as seq n, acknowledged, dropped) as a [`StoreOp`] for the store's
//! writer thread, and answers a `send()` only once its message is durable.
//! In reliable mode a message goes to the socket only after the commit that
//! gave it its seq (it waits in the window, not in a copy): a seq the server has seen is never given to
//! another message after a crash, which is what makes delivery exactly once
//! across a restart of the process.
//!
//! A commit that fails is not progress: nothing in it goes to the socket,
//! the `send()`s in it fail with the store's error, and the actor rolls its
//! state back to the last commit that held (see `rollback`):
//! the seqs it gave out are given again, messages whose `send()` failed
//! leave the outbox, messages whose `send()` succeeded earlier go back into
//! it. Until a commit works again the outbox holds what it has (retried on
//! a backoff timer, and with every new change); a writer that died refuses
//! everything from then on.

use std::{sync::Arc, time::Duration};

use actix::{prelude::*, WeakRecipient};
use tokio::sync::oneshot;

mod admit;
mod durable;
mod flow;
pub(crate) mod inbox;
pub(crate) mod messages;
mod receipts;
#[cfg(test)]
mod tests;

use durable::{tokio_stream, Durable};

use messages::{FirstSeq, Outbound, Shutdown};

use super::{
    admission::Admission,
    connection::messages::{Disconnect, Subscribe, WriteBatch},
    shared::Shared,
    subscribers::Subscribers,
};
use crate::{
    events::{ErrorEvent, MessageDropped, Payload},
    protocol::sequence::Sender,
    queue::{MessageQueue, QueueError, QueueOptions},
};

/// Reliable mode: the sending half of the session (numbering, the unacked
/// window, replay), the protocol's own rules.
type Window = Sender<Payload>;

/// What the outbox holds of the connection. Weak: the connection holds
/// this actor, not the other way round, so dropping the last handle can end
/// both. Both recipients reach one mailbox, so a `Disconnect` arrives
/// after every batch written before it.
pub(crate) struct ConnectionLink {
    pub(crate) write: WeakRecipient<WriteBatch>,
    pub(crate) disconnect: WeakRecipient<Disconnect>,
}

impl ConnectionLink {
    /// Hands a batch to the connection, if it is still there. `do_send`:
    /// the batch was already admitted by the outbox's limits; a bounded
    /// mailbox here could only lose it.
    fn write(&self, batch: WriteBatch) {
        if let Some(conn) = self.write.upgrade() {
            conn.do_send(batch);
        }
    }

    /// Passes a `disconnect()` on; answers it at once when the connection
    /// is gone.
    fn disconnect(&self, tx: oneshot::Sender<()>) {
        match self.disconnect.upgrade().filter(Recipient::connected) {
            Some(conn) => conn.do_send(Disconnect(tx)),
            None => {
                let _ = tx.send(());
            }
        }
    }
}

/// Owns the outbox; see the module docs.
pub struct QueueActor {
    queue: MessageQueue,
    conn: Option<ConnectionLink>,
    shared: Arc<Shared>,
    dropped: Subscribers<MessageDropped>,
    errors: Subscribers<ErrorEvent>,
    up: bool,
    /// The socket cannot take more for now (see `write_load.rs`).
    paused: bool,
    /// The socket generation batches are meant for.
    gen: u64,
    /// Reliable mode only.
    window: Option<Window>,
    /// The burst being collected while connected.
    batch: Vec<Outbound>,
    /// The outbox's bound: the credits it issues and the senders waiting
    /// for a place.
    gate: admit::Gate,
    flush_scheduled: bool,
    expiry: Option<SpawnHandle>,
    /// `disconnect()`s waiting for the last acks (reliable mode).
    close_waiters: Vec<oneshot::Sender<()>>,
    /// How long a graceful close waits for them.
    close_timeout: Duration,
    /// The timer that releases `close_waiters` when the acks do not come:
    /// cancelled once they are released, so it cannot cut a later
    /// `disconnect()`'s wait short.
    close_timer: Option<SpawnHandle>,
    /// Test hook: stall the mailbox this long before handling each ack.
    #[cfg(debug_assertions)]
    ack_delay: Option<Duration>,
    /// With a durable store.
    durable: Option<Durable>,
    /// The facade's check, for an `OutgoingMessage` (which skips the facade).
    admission: Option<Admission>,
    /// The delivery receipts owed (`send_with_receipt()`).
    receipts: receipts::Receipts,
    /// Where `send()` leaves its messages (see `inbox.rs`).
    inbox: Option<inbox::InboxRx>,
    /// While a burst from the inbox is taken in: one clock reading for
    /// all of its messages that wait in the outbox (they arrived together;
    /// a reading per message was a tenth of the cost of waiting there).
    burst_now: Option<std::time::Instant>,
}

impl QueueActor {
    pub(crate) fn new(
        opts: QueueOptions,
        stateful: bool,
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
            paused: false,
            gen: 0,
            // The window's bound comes with each socket (`LinkState::Up`).
            window: stateful.then(|| Window::new(1, usize::MAX)),
            batch: Vec::new(),
            gate: admit::Gate::default(),
            flush_scheduled: false,
            expiry: None,
            close_waiters: Vec::new(),
            close_timeout: Duration::from_secs(5),
            close_timer: None,
            #[cfg(debug_assertions)]
            ack_delay: None,
            durable: None,
            admission: None,
            receipts: receipts::Receipts::default(),
            inbox: None,
            burst_now: None,
        })
    }

    /// How long a graceful close waits for the last acks (reliable mode).
    pub(crate) fn set_close_timeout(&mut self, d: Duration) {
        self.close_timeout = d;
    }

    /// Test hook: see `ResilientWebSocketBuilder::test_ack_delay`.
    #[cfg(debug_assertions)]
    pub(crate) fn set_ack_delay(&mut self, d: Option<Duration>) {
        self.ack_delay = d;
    }

    /// The check an `OutgoingMessage` passes, the same as `send()`'s.
    pub(crate) fn set_admission(&mut self, admission: Admission) {
        self.gate = admit::Gate::new(&admission);
        self.admission = Some(admission);
    }

    /// Where `send()` leaves its messages.
    pub(crate) fn set_inbox(&mut self, inbox: inbox::InboxRx) {
        self.inbox = Some(inbox);
    }

    /// The connection is started after this actor; it is told who it is.
    pub(crate) fn set_connection(&mut self, conn: ConnectionLink) {
        self.conn = Some(conn);
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.shared.counters.actor_started();
        // `send()` comes through the inbox (`inbox.rs`); this bounds the
        // `OutgoingMessage`s of users' actors. Must exceed any burst they
        // can produce between two polls.
        ctx.set_mailbox_capacity(inbox::CAPACITY);
        if let Some(progress) = self.durable.as_mut().and_then(|d| d.progress.take()) {
            ctx.add_stream(tokio_stream(progress));
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.counters.actor_stopped();
    }
}

impl Handler<Shutdown> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<FirstSeq> for QueueActor {
    type Result = u64;

    fn handle(&mut self, _: FirstSeq, _: &mut Context<Self>) -> u64 {
        self.window.as_ref().map_or(1, Window::first_unacked)
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
