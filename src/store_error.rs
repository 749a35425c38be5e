//! [`StoreError`]: why the client's durable store failed. The crate's
//! [`Error`](crate::Error) carries one, and the stores in
//! [`queue`](crate::queue) return them, so it lives below both.

use std::{io, path::PathBuf, sync::Arc};

/// Why a store could not be opened, read or written.
///
/// Its `Display` never contains the reconnect token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another client in this one) has the store open.
    #[error("store {} is locked: another process has it open", path.display())]
    Locked {
        /// The store's file.
        path: PathBuf,
    },
    /// The file is not a store this crate wrote, or it is damaged. It is
    /// left as it is: move it away to start without it.
    #[error("store {} is corrupt or not a resilient-ws store: {detail}", path.display())]
    Corrupt {
        /// The store's file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The file could not be opened, read or written.
    #[error("store {}: I/O error: {source}", path.display())]
    Io {
        /// The store's file.
        path: PathBuf,
        /// The underlying error.
        source: Arc<io::Error>,
    },
    /// The file was written by a newer version of this crate, in a layout
    /// this version cannot read. It is left as it is: open it with the
    /// newer version, or move it away to start without it.
    #[error(
        "store {} was written by a newer version of resilient-ws (store format {found}, this version reads up to {supported})",
        path.display()
    )]
    TooNew {
        /// The store's file.
        path: PathBuf,
        /// The file's format version.
        found: u32,
        /// The newest format version this build reads.
        supported: u32,
    },
    /// Any other failure of the store.
    #[error("store failure: {0}")]
    Other(String),
}
