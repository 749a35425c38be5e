//! [`ServerError`]: why a call on the server's handle failed.

/// Why a [`ReliableServer`](super::ReliableServer) call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No session has this connection id (never negotiated, or it ended).
    #[error("unknown session")]
    UnknownSession,
    /// The server's hub actor is gone (its `System` stopped).
    #[error("the server has stopped")]
    Stopped,
    /// The identity already holds
    /// [`max_sessions_per_identity`](super::ServerOptions::max_sessions_per_identity)
    /// live sessions (negotiate answers `429`).
    #[error("too many sessions for this identity")]
    TooManySessionsForIdentity,
    /// The server already holds
    /// [`max_sessions`](super::ServerOptions::max_sessions) live sessions
    /// (negotiate answers `503`).
    #[error("too many sessions")]
    TooManySessions,
    /// The message is larger than the client said it accepts (its
    /// negotiate `max_message_size`); it was not sent.
    #[error("message of {size} bytes is larger than the client accepts ({max} bytes)")]
    MessageTooLarge {
        /// The message's payload size in bytes.
        size: usize,
        /// The client's limit in bytes.
        max: usize,
    },
    /// [`try_send_to`](super::ReliableServer::try_send_to): the session's send
    /// buffer has no room for the message now (its client has not
    /// acknowledged enough yet). Nothing was sent; try again later, or wait
    /// with [`send_to`](super::ReliableServer::send_to).
    #[error("the session's send buffer is full")]
    Full,
    /// [`send_to`](super::ReliableServer::send_to): no room in the session's send
    /// buffer within [`send_timeout`](super::ServerOptions::send_timeout) (its
    /// client does not read, or is gone and has not resumed). Nothing was
    /// sent; the session is not affected.
    #[error("timed out waiting for room in the session's send buffer")]
    Timeout,
    /// The session store (Redis) did not answer: nothing was sent (or,
    /// for negotiate, no session was created: it answers `503` with
    /// `Retry-After`). Try again later.
    #[error("the session store is unavailable")]
    StoreUnavailable,
}
