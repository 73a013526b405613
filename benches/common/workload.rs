//! The workload and the raw-LMDB limit shared by `benches/scenarios.rs` and
//! `benches/sync_bench.rs` (included with `#[path]`; not a bench target of its own).
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use braidlog::{Hash, Node};
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, EnvFlags, EnvOpenOptions, PutFlags};

/// Nodes per write transaction in batched scenarios.
pub const BATCH: usize = 10_000;

/// Payload `i` of `size` bytes: a counter then fixed filler, so every node differs.
pub fn payload(i: usize, size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size);
    p.extend_from_slice(&(i as u64).to_le_bytes()[..size.min(8)]);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while p.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p
}

/// The chain every braidlog and LMDB scenario writes: node i links node i-1.
pub fn chain(n: usize, size: usize, f: impl FnMut(Vec<Node>)) {
    chain_from(None, 0, n, size, f)
}

/// A chain of `n` nodes whose first links `prev`, payload counters from `first`, handed to `f`
/// in batches of [`BATCH`].
pub fn chain_from(
    mut prev: Option<Hash>,
    first: usize,
    n: usize,
    size: usize,
    mut f: impl FnMut(Vec<Node>),
) {
    let mut i = 0;
    while i < n {
        let m = BATCH.min(n - i);
        let mut batch = Vec::with_capacity(m);
        for j in i..i + m {
            let node = Node::new(prev, payload(first + j, size)).unwrap();
            prev = Some(node.hash());
            batch.push(node);
        }
        f(batch);
        i += m;
    }
}

pub type Raw = Database<'static, Bytes, Bytes>;

/// A fresh environment with two tables, mapped large enough that it never grows.
pub fn raw_env_with(dir: &Path, n: usize, size: usize, no_sync: bool) -> (heed::Env, Raw, Raw) {
    let mut opts = EnvOpenOptions::new();
    if no_sync {
        // SAFETY: only durability is weakened, for a throwaway benchmark store.
        unsafe { opts.flags(EnvFlags::NO_SYNC) };
    }
    opts.map_size(((n * (size + 200) * 3).max(64 << 20)).next_multiple_of(1 << 20))
        .max_dbs(8);
    // SAFETY: a fresh directory that nothing else opens.
    let env = unsafe { opts.open(dir) }.unwrap();
    let wtxn = env.write_txn().unwrap();
    let (a, b) = env
        .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit((
                dbo.create_database::<Bytes, Bytes>(wtxn, Some("a"))?,
                dbo.create_database::<Bytes, Bytes>(wtxn, Some("b"))?,
            )))
        })
        .unwrap()
        .unwrap_commit();
    (env, a, b)
}

/// Each node of a batch as braidlog's feed stores it: its hash, and hash ++ canonical bytes.
pub fn feed_values(batch: &[Node]) -> Vec<(Hash, Vec<u8>)> {
    batch
        .iter()
        .map(|node| {
            let mut v = node.hash().0.to_vec();
            v.extend_from_slice(&node.encode());
            (node.hash(), v)
        })
        .collect()
}

/// Runs `benches/hyperlog/bench.js` once and returns its JSON result line, printed as it is.
/// `None` (with the reason on stderr) when npm has not installed hyperlog, node is missing,
/// or the run failed.
pub fn hyperlog_run(
    backend: &str,
    workload: &str,
    n: usize,
    size: usize,
) -> Option<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/hyperlog");
    if !dir.join("node_modules/hyperlog").exists() {
        eprintln!(
            "hyperlog: run `npm install` in {} first; skipped",
            dir.display()
        );
        return None;
    }
    let Ok(result) = std::process::Command::new("node")
        .arg(dir.join("bench.js"))
        .args(["--backend", backend, "--workload", workload])
        .args(["--n", &n.to_string(), "--payload", &size.to_string()])
        .output()
    else {
        eprintln!("hyperlog: could not run node");
        return None;
    };
    let stdout = String::from_utf8_lossy(&result.stdout);
    let parsed = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|line| {
            println!("  {line}");
            serde_json::from_str(line).ok()
        });
    if parsed.is_none() {
        eprintln!(
            "hyperlog {backend} {workload} failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    parsed
}

/// A number field of a hyperlog result (0 when absent).
pub fn hyperlog_field(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// The same bytes braidlog stores, written with heed directly: seq -> hash ++ encoding
/// (MDB_APPEND) and hash -> seq, [`BATCH`] puts per commit. Encoding and hashing happen outside
/// the timed part. This is the physical limit of storing the chain on this machine.
pub fn lmdb_append_with(dir: &Path, n: usize, size: usize, no_sync: bool) -> (usize, Duration) {
    let (env, feed, index) = raw_env_with(dir, n, size, no_sync);
    let mut seq = 0u64;
    let mut timed = Duration::ZERO;
    chain(n, size, |batch| {
        let values = feed_values(&batch);
        let start = Instant::now();
        let mut txn = env.write_txn().unwrap();
        for (hash, value) in &values {
            seq += 1;
            let key = seq.to_be_bytes();
            feed.put_with_flags(&mut txn, PutFlags::APPEND, &key, value)
                .unwrap();
            index.put(&mut txn, hash.as_bytes(), &key).unwrap();
        }
        txn.commit().unwrap();
        timed += start.elapsed();
    });
    (n, timed)
}

/// A `kB` field of `/proc/self/status` (`VmHWM`, `RssAnon`, ...), 0 if absent.
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak resident set (`VmHWM`): counts the file-backed LMDB map pages the process touched.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM")
}
