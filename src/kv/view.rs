//! The KV view: its tables and how each KV node updates them.
//!
//! Tables (all `Bytes -> Bytes`; "id" is a key id, see [`super::op`]; integers big-endian):
//!
//! | table              | key                 | value                                       |
//! |--------------------|---------------------|---------------------------------------------|
//! | `kv-current-v1`    | id ++ hash (32)     | kind u8 (0 del, 1 put) ++ depth u64 ++ value |
//! | `kv-ops-v1`        | hash (32)           | depth u64 ++ id                             |
//! | `kv-history-v1`    | id ++ seq u64       | hash (32)                                   |
//! | `kv-conflicts-v1`  | id                  | empty                                       |
//!
//! - `kv-current` holds the current versions of every key: the KV operations on it that no
//!   later KV operation on the same key links to. Values are stored inline (a copy of the
//!   payload's value) so that gets and scans read one table in key order.
//! - `kv-ops` names the key of every KV operation and its causal depth, so an operation's
//!   links can be classified (same key or not) and its depth computed even when the linked
//!   operation is already superseded. Depth is 1 + the greatest depth among the operation's
//!   same-key links: a property of the DAG, equal on every replica.
//! - `kv-history` lists every operation on a key in local arrival order (topological).
//! - `kv-conflicts` lists the keys that are present (some current version is a put) with more
//!   than one current version.
//!
//! Applying a node in feed order: if its payload is not a KV operation, nothing happens.
//! Otherwise each link that is an operation on the same key is removed from `kv-current`, the
//! node is added to all four tables as needed, and the key's conflict entry is recomputed
//! from its (few) current versions. The current set is the set of same-key operations not
//! linked by a same-key operation, which does not depend on arrival order, so replicas that
//! hold the same nodes hold the same view, and a rebuild equals the incremental result.

use super::op::{KvOp, Op};
use super::{Version, Versions};
use crate::error::{Error, Result};
use crate::hash::{Hash, HASH_LEN};
use crate::log::Log;
use crate::store::ReadTxn;
use crate::view::{Change, Table, View, ViewTxn};

/// The view's name (its watermark key in the meta table).
pub(crate) const VIEW_NAME: &str = "kv";

/// Handles on the view's tables.
#[derive(Clone, Copy)]
pub(crate) struct Tables {
    pub current: Table,
    pub ops: Table,
    pub history: Table,
    pub conflicts: Table,
}

impl Tables {
    pub fn open(log: &Log) -> Result<Tables> {
        Ok(Tables {
            current: log.create_table("kv-current-v1")?,
            ops: log.create_table("kv-ops-v1")?,
            history: log.create_table("kv-history-v1")?,
            conflicts: log.create_table("kv-conflicts-v1")?,
        })
    }
}

pub(crate) struct KvView {
    pub tables: Tables,
}

fn corrupt(what: &str, len: usize) -> Error {
    Error::Corrupt(format!("kv view: {what} of {len} bytes"))
}

pub(crate) fn encode_version(depth: u64, op: &Op) -> Vec<u8> {
    let value = op.value().unwrap_or_default();
    let mut out = Vec::with_capacity(9 + value.len());
    out.push(u8::from(!op.is_tombstone()));
    out.extend_from_slice(&depth.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a `kv-current` entry (its table key and value) into a version.
pub(crate) fn decode_version(table_key: &[u8], value: &[u8]) -> Result<Version> {
    let hash_at = table_key
        .len()
        .checked_sub(HASH_LEN)
        .ok_or_else(|| corrupt("current key", table_key.len()))?;
    let hash = Hash::from_slice(&table_key[hash_at..]).expect("32 bytes");
    let (&kind, rest) = value
        .split_first()
        .ok_or_else(|| corrupt("current value", value.len()))?;
    let depth = rest
        .get(..8)
        .map(|d| u64::from_be_bytes(d.try_into().expect("8 bytes")))
        .ok_or_else(|| corrupt("current value", value.len()))?;
    let op = match kind {
        0 => Op::Del,
        1 => Op::Put(rest[8..].to_vec()),
        _ => return Err(Error::Corrupt(format!("kv view: version kind {kind}"))),
    };
    Ok(Version { hash, depth, op })
}

/// Splits a `kv-ops` value into depth and key id.
pub(crate) fn decode_op_record(value: &[u8]) -> Result<(u64, &[u8])> {
    let (depth, id) = value
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("ops value", value.len()))?;
    Ok((u64::from_be_bytes(*depth), id))
}

/// The current versions of the key with this id, in hash order.
pub(crate) fn versions_in(t: &Tables, txn: &ReadTxn<'_>, id: &[u8]) -> Result<Versions> {
    let mut list = Vec::new();
    for item in txn.prefix(t.current, id)? {
        let (k, v) = item?;
        list.push(decode_version(k, v)?);
    }
    Ok(Versions::from_list(list))
}

/// The hashes of the current versions of the key with this id.
pub(crate) fn heads_in(t: &Tables, txn: &ReadTxn<'_>, id: &[u8]) -> Result<Vec<Hash>> {
    let mut out = Vec::new();
    for item in txn.prefix(t.current, id)? {
        let (k, _) = item?;
        let at = k
            .len()
            .checked_sub(HASH_LEN)
            .ok_or_else(|| corrupt("current key", k.len()))?;
        out.push(Hash::from_slice(&k[at..]).expect("32 bytes"));
    }
    Ok(out)
}

impl View for KvView {
    fn name(&self) -> &str {
        VIEW_NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> Vec<Table> {
        let t = self.tables;
        vec![t.current, t.ops, t.history, t.conflicts]
    }

    fn apply(&self, txn: &mut ViewTxn<'_, '_>, change: Change<'_>) -> Result<()> {
        let Some(op) = KvOp::decode(change.node.payload()) else {
            return Ok(()); // not a KV operation: some other application's node
        };
        let t = &self.tables;
        let id = op.key_id();
        let hash = change.node.hash();
        let mut table_key = Vec::with_capacity(id.len() + HASH_LEN);
        let mut depth = 0;
        for link in change.node.links() {
            let same_key_depth = match txn.get(t.ops, link.as_bytes())? {
                Some(record) => {
                    let (d, link_id) = decode_op_record(record)?;
                    (link_id == id.as_slice()).then_some(d)
                }
                None => None, // not a KV operation, or an invalid one
            };
            if let Some(d) = same_key_depth {
                depth = depth.max(d);
                table_key.clear();
                table_key.extend_from_slice(&id);
                table_key.extend_from_slice(link.as_bytes());
                txn.delete(t.current, &table_key)?;
            }
        }
        let depth = depth + 1;

        let mut record = Vec::with_capacity(8 + id.len());
        record.extend_from_slice(&depth.to_be_bytes());
        record.extend_from_slice(&id);
        txn.put(t.ops, hash.as_bytes(), &record)?;

        table_key.clear();
        table_key.extend_from_slice(&id);
        table_key.extend_from_slice(hash.as_bytes());
        txn.put(t.current, &table_key, &encode_version(depth, &op.op))?;

        let mut history_key = id.clone();
        history_key.extend_from_slice(&change.seq.to_be_bytes());
        txn.put(t.history, &history_key, hash.as_bytes())?;

        let (mut count, mut present) = (0usize, false);
        for item in txn.prefix(t.current, &id)? {
            let (_, v) = item?;
            count += 1;
            present |= v.first() == Some(&1);
        }
        if count > 1 && present {
            txn.put(t.conflicts, &id, &[])?;
        } else {
            txn.delete(t.conflicts, &id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::op::key_id;
    use crate::kv::Kv;

    fn setup() -> (tempfile::TempDir, Log, Kv) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let kv = Kv::open(&log).unwrap();
        (dir, log, kv)
    }

    fn dump(log: &Log, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        log.read(|txn| {
            let mut out = Vec::new();
            for item in txn.iter(table)? {
                let (k, v) = item?;
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out)
        })
        .unwrap()
    }

    #[test]
    fn tables_follow_the_documented_layout() {
        let (_dir, log, kv) = setup();
        let t = kv.tables;
        let h1 = kv.put(b"k\0", b"v1".to_vec()).unwrap();
        let h2 = kv.write_with_links(b"k\0", Op::Del, []).unwrap();
        let id = key_id(b"", b"k\0");
        assert_eq!(id, b"\x00k\x00\xff\x00\x01");

        let mut current = dump(&log, t.current);
        current.sort();
        let mut expected = vec![
            ([id.clone(), h1.as_bytes().to_vec()].concat(), {
                let mut v = vec![1];
                v.extend_from_slice(&1u64.to_be_bytes());
                v.extend_from_slice(b"v1");
                v
            }),
            ([id.clone(), h2.as_bytes().to_vec()].concat(), {
                let mut v = vec![0];
                v.extend_from_slice(&1u64.to_be_bytes());
                v
            }),
        ];
        expected.sort();
        assert_eq!(current, expected);

        let ops = dump(&log, t.ops);
        assert_eq!(ops.len(), 2);
        assert!(ops
            .iter()
            .all(|(_, v)| v[..8] == 1u64.to_be_bytes() && v[8..] == id[..]));

        let history = dump(&log, t.history);
        assert_eq!(
            history,
            vec![
                (
                    [id.clone(), 1u64.to_be_bytes().to_vec()].concat(),
                    h1.as_bytes().to_vec()
                ),
                (
                    [id.clone(), 2u64.to_be_bytes().to_vec()].concat(),
                    h2.as_bytes().to_vec()
                ),
            ]
        );
        assert_eq!(dump(&log, t.conflicts), vec![(id.clone(), vec![])]);

        // Superseding both clears the conflict and leaves one current version, depth 2.
        let h3 = kv.put(b"k\0", b"v3".to_vec()).unwrap();
        assert!(dump(&log, t.conflicts).is_empty());
        let current = dump(&log, t.current);
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].0, [id, h3.as_bytes().to_vec()].concat());
        assert_eq!(current[0].1[1..9], 2u64.to_be_bytes());
    }

    #[test]
    fn non_kv_nodes_leave_the_tables_empty() {
        let (_dir, log, kv) = setup();
        log.append(b"plain".to_vec()).unwrap();
        let mut bad = crate::kv::op::MAGIC.to_vec();
        bad.extend_from_slice(&[1, 0xff, 0xff, 0xff]);
        log.append(bad).unwrap();
        for t in (KvView { tables: kv.tables }).tables() {
            assert!(dump(&log, t).is_empty());
        }
    }

    #[test]
    fn corrupt_records_are_reported_not_panicked_on() {
        assert!(decode_version(&[0; 10], &[1]).is_err());
        assert!(decode_version(&[0; 40], &[]).is_err());
        assert!(decode_version(&[0; 40], &[1, 0]).is_err());
        assert!(decode_version(&[0; 40], &[7; 9]).is_err());
        assert!(decode_op_record(&[0; 7]).is_err());
        let v = decode_version(&[3; 40], &[1, 0, 0, 0, 0, 0, 0, 0, 5, b'x']).unwrap();
        assert_eq!(
            (v.depth, v.op, v.hash),
            (5, Op::Put(b"x".to_vec()), Hash([3; 32]))
        );
    }
}
