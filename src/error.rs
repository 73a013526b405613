//! Errors: one enum per layer, all converting into the umbrella [`Error`].

use std::path::PathBuf;

use crate::hash::Hash;
use crate::node::NodeError;

/// Errors from the store and the log API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node is malformed or over a limit.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A node links to a node that is not stored (nor earlier in the same batch).
    #[error("node {node} links to {link}, which is not stored")]
    MissingLink {
        /// The node being added.
        node: Hash,
        /// The link that is not stored.
        link: Hash,
    },
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
    /// Stored bytes that should have been valid are not (see [`crate::Log::verify`]).
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
    /// A write on a store opened with [`crate::Log::open_read_only`].
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
    /// A write transaction was not committed because a write in it had failed, although the
    /// code running it returned success (it ignored the error).
    #[error("transaction aborted: an earlier write in it failed: {cause}")]
    Aborted {
        /// The first failure, as text.
        cause: String,
    },
    /// LMDB failed.
    #[error("storage error: {0}")]
    Storage(#[from] crate::store::StorageError),
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
        problem: crate::store_file::FileProblem,
    },
    /// The file system failed (creating the directory, for example).
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The log's policy refuses a node (it names the node and, when signed, its author).
    #[error("policy refuses a node: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// This replica's identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The key-value layer refused an operation.
    #[error(transparent)]
    Kv(#[from] crate::kv::KvError),
    /// A view failed to apply a change.
    #[error("view {view}: {message}")]
    View {
        /// The view's name.
        view: String,
        /// What went wrong.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
