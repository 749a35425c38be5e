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

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::store::{QueueStore, StoreOp, StoredMessage, StoredSession, StoredState};
use crate::{store_error::StoreError, Payload};

/// Messages waiting in the outbox: key → [priority, kind, body...].
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Sent, not acknowledged: seq → [kind, body...].
const UNACKED: TableDefinition<u64, &[u8]> = TableDefinition::new("unacked");
/// Session state: name → value.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Marks a file as ours (`meta["format"]`); the layout's version is
/// `meta["version"]`, a little-endian `u32`.
const FORMAT: &[u8] = b"resilient-ws store";
/// The marker of format 1, which carried its version in the marker itself
/// and had no `version` entry.
const FORMAT_1: &[u8] = b"resilient-ws store 1";
/// The layout this build writes. An older file is migrated when opened
/// (see [`migrate`]); a newer one is refused with [`StoreError::TooNew`].
///
/// History: 1 = the first layout; 2 = the version moved out of the marker
/// into its own entry (so a later layout can be recognised, and refused
/// clearly, by every version from 2 on).
pub(crate) const FORMAT_VERSION: u32 = 2;

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

    /// Starts a write transaction that commits durably: the commit returns
    /// only once the data is on disk (redb's `Immediate`, an fsync). Set
    /// explicitly, so a change of redb's default cannot weaken it.
    fn begin_durable(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Other(format!("cannot make commits durable: {e}")))?;
        Ok(tx)
    }

    /// Marks a new file as ours, migrates one of an older layout, and
    /// refuses a newer layout or a redb file of someone else's.
    fn check_format(&self) -> Result<(), StoreError> {
        let tx = self.begin_durable()?;
        let tables: Vec<String> = tx
            .list_tables()
            .map_err(|e| self.err(e))?
            .map(|t| t.name().to_string())
            .collect();
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let format = meta
                .get("format")
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec());
            let version = match format.as_deref() {
                Some(FORMAT) => {
                    let v = meta
                        .get("version")
                        .map_err(|e| self.err(e))?
                        .map(|v| <[u8; 4]>::try_from(v.value()).map(u32::from_le_bytes));
                    match v {
                        Some(Ok(v)) if v >= 1 => v,
                        _ => return Err(self.corrupt("missing or bad format version")),
                    }
                }
                Some(FORMAT_1) => 1,
                Some(f) => {
                    return Err(
                        self.corrupt(format!("unknown format {:?}", String::from_utf8_lossy(f)))
                    )
                }
                None if tables.is_empty() => {
                    drop(meta);
                    tx.open_table(OUTBOX).map_err(|e| self.err(e))?;
                    tx.open_table(UNACKED).map_err(|e| self.err(e))?;
                    meta = tx.open_table(META).map_err(|e| self.err(e))?;
                    FORMAT_VERSION
                }
                None => {
                    return Err(self.corrupt(format!(
                        "a redb database without this crate's format marker (tables {tables:?})"
                    )))
                }
            };
            if version > FORMAT_VERSION {
                return Err(StoreError::TooNew {
                    path: self.path.clone(),
                    found: version,
                    supported: FORMAT_VERSION,
                });
            }
            drop(meta);
            migrate(&tx, version).map_err(|e| self.err(e))?;
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

/// Brings a file of layout `from` up to [`FORMAT_VERSION`], one step at a
/// time, inside the caller's transaction (so a crash leaves the old layout
/// whole). The next change of layout adds its step here.
fn migrate(tx: &WriteTransaction, from: u32) -> Result<(), redb::Error> {
    let mut meta = tx.open_table(META)?;
    let mut version = from;
    while version < FORMAT_VERSION {
        match version {
            // 1 -> 2: the same tables; the version leaves the marker.
            1 => {}
            v => {
                return Err(redb::Error::Corrupted(format!(
                    "no migration from store format {v}"
                )))
            }
        }
        version += 1;
    }
    meta.insert("format", FORMAT)?;
    meta.insert("version", FORMAT_VERSION.to_le_bytes().as_slice())?;
    Ok(())
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
        let tx = self.begin_durable()?;
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

    /// Writes a store file the way format 1 did: the version in the
    /// marker, no `version` entry.
    fn write_format_1(path: &Path) {
        let db = Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx.open_table(META).unwrap();
            meta.insert("format", FORMAT_1).unwrap();
            meta.insert("next_seq", 5u64.to_le_bytes().as_slice())
                .unwrap();
            let mut unacked = tx.open_table(UNACKED).unwrap();
            unacked
                .insert(4, encode_payload(None, &Payload::from("four")).as_slice())
                .unwrap();
            tx.open_table(OUTBOX).unwrap();
        }
        tx.commit().unwrap();
    }

    fn stored_version(path: &Path) -> Option<u32> {
        let db = Database::open(path).unwrap();
        let tx = db.begin_read().unwrap();
        let meta = tx.open_table(META).unwrap();
        let v = meta.get("version").unwrap()?;
        Some(u32::from_le_bytes(v.value().try_into().unwrap()))
    }

    #[test]
    fn a_file_of_the_older_format_is_migrated_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.store");
        write_format_1(&path);
        assert_eq!(stored_version(&path), None);
        {
            let mut store = RedbStore::open(&path).unwrap();
            let s = store.load().unwrap();
            assert_eq!(s.unacked, vec![(4, Payload::from("four"))]);
            assert_eq!(s.next_seq, 5);
        }
        assert_eq!(stored_version(&path), Some(FORMAT_VERSION));
        // And it opens again as a current file.
        let mut store = RedbStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap().next_seq, 5);
    }

    #[test]
    fn a_file_of_a_newer_format_is_refused_clearly_and_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v9.store");
        drop(RedbStore::open(&path).unwrap());
        {
            let db = Database::open(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("version", 9u32.to_le_bytes().as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let err = RedbStore::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooNew {
                    found: 9,
                    supported: FORMAT_VERSION,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("written by a newer version"),
            "{err}"
        );
        // Not migrated or rewritten: the newer version finds it as it was.
        assert_eq!(stored_version(&path), Some(9));
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
