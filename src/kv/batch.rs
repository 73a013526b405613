//! `KvBatch`: many key-value writes in one transaction.

use super::op::Op;
use super::view::versions_in;
use super::write::Write;
use super::{Kv, KvRead, Result, Versions};
use crate::hash::Hash;
use crate::log::Writer;

/// Reads and writes inside [`Kv::batch`]: the same semantics as [`Kv::write`], one
/// transaction for all of them. Each read and write sees the writes before it, so writing a
/// key twice in a batch makes a chain, never a conflict; and what a batch reads cannot change
/// before it commits, so a batch may read the versions it is about to supersede. A
/// [`Write::expecting`] that finds other versions writes nothing and returns
/// [`super::KvError::Changed`]; returning that error from the batch's closure aborts it all.
pub struct KvBatch<'k, 'w, 'a, 't> {
    kv: &'k Kv,
    w: &'w mut Writer<'a, 't>,
}

impl KvBatch<'_, '_, '_, '_> {
    /// Writes on `key`, as [`Kv::write`].
    pub fn write(&mut self, key: impl AsRef<[u8]>, write: impl Into<Write>) -> Result<Hash> {
        let write = write.into();
        let op = self.kv.op(key.as_ref(), write.op().clone())?;
        self.kv.write_in(self.w, &op, &write)
    }

    /// Sets `key` to `value`, superseding every current version.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) -> Result<Hash> {
        self.write(key, Write::put(value))
    }

    /// Deletes `key` (a tombstone superseding every current version).
    pub fn del(&mut self, key: impl AsRef<[u8]>) -> Result<Hash> {
        self.write(key, Write::del())
    }
}

impl KvRead for KvBatch<'_, '_, '_, '_> {
    /// The current versions of `key` in this transaction (tombstones included).
    fn versions(&self, key: impl AsRef<[u8]>) -> Result<Versions> {
        let id = self.kv.op(key.as_ref(), Op::Del)?.key_id();
        Ok(versions_in(&self.kv.tables, &self.w.txn(), &id)?)
    }
}

impl Kv {
    /// Runs `f` with a [`KvBatch`]: all its writes commit in one transaction, or none do.
    /// Much faster than one transaction per write for bulk loads. `f` runs once; if a write
    /// in it fails, nothing commits (even if `f` ignores the error). `f` may read
    /// ([`KvBatch::get`]): nothing else commits while it runs, so a read-modify-write in a
    /// batch loses no update (keep `f` short: it holds the log's write lock).
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// let kv = braidlog::Kv::open(&log)?;
    /// kv.batch(|b| {
    ///     for i in 0..1000u32 {
    ///         b.put(format!("user/{i}"), i.to_string())?;
    ///     }
    ///     b.put("user/7", "seven")?; // a chain with the write above, not a conflict
    ///     b.del("user/8")
    /// })?;
    /// assert_eq!(kv.get("user/7")?.unwrap().value(), Some(&b"seven"[..]));
    /// assert!(kv.get("user/8")?.is_none());
    /// assert_eq!(kv.conflicts().count(), 0);
    /// # Ok(()) }
    /// ```
    pub fn batch<R>(&self, f: impl FnOnce(&mut KvBatch<'_, '_, '_, '_>) -> Result<R>) -> Result<R> {
        self.log
            .transaction_typed(|w| f(&mut KvBatch { kv: self, w }))
    }
}
