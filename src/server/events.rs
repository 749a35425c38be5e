//! The events a [`ReliableServer`](super::ReliableServer) publishes to the
//! application's actors, and their fan-out.
//!
//! Subscribe with [`ReliableServer::on_session_opened`](super::ReliableServer::on_session_opened)
//! and its siblings. Every event is `Clone` because one event goes to many
//! subscribers. The fan-out is the client's too ([`Subscribers`] in
//! `src/fanout.rs`): `try_send`; on a full mailbox `do_send` (the event is
//! never dropped for a slow subscriber); a subscriber whose actor is gone
//! is removed.

use actix::Message;

pub(crate) use crate::fanout::Subscribers;
use crate::Payload;

/// A session got its first socket (its WELCOME said `resumed = false`).
///
/// Messages sent with [`send_to`](super::ReliableServer::send_to) before
/// this (between negotiate and the first socket) are queued and delivered.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct SessionOpened {
    /// The session's connection id.
    pub connection_id: String,
    /// The identity the auth hook returned at negotiate (`""` without one).
    pub identity: String,
}

/// A later socket resumed a session (its WELCOME said `resumed = true`).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct SessionResumed {
    /// The session's connection id.
    pub connection_id: String,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpireReason {
    /// The resume window passed without a socket (also for a negotiated
    /// session whose first socket never came: no [`SessionOpened`] preceded
    /// that one).
    ResumeWindow,
    /// The client read too slowly: the messages waiting for room in the
    /// unacked buffer exceeded
    /// [`ServerOptions::max_pending_bytes`](super::ServerOptions::max_pending_bytes).
    /// Its socket was closed with 4001 (the client starts a fresh session).
    Overflow,
    /// The application closed it with
    /// [`ReliableServer::close_session`](super::ReliableServer::close_session).
    Closed,
}

/// A session ended; its connection id is unknown from now on (a client
/// resuming it gets close 4001).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct SessionExpired {
    /// The session's connection id.
    pub connection_id: String,
    /// Server→client messages the client never acknowledged (sent but
    /// unacked, plus queued ones): they are not delivered.
    pub undelivered: usize,
    /// Why the session ended.
    pub reason: ExpireReason,
}

/// A client's data message was delivered: exactly once and in order per
/// session (duplicates from replays are dropped before this).
///
/// "Delivered" means handed to each subscriber's mailbox: that is where
/// exactly-once ends (docs/PROTOCOL.md §7). Across a lost session (the
/// resume window passed, the server restarted) a message may be delivered
/// again, in the new session, with the same `client_id` and `seq`: an
/// application whose side effects must happen once keys them by
/// (`client_id`, `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct MessageReceived {
    /// The session's connection id.
    pub connection_id: String,
    /// The client's sequence number for the message: its id, unique per
    /// client for its life (also across a lost session, where a message may
    /// arrive again in a new session with the same seq).
    pub seq: u64,
    /// The message body.
    pub payload: Payload,
    /// The client's stable id from negotiate (the same in every session of
    /// one client; this crate's client keeps it in its durable store), or
    /// the connection id when the client sent none (docs/PROTOCOL.md §1).
    pub client_id: String,
}

impl MessageReceived {
    /// A message of session `connection_id` with the client's `seq`, as
    /// the server hands it to its subscribers; `client_id` is the
    /// connection id (a client that sent none). For a test that feeds its
    /// own actor (the event is `#[non_exhaustive]`).
    ///
    /// ```
    /// use resilient_ws::server::MessageReceived;
    ///
    /// let msg = MessageReceived::new("c1", 1, "hello").with_client_id("app-7");
    /// assert_eq!((msg.seq, msg.client_id.as_str()), (1, "app-7"));
    /// ```
    pub fn new(connection_id: impl Into<String>, seq: u64, payload: impl Into<Payload>) -> Self {
        let connection_id = connection_id.into();
        MessageReceived {
            client_id: connection_id.clone(),
            connection_id,
            seq,
            payload: payload.into(),
        }
    }

    /// This message with the client's stable id `client_id`.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }
}

/// Every subscriber list of a server.
#[derive(Default)]
pub(crate) struct EventHub {
    pub(crate) opened: Subscribers<SessionOpened>,
    pub(crate) resumed: Subscribers<SessionResumed>,
    pub(crate) expired: Subscribers<SessionExpired>,
    pub(crate) received: Subscribers<MessageReceived>,
}
