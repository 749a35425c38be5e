//! [`ServerStats`]: a snapshot of a server's counters (the counters
//! themselves live in the server's shared state, where the sessions and
//! sockets update them).

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Live sessions (attached or waiting within their resume window).
    pub sessions: usize,
    /// Sessions with an attached protocol socket.
    pub attached: usize,
    /// Open plain (non-protocol) WebSocket clients.
    pub plain_clients: usize,
    /// Sessions a [`broadcast`](super::ReliableServer::broadcast) skipped, in
    /// all, because the message was larger than their client accepts.
    pub broadcast_skipped: u64,
    /// Client messages handed to the
    /// [`MessageReceived`](super::MessageReceived) subscribers and not yet
    /// known to be handled, over all sessions (bounded per session by
    /// [`max_inbound_backlog`](super::ServerOptions::max_inbound_backlog) plus
    /// what was in flight).
    pub inbound_backlog: usize,
    /// Redis session store calls that failed (Redis unreachable or
    /// erroring), in all; always 0 with the in-memory store.
    pub store_errors: u64,
    /// Commits refused because another node took the session (this node
    /// was paused or slow and its epoch is stale), in all.
    pub store_stale_refusals: u64,
    /// Client messages delivered, in all: each counted once, when the
    /// session's sequence rules first accept it (a replayed duplicate is
    /// not counted again; one a draining server leaves for the next one is
    /// not counted). In Redis mode, on the node holding the socket.
    pub messages_received: u64,
    /// Server→client messages the clients acknowledged, in all: by an ACK
    /// or by the `last_received` of a resuming HELLO (an implicit ack). In
    /// Redis mode, on the node holding the socket (the node that takes a
    /// session counts what its HELLO acknowledged).
    pub messages_acked: u64,
}
