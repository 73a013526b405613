//! Signing and verifying, the new physical limit of signed history, beside what braidlog
//! achieves with it, in one run (ratios are within the run):
//!
//! - ed25519 through `Node`: sign (`Node::signed`), single verify, batch verify on one core,
//!   batch verify on every core (`policy::verify_parallel`);
//! - signed batched append (`Log::transaction`, 10k signed appends per durable commit) against
//!   its limit: raw LMDB batched puts (the same two tables, APPEND + index) plus signing each
//!   node;
//! - a sync over an in-memory pipe receiving n signed nodes under the `Signed` policy, against
//!   the one-core batch-verify limit.
//!
//! ```text
//! cargo bench --bench auth_bench                          # n = 10^5
//! BRAID_BENCH_AUTH_N=20000 cargo bench --bench auth_bench # quicker
//! ```

use std::time::{Duration, Instant};

use braidlog::sync::{sync, Mode, SyncOptions};
use braidlog::{Durability, Hash, Identity, Log, LogOptions, Node, Policy, PolicyMode};
use heed::PutFlags;

#[path = "common/workload.rs"]
mod workload;
use workload::{feed_values, payload, raw_env_with, BATCH};

const SIZE: usize = 100;

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn row(name: &str, n: usize, d: Duration, limit: Option<(&str, f64)>) -> f64 {
    let r = rate(n, d);
    match limit {
        Some((what, l)) => println!(
            "{name:<44} {n:>8} {:>10.0}/s   {:>5.1}% of {what}",
            r,
            100.0 * r / l
        ),
        None => println!("{name:<44} {n:>8} {:>10.0}/s", r),
    }
    r
}

/// A chain of `n` signed nodes, built outside any timing.
fn signed_chain(id: &Identity, n: usize) -> Vec<Node> {
    let mut prev: Option<Hash> = None;
    (0..n)
        .map(|i| {
            let node = Node::signed(id, i as u64, prev, payload(i, SIZE)).unwrap();
            prev = Some(node.hash());
            node
        })
        .collect()
}

/// Received copies: decoded from bytes, so their signatures are unchecked.
fn received(nodes: &[Node]) -> Vec<Node> {
    nodes
        .iter()
        .map(|n| Node::decode(&n.encode()).unwrap())
        .collect()
}

fn main() {
    let n: usize = std::env::var("BRAID_BENCH_AUTH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("signed history: {SIZE}-byte payloads, n = {n}, {cores} cores");
    let id = Identity::generate();

    // Primitives through the node layer (each includes the blake3 digest of the signed part).
    let m = n.min(20_000);
    let start = Instant::now();
    let nodes = signed_chain(&id, m);
    let sign = row("sign: Node::signed", m, start.elapsed(), None);
    let copies = received(&nodes);
    let start = Instant::now();
    for c in &copies {
        c.verify_signature().unwrap();
    }
    let single = row("verify, single, one by one", m, start.elapsed(), None);
    let mut copies = received(&nodes);
    let start = Instant::now();
    for chunk in copies.chunks_mut(256) {
        braidlog::verify_signatures(chunk).unwrap();
    }
    let batch = row(
        "verify, batches of 256, one core",
        m,
        start.elapsed(),
        Some(("single", single)),
    );
    let mut copies = received(&nodes);
    let start = Instant::now();
    braidlog::verify_parallel(&mut copies).unwrap();
    row(
        "verify, batches on every core",
        m,
        start.elapsed(),
        Some(("one-core batch", batch)),
    );
    drop((nodes, copies));

    // Signed batched append against raw LMDB puts plus signing.
    let dir = tempfile::tempdir().unwrap();
    let (env, feed, index) = raw_env_with(dir.path(), n, SIZE + 104, false);
    let mut prev: Option<Hash> = None;
    let mut seq = 0u64;
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let k = BATCH.min(n - i);
        let batch: Vec<Node> = (i..i + k)
            .map(|j| {
                let node = Node::signed(&id, j as u64, prev, payload(j, SIZE)).unwrap();
                prev = Some(node.hash());
                node
            })
            .collect();
        let values = feed_values(&batch);
        let mut txn = env.write_txn().unwrap();
        for (hash, value) in &values {
            seq += 1;
            let key = seq.to_be_bytes();
            feed.put_with_flags(&mut txn, PutFlags::APPEND, &key, value)
                .unwrap();
            index.put(&mut txn, hash.as_bytes(), &key).unwrap();
        }
        txn.commit().unwrap();
        i += k;
    }
    let limit = row(
        "limit: sign + raw LMDB puts, 10k/txn, durable",
        n,
        start.elapsed(),
        Some(("signing alone", sign)),
    );
    drop(env);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.set_identity(Some(id.clone()));
    let payloads: Vec<Vec<u8>> = (0..BATCH.min(n)).map(|j| payload(j, SIZE)).collect();
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let k = BATCH.min(n - i);
        log.transaction(|w| {
            for p in &payloads[..k] {
                w.append(p.clone())?;
            }
            Ok(())
        })
        .unwrap();
        i += k;
    }
    row(
        "braidlog signed append, 10k/txn, durable",
        n,
        start.elapsed(),
        Some(("limit", limit)),
    );
    drop(log);

    // A sync that receives n signed nodes and checks every one.
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nosync = LogOptions {
        durability: Durability::NoSync,
        ..LogOptions::default()
    };
    let a = Log::open_with(da.path(), nosync.clone()).unwrap();
    let b = Log::open_with(db.path(), nosync).unwrap();
    for chunk in signed_chain(&id, n).chunks(BATCH) {
        a.insert(chunk).unwrap();
    }
    b.set_policy(&Policy::new(PolicyMode::Signed)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let (ra, rb) = rt.block_on(async {
        let (sa, sb) = tokio::io::duplex(1 << 20);
        tokio::join!(
            sync(&a, sa, SyncOptions::new(Mode::Push)),
            sync(&b, sb, SyncOptions::new(Mode::Pull))
        )
    });
    let took = start.elapsed();
    ra.unwrap();
    assert_eq!(rb.unwrap().nodes_received as usize, n);
    row(
        "sync receive, Signed policy, NoSync commits",
        n,
        took,
        Some(("one-core batch verify", batch)),
    );
}
