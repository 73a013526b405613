//! The key-value view at its limits: keys with more versions than one node may link (folded
//! resolutions), scans that race with writes, and `braid verify` on a damaged view.

use braidlog::kv::MergeFn;
use braidlog::kv::{Deterministic, KvRead, Write};
use braidlog::kv::{KvOp, Op};
use braidlog::MAX_LINKS;
use braidlog::{Hash, Log, Node};

mod common;

use common::{assert_verified, assert_verified_with_view, kv_replica, open_kv, KvReplica};

/// Writes `n` versions of `key` that saw nothing (as `n` replicas writing at once would), in
/// one transaction. Returns their hashes.
fn concurrent_versions(log: &Log, key: &[u8], n: u32) -> Vec<Hash> {
    log.transaction(|w| {
        (0..n)
            .map(|i| {
                let op = KvOp::new(b"", key, Op::Put(i.to_be_bytes().to_vec())).unwrap();
                Ok(w.add([], op.encode())?.hash())
            })
            .collect()
    })
    .unwrap()
}

#[test]
fn a_key_with_more_versions_than_a_node_may_link_can_be_resolved() {
    let KvReplica { dir: _dir, log, kv } = kv_replica();
    let n = MAX_LINKS as u32 * 2 + 300; // two full folds and a partial one
    let mut versions = concurrent_versions(&log, b"k", n);
    // The deterministic policy: all at depth 1, so the greatest hash wins.
    let winner = (0..n).max_by_key(|&i| versions[i as usize]).unwrap();
    versions.sort();
    assert_eq!(kv.get(b"k").unwrap().unwrap().len(), n as usize);
    assert_eq!(kv.conflicts().count(), 1);

    let top = kv
        .resolve(b"k", Deterministic)
        .unwrap()
        .expect("a conflict");
    let got = kv.get(b"k").unwrap().unwrap();
    assert_eq!(got.hashes(), vec![top], "one version left: the resolution");
    assert_eq!(got.value(), Some(&winner.to_be_bytes()[..]));
    assert_eq!(kv.conflicts().count(), 0);

    // History: the resolution links three fold nodes, which link every version; the folds
    // are not operations on the key, so they are not history entries of their own.
    let history: Vec<_> = kv.history(b"k").map(Result::unwrap).collect();
    assert_eq!(history.len(), n as usize + 1);
    assert_eq!(history[0].hash, top);
    assert!(history[0].supersedes.is_empty());
    assert_eq!(history[0].folds.len(), 3);
    let mut under_folds = Vec::new();
    for fold in &history[0].folds {
        under_folds.extend_from_slice(log.get(fold).unwrap().unwrap().links());
    }
    under_folds.sort();
    assert_eq!(under_folds, versions);
    assert_eq!(history[0].depth, 2, "folds do not add depth");
    assert!(history[1..]
        .iter()
        .all(|e| !e.current && e.folds.is_empty()));
    assert_verified_with_view(&log);
    log.reindex().unwrap();
    assert_eq!(kv.get(b"k").unwrap().unwrap().hashes(), vec![top]);
}

#[test]
fn put_and_del_fold_too_and_the_key_stays_writable() {
    let KvReplica { dir: _dir, log, kv } = kv_replica();
    concurrent_versions(&log, b"k", MAX_LINKS as u32 + 1);
    let put = kv.put(b"k", b"one".to_vec()).unwrap();
    assert_eq!(kv.get(b"k").unwrap().unwrap().hashes(), vec![put]);
    concurrent_versions(&log, b"k", MAX_LINKS as u32 + 5);
    kv.del(b"k").unwrap();
    assert!(kv.get(b"k").unwrap().is_none());
    assert_eq!(kv.versions(b"k").unwrap().len(), 1);
    concurrent_versions(&log, b"k", MAX_LINKS as u32 * 3);
    kv.batch(|b| b.put(b"k", b"batched".to_vec())).unwrap();
    assert_eq!(
        kv.get(b"k").unwrap().unwrap().value(),
        Some(&b"batched"[..])
    );
    assert_eq!(
        log.heads().unwrap().len(),
        1,
        "fold nodes are linked, not heads"
    );
    assert_verified_with_view(&log);
}

/// Two replicas folding the same versions write the same fold nodes when they write unsigned
/// (signed fold nodes name their author, so each replica writes its own), so after an exchange
/// the only conflict is between the two resolutions, as with an ordinary resolution.
#[test]
fn replicas_folding_the_same_versions_agree_on_the_folds() {
    let KvReplica {
        dir: _da,
        log: a_log,
        kv: a,
    } = kv_replica();
    let KvReplica {
        dir: _db,
        log: b_log,
        kv: b,
    } = kv_replica();
    a_log.set_identity(None);
    b_log.set_identity(None);
    concurrent_versions(&a_log, b"k", MAX_LINKS as u32 + 10);
    for entry in a_log.changes(0) {
        b_log.insert(&[&entry.unwrap().node]).unwrap();
    }
    let ra = a
        .resolve(b"k", MergeFn::new(|_, _| b"from a".to_vec()))
        .unwrap()
        .unwrap();
    let rb = b
        .resolve(b"k", MergeFn::new(|_, _| b"from b".to_vec()))
        .unwrap()
        .unwrap();
    let before = a_log.len().unwrap();
    for entry in b_log.changes(0) {
        a_log.insert(&[&entry.unwrap().node]).unwrap();
    }
    assert_eq!(
        a_log.len().unwrap(),
        before + 1,
        "only b's resolution was new"
    );
    let mut both = vec![ra, rb];
    both.sort();
    assert_eq!(a.get(b"k").unwrap().unwrap().hashes(), both);
    assert_verified_with_view(&a_log);
}

/// Signed, each replica folds under its own key: more nodes, the same reading.
#[test]
fn signed_replicas_folding_the_same_versions_agree_on_the_reading() {
    let KvReplica {
        dir: _da,
        log: a_log,
        kv: a,
    } = kv_replica();
    let KvReplica {
        dir: _db,
        log: b_log,
        kv: b,
    } = kv_replica();
    concurrent_versions(&a_log, b"k", MAX_LINKS as u32 + 10);
    for entry in a_log.changes(0) {
        b_log.insert(&[&entry.unwrap().node]).unwrap();
    }
    let ra = a
        .resolve(b"k", MergeFn::new(|_, _| b"from a".to_vec()))
        .unwrap()
        .unwrap();
    let rb = b
        .resolve(b"k", MergeFn::new(|_, _| b"from b".to_vec()))
        .unwrap()
        .unwrap();
    for entry in b_log.changes(0) {
        a_log.insert(&[&entry.unwrap().node]).unwrap();
    }
    for entry in a_log.changes(0) {
        b_log.insert(&[&entry.unwrap().node]).unwrap();
    }
    let mut both = vec![ra, rb];
    both.sort();
    assert_eq!(a.get(b"k").unwrap().unwrap().hashes(), both);
    assert_eq!(a.get(b"k").unwrap(), b.get(b"k").unwrap());
    assert_verified_with_view(&a_log);
    assert_verified_with_view(&b_log);
}

/// A replica that received the fold nodes but not yet the resolution on top of them (a sync
/// cut between batches) still shows every original version: a fold hides nothing by itself.
#[test]
fn fold_nodes_alone_change_no_read() {
    let KvReplica {
        dir: _da,
        log: a_log,
        kv: a,
    } = kv_replica();
    let KvReplica {
        dir: _db,
        log: b_log,
        kv: b,
    } = kv_replica();
    let versions = concurrent_versions(&a_log, b"k", MAX_LINKS as u32 + 10);
    let top = a.put(b"k", b"merged".to_vec()).unwrap();
    for entry in a_log.changes(0) {
        let node = entry.unwrap().node;
        if node.hash() != top {
            b_log.insert(&[&node]).unwrap();
        }
    }
    let mut sorted = versions.clone();
    sorted.sort();
    assert_eq!(b.get(b"k").unwrap().unwrap().hashes(), sorted);
    assert_eq!(b.history(b"k").count(), versions.len());
    assert_verified_with_view(&b_log);
    b_log.insert(&[&a_log.get(&top).unwrap().unwrap()]).unwrap();
    assert_eq!(b.get(b"k").unwrap().unwrap().hashes(), vec![top]);
    assert_verified_with_view(&b_log);
}

/// A scan resumes at the next key's id, not at the first version it saw of it: a write
/// between chunks that replaces that version with one of a smaller hash must not hide the key.
#[test]
fn a_scan_sees_a_key_rewritten_between_chunks() {
    let KvReplica { dir: _dir, log, kv } = kv_replica();
    let key = |i: u32| format!("k{i:03}").into_bytes();
    let mut old = Vec::new();
    log.transaction(|w| {
        old = (0..300)
            .map(|i| {
                let op = KvOp::new(b"", &key(i), Op::Put(vec![1])).unwrap();
                Ok(w.add([], op.encode())?.hash())
            })
            .collect::<Result<_, braidlog::LogError>>()?;
        Ok(())
    })
    .unwrap();
    // Scans read 256 keys a chunk: the first chunk ends just before k256.
    let boundary = key(256);
    let replaced = old[256];
    let value = (0u32..)
        .map(|i| i.to_be_bytes().to_vec())
        .find(|v| {
            let op = KvOp::new(b"", &boundary, Op::Put(v.clone())).unwrap();
            Node::new([replaced], op.encode()).unwrap().hash() < replaced
        })
        .unwrap();

    let mut scan = kv.iter();
    let first: Vec<_> = scan.by_ref().take(256).map(|e| e.unwrap().key).collect();
    assert_eq!(first.last(), Some(&key(255)));
    // Between chunks: supersede k256's only version with one that sorts before it.
    kv.write(
        &boundary,
        Write::from(Op::Put(value)).superseding([replaced]),
    )
    .unwrap();
    let rest: Vec<_> = scan.map(|e| e.unwrap().key).collect();
    assert_eq!(rest.first(), Some(&boundary), "the rewritten key is seen");
    assert_eq!(first.len() + rest.len(), 300);
}

/// `Log::verify` checks the key-value view that `Kv::get` reads: a value changed on disk in the
/// view's table is reported, not served silently.
#[test]
fn verify_reports_a_damaged_kv_table() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, kv) = open_kv(dir.path());
        kv.put(b"a", b"honest".to_vec()).unwrap();
        kv.put(b"b", b"other".to_vec()).unwrap();
        assert_verified(&log);
    }
    damage_kv_value(dir.path(), b"evil!!");
    let (log, kv) = open_kv(dir.path());
    let versions = kv.get(b"a").unwrap().unwrap();
    let values: Vec<Option<&[u8]>> = versions.as_slice().iter().map(|v| v.value()).collect();
    assert_eq!(
        values,
        vec![Some(&b"evil!!"[..])],
        "reads trust the view, which is why verify must check it"
    );
    let report = log.verify().unwrap();
    assert!(!report.is_ok(), "verify must fail: {report:?}");
    let text = report
        .violations
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("view kv"), "{text}");
}

/// Rewrites the value of the first entry of the view's current-versions table, keeping its
/// layout valid (a put of another value): damage only a comparison with a rebuild finds.
fn damage_kv_value(dir: &std::path::Path, value: &[u8]) {
    use heed::types::Bytes;
    let mut opts = heed::EnvOpenOptions::new().read_txn_without_tls();
    opts.max_dbs(64);
    // SAFETY: the test's own store, closed by the block that wrote it; nothing else maps it.
    let env = unsafe { opts.open(dir) }.unwrap();
    let wtxn = env.write_txn().unwrap();
    let table = env
        .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
            Ok(heed::CommitOrAbort::<_, ()>::Commit(
                dbo.create_database::<Bytes, Bytes>(wtxn, Some("kv-current-v1"))?,
            ))
        })
        .unwrap()
        .unwrap_commit();
    let mut txn = env.write_txn().unwrap();
    let (k, v) = {
        let (k, v) = table.first(&txn).unwrap().unwrap();
        (k.to_vec(), v.to_vec())
    };
    let mut damaged = v[..9].to_vec();
    damaged.extend_from_slice(value);
    table.put(&mut txn, &k, &damaged).unwrap();
    txn.commit().unwrap();
}

/// A peer floods a key with more versions than a node may link; the victim resolves it (with
/// folds) and the resolution reaches the peer by sync: both converge on one version.
#[tokio::test]
async fn a_flooded_key_is_resolved_and_the_resolution_syncs() {
    let KvReplica {
        dir: _da,
        log: a_log,
        kv: a,
    } = kv_replica();
    let KvReplica {
        dir: _db,
        log: b_log,
        kv: b,
    } = kv_replica();
    concurrent_versions(&a_log, b"k", MAX_LINKS as u32 * 2);
    common::both(&a_log, &b_log).await;
    assert_eq!(b.versions(b"k").unwrap().len(), MAX_LINKS * 2);
    let top = b.put(b"k", b"calm".to_vec()).unwrap();
    common::both(&a_log, &b_log).await;
    for kv in [&a, &b] {
        assert_eq!(kv.get(b"k").unwrap().unwrap().hashes(), vec![top]);
    }
    assert_eq!(a_log.heads().unwrap(), b_log.heads().unwrap());
    assert_verified_with_view(&a_log);
    assert_verified_with_view(&b_log);
}
