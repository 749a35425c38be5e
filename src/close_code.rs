//! WebSocket close codes (RFC 6455 §7.4.1) that this crate sends or reads.

/// Normal closure: the purpose of the connection was fulfilled.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away (server shutdown, page navigation).
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message was not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// The message violates policy (also used for auth failures). Terminal for
/// a client: it does not reconnect. The server never uses it for a
/// condition after which it keeps the session (see [`TRY_AGAIN_LATER`]).
pub const POLICY_VIOLATION: u16 = 1008;
/// The message is larger than the receiver accepts.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server hit an unexpected condition.
pub const INTERNAL_ERROR: u16 = 1011;
/// Try again later: the server dropped this socket because the client fell
/// behind (it does not read what it acks, or a plain client's broadcast
/// backlog is full). Not terminal: a reliable client resumes its session
/// (kept for the resume window), a plain client may reconnect.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The server is restarting or shutting down; come back later. In the
/// reliable protocol the reason is JSON
/// `{"reconnect_after_ms":N,"spread_ms":M}` (see
/// [`ShutdownAdvice`](crate::protocol::ShutdownAdvice)): resume after
/// `N + random(0..M)` ms.
pub const SERVICE_RESTART: u16 = 1012;
/// Reliable protocol: the session is gone (unknown, expired, wrong reconnect
/// token or identity). The client negotiates a new session.
pub const SESSION_GONE: u16 = 4001;
/// Reliable protocol: this socket was replaced by a newer socket of the same
/// session. The client must not reconnect this socket.
pub const REPLACED: u16 = 4002;
