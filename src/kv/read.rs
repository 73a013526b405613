//! [`KvRead`]: the reads that [`Kv`](super::Kv), a [`Snapshot`](super::Snapshot) and a
//! [`KvBatch`](super::KvBatch) share, written once.

use super::versions::Versions;
use super::{KvError, Result};

/// Reads of one key's current versions. Implemented by [`Kv`](super::Kv) (each call its own
/// snapshot), [`Snapshot`](super::Snapshot) (one snapshot for several reads) and
/// [`KvBatch`](super::KvBatch) (inside the batch's write transaction, seeing its writes).
/// Only [`KvRead::versions`] is written per type; the rest follow from it.
pub trait KvRead {
    /// Every current version of `key`, tombstones included; empty when never written.
    fn versions(&self, key: impl AsRef<[u8]>) -> Result<Versions>;

    /// The current versions of `key`, or `None` when it is absent (never written, or every
    /// current version is a tombstone). Several versions mean a conflict.
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// use braidlog::kv::{Kv, KvRead, Write};
    /// let kv = Kv::open(&log)?;
    /// let base = kv.put(b"k", b"base".to_vec())?;
    /// // Two writes on `base` that did not see each other (as after a sync).
    /// let x = kv.write(b"k", Write::put("x").superseding([base]))?;
    /// let y = kv.write(b"k", Write::del().superseding([base]))?;
    /// let versions = kv.get(b"k")?.unwrap();
    /// assert!(versions.is_conflict());
    /// let mut both = vec![x, y];
    /// both.sort();
    /// assert_eq!(versions.hashes(), both);
    /// assert_eq!(versions.values().collect::<Vec<_>>(), [&b"x"[..]]);
    ///
    /// let keys: Vec<_> = kv.conflicts().map(|e| e.unwrap().key).collect();
    /// assert_eq!(keys, [b"k".to_vec()]);
    /// kv.put(b"k", b"merged".to_vec())?; // links both: resolved
    /// assert_eq!(kv.conflicts().count(), 0);
    /// # Ok(()) }
    /// ```
    fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Versions>> {
        let versions = self.versions(key)?;
        Ok(versions.is_present().then_some(versions))
    }

    /// The single value of `key` (`None` when absent or deleted), or [`KvError::Conflict`]
    /// when it has several versions.
    fn get_single(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        match self.get(key)? {
            None => Ok(None),
            Some(v) if v.is_conflict() => Err(KvError::Conflict {
                key: key.to_vec(),
                versions: v.hashes(),
            }),
            Some(v) => Ok(v.value().map(<[u8]>::to_vec)),
        }
    }
}
