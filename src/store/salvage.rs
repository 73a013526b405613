//! Salvage: copy every node that can still be proven genuine out of a damaged store.
//!
//! LMDB has no page checksums, and it follows page numbers through a memory map: a damaged
//! page can crash a process that opens the store. Salvage never lets LMDB near the damaged
//! file. It reads `data.mdb` with `pread` (see `file/pages.rs`) in two ways:
//!
//! 1. the feed tree of the newest usable snapshot, in feed order, as LMDB would;
//! 2. every leaf page of the file, following no tree at all, so entries under a damaged
//!    branch page, and stale copies on pages LMDB has not reused yet, are found too.
//!
//! A feed entry is `hash ++ canonical node bytes`, so each one proves itself: only nodes whose
//! bytes decode and hash to their stored hash are kept. They are inserted into the target
//! replica in feed order (by the log layer), each once all its links are there; a node whose
//! links are lost is skipped. A later sync with any peer brings back what was skipped.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::file::pages::{named_trees, DataFile};
use super::file::{read_metas, DATA_FILE};
use super::{Result, StorageError};
use crate::hash::{Hash, HASH_LEN};
use crate::node::Node;

/// The feed table's name in the main tree.
const FEED_TABLE: &[u8] = b"feed-v1";

/// What salvage found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// Nodes copied into the target.
    pub saved: u64,
    /// Genuine nodes not copied because a node they link to was not found.
    pub skipped: u64,
    /// Feed entries whose bytes do not hash to their hash, or do not decode.
    pub damaged: u64,
    /// Genuine nodes found only by scanning pages outside the feed tree.
    pub from_page_scan: u64,
    /// Why the feed tree could not be read in full, if it could not.
    pub tree_problem: Option<String>,
}

/// A feed entry that proved itself.
fn genuine(value: &[u8]) -> Option<Node> {
    if value.len() <= HASH_LEN {
        return None;
    }
    let hash = Hash::from_slice(&value[..HASH_LEN]).ok()?;
    Node::decode_expecting(&value[HASH_LEN..], hash).ok()
}

/// Every genuine node of the store in `from`, in feed order, with the report's findings so
/// far (`saved` and `skipped` are the inserter's to fill).
pub(crate) fn recover(from: &Path) -> Result<(Vec<Node>, SalvageReport)> {
    let data = from.join(DATA_FILE);
    let mut report = SalvageReport::default();
    // seq -> node; a seq seen twice (a stale page from before a lost commit) keeps both.
    let mut found: BTreeMap<(u64, Hash), Node> = BTreeMap::new();
    let mut hashes = HashSet::new();
    let (metas, page_size) = read_metas(&data)?;
    let file =
        DataFile::open(&data, page_size).map_err(|source| StorageError::io(&data, source))?;
    let mut newest: Vec<_> = metas.iter().flatten().collect();
    newest.sort_by_key(|m| std::cmp::Reverse(m.txnid));
    let mut tree_read = false;
    for meta in newest {
        let mut seen = HashSet::new();
        let walked = named_trees(&file, meta, &mut seen).and_then(|trees| {
            let root = trees
                .iter()
                .find(|(name, _)| name == FEED_TABLE)
                .map(|(_, root)| *root);
            let mut entries = Vec::new();
            if let Some(root) = root {
                file.walk(root, &mut HashSet::new(), &mut |key, value, _| {
                    entries.push((key.to_vec(), value.to_vec()));
                    Ok(())
                })?;
            }
            Ok(entries)
        });
        match walked {
            Ok(entries) => {
                for (key, value) in entries {
                    let seq = key.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
                    match genuine(&value) {
                        Some(node) if seq != u64::MAX => {
                            hashes.insert(node.hash());
                            found.insert((seq, node.hash()), node);
                        }
                        _ => report.damaged += 1,
                    }
                }
                tree_read = true;
                break;
            }
            Err(p) => {
                report.tree_problem = Some(format!("page {}: {}", p.page, p.what));
            }
        }
    }
    if tree_read {
        report.tree_problem = None;
    }
    file.scan_leaves(&mut |key, value| {
        let Ok(seq) = key.try_into().map(u64::from_be_bytes) else {
            return;
        };
        if let Some(node) = genuine(value) {
            if hashes.insert(node.hash()) {
                report.from_page_scan += 1;
                found.insert((seq, node.hash()), node);
            }
        }
    });
    Ok((found.into_values().collect(), report))
}
