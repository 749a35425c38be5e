//! [`QueueOptions`]: the settings a [`MessageQueue`](super::MessageQueue) is
//! built from.

use std::time::Duration;

#[allow(unused_imports)] // the doc links name them
use super::{MessageQueue, QueueError, QueuedMessage};
use crate::OverflowPolicy;

/// Settings for a [`MessageQueue`].
///
/// Build one from the defaults (it is `#[non_exhaustive]`):
///
/// ```
/// use std::time::Duration;
/// use resilient_ws::queue::{MessageQueue, QueueOptions};
/// use resilient_ws::OverflowPolicy;
///
/// let mut options = QueueOptions::default();
/// options.max_size = 100;
/// options.overflow = OverflowPolicy::DropOldest;
/// options.ttl = Some(Duration::from_secs(30));
/// let queue = MessageQueue::new(options)?;
/// assert_eq!(queue.max_size(), 100);
/// # Ok::<(), resilient_ws::queue::QueueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueOptions {
    /// How many messages the queue holds before [`overflow`](Self::overflow)
    /// decides what happens to the next one. At least 1. Default
    /// [`DEFAULT_MAX_SIZE`](Self::DEFAULT_MAX_SIZE) (1000).
    pub max_size: usize,
    /// How many failed send attempts a message may have: the failure that
    /// brings its [`attempts`](QueuedMessage::attempts) to `max_retries`
    /// dead-letters it instead of putting it back (so with 3 a message is
    /// tried at most 3 times; 0 behaves like 1). Default
    /// [`DEFAULT_MAX_RETRIES`](Self::DEFAULT_MAX_RETRIES) (3).
    pub max_retries: u32,
    /// Whether queued messages should outlive the process. A `MessageQueue`
    /// is the in-memory part of the outbox only; persistence is the client's
    /// durable store ([`RedbStore`](super::RedbStore), enabled with
    /// `ClientOptions::persistent` and `store_path`), so `true` is rejected
    /// here with [`QueueError::InvalidConfig`]. Default `false`.
    pub persistent: bool,
    /// What [`MessageQueue::enqueue`] does when the queue is full. Default
    /// [`OverflowPolicy::Reject`].
    pub overflow: OverflowPolicy,
    /// How long a message may wait in the queue before
    /// [`MessageQueue::drain_expired`] drops it; `None` keeps messages until
    /// they are sent. Must not be zero. Default `None`.
    pub ttl: Option<Duration>,
}

impl QueueOptions {
    /// The default [`max_size`](Self::max_size).
    pub const DEFAULT_MAX_SIZE: usize = 1000;
    /// The default [`max_retries`](Self::max_retries).
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_size: Self::DEFAULT_MAX_SIZE,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            persistent: false,
            overflow: OverflowPolicy::default(),
            ttl: None,
        }
    }
}
