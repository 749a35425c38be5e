//! What a [`MessageQueue`](super::MessageQueue) hands back: the message it
//! dequeues, the one it dropped, the outcome of an enqueue and its refusals.

use std::time::{Duration, Instant};

#[allow(unused_imports)] // the doc links name them
use super::{MessageQueue, QueueOptions};
#[allow(unused_imports)] // the doc links name it
use crate::OverflowPolicy;
use crate::{
    message::{DropReason, MessageId},
    Payload,
};

/// A message held by a [`MessageQueue`], as [`dequeue`](MessageQueue::dequeue)
/// hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its id in the queue; reports about it (drops, acks) use this.
    pub id: MessageId,
    /// The body to send.
    pub payload: Payload,
    /// Its priority: higher goes first.
    pub priority: u8,
    /// How many times sending it has failed so far (see
    /// [`MessageQueue::mark_failed`]).
    pub attempts: u32,
    /// When it was enqueued; its time to live counts from here.
    pub enqueued_at: Instant,
}

/// A message the queue dropped, handed back so the caller can report it
/// (and, if it wants, keep the payload somewhere else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The dropped message's id.
    pub id: MessageId,
    /// The dropped message's body.
    pub payload: Payload,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// What [`MessageQueue::enqueue`] did with a message it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a message dropped by the overflow policy is reported only here"]
pub struct EnqueueOutcome {
    /// The id given to the new message.
    pub id: MessageId,
    /// The message the overflow policy dropped to keep the queue within
    /// bounds, if any. With [`OverflowPolicy::DropNewest`] (and
    /// [`DropOldest`](OverflowPolicy::DropOldest) when the new message has the
    /// lowest priority) this is the new message itself: `dropped.id == id`.
    pub dropped: Option<Dropped>,
}

/// Why the queue refused a message or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue is full and its policy is [`OverflowPolicy::Reject`]. The
    /// message was not queued and no id was used; it is handed back.
    #[error("queue full ({max_size} messages): message rejected")]
    Full {
        /// The queue's capacity.
        max_size: usize,
        /// The refused message's body.
        payload: Payload,
    },
    /// The queue is full and its policy is [`OverflowPolicy::Wait`]: the
    /// caller should hold the message and enqueue it again when space frees
    /// up, for at most `timeout`; after that, treat it as
    /// [`Full`](Self::Full). The message was not queued; it is handed back.
    #[error("queue full ({max_size} messages): wait up to {timeout:?} for space")]
    WouldWait {
        /// The queue's capacity.
        max_size: usize,
        /// How long the caller may wait for space.
        timeout: Duration,
        /// The refused message's body.
        payload: Payload,
    },
    /// The [`QueueOptions`] are unusable.
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),
}

impl QueueError {
    /// The refused message's body, if this error refused one.
    pub fn into_payload(self) -> Option<Payload> {
        match self {
            QueueError::Full { payload, .. } | QueueError::WouldWait { payload, .. } => {
                Some(payload)
            }
            QueueError::InvalidConfig(_) => None,
        }
    }
}

impl From<QueueError> for crate::Error {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full { max_size, .. } | QueueError::WouldWait { max_size, .. } => {
                crate::Error::BufferFull(max_size)
            }
            QueueError::InvalidConfig(msg) => crate::Error::InvalidConfig(msg),
        }
    }
}
