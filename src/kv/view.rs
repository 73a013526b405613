//! The KV view: its tables and how each KV node updates them.
//!
//! | table              | key                 | value                                       |
//! |--------------------|---------------------|---------------------------------------------|
//! | `kv-current-v1`    | id ++ hash (32)     | kind u8 (0 del, 1 put) ++ depth u64 ++ value |
//! | `kv-ops-v1`        | hash (32)           | depth u64 ++ id                             |
//! | `kv-history-v1`    | id ++ seq u64       | hash (32)                                   |
//! | `kv-conflicts-v1`  | id                  | empty                                       |
//! | `kv-keys-v1`       | id                  | versions u64 ++ puts u64                    |
//! | `kv-folds-v1`      | hash (32)           | active u8 ++ depth u64 ++ n u16 ++ n hashes ++ id |
//!
//! - `kv-current` holds the current versions of every key: the KV operations on it that no
//!   later KV operation on the same key supersedes. Values are stored inline (a copy of the
//!   payload's value) so that gets and scans read one table in key order.
//! - `kv-ops` names the key of every KV operation and its causal depth, so an operation's
//!   links can be classified (same key or not) and its depth computed even when the linked
//!   operation is already superseded. Depth is 1 + the greatest depth among the operation's
//!   same-key links (a fold counts as the greatest depth it links): a property of the DAG,
//!   equal on every replica.
//! - `kv-history` lists every operation on a key in local arrival order (topological).
//! - `kv-conflicts` lists the keys that are present (some current version is a put) with more
//!   than one current version.
//! - `kv-keys` counts each key's current versions and how many of them are puts: the conflict
//!   state, kept up to date in O(links) per operation instead of a re-scan of every version.
//! - `kv-folds` records every fold node (see [`Fold`](super::Fold)): whether an operation has
//!   superseded it yet (*active*), its depth, its same-key links and its key.
//!
//! Applying an operation in feed order: each same-key link that is a version is removed from
//! `kv-current`; each same-key link that is a fold not yet active is activated, which removes
//! the versions it links and activates the folds it links, once per fold in the store's life.
//! Then the node is added to `kv-ops`, `kv-current` and `kv-history`, and its key's counts
//! and conflict entry are updated. Applying a fold only records it. The current set (same-key
//! operations not reached from a same-key operation through links and folds) does not depend
//! on arrival order, so replicas that hold the same nodes hold the same view, and a rebuild
//! equals the incremental result.

use super::fold::Fold;
use super::op::{KvOp, Op};
use super::{Version, Versions};
use crate::hash::{Hash, HASH_LEN};
use crate::log::{Change, Log, LogError, Result, View};
use crate::node::Node;
use crate::store::{ReadTxn, StorageError, Table, ViewTxn};

/// The view's name (its watermark key in the meta table).
pub(crate) const VIEW_NAME: &str = "kv";

/// Handles on the view's tables.
#[derive(Clone, Copy)]
pub(crate) struct Tables {
    pub current: Table,
    pub ops: Table,
    pub history: Table,
    pub conflicts: Table,
    pub keys: Table,
    pub folds: Table,
}

impl Tables {
    pub fn open(log: &Log) -> Result<Tables> {
        Ok(Tables {
            current: log.create_table("kv-current-v1")?,
            ops: log.create_table("kv-ops-v1")?,
            history: log.create_table("kv-history-v1")?,
            conflicts: log.create_table("kv-conflicts-v1")?,
            keys: log.create_table("kv-keys-v1")?,
            folds: log.create_table("kv-folds-v1")?,
        })
    }
}

pub(crate) struct KvView {
    pub tables: Tables,
}

fn corrupt(what: &str, len: usize) -> LogError {
    StorageError::Corrupt(format!("kv view: {what} of {len} bytes")).into()
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
        _ => return Err(StorageError::Corrupt(format!("kv view: version kind {kind}")).into()),
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

/// A `kv-folds` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoldRecord {
    /// Whether an operation on the key has superseded the fold (and so what it links).
    pub active: bool,
    /// The greatest depth among its same-key links.
    pub depth: u64,
    /// Its same-key links: versions and folds.
    pub links: Vec<Hash>,
    pub id: Vec<u8>,
}

impl FoldRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + self.links.len() * HASH_LEN + self.id.len());
        out.push(u8::from(self.active));
        out.extend_from_slice(&self.depth.to_be_bytes());
        // A node has at most MAX_LINKS (1024) links.
        out.extend_from_slice(&(self.links.len() as u16).to_be_bytes());
        for l in &self.links {
            out.extend_from_slice(l.as_bytes());
        }
        out.extend_from_slice(&self.id);
        out
    }

    pub(crate) fn decode(value: &[u8]) -> Result<FoldRecord> {
        let bad = || corrupt("fold value", value.len());
        let (&active, rest) = value.split_first().ok_or_else(bad)?;
        let (depth, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
        let (n, rest) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
        let n = usize::from(u16::from_be_bytes(*n));
        if active > 1 || rest.len() < n * HASH_LEN {
            return Err(bad());
        }
        let (links, id) = rest.split_at(n * HASH_LEN);
        Ok(FoldRecord {
            active: active == 1,
            depth: u64::from_be_bytes(*depth),
            links: links
                .chunks_exact(HASH_LEN)
                .map(|c| Hash::from_slice(c).expect("32 bytes"))
                .collect(),
            id: id.to_vec(),
        })
    }
}

/// What the view knows of a node a KV node links, relative to the linking node's key.
pub(crate) enum Linked {
    /// An operation on the same key, with its depth.
    Version(u64),
    /// A fold of the same key.
    Fold(FoldRecord),
    /// Anything else: another key's operation or fold, or not a KV node.
    Other,
}

/// Lookups in the view's tables: from `apply` (through its [`ViewTxn`]) or from a reader.
/// Values are copied out, since a [`ViewTxn`] lends them only until its next call.
pub(crate) trait Lookup {
    fn lookup(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

impl Lookup for ViewTxn<'_, '_> {
    fn lookup(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get(table, key)?.map(<[u8]>::to_vec))
    }
}

impl Lookup for ReadTxn<'_> {
    fn lookup(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get(table, key)?.map(<[u8]>::to_vec))
    }
}

/// Classifies `link` for a node on the key `id`.
pub(crate) fn classify(
    t: &Tables,
    txn: &mut impl Lookup,
    link: &Hash,
    id: &[u8],
) -> Result<Linked> {
    if let Some(record) = txn.lookup(t.ops, link.as_bytes())? {
        let (depth, link_id) = decode_op_record(&record)?;
        return Ok(if link_id == id {
            Linked::Version(depth)
        } else {
            Linked::Other
        });
    }
    if let Some(record) = txn.lookup(t.folds, link.as_bytes())? {
        let fold = FoldRecord::decode(&record)?;
        if fold.id == id {
            return Ok(Linked::Fold(fold));
        }
    }
    Ok(Linked::Other)
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

/// Whether the key with this id is in conflict ([`Versions::is_conflict`]), reading versions
/// only until two disagree: a watcher asks on every event, and a key flooded with versions
/// must not cost a full read each time.
pub(crate) fn in_conflict(t: &Tables, txn: &ReadTxn<'_>, id: &[u8]) -> Result<bool> {
    let mut first: Option<Op> = None;
    for item in txn.prefix(t.current, id)? {
        let (k, v) = item?;
        let op = decode_version(k, v)?.op;
        match &first {
            None => first = Some(op),
            // Two different operations: at least one is a value, so the key is present.
            Some(f) if *f != op => return Ok(true),
            Some(_) => {}
        }
    }
    Ok(false)
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

/// A key's conflict state: its current versions, and how many of them are puts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub versions: u64,
    pub puts: u64,
}

impl Counts {
    fn is_conflict(self) -> bool {
        self.versions > 1 && self.puts > 0
    }
}

fn table_key(id: &[u8], hash: &Hash) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + HASH_LEN);
    key.extend_from_slice(id);
    key.extend_from_slice(hash.as_bytes());
    key
}

/// Removes a version from `kv-current` if it is there; returns what it removed.
fn remove_current(t: &Tables, txn: &mut ViewTxn<'_, '_>, id: &[u8], hash: &Hash) -> Result<Counts> {
    let key = table_key(id, hash);
    let Some(kind) = txn.get(t.current, &key)?.map(|v| v.first().copied()) else {
        return Ok(Counts::default());
    };
    txn.delete(t.current, &key)?;
    Ok(Counts {
        versions: 1,
        puts: u64::from(kind == Some(1)),
    })
}

/// Activates the folds in `pending` and, transitively, the folds they link; removes every
/// version they link from `kv-current`. Each fold is activated once, so the total work over
/// a store's life is bounded by the links of its folds. Returns what it removed.
fn activate(
    t: &Tables,
    txn: &mut ViewTxn<'_, '_>,
    id: &[u8],
    mut pending: Vec<Hash>,
) -> Result<Counts> {
    let mut removed = Counts::default();
    // An explicit stack: a chain of folds may be as long as a peer cares to make it.
    while let Some(hash) = pending.pop() {
        let mut fold = match txn.get(t.folds, hash.as_bytes())? {
            Some(record) => FoldRecord::decode(record)?,
            None => continue,
        };
        if fold.active {
            continue;
        }
        fold.active = true;
        txn.put(t.folds, hash.as_bytes(), &fold.encode())?;
        for link in &fold.links {
            match classify(t, txn, link, id)? {
                Linked::Version(_) => {
                    let r = remove_current(t, txn, id, link)?;
                    removed.versions += r.versions;
                    removed.puts += r.puts;
                }
                Linked::Fold(f) if !f.active => pending.push(*link),
                _ => {}
            }
        }
    }
    Ok(removed)
}

fn read_counts(t: &Tables, txn: &mut impl Lookup, id: &[u8]) -> Result<Counts> {
    let Some(v) = txn.lookup(t.keys, id)? else {
        return Ok(Counts::default());
    };
    let bad = || corrupt("keys value", v.len());
    let (versions, rest) = v.split_first_chunk::<8>().ok_or_else(bad)?;
    let puts: [u8; 8] = rest.try_into().map_err(|_| bad())?;
    Ok(Counts {
        versions: u64::from_be_bytes(*versions),
        puts: u64::from_be_bytes(puts),
    })
}

fn write_counts(t: &Tables, txn: &mut ViewTxn<'_, '_>, id: &[u8], c: Counts) -> Result<()> {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&c.versions.to_be_bytes());
    v[8..].copy_from_slice(&c.puts.to_be_bytes());
    txn.put(t.keys, id, &v)?;
    if c.is_conflict() {
        txn.put(t.conflicts, id, &[])?;
    } else {
        txn.delete(t.conflicts, id)?;
    }
    Ok(())
}

impl KvView {
    fn apply_op(&self, txn: &mut ViewTxn<'_, '_>, seq: u64, node: &Node, op: &KvOp) -> Result<()> {
        let t = &self.tables;
        let id = op.key_id();
        let hash = node.hash();
        let (mut depth, mut removed, mut folds) = (0, Counts::default(), Vec::new());
        for link in node.links() {
            match classify(t, txn, link, &id)? {
                Linked::Version(d) => {
                    depth = depth.max(d);
                    let r = remove_current(t, txn, &id, link)?;
                    removed.versions += r.versions;
                    removed.puts += r.puts;
                }
                Linked::Fold(f) => {
                    depth = depth.max(f.depth);
                    folds.push(*link);
                }
                Linked::Other => {}
            }
        }
        let r = activate(t, txn, &id, folds)?;
        let depth = depth + 1;

        let mut record = Vec::with_capacity(8 + id.len());
        record.extend_from_slice(&depth.to_be_bytes());
        record.extend_from_slice(&id);
        txn.put(t.ops, hash.as_bytes(), &record)?;
        txn.put(
            t.current,
            &table_key(&id, &hash),
            &encode_version(depth, &op.op),
        )?;
        let mut history_key = id.clone();
        history_key.extend_from_slice(&seq.to_be_bytes());
        txn.put(t.history, &history_key, hash.as_bytes())?;

        let before = read_counts(t, txn, &id)?;
        let gone = |n: u64, a: u64, b: u64| {
            n.checked_sub(a + b).ok_or_else(|| {
                StorageError::Corrupt(format!("kv view: counts of key id {id:02x?}"))
            })
        };
        let after = Counts {
            versions: gone(before.versions, removed.versions, r.versions)? + 1,
            puts: gone(before.puts, removed.puts, r.puts)? + u64::from(!op.op.is_tombstone()),
        };
        write_counts(t, txn, &id, after)
    }

    fn apply_fold(&self, txn: &mut ViewTxn<'_, '_>, node: &Node, fold: &Fold) -> Result<()> {
        let t = &self.tables;
        let id = fold.key_id();
        let (mut depth, mut links) = (0, Vec::new());
        for link in node.links() {
            match classify(t, txn, link, &id)? {
                Linked::Version(d) => depth = depth.max(d),
                Linked::Fold(f) => depth = depth.max(f.depth),
                Linked::Other => continue,
            }
            links.push(*link);
        }
        let record = FoldRecord {
            active: false,
            depth,
            links,
            id,
        };
        Ok(txn.put(t.folds, node.hash().as_bytes(), &record.encode())?)
    }
}

impl View for KvView {
    fn name(&self) -> &str {
        VIEW_NAME
    }

    /// 2: the conflict state is kept per key (`kv-keys`), and folds are recorded.
    fn version(&self) -> u32 {
        2
    }

    fn tables(&self) -> Vec<Table> {
        let t = self.tables;
        vec![t.current, t.ops, t.history, t.conflicts, t.keys, t.folds]
    }

    fn apply(&self, txn: &mut ViewTxn<'_, '_>, change: Change<'_>) -> Result<()> {
        let payload = change.node.payload();
        if let Some(op) = KvOp::decode(payload) {
            self.apply_op(txn, change.seq, change.node, &op)
        } else if let Some(fold) = Fold::decode(payload) {
            self.apply_fold(txn, change.node, &fold)
        } else {
            Ok(()) // not a KV node: some other application's
        }
    }
}

#[cfg(test)]
mod tests;
