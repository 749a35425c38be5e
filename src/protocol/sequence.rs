//! The sequence rules of docs/PROTOCOL.md §4–§5 as two plain types, one
//! per direction of a session: the [`Sender`] numbers data messages, keeps
//! them until acked within a byte window and says what to replay when a
//! socket resumes; the [`Receiver`] judges every DATA (deliver, duplicate,
//! gap, backwards) and says when an ack is due.
//!
//! Both ends of this crate use them (the client's outbox and connection, the
//! server's session), so a rule is written once, and tested here apart from
//! sockets, actors and timers: the types do no I/O and keep no clock. The
//! ack *timer* stays with the caller; [`Receiver::ack_due`] only says when
//! the threshold makes an ack due at once.
#![deny(missing_docs)]

use std::collections::VecDeque;

/// A rule of §4–§5 the peer broke: the socket closes with 1002 (the session
/// stays and may be resumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceError {
    /// A DATA seq past `delivered + 1`: something in between never came.
    #[error("gap in data sequence")]
    Gap,
    /// A DATA seq not above the previous DATA's on the same socket.
    #[error("data sequence went backwards")]
    Backwards,
    /// An ACK (or a WELCOME's `last_received`) for a seq never sent.
    #[error("ack for a message never sent")]
    AckNotSent,
    /// A HELLO's `last_received` beyond what was sent.
    #[error("last_received is ahead of what was sent")]
    ClaimAhead,
}

impl SequenceError {
    /// The close reason: the same text as `Display`, for callers that keep
    /// a `&'static str` (a close reason is sent as is).
    pub fn reason(self) -> &'static str {
        match self {
            SequenceError::Gap => "gap in data sequence",
            SequenceError::Backwards => "data sequence went backwards",
            SequenceError::AckNotSent => "ack for a message never sent",
            SequenceError::ClaimAhead => "last_received is ahead of what was sent",
        }
    }
}

/// Checks an ACK `seq` against the highest seq written to the peer: an ack
/// for something never sent is a protocol error. The one place this rule
/// lives: [`Sender::on_ack`] uses it, and so does a side whose sender and
/// socket writer are apart (the client checks what its connection wrote).
pub fn check_ack(seq: u64, sent_up_to: u64) -> Result<(), SequenceError> {
    if seq > sent_up_to {
        Err(SequenceError::AckNotSent)
    } else {
        Ok(())
    }
}

/// What to do with a DATA frame that broke no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next message: hand it to the application.
    Deliver,
    /// Already delivered (a replay): drop it; it counts for the next ack.
    Duplicate,
}

/// The receiving half of a session (§5): `delivered` outlives sockets, the
/// backwards check and the ack count are per socket.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// The highest seq handed to the application. Public so a side that
    /// stores it (a durable client) can put it back; a new session starts
    /// it at the peer's `first_seq − 1`.
    pub delivered: u64,
    /// The previous DATA seq on the current socket.
    last_on_socket: u64,
    /// Deliveries (and duplicates) counted for the ack and not acked yet.
    unacked: u32,
}

impl Receiver {
    /// A receiver that has delivered everything up to `delivered` (0 for a
    /// new session whose peer starts at seq 1).
    pub fn new(delivered: u64) -> Self {
        Receiver {
            delivered,
            ..Receiver::default()
        }
    }

    /// A new socket of the session: the backwards rule and the ack count
    /// start again (an ack not sent on the old socket is repeated by the
    /// WELCOME or HELLO claim).
    pub fn new_socket(&mut self) {
        self.last_on_socket = 0;
        self.unacked = 0;
    }

    /// Applies §5 to a DATA frame's seq. A duplicate counts for the ack at
    /// once; a delivery only once the caller says the application took it
    /// ([`count_for_ack`](Self::count_for_ack)), so a slow application holds
    /// the acks back (flow control). Nothing changes on an error.
    pub fn on_data(&mut self, seq: u64) -> Result<Verdict, SequenceError> {
        if seq <= self.last_on_socket {
            return Err(SequenceError::Backwards);
        }
        if seq > self.delivered.saturating_add(1) {
            return Err(SequenceError::Gap);
        }
        self.last_on_socket = seq;
        if seq <= self.delivered {
            self.unacked = self.unacked.saturating_add(1);
            Ok(Verdict::Duplicate)
        } else {
            self.delivered = seq;
            Ok(Verdict::Deliver)
        }
    }

    /// Counts `n` deliveries the application has taken toward the next ack.
    pub fn count_for_ack(&mut self, n: u64) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.unacked = self.unacked.saturating_add(n);
    }

    /// Whether `threshold` deliveries wait for an ack: send it now, not on
    /// the ack timer.
    pub fn ack_due(&self, threshold: u32) -> bool {
        self.unacked >= threshold.max(1)
    }

    /// Whether anything waits to be acknowledged (the ack timer's question).
    pub fn ack_pending(&self) -> bool {
        self.unacked > 0
    }

    /// An ACK is being sent: the count starts again.
    pub fn ack_sent(&mut self) {
        self.unacked = 0;
    }

    /// The peer's session is gone (§7): its next session numbers from 1.
    pub fn reset(&mut self) {
        *self = Receiver::default();
    }
}

/// A message a [`Sender`] keeps until the peer acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent<T> {
    /// Its seq: also the message's id (§7).
    pub seq: u64,
    /// Its payload size, counted against the byte window.
    pub bytes: usize,
    /// The message itself (what a replay sends again).
    pub payload: T,
}

/// The sending half of a session (§4–§5): numbering, the byte window of
/// sent-but-unacked messages, acks (explicit, or implied by a peer's claim
/// on a new socket) and what to replay.
///
/// `T` is whatever the caller re-sends on a replay (a payload); the sender
/// only counts its `bytes`.
#[derive(Debug, Clone)]
pub struct Sender<T> {
    /// The seq the next message gets.
    next_seq: u64,
    /// Numbered and not acked, in seq order.
    unacked: VecDeque<Sent<T>>,
    /// Their payload bytes.
    bytes: usize,
    /// The window: what may be unacked at once (`max_unacked_bytes`).
    max_bytes: usize,
    /// The highest seq the peer acknowledged: a lower ack is ignored.
    acked: u64,
    /// The highest seq written to any socket of the session: an ack or a
    /// claim beyond it is for something never sent.
    sent_up_to: u64,
}

impl<T> Sender<T> {
    /// A sender whose first message gets `first_seq` (1 for a new client or
    /// a server session; a client that lost its session goes on with its
    /// numbering, §7), with a window of `max_bytes`.
    pub fn new(first_seq: u64, max_bytes: usize) -> Self {
        let first_seq = first_seq.max(1);
        Sender {
            next_seq: first_seq,
            unacked: VecDeque::new(),
            bytes: 0,
            max_bytes,
            acked: first_seq - 1,
            sent_up_to: first_seq - 1,
        }
    }

    /// The seq the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The highest seq the peer acknowledged (explicitly or by a claim).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The HELLO's `first_seq` claim: the oldest unacked seq, or the next
    /// one if nothing waits (§4, §7).
    pub fn first_unacked(&self) -> u64 {
        self.unacked.front().map_or(self.next_seq, |m| m.seq)
    }

    /// Sets the window (the server's `max_unacked_bytes`, learnt anew on
    /// every socket by a client).
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// Whether a message of `bytes` fits the window now. One larger than the
    /// whole window still goes, alone, so it can never wait forever.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.unacked.is_empty() || self.bytes.saturating_add(bytes) <= self.max_bytes
    }

    /// Numbers a message and keeps it until acked; answers its seq. The
    /// caller checked [`has_room`](Self::has_room) (this does not refuse:
    /// the window is the caller's backpressure, not a loss).
    pub fn push(&mut self, payload: T, bytes: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += bytes;
        self.unacked.push_back(Sent {
            seq,
            bytes,
            payload,
        });
        seq
    }

    /// The message `seq` was written to a socket of this session (acks up
    /// to it are legal from now on).
    pub fn mark_sent(&mut self, seq: u64) {
        self.sent_up_to = self.sent_up_to.max(seq);
    }

    /// An ACK from the peer: checks it against what was sent, then drops
    /// everything up to `seq`. Answers the payload bytes freed (0 for an
    /// ack lower than an earlier one, which is ignored).
    pub fn on_ack(&mut self, seq: u64) -> Result<usize, SequenceError> {
        check_ack(seq, self.sent_up_to)?;
        Ok(self.release(seq))
    }

    /// Drops everything up to `seq` without checking it (an ack the caller
    /// checked where the socket is written). Answers the bytes freed.
    pub fn release(&mut self, seq: u64) -> usize {
        if seq <= self.acked {
            return 0;
        }
        self.acked = seq;
        let before = self.bytes;
        while self.unacked.front().is_some_and(|m| m.seq <= seq) {
            let m = self.unacked.pop_front().expect("front checked");
            self.bytes -= m.bytes;
        }
        before - self.bytes
    }

    /// A new socket: the peer claims to have delivered everything up to
    /// `peer_last_received` (an implicit ack, §4.4). Checks the claim,
    /// drops what it acknowledges, counts the rest as sent (it is replayed
    /// now) and answers it, in order: the caller writes each again.
    /// Answers `(bytes freed, the replay)`.
    pub fn resume(
        &mut self,
        peer_last_received: u64,
    ) -> Result<(usize, impl Iterator<Item = &Sent<T>>), SequenceError> {
        self.check_claim(peer_last_received)?;
        let freed = self.release(peer_last_received);
        if let Some(last) = self.unacked.back() {
            self.sent_up_to = self.sent_up_to.max(last.seq);
        }
        Ok((freed, self.unacked.iter()))
    }

    /// Checks a peer's `last_received` claim without acting on it (for a
    /// caller that must refuse a socket before it changes anything).
    pub fn check_claim(&self, peer_last_received: u64) -> Result<(), SequenceError> {
        if peer_last_received > self.sent_up_to {
            Err(SequenceError::ClaimAhead)
        } else {
            Ok(())
        }
    }

    /// Sent and not acked, in seq order.
    pub fn unacked(&self) -> impl ExactSizeIterator<Item = &Sent<T>> {
        self.unacked.iter()
    }

    /// How many messages wait for an ack.
    pub fn len(&self) -> usize {
        self.unacked.len()
    }

    /// Whether nothing waits for an ack.
    pub fn is_empty(&self) -> bool {
        self.unacked.is_empty()
    }

    /// The payload bytes waiting for an ack.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes back every message numbered `from` or later, newest first, and
    /// numbers from `from` again: for a side whose numbering must be durable
    /// before a message leaves, when that commit failed. Only for messages
    /// no socket has seen (a seq the peer saw must never name another
    /// message).
    pub fn rewind(&mut self, from: u64) -> Vec<Sent<T>> {
        let mut back = Vec::new();
        while self.unacked.back().is_some_and(|m| m.seq >= from) {
            let m = self.unacked.pop_back().expect("back checked");
            self.bytes -= m.bytes;
            back.push(m);
        }
        self.next_seq = self.next_seq.min(from.max(1));
        back
    }

    /// Puts back what a store held: numbering goes on at `next_seq`, and
    /// `unacked` (`(seq, payload, bytes)`, in seq order) waits for acks
    /// again, replayed on the next socket.
    pub fn restore(&mut self, next_seq: u64, unacked: impl IntoIterator<Item = (u64, T, usize)>) {
        self.next_seq = next_seq.max(1);
        self.unacked.clear();
        self.bytes = 0;
        for (seq, payload, bytes) in unacked {
            self.bytes += bytes;
            self.unacked.push_back(Sent {
                seq,
                bytes,
                payload,
            });
        }
        let first = self.first_unacked();
        self.acked = first - 1;
        // What a store held as unacked was sent by the process before: its
        // peer may ack it.
        self.sent_up_to = self.next_seq - 1;
    }
}

#[cfg(test)]
mod tests;
