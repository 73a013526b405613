//! `verify`: the store's fsck. Checks every invariant of the schema and names each violation.
//!
//! 1. every feed entry's bytes hash to its hash and decode canonically;
//! 2. closure and order: every link is stored at an earlier seq;
//! 3. heads are exactly the stored nodes that no stored node links to;
//! 4. the index is a bijection with the feed;
//! 5. every registered view equals a rebuild from the feed.
//! 6. every signature is its author's, and every node meets the policy that was in force when
//!    it was stored (the policy history in the meta table).
//!
//! Checks 1-4 run in one read transaction (a consistent snapshot). Check 3 keeps the set of
//! linked hashes in memory (32 bytes per distinct link target). Check 5 rebuilds each view in a
//! write transaction that is then aborted, so it blocks writers while it runs.

use std::collections::HashSet;

use crate::error::Result;
use crate::hash::Hash;
use crate::log::{read_seq, replay, seq_key, split_feed_value, Log};
use crate::node::{Node, NodeError};
use crate::store::Table;

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
        author: crate::identity::PublicKey,
    },
    /// A node the policy in force when it was stored refuses.
    #[error("seq {seq}: {error}")]
    Refused {
        /// Feed position.
        seq: u64,
        /// What the policy refuses.
        error: crate::policy::PolicyError,
    },
    /// A view differs from a rebuild of it.
    #[error("view {view} differs from a rebuild from the feed")]
    ViewMismatch {
        /// The view's name.
        view: String,
    },
}

/// The result of [`Log::verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Feed entries checked.
    pub nodes: u64,
    /// Heads found.
    pub heads: u64,
    /// Views compared with a rebuild.
    pub views: usize,
    /// Signed nodes per author (every signature checked).
    pub authors: std::collections::BTreeMap<crate::identity::PublicKey, u64>,
    /// Unsigned nodes.
    pub unsigned: u64,
    /// The policy history checked against: `(seq, policy)` governs nodes after `seq`.
    pub policies: Vec<(u64, crate::policy::Policy)>,
    /// What is broken (at most [`MAX_REPORTED_VIOLATIONS`]).
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

impl Log {
    /// Checks every storage invariant (module [`crate::verify`]) and reports each violation.
    /// An `Err` means the check itself could not run (I/O), not that the store is corrupt.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        self.verify_nodes(&mut report)?;
        self.verify_views(&mut report)?;
        Ok(report)
    }

    fn verify_nodes(&self, report: &mut VerifyReport) -> Result<()> {
        let store = self.store();
        let r = store.read()?;
        let txn = &r.txn;
        let mut linked: HashSet<Hash> = HashSet::new();
        let mut audit = crate::policy::Audit::load(&store.meta, txn)?;
        for item in store.feed.iter(txn)? {
            let (k, v) = item?;
            let Ok(seq) = read_seq(k) else {
                report.push(Violation::MalformedEntry {
                    table: "feed",
                    detail: format!("key of {} bytes", k.len()),
                });
                continue;
            };
            let Ok((hash, bytes)) = split_feed_value(v) else {
                report.push(Violation::MalformedEntry {
                    table: "feed",
                    detail: format!("seq {seq}: value of {} bytes", v.len()),
                });
                continue;
            };
            report.nodes += 1;
            let actual = Hash::of(bytes);
            if actual != hash {
                report.push(Violation::HashMismatch {
                    seq,
                    stored: hash,
                    actual,
                });
            }
            match store.index.get(txn, hash.as_bytes())?.map(read_seq) {
                Some(Ok(s)) if s == seq => {}
                _ => report.push(Violation::NotIndexed { hash, seq }),
            }
            let node = match Node::decode(bytes) {
                Ok(n) => n,
                Err(error) => {
                    report.push(Violation::Undecodable { seq, hash, error });
                    continue;
                }
            };
            for link in node.links() {
                linked.insert(*link);
                match store.index.get(txn, link.as_bytes())?.map(read_seq) {
                    Some(Ok(link_seq)) if link_seq < seq => {}
                    Some(Ok(link_seq)) => report.push(Violation::LinkNotEarlier {
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
        for item in store.index.iter(txn)? {
            let (k, v) = item?;
            let (Ok(hash), Ok(seq)) = (Hash::from_slice(k), read_seq(v)) else {
                report.push(Violation::MalformedEntry {
                    table: "index",
                    detail: format!("key {} / value {} bytes", k.len(), v.len()),
                });
                continue;
            };
            let holds = store
                .feed
                .get(txn, &seq_key(seq))?
                .and_then(|fv| split_feed_value(fv).ok())
                .is_some_and(|(h, _)| h == hash);
            if !holds {
                report.push(Violation::BadIndexEntry { hash, seq });
            }
        }
        let mut listed = HashSet::new();
        for item in store.heads.iter(txn)? {
            let (k, _) = item?;
            let Ok(hash) = Hash::from_slice(k) else {
                report.push(Violation::MalformedEntry {
                    table: "heads",
                    detail: format!("key of {} bytes", k.len()),
                });
                continue;
            };
            listed.insert(hash);
            if store.index.get(txn, k)?.is_none() {
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
        for item in store.index.iter(txn)? {
            let (k, _) = item?;
            if let Ok(hash) = Hash::from_slice(k) {
                if !linked.contains(&hash) && !listed.contains(&hash) {
                    report.push(Violation::MissingHead { hash });
                }
            }
        }
        Ok(())
    }

    fn verify_views(&self, report: &mut VerifyReport) -> Result<()> {
        let views = self.registered_views();
        if views.is_empty() {
            return Ok(());
        }
        let store = self.store();
        // Rebuild in a transaction that is never committed.
        let _gate = store.read()?; // holds the map-growth gate; its read txn is harmless
        let mut txn = store.env.write_txn()?;
        for view in &views {
            let tables = view.tables();
            let before = digest(&txn, &tables)?;
            for t in &tables {
                t.clear(&mut txn)?;
            }
            replay(store, &mut txn, view.as_ref(), 0)?;
            if digest(&txn, &tables)? != before {
                report.push(Violation::ViewMismatch {
                    view: view.name().to_string(),
                });
            }
            report.views += 1;
        }
        drop(txn); // abort
        Ok(())
    }
}

fn digest(txn: &heed::RoTxn<'_, heed::WithoutTls>, tables: &[Table]) -> Result<Hash> {
    let mut h = blake3::Hasher::new();
    for t in tables {
        for item in t.iter(txn)? {
            let (k, v) = item?;
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k);
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
        h.update(b"|table|");
    }
    Ok(Hash(*h.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::seq_key;
    use crate::view::{Change, View};

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

    fn tamper(log: &Log, f: impl Fn(&mut heed::RwTxn<'_>, &crate::store::Store)) {
        let store = log.store();
        store
            .write(|txn| {
                f(txn, store);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn catches_a_flipped_byte() {
        let (_d, log, nodes) = diamond();
        tamper(&log, |txn, s| {
            let mut v = s.feed.get(txn, &seq_key(2)).unwrap().unwrap().to_vec();
            *v.last_mut().unwrap() ^= 1;
            s.feed.put(txn, &seq_key(2), &v).unwrap();
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
            s.feed.delete(txn, &seq_key(1)).unwrap();
            s.index.delete(txn, nodes[0].hash().as_bytes()).unwrap();
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
            s.heads.delete(txn, nodes[3].hash().as_bytes()).unwrap();
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
            s.heads.put(txn, nodes[1].hash().as_bytes(), &[]).unwrap();
            s.heads.put(txn, ghost.as_bytes(), &[]).unwrap();
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
            s.index
                .put(txn, nodes[2].hash().as_bytes(), &seq_key(1))
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
            let first = s.feed.get(txn, &seq_key(1)).unwrap().unwrap().to_vec();
            let last = s.feed.get(txn, &seq_key(4)).unwrap().unwrap().to_vec();
            s.feed.put(txn, &seq_key(1), &last).unwrap();
            s.feed.put(txn, &seq_key(4), &first).unwrap();
            s.index
                .put(txn, nodes[3].hash().as_bytes(), &seq_key(1))
                .unwrap();
            s.index
                .put(txn, nodes[0].hash().as_bytes(), &seq_key(4))
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
        fn apply(&self, txn: &mut heed::RwTxn<'_>, change: Change<'_>) -> Result<()> {
            self.0.put(
                txn,
                change.node.hash().as_bytes(),
                &change.seq.to_be_bytes(),
            )?;
            Ok(())
        }
    }

    #[test]
    fn catches_a_view_that_drifted() {
        let (_d, log, nodes) = diamond();
        let table = log.create_table("count-v1").unwrap();
        log.register_view(Arc::new(CountView(table))).unwrap();
        assert!(log.verify().unwrap().is_ok());
        tamper(&log, |txn, _| {
            table.delete(txn, nodes[0].hash().as_bytes()).unwrap();
        });
        let r = log.verify().unwrap();
        assert_eq!(
            r.violations,
            vec![Violation::ViewMismatch {
                view: "count".into()
            }]
        );
        // verify rebuilt inside an aborted transaction: the damage is still there to repair.
        assert!(!log.verify().unwrap().is_ok());
        log.reindex().unwrap();
        assert!(log.verify().unwrap().is_ok());
    }
}
