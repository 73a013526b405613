//! `verify`: the store's fsck. Checks every invariant of the schema and names each violation.
//!
//! 0. every page the newest snapshot reaches is in the file and well formed, read with `pread`
//!    before LMDB follows any (LMDB trusts page numbers and may crash on a damaged page); when
//!    one is not, that is the one violation reported and nothing else is read;
//! 1. every feed entry's bytes hash to its hash and decode canonically;
//! 2. closure and order: every link is stored at an earlier seq;
//! 3. heads are exactly the stored nodes that no stored node links to;
//! 4. the index is a bijection with the feed;
//! 5. every registered view equals a rebuild from the feed.
//! 6. every signature is its author's, and every node meets the policy that was in force when
//!    it was stored (the policy history in the meta table).
//!
//! Everything runs in one read transaction (a consistent snapshot) and nothing is written,
//! so `verify` works on a full map, on a read-only store, and beside writers. Check 3 keeps
//! the set of linked hashes in memory (32 bytes per distinct link target). Check 5 rebuilds
//! each view in memory (as much memory as the view's tables hold) up to the view's
//! watermark, and compares digests of both.

use std::collections::HashSet;

use super::error::{LogError, Result};
use super::policy::{Audit, Finding, PolicyError};
use super::view::{self, Registered};
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::node::{Node, NodeError};
use crate::store::file::{check_pages, FileProblem};
use crate::store::{MemTables, ReadTxn, StorageError, Store};

/// At most this many violations are listed; the rest are counted.
pub const MAX_REPORTED_VIOLATIONS: usize = 1000;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// Stored bytes hash to something other than their key.
    #[error("seq {seq}: stored as {stored} but the bytes hash to {actual}")]
    HashMismatch {
        /// Feed position.
        seq: u64,
        /// The hash the store files it under.
        stored: Hash,
        /// The hash of the bytes.
        actual: Hash,
    },
    /// Stored bytes are not a canonical node.
    #[error("seq {seq} ({hash}): undecodable: {error}")]
    Undecodable {
        /// Feed position.
        seq: u64,
        /// The hash it is filed under.
        hash: Hash,
        /// Why decoding failed.
        error: NodeError,
    },
    /// A link to a node that is not stored.
    #[error("{node} links to {link}, which is not stored")]
    MissingLink {
        /// The linking node.
        node: Hash,
        /// The absent node.
        link: Hash,
    },
    /// A link to a node that arrived later: the feed is not topological.
    #[error("{node} (seq {seq}) links to {link} at later seq {link_seq}")]
    LinkNotEarlier {
        /// The linking node.
        node: Hash,
        /// Its seq.
        seq: u64,
        /// The linked node.
        link: Hash,
        /// The linked node's seq.
        link_seq: u64,
    },
    /// A feed entry the index does not point at.
    #[error("{hash} at seq {seq} is missing from the index")]
    NotIndexed {
        /// The node.
        hash: Hash,
        /// Its feed position.
        seq: u64,
    },
    /// An index entry that points at a wrong or absent feed entry.
    #[error("index maps {hash} to seq {seq}, which does not hold it")]
    BadIndexEntry {
        /// The indexed hash.
        hash: Hash,
        /// The seq it points at.
        seq: u64,
    },
    /// A node with no stored child that is not in the heads table.
    #[error("{hash} has no children but is not a head")]
    MissingHead {
        /// The node.
        hash: Hash,
    },
    /// A heads entry for a node that has a child or is not stored.
    #[error("{hash} is listed as a head but {reason}")]
    StaleHead {
        /// The listed hash.
        hash: Hash,
        /// "has a child" or "is not stored".
        reason: &'static str,
    },
    /// A key or value of the wrong shape in a table.
    #[error("table {table}: malformed entry ({detail})")]
    MalformedEntry {
        /// The table.
        table: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A signed node whose signature is not its author's.
    #[error("seq {seq} ({node}): signature is not valid for author {author}")]
    BadSignature {
        /// Feed position.
        seq: u64,
        /// The node.
        node: Hash,
        /// The author it names.
        author: PublicKey,
    },
    /// A node the policy in force when it was stored refuses.
    #[error("seq {seq}: {error}")]
    Refused {
        /// Feed position.
        seq: u64,
        /// What the policy refuses.
        error: PolicyError,
    },
    /// The data file is damaged: a page the newest snapshot reaches is missing or malformed.
    /// LMDB would follow it blindly, so nothing else is checked.
    #[error("damaged data file: {problem}")]
    DamagedFile {
        /// What is wrong.
        problem: FileProblem,
    },
    /// A view differs from a rebuild of it.
    #[error("view {view} differs from a rebuild from the feed")]
    ViewMismatch {
        /// The view's name.
        view: String,
    },
}

/// The result of [`crate::Log::verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Pages of the data file walked (0 where the file layout is not checked).
    pub pages: u64,
    /// Feed entries checked.
    pub nodes: u64,
    /// Heads found.
    pub heads: u64,
    /// Views compared with a rebuild.
    pub views: usize,
    /// Signed nodes per author (every signature checked).
    pub authors: std::collections::BTreeMap<PublicKey, u64>,
    /// Unsigned nodes.
    pub unsigned: u64,
    /// The policy history checked against: `(seq, policy)` governs nodes after `seq`.
    pub policies: Vec<(u64, super::policy::Policy)>,
    /// What is broken (at most [`MAX_REPORTED_VIOLATIONS`](crate::MAX_REPORTED_VIOLATIONS)).
    pub violations: Vec<Violation>,
    /// Violations found beyond those listed.
    pub unlisted: u64,
}

impl VerifyReport {
    /// True when no invariant is broken.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn push(&mut self, v: Violation) {
        if self.violations.len() < MAX_REPORTED_VIOLATIONS {
            self.violations.push(v);
        } else {
            self.unlisted += 1;
        }
    }
}

/// Checks every storage invariant and reports each violation. An `Err` means the check
/// itself could not run (I/O), not that the store is corrupt.
pub(crate) fn run(store: &Store, views: &[Registered]) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    store.read(|txn| -> Result<()> {
        // The walk runs inside the read transaction: LMDB then reuses no page of any
        // snapshot from this one on, so the newest one is not rewritten under the walk.
        match check_pages(store.path()) {
            Ok(pages) => report.pages = pages,
            Err(StorageError::DamagedFile { problem, .. }) => {
                report.push(Violation::DamagedFile { problem });
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        verify_nodes(store, txn, &mut report)?;
        for v in views {
            verify_view(store, txn, v, &mut report)?;
        }
        Ok(())
    })?;
    Ok(report)
}

fn verify_nodes(store: &Store, txn: ReadTxn<'_>, report: &mut VerifyReport) -> Result<()> {
    let mut linked: HashSet<Hash> = HashSet::new();
    let mut audit = Audit::load(store, txn)?;
    for rec in store.feed.after(txn, 0)? {
        let rec = match rec {
            Ok(rec) => rec,
            Err(StorageError::Corrupt(detail)) => {
                report.push(Violation::MalformedEntry {
                    table: "feed",
                    detail,
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let (seq, hash) = (rec.seq, rec.hash);
        report.nodes += 1;
        if let Err(StorageError::Damaged { got, .. }) = rec.checked() {
            report.push(Violation::HashMismatch {
                seq,
                stored: hash,
                actual: got,
            });
        }
        if store.index.seq_of(txn, &hash).ok().flatten() != Some(seq) {
            report.push(Violation::NotIndexed { hash, seq });
        }
        let node = match Node::decode(rec.bytes) {
            Ok(n) => n,
            Err(error) => {
                report.push(Violation::Undecodable { seq, hash, error });
                continue;
            }
        };
        for link in node.links() {
            linked.insert(*link);
            match store.index.seq_of(txn, link) {
                Ok(Some(link_seq)) if link_seq < seq => {}
                Ok(Some(link_seq)) => report.push(Violation::LinkNotEarlier {
                    node: hash,
                    seq,
                    link: *link,
                    link_seq,
                }),
                _ => report.push(Violation::MissingLink {
                    node: hash,
                    link: *link,
                }),
            }
        }
        audit.node(seq, node, &mut |f| report.push(f.into()));
    }
    audit.flush(&mut |f| report.push(f.into()));
    report.policies = audit.history().to_vec();
    report.unsigned = audit.unsigned;
    report.authors = std::mem::take(&mut audit.authors);
    let mut indexed = Vec::new();
    for entry in store.index.entries(txn)? {
        let (hash, seq) = match entry? {
            Ok(pair) => pair,
            Err((k, v)) => {
                report.push(Violation::MalformedEntry {
                    table: "index",
                    detail: format!("key {k} / value {v} bytes"),
                });
                continue;
            }
        };
        let holds = matches!(store.feed.record(txn, seq), Ok(Some(r)) if r.hash == hash);
        if !holds {
            report.push(Violation::BadIndexEntry { hash, seq });
        }
        if !linked.contains(&hash) {
            indexed.push(hash);
        }
    }
    let mut listed = HashSet::new();
    for key in store.heads.raw_keys(txn)? {
        let key = key?;
        let Ok(hash) = Hash::from_slice(key) else {
            report.push(Violation::MalformedEntry {
                table: "heads",
                detail: format!("key of {} bytes", key.len()),
            });
            continue;
        };
        listed.insert(hash);
        if store.index.seq_of(txn, &hash).ok().flatten().is_none() {
            report.push(Violation::StaleHead {
                hash,
                reason: "is not stored",
            });
        } else if linked.contains(&hash) {
            report.push(Violation::StaleHead {
                hash,
                reason: "has a child",
            });
        }
    }
    report.heads = listed.len() as u64;
    for hash in indexed {
        if !listed.contains(&hash) {
            report.push(Violation::MissingHead { hash });
        }
    }
    Ok(())
}

/// Rebuilds `v` in memory up to its watermark (a view may lag the feed after another
/// process wrote without it; the next write catches it up) and compares.
fn verify_view(
    store: &Store,
    txn: ReadTxn<'_>,
    v: &Registered,
    report: &mut VerifyReport,
) -> Result<()> {
    let upto = match store.meta.watermark(txn, v.name())? {
        Some((version, seq)) if version == v.view.version() => seq,
        _ => 0,
    };
    report.views += 1;
    let mismatch = Violation::ViewMismatch {
        view: v.name().to_string(),
    };
    let rebuilt = match view::rebuild_in_memory(store, txn, v, upto) {
        Ok(m) => m,
        // A damaged node is already listed; the view cannot be rebuilt past it.
        Err(LogError::Storage(StorageError::Damaged { .. } | StorageError::Node(_)))
        | Err(LogError::Node(_)) => return Ok(()),
        Err(_) => {
            report.push(mismatch);
            return Ok(());
        }
    };
    if digest_stored(txn, v)? != digest_memory(&rebuilt, v) {
        report.push(mismatch);
    }
    Ok(())
}

impl From<Finding> for Violation {
    fn from(f: Finding) -> Violation {
        match f {
            Finding::BadSignature { seq, node, author } => {
                Violation::BadSignature { seq, node, author }
            }
            Finding::Refused { seq, error } => Violation::Refused { seq, error },
        }
    }
}

/// A digest of entries, table by table, that both sides compute the same way.
struct Digest(blake3::Hasher);

impl Digest {
    fn new() -> Digest {
        Digest(blake3::Hasher::new())
    }
    fn entry(&mut self, k: &[u8], v: &[u8]) {
        self.0.update(&(k.len() as u64).to_le_bytes());
        self.0.update(k);
        self.0.update(&(v.len() as u64).to_le_bytes());
        self.0.update(v);
    }
    fn end_table(&mut self) {
        self.0.update(b"|table|");
    }
    fn finish(&self) -> Hash {
        Hash(*self.0.finalize().as_bytes())
    }
}

fn digest_stored(txn: ReadTxn<'_>, v: &Registered) -> Result<Hash> {
    let mut d = Digest::new();
    for t in &v.tables {
        for item in txn.iter(*t)? {
            let (k, val) = item?;
            d.entry(k, val);
        }
        d.end_table();
    }
    Ok(d.finish())
}

fn digest_memory(mem: &MemTables, v: &Registered) -> Hash {
    let mut d = Digest::new();
    for t in &v.tables {
        if let Some(map) = mem.tables.get(&t.id) {
            for (k, val) in map {
                d.entry(k, val);
            }
        }
        d.end_table();
    }
    d.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::{Change, Log, View};
    use crate::store::tables::raw::seq_key;
    use crate::store::{Store, WriteTxn};
    use crate::store::{Table, ViewTxn};

    fn diamond() -> (tempfile::TempDir, Log, Vec<Node>) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let a = log.add([], b"a".to_vec()).unwrap();
        let b = log.add([a.hash()], b"b".to_vec()).unwrap();
        let c = log.add([a.hash()], b"c".to_vec()).unwrap();
        let d = log.add([b.hash(), c.hash()], b"d".to_vec()).unwrap();
        assert!(log.verify().unwrap().is_ok());
        (dir, log, vec![a, b, c, d])
    }

    fn tamper(log: &Log, f: impl Fn(&mut WriteTxn<'_>, &Store)) {
        let store = log.store();
        store
            .write(|txn| {
                f(txn, store);
                Ok::<_, StorageError>(())
            })
            .unwrap();
    }

    fn get(txn: &WriteTxn<'_>, t: Table, k: &[u8]) -> Vec<u8> {
        txn.read().get(t, k).unwrap().unwrap().to_vec()
    }

    #[test]
    fn catches_a_flipped_byte() {
        let (_d, log, nodes) = diamond();
        tamper(&log, |txn, s| {
            let mut v = get(txn, s.feed.0, &seq_key(2));
            *v.last_mut().unwrap() ^= 1;
            txn.put(s.feed.0, &seq_key(2), &v).unwrap();
        });
        let r = log.verify().unwrap();
        // The last byte is the signature's: the audit names it too.
        assert!(
            matches!(r.violations.as_slice(), [Violation::HashMismatch { seq: 2, stored, .. }, Violation::BadSignature { seq: 2, .. }] if *stored == nodes[1].hash()),
            "{r:?}"
        );
    }

    #[test]
    fn catches_a_deleted_linked_node() {
        let (_d, log, nodes) = diamond();
        tamper(&log, |txn, s| {
            txn.delete(s.feed.0, &seq_key(1)).unwrap();
            txn.delete(s.index.0, nodes[0].hash().as_bytes()).unwrap();
        });
        let r = log.verify().unwrap();
        let missing: Vec<_> = r
            .violations
            .iter()
            .filter_map(|v| match v {
                Violation::MissingLink { node, link } => Some((*node, *link)),
                _ => None,
            })
            .collect();
        assert_eq!(
            missing,
            vec![
                (nodes[1].hash(), nodes[0].hash()),
                (nodes[2].hash(), nodes[0].hash())
            ]
        );
        assert_eq!(r.violations.len(), 2, "{r:?}");
    }

    #[test]
    fn catches_a_dropped_head() {
        let (_d, log, nodes) = diamond();
        tamper(&log, |txn, s| {
            txn.delete(s.heads.0, nodes[3].hash().as_bytes()).unwrap();
        });
        let r = log.verify().unwrap();
        assert_eq!(
            r.violations,
            vec![Violation::MissingHead {
                hash: nodes[3].hash()
            }]
        );
    }

    #[test]
    fn catches_stale_heads() {
        let (_d, log, nodes) = diamond();
        let ghost = Hash([7; 32]);
        tamper(&log, |txn, s| {
            txn.put(s.heads.0, nodes[1].hash().as_bytes(), &[]).unwrap();
            txn.put(s.heads.0, ghost.as_bytes(), &[]).unwrap();
        });
        let mut got = log.verify().unwrap().violations;
        got.sort_by_key(|v| v.to_string());
        let mut want = vec![
            Violation::StaleHead {
                hash: nodes[1].hash(),
                reason: "has a child",
            },
            Violation::StaleHead {
                hash: ghost,
                reason: "is not stored",
            },
        ];
        want.sort_by_key(|v| v.to_string());
        assert_eq!(got, want);
    }

    #[test]
    fn catches_index_damage() {
        let (_d, log, nodes) = diamond();
        tamper(&log, |txn, s| {
            txn.put(s.index.0, nodes[2].hash().as_bytes(), &seq_key(1))
                .unwrap();
        });
        let r = log.verify().unwrap();
        assert!(r.violations.contains(&Violation::NotIndexed {
            hash: nodes[2].hash(),
            seq: 3
        }));
        assert!(r.violations.contains(&Violation::BadIndexEntry {
            hash: nodes[2].hash(),
            seq: 1
        }));
    }

    #[test]
    fn catches_out_of_order_feed() {
        let (_d, log, nodes) = diamond();
        // Swap the entries of seq 1 (a) and seq 4 (d) so d precedes its links.
        tamper(&log, |txn, s| {
            let first = get(txn, s.feed.0, &seq_key(1));
            let last = get(txn, s.feed.0, &seq_key(4));
            txn.put(s.feed.0, &seq_key(1), &last).unwrap();
            txn.put(s.feed.0, &seq_key(4), &first).unwrap();
            txn.put(s.index.0, nodes[3].hash().as_bytes(), &seq_key(1))
                .unwrap();
            txn.put(s.index.0, nodes[0].hash().as_bytes(), &seq_key(4))
                .unwrap();
        });
        let r = log.verify().unwrap();
        assert!(r.violations.iter().any(|v| matches!(v, Violation::LinkNotEarlier { node, seq: 1, .. } if *node == nodes[3].hash())), "{r:?}");
    }

    struct CountView(Table);
    impl View for CountView {
        fn name(&self) -> &str {
            "count"
        }
        fn tables(&self) -> Vec<Table> {
            vec![self.0]
        }
        fn apply(&self, txn: &mut ViewTxn<'_, '_>, change: Change<'_>) -> Result<()> {
            Ok(txn.put(
                self.0,
                change.node.hash().as_bytes(),
                &change.seq.to_be_bytes(),
            )?)
        }
    }

    #[test]
    fn catches_a_view_that_drifted() {
        let (_d, log, nodes) = diamond();
        let table = log.create_table("count-v1").unwrap();
        log.register_view(Arc::new(CountView(table))).unwrap();
        assert!(log.verify().unwrap().is_ok());
        tamper(&log, |txn, _| {
            txn.delete(table, nodes[0].hash().as_bytes()).unwrap();
        });
        let r = log.verify().unwrap();
        assert_eq!(
            r.violations,
            vec![Violation::ViewMismatch {
                view: "count".into()
            }]
        );
        // verify rebuilt in memory: the damage is still there to repair.
        assert!(!log.verify().unwrap().is_ok());
        log.reindex().unwrap();
        assert!(log.verify().unwrap().is_ok());
    }
}
