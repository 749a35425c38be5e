//! The events a client publishes, as actix messages.
//!
//! Users subscribe `Recipient`s to each event type they care about (see
//! [`ResilientWebSocketBuilder`](crate::ResilientWebSocketBuilder)). Every event
//! is `Clone` because one event goes to many subscribers.

use actix::Message;

use crate::{
    message::{DropReason, MessageId},
    Error,
};
// Kept at its old path inside the crate only, so code written against
// `crate::events::Payload` still compiles; its public path is the root.
#[allow(unused_imports)]
pub(crate) use crate::payload::Payload;

/// The lifecycle state of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectionState {
    /// No connection and none being made.
    Disconnected,
    /// The first connection attempt is in progress.
    Connecting,
    /// The socket is open; messages flow.
    Connected,
    /// The connection was lost and the client is getting it back.
    Reconnecting,
    /// A graceful close is in progress.
    Disconnecting,
}

impl ConnectionState {
    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => ConnectionState::Connecting,
            2 => ConnectionState::Connected,
            3 => ConnectionState::Reconnecting,
            4 => ConnectionState::Disconnecting,
            _ => ConnectionState::Disconnected,
        }
    }
}

/// The connection moved from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct StateChanged {
    /// The state before.
    pub previous: ConnectionState,
    /// The state now.
    pub current: ConnectionState,
}

impl StateChanged {
    /// A move from `previous` to `current`, for a test that feeds its own
    /// actor (the event is `#[non_exhaustive]`).
    pub fn new(previous: ConnectionState, current: ConnectionState) -> Self {
        StateChanged { previous, current }
    }
}

/// A complete message arrived from the peer (fragments already joined, text
/// already checked for UTF-8).
///
/// In reliable mode each message is delivered exactly once and in order
/// while the session lives; "delivered" means put in the subscriber's
/// mailbox (docs/PROTOCOL.md §7): a crash of the application after that
/// is the application's to cover.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct IncomingMessage {
    /// The message body.
    pub payload: Payload,
    /// Reliable mode: the server's sequence number of the message, its id
    /// within the session (1, 2, ... in order, never repeated). It starts
    /// again at 1 in the session that follows a
    /// [`SessionLost`]. `None` in raw mode.
    pub seq: Option<u64>,
}

impl IncomingMessage {
    /// A raw-mode message (no `seq`), as the client hands it to its
    /// subscribers. The event is `#[non_exhaustive]` (it may gain fields),
    /// so a test that feeds its own actor builds one here.
    ///
    /// ```
    /// use resilient_ws::{IncomingMessage, Payload};
    ///
    /// let msg = IncomingMessage::new("hello");
    /// assert_eq!(msg.payload, Payload::Text("hello".into()));
    /// assert_eq!(msg.seq, None);
    /// ```
    pub fn new(payload: impl Into<Payload>) -> Self {
        IncomingMessage {
            payload: payload.into(),
            seq: None,
        }
    }

    /// Parses the message as JSON into `T`, as [`Payload::json`] does: the
    /// receiving side of `send_json`.
    ///
    /// # Errors
    /// [`Error::Deserialize`](crate::Error::Deserialize), saying whether the
    /// message was text or binary and where parsing stopped.
    ///
    /// ```
    /// use resilient_ws::IncomingMessage;
    ///
    /// let msg = IncomingMessage::new(r#"{"op":"sub","topics":["a","b"]}"#);
    /// let value: serde_json::Value = msg.json()?;
    /// assert_eq!(value["topics"][1], "b");
    /// # Ok::<(), resilient_ws::Error>(())
    /// ```
    pub fn json<'a, T: serde::Deserialize<'a>>(&'a self) -> crate::Result<T> {
        self.payload.json()
    }

    /// This message with the reliable-mode sequence number `seq`.
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }
}

/// Something went wrong. The error says what; the connection state events say
/// what the client does about it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct ErrorEvent {
    /// What went wrong.
    pub error: Error,
}

/// A socket ended: how, and who ended it. Sent once per socket, before the
/// state leaves `Connected`/`Disconnecting`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct Closed {
    /// The close code of the Close frame the peer sent, if it sent one.
    pub code: Option<u16>,
    /// The close reason the peer sent (empty if none).
    pub reason: String,
    /// Whether this side started the close (`disconnect()`).
    pub by_us: bool,
    /// The error that ended the socket, or `None` for a clean close (1000, or
    /// a close we started that the peer answered).
    pub error: Option<Error>,
}

/// The connection was lost and the client will try again after `delay`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct Reconnecting {
    /// The number of the attempt that follows the delay (1 for the first).
    pub attempt: u32,
    /// How long the client waits before that attempt.
    pub delay: std::time::Duration,
    /// Why the connection (or the previous attempt) ended.
    pub reason: Error,
}

/// The connection is back after a loss.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct Reconnected {
    /// How many attempts it took.
    pub attempts: u32,
    /// How long the client was without a connection.
    pub downtime: std::time::Duration,
}

/// A message the client accepted was dropped (overflow policy, time to
/// live, retries exhausted). Nothing is ever dropped without this event.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct MessageDropped {
    /// The id the outbox gave the message.
    pub id: MessageId,
    /// The message body, so the application can keep it elsewhere.
    pub payload: Payload,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// Reliable mode: the server no longer had the session (it expired, or the
/// server restarted), or the client could not reach it within the session's
/// resume window (then it negotiates at the URL its endpoints or URL
/// provider give, so it can fail over). The client starts a fresh session and re-sends every
/// message that was not acknowledged, each with its original id (its
/// sequence number), so the receiver can drop one it already has. Messages
/// the server had sent on the old session and that were not delivered are
/// not recoverable. Applications that keep per-session state (subscriptions)
/// re-establish it here.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct SessionLost {
    /// The connection id of the session that is gone.
    pub connection_id: String,
    /// How many sent-but-unacknowledged messages will be re-sent.
    pub resending: usize,
}
