//! [`MessageQueue`]: a bounded, priority-ordered outbox with retries, expiry
//! and an explicit overflow policy.
//!
//! Layout: one FIFO ([`VecDeque`]) per priority that has been used, kept in a
//! small vector sorted highest priority first, plus a 256-bit set of the
//! priorities that currently hold messages. Enqueue and dequeue cost a binary
//! search over the priorities in use (usually one) and a deque push or pop;
//! nothing is allocated per message beyond the deque's own growth, and an
//! emptied deque keeps its buffer for the next burst.
//!
//! Invariant the cheap paths rely on: inside one priority, messages are
//! sorted by id, which is enqueue order, and so also by `enqueued_at`.
//! [`MessageQueue::mark_failed`] puts a message back at its sorted place,
//! [`MessageQueue::drain_expired`] only looks at the front of each priority.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::{
    message::{DropReason, MessageId},
    OverflowPolicy, Payload,
};

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

/// The messages of one priority, oldest (smallest id) first.
#[derive(Debug)]
struct Lane {
    priority: u8,
    messages: VecDeque<QueuedMessage>,
}

/// The set of priorities that hold messages: finds the highest and the
/// lowest in O(1), so dequeue never walks empty lanes.
#[derive(Debug, Default, Clone, Copy)]
struct PrioritySet([u64; 4]);

impl PrioritySet {
    fn insert(&mut self, p: u8) {
        self.0[usize::from(p >> 6)] |= 1 << (p & 63);
    }

    fn remove(&mut self, p: u8) {
        self.0[usize::from(p >> 6)] &= !(1 << (p & 63));
    }

    fn highest(&self) -> Option<u8> {
        (0..4).rev().find_map(|w| {
            let bits = self.0[w];
            (bits != 0).then(|| (w * 64 + 63 - bits.leading_zeros() as usize) as u8)
        })
    }

    fn lowest(&self) -> Option<u8> {
        (0..4).find_map(|w| {
            let bits = self.0[w];
            (bits != 0).then(|| (w * 64 + bits.trailing_zeros() as usize) as u8)
        })
    }
}

/// A bounded store-and-forward queue: higher priority first, FIFO within a
/// priority, an explicit [`OverflowPolicy`], retries with a dead-letter limit
/// and an optional time to live.
///
/// It is synchronous and owns no timers: its owner calls
/// [`drain_expired`](Self::drain_expired) (for instance at
/// [`next_expiry`](Self::next_expiry)) and reports what it returns.
/// [`dequeue`](Self::dequeue) does not skip expired messages, so that every
/// expiry is reported.
///
/// The retries ([`mark_failed`](Self::mark_failed), `max_retries`, dead
/// letters) are for applications that drive the queue themselves. The
/// client's outbox uses the bound, the priorities, the overflow policy and
/// the time to live; a message lost with a socket is resent by the
/// reliable protocol's window, not counted as a failed attempt here.
///
/// # Examples
///
/// ```
/// use resilient_ws::queue::{DropReason, MessageQueue, QueueOptions};
///
/// let mut options = QueueOptions::default();
/// options.max_retries = 2;
/// let mut queue = MessageQueue::new(options)?;
/// let id = queue.enqueue("hello", 0)?.id;
///
/// // Sending failed: put it back at the front, to be tried again.
/// let msg = queue.dequeue().unwrap();
/// assert_eq!(queue.mark_failed(msg), Ok(id));
///
/// // Failed again: that was its last attempt, so it comes back as a dead letter.
/// let msg = queue.dequeue().unwrap();
/// let dead = queue.mark_failed(msg).unwrap_err();
/// assert_eq!((dead.id, dead.reason), (id, DropReason::RetriesExhausted));
/// assert!(queue.is_empty());
/// # Ok::<(), resilient_ws::queue::QueueError>(())
/// ```
#[derive(Debug)]
pub struct MessageQueue {
    options: QueueOptions,
    /// One FIFO per priority ever used, highest priority first. An emptied
    /// lane is kept so a queue that keeps draining and refilling (the usual
    /// life of an outbox) reuses its buffer instead of reallocating.
    lanes: Vec<Lane>,
    /// Which lanes hold messages.
    nonempty: PrioritySet,
    /// The number of queued messages, so `len` is O(1).
    len: usize,
    /// The number the next message's id gets.
    next_id: u64,
    /// The latest `enqueued_at` handed out, so a clock reading that goes
    /// backwards cannot break FIFO expiry order.
    last_enqueued_at: Option<Instant>,
}

impl MessageQueue {
    /// Creates an empty queue.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] if `max_size` is 0, `ttl` is zero, or
    /// `persistent` is set (that takes the client's durable store).
    pub fn new(options: QueueOptions) -> Result<Self, QueueError> {
        if options.persistent {
            return Err(QueueError::InvalidConfig(
                "a MessageQueue is memory only; persistence needs the client's durable store (ClientOptions::persistent with a store_path)".into(),
            ));
        }
        if options.max_size == 0 {
            return Err(QueueError::InvalidConfig(
                "max_size must be at least 1".into(),
            ));
        }
        if options.ttl == Some(Duration::ZERO) {
            return Err(QueueError::InvalidConfig(
                "ttl must be greater than zero (use None for no expiry)".into(),
            ));
        }
        Ok(MessageQueue {
            options,
            lanes: Vec::new(),
            nonempty: PrioritySet::default(),
            len: 0,
            next_id: 1,
            last_enqueued_at: None,
        })
    }

    /// The options the queue was built with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// The capacity: how many messages `enqueue` accepts before the overflow
    /// policy applies.
    pub fn max_size(&self) -> usize {
        self.options.max_size
    }

    /// How many messages are queued.
    ///
    /// At most [`max_size`](Self::max_size), except that messages put back by
    /// [`mark_failed`](Self::mark_failed) are never refused, so while some are
    /// in flight new ones can fill the space and the total can go over until
    /// the queue drains.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the next `enqueue` meets the overflow policy.
    pub fn is_full(&self) -> bool {
        self.len >= self.options.max_size
    }

    /// Queues a message, timestamped now. Higher `priority` goes first;
    /// messages of equal priority go in the order they were enqueued.
    ///
    /// When the queue is full, the [`OverflowPolicy`] decides; a message it
    /// drops is reported in [`EnqueueOutcome::dropped`].
    ///
    /// # Errors
    ///
    /// When the queue is full: [`QueueError::Full`] under
    /// [`OverflowPolicy::Reject`], [`QueueError::WouldWait`] under
    /// [`OverflowPolicy::Wait`]. Both hand the payload back and leave the
    /// queue unchanged (no id is used).
    pub fn enqueue(
        &mut self,
        payload: impl Into<Payload>,
        priority: u8,
    ) -> Result<EnqueueOutcome, QueueError> {
        self.enqueue_at(payload, priority, Instant::now())
    }

    /// [`enqueue`](Self::enqueue) with the clock reading to stamp the message
    /// with, for owners that keep their own clock (a paused test clock, for
    /// instance). A reading earlier than the previous message's is raised to
    /// it, so that messages expire in the order they were enqueued.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Self::enqueue).
    pub fn enqueue_at(
        &mut self,
        payload: impl Into<Payload>,
        priority: u8,
        now: Instant,
    ) -> Result<EnqueueOutcome, QueueError> {
        let payload = payload.into();
        let mut dropped = None;
        if self.is_full() {
            let max_size = self.options.max_size;
            match self.options.overflow {
                OverflowPolicy::Reject => return Err(QueueError::Full { max_size, payload }),
                OverflowPolicy::Wait(timeout) => {
                    return Err(QueueError::WouldWait {
                        max_size,
                        timeout,
                        payload,
                    })
                }
                OverflowPolicy::DropNewest => return Ok(self.drop_incoming(payload)),
                OverflowPolicy::DropOldest => {
                    // Full and max_size >= 1, so some lane holds a message.
                    let lowest = self.nonempty.lowest().unwrap_or(u8::MAX);
                    if priority < lowest {
                        return Ok(self.drop_incoming(payload));
                    }
                    dropped = self.pop_front(lowest).map(|m| Dropped {
                        id: m.id,
                        payload: m.payload,
                        reason: DropReason::Overflow,
                    });
                }
            }
        }
        let id = self.take_id();
        let enqueued_at = match self.last_enqueued_at {
            Some(last) if now < last => last,
            _ => now,
        };
        self.last_enqueued_at = Some(enqueued_at);
        let lane = self.lane_index_or_insert(priority);
        self.lanes[lane].messages.push_back(QueuedMessage {
            id,
            payload,
            priority,
            attempts: 0,
            enqueued_at,
        });
        self.nonempty.insert(priority);
        self.len += 1;
        Ok(EnqueueOutcome { id, dropped })
    }

    /// Takes out the next message to send: the oldest of the highest
    /// priority. `None` if the queue is empty.
    pub fn dequeue(&mut self) -> Option<QueuedMessage> {
        let priority = self.nonempty.highest()?;
        self.pop_front(priority)
    }

    /// Takes out up to `max` messages in [`dequeue`](Self::dequeue) order.
    pub fn dequeue_batch(&mut self, max: usize) -> Vec<QueuedMessage> {
        let mut out = Vec::new();
        self.dequeue_batch_into(&mut out, max);
        out
    }

    /// Appends up to `max` messages, in [`dequeue`](Self::dequeue) order, to
    /// `out` (so a caller that drains often can reuse one buffer). Returns how
    /// many it appended.
    pub fn dequeue_batch_into(&mut self, out: &mut Vec<QueuedMessage>, max: usize) -> usize {
        let total = max.min(self.len);
        out.reserve(total);
        let mut remaining = total;
        for lane in &mut self.lanes {
            if remaining == 0 {
                break;
            }
            let take = remaining.min(lane.messages.len());
            if take == 0 {
                continue;
            }
            out.extend(lane.messages.drain(..take));
            if lane.messages.is_empty() {
                self.nonempty.remove(lane.priority);
            }
            remaining -= take;
        }
        self.len -= total;
        total
    }

    /// The message [`dequeue`](Self::dequeue) would take out next.
    pub fn peek(&self) -> Option<&QueuedMessage> {
        let priority = self.nonempty.highest()?;
        let lane = self.lane_index(priority).ok()?;
        self.lanes[lane].messages.front()
    }

    /// Takes out the message with this id, wherever it is in the queue.
    /// `None` if no queued message has it.
    pub fn remove(&mut self, id: MessageId) -> Option<QueuedMessage> {
        let lane = self.lanes.iter_mut().find_map(|lane| {
            let pos = lane.messages.binary_search_by_key(&id, |m| m.id).ok()?;
            Some((lane, pos))
        });
        let (lane, pos) = lane?;
        let message = lane.messages.remove(pos)?;
        if lane.messages.is_empty() {
            self.nonempty.remove(lane.priority);
        }
        self.len -= 1;
        Some(message)
    }

    /// Reports that sending `message` (taken out by `dequeue`) failed.
    ///
    /// Its [`attempts`](QueuedMessage::attempts) goes up by one. If that is
    /// still below `max_retries`, the message goes back to its original place
    /// in its priority: ahead of every message enqueued after it, which is
    /// the front when it was the last one taken out. A failed batch can be
    /// handed back in any order and comes out again in its original order.
    /// A message put back is never refused for space (it was already
    /// accepted once).
    ///
    /// If a copy with the same id is still queued (the message was only
    /// peeked at), that copy is updated instead of queuing a second one.
    ///
    /// # Errors
    ///
    /// When the failure uses up `max_retries`, the message is not put back
    /// (and any queued copy is removed): it comes back as a dead letter,
    /// [`Dropped`] with [`DropReason::RetriesExhausted`] and its id.
    pub fn mark_failed(&mut self, mut message: QueuedMessage) -> Result<MessageId, Dropped> {
        message.attempts = message.attempts.saturating_add(1);
        let id = message.id;
        if message.attempts >= self.options.max_retries {
            if let Ok(lane) = self.lane_index(message.priority) {
                let messages = &mut self.lanes[lane].messages;
                if let Ok(pos) = messages.binary_search_by_key(&id, |m| m.id) {
                    messages.remove(pos);
                    if messages.is_empty() {
                        self.nonempty.remove(message.priority);
                    }
                    self.len -= 1;
                }
            }
            return Err(Dropped {
                id,
                payload: message.payload,
                reason: DropReason::RetriesExhausted,
            });
        }
        let lane = self.lane_index_or_insert(message.priority);
        let messages = &mut self.lanes[lane].messages;
        match messages.binary_search_by_key(&id, |m| m.id) {
            Ok(pos) => messages[pos] = message,
            Err(pos) => {
                // Keep `enqueued_at` sorted along the lane even if the caller
                // edited it, so expiry can stop at the first live message.
                if pos > 0 {
                    message.enqueued_at = message.enqueued_at.max(messages[pos - 1].enqueued_at);
                }
                if let Some(next) = messages.get(pos) {
                    message.enqueued_at = message.enqueued_at.min(next.enqueued_at);
                }
                self.nonempty.insert(message.priority);
                messages.insert(pos, message);
                self.len += 1;
            }
        }
        Ok(id)
    }

    /// Drops every message that has been queued for the time to live or
    /// longer as of `now`, and returns them (reason
    /// [`DropReason::Expired`]) in dequeue order. Without a `ttl`, drops
    /// nothing.
    pub fn drain_expired(&mut self, now: Instant) -> Vec<Dropped> {
        let Some(ttl) = self.options.ttl else {
            return Vec::new();
        };
        let mut expired = Vec::new();
        for lane in &mut self.lanes {
            // Oldest first within a lane, so the expired ones are a prefix.
            while lane
                .messages
                .front()
                .is_some_and(|m| now.saturating_duration_since(m.enqueued_at) >= ttl)
            {
                if let Some(m) = lane.messages.pop_front() {
                    expired.push(Dropped {
                        id: m.id,
                        payload: m.payload,
                        reason: DropReason::Expired,
                    });
                }
            }
            if lane.messages.is_empty() {
                self.nonempty.remove(lane.priority);
            }
        }
        self.len -= expired.len();
        expired
    }

    /// When the next message expires (the time to call
    /// [`drain_expired`](Self::drain_expired)), or `None` if nothing can.
    pub fn next_expiry(&self) -> Option<Instant> {
        let ttl = self.options.ttl?;
        self.lanes
            .iter()
            .filter_map(|lane| lane.messages.front())
            .filter_map(|m| m.enqueued_at.checked_add(ttl))
            .min()
    }

    /// Takes out every message, in dequeue order. Ids keep counting up
    /// afterwards: an id is never reused within a queue.
    pub fn clear(&mut self) -> Vec<QueuedMessage> {
        self.dequeue_batch(self.len)
    }

    /// The queued messages in dequeue order, without taking them out.
    pub fn iter(&self) -> impl Iterator<Item = &QueuedMessage> + '_ {
        self.lanes.iter().flat_map(|lane| lane.messages.iter())
    }

    fn take_id(&mut self) -> MessageId {
        let id = MessageId(self.next_id);
        self.next_id += 1;
        id
    }

    fn drop_incoming(&mut self, payload: Payload) -> EnqueueOutcome {
        let id = self.take_id();
        EnqueueOutcome {
            id,
            dropped: Some(Dropped {
                id,
                payload,
                reason: DropReason::Overflow,
            }),
        }
    }

    /// Where the lane for `priority` is (`Ok`), or would go (`Err`), in
    /// `lanes`, which is sorted highest priority first.
    fn lane_index(&self, priority: u8) -> Result<usize, usize> {
        self.lanes
            .binary_search_by(|lane| priority.cmp(&lane.priority))
    }

    fn lane_index_or_insert(&mut self, priority: u8) -> usize {
        match self.lane_index(priority) {
            Ok(i) => i,
            Err(i) => {
                self.lanes.insert(
                    i,
                    Lane {
                        priority,
                        messages: VecDeque::new(),
                    },
                );
                i
            }
        }
    }

    fn pop_front(&mut self, priority: u8) -> Option<QueuedMessage> {
        let index = self.lane_index(priority).ok()?;
        let lane = &mut self.lanes[index];
        let message = lane.messages.pop_front()?;
        if lane.messages.is_empty() {
            self.nonempty.remove(priority);
        }
        self.len -= 1;
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn queue(options: QueueOptions) -> MessageQueue {
        MessageQueue::new(options).expect("valid options")
    }

    fn with_max_size(max_size: usize, overflow: OverflowPolicy) -> MessageQueue {
        queue(QueueOptions {
            max_size,
            overflow,
            ..QueueOptions::default()
        })
    }

    fn enqueue(q: &mut MessageQueue, text: &str, priority: u8) -> MessageId {
        let outcome = q.enqueue(text, priority).expect("room in the queue");
        assert_eq!(outcome.dropped, None);
        outcome.id
    }

    fn texts(q: &MessageQueue) -> Vec<String> {
        q.iter()
            .map(|m| m.payload.as_text().unwrap().to_owned())
            .collect()
    }

    fn drain_texts(q: &mut MessageQueue) -> Vec<String> {
        std::iter::from_fn(|| q.dequeue())
            .map(|m| m.payload.as_text().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn dequeues_higher_priority_first_and_fifo_within_a_priority() {
        let mut q = queue(QueueOptions::default());
        for (text, p) in [
            ("low1", 1),
            ("high1", 200),
            ("mid1", 5),
            ("low2", 1),
            ("high2", 200),
            ("mid2", 5),
            ("zero", 0),
            ("top", 255),
        ] {
            enqueue(&mut q, text, p);
        }
        let expected = [
            "top", "high1", "high2", "mid1", "mid2", "low1", "low2", "zero",
        ];
        assert_eq!(texts(&q), expected, "iter is in dequeue order");
        assert_eq!(q.peek().unwrap().payload.as_text(), Some("top"));
        assert_eq!(drain_texts(&mut q), expected);
        assert!(q.is_empty());
        assert_eq!(q.dequeue(), None);
        assert_eq!(q.peek(), None);
    }

    #[test]
    fn ids_start_at_one_and_strictly_increase_across_priorities_and_drains() {
        let mut q = queue(QueueOptions::default());
        let a = enqueue(&mut q, "a", 3);
        let b = enqueue(&mut q, "b", 0);
        q.dequeue();
        q.clear();
        let c = enqueue(&mut q, "c", 3);
        assert_eq!((a, b, c), (MessageId(1), MessageId(2), MessageId(3)));
        assert_eq!(c.to_string(), "3");
        assert_eq!(serde_json::to_string(&c).unwrap(), "3");
        assert_eq!(serde_json::from_str::<MessageId>("3").unwrap(), c);
    }

    #[test]
    fn full_queue_with_reject_returns_full_and_leaves_the_queue_unchanged() {
        let mut q = with_max_size(2, OverflowPolicy::Reject);
        enqueue(&mut q, "a", 0);
        enqueue(&mut q, "b", 9);
        assert!(q.is_full());
        let before: Vec<QueuedMessage> = q.iter().cloned().collect();

        let err = q.enqueue("c", 5).unwrap_err();
        assert_eq!(
            err,
            QueueError::Full {
                max_size: 2,
                payload: "c".into()
            }
        );
        assert_eq!(err.into_payload(), Some(Payload::from("c")));
        assert_eq!(q.iter().cloned().collect::<Vec<_>>(), before);
        assert_eq!(q.len(), 2);

        // The refused message used no id.
        q.dequeue();
        assert_eq!(enqueue(&mut q, "d", 0), MessageId(3));
    }

    #[test]
    fn drop_oldest_evicts_the_oldest_message_of_the_lowest_priority_and_reports_its_id() {
        let mut q = with_max_size(4, OverflowPolicy::DropOldest);
        enqueue(&mut q, "high-old", 9);
        let low_old = enqueue(&mut q, "low-old", 1);
        enqueue(&mut q, "low-new", 1);
        enqueue(&mut q, "mid", 5);

        let outcome = q.enqueue("incoming", 1).unwrap();
        assert_eq!(outcome.id, MessageId(5));
        assert_eq!(
            outcome.dropped,
            Some(Dropped {
                id: low_old,
                payload: "low-old".into(),
                reason: DropReason::Overflow,
            })
        );
        assert_eq!(q.len(), 4);
        assert_eq!(texts(&q), ["high-old", "mid", "low-new", "incoming"]);
    }

    #[test]
    fn drop_oldest_drops_the_incoming_message_when_its_priority_is_the_lowest() {
        let mut q = with_max_size(2, OverflowPolicy::DropOldest);
        enqueue(&mut q, "a", 5);
        enqueue(&mut q, "b", 5);
        let outcome = q.enqueue("lower", 4).unwrap();
        let dropped = outcome.dropped.unwrap();
        assert_eq!(
            (dropped.id, dropped.reason),
            (outcome.id, DropReason::Overflow)
        );
        assert_eq!(dropped.payload, Payload::from("lower"));
        assert_eq!(texts(&q), ["a", "b"]);
    }

    #[test]
    fn drop_newest_reports_the_incoming_message_under_its_new_id() {
        let mut q = with_max_size(2, OverflowPolicy::DropNewest);
        enqueue(&mut q, "a", 0);
        enqueue(&mut q, "b", 0);
        let outcome = q.enqueue("c", 200).unwrap();
        assert_eq!(outcome.id, MessageId(3));
        assert_eq!(
            outcome.dropped,
            Some(Dropped {
                id: MessageId(3),
                payload: "c".into(),
                reason: DropReason::Overflow,
            })
        );
        assert_eq!(texts(&q), ["a", "b"]);
        q.dequeue();
        assert_eq!(enqueue(&mut q, "d", 0), MessageId(4));
    }

    #[test]
    fn wait_policy_returns_would_wait_with_the_timeout_and_the_payload() {
        let timeout = Duration::from_millis(250);
        let mut q = with_max_size(1, OverflowPolicy::Wait(timeout));
        enqueue(&mut q, "a", 0);
        let err = q.enqueue(vec![1u8, 2], 0).unwrap_err();
        assert_eq!(
            err,
            QueueError::WouldWait {
                max_size: 1,
                timeout,
                payload: Payload::from(vec![1u8, 2]),
            }
        );
        assert_eq!(texts(&q), ["a"]);
        // Once there is room, the same payload goes in.
        q.dequeue();
        let payload = err.into_payload().unwrap();
        assert!(q.enqueue(payload, 0).unwrap().dropped.is_none());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn queue_errors_convert_to_the_crate_error() {
        let full = QueueError::Full {
            max_size: 7,
            payload: "x".into(),
        };
        let wait = QueueError::WouldWait {
            max_size: 8,
            timeout: Duration::from_secs(1),
            payload: "x".into(),
        };
        assert!(matches!(
            crate::Error::from(full),
            crate::Error::BufferFull(7)
        ));
        assert!(matches!(
            crate::Error::from(wait),
            crate::Error::BufferFull(8)
        ));
        assert!(matches!(
            crate::Error::from(QueueError::InvalidConfig("bad".into())),
            crate::Error::InvalidConfig(m) if m == "bad"
        ));
    }

    #[test]
    fn remove_takes_out_exactly_the_message_with_that_id() {
        let mut q = queue(QueueOptions::default());
        enqueue(&mut q, "a", 1);
        let b = enqueue(&mut q, "b", 1);
        enqueue(&mut q, "c", 1);
        let d = enqueue(&mut q, "d", 7);

        assert_eq!(q.remove(b).unwrap().payload.as_text(), Some("b"));
        assert_eq!(q.remove(b), None, "already removed");
        assert_eq!(q.remove(MessageId(99)), None);
        assert_eq!(q.remove(d).unwrap().priority, 7);
        assert_eq!(q.len(), 2);
        assert_eq!(texts(&q), ["a", "c"]);
        assert_eq!(drain_texts(&mut q), ["a", "c"]);
    }

    #[test]
    fn mark_failed_puts_the_message_back_at_the_front_of_its_priority_with_one_more_attempt() {
        let mut q = queue(QueueOptions::default());
        enqueue(&mut q, "high", 9);
        let first = enqueue(&mut q, "first", 1);
        enqueue(&mut q, "second", 1);

        assert_eq!(q.dequeue().unwrap().payload.as_text(), Some("high"));
        let msg = q.dequeue().unwrap();
        assert_eq!((msg.id, msg.attempts), (first, 0));
        enqueue(&mut q, "third", 1);

        assert_eq!(q.mark_failed(msg), Ok(first));
        assert_eq!(q.len(), 3);
        let again = q.peek().unwrap();
        assert_eq!((again.id, again.attempts), (first, 1));
        assert_eq!(texts(&q), ["first", "second", "third"]);
    }

    #[test]
    fn mark_failed_restores_the_original_order_of_a_failed_batch_in_any_order() {
        let mut q = queue(QueueOptions::default());
        for t in ["a", "b", "c", "d"] {
            enqueue(&mut q, t, 0);
        }
        let mut batch = q.dequeue_batch(3);
        enqueue(&mut q, "e", 0);
        // Hand them back out of order.
        let b = batch.remove(1);
        q.mark_failed(b).unwrap();
        for m in batch {
            q.mark_failed(m).unwrap();
        }
        assert_eq!(texts(&q), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn mark_failed_dead_letters_the_message_when_attempts_reach_max_retries() {
        let mut q = queue(QueueOptions {
            max_retries: 3,
            ..QueueOptions::default()
        });
        let id = enqueue(&mut q, "doomed", 4);
        enqueue(&mut q, "other", 4);
        for attempt in 1..3 {
            let msg = q.dequeue().unwrap();
            assert_eq!(msg.id, id);
            assert_eq!(q.mark_failed(msg), Ok(id), "attempt {attempt} is retried");
        }
        let msg = q.dequeue().unwrap();
        assert_eq!(msg.attempts, 2);
        assert_eq!(
            q.mark_failed(msg),
            Err(Dropped {
                id,
                payload: "doomed".into(),
                reason: DropReason::RetriesExhausted,
            })
        );
        assert_eq!(texts(&q), ["other"]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn mark_failed_on_a_peeked_copy_updates_the_queued_message_instead_of_duplicating_it() {
        let mut q = queue(QueueOptions {
            max_retries: 2,
            ..QueueOptions::default()
        });
        let id = enqueue(&mut q, "a", 0);
        let copy = q.peek().unwrap().clone();
        assert_eq!(q.mark_failed(copy), Ok(id));
        assert_eq!(q.len(), 1);
        assert_eq!(q.peek().unwrap().attempts, 1);

        let copy = q.peek().unwrap().clone();
        assert_eq!(
            q.mark_failed(copy).unwrap_err().reason,
            DropReason::RetriesExhausted
        );
        assert!(q.is_empty(), "the dead letter leaves the queue");
        assert_eq!(q.peek(), None);
    }

    #[test]
    fn drain_expired_drops_messages_queued_for_the_ttl_and_reports_their_ids() {
        let ttl = Duration::from_secs(60);
        let mut q = queue(QueueOptions {
            ttl: Some(ttl),
            ..QueueOptions::default()
        });
        let a = enqueue(&mut q, "a", 0);
        let b = enqueue(&mut q, "b", 9);

        assert_eq!(q.drain_expired(Instant::now()), [], "not yet expired");
        assert_eq!(q.len(), 2);
        let expiry = q.next_expiry().unwrap();
        assert!(expiry >= q.iter().map(|m| m.enqueued_at).min().unwrap() + ttl);

        let later = Instant::now() + ttl + Duration::from_millis(1);
        let expired = q.drain_expired(later);
        assert_eq!(
            expired,
            [
                Dropped {
                    id: b,
                    payload: "b".into(),
                    reason: DropReason::Expired
                },
                Dropped {
                    id: a,
                    payload: "a".into(),
                    reason: DropReason::Expired
                },
            ]
        );
        assert!(q.is_empty());
        assert_eq!(q.next_expiry(), None);
    }

    #[test]
    fn drain_expired_keeps_messages_enqueued_after_the_cutoff() {
        let ttl = Duration::from_secs(10);
        let mut q = queue(QueueOptions {
            ttl: Some(ttl),
            ..QueueOptions::default()
        });
        let t0 = Instant::now();
        let young_at = t0 + Duration::from_secs(5);
        let mut ids = Vec::new();
        for (text, priority, at) in [
            ("old-low", 0, t0),
            ("old-high", 7, t0),
            ("young-low", 0, young_at),
            ("young-mid", 3, young_at),
        ] {
            let outcome = q.enqueue_at(text, priority, at).unwrap();
            assert_eq!(outcome.dropped, None);
            ids.push(outcome.id);
        }
        assert_eq!(q.next_expiry(), Some(t0 + ttl));

        let expired = q.drain_expired(t0 + ttl);
        // In dequeue order: the high-priority one first.
        let expired_ids: Vec<_> = expired.iter().map(|d| d.id).collect();
        assert_eq!(expired_ids, [ids[1], ids[0]]);
        assert!(expired.iter().all(|d| d.reason == DropReason::Expired));
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_expiry(), Some(young_at + ttl));
        // Priority 7 is now empty: dequeue must move on to the live ones.
        assert_eq!(drain_texts(&mut q), ["young-mid", "young-low"]);
    }

    #[test]
    fn mark_failed_keeps_expiry_in_fifo_order_even_if_enqueued_at_was_edited() {
        let ttl = Duration::from_secs(10);
        let mut q = queue(QueueOptions {
            ttl: Some(ttl),
            ..QueueOptions::default()
        });
        // Offset so that the edit below can go back a second without underflow.
        let t0 = Instant::now() + Duration::from_secs(10);
        let s = Duration::from_secs(1);
        for (i, text) in ["a", "b", "c"].into_iter().enumerate() {
            let outcome = q.enqueue_at(text, 0, t0 + s * i as u32).unwrap();
            assert_eq!(outcome.dropped, None);
        }
        let mut batch = q.dequeue_batch(2);
        // A caller edits the public field; the queue keeps its order anyway.
        batch[0].enqueued_at = t0 + s * 100;
        batch[1].enqueued_at = t0 - s;
        let b = batch.pop().unwrap();
        let a = batch.pop().unwrap();
        q.mark_failed(a).unwrap();
        q.mark_failed(b).unwrap();
        // Each stamp is clamped between its neighbours': a no later than c,
        // b no earlier than a.
        let stamps: Vec<_> = q.iter().map(|m| m.enqueued_at).collect();
        assert_eq!(stamps, [t0 + s * 2; 3]);

        // Everything stamped up to c's time expires together.
        assert_eq!(q.drain_expired(t0 + s * 2 + ttl).len(), 3);
        assert!(q.is_empty());
    }

    #[test]
    fn enqueue_at_never_stamps_a_message_earlier_than_the_previous_one() {
        let mut q = queue(QueueOptions::default());
        let t0 = Instant::now() + Duration::from_secs(5);
        let a = q.enqueue_at("a", 0, t0).unwrap().id;
        let b = q
            .enqueue_at("b", 0, t0 - Duration::from_secs(1))
            .unwrap()
            .id;
        assert!(a < b);
        let stamps: Vec<Instant> = q.iter().map(|m| m.enqueued_at).collect();
        assert_eq!(stamps, [t0, t0]);
    }

    #[test]
    fn drain_expired_without_a_ttl_drops_nothing() {
        let mut q = queue(QueueOptions::default());
        enqueue(&mut q, "a", 0);
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        assert_eq!(q.drain_expired(far), []);
        assert_eq!(q.next_expiry(), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn dequeue_batch_respects_priority_order_and_max() {
        let mut q = queue(QueueOptions::default());
        for (t, p) in [("l1", 1), ("h1", 8), ("l2", 1), ("h2", 8), ("m1", 4)] {
            enqueue(&mut q, t, p);
        }
        let batch = q.dequeue_batch(3);
        let got: Vec<_> = batch.iter().map(|m| m.payload.as_text().unwrap()).collect();
        assert_eq!(got, ["h1", "h2", "m1"]);
        assert_eq!(q.len(), 2);

        assert!(q.dequeue_batch(0).is_empty());
        assert_eq!(q.len(), 2);

        let mut out = Vec::new();
        assert_eq!(q.dequeue_batch_into(&mut out, 10), 2);
        let got: Vec<_> = out.iter().map(|m| m.payload.as_text().unwrap()).collect();
        assert_eq!(got, ["l1", "l2"]);
        assert!(q.is_empty());
        assert_eq!(q.peek(), None);
    }

    #[test]
    fn clear_returns_every_message_in_dequeue_order() {
        let mut q = queue(QueueOptions::default());
        enqueue(&mut q, "a", 0);
        enqueue(&mut q, "b", 2);
        let cleared: Vec<_> = q
            .clear()
            .into_iter()
            .map(|m| m.payload.as_text().unwrap().to_owned())
            .collect();
        assert_eq!(cleared, ["b", "a"]);
        assert!(q.is_empty());
        assert_eq!(q.dequeue(), None);
    }

    #[test]
    fn persistent_without_a_store_is_invalid_config() {
        let err = MessageQueue::new(QueueOptions {
            persistent: true,
            ..QueueOptions::default()
        })
        .unwrap_err();
        assert!(matches!(&err, QueueError::InvalidConfig(m) if m.contains("store")));
    }

    #[test]
    fn zero_max_size_and_zero_ttl_are_invalid_config() {
        for options in [
            QueueOptions {
                max_size: 0,
                ..QueueOptions::default()
            },
            QueueOptions {
                ttl: Some(Duration::ZERO),
                ..QueueOptions::default()
            },
        ] {
            assert!(matches!(
                MessageQueue::new(options),
                Err(QueueError::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let o = QueueOptions::default();
        assert_eq!(o.max_size, 1000);
        assert_eq!(o.max_retries, 3);
        assert!(!o.persistent);
        assert_eq!(o.overflow, OverflowPolicy::Reject);
        assert_eq!(o.ttl, None);
    }

    #[test]
    fn priority_set_finds_the_highest_and_lowest_across_words() {
        let mut s = PrioritySet::default();
        assert_eq!((s.highest(), s.lowest()), (None, None));
        for p in [0, 63, 64, 130, 255] {
            s.insert(p);
        }
        assert_eq!((s.highest(), s.lowest()), (Some(255), Some(0)));
        s.remove(255);
        s.remove(0);
        assert_eq!((s.highest(), s.lowest()), (Some(130), Some(63)));
    }

    /// A model of the queue: a plain list, the dequeue order computed by
    /// sorting on (priority descending, id ascending).
    #[derive(Clone, Debug, PartialEq)]
    struct Modeled {
        id: MessageId,
        priority: u8,
        attempts: u32,
        payload: Payload,
    }

    fn model_order(model: &mut [Modeled]) {
        model.sort_by_key(|m| (std::cmp::Reverse(m.priority), m.id));
    }

    fn snapshot(q: &MessageQueue) -> Vec<Modeled> {
        q.iter()
            .map(|m| Modeled {
                id: m.id,
                priority: m.priority,
                attempts: m.attempts,
                payload: m.payload.clone(),
            })
            .collect()
    }

    #[test]
    fn random_operations_match_a_simple_model() {
        let policies = [
            OverflowPolicy::Reject,
            OverflowPolicy::DropOldest,
            OverflowPolicy::DropNewest,
            OverflowPolicy::Wait(Duration::from_millis(5)),
        ];
        for (seed, policy) in policies.into_iter().enumerate() {
            let mut rng = StdRng::seed_from_u64(0x5eed + seed as u64);
            let max_size = 8;
            let max_retries = 3;
            let mut q = queue(QueueOptions {
                max_size,
                max_retries,
                overflow: policy,
                ..QueueOptions::default()
            });
            let mut model: Vec<Modeled> = Vec::new();
            let mut in_flight: Vec<QueuedMessage> = Vec::new();
            let mut next_id = 1u64;

            for step in 0..5000 {
                match rng.random_range(0..10) {
                    0..=3 => {
                        let priority = rng.random_range(0..4u8);
                        let payload = Payload::from(format!("m{next_id}"));
                        let result = q.enqueue(payload.clone(), priority);
                        if model.len() < max_size {
                            let outcome = result.unwrap();
                            assert_eq!(outcome.id, MessageId(next_id));
                            assert_eq!(outcome.dropped, None);
                            model.push(Modeled {
                                id: outcome.id,
                                priority,
                                attempts: 0,
                                payload,
                            });
                            next_id += 1;
                        } else {
                            match policy {
                                OverflowPolicy::Reject => assert!(matches!(
                                    result,
                                    Err(QueueError::Full { max_size: 8, .. })
                                )),
                                OverflowPolicy::Wait(_) => assert!(matches!(
                                    result,
                                    Err(QueueError::WouldWait { max_size: 8, .. })
                                )),
                                OverflowPolicy::DropNewest => {
                                    let outcome = result.unwrap();
                                    let dropped = outcome.dropped.unwrap();
                                    assert_eq!(dropped.id, MessageId(next_id));
                                    assert_eq!(dropped.payload, payload);
                                    next_id += 1;
                                }
                                OverflowPolicy::DropOldest => {
                                    let outcome = result.unwrap();
                                    let dropped = outcome.dropped.unwrap();
                                    let lowest = model.iter().map(|m| m.priority).min().unwrap();
                                    if priority < lowest {
                                        assert_eq!(dropped.id, outcome.id);
                                    } else {
                                        let victim = model
                                            .iter()
                                            .enumerate()
                                            .filter(|(_, m)| m.priority == lowest)
                                            .min_by_key(|(_, m)| m.id)
                                            .map(|(i, _)| i)
                                            .unwrap();
                                        let victim = model.remove(victim);
                                        assert_eq!(dropped.id, victim.id);
                                        model.push(Modeled {
                                            id: outcome.id,
                                            priority,
                                            attempts: 0,
                                            payload,
                                        });
                                    }
                                    assert_eq!(outcome.id, MessageId(next_id));
                                    assert_eq!(dropped.reason, DropReason::Overflow);
                                    next_id += 1;
                                }
                            }
                        }
                    }
                    4 | 5 => {
                        model_order(&mut model);
                        let expected = (!model.is_empty()).then(|| model.remove(0));
                        let got = q.dequeue();
                        assert_eq!(got.as_ref().map(|m| m.id), expected.map(|m| m.id));
                        in_flight.extend(got);
                    }
                    6 => {
                        let max = rng.random_range(0..5);
                        model_order(&mut model);
                        let take = max.min(model.len());
                        let expected: Vec<MessageId> = model.drain(..take).map(|m| m.id).collect();
                        let got = q.dequeue_batch(max);
                        assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), expected);
                        in_flight.extend(got);
                    }
                    7 if !in_flight.is_empty() => {
                        let i = rng.random_range(0..in_flight.len());
                        let msg = in_flight.swap_remove(i);
                        let (id, attempts) = (msg.id, msg.attempts + 1);
                        let (priority, payload) = (msg.priority, msg.payload.clone());
                        match q.mark_failed(msg) {
                            Ok(got) => {
                                assert!(attempts < max_retries);
                                assert_eq!(got, id);
                                model.push(Modeled {
                                    id,
                                    priority,
                                    attempts,
                                    payload,
                                });
                            }
                            Err(dropped) => {
                                assert!(attempts >= max_retries);
                                assert_eq!(dropped.id, id);
                                assert_eq!(dropped.reason, DropReason::RetriesExhausted);
                            }
                        }
                    }
                    8 if next_id > 1 => {
                        let id = MessageId(rng.random_range(1..next_id));
                        let expected = model
                            .iter()
                            .position(|m| m.id == id)
                            .map(|i| model.remove(i).id);
                        assert_eq!(q.remove(id).map(|m| m.id), expected);
                    }
                    _ => {
                        // Sent successfully: forget one in-flight message.
                        if !in_flight.is_empty() {
                            let i = rng.random_range(0..in_flight.len());
                            in_flight.swap_remove(i);
                        }
                    }
                }
                model_order(&mut model);
                assert_eq!(snapshot(&q), model, "{policy:?}, step {step}");
                assert_eq!(q.len(), model.len());
                assert_eq!(q.is_empty(), model.is_empty());
                assert_eq!(q.peek().map(|m| m.id), model.first().map(|m| m.id));
            }
        }
    }
}
