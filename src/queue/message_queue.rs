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

use super::{Dropped, EnqueueOutcome, QueueError, QueueOptions, QueuedMessage};
use crate::{
    message::{DropReason, MessageId},
    OverflowPolicy, Payload,
};

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
        self.enqueue_inner(payload.into(), priority, now, None)
    }

    /// [`enqueue_at`](Self::enqueue_at) under an id its owner handed out
    /// (the client's `send()` gives a message its id before the outbox
    /// sees it, so it can return it without a round trip). Ids from
    /// concurrent senders may arrive out of order: the message takes its
    /// sorted place in its lane, which keeps the lane's invariant.
    #[cfg(feature = "client")]
    pub(crate) fn enqueue_with_id(
        &mut self,
        id: MessageId,
        payload: Payload,
        priority: u8,
        now: Instant,
    ) -> Result<EnqueueOutcome, QueueError> {
        self.enqueue_inner(payload, priority, now, Some(id))
    }

    fn enqueue_inner(
        &mut self,
        payload: Payload,
        priority: u8,
        now: Instant,
        given: Option<MessageId>,
    ) -> Result<EnqueueOutcome, QueueError> {
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
                OverflowPolicy::DropNewest => return Ok(self.drop_incoming(payload, given)),
                OverflowPolicy::DropOldest => {
                    // Full and max_size >= 1, so some lane holds a message.
                    let lowest = self.nonempty.lowest().unwrap_or(u8::MAX);
                    if priority < lowest {
                        return Ok(self.drop_incoming(payload, given));
                    }
                    dropped = self.pop_front(lowest).map(|m| Dropped {
                        id: m.id,
                        payload: m.payload,
                        reason: DropReason::Overflow,
                    });
                }
            }
        }
        let id = given.unwrap_or_else(|| self.take_id());
        let enqueued_at = match self.last_enqueued_at {
            Some(last) if now < last => last,
            _ => now,
        };
        self.last_enqueued_at = Some(enqueued_at);
        let lane = self.lane_index_or_insert(priority);
        let messages = &mut self.lanes[lane].messages;
        let message = QueuedMessage {
            id,
            payload,
            priority,
            attempts: 0,
            enqueued_at,
        };
        if messages.back().is_none_or(|m| m.id < id) {
            messages.push_back(message);
        } else {
            // Only with owner-given ids (see `enqueue_with_id`).
            let mut message = message;
            let pos = messages.partition_point(|m| m.id < id);
            // Keep `enqueued_at` sorted along the lane, as `mark_failed` does.
            message.enqueued_at = message.enqueued_at.min(messages[pos].enqueued_at);
            messages.insert(pos, message);
        }
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

    fn drop_incoming(&mut self, payload: Payload, given: Option<MessageId>) -> EnqueueOutcome {
        let id = given.unwrap_or_else(|| self.take_id());
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

// The queue's rules, one test each; then a model-based test that drives
// random operations against a plain sorted list.
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
