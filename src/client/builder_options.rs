//! The builder's named option setters: one per [`ClientOptions`] field,
//! named after it (the seed's names in snake_case), plus the few
//! shorthands that set related fields together.
//!
//! A setter that takes a `Duration` or a count sets exactly its field; an
//! option whose field is an `Option` is set to `Some` by its setter (leave
//! it out for the default). The handshake options (`header`, `protocol`,
//! `auth_token`, `negotiate`, `tls`) and the subscribers are beside the
//! builder itself.

use std::time::Duration;

use super::builder::ResilientWebSocketBuilder;
use crate::{
    options::{ClientOptions, OverflowPolicy, ReconnectMode},
    retry::{RetryPolicy, SharedRetryPolicy},
};

impl ResilientWebSocketBuilder {
    /// Sets [`max_reconnect_attempts`](ClientOptions::max_reconnect_attempts)
    /// (0 = unlimited).
    pub fn max_reconnect_attempts(mut self, n: u32) -> Self {
        self.opts.max_reconnect_attempts = n;
        self
    }

    /// Sets [`reconnect_initial_delay`](ClientOptions::reconnect_initial_delay).
    pub fn reconnect_initial_delay(mut self, d: Duration) -> Self {
        self.opts.reconnect_initial_delay = d;
        self
    }

    /// Sets [`reconnect_max_delay`](ClientOptions::reconnect_max_delay).
    pub fn reconnect_max_delay(mut self, d: Duration) -> Self {
        self.opts.reconnect_max_delay = d;
        self
    }

    /// Shorthand for [`reconnect_initial_delay`](Self::reconnect_initial_delay),
    /// [`reconnect_max_delay`](Self::reconnect_max_delay) and
    /// [`max_reconnect_attempts`](Self::max_reconnect_attempts) (0 =
    /// unlimited), in that order.
    pub fn reconnect_delays(self, initial: Duration, max: Duration, max_attempts: u32) -> Self {
        self.reconnect_initial_delay(initial)
            .reconnect_max_delay(max)
            .max_reconnect_attempts(max_attempts)
    }

    /// Sets [`reconnect_mode`](ClientOptions::reconnect_mode). Default
    /// [`ReconnectMode::Stateless`] (the `rws connect` command's default is
    /// `none`: see [`ReconnectMode`]).
    pub fn reconnect_mode(mut self, mode: ReconnectMode) -> Self {
        self.opts.reconnect_mode = mode;
        self
    }

    /// Replaces the default exponential backoff with a custom policy
    /// ([`retry_policy`](ClientOptions::retry_policy)).
    pub fn retry_policy(mut self, p: impl RetryPolicy) -> Self {
        self.opts.retry_policy = Some(SharedRetryPolicy::new(p));
        self
    }

    /// Sets [`retry_first_connect`](ClientOptions::retry_first_connect):
    /// whether a failed first connect is retried under the retry policy.
    ///
    /// # Examples
    /// ```no_run
    /// use std::time::Duration;
    /// use resilient_ws::ResilientWebSocket;
    ///
    /// # async fn f() -> Result<(), resilient_ws::Error> {
    /// // Starts before its upstream is up: keeps trying, every 100 ms to 5 s.
    /// let ws = ResilientWebSocket::builder("ws://upstream:8080/ws")
    ///     .retry_first_connect(true)
    ///     .reconnect_initial_delay(Duration::from_millis(100))
    ///     .reconnect_max_delay(Duration::from_secs(5))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn retry_first_connect(mut self, retry: bool) -> Self {
        self.opts.retry_first_connect = retry;
        self
    }

    /// Sets [`max_retry_after`](ClientOptions::max_retry_after): the
    /// longest wait taken from a server's `Retry-After` (zero ignores it).
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.opts.max_retry_after = d;
        self
    }

    /// Sets [`min_uptime`](ClientOptions::min_uptime): how long a
    /// connection must last before the attempt counter starts again.
    pub fn min_uptime(mut self, d: Duration) -> Self {
        self.opts.min_uptime = d;
        self
    }

    /// Sets [`heartbeat_interval`](ClientOptions::heartbeat_interval)
    /// (zero disables heartbeats).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.opts.heartbeat_interval = d;
        self
    }

    /// Sets [`heartbeat_timeout`](ClientOptions::heartbeat_timeout) (by
    /// default twice the interval).
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.opts.heartbeat_timeout = Some(d);
        self
    }

    /// Shorthand for [`heartbeat_interval`](Self::heartbeat_interval) and
    /// the heartbeat timeout (`None`: twice the interval).
    pub fn heartbeat(mut self, interval: Duration, timeout: Option<Duration>) -> Self {
        self.opts.heartbeat_interval = interval;
        self.opts.heartbeat_timeout = timeout;
        self
    }

    /// Sets [`connection_timeout`](ClientOptions::connection_timeout).
    pub fn connection_timeout(mut self, d: Duration) -> Self {
        self.opts.connection_timeout = d;
        self
    }

    /// Sets [`close_timeout`](ClientOptions::close_timeout).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.opts.close_timeout = d;
        self
    }

    /// Sets [`max_buffered_messages`](ClientOptions::max_buffered_messages).
    pub fn max_buffered_messages(mut self, n: usize) -> Self {
        self.opts.max_buffered_messages = n;
        self
    }

    /// Sets [`enable_message_buffering`](ClientOptions::enable_message_buffering).
    pub fn enable_message_buffering(mut self, enable: bool) -> Self {
        self.opts.enable_message_buffering = enable;
        self
    }

    /// Shorthand for [`enable_message_buffering`](Self::enable_message_buffering)
    /// and [`max_buffered_messages`](Self::max_buffered_messages).
    pub fn buffering(self, enable: bool, max_messages: usize) -> Self {
        self.enable_message_buffering(enable)
            .max_buffered_messages(max_messages)
    }

    /// Sets what a full outbox does
    /// ([`overflow_policy`](ClientOptions::overflow_policy)).
    pub fn overflow_policy(mut self, p: OverflowPolicy) -> Self {
        self.opts.overflow_policy = p;
        self
    }

    /// Sets how long a message may wait in the outbox
    /// ([`message_ttl`](ClientOptions::message_ttl)).
    pub fn message_ttl(mut self, ttl: Duration) -> Self {
        self.opts.message_ttl = Some(ttl);
        self
    }

    /// Sets [`persistent`](ClientOptions::persistent); it needs a
    /// [`store_path`](Self::store_path) (or use
    /// [`durable_store`](Self::durable_store) for both).
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.opts.persistent = persistent;
        self
    }

    /// Sets [`store_path`](ClientOptions::store_path), the durable store's
    /// file; it needs [`persistent`](Self::persistent).
    pub fn store_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.opts.store_path = Some(path.into());
        self
    }

    /// Makes the client durable: its outbox, and in reliable mode its
    /// unacknowledged messages and session, are kept in a redb database at
    /// `path` (created with mode 0600), so a new process resumes where this
    /// one stopped. Shorthand for [`persistent(true)`](Self::persistent)
    /// and [`store_path(path)`](Self::store_path).
    pub fn durable_store(self, path: impl Into<std::path::PathBuf>) -> Self {
        self.persistent(true).store_path(path)
    }

    /// Sets [`max_message_size`](ClientOptions::max_message_size)
    /// (inbound, after joining fragments).
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.opts.max_message_size = n;
        self
    }

    /// Sets [`max_outbound_message_size`](ClientOptions::max_outbound_message_size):
    /// the largest message the peer accepts, when known (raw mode);
    /// `send()` refuses larger ones with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge).
    pub fn max_outbound_message_size(mut self, n: usize) -> Self {
        self.opts.max_outbound_message_size = Some(n);
        self
    }

    /// Sets [`max_fragments`](ClientOptions::max_fragments) (the most
    /// frames of one inbound message).
    pub fn max_fragments(mut self, n: usize) -> Self {
        self.opts.max_fragments = n;
        self
    }

    /// Sets [`max_inbound_backlog`](ClientOptions::max_inbound_backlog).
    pub fn max_inbound_backlog(mut self, messages: usize) -> Self {
        self.opts.max_inbound_backlog = messages;
        self
    }

    /// Sets [`max_inbound_backlog_bytes`](ClientOptions::max_inbound_backlog_bytes).
    pub fn max_inbound_backlog_bytes(mut self, bytes: usize) -> Self {
        self.opts.max_inbound_backlog_bytes = bytes;
        self
    }

    /// Shorthand for [`max_inbound_backlog`](Self::max_inbound_backlog)
    /// and [`max_inbound_backlog_bytes`](Self::max_inbound_backlog_bytes):
    /// how much may wait for a slow subscriber before the socket is not
    /// read.
    pub fn inbound_backlog(self, messages: usize, bytes: usize) -> Self {
        self.max_inbound_backlog(messages)
            .max_inbound_backlog_bytes(bytes)
    }

    /// Sets [`max_negotiate_body_size`](ClientOptions::max_negotiate_body_size)
    /// (reliable mode).
    pub fn max_negotiate_body_size(mut self, n: usize) -> Self {
        self.opts.max_negotiate_body_size = n;
        self
    }

    /// Replaces the extra upgrade headers
    /// ([`headers`](ClientOptions::headers)); [`header`](Self::header)
    /// adds one.
    pub fn headers<K, V>(mut self, headers: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.opts.headers = headers
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// Replaces the offered subprotocols
    /// ([`protocols`](ClientOptions::protocols));
    /// [`protocol`](Self::protocol) adds one.
    pub fn protocols<P: Into<String>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.opts.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`auth_token_query_param`](ClientOptions::auth_token_query_param):
    /// the token goes in this query parameter instead of the
    /// `Authorization` header (for servers that cannot read the header).
    pub fn auth_token_query_param(mut self, name: impl Into<String>) -> Self {
        self.opts.auth_token_query_param = Some(name.into());
        self
    }

    /// Sets [`allow_negotiate_redirect`](ClientOptions::allow_negotiate_redirect)
    /// (reliable mode).
    pub fn allow_negotiate_redirect(mut self, allow: bool) -> Self {
        self.opts.allow_negotiate_redirect = allow;
        self
    }

    /// The options as set so far (what [`build`](Self::build) will use).
    pub fn current_options(&self) -> &ClientOptions {
        &self.opts
    }
}
