//! Criterion micro-benchmarks of the foundation: hashing, node encoding, and the `Log` calls.
//!
//! `cargo bench --bench micro` (a few minutes: small samples, short measurement times).
//! Filter with a name, e.g. `cargo bench --bench micro -- log/get`.

use braidlog::kv::{KvRead, Write};
use std::hint::black_box;
use std::time::Duration;

use braidlog::kv::Op;
use braidlog::{Durability, Hash, Kv, Log, LogOptions, Node};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const PAYLOADS: [usize; 2] = [100, 4096];

fn payload(i: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0xa5; size];
    let c = i.to_le_bytes();
    let k = size.min(8);
    p[..k].copy_from_slice(&c[..k]);
    p
}

fn open(dir: &std::path::Path, durability: Durability) -> Log {
    Log::open_with(
        dir,
        LogOptions {
            durability,
            ..LogOptions::default()
        },
    )
    .unwrap()
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("blake3");
    for size in PAYLOADS {
        let buf = payload(1, size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}B"), |b| b.iter(|| Hash::of(black_box(&buf))));
    }
    g.finish();
}

fn node(c: &mut Criterion) {
    let mut g = c.benchmark_group("node");
    let link = Hash([7; 32]);
    for size in PAYLOADS {
        g.throughput(Throughput::Elements(1));
        let p = payload(1, size);
        g.bench_function(format!("new/{size}B"), |b| {
            b.iter_batched(
                || p.clone(),
                |p| Node::new([link], p).unwrap(),
                BatchSize::SmallInput,
            )
        });
        let n = Node::new([link], p.clone()).unwrap();
        g.bench_function(format!("encode/{size}B"), |b| {
            b.iter(|| black_box(&n).encode())
        });
        let bytes = n.encode();
        g.bench_function(format!("decode/{size}B"), |b| {
            b.iter(|| Node::decode(black_box(&bytes)).unwrap())
        });
    }
    g.finish();
}

fn log_writes(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");
    for (name, durability) in [("sync", Durability::Sync), ("nosync", Durability::NoSync)] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), durability);
        let mut i = 0u64;
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("add/{name}/100B"), |b| {
            b.iter(|| {
                i += 1;
                log.add([], payload(i, 100)).unwrap()
            })
        });
        g.bench_function(format!("append/{name}/100B"), |b| {
            b.iter(|| {
                i += 1;
                log.append(payload(i, 100)).unwrap()
            })
        });
    }
    const BATCH: u64 = 1000;
    for size in PAYLOADS {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), Durability::Sync);
        let mut i = 0u64;
        g.throughput(Throughput::Elements(BATCH));
        g.bench_function(format!("add_batch/1000/{size}B"), |b| {
            b.iter_batched(
                || {
                    (0..BATCH)
                        .map(|_| {
                            i += 1;
                            (Vec::new(), payload(i, size))
                        })
                        .collect::<Vec<_>>()
                },
                |batch| {
                    log.transaction(|w| {
                        batch
                            .into_iter()
                            .map(|(l, p)| w.add(l, p))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap()
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("insert_batch/1000/{size}B"), |b| {
            b.iter_batched(
                || {
                    let mut prev = None;
                    (0..BATCH)
                        .map(|_| {
                            i += 1;
                            let n = Node::new(prev, payload(i, size)).unwrap();
                            prev = Some(n.hash());
                            n
                        })
                        .collect::<Vec<_>>()
                },
                |nodes| log.insert(&nodes).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn log_reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::NoSync);
    let nodes: Vec<Node> = log
        .transaction(|w| {
            (0..10_000)
                .map(|i| (Vec::new(), payload(i, 100)))
                .map(|(l, p)| w.add(l, p))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    let hashes: Vec<Hash> = nodes.iter().map(Node::hash).collect();
    let mut i = 0usize;
    g.throughput(Throughput::Elements(1));
    g.bench_function("get/10k/100B", |b| {
        b.iter(|| {
            i = (i + 7919) % hashes.len();
            log.get(&hashes[i]).unwrap().unwrap()
        })
    });
    g.bench_function("get/absent", |b| {
        b.iter(|| log.get(black_box(&Hash([3; 32]))).unwrap())
    });
    // 10k heads (nothing links to anything yet), then one head after a merge of 16.
    g.bench_function("heads/10k", |b| b.iter(|| log.heads().unwrap()));
    let dir1 = tempfile::tempdir().unwrap();
    let one = open(dir1.path(), Durability::NoSync);
    for i in 0..16 {
        one.add([], payload(i, 10)).unwrap();
    }
    one.append(b"merge".to_vec()).unwrap();
    g.bench_function("heads/1", |b| b.iter(|| one.heads().unwrap()));
    g.finish();
}

/// The key-value view: puts (read current versions, write, update the view in one
/// transaction), gets of a plain and of a conflicted key, a 100-key range scan.
fn kv(c: &mut Criterion) {
    let mut g = c.benchmark_group("kv");
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::NoSync);
    let kv = Kv::open(&log).unwrap();
    for i in 0..10_000u64 {
        kv.put(format!("key/{i:05}"), payload(i, 100)).unwrap();
    }
    let base = kv.put("conflicted", b"base".to_vec()).unwrap();
    kv.write(
        "conflicted",
        Write::from(Op::Put(b"x".to_vec())).superseding([base]),
    )
    .unwrap();
    kv.write(
        "conflicted",
        Write::from(Op::Put(b"y".to_vec())).superseding([base]),
    )
    .unwrap();
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("put/nosync/100B", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            kv.put(format!("key/{i:05}"), payload(i, 100)).unwrap()
        })
    });
    g.bench_function("get/10k/100B", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            kv.get(format!("key/{i:05}")).unwrap().unwrap()
        })
    });
    g.bench_function("get/conflict-2", |b| {
        b.iter(|| kv.get(black_box("conflicted")).unwrap().unwrap())
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("range/100", |b| {
        b.iter(|| kv.range("key/05000".."key/05100").count())
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = hashing, node, log_writes, log_reads, kv
}
criterion_main!(benches);
