//! The receipts the outbox owes: who waits for which message. Empty (and
//! never touched beyond an `is_empty` check) while nobody asked for one.

use std::collections::{BTreeMap, HashMap};

use crate::{client::receipt::ReceiptTx, queue::MessageId, Error};

#[derive(Default)]
pub(super) struct Receipts {
    /// Messages waiting in the outbox, by id.
    waiting: HashMap<MessageId, ReceiptTx>,
    /// Reliable mode: messages in the window, by seq, until acknowledged.
    /// Seqs are never given twice within a client (a fresh session goes on
    /// numbering), so an ack settles exactly its messages.
    unacked: BTreeMap<u64, (MessageId, ReceiptTx)>,
}

impl Receipts {
    /// A message with a receipt waits in the outbox.
    pub(super) fn wait(&mut self, id: MessageId, tx: ReceiptTx) {
        self.waiting.insert(id, tx);
    }

    /// A message leaves the outbox: its receipt, if it has one.
    pub(super) fn take(&mut self, id: MessageId) -> Option<ReceiptTx> {
        if self.waiting.is_empty() {
            return None;
        }
        self.waiting.remove(&id)
    }

    /// Reliable mode: the message went into the window as `seq`.
    pub(super) fn sent(&mut self, seq: u64, id: MessageId, tx: ReceiptTx) {
        self.unacked.insert(seq, (id, tx));
    }

    /// Reliable mode: a commit that gave out `seq` failed; the message
    /// goes back into the outbox as `id` (see `durable.rs`).
    pub(super) fn unsend(&mut self, seq: u64) {
        if let Some((id, tx)) = self.unacked.remove(&seq) {
            self.waiting.insert(id, tx);
        }
    }

    /// Reliable mode: a failed commit took back every seq from `seq` on
    /// (their `send()`s failed: nobody holds these receipts).
    pub(super) fn forget_from(&mut self, seq: u64) {
        self.unacked.split_off(&seq);
    }

    /// Reliable mode: the peer acknowledged everything up to `upto`.
    pub(super) fn acked(&mut self, upto: u64) {
        if self.unacked.is_empty() {
            return;
        }
        let rest = self.unacked.split_off(&upto.saturating_add(1));
        for (_, (id, tx)) in std::mem::replace(&mut self.unacked, rest) {
            let _ = tx.send(Ok(id));
        }
    }

    /// The outbox dropped message `id`.
    pub(super) fn fail(&mut self, id: MessageId, error: impl FnOnce() -> Error) {
        if let Some(tx) = self.take(id) {
            let _ = tx.send(Err(error()));
        }
    }

    /// The client stopped for good: nobody can be told of a delivery any
    /// more, so every receipt fails with why.
    pub(super) fn fail_all(&mut self, error: &Error) {
        for tx in self.waiting.drain().map(|(_, tx)| tx) {
            let _ = tx.send(Err(error.clone()));
        }
        for (_, (_, tx)) in std::mem::take(&mut self.unacked) {
            let _ = tx.send(Err(error.clone()));
        }
    }
}
