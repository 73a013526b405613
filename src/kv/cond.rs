//! Conditional writes: write only if the key is as the caller saw it.
//!
//! [`Kv::put`] supersedes whatever the key's current versions are when it commits, including
//! versions that arrived by sync after the caller last read the key: right for "set this
//! value", a lost update for "add one to what I read". [`Kv::write_if`] checks, in the write
//! transaction, that the current versions are exactly those the caller read, and otherwise
//! writes nothing and returns [`KvError::Changed`] with the versions now current.
//! [`Kv::update`] wraps the read, the caller's function and the conditional write in a loop.
//! The function runs outside the write lock, so a slow one does not block other writers;
//! the price is that it may run more than once.

use super::fold::fold_versions;
use super::op::Op;
use super::view::heads_in;
use super::{Kv, KvError, Result, Versions};
use crate::hash::Hash;
use crate::node::MAX_LINKS;

/// How many times [`Kv::update`] reads and tries again when the key keeps changing between
/// its read and its write; then it returns the last [`KvError::Changed`].
pub const MAX_UPDATE_TRIES: usize = 64;

fn sorted(hashes: &[Hash]) -> Vec<Hash> {
    let mut v = hashes.to_vec();
    v.sort();
    v.dedup();
    v
}

impl Kv {
    /// Writes `op` on `key` if its current versions are exactly `expected` (in any order;
    /// empty for a key never written), superseding them. Otherwise writes nothing and fails
    /// with [`KvError::Changed`], which carries the current versions. The check and the write
    /// are one transaction.
    ///
    /// ```
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// use braidlog::kv::{Kv, KvError, Op};
    /// let kv = Kv::open(&log)?;
    /// let seen = kv.versions(b"stock")?.hashes();      // never written: empty
    /// kv.write_if(b"stock", &seen, Op::Put(b"10".to_vec()))?;
    /// // `seen` is stale now: the write is refused and says what is current.
    /// let err = kv.write_if(b"stock", &seen, Op::Put(b"11".to_vec())).unwrap_err();
    /// assert!(matches!(err, braidlog::KvError::Changed { .. }));
    /// # Ok(()) }
    /// ```
    pub fn write_if(&self, key: impl AsRef<[u8]>, expected: &[Hash], op: Op) -> Result<Hash> {
        let op = self.op(key.as_ref(), op)?;
        let id = op.key_id();
        let payload = op.encode();
        let expected = sorted(expected);
        self.write_retrying(|w| {
            let current = heads_in(&self.tables, &w.txn(), &id)?;
            if current != expected {
                return Err(KvError::Changed {
                    key: op.key.clone(),
                    expected: expected.clone(),
                    current,
                });
            }
            let links = fold_versions(w, &op.namespace, &op.key, current, MAX_LINKS)?;
            let links = self.with_log_heads(&w.txn(), links)?;
            Ok(w.add(links, payload.clone())?.hash())
        })
    }

    /// [`Kv::write_if`] with a value.
    pub fn put_if(
        &self,
        key: impl AsRef<[u8]>,
        expected: &[Hash],
        value: impl Into<Vec<u8>>,
    ) -> Result<Hash> {
        self.write_if(key, expected, Op::Put(value.into()))
    }

    /// Read-modify-write without lost updates: reads the current versions of `key` (all of
    /// them, so `f` can merge a conflict), writes what `f` returns if the key did not change
    /// meanwhile, and otherwise reads again and calls `f` again, up to [`MAX_UPDATE_TRIES`]
    /// times. `f` may run more than once: keep it free of side effects.
    ///
    /// ```
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// let kv = braidlog::kv::Kv::open(&log)?;
    /// let add = |n: u64| {
    ///     kv.update(b"hits", |versions| {
    ///         let old: u64 = versions.value().map_or(0, |v| String::from_utf8_lossy(v).parse().unwrap());
    ///         (old + n).to_string().into_bytes()
    ///     })
    /// };
    /// add(2)?;
    /// add(3)?;
    /// assert_eq!(kv.get(b"hits")?.unwrap().value(), Some(&b"5"[..]));
    /// # Ok(()) }
    /// ```
    pub fn update<R: Into<Op>>(
        &self,
        key: impl AsRef<[u8]>,
        mut f: impl FnMut(&Versions) -> R,
    ) -> Result<Hash> {
        let r = self.try_update::<KvError>(key, |v| Ok(Some(f(v).into())))?;
        Ok(r.expect("f always returns an operation"))
    }

    /// [`Kv::update`] where `f` may fail (its error is returned, nothing written) or decline
    /// to write (`Ok(None)`, which returns `Ok(None)`).
    pub fn try_update<E: From<KvError>>(
        &self,
        key: impl AsRef<[u8]>,
        mut f: impl FnMut(&Versions) -> std::result::Result<Option<Op>, E>,
    ) -> std::result::Result<Option<Hash>, E> {
        let key = key.as_ref();
        let mut tries = 0;
        loop {
            let versions = self.versions(key)?;
            let Some(op) = f(&versions)? else {
                return Ok(None);
            };
            tries += 1;
            match self.write_if(key, &versions.hashes(), op) {
                Err(KvError::Changed { .. }) if tries < MAX_UPDATE_TRIES => {}
                r => return Ok(Some(r?)),
            }
        }
    }
}
