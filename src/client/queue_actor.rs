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
//!
//! With a durable store it also records every change (accepted, left the
//! outbox as seq n, acknowledged, dropped) as a [`StoreOp`] for the store's
//! writer thread, and answers a `send()` only once its message is durable.
//! In reliable mode a batch goes to the socket only after the commit that
//! gave its messages their seqs: a seq the server has seen is never given to
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

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use actix::{prelude::*, WeakRecipient};
use tokio::sync::oneshot;

pub(crate) mod messages;

use messages::{
    Acked, CloseAfterFlush, Enqueue, FirstSeq, LinkState, Outbound, OutgoingMessage, Shutdown,
};

use super::{
    admission::Admission,
    connection::messages::{Disconnect, Subscribe, WriteBatch},
    shared::Shared,
    stats::Counters,
    store_writer::{writer_stopped, Chain, Committed, Done, StoreHandle},
    subscribers::Subscribers,
};
use crate::{
    events::{ErrorEvent, MessageDropped, Payload},
    protocol::sequence::Sender,
    queue::{
        Dropped, MessageId, MessageQueue, QueueError, QueueOptions, QueuedMessage, StoreOp,
        StoredState,
    },
};

/// How many backlog messages go to the connection in one batch.
const BACKLOG_BATCH: usize = 1024;

/// After a failed commit, the outbox is tried again after this long,
/// doubling up to [`STORE_RETRY_MAX`] while commits keep failing.
const STORE_RETRY_MIN: Duration = Duration::from_millis(50);
const STORE_RETRY_MAX: Duration = Duration::from_secs(2);

/// Reliable mode: the sending half of the session (numbering, the unacked
/// window, replay), the protocol's own rules.
type Window = Sender<Payload>;

/// With a durable store: what the store must follow, and the batches
/// waiting for the commit that makes them safe to write.
struct Durable {
    store: StoreHandle,
    /// Changes of this turn, not handed to the writer yet.
    ops: Vec<StoreOp>,
    /// `send()`s answered by the commit of `ops`.
    waiters: Vec<Done>,
    /// The key the next accepted message gets.
    next_key: u64,
    /// The store key of each message in the `MessageQueue`.
    keys: HashMap<MessageId, u64>,
    /// Submissions handed to the writer, and how many of them committed.
    issued: u64,
    committed: u64,
    /// Reliable mode: batches (socket generation, messages) waiting for the
    /// commit with this ticket.
    held: VecDeque<(u64, u64, Vec<Outbound>)>,
    /// Commit progress from the writer, until `started()` takes it.
    progress: Option<tokio::sync::mpsc::UnboundedReceiver<Committed>>,
    /// The chain the writer follows; a rollback starts the next one.
    epoch: u64,
    /// Per submission not confirmed yet: (ticket, next seq, next key) as
    /// it left them, which become durable when it commits.
    marks: VecDeque<(u64, u64, u64)>,
    /// What the last commit that held made durable: seqs below this...
    durable_seq: u64,
    /// ...and the outbox keys below this.
    durable_key: u64,
    /// Reliable mode: messages that left the outbox with a seq that is not
    /// durable yet, to put back if its commit fails.
    assigned: VecDeque<Assigned>,
    /// Messages that left the outbox without a seq (sent in raw mode, or
    /// dropped), as (ticket of the commit recording it, key): recorded
    /// again after a failed commit, so the store does not bring them back.
    removed: VecDeque<(u64, u64)>,
    /// After a failed commit: the timer that tries the outbox again. While
    /// it runs, nothing new leaves the outbox.
    retry: Option<SpawnHandle>,
    retry_delay: Duration,
    /// The writer thread is gone: nothing is recorded or sent any more.
    dead: bool,
}

/// Reliable mode: a message that left the outbox as `seq`, as it was there.
struct Assigned {
    seq: u64,
    key: u64,
    id: MessageId,
    priority: u8,
    enqueued_at: std::time::Instant,
}

/// The retry timer after a failed commit fired.
#[derive(Message)]
#[rtype(result = "()")]
struct RetryStore;

/// Ends the current burst: hand the batch to the connection.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// Drops the messages whose time to live ran out.
#[derive(Message)]
#[rtype(result = "()")]
struct Expire;

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
    /// Sends `send()` admitted while the outbox filled up under it (its
    /// check and the enqueue are not atomic); they join the outbox, in
    /// order, as space frees. Bounded by what can be in flight to this
    /// actor (its mailbox).
    overflow: VecDeque<(Payload, u8, u64)>,
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
    ack_delay: Option<Duration>,
    /// With a durable store.
    durable: Option<Durable>,
    /// The facade's check, for an `OutgoingMessage` (which skips the facade).
    admission: Option<Admission>,
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
            overflow: VecDeque::new(),
            flush_scheduled: false,
            expiry: None,
            close_waiters: Vec::new(),
            close_timeout: Duration::from_secs(5),
            close_timer: None,
            ack_delay: None,
            durable: None,
            admission: None,
        })
    }

    /// Takes over what a durable store held, and records into it from now
    /// on. Nothing loaded is dropped: what does not fit the outbox waits
    /// behind it.
    pub(crate) fn attach_store(
        &mut self,
        store: StoreHandle,
        progress: tokio::sync::mpsc::UnboundedReceiver<Committed>,
        state: StoredState,
    ) {
        let mut d = Durable {
            store,
            ops: Vec::new(),
            waiters: Vec::new(),
            next_key: state.next_key(),
            keys: HashMap::new(),
            issued: 0,
            committed: 0,
            held: VecDeque::new(),
            progress: Some(progress),
            epoch: 0,
            marks: VecDeque::new(),
            durable_seq: state.next_seq.max(1),
            durable_key: state.next_key(),
            assigned: VecDeque::new(),
            removed: VecDeque::new(),
            retry: None,
            retry_delay: STORE_RETRY_MIN,
            dead: false,
        };
        let mut outbox: Vec<(Payload, u8, u64)> = Vec::new();
        match self.window.as_mut() {
            Some(w) => w.restore(
                state.next_seq,
                state.unacked.into_iter().map(|(seq, payload)| {
                    let bytes = payload.len();
                    (seq, payload, bytes)
                }),
            ),
            None => {
                // A store last used in reliable mode: its unacknowledged
                // messages go first, as plain messages.
                let upto = state.unacked.last().map(|(seq, _)| *seq);
                for (_, payload) in state.unacked {
                    let key = d.next_key;
                    d.next_key += 1;
                    d.ops.push(StoreOp::Admit {
                        key,
                        priority: 0,
                        payload: payload.clone(),
                    });
                    outbox.push((payload, 0, key));
                }
                if let Some(upto) = upto {
                    d.ops.push(StoreOp::Acked { upto });
                }
            }
        }
        outbox.extend(
            state
                .outbox
                .into_iter()
                .map(|m| (m.payload, m.priority, m.key)),
        );
        for (payload, priority, key) in outbox {
            if self.queue.is_full() || !self.overflow.is_empty() {
                self.overflow.push_back((payload, priority, key));
                continue;
            }
            match self.queue.enqueue(payload, priority) {
                Ok(outcome) => {
                    d.keys.insert(outcome.id, key);
                }
                Err(e) => {
                    if let Some(p) = e.into_payload() {
                        self.overflow.push_back((p, priority, key));
                    }
                }
            }
        }
        self.durable = Some(d);
        self.submit();
        self.update_buffered();
    }

    /// Hands this turn's changes to the store's writer.
    fn submit(&mut self) {
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        if d.ops.is_empty() && d.waiters.is_empty() {
            return;
        }
        d.issued += 1;
        let ops = std::mem::take(&mut d.ops);
        let waiters = std::mem::take(&mut d.waiters);
        let next_seq = self.window.as_ref().map_or(0, Window::next_seq);
        d.marks.push_back((d.issued, next_seq, d.next_key));
        let chain = Chain {
            ticket: d.issued,
            epoch: d.epoch,
        };
        d.store.submit(ops, waiters, Some(chain));
    }

    /// Reliable mode: the peer has everything up to `upto`.
    fn ack(&mut self, upto: u64) {
        if let Some(w) = self.window.as_mut() {
            // Checked by the connection against what it wrote.
            w.release(upto);
            self.record(StoreOp::Acked { upto });
        }
    }

    /// Records that an outbox message left without a seq.
    fn record_remove(&mut self, key: u64) {
        if let Some(d) = self.durable.as_mut() {
            // It goes with the next submission.
            d.removed.push_back((d.issued + 1, key));
            d.ops.push(StoreOp::Remove { key });
        }
    }

    /// Records a change, if there is a durable store.
    fn record(&mut self, op: StoreOp) {
        if let Some(d) = self.durable.as_mut() {
            d.ops.push(op);
        }
    }

    /// The store key of a message leaving the `MessageQueue`.
    fn take_key(&mut self, id: MessageId) -> Option<u64> {
        self.durable.as_mut().and_then(|d| d.keys.remove(&id))
    }

    /// Writes the held batches whose commit is done.
    fn release(&mut self) {
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        while d.held.front().is_some_and(|(t, _, _)| *t <= d.committed) {
            let (_, gen, items) = d.held.pop_front().expect("front checked");
            if let Some(conn) = &self.conn {
                conn.write(WriteBatch { gen, items });
            }
        }
    }

    /// How long a graceful close waits for the last acks (reliable mode).
    pub(crate) fn set_close_timeout(&mut self, d: Duration) {
        self.close_timeout = d;
    }

    /// Test hook: see `ResilientWebSocketBuilder::test_ack_delay`.
    pub(crate) fn set_ack_delay(&mut self, d: Option<Duration>) {
        self.ack_delay = d;
    }

    /// The check an `OutgoingMessage` passes, the same as `send()`'s.
    pub(crate) fn set_admission(&mut self, admission: Admission) {
        self.admission = Some(admission);
    }

    /// The connection is started after this actor; it is told who it is.
    pub(crate) fn set_connection(&mut self, conn: ConnectionLink) {
        self.conn = Some(conn);
    }

    fn report(&mut self, d: Dropped) {
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
    fn refill(&mut self) {
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

    fn update_buffered(&self) {
        self.shared
            .set_buffered(self.queue.len() + self.overflow.len());
        if let Some(w) = &self.window {
            self.shared.set_window(w.len());
        }
    }

    fn send_batch(&mut self, batch: Vec<Outbound>) {
        if batch.is_empty() {
            return;
        }
        if self.window.is_some() && self.durable.is_some() {
            // Reliable mode with a durable store: not before the seqs in it
            // are durable (see the module docs).
            self.submit();
            let gen = self.gen;
            if let Some(d) = self.durable.as_mut() {
                d.held.push_back((d.issued, gen, batch));
            }
            self.release();
            return;
        }
        if let Some(conn) = &self.conn {
            conn.write(WriteBatch {
                gen: self.gen,
                items: batch,
            });
        }
    }

    /// With a durable store: whether the commit admitting this outbox
    /// message is still to come.
    fn admission_pending(&self, id: MessageId) -> bool {
        self.durable
            .as_ref()
            .is_some_and(|d| d.keys.get(&id).is_some_and(|k| *k >= d.durable_key))
    }

    /// Whether the store holds messages back: a failed commit waits for
    /// its retry, or the writer is gone.
    fn store_blocked(&self) -> bool {
        self.durable
            .as_ref()
            .is_some_and(|d| d.dead || d.retry.is_some())
    }

    /// Whether a message may skip the outbox and go straight to the socket.
    fn can_pass(&self, size: usize) -> bool {
        self.up
            && !self.paused
            && !self.store_blocked()
            && self.queue.is_empty()
            && self.window.as_ref().is_none_or(|w| w.has_room(size))
    }

    /// Numbers a message (reliable mode) as it leaves for the socket, and
    /// records that with a durable store. `key`: its store key, if it was
    /// stored in the outbox.
    fn outbound(&mut self, payload: Payload, key: Option<u64>) -> Outbound {
        let out = match self.window.as_mut() {
            Some(w) => Outbound {
                seq: w.push(payload.clone(), payload.len()),
                payload,
            },
            None => Outbound { seq: 0, payload },
        };
        if self.durable.is_some() {
            if out.seq != 0 {
                let payload = out.payload.clone();
                self.record(StoreOp::Assign {
                    key,
                    seq: out.seq,
                    payload,
                });
            } else if let Some(key) = key {
                self.record_remove(key);
            }
        }
        out
    }

    fn flush(&mut self) {
        self.flush_scheduled = false;
        let batch = std::mem::take(&mut self.batch);
        self.send_batch(batch);
        if let Some(w) = &self.window {
            self.shared.set_window(w.len());
        }
    }

    /// Moves the outbox to the socket, as far as the window allows.
    fn drain_backlog(&mut self) {
        // A burst collected for the socket has lower seqs than anything
        // leaving the outbox now: it must go first, or the peer sees the
        // sequence go backwards.
        if !self.batch.is_empty() {
            let burst = std::mem::take(&mut self.batch);
            self.send_batch(burst);
        }
        let mut batch = Vec::new();
        while !self.paused && !self.store_blocked() {
            self.refill();
            let Some(next) = self.queue.peek() else {
                break;
            };
            let size = next.payload.len();
            if self.window.as_ref().is_some_and(|w| !w.has_room(size)) {
                break;
            }
            if self.window.is_none() && self.admission_pending(next.id) {
                // Raw mode writes at once: not before its `send()` is
                // answered, which may yet be an error. The commit's report
                // drains again.
                break;
            }
            let m = self.queue.dequeue().expect("peeked");
            let key = self.take_key(m.id);
            let (id, priority, enqueued_at) = (m.id, m.priority, m.enqueued_at);
            let out = self.outbound(m.payload, key);
            if let (Some(d), Some(key), true) = (self.durable.as_mut(), key, out.seq != 0) {
                d.assigned.push_back(Assigned {
                    seq: out.seq,
                    key,
                    id,
                    priority,
                    enqueued_at,
                });
            }
            batch.push(out);
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
        self.shared.counters.actor_started();
        // Must exceed any burst `send()` can produce between two polls.
        ctx.set_mailbox_capacity(4096);
        if let Some(progress) = self.durable.as_mut().and_then(|d| d.progress.take()) {
            ctx.add_stream(tokio_stream(progress));
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.counters.actor_stopped();
    }
}

/// The writer's progress reports as a stream for `add_stream`.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Committed>,
) -> impl futures_util::Stream<Item = Committed> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl StreamHandler<Committed> for QueueActor {
    fn handle(&mut self, msg: Committed, ctx: &mut Context<Self>) {
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        if msg.epoch != d.epoch {
            // Built on a commit that failed: the rollback dealt with it.
            answer(msg.failed, &msg.result);
            return;
        }
        match msg.result {
            Ok(()) => {
                d.committed = d.committed.max(msg.ticket);
                while let Some(&(ticket, seq, key)) = d.marks.front() {
                    if ticket > msg.ticket {
                        break;
                    }
                    d.durable_seq = seq;
                    d.durable_key = key;
                    d.marks.pop_front();
                }
                let durable_seq = d.durable_seq;
                while d.assigned.front().is_some_and(|a| a.seq < durable_seq) {
                    d.assigned.pop_front();
                }
                while d.removed.front().is_some_and(|(t, _)| *t <= msg.ticket) {
                    d.removed.pop_front();
                }
                d.retry_delay = STORE_RETRY_MIN;
                if let Some(h) = d.retry.take() {
                    // The store works again: let the outbox flow.
                    ctx.cancel_future(h);
                }
                if self.up && !self.queue.is_empty() {
                    // Also what waited for its admission to commit.
                    self.drain_backlog();
                }
                self.release();
                self.submit();
            }
            Err(e) => {
                self.rollback(ctx);
                // Only now: a caller that sends again after the error
                // builds on the rolled-back state.
                answer(msg.failed, &Err(e.clone()));
                self.errors.publish(ErrorEvent { error: e.into() });
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The writer stopped (the store panicked): what the store holds is
        // unknown from here, so nothing more is recorded or sent. Held
        // batches stay held; `send()` fails from now on.
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        d.dead = true;
        if let Some(h) = d.retry.take() {
            ctx.cancel_future(h);
        }
        self.shared
            .store_dead
            .store(true, std::sync::atomic::Ordering::Release);
        // Wake senders waiting for space: they get the error now.
        self.shared.space.notify_waiters();
        log::error!("{}", writer_stopped());
        self.errors.publish(ErrorEvent {
            error: writer_stopped().into(),
        });
    }
}

/// Answers the `send()`s of a commit that failed.
fn answer(waiters: Vec<Done>, result: &Result<(), crate::queue::StoreError>) {
    for w in waiters {
        let _ = w.send(result.clone());
    }
}

impl Handler<RetryStore> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: RetryStore, _: &mut Context<Self>) {
        if let Some(d) = self.durable.as_mut() {
            d.retry = None;
        }
        // Whatever leaves the outbox now is the store's next try.
        if self.up {
            self.drain_backlog();
        }
        self.submit();
    }
}

impl QueueActor {
    /// A commit failed: go back to what the last commit that held left,
    /// so that memory says what the store says.
    ///
    /// Everything submitted after that commit was refused by the writer
    /// (it builds on the failed one), and the `send()`s in it heard the
    /// error. So: seqs from the first non-durable one on are given out
    /// again; the messages that held them and came from the outbox (their
    /// `send()` succeeded, their admission is durable) go back to their
    /// place in it; messages admitted after that commit leave the outbox
    /// (their `send()` failed); held batches go out only with their
    /// durable messages. Then the outbox waits for a retry.
    fn rollback(&mut self, ctx: &mut Context<Self>) {
        // Changes of this turn build on the failed ones: let the writer
        // refuse them too, so their waiters hear the error.
        self.submit();
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        d.epoch += 1;
        d.committed = d.issued;
        d.marks.clear();
        let (durable_seq, durable_key) = (d.durable_seq, d.durable_key);
        let assigned = std::mem::take(&mut d.assigned);
        // Gone from memory, still in the store: say so again, with the
        // next commit (a key never durably admitted needs nothing).
        for (_, key) in std::mem::take(&mut d.removed) {
            if key < durable_key {
                d.removed.push_back((d.issued + 1, key));
                d.ops.push(StoreOp::Remove { key });
            }
        }
        let held = std::mem::take(&mut d.held);
        let mut back = Vec::new();
        if let Some(w) = self.window.as_mut() {
            let mut undone = HashMap::new();
            for m in w.rewind(durable_seq) {
                undone.insert(m.seq, m.payload);
            }
            for a in assigned {
                if a.key >= durable_key {
                    continue;
                }
                if let Some(payload) = undone.remove(&a.seq) {
                    back.push((
                        a.key,
                        QueuedMessage {
                            id: a.id,
                            payload,
                            priority: a.priority,
                            attempts: 0,
                            enqueued_at: a.enqueued_at,
                        },
                    ));
                }
            }
            self.batch.retain(|m| m.seq < durable_seq);
            for (_, gen, mut items) in held {
                items.retain(|m| m.seq < durable_seq);
                if let (false, Some(conn)) = (items.is_empty(), &self.conn) {
                    conn.write(WriteBatch { gen, items });
                }
            }
            // An ack whose commit failed: say it again with the next one.
            let acked = w.first_unacked().saturating_sub(1);
            if acked > 0 {
                d.ops.push(StoreOp::Acked { upto: acked });
            }
        }
        let gone: Vec<MessageId> = d
            .keys
            .iter()
            .filter(|(_, key)| **key >= durable_key)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            d.keys.remove(&id);
            self.queue.remove(id);
        }
        self.overflow.retain(|(_, _, key)| *key < durable_key);
        for (key, m) in back {
            match self.queue.mark_failed(m) {
                Ok(id) => {
                    d.keys.insert(id, key);
                }
                Err(dropped) => {
                    // Only with max_retries <= 1, which the actor never sets.
                    log::warn!("message {} could not go back to the outbox", dropped.id);
                }
            }
        }
        let delay = d.retry_delay;
        d.retry_delay = (delay * 2).min(STORE_RETRY_MAX);
        if let Some(h) = d.retry.take() {
            ctx.cancel_future(h);
        }
        d.retry = Some(ctx.notify_later(RetryStore, delay));
        self.update_buffered();
    }
}

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

impl QueueActor {
    fn enqueue(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
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

impl Handler<Flush> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        self.flush();
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
                self.paused = false;
                if let Some(d) = self.durable.as_mut() {
                    // Held batches were for the old socket; their messages
                    // are in the window, replayed below.
                    d.held.clear();
                }
                if let Some(last) = peer_last_received {
                    self.ack(last);
                }
                if let Some(w) = self.window.as_mut() {
                    w.set_max_bytes(max_unacked_bytes);
                    let replay: Vec<Outbound> = w
                        .unacked()
                        .map(|m| Outbound {
                            seq: m.seq,
                            payload: m.payload.clone(),
                        })
                        .collect();
                    self.send_batch(replay);
                } else {
                    self.send_batch(stale);
                }
                self.drain_backlog();
                self.submit();
            }
            LinkState::Paused { gen } => {
                if gen == self.gen {
                    self.paused = true;
                }
            }
            LinkState::Resumed { gen } => {
                if gen == self.gen && self.paused {
                    self.paused = false;
                    if self.up {
                        self.drain_backlog();
                        self.submit();
                    }
                }
            }
            LinkState::Down => {
                self.up = false;
                self.paused = false;
                if self.window.is_none() {
                    // A batch in flight to a dead socket is kept by the
                    // connection and written first on the next one.
                    self.flush();
                }
                self.submit();
            }
        }
    }
}

impl Handler<Acked> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Acked, ctx: &mut Context<Self>) {
        if let Some(delay) = self.ack_delay {
            // `wait` holds back every later message too, like a busy actor.
            let acked = actix::clock::sleep(delay)
                .into_actor(self)
                .map(move |(), act, ctx| act.on_acked(msg.0, ctx));
            ctx.wait(acked);
            return;
        }
        self.on_acked(msg.0, ctx);
    }
}

impl QueueActor {
    fn on_acked(&mut self, upto: u64, ctx: &mut Context<Self>) {
        self.ack(upto);
        if self.up {
            self.drain_backlog();
        } else {
            self.update_buffered();
        }
        if !self.close_waiters.is_empty() && self.all_acked() {
            self.release_close(ctx);
        }
        self.submit();
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
            // close timeout passed), so a graceful close loses nothing. A
            // `disconnect()` joining one already waiting shares its deadline.
            if self.close_timer.is_none() {
                let limit = self.close_timeout;
                self.close_timer = Some(ctx.run_later(limit, |act, ctx| {
                    act.close_timer = None;
                    act.release_close(ctx);
                }));
            }
        } else {
            self.release_close(ctx);
        }
        self.submit();
    }
}

impl QueueActor {
    /// Whether nothing sent waits for an ack and nothing waits to be sent.
    fn all_acked(&self) -> bool {
        self.queue.is_empty()
            && self.overflow.is_empty()
            && self.window.as_ref().is_none_or(Window::is_empty)
    }

    /// Passes pending `disconnect()`s on to the connection, and disarms
    /// their timer: it belongs to them, not to a later close.
    fn release_close(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.close_timer.take() {
            ctx.cancel_future(timer);
        }
        for tx in self.close_waiters.drain(..) {
            // Same sender, same mailbox: the Disconnect arrives after the
            // last batch.
            match &self.conn {
                Some(conn) => conn.disconnect(tx),
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
