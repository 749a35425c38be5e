//! [`ReliableServer`]: the application's handle on the reliable server.
//!
//! The parts it drives live below it, one concept each: the shared state
//! (`shared.rs`) with the session registry (`registry.rs`) and the send
//! windows (`send_window.rs`), the resume limiter (`resume_limiter.rs`),
//! the stats (`stats.rs`), the errors (`error.rs`), the hub actor
//! (`hub.rs`) and the broadcast relay (`relay.rs`).

use std::{sync::Arc, time::Duration};

use actix::prelude::*;

use super::{
    events::{MessageReceived, SessionExpired, SessionOpened, SessionResumed},
    hub::{self, Hub, ServerShared, Shutdown},
    options::ServerOptions,
    registry::SessionEntry,
    relay::{broadcast, send_when_room, Relay},
    session::{EndSession, SessionActor},
    shared::Shared as SharedState,
};
use crate::{protocol::ShutdownAdvice, Payload};

pub use super::{error::ServerError, stats::ServerStats};

// Compatibility for src/server/session.rs (rewritten on another branch this
// session), which still imports these from here. After the merge the lead
// points its `use` lines at `send_window::SendWindow` and `shared::Shared`
// (as `type Shared = shared::Shared<Addr<SessionActor>>;` in the session:
// not `hub::ServerShared`, the hub imports the session), then removes
// these two lines; that ends the last import circle in src/server/.

/// The reliable-protocol server: sessions that outlive sockets, and the
/// application's handle on them. Cheap to clone, `Send`: keep one wherever
/// you need to send or subscribe.
///
/// Register its routes with [`reliable_route`](super::reliable_route);
/// subscribe the application's actors to [`SessionOpened`],
/// [`SessionResumed`], [`SessionExpired`] and [`MessageReceived`]; send with
/// [`send_to`](Self::send_to) and [`broadcast`](Self::broadcast).
///
/// # Threading
/// [`start`](Self::start) must run inside an actix `System`: it starts the
/// hub actor (shutdown only) on the current arbiter. Session actors run on
/// the actix-web worker of their socket (in memory mode, of their first
/// socket), so the sessions of a server are spread over its workers, and
/// one worker is one thread; the handle reaches them from any thread
/// through `Send` addresses. Stopping the
/// actix-web server stops its workers and so ends their sessions: serve a
/// `ReliableServer` from one `HttpServer` for its whole life (see the
/// module docs).
///
/// # Backpressure (server → client)
/// [`send_to`](Self::send_to) waits (up to
/// [`send_timeout`](ServerOptions::send_timeout)) while a session's send
/// buffer (unacked plus queued, `max_pending_bytes`) is full, and
/// [`try_send_to`](Self::try_send_to) returns [`ServerError::Full`]: neither
/// ever ends a session. In broadcast mode the relay and broadcasting plain
/// clients wait the same way for every attached session.
///
/// Each session keeps sent-but-unacked messages within
/// [`max_unacked_bytes`](ServerOptions::max_unacked_bytes) (one message
/// larger than that is sent when nothing else is unacked). Further messages
/// wait, in order, in the session's pending queue, also while no socket is
/// attached. When more than one message waits and their payloads exceed
/// [`max_pending_bytes`](ServerOptions::max_pending_bytes) (4 ×
/// `max_unacked_bytes`), the client is considered too slow: the session is
/// ended (its socket closed with 4001) and [`SessionExpired`] reports it
/// with [`ExpireReason::Overflow`](super::ExpireReason::Overflow) and the
/// count of undelivered messages. Nothing is dropped silently.
///
/// A client that acks without reading keeps the window moving while the
/// data piles up in front of its socket: once more than twice the window
/// of DATA payload waits unwritten, the socket is closed with 1013
/// ("too slow", try again later) and the session is kept for the resume
/// window: the client resumes it.
///
/// # Examples
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use resilient_ws::server::{reliable_route, ReliableServer, ServerOptions};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     // An echo server: every message comes back to its sender.
///     let server = ReliableServer::echo(ServerOptions::default());
///     HttpServer::new(move || {
///         let server = server.clone();
///         App::new().configure(move |c| reliable_route(c, "/ws", server))
///     })
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// }
/// ```
#[derive(Clone)]
pub struct ReliableServer {
    pub(crate) shared: Arc<ServerShared>,
    /// The hub is owned here (a strong address on purpose): the server
    /// runs as long as a handle exists.
    pub(crate) hub: Addr<Hub>,
    /// Redis mode: the queue of sends to sessions not attached here.
    #[cfg(feature = "redis")]
    appender: Option<super::cluster::Appender>,
}

impl std::fmt::Debug for ReliableServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReliableServer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ReliableServer {
    /// Starts a server (its hub actor on the current arbiter). It does
    /// nothing with received messages until the application subscribes to
    /// [`MessageReceived`] with [`on_message`](Self::on_message).
    ///
    /// Out-of-range options are raised to their minimum (a zero duration to
    /// 1 ms, a zero threshold or bound to 1).
    ///
    /// # Panics
    /// Outside a running actix `System`.
    pub fn start(options: ServerOptions) -> ReliableServer {
        Self::start_with(options, false)
    }

    fn start_with(options: ServerOptions, echo: bool) -> ReliableServer {
        let options = options.normalized();
        let shared = Arc::new(SharedState::new(options, echo));
        let hub = Hub::new(shared.clone()).start();
        #[cfg(feature = "redis")]
        let appender = super::cluster::start(&shared);
        ReliableServer {
            shared,
            hub,
            #[cfg(feature = "redis")]
            appender,
        }
    }

    /// Starts an echo server: every message a session receives is sent back
    /// to that session (by the session itself, in order, as if with
    /// [`send_to`](Self::send_to); a message larger than the client said it
    /// accepts is not echoed, and a warning is logged). [`MessageReceived`]
    /// is still reported to subscribers. This is `rws serve`'s echo mode.
    ///
    /// # Panics
    /// Outside a running actix `System`.
    pub fn echo(options: ServerOptions) -> ReliableServer {
        Self::start_with(options, true)
    }

    /// Starts a broadcast server: every message a session receives is
    /// broadcast to every session (the sender's included), and to the plain
    /// clients when [`plain`](ServerOptions::plain) is
    /// [`PlainMode::Broadcast`](super::PlainMode::Broadcast). This is
    /// `rws serve`'s broadcast mode.
    ///
    /// # Panics
    /// Outside a running actix `System`.
    pub fn broadcast_mode(options: ServerOptions) -> ReliableServer {
        let server = Self::start(options);
        let relay = Relay::new(&server.shared).start();
        server.on_message(relay.recipient());
        server
    }

    /// The options in effect (after normalization).
    pub fn options(&self) -> &ServerOptions {
        &self.shared.options
    }

    /// Sends a message to one session, waiting for room in its send
    /// buffer. The session numbers it, sends it when the socket is attached
    /// and the unacked window has room, and replays it after a resume until
    /// the client acks it.
    ///
    /// The send buffer holds the session's sent-but-unacknowledged and
    /// queued messages, up to
    /// [`max_pending_bytes`](ServerOptions::max_pending_bytes) of payload
    /// (a larger message goes alone into an empty buffer). When the message
    /// does not fit, the call waits until the client's acks make room, at
    /// most [`send_timeout`](ServerOptions::send_timeout). A burst to one
    /// session so paces the sender and never ends that session or any
    /// other.
    ///
    /// # Errors
    /// [`ServerError::UnknownSession`] if no session has this id (or it
    /// ends while waiting); [`ServerError::MessageTooLarge`] if the payload
    /// is larger than the client said it accepts; [`ServerError::Timeout`]
    /// if no room came in time. In each case nothing was sent.
    ///
    /// With a Redis store ([`SessionStore::Redis`](super::SessionStore)):
    /// from any node. A session attached elsewhere (or detached) gets the
    /// message appended to its stream in Redis, and the node holding its
    /// socket now or next sends it; the send buffer there is
    /// `max_pending_bytes` of unacknowledged payload (waited for as above).
    /// [`ServerError::StoreUnavailable`] if Redis does not answer.
    pub async fn send_to(
        &self,
        connection_id: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), ServerError> {
        let payload = payload.into();
        let deadline = tokio::time::Instant::now() + self.shared.options.send_timeout;
        #[cfg(feature = "redis")]
        if let Some(appender) = &self.appender {
            return self
                .send_to_cluster(appender, connection_id, payload, deadline)
                .await;
        }
        let entry = self.sendable(connection_id, &payload)?;
        send_when_room(&entry, payload, Some(deadline), false).await
    }

    /// Redis mode's `send_to`: to the local actor when the session is
    /// attached here, else appended to its stream in Redis (the node that
    /// holds its socket, now or next, sends it).
    #[cfg(feature = "redis")]
    async fn send_to_cluster(
        &self,
        appender: &super::cluster::Appender,
        connection_id: &str,
        payload: Payload,
        deadline: tokio::time::Instant,
    ) -> Result<(), ServerError> {
        use super::store::AppendOutcome;
        if let Ok(entry) = self.sendable(connection_id, &payload) {
            match send_when_room(&entry, payload.clone(), Some(deadline), false).await {
                // Taken by another node or detached meanwhile: via Redis.
                Err(ServerError::UnknownSession) => {}
                other => return other,
            }
        }
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            let (reply, answer) = tokio::sync::oneshot::channel();
            appender
                .send(super::cluster::AppendJob {
                    sid: connection_id.to_owned(),
                    payload: payload.clone(),
                    reply: Some(reply),
                })
                .map_err(|_| ServerError::Stopped)?;
            match answer.await.map_err(|_| ServerError::Stopped)? {
                Ok(AppendOutcome::Appended(_)) => return Ok(()),
                Ok(AppendOutcome::Gone) => return Err(ServerError::UnknownSession),
                Ok(AppendOutcome::TooLarge(max)) => {
                    return Err(ServerError::MessageTooLarge {
                        size: payload.len(),
                        max,
                    })
                }
                Ok(AppendOutcome::Full) => {
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(ServerError::Timeout);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Err(_) => return Err(ServerError::StoreUnavailable),
            }
        }
    }

    /// Like [`send_to`](Self::send_to), without waiting: a message that
    /// does not fit the session's send buffer now is refused.
    ///
    /// # Errors
    /// [`ServerError::UnknownSession`] if no session has this id;
    /// [`ServerError::MessageTooLarge`] as for `send_to`;
    /// [`ServerError::Full`] if the buffer has no room now (nothing was
    /// sent).
    ///
    /// With a Redis store, for a session not attached on this node the
    /// message is queued for Redis (in order with this node's other sends)
    /// and `Ok` means queued: an unknown session or a full buffer there is
    /// logged, not returned (use `send_to` to learn it).
    pub fn try_send_to(
        &self,
        connection_id: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), ServerError> {
        let payload = payload.into();
        #[cfg(feature = "redis")]
        if let Some(appender) = &self.appender {
            if self.shared.sessions.entry(connection_id).is_none() {
                // Not attached here: appended in the background, in order.
                return appender
                    .send(super::cluster::AppendJob {
                        sid: connection_id.to_owned(),
                        payload,
                        reply: None,
                    })
                    .map_err(|_| ServerError::Stopped);
            }
        }
        let entry = self.sendable(connection_id, &payload)?;
        // No deadline: the future completes at its first poll.
        futures_util::FutureExt::now_or_never(send_when_room(&entry, payload, None, false))
            .unwrap_or(Err(ServerError::Full))
    }

    /// The session a message for `connection_id` goes to, if it exists and
    /// its client accepts the payload's size.
    fn sendable(
        &self,
        connection_id: &str,
        payload: &Payload,
    ) -> Result<SessionEntry<Addr<SessionActor>>, ServerError> {
        let sessions = &self.shared.sessions;
        let entry = sessions
            .entry(connection_id)
            .ok_or(ServerError::UnknownSession)?;
        sessions.check_size(connection_id, payload.len())?;
        Ok(entry)
    }

    /// Sends a message to every session (and to the plain clients in
    /// [`PlainMode::Broadcast`](super::PlainMode::Broadcast)); returns how
    /// many recipients it was handed to. It does not wait: a session whose
    /// queue passes [`max_pending_bytes`](ServerOptions::max_pending_bytes)
    /// is ended (see the type's docs). To pace a stream to the readers, use
    /// [`send_to`](Self::send_to) per session (the relay of
    /// [`broadcast_mode`](Self::broadcast_mode) does so). Sessions whose
    /// client accepts less than the payload's size are skipped (logged, and
    /// counted in [`ServerStats::broadcast_skipped`]).
    ///
    /// With a Redis store it reaches every session of the cluster: those
    /// attached here directly, the others through Redis (in the
    /// background, bounded by each session's buffer); the count is of this
    /// node's recipients only.
    pub fn broadcast(&self, payload: impl Into<Payload>) -> usize {
        let payload = payload.into();
        #[cfg(feature = "redis")]
        if let (Some(appender), Some(store)) = (&self.appender, self.shared.redis()) {
            // Every session not attached here, from the cluster's index.
            let (appender, store, shared) = (appender.clone(), store.clone(), self.shared.clone());
            let for_others = payload.clone();
            actix_rt::spawn(async move {
                let all = match store.all_sessions().await {
                    Ok(all) => all,
                    Err(e) => return shared.store_failed("broadcast", &e),
                };
                for sid in all {
                    if shared.sessions.entry(&sid).is_none() {
                        let _ = appender.send(super::cluster::AppendJob {
                            sid,
                            payload: for_others.clone(),
                            reply: None,
                        });
                    }
                }
            });
        }
        broadcast(&self.shared, payload)
    }

    /// Ends a session now: its socket (if any) is closed with 1000 and
    /// [`SessionExpired`] reports it with
    /// [`ExpireReason::Closed`](super::ExpireReason::Closed).
    ///
    /// # Errors
    /// [`ServerError::UnknownSession`] if no session has this id. With a
    /// Redis store, a session not attached here is ended through Redis in
    /// the background (its owner closes the socket, this node reports
    /// `SessionExpired`), and an unknown id is not reported.
    pub fn close_session(&self, connection_id: &str) -> Result<(), ServerError> {
        #[cfg(feature = "redis")]
        if let Some(store) = self.shared.redis() {
            if self.shared.sessions.session(connection_id).is_none() {
                self.close_remote(store.clone(), connection_id.to_owned());
                return Ok(());
            }
        }
        let addr = self
            .shared
            .sessions
            .session(connection_id)
            .ok_or(ServerError::UnknownSession)?;
        addr.do_send(EndSession);
        Ok(())
    }

    /// Redis mode: ends a session not attached here (its keys go; the
    /// owner, if any, closes its socket) and reports it from this node.
    #[cfg(feature = "redis")]
    fn close_remote(&self, store: super::store::RedisSessionStore, sid: String) {
        let shared = self.shared.clone();
        actix_rt::spawn(async move {
            match store.end(&sid).await {
                Ok(Some((undelivered, owner, attached))) => {
                    if attached && !owner.is_empty() {
                        let _ = store.publish(&owner, &format!("ended {sid}")).await;
                    }
                    shared.events.expired.publish(SessionExpired {
                        connection_id: sid,
                        undelivered,
                        reason: super::ExpireReason::Closed,
                    });
                }
                Ok(None) => {}
                Err(e) => shared.store_failed("close_session", &e),
            }
        });
    }

    /// Graceful shutdown: drains every attached protocol socket, then
    /// closes it with 1012 and `advice.to_reason()` as the reason; plain
    /// clients are closed with 1012 at once.
    ///
    /// Draining a session: it stops taking client messages (those not yet
    /// delivered stay unacknowledged, so the client re-sends them to the
    /// next server), sends its pending ACK at once, keeps sending what it
    /// has queued as acks make room, and closes the socket once the client
    /// acknowledged everything or
    /// [`shutdown_drain_timeout`](ServerOptions::shutdown_drain_timeout)
    /// passed. So a rolling restart under a stateful client delivers every
    /// message exactly once even though the next process knows no session.
    ///
    /// Sessions are kept until their resume window passes; sockets and
    /// negotiates that arrive afterwards are refused (a socket is closed
    /// with 1012 after its HELLO, a negotiate gets `503`). Returns once
    /// every session's socket is closed (at the latest about
    /// `shutdown_drain_timeout` later); the close frames are written by the
    /// sockets' tasks.
    ///
    /// Then stop the actix-web server (its graceful stop waits for the
    /// closed sockets).
    ///
    /// # Errors
    /// [`ServerError::Stopped`] if the hub actor is gone.
    pub async fn shutdown(&self, advice: ShutdownAdvice) -> Result<(), ServerError> {
        let drained = self
            .hub
            .send(Shutdown {
                reason: advice.to_reason(),
            })
            .await
            .map_err(|_| ServerError::Stopped)?;
        // Each session closes by its own deadline; the margin only guards
        // against a session actor that cannot run.
        let limit = self.shared.options.shutdown_drain_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(drained)).await;
        Ok(())
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown_reason().is_some()
    }

    /// Subscribes to [`SessionOpened`].
    pub fn on_session_opened(&self, r: Recipient<SessionOpened>) -> &Self {
        self.shared.events.opened.add(r);
        self
    }

    /// Subscribes to [`SessionResumed`].
    pub fn on_session_resumed(&self, r: Recipient<SessionResumed>) -> &Self {
        self.shared.events.resumed.add(r);
        self
    }

    /// Subscribes to [`SessionExpired`].
    pub fn on_session_expired(&self, r: Recipient<SessionExpired>) -> &Self {
        self.shared.events.expired.add(r);
        self
    }

    /// Subscribes to [`MessageReceived`].
    pub fn on_message(&self, r: Recipient<MessageReceived>) -> &Self {
        self.shared.events.received.add(r);
        self
    }

    /// The number of live sessions.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.len()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// Creates a session for `identity` (what negotiate does); returns its
    /// connection id and reconnect token.
    ///
    /// # Errors
    /// [`ServerError::TooManySessionsForIdentity`] or
    /// [`ServerError::TooManySessions`] past the limits.
    pub(crate) async fn create_session(
        &self,
        identity: String,
        params: crate::protocol::NegotiateParams,
    ) -> Result<(String, String), ServerError> {
        #[cfg(feature = "redis")]
        if let Some(store) = self.shared.redis() {
            // No actor: the session lives in Redis until a HELLO takes it.
            let connection_id = crate::protocol::new_connection_id();
            let token = crate::protocol::new_reconnect_token();
            let client_id = params.client_id.unwrap_or_else(|| connection_id.clone());
            let w = self.shared.options.resume_window;
            return match store
                .create(
                    &connection_id,
                    &token,
                    &identity,
                    &client_id,
                    params.max_message_size.unwrap_or(usize::MAX),
                    w,
                    super::store::key_ttl(w),
                )
                .await
            {
                Ok(()) => Ok((connection_id, token)),
                Err(e) => {
                    self.shared.store_failed("negotiate", &e);
                    Err(ServerError::StoreUnavailable)
                }
            };
        }
        // On this thread (the negotiating worker's): no hop to the hub;
        // the actor starts on the worker of the session's first socket.
        hub::create_session(&self.shared, identity, params)
    }

    /// The thread a session's actor runs on (tests of the spreading over
    /// workers; not a stable API).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn session_thread(&self, connection_id: &str) -> Option<std::thread::ThreadId> {
        self.shared.sessions.entry(connection_id).map(|e| e.thread)
    }

    /// How many sockets attached on their session's worker, and how many on
    /// another worker (their frames hop between threads); for tests and
    /// benches, not a stable API.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn attach_affinity(&self) -> (u64, u64) {
        self.shared.sessions.attach_affinity()
    }
}
