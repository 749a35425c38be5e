//! [`ReliableServer`]: the application's handle on the reliable server.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use tokio::sync::{mpsc, Notify};

use super::{
    events::{EventHub, MessageReceived, SessionExpired, SessionOpened, SessionResumed},
    hub::{CreateSession, Hub, Shutdown},
    options::{FailedResumeLimit, ServerOptions},
    session::{EndSession, Outbound, SessionActor},
    socket::{Outgoing, PlainCloser},
};
use crate::{close_code, protocol::ShutdownAdvice, Payload};

/// Why a [`ReliableServer`] call failed.
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
    /// [`max_sessions_per_identity`](ServerOptions::max_sessions_per_identity)
    /// live sessions (negotiate answers `429`).
    #[error("too many sessions for this identity")]
    TooManySessionsForIdentity,
    /// The server already holds
    /// [`max_sessions`](ServerOptions::max_sessions) live sessions
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
    /// [`try_send_to`](ReliableServer::try_send_to): the session's send
    /// buffer has no room for the message now (its client has not
    /// acknowledged enough yet). Nothing was sent; try again later, or wait
    /// with [`send_to`](ReliableServer::send_to).
    #[error("the session's send buffer is full")]
    Full,
    /// [`send_to`](ReliableServer::send_to): no room in the session's send
    /// buffer within [`send_timeout`](ServerOptions::send_timeout) (its
    /// client does not read, or is gone and has not resumed). Nothing was
    /// sent; the session is not affected.
    #[error("timed out waiting for room in the session's send buffer")]
    Timeout,
}

/// A session's send buffer as the application's handle sees it: the
/// payload bytes handed to the session and not yet acknowledged by its
/// client (sent-but-unacked plus queued), so that
/// [`ReliableServer::send_to`] can wait for room without asking the
/// session actor.
pub(crate) struct SendWindow {
    queued: AtomicUsize,
    /// The bound [`ReliableServer::send_to`] waits under
    /// ([`ServerOptions::max_pending_bytes`]).
    cap: usize,
    /// Whether a socket is attached (a detached session's buffer only
    /// drains after a resume: broadcast does not wait for it).
    attached: AtomicBool,
    closed: AtomicBool,
    room: Notify,
}

impl SendWindow {
    pub(crate) fn new(cap: usize) -> Self {
        SendWindow {
            queued: AtomicUsize::new(0),
            cap,
            attached: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    /// Takes room for `len` bytes if there is some (a message larger than
    /// the bound when the buffer is empty too).
    fn try_reserve(&self, len: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q == 0 || q.saturating_add(len) <= self.cap).then(|| q.saturating_add(len))
            })
            .is_ok()
    }

    /// Counts bytes the session queued by itself (echo, broadcast).
    pub(crate) fn add(&self, len: usize) {
        self.queued.fetch_add(len, Ordering::AcqRel);
    }

    /// The client acknowledged `len` bytes: room for waiting senders.
    pub(crate) fn release(&self, len: usize) {
        if len > 0 {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.room.notify_waiters();
        }
    }

    pub(crate) fn set_attached(&self, on: bool) {
        self.attached.store(on, Ordering::Release);
        if on {
            self.room.notify_waiters();
        }
    }

    /// The session ended: waiting senders get `UnknownSession`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// A live session: its actor and its send buffer.
#[derive(Clone)]
pub(crate) struct SessionEntry {
    pub(crate) addr: Addr<SessionActor>,
    pub(crate) window: Arc<SendWindow>,
}

impl SessionEntry {
    /// Hands `payload` over once the buffer has room, waiting until
    /// `deadline` (`None`: not at all). `detached_ok`: do not wait for a
    /// session without a socket (queue it unreserved instead; the pending
    /// bound still applies).
    async fn send(
        &self,
        payload: Payload,
        deadline: Option<tokio::time::Instant>,
        detached_ok: bool,
    ) -> Result<(), ServerError> {
        let len = payload.len();
        loop {
            let room = self.window.room.notified();
            tokio::pin!(room);
            // Registered before checking, so a release in between is seen.
            room.as_mut().enable();
            if self.window.is_closed() {
                return Err(ServerError::UnknownSession);
            }
            if self.window.try_reserve(len) {
                self.addr.do_send(Outbound {
                    payload,
                    reserved: true,
                });
                return Ok(());
            }
            if detached_ok && !self.window.attached.load(Ordering::Acquire) {
                self.addr.do_send(Outbound {
                    payload,
                    reserved: false,
                });
                return Ok(());
            }
            let Some(deadline) = deadline else {
                return Err(ServerError::Full);
            };
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(ServerError::Timeout);
            }
        }
    }
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Live sessions (attached or waiting within their resume window).
    pub sessions: usize,
    /// Sessions with an attached protocol socket.
    pub attached: usize,
    /// Open plain (non-protocol) WebSocket clients.
    pub plain_clients: usize,
    /// Sessions a [`broadcast`](ReliableServer::broadcast) skipped, in
    /// all, because the message was larger than their client accepts.
    pub broadcast_skipped: u64,
    /// Client messages handed to the
    /// [`MessageReceived`](super::MessageReceived) subscribers and not yet
    /// known to be handled, over all sessions (bounded per session by
    /// [`max_inbound_backlog`](ServerOptions::max_inbound_backlog) plus
    /// what was in flight).
    pub inbound_backlog: usize,
}

/// A plain client as the broadcast sees it.
pub(crate) struct PlainClient {
    pub(crate) tx: mpsc::Sender<Outgoing>,
    pub(crate) closer: Arc<PlainCloser>,
    /// Whether it receives broadcasts (plain mode Broadcast).
    pub(crate) broadcast: bool,
}

/// The state every part of a server shares.
pub(crate) struct Shared {
    pub(crate) options: ServerOptions,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    /// Live sessions per (non-anonymous) identity.
    per_identity: Mutex<HashMap<String, usize>>,
    plain: Mutex<HashMap<u64, PlainClient>>,
    pub(crate) events: EventHub,
    attached: AtomicUsize,
    /// See [`ServerStats::inbound_backlog`].
    pub(crate) inbound_backlog: AtomicUsize,
    shutdown_reason: Mutex<Option<String>>,
    /// Echo mode ([`ReliableServer::echo`]): each session sends what it
    /// delivers straight back itself. Through a subscriber actor that
    /// would cost two more actor messages, a lock and a lookup per message
    /// (the plain echo does not pay them either).
    pub(crate) echo: bool,
    /// Failed resumes per peer address.
    pub(crate) resume_limiter: ResumeLimiter,
    /// Clients' stated message size limits, by connection id (only for
    /// clients that stated one).
    client_limits: Mutex<HashMap<String, usize>>,
    /// See [`ServerStats::broadcast_skipped`].
    broadcast_skipped: AtomicU64,
    /// What unauthenticated peers may cost (see `routes::Admission`).
    pub(crate) admission: super::routes::Admission,
}

impl Shared {
    pub(crate) fn session(&self, id: &str) -> Option<Addr<SessionActor>> {
        self.session_entry(id).map(|e| e.addr)
    }

    pub(crate) fn session_entry(&self, id: &str) -> Option<SessionEntry> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .cloned()
    }

    /// Whether one more session for `identity` is within the limits.
    pub(crate) fn admit_session(&self, identity: &str) -> Result<(), ServerError> {
        if self.sessions.lock().expect("sessions lock").len() >= self.options.max_sessions {
            return Err(ServerError::TooManySessions);
        }
        let held = self
            .per_identity
            .lock()
            .expect("identity lock")
            .get(identity)
            .copied()
            .unwrap_or(0);
        if !identity.is_empty() && held >= self.options.max_sessions_per_identity {
            return Err(ServerError::TooManySessionsForIdentity);
        }
        Ok(())
    }

    pub(crate) fn insert_session(
        &self,
        id: String,
        identity: &str,
        addr: Addr<SessionActor>,
        window: Arc<SendWindow>,
    ) {
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(id, SessionEntry { addr, window });
        if !identity.is_empty() {
            *self
                .per_identity
                .lock()
                .expect("identity lock")
                .entry(identity.to_owned())
                .or_default() += 1;
        }
    }

    /// Records the largest message the session's client accepts.
    pub(crate) fn set_client_limit(&self, id: &str, max: usize) {
        self.client_limits
            .lock()
            .expect("limits lock")
            .insert(id.to_owned(), max);
    }

    /// Forgets a session (idempotent).
    pub(crate) fn remove_session(&self, id: &str, identity: &str) {
        self.client_limits.lock().expect("limits lock").remove(id);
        let removed = self.sessions.lock().expect("sessions lock").remove(id);
        if removed.is_some() && !identity.is_empty() {
            let mut counts = self.per_identity.lock().expect("identity lock");
            if let Some(n) = counts.get_mut(identity) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(identity);
                }
            }
        }
    }

    pub(crate) fn all_sessions(&self) -> Vec<Addr<SessionActor>> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .values()
            .map(|e| e.addr.clone())
            .collect()
    }

    pub(crate) fn socket_attached(&self) {
        self.attached.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn socket_detached(&self) {
        self.attached.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn add_plain(&self, id: u64, client: PlainClient) {
        self.plain.lock().expect("plain lock").insert(id, client);
    }

    pub(crate) fn remove_plain(&self, id: u64) {
        self.plain.lock().expect("plain lock").remove(&id);
    }

    /// The 1012 reason once the server is shutting down.
    pub(crate) fn shutdown_reason(&self) -> Option<String> {
        self.shutdown_reason.lock().expect("shutdown lock").clone()
    }

    pub(crate) fn begin_shutdown(&self, reason: String) {
        *self.shutdown_reason.lock().expect("shutdown lock") = Some(reason.clone());
        for c in self.plain.lock().expect("plain lock").values() {
            c.closer.close(close_code::SERVICE_RESTART, &reason);
        }
    }

    /// Sends `payload` to every plain client in broadcast mode; a client
    /// too far behind is closed with 1013 and dropped.
    fn broadcast_plain(&self, payload: &Payload) -> usize {
        let mut plain = self.plain.lock().expect("plain lock");
        let mut sent = 0;
        plain.retain(|_, c| {
            if !c.broadcast {
                return true;
            }
            let out = match payload {
                Payload::Text(t) => Outgoing::Text(t.clone()),
                Payload::Binary(b) => Outgoing::Binary(b.clone()),
            };
            match c.tx.try_send(out) {
                Ok(()) => {
                    sent += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    log::warn!("plain client too slow for the broadcast; closing it");
                    c.closer.close(close_code::TRY_AGAIN_LATER, "too slow");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        sent
    }
}

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
/// hub actor on the current arbiter, and the hub starts every session actor
/// there too. actix-web handlers on any worker thread reach them through
/// `Send` addresses. A socket's I/O stays on the worker that accepted it
/// (see the module docs).
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
    pub(crate) shared: Arc<Shared>,
    pub(crate) hub: Addr<Hub>,
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
        let shared = Arc::new(Shared {
            resume_limiter: ResumeLimiter::new(options.failed_resume_limit),
            client_limits: Mutex::new(HashMap::new()),
            broadcast_skipped: AtomicU64::new(0),
            admission: super::routes::Admission::new(&options),
            options,
            sessions: Mutex::new(HashMap::new()),
            per_identity: Mutex::new(HashMap::new()),
            plain: Mutex::new(HashMap::new()),
            events: EventHub::default(),
            attached: AtomicUsize::new(0),
            inbound_backlog: AtomicUsize::new(0),
            shutdown_reason: Mutex::new(None),
            echo,
        });
        let hub = Hub::new(shared.clone()).start();
        ReliableServer { shared, hub }
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
        let relay = Relay {
            shared: Arc::downgrade(&server.shared),
        }
        .start();
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
    pub async fn send_to(
        &self,
        connection_id: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), ServerError> {
        let payload = payload.into();
        let entry = self.sendable(connection_id, &payload)?;
        let deadline = tokio::time::Instant::now() + self.shared.options.send_timeout;
        entry.send(payload, Some(deadline), false).await
    }

    /// Like [`send_to`](Self::send_to), without waiting: a message that
    /// does not fit the session's send buffer now is refused.
    ///
    /// # Errors
    /// [`ServerError::UnknownSession`] if no session has this id;
    /// [`ServerError::MessageTooLarge`] as for `send_to`;
    /// [`ServerError::Full`] if the buffer has no room now (nothing was
    /// sent).
    pub fn try_send_to(
        &self,
        connection_id: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), ServerError> {
        let payload = payload.into();
        let entry = self.sendable(connection_id, &payload)?;
        // No deadline: the future completes at its first poll.
        futures_util::FutureExt::now_or_never(entry.send(payload, None, false))
            .unwrap_or(Err(ServerError::Full))
    }

    /// The session a message for `connection_id` goes to, if it exists and
    /// its client accepts the payload's size.
    fn sendable(
        &self,
        connection_id: &str,
        payload: &Payload,
    ) -> Result<SessionEntry, ServerError> {
        let entry = self
            .shared
            .session_entry(connection_id)
            .ok_or(ServerError::UnknownSession)?;
        check_size(&self.shared, connection_id, payload.len())?;
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
    pub fn broadcast(&self, payload: impl Into<Payload>) -> usize {
        broadcast(&self.shared, payload.into())
    }

    /// Ends a session now: its socket (if any) is closed with 1000 and
    /// [`SessionExpired`] reports it with
    /// [`ExpireReason::Closed`](super::ExpireReason::Closed).
    ///
    /// # Errors
    /// [`ServerError::UnknownSession`] if no session has this id.
    pub fn close_session(&self, connection_id: &str) -> Result<(), ServerError> {
        let addr = self
            .shared
            .session(connection_id)
            .ok_or(ServerError::UnknownSession)?;
        addr.do_send(EndSession);
        Ok(())
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
        self.shared.sessions.lock().expect("sessions lock").len()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            sessions: self.sessions(),
            attached: self.shared.attached.load(Ordering::Relaxed),
            plain_clients: self.shared.plain.lock().expect("plain lock").len(),
            broadcast_skipped: self.shared.broadcast_skipped.load(Ordering::Relaxed),
            inbound_backlog: self.shared.inbound_backlog.load(Ordering::Relaxed),
        }
    }

    /// Creates a session for `identity` (what negotiate does); returns its
    /// connection id and reconnect token.
    ///
    /// # Errors
    /// [`ServerError::TooManySessionsForIdentity`] or
    /// [`ServerError::TooManySessions`] past the limits,
    /// [`ServerError::Stopped`] if the hub is gone.
    pub(crate) async fn create_session(
        &self,
        identity: String,
        params: crate::protocol::NegotiateParams,
    ) -> Result<(String, String), ServerError> {
        self.hub
            .send(CreateSession { identity, params })
            .await
            .map_err(|_| ServerError::Stopped)?
    }
}

/// Whether the client of `connection_id` accepts a payload of `size`
/// bytes (a client that stated no limit accepts any).
fn check_size(shared: &Shared, connection_id: &str, size: usize) -> Result<(), ServerError> {
    match shared
        .client_limits
        .lock()
        .expect("limits lock")
        .get(connection_id)
    {
        Some(&max) if size > max => Err(ServerError::MessageTooLarge { size, max }),
        _ => Ok(()),
    }
}

/// The sessions a broadcast of `len` bytes goes to: all but those whose
/// client accepts less (counted in [`ServerStats::broadcast_skipped`] and
/// logged).
fn broadcast_targets(shared: &Shared, len: usize) -> Vec<SessionEntry> {
    let mut skipped = 0u64;
    let targets: Vec<SessionEntry> = {
        let limits = shared.client_limits.lock().expect("limits lock");
        shared
            .sessions
            .lock()
            .expect("sessions lock")
            .iter()
            .filter(|(id, _)| {
                let skip = limits.get(*id).is_some_and(|&max| len > max);
                skipped += u64::from(skip);
                !skip
            })
            .map(|(_, e)| e.clone())
            .collect()
    };
    if skipped > 0 {
        shared
            .broadcast_skipped
            .fetch_add(skipped, Ordering::Relaxed);
        log::warn!(
            "broadcast of {len} bytes skipped {skipped} session(s) whose client accepts less"
        );
    }
    targets
}

fn broadcast(shared: &Shared, payload: Payload) -> usize {
    let targets = broadcast_targets(shared, payload.len());
    for e in &targets {
        e.addr.do_send(Outbound {
            payload: payload.clone(),
            reserved: false,
        });
    }
    targets.len() + shared.broadcast_plain(&payload)
}

/// Broadcasts `payload` to the plain clients and every session, waiting
/// (up to `send_timeout`) for room in each attached session's send buffer:
/// what [`ReliableServer::broadcast_mode`] and broadcasting plain clients
/// use, so that one client's burst paces itself to the readers instead of
/// overflowing every session. A detached session is not waited for (its
/// buffer drains only after a resume), and an attached one that made no
/// room in time gets the message anyway under the pending bound, which
/// ends only that session.
pub(crate) async fn broadcast_paced(shared: Arc<Shared>, payload: Payload) {
    shared.broadcast_plain(&payload);
    let entries = broadcast_targets(&shared, payload.len());
    let deadline = tokio::time::Instant::now() + shared.options.send_timeout;
    let sends = entries.into_iter().map(|e| {
        let payload = payload.clone();
        async move {
            if e.send(payload.clone(), Some(deadline), true).await == Err(ServerError::Timeout) {
                e.addr.do_send(Outbound {
                    payload,
                    reserved: false,
                });
            }
        }
    });
    futures_util::future::join_all(sends).await;
}

/// The most peer addresses the [`ResumeLimiter`] tracks at once.
const MAX_TRACKED_PEERS: usize = 65_536;

/// Counts failed resumes per peer address (an IPv4 address, or an IPv6
/// `/64`) in fixed windows that start at an address's first failure; see
/// [`FailedResumeLimit`].
pub(crate) struct ResumeLimiter {
    limit: Option<FailedResumeLimit>,
    peers: Mutex<HashMap<IpAddr, PeerFailures>>,
    /// What is counted, for the log line.
    what: &'static str,
}

struct PeerFailures {
    since: Instant,
    failures: u32,
}

impl ResumeLimiter {
    pub(crate) fn new(limit: Option<FailedResumeLimit>) -> Self {
        Self::counting(limit, "failed resumes")
    }

    /// A limiter of other events per address (`what` names them in logs).
    pub(crate) fn counting(limit: Option<FailedResumeLimit>, what: &'static str) -> Self {
        ResumeLimiter {
            limit,
            peers: Mutex::new(HashMap::new()),
            what,
        }
    }

    /// The key an address counts under: IPv4 (also IPv4-mapped IPv6) as
    /// is, other IPv6 addresses by their `/64`.
    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut seg = v6.segments();
                    seg[4..].fill(0);
                    IpAddr::V6(seg.into())
                }
            },
        }
    }

    /// How much longer `ip` is refused, if it is (at `now`).
    pub(crate) fn blocked_for(&self, ip: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let (limit, ip) = (self.limit?, ip?);
        let peers = self.peers.lock().expect("limiter lock");
        let p = peers.get(&Self::key(ip))?;
        let left = limit.window.checked_sub(now.duration_since(p.since))?;
        (p.failures >= limit.max_failures && !left.is_zero()).then_some(left)
    }

    /// Counts a failed resume from `ip` (at `now`).
    pub(crate) fn record_failure(&self, ip: Option<IpAddr>, now: Instant) {
        let (Some(limit), Some(ip)) = (self.limit, ip) else {
            return;
        };
        let key = Self::key(ip);
        let mut peers = self.peers.lock().expect("limiter lock");
        if !peers.contains_key(&key) && peers.len() >= MAX_TRACKED_PEERS {
            peers.retain(|_, p| now.duration_since(p.since) < limit.window);
            if peers.len() >= MAX_TRACKED_PEERS {
                return;
            }
        }
        let p = peers.entry(key).or_insert(PeerFailures {
            since: now,
            failures: 0,
        });
        if now.duration_since(p.since) >= limit.window {
            *p = PeerFailures {
                since: now,
                failures: 0,
            };
        }
        p.failures = p.failures.saturating_add(1);
        if p.failures == limit.max_failures {
            log::warn!(
                "{} {} from {key} within {:?}: refusing it for the rest of the window",
                p.failures,
                self.what,
                limit.window
            );
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.peers.lock().expect("limiter lock").len()
    }
}

/// The internal subscriber of [`ReliableServer::broadcast_mode`]. Holds the
/// server weakly so that the server's subscriber list does not keep itself
/// alive.
struct Relay {
    shared: Weak<Shared>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<MessageReceived> for Relay {
    // Atomic: the next message waits until this one was handed to every
    // session (order), and the reply (which the receiving session's
    // inbound backpressure waits for) comes only then, so a burst from one
    // client is paced by the sessions' acks instead of overflowing them.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: MessageReceived, ctx: &mut Context<Self>) -> Self::Result {
        let Some(shared) = self.shared.upgrade() else {
            ctx.stop();
            return AtomicResponse::new(Box::pin(fut::ready(())));
        };
        let all = broadcast_paced(shared, msg.payload);
        AtomicResponse::new(Box::pin(all.into_actor(self).map(|_, _, _| ())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_failures: u32, window_ms: u64) -> ResumeLimiter {
        ResumeLimiter::new(Some(FailedResumeLimit {
            max_failures,
            window: Duration::from_millis(window_ms),
        }))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn refuses_at_the_limit_until_the_window_ends() {
        let l = limiter(3, 1000);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..2 {
            l.record_failure(a, t0 + Duration::from_millis(i));
            assert_eq!(l.blocked_for(a, t0 + Duration::from_millis(i)), None);
        }
        l.record_failure(a, t0 + Duration::from_millis(10));
        let left = l.blocked_for(a, t0 + Duration::from_millis(10)).unwrap();
        assert_eq!(
            left,
            Duration::from_millis(990),
            "counted from the first failure"
        );
        // Another address is not affected.
        assert_eq!(l.blocked_for(ip("10.0.0.2"), t0), None);
        // The window ends: free again, and counting starts over.
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(l.blocked_for(a, later), None);
        l.record_failure(a, later);
        assert_eq!(l.blocked_for(a, later), None);
        // No address (a Unix socket, say): never limited.
        l.record_failure(None, t0);
        assert_eq!(l.blocked_for(None, t0), None);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = limiter(2, 60_000);
        let t = Instant::now();
        l.record_failure(ip("2001:db8:1:2::1"), t);
        l.record_failure(ip("2001:db8:1:2:ffff::9"), t);
        assert!(l.blocked_for(ip("2001:db8:1:2::77"), t).is_some());
        assert!(l.blocked_for(ip("2001:db8:1:3::1"), t).is_none());
        l.record_failure(ip("::ffff:192.0.2.1"), t);
        l.record_failure(ip("192.0.2.1"), t);
        assert!(l.blocked_for(ip("192.0.2.1"), t).is_some());
        assert!(l.blocked_for(ip("::ffff:192.0.2.1"), t).is_some());
    }

    #[test]
    fn off_means_never_refused() {
        let l = ResumeLimiter::new(None);
        let t = Instant::now();
        for _ in 0..1000 {
            l.record_failure(ip("10.0.0.1"), t);
        }
        assert_eq!(l.blocked_for(ip("10.0.0.1"), t), None);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let l = limiter(1, 1000);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_PEERS as u32 {
            l.record_failure(Some(IpAddr::V4(i.into())), t0);
        }
        assert_eq!(l.tracked(), MAX_TRACKED_PEERS);
        // Full and nothing expired: a new address is not tracked.
        let new = ip("255.255.255.255");
        l.record_failure(new, t0);
        assert_eq!(l.tracked(), MAX_TRACKED_PEERS);
        assert_eq!(l.blocked_for(new, t0), None);
        // Once the windows ended, the old entries make room.
        let later = t0 + Duration::from_secs(2);
        l.record_failure(new, later);
        assert_eq!(l.tracked(), 1);
        assert!(l.blocked_for(new, later).is_some());
    }
}
