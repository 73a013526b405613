//! Resolving conflicts: a write that links every current version supersedes them all.
//!
//! Nothing here runs by itself. The default is to show a conflict ([`super::Kv::get`] returns
//! every version) until an application resolves it, with its own logic
//! ([`super::Kv::resolve`], [`super::Kv::try_resolve`]), by picking a version
//! ([`super::Kv::resolve_pick`]), with the opt-in deterministic policy
//! ([`super::Kv::resolve_deterministic`]), or with a merge operator it registered
//! ([`super::merge`]). Superseded versions stay in [`super::Kv::history`].

use super::fold::fold_versions;
use super::op::Op;
use super::view::versions_in;
use super::{Kv, KvError, Result, Version};
use crate::hash::Hash;
use crate::node::MAX_LINKS;
use crate::log::Writer;

/// The deterministic policy: the version with the greatest causal depth, ties broken by the
/// greatest hash. It needs no clock and every replica picks the same version from the same
/// set. `None` for an empty set.
///
/// Depth favours the branch with more successive writes on the key, which is arbitrary but
/// stable; an application that knows better should use [`Kv::resolve`].
pub fn winner(versions: &[Version]) -> Option<&Version> {
    versions
        .iter()
        .max_by(|a, b| (a.depth, a.hash).cmp(&(b.depth, b.hash)))
}

impl Kv {
    /// Resolves a conflict on `key` with application logic: when the key is in conflict,
    /// calls `merge(key, versions)` and writes what it returns (a value, or [`Op::Del`])
    /// linking every version it was shown, in the same write transaction as the read. Returns
    /// the new node's hash, or `None` (without calling `merge`) when there was no conflict.
    /// Any number of versions can be resolved: more than one node may link are linked through
    /// fold nodes written in the same transaction (see [`super::fold`]).
    ///
    /// `merge` is called at most once. It runs while the log's write lock is held: keep it
    /// short.
    ///
    /// ```
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// use braidlog::kv::{Kv, Op};
    /// let kv = Kv::open(&log)?;
    /// let root = kv.put(b"n", b"1".to_vec())?;
    /// // Two writes that both saw only `root`: a conflict.
    /// kv.write_with_links(b"n", Op::Put(b"2".to_vec()), [root])?;
    /// kv.write_with_links(b"n", Op::Put(b"5".to_vec()), [root])?;
    /// assert!(kv.get(b"n")?.unwrap().is_conflict());
    ///
    /// // Keep the largest number.
    /// kv.resolve(b"n", |_key, versions| {
    ///     versions.iter().filter_map(|v| v.value()).max().unwrap_or_default().to_vec()
    /// })?;
    /// assert_eq!(kv.get(b"n")?.unwrap().value(), Some(&b"5"[..]));
    /// # Ok(()) }
    /// ```
    pub fn resolve<R: Into<Op>>(
        &self,
        key: impl AsRef<[u8]>,
        mut merge: impl FnMut(&[u8], &[Version]) -> R,
    ) -> Result<Option<Hash>> {
        self.try_resolve::<KvError>(key, |k, v| Ok(merge(k, v).into()))
    }

    /// [`Kv::resolve`] with a merge that may fail: its error is returned and nothing is
    /// written. The read, `merge` and the write are one transaction, so the versions `merge`
    /// saw are exactly the ones the write supersedes.
    ///
    /// ```
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// use braidlog::kv::{Kv, Op};
    /// let kv = Kv::open(&log)?;
    /// let root = kv.put(b"n", b"1".to_vec())?;
    /// kv.write_with_links(b"n", Op::Put(b"2".to_vec()), [root])?;
    /// kv.write_with_links(b"n", Op::Put(b"two".to_vec()), [root])?;
    /// // Any error type that a braidlog::Error converts into.
    /// let r = kv.try_resolve(b"n", |_key, versions| {
    ///     let mut sum = 0u64;
    ///     for v in versions.iter().filter_map(|v| v.value()) {
    ///         sum += String::from_utf8_lossy(v).parse::<u64>()?;
    ///     }
    ///     Ok::<_, Box<dyn std::error::Error>>(Op::Put(sum.to_string().into_bytes()))
    /// });
    /// assert!(r.is_err());                               // "two" is not a number
    /// assert!(kv.get(b"n")?.unwrap().is_conflict());     // nothing written
    /// # Ok(()) }
    /// ```
    pub fn try_resolve<E: From<KvError>>(
        &self,
        key: impl AsRef<[u8]>,
        mut merge: impl FnMut(&[u8], &[Version]) -> std::result::Result<Op, E>,
    ) -> std::result::Result<Option<Hash>, E> {
        let key = key.as_ref();
        let op = self.op(key, Op::Del)?; // validates the key; the op is replaced below
        let id = op.key_id();
        let r = self.log.transaction_typed(|w| {
            let versions = versions_in(&self.tables, &w.txn(), &id)?;
            if !versions.is_conflict() {
                return Ok(Ok(None));
            }
            let merged = match merge(key, versions.as_slice()) {
                Ok(m) => m,
                Err(e) => return Ok(Err(e)),
            };
            let op = super::KvOp {
                op: merged,
                ..op.clone()
            };
            Ok(Ok(Some(self.write_resolution(
                w,
                &op,
                versions.hashes(),
            )?)))
        })?;
        r
    }

    /// Writes `op` superseding `versions` (folded when more than a node may link). It also
    /// links the log's heads, like every other KV write: otherwise the resolution would stay
    /// a head of the log, beside the heads it did not link, until the next write.
    pub(crate) fn write_resolution(
        &self,
        w: &mut Writer<'_, '_>,
        op: &super::KvOp,
        versions: Vec<Hash>,
    ) -> Result<Hash> {
        let links = fold_versions(w, &op.namespace, &op.key, versions, MAX_LINKS)?;
        let links = self.with_log_heads(&w.txn(), links)?;
        Ok(w.add(links, op.encode())?.hash())
    }

    /// Resolves a conflict on `key` by keeping the version whose hash starts with `prefix`
    /// (lowercase hex, as [`Hash`](struct@Hash) displays): writes its value (or tombstone) again,
    /// superseding every version. The lookup and the write are one transaction, so a version
    /// that arrives in between cannot be superseded unseen. `None` when there is no conflict;
    /// [`KvError::NoSuchVersion`] or [`KvError::AmbiguousVersion`] when the prefix matches
    /// no version or several.
    ///
    /// ```
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// use braidlog::kv::{Kv, Op};
    /// let kv = Kv::open(&log)?;
    /// let root = kv.put(b"c", b"red".to_vec())?;
    /// let blue = kv.write_with_links(b"c", Op::Put(b"blue".to_vec()), [root])?;
    /// kv.write_with_links(b"c", Op::Put(b"green".to_vec()), [root])?;
    /// kv.resolve_pick(b"c", &blue.to_string()[..12])?;
    /// assert_eq!(kv.get(b"c")?.unwrap().value(), Some(&b"blue"[..]));
    /// # Ok(()) }
    /// ```
    pub fn resolve_pick(&self, key: impl AsRef<[u8]>, prefix: &str) -> Result<Option<Hash>> {
        let key = key.as_ref();
        self.try_resolve(key, |_, versions| {
            let matching: Vec<&Version> = versions
                .iter()
                .filter(|v| v.hash.to_string().starts_with(prefix))
                .collect();
            match matching.as_slice() {
                [one] => Ok(one.op.clone()),
                [] => Err(KvError::NoSuchVersion {
                    key: key.to_vec(),
                    prefix: prefix.to_string(),
                }),
                many => Err(KvError::AmbiguousVersion {
                    key: key.to_vec(),
                    prefix: prefix.to_string(),
                    matches: many.len(),
                }),
            }
        })
    }

    /// Resolves a conflict on `key` with the deterministic policy ([`winner`]): writes the
    /// winner's value (or tombstone) again, linking every version. `None` when there was no
    /// conflict. Opt-in: nothing resolves conflicts unless asked.
    pub fn resolve_deterministic(&self, key: impl AsRef<[u8]>) -> Result<Option<Hash>> {
        self.resolve(key, |_, versions| {
            winner(versions).map_or(Op::Del, |w| w.op.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(depth: u64, byte: u8) -> Version {
        Version {
            hash: Hash([byte; 32]),
            depth,
            op: Op::Del,
        }
    }

    #[test]
    fn winner_prefers_depth_then_hash() {
        assert_eq!(winner(&[]), None);
        let list = [v(1, 9), v(2, 1), v(2, 3)];
        assert_eq!(winner(&list).unwrap().hash, Hash([3; 32]));
        let list = [v(3, 0), v(2, 255)];
        assert_eq!(winner(&list).unwrap().hash, Hash([0; 32]));
    }
}
