//! The storage behind the client's outbox: what a durable client keeps so
//! that a new process can resume its session.
//!
//! The client's queue actor describes every change to its state as a
//! [`StoreOp`] and hands them to a [`QueueStore`] in batches (one commit per
//! batch: a group commit). A store applies each batch atomically and
//! durably, and gives everything back as a [`StoredState`] when the client
//! starts again.
//!
//! Two stores come with the crate: [`MemoryStore`] (what a client without a
//! durable store is equivalent to; useful in tests) and
//! [`RedbStore`](super::RedbStore), an embedded crash-safe database file.
//! A store of your own (another embedded database, say) implements the
//! trait and is given to
//! [`ResilientWebSocketBuilder::store`](crate::ResilientWebSocketBuilder::store).
//!
//! ```
//! use resilient_ws::queue::{MemoryStore, QueueStore, StoreOp};
//! use resilient_ws::Payload;
//!
//! let mut store = MemoryStore::default();
//! store.commit(&[
//!     StoreOp::Admit { key: 1, priority: 0, payload: Payload::from("a") },
//!     StoreOp::Admit { key: 2, priority: 0, payload: Payload::from("b") },
//!     // "a" left the outbox as message 7 of the session.
//!     StoreOp::Assign { key: Some(1), seq: 7, payload: Payload::from("a") },
//! ])?;
//! let state = store.load()?;
//! assert_eq!(state.outbox.len(), 1);
//! assert_eq!(state.unacked[0].0, 7);
//! assert_eq!(state.next_seq, 8);
//! # Ok::<(), resilient_ws::queue::StoreError>(())
//! ```

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

pub(crate) use crate::store_error::StoreError;
use crate::Payload;

/// Reliable mode: the session a new process resumes.
///
/// Stored as JSON. Every field has a default (`#[serde(default)]`) and
/// unknown fields are ignored, so a record written by an older or a newer
/// version of this crate still loads: a field added later reads as its
/// default from an old file, and an old version skips it in a new one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredSession {
    /// The server's id for the session.
    pub connection_id: String,
    /// The secret that proves the session is ours. Kept in a file only the
    /// user can read; never logged.
    pub reconnect_token: String,
    /// Where the session's socket is opened.
    pub socket_url: String,
    /// The server's limit on unacknowledged bytes.
    pub max_unacked_bytes: usize,
    /// How long the client may hold back an ack.
    pub ack_interval: Duration,
    /// After how many messages the client acks at once.
    pub ack_threshold: u32,
    /// How long the server keeps the session without a socket (`None` in a
    /// store written before this was recorded: the protocol's default, 30 s,
    /// is assumed).
    pub resume_window: Option<Duration>,
    /// The largest message the server accepts, from negotiate (`None` in a
    /// store written before this was recorded: unknown until the next
    /// negotiate), so a restarted client refuses an oversize `send()` at
    /// once, before it resumes.
    pub max_message_size: Option<usize>,
    /// The client's stable id (docs/PROTOCOL.md §1), kept so that a
    /// restarted process goes on with the same id and its seqs stay
    /// unique per client. Empty in a record written before it existed.
    pub client_id: String,
}

impl Default for StoredSession {
    /// An empty session record with the protocol's default limits
    /// (docs/PROTOCOL.md §8): what a field missing from a stored record
    /// reads as.
    fn default() -> Self {
        StoredSession {
            connection_id: String::new(),
            reconnect_token: String::new(),
            socket_url: String::new(),
            max_unacked_bytes: 1024 * 1024,
            ack_interval: Duration::from_millis(100),
            ack_threshold: 64,
            resume_window: None,
            max_message_size: None,
            client_id: String::new(),
        }
    }
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("connection_id", &self.connection_id)
            .field("reconnect_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A message `send()` accepted that has not left the outbox yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The store's key for it; keys grow in the order messages were accepted.
    pub key: u64,
    /// Its priority (higher leaves first).
    pub priority: u8,
    /// The message.
    pub payload: Payload,
}

/// One change to the stored state. A batch of them is one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// `send()` accepted a message; it waits in the outbox.
    Admit {
        /// Its key (new, larger than every key before it).
        key: u64,
        /// Its priority.
        priority: u8,
        /// The message.
        payload: Payload,
    },
    /// A message left the outbox without a sequence number: raw mode sent
    /// it, or the overflow policy or its time to live dropped it.
    Remove {
        /// Its key.
        key: u64,
    },
    /// Reliable mode: a message left the outbox as message `seq` of the
    /// session; it is kept until acknowledged.
    Assign {
        /// Its outbox key, if it was admitted first.
        key: Option<u64>,
        /// Its sequence number.
        seq: u64,
        /// The message.
        payload: Payload,
    },
    /// Reliable mode: the server acknowledged every message up to `upto`.
    Acked {
        /// The highest acknowledged seq.
        upto: u64,
    },
    /// Reliable mode: the session to resume (`None`: start a fresh one).
    Session(Option<StoredSession>),
    /// Reliable mode: the application has received the server's messages up
    /// to this seq; the client acknowledges only what is stored here.
    Delivered(u64),
}

/// Everything a store holds, as loaded when a client starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    /// Messages waiting in the outbox, in key order.
    pub outbox: Vec<StoredMessage>,
    /// Reliable mode: messages sent and not acknowledged, as (seq, message),
    /// in seq order.
    pub unacked: Vec<(u64, Payload)>,
    /// Reliable mode: the seq the next message gets (1 for a new store).
    pub next_seq: u64,
    /// Reliable mode: the session to resume.
    pub session: Option<StoredSession>,
    /// Reliable mode: the last server seq the application received.
    pub delivered: u64,
}

impl StoredState {
    /// An empty state: nothing stored, numbering from 1.
    pub fn new() -> Self {
        StoredState {
            next_seq: 1,
            ..StoredState::default()
        }
    }

    /// The key the next accepted message gets.
    pub fn next_key(&self) -> u64 {
        self.outbox.last().map_or(1, |m| m.key + 1)
    }
}

/// Where the client's outbox, unacknowledged messages and session live.
///
/// `commit` must apply the whole batch or nothing, and when it returns `Ok`
/// the batch must survive a crash of the process: `send()` returns only
/// after the batch holding its message committed. The client calls
/// `commit` from one dedicated thread, never concurrently, so a blocking
/// implementation is right.
///
/// An `Err` from `commit` is not progress: the client sends nothing of the
/// batch, the `send()`s in it fail with that error, and it goes back to
/// the state of the last batch that committed (it gives the same sequence
/// numbers again), trying the store again with its next batch. A panic in
/// `commit` stops the client's store writer for good: the client reports
/// it and refuses every later `send()`.
pub trait QueueStore: Send + 'static {
    /// Reads everything stored (at start).
    ///
    /// # Errors
    /// A [`StoreError`] when the stored data cannot be read or is damaged.
    fn load(&mut self) -> Result<StoredState, StoreError>;

    /// Applies a batch of changes atomically and durably.
    ///
    /// # Errors
    /// A [`StoreError`]; then nothing of the batch was applied.
    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError>;
}

/// A store in memory: what a client without a durable store keeps, with the
/// same rules as the durable one. It does not outlive the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    outbox: BTreeMap<u64, (u8, Payload)>,
    unacked: BTreeMap<u64, Payload>,
    next_seq: u64,
    session: Option<StoredSession>,
    delivered: u64,
}

impl QueueStore for MemoryStore {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        Ok(StoredState {
            outbox: self
                .outbox
                .iter()
                .map(|(&key, (priority, payload))| StoredMessage {
                    key,
                    priority: *priority,
                    payload: payload.clone(),
                })
                .collect(),
            unacked: self.unacked.iter().map(|(&s, p)| (s, p.clone())).collect(),
            next_seq: self.next_seq.max(1),
            session: self.session.clone(),
            delivered: self.delivered,
        })
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        for op in ops {
            match op {
                StoreOp::Admit {
                    key,
                    priority,
                    payload,
                } => {
                    self.outbox.insert(*key, (*priority, payload.clone()));
                }
                StoreOp::Remove { key } => {
                    self.outbox.remove(key);
                }
                StoreOp::Assign { key, seq, payload } => {
                    if let Some(k) = key {
                        self.outbox.remove(k);
                    }
                    self.unacked.insert(*seq, payload.clone());
                    self.next_seq = self.next_seq.max(seq + 1);
                }
                StoreOp::Acked { upto } => {
                    self.unacked = self.unacked.split_off(&(upto + 1));
                }
                StoreOp::Session(s) => self.session = s.clone(),
                StoreOp::Delivered(d) => self.delivered = *d,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The rules every store must follow; run against each of them.
    pub(crate) fn store_contract(store: &mut dyn QueueStore) {
        let empty = store.load().unwrap();
        assert_eq!(empty, StoredState::new(), "a new store is empty");
        assert_eq!(empty.next_key(), 1);
        let session = StoredSession {
            connection_id: "c1".into(),
            reconnect_token: "secret".into(),
            socket_url: "ws://127.0.0.1:1/ws".into(),
            max_unacked_bytes: 1024,
            ack_interval: Duration::from_millis(50),
            ack_threshold: 8,
            resume_window: Some(Duration::from_secs(30)),
            max_message_size: Some(2048),
            client_id: "0123456789abcdef0123456789abcdef".into(),
        };
        store
            .commit(&[
                StoreOp::Session(Some(session.clone())),
                StoreOp::Admit {
                    key: 1,
                    priority: 0,
                    payload: Payload::from("one"),
                },
                StoreOp::Admit {
                    key: 2,
                    priority: 5,
                    payload: Payload::Binary(vec![0, 255].into()),
                },
                StoreOp::Admit {
                    key: 3,
                    priority: 0,
                    payload: Payload::from("three"),
                },
                StoreOp::Assign {
                    key: Some(1),
                    seq: 1,
                    payload: Payload::from("one"),
                },
                StoreOp::Assign {
                    key: None,
                    seq: 2,
                    payload: Payload::from("direct"),
                },
                StoreOp::Remove { key: 3 },
            ])
            .unwrap();
        store
            .commit(&[StoreOp::Acked { upto: 1 }, StoreOp::Delivered(4)])
            .unwrap();
        let s = store.load().unwrap();
        assert_eq!(
            s.outbox,
            vec![StoredMessage {
                key: 2,
                priority: 5,
                payload: Payload::Binary(vec![0, 255].into()),
            }]
        );
        assert_eq!(s.unacked, vec![(2, Payload::from("direct"))]);
        assert_eq!(s.next_seq, 3);
        assert_eq!(s.next_key(), 3);
        assert_eq!(s.session, Some(session));
        assert_eq!(s.delivered, 4);
        // Acked beyond everything empties the window but keeps numbering.
        store
            .commit(&[StoreOp::Acked { upto: 99 }, StoreOp::Session(None)])
            .unwrap();
        let s = store.load().unwrap();
        assert!(s.unacked.is_empty());
        assert_eq!(s.next_seq, 3);
        assert_eq!(s.session, None);
    }

    #[test]
    fn a_session_record_of_another_version_still_loads() {
        // An older version wrote fewer fields: the missing ones default.
        let old = r#"{"connection_id":"c1","reconnect_token":"t","socket_url":"ws://h/ws"}"#;
        let s: StoredSession = serde_json::from_str(old).unwrap();
        assert_eq!(s.connection_id, "c1");
        assert_eq!(s.max_unacked_bytes, 1024 * 1024);
        assert_eq!(s.ack_interval, Duration::from_millis(100));
        assert_eq!(s.ack_threshold, 64);
        // A newer version added a field: it is ignored.
        let new = r#"{"connection_id":"c2","reconnect_token":"t","socket_url":"u",
            "max_unacked_bytes":5,"ack_interval":{"secs":0,"nanos":1000000},
            "ack_threshold":3,"added_later":{"x":[1,2]}}"#;
        let s: StoredSession = serde_json::from_str(new).unwrap();
        assert_eq!((s.connection_id.as_str(), s.max_unacked_bytes), ("c2", 5));
        assert_eq!(s.ack_threshold, 3);
    }

    #[test]
    fn memory_store_follows_the_contract() {
        store_contract(&mut MemoryStore::default());
    }

    #[test]
    fn a_stored_session_never_shows_its_token() {
        let s = StoredSession {
            connection_id: "c".into(),
            reconnect_token: "TOPSECRET".into(),
            socket_url: String::new(),
            max_unacked_bytes: 1,
            ack_interval: Duration::ZERO,
            ack_threshold: 1,
            ..StoredSession::default()
        };
        assert!(!format!("{s:?}").contains("TOPSECRET"));
    }
}
