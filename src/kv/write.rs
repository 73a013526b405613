//! The one key-value write: an operation, and what it supersedes, expects and links.
//!
//! [`Kv::write`] and [`KvBatch::write`](super::KvBatch::write) take a [`Write`]; [`Kv::put`]
//! and [`Kv::del`] are that write with its defaults. Every variation is an option on the
//! same write, in the same transaction as its read of the current versions:
//! - by default the write supersedes every current version of the key;
//! - [`Write::superseding`] names the versions it supersedes instead (the low-level write
//!   for application merge logic: linking none makes it concurrent with every version);
//! - [`Write::expecting`] refuses to write, with [`KvError::Changed`], unless the current
//!   versions are exactly those (a compare-and-swap);
//! - [`Write::linking`] adds links to any stored nodes, which supersede nothing.
//!
//! More versions than one node may link ([`MAX_LINKS`]) are linked through fold nodes
//! written in the same transaction (see [`Fold`](super::Fold)).

use super::fold::fold_versions;
use super::op::{KvOp, Op};
use super::view::heads_in;
use super::{Kv, KvError, Result};
use crate::hash::Hash;
use crate::log::Writer;
use crate::node::MAX_LINKS;

/// A key-value write and its options.
///
/// [`Kv::write`] and [`KvBatch::write`](super::KvBatch::write) take a [`Write`]; [`Kv::put`]
/// and [`Kv::del`] are that write with its defaults. Every variation is an option on the
/// same write, in the same transaction as its read of the current versions:
/// - by default the write supersedes every current version of the key;
/// - [`Write::superseding`] names the versions it supersedes instead (the low-level write
///   for application merge logic: linking none makes it concurrent with every version);
/// - [`Write::expecting`] refuses to write, with [`KvError::Changed`], unless the current
///   versions are exactly those (a compare-and-swap);
/// - [`Write::linking`] adds links to any stored nodes, which supersede nothing.
///
/// More versions than one node may link ([`MAX_LINKS`]) are linked through fold nodes
/// written in the same transaction (see [`Fold`](super::Fold)).
///
/// ```
/// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
/// # fn main() -> Result<(), braidlog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = braidlog::Log::open(dir.path())?;
/// use braidlog::kv::{Kv, KvError, Write};
/// let kv = Kv::open(&log)?;
/// let base = kv.put("k", "base")?;
/// // Two writes that both saw only `base` (as after a sync): a conflict.
/// let x = kv.write("k", Write::put("x").superseding([base]))?;
/// let y = kv.write("k", Write::del().superseding([base]))?;
/// assert!(kv.get("k")?.unwrap().is_conflict());
/// // A compare-and-swap on a stale read is refused and says what is current.
/// let err = kv.write("k", Write::put("z").expecting(&[base])).unwrap_err();
/// assert!(matches!(err, KvError::Changed { .. }));
/// // Seen both: this write supersedes them.
/// let mut seen = vec![x, y];
/// seen.sort();
/// kv.write("k", Write::put("merged").expecting(&seen))?;
/// assert_eq!(kv.get("k")?.unwrap().value(), Some(&b"merged"[..]));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Write {
    op: Op,
    /// `None`: every current version.
    supersede: Option<Vec<Hash>>,
    /// Sorted and deduplicated; `None`: no check.
    expected: Option<Vec<Hash>>,
    extra: Vec<Hash>,
}

impl Write {
    /// A write of `value`.
    pub fn put(value: impl Into<Vec<u8>>) -> Write {
        Write::from(Op::Put(value.into()))
    }

    /// A delete (a tombstone version).
    pub fn del() -> Write {
        Write::from(Op::Del)
    }

    /// Supersedes exactly `versions` (and links nothing else of the log), whatever the current
    /// versions are. Links to nodes that are not operations on the key supersede nothing.
    pub fn superseding(mut self, versions: impl IntoIterator<Item = Hash>) -> Write {
        self.supersede = Some(versions.into_iter().collect());
        self
    }

    /// Writes only if the key's current versions are exactly `versions` (in any order);
    /// otherwise nothing is written and the result is [`KvError::Changed`].
    pub fn expecting(mut self, versions: &[Hash]) -> Write {
        let mut v = versions.to_vec();
        v.sort();
        v.dedup();
        self.expected = Some(v);
        self
    }

    /// Also links `extra` (any stored nodes: an app may tie a write to whatever it was based
    /// on). They supersede nothing, unless they are versions of the key.
    pub fn linking(mut self, extra: impl IntoIterator<Item = Hash>) -> Write {
        self.extra.extend(extra);
        self
    }

    /// The operation written.
    pub fn op(&self) -> &Op {
        &self.op
    }
}

impl From<Op> for Write {
    fn from(op: Op) -> Write {
        Write {
            op,
            supersede: None,
            expected: None,
            extra: Vec::new(),
        }
    }
}

impl Kv {
    /// Writes on `key`: an [`Op`] (superseding every current version) or a [`Write`] with
    /// options. Returns the new node's hash. The read of the current versions and the write
    /// are one transaction, so local writes never conflict with each other.
    pub fn write(&self, key: impl AsRef<[u8]>, write: impl Into<Write>) -> Result<Hash> {
        let write = write.into();
        let op = self.op(key.as_ref(), write.op.clone())?;
        self.write_retrying(|w| self.write_in(w, &op, &write))
    }

    /// Sets `key` to `value`, superseding every current version (`Write::put`).
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) -> Result<Hash> {
        self.write(key, Write::put(value))
    }

    /// Deletes `key`: a tombstone superseding every current version (`Write::del`). The key
    /// is absent afterwards (unless a concurrent put arrives). Writes even when it is absent.
    pub fn del(&self, key: impl AsRef<[u8]>) -> Result<Hash> {
        self.write(key, Write::del())
    }

    /// The write, inside a transaction (a `Kv::write`'s own, or a batch's).
    pub(crate) fn write_in(
        &self,
        w: &mut Writer<'_, '_>,
        op: &KvOp,
        write: &Write,
    ) -> Result<Hash> {
        let room = MAX_LINKS.saturating_sub(write.extra.len());
        let links = match &write.supersede {
            None => {
                let current = heads_in(&self.tables, &w.txn(), &op.key_id())?;
                check_expected(op, write, &current)?;
                let mut links = fold_versions(w, &op.namespace, &op.key, current, room)?;
                links.extend_from_slice(&write.extra);
                self.with_log_heads(&w.txn(), links)?
            }
            Some(given) => {
                if write.expected.is_some() {
                    let current = heads_in(&self.tables, &w.txn(), &op.key_id())?;
                    check_expected(op, write, &current)?;
                }
                let mut links = fold_versions(w, &op.namespace, &op.key, given.clone(), room)?;
                links.extend_from_slice(&write.extra);
                links
            }
        };
        Ok(w.add(links, op.encode())?.hash())
    }
}

fn check_expected(op: &KvOp, write: &Write, current: &[Hash]) -> Result<()> {
    match &write.expected {
        Some(expected) if expected.as_slice() != current => Err(KvError::Changed {
            key: op.key.clone(),
            expected: expected.clone(),
            current: current.to_vec(),
        }),
        _ => Ok(()),
    }
}
