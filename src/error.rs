//! The crate's error type.
//!
//! One enum for every layer a caller meets, shaped so that a retry policy or
//! an application can decide what to do without parsing strings: the HTTP
//! status of a refused upgrade, the close code and reason a peer sent, which
//! timeout fired, and the I/O error kind all stay machine-readable.

use std::{io, sync::Arc, time::Duration};

/// Every failure the client or server reports.
///
/// `Error` is `Clone` (I/O errors are shared behind an `Arc`) because the same
/// error is fanned out to several subscribers as an [`ErrorEvent`](crate::ErrorEvent)
/// and also returned from `connect()`.
///
/// Its `Display` never contains an auth token or a reconnect token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be used (bad syntax, unknown scheme, missing host).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),

    /// An option or builder value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The server answered the upgrade request with a status other than 101.
    #[error("server refused the WebSocket upgrade with HTTP {status}{}", show_retry_after(*retry_after))]
    UpgradeRejected {
        /// The HTTP status code the server answered with (401, 404, ...).
        status: u16,
        /// On a 429 or 503: how long the server asked the client to wait
        /// (its `Retry-After`, in seconds or an HTTP date, as read; the
        /// reconnect delay honours it up to
        /// [`max_retry_after`](crate::ClientOptions::max_retry_after)).
        retry_after: Option<Duration>,
    },

    /// The server's upgrade response broke RFC 6455 (bad accept key, missing
    /// headers, unexpected subprotocol).
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),

    /// Opening the connection (TCP, TLS and the upgrade) took longer than
    /// `connection_timeout`.
    #[error("connection not established within {0:?}")]
    ConnectTimeout(Duration),

    /// The TCP connection could not be made or broke (refused, reset, ...).
    #[error("I/O error: {0}")]
    Io(Arc<io::Error>),

    /// A TLS failure (bad certificate, handshake failure, bad configuration).
    #[error("TLS error: {0}")]
    Tls(String),

    /// The peer closed the connection with a close code other than 1000.
    #[error("connection closed by peer with code {code}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Closed {
        /// The close code the peer sent (RFC 6455 §7.4).
        code: u16,
        /// The close reason the peer sent, possibly empty.
        reason: String,
    },

    /// The TCP stream ended without a Close frame (network cut, peer crash).
    #[error("connection lost without a close frame")]
    ConnectionLost,

    /// The peer broke the WebSocket protocol. We closed with `close_code`.
    #[error("protocol violation ({close_code}): {message}")]
    Protocol {
        /// The close code we sent to the peer because of it (1002, 1007, ...).
        close_code: u16,
        /// What was wrong.
        message: String,
    },

    /// A message was larger than the maximum. When inbound, we closed the
    /// connection with 1009. When outbound, `send()` refused it (over the
    /// limit the server gave in negotiate, or
    /// [`max_outbound_message_size`](crate::ClientOptions::max_outbound_message_size)):
    /// nothing was queued.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The size seen so far (at least this large).
        size: usize,
        /// The configured limit.
        max: usize,
    },

    /// Nothing (no pong, no frame) arrived from the peer within the heartbeat
    /// timeout: the link is presumed dead (half-open).
    #[error("no sign of life from the peer within {0:?}")]
    HeartbeatTimeout(Duration),

    /// Reliable mode: the peer closed the socket with the same code (1009
    /// message too big, or 1002 protocol error) on `refusals` sockets in a
    /// row, each time after our replay and with nothing newly acknowledged
    /// in between: the session cannot move on (an unacknowledged message it
    /// will never take blocks it), so the client stopped, without asking
    /// the retry policy. The session and its unacknowledged messages are
    /// kept: a later `connect()` tries again.
    #[error(
        "the peer refused our replay with close code {close_code} on {refusals} sockets in a \
         row without progress{}",
        if *close_code == crate::close_code::MESSAGE_TOO_BIG {
            " (an unacknowledged message is over its size limit)"
        } else {
            ""
        }
    )]
    PeerRefusesReplay {
        /// The close code the peer sent each time (1009 or 1002).
        close_code: u16,
        /// How many sockets in a row ended that way.
        refusals: u32,
    },

    /// The retry policy gave up reconnecting.
    #[error("gave up reconnecting after {attempts} attempts; last error: {last}")]
    GaveUp {
        /// How many reconnect attempts were made.
        attempts: u32,
        /// The error that ended the last attempt.
        last: Box<Error>,
    },

    /// `ReconnectMode::Stateful` was asked of a server that does not speak
    /// the reliable protocol (no negotiate endpoint, or no subprotocol in its
    /// answer). The client never falls back to plain WebSocket silently.
    #[error("the server does not speak the reliable protocol: {0}")]
    ProtocolNotSupported(String),

    /// The negotiate request was refused with an HTTP status.
    #[error("negotiate refused with HTTP {status}{}", show_retry_after(*retry_after))]
    NegotiateRejected {
        /// The HTTP status code (401, 403, ...).
        status: u16,
        /// On a 429 or 503: the server's `Retry-After` (see
        /// [`Error::UpgradeRejected`]).
        retry_after: Option<Duration>,
    },

    /// The server no longer has the session (expired, restarted, or the
    /// token was refused): the client starts a fresh one.
    #[error("the server no longer has the session")]
    SessionGone,

    /// The auth token provider failed; nothing was sent to the server.
    #[error("auth token provider failed: {0}")]
    Auth(String),

    /// The negotiate hook failed.
    #[error("negotiate failed: {0}")]
    Negotiate(String),

    /// A message could not be serialized (for `send_json`).
    #[error("serialization failed: {0}")]
    Serialize(String),

    /// A received message could not be parsed as JSON into the type asked
    /// for (`Payload::json`, `IncomingMessage::json`).
    #[error(
        "could not parse the {} message ({len} bytes) as JSON into {target}: {message}",
        if *binary { "binary" } else { "text" }
    )]
    Deserialize {
        /// Whether the message was a binary one (else text).
        binary: bool,
        /// The message's size in bytes.
        len: usize,
        /// The Rust type it was parsed into.
        target: &'static str,
        /// serde's error, with its line and column.
        message: String,
        /// Where in the message parsing stopped (1-based; 0 when serde
        /// gave no position, as for a type mismatch found at the end).
        line: usize,
        /// The column on that line (1-based; 0 when unknown).
        column: usize,
    },

    /// The operation needs a connection and there is none (and buffering is
    /// off, or the client is shutting down).
    #[error("not connected")]
    NotConnected,

    /// The client has been shut down (its actors are gone).
    #[error("client is shut down")]
    Shutdown,

    /// The outbound buffer is full; the message was not accepted.
    #[error("outbound buffer full ({0} messages)")]
    BufferFull(usize),

    /// A message was accepted but never delivered: the outbox dropped it
    /// (overflow policy, time to live), as its `MessageDropped` event
    /// reports. What the client's delivery receipt (`Receipt`) fails with.
    #[error("message {id} dropped: {reason:?}")]
    Dropped {
        /// The message's id, as `send()` returned it.
        id: crate::message::MessageId,
        /// Why it was dropped.
        reason: crate::message::DropReason,
    },

    /// The durable store could not be opened (locked, corrupt, unreadable)
    /// or a commit to it failed.
    #[error("durable store: {0}")]
    Store(#[from] crate::store_error::StoreError),
}

impl Error {
    /// The HTTP status of a refused upgrade, if that is what this error is.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::UpgradeRejected { status, .. } | Error::NegotiateRejected { status, .. } => {
                Some(*status)
            }
            Error::GaveUp { last, .. } => last.http_status(),
            _ => None,
        }
    }

    /// How long the server asked the client to wait before the next
    /// attempt: the `Retry-After` of a 429 or 503 answer to negotiate or
    /// the upgrade, as sent (the reconnect delay caps it at
    /// [`max_retry_after`](crate::ClientOptions::max_retry_after)).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::UpgradeRejected { retry_after, .. }
            | Error::NegotiateRejected { retry_after, .. } => *retry_after,
            Error::GaveUp { last, .. } => last.retry_after(),
            _ => None,
        }
    }

    /// The close code involved: the one the peer sent, or the one we sent
    /// because the peer broke the protocol.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Error::Closed { code, .. } => Some(*code),
            Error::PeerRefusesReplay { close_code, .. } => Some(*close_code),
            Error::Protocol { close_code, .. } => Some(*close_code),
            Error::MessageTooLarge { .. } => Some(crate::close_code::MESSAGE_TOO_BIG),
            _ => None,
        }
    }

    /// Whether this is a timeout (connect timeout, or an I/O timeout).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::ConnectTimeout(_) | Error::HeartbeatTimeout(_) => true,
            Error::Io(e) => e.kind() == io::ErrorKind::TimedOut,
            _ => false,
        }
    }

    pub(crate) fn io(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::io(e)
    }
}

/// The `Retry-After` part of a refusal's message.
fn show_retry_after(after: Option<Duration>) -> String {
    after.map_or_else(String::new, |d| format!(" (retry after {d:?})"))
}

/// A shorthand for results with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
