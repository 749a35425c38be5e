//! The reliable server's options: limits, timers, origin allow-list, auth
//! hook and what to do with plain (non-protocol) WebSocket clients.

use std::{fmt, sync::Arc, time::Duration};

use actix_web::HttpRequest;

/// Why the [`AuthHook`] refused a request; decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthRefusal {
    /// No or bad credentials: `401 Unauthorized`.
    Unauthorized,
    /// Valid credentials that may not use this endpoint: `403 Forbidden`.
    Forbidden,
}

impl AuthRefusal {
    /// The HTTP status code the refusal is answered with.
    pub fn status(self) -> u16 {
        match self {
            AuthRefusal::Unauthorized => 401,
            AuthRefusal::Forbidden => 403,
        }
    }
}

/// The authentication hook: called with every negotiate request and every
/// socket request (plain ones included), before anything else happens.
///
/// It returns the caller's *identity* (any string, for example a user id)
/// or an [`AuthRefusal`]. The identity is bound to the session at negotiate;
/// a socket whose identity differs from its session's is refused with close
/// 4001 like any other unknown session. Without a hook every caller is
/// anonymous, with the identity `""`.
///
/// The hook is synchronous and runs on the actix-web worker thread handling
/// the request: keep it fast (check a signature, look up a cache). It must
/// never log the credentials it reads.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use resilient_ws::server::{AuthHook, AuthRefusal};
///
/// let hook: AuthHook = Arc::new(|req| {
///     match req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
///         Some(v) if v.starts_with("Bearer ") => Ok(v["Bearer ".len()..].to_owned()),
///         _ => Err(AuthRefusal::Unauthorized),
///     }
/// });
/// # let _ = hook;
/// ```
pub type AuthHook = Arc<dyn Fn(&HttpRequest) -> Result<String, AuthRefusal> + Send + Sync>;

/// What the reliable endpoint does with a WebSocket request that does not
/// ask for the `rws.reliable.v1` subprotocol (a *plain* client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PlainMode {
    /// Every text or binary message comes back to its sender unchanged
    /// (like [`echo_route`](super::echo_route)). No sessions, no guarantees.
    /// A client that does not read its echoes is not read either once
    /// [`ECHO_BUFFER_BYTES`](super::ECHO_BUFFER_BYTES) of them wait.
    #[default]
    Echo,
    /// Plain clients join the broadcast: they receive every
    /// [`ReliableServer::broadcast`](super::ReliableServer::broadcast)
    /// payload, and every text or binary message a plain client sends is
    /// broadcast to everyone (every reliable session and every plain client,
    /// the sender included). Delivery to a plain client is best effort: a
    /// plain client that falls more than
    /// [`PLAIN_CLIENT_BUFFER`](super::PLAIN_CLIENT_BUFFER) messages behind is
    /// closed with 1013 (try again later, "too slow").
    Broadcast,
    /// Plain clients are refused with `426 Upgrade Required` (the response
    /// names the subprotocol in `Sec-WebSocket-Protocol`).
    Reject,
}

/// Options of a [`ReliableServer`](super::ReliableServer). The limits are
/// told to every client in the negotiate response.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use resilient_ws::server::{PlainMode, ServerOptions};
///
/// // `#[non_exhaustive]`: start from the defaults, set what differs.
/// let mut options = ServerOptions::default();
/// options.resume_window = Duration::from_secs(60);
/// options.allowed_origins = Some(vec!["https://app.example.com".into()]);
/// options.plain = PlainMode::Reject;
/// # let _ = options;
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// How long a session outlives its socket (and how long a negotiated
    /// session waits for its first socket). Default 30 s.
    pub resume_window: Duration,
    /// The largest DATA payload accepted from a client, in bytes; larger
    /// ones close the socket with 1009. Default 1 MiB.
    pub max_message_size: usize,
    /// The most frames one fragmented client message may come in; a message
    /// in more closes the socket with 1009. Default 1024.
    pub max_fragments: usize,
    /// The bound on sent-but-unacknowledged payload bytes, per session and
    /// direction. Default 1 MiB.
    pub max_unacked_bytes: usize,
    /// How many live sessions (attached or within their resume window) one
    /// identity may hold; one more negotiate is refused with
    /// `429 Too Many Requests`. The anonymous identity `""` (no auth hook)
    /// is not counted: bound anonymous servers with `max_sessions`.
    /// Default 100.
    pub max_sessions_per_identity: usize,
    /// How many live sessions the server holds in all; one more negotiate
    /// is refused with `503 Service Unavailable`. Default 100 000.
    pub max_sessions: usize,
    /// The longest the server holds an ack after a delivery. Default 100 ms.
    pub ack_interval: Duration,
    /// After this many unacknowledged deliveries the server acks at once.
    /// Default 64.
    pub ack_threshold: u32,
    /// How long a new protocol socket may take to send its HELLO before it
    /// is closed with 1002. Default 10 s.
    pub hello_timeout: Duration,
    /// The `Origin` values allowed to negotiate and open sockets (compared
    /// exactly, ignoring ASCII case). `None` allows any. When `Some`, a
    /// request whose `Origin` header is not listed gets `403`; a request
    /// without an `Origin` header (a non-browser client) is allowed.
    pub allowed_origins: Option<Vec<String>>,
    /// The authentication hook; `None` makes every caller anonymous (`""`).
    pub auth: Option<AuthHook>,
    /// What to do with WebSocket requests without the subprotocol.
    pub plain: PlainMode,
    /// The limit on failed resumes (HELLOs answered with 4001) per peer
    /// address; `None` turns it off. Default: 20 failures per minute (see
    /// [`FailedResumeLimit`]).
    pub failed_resume_limit: Option<FailedResumeLimit>,
    /// How many protocol sockets may wait for their HELLO at once, in all.
    /// One more socket request is refused with `503 Service Unavailable`
    /// and `Retry-After: 1` before the upgrade. Until its HELLO a socket
    /// may send no more than a HELLO's size ([`MAX_HELLO_LEN`](crate::protocol::MAX_HELLO_LEN)
    /// bytes, pings included): a larger message closes it with 1009, more
    /// messages with 1008. Default 4096 (0 acts as 1).
    pub max_awaiting_hello: usize,
    /// The limit on negotiate requests per peer address from anonymous
    /// callers (the identity `""`: no auth hook, or the hook returned
    /// `""`); over it, negotiate answers `429 Too Many Requests` with a
    /// `Retry-After` header (seconds). Authenticated callers are bounded by
    /// [`max_sessions_per_identity`](Self::max_sessions_per_identity)
    /// instead. `None` turns it off. Default: 10 000 per minute (so one
    /// address holds at most about a tenth of the default
    /// [`max_sessions`](Self::max_sessions) at the default resume window,
    /// while a NAT full of clients coming back after a restart is not
    /// locked out). Addresses
    /// count as in [`FailedResumeLimit`] (IPv6 per `/64`; behind a reverse
    /// proxy every client shares the proxy's address).
    pub anonymous_negotiate_limit: Option<NegotiateRateLimit>,
    /// How long [`ReliableServer::shutdown`](super::ReliableServer::shutdown)
    /// lets a session drain: after its pending ACK and its queued messages
    /// went out, it waits up to this long for the client to acknowledge
    /// them before closing the socket with 1012. Zero closes right after
    /// the ACK. Default 5 s.
    pub shutdown_drain_timeout: Duration,
    /// How long [`ReliableServer::send_to`](super::ReliableServer::send_to)
    /// waits for room in a session's send buffer before it fails with
    /// [`ServerError::Timeout`](super::ServerError::Timeout) (the broadcast
    /// mode's relay waits as long per message). Default 10 s.
    pub send_timeout: Duration,
    /// How often the server pings each socket (reliable and plain), so a
    /// live client always has something to answer. Zero turns the server's
    /// heartbeat off (no pings, no `client_timeout`). Default 15 s (like
    /// SignalR's keep-alive).
    pub keep_alive_interval: Duration,
    /// How long a socket may stay silent (no frame at all: no data, no ack,
    /// no pong) before the server closes it with 1001 "client timeout" and
    /// frees it: a reliable session then waits out its resume window, a
    /// plain client is forgotten. Checked at every ping, so a silent socket
    /// is closed between `client_timeout` and `client_timeout +
    /// keep_alive_interval` after its last frame. Default 30 s (like
    /// SignalR's client timeout); keep it above the round trip plus
    /// `keep_alive_interval`.
    pub client_timeout: Duration,
    /// How many client messages of one session may wait for the
    /// application's [`MessageReceived`](super::MessageReceived)
    /// subscribers (handed to them, not yet handled). The server acks a
    /// client's message only once every subscriber has taken it, so a
    /// client faster than its subscribers fills its unacked window and
    /// waits; at this bound (or `max_inbound_backlog_bytes`) the server
    /// also stops reading the socket until they catch up. Nothing is
    /// dropped. 0 acts as 1. Default 1024 (as the client's
    /// `max_inbound_backlog`).
    pub max_inbound_backlog: usize,
    /// The payload bytes that may wait for the subscribers (see
    /// `max_inbound_backlog`). 0 acts as 1. Default 16 MiB.
    pub max_inbound_backlog_bytes: usize,
    /// Where sessions live: [`SessionStore::Memory`](super::SessionStore::Memory)
    /// (the default) or, with the `redis` feature, Redis, shared by every
    /// node of a cluster (docs/SCALING.md).
    pub store: super::SessionStore,
    /// With a Redis store: how long an attached session waits for Redis
    /// to answer again (meanwhile it takes no client messages and sends
    /// nothing it could not record) before it closes its socket with 1013
    /// "session store unavailable" (the client resumes later; nothing is
    /// lost). Default 10 s.
    pub store_unavailable_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            resume_window: Duration::from_secs(30),
            max_message_size: 1024 * 1024,
            max_fragments: 1024,
            max_unacked_bytes: 1024 * 1024,
            max_sessions_per_identity: 100,
            max_sessions: 100_000,
            ack_interval: Duration::from_millis(100),
            ack_threshold: 64,
            hello_timeout: Duration::from_secs(10),
            allowed_origins: None,
            auth: None,
            plain: PlainMode::Echo,
            failed_resume_limit: Some(FailedResumeLimit::default()),
            max_awaiting_hello: 4096,
            anonymous_negotiate_limit: Some(NegotiateRateLimit::default()),
            shutdown_drain_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(15),
            client_timeout: Duration::from_secs(30),
            max_inbound_backlog: 1024,
            max_inbound_backlog_bytes: 16 * 1024 * 1024,
            store: super::SessionStore::Memory,
            store_unavailable_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("resume_window", &self.resume_window)
            .field("max_message_size", &self.max_message_size)
            .field("max_fragments", &self.max_fragments)
            .field("max_unacked_bytes", &self.max_unacked_bytes)
            .field("max_sessions_per_identity", &self.max_sessions_per_identity)
            .field("max_sessions", &self.max_sessions)
            .field("ack_interval", &self.ack_interval)
            .field("ack_threshold", &self.ack_threshold)
            .field("hello_timeout", &self.hello_timeout)
            .field("allowed_origins", &self.allowed_origins)
            .field("auth", &self.auth.as_ref().map(|_| "<hook>"))
            .field("plain", &self.plain)
            .field("failed_resume_limit", &self.failed_resume_limit)
            .field("max_awaiting_hello", &self.max_awaiting_hello)
            .field("anonymous_negotiate_limit", &self.anonymous_negotiate_limit)
            .field("shutdown_drain_timeout", &self.shutdown_drain_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("client_timeout", &self.client_timeout)
            .field("max_inbound_backlog", &self.max_inbound_backlog)
            .field("max_inbound_backlog_bytes", &self.max_inbound_backlog_bytes)
            .field("store", &self.store)
            .field("store_unavailable_timeout", &self.store_unavailable_timeout)
            .finish()
    }
}

impl ServerOptions {
    /// Sets the auth hook from a closure.
    ///
    /// # Examples
    /// ```
    /// use resilient_ws::server::{AuthRefusal, ServerOptions};
    ///
    /// let options = ServerOptions::default().with_auth(|req| {
    ///     req.headers()
    ///         .get("x-user")
    ///         .and_then(|v| v.to_str().ok())
    ///         .map(str::to_owned)
    ///         .ok_or(AuthRefusal::Unauthorized)
    /// });
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn with_auth<F>(mut self, hook: F) -> Self
    where
        F: Fn(&HttpRequest) -> Result<String, AuthRefusal> + Send + Sync + 'static,
    {
        self.auth = Some(Arc::new(hook));
        self
    }

    /// The pending-queue bound of a session, 4 × `max_unacked_bytes`: when
    /// more than one message waits for room in the unacked buffer and their
    /// payloads exceed this many bytes, the session is ended (see
    /// [`ReliableServer`](super::ReliableServer)).
    pub fn max_pending_bytes(&self) -> usize {
        self.max_unacked_bytes.saturating_mul(4)
    }

    /// The options with out-of-range values raised to their minimum
    /// (a zero ack threshold acts as 1, a zero unacked bound as 1 byte, a
    /// zero duration as 1 ms).
    pub(crate) fn normalized(mut self) -> Self {
        let ms = Duration::from_millis(1);
        self.resume_window = self.resume_window.max(ms);
        self.ack_interval = self.ack_interval.max(ms);
        self.hello_timeout = self.hello_timeout.max(ms);
        self.client_timeout = self.client_timeout.max(ms);
        self.store_unavailable_timeout = self.store_unavailable_timeout.max(ms);
        self.ack_threshold = self.ack_threshold.max(1);
        self.max_unacked_bytes = self.max_unacked_bytes.max(1);
        self.max_message_size = self.max_message_size.max(1);
        self.max_fragments = self.max_fragments.max(1);
        self.max_inbound_backlog = self.max_inbound_backlog.max(1);
        self.max_inbound_backlog_bytes = self.max_inbound_backlog_bytes.max(1);
        if let Some(l) = &mut self.failed_resume_limit {
            l.max_failures = l.max_failures.max(1);
            l.window = l.window.max(ms);
        }
        self.max_awaiting_hello = self.max_awaiting_hello.max(1);
        if let Some(l) = &mut self.anonymous_negotiate_limit {
            l.max_requests = l.max_requests.max(1);
            l.window = l.window.max(ms);
        }
        self
    }
}

/// A limit on failed resumes per peer address: a brake on anyone guessing
/// reconnect tokens, and on clients stuck retrying a dead session.
///
/// A *failed resume* is a HELLO for a session that exists, answered with
/// close 4001 because its reconnect token is wrong or the socket's identity
/// is another's: that is what guessing a token looks like. A HELLO for an
/// unknown or expired session is answered the same way but not counted:
/// after a server restart every client sends one, and clients sharing an
/// address would otherwise be locked out just when they all come back
/// (the price: an address that forges tokens for an id it knows sees the
/// 429 sooner when that session is live). Once a peer address has had `max_failures` of them within `window`
/// (counted from its first failure in the window), its protocol socket
/// requests are refused with HTTP `429 Too Many Requests` and a
/// `Retry-After` header (seconds) until the window ends. Negotiate, plain
/// sockets, other addresses and sockets already open are not affected.
///
/// Addresses: an IPv4 address counts on its own; IPv6 addresses count per
/// `/64` (one host usually holds a whole `/64`). It is the TCP peer address
/// (forwarding headers are not trusted): behind a reverse proxy every client
/// shares the proxy's address, so raise the limit there or turn it off and
/// limit at the proxy.
///
/// At most 65 536 addresses are tracked at once; beyond that (after
/// forgetting those whose window ended) new addresses are not limited.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use resilient_ws::server::{FailedResumeLimit, ServerOptions};
///
/// let mut options = ServerOptions::default();
/// options.failed_resume_limit = Some(FailedResumeLimit {
///     max_failures: 100,
///     window: Duration::from_secs(10),
/// });
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailedResumeLimit {
    /// How many failed resumes an address may have within `window` before
    /// its protocol sockets are refused (0 acts as 1). Default 20.
    pub max_failures: u32,
    /// The window the failures are counted in, from the first failure.
    /// Default 60 s.
    pub window: Duration,
}

impl Default for FailedResumeLimit {
    fn default() -> Self {
        FailedResumeLimit {
            max_failures: 20,
            window: Duration::from_secs(60),
        }
    }
}

/// A limit on anonymous negotiate requests per peer address (see
/// [`ServerOptions::anonymous_negotiate_limit`]): each one creates a session
/// that is kept for the resume window, so without it one address could
/// fill [`max_sessions`](ServerOptions::max_sessions) for everyone.
///
/// Counted in fixed windows from an address's first request: once it made
/// `max_requests` within `window`, its negotiates get `429` with a
/// `Retry-After` header until the window ends. At most 65 536 addresses
/// are tracked at once (as for [`FailedResumeLimit`]).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use resilient_ws::server::{NegotiateRateLimit, ServerOptions};
///
/// let mut options = ServerOptions::default();
/// options.anonymous_negotiate_limit = Some(NegotiateRateLimit {
///     max_requests: 100,
///     window: Duration::from_secs(10),
/// });
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NegotiateRateLimit {
    /// How many negotiates an address may make within `window` (0 acts as
    /// 1). Default 10 000.
    pub max_requests: u32,
    /// The window they are counted in, from the first. Default 60 s.
    pub window: Duration,
}

impl Default for NegotiateRateLimit {
    fn default() -> Self {
        NegotiateRateLimit {
            max_requests: 10_000,
            window: Duration::from_secs(60),
        }
    }
}
