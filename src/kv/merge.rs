//! Merge operators: application merges that run by themselves when a conflict appears.
//!
//! An operator is registered for a key prefix of one namespace ([`Kv::register_merge`]).
//! At the end of every write transaction that stored operations on matching keys (a local
//! write with explicit links, or a batch received by sync), each such key that is now in
//! conflict is resolved in the same transaction: the operator sees the current versions
//! (and their ancestry, through [`Ancestry`]) and returns the value that supersedes them all.
//! Readers never see the conflict on this replica, and a crash cannot leave it half merged.
//!
//! # The determinism rule
//! An operator must be a pure function of the versions it is given and their history: no
//! clock, no randomness, no state outside the log, no dependence on which replica runs it.
//! And given versions that all hold one value, it must return that value. Then two replicas
//! that merge the same versions write the same value. Their merge nodes still differ (each
//! names its author), so after they sync the key has two current versions; the operator is
//! asked again, returns the value both already hold, and nothing is written: the next
//! ordinary write supersedes both. If replicas merged *different* sets of versions (one had
//! seen more than the other), their merges may disagree; every replica then holds the same
//! versions, merges them the same way, and the round ends there. Without the rule, replicas
//! could resolve each other's resolutions forever.
//!
//! The operator runs whenever a key has several current versions, even with equal values:
//! two concurrent "+1" writes from one base carry the same bytes, and only the operator
//! knows they are two increments.
//!
//! An operator that cannot merge (a value it does not understand, perhaps written by a
//! hostile peer) returns `Ok(None)`: the conflict stays for a person or a later write. An
//! error of the key-value layer ([`super::KvError`], such as a walk past [`super::MAX_WALK`])
//! does the same; a storage error fails the write, as any write's would.
//!
//! Operators are not stored: register the same ones on every replica, each time a process
//! opens the log. Registering one also merges the conflicts its prefix already has.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::ancestry::Ancestry;
use super::op::{KvOp, Op};
use super::scan::Scan;
use super::view::{versions_in, Tables};
use super::{Kv, Version};
use super::{KvError, Result};
use crate::hash::Hash;
use crate::log::{AfterWrite, LogError, WeakLog, Writer};

/// An application merge: an operator that runs by itself when a conflict appears.
///
/// An operator is registered for a key prefix of one namespace ([`Kv::register_merge`]).
/// At the end of every write transaction that stored operations on matching keys (a local
/// write with explicit links, or a batch received by sync), each such key that is now in
/// conflict is resolved in the same transaction: the operator sees the current versions
/// (and their ancestry, through [`Ancestry`]) and returns the value that supersedes them all.
/// Readers never see the conflict on this replica, and a crash cannot leave it half merged.
///
/// # The determinism rule
/// An operator must be a pure function of the versions it is given and their history: no
/// clock, no randomness, no state outside the log, no dependence on which replica runs it.
/// And given versions that all hold one value, it must return that value. Then two replicas
/// that merge the same versions write the same value. Their merge nodes still differ (each
/// names its author), so after they sync the key has two current versions; the operator is
/// asked again, returns the value both already hold, and nothing is written: the next
/// ordinary write supersedes both. If replicas merged *different* sets of versions (one had
/// seen more than the other), their merges may disagree; every replica then holds the same
/// versions, merges them the same way, and the round ends there. Without the rule, replicas
/// could resolve each other's resolutions forever.
///
/// The operator runs whenever a key has several current versions, even with equal values:
/// two concurrent "+1" writes from one base carry the same bytes, and only the operator
/// knows they are two increments.
///
/// An operator that cannot merge (a value it does not understand, perhaps written by a
/// hostile peer) returns `Ok(None)`: the conflict stays for a person or a later write. An
/// error of the key-value layer ([`super::KvError`], such as a walk past [`super::MAX_WALK`])
/// does the same; a storage error fails the write, as any write's would.
///
/// Operators are not stored: register the same ones on every replica, each time a process
/// opens the log. Registering one also merges the conflicts its prefix already has.
///
/// ```
/// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
/// # fn main() -> Result<(), braidlog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = braidlog::Log::open(dir.path())?;
/// use braidlog::kv::{Ancestry, Kv, Merge, Op, Version};
///
/// /// Keeps the greatest value (bytewise): a pure function of the versions.
/// struct Max;
/// impl Merge for Max {
///     fn merge(&self, versions: &[Version], _: &Ancestry<'_>) -> braidlog::kv::Result<Option<Op>> {
///         Ok(versions.iter().filter_map(|v| v.value()).max().map(|v| Op::Put(v.to_vec())))
///     }
/// }
///
/// let kv = Kv::open(&log)?;
/// kv.register_merge("score/", Max)?;
/// let root = kv.put("score/ada", "3")?;
/// kv.write("score/ada", Write::from(Op::Put(b"7".to_vec())).superseding([root]))?;
/// kv.write("score/ada", Write::from(Op::Put(b"5".to_vec())).superseding([root]))?; // a conflict...
/// let v = kv.get("score/ada")?.unwrap();
/// assert_eq!(v.value(), Some(&b"7"[..]));                            // ...merged at once
/// # Ok(()) }
/// ```
pub trait Merge: Send + Sync + 'static {
    /// The operation that supersedes `versions` (two or more, in hash order; their values
    /// may be equal), or `None` to leave them. When every version holds the value this
    /// returns, nothing is written.
    fn merge(&self, versions: &[Version], ancestry: &Ancestry<'_>) -> Result<Option<Op>>;
}

struct Registration {
    ns: Vec<u8>,
    prefix: Vec<u8>,
    op: Arc<dyn Merge>,
}

/// Nodes the merge operators of one write transaction may walk in all, besides
/// [`OPERATOR_WALK_PER_NODE`] for each node the write stored.
pub const OPERATOR_WALK: usize = 1 << 16;

/// Walk budget the operators get for each node a write stored.
pub const OPERATOR_WALK_PER_NODE: usize = 64;

/// The operators of one log: a hook run at the end of its writes.
pub(crate) struct Operators {
    /// The log this hook runs in (weak: the log holds its hooks).
    log: WeakLog,
    tables: Tables,
    list: RwLock<Vec<Registration>>,
    /// [`OPERATOR_WALK`], lowered by tests.
    walk: AtomicUsize,
}

impl Operators {
    /// The operator for a key: the longest registered prefix in its namespace.
    fn find(&self, ns: &[u8], key: &[u8]) -> Option<Arc<dyn Merge>> {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .filter(|r| r.ns == ns && key.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len())
            .map(|r| r.op.clone())
    }
}

impl AfterWrite for Operators {
    fn after_write(&self, w: &mut Writer<'_, '_>, after: u64) -> Result<(), LogError> {
        if self
            .list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            return Ok(());
        }
        // The keys written, each once, in key order (so merges are written in a fixed order).
        let mut keys = std::collections::BTreeMap::new();
        let Some(log) = self.log.upgrade() else {
            return Ok(()); // the log is being dropped: no write can be running
        };
        let store = log.store();
        for rec in store.feed.after(w.txn(), after)? {
            let rec = rec?;
            // Written by this transaction, from nodes already checked: no second hash check.
            let node = crate::node::Node::decode_trusted(rec.bytes, rec.hash)?;
            if let Some(op) = KvOp::decode(node.payload()) {
                if let Some(merge) = self.find(&op.namespace, &op.key) {
                    keys.insert((op.namespace, op.key), merge);
                }
            }
        }
        // A peer pays for the work its nodes cause: one small node could otherwise make every
        // replica walk a long history.
        let stored = usize::try_from(w.seq() - after).unwrap_or(usize::MAX);
        let mut budget = (self.walk.load(Ordering::Relaxed))
            .saturating_add(stored.saturating_mul(OPERATOR_WALK_PER_NODE));
        for ((ns, key), merge) in keys {
            let kv = Kv {
                log: log.clone(),
                tables: self.tables,
                ns,
            };
            kv.merge_in(w, &key, &*merge, &mut budget)
                .map_err(KvError::into_log)?;
        }
        Ok(())
    }
}

impl Kv {
    /// Registers `op` to merge conflicts on keys of this namespace starting with `prefix`
    /// (empty: every key of the namespace) whenever a write or a sync creates one, and
    /// merges the conflicts those keys have now. The longest matching prefix wins;
    /// registering the same prefix again replaces its operator. Applies to every handle on
    /// this log in this process.
    pub fn register_merge(&self, prefix: impl AsRef<[u8]>, op: impl Merge) -> Result<()> {
        let tables = self.tables;
        let ops = self.log.hook(|| Operators {
            log: self.log.downgrade(),
            tables,
            list: RwLock::new(Vec::new()),
            walk: AtomicUsize::new(OPERATOR_WALK),
        });
        let prefix = prefix.as_ref().to_vec();
        {
            let mut list = ops.list.write().unwrap_or_else(|e| e.into_inner());
            list.retain(|r| !(r.ns == self.ns && r.prefix == prefix));
            list.push(Registration {
                ns: self.ns.clone(),
                prefix: prefix.clone(),
                op: Arc::new(op),
            });
        }
        let keys: Vec<Vec<u8>> = Scan::conflicts(self.clone())
            .map(|e| e.map(|e| e.key))
            .filter(|k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
            .collect::<Result<_>>()?;
        for key in keys {
            if let Some(merge) = ops.find(&self.ns, &key) {
                let mut budget = super::MAX_WALK;
                self.log
                    .transaction_typed(|w| self.merge_in(w, &key, &*merge, &mut budget))?;
            }
        }
        Ok(())
    }

    /// Merges `key` with `merge` in `w` if it has several versions; returns the merge node.
    /// Its walks spend from `budget`.
    fn merge_in(
        &self,
        w: &mut Writer<'_, '_>,
        key: &[u8],
        merge: &dyn Merge,
        budget: &mut usize,
    ) -> Result<Option<Hash>> {
        let op = self.op(key, Op::Del)?;
        let versions = versions_in(&self.tables, &w.txn(), &op.key_id())?;
        // Versions with equal values count too: two concurrent "+1" from one base write the
        // same bytes, and only the operator knows they are two increments.
        if versions.len() < 2 || !versions.is_present() {
            return Ok(None);
        }
        let merged = {
            let ancestry = Ancestry::new(self, w.txn(), key)?.with_budget(*budget);
            let merged = merge.merge(versions.as_slice(), &ancestry);
            *budget = ancestry.budget.get();
            merged
        };
        let merged = match merged {
            Ok(Some(m)) => m,
            // The operator declined, or could not read what it needed: the conflict stays.
            Err(e @ KvError::Log(_)) => return Err(e),
            Ok(None) | Err(_) => return Ok(None),
        };
        if versions.iter().all(|v| v.op == merged) {
            // Already merged: the versions are merges of the same conflict by several
            // replicas. Writing again would start the round that never ends.
            return Ok(None);
        }
        let op = KvOp { op: merged, ..op };
        self.write_resolution(w, &op, versions.hashes()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Counter;
    use crate::kv::{KvRead, Write};

    /// One small node must not buy a long walk: past the write's budget the operator
    /// declines, the write still commits, and the conflict stays visible until a write with
    /// budget enough (or a person) merges it.
    #[test]
    fn operators_stop_at_the_write_budget_and_leave_the_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::Log::open(dir.path()).unwrap();
        let kv = Kv::open(&log).unwrap();
        kv.register_merge("c/", Counter).unwrap();
        let ops = log.hook::<Operators>(|| unreachable!("registered above"));
        let root = Counter::add(&kv, "c/k", 1).unwrap();
        for _ in 0..200 {
            Counter::add(&kv, "c/k", 1).unwrap();
        }
        let side = |total: i64| {
            let op = Op::Put(Counter::encode(total, 1));
            kv.write("c/k", Write::from(op).superseding([root]))
                .unwrap()
        };
        // A node branching at the root: the merge would walk 200 operations, the write
        // stored one node, and the base budget is 0: 64 nodes.
        ops.walk.store(0, Ordering::Relaxed);
        side(2);
        let versions = kv.get("c/k").unwrap().unwrap();
        assert!(versions.is_conflict(), "declined, not failed");
        assert_eq!(
            Counter::value(&kv, "c/k").unwrap(),
            202,
            "read without the budget"
        );
        // With the default budget the next such node merges every version.
        ops.walk.store(OPERATOR_WALK, Ordering::Relaxed);
        side(2);
        let versions = kv.get("c/k").unwrap().unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(Counter::value(&kv, "c/k").unwrap(), 203);
    }
}
