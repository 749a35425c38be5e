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
//! It uses the bound, the priorities, the overflow policy and the time to
//! live, not the retry count: a message sent on a socket that died is
//! resent by the reliable protocol's window (or, in raw mode, lost), never
//! handed back with [`mark_failed`](MessageQueue::mark_failed). The
//! retry/dead-letter part (`max_retries`, `mark_failed`,
//! [`DropReason::RetriesExhausted`]) is for applications that drive a
//! `MessageQueue` themselves.
//!
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
mod options;
mod outcome;
#[cfg(feature = "durable")]
mod redb_store;
mod store;

pub use crate::message::{DropReason, MessageId};
pub use crate::store_error::StoreError;
pub use message_queue::MessageQueue;
pub use options::QueueOptions;
pub use outcome::{Dropped, EnqueueOutcome, QueueError, QueuedMessage};
#[cfg(feature = "durable")]
#[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
pub use redb_store::RedbStore;
pub use store::{MemoryStore, QueueStore, StoreOp, StoredMessage, StoredSession, StoredState};

// Kept at its old path inside the crate only, so code written against
// `crate::queue::OverflowPolicy` still compiles; its public path is the root.
#[allow(unused_imports)]
pub(crate) use crate::OverflowPolicy;

/// Opens the durable store file the client's `store_path` names.
///
/// # Errors
/// [`StoreError`] when the file is locked, corrupt or unreadable; without
/// the `durable` feature, an [`InvalidConfig`](crate::Error::InvalidConfig)
/// that names the feature (options validation refuses `persistent` first).
#[cfg(feature = "client")]
pub(crate) fn open_store_file(path: &std::path::Path) -> crate::Result<Box<dyn QueueStore>> {
    #[cfg(feature = "durable")]
    {
        Ok(Box::new(RedbStore::open(path)?))
    }
    #[cfg(not(feature = "durable"))]
    {
        let _ = path;
        Err(crate::Error::InvalidConfig(
            "a durable store file needs the crate's `durable` feature".into(),
        ))
    }
}
