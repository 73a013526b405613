//! The view's law, with folds: after any operations (concurrent versions, partial merges,
//! folded resolutions of any width, folds nobody supersedes yet, writes that link old folds,
//! nodes copied to a second replica in a cut order), the view equals a rebuild from the log
//! and the current versions equal what the DAG alone defines.
//!
//! Folds are written here with widths of 2 to 4 links so that small cases build deep fold
//! trees; the view's rules do not depend on the width.

use crate::kv::{KvRead, Write};
use std::collections::{BTreeMap, BTreeSet};

use quickcheck::{Arbitrary, Gen, QuickCheck};

use super::fold::{fold_with_width, Fold};
use super::op::{KvOp, Op};
use super::Kv;
use crate::hash::Hash;
use crate::log::{Durability, Log, LogOptions};
use crate::node::Node;

const KEYS: [&[u8]; 3] = [b"a", b"b", b"a\0"];

#[derive(Clone, Debug)]
enum Step {
    Put(u8, u8),
    Del(u8),
    /// A version concurrent with every current one.
    Concurrent(u8, u8),
    /// A write linking the current versions picked by the mask.
    Partial(u8, u8, u8),
    /// A resolution folded `width` per fold until `room` links remain.
    Folded {
        key: u8,
        value: u8,
        width: u8,
        room: u8,
    },
    /// A fold of the masked current versions that no write links (yet).
    LooseFold(u8, u8),
    /// A write linking every fold of the key ever made, plus nothing else.
    LinkFolds(u8, u8),
    /// Copies the first `n`% of replica 0's feed to replica 1.
    Copy(u8),
    App,
}

impl Arbitrary for Step {
    fn arbitrary(g: &mut Gen) -> Step {
        let k = u8::arbitrary(g) % KEYS.len() as u8;
        let v = u8::arbitrary(g) % 4;
        let m = u8::arbitrary(g);
        match u8::arbitrary(g) % 11 {
            0 => Step::Put(k, v),
            1 => Step::Del(k),
            2 | 3 => Step::Concurrent(k, v),
            4 => Step::Partial(k, v, m),
            5 | 6 => Step::Folded {
                key: k,
                value: v,
                width: 2 + m % 3,
                room: 1 + (m >> 4) % 3,
            },
            7 => Step::LooseFold(k, m),
            8 => Step::LinkFolds(k, v),
            9 => Step::Copy(m % 101),
            _ => Step::App,
        }
    }
}

struct Replica {
    _dir: tempfile::TempDir,
    log: Log,
    kv: Kv,
}

fn replica() -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        durability: Durability::NoSync,
        ..LogOptions::default()
    };
    let log = Log::open_with(dir.path(), options).unwrap();
    let kv = Kv::open(&log).unwrap();
    Replica { _dir: dir, log, kv }
}

/// Value 3 is a delete, so tombstones take part in conflicts and folds.
fn op(v: u8) -> Op {
    if v == 3 {
        Op::Del
    } else {
        Op::Put(vec![v])
    }
}

fn masked(hashes: Vec<Hash>, mask: u8) -> Vec<Hash> {
    hashes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
        .map(|(_, h)| h)
        .collect()
}

fn run(r: &Replica, other: &Replica, steps: &[Step]) {
    let mut folds: BTreeMap<u8, Vec<Hash>> = BTreeMap::new();
    let fold_payload = |k: u8| {
        Fold {
            namespace: vec![],
            key: KEYS[k as usize].to_vec(),
        }
        .encode()
    };
    for step in steps {
        match *step {
            Step::Put(k, v) => drop(r.kv.put(KEYS[k as usize], vec![v]).unwrap()),
            Step::Del(k) => drop(r.kv.del(KEYS[k as usize]).unwrap()),
            Step::Concurrent(k, v) => {
                r.kv.write(KEYS[k as usize], Write::from(op(v)).superseding([]))
                    .unwrap();
            }
            Step::Partial(k, v, mask) => {
                let key = KEYS[k as usize];
                let links = masked(r.kv.versions(key).unwrap().hashes(), mask);
                r.kv.write(key, Write::from(op(v)).superseding(links))
                    .unwrap();
            }
            Step::Folded {
                key: k,
                value,
                width,
                room,
            } => {
                let key = KEYS[k as usize];
                let payload = KvOp::new(b"", key, op(value)).unwrap().encode();
                let versions = r.kv.versions(key).unwrap().hashes();
                r.log
                    .transaction_typed(|w| {
                        let links = fold_with_width(
                            w,
                            b"",
                            key,
                            versions.clone(),
                            room.into(),
                            width.into(),
                        )?;
                        Ok::<_, crate::kv::KvError>(w.add(links, payload.clone())?)
                    })
                    .unwrap();
            }
            Step::LooseFold(k, mask) => {
                let links = masked(r.kv.versions(KEYS[k as usize]).unwrap().hashes(), mask);
                let node = r.log.add(links, fold_payload(k)).unwrap();
                folds.entry(k).or_default().push(node.hash());
            }
            Step::LinkFolds(k, v) => {
                let links = folds.get(&k).cloned().unwrap_or_default();
                r.kv.write(KEYS[k as usize], Write::from(op(v)).superseding(links))
                    .unwrap();
            }
            Step::Copy(percent) => {
                let all: Vec<_> = r.log.changes(0).map(|e| e.unwrap().node).collect();
                let n = all.len() * usize::from(percent) / 100;
                other.log.insert(&all[..n]).unwrap();
            }
            Step::App => drop(r.log.append(b"app".to_vec()).unwrap()),
        }
    }
}

/// The current versions of every key, from the DAG alone: the operations on the key that no
/// operation on the key reaches through its links and folds of the key.
fn from_dag(log: &Log) -> BTreeMap<Vec<u8>, BTreeSet<(Hash, u64)>> {
    let nodes: BTreeMap<Hash, Node> = log
        .changes(0)
        .map(|e| e.unwrap().node)
        .map(|n| (n.hash(), n))
        .collect();
    enum Kind {
        Op(Vec<u8>),
        Fold(Vec<u8>),
    }
    let kind = |h: &Hash| {
        let p = nodes.get(h)?.payload();
        KvOp::decode(p)
            .map(|o| Kind::Op(o.key))
            .or_else(|| Fold::decode(p).map(|f| Kind::Fold(f.key)))
    };
    // The same-key operations a node's links reach through same-key folds.
    let reached = |node: &Node, key: &[u8]| {
        let mut out = BTreeSet::new();
        let mut stack = node.links().to_vec();
        let mut seen = BTreeSet::new();
        while let Some(h) = stack.pop() {
            match kind(&h) {
                Some(Kind::Op(k)) if k == key => drop(out.insert(h)),
                Some(Kind::Fold(k)) if k == key && seen.insert(h) => {
                    stack.extend_from_slice(nodes[&h].links())
                }
                _ => {}
            }
        }
        out
    };
    let mut depth: BTreeMap<Hash, u64> = BTreeMap::new();
    let mut superseded = BTreeSet::new();
    let mut ops: BTreeMap<Vec<u8>, Vec<Hash>> = BTreeMap::new();
    for node in log.changes(0).map(|e| e.unwrap().node) {
        if let Some(Kind::Op(key)) = kind(&node.hash()) {
            let below = reached(&node, &key);
            let d = 1 + below.iter().map(|h| depth[h]).max().unwrap_or(0);
            depth.insert(node.hash(), d);
            superseded.extend(below);
            ops.entry(key).or_default().push(node.hash());
        }
    }
    ops.into_iter()
        .map(|(key, hs)| {
            let current = hs
                .into_iter()
                .filter(|h| !superseded.contains(h))
                .map(|h| (h, depth[&h]))
                .collect();
            (key, current)
        })
        .collect()
}

fn agrees_with_dag(r: &Replica) -> bool {
    let expected = from_dag(&r.log);
    let conflicts: BTreeSet<Vec<u8>> = r.kv.conflicts().map(|e| e.unwrap().key).collect();
    KEYS.iter().all(|key| {
        let versions = r.kv.versions(key).unwrap();
        let got: BTreeSet<(Hash, u64)> = versions.iter().map(|v| (v.hash, v.depth)).collect();
        got == expected.get(*key).cloned().unwrap_or_default()
            && conflicts.contains(*key) == versions.is_conflict()
    })
}

fn prop_view_equals_rebuild_and_the_dag(steps: Vec<Step>) -> bool {
    let (a, b) = (replica(), replica());
    run(&a, &b, &steps);
    [&a, &b].iter().all(|r| {
        let report = r.log.verify().unwrap();
        report.is_ok() && report.views == 1 && agrees_with_dag(r)
    })
}

#[test]
fn view_equals_rebuild_and_the_dag_with_folds() {
    QuickCheck::new()
        .tests(150)
        .quickcheck(prop_view_equals_rebuild_and_the_dag as fn(Vec<Step>) -> bool);
}
