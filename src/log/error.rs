//! [`LogError`]: what the log layer can fail with. It wraps the errors of the layers below
//! (storage, node, identity) and adds its own (a missing link, a refused node).

use crate::hash::Hash;
use crate::identity::IdentityError;
use crate::node::NodeError;
use crate::store::StorageError;

use super::policy::PolicyError;

/// An error from a [`crate::Log`] operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The store failed, or holds bytes that are not what they should be.
    #[error(transparent)]
    Storage(#[from] StorageError),
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
    /// The log's policy refuses a node (it names the node and, when signed, its author).
    #[error("policy refuses a node: {0}")]
    Policy(#[from] PolicyError),
    /// This replica's identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A view failed to apply a change, for a reason of its own.
    #[error("view {view}: {message}")]
    View {
        /// The view's name.
        view: String,
        /// What went wrong.
        message: String,
    },
}

impl LogError {
    /// The storage error underneath, if that is what this is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            LogError::Storage(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the store's map was full (the write may be retried: the map has grown).
    pub fn is_map_full(&self) -> bool {
        self.storage().is_some_and(StorageError::is_map_full)
    }

    /// Whether the disk holding the store was full.
    pub fn is_disk_full(&self) -> bool {
        self.storage().is_some_and(StorageError::is_disk_full)
    }
}

impl From<heed::Error> for LogError {
    fn from(e: heed::Error) -> Self {
        LogError::Storage(e.into())
    }
}

/// Results of the log layer.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

impl crate::store::TxnError for LogError {
    fn storage(&self) -> Option<&StorageError> {
        LogError::storage(self)
    }
    fn map_storage(self, f: impl FnOnce(StorageError) -> StorageError) -> Self {
        match self {
            LogError::Storage(s) => LogError::Storage(f(s)),
            other => other,
        }
    }
}
