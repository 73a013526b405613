//! Resolving conflicts: a write that links every current version supersedes them all.
//!
//! Nothing here runs by itself. The default is to show a conflict (`KvRead::get` returns
//! every version) until an application resolves it with [`Kv::resolve`] and a [`Strategy`]:
//! its own logic ([`MergeFn`], or a fallible closure), picking a version ([`Pick`]), the
//! opt-in deterministic policy ([`Deterministic`]); or with a merge operator it registered
//! ([`super::merge`]). Superseded versions stay in [`super::Kv::history`].

use super::fold::fold_versions;
use super::op::Op;
use super::view::versions_in;
use super::{Kv, KvError, Result, Version};
use crate::hash::Hash;
use crate::log::Writer;
use crate::node::MAX_LINKS;

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

/// How [`Kv::resolve`] chooses the operation that supersedes a key's versions.
///
/// Implemented by:
/// - [`MergeFn`]: the application's own merge, a closure (`MergeFn::new`, or
///   `MergeFn::fallible` for one that may fail: its error is returned and nothing written);
/// - [`Pick`]: keep the version whose hash starts with a prefix;
/// - [`Deterministic`]: the opt-in deterministic policy ([`winner`]).
pub trait Strategy {
    /// What choosing may fail with (a [`KvError`] converts into it).
    type Error: From<KvError>;
    /// The operation to write, from the key and its current versions (at least two). It runs
    /// while the log's write lock is held: keep it short.
    fn choose(&mut self, key: &[u8], versions: &[Version]) -> std::result::Result<Op, Self::Error>;
}

/// The application's merge as a [`Strategy`]: a closure from the key and its versions to the
/// operation to write (a value, or [`Op::Del`]).
pub struct MergeFn<F, E = KvError> {
    f: F,
    error: std::marker::PhantomData<fn() -> E>,
}

impl<F> MergeFn<F, KvError> {
    /// A merge that cannot fail.
    pub fn new<R>(mut f: F) -> MergeFn<impl FnMut(&[u8], &[Version]) -> Result<Op>, KvError>
    where
        F: FnMut(&[u8], &[Version]) -> R,
        R: Into<Op>,
    {
        MergeFn {
            f: move |k: &[u8], v: &[Version]| Ok(f(k, v).into()),
            error: std::marker::PhantomData,
        }
    }
}

impl<F, E> MergeFn<F, E> {
    /// A merge that may fail: its error (any type a [`KvError`] converts into) is returned
    /// and nothing is written.
    // The return type names the closure's signature: an alias would need the same bounds.
    #[allow(clippy::type_complexity)]
    pub fn fallible<R>(
        mut f: F,
    ) -> MergeFn<impl FnMut(&[u8], &[Version]) -> std::result::Result<Op, E>, E>
    where
        F: FnMut(&[u8], &[Version]) -> std::result::Result<R, E>,
        R: Into<Op>,
    {
        MergeFn {
            f: move |k: &[u8], v: &[Version]| f(k, v).map(Into::into),
            error: std::marker::PhantomData,
        }
    }
}

impl<F, E> Strategy for MergeFn<F, E>
where
    F: FnMut(&[u8], &[Version]) -> std::result::Result<Op, E>,
    E: From<KvError>,
{
    type Error = E;
    fn choose(&mut self, key: &[u8], versions: &[Version]) -> std::result::Result<Op, E> {
        (self.f)(key, versions)
    }
}

/// Keeps the version whose hash starts with this prefix (lowercase hex, as
/// [`Hash`](struct@Hash) displays): its value (or tombstone) is written again, superseding
/// every version. [`KvError::NoSuchVersion`] or [`KvError::AmbiguousVersion`] when the
/// prefix matches no version or several.
pub struct Pick<'a>(pub &'a str);

impl Strategy for Pick<'_> {
    type Error = KvError;
    fn choose(&mut self, key: &[u8], versions: &[Version]) -> Result<Op> {
        let prefix = self.0;
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
    }
}

/// The opt-in deterministic policy: the [`winner`]'s value (or tombstone) is written again.
/// Every replica picks the same version from the same set, with no clock; a replica's writer
/// can favour its own versions by choosing their depth and timestamps, so an application that
/// knows better merges with its own logic.
pub struct Deterministic;

impl Strategy for Deterministic {
    type Error = KvError;
    fn choose(&mut self, _: &[u8], versions: &[Version]) -> Result<Op> {
        Ok(winner(versions).map_or(Op::Del, |w| w.op.clone()))
    }
}

impl Kv {
    /// Resolves a conflict on `key`: when the key is in conflict, `strategy` chooses the
    /// operation, which is written linking every version it was shown, in the same write
    /// transaction as the read (a version that arrives in between cannot be superseded
    /// unseen). Returns the new node's hash, or `None` (without asking `strategy`) when there
    /// was no conflict. Any number of versions can be resolved: more than one node may link
    /// are linked through fold nodes written in the same transaction (see [`Fold`](super::Fold)).
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// use braidlog::kv::{Kv, KvRead, MergeFn, Pick, Write};
    /// let kv = Kv::open(&log)?;
    /// let root = kv.put(b"n", b"1".to_vec())?;
    /// // Two writes that both saw only `root`: a conflict.
    /// kv.write(b"n", Write::put("2").superseding([root]))?;
    /// kv.write(b"n", Write::put("5").superseding([root]))?;
    /// assert!(kv.get(b"n")?.unwrap().is_conflict());
    ///
    /// // Keep the largest number.
    /// let merged = kv.resolve(b"n", MergeFn::new(|_key, versions| {
    ///     versions.iter().filter_map(|v| v.value()).max().unwrap_or_default().to_vec()
    /// }))?;
    /// assert_eq!(kv.get(b"n")?.unwrap().value(), Some(&b"5"[..]));
    ///
    /// // Or pick a version by a prefix of its hash.
    /// kv.write(b"n", Write::put("6").superseding([root]))?;
    /// kv.resolve(b"n", Pick(&merged.unwrap().to_string()[..12]))?;
    /// assert_eq!(kv.get(b"n")?.unwrap().value(), Some(&b"5"[..]));
    /// # Ok(()) }
    /// ```
    pub fn resolve<S: Strategy>(
        &self,
        key: impl AsRef<[u8]>,
        mut strategy: S,
    ) -> std::result::Result<Option<Hash>, S::Error> {
        let key = key.as_ref();
        let op = self.op(key, Op::Del)?; // validates the key; the op is replaced below
        let id = op.key_id();
        let r = self.log.transaction_typed(|w| {
            let versions = versions_in(&self.tables, &w.txn(), &id)?;
            if !versions.is_conflict() {
                return Ok(Ok(None));
            }
            let merged = match strategy.choose(key, versions.as_slice()) {
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
