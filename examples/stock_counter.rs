//! An audited stock counter: two warehouses adjust the same stock levels while apart, sync,
//! and agree on the sum of every adjustment, with each adjustment kept as history.
//!
//! The counter is [`braidlog::kv::Counter`], registered as the merge operator for `stock/`:
//! every write records the new total and the delta that led to it, and a merge sums the
//! deltas since the merge base of the versions (a pure function of them, so both
//! warehouses write the same merged value).
//!
//! `cargo run --example stock_counter`

use braidlog::kv::KvRead;
use braidlog::kv::{Counter, Kv};
use braidlog::sync::{sync, Mode, SyncOptions};
use braidlog::Log;

/// Syncs two replicas once, both ways, over an in-memory pipe (a TCP stream works the same).
async fn sync_once(a: &Log, b: &Log) -> Result<(), braidlog::SyncError> {
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    let (ra, rb) = tokio::join!(
        sync(a, sa, SyncOptions::new(Mode::Both)),
        sync(b, sb, SyncOptions::new(Mode::Both)),
    );
    ra?;
    rb?;
    Ok(())
}

/// Runs the example (also called by `tests/kv_examples.rs`).
#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (north, south) = (Log::open(da.path())?, Log::open(db.path())?);
    let (n, s) = (Kv::open(&north)?, Kv::open(&south)?);
    // Operators are not stored: every replica registers the same ones when it opens.
    n.register_merge("stock/", Counter)?;
    s.register_merge("stock/", Counter)?;

    Counter::add(&n, "stock/bolts", 100)?; // initial count
    sync_once(&north, &south).await?;

    // Apart: north sells 30 and receives 12; south sells 45.
    Counter::add(&n, "stock/bolts", -30)?;
    Counter::add(&n, "stock/bolts", 12)?;
    Counter::add(&s, "stock/bolts", -45)?;
    sync_once(&north, &south).await?;

    for (name, kv) in [("north", &n), ("south", &s)] {
        let versions = kv.get("stock/bolts")?.expect("written");
        let value = Counter::value(kv, "stock/bolts")?;
        println!(
            "{name}: {value} bolts, in conflict: {}",
            versions.is_conflict()
        );
        assert_eq!(value, 100 - 30 + 12 - 45);
        assert!(!versions.is_conflict());
    }

    // The audit trail: every adjustment in causal order, the same on both replicas.
    println!("audit trail:");
    let trail = n.history_causal("stock/bolts")?;
    for e in &trail {
        let (total, delta) = e.op.value().and_then(Counter::decode).expect("a counter");
        let kind = if delta == 0 && e.supersedes.len() + e.folds.len() > 1 {
            "merge"
        } else {
            "adjust"
        };
        println!("  {} {kind:6} {delta:+4} -> {total}", e.hash.short());
    }
    let deltas: i64 = trail
        .iter()
        .filter_map(|e| e.op.value().and_then(Counter::decode))
        .map(|(_, d)| d)
        .sum();
    assert_eq!(deltas, 37, "the deltas of the history sum to the stock");
    let south_trail: Vec<_> = s
        .history_causal("stock/bolts")?
        .into_iter()
        .map(|e| e.hash)
        .collect();
    let north_trail: Vec<_> = trail.iter().map(|e| e.hash).collect();
    // Both replicas may have merged: each keeps the merges it holds; ordinary adjustments
    // appear in both in the same order.
    assert!(
        north_trail
            .iter()
            .filter(|h| south_trail.contains(h))
            .count()
            >= 4
    );
    Ok(())
}
