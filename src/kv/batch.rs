//! `KvBatch`: many key-value writes in one transaction.

use super::fold::fold_versions;
use super::op::Op;
use super::view::{heads_in, versions_in};
use super::{Kv, KvError, Result, Versions};
use crate::hash::Hash;
use crate::node::MAX_LINKS;
use crate::log::Writer;

/// Reads and writes inside [`Kv::batch`]: the same semantics as [`Kv::put`] and friends, one
/// transaction for all of them. Each read and write sees the writes before it, so writing a
/// key twice in a batch makes a chain, never a conflict; and what a batch reads cannot change
/// before it commits, so a batch may read the versions it is about to supersede.
pub struct KvBatch<'k, 'w, 'a, 't> {
    kv: &'k Kv,
    w: &'w mut Writer<'a, 't>,
}

impl KvBatch<'_, '_, '_, '_> {
    /// Sets `key` to `value`, superseding every current version.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) -> Result<Hash> {
        self.write(key, Op::Put(value.into()))
    }

    /// Deletes `key` (a tombstone superseding every current version).
    pub fn del(&mut self, key: impl AsRef<[u8]>) -> Result<Hash> {
        self.write(key, Op::Del)
    }

    /// The current versions of `key` in this transaction (tombstones included).
    pub fn versions(&self, key: impl AsRef<[u8]>) -> Result<Versions> {
        let id = self.kv.op(key.as_ref(), Op::Del)?.key_id();
        Ok(versions_in(&self.kv.tables, &self.w.txn(), &id)?)
    }

    /// Like [`Kv::get`], in this transaction.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Versions>> {
        let versions = self.versions(key)?;
        Ok(versions.is_present().then_some(versions))
    }

    /// Like [`Kv::write_if`], in this transaction: a mismatch writes nothing and returns
    /// [`KvError::Changed`]; returning that error from `f` aborts the whole batch.
    pub fn write_if(&mut self, key: impl AsRef<[u8]>, expected: &[Hash], op: Op) -> Result<Hash> {
        let current = self.versions(key.as_ref())?.hashes();
        let mut expected = expected.to_vec();
        expected.sort();
        expected.dedup();
        if current != expected {
            return Err(KvError::Changed {
                key: key.as_ref().to_vec(),
                expected,
                current,
            });
        }
        self.write(key, op)
    }

    /// Writes `op` on `key`, superseding every current version.
    pub fn write(&mut self, key: impl AsRef<[u8]>, op: Op) -> Result<Hash> {
        let op = self.kv.op(key.as_ref(), op)?;
        let versions = heads_in(&self.kv.tables, &self.w.txn(), &op.key_id())?;
        let versions = fold_versions(self.w, &op.namespace, &op.key, versions, MAX_LINKS)?;
        let links = self.kv.with_log_heads(&self.w.txn(), versions)?;
        Ok(self.w.add(links, op.encode())?.hash())
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
        self.log.transaction_typed(|w| f(&mut KvBatch { kv: self, w }))
    }
}
