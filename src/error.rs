//! The umbrella [`Error`]: every layer's error in one enum, for applications that want one
//! type. Assembled at the top: no module of braidlog imports it; each layer returns its own
//! (`StorageError`, `NodeError`, `IdentityError`, `LogError`, `KvError`, `SyncError`), and
//! `?` converts any of them into this.

use crate::identity::IdentityError;
use crate::kv::KvError;
use crate::log::{LogError, LookupError, PolicyError};
use crate::node::NodeError;
use crate::store::StorageError;
use crate::sync::SyncError;

/// Any braidlog error. Layer errors that wrap a lower layer's are flattened, so a full disk is
/// always `Error::Storage(StorageError::DiskFull { .. })` however deep it arose.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage layer failed (LMDB, the store's files, damaged bytes).
    #[error(transparent)]
    Storage(StorageError),
    /// A node is malformed or over a limit.
    #[error(transparent)]
    Node(NodeError),
    /// This replica's identity could not be loaded or created.
    #[error(transparent)]
    Identity(IdentityError),
    /// The log's policy refuses a node.
    #[error("policy refuses a node: {0}")]
    Policy(PolicyError),
    /// The log refused an operation (a missing link, a view's error).
    #[error(transparent)]
    Log(LogError),
    /// The key-value layer refused an operation.
    #[error(transparent)]
    Kv(KvError),
    /// A hash prefix names no single node.
    #[error(transparent)]
    Lookup(LookupError),
    /// Replication failed.
    #[error(transparent)]
    Sync(SyncError),
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

impl From<NodeError> for Error {
    fn from(e: NodeError) -> Self {
        Error::Node(e)
    }
}

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Self {
        Error::Identity(e)
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::Policy(e)
    }
}

impl From<LogError> for Error {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Storage(s) => Error::Storage(s),
            LogError::Node(n) => Error::Node(n),
            LogError::Identity(i) => Error::Identity(i),
            LogError::Policy(p) => Error::Policy(p),
            other => Error::Log(other),
        }
    }
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Log(l) => Error::from(l),
            other => Error::Kv(other),
        }
    }
}

impl From<LookupError> for Error {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Store(l) => Error::from(l),
            other => Error::Lookup(other),
        }
    }
}

impl From<SyncError> for Error {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Store(l) => Error::from(l),
            other => Error::Sync(other),
        }
    }
}

/// Shorthand for results with the umbrella [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The umbrella flattens: a full disk is one error whichever layer reports it; a sync's
    /// own failure keeps its sync context.
    #[test]
    fn a_full_disk_is_one_error_whatever_layer_reports_it() {
        let full = || StorageError::DiskFull {
            path: "/full".into(),
            available: 0,
        };
        let from_log = Error::from(LogError::from(full()));
        let from_kv = Error::from(KvError::from(full()));
        let from_sync = Error::from(SyncError::<LogError>::Store(full().into()));
        for e in [from_log, from_kv, from_sync] {
            assert!(
                matches!(e, Error::Storage(StorageError::DiskFull { .. })),
                "{e}"
            );
        }
        let timeout = Error::from(SyncError::<LogError>::Timeout {
            state: "handshaking",
            after: std::time::Duration::from_secs(1),
        });
        assert!(matches!(timeout, Error::Sync(SyncError::Timeout { .. })));
    }
}
