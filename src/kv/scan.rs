//! Ordered scans (range, prefix, conflicts) and a key's history, read in bounded chunks.
//!
//! Each chunk is read in its own short read transaction, so an iterator holds at most one
//! chunk in memory and never pins the LMDB map between calls. The price: a long scan is not
//! one snapshot; a key written while it runs may show its old or new versions, but every
//! key is visited once and in order.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use super::op::{key_id, prefix_id, split_key_id, KvOp, Op};
use super::view::{classify, decode_op_record, decode_version, versions_in, Linked, Tables};
use super::Result;
use super::{Entry, Kv, Versions};
use crate::hash::{Hash, HASH_LEN};
use crate::store::ReadTxn;
use crate::store::StorageError;

/// Keys (with their versions) read per transaction.
const CHUNK: usize = 256;
/// History entries read per transaction.
const HISTORY_CHUNK: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Present keys from `kv-current`.
    Current,
    /// Keys listed in `kv-conflicts`.
    Conflicts,
}

/// An ordered scan over keys of one namespace; see [`Kv::range`], [`Kv::prefix`],
/// [`Kv::conflicts`]. Yields only present keys (some version is a value).
pub struct Scan {
    kv: Kv,
    source: Source,
    /// Every table key of the scan starts with this (namespace, and the prefix if any).
    within: Vec<u8>,
    /// Where the next chunk starts, in table-key space.
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    buf: VecDeque<Entry>,
    done: bool,
}

impl Scan {
    pub(crate) fn range<K: AsRef<[u8]>>(kv: Kv, range: impl RangeBounds<K>) -> Scan {
        let ns = kv.ns.clone();
        // A key's entries are `id ++ hash`: all above `id`, none above `id ++ FF..FF`.
        let top = |k: &K| {
            let mut id = key_id(&ns, k.as_ref());
            id.extend_from_slice(&[0xFF; HASH_LEN]);
            id
        };
        let start = match range.start_bound() {
            Bound::Included(k) => Bound::Included(key_id(&ns, k.as_ref())),
            Bound::Excluded(k) => Bound::Excluded(top(k)),
            Bound::Unbounded => Bound::Included(prefix_id(&ns, &[])),
        };
        let end = match range.end_bound() {
            Bound::Included(k) => Bound::Included(top(k)),
            Bound::Excluded(k) => Bound::Excluded(key_id(&ns, k.as_ref())),
            Bound::Unbounded => Bound::Unbounded,
        };
        Scan::new(kv, Source::Current, prefix_id(&ns, &[]), start, end)
    }

    pub(crate) fn prefix(kv: Kv, prefix: &[u8]) -> Scan {
        let within = prefix_id(&kv.ns, prefix);
        let start = Bound::Included(within.clone());
        Scan::new(kv, Source::Current, within, start, Bound::Unbounded)
    }

    pub(crate) fn conflicts(kv: Kv) -> Scan {
        let within = prefix_id(&kv.ns, &[]);
        let start = Bound::Included(within.clone());
        Scan::new(kv, Source::Conflicts, within, start, Bound::Unbounded)
    }

    fn new(
        kv: Kv,
        source: Source,
        within: Vec<u8>,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Scan {
        Scan {
            kv,
            source,
            within,
            start,
            end,
            buf: VecDeque::new(),
            done: false,
        }
    }

    fn key_of(&self, id: &[u8]) -> Result<Vec<u8>> {
        split_key_id(id, 1 + self.kv.ns.len())
            .map(|(key, _)| key)
            .ok_or_else(|| {
                StorageError::Corrupt(format!("kv view: malformed key id {id:02x?}")).into()
            })
    }

    /// Reads the next chunk into `buf`; sets `done` when the range is exhausted.
    fn fill(&mut self) -> Result<()> {
        let kv = self.kv.clone();
        kv.log.read(|txn| {
            let t = &kv.tables;
            let table = match self.source {
                Source::Current => t.current,
                Source::Conflicts => t.conflicts,
            };
            let bounds = (as_ref(&self.start), as_ref(&self.end));
            let mut group: Option<(Vec<u8>, Vec<super::Version>)> = None;
            let mut keys = 0;
            for item in txn.range(table, bounds.0, bounds.1)? {
                let (k, v) = item?;
                if !k.starts_with(&self.within) {
                    break;
                }
                if self.source == Source::Conflicts {
                    if keys == CHUNK {
                        self.start = Bound::Included(k.to_vec());
                        return Ok(());
                    }
                    keys += 1;
                    let versions = versions_in(t, &txn, k)?;
                    // The table lists keys with several versions and some value; versions
                    // that all agree (replicas that resolved alike) are no conflict.
                    if versions.is_conflict() {
                        let key = self.key_of(k)?;
                        self.buf.push_back(Entry { key, versions });
                    }
                    continue;
                }
                let id = &k[..k.len().saturating_sub(HASH_LEN)];
                if group.as_ref().is_some_and(|(g, _)| g != id) {
                    let (g, list) = group.take().expect("checked");
                    self.push_group(&g, list)?;
                    keys += 1;
                    if keys == CHUNK {
                        // Stop at a key boundary so no key is split across chunks, and
                        // resume at the key's id, not at this version: before the next
                        // chunk a write may replace it with a version that sorts earlier.
                        self.start = Bound::Included(id.to_vec());
                        return Ok(());
                    }
                }
                let version = decode_version(k, v)?;
                match &mut group {
                    Some((_, list)) => list.push(version),
                    None => group = Some((id.to_vec(), vec![version])),
                }
            }
            if let Some((g, list)) = group {
                self.push_group(&g, list)?;
            }
            self.done = true;
            Ok(())
        })
    }

    fn push_group(&mut self, id: &[u8], list: Vec<super::Version>) -> Result<()> {
        let versions = Versions::from_list(list);
        if versions.is_present() {
            let key = self.key_of(id)?;
            self.buf.push_back(Entry { key, versions });
        }
        Ok(())
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Iterator for Scan {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        while self.buf.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

/// One operation on a key, as [`Kv::history`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// Local arrival position (differs between replicas).
    pub seq: u64,
    /// The operation's node.
    pub hash: Hash,
    /// What it wrote.
    pub op: Op,
    /// Causal depth in the key's DAG (see [`super::Version::depth`]).
    pub depth: u64,
    /// The earlier operations on the same key it links to, in hash order: versions it
    /// superseded.
    pub supersedes: Vec<Hash>,
    /// The fold nodes of the same key it links to, in hash order: empty unless the write
    /// superseded more versions than one node may link (see [`Fold`](super::Fold)). It superseded
    /// every version reachable through them too: a fold's links (read with
    /// [`crate::Log::get`]) are versions and further folds. Folds are not operations on the
    /// key and have no entries of their own. Both lists are at most the node's own links, so
    /// an entry's size is bounded whatever the size of the fold tree below it.
    pub folds: Vec<Hash>,
    /// Whether it is still a current version.
    pub current: bool,
}

/// The operations on one key, newest first; see [`Kv::history`].
pub struct History {
    kv: Kv,
    id: Vec<u8>,
    /// Entries below this history-table key remain.
    before: Vec<u8>,
    buf: VecDeque<HistoryEntry>,
    done: bool,
}

impl History {
    pub(crate) fn new(kv: Kv, key: &[u8]) -> History {
        let Ok(op) = KvOp::new(&kv.ns, key, Op::Del) else {
            // A key over the limit was never written.
            return History {
                kv,
                id: Vec::new(),
                before: Vec::new(),
                buf: VecDeque::new(),
                done: true,
            };
        };
        let id = op.key_id();
        let mut before = id.clone();
        before.extend_from_slice(&[0xFF; 9]); // above `id ++ seq` for every seq
        History {
            kv,
            id,
            before,
            buf: VecDeque::new(),
            done: false,
        }
    }

    fn fill(&mut self) -> Result<()> {
        let kv = self.kv.clone();
        kv.log.read(|txn| {
            let t = &kv.tables;
            let bounds = (
                Bound::Included(self.id.as_slice()),
                Bound::Excluded(self.before.as_slice()),
            );
            for (n, item) in txn.rev_range(t.history, bounds.0, bounds.1)?.enumerate() {
                if n == HISTORY_CHUNK {
                    return Ok(());
                }
                let (k, v) = item?;
                self.before = k.to_vec();
                let seq = k
                    .get(self.id.len()..)
                    .and_then(|s| s.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| {
                        StorageError::Corrupt("kv view: malformed history key".into())
                    })?;
                let hash = Hash::from_slice(v).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                self.buf.push_back(entry_in(&kv, txn, &self.id, seq, hash)?);
            }
            self.done = true;
            Ok(())
        })
    }
}

/// The history entry of the operation `hash` (at `seq`) on the key with this id.
pub(crate) fn entry_in(
    kv: &Kv,
    txn: ReadTxn<'_>,
    id: &[u8],
    seq: u64,
    hash: Hash,
) -> Result<HistoryEntry> {
    let t = &kv.tables;
    let node = kv
        .log
        .get_in(txn, &hash)?
        .ok_or_else(|| StorageError::Corrupt(format!("kv history names {hash}, not stored")))?;
    let op = KvOp::decode(node.payload())
        .ok_or_else(|| StorageError::Corrupt(format!("kv history names {hash}, no KV op")))?;
    let mut depth = 0;
    if let Some(r) = txn.get(t.ops, hash.as_bytes())? {
        depth = decode_op_record(r)?.0;
    }
    let (supersedes, folds) = superseded(t, txn, node.links(), id)?;
    let mut current_key = id.to_vec();
    current_key.extend_from_slice(hash.as_bytes());
    let current = txn.get(t.current, &current_key)?.is_some();
    Ok(HistoryEntry {
        seq,
        hash,
        op: op.op,
        depth,
        supersedes,
        folds,
        current,
    })
}

/// The same-key versions and folds among `links`, each in hash order (as links are).
fn superseded(
    t: &Tables,
    mut txn: ReadTxn<'_>,
    links: &[Hash],
    id: &[u8],
) -> Result<(Vec<Hash>, Vec<Hash>)> {
    let (mut versions, mut folds) = (Vec::new(), Vec::new());
    for link in links {
        match classify(t, &mut txn, link, id)? {
            Linked::Version(_) => versions.push(*link),
            Linked::Fold(_) => folds.push(*link),
            Linked::Other => {}
        }
    }
    Ok((versions, folds))
}

impl Iterator for History {
    type Item = Result<HistoryEntry>;

    fn next(&mut self) -> Option<Result<HistoryEntry>> {
        while self.buf.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buf.pop_front().map(Ok)
    }
}
