//! The storage core: the only module that knows LMDB (through heed).
//!
//! - [`env`]: opening (read-write or read-only), map sizing, growth between transactions.
//! - [`tables`]: one typed handle per table; each byte layout is encoded and decoded there only.
//! - [`txn`]: read and write transactions; a write transaction that saw an error cannot commit.
//! - [`view_txn`]: the narrow handle a view writes its own tables through.
//!
//! Everything above this module sees [`ReadTxn`], [`Table`] and [`ViewTxn`], never a heed
//! type. The byte layouts, invariants and the transaction and growth rules are drawn in
//! `docs/STORAGE.md`.

pub(crate) mod env;
mod error;
pub(crate) mod file;
mod replica_id;
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
pub(crate) mod salvage;
pub(crate) mod tables;
pub(crate) mod txn;
pub(crate) mod view_txn;

pub(crate) use env::{Store, StoreOptions};
pub use error::{EngineError, StorageError};
pub(crate) use replica_id::load_or_create as load_peer_id;
pub(crate) use txn::WriteTxn;
pub use txn::{Entries, ReadTxn, Table};
pub(crate) use view_txn::MemTables;
pub use view_txn::ViewTxn;

/// An error a write transaction's steps may fail with: the storage layer's own, or one of a
/// layer above that wraps it. A transaction keeps a copy of the first one (to report it
/// typed when the caller ignored it), and full-disk failures are recognised inside it.
pub(crate) trait TxnError:
    From<StorageError> + std::error::Error + Clone + Send + Sync + 'static
{
    /// The storage error this is, if it is one.
    fn storage(&self) -> Option<&StorageError>;
    /// This error with its storage error (if any) replaced by `f` of it.
    fn map_storage(self, f: impl FnOnce(StorageError) -> StorageError) -> Self;
}

impl TxnError for StorageError {
    fn storage(&self) -> Option<&StorageError> {
        Some(self)
    }
    fn map_storage(self, f: impl FnOnce(StorageError) -> StorageError) -> Self {
        f(self)
    }
}

/// Whether an error is LMDB's "map full" (the write was aborted and may be retried after
/// growth).
pub(crate) fn is_map_full<E: TxnError>(e: &E) -> bool {
    e.storage().is_some_and(StorageError::is_map_full)
}

/// Results of the storage layer.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// On-disk format of the whole store, checked on open.
pub const STORE_FORMAT_VERSION: u32 = 1;
