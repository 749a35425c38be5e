//! The proxy's books: which upstream each open connection goes to, the
//! bytes that passed each way, and what capturing upstreams sent. Kept apart
//! from the forwarding so each stays short.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use bytes::BytesMut;
use tokio::sync::watch;

#[derive(Debug)]
pub(super) struct Counters {
    pub(super) total: AtomicUsize,
    pub(super) open: watch::Sender<usize>,
    pub(super) next_id: AtomicU64,
    pub(super) table: Mutex<Table>,
}

impl Counters {
    pub(super) fn table(&self) -> MutexGuard<'_, Table> {
        // Every update is a few plain assignments; a panic elsewhere cannot
        // leave it half done in a way that matters to a test.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Who each connection goes to and what passed: what a test of several
/// upstreams needs to know which one holds a client's socket.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// The open connections, by id.
    pub(super) open: BTreeMap<u64, ProxiedConnection>,
    /// Bytes each upstream sent, over every connection (closed ones too).
    pub(super) from_upstream: HashMap<SocketAddr, u64>,
    /// What capturing upstreams sent, per connection id.
    pub(super) captured: BTreeMap<u64, (SocketAddr, BytesMut)>,
}

/// One open connection through a [`FaultProxy`], as
/// [`FaultProxy::connections`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxiedConnection {
    /// The proxy's number for it, in accept order (from 1).
    pub id: u64,
    /// The upstream it was forwarded to.
    pub upstream: SocketAddr,
    /// Bytes the upstream sent on it so far (read by the proxy).
    pub from_upstream: u64,
    /// Bytes the client sent on it so far (read by the proxy).
    pub to_upstream: u64,
}

/// Counts a connection as open for as long as it lives.
pub(super) struct OpenGuard {
    pub(super) counters: Arc<Counters>,
    pub(super) id: u64,
}

impl OpenGuard {
    pub(super) fn new(counters: &Arc<Counters>, upstream: SocketAddr) -> Self {
        let id = counters.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        counters.table().open.insert(
            id,
            ProxiedConnection {
                id,
                upstream,
                from_upstream: 0,
                to_upstream: 0,
            },
        );
        counters.open.send_modify(|n| *n += 1);
        OpenGuard {
            counters: counters.clone(),
            id,
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.counters.table().open.remove(&self.id);
        self.counters.open.send_modify(|n| *n -= 1);
    }
}

/// Where one direction of one connection counts what it read.
pub(super) struct Tally {
    pub(super) counters: Arc<Counters>,
    pub(super) id: u64,
    pub(super) upstream: SocketAddr,
    /// Whether this is the upstream-to-client direction.
    pub(super) from_upstream: bool,
}

impl Tally {
    pub(super) fn count(&self, chunk: &[u8], capture: bool) {
        let n = chunk.len() as u64;
        let mut table = self.counters.table();
        if let Some(c) = table.open.get_mut(&self.id) {
            if self.from_upstream {
                c.from_upstream += n;
            } else {
                c.to_upstream += n;
            }
        }
        if !self.from_upstream {
            return;
        }
        *table.from_upstream.entry(self.upstream).or_default() += n;
        if capture {
            let entry = table
                .captured
                .entry(self.id)
                .or_insert_with(|| (self.upstream, BytesMut::new()));
            entry.1.extend_from_slice(chunk);
        }
    }
}
