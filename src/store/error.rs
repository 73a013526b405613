//! [`StorageError`]: everything the storage layer can fail with. Nothing here knows a log,
//! a view's meaning or a peer: the layers above wrap this error in their own.

use std::path::PathBuf;
use std::sync::Arc;

use super::file::FileProblem;
use crate::hash::Hash;
use crate::node::NodeError;

/// An error from the storage layer: LMDB, the store's files, or bytes on disk that are not
/// what they should be. Cheap to clone (the causes it carries are shared).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// LMDB failed. Ask [`StorageError::is_map_full`] or [`StorageError::io_error`] what kind
    /// of failure it was; the engine's own error type stays private.
    #[error("storage error: {0}")]
    Engine(EngineError),
    /// The store on disk was written by a format this release does not read.
    #[error("store at {path} has format version {got}, this release reads {expected}")]
    FormatVersion {
        /// The store directory.
        path: PathBuf,
        /// The version on disk.
        got: u32,
        /// The version this release reads.
        expected: u32,
    },
    /// Stored bytes that should have been valid are not (see `Log::verify`).
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// A node read from disk does not hash to the hash it is filed under: the file is
    /// damaged. The node is never returned or sent; `verify` lists every such node.
    #[error("stored node at seq {seq} is damaged: filed as {expected}, its bytes hash to {got}")]
    Damaged {
        /// Feed position of the node.
        seq: u64,
        /// The hash it is filed under.
        expected: Hash,
        /// The hash of the bytes found.
        got: Hash,
    },
    /// Stored bytes hash correctly but do not decode as a node.
    #[error("a stored node is malformed: {0}")]
    Node(#[from] NodeError),
    /// A write on a store opened read-only.
    #[error("store at {path} is open read-only")]
    ReadOnly {
        /// The store directory.
        path: PathBuf,
    },
    /// The directory holds no braidlog store (opening read-only creates nothing).
    #[error("no braidlog store at {path}")]
    NotAStore {
        /// The directory.
        path: PathBuf,
    },
    /// A view asked for a table name braidlog keeps for itself.
    #[error("table name {name:?} is reserved for braidlog's own tables")]
    ReservedTable {
        /// The name asked for.
        name: String,
    },
    /// A view wrote outside its declared tables, or one of its reads failed.
    #[error("view {view}: {message}")]
    View {
        /// The view's name.
        view: String,
        /// What went wrong.
        message: String,
    },
    /// A write transaction was not committed because a step in it had failed, although the
    /// code running it returned success (it ignored the error). `cause` is that first
    /// failure, typed: `cause.downcast_ref::<braidlog::LogError>()`, for example.
    #[error("transaction aborted: an earlier write in it failed: {cause}")]
    Aborted {
        /// The first failure.
        cause: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The disk holding the store is full: the write failed and changed nothing.
    #[error("no space left on the disk holding {path} ({available} bytes free): the write was not stored; free some space and retry")]
    DiskFull {
        /// The store directory.
        path: PathBuf,
        /// Bytes available on its file system after the failure.
        available: u64,
    },
    /// The store's data file is damaged or truncated (checked before LMDB maps it).
    #[error("store at {path}: {problem}")]
    DamagedFile {
        /// The store directory.
        path: PathBuf,
        /// What is wrong.
        problem: FileProblem,
    },
    /// The file system failed (creating the directory, for example).
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
}

/// LMDB's error, kept opaque so the engine can change without changing this API.
#[derive(Debug, Clone)]
pub struct EngineError(Arc<heed::Error>);

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for EngineError {}

impl StorageError {
    /// The map (the reserved address space) is full. Writes of braidlog's own grow the map
    /// and retry; a `Log::transaction` returns this after growing, to be retried.
    pub fn is_map_full(&self) -> bool {
        self.engine()
            .is_some_and(|e| matches!(e, heed::Error::Mdb(heed::MdbError::MapFull)))
    }

    /// The operating system's error, when the failure was an I/O error (a full disk shows as
    /// `EIO` or `ENOSPC` here: LMDB turns short writes into `EIO`).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => match self.engine()? {
                heed::Error::Io(e) => Some(e),
                _ => None,
            },
        }
    }

    /// Whether the disk was full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// An I/O failure as the storage engine reports it (for tests of error classification).
    #[cfg(test)]
    pub(crate) fn from_io(e: std::io::Error) -> StorageError {
        StorageError::from(heed::Error::Io(e))
    }

    pub(crate) fn is_map_resized(&self) -> bool {
        self.engine()
            .is_some_and(|e| matches!(e, heed::Error::Mdb(heed::MdbError::MapResized)))
    }

    fn engine(&self) -> Option<&heed::Error> {
        match self {
            StorageError::Engine(EngineError(e)) => Some(e),
            _ => None,
        }
    }
}

impl From<heed::Error> for StorageError {
    fn from(e: heed::Error) -> Self {
        StorageError::Engine(EngineError(Arc::new(e)))
    }
}
