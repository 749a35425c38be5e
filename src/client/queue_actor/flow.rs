//! The outbox's way to the socket: bursts collected into batches, the
//! reliable window (numbering, acks, replay on a new socket), backpressure
//! from the socket, and the graceful close after the last ack.

use std::time::Instant;

use actix::prelude::*;

use super::{durable::Assigned, messages::*, QueueActor, Window};
use crate::client::{connection::messages::WriteBatch, receipt::ReceiptTx};
use crate::{
    events::Payload,
    queue::{MessageId, QueuedMessage, StoreOp},
};

/// How many backlog messages go to the connection in one batch.
const BACKLOG_BATCH: usize = 1024;

/// Ends the current burst: hand the batch to the connection.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Flush;

impl Handler<Flush> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush();
        self.end_turn(ctx);
    }
}

impl Handler<LinkState> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: LinkState, ctx: &mut Context<Self>) {
        match msg {
            LinkState::Up {
                gen,
                peer_last_received,
                max_unacked_bytes,
                preamble,
            } => {
                // A burst collected for the old socket is stale: in reliable
                // mode it is in the window and replayed below; in raw mode
                // `Down` already put it back in the outbox (so this is
                // empty), and the backlog drained below sends it first.
                let stale = std::mem::take(&mut self.batch);
                self.flush_scheduled = false;
                self.gen = gen;
                self.up = true;
                self.paused = false;
                if let Some(d) = self.durable.as_mut() {
                    // Nothing is written to the new socket yet: the window
                    // is replayed below, as far as it is durable.
                    d.written = 0;
                }
                if let Some(last) = peer_last_received {
                    self.ack(last);
                }
                // The hook's messages go first on the socket, with one
                // exception: reliable mode replays the window before them,
                // since those seqs are older and the peer needs them in
                // order. They are new messages, not outbox ones: no place
                // (raw mode: never put back, the next socket gets the
                // hook's fresh answer), no credit, no receipt.
                if let Some(w) = self.window.as_mut() {
                    w.set_max_bytes(max_unacked_bytes);
                    let replay: Vec<Outbound> = w
                        .unacked()
                        .map(|m| Outbound {
                            seq: m.seq,
                            payload: m.payload.clone(),
                            receipt: None,
                            place: None,
                        })
                        .collect();
                    self.send_batch(replay);
                    let first = self.preamble(preamble);
                    self.send_batch(first);
                } else {
                    let mut first = self.preamble(preamble);
                    first.extend(stale);
                    self.send_batch(first);
                }
                self.drain_backlog();
                self.end_turn(ctx);
            }
            LinkState::Stopped(error) => self.receipts.fail_all(&error),
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
                        self.end_turn(ctx);
                    }
                }
            }
            LinkState::Down => {
                self.up = false;
                self.paused = false;
                if self.window.is_none() {
                    // Raw mode: a burst collected for the dead socket goes
                    // back into the outbox, first out on the next one, like
                    // the batches the connection hands back (`Returned`).
                    self.flush_scheduled = false;
                    let stale = std::mem::take(&mut self.batch);
                    self.put_back(stale, ctx);
                }
                self.end_turn(ctx);
            }
        }
    }
}

impl Handler<Returned> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Returned, ctx: &mut Context<Self>) {
        self.put_back(msg.0, ctx);
        // Not drained here even if `up`: the connection hands batches back
        // only while it has no open socket (then a `LinkState::Down` came
        // first, the next `Up` drains) or while its socket closes (its
        // `Down` follows); sending them again now would only bounce.
        self.end_turn(ctx);
    }
}

impl Handler<Acked> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Acked, ctx: &mut Context<Self>) {
        #[cfg(debug_assertions)]
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

impl Handler<CloseAfterFlush> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: CloseAfterFlush, ctx: &mut Context<Self>) {
        // Every `send()` that came before it was accepted: it goes first.
        self.drain_inbox(ctx);
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
        self.end_turn(ctx);
    }
}

impl QueueActor {
    /// Reliable mode: the peer has everything up to `upto`.
    pub(super) fn ack(&mut self, upto: u64) {
        if let Some(w) = self.window.as_mut() {
            // Checked by the connection against what it wrote.
            w.release(upto);
            self.record(StoreOp::Acked { upto });
            self.receipts.acked(upto);
        }
    }

    /// The `on_connect` hook's messages, numbered for this socket.
    fn preamble(&mut self, preamble: Vec<Payload>) -> Vec<Outbound> {
        preamble
            .into_iter()
            .map(|p| self.outbound(p, None, None))
            .collect()
    }

    /// Gives a message leaving the outbox its receipt: raw mode hands it
    /// to the connection (told once written), reliable mode keeps it by
    /// seq until the ack.
    pub(super) fn attach(&mut self, out: &mut Outbound, id: MessageId, tx: ReceiptTx) {
        if self.window.is_some() {
            self.receipts.sent(out.seq, id, tx);
        } else {
            out.receipt = Some(tx);
        }
    }

    pub(super) fn send_batch(&mut self, batch: Vec<Outbound>) {
        if batch.is_empty() {
            return;
        }
        if self.window.is_some() && self.durable.is_some() {
            // Reliable mode with a durable store: its messages are in the
            // window; they go once their seqs are durable (see the module
            // docs), now or when the commit asked for here is done.
            self.submit();
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

    /// Raw mode: messages that left the outbox (or passed it) for a socket
    /// that died under them come back to their places: ahead of everything
    /// that arrived after them, so they go out first on the next socket, in
    /// order. Each takes its place in the bound again: `settle` takes the
    /// credit back that its leaving gave (one place per message the outbox
    /// holds, never two, never none).
    pub(super) fn put_back(&mut self, items: Vec<Outbound>, ctx: &mut Context<Self>) {
        if items.is_empty() {
            return;
        }
        for out in items {
            // Reliable mode: the window keeps the message and replays it.
            let Some(place) = out.place else {
                continue;
            };
            if let Some(tx) = out.receipt {
                self.receipts.wait(place.id, tx);
            }
            // Put back with 0 attempts, as `rollback` (durable.rs) does:
            // `mark_failed` counts one, below the outbox's `max_retries`
            // (the default, 3). A socket lost under a message is not a
            // failed attempt of the message: counting it would dead-letter
            // a message after a few reconnects, which raw mode never did.
            let message = QueuedMessage {
                id: place.id,
                payload: out.payload,
                priority: place.priority,
                attempts: 0,
                enqueued_at: place.enqueued_at.unwrap_or_else(Instant::now),
            };
            if let Err(dead) = self.queue.mark_failed(message) {
                // Cannot happen with the outbox's options; never silent.
                self.report(dead);
            }
        }
        self.update_buffered();
        self.schedule_expiry(ctx);
    }

    /// Raw mode: the place of a message that skips the outbox, should it
    /// come back (see [`Place`]).
    pub(super) fn pass_place(&mut self, id: MessageId, priority: u8) -> Option<Place> {
        self.window.is_none().then_some(Place {
            id,
            priority,
            enqueued_at: None,
        })
    }

    /// Whether a message may skip the outbox and go straight to the socket.
    pub(super) fn can_pass(&self, size: usize) -> bool {
        self.up
            && !self.paused
            && !self.store_blocked()
            && self.queue.is_empty()
            && self.window.as_ref().is_none_or(|w| w.has_room(size))
    }

    /// Numbers a message (reliable mode) as it leaves for the socket, and
    /// records that with a durable store. `key`: its store key, if it was
    /// stored in the outbox; `place`: where it stood (raw mode).
    pub(super) fn outbound(
        &mut self,
        payload: Payload,
        key: Option<u64>,
        place: Option<Place>,
    ) -> Outbound {
        let out = match self.window.as_mut() {
            Some(w) => Outbound {
                seq: w.push(payload.clone(), payload.len()),
                payload,
                receipt: None,
                place: None,
            },
            None => Outbound {
                seq: 0,
                payload,
                receipt: None,
                place,
            },
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

    pub(super) fn flush(&mut self) {
        self.flush_scheduled = false;
        let batch = std::mem::take(&mut self.batch);
        self.send_batch(batch);
        if let Some(w) = &self.window {
            self.shared.set_window(w.len());
        }
    }

    /// Moves the outbox to the socket, as far as the window allows.
    pub(super) fn drain_backlog(&mut self) {
        // A burst collected for the socket has lower seqs than anything
        // leaving the outbox now: it must go first, or the peer sees the
        // sequence go backwards.
        if !self.batch.is_empty() {
            let burst = std::mem::take(&mut self.batch);
            self.send_batch(burst);
        }
        // Sized once: grown message by message, a large backlog's batch was
        // reallocated (and its fresh pages faulted in) a dozen times.
        let mut batch = Vec::with_capacity(self.queue.len().min(BACKLOG_BATCH));
        while !self.paused && !self.store_blocked() {
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
            let place = Place {
                id,
                priority,
                enqueued_at: Some(enqueued_at),
            };
            let mut out = self.outbound(m.payload, key, Some(place));
            if let Some(tx) = self.receipts.take(id) {
                self.attach(&mut out, id, tx);
            }
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
                let next = Vec::with_capacity(self.queue.len().min(BACKLOG_BATCH));
                self.send_batch(std::mem::replace(&mut batch, next));
            }
        }
        self.send_batch(batch);
        self.update_buffered();
    }

    pub(super) fn on_acked(&mut self, upto: u64, ctx: &mut Context<Self>) {
        self.ack(upto);
        if self.up {
            self.drain_backlog();
        } else {
            self.update_buffered();
        }
        if !self.close_waiters.is_empty() && self.all_acked() {
            self.release_close(ctx);
        }
        self.end_turn(ctx);
    }

    /// Whether nothing sent waits for an ack and nothing waits to be sent.
    pub(super) fn all_acked(&self) -> bool {
        self.queue.is_empty() && self.window.as_ref().is_none_or(Window::is_empty)
    }

    /// Passes pending `disconnect()`s on to the connection, and disarms
    /// their timer: it belongs to them, not to a later close.
    pub(super) fn release_close(&mut self, ctx: &mut Context<Self>) {
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
