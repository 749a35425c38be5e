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
//! In reliable mode (`ReconnectMode::Stateful`) it also owns the sending
//! half of the session: it numbers messages as they leave the outbox, keeps
//! every sent message until the server acknowledges it (bounded in bytes:
//! when the window is full, messages wait in the outbox, and `send()` waits
//! when the outbox is full), and replays the unacknowledged ones after every
//! reconnect. Because it is not the `ConnectionActor`, none of that is lost
//! when the connection restarts.

use std::{collections::VecDeque, sync::Arc, time::Duration};

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

/// The connection's socket is ready for data, or gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum LinkState {
    /// Socket `gen` is ready. Reliable mode: the peer has delivered
    /// everything up to `peer_last_received`, and at most `max_unacked_bytes`
    /// may be unacknowledged.
    Up {
        gen: u64,
        peer_last_received: Option<u64>,
        max_unacked_bytes: usize,
    },
    /// The socket is gone.
    Down,
}

/// Reliable mode: the peer acknowledged everything up to this seq.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Acked(pub(crate) u64);

/// One message on its way to the socket; `seq` is 0 in raw mode.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) seq: u64,
    pub(crate) payload: Payload,
}

/// Reliable mode: the sending half of the session.
#[derive(Debug)]
struct Window {
    /// The seq the next message that leaves the outbox gets.
    next_seq: u64,
    /// Sent and not yet acknowledged, in seq order.
    unacked: VecDeque<Outbound>,
    bytes: usize,
    max_bytes: usize,
}

impl Window {
    fn has_room(&self, size: usize) -> bool {
        // A message larger than the whole window still goes, alone.
        self.unacked.is_empty() || self.bytes + size <= self.max_bytes
    }

    fn push(&mut self, payload: Payload) -> Outbound {
        let out = Outbound {
            seq: self.next_seq,
            payload,
        };
        self.next_seq += 1;
        self.bytes += out.payload.len();
        self.unacked.push_back(out.clone());
        out
    }

    fn ack(&mut self, seq: u64) {
        while self.unacked.front().is_some_and(|m| m.seq <= seq) {
            let m = self.unacked.pop_front().expect("front checked");
            self.bytes -= m.payload.len();
        }
    }

    fn first_unacked(&self) -> u64 {
        self.unacked.front().map_or(self.next_seq, |m| m.seq)
    }
}

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
    /// The socket generation batches are meant for.
    gen: u64,
    /// Reliable mode only.
    window: Option<Window>,
    /// The burst being collected while connected.
    batch: Vec<Outbound>,
    /// Sends `send()` admitted while the outbox filled up under it (its
    /// check and the enqueue are not atomic); they join the outbox, in
    /// order, as space frees. Bounded by what can be in flight to this
    /// actor (its mailbox).
    overflow: VecDeque<(Payload, u8)>,
    flush_scheduled: bool,
    expiry: Option<SpawnHandle>,
    /// `disconnect()`s waiting for the last acks (reliable mode).
    close_waiters: Vec<oneshot::Sender<()>>,
    /// How long a graceful close waits for them.
    close_timeout: Duration,
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
            gen: 0,
            window: stateful.then(|| Window {
                next_seq: 1,
                unacked: VecDeque::new(),
                bytes: 0,
                max_bytes: usize::MAX,
            }),
            batch: Vec::new(),
            overflow: VecDeque::new(),
            flush_scheduled: false,
            expiry: None,
            close_waiters: Vec::new(),
            close_timeout: Duration::from_secs(5),
        })
    }

    /// How long a graceful close waits for the last acks (reliable mode).
    pub(crate) fn set_close_timeout(&mut self, d: Duration) {
        self.close_timeout = d;
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

    /// Moves sends that raced past a full outbox into it as space frees.
    fn refill(&mut self) {
        while !self.queue.is_full() {
            let Some((payload, priority)) = self.overflow.pop_front() else {
                return;
            };
            match self.queue.enqueue(payload, priority) {
                Ok(outcome) => {
                    if let Some(d) = outcome.dropped {
                        self.report(d);
                    }
                }
                Err(e) => {
                    if let Some(p) = e.into_payload() {
                        self.overflow.push_front((p, priority));
                    }
                    return;
                }
            }
        }
    }

    fn update_buffered(&self) {
        self.shared
            .set_buffered(self.queue.len() + self.overflow.len());
        if let Some(w) = &self.window {
            self.shared.set_window(w.first_unacked(), w.unacked.len());
        }
    }

    fn send_batch(&mut self, batch: Vec<Outbound>) {
        if batch.is_empty() {
            return;
        }
        if let Some(conn) = &self.conn {
            // do_send: the batch was already admitted by the outbox's limits;
            // a bounded mailbox here could only lose it.
            conn.do_send(WriteBatch {
                gen: self.gen,
                items: batch,
            });
        }
    }

    /// Whether a message may skip the outbox and go straight to the socket.
    fn can_pass(&self, size: usize) -> bool {
        self.up && self.queue.is_empty() && self.window.as_ref().is_none_or(|w| w.has_room(size))
    }

    /// Numbers a message (reliable mode) as it leaves for the socket.
    fn outbound(&mut self, payload: Payload) -> Outbound {
        match self.window.as_mut() {
            Some(w) => w.push(payload),
            None => Outbound { seq: 0, payload },
        }
    }

    fn flush(&mut self) {
        self.flush_scheduled = false;
        let batch = std::mem::take(&mut self.batch);
        self.send_batch(batch);
        if let Some(w) = &self.window {
            self.shared.set_window(w.first_unacked(), w.unacked.len());
        }
    }

    /// Moves the outbox to the socket, as far as the window allows.
    fn drain_backlog(&mut self) {
        let mut batch = Vec::new();
        loop {
            self.refill();
            let Some(next) = self.queue.peek() else {
                break;
            };
            let size = next.payload.len();
            if self.window.as_ref().is_some_and(|w| !w.has_room(size)) {
                break;
            }
            let m = self.queue.dequeue().expect("peeked");
            batch.push(self.outbound(m.payload));
            if batch.len() == BACKLOG_BATCH {
                self.send_batch(std::mem::take(&mut batch));
            }
        }
        self.send_batch(batch);
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
        if self.can_pass(msg.payload.len()) {
            let out = self.outbound(msg.payload);
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
            self.overflow.push_back((msg.payload, msg.priority));
            self.update_buffered();
            return;
        }
        match self.queue.enqueue(msg.payload, msg.priority) {
            Ok(outcome) => {
                if let Some(d) = outcome.dropped {
                    self.report(d);
                }
                self.schedule_expiry(ctx);
            }
            Err(QueueError::Full { payload, .. } | QueueError::WouldWait { payload, .. }) => {
                // `send()` checked for space, but other sends were already
                // on their way: what `send()` accepted is never lost.
                self.overflow.push_back((payload, msg.priority));
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
        self.refill();
        self.update_buffered();
        self.schedule_expiry(ctx);
    }
}

impl Handler<LinkState> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: LinkState, _: &mut Context<Self>) {
        match msg {
            LinkState::Up {
                gen,
                peer_last_received,
                max_unacked_bytes,
            } => {
                // A burst collected for the old socket is stale: in reliable
                // mode it is in the window and replayed below; in raw mode it
                // goes first on the new socket.
                let stale = std::mem::take(&mut self.batch);
                self.flush_scheduled = false;
                self.gen = gen;
                self.up = true;
                if let Some(w) = self.window.as_mut() {
                    w.max_bytes = max_unacked_bytes;
                    if let Some(last) = peer_last_received {
                        w.ack(last);
                    }
                    let replay: Vec<Outbound> = w.unacked.iter().cloned().collect();
                    self.send_batch(replay);
                } else {
                    self.send_batch(stale);
                }
                self.drain_backlog();
            }
            LinkState::Down => {
                self.up = false;
                if self.window.is_none() {
                    // A batch in flight to a dead socket is kept by the
                    // connection and written first on the next one.
                    self.flush();
                }
            }
        }
    }
}

impl Handler<Acked> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Acked, _: &mut Context<Self>) {
        if let Some(w) = self.window.as_mut() {
            w.ack(msg.0);
        }
        if self.up {
            self.drain_backlog();
        } else {
            self.update_buffered();
        }
        if !self.close_waiters.is_empty() && self.all_acked() {
            self.release_close();
        }
    }
}

impl Handler<CloseAfterFlush> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: CloseAfterFlush, ctx: &mut Context<Self>) {
        self.flush();
        if self.up {
            self.drain_backlog();
        }
        self.close_waiters.push(msg.0);
        if self.up && !self.all_acked() {
            // Reliable mode: close once the server has everything (or the
            // close timeout passed), so a graceful close loses nothing.
            let limit = self.close_timeout;
            ctx.run_later(limit, |act, _| act.release_close());
        } else {
            self.release_close();
        }
    }
}

impl QueueActor {
    /// Whether nothing sent waits for an ack and nothing waits to be sent.
    fn all_acked(&self) -> bool {
        self.queue.is_empty()
            && self.overflow.is_empty()
            && self.window.as_ref().is_none_or(|w| w.unacked.is_empty())
    }

    /// Passes pending `disconnect()`s on to the connection.
    fn release_close(&mut self) {
        for tx in self.close_waiters.drain(..) {
            // Same sender, same mailbox: the Disconnect arrives after the
            // last batch.
            match &self.conn {
                Some(conn) => conn.do_send(Disconnect(tx)),
                None => {
                    let _ = tx.send(());
                }
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
