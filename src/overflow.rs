//! [`OverflowPolicy`]: what a full outbox does with one more message. A
//! client option ([`ClientOptions::overflow_policy`](crate::ClientOptions::overflow_policy))
//! and a [`MessageQueue`](crate::queue::MessageQueue) setting alike, so it
//! lives below both.

use std::time::Duration;

/// What happens to a message enqueued while the queue is full.
///
/// Whatever the policy, nothing is dropped silently: a rejected message comes
/// back in the error, a dropped one is reported in [`EnqueueOutcome::dropped`](crate::queue::EnqueueOutcome::dropped).
///
/// ```
/// use resilient_ws::queue::{DropReason, MessageQueue, QueueOptions};
/// use resilient_ws::OverflowPolicy;
///
/// let mut options = QueueOptions::default();
/// options.max_size = 2;
/// options.overflow = OverflowPolicy::DropOldest;
/// let mut queue = MessageQueue::new(options)?;
/// let first = queue.enqueue("a", 0)?.id;
/// queue.enqueue("b", 0)?;
/// let outcome = queue.enqueue("c", 0)?;
/// let dropped = outcome.dropped.expect("the queue was full");
/// assert_eq!((dropped.id, dropped.reason), (first, DropReason::Overflow));
/// assert_eq!(queue.len(), 2);
/// # Ok::<(), resilient_ws::queue::QueueError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Refuse the new message with [`QueueError::Full`](crate::queue::QueueError::Full), handing it back.
    #[default]
    Reject,
    /// Make room by evicting the oldest message of the lowest priority, the
    /// new message counting as a candidate: if the new message's priority is
    /// lower than every queued one, it is the one dropped. So a flood of
    /// low-priority messages never pushes out a high-priority one.
    DropOldest,
    /// Drop the new message: it gets an id, is not queued, and is reported as
    /// dropped under that id. The queued messages are kept.
    DropNewest,
    /// The caller should wait up to this long for space, then try again. The
    /// queue itself cannot wait: it refuses with [`QueueError::WouldWait`](crate::queue::QueueError::WouldWait)
    /// (not [`Full`](crate::queue::QueueError::Full)) and hands the message back, so the
    /// owner (an actor) knows to hold it and retry when space frees up or give
    /// up after the timeout.
    Wait(Duration),
}
