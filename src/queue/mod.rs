//! Store-and-forward: the outbox that holds messages until they can be sent.
//!
//! [`MessageQueue`] is a plain, synchronous type with no actix in it, so its
//! rules can be unit-tested on their own: bounded, priority-ordered (higher
//! first, FIFO within a priority), an explicit [`OverflowPolicy`] when full,
//! retries with a dead-letter limit, and an optional time to live. Nothing
//! leaves it silently: every message it drops comes back to the caller as a
//! [`Dropped`] with its [`MessageId`] and a [`DropReason`].
//!
//! The client's queue actor owns one and turns those reports into events.
//! With a durable store (a [`QueueStore`], such as [`RedbStore`]) it also
//! records every change to the outbox, so that a new process finds it again.
//!
//! ```
//! use resilient_ws::queue::{MessageQueue, QueueOptions};
//!
//! let mut queue = MessageQueue::new(QueueOptions::default())?;
//! let low = queue.enqueue("routine", 0)?.id;
//! let high = queue.enqueue("urgent", 9)?.id;
//! assert_eq!(queue.dequeue().map(|m| m.id), Some(high));
//! assert_eq!(queue.dequeue().map(|m| m.id), Some(low));
//! assert!(queue.is_empty());
//! # Ok::<(), resilient_ws::queue::QueueError>(())
//! ```

mod message_queue;
mod redb_store;
mod store;

pub use message_queue::{
    DropReason, Dropped, EnqueueOutcome, MessageId, MessageQueue, OverflowPolicy, QueueError,
    QueueOptions, QueuedMessage,
};
pub use redb_store::RedbStore;
pub use store::{
    MemoryStore, QueueStore, StoreError, StoreOp, StoredMessage, StoredSession, StoredState,
};
