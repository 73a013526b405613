//! Salvage into a log (above the log layer, which it uses): the genuine nodes the storage layer recovers from a damaged store
//! (`store/salvage.rs`) are inserted in feed order, each once its links are present.

use std::collections::HashSet;
use std::path::Path;

use crate::hash::Hash;
use crate::log::{Inserted, Log, Result};
use crate::node::Node;
pub use crate::store::salvage::SalvageReport;

/// Nodes per insert transaction.
const CHUNK: usize = 4096;

/// Copies every genuine node of the store in `from` into `to`, in feed order. `from` is read
/// with `pread` only: LMDB never maps the damaged file.
pub fn salvage(from: &Path, to: &Log) -> Result<SalvageReport> {
    let (nodes, mut report) = crate::store::salvage::recover(from)?;
    insert_in_order(to, nodes, &mut report)?;
    Ok(report)
}

/// Inserts `nodes` (in feed order) into `to`, each once its links are present; repeats over
/// the deferred ones while that makes progress.
fn insert_in_order(to: &Log, mut nodes: Vec<Node>, report: &mut SalvageReport) -> Result<()> {
    let mut present: HashSet<Hash> = HashSet::new();
    loop {
        let mut ready = Vec::new();
        let mut deferred = Vec::new();
        for node in nodes {
            let linked = node
                .links()
                .iter()
                .all(|l| present.contains(l) || to.contains(l).unwrap_or(false));
            if linked {
                present.insert(node.hash());
                ready.push(node);
            } else {
                deferred.push(node);
            }
        }
        if ready.is_empty() {
            report.skipped = deferred.len() as u64;
            return Ok(());
        }
        for chunk in ready.chunks(CHUNK) {
            for inserted in to.insert(chunk)? {
                if matches!(inserted, Inserted::New(_)) {
                    report.saved += 1;
                }
            }
        }
        nodes = deferred;
    }
}
