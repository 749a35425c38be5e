//! How `send()` hands its messages to the `QueueActor`: a bounded inbox
//! beside the actor's mailbox, and one wake-up per burst.
//!
//! An actix message per `send()` costs an envelope (two allocations and a
//! dynamic call) and a turn of the actor per message. Here `send()` pushes
//! its [`Enqueue`] onto a shared list and sends the actor a [`Drain`] only
//! when the list was empty (no `Drain` is pending then); the actor takes
//! the whole list in one turn and hands the burst to the connection as one
//! batch.
//!
//! The bound (a semaphore's permits) is [`CAPACITY`] messages, as the
//! actor's mailbox bound was, and at most [`CAPACITY`] × [`UNIT`] bytes of
//! payload (a message weighs a permit per started [`UNIT`]): a `send()`
//! that finds no place waits for one (backpressure), in the order the
//! senders came, as it waited on a full mailbox. The byte bound keeps a
//! burst, which becomes one batch for the socket, under the socket's
//! write high-water mark (`write_load.rs`): a batch of 4 096 messages of
//! 1 KiB (4 MiB) paused the socket at once, every time, whether or not
//! it kept up, and sent the stream through the outbox's store-and-forward
//! path (a `MessageQueue` insert, a clock read and a dequeue per
//! message). Order with the mailbox: a facade message that must come after
//! every message sent before it (`CloseAfterFlush`, an `OutgoingMessage`)
//! goes through the mailbox, so the actor drains the inbox before it
//! handles one.
//!
//! Not a tokio channel: its first block of 32 slots is allocated with the
//! channel and kept, about 3 KiB per client, against an idle-connection
//! budget of 16 KiB. The list here is empty (no allocation) whenever the
//! actor has taken it.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::{Semaphore, TryAcquireError};

use super::messages::Enqueue;

/// How many messages may wait for the actor. Large enough that a burst
/// of small messages becomes one batch.
pub(crate) const CAPACITY: usize = 4096;

/// Payload bytes per permit: bursts of at most 512 KiB, half the
/// socket's write high-water mark.
pub(crate) const UNIT: usize = 128;

const _: () = assert!(CAPACITY * UNIT <= crate::client::write_load::HIGH_WATERMARK / 2);

/// The permits a message of `len` bytes takes: one per started [`UNIT`],
/// at least one, at most all of them (a message larger than the bound
/// waits until the inbox is empty, then fills it alone).
fn weight(len: usize) -> u32 {
    len.div_ceil(UNIT).clamp(1, CAPACITY) as u32
}

/// The inbox holds messages: take them. Sent by the `send()` that found
/// the inbox empty.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

/// What both halves share.
struct Shared {
    list: Mutex<Vec<Enqueue>>,
    /// The free places.
    places: Semaphore,
}

/// The sending half, shared by every clone of the handle.
#[derive(Clone)]
pub(crate) struct InboxTx {
    shared: Arc<Shared>,
    /// The actor's mailbox, for the `Drain`.
    wake: Recipient<Drain>,
}

/// The receiving half, in the actor. Dropping it (the actor is gone)
/// refuses every later message.
pub(crate) struct InboxRx {
    shared: Arc<Shared>,
}

/// Why a message was not handed over.
pub(crate) enum Refused {
    /// No place now.
    Full,
    /// The actor is gone.
    Closed,
}

/// A new inbox whose wake-ups go to `wake`.
pub(crate) fn inbox(wake: Recipient<Drain>) -> (InboxTx, InboxRx) {
    let shared = Arc::new(Shared {
        list: Mutex::new(Vec::new()),
        places: Semaphore::new(CAPACITY),
    });
    (
        InboxTx {
            shared: shared.clone(),
            wake,
        },
        InboxRx { shared },
    )
}

impl InboxTx {
    /// Hands a message over, waiting for a place while the inbox is full.
    ///
    /// # Errors
    /// The message, when the actor is gone.
    pub(crate) async fn send(&self, msg: Enqueue) -> Result<(), Enqueue> {
        let n = weight(msg.payload.len());
        match self.shared.places.try_acquire_many(n) {
            Ok(place) => place.forget(),
            Err(TryAcquireError::Closed) => return Err(msg),
            Err(TryAcquireError::NoPermits) => match self.shared.places.acquire_many(n).await {
                Ok(place) => place.forget(),
                Err(_) => return Err(msg),
            },
        }
        self.push(msg);
        Ok(())
    }

    /// Hands a message over if there is a place now.
    ///
    /// # Errors
    /// The message, and why.
    pub(crate) fn try_send(&self, msg: Enqueue) -> Result<(), Refused> {
        match self
            .shared
            .places
            .try_acquire_many(weight(msg.payload.len()))
        {
            Ok(place) => place.forget(),
            Err(TryAcquireError::Closed) => return Err(Refused::Closed),
            Err(TryAcquireError::NoPermits) => return Err(Refused::Full),
        }
        self.push(msg);
        Ok(())
    }

    fn push(&self, msg: Enqueue) {
        let was_empty = {
            let mut list = self.shared.list.lock().expect("inbox lock");
            list.push(msg);
            list.len() == 1
        };
        // Empty means the actor took everything before: it waits for a
        // `Drain`. Otherwise one is on its way.
        if was_empty {
            self.wake.do_send(Drain);
        }
    }
}

impl InboxRx {
    /// Takes every waiting message, oldest first, and frees their places.
    pub(crate) fn take(&mut self) -> Vec<Enqueue> {
        // A fresh list for the senders: one that held a burst is not kept
        // (an idle client holds no inbox memory).
        let taken = std::mem::take(&mut *self.shared.list.lock().expect("inbox lock"));
        let places: usize = taken.iter().map(|m| weight(m.payload.len()) as usize).sum();
        if places > 0 {
            self.shared.places.add_permits(places);
        }
        taken
    }
}

impl Drop for InboxRx {
    fn drop(&mut self) {
        // Wakes the senders waiting for a place: they fail.
        self.shared.places.close();
    }
}

#[cfg(test)]
mod tests {
    //! The inbox alone: its actor is a counter of `Drain`s, the tests take
    //! what it holds themselves.

    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;
    use crate::{client::admission::Ticket, events::Payload, queue::MessageId};

    /// Counts the wake-ups.
    struct Wakes(Arc<AtomicUsize>);

    impl Actor for Wakes {
        type Context = Context<Self>;
    }

    impl Handler<Drain> for Wakes {
        type Result = ();
        fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn msg(text: &str, id: u64) -> Enqueue {
        Enqueue {
            payload: Payload::from(text),
            priority: 0,
            done: None,
            ticket: Ticket::Free,
            answer: None,
            id: MessageId(id),
            receipt: None,
        }
    }

    fn ids(taken: &[Enqueue]) -> Vec<u64> {
        taken.iter().map(|m| m.id.0).collect()
    }

    fn start() -> (InboxTx, InboxRx, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = inbox(Wakes(wakes.clone()).start().recipient());
        (tx, rx, wakes)
    }

    /// Lets the `Wakes` actor handle what was sent to it.
    async fn settle() {
        for _ in 0..10 {
            actix_rt::task::yield_now().await;
        }
    }

    #[actix_rt::test]
    async fn a_burst_wakes_the_actor_once_and_comes_out_in_order() {
        let (tx, mut rx, wakes) = start();
        for id in 1..=100 {
            assert!(tx.send(msg("m", id)).await.is_ok());
        }
        settle().await;
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert_eq!(ids(&rx.take()), (1..=100).collect::<Vec<_>>());
        // Taken: the next message wakes it again.
        tx.try_send(msg("m", 101)).ok().unwrap();
        settle().await;
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(ids(&rx.take()), vec![101]);
        assert!(rx.take().is_empty());
    }

    #[actix_rt::test]
    async fn a_full_inbox_holds_the_sender_until_the_actor_takes_its_messages() {
        let (tx, mut rx, _) = start();
        for id in 0..CAPACITY as u64 {
            tx.try_send(msg("m", id)).ok().unwrap();
        }
        assert!(matches!(tx.try_send(msg("m", 9999)), Err(Refused::Full)));
        let waiting = actix_rt::spawn({
            let tx = tx.clone();
            async move { tx.send(msg("last", 9999)).await.is_ok() }
        });
        settle().await;
        assert!(!waiting.is_finished(), "no place: the sender waits");
        assert_eq!(rx.take().len(), CAPACITY);
        assert!(tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap());
        assert_eq!(ids(&rx.take()), vec![9999]);
    }

    #[actix_rt::test]
    async fn large_messages_fill_it_sooner_and_a_huge_one_fills_it_alone() {
        let (tx, mut rx, _) = start();
        let kib = "x".repeat(1024);
        let fit = CAPACITY * UNIT / 1024;
        for id in 0..fit as u64 {
            tx.try_send(msg(&kib, id)).ok().unwrap();
        }
        assert!(matches!(tx.try_send(msg(&kib, 0)), Err(Refused::Full)));
        assert!(matches!(tx.try_send(msg("", 0)), Err(Refused::Full)));
        assert_eq!(rx.take().len(), fit);
        // Larger than the whole bound: taken once the inbox is empty.
        let huge = "x".repeat(2 * CAPACITY * UNIT);
        tx.try_send(msg(&huge, 1)).ok().unwrap();
        assert!(matches!(tx.try_send(msg("", 2)), Err(Refused::Full)));
        assert_eq!(ids(&rx.take()), vec![1]);
        tx.try_send(msg("", 2)).ok().unwrap();
    }

    #[actix_rt::test]
    async fn once_the_actor_is_gone_senders_are_refused_and_waiting_ones_fail() {
        let (tx, rx, _) = start();
        for id in 0..CAPACITY as u64 {
            tx.try_send(msg("m", id)).ok().unwrap();
        }
        let waiting = actix_rt::spawn({
            let tx = tx.clone();
            async move { tx.send(msg("m", 0)).await.is_err() }
        });
        settle().await;
        drop(rx);
        assert!(waiting.await.unwrap(), "the waiting sender fails");
        assert!(matches!(tx.try_send(msg("m", 0)), Err(Refused::Closed)));
        assert!(tx.send(msg("m", 0)).await.is_err());
    }
}
