//! The session actor's messages: from the socket tasks (attach, frames,
//! detach), from the application's handle (outbound, end) and from a server
//! shutdown (drain).

use std::sync::Arc;

use actix::prelude::*;

use super::super::socket_tx::{QueueMeter, ReadGate, SocketTx};
use crate::{protocol::Frame, Payload};

/// A socket asks to attach after its HELLO.
#[derive(Message)]
#[rtype(result = "Result<(), AttachError>")]
pub(crate) struct Attach {
    pub(crate) socket_id: u64,
    pub(crate) tx: SocketTx,
    /// Counts the bytes written into `tx` and not yet onto the socket.
    pub(crate) meter: Arc<QueueMeter>,
    /// Closed by the session while its subscribers are behind.
    pub(crate) gate: Arc<ReadGate>,
    pub(crate) token: String,
    pub(crate) identity: String,
    pub(crate) last_received: u64,
    pub(crate) first_seq: u64,
}

/// Why a socket could not attach.
#[derive(Debug)]
pub(crate) enum AttachError {
    /// Close 4001: unknown or expired.
    Gone,
    /// Close 4001 too (the client cannot tell them apart): a wrong token or
    /// another identity's session, which counts toward the failed-resume
    /// limit.
    Refused,
    /// Close 1002 with this reason.
    Protocol(&'static str),
    /// Close 1012 with this reason: the server is shutting down.
    ShuttingDown(String),
    /// Close 1013 "session store unavailable": Redis did not answer; the
    /// client tries again later.
    #[cfg(feature = "redis")]
    Unavailable,
}

/// Decoded DATA and ACK frames from the socket `socket_id`, in arrival
/// order (already checked for size on the socket; the sequence rules are
/// the session's `Receiver`'s).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Inbound {
    pub(crate) socket_id: u64,
    pub(crate) frames: Vec<Frame>,
    /// The socket's gate, told when the frames left the mailbox.
    pub(crate) gate: Arc<ReadGate>,
}

/// The socket `socket_id` ended (the socket task already closed it).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detached {
    pub(crate) socket_id: u64,
}

/// A server→client message from the application.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Outbound {
    pub(crate) payload: Payload,
    /// Whether the sender already counted it in the session's
    /// [`SendWindow`](super::super::send_window::SendWindow) (`send_to`); else
    /// the session counts it.
    pub(crate) reserved: bool,
}

/// Server shutdown: drain the attached socket, then close it with 1012 and
/// this reason; keep the session for the resume window. `done` fires (or is
/// dropped) once the socket is closed.
///
/// Draining: no more client messages are delivered (they stay unacked, so
/// the client re-sends them to the next server), the pending ACK goes out
/// now, queued messages are flushed as acks make room, and the socket is
/// closed once the client acked everything or `shutdown_drain_timeout`
/// passed. Without it a restart loses the pending ACK: the client re-sends
/// what was already delivered, and an echo arrives twice.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain {
    pub(crate) reason: String,
    pub(crate) done: tokio::sync::oneshot::Sender<()>,
}

/// The application ends the session.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct EndSession;

/// What this node's channel says about a session it holds (Redis mode).
#[cfg(feature = "redis")]
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub(crate) enum StoreNotice {
    /// Another node appended to its stream: read and send the new entries.
    Grew,
    /// Another node took it: write nothing more, stop.
    Taken,
    /// Another node ended it (`close_session`): close the socket, stop.
    Ended,
    /// This node's channel (re)connected: read what may have been missed.
    Resync,
}
