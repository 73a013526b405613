//! The `kv_model` check's model: every KV operation made, and from it the current versions a
//! replica must show.

use std::collections::{HashMap, HashSet};

use super::replica::KvReplica;
use crate::hash::Hash;
use crate::kv::Kv;
use crate::node::Node;
use crate::sim::Input;

/// Keys the `kv_model` target writes: a zero byte and 0xff exercise the key-id escaping and
/// its order.
pub(super) const KV_KEYS: [&[u8]; 8] = [b"", b"a", b"a\0", b"a\0b", b"a\xff", b"ab", b"b", b"\xff"];

/// Namespaces (paths of names) the `kv_model` target writes in.
pub(super) const KV_NAMESPACES: [&[&[u8]]; 4] = [&[], &[b"x"], &[b""], &[b"x", b"y"]];

/// A KV operation the model knows: namespace and key (indexes), what it wrote, its links.
pub(super) struct KvRecord {
    pub(super) ns: usize,
    pub(super) key: usize,
    pub(super) op: KvOpKind,
    pub(super) links: Vec<Hash>,
}

pub(super) type KvOpKind = crate::kv::Op;

/// The node a write of `op` on `key` with exactly `links` must produce.
pub(super) fn expected_kv_node(kv: &Kv, key: &[u8], op: &KvOpKind, links: &[Hash]) -> Node {
    let payload = crate::kv::KvOp::new(kv.namespace_path(), key, op.clone())
        .unwrap()
        .encode();
    Node::new(links.iter().copied(), payload).unwrap()
}

/// The model: every KV operation ever made (content-addressed, so shared by the replicas),
/// and from it, per replica, the current versions of a key: its operations that no operation
/// on the same key held by the replica links to. Depth is 1 + the greatest depth of the
/// same-key operations an operation links.
#[derive(Default)]
pub(super) struct KvModel {
    pub(super) ops: HashMap<Hash, KvRecord>,
}

/// A version as the model sees it: hash, depth, op.
pub(super) type ModelVersion = (Hash, u64, KvOpKind);

impl KvModel {
    /// Records an operation the replica now holds.
    pub(super) fn record(
        &mut self,
        rep: &mut KvReplica,
        hash: Hash,
        ns: usize,
        key: usize,
        op: KvOpKind,
        links: Vec<Hash>,
    ) {
        self.ops.insert(hash, KvRecord { ns, key, op, links });
        // Fold nodes written in the same transaction come before it in the feed.
        rep.catch_up();
        rep.push(hash);
    }

    pub(super) fn depth(&self, h: &Hash) -> u64 {
        let r = &self.ops[h];
        1 + r
            .links
            .iter()
            .filter(|l| {
                self.ops
                    .get(l)
                    .is_some_and(|o| (o.ns, o.key) == (r.ns, r.key))
            })
            .map(|l| self.depth(l))
            .max()
            .unwrap_or(0)
    }

    pub(super) fn versions(&self, rep: &KvReplica, ns: usize, key: usize) -> Vec<ModelVersion> {
        let same = |h: &&Hash| self.ops.get(*h).is_some_and(|r| (r.ns, r.key) == (ns, key));
        let of_key: Vec<&Hash> = rep.order.iter().filter(same).collect();
        // One set of what the key's operations link: a flooded key has over a thousand.
        let linked: HashSet<&Hash> = of_key
            .iter()
            .flat_map(|o| self.ops[*o].links.iter())
            .collect();
        let mut out: Vec<ModelVersion> = of_key
            .iter()
            .filter(|h| !linked.contains(**h))
            .map(|h| (**h, self.depth(h), self.ops[*h].op.clone()))
            .collect();
        out.sort_by_key(|v| v.0);
        out
    }

    /// Present keys of a namespace, in key order, with their versions.
    pub(super) fn present(&self, rep: &KvReplica, ns: usize) -> Vec<(Vec<u8>, Vec<ModelVersion>)> {
        let mut out: Vec<(Vec<u8>, Vec<ModelVersion>)> = (0..KV_KEYS.len())
            .map(|k| (KV_KEYS[k].to_vec(), self.versions(rep, ns, k)))
            .filter(|(_, v)| v.iter().any(|v| !v.2.is_tombstone()))
            .collect();
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    }
}

pub(super) fn as_model(v: &crate::kv::Versions) -> Vec<ModelVersion> {
    v.iter().map(|v| (v.hash, v.depth, v.op.clone())).collect()
}

pub(super) fn scan_model(scan: crate::kv::Scan) -> Vec<(Vec<u8>, Vec<ModelVersion>)> {
    scan.map(|e| {
        let e = e.expect("scan");
        (e.key, as_model(&e.versions))
    })
    .collect()
}

pub(super) fn kv_value(input: &mut Input<'_>) -> Vec<u8> {
    let len = input.byte() as usize % 4;
    input.bytes(len).to_vec()
}

pub(super) fn kv_bound(input: &mut Input<'_>) -> std::ops::Bound<Vec<u8>> {
    use std::ops::Bound;
    let b = input.byte();
    let key = KV_KEYS[usize::from(b >> 2) % KV_KEYS.len()].to_vec();
    match b % 3 {
        0 => Bound::Unbounded,
        1 => Bound::Included(key),
        _ => Bound::Excluded(key),
    }
}

pub(super) fn in_bounds(
    key: &[u8],
    lo: &std::ops::Bound<Vec<u8>>,
    hi: &std::ops::Bound<Vec<u8>>,
) -> bool {
    use std::ops::Bound;
    (match lo {
        Bound::Unbounded => true,
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
    }) && (match hi {
        Bound::Unbounded => true,
        Bound::Included(h) => key <= h.as_slice(),
        Bound::Excluded(h) => key < h.as_slice(),
    })
}
