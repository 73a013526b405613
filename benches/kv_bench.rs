//! Key-value workloads, whole: puts/s and gets/s, a conflict-heavy workload where two
//! replicas write the same keys concurrently, sync, list the conflicts and resolve them, and
//! one key with thousands of concurrent versions (stored one by one, then resolved by one
//! folded write), whose cost must grow linearly with the number of versions.
//!
//! The merge toolkit: merge base and counter adjustments on one key with 10^4 operations of
//! history, 10^4 concurrent versions, and two long branches.
//!
//! `cargo bench --bench kv_bench` (sizes: `BRAID_BENCH_KV_N`, default 100000; only the
//! many-versions part: `BRAID_BENCH_KV_ONLY=versions`; only the merge toolkit:
//! `BRAID_BENCH_KV_ONLY=merge`).

use braidlog::kv::{Deterministic, KvRead};
use std::time::Instant;

use braidlog::kv::{Counter, KvOp, Op};
use braidlog::sync::{sync, Mode, SyncOptions};
use braidlog::Hash;
use braidlog::{Durability, Kv, Log, LogOptions};

fn open(dir: &std::path::Path, durability: Durability) -> (Log, Kv) {
    let log = Log::open_with(
        dir,
        LogOptions {
            durability,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let kv = Kv::open(&log).unwrap();
    (log, kv)
}

fn row(name: &str, n: u64, secs: f64, note: &str) {
    println!(
        "| {name:<34} | {n:>8} | {:>10.0} | {:>8.3} | {note} |",
        n as f64 / secs,
        secs
    );
}

fn main() {
    let n: u64 = std::env::var("BRAID_BENCH_KV_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let value = vec![0x5a; 100];
    println!("| workload | ops | ops/s | secs | note |");
    println!("|---|---:|---:|---:|---|");
    if std::env::var("BRAID_BENCH_KV_ONLY").as_deref() == Ok("versions") {
        many_versions_of_one_key();
        return;
    }
    if std::env::var("BRAID_BENCH_KV_ONLY").as_deref() == Ok("merge") {
        merge_toolkit();
        return;
    }

    // Puts: each reads the key's current versions and the log's heads, stores the node and
    // updates the view, in one transaction.
    let tmp = tempfile::tempdir().unwrap();
    let (_log, kv) = open(&tmp.path().join("puts"), Durability::NoSync);
    let t = Instant::now();
    for i in 0..n {
        kv.put(format!("key/{i:08}"), value.clone()).unwrap();
    }
    row(
        "put, new keys, NoSync",
        n,
        t.elapsed().as_secs_f64(),
        "one transaction per put",
    );
    let t = Instant::now();
    for i in 0..n {
        kv.put(format!("key/{:08}", (i * 7919) % n), value.clone())
            .unwrap();
    }
    row(
        "put, overwrite, NoSync",
        n,
        t.elapsed().as_secs_f64(),
        "supersedes one version",
    );
    let (_blog, bkv) = open(&tmp.path().join("batched"), Durability::Sync);
    let t = Instant::now();
    for chunk in 0..n.div_ceil(10_000) {
        bkv.batch(|b| {
            for i in chunk * 10_000..((chunk + 1) * 10_000).min(n) {
                b.put(format!("key/{i:08}"), value.clone())?;
            }
            Ok(())
        })
        .unwrap();
    }
    row(
        "put, new keys, batches of 10k, durable",
        n,
        t.elapsed().as_secs_f64(),
        "Kv::batch",
    );
    let t = Instant::now();
    for i in 0..n {
        assert!(kv
            .get(format!("key/{:08}", (i * 7919) % n))
            .unwrap()
            .is_some());
    }
    row(
        "get, random keys",
        n,
        t.elapsed().as_secs_f64(),
        "one read transaction per get",
    );
    let t = Instant::now();
    let scanned = kv.iter().count() as u64;
    row(
        "scan all keys (iter)",
        scanned,
        t.elapsed().as_secs_f64(),
        "chunked read transactions",
    );

    let durable_n = (n / 50).max(100);
    let (_dlog, dkv) = open(&tmp.path().join("durable"), Durability::Sync);
    let t = Instant::now();
    for i in 0..durable_n {
        dkv.put(format!("key/{i:08}"), value.clone()).unwrap();
    }
    row(
        "put, durable",
        durable_n,
        t.elapsed().as_secs_f64(),
        "an fsync per put",
    );

    // Conflict-heavy: both replicas write every key, then sync: every key has two versions.
    let m = (n / 10).max(100);
    let (a_log, a) = open(&tmp.path().join("a"), Durability::NoSync);
    let (b_log, b) = open(&tmp.path().join("b"), Durability::NoSync);
    for i in 0..m {
        a.put(format!("key/{i:08}"), b"from a".to_vec()).unwrap();
        b.put(format!("key/{i:08}"), b"from b".to_vec()).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    let (ra, rb) = rt.block_on(async {
        let (sa, sb) = tokio::io::duplex(1 << 20);
        tokio::join!(
            sync(&a_log, sa, SyncOptions::new(Mode::Both)),
            sync(&b_log, sb, SyncOptions::new(Mode::Both))
        )
    });
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    row(
        "sync 2 x m conflicting writes",
        ra.nodes_received + rb.nodes_received,
        t.elapsed().as_secs_f64(),
        &format!(
            "{} round trip(s), view updated in the receiving transactions",
            ra.round_trips
        ),
    );
    let t = Instant::now();
    let conflicts = a.conflicts().count() as u64;
    row(
        "list conflicts",
        conflicts,
        t.elapsed().as_secs_f64(),
        "every key conflicted",
    );
    assert_eq!(conflicts, m);
    let t = Instant::now();
    for i in 0..m {
        assert!(a.get(format!("key/{i:08}")).unwrap().unwrap().is_conflict());
    }
    row(
        "get, conflicted keys (2 versions)",
        m,
        t.elapsed().as_secs_f64(),
        "",
    );
    let t = Instant::now();
    for i in 0..m {
        a.resolve(format!("key/{i:08}"), Deterministic)
            .unwrap()
            .unwrap();
    }
    row(
        "resolve_deterministic",
        m,
        t.elapsed().as_secs_f64(),
        "one write per key",
    );
    assert_eq!(a.conflicts().count(), 0);
    println!(
        "\n{m} keys in conflict after the sync; all resolved on one replica; verify: {}",
        if a_log.verify().unwrap().is_ok() && b_log.verify().unwrap().is_ok() {
            "ok"
        } else {
            "FAILED"
        }
    );
    many_versions_of_one_key();
}

/// One key, `n` concurrent versions stored one transaction each (as writers that never saw
/// each other, or a peer flooding the key), then resolved by one write that folds them all.
/// Storing a version costs O(its links) in the view and resolving costs O(versions), so both
/// grow linearly. Each figure is the best of several runs on fresh stores (resolutions take
/// milliseconds, and a shared machine is noisy).
fn many_versions_of_one_key() {
    const REPEAT: usize = 9;
    let sizes = [1_250u32, 2_500, 5_000, 10_000];
    let payload = |i: u32| {
        KvOp::new(b"", b"hot", Op::Put(i.to_be_bytes().to_vec()))
            .unwrap()
            .encode()
    };
    let mut store_secs = Vec::new();
    let mut resolve_secs = Vec::new();
    for &n in &sizes {
        let mut stored = f64::MAX;
        let mut kept = None;
        for _ in 0..5 {
            let tmp = tempfile::tempdir().unwrap();
            let (log, kv) = open(tmp.path(), Durability::NoSync);
            let t = Instant::now();
            for i in 0..n {
                log.add([], payload(i)).unwrap();
            }
            stored = stored.min(t.elapsed().as_secs_f64());
            kept = Some((tmp, kv));
        }
        let (_tmp, kv) = kept.expect("five runs");
        row(
            &format!("store {n} concurrent versions"),
            n.into(),
            stored,
            "one transaction each, one key, best of 5",
        );
        let mut best = f64::MAX;
        for run in 0..REPEAT {
            let (_dir, kv) = if run == 0 {
                (None, kv.clone())
            } else {
                let tmp = tempfile::tempdir().unwrap();
                let (log, kv) = open(tmp.path(), Durability::NoSync);
                log.transaction(|w| (0..n).try_for_each(|i| w.add([], payload(i)).map(drop)))
                    .unwrap();
                (Some(tmp), kv)
            };
            let t = Instant::now();
            kv.resolve(b"hot", Deterministic).unwrap().unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!(kv.get(b"hot").unwrap().unwrap().len(), 1);
        }
        row(
            &format!("resolve {n} versions"),
            n.into(),
            best,
            &format!(
                "one transaction, {} fold nodes, best of {REPEAT}",
                n.div_ceil(1024)
            ),
        );
        store_secs.push(stored);
        resolve_secs.push(best);
    }
    let last = sizes.len() - 1;
    println!(
        "\n{}x versions ({} -> {}): storing took {:.1}x the time, resolving {:.1}x",
        sizes[last] / sizes[0],
        sizes[0],
        sizes[last],
        store_secs[last] / store_secs[0],
        resolve_secs[last] / resolve_secs[0]
    );
}

/// Median seconds of `runs` calls of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut secs: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    secs[runs / 2]
}

fn time_row(name: &str, secs: f64, note: &str) {
    println!(
        "| {name:<34} | {:>8} | {:>10.0} | {:>8.6} | {note} |",
        1,
        1.0 / secs,
        secs
    );
}

/// The merge toolkit at 10^4 operations on one key. The cost that matters is per merge or
/// per adjustment, so each row is one call (median), with ops/s its rate.
fn merge_toolkit() {
    const HISTORY: u32 = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    let (log, kv) = open(tmp.path(), Durability::NoSync);
    kv.register_merge("stock/", Counter).unwrap();
    // 10^4 adjustments in a line (batched: the history is the setup, not the measure).
    let key = "stock/bolts";
    let mut tip = Counter::add(&kv, key, 1).unwrap();
    log.transaction(|w| {
        for i in 1..HISTORY {
            let node = w.add(
                [tip],
                KvOp::new(
                    b"",
                    key.as_bytes(),
                    Op::Put(Counter::encode(i64::from(i) + 1, 1)),
                )
                .unwrap()
                .encode(),
            )?;
            tip = node.hash();
        }
        Ok(())
    })
    .unwrap();
    // Two concurrent adjustments on the tip: their merge base is the tip, 10^4 ops down.
    let bases = |a: Hash, b: Hash| kv.merge_base(key, &[a, b]).unwrap();
    let (a, b) = log
        .transaction(|w| {
            let p = |d: i64| {
                KvOp::new(
                    b"",
                    key.as_bytes(),
                    Op::Put(Counter::encode(i64::from(HISTORY) + d, d)),
                )
                .unwrap()
                .encode()
            };
            Ok((w.add([tip], p(5))?.hash(), w.add([tip], p(7))?.hash()))
        })
        .unwrap();
    assert_eq!(bases(a, b), vec![tip]);
    let secs = median(1001, || {
        bases(a, b);
    });
    time_row(
        "merge base, 2 versions, 10^4 history",
        secs,
        "base is the tip: walks 3 nodes",
    );
    // Counter::add on that key: reads the versions, sums since the merge base, writes.
    let secs = median(201, || {
        Counter::add(&kv, key, 1).unwrap();
    });
    time_row(
        "Counter::add, 10^4 history",
        secs,
        "one adjustment: read, merge base, conditional write",
    );
    assert_eq!(
        Counter::value(&kv, key).unwrap(),
        i64::from(HISTORY) + 12 + 201
    );

    // Two branches of 5,000 operations each from one root: the walk covers both.
    let tmp2 = tempfile::tempdir().unwrap();
    let (log2, kv2) = open(tmp2.path(), Durability::NoSync);
    let root = kv2.put("k", b"root".to_vec()).unwrap();
    let tips = log2
        .transaction(|w| {
            let mut tips = Vec::new();
            for side in 0..2u8 {
                let mut at = root;
                for i in 0..(HISTORY / 2) {
                    let p = KvOp::new(b"", b"k", Op::Put(vec![side, (i % 251) as u8]))
                        .unwrap()
                        .encode();
                    at = w.add([at], p)?.hash();
                }
                tips.push(at);
            }
            Ok(tips)
        })
        .unwrap();
    let secs = median(21, || {
        assert_eq!(kv2.merge_base("k", &tips).unwrap(), vec![root])
    });
    time_row(
        "merge base, 2 branches of 5,000",
        secs,
        "walks all 10^4 operations above the base",
    );

    // 10^4 concurrent versions of one key on one base.
    let tmp3 = tempfile::tempdir().unwrap();
    let (log3, kv3) = open(tmp3.path(), Durability::NoSync);
    let base = kv3.put("k", b"base".to_vec()).unwrap();
    let versions = log3
        .transaction(|w| {
            (0..HISTORY)
                .map(|i| {
                    let p = KvOp::new(b"", b"k", Op::Put(i.to_be_bytes().to_vec()))
                        .unwrap()
                        .encode();
                    w.add([base], p).map(|n| n.hash())
                })
                .collect::<Result<Vec<_>, braidlog::LogError>>()
        })
        .unwrap();
    let secs = median(11, || {
        assert_eq!(kv3.merge_base("k", &versions).unwrap(), vec![base])
    });
    time_row(
        "merge base, 10^4 concurrent versions",
        secs,
        "one bit per version per node walked",
    );
}
