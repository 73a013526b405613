//! The `kv_model` check's replicas: a `Log` with its `Kv`, and the nodes it holds in arrival
//! order.

use std::collections::HashSet;
use std::path::Path;

use super::model::KV_NAMESPACES;
use crate::hash::Hash;
use crate::kv::Kv;
use crate::log::{Durability, Inserted, Log, LogOptions};
use crate::node::Node;

/// One replica: its log, and the node hashes it holds in arrival order.
pub(super) struct KvReplica {
    pub(super) dir: std::path::PathBuf,
    pub(super) log: Log,
    pub(super) kv: Kv,
    pub(super) order: Vec<Hash>,
    pub(super) set: HashSet<Hash>,
}

impl KvReplica {
    pub(super) fn open(dir: std::path::PathBuf) -> KvReplica {
        let (log, kv) = kv_open(&dir);
        KvReplica {
            dir,
            log,
            kv,
            order: Vec::new(),
            set: HashSet::new(),
        }
    }

    pub(super) fn push(&mut self, h: Hash) {
        if self.set.insert(h) {
            self.order.push(h);
        }
    }

    pub(super) fn ns(&self, ns: usize) -> Kv {
        let mut kv = self.kv.clone();
        for name in KV_NAMESPACES[ns] {
            kv = kv.namespace(name).expect("short namespace");
        }
        kv
    }

    /// Appends to `order` what the feed has beyond it (a write's fold nodes).
    pub(super) fn catch_up(&mut self) {
        let since = self.order.len() as u64;
        let new: Vec<Hash> = (self.log.changes(since))
            .map(|e| e.expect("feed").node.hash())
            .collect();
        for h in new {
            self.push(h);
        }
    }

    /// A written node's links with every fold replaced by what it folds: the versions the
    /// write links as the KV view counts them.
    pub(super) fn through_folds(&self, node: &Node) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut todo: Vec<Hash> = node.links().to_vec();
        while let Some(h) = todo.pop() {
            let n = self.log.get(&h).expect("get").expect("linked node stored");
            if crate::kv::Fold::decode(n.payload()).is_some() {
                todo.extend_from_slice(n.links());
            } else {
                out.push(h);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The log's feed, which must extend what the model had (arrival order is kept) with
    /// exactly `expected` new nodes (in some order).
    pub(super) fn resync(&mut self, expected: &HashSet<Hash>) {
        let feed: Vec<Hash> = self
            .log
            .changes(0)
            .map(|e| e.unwrap().node.hash())
            .collect();
        assert_eq!(
            feed[..self.order.len()],
            self.order[..],
            "the feed was rewritten"
        );
        let new: HashSet<Hash> = feed[self.order.len()..].iter().copied().collect();
        assert_eq!(&new, expected, "nodes gained in an exchange");
        for h in feed {
            self.push(h);
        }
    }
}

pub(super) fn kv_open(dir: &Path) -> (Log, Kv) {
    let options = LogOptions {
        map_size: 1 << 20,
        durability: Durability::NoSync,
    };
    let log = Log::open_with(dir, options).expect("open");
    log.set_identity(None);
    let kv = Kv::open(&log).expect("kv open");
    (log, kv)
}

/// Copies the nodes `from` has and `to` lacks, in `from`'s feed order, with `insert`.
pub(super) fn kv_copy(from: &KvReplica, to: &mut KvReplica) {
    let missing: HashSet<Hash> = from.set.difference(&to.set).copied().collect();
    for e in from.log.changes(0) {
        let node = e.expect("feed").node;
        if missing.contains(&node.hash()) {
            assert!(matches!(
                to.log.insert(&[node]).expect("insert in feed order")[0],
                Inserted::New(_)
            ));
        }
    }
    to.resync(&missing);
}
