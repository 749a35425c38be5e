//! [`Shared`]: the state every part of one server shares (the handle, the
//! hub, the session actors, the sockets' tasks on every worker thread).
//!
//! Generic over the session's address `S` (see [`Registry`]) so that it
//! sits below the session actor, which holds it; the server uses
//! `hub::ServerShared`.

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Mutex,
};

use super::{
    admission::Admission, events::EventHub, options::ServerOptions, plain_clients::PlainClients,
    registry::Registry, resume_limiter::ResumeLimiter, stats::ServerStats,
};
use crate::close_code;

/// The state every part of a server shares.
pub(crate) struct Shared<S> {
    pub(crate) options: ServerOptions,
    /// The live sessions.
    pub(crate) sessions: Registry<S>,
    /// The open plain clients.
    pub(crate) plain: PlainClients,
    pub(crate) events: EventHub,
    /// Sessions with an attached socket.
    attached: AtomicUsize,
    /// See [`ServerStats::inbound_backlog`].
    pub(crate) inbound_backlog: AtomicUsize,
    shutdown_reason: Mutex<Option<String>>,
    /// Echo mode ([`ReliableServer::echo`](super::ReliableServer::echo)):
    /// each session sends what it delivers straight back itself. Through a
    /// subscriber actor that would cost two more actor messages, a lock and
    /// a lookup per message (the plain echo does not pay them either).
    pub(crate) echo: bool,
    /// Failed resumes per peer address.
    pub(crate) resume_limiter: ResumeLimiter,
    /// What unauthenticated peers may cost.
    pub(crate) admission: Admission,
    /// See [`ServerStats::store_errors`].
    pub(crate) store_errors: AtomicU64,
    /// See [`ServerStats::store_stale_refusals`].
    pub(crate) store_stale: AtomicU64,
    /// See [`ServerStats::messages_received`]: one relaxed add per
    /// delivered message, the only cost on the message path (a
    /// `MessageReceived` subscriber to count them would hold every ack
    /// of an echo server behind its mailbox).
    pub(crate) messages_received: AtomicU64,
    /// See [`ServerStats::messages_acked`]: one relaxed add per ACK that
    /// advances.
    pub(crate) messages_acked: AtomicU64,
}

impl<S: Clone> Shared<S> {
    /// A server's state for `options` (already normalized).
    pub(crate) fn new(options: ServerOptions, echo: bool) -> Self {
        Shared {
            sessions: Registry::new(options.max_sessions, options.max_sessions_per_identity),
            plain: PlainClients::default(),
            events: EventHub::default(),
            attached: AtomicUsize::new(0),
            inbound_backlog: AtomicUsize::new(0),
            shutdown_reason: Mutex::new(None),
            echo,
            resume_limiter: ResumeLimiter::new(options.failed_resume_limit),
            admission: Admission::new(&options),
            store_errors: AtomicU64::new(0),
            store_stale: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_acked: AtomicU64::new(0),
            options,
        }
    }

    /// Forgets a session (idempotent); the session calls it when it ends.
    pub(crate) fn remove_session(&self, id: &str, identity: &str) {
        self.sessions.remove(id, identity);
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> ServerStats {
        ServerStats {
            sessions: self.sessions.len(),
            attached: self.attached.load(Ordering::Relaxed),
            plain_clients: self.plain.len(),
            broadcast_skipped: self.sessions.broadcast_skipped(),
            inbound_backlog: self.inbound_backlog.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
            store_stale_refusals: self.store_stale.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
            messages_acked: self.messages_acked.load(Ordering::Relaxed),
        }
    }
}

impl<S> Shared<S> {
    /// The Redis store, when sessions live there.
    #[cfg(feature = "redis")]
    pub(crate) fn redis(&self) -> Option<&super::store::RedisSessionStore> {
        self.options.store.redis()
    }

    /// Counts a failed store call, logging the first of an outage.
    #[cfg(feature = "redis")]
    pub(crate) fn store_failed(&self, what: &str, e: &super::store::SessionStoreError) {
        if self
            .store_errors
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1000)
        {
            log::warn!("session store: {what}: {e}");
        } else {
            log::debug!("session store: {what}: {e}");
        }
    }

    pub(crate) fn socket_attached(&self) {
        self.attached.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn socket_detached(&self) {
        self.attached.fetch_sub(1, Ordering::Relaxed);
    }

    /// The 1012 reason once the server is shutting down.
    pub(crate) fn shutdown_reason(&self) -> Option<String> {
        self.shutdown_reason.lock().expect("shutdown lock").clone()
    }

    /// Marks the server as shutting down and closes the plain clients with
    /// 1012 (the hub drains the sessions).
    pub(crate) fn begin_shutdown(&self, reason: String) {
        *self.shutdown_reason.lock().expect("shutdown lock") = Some(reason.clone());
        self.plain.close_all(close_code::SERVICE_RESTART, &reason);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::server::{
        plain_clients::PlainClient, registry::SessionEntry, send_window::SendWindow,
        writer::PlainCloser,
    };

    #[test]
    fn shutdown_closes_the_plain_clients_and_stats_count_everything() {
        let shared = Shared::<u32>::new(ServerOptions::default(), false);
        assert_eq!(shared.shutdown_reason(), None);
        let closer = Arc::new(PlainCloser::default());
        let (tx, _rx) = mpsc::channel(1);
        shared.plain.add(
            7,
            PlainClient {
                tx,
                closer: closer.clone(),
                broadcast: false,
            },
        );
        shared.sessions.insert(
            "s".into(),
            "",
            SessionEntry::new(1, Arc::new(SendWindow::new(1)), std::thread::current().id()),
        );
        shared.socket_attached();
        shared.inbound_backlog.fetch_add(3, Ordering::Relaxed);
        shared.messages_received.fetch_add(5, Ordering::Relaxed);
        shared.messages_acked.fetch_add(4, Ordering::Relaxed);
        assert_eq!(
            shared.stats(),
            ServerStats {
                sessions: 1,
                attached: 1,
                plain_clients: 1,
                broadcast_skipped: 0,
                inbound_backlog: 3,
                store_errors: 0,
                store_stale_refusals: 0,
                messages_received: 5,
                messages_acked: 4,
            }
        );

        shared.begin_shutdown("bye".to_owned());
        assert_eq!(shared.shutdown_reason().as_deref(), Some("bye"));
        assert!(closer.is_closing(), "plain clients are closed at once");

        shared.socket_detached();
        shared.remove_session("s", "");
        assert_eq!(shared.stats().sessions, 0);
        assert_eq!(shared.stats().attached, 0);
    }
}
