//! The durable store's side of the outbox: what the store must follow,
//! the window's messages waiting for the commit that makes them safe to
//! write, and the rollback after a failed commit (see the parent module's
//! docs).

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use actix::prelude::*;

use super::{messages::*, QueueActor, Window};
use crate::client::{
    connection::messages::WriteBatch,
    store_writer::{writer_stopped, Chain, Committed, Done, StoreHandle},
};
use crate::{
    events::{ErrorEvent, Payload},
    queue::{MessageId, MessageQueue, QueueOptions, QueuedMessage, StoreOp, StoredState},
};

/// After a failed commit, the outbox is tried again after this long,
/// doubling up to [`STORE_RETRY_MAX`] while commits keep failing.
pub(super) const STORE_RETRY_MIN: Duration = Duration::from_millis(50);
const STORE_RETRY_MAX: Duration = Duration::from_secs(2);

/// With a durable store: what the store must follow, and the batches
/// waiting for the commit that makes them safe to write.
pub(super) struct Durable {
    pub(super) store: StoreHandle,
    /// Changes of this turn, not handed to the writer yet.
    pub(super) ops: Vec<StoreOp>,
    /// `send()`s answered by the commit of `ops`.
    pub(super) waiters: Vec<Done>,
    /// The key the next accepted message gets.
    pub(super) next_key: u64,
    /// The store key of each message in the `MessageQueue`.
    pub(super) keys: HashMap<MessageId, u64>,
    /// Submissions handed to the writer.
    pub(super) issued: u64,
    /// Reliable mode: the window's messages below this seq were handed to
    /// the current socket. Those from it on are in the window already and
    /// wait only for the commit that makes their seqs durable (below
    /// `durable_seq`): no copy of them is held anywhere else.
    pub(super) written: u64,
    /// Commit progress from the writer, until `started()` takes it.
    pub(super) progress: Option<tokio::sync::mpsc::UnboundedReceiver<Committed>>,
    /// The chain the writer follows; a rollback starts the next one.
    pub(super) epoch: u64,
    /// Per submission not confirmed yet: (ticket, next seq, next key) as
    /// it left them, which become durable when it commits.
    pub(super) marks: VecDeque<(u64, u64, u64)>,
    /// What the last commit that held made durable: seqs below this...
    pub(super) durable_seq: u64,
    /// ...and the outbox keys below this.
    pub(super) durable_key: u64,
    /// Reliable mode: messages that left the outbox with a seq that is not
    /// durable yet, to put back if its commit fails.
    pub(super) assigned: VecDeque<Assigned>,
    /// Messages that left the outbox without a seq (sent in raw mode, or
    /// dropped), as (ticket of the commit recording it, key): recorded
    /// again after a failed commit, so the store does not bring them back.
    pub(super) removed: VecDeque<(u64, u64)>,
    /// After a failed commit: the timer that tries the outbox again. While
    /// it runs, nothing new leaves the outbox.
    pub(super) retry: Option<SpawnHandle>,
    pub(super) retry_delay: Duration,
    /// The writer thread is gone: nothing is recorded or sent any more.
    pub(super) dead: bool,
}

/// Reliable mode: a message that left the outbox as `seq`, as it was there.
pub(super) struct Assigned {
    pub(super) seq: u64,
    pub(super) key: u64,
    pub(super) id: MessageId,
    pub(super) priority: u8,
    pub(super) enqueued_at: std::time::Instant,
}

/// The retry timer after a failed commit fired.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RetryStore;

/// The writer's progress reports as a stream for `add_stream`.
pub(super) fn tokio_stream(
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
                self.end_turn(ctx);
            }
            Err(e) => {
                self.rollback(ctx);
                // What went back into the outbox holds places again.
                self.rebalance();
                // Only now: a caller that sends again after the error
                // builds on the rolled-back state.
                answer(msg.failed, &Err(e.clone()));
                self.errors.publish(ErrorEvent { error: e.into() });
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The writer stopped (the store panicked): what the store holds is
        // unknown from here, so nothing more is recorded or sent (see
        // `release`); `send()` fails from now on.
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
        // Senders waiting for a place get the error now.
        self.refuse_parked(|| crate::Error::Store(writer_stopped()));
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

    fn handle(&mut self, _: RetryStore, ctx: &mut Context<Self>) {
        if let Some(d) = self.durable.as_mut() {
            d.retry = None;
        }
        // Whatever leaves the outbox now is the store's next try.
        if self.up {
            self.drain_backlog();
        }
        self.end_turn(ctx);
    }
}

impl QueueActor {
    /// Takes over what a durable store held, and records into it from now
    /// on. Nothing loaded is dropped: an outbox that held more than its
    /// bound now (the bound was lowered between runs) keeps them all, and
    /// issues no credits until it is below its bound again.
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
            written: 0,
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
        if outbox.len() > self.queue.max_size() {
            // A queue that bounds itself (the policies that drop): large
            // enough for what was accepted before, so none of it is dropped.
            let opts = QueueOptions {
                max_size: outbox.len(),
                ..self.queue.options().clone()
            };
            if let Ok(queue) = MessageQueue::new(opts) {
                self.queue = queue;
            }
        }
        for (payload, priority, key) in outbox {
            // Ids from the client's one counter, like `send()`'s.
            let id = self.shared.next_message_id();
            match self
                .queue
                .enqueue_with_id(id, payload, priority, std::time::Instant::now())
            {
                Ok(outcome) => {
                    d.keys.insert(outcome.id, key);
                }
                Err(e) => self.errors.publish(ErrorEvent { error: e.into() }),
            }
        }
        self.durable = Some(d);
        self.submit();
        self.update_buffered();
        self.rebalance();
    }

    /// Hands this turn's changes to the store's writer.
    pub(super) fn submit(&mut self) {
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

    /// Records that an outbox message left without a seq.
    pub(super) fn record_remove(&mut self, key: u64) {
        if let Some(d) = self.durable.as_mut() {
            // It goes with the next submission.
            d.removed.push_back((d.issued + 1, key));
            d.ops.push(StoreOp::Remove { key });
        }
    }

    /// Records a change, if there is a durable store.
    pub(super) fn record(&mut self, op: StoreOp) {
        if let Some(d) = self.durable.as_mut() {
            d.ops.push(op);
        }
    }

    /// The store key of a message leaving the `MessageQueue`.
    pub(super) fn take_key(&mut self, id: MessageId) -> Option<u64> {
        self.durable.as_mut().and_then(|d| d.keys.remove(&id))
    }

    /// Reliable mode: writes the window's messages not written to this
    /// socket yet whose seqs are durable. Not while down (the next socket
    /// replays the window) nor once the writer died (nothing more is sent).
    pub(super) fn release(&mut self) {
        let (Some(d), Some(w), Some(conn)) = (self.durable.as_mut(), &self.window, &self.conn)
        else {
            return;
        };
        if !self.up || d.dead {
            return;
        }
        let from = d.written.max(w.first_unacked());
        let upto = d.durable_seq;
        if from >= upto {
            return;
        }
        let items: Vec<Outbound> = w
            .unacked()
            .skip_while(|m| m.seq < from)
            .take_while(|m| m.seq < upto)
            .map(|m| Outbound {
                seq: m.seq,
                payload: m.payload.clone(),
                receipt: None,
                place: None,
            })
            .collect();
        d.written = upto;
        if !items.is_empty() {
            conn.write(WriteBatch {
                gen: self.gen,
                items,
            });
        }
    }

    /// With a durable store: whether the commit admitting this outbox
    /// message is still to come.
    pub(super) fn admission_pending(&self, id: MessageId) -> bool {
        self.durable
            .as_ref()
            .is_some_and(|d| d.keys.get(&id).is_some_and(|k| *k >= d.durable_key))
    }

    /// Whether the store holds messages back: a failed commit waits for
    /// its retry, or the writer is gone.
    pub(super) fn store_blocked(&self) -> bool {
        self.durable
            .as_ref()
            .is_some_and(|d| d.dead || d.retry.is_some())
    }

    /// A commit failed: go back to what the last commit that held left,
    /// so that memory says what the store says.
    ///
    /// Everything submitted after that commit was refused by the writer
    /// (it builds on the failed one), and the `send()`s in it heard the
    /// error. So: seqs from the first non-durable one on are given out
    /// again; the messages that held them and came from the outbox (their
    /// `send()` succeeded, their admission is durable) go back to their
    /// place in it; messages admitted after that commit leave the outbox
    /// (their `send()` failed); what is durable and not written yet goes
    /// out. Then the outbox waits for a retry.
    pub(super) fn rollback(&mut self, ctx: &mut Context<Self>) {
        // Changes of this turn build on the failed ones: let the writer
        // refuse them too, so their waiters hear the error.
        self.submit();
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        d.epoch += 1;
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
                    // Its seq is given again: its receipt waits by id.
                    self.receipts.unsend(a.seq);
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
            // The other seqs given out since are given again to others.
            self.receipts.forget_from(durable_seq);
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
        // `mark_failed` puts each back at its place. It counts the put-back
        // as an attempt, but each rollback rebuilds the message with 0
        // attempts and the queue keeps the default `max_retries` (3), so it
        // cannot dead-letter here; should it ever, the drop is reported
        // (event, counter, store), never silent.
        let mut dead = Vec::new();
        for (key, m) in back {
            match self.queue.mark_failed(m) {
                Ok(id) => {
                    d.keys.insert(id, key);
                }
                Err(dropped) => dead.push((key, dropped)),
            }
        }
        let delay = d.retry_delay;
        d.retry_delay = (delay * 2).min(STORE_RETRY_MAX);
        if let Some(h) = d.retry.take() {
            ctx.cancel_future(h);
        }
        d.retry = Some(ctx.notify_later(RetryStore, delay));
        // What stayed durable and was not written yet goes now.
        self.release();
        for (key, dropped) in dead {
            self.record_remove(key);
            self.report(dropped);
        }
        self.update_buffered();
    }
}
