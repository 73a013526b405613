//! Helpers shared by the integration tests: throwaway replicas (a log, with or without its
//! key-value view, in a temporary directory), syncs over an in-memory pipe, timeouts that fail
//! a test instead of hanging it, and the checks most tests end with.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use braidlog::sync::{sync, Mode, SyncError, SyncOptions, SyncReport};
use braidlog::{Durability, Hash, Kv, Log, LogOptions};
use tempfile::TempDir;

// ---- replicas ---------------------------------------------------------------------------

/// The options of a throwaway replica: no fsync on commit, the default map size.
pub fn no_sync() -> LogOptions {
    LogOptions {
        durability: Durability::NoSync,
        ..LogOptions::default()
    }
}

/// [`no_sync`] with a 1 MiB map, so that a few writes make the map grow.
pub fn small_map() -> LogOptions {
    LogOptions {
        map_size: 1 << 20,
        durability: Durability::NoSync,
    }
}

/// Opens (or re-opens) the log in `dir` with [`no_sync`].
pub fn open_no_sync(dir: &Path) -> Log {
    Log::open_with(dir, no_sync()).unwrap()
}

/// Opens (or re-opens) the log in `dir` with [`no_sync`], and its key-value view.
pub fn open_kv(dir: &Path) -> (Log, Kv) {
    let log = open_no_sync(dir);
    let kv = Kv::open(&log).unwrap();
    (log, kv)
}

/// A log in a temporary directory, removed when the replica drops (after the log).
pub struct Replica {
    pub log: Log,
    pub dir: TempDir,
}

/// A replica opened with `options`.
pub fn replica_with(options: LogOptions) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options).unwrap();
    Replica { log, dir }
}

/// A throwaway replica: [`no_sync`].
pub fn replica() -> Replica {
    replica_with(no_sync())
}

/// A replica opened as `Log::open` does: the default options (fsync on every commit).
pub fn durable_replica() -> Replica {
    replica_with(LogOptions::default())
}

/// A replica with its key-value view open.
pub struct KvReplica {
    pub log: Log,
    pub kv: Kv,
    pub dir: TempDir,
}

/// A throwaway replica ([`no_sync`]) with its key-value view open.
pub fn kv_replica() -> KvReplica {
    let Replica { log, dir } = replica();
    let kv = Kv::open(&log).unwrap();
    KvReplica { log, kv, dir }
}

// ---- contents and checks ----------------------------------------------------------------

/// Appends a chain of `n` nodes with payloads `{tag}{i}` on top of the current heads.
pub fn chain(log: &Log, n: usize, tag: &str) {
    let batch: Vec<_> = (0..n).map(|i| format!("{tag}{i}").into_bytes()).collect();
    for chunk in batch.chunks(1000) {
        let mut prev = log.heads().unwrap();
        let mut nodes = Vec::new();
        for p in chunk {
            let node = braidlog::Node::new(prev.clone(), p.clone()).unwrap();
            prev = vec![node.hash()];
            nodes.push(node);
        }
        log.insert(&nodes).unwrap();
    }
}

/// The hashes of every node in `log`.
pub fn hashes(log: &Log) -> BTreeSet<Hash> {
    log.changes(0).map(|c| c.unwrap().node.hash()).collect()
}

/// `v`, sorted.
pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `log.verify()` finds nothing wrong (the violations are the failure message).
pub fn assert_verified(log: &Log) {
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

/// [`assert_verified`], and the audit checked exactly one view (the key-value view).
pub fn assert_verified_with_view(log: &Log) {
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.views, 1);
}

/// Both logs hold the same nodes and heads, and both verify.
pub fn assert_same(a: &Log, b: &Log) {
    assert_eq!(hashes(a), hashes(b));
    assert_eq!(a.heads().unwrap(), b.heads().unwrap());
    assert_verified(a);
    assert_verified(b);
}

// ---- sync -------------------------------------------------------------------------------

/// Syncs two logs over an in-memory duplex pipe (64 KiB), returning both sides' results.
pub async fn try_pair(
    a: &Log,
    b: &Log,
    ma: Mode,
    mb: Mode,
) -> (Result<SyncReport, SyncError>, Result<SyncReport, SyncError>) {
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    tokio::join!(
        sync(a, sa, SyncOptions::new(ma)),
        sync(b, sb, SyncOptions::new(mb))
    )
}

/// [`try_pair`], both sides in [`Mode::Both`].
pub async fn try_both(
    a: &Log,
    b: &Log,
) -> (Result<SyncReport, SyncError>, Result<SyncReport, SyncError>) {
    try_pair(a, b, Mode::Both, Mode::Both).await
}

/// [`try_pair`], failing the test if either side fails.
pub async fn pair(a: &Log, b: &Log, ma: Mode, mb: Mode) -> (SyncReport, SyncReport) {
    let (ra, rb) = try_pair(a, b, ma, mb).await;
    (ra.unwrap(), rb.unwrap())
}

/// [`pair`], both sides in [`Mode::Both`].
pub async fn both(a: &Log, b: &Log) -> (SyncReport, SyncReport) {
    pair(a, b, Mode::Both, Mode::Both).await
}

// ---- waits and timeouts -----------------------------------------------------------------

/// Waits until `log` stores every hash of `want`, woken by its commits.
pub async fn until_has_all(log: &Log, want: &[Hash]) {
    let mut sub = log.subscribe();
    while !want.iter().all(|h| log.contains(h).unwrap()) {
        sub.changed().await.expect("log alive");
    }
}

/// Waits until `log` stores `hash`, woken by its commits.
pub async fn until_has(log: &Log, hash: Hash) {
    until_has_all(log, &[hash]).await
}

/// Awaits `f`, failing the test (naming `what`) if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {limit:?}"))
}

/// Runs `f` on a thread and fails the test if it has not finished within `secs` (a
/// deadlock), instead of hanging the suite.
pub fn within_thread<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("finished in time (no deadlock)")
}
