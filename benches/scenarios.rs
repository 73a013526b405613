//! Whole-scenario benchmarks: braidlog's append paths next to the physical limits of this
//! machine (blake3, raw LMDB through heed) and, optionally, the JavaScript hyperlog.
//!
//! ```text
//! cargo bench --bench scenarios                          # 10^4 and 10^5 nodes
//! BRAID_BENCH_MAX=1000000 cargo bench --bench scenarios  # adds 10^6
//! BRAID_BENCH_HYPERLOG=1 cargo bench --bench scenarios   # adds hyperlog (npm install first)
//! BRAID_BENCH_ONLY=lmdb cargo bench --bench scenarios    # scenarios whose name contains "lmdb"
//! ```
//!
//! Every scenario runs in a child process of this binary, so each peak RSS (VmHWM) is its own.
//! See docs/PERFORMANCE.md for the method and the figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use braidlog::{Durability, Hash, Log, LogOptions, Node};
use heed::PutFlags;

#[path = "common/workload.rs"]
mod workload;
use workload::{
    chain, feed_values, hyperlog_field, hyperlog_run, lmdb_append_with, payload, peak_rss_kib,
    raw_env_with, BATCH,
};

/// A fresh raw environment with durable commits.
fn raw_env(dir: &Path, n: usize, size: usize) -> (heed::Env, workload::Raw, workload::Raw) {
    raw_env_with(dir, n, size, false)
}

const PAYLOADS: [usize; 2] = [100, 4096];

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    what: &'static str,
    /// Largest n this scenario runs at by default (single durable commits are slow).
    cap: Option<usize>,
    run: fn(&Path, usize, usize) -> (usize, Duration),
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "blake3",
        what: "blake3 of each node's encoding (limit)",
        cap: None,
        run: blake3_only,
    },
    Scenario {
        name: "node-new",
        what: "Node::new: encode + hash, no storage",
        cap: None,
        run: node_new,
    },
    Scenario {
        name: "lmdb-append",
        what: "raw LMDB: seq APPEND + hash index, 10k/txn, durable (limit)",
        cap: None,
        run: lmdb_append,
    },
    Scenario {
        name: "lmdb-append-nosync",
        what: "raw LMDB: as lmdb-append, NoSync commits (limit for braid-batch-nosync)",
        cap: None,
        run: lmdb_append_nosync,
    },
    Scenario {
        name: "lmdb-random",
        what: "raw LMDB: random-key puts, 10k/txn, durable",
        cap: None,
        run: lmdb_random,
    },
    Scenario {
        name: "lmdb-single-nosync",
        what: "raw LMDB: the same two puts, one NoSync txn per node (limit for single adds)",
        cap: None,
        run: lmdb_single_nosync,
    },
    Scenario {
        name: "lmdb-single-sync",
        what: "raw LMDB: the same two puts, one durable txn per node",
        cap: Some(10_000),
        run: lmdb_single_sync,
    },
    Scenario {
        name: "braid-batch",
        what: "braidlog Node::new + insert_batch, 10k/txn, durable",
        cap: None,
        run: braid_batch,
    },
    Scenario {
        name: "braid-batch-nosync",
        what: "braidlog Node::new + insert_batch, 10k/txn, NoSync (like leveldb's default)",
        cap: None,
        run: braid_batch_nosync,
    },
    Scenario {
        name: "braid-append-nosync",
        what: "braidlog append, one NoSync txn per node",
        cap: None,
        run: braid_append_nosync,
    },
    Scenario {
        name: "braid-append-sync",
        what: "braidlog append, one durable txn per node",
        cap: Some(10_000),
        run: braid_append_sync,
    },
    Scenario {
        name: "braid-clone",
        what: "braidlog local clone: raw feed -> decode_expecting -> insert_batch 10k, durable",
        cap: None,
        run: braid_clone,
    },
];

fn blake3_only(_: &Path, n: usize, size: usize) -> (usize, Duration) {
    let mut buf = Node::new([Hash([7; 32])], payload(0, size))
        .unwrap()
        .encode();
    let start = Instant::now();
    let mut acc = 0u8;
    for i in 0..n {
        buf[40..48].copy_from_slice(&(i as u64).to_le_bytes());
        acc ^= Hash::of(&buf).0[0];
    }
    std::hint::black_box(acc);
    (n, start.elapsed())
}

fn node_new(_: &Path, n: usize, size: usize) -> (usize, Duration) {
    let payloads: Vec<Vec<u8>> = (0..BATCH.min(n)).map(|i| payload(i, size)).collect();
    let start = Instant::now();
    let mut prev = Hash([7; 32]);
    for i in 0..n {
        let p = payloads[i % payloads.len()].clone();
        prev = Node::new([prev], p).unwrap().hash();
    }
    std::hint::black_box(prev);
    (n, start.elapsed())
}

/// The same bytes braidlog stores, written with heed directly: seq -> hash ++ encoding
/// (MDB_APPEND) and hash -> seq. Encoding and hashing happen outside the timed part.
fn lmdb_append(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    lmdb_append_with(dir, n, size, false)
}

fn lmdb_append_nosync(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    lmdb_append_with(dir, n, size, true)
}

/// The per-transaction limit for single adds: the same two puts, one transaction per node.
fn lmdb_single(dir: &Path, n: usize, size: usize, no_sync: bool) -> (usize, Duration) {
    let (env, feed, index) = raw_env_with(dir, n, size, no_sync);
    let mut seq = 0u64;
    let mut timed = Duration::ZERO;
    chain(n, size, |batch| {
        let values = feed_values(&batch);
        let start = Instant::now();
        for (hash, value) in &values {
            seq += 1;
            let key = seq.to_be_bytes();
            let mut txn = env.write_txn().unwrap();
            feed.put_with_flags(&mut txn, PutFlags::APPEND, &key, value)
                .unwrap();
            index.put(&mut txn, hash.as_bytes(), &key).unwrap();
            txn.commit().unwrap();
        }
        timed += start.elapsed();
    });
    (n, timed)
}

fn lmdb_single_nosync(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    lmdb_single(dir, n, size, true)
}

fn lmdb_single_sync(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    lmdb_single(dir, n, size, false)
}

/// One table, random 32-byte keys (the hashes), values the encodings.
fn lmdb_random(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    let (env, nodes, _) = raw_env(dir, n, size);
    let mut timed = Duration::ZERO;
    chain(n, size, |batch| {
        let values: Vec<(Hash, Vec<u8>)> = batch.iter().map(|n| (n.hash(), n.encode())).collect();
        let start = Instant::now();
        let mut txn = env.write_txn().unwrap();
        for (hash, value) in &values {
            nodes.put(&mut txn, hash.as_bytes(), value).unwrap();
        }
        txn.commit().unwrap();
        timed += start.elapsed();
    });
    (n, timed)
}

/// Building the nodes (hashing) is timed here: it is part of what a batched add costs.
fn braid_batch(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    braid_batch_with(dir, n, size, Durability::Sync)
}

fn braid_batch_nosync(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    braid_batch_with(dir, n, size, Durability::NoSync)
}

fn braid_batch_with(
    dir: &Path,
    n: usize,
    size: usize,
    durability: Durability,
) -> (usize, Duration) {
    let log = Log::open_with(
        dir,
        LogOptions {
            durability,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let payloads: Vec<Vec<u8>> = (0..n.min(BATCH)).map(|i| payload(i, size)).collect();
    let mut timed = Duration::ZERO;
    let mut prev: Option<Hash> = None;
    let mut i = 0;
    while i < n {
        let m = BATCH.min(n - i);
        // Fresh payload vectors (with distinct counters) are made outside the timed part.
        let mut ps: Vec<Vec<u8>> = payloads[..m].to_vec();
        for (j, p) in ps.iter_mut().enumerate() {
            let c = ((i + j) as u64).to_le_bytes();
            let k = p.len().min(8);
            p[..k].copy_from_slice(&c[..k]);
        }
        let start = Instant::now();
        let mut nodes = Vec::with_capacity(m);
        for p in ps {
            let node = Node::new(prev, p).unwrap();
            prev = Some(node.hash());
            nodes.push(node);
        }
        log.insert(&nodes).unwrap();
        timed += start.elapsed();
        i += m;
    }
    (n, timed)
}

fn braid_append(dir: &Path, n: usize, size: usize, durability: Durability) -> (usize, Duration) {
    let log = Log::open_with(
        dir,
        LogOptions {
            durability,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let template = payload(0, size);
    let start = Instant::now();
    for i in 0..n {
        let mut p = template.clone();
        let c = (i as u64).to_le_bytes();
        let k = p.len().min(8);
        p[..k].copy_from_slice(&c[..k]);
        log.append(p).unwrap();
    }
    (n, start.elapsed())
}

fn braid_append_nosync(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    braid_append(dir, n, size, Durability::NoSync)
}

fn braid_append_sync(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    braid_append(dir, n, size, Durability::Sync)
}

/// What a sync receiver does at least: every node read from one log's feed, checked against
/// its hash and decoded, and stored into another in batches. No network, no protocol.
fn braid_clone(dir: &Path, n: usize, size: usize) -> (usize, Duration) {
    let a = Log::open_with(
        dir.join("a"),
        LogOptions {
            durability: Durability::NoSync,
            ..LogOptions::default()
        },
    )
    .unwrap();
    chain(n, size, |batch| {
        a.insert(&batch).unwrap();
    });
    let b = Log::open(dir.join("b")).unwrap();
    let start = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for entry in a.changes(0).raw() {
        let entry = entry.unwrap();
        batch.push(Node::decode_expecting(&entry.bytes, entry.hash).unwrap());
        if batch.len() == BATCH {
            b.insert(&batch).unwrap();
            batch.clear();
        }
    }
    b.insert(&batch).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(b.len().unwrap(), n as u64);
    (n, elapsed)
}

/// One figure, from a child process.
#[derive(Clone, Debug)]
struct Figure {
    secs: f64,
    nodes: usize,
    rss_kib: u64,
}

impl Figure {
    fn rate(&self) -> f64 {
        self.nodes as f64 / self.secs
    }
}

fn child(name: &str, n: usize, size: usize) {
    let scenario = SCENARIOS.iter().find(|s| s.name == name).expect("scenario");
    let base = std::env::var_os("BRAID_BENCH_DIR").map(PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let (nodes, elapsed) = (scenario.run)(dir.path(), n, size);
    println!(
        "RESULT {nodes} {} {}",
        elapsed.as_secs_f64(),
        peak_rss_kib()
    );
}

fn run_child(name: &str, n: usize, size: usize) -> Option<Figure> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--child", name, &n.to_string(), &size.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        eprintln!(
            "{name} n={n} payload={size} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    Some(Figure {
        nodes: f[0].parse().unwrap(),
        secs: f[1].parse().unwrap(),
        rss_kib: f[2].parse().unwrap(),
    })
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

/// Hyperlog figures keyed by (backend, workload, n, payload).
type HyperFigures = BTreeMap<(String, String, usize, usize), Figure>;

fn hyperlog(n: usize, size: usize, out: &mut HyperFigures) {
    for backend in ["leveldb", "memdb"] {
        for workload in ["append", "batch", "clone"] {
            let Some(v) = hyperlog_run(backend, workload, n, size) else {
                continue;
            };
            out.insert(
                (backend.into(), workload.into(), n, size),
                Figure {
                    secs: hyperlog_field(&v, "secs"),
                    nodes: hyperlog_field(&v, "n") as usize,
                    rss_kib: hyperlog_field(&v, "peak_rss_kib") as u64,
                },
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(
            &args[i + 1],
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
        return;
    }
    let max = env_usize("BRAID_BENCH_MAX", 100_000);
    let only = std::env::var("BRAID_BENCH_ONLY").unwrap_or_default();
    let sizes: Vec<usize> = [10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&n| n <= max)
        .collect();
    let sync_cap = env_usize("BRAID_BENCH_SYNC_MAX", 10_000);

    println!(
        "braidlog scenarios: n in {sizes:?}, payloads {PAYLOADS:?} B, {BATCH} nodes per batch"
    );
    println!(
        "{:<20} {:>7} {:>8} {:>10} {:>9} {:>8} {:>8}",
        "scenario", "payload", "n", "nodes/s", "MiB/s", "secs", "RSS MiB"
    );
    let mut figures: BTreeMap<(&str, usize, usize), Figure> = BTreeMap::new();
    for &size in &PAYLOADS {
        for &n in &sizes {
            for s in SCENARIOS {
                let cap = if s.name.ends_with("-single-sync") || s.name == "braid-append-sync" {
                    Some(sync_cap)
                } else {
                    s.cap
                };
                if !s.name.contains(only.as_str()) || cap.is_some_and(|c| n > c) {
                    continue;
                }
                let Some(f) = run_child(s.name, n, size) else {
                    continue;
                };
                println!(
                    "{:<20} {:>7} {:>8} {:>10} {:>9.1} {:>8.2} {:>8.1}",
                    s.name,
                    size,
                    n,
                    human(f.rate()),
                    f.rate() * size as f64 / (1 << 20) as f64,
                    f.secs,
                    f.rss_kib as f64 / 1024.0
                );
                figures.insert((s.name, n, size), f);
            }
        }
    }

    println!("\nscenarios:");
    for s in SCENARIOS {
        println!("  {:<20} {}", s.name, s.what);
    }

    println!("\nratios (goal: braid-batch >= 50% of lmdb-append):");
    let rate = |name: &str, n: usize, size: usize| figures.get(&(name, n, size)).map(Figure::rate);
    for &size in &PAYLOADS {
        for &n in &sizes {
            let pairs = [
                ("braid-batch", "lmdb-append"),
                ("braid-batch", "lmdb-random"),
                ("braid-batch-nosync", "lmdb-append-nosync"),
                ("braid-batch", "blake3"),
                ("braid-clone", "lmdb-append"),
                ("braid-append-nosync", "lmdb-single-nosync"),
                ("braid-append-sync", "lmdb-single-sync"),
            ];
            for (a, b) in pairs {
                if let (Some(x), Some(y)) = (rate(a, n, size), rate(b, n, size)) {
                    println!(
                        "  payload {size:>5} n {n:>8}: {a} / {b} = {:.1}%",
                        100.0 * x / y
                    );
                }
            }
        }
    }

    if std::env::var("BRAID_BENCH_HYPERLOG").is_ok_and(|v| v == "1") {
        let hn = env_usize("BRAID_BENCH_HYPERLOG_N", 10_000);
        println!("\nhyperlog (n = {hn}; JSON lines from benches/hyperlog/bench.js):");
        let mut hyper = HyperFigures::new();
        for &size in &PAYLOADS {
            hyperlog(hn, size, &mut hyper);
        }
        println!(
            "\nbraidlog vs hyperlog at n = {hn} (goal: >= 30x on disk; leveldb does not fsync):"
        );
        let ours = [
            ("append", "braid-append-nosync", "braid-append-sync"),
            ("batch", "braid-batch-nosync", "braid-batch"),
            ("clone", "braid-clone", "braid-clone"),
        ];
        for ((backend, workload, n, size), h) in &hyper {
            let (_, nosync, sync) = ours.iter().find(|o| o.0 == workload).unwrap();
            for name in [nosync, sync] {
                if let Some(x) = rate(name, *n, *size) {
                    println!(
                        "  payload {size:>5} {workload:<6}: {name} {} / hyperlog-{backend} {} = {:.1}x",
                        human(x),
                        human(h.rate()),
                        x / h.rate()
                    );
                }
                if nosync == sync {
                    break;
                }
            }
        }
    }
}
