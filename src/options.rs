//! Client options, with the names and defaults of the design's contract.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use futures_util::future::LocalBoxFuture;

// Kept at its old path inside the crate only; its public path is the root.
pub(crate) use crate::OverflowPolicy;
use crate::{
    retry::{ExponentialBackoff, SharedRetryPolicy},
    Error, Result,
};

/// The default cap on a server's `Retry-After` (`max_retry_after`).
pub(crate) const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// The default limit on the frames of one fragmented message (client).
pub(crate) const DEFAULT_MAX_FRAGMENTS: usize = 4096;

/// The default bound on inbound messages waiting for slow subscribers
/// (the client's `max_inbound_backlog`; the server's is the same).
pub(crate) const DEFAULT_MAX_INBOUND_BACKLOG: usize = 1024;
/// The default byte bound beside [`DEFAULT_MAX_INBOUND_BACKLOG`].
pub(crate) const DEFAULT_MAX_INBOUND_BACKLOG_BYTES: usize = 16 * 1024 * 1024;

/// What the client does when a connection is lost.
///
/// The library's default is [`Stateless`](Self::Stateless): a service
/// built on it survives drops unless told otherwise. The `rws connect`
/// command defaults to `--mode none` instead, on purpose: it is used in
/// pipes and scripts, where a lost connection should end the command
/// (status 1) rather than retry forever unasked; `--mode stateless` or
/// `--mode stateful` turns reconnecting on there.
///
/// ```
/// use resilient_ws::{ClientOptions, ReconnectMode};
///
/// assert_eq!(ClientOptions::default().reconnect_mode, ReconnectMode::Stateless);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReconnectMode {
    /// A lost connection ends in `Disconnected` with the error.
    None,
    /// Reconnect to a fresh session; buffered messages go out after the
    /// reconnect (at-most-once for a message already written to a socket that
    /// died). Works against any RFC 6455 server.
    #[default]
    Stateless,
    /// Resume the same session with the reliable protocol (needs a server
    /// from this crate).
    Stateful,
}

/// An async function that yields a bearer token; called before every
/// connection attempt so a refreshed token is used on reconnect.
#[derive(Clone)]
pub struct TokenProvider(
    pub(crate) Arc<dyn Fn() -> LocalBoxFuture<'static, Result<String>> + Send + Sync>,
);

impl TokenProvider {
    /// Wraps an async closure.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String>> + 'static,
    {
        TokenProvider(Arc::new(move || Box::pin(f())))
    }

    /// A provider that always yields the same token.
    pub fn fixed(token: impl Into<String>) -> Self {
        let token = token.into();
        TokenProvider::new(move || {
            let t = token.clone();
            async move { Ok(t) }
        })
    }

    pub(crate) async fn token(&self) -> Result<String> {
        (self.0)().await
    }
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never show a token, not even a fixed one.
        f.write_str("TokenProvider(..)")
    }
}

/// Where to connect: an async function called before every attempt (for
/// example to pick a node or refresh a signed URL), or a list of endpoints
/// that fails over to the next one whenever an attempt fails or a connection
/// is lost.
#[derive(Clone)]
pub struct UrlProvider(UrlSource);

#[derive(Clone)]
enum UrlSource {
    Func(Arc<dyn Fn() -> LocalBoxFuture<'static, Result<String>> + Send + Sync>),
    Endpoints(Arc<[String]>),
}

impl UrlProvider {
    /// Wraps an async closure.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String>> + 'static,
    {
        UrlProvider(UrlSource::Func(Arc::new(move || Box::pin(f()))))
    }

    /// A provider that always yields the same URL.
    pub fn fixed(url: impl Into<String>) -> Self {
        Self::endpoints(vec![url.into()])
    }

    /// Endpoints tried in turn: the client stays on one while it works and
    /// moves to the next after each failure.
    ///
    /// An empty list makes every attempt fail with [`Error::InvalidConfig`].
    pub fn endpoints(urls: Vec<String>) -> Self {
        UrlProvider(UrlSource::Endpoints(urls.into()))
    }

    /// How many endpoints a failover list has (1 for a function).
    pub(crate) fn endpoint_count(&self) -> usize {
        match &self.0 {
            UrlSource::Func(_) => 1,
            UrlSource::Endpoints(list) => list.len().max(1),
        }
    }

    /// The URL for an attempt; `failures` counts the failures so far, which
    /// picks the endpoint of a list.
    pub(crate) async fn url(&self, failures: usize) -> Result<String> {
        match &self.0 {
            UrlSource::Func(f) => f().await,
            UrlSource::Endpoints(list) if list.is_empty() => {
                Err(Error::InvalidConfig("no endpoints given".into()))
            }
            UrlSource::Endpoints(list) => Ok(list[failures % list.len()].clone()),
        }
    }
}

impl fmt::Debug for UrlProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlProvider(..)")
    }
}

/// What the negotiate hook is given: the URL about to be used and the auth
/// token (if a provider is set).
#[derive(Clone)]
#[non_exhaustive]
pub struct NegotiateRequest {
    /// The URL the client would connect to.
    pub url: String,
    /// The bearer token from the auth provider, if any.
    pub auth_token: Option<String>,
}

impl fmt::Debug for NegotiateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NegotiateRequest")
            .field("url", &self.url)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What the negotiate hook returns: the URL to open the socket on and the
/// token to present there.
#[derive(Clone)]
#[non_exhaustive]
pub struct Negotiated {
    /// The socket URL to connect to.
    pub url: String,
    /// The bearer token to send on the upgrade request (replaces the auth
    /// provider's token; `None` sends none).
    pub auth_token: Option<String>,
}

impl Negotiated {
    /// What a negotiate hook returns: open the socket on `url`, present
    /// `auth_token` there (`None`: no token). The struct is
    /// `#[non_exhaustive]`, so hooks build it here.
    pub fn new(url: impl Into<String>, auth_token: Option<String>) -> Self {
        Negotiated {
            url: url.into(),
            auth_token,
        }
    }
}

impl fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Negotiated")
            .field("url", &self.url)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// An async hook run before every connection attempt, after the auth token
/// is fetched; it may return a different URL and token.
#[derive(Clone)]
pub struct NegotiateHook(pub(crate) Arc<NegotiateFn>);

/// The boxed form of a negotiate hook.
type NegotiateFn =
    dyn Fn(NegotiateRequest) -> LocalBoxFuture<'static, Result<Negotiated>> + Send + Sync;

impl NegotiateHook {
    /// Wraps an async closure.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(NegotiateRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Negotiated>> + 'static,
    {
        NegotiateHook(Arc::new(move |r| Box::pin(f(r))))
    }
}

impl fmt::Debug for NegotiateHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NegotiateHook(..)")
    }
}

/// Client options. Field names and defaults follow the design's contract.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use resilient_ws::{ClientOptions, ReconnectMode};
///
/// // `#[non_exhaustive]`: start from the defaults, set what differs.
/// let mut opts = ClientOptions::default();
/// opts.reconnect_mode = ReconnectMode::None;
/// opts.connection_timeout = Duration::from_secs(3);
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// How many reconnect attempts before giving up; 0 means unlimited.
    pub max_reconnect_attempts: u32,
    /// The first reconnect delay (before jitter). Default 1 s.
    pub reconnect_initial_delay: Duration,
    /// The largest reconnect delay. Default 30 s.
    pub reconnect_max_delay: Duration,
    /// What to do when the connection is lost. Default `Stateless` (the
    /// `rws connect` command's default is `none`: see [`ReconnectMode`]).
    pub reconnect_mode: ReconnectMode,
    /// A custom retry policy; `None` uses [`ExponentialBackoff`] built from
    /// `reconnect_initial_delay`, `reconnect_max_delay` and
    /// `max_reconnect_attempts`.
    pub retry_policy: Option<SharedRetryPolicy>,
    /// Whether a failed first connect is retried like a reconnect, under
    /// the retry policy, instead of failing `connect()` at once. For a
    /// service that may start before its upstream is ready: `connect()`
    /// then resolves once a later attempt succeeds, or fails with
    /// [`Error::GaveUp`] when the policy gives up (at once on an error
    /// it treats as terminal, such as a 401). Each retry is announced as a
    /// `Reconnecting` event (state `Reconnecting`) and the success as
    /// `Reconnected`, as for a lost connection. It applies in every
    /// `reconnect_mode`, `None` included (that mode is about connections
    /// once made). Default false: the first connect's error is returned
    /// (after each failover endpoint was tried once).
    pub retry_first_connect: bool,
    /// The longest wait taken from a server's `Retry-After` (on a 429 or
    /// 503 answer to negotiate or the upgrade): the next attempt waits at
    /// least `min(Retry-After, max_retry_after)`, and at least the retry
    /// policy's delay. Capped so a peer cannot park the client for hours.
    /// Zero ignores `Retry-After`. Default 5 minutes.
    pub max_retry_after: Duration,
    /// How long a connection must stay up before the attempt counter starts
    /// again from 1 (so a server that accepts and drops at once still backs
    /// off). Default 5 s.
    pub min_uptime: Duration,
    /// How often to ping; zero disables heartbeats. Default 30 s.
    pub heartbeat_interval: Duration,
    /// How long without any inbound frame (pong or data) before the link is
    /// declared dead; `None` means twice `heartbeat_interval`.
    pub heartbeat_timeout: Option<Duration>,
    /// How long the TCP connect, TLS and upgrade may take together.
    /// Default 10 s.
    pub connection_timeout: Duration,
    /// How long a graceful close waits for the peer's Close frame. Default 5 s.
    pub close_timeout: Duration,
    /// How many messages are buffered while disconnected. Default 1000.
    pub max_buffered_messages: usize,
    /// What a full outbox does with one more message: reject it with an
    /// error (default), drop the oldest, drop the newest, or make `send()`
    /// wait for space up to a timeout. Every drop is a `MessageDropped` event.
    pub overflow_policy: OverflowPolicy,
    /// How long a message may wait in the outbox before it is dropped
    /// (reported as `MessageDropped`); `None` keeps it until sent.
    pub message_ttl: Option<Duration>,
    /// Whether messages sent while disconnected are kept and sent after the
    /// connection is (re)established. Default true.
    pub enable_message_buffering: bool,
    /// Whether the outbox (and in reliable mode the unacknowledged messages
    /// and the session) outlive the process, in the durable store at
    /// `store_path`. `send()` then returns only once its message is on
    /// disk. Default false.
    pub persistent: bool,
    /// The durable store's file (a redb database, created with mode 0600:
    /// it holds the reconnect token). Required when `persistent`. Needs the
    /// crate's `durable` feature (on by default); without it
    /// [`validate`](Self::validate) refuses a `store_path`.
    pub store_path: Option<std::path::PathBuf>,
    /// The largest inbound message accepted (after joining fragments); larger
    /// ones close the connection with 1009. Default 16 MiB.
    pub max_message_size: usize,
    /// The largest message the peer accepts, when known from elsewhere (raw
    /// mode: the server's documented limit): `send()` refuses a larger one
    /// at once with [`Error::MessageTooLarge`] instead of sending what the
    /// peer would answer with 1009. `None` (the default): no limit is
    /// checked in raw mode. In reliable mode the server's `max_message_size`
    /// from negotiate is used once known; this one applies before that.
    pub max_outbound_message_size: Option<usize>,
    /// The most frames one fragmented inbound message may come in; a
    /// message in more closes the connection with 1009. Default 4096.
    pub max_fragments: usize,
    /// How many inbound messages may wait for a subscriber (in its
    /// mailbox or being handled) before the client stops reading the
    /// socket. Reading resumes once the subscriber has handled them; the
    /// peer is slowed down by TCP flow control, and nothing is dropped.
    /// While reading is paused the heartbeat does not count the silence
    /// against the peer, and a Close from the peer is seen only once the
    /// subscriber has caught up. Default 1024.
    pub max_inbound_backlog: usize,
    /// Like `max_inbound_backlog`, in payload bytes. Default 16 MiB.
    pub max_inbound_backlog_bytes: usize,
    /// The largest negotiate response body read (reliable mode); a larger
    /// one fails the attempt with [`Error::Negotiate`]. Default 64 KiB.
    pub max_negotiate_body_size: usize,
    /// Extra headers for the upgrade request.
    pub headers: Vec<(String, String)>,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`.
    pub protocols: Vec<String>,
    /// Bearer token provider, called before every attempt. The token goes in
    /// the `Authorization` header, never in the URL (unless
    /// `auth_token_query_param` opts in), and is never logged.
    pub auth_token: Option<TokenProvider>,
    /// A hook run before every attempt that may change the URL and token.
    pub negotiate: Option<NegotiateHook>,
    /// TLS configuration for `wss://`. `None` uses the Mozilla (webpki) root
    /// certificates with rustls' safe defaults.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Opt-in for servers that cannot read the `Authorization` header (ones
    /// written for browsers, whose WebSocket API cannot set headers): the
    /// name of a query parameter that carries the auth token instead of the
    /// header, on the negotiate request and the socket URL
    /// (`Some("access_token".into())` gives `...?access_token=<token>`,
    /// percent-encoded). `None` (the default) keeps the token in the header
    /// and out of every URL. Servers and proxies often log URLs, so use it
    /// only when the server needs it. The client's own log lines and error
    /// messages never show a URL's query either way. The name must be
    /// non-empty ASCII letters, digits, `-`, `_`, `.` or `~`.
    pub auth_token_query_param: Option<String>,
    /// Reliable mode: whether to follow a negotiate response whose `url`
    /// moves the socket to another host or port, or from `wss` down to
    /// `ws`. Default `false`: such a response fails the attempt with
    /// [`Error::Negotiate`] and the auth token is
    /// not sent there (docs/PROTOCOL.md §1). Set it only when the
    /// application trusts the negotiate server to place its clients (a
    /// load balancer that hands out node URLs, say).
    pub allow_negotiate_redirect: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_reconnect_attempts: 0,
            reconnect_initial_delay: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_secs(30),
            reconnect_mode: ReconnectMode::default(),
            retry_policy: None,
            retry_first_connect: false,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            min_uptime: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: None,
            connection_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_buffered_messages: 1000,
            enable_message_buffering: true,
            persistent: false,
            store_path: None,
            overflow_policy: OverflowPolicy::Reject,
            message_ttl: None,
            max_message_size: 16 * 1024 * 1024,
            max_outbound_message_size: None,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
            max_inbound_backlog: DEFAULT_MAX_INBOUND_BACKLOG,
            max_inbound_backlog_bytes: DEFAULT_MAX_INBOUND_BACKLOG_BYTES,
            max_negotiate_body_size: 64 * 1024,
            headers: Vec::new(),
            protocols: Vec::new(),
            auth_token: None,
            negotiate: None,
            tls: None,
            auth_token_query_param: None,
            allow_negotiate_redirect: false,
        }
    }
}

impl ClientOptions {
    /// The heartbeat timeout in force: the configured one, or twice the
    /// interval.
    pub fn effective_heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
            .unwrap_or(self.heartbeat_interval.saturating_mul(2))
    }

    /// The retry policy in force.
    pub fn effective_retry_policy(&self) -> SharedRetryPolicy {
        self.retry_policy.clone().unwrap_or_else(|| {
            SharedRetryPolicy::new(ExponentialBackoff {
                initial: self.reconnect_initial_delay,
                max: self.reconnect_max_delay,
                max_attempts: self.max_reconnect_attempts,
            })
        })
    }

    /// Checks the options for values that cannot work.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad option.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_string()));
        if self.connection_timeout.is_zero() {
            return bad("connection_timeout must be greater than zero");
        }
        if self.close_timeout.is_zero() {
            return bad("close_timeout must be greater than zero");
        }
        if self.reconnect_initial_delay > self.reconnect_max_delay {
            return bad("reconnect_initial_delay must not exceed reconnect_max_delay");
        }
        if self.heartbeat_timeout.is_some_and(|t| t.is_zero()) {
            return bad("heartbeat_timeout must be greater than zero");
        }
        if self.enable_message_buffering && self.max_buffered_messages == 0 {
            return bad("max_buffered_messages must be greater than zero when buffering is on");
        }
        if self.message_ttl.is_some_and(|t| t.is_zero()) {
            return bad("message_ttl must be greater than zero");
        }
        if self.max_message_size == 0 {
            return bad("max_message_size must be greater than zero");
        }
        if self.max_outbound_message_size == Some(0) {
            return bad("max_outbound_message_size must be greater than zero");
        }
        if self.persistent && self.store_path.is_none() {
            return bad("persistent needs a store_path");
        }
        if !self.persistent && self.store_path.is_some() {
            return bad("store_path is set but persistent is false");
        }
        if self.store_path.is_some() && !cfg!(feature = "durable") {
            // Said here, before anything starts, rather than when the file
            // would be opened.
            return bad("store_path needs the crate's `durable` feature");
        }
        if self.persistent && !self.enable_message_buffering {
            return bad("persistent needs enable_message_buffering");
        }
        if self.max_fragments == 0 {
            return bad("max_fragments must be greater than zero");
        }
        if self.max_inbound_backlog == 0 || self.max_inbound_backlog_bytes == 0 {
            return bad(
                "max_inbound_backlog and max_inbound_backlog_bytes must be greater than zero",
            );
        }
        if self.max_negotiate_body_size == 0 {
            return bad("max_negotiate_body_size must be greater than zero");
        }
        for (name, value) in &self.headers {
            if awc::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Error::InvalidConfig(format!(
                    "invalid header name {name:?}"
                )));
            }
            if awc::http::header::HeaderValue::from_str(value).is_err() {
                return Err(Error::InvalidConfig(format!(
                    "invalid value for header {name:?}"
                )));
            }
        }
        if let Some(name) = &self.auth_token_query_param {
            let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
            if name.is_empty() || !name.bytes().all(unreserved) {
                return bad("auth_token_query_param must be non-empty and URL-safe");
            }
        }
        for p in &self.protocols {
            let token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
            if p.is_empty() || !p.chars().all(token_char) {
                return Err(Error::InvalidConfig(format!("invalid subprotocol {p:?}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store file is refused before anything starts when the crate is
    /// built without `durable` (no redb to open it with), and passes
    /// validation when it is.
    #[test]
    fn store_path_needs_the_durable_feature() {
        let opts = ClientOptions {
            persistent: true,
            store_path: Some("outbox.redb".into()),
            ..ClientOptions::default()
        };
        let result = opts.validate();
        if cfg!(feature = "durable") {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert!(
                matches!(&result, Err(Error::InvalidConfig(m)) if m.contains("`durable` feature")),
                "{result:?}"
            );
        }
    }
}
