//! Counters a client keeps about itself, read without a round trip.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// A snapshot of a client's counters ([`ResilientWebSocket::stats`](crate::ResilientWebSocket::stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Stats {
    /// Successful reconnects after a loss.
    pub reconnects: u64,
    /// Messages written to a socket.
    pub messages_sent: u64,
    /// Messages received and handed to subscribers.
    pub messages_received: u64,
    /// Messages waiting in the outbox right now.
    pub messages_buffered: u64,
    /// Messages dropped (overflow policy, TTL, retries), each also reported
    /// as an event.
    pub messages_dropped: u64,
    /// Batches the outbox handed to the socket; far fewer than
    /// `messages_sent` under load, since a burst goes out as one batch with
    /// one flush.
    pub write_batches: u64,
    /// The round-trip time of the last answered heartbeat ping.
    pub last_rtt: Option<Duration>,
    /// Socket streams and heartbeat watches alive right now: 2 while
    /// connected with heartbeats on, 0 when disconnected. A diagnostic that
    /// shows a restart left nothing of an old socket running.
    pub live_socket_tasks: u64,
    /// The client's actors running right now (connection, outbox,
    /// heartbeat, reconnect supervisor): 4 while the client exists, 0 once
    /// the last handle is dropped and they stopped.
    pub live_actors: u64,
}

/// The atomic counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) reconnects: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) buffered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) batches: AtomicU64,
    /// Nanoseconds; 0 = no answer yet.
    pub(crate) last_rtt_nanos: AtomicU64,
    pub(crate) live: AtomicU64,
    pub(crate) actors: AtomicU64,
    /// The labels of the heartbeat RTT histogram, set by the first
    /// `MetricsReporter` attached (`crate::metrics`): the RTT is the one
    /// sample no event carries, so the client records it itself, and only
    /// once someone asked for it.
    #[cfg(feature = "metrics")]
    pub(crate) rtt_labels: std::sync::OnceLock<Vec<metrics::Label>>,
}

/// The heartbeat RTT histogram's name (`crate::metrics::names::CLIENT_HEARTBEAT_RTT`;
/// a unit test there keeps the two equal).
#[cfg(feature = "metrics")]
pub(crate) const RTT_METRIC: &str = "rws_client_heartbeat_rtt_seconds";

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rtt = get(&self.last_rtt_nanos);
        Stats {
            reconnects: get(&self.reconnects),
            messages_sent: get(&self.sent),
            messages_received: get(&self.received),
            messages_buffered: get(&self.buffered),
            messages_dropped: get(&self.dropped),
            write_batches: get(&self.batches),
            last_rtt: (rtt != 0).then(|| Duration::from_nanos(rtt)),
            live_socket_tasks: get(&self.live),
            live_actors: get(&self.actors),
        }
    }

    /// A heartbeat's round-trip time, for the metrics histogram when a
    /// reporter asked for it.
    #[cfg(feature = "metrics")]
    pub(crate) fn record_rtt(&self, nanos: u64) {
        if let Some(labels) = self.rtt_labels.get() {
            metrics::histogram!(RTT_METRIC, labels.clone())
                .record(Duration::from_nanos(nanos).as_secs_f64());
        }
    }

    /// An actor of the client started (called from its `started()`).
    pub(crate) fn actor_started(&self) {
        self.actors.fetch_add(1, Ordering::Relaxed);
    }

    /// An actor of the client stopped (called from its `stopped()`).
    pub(crate) fn actor_stopped(&self) {
        self.actors.fetch_sub(1, Ordering::Relaxed);
    }
}
