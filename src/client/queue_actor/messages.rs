//! The messages the `QueueActor` handles from the other actors and the
//! facade.
//!
//! Below the actor, so its senders (the connection, the write-load
//! counter, the facade) name these types, never the `QueueActor`: they hold
//! a `Recipient` of each.

use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::{
    client::{admission::Ticket, receipt::ReceiptTx, store_writer::Done},
    events::Payload,
    queue::MessageId,
    Result,
};

/// A message from `send()`, through the inbox (`inbox.rs`).
pub(crate) struct Enqueue {
    pub(crate) payload: Payload,
    pub(crate) priority: u8,
    /// With a durable store: answered once the message is durable.
    pub(crate) done: Option<Done>,
    /// Whether the sender holds a credit (see `client/admission.rs`).
    pub(crate) ticket: Ticket,
    /// With [`Ticket::Ask`]: the actor's answer, taken or why not.
    pub(crate) answer: Option<oneshot::Sender<Result<()>>>,
    /// The id `send()` gave it (and returned).
    pub(crate) id: MessageId,
    /// `send_with_receipt()`: told when it is delivered, or why not.
    pub(crate) receipt: Option<ReceiptTx>,
}

/// The connection's socket is ready for data, or gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum LinkState {
    /// Socket `gen` is ready. Reliable mode: the peer has delivered
    /// everything up to `peer_last_received`, and at most `max_unacked_bytes`
    /// may be unacknowledged.
    Up {
        gen: u64,
        peer_last_received: Option<u64>,
        max_unacked_bytes: usize,
        /// What the `on_connect` hook answered: sent on this socket ahead
        /// of the backlog (reliable mode: after the window's replay).
        preamble: Vec<Payload>,
    },
    /// The socket is gone.
    Down,
    /// The client stopped for good (disconnected, gave up): receipts still
    /// owed fail with this error.
    Stopped(crate::Error),
    /// Socket `gen` has too much waiting to be written: hold new messages
    /// in the outbox (backpressure).
    Paused { gen: u64 },
    /// Socket `gen` caught up: let them flow again.
    Resumed { gen: u64 },
}

/// Reliable mode: the peer acknowledged everything up to this seq.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Acked(pub(crate) u64);

/// Reliable mode: the seq the window sends first on a new socket (the
/// oldest unacknowledged, or the next), for a HELLO's `first_seq`.
#[derive(Message)]
#[rtype(result = "u64")]
pub(crate) struct FirstSeq;

/// One message on its way to the socket; `seq` is 0 in raw mode.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) seq: u64,
    pub(crate) payload: Payload,
    /// Raw mode: told once the message is written (its id is its place's).
    pub(crate) receipt: Option<ReceiptTx>,
    /// Raw mode: its place in the outbox, so that a batch the connection
    /// hands back ([`Returned`]) goes back exactly there. `None` in reliable
    /// mode: the window keeps and replays what a dead socket lost.
    pub(crate) place: Option<Place>,
}

/// Where a message stood in the outbox (a `QueuedMessage` without its
/// payload): ids follow arrival, also for a message that passed straight
/// through, so a message put back is ahead of every later one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub(crate) id: MessageId,
    pub(crate) priority: u8,
    /// When it entered the outbox; `None` for a message that passed
    /// straight through (it never waited there, and reading the clock per
    /// message costs the hot path: its time to live starts if it is put
    /// back).
    pub(crate) enqueued_at: Option<Instant>,
}

/// Raw mode: a batch that reached the connection after its socket was
/// gone, handed back to the outbox, which owns it again. The connection
/// sends it after its `LinkState::Down` and before the next `Up` (one
/// mailbox, in order), so it goes out first on the next socket.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Returned(pub(crate) Vec<Outbound>);

/// `disconnect()`: pass on after everything accepted before it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseAfterFlush(pub(crate) oneshot::Sender<()>);

/// The client is gone (its connection actor was dropped): stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// A message for the client to send, as an actix message: what an actor of
/// yours sends to the [`Recipient`] that
/// [`ResilientWebSocket::sender`](crate::ResilientWebSocket::sender) gives.
/// Its answer is what [`try_send`](crate::ResilientWebSocket::try_send)
/// would return: `Ok` once the client took it, or why not.
///
/// In a unit test of your actor, a recorder actor that handles this message
/// stands in for the client (see `tests/user_actor.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "Result<()>")]
#[non_exhaustive]
pub struct OutgoingMessage {
    /// What to send.
    pub payload: Payload,
    /// While messages wait in the outbox, higher priorities go out first
    /// (FIFO within a priority); 0 by default.
    pub priority: u8,
}

impl OutgoingMessage {
    /// A message of priority 0.
    pub fn new(payload: impl Into<Payload>) -> Self {
        OutgoingMessage {
            payload: payload.into(),
            priority: 0,
        }
    }

    /// The same message with another priority.
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }
}
