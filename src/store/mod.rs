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
pub(crate) mod tables;
pub(crate) mod txn;
pub(crate) mod view_txn;

pub(crate) use env::{Store, StoreOptions};
pub(crate) use txn::WriteTxn;
pub use txn::{Entries, ReadTxn, Table};
pub(crate) use view_txn::MemTables;
pub use view_txn::ViewTxn;

/// On-disk format of the whole store, checked on open.
pub const STORE_FORMAT_VERSION: u32 = 1;

/// An error from LMDB. The storage engine's own error type stays private; ask this one what
/// kind of failure it was.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(heed::Error);

impl StorageError {
    /// The map (the reserved address space) is full. Writes of braidlog's own grow the map
    /// and retry; a [`crate::Log::transaction`] returns this after growing, to be retried.
    pub fn is_map_full(&self) -> bool {
        matches!(self.0, heed::Error::Mdb(heed::MdbError::MapFull))
    }

    /// The operating system's error, when the failure was an I/O error (a full disk shows as
    /// `EIO` or `ENOSPC` here: LMDB turns short writes into `EIO`).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match &self.0 {
            heed::Error::Io(e) => Some(e),
            _ => None,
        }
    }

    /// An I/O failure as the storage engine reports it (for tests of error classification).
    #[cfg(test)]
    pub(crate) fn from_io(e: std::io::Error) -> StorageError {
        StorageError(heed::Error::Io(e))
    }

    pub(crate) fn is_map_resized(&self) -> bool {
        matches!(self.0, heed::Error::Mdb(heed::MdbError::MapResized))
    }
}

impl From<heed::Error> for crate::error::Error {
    fn from(e: heed::Error) -> Self {
        crate::error::Error::Storage(StorageError(e))
    }
}

/// Whether an error is LMDB's "map full" (the write was aborted and may be retried after
/// growth).
pub(crate) fn is_map_full(e: &crate::error::Error) -> bool {
    matches!(e, crate::error::Error::Storage(s) if s.is_map_full())
}
