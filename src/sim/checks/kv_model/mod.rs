//! KV operations on one or two `Log` replicas against a model of the current versions.

mod model;
mod replica;

use std::collections::HashSet;
use std::path::Path;

use model::*;
use replica::{kv_copy, kv_open, KvReplica};

use crate::hash::Hash;
use crate::kv::{KvError, KvRead, MergeFn, Write};
use crate::log::LogError;
use crate::node::{Node, MAX_LINKS};
use crate::sim::pump::{drive, moves, receives, sends, Ended, MODES};
use crate::sim::Input;
use crate::sync::{SessionConfig, SyncError};

/// `kv_model`: a program of KV operations (put, del, a `Write::superseding` with input-chosen
/// links, `resolve` with a simple merge, over several namespaces and keys that need escaping,
/// plain non-KV nodes, floods of more concurrent versions than one node may link so that the
/// next write folds them, reopening) on one or two [`Log`](crate::Log) replicas in `dir`, with
/// exchanges between them (copying missing nodes in feed order, or a sans-IO sync session over
/// the logs, sometimes cut). Every write is checked as it happens (the node written, or
/// `MissingLink`), and at the end each replica's `versions`, `get`, `iter`, `conflicts`,
/// `range`, `prefix`, `history` and `verify` must agree with the model; with two replicas,
/// after a final exchange both ways, their answers must also agree with each other.
pub fn check_kv_model(dir: &Path, data: &[u8]) {
    let mut input = Input::new(data);
    let two = input.byte() & 1 == 1;
    let mut reps = vec![KvReplica::open(dir.join("a"))];
    if two {
        reps.push(KvReplica::open(dir.join("b")));
    }
    let mut model = KvModel::default();
    for _ in 0..48 {
        if input.is_empty() {
            break;
        }
        let b = input.byte();
        let r = usize::from(b >> 7) % reps.len();
        if b % 8 == 7 {
            // Drop every handle on the environment and open it again: the view catches up
            // from its watermark (nothing to do) and must read the same.
            let KvReplica {
                dir,
                log,
                kv,
                order,
                set,
            } = reps.remove(r);
            drop((log, kv));
            let (log, kv) = kv_open(&dir);
            let rep = KvReplica {
                dir,
                log,
                kv,
                order,
                set,
            };
            reps.insert(r, rep);
            continue;
        }
        let (ns, k) = (usize::from(input.byte() % 4), usize::from(input.byte() % 8));
        let key = KV_KEYS[k];
        let rep = &mut reps[r];
        let kv = rep.ns(ns);
        let current = model.versions(rep, ns, k);
        match b % 8 {
            0 | 1 => {
                let op = if b % 8 == 0 {
                    KvOpKind::Put(kv_value(&mut input))
                } else {
                    KvOpKind::Del
                };
                let h = kv.write(key, op.clone()).expect("write");
                let node = rep.log.get(&h).unwrap().expect("written node stored");
                let decoded = crate::kv::KvOp::decode(node.payload()).expect("a kv op");
                assert_eq!((&decoded.key[..], &decoded.op), (key, &op));
                let links = rep.through_folds(&node);
                for v in &current {
                    assert!(
                        links.binary_search(&v.0).is_ok(),
                        "write does not supersede"
                    );
                }
                if current.len() > MAX_LINKS {
                    assert!(node.links().len() <= MAX_LINKS);
                }
                model.record(rep, h, ns, k, op, links);
            }
            2 => {
                let op = match input.byte() % 3 {
                    0 => KvOpKind::Del,
                    _ => KvOpKind::Put(kv_value(&mut input)),
                };
                let mut dangling = false;
                let links: Vec<Hash> = (0..input.byte() % 4)
                    .map(|_| {
                        let c = input.byte() as usize;
                        if rep.order.is_empty() || c % 16 == 15 {
                            dangling = true;
                            Hash::of(&[c as u8])
                        } else {
                            rep.order[c % rep.order.len()]
                        }
                    })
                    .collect();
                let expected = expected_kv_node(&kv, key, &op, &links);
                let got = kv.write(key, Write::from(op.clone()).superseding(links));
                if dangling {
                    assert!(
                        matches!(got, Err(KvError::Log(LogError::MissingLink { .. }))),
                        "{got:?}"
                    );
                } else {
                    assert_eq!(got.expect("write superseding"), expected.hash());
                    model.record(rep, expected.hash(), ns, k, op, expected.links().to_vec());
                }
            }
            3 => {
                // Merge: the greatest value, or a delete when the input says so.
                let del = input.byte() & 1 == 1;
                let merge = |_: &[u8], vs: &[crate::kv::Version]| -> KvOpKind {
                    match vs.iter().filter_map(|v| v.value()).max() {
                        Some(v) if !del => KvOpKind::Put(v.to_vec()),
                        _ => KvOpKind::Del,
                    }
                };
                // `resolve` runs the merge once; when its write fills the map it grows the map
                // and returns map-full for the caller to run again (this merge is pure).
                let got = match kv.resolve(key, MergeFn::new(merge)) {
                    Err(KvError::Log(e)) if e.is_map_full() => kv.resolve(key, MergeFn::new(merge)),
                    other => other,
                }
                .expect("resolve");
                // Versions that all carry the same operation agree: no conflict.
                let conflict = current.iter().any(|v| !v.2.is_tombstone())
                    && current.windows(2).any(|w| w[0].2 != w[1].2);
                if conflict {
                    let op = match current.iter().filter_map(|v| v.2.value()).max() {
                        Some(v) if !del => KvOpKind::Put(v.to_vec()),
                        _ => KvOpKind::Del,
                    };
                    let h = got.expect("a conflict is resolved");
                    // Every version, directly or through fold nodes, plus the log's heads
                    // (so the resolution does not stay a head of its own).
                    let node = rep.log.get(&h).unwrap().expect("resolved node stored");
                    let decoded = crate::kv::KvOp::decode(node.payload()).expect("a kv op");
                    assert_eq!((&decoded.key[..], &decoded.op), (key, &op));
                    let links = rep.through_folds(&node);
                    for v in &current {
                        assert!(
                            links.binary_search(&v.0).is_ok(),
                            "resolve missed a version"
                        );
                    }
                    model.record(rep, h, ns, k, op, links);
                } else {
                    assert_eq!(got, None, "resolved a key not in conflict");
                }
            }
            4 if two => kv_exchange(&mut reps, &mut input),
            5 => {
                let got = kv.versions(key).expect("versions");
                assert_eq!(as_model(&got), current, "versions of {key:?} in {ns}");
            }
            6 => {
                let b = input.byte();
                if b >= KV_FLOOD_BYTE {
                    kv_flood(&mut model, rep, ns, k, usize::from(b - KV_FLOOD_BYTE));
                    continue;
                }
                let payload = [b"plain".as_slice(), &[b]].concat();
                let node = rep.log.append(payload).expect("append");
                rep.push(node.hash());
            }
            _ => {}
        }
    }
    if two {
        let (a, b) = reps.split_at_mut(1);
        kv_copy(&a[0], &mut b[0]);
        kv_copy(&b[0], &mut a[0]);
        assert_eq!(a[0].set, b[0].set);
    }
    for rep in &reps {
        kv_check_replica(&model, rep, &mut input);
    }
    if two {
        for ns in 0..KV_NAMESPACES.len() {
            let (a, b) = (reps[0].ns(ns), reps[1].ns(ns));
            for key in KV_KEYS {
                assert_eq!(a.get(key).unwrap(), b.get(key).unwrap(), "get {key:?}");
            }
            assert_eq!(scan_model(a.conflicts()), scan_model(b.conflicts()));
            assert_eq!(
                scan_model(a.range(&b"a"[..]..)),
                scan_model(b.range(&b"a"[..]..))
            );
            assert_eq!(scan_model(a.iter()), scan_model(b.iter()));
        }
    }
}

/// An op-6 byte at or above this floods a key instead of appending a plain node.
const KV_FLOOD_BYTE: u8 = 0xf0;

/// Floods `key` with `MAX_LINKS + 1 + extra` concurrent puts (linking nothing, one
/// transaction), so that the next operation that supersedes them must fold: the cheap way
/// for a fuzz program to reach fold nodes.
fn kv_flood(model: &mut KvModel, rep: &mut KvReplica, ns: usize, k: usize, extra: usize) {
    let kv = rep.ns(ns);
    let nodes: Vec<Node> = (0..MAX_LINKS + 1 + extra)
        .map(|i| {
            let op = KvOpKind::Put((i as u16).to_be_bytes().to_vec());
            expected_kv_node(&kv, KV_KEYS[k], &op, &[])
        })
        .collect();
    rep.log.insert(&nodes).expect("flood");
    for (i, n) in nodes.iter().enumerate() {
        let op = KvOpKind::Put((i as u16).to_be_bytes().to_vec());
        model.record(rep, n.hash(), ns, k, op, Vec::new());
    }
}

/// One exchange between the two replicas of `kv_model`: a copy one way, or a sync session
/// over the logs (modes and schedule from the input, sometimes cut).
fn kv_exchange(reps: &mut [KvReplica], input: &mut Input<'_>) {
    let (a, b) = reps.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    match input.byte() % 4 {
        0 => kv_copy(a, b),
        1 => kv_copy(b, a),
        _ => {
            let m = input.byte();
            let modes = [MODES[usize::from(m) % 3], MODES[usize::from(m >> 2) % 3]];
            let cut = (m & 0x40 != 0).then(|| usize::from(input.u16()) % 4096);
            let cfgs = [0, 1].map(|i| SessionConfig {
                mode: modes[i],
                live: false,
                filter_key: [i as u8; 32],
            });
            let ended = match drive([&a.log, &b.log], cfgs, cut, input, None) {
                Err(SyncError::ModeMismatch { .. }) if !moves(modes) => return,
                Err(e) => panic!("sync between logs ({modes:?}) failed: {e}"),
                Ok(ended) => ended,
            };
            let (sa, sb) = (a.set.clone(), b.set.clone());
            if ended == Ended::Complete {
                let want = |from: &HashSet<Hash>, to: &HashSet<Hash>, on: bool| {
                    if on {
                        from.difference(to).copied().collect()
                    } else {
                        HashSet::new()
                    }
                };
                b.resync(&want(&sa, &sb, sends(modes[0]) && receives(modes[1])));
                a.resync(&want(&sb, &sa, sends(modes[1]) && receives(modes[0])));
            } else {
                // Cut: whatever arrived is a subset of what the other side had.
                for (rep, other) in [(&mut *a, &sb), (&mut *b, &sa)] {
                    let feed: Vec<Hash> =
                        rep.log.changes(0).map(|e| e.unwrap().node.hash()).collect();
                    let new: HashSet<Hash> = feed[rep.order.len()..].iter().copied().collect();
                    assert!(new.is_subset(other), "a cut sync stored foreign nodes");
                    rep.resync(&new);
                }
            }
        }
    }
}

/// Compares one replica's answers with the model: versions and presence of every key,
/// `iter`, `conflicts`, one input-chosen `range` and `prefix` per namespace, each key's
/// history; and `verify`.
fn kv_check_replica(model: &KvModel, rep: &KvReplica, input: &mut Input<'_>) {
    let report = rep.log.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.violations);
    for ns in 0..KV_NAMESPACES.len() {
        let kv = rep.ns(ns);
        for (k, key) in KV_KEYS.iter().enumerate() {
            let want = model.versions(rep, ns, k);
            let got = kv.versions(key).expect("versions");
            assert_eq!(
                as_model(&got),
                want,
                "versions of {key:?} in namespace {ns}"
            );
            assert_eq!(kv.get(key).unwrap().is_some(), got.is_present());
            // History: every operation on the key, newest arrival first.
            let mut history: Vec<Hash> = rep
                .order
                .iter()
                .filter(|h| model.ops.get(*h).is_some_and(|r| (r.ns, r.key) == (ns, k)))
                .copied()
                .collect();
            history.reverse();
            let got: Vec<_> = kv.history(key).map(|e| e.expect("history")).collect();
            assert_eq!(got.iter().map(|e| e.hash).collect::<Vec<_>>(), history);
            for e in &got {
                let r = &model.ops[&e.hash];
                assert_eq!((&e.op, e.depth), (&r.op, model.depth(&e.hash)));
                assert_eq!(e.current, want.iter().any(|v| v.0 == e.hash));
            }
        }
        let present = model.present(rep, ns);
        assert_eq!(scan_model(kv.iter()), present, "iter of namespace {ns}");
        let conflicts: Vec<_> = present
            .iter()
            .filter(|(_, v)| v.windows(2).any(|w| w[0].2 != w[1].2))
            .cloned()
            .collect();
        assert_eq!(scan_model(kv.conflicts()), conflicts, "conflicts in {ns}");
        let (lo, hi) = (kv_bound(input), kv_bound(input));
        let want: Vec<_> = present
            .iter()
            .filter(|(k, _)| in_bounds(k, &lo, &hi))
            .cloned()
            .collect();
        let got = scan_model(kv.range((lo.clone(), hi.clone())));
        assert_eq!(got, want, "range {lo:?}..{hi:?} in namespace {ns}");
        let prefix = KV_KEYS[input.byte() as usize % KV_KEYS.len()];
        let want: Vec<_> = present
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .cloned()
            .collect();
        assert_eq!(scan_model(kv.prefix(prefix)), want, "prefix {prefix:?}");
    }
}
