//! What the outbox says about a message it holds: its [`MessageId`], and
//! the [`DropReason`] when it lets one go. Events
//! ([`MessageDropped`](crate::MessageDropped)) and the
//! [`MessageQueue`](crate::queue::MessageQueue) both speak of them, so they
//! live below both.

use std::fmt;

/// A message's id: unique within its queue, assigned in enqueue order
/// starting at 1, so a later message always has a larger id.
///
/// Displays as the bare number and serializes as one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl MessageId {
    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<MessageId> for u64 {
    fn from(id: MessageId) -> Self {
        id.0
    }
}

/// Why the queue dropped a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// The queue was full and the [`OverflowPolicy`](crate::OverflowPolicy) chose this message.
    Overflow,
    /// It waited longer than the queue's time to live.
    Expired,
    /// Sending it failed `max_retries` times (a dead letter).
    RetriesExhausted,
}
