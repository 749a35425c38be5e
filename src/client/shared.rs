//! `Shared`: what the client's actors publish for the facade (and each
//! other) to read without a round trip to an actor.
//!
//! It sits below every actor: they all hold an `Arc<Shared>`, none of them
//! needs another actor's type to read it.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix_rt::time::Instant;

use super::stats::Counters;
use crate::events::ConnectionState;

/// State the facade and the heartbeat read without a round trip to the
/// actor.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The connection's state, for `ResilientWebSocket::state()`.
    state: AtomicU8,
    /// The subprotocol the server selected on the current socket.
    pub(crate) protocol: Mutex<Option<String>>,
    pub(crate) counters: Counters,
    /// The zero point for `last_seen_nanos` (tokio's clock, so paused time
    /// in tests moves it too).
    base: Instant,
    /// When the last inbound frame arrived, as nanoseconds since `base`.
    last_seen_nanos: AtomicU64,
    /// The largest message the peer accepts, when known (0: unknown):
    /// `send()` refuses larger ones.
    pub(crate) peer_max_message_size: AtomicUsize,
    /// Reliable mode: how many sent messages wait for an ack (for the
    /// `SessionLost` report only; a HELLO's `first_seq` is asked of the
    /// outbox itself, see `opened`).
    window_len: AtomicU64,
    /// The durable store's writer stopped: `send()` is refused.
    pub(crate) store_dead: Arc<std::sync::atomic::AtomicBool>,
    /// The last `MessageId` handed out: `send()` numbers its message
    /// itself, so it returns the id without waiting for the outbox.
    last_id: AtomicU64,
}

impl Shared {
    /// Disconnected, nothing counted, the peer's limit unknown.
    pub(crate) fn new() -> Self {
        Shared {
            state: AtomicU8::new(ConnectionState::Disconnected.to_u8()),
            protocol: Mutex::new(None),
            counters: Counters::default(),
            base: Instant::now(),
            last_seen_nanos: AtomicU64::new(0),
            window_len: AtomicU64::new(0),
            peer_max_message_size: AtomicUsize::new(0),
            store_dead: Arc::default(),
            last_id: AtomicU64::new(0),
        }
    }

    /// The next message's id (ids start at 1 and only grow).
    pub(crate) fn next_message_id(&self) -> crate::queue::MessageId {
        crate::queue::MessageId(self.last_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Reliable mode: publishes the window's size (see the field).
    pub(crate) fn set_window(&self, len: usize) {
        self.window_len.store(len as u64, Ordering::Release);
    }

    /// Publishes the outbox length, for `stats()` only: whether a message
    /// is taken is the outbox's decision (its credits), not this count's.
    pub(crate) fn set_buffered(&self, n: usize) {
        self.counters.buffered.store(n as u64, Ordering::Release);
    }

    /// Records the peer's message size limit (`None`: unknown).
    pub(crate) fn set_peer_max_message_size(&self, max: Option<usize>) {
        self.peer_max_message_size
            .store(max.unwrap_or(0), Ordering::Release);
    }

    /// The peer's message size limit, if known.
    pub(crate) fn peer_max_message_size(&self) -> Option<usize> {
        match self.peer_max_message_size.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Publishes the connection's state (the connection actor alone).
    pub(crate) fn set_state(&self, state: ConnectionState) {
        self.state.store(state.to_u8(), Ordering::Release);
    }

    /// Reliable mode: how many sent messages wait for an ack.
    pub(crate) fn window_len(&self) -> usize {
        self.window_len.load(Ordering::Acquire) as usize
    }

    pub(crate) fn state(&self) -> ConnectionState {
        ConnectionState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Records a sign of life from the peer.
    pub(crate) fn touch(&self) {
        let nanos = self.base.elapsed().as_nanos() as u64;
        self.last_seen_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn last_seen(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_seen_nanos.load(Ordering::Relaxed))
    }

    /// Now, as nanoseconds since `base` (a ping's payload: its pong gives
    /// the round-trip time).
    pub(crate) fn nanos_now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// Counts one live task in [`Counters::live`] for as long as it exists; it
/// is owned by the context item it tracks, so it goes when the item goes.
#[derive(Debug)]
pub(crate) struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.counters.live.fetch_add(1, Ordering::Relaxed);
        LiveGuard(shared)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.counters.live.fetch_sub(1, Ordering::Relaxed);
    }
}
