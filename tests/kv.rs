//! The key-value view through the public API: conflicts across replicas, resolution, scans,
//! namespaces, watch, and properties against rebuilds and a model.

use braidlog::kv::MergeFn;
use braidlog::kv::{Deterministic, KvRead, Write};
use std::collections::{BTreeMap, BTreeSet};

use braidlog::kv::{Entry, Kv, KvError, Op, Version};
use braidlog::{Hash, Log};

mod common;

use common::{assert_verified_with_view, kv_replica, sorted, KvReplica};

/// Copies every node `to` lacks from `from`, in `from`'s feed order (topological), as a
/// stand-in for replication.
fn copy(from: &Log, to: &Log) {
    for entry in from.changes(0) {
        let node = entry.unwrap().node;
        if !to.contains(&node.hash()).unwrap() {
            to.insert(&[&node]).unwrap();
        }
    }
}

/// Both ways.
fn exchange(a: &Log, b: &Log) {
    copy(a, b);
    copy(b, a);
}

fn values(kv: &Kv, key: &[u8]) -> Vec<Option<Vec<u8>>> {
    kv.versions(key)
        .unwrap()
        .iter()
        .map(|v| v.value().map(<[u8]>::to_vec))
        .collect()
}

fn put_val(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

fn keys(scan: impl Iterator<Item = Result<Entry, KvError>>) -> Vec<Vec<u8>> {
    scan.map(|e| e.unwrap().key).collect()
}

#[test]
fn put_get_overwrite_delete() {
    let r = kv_replica();
    assert!(r.kv.get(b"k").unwrap().is_none());
    assert!(r.kv.versions(b"k").unwrap().is_empty());

    let h1 = r.kv.put(b"k", b"one".to_vec()).unwrap();
    let got = r.kv.get(b"k").unwrap().unwrap();
    assert_eq!(got.value(), Some(&b"one"[..]));
    assert_eq!(got.hashes(), vec![h1]);
    assert_eq!(got.as_slice()[0].depth, 1);

    let h2 = r.kv.put(b"k", b"two".to_vec()).unwrap();
    let got = r.kv.get(b"k").unwrap().unwrap();
    assert_eq!(got.value(), Some(&b"two"[..]));
    assert_eq!(got.hashes(), vec![h2]);
    assert_eq!(r.log.get(&h2).unwrap().unwrap().links(), &[h1]);
    assert_eq!(r.kv.get_single(b"k").unwrap(), Some(b"two".to_vec()));

    let h3 = r.kv.del(b"k").unwrap();
    assert!(r.kv.get(b"k").unwrap().is_none());
    assert_eq!(r.kv.get_single(b"k").unwrap(), None);
    let versions = r.kv.versions(b"k").unwrap();
    assert_eq!(versions.hashes(), vec![h3]);
    assert!(versions.as_slice()[0].is_tombstone());
    assert_eq!(versions.as_slice()[0].depth, 3);

    r.kv.put(b"k", b"back".to_vec()).unwrap();
    assert_eq!(values(&r.kv, b"k"), vec![put_val("back")]);
    assert_eq!(r.kv.conflicts().count(), 0);
    assert_verified_with_view(&r.log);
}

#[test]
fn history_lists_every_operation_newest_first() {
    let r = kv_replica();
    let h1 = r.kv.put(b"k", b"1".to_vec()).unwrap();
    let h2 = r.kv.put(b"k", b"2".to_vec()).unwrap();
    r.kv.put(b"other", b"x".to_vec()).unwrap();
    let h3 = r.kv.del(b"k").unwrap();
    let history: Vec<_> = r.kv.history(b"k").map(Result::unwrap).collect();
    let hashes: Vec<Hash> = history.iter().map(|e| e.hash).collect();
    assert_eq!(hashes, vec![h3, h2, h1]);
    assert_eq!(history[0].op, Op::Del);
    assert_eq!(history[1].op, Op::Put(b"2".to_vec()));
    assert_eq!(history[0].supersedes, vec![h2]);
    assert_eq!(history[2].supersedes, Vec::<Hash>::new());
    assert_eq!(
        history.iter().map(|e| e.current).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert_eq!(
        history.iter().map(|e| e.depth).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert!(history.windows(2).all(|w| w[0].seq > w[1].seq));
    assert_eq!(r.kv.history(b"never").count(), 0);
}

#[test]
fn long_history_reads_in_chunks() {
    let r = kv_replica();
    let mut written = Vec::new();
    for i in 0..150u32 {
        written.push(r.kv.put(b"k", i.to_be_bytes().to_vec()).unwrap());
    }
    written.reverse();
    let hashes: Vec<Hash> = r.kv.history(b"k").map(|e| e.unwrap().hash).collect();
    assert_eq!(hashes, written);
}

#[test]
fn concurrent_puts_show_both_versions_on_both_replicas() {
    let (a, b) = (kv_replica(), kv_replica());
    a.kv.put(b"k", b"base".to_vec()).unwrap();
    exchange(&a.log, &b.log);
    let ha = a.kv.put(b"k", b"from a".to_vec()).unwrap();
    let hb = b.kv.put(b"k", b"from b".to_vec()).unwrap();
    assert!(!a.kv.get(b"k").unwrap().unwrap().is_conflict());
    exchange(&a.log, &b.log);

    for r in [&a, &b] {
        let got = r.kv.get(b"k").unwrap().unwrap();
        assert!(got.is_conflict());
        assert_eq!(got.value(), None, "value() never picks one of several");
        let mut expected = vec![ha, hb];
        expected.sort();
        assert_eq!(got.hashes(), expected);
        assert_eq!(
            sorted(values(&r.kv, b"k")),
            vec![put_val("from a"), put_val("from b")]
        );
        let conflicts: Vec<_> = r.kv.conflicts().map(Result::unwrap).collect();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].key, b"k");
        assert_eq!(conflicts[0].versions, got);
        match r.kv.get_single(b"k") {
            Err(KvError::Conflict { key, versions }) => {
                assert_eq!(key, b"k");
                assert_eq!(versions.len(), 2);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_verified_with_view(&r.log);
    }
    assert_eq!(a.kv.get(b"k").unwrap(), b.kv.get(b"k").unwrap());
}

#[test]
fn resolving_on_one_side_clears_the_conflict_on_both() {
    let (a, b) = (kv_replica(), kv_replica());
    a.kv.put(b"k", b"1".to_vec()).unwrap();
    b.kv.put(b"k", b"2".to_vec()).unwrap();
    exchange(&a.log, &b.log);
    assert!(b.kv.get(b"k").unwrap().unwrap().is_conflict());

    // A plain put supersedes every version it sees.
    let resolved = a.kv.put(b"k", b"12".to_vec()).unwrap();
    exchange(&a.log, &b.log);
    for r in [&a, &b] {
        let got = r.kv.get(b"k").unwrap().unwrap();
        assert!(!got.is_conflict());
        assert_eq!(got.hashes(), vec![resolved]);
        assert_eq!(got.value(), Some(&b"12"[..]));
        assert_eq!(r.kv.conflicts().count(), 0);
        // The losers stay in history.
        let history: Vec<_> = r.kv.history(b"k").map(Result::unwrap).collect();
        assert_eq!(history.len(), 3);
        assert_eq!(history.iter().filter(|e| e.current).count(), 1);
        assert_verified_with_view(&r.log);
    }
}

#[test]
fn resolve_with_a_merge_function() {
    let (a, b) = (kv_replica(), kv_replica());
    a.kv.put(b"set", b"x".to_vec()).unwrap();
    b.kv.put(b"set", b"y".to_vec()).unwrap();
    assert_eq!(
        a.kv.resolve(b"set", MergeFn::new(|_, _| -> Vec<u8> { panic!() }))
            .unwrap(),
        None
    );
    exchange(&a.log, &b.log);
    let merged =
        b.kv.resolve(
            b"set",
            MergeFn::new(|key, versions| {
                assert_eq!(key, b"set");
                let mut all: Vec<u8> = versions
                    .iter()
                    .filter_map(Version::value)
                    .flatten()
                    .copied()
                    .collect();
                all.sort();
                all
            }),
        )
        .unwrap()
        .expect("there was a conflict");
    exchange(&a.log, &b.log);
    for r in [&a, &b] {
        let got = r.kv.get(b"set").unwrap().unwrap();
        assert_eq!(got.hashes(), vec![merged]);
        assert_eq!(got.value(), Some(&b"xy"[..]));
    }
}

#[test]
fn deterministic_policy_is_opt_in_and_agrees_across_replicas() {
    let (a, b) = (kv_replica(), kv_replica());
    a.kv.put(b"k", b"a1".to_vec()).unwrap();
    a.kv.put(b"k", b"a2".to_vec()).unwrap(); // depth 2
    b.kv.put(b"k", b"b1".to_vec()).unwrap(); // depth 1
    exchange(&a.log, &b.log);
    // Nothing resolves by itself.
    assert!(a.kv.get(b"k").unwrap().unwrap().is_conflict());
    let wa = a.kv.get(b"k").unwrap().unwrap().winner().cloned().unwrap();
    let wb = b.kv.get(b"k").unwrap().unwrap().winner().cloned().unwrap();
    assert_eq!(wa, wb);
    assert_eq!(wa.value(), Some(&b"a2"[..]), "the deeper branch wins");

    let ra = a.kv.resolve(b"k", Deterministic).unwrap().unwrap();
    let rb = b.kv.resolve(b"k", Deterministic).unwrap().unwrap();
    // Same versions linked, same value written, by two authors: two nodes that agree, which
    // read as one value and need no further resolution.
    assert_ne!(ra, rb);
    exchange(&a.log, &b.log);
    let got = a.kv.get(b"k").unwrap().unwrap();
    let mut both = vec![ra, rb];
    both.sort();
    assert_eq!(got.hashes(), both);
    assert!(!got.is_conflict());
    assert_eq!(got.value(), Some(&b"a2"[..]));
    assert_eq!(b.kv.get(b"k").unwrap().unwrap(), got);
    assert_eq!(a.kv.resolve(b"k", Deterministic).unwrap(), None);
    assert_eq!(a.kv.conflicts().count(), 0);
    assert_eq!(a.kv.history(b"k").count(), 5, "the losers stay in history");
}

#[test]
fn concurrent_put_and_delete_show_both() {
    let (a, b) = (kv_replica(), kv_replica());
    a.kv.put(b"k", b"v".to_vec()).unwrap();
    exchange(&a.log, &b.log);
    a.kv.put(b"k", b"new".to_vec()).unwrap();
    b.kv.del(b"k").unwrap();
    assert!(b.kv.get(b"k").unwrap().is_none());
    exchange(&a.log, &b.log);
    for r in [&a, &b] {
        let got =
            r.kv.get(b"k")
                .unwrap()
                .expect("a put keeps the key present");
        assert!(got.is_conflict());
        assert_eq!(sorted(values(&r.kv, b"k")), vec![None, put_val("new")]);
        assert_eq!(keys(r.kv.conflicts()), vec![b"k".to_vec()]);
    }
    // Deleting on one side resolves towards absence.
    a.kv.del(b"k").unwrap();
    exchange(&a.log, &b.log);
    for r in [&a, &b] {
        assert!(r.kv.get(b"k").unwrap().is_none());
        assert_eq!(r.kv.conflicts().count(), 0);
        assert_verified_with_view(&r.log);
    }
}

#[test]
fn concurrent_deletes_are_absent_not_a_conflict() {
    let (a, b) = (kv_replica(), kv_replica());
    a.kv.put(b"k", b"v".to_vec()).unwrap();
    exchange(&a.log, &b.log);
    // Deletes by two authors are two nodes; both tombstones, so the key is absent.
    assert_ne!(a.kv.del(b"k").unwrap(), b.kv.del(b"k").unwrap());
    exchange(&a.log, &b.log);
    assert!(a.kv.get(b"k").unwrap().is_none());
    assert_eq!(a.kv.conflicts().count(), 0);
    a.kv.put(b"k", b"w".to_vec()).unwrap();
    a.kv.del(b"k").unwrap();
    b.kv.put(b"k", b"x".to_vec()).unwrap();
    b.kv.del(b"k").unwrap();
    exchange(&a.log, &b.log);
    assert!(a.kv.get(b"k").unwrap().is_none());
    assert_eq!(a.kv.versions(b"k").unwrap().len(), 2);
    assert_eq!(a.kv.conflicts().count(), 0);
    // A later put supersedes both tombstones.
    let h = a.kv.put(b"k", b"w".to_vec()).unwrap();
    assert_eq!(a.log.get(&h).unwrap().unwrap().links().len(), 2);
}

#[test]
fn resolution_concurrent_with_another_write_leaves_a_new_conflict() {
    let (a, b) = (kv_replica(), kv_replica());
    a.kv.put(b"k", b"1".to_vec()).unwrap();
    b.kv.put(b"k", b"2".to_vec()).unwrap();
    exchange(&a.log, &b.log);
    let ra = a.kv.put(b"k", b"resolved by a".to_vec()).unwrap();
    let rb = b.kv.put(b"k", b"resolved by b".to_vec()).unwrap();
    exchange(&a.log, &b.log);
    for r in [&a, &b] {
        let got = r.kv.get(b"k").unwrap().unwrap();
        let mut expected = vec![ra, rb];
        expected.sort();
        assert_eq!(got.hashes(), expected);
        assert!(got.is_conflict());
        assert!(got.iter().all(|v| v.depth == 2));
    }
}

#[test]
fn explicit_links_supersede_only_what_they_link() {
    let r = kv_replica();
    let v1 = r.kv.put(b"k", b"1".to_vec()).unwrap();
    let v2 =
        r.kv.write(b"k", Write::from(Op::Put(b"2".to_vec())).superseding([]))
            .unwrap();
    assert_eq!(
        r.kv.versions(b"k").unwrap().len(),
        2,
        "linking nothing is concurrent"
    );
    // Linking only v1 leaves v2 current.
    let v3 =
        r.kv.write(b"k", Write::from(Op::Put(b"3".to_vec())).superseding([v1]))
            .unwrap();
    let mut expected = vec![v2, v3];
    expected.sort();
    assert_eq!(r.kv.versions(b"k").unwrap().hashes(), expected);
    // Linking an already superseded version changes nothing else.
    let v4 =
        r.kv.write(b"k", Write::from(Op::Del).superseding([v1, v2]))
            .unwrap();
    let mut expected = vec![v3, v4];
    expected.sort();
    assert_eq!(r.kv.versions(b"k").unwrap().hashes(), expected);
    assert_verified_with_view(&r.log);
}

#[test]
fn links_to_other_keys_and_app_nodes_do_not_supersede() {
    let r = kv_replica();
    let app = r.log.add([], b"an app's own node".to_vec()).unwrap();
    let other = r.kv.put(b"other", b"o".to_vec()).unwrap();
    let k1 =
        r.kv.write(b"k", Write::put(b"1".to_vec()).linking([app.hash(), other]))
            .unwrap();
    let node = r.log.get(&k1).unwrap().unwrap();
    assert_eq!(node.links().len(), 2);
    assert_eq!(r.kv.get(b"other").unwrap().unwrap().hashes(), vec![other]);
    assert_eq!(r.kv.get(b"k").unwrap().unwrap().as_slice()[0].depth, 1);
    // A write on `other` linking k's version leaves k alone.
    r.kv.write(
        b"other",
        Write::from(Op::Put(b"p".to_vec())).superseding([k1, other]),
    )
    .unwrap();
    assert_eq!(r.kv.get(b"k").unwrap().unwrap().hashes(), vec![k1]);
    assert_verified_with_view(&r.log);
}

#[test]
fn nodes_that_are_not_kv_operations_are_ignored() {
    let r = kv_replica();
    r.log.append(b"hello".to_vec()).unwrap();
    r.log.append(b"\0bkv".to_vec()).unwrap(); // the magic alone
    r.log.append(b"\0bkv\x01garbage".to_vec()).unwrap();
    r.log.append(b"\0bkv\x07future format".to_vec()).unwrap();
    r.log.append(Vec::new()).unwrap();
    r.kv.put(b"k", b"v".to_vec()).unwrap();
    assert_eq!(r.kv.iter().count(), 1);
    assert_eq!(r.kv.history(b"k").count(), 1);
    assert_verified_with_view(&r.log);
}

#[test]
fn local_concurrent_puts_never_conflict() {
    let r = kv_replica();
    let threads: Vec<_> = (0..2u8)
        .map(|t| {
            let kv = r.kv.clone();
            std::thread::spawn(move || {
                for i in 0..40u8 {
                    kv.put(b"k", vec![t, i]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(r.kv.versions(b"k").unwrap().len(), 1);
    let history: Vec<_> = r.kv.history(b"k").map(Result::unwrap).collect();
    assert_eq!(history.len(), 80);
    assert_eq!(
        history[0].depth, 80,
        "one chain: every put saw the one before"
    );
}

#[test]
fn range_and_prefix_scan_in_key_order() {
    let r = kv_replica();
    let all: [&[u8]; 9] = [
        b"",
        b"a",
        b"a\0",
        b"a\0b",
        b"a\x01",
        b"ab",
        b"abc",
        b"b",
        b"\xff\xff",
    ];
    for (i, k) in all.iter().enumerate().rev() {
        r.kv.put(k, vec![i as u8]).unwrap();
    }
    r.kv.put(b"gone", b"x".to_vec()).unwrap();
    r.kv.del(b"gone").unwrap();
    let mut expected: Vec<Vec<u8>> = all.iter().map(|k| k.to_vec()).collect();
    expected.sort();
    assert_eq!(keys(r.kv.iter()), expected, "tombstoned keys are skipped");

    let a: &[u8] = b"a";
    let ab: &[u8] = b"ab";
    assert_eq!(
        keys(r.kv.range(a..ab)),
        [&b"a"[..], b"a\0", b"a\0b", b"a\x01"]
    );
    assert_eq!(keys(r.kv.range(a..=ab)).len(), 5);
    use std::ops::Bound::{Excluded, Included, Unbounded};
    assert_eq!(
        keys(r.kv.range::<&[u8]>((Excluded(a), Included(ab)))),
        [&b"a\0"[..], b"a\0b", b"a\x01", b"ab"]
    );
    assert_eq!(keys(r.kv.range::<&[u8]>((Unbounded, Excluded(a)))), [b""]);
    assert_eq!(
        keys(r.kv.range(ab..)),
        [&b"ab"[..], b"abc", b"b", b"\xff\xff"]
    );
    assert_eq!(keys(r.kv.range(ab..a)).len(), 0, "an empty range");
    assert_eq!(
        keys(r.kv.prefix(b"a")),
        [&b"a"[..], b"a\0", b"a\0b", b"a\x01", b"ab", b"abc"]
    );
    assert_eq!(keys(r.kv.prefix(b"a\0")), [&b"a\0"[..], b"a\0b"]);
    assert_eq!(keys(r.kv.prefix(b"\xff")), [b"\xff\xff"]);
    assert_eq!(keys(r.kv.prefix(b"z")).len(), 0);
    let first = r.kv.prefix(b"abc").next().unwrap().unwrap();
    assert_eq!(first.versions.value(), Some(&[6u8][..]));
}

#[test]
fn scans_cross_chunk_boundaries() {
    let r = kv_replica();
    let mut batch = Vec::new();
    for i in 0..700u32 {
        let op = braidlog::kv::KvOp::new(b"", &i.to_be_bytes(), Op::Put(vec![1])).unwrap();
        batch.push((vec![], op.encode()));
    }
    r.log
        .transaction(|w| {
            batch
                .into_iter()
                .map(|(l, p)| w.add(l, p))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    // Every third key in conflict, to cross chunk boundaries with several versions a key.
    for i in (0..700u32).step_by(3) {
        r.kv.write(
            i.to_be_bytes(),
            Write::from(Op::Put(vec![2])).superseding([]),
        )
        .unwrap();
    }
    let scanned: Vec<Entry> = r.kv.iter().map(Result::unwrap).collect();
    assert_eq!(scanned.len(), 700);
    for (i, e) in scanned.iter().enumerate() {
        assert_eq!(e.key, (i as u32).to_be_bytes());
        assert_eq!(e.versions.len(), if i % 3 == 0 { 2 } else { 1 });
    }
    let conflicts = keys(r.kv.conflicts());
    assert_eq!(conflicts.len(), 234);
    assert!(conflicts.windows(2).all(|w| w[0] < w[1]));
    assert_verified_with_view(&r.log);
}

#[test]
fn namespaces_are_independent() {
    let r = kv_replica();
    let users = r.kv.namespace("users").unwrap();
    let groups = r.kv.namespace("groups").unwrap();
    let nested = users.namespace("archived").unwrap();
    r.kv.put(b"ada", b"root".to_vec()).unwrap();
    users.put(b"ada", b"user".to_vec()).unwrap();
    users.put(b"bob", b"user".to_vec()).unwrap();
    groups.put(b"admins", b"ada".to_vec()).unwrap();
    nested.put(b"carl", b"old".to_vec()).unwrap();

    assert_eq!(r.kv.get_single(b"ada").unwrap(), Some(b"root".to_vec()));
    assert_eq!(users.get_single(b"ada").unwrap(), Some(b"user".to_vec()));
    assert_eq!(keys(r.kv.iter()), [b"ada"]);
    assert_eq!(keys(users.iter()), [b"ada", b"bob"]);
    assert_eq!(keys(users.prefix(b"")), [b"ada", b"bob"]);
    assert_eq!(keys(groups.iter()), [b"admins"]);
    assert_eq!(keys(nested.iter()), [b"carl"]);
    assert!(users.get(b"carl").unwrap().is_none());

    users.del(b"ada").unwrap();
    assert!(r.kv.get(b"ada").unwrap().is_some());
    // Writes in one namespace never link versions of another.
    assert_eq!(r.kv.history(b"ada").count(), 1);
    // Conflicts are per namespace too.
    users
        .write(b"bob", Write::from(Op::Put(b"x".to_vec())).superseding([]))
        .unwrap();
    assert_eq!(keys(users.conflicts()), [b"bob"]);
    assert_eq!(r.kv.conflicts().count(), 0);
    assert_eq!(nested.conflicts().count(), 0);
    let err = r.kv.namespace([b'n'; 64]).unwrap_err();
    assert!(matches!(err, KvError::NamespaceTooLong { .. }), "{err:?}");
    assert_verified_with_view(&r.log);
}

#[test]
fn limits_are_enforced() {
    let r = kv_replica();
    let long = vec![b'k'; braidlog::kv::MAX_KEY_LEN + 1];
    assert!(matches!(
        r.kv.put(&long, b"v".to_vec()),
        Err(KvError::KeyTooLong { .. })
    ));
    let got = r.kv.get(&long);
    assert!(matches!(got, Err(KvError::KeyTooLong { .. })), "{got:?}");
    let max = vec![0u8; braidlog::kv::MAX_KEY_LEN];
    let ns =
        r.kv.namespace([0u8; braidlog::kv::MAX_NAMESPACE_LEN - 1])
            .unwrap();
    ns.put(&max, b"v".to_vec()).unwrap();
    assert_eq!(keys(ns.iter()), [max]);
}

#[test]
fn watch_fires_on_local_and_received_changes() {
    let (a, b) = (kv_replica(), kv_replica());
    let mut key_watch = b.kv.watch(b"door");
    let mut prefix_watch = b.kv.watch_prefix(b"do");
    let mut other_ns = b.kv.namespace("x").unwrap().watch(b"door");
    a.kv.put(b"window", b"open".to_vec()).unwrap();
    let h = a.kv.put(b"door", b"closed".to_vec()).unwrap();
    b.kv.put(b"dog", b"woof".to_vec()).unwrap();

    // A thread waits; the exchange wakes it.
    let waiter = std::thread::spawn(move || {
        let e = key_watch.next_blocking().unwrap();
        (e, key_watch)
    });
    exchange(&a.log, &b.log);
    let (event, mut key_watch) = waiter.join().unwrap();
    assert_eq!(event.key, b"door");
    assert_eq!(event.hash, h);
    assert_eq!(event.op, Op::Put(b"closed".to_vec()));
    assert_eq!(key_watch.try_next().unwrap(), None);

    let first = prefix_watch.try_next().unwrap().unwrap();
    let second = prefix_watch.try_next().unwrap().unwrap();
    assert_eq!(
        (first.key.as_slice(), second.key.as_slice()),
        (&b"dog"[..], &b"door"[..])
    );
    assert_eq!(prefix_watch.try_next().unwrap(), None);
    assert_eq!(other_ns.try_next().unwrap(), None);
}

#[tokio::test]
async fn watch_works_in_async_code() {
    let r = kv_replica();
    let mut watcher = r.kv.watch(b"k");
    let kv = r.kv.clone();
    let writer = tokio::task::spawn_blocking(move || {
        kv.put(b"other", b"1".to_vec()).unwrap();
        kv.del(b"k").unwrap()
    });
    let event = watcher.next().await.unwrap();
    assert_eq!(event.op, Op::Del);
    assert_eq!(event.hash, writer.await.unwrap());
}

#[test]
fn handles_move_between_threads_and_tasks() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Kv>();
    let r = kv_replica();
    send(&r.kv.iter());
    send(&r.kv.history(b"k"));
    let mut watcher = r.kv.watch(b"k");
    send(&watcher);
    send(&watcher.next()); // usable in tokio::spawn
}

#[test]
fn the_view_catches_up_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let h;
    {
        let log = Log::open(dir.path()).unwrap();
        // Written before the view is registered: caught up on open.
        let op = braidlog::kv::KvOp::new(b"", b"early", Op::Put(b"1".to_vec())).unwrap();
        log.add([], op.encode()).unwrap();
        let kv = Kv::open(&log).unwrap();
        assert_eq!(kv.get_single(b"early").unwrap(), Some(b"1".to_vec()));
        h = kv.put(b"k", b"v".to_vec()).unwrap();
        // Opening twice gives another handle on the same view.
        let again = Kv::open(&log).unwrap();
        assert_eq!(again.get(b"k").unwrap().unwrap().hashes(), vec![h]);
        let op = braidlog::kv::KvOp::new(b"", b"late", Op::Put(b"2".to_vec())).unwrap();
        log.add([], op.encode()).unwrap();
    }
    let log = Log::open(dir.path()).unwrap();
    let kv = Kv::open(&log).unwrap();
    assert_eq!(kv.get(b"k").unwrap().unwrap().hashes(), vec![h]);
    assert_eq!(keys(kv.iter()), [&b"early"[..], b"k", b"late"]);
    assert_verified_with_view(&log);
}

#[test]
fn typed_values() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Point {
        x: i32,
        y: i32,
    }
    let (a, b) = (kv_replica(), kv_replica());
    let pa = a.kv.typed::<Point>();
    let pb = b.kv.typed::<Point>();
    pa.put(b"p", &Point { x: 1, y: 2 }).unwrap();
    assert_eq!(pa.get_single(b"p").unwrap(), Some(Point { x: 1, y: 2 }));
    pb.put(b"p", &Point { x: 3, y: 4 }).unwrap();
    exchange(&a.log, &b.log);
    let both = pa.get(b"p").unwrap().unwrap();
    assert_eq!(both.len(), 2);
    let single = pa.get_single(b"p");
    assert!(
        matches!(&single, Err(KvError::Conflict { versions, .. }) if versions.len() == 2),
        "{single:?}"
    );
    pa.del(b"p").unwrap();
    assert_eq!(pa.get(b"p").unwrap(), None);
    // A value that does not decode names its version.
    a.kv.put(b"bad", vec![0xff; 11]).unwrap();
    assert!(matches!(pa.get(b"bad"), Err(KvError::Codec { .. })));
}

// ---- properties -------------------------------------------------------------------------

mod props {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    const REPLICAS: u8 = 3;
    const KEYS: [&[u8]; 5] = [b"", b"a", b"a\0", b"ab", b"b"];

    #[derive(Clone, Debug)]
    enum Step {
        Put {
            at: u8,
            key: u8,
            value: u8,
        },
        Del {
            at: u8,
            key: u8,
        },
        /// A write linking only some of the current versions (or none).
        Partial {
            at: u8,
            key: u8,
            value: u8,
            keep: u8,
        },
        Resolve {
            at: u8,
            key: u8,
        },
        AppNode {
            at: u8,
        },
        /// More concurrent versions than one node may link (never generated by `arbitrary`:
        /// see `prop_view_equals_rebuild_with_floods`).
        Flood {
            at: u8,
            key: u8,
        },
        Copy {
            from: u8,
            to: u8,
        },
    }

    impl Arbitrary for Step {
        fn arbitrary(g: &mut Gen) -> Step {
            let at = u8::arbitrary(g) % REPLICAS;
            let other = u8::arbitrary(g) % REPLICAS;
            let key = u8::arbitrary(g) % KEYS.len() as u8;
            let value = u8::arbitrary(g) % 4;
            match u8::arbitrary(g) % 12 {
                0..=3 => Step::Put { at, key, value },
                4 | 5 => Step::Del { at, key },
                6 => Step::Partial {
                    at,
                    key,
                    value,
                    keep: u8::arbitrary(g),
                },
                7 => Step::Resolve { at, key },
                8 => Step::AppNode { at },
                _ => Step::Copy {
                    from: at,
                    to: other,
                },
            }
        }

        fn shrink(&self) -> Box<dyn Iterator<Item = Step>> {
            Box::new(std::iter::empty())
        }
    }

    fn run(replicas: &[KvReplica], steps: &[Step]) {
        for step in steps {
            match *step {
                Step::Put { at, key, value } => {
                    replicas[at as usize]
                        .kv
                        .put(KEYS[key as usize], vec![value])
                        .unwrap();
                }
                Step::Del { at, key } => {
                    replicas[at as usize].kv.del(KEYS[key as usize]).unwrap();
                }
                Step::Partial {
                    at,
                    key,
                    value,
                    keep,
                } => {
                    let kv = &replicas[at as usize].kv;
                    let key = KEYS[key as usize];
                    let heads = kv.versions(key).unwrap().hashes();
                    let links = heads
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| keep & (1 << (i % 8)) != 0)
                        .map(|(_, h)| h);
                    kv.write(key, Write::from(Op::Put(vec![value])).superseding(links))
                        .unwrap();
                }
                Step::Resolve { at, key } => {
                    replicas[at as usize]
                        .kv
                        .resolve(KEYS[key as usize], Deterministic)
                        .unwrap();
                }
                Step::Flood { at, key } => {
                    let key = KEYS[key as usize];
                    replicas[at as usize]
                        .log
                        .transaction(|w| {
                            for i in 0..braidlog::MAX_LINKS as u32 + 3 {
                                let op = Op::Put(i.to_be_bytes().to_vec());
                                let op = braidlog::kv::KvOp::new(b"", key, op).unwrap();
                                w.add([], op.encode())?;
                            }
                            Ok(())
                        })
                        .unwrap();
                }
                Step::AppNode { at } => {
                    replicas[at as usize].log.append(b"app".to_vec()).unwrap();
                }
                Step::Copy { from, to } => {
                    copy(&replicas[from as usize].log, &replicas[to as usize].log);
                }
            }
        }
    }

    /// Everything the API answers, minus local seqs.
    #[derive(Debug, PartialEq, Eq)]
    struct Answers {
        versions: Vec<(Vec<u8>, Vec<Version>)>,
        scan: Vec<Entry>,
        conflicts: Vec<Entry>,
        ranges: Vec<Vec<Vec<u8>>>,
        history: Vec<BTreeSet<Hash>>,
    }

    fn answers(kv: &Kv) -> Answers {
        let a: &[u8] = b"a";
        let ab: &[u8] = b"ab";
        Answers {
            versions: KEYS
                .iter()
                .map(|k| (k.to_vec(), kv.versions(k).unwrap().into_iter().collect()))
                .collect(),
            scan: kv.iter().map(Result::unwrap).collect(),
            conflicts: kv.conflicts().map(Result::unwrap).collect(),
            ranges: vec![
                keys(kv.range(a..ab)),
                keys(kv.range(a..=ab)),
                keys(kv.prefix(b"a")),
            ],
            history: KEYS
                .iter()
                .map(|k| kv.history(k).map(|e| e.unwrap().hash).collect())
                .collect(),
        }
    }

    fn prop_view_equals_rebuild(steps: Vec<Step>) -> bool {
        let replicas: Vec<KvReplica> = (0..REPLICAS).map(|_| kv_replica()).collect();
        run(&replicas, &steps);
        replicas.iter().all(|r| {
            let report = r.log.verify().unwrap();
            let before = answers(&r.kv);
            r.log.reindex().unwrap();
            report.is_ok() && report.views == 1 && answers(&r.kv) == before
        })
    }

    /// Steps with one or two floods mixed in: the writes after a flood fold (put, del,
    /// resolve), replicas exchange folds and resolutions, and every view still equals its
    /// rebuild.
    #[derive(Clone, Debug)]
    struct WithFloods(Vec<Step>);

    impl Arbitrary for WithFloods {
        fn arbitrary(g: &mut Gen) -> WithFloods {
            let mut steps: Vec<Step> = Vec::arbitrary(g);
            steps.truncate(40);
            for _ in 0..1 + usize::arbitrary(g) % 2 {
                let at = usize::arbitrary(g) % (steps.len() + 1);
                let flood = Step::Flood {
                    at: u8::arbitrary(g) % REPLICAS,
                    key: u8::arbitrary(g) % KEYS.len() as u8,
                };
                steps.insert(at, flood);
            }
            WithFloods(steps)
        }
    }

    fn prop_view_equals_rebuild_with_floods(steps: WithFloods) -> bool {
        prop_view_equals_rebuild(steps.0.clone())
            && prop_replicas_that_exchanged_everything_agree(steps.0, vec![])
    }

    fn prop_replicas_that_exchanged_everything_agree(steps: Vec<Step>, order: Vec<u8>) -> bool {
        let replicas: Vec<KvReplica> = (0..REPLICAS).map(|_| kv_replica()).collect();
        run(&replicas, &steps);
        // Spread everything in an arbitrary order, then make sure every replica has it all.
        for pair in order.chunks(2) {
            if let [from, to] = *pair {
                copy(
                    &replicas[(from % REPLICAS) as usize].log,
                    &replicas[(to % REPLICAS) as usize].log,
                );
            }
        }
        for i in (0..REPLICAS as usize).chain(0..REPLICAS as usize) {
            let j = (i + 1) % REPLICAS as usize;
            copy(&replicas[i].log, &replicas[j].log);
        }
        let first = answers(&replicas[0].kv);
        replicas.iter().all(|r| answers(&r.kv) == first)
    }

    #[derive(Clone, Debug)]
    enum ModelStep {
        Put(u8, u8),
        Del(u8),
    }

    impl Arbitrary for ModelStep {
        fn arbitrary(g: &mut Gen) -> ModelStep {
            let key = u8::arbitrary(g) % 12;
            if u8::arbitrary(g) % 3 == 0 {
                ModelStep::Del(key)
            } else {
                ModelStep::Put(key, u8::arbitrary(g))
            }
        }
    }

    fn model_key(k: u8) -> Vec<u8> {
        // Short keys with zero bytes and shared prefixes, to exercise the key encoding.
        match k % 4 {
            0 => vec![k / 4],
            1 => vec![k / 4, 0],
            2 => vec![k / 4, 0, 1],
            _ => vec![k / 4, 1],
        }
    }

    fn prop_single_replica_agrees_with_a_btreemap(steps: Vec<ModelStep>, lo: u8, hi: u8) -> bool {
        let r = kv_replica();
        let mut model = BTreeMap::new();
        for step in &steps {
            match *step {
                ModelStep::Put(k, v) => {
                    r.kv.put(model_key(k), vec![v]).unwrap();
                    model.insert(model_key(k), vec![v]);
                }
                ModelStep::Del(k) => {
                    r.kv.del(model_key(k)).unwrap();
                    model.remove(&model_key(k));
                }
            }
        }
        let scanned: Vec<(Vec<u8>, Vec<u8>)> =
            r.kv.iter()
                .map(|e| {
                    let e = e.unwrap();
                    (e.key, e.versions.value().unwrap().to_vec())
                })
                .collect();
        let expected: Vec<_> = model.clone().into_iter().collect();
        let (lo, hi) = (model_key(lo), model_key(hi));
        let range_ok = lo > hi
            || keys(r.kv.range(lo.clone()..hi.clone()))
                == model
                    .range(lo.clone()..hi.clone())
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>();
        let prefix = vec![lo[0]];
        let prefix_ok = keys(r.kv.prefix(&prefix))
            == model
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect::<Vec<_>>();
        let gets_ok = (0..12)
            .all(|k| r.kv.get_single(model_key(k)).unwrap() == model.get(&model_key(k)).cloned());
        scanned == expected && range_ok && prefix_ok && gets_ok && r.kv.conflicts().count() == 0
    }

    fn quickcheck() -> QuickCheck {
        // Each case opens LMDB environments: keep the count modest.
        QuickCheck::new().tests(100).max_tests(1000)
    }

    #[test]
    fn view_equals_rebuild() {
        quickcheck().quickcheck(prop_view_equals_rebuild as fn(Vec<Step>) -> bool);
    }

    #[test]
    fn view_equals_rebuild_with_floods() {
        // Each case writes thousands of nodes: a few cases suffice.
        QuickCheck::new()
            .tests(8)
            .quickcheck(prop_view_equals_rebuild_with_floods as fn(WithFloods) -> bool);
    }

    #[test]
    fn replicas_that_exchanged_everything_agree() {
        quickcheck().quickcheck(
            prop_replicas_that_exchanged_everything_agree as fn(Vec<Step>, Vec<u8>) -> bool,
        );
    }

    #[test]
    fn single_replica_agrees_with_a_btreemap() {
        quickcheck().quickcheck(
            prop_single_replica_agrees_with_a_btreemap as fn(Vec<ModelStep>, u8, u8) -> bool,
        );
    }
}

#[test]
fn writes_to_many_keys_leave_one_head() {
    let r = kv_replica();
    for i in 0..200u32 {
        r.kv.put(format!("key-{i}"), i.to_be_bytes().to_vec())
            .unwrap();
    }
    r.kv.del("key-7").unwrap();
    assert_eq!(
        r.log.heads().unwrap().len(),
        1,
        "log heads are linked, not superseded"
    );
    assert_eq!(r.kv.iter().count(), 199);
    assert_eq!(r.kv.conflicts().count(), 0);
    assert_verified_with_view(&r.log);
}

#[test]
fn a_batch_commits_all_its_writes_or_none() {
    let r = kv_replica();
    r.kv.put("kept", "before").unwrap();
    let hashes =
        r.kv.batch(|b| {
            let mut out = Vec::new();
            for i in 0..500u32 {
                out.push(b.put(format!("k{i:03}"), i.to_string())?);
            }
            out.push(b.put("k007", "again")?);
            out.push(b.del("k008")?);
            out.push(b.put("kept", "after")?);
            Ok(out)
        })
        .unwrap();
    assert_eq!(hashes.len(), 503);
    assert_eq!(
        r.kv.get("k007").unwrap().unwrap().value(),
        Some(&b"again"[..])
    );
    assert!(r.kv.get("k008").unwrap().is_none());
    assert_eq!(
        r.kv.get("kept").unwrap().unwrap().value(),
        Some(&b"after"[..])
    );
    assert_eq!(
        r.kv.conflicts().count(),
        0,
        "writes in a batch see each other"
    );
    assert_eq!(r.log.heads().unwrap().len(), 1);
    assert_verified_with_view(&r.log);

    let before = r.log.last_seq().unwrap();
    let too_long = vec![b'x'; braidlog::kv::MAX_KEY_LEN + 1];
    let err = r.kv.batch(|b| {
        b.put("k001", "lost")?;
        b.put(&too_long, "too long")
    });
    assert!(matches!(err, Err(KvError::KeyTooLong { .. })), "{err:?}");
    assert_eq!(
        r.log.last_seq().unwrap(),
        before,
        "the failed batch stored nothing"
    );
    assert_eq!(r.kv.get("k001").unwrap().unwrap().value(), Some(&b"1"[..]));
    r.log.reindex().unwrap();
    assert_eq!(
        r.kv.get("k007").unwrap().unwrap().value(),
        Some(&b"again"[..])
    );
    assert_verified_with_view(&r.log);
}
