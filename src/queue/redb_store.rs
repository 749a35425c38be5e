//! [`RedbStore`]: the durable [`QueueStore`], one [redb](https://docs.rs/redb)
//! database file.
//!
//! redb is an embedded, crash-safe, pure-Rust B-tree store with
//! copy-on-write commits: a commit either happened entirely or not at all,
//! even when the process is killed in the middle of it, so there is no
//! journal of ours to replay or repair. Each batch of [`StoreOp`]s is one
//! write transaction committed with `Durability::Immediate` (an fsync).
//!
//! The file holds the reconnect token, so it is created readable and
//! writable by its owner only (mode 0600 on Unix), and an existing file's
//! mode is narrowed to that when opened.

use std::{
    fs::OpenOptions,
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use super::store::{QueueStore, StoreError, StoreOp, StoredMessage, StoredSession, StoredState};
use crate::events::Payload;

/// Messages waiting in the outbox: key → [priority, kind, body...].
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Sent, not acknowledged: seq → [kind, body...].
const UNACKED: TableDefinition<u64, &[u8]> = TableDefinition::new("unacked");
/// Session state: name → value.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Marks a file as ours, with the layout version.
const FORMAT: &[u8] = b"resilient-ws store 1";

const TEXT: u8 = 0;
const BINARY: u8 = 1;

/// The durable store: a redb database file. See the module docs.
///
/// ```
/// use resilient_ws::queue::{QueueStore, RedbStore, StoreOp};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("client.store");
/// {
///     let mut store = RedbStore::open(&path)?;
///     store.commit(&[StoreOp::Admit { key: 1, priority: 0, payload: "hi".into() }])?;
/// }
/// // Another process (or a later run) finds it again.
/// let mut store = RedbStore::open(&path)?;
/// assert_eq!(store.load()?.outbox.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating it (mode 0600) if it does not
    /// exist.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process has it open,
    /// [`StoreError::Corrupt`] when the file is damaged or not a store of
    /// this crate (it is left untouched), [`StoreError::Io`] otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |e: io::Error| StoreError::Io {
            path: path.clone(),
            source: Arc::new(e),
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(io_err)?;
        #[cfg(unix)]
        {
            // An existing file keeps its mode on open: narrow it, since it
            // holds the reconnect token.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io_err)?;
        }
        let backend = redb::backends::FileBackend::new(file).map_err(|e| map_db_error(&path, e))?;
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| map_db_error(&path, e))?;
        let store = RedbStore { db, path };
        store.check_format()?;
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        map_error(&self.path, e.into())
    }

    /// Marks a new file as ours; refuses a redb file of someone else's.
    fn check_format(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let tables: Vec<String> = tx
            .list_tables()
            .map_err(|e| self.err(e))?
            .map(|t| t.name().to_string())
            .collect();
        {
            let format = match tx.open_table(META) {
                Ok(t) => t
                    .get("format")
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec()),
                Err(e) => return Err(self.err(e)),
            };
            match format {
                Some(f) if f == FORMAT => {}
                Some(f) => {
                    return Err(
                        self.corrupt(format!("unknown format {:?}", String::from_utf8_lossy(&f)))
                    )
                }
                None if tables.is_empty() => {
                    let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
                    meta.insert("format", FORMAT).map_err(|e| self.err(e))?;
                    tx.open_table(OUTBOX).map_err(|e| self.err(e))?;
                    tx.open_table(UNACKED).map_err(|e| self.err(e))?;
                }
                None => {
                    return Err(self.corrupt(format!(
                        "a redb database without this crate's format marker (tables {tables:?})"
                    )))
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn decode_payload(&self, bytes: &[u8]) -> Result<Payload, StoreError> {
        match bytes.split_first() {
            Some((&TEXT, body)) => std::str::from_utf8(body)
                .map(Payload::from)
                .map_err(|_| self.corrupt("a stored text message is not UTF-8")),
            Some((&BINARY, body)) => Ok(Payload::from(body)),
            _ => Err(self.corrupt("a stored message has an unknown kind")),
        }
    }

    fn meta_u64(
        &self,
        meta: &impl ReadableTable<&'static str, &'static [u8]>,
        name: &str,
    ) -> Result<Option<u64>, StoreError> {
        match meta.get(name).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => {
                let bytes: [u8; 8] = v
                    .value()
                    .try_into()
                    .map_err(|_| self.corrupt(format!("bad value for {name}")))?;
                Ok(Some(u64::from_le_bytes(bytes)))
            }
        }
    }
}

fn encode_payload(prefix: Option<u8>, payload: &Payload) -> Vec<u8> {
    let (kind, body): (u8, &[u8]) = match payload {
        Payload::Text(t) => (TEXT, t.as_bytes()),
        Payload::Binary(b) => (BINARY, b),
    };
    let mut v = Vec::with_capacity(body.len() + 2);
    v.extend(prefix);
    v.push(kind);
    v.extend_from_slice(body);
    v
}

fn map_db_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        redb::DatabaseError::Storage(s) => map_storage_error(path, s),
        other => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

/// An I/O error, except that redb reports a file that is not a database
/// as one of kind `InvalidData`, and a truncated one may end early
/// (`UnexpectedEof`): those are damaged files, not I/O failures.
fn io_error(path: &Path, source: io::Error) -> StoreError {
    if matches!(
        source.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    ) {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: source.to_string(),
        }
    } else {
        StoreError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

fn map_storage_error(path: &Path, e: redb::StorageError) -> StoreError {
    match e {
        redb::StorageError::Io(source) => io_error(path, source),
        other => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

fn map_error(path: &Path, e: redb::Error) -> StoreError {
    match e {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        redb::Error::Io(source) => io_error(path, source),
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        },
        other => StoreError::Other(other.to_string()),
    }
}

impl QueueStore for RedbStore {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut state = StoredState::new();
        let outbox = tx.open_table(OUTBOX).map_err(|e| self.err(e))?;
        for row in outbox.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let Some((&priority, rest)) = v.value().split_first() else {
                return Err(self.corrupt("an empty outbox entry"));
            };
            state.outbox.push(StoredMessage {
                key: k.value(),
                priority,
                payload: self.decode_payload(rest)?,
            });
        }
        let unacked = tx.open_table(UNACKED).map_err(|e| self.err(e))?;
        for row in unacked.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            state
                .unacked
                .push((k.value(), self.decode_payload(v.value())?));
        }
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        state.next_seq = self.meta_u64(&meta, "next_seq")?.unwrap_or(1).max(1);
        state.delivered = self.meta_u64(&meta, "delivered")?.unwrap_or(0);
        if let Some(v) = meta.get("session").map_err(|e| self.err(e))? {
            let s: Option<StoredSession> = serde_json::from_slice(v.value())
                .map_err(|e| self.corrupt(format!("bad session record: {e}")))?;
            state.session = s;
        }
        if let Some((last, _)) = state.unacked.last() {
            if *last >= state.next_seq {
                return Err(self.corrupt("unacknowledged messages beyond the next seq"));
            }
        }
        Ok(state)
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut outbox = tx.open_table(OUTBOX).map_err(|e| self.err(e))?;
            let mut unacked = tx.open_table(UNACKED).map_err(|e| self.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let mut next_seq = None;
            for op in ops {
                match op {
                    StoreOp::Admit {
                        key,
                        priority,
                        payload,
                    } => {
                        let v = encode_payload(Some(*priority), payload);
                        outbox.insert(key, v.as_slice()).map_err(|e| self.err(e))?;
                    }
                    StoreOp::Remove { key } => {
                        outbox.remove(key).map_err(|e| self.err(e))?;
                    }
                    StoreOp::Assign { key, seq, payload } => {
                        if let Some(k) = key {
                            outbox.remove(k).map_err(|e| self.err(e))?;
                        }
                        let v = encode_payload(None, payload);
                        unacked.insert(seq, v.as_slice()).map_err(|e| self.err(e))?;
                        next_seq = Some(next_seq.unwrap_or(0).max(seq + 1));
                    }
                    StoreOp::Acked { upto } => {
                        unacked
                            .retain_in(..=*upto, |_, _| false)
                            .map_err(|e| self.err(e))?;
                    }
                    StoreOp::Session(s) => {
                        let v =
                            serde_json::to_vec(s).map_err(|e| StoreError::Other(e.to_string()))?;
                        meta.insert("session", v.as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                    StoreOp::Delivered(d) => {
                        meta.insert("delivered", d.to_le_bytes().as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                }
            }
            if let Some(n) = next_seq {
                let old = self.meta_u64(&meta, "next_seq")?.unwrap_or(1);
                meta.insert("next_seq", n.max(old).to_le_bytes().as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::store::tests::store_contract;

    #[test]
    fn redb_store_follows_the_contract_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        {
            let mut store = RedbStore::open(&path).unwrap();
            store_contract(&mut store);
            store
                .commit(&[StoreOp::Admit {
                    key: 9,
                    priority: 1,
                    payload: Payload::from("kept"),
                }])
                .unwrap();
        }
        let mut again = RedbStore::open(&path).unwrap();
        let s = again.load().unwrap();
        assert_eq!(s.outbox.len(), 2);
        assert_eq!(s.outbox[1].payload, Payload::from("kept"));
        assert_eq!(s.next_seq, 3);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(RedbStore::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_second_open_is_refused_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let _first = RedbStore::open(&path).unwrap();
        let err = RedbStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains("locked"), "{err}");
    }

    #[test]
    fn garbage_and_truncated_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.store");
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(&garbage, &bytes).unwrap();
        let err = RedbStore::open(&garbage).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert_eq!(std::fs::read(&garbage).unwrap(), bytes, "left untouched");

        let truncated = dir.path().join("truncated.store");
        {
            let mut s = RedbStore::open(&truncated).unwrap();
            s.commit(&[StoreOp::Admit {
                key: 1,
                priority: 0,
                payload: Payload::from(vec![7u8; 100_000]),
            }])
            .unwrap();
        }
        let len = std::fs::metadata(&truncated).unwrap().len();
        let f = OpenOptions::new().write(true).open(&truncated).unwrap();
        f.set_len(len / 3).unwrap();
        drop(f);
        let cut = std::fs::read(&truncated).unwrap();
        let err = RedbStore::open(&truncated).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert_eq!(std::fs::read(&truncated).unwrap(), cut, "left untouched");
    }

    #[test]
    fn someone_elses_redb_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let t: TableDefinition<u64, u64> = TableDefinition::new("theirs");
                tx.open_table(t).unwrap().insert(1, 2).unwrap();
            }
            tx.commit().unwrap();
        }
        let err = RedbStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("format marker"), "{err}");
    }
}
