//! Ancestry within one key's DAG: common ancestors (the merge base), what happened since a
//! set of versions, and the key's history in causal order.
//!
//! Every KV operation links the versions it supersedes, so the operations on a key form a DAG
//! of their own inside the log's (fold nodes are passed through, never reported). A walk here
//! follows only those same-key links, newest first by local feed position (a topological
//! order), and stops as soon as the answer is known: its cost is the number of operations
//! *above* the answer, not the length of the key's history. Each step reads one node and
//! classifies its links (one index lookup each).
//!
//! A peer can build a history whose walk is long (two branches that never meet, say): the
//! walks of one [`Ancestry`] visit at most [`MAX_WALK`] nodes in all, then fail with
//! [`super::KvError::WalkTooLong`]. Merge operators get a smaller budget (see
//! [`super::merge`]).

use std::collections::BTreeMap;

use super::op::{KvOp, Op};
use super::scan::{entry_in, HistoryEntry};
use super::view::{classify, decode_op_record, Linked, Tables};
use super::{Kv, KvError, Result};
use crate::hash::Hash;
use crate::store::ReadTxn;
use crate::store::StorageError;

/// Most nodes the walks of one [`Ancestry`] visit in all (operations and folds).
pub const MAX_WALK: usize = 1 << 20;

/// Ancestry queries on one key, in one read snapshot; see [`super::Snapshot::ancestry`].
/// Merge operators receive one.
pub struct Ancestry<'a> {
    pub(crate) kv: &'a Kv,
    pub(crate) txn: ReadTxn<'a>,
    pub(crate) key: Vec<u8>,
    pub(crate) id: Vec<u8>,
    /// The budget this handle started with (for the error).
    pub(crate) limit: usize,
    /// Nodes its walks may still visit.
    pub(crate) budget: std::cell::Cell<usize>,
}

/// A node met by a walk, with what the walk knows of it.
struct Met {
    hash: Hash,
    /// Which starting versions reach it (merge base), one bit each.
    paint: Vec<u64>,
    /// Reached from a result or a base: below the answer.
    stale: bool,
}

impl<'a> Ancestry<'a> {
    pub(crate) fn new(kv: &'a Kv, txn: ReadTxn<'a>, key: &[u8]) -> Result<Ancestry<'a>> {
        let id = kv.op(key, Op::Del)?.key_id();
        Ok(Ancestry {
            kv,
            txn,
            key: key.to_vec(),
            id,
            limit: MAX_WALK,
            budget: std::cell::Cell::new(MAX_WALK),
        })
    }

    /// A handle whose walks visit at most `budget` nodes in all.
    pub(crate) fn with_budget(mut self, budget: usize) -> Ancestry<'a> {
        self.limit = budget;
        self.budget.set(budget);
        self
    }

    /// Counts one visited node against the budget.
    fn visit(&self) -> Result<()> {
        let left = self.budget.get();
        if left == 0 {
            return Err(self.too_long());
        }
        self.budget.set(left - 1);
        Ok(())
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The operation `hash` wrote, if it is an operation on this key (current or
    /// superseded).
    pub fn op(&self, hash: &Hash) -> Result<Option<Op>> {
        if !self.is_op(hash)? {
            return Ok(None);
        }
        let node = self.kv.log.get_in(self.txn, hash)?;
        Ok(node.and_then(|n| KvOp::decode(n.payload())).map(|op| op.op))
    }

    /// The causal depth of an operation on this key (see [`super::Version::depth`]).
    pub fn depth(&self, hash: &Hash) -> Result<Option<u64>> {
        match self.txn.get(self.kv.tables.ops, hash.as_bytes())? {
            Some(r) => {
                let (depth, id) = decode_op_record(r)?;
                Ok((id == self.id.as_slice()).then_some(depth))
            }
            None => Ok(None),
        }
    }

    fn is_op(&self, hash: &Hash) -> Result<bool> {
        Ok(self.depth(hash)?.is_some())
    }

    fn tables(&self) -> &Tables {
        &self.kv.tables
    }

    fn seq_of(&self, hash: &Hash) -> Result<u64> {
        self.kv
            .log
            .store()
            .index
            .seq_of(self.txn, hash)?
            .ok_or_else(|| {
                StorageError::Corrupt(format!("kv ancestry: {hash} is not stored")).into()
            })
    }

    /// The same-key links of an operation or fold: what it supersedes directly.
    fn parents(&self, hash: &Hash) -> Result<Vec<Hash>> {
        let node =
            self.kv.log.get_in(self.txn, hash)?.ok_or_else(|| {
                StorageError::Corrupt(format!("kv ancestry: {hash} is not stored"))
            })?;
        let mut txn = self.txn;
        let mut out = Vec::new();
        for link in node.links() {
            match classify(self.tables(), &mut txn, link, &self.id)? {
                Linked::Version(_) | Linked::Fold(_) => out.push(*link),
                Linked::Other => {}
            }
        }
        Ok(out)
    }

    /// Checks that every hash is an operation on this key.
    fn check_ops(&self, hashes: &[Hash]) -> Result<()> {
        for h in hashes {
            if !self.is_op(h)? {
                return Err(KvError::NotAnOperation {
                    key: self.key.clone(),
                    hash: *h,
                });
            }
        }
        Ok(())
    }

    fn too_long(&self) -> KvError {
        KvError::WalkTooLong {
            key: self.key.clone(),
            limit: self.limit,
        }
    }

    /// The merge base of `versions`: the operations on this key that are ancestors of (or
    /// equal to) every one of them, and not ancestors of another such operation. Usually one;
    /// none when the versions share no history (two replicas created the key independently);
    /// several after criss-cross merges. In hash order.
    ///
    /// Cost: the operations above the base (and the few beside it the walk meets before it
    /// knows), each one node read; independent of the history below the base.
    pub fn merge_base(&self, versions: &[Hash]) -> Result<Vec<Hash>> {
        let mut tips = versions.to_vec();
        tips.sort();
        tips.dedup();
        self.check_ops(&tips)?;
        if tips.len() <= 1 {
            return Ok(tips);
        }
        let words = tips.len().div_ceil(64);
        let full = |paint: &[u64]| {
            paint.iter().enumerate().all(|(i, w)| {
                let bits = (tips.len() - i * 64).min(64);
                let want = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                *w == want
            })
        };
        let mut frontier: BTreeMap<u64, Met> = BTreeMap::new();
        for (i, t) in tips.iter().enumerate() {
            let seq = self.seq_of(t)?;
            let met = frontier.entry(seq).or_insert_with(|| Met {
                hash: *t,
                paint: vec![0; words],
                stale: false,
            });
            met.paint[i / 64] |= 1 << (i % 64);
        }
        // Entries of the frontier not yet known to be below the answer.
        let mut live = frontier.len();
        let mut out = Vec::new();
        while let Some((_, met)) = frontier.pop_last() {
            if live == 0 {
                break;
            }
            self.visit()?;
            if !met.stale {
                live -= 1;
            }
            let result = !met.stale && full(&met.paint) && self.is_op(&met.hash)?;
            if result {
                out.push(met.hash);
            }
            let stale = met.stale || result;
            for p in self.parents(&met.hash)? {
                let seq = self.seq_of(&p)?;
                let next = frontier.entry(seq).or_insert_with(|| {
                    live += 1;
                    Met {
                        hash: p,
                        paint: vec![0; words],
                        stale: false,
                    }
                });
                if stale {
                    if !next.stale {
                        next.stale = true;
                        live -= 1;
                    }
                } else {
                    for (a, b) in next.paint.iter_mut().zip(&met.paint) {
                        *a |= b;
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The operations that are ancestors of (or equal to) some of `versions` but neither
    /// ancestors of nor equal to any of `bases`: what happened since `bases`. Oldest first
    /// (descending local feed order reversed, a causal order). With `bases` empty, the
    /// whole history behind `versions`.
    pub fn since(&self, bases: &[Hash], versions: &[Hash]) -> Result<Vec<Hash>> {
        self.check_ops(bases)?;
        self.check_ops(versions)?;
        let mut frontier: BTreeMap<u64, (Hash, bool)> = BTreeMap::new();
        for (hashes, stale) in [(versions, false), (bases, true)] {
            for h in hashes {
                let e = frontier.entry(self.seq_of(h)?).or_insert((*h, stale));
                e.1 |= stale;
            }
        }
        let mut live = frontier.values().filter(|e| !e.1).count();
        let mut out = Vec::new();
        while live > 0 {
            let Some((_, (hash, stale))) = frontier.pop_last() else {
                break;
            };
            self.visit()?;
            if !stale {
                live -= 1;
                if self.is_op(&hash)? {
                    out.push(hash);
                }
            }
            for p in self.parents(&hash)? {
                let e = frontier.entry(self.seq_of(&p)?).or_insert_with(|| {
                    if !stale {
                        live += 1;
                    }
                    (p, stale)
                });
                if stale && !e.1 {
                    e.1 = true;
                    live -= 1;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `of`.
    pub fn is_ancestor(&self, ancestor: &Hash, of: &Hash) -> Result<bool> {
        // Nothing behind `ancestor` is missing from behind `of`.
        Ok(self.since(&[*of], &[*ancestor])?.is_empty())
    }

    /// The full history entry of an operation on this key.
    pub fn entry(&self, hash: &Hash) -> Result<Option<HistoryEntry>> {
        if !self.is_op(hash)? {
            return Ok(None);
        }
        let seq = self.seq_of(hash)?;
        entry_in(self.kv, self.txn, &self.id, seq, *hash).map(Some)
    }
}

impl super::Snapshot<'_> {
    /// Ancestry queries on `key` in this snapshot (merge base, history since).
    pub fn ancestry(&self, key: impl AsRef<[u8]>) -> Result<Ancestry<'_>> {
        Ancestry::new(self.kv, *self.txn, key.as_ref())
    }
}

impl Kv {
    /// The merge base of `versions` of `key`: see [`Ancestry::merge_base`].
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// use braidlog::kv::{Kv, Op};
    /// let kv = Kv::open(&log)?;
    /// let base = kv.put(b"k", b"1".to_vec())?;
    /// let x = kv.write(b"k", Write::from(Op::Put(b"2".to_vec())).superseding([base]))?;
    /// let y = kv.write(b"k", Write::from(Op::Put(b"3".to_vec())).superseding([base]))?;
    /// assert_eq!(kv.merge_base(b"k", &[x, y])?, vec![base]);
    /// # Ok(()) }
    /// ```
    pub fn merge_base(&self, key: impl AsRef<[u8]>, versions: &[Hash]) -> Result<Vec<Hash>> {
        self.read(|snap| snap.ancestry(key)?.merge_base(versions))
    }

    /// The operations on `key` that happened since `version`: those behind the current
    /// versions that are neither `version` nor its ancestors (concurrent writes included),
    /// oldest first in causal order. Costs the operations since, not the whole history.
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// let kv = braidlog::kv::Kv::open(&log)?;
    /// let seen = kv.put(b"k", b"1".to_vec())?;
    /// let a = kv.put(b"k", b"2".to_vec())?;
    /// let b = kv.put(b"k", b"3".to_vec())?;
    /// let since: Vec<_> = kv.history_since(b"k", seen)?.into_iter().map(|e| e.hash).collect();
    /// assert_eq!(since, [a, b]);
    /// # Ok(()) }
    /// ```
    pub fn history_since(&self, key: impl AsRef<[u8]>, version: Hash) -> Result<Vec<HistoryEntry>> {
        self.read(|snap| {
            let anc = snap.ancestry(key)?;
            let current = super::view::heads_in(&self.tables, snap.txn, &anc.id)?;
            let since = anc.since(&[version], &current)?;
            let mut out = Vec::with_capacity(since.len());
            for h in since {
                out.extend(anc.entry(&h)?);
            }
            sort_causal(&mut out);
            Ok(out)
        })
    }

    /// Every operation ever applied to `key`, in causal order: by causal depth, then hash.
    /// An operation always comes after the ones it supersedes, and every replica holding the
    /// same operations lists them in the same order (unlike [`Kv::history`], which is local
    /// arrival order). Reads the whole history into memory.
    pub fn history_causal(&self, key: impl AsRef<[u8]>) -> Result<Vec<HistoryEntry>> {
        let mut out = self.history(key).collect::<Result<Vec<_>>>()?;
        sort_causal(&mut out);
        Ok(out)
    }
}

/// Depth then hash: a topological order (depth grows along same-key links) that does not
/// depend on arrival.
fn sort_causal(entries: &mut [HistoryEntry]) {
    entries.sort_by_key(|e| (e.depth, e.hash));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Write;

    /// The walk budget, tested at a small size: a walk of exactly its budget succeeds, one
    /// node less fails with the typed error, and so does a budget far below it.
    #[test]
    fn walks_stop_at_their_limit_with_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::Log::open(dir.path()).unwrap();
        let kv = Kv::open(&log).unwrap();
        let root = kv.put(b"k", b"r".to_vec()).unwrap();
        let mut sides = Vec::new();
        for side in 0..2u8 {
            let mut at = root;
            for i in 0..50u8 {
                at = kv
                    .write(b"k", Write::from(Op::Put(vec![side, i])).superseding([at]))
                    .unwrap();
            }
            sides.push(at);
        }
        let walk = |limit: usize| {
            kv.read(|snap| snap.ancestry(b"k")?.with_budget(limit).merge_base(&sides))
        };
        // 100 operations above the root, then the root itself.
        assert_eq!(walk(101).unwrap(), vec![root]);
        for limit in [100, 10, 1] {
            let err = walk(limit).unwrap_err();
            assert!(
                matches!(err, KvError::WalkTooLong { limit: l, .. } if l == limit),
                "{err}"
            );
        }
        let since = kv.read(|snap| snap.ancestry(b"k")?.with_budget(5).since(&[root], &sides));
        assert!(since.is_err());
    }
}
