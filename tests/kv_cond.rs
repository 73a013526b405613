//! Conditional writes, read-modify-write, batches that read, reading and resolving in one
//! transaction, and ancestry queries, through the public API.

use braidlog::kv::MergeFn;
use braidlog::kv::{Deterministic, KvRead, Pick, Write};
use braidlog::kv::{KvError, Op};
use braidlog::{Error, Hash};

mod common;

use common::{kv_replica, sorted, KvReplica};

#[test]
fn write_if_refuses_a_key_that_changed_and_names_the_current_versions() {
    let KvReplica { dir: _d, log, kv } = kv_replica();
    let a = kv
        .write(b"k", Write::put(b"1".to_vec()).expecting(&[]))
        .unwrap();
    let b = kv
        .write(b"k", Write::put(b"2".to_vec()).expecting(&[a]))
        .unwrap();
    let before = log.len().unwrap();
    let err = kv
        .write(b"k", Write::put(b"3".to_vec()).expecting(&[a]))
        .unwrap_err();
    match err {
        KvError::Changed {
            key,
            expected,
            current,
        } => assert_eq!((key, expected, current), (b"k".to_vec(), vec![a], vec![b])),
        other => panic!("{other}"),
    }
    assert_eq!(log.len().unwrap(), before, "nothing written");
    // A version that arrived unseen (a concurrent write) also refuses the write.
    let c = kv
        .write(b"k", Write::from(Op::Put(b"c".to_vec())).superseding([a]))
        .unwrap();
    let r = kv.write(b"k", Write::put(b"4".to_vec()).expecting(&[b]));
    assert!(
        matches!(&r, Err(KvError::Changed { expected, current, .. })
            if *expected == vec![b] && *current == sorted(vec![b, c])),
        "{r:?}"
    );
    kv.write(b"k", Write::put(b"4".to_vec()).expecting(&[c, b]))
        .unwrap();
    assert_eq!(kv.get(b"k").unwrap().unwrap().value(), Some(&b"4"[..]));
}

/// No lost update: a write that lands between the read and the write of a read-modify-write
/// must not be superseded unseen.
#[test]
fn update_reads_again_when_a_write_lands_between_its_read_and_write() {
    let KvReplica {
        dir: _d,
        log: _log,
        kv,
    } = kv_replica();
    kv.put(b"n", b"10".to_vec()).unwrap();
    let (mut calls, other) = (0, kv.clone());
    kv.update(b"n", |versions| {
        calls += 1;
        let n: u64 = std::str::from_utf8(versions.value().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        if calls == 1 {
            // Another writer adds 5 after our read.
            other.put(b"n", (n + 5).to_string()).unwrap();
        }
        Ok::<_, KvError>(Some(Op::Put((n + 1).to_string().into_bytes())))
    })
    .unwrap();
    assert_eq!(calls, 2);
    assert_eq!(kv.get(b"n").unwrap().unwrap().value(), Some(&b"16"[..]));
}

#[test]
fn update_gives_up_after_its_bound_with_the_typed_error() {
    let KvReplica {
        dir: _d,
        log: _log,
        kv,
    } = kv_replica();
    let (mut calls, other) = (0, kv.clone());
    let err = kv
        .update(b"n", |_| {
            calls += 1;
            other.put(b"n", calls.to_string()).unwrap(); // changes it every time
            Ok::<_, KvError>(Some(Op::Put(b"mine".to_vec())))
        })
        .unwrap_err();
    assert!(matches!(err, KvError::Changed { .. }), "{err}");
    assert_eq!(calls, braidlog::kv::MAX_UPDATE_TRIES);
    // update can decline without writing.
    assert_eq!(kv.update::<Error>(b"x", |_| Ok(None)).unwrap(), None);
    assert!(kv.get(b"x").unwrap().is_none());
}

#[test]
fn a_batch_reads_what_it_supersedes() {
    let KvReplica {
        dir: _d,
        log: _log,
        kv,
    } = kv_replica();
    let root = kv.put(b"k", b"1".to_vec()).unwrap();
    let x = kv
        .write(
            b"k",
            Write::from(Op::Put(b"2".to_vec())).superseding([root]),
        )
        .unwrap();
    let y = kv
        .write(
            b"k",
            Write::from(Op::Put(b"3".to_vec())).superseding([root]),
        )
        .unwrap();
    kv.batch(|b| {
        let seen = b.versions(b"k")?;
        assert_eq!(seen.hashes(), sorted(vec![x, y]));
        let sum: u32 = seen
            .values()
            .map(|v| std::str::from_utf8(v).unwrap().parse::<u32>().unwrap())
            .sum();
        b.write(
            b"k",
            Write::from(Op::Put(sum.to_string().into_bytes())).expecting(&seen.hashes()),
        )?;
        assert_eq!(b.get(b"k")?.unwrap().value(), Some(&b"5"[..]));
        let r = b.write(b"k", Write::from(Op::Del).expecting(&[x]));
        assert!(
            matches!(&r, Err(KvError::Changed { expected, .. }) if *expected == vec![x]),
            "{r:?}"
        );
        Ok(())
    })
    .unwrap();
    assert_eq!(kv.get(b"k").unwrap().unwrap().value(), Some(&b"5"[..]));
}

#[test]
fn resolve_pick_reads_and_resolves_in_one_transaction_with_typed_errors() {
    let KvReplica {
        dir: _d,
        log: _log,
        kv,
    } = kv_replica();
    let root = kv.put(b"c", b"red".to_vec()).unwrap();
    let blue = kv
        .write(
            b"c",
            Write::from(Op::Put(b"blue".to_vec())).superseding([root]),
        )
        .unwrap();
    let green = kv
        .write(
            b"c",
            Write::from(Op::Put(b"green".to_vec())).superseding([root]),
        )
        .unwrap();
    let err = kv.resolve(b"c", Pick(&root.to_string())).unwrap_err();
    assert!(matches!(err, KvError::NoSuchVersion { .. }), "{err}");
    let err = kv.resolve(b"c", Pick("")).unwrap_err();
    assert!(
        matches!(err, KvError::AmbiguousVersion { matches: 2, .. }),
        "{err}"
    );
    let r = kv.resolve(b"c", Pick(&green.to_string())).unwrap().unwrap();
    let v = kv.get(b"c").unwrap().unwrap();
    assert_eq!((v.hashes(), v.value()), (vec![r], Some(&b"green"[..])));
    assert_eq!(
        kv.resolve(b"c", Pick(&blue.to_string())).unwrap(),
        None,
        "no conflict"
    );
}

#[test]
fn try_resolve_writes_nothing_when_the_merge_fails() {
    let KvReplica { dir: _d, log, kv } = kv_replica();
    let root = kv.put(b"k", b"1".to_vec()).unwrap();
    kv.write(
        b"k",
        Write::from(Op::Put(b"2".to_vec())).superseding([root]),
    )
    .unwrap();
    kv.write(
        b"k",
        Write::from(Op::Put(b"3".to_vec())).superseding([root]),
    )
    .unwrap();
    let before = log.len().unwrap();
    #[derive(Debug)]
    enum AppError {
        No,
        Store,
    }
    impl From<KvError> for AppError {
        fn from(_: KvError) -> Self {
            AppError::Store
        }
    }
    let r = kv.resolve(b"k", MergeFn::fallible(|_, _| Err::<Op, _>(AppError::No)));
    assert!(matches!(r, Err(AppError::No)), "{r:?}");
    let _ = AppError::Store;
    assert_eq!(log.len().unwrap(), before);
    assert!(kv.get(b"k").unwrap().unwrap().is_conflict());
}

/// Resolving a key used to leave its resolution as an extra head of the log until the next
/// write: resolving many keys then left as many heads, which every sync announces.
#[test]
fn resolutions_do_not_stay_heads_of_the_log() {
    let KvReplica { dir: _d, log, kv } = kv_replica();
    for key in ["a", "b", "c"] {
        let root = kv.put(key, b"0".to_vec()).unwrap();
        kv.write(key, Write::from(Op::Put(b"1".to_vec())).superseding([root]))
            .unwrap();
        kv.write(key, Write::from(Op::Put(b"2".to_vec())).superseding([root]))
            .unwrap();
    }
    kv.resolve("a", Deterministic).unwrap().unwrap();
    kv.resolve("b", MergeFn::new(|_, _| b"x".to_vec()))
        .unwrap()
        .unwrap();
    let c = kv.versions("c").unwrap().hashes()[0];
    let last = kv.resolve("c", Pick(&c.to_string())).unwrap().unwrap();
    assert_eq!(log.heads().unwrap(), vec![last]);
}

#[test]
fn merge_base_and_history_since_follow_the_keys_dag() {
    let KvReplica {
        dir: _d,
        log: _log,
        kv,
    } = kv_replica();
    let a = kv.put(b"k", b"a".to_vec()).unwrap();
    let b = kv.put(b"k", b"b".to_vec()).unwrap();
    // Another key in between: its writes link the log's heads, never the key's DAG.
    kv.put(b"other", b"o".to_vec()).unwrap();
    let x = kv
        .write(b"k", Write::from(Op::Put(b"x".to_vec())).superseding([b]))
        .unwrap();
    let y = kv
        .write(b"k", Write::from(Op::Put(b"y".to_vec())).superseding([b]))
        .unwrap();
    let y2 = kv
        .write(b"k", Write::from(Op::Put(b"y2".to_vec())).superseding([y]))
        .unwrap();
    assert_eq!(kv.merge_base(b"k", &[x, y2]).unwrap(), vec![b]);
    assert_eq!(
        kv.merge_base(b"k", &[y2, y]).unwrap(),
        vec![y],
        "one behind the other"
    );
    assert_eq!(kv.merge_base(b"k", &[x]).unwrap(), vec![x]);
    // Criss-cross: two merges of x and y2, each seeing both: two bases.
    let m1 = kv
        .write(
            b"k",
            Write::from(Op::Put(b"m1".to_vec())).superseding([x, y2]),
        )
        .unwrap();
    let m2 = kv
        .write(
            b"k",
            Write::from(Op::Put(b"m2".to_vec())).superseding([x, y2]),
        )
        .unwrap();
    assert_eq!(kv.merge_base(b"k", &[m1, m2]).unwrap(), sorted(vec![x, y2]));
    // A second root (another replica created the key): no common ancestor with it.
    let lone = kv
        .write(b"k", Write::from(Op::Put(b"lone".to_vec())).superseding([]))
        .unwrap();
    assert_eq!(
        kv.merge_base(b"k", &[m1, lone]).unwrap(),
        Vec::<Hash>::new()
    );
    // Not an operation on the key: a typed error.
    let other = kv.put(b"other", b"p".to_vec()).unwrap();
    let err = kv.merge_base(b"k", &[m1, other]).unwrap_err();
    assert!(matches!(err, KvError::NotAnOperation { .. }), "{err}");

    let since: Vec<Hash> = kv
        .history_since(b"k", b)
        .unwrap()
        .into_iter()
        .map(|e| e.hash)
        .collect();
    assert_eq!(since.len(), 6);
    assert!(!since.contains(&a) && !since.contains(&b));
    let pos = |h| since.iter().position(|s| *s == h).unwrap();
    assert!(pos(y) < pos(y2) && pos(y2) < pos(m1) && pos(x) < pos(m2));
    let causal: Vec<Hash> = kv
        .history_causal(b"k")
        .unwrap()
        .into_iter()
        .map(|e| e.hash)
        .collect();
    assert_eq!(causal.len(), 8);
    let at = |h| causal.iter().position(|s| *s == h).unwrap();
    assert!(at(a) < at(b) && at(b) < at(x) && at(y) < at(y2) && at(y2) < at(m1));
    assert!(at(lone) < at(b), "a root: depth 1, like `a`");
}

/// Merge base over more versions than one node may link (folds are walked through) and a
/// long history below the base (not walked).
#[test]
fn merge_base_of_many_versions_through_folds() {
    let KvReplica {
        dir: _d,
        log: _log,
        kv,
    } = kv_replica();
    let mut last = kv.put(b"k", b"0".to_vec()).unwrap();
    for i in 0..50 {
        last = kv.put(b"k", i.to_string()).unwrap();
    }
    let mut tips = Vec::new();
    for i in 0..1100 {
        tips.push(
            kv.write(
                b"k",
                Write::from(Op::Put(format!("v{i}").into_bytes())).superseding([last]),
            )
            .unwrap(),
        );
    }
    assert_eq!(kv.merge_base(b"k", &tips).unwrap(), vec![last]);
    // A put supersedes them through folds; the base of it and one more concurrent write
    // is `last` again, found through the folds.
    let merged = kv.put(b"k", b"merged".to_vec()).unwrap();
    let side = kv
        .write(
            b"k",
            Write::from(Op::Put(b"side".to_vec())).superseding([last]),
        )
        .unwrap();
    assert_eq!(kv.merge_base(b"k", &[merged, side]).unwrap(), vec![last]);
}
