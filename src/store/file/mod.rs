//! The store's files before LMDB maps them, and what a failed write on a full disk means.
//!
//! LMDB trusts `data.mdb`: it maps the file and follows page numbers through the map, so a
//! truncated file ends the process with SIGBUS, and it refuses a whole file when either of its
//! two meta pages has a bad header, even when the other is intact. Before every open this
//! module reads both meta pages with `pread` (see `pages.rs`) and:
//!
//! - refuses an empty `data.mdb`: a brand-new replica has no `data.mdb` at all, and an empty one
//!   is a store that was wiped or never finished its creation, not a new replica;
//! - picks the meta page LMDB would use (the valid one with the highest transaction id) and
//!   checks that the file holds every page up to its last page; when it does not (LMDB may leave
//!   free pages at the end unwritten), walks every reachable page and refuses the file if one
//!   is missing or malformed;
//! - when exactly one meta page is damaged and no other process has the store open, rewrites
//!   it from the intact one (with another process, what looks damaged may be a page it is
//!   writing, so LMDB decides as for that process). LMDB keeps the two
//!   newest snapshots intact on disk (that is what its `MDB_PREVSNAPSHOT` flag relies on), so
//!   the intact meta names a sound tree; if the damaged page held the newest commit, that
//!   commit is lost and a sync restores it from peers. `MDB_PREVSNAPSHOT` itself does not help:
//!   LMDB checks the header of both meta pages before it looks at the flag.
//!
//! It also allocates `lock.mdb` with real writes before LMDB creates it: LMDB extends that file
//! with `ftruncate` and writes it through a map, which on a full file system is SIGBUS.

/// Where the checks run: LMDB's file layout is read as on 64-bit little-endian Unix machines.
/// Elsewhere LMDB opens files unchecked, as it always did, and errors are not diagnosed.
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
#[path = "unix.rs"]
mod imp;
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
pub(crate) mod pages;
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
pub use imp::check_pages;
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
pub(crate) use imp::{check_before_open, diagnose, read_metas};

#[cfg(not(all(unix, target_pointer_width = "64", target_endian = "little")))]
mod imp {
    use super::Checked;
    use crate::store::StorageError;
    use std::path::Path;
    /// No checks: LMDB opens the file as it is.
    pub fn check_before_open(_: &Path, _: bool) -> Result<Checked, StorageError> {
        Ok(Checked::New)
    }
    /// The error as it is.
    pub fn diagnose(error: StorageError, _: &Path) -> StorageError {
        error
    }
    /// No walk: reports no pages.
    pub fn check_pages(_: &Path) -> Result<u64, StorageError> {
        Ok(0)
    }
}
#[cfg(not(all(unix, target_pointer_width = "64", target_endian = "little")))]
pub use imp::check_pages;
#[cfg(not(all(unix, target_pointer_width = "64", target_endian = "little")))]
pub(crate) use imp::{check_before_open, diagnose};

/// LMDB's data file in a store directory.
pub const DATA_FILE: &str = "data.mdb";
/// LMDB's lock file in a store directory.
pub const LOCK_FILE: &str = "lock.mdb";
/// Free space below which a failed write (`EIO`, which is how LMDB reports a short write) is
/// reported as a full disk, and below which a new store is not created.
pub const LOW_SPACE_BYTES: u64 = 16 << 20;

/// What is wrong with a store's data file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileProblem {
    /// `data.mdb` exists and is empty.
    #[error("data.mdb is empty: the store was wiped or its creation never finished (remove the directory to start a new replica and sync it from peers)")]
    Empty,
    /// Neither meta page is usable.
    #[error("neither LMDB meta page is usable (page 0: {first}; page 1: {second})")]
    NoValidMeta {
        /// Why page 0 is unusable.
        first: String,
        /// Why page 1 is unusable.
        second: String,
    },
    /// The file is shorter than the pages its newest snapshot uses.
    #[error(
        "data.mdb is truncated: {size} bytes, page {page} is needed ({what}); try `braid salvage`"
    )]
    Truncated {
        /// The file's size.
        size: u64,
        /// A page the snapshot reaches that is not in the file.
        page: u64,
        /// Details.
        what: String,
    },
    /// A page the newest snapshot reaches is malformed.
    #[error("data.mdb page {page} is damaged ({what}); try `braid salvage`")]
    DamagedPage {
        /// The page.
        page: u64,
        /// What is wrong.
        what: String,
    },
    /// One meta page is damaged and could not be rewritten from the other.
    #[error("LMDB meta page {slot} is damaged ({what}) and could not be rewritten: {error}")]
    MetaNotRepaired {
        /// The damaged page.
        slot: u64,
        /// What is wrong with it.
        what: String,
        /// Why the rewrite failed.
        error: String,
    },
}

/// What [`check_before_open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(all(unix, target_pointer_width = "64", target_endian = "little")),
    allow(dead_code)
)]
pub(crate) enum Checked {
    /// No `data.mdb`: LMDB creates a new store.
    New,
    /// Both meta pages were sound, and the newest one's pages are present.
    Sound,
    /// Meta page `slot` was damaged and was rewritten from the other one.
    MetaRepaired {
        /// The rewritten page.
        slot: u64,
    },
}
