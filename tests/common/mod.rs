//! Helpers shared by the sync and key-value tests.
#![allow(dead_code)]

use braidlog::sync::{sync, Mode, SyncOptions, SyncReport};
use braidlog::{Hash, Log};
use std::collections::BTreeSet;

pub struct Replica {
    pub log: Log,
    pub dir: tempfile::TempDir,
}

pub fn replica() -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(
        dir.path(),
        braidlog::LogOptions {
            durability: braidlog::Durability::NoSync,
            ..Default::default()
        },
    )
    .unwrap();
    Replica { log, dir }
}

/// A replica with its key-value view open.
pub struct KvReplica {
    pub log: Log,
    pub kv: braidlog::Kv,
    pub dir: tempfile::TempDir,
}

pub fn kv_replica() -> KvReplica {
    let Replica { log, dir } = replica();
    let kv = braidlog::Kv::open(&log).unwrap();
    KvReplica { log, kv, dir }
}

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

pub fn hashes(log: &Log) -> BTreeSet<Hash> {
    log.changes(0).map(|c| c.unwrap().node.hash()).collect()
}

pub fn assert_same(a: &Log, b: &Log) {
    assert_eq!(hashes(a), hashes(b));
    assert_eq!(a.heads().unwrap(), b.heads().unwrap());
    assert!(a.verify().unwrap().is_ok());
    assert!(b.verify().unwrap().is_ok());
}

/// Syncs two logs over an in-memory duplex pipe.
pub async fn pair(a: &Log, b: &Log, ma: Mode, mb: Mode) -> (SyncReport, SyncReport) {
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    let (ra, rb) = tokio::join!(
        sync(a, sa, SyncOptions::new(ma)),
        sync(b, sb, SyncOptions::new(mb))
    );
    (ra.unwrap(), rb.unwrap())
}

pub async fn both(a: &Log, b: &Log) -> (SyncReport, SyncReport) {
    pair(a, b, Mode::Both, Mode::Both).await
}
