//! `ResilientWebSocketBuilder`: the options, handshake hooks and
//! subscribers of a client, and `build()`, which starts its four actors and
//! links them.

use std::sync::Arc;
// Only the debug-build test hook takes a duration.
#[cfg(debug_assertions)]
use std::time::Duration;

use actix::{prelude::*, Supervisor};

use super::{
    admission::Admission,
    connection::{ConnectionActor, Links},
    heartbeat::HeartbeatActor,
    queue_actor::{inbox, ConnectionLink, QueueActor},
    reconnect::ReconnectSupervisor,
    shared::Shared,
    store_writer::StoreHandle,
    subscribers::EventBus,
};
use crate::{
    events::{
        Closed, ErrorEvent, IncomingMessage, MessageDropped, Reconnected, Reconnecting,
        SessionLost, StateChanged,
    },
    options::{
        ClientOptions, NegotiateHook, NegotiateRequest, Negotiated, ReconnectMode, TokenProvider,
        UrlProvider,
    },
    queue::{QueueStore, StoredState},
    Error, Result,
};

use super::facade::{CloseOnDrop, ResilientWebSocket};

// The builder's constructors live here, beside the builder, so the handle's
// file does not import this one (the builder starts the handle's actors).
impl ResilientWebSocket {
    /// A builder for a client of one URL.
    pub fn builder(url: impl Into<String>) -> ResilientWebSocketBuilder {
        Self::builder_with_url_provider(UrlProvider::fixed(url))
    }

    /// A builder for a client that fails over between endpoints: it stays on
    /// one while it works and moves to the next after each failure.
    pub fn builder_with_endpoints(urls: Vec<String>) -> ResilientWebSocketBuilder {
        Self::builder_with_url_provider(UrlProvider::endpoints(urls))
    }

    /// A builder for a client whose URL is produced by an async function
    /// before every connection attempt.
    pub fn builder_with_url_provider(url: UrlProvider) -> ResilientWebSocketBuilder {
        ResilientWebSocketBuilder::new(url)
    }
}

/// Builds a [`ResilientWebSocket`]: options, handshake hooks and subscribers.
///
/// # Examples
/// ```no_run
/// use std::time::Duration;
/// use resilient_ws::{ReconnectMode, ResilientWebSocket};
///
/// # async fn f() -> Result<(), resilient_ws::Error> {
/// let ws = ResilientWebSocket::builder("wss://feed.example/ws")
///     .reconnect_mode(ReconnectMode::None)
///     .connection_timeout(Duration::from_secs(5))
///     .header("X-Client", "demo")
///     .protocol("chat.v1")
///     .auth_token(|| async { Ok("secret".to_string()) })
///     .build()?;
/// ws.connect().await?;
/// # Ok(()) }
/// ```
pub struct ResilientWebSocketBuilder {
    url: UrlProvider,
    /// Set by the named setters (`builder_options.rs`) or all at once.
    pub(super) opts: ClientOptions,
    bus: EventBus,
    store: Option<Box<dyn QueueStore>>,
    /// Messages sent first on every socket (`on_connect.rs`).
    pub(super) on_connect: super::on_connect::Hook,
    /// Test hook: how long the outbox stalls on each ack (debug builds
    /// only, like the store writer's crash hooks: not in release code).
    #[cfg(debug_assertions)]
    ack_delay: Option<Duration>,
}

impl ResilientWebSocketBuilder {
    /// A builder with the default options (see `ResilientWebSocket::builder`).
    pub(super) fn new(url: UrlProvider) -> Self {
        ResilientWebSocketBuilder {
            url,
            opts: ClientOptions::default(),
            bus: EventBus::default(),
            store: None,
            on_connect: Default::default(),
            #[cfg(debug_assertions)]
            ack_delay: None,
        }
    }

    /// Replaces all options at once.
    pub fn options(mut self, opts: ClientOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Adds a header to the upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.opts.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol.
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.opts.protocols.push(p.into());
        self
    }

    /// Sets the bearer token provider (called before every attempt).
    pub fn auth_token<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<String>> + 'static,
    {
        self.opts.auth_token = Some(TokenProvider::new(f));
        self
    }

    /// Sets the negotiate hook (called before every attempt, after the token).
    pub fn negotiate<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(NegotiateRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Negotiated>> + 'static,
    {
        self.opts.negotiate = Some(NegotiateHook::new(f));
        self
    }

    /// Sets the TLS configuration for `wss://` (for example a private root).
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.opts.tls = Some(config);
        self
    }

    /// Subscribes a recipient to state changes.
    pub fn on_state(self, r: Recipient<StateChanged>) -> Self {
        self.bus.state.add(r);
        self
    }

    /// Subscribes a recipient to incoming messages.
    pub fn on_message(mut self, r: Recipient<IncomingMessage>) -> Self {
        self.bus.messages.add(r);
        self
    }

    /// Subscribes a recipient to errors.
    pub fn on_error(self, r: Recipient<ErrorEvent>) -> Self {
        self.bus.errors.add(r);
        self
    }

    /// Subscribes a recipient to socket-closed events.
    pub fn on_closed(self, r: Recipient<Closed>) -> Self {
        self.bus.closed.add(r);
        self
    }

    /// Reliable mode: subscribes a recipient to session-lost reports (the
    /// server no longer had the session; a fresh one is started).
    pub fn on_session_lost(self, r: Recipient<SessionLost>) -> Self {
        self.bus.session_lost.add(r);
        self
    }

    /// Subscribes a recipient to dropped-message reports.
    pub fn on_dropped(self, r: Recipient<MessageDropped>) -> Self {
        self.bus.dropped.add(r);
        self
    }

    /// Subscribes a recipient to reconnect announcements.
    pub fn on_reconnecting(self, r: Recipient<Reconnecting>) -> Self {
        self.bus.reconnecting.add(r);
        self
    }

    /// Subscribes a recipient to reconnect successes.
    pub fn on_reconnected(self, r: Recipient<Reconnected>) -> Self {
        self.bus.reconnected.add(r);
        self
    }

    /// Makes the client durable with a store of your own (see
    /// [`QueueStore`]); it takes precedence over `store_path`.
    pub fn store(mut self, store: impl QueueStore) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// Test hook: the outbox actor stalls its mailbox for `d` before it
    /// handles each acknowledgement from the server, to reproduce a slow
    /// ack path. Not for production use: debug builds only.
    #[doc(hidden)]
    #[cfg(debug_assertions)]
    pub fn test_ack_delay(mut self, d: Duration) -> Self {
        self.ack_delay = Some(d);
        self
    }

    /// Starts the client's actors on the current arbiter, without connecting.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad options, or when called outside a
    /// running actix `System` (awc needs one); [`Error::Store`] when the
    /// durable store cannot be opened: locked by another process, corrupt
    /// (it is left as it is), or unreadable.
    pub fn build(mut self) -> Result<ResilientWebSocket> {
        self.opts.validate()?;
        if actix_rt::System::try_current().is_none() {
            return Err(Error::InvalidConfig(
                "ResilientWebSocket must be built inside a running actix System".into(),
            ));
        }
        let store: Option<Box<dyn QueueStore>> = match (self.store.take(), &self.opts.store_path) {
            (Some(s), _) => Some(s),
            (None, Some(path)) => Some(crate::queue::open_store_file(path)?),
            (None, None) => None,
        };
        let opts = Arc::new(self.opts);
        let shared = Arc::new(Shared::new());
        // Until a server says otherwise (reliable mode), the configured limit.
        shared.set_peer_max_message_size(opts.max_outbound_message_size);
        let heartbeat = HeartbeatActor::new(
            opts.heartbeat_interval,
            opts.effective_heartbeat_timeout(),
            shared.clone(),
        )
        .start();
        let reconnect = ReconnectSupervisor::new(
            opts.effective_retry_policy(),
            opts.min_uptime,
            shared.clone(),
        )
        .with_max_retry_after(opts.max_retry_after)
        .start();
        let mut bus = self.bus;
        bus.messages
            .set_limits(opts.max_inbound_backlog, opts.max_inbound_backlog_bytes);
        let queue_actor = QueueActor::new(
            Admission::outbox_options(&opts),
            opts.reconnect_mode == ReconnectMode::Stateful,
            shared.clone(),
            std::mem::take(&mut bus.dropped),
            bus.errors.clone(),
        )?;
        // The two actors need each other's address: make the queue's
        // context first, start the connection with its address, then run
        // the queue actor in it.
        let queue_ctx = Context::<QueueActor>::new();
        let queue = queue_ctx.address();
        let mut queue_actor = queue_actor;
        let mut conn_store = None;
        let durable = store.is_some();
        // Before the store's state comes in: what it brings back counts
        // against the credits.
        let admission = Admission::new(opts.clone(), shared.clone(), durable);
        queue_actor.set_admission(admission.clone());
        let (inbox, inbox_rx) = inbox::inbox(queue.clone().recipient());
        queue_actor.set_inbox(inbox_rx);
        if let Some(mut store) = store {
            let state = store.load()?;
            let (progress_tx, progress) = tokio::sync::mpsc::unbounded_channel();
            let handle = StoreHandle::start(store, progress_tx, shared.store_dead.clone())?;
            if state.session.is_some() || !state.unacked.is_empty() || !state.outbox.is_empty() {
                log::info!(
                    "durable store: resuming with {} waiting and {} unacknowledged messages{}",
                    state.outbox.len(),
                    state.unacked.len(),
                    if state.session.is_some() {
                        " and a session"
                    } else {
                        ""
                    }
                );
            }
            conn_store = Some((
                handle.clone(),
                StoredState {
                    session: state.session.clone(),
                    delivered: state.delivered,
                    next_seq: state.next_seq,
                    ..StoredState::new()
                },
            ));
            queue_actor.attach_store(handle, progress, state);
        }
        // The connection holds the others only as recipients of what it
        // tells them; the strong addresses end with it.
        let links = Links {
            watch: heartbeat.clone().recipient(),
            unwatch: heartbeat.recipient(),
            connection_up: reconnect.clone().recipient(),
            take_recovery: reconnect.clone().recipient(),
            ask_retry: reconnect.recipient(),
            link_state: queue.clone().recipient(),
            returned: queue.clone().recipient(),
            acked: queue.clone().recipient(),
            first_seq: queue.clone().recipient(),
            shutdown: queue.clone().recipient(),
        };
        let (o, u, s) = (opts.clone(), self.url, shared.clone());
        let hook = self.on_connect;
        let conn = Supervisor::start(move |_| {
            let mut c = ConnectionActor::new(o, u, bus, s, links);
            c.set_on_connect(hook);
            if let Some((handle, state)) = conn_store {
                c.attach_store(handle, &state);
            }
            c
        });
        queue_actor.set_connection(ConnectionLink {
            write: conn.downgrade().recipient(),
            disconnect: conn.downgrade().recipient(),
        });
        queue_actor.set_close_timeout(opts.close_timeout);
        #[cfg(debug_assertions)]
        queue_actor.set_ack_delay(self.ack_delay);
        queue_ctx.run(queue_actor);
        Ok(ResilientWebSocket {
            conn,
            _close_on_drop: Arc::new(CloseOnDrop {
                queue: queue.clone(),
            }),
            queue,
            shared,
            opts,
            durable,
            admission,
            inbox,
        })
    }

    /// Builds the client and connects it.
    ///
    /// # Errors
    /// As for [`build`](Self::build) and [`ResilientWebSocket::connect`].
    pub async fn connect(self) -> Result<ResilientWebSocket> {
        let ws = self.build()?;
        ws.connect().await?;
        Ok(ws)
    }
}
