//! braidlog's own tables, one typed handle each. Every byte layout is encoded and decoded
//! here and nowhere else (diagrams in `docs/STORAGE.md`):
//!
//! | table      | key                | value                                   |
//! |------------|--------------------|-----------------------------------------|
//! | `feed-v1`  | seq `u64` BE       | hash (32) ++ canonical node             |
//! | `index-v1` | hash (32)          | seq `u64` BE                            |
//! | `heads-v1` | hash (32)          | empty                                   |
//! | `meta-v1`  | utf-8 name         | depends on the name, see [`meta`]       |
//!
//! Bytes read from disk are untrusted: LMDB has no page checksums. Every node handed out by
//! [`Feed::node`] and friends is re-hashed first, and a mismatch is [`StorageError::Damaged`].

use std::ops::Bound;

use super::{Result, StorageError};
use crate::hash::{Hash, HASH_LEN};
use crate::identity::PeerId;
use crate::node::Node;

use super::txn::{ReadTxn, Table, WriteTxn};

/// Names of braidlog's own tables; [`reserved`] refuses them (and the prefix) for views.
pub(crate) const FEED: &str = "feed-v1";
pub(crate) const INDEX: &str = "index-v1";
pub(crate) const HEADS: &str = "heads-v1";
pub(crate) const META: &str = "meta-v1";
/// Table names starting with this are kept for braidlog's future tables.
pub(crate) const RESERVED_PREFIX: &str = "braidlog";

/// Whether a view may not use `name` for a table.
pub(crate) fn reserved(name: &str) -> bool {
    [FEED, INDEX, HEADS, META].contains(&name) || name.starts_with(RESERVED_PREFIX)
}

/// Keys of the meta table.
pub(crate) mod meta {
    /// `u32` BE: the store format version.
    pub const FORMAT: &str = "format";
    /// 16 random bytes identifying this replica to peers.
    pub const PEER_ID: &str = "peer-id";
    /// `dev u64 BE ++ inode u64 BE` of `data.mdb` when the peer id was made: a copied
    /// directory has another inode, and gets a new peer id.
    pub const PEER_ID_FILE: &str = "peer-id-file";
    /// Prefix of per-view watermarks: `view/<name>` -> `version u32 BE ++ applied seq u64 BE`.
    pub const VIEW_PREFIX: &str = "view/";
    /// Prefix of per-peer replication state: `peer/<hex peer id>/...`.
    pub const PEER_PREFIX: &str = "peer/";
    /// Prefix of the policy history: `policy/<seq as 16 lowercase hex>` -> the policy (its
    /// encoding is `crate::policy`'s) that governs nodes stored after that seq.
    pub const POLICY_PREFIX: &str = "policy/";
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn decode_seq(bytes: &[u8]) -> Result<u64> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt(format!("seq of {} bytes", bytes.len())))
}

fn decode_hash(bytes: &[u8]) -> Result<Hash> {
    Hash::from_slice(bytes)
        .map_err(|_| StorageError::Corrupt(format!("hash of {} bytes", bytes.len())))
}

/// One feed entry as stored, not yet checked: what `verify` inspects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedRecord<'t> {
    pub seq: u64,
    /// The hash the entry is filed under.
    pub hash: Hash,
    /// The canonical bytes (unchecked until [`FeedRecord::checked`]).
    pub bytes: &'t [u8],
}

impl<'t> FeedRecord<'t> {
    fn decode(key: &[u8], value: &'t [u8]) -> Result<FeedRecord<'t>> {
        let seq = decode_seq(key)?;
        if value.len() < HASH_LEN {
            return Err(StorageError::Corrupt(format!(
                "feed entry {seq}: value of {} bytes",
                value.len()
            )));
        }
        let (h, bytes) = value.split_at(HASH_LEN);
        Ok(FeedRecord {
            seq,
            hash: Hash::from_slice(h).expect("32 bytes"),
            bytes,
        })
    }

    /// The bytes, after checking that they hash to the filed hash.
    pub fn checked(self) -> Result<&'t [u8]> {
        let got = Hash::of(self.bytes);
        if got != self.hash {
            return Err(StorageError::Damaged {
                seq: self.seq,
                expected: self.hash,
                got,
            });
        }
        Ok(self.bytes)
    }

    /// The decoded node, after the hash check.
    pub fn node(self) -> Result<Node> {
        let bytes = self.checked()?;
        Ok(Node::decode_trusted(bytes, self.hash)?)
    }
}

/// `feed-v1`: seq -> hash ++ node. Local arrival order, topological, appended only.
#[derive(Clone, Copy)]
pub(crate) struct Feed(pub Table);

impl Feed {
    pub fn record<'t>(&self, txn: ReadTxn<'t>, seq: u64) -> Result<Option<FeedRecord<'t>>> {
        match txn.get(self.0, &seq_key(seq))? {
            None => Ok(None),
            Some(v) => FeedRecord::decode(&seq_key(seq), v).map(Some),
        }
    }

    /// The hash-checked node at `seq`.
    pub fn node(&self, txn: ReadTxn<'_>, seq: u64) -> Result<Option<Node>> {
        self.record(txn, seq)?.map(FeedRecord::node).transpose()
    }

    /// Records with seq > `after`, in order (unchecked; check each before use).
    pub fn after<'t>(
        &self,
        txn: ReadTxn<'t>,
        after: u64,
    ) -> Result<impl Iterator<Item = Result<FeedRecord<'t>>> + 't> {
        let start = seq_key(after.saturating_add(1));
        let start = if after == u64::MAX {
            Bound::Excluded(&start[..])
        } else {
            Bound::Included(&start[..])
        };
        let it = txn.range(self.0, start, Bound::Unbounded)?;
        Ok(it.map(|item| item.and_then(|(k, v)| FeedRecord::decode(k, v))))
    }

    /// The newest seq (0 when empty).
    pub fn last_seq(&self, txn: ReadTxn<'_>) -> Result<u64> {
        match txn.last(self.0)? {
            None => Ok(0),
            Some((k, _)) => decode_seq(k),
        }
    }

    /// Appends `node` at `seq`, which must be above every stored seq.
    pub fn append(&self, txn: &mut WriteTxn<'_>, seq: u64, node: &Node) -> Result<()> {
        let mut value = Vec::with_capacity(HASH_LEN + node.encoded_len());
        value.extend_from_slice(node.hash().as_bytes());
        node.encode_into(&mut value);
        txn.append(self.0, &seq_key(seq), &value)
    }
}

/// One index entry as `verify` sees it: `(hash, seq)`, or the key and value sizes when the
/// entry is malformed.
pub(crate) type IndexEntry = Result<std::result::Result<(Hash, u64), (usize, usize)>>;

/// `index-v1`: hash -> seq.
#[derive(Clone, Copy)]
pub(crate) struct Index(pub Table);

impl Index {
    pub fn seq_of(&self, txn: ReadTxn<'_>, hash: &Hash) -> Result<Option<u64>> {
        txn.get(self.0, hash.as_bytes())?
            .map(decode_seq)
            .transpose()
    }

    /// Files `hash` at `seq` unless it is filed; returns the seq it already had.
    pub fn claim(&self, txn: &mut WriteTxn<'_>, hash: &Hash, seq: u64) -> Result<Option<u64>> {
        let had = txn.get_or_put(self.0, hash.as_bytes(), &seq_key(seq), decode_seq)?;
        let had = had.transpose();
        txn.check(had)
    }

    /// Every entry, in hash order: `(hash, seq)`, or the raw sizes when malformed.
    pub fn entries<'t>(&self, txn: ReadTxn<'t>) -> Result<impl Iterator<Item = IndexEntry> + 't> {
        Ok(txn.iter(self.0)?.map(|item| {
            item.map(|(k, v)| match (Hash::from_slice(k), decode_seq(v)) {
                (Ok(h), Ok(s)) => Ok((h, s)),
                _ => Err((k.len(), v.len())),
            })
        }))
    }

    pub fn len(&self, txn: ReadTxn<'_>) -> Result<u64> {
        txn.len(self.0)
    }

    /// The first stored hash that starts with `prefix`.
    pub fn first_with_prefix(&self, txn: ReadTxn<'_>, prefix: &[u8]) -> Result<Option<Hash>> {
        match txn
            .range(self.0, Bound::Included(prefix), Bound::Unbounded)?
            .next()
        {
            Some(item) => {
                let (k, _) = item?;
                if k.starts_with(prefix) {
                    decode_hash(k).map(Some)
                } else {
                    Ok(None)
                }
            }
            None => Ok(None),
        }
    }
}

/// `heads-v1`: hash -> empty. The stored nodes no stored node links to.
#[derive(Clone, Copy)]
pub(crate) struct Heads(pub Table);

impl Heads {
    /// Up to `limit` heads, in hash order.
    pub fn list(&self, txn: ReadTxn<'_>, limit: usize) -> Result<Vec<Hash>> {
        let mut out = Vec::new();
        for item in txn.iter(self.0)?.take(limit) {
            out.push(decode_hash(item?.0)?);
        }
        Ok(out)
    }

    /// Every listed key as raw bytes (for `verify`, which reports malformed ones).
    pub fn raw_keys<'t>(
        &self,
        txn: ReadTxn<'t>,
    ) -> Result<impl Iterator<Item = Result<&'t [u8]>> + 't> {
        Ok(txn.iter(self.0)?.map(|i| i.map(|(k, _)| k)))
    }

    pub fn add(&self, txn: &mut WriteTxn<'_>, hash: &Hash) -> Result<()> {
        txn.put(self.0, hash.as_bytes(), &[])
    }

    /// Removes `hash`; whether it was a head.
    pub fn remove(&self, txn: &mut WriteTxn<'_>, hash: &Hash) -> Result<bool> {
        txn.delete(self.0, hash.as_bytes())
    }
}

/// `meta-v1`: named values (format, identity, view watermarks, per-peer state).
#[derive(Clone, Copy)]
pub(crate) struct Meta(pub Table);

impl Meta {
    pub fn format(&self, txn: ReadTxn<'_>) -> Result<Option<u32>> {
        Ok(txn
            .get(self.0, meta::FORMAT.as_bytes())?
            .map(|v| v.try_into().map(u32::from_be_bytes).unwrap_or(u32::MAX)))
    }

    pub fn set_format(&self, txn: &mut WriteTxn<'_>, version: u32) -> Result<()> {
        txn.put(self.0, meta::FORMAT.as_bytes(), &version.to_be_bytes())
    }

    /// The peer id and the file identity it is bound to.
    pub fn peer_id(&self, txn: ReadTxn<'_>) -> Result<Option<(PeerId, Vec<u8>)>> {
        let id = txn.get(self.0, meta::PEER_ID.as_bytes())?;
        let file = txn.get(self.0, meta::PEER_ID_FILE.as_bytes())?;
        match (id, file) {
            (Some(id), Some(file)) => {
                let arr: [u8; 16] = id
                    .try_into()
                    .map_err(|_| StorageError::Corrupt(format!("peer id of {} bytes", id.len())))?;
                Ok(Some((PeerId(arr), file.to_vec())))
            }
            _ => Ok(None),
        }
    }

    pub fn set_peer_id(&self, txn: &mut WriteTxn<'_>, id: PeerId, file: &[u8]) -> Result<()> {
        txn.put(self.0, meta::PEER_ID.as_bytes(), &id.0)?;
        txn.put(self.0, meta::PEER_ID_FILE.as_bytes(), file)
    }

    /// Forgets every per-peer record.
    pub fn clear_peers(&self, txn: &mut WriteTxn<'_>) -> Result<()> {
        let keys: Vec<Vec<u8>> = txn
            .read()
            .prefix(self.0, meta::PEER_PREFIX.as_bytes())?
            .map(|r| r.map(|(k, _)| k.to_vec()))
            .collect::<Result<_>>()?;
        for k in keys {
            txn.delete(self.0, &k)?;
        }
        Ok(())
    }

    /// Forgets everything but the format version and the peer id (see
    /// `Store::clear_for_reuse`).
    #[cfg(feature = "sim")]
    pub fn clear_for_reuse(&self, txn: &mut WriteTxn<'_>) -> Result<()> {
        let keep = [meta::FORMAT, meta::PEER_ID, meta::PEER_ID_FILE];
        let keys: Vec<Vec<u8>> = txn
            .read()
            .iter(self.0)?
            .map(|r| r.map(|(k, _)| k.to_vec()))
            .filter(|k| {
                !k.as_ref()
                    .is_ok_and(|k| keep.iter().any(|m| m.as_bytes() == &k[..]))
            })
            .collect::<Result<_>>()?;
        for k in keys {
            txn.delete(self.0, &k)?;
        }
        Ok(())
    }

    fn cursor_key(peer: PeerId) -> String {
        format!("{}{peer}/acked", meta::PEER_PREFIX)
    }

    /// `peer/<hex id>/acked`: what this replica remembers of a peer for sync (the sync
    /// layer's cursor: `seq u64 BE ++ heads (32 bytes each)`, decoded there).
    pub fn peer_record(&self, txn: ReadTxn<'_>, peer: PeerId) -> Result<Option<Vec<u8>>> {
        Ok(txn
            .get(self.0, Self::cursor_key(peer).as_bytes())?
            .map(<[u8]>::to_vec))
    }

    pub fn set_peer_record(
        &self,
        txn: &mut WriteTxn<'_>,
        peer: PeerId,
        value: &[u8],
    ) -> Result<()> {
        txn.put(self.0, Self::cursor_key(peer).as_bytes(), value)
    }

    fn policy_key(seq: u64) -> String {
        format!("{}{seq:016x}", meta::POLICY_PREFIX)
    }

    /// The policy history, oldest first: `(seq, encoded policy)`.
    pub fn policies<'t>(&self, txn: ReadTxn<'t>) -> Result<Vec<(u64, &'t [u8])>> {
        let mut out = Vec::new();
        for item in txn.prefix(self.0, meta::POLICY_PREFIX.as_bytes())? {
            let (k, v) = item?;
            let seq = std::str::from_utf8(&k[meta::POLICY_PREFIX.len()..])
                .ok()
                .filter(|s| s.len() == 16)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| StorageError::Corrupt(format!("policy history key {k:02x?}")))?;
            out.push((seq, v));
        }
        Ok(out)
    }

    /// The newest policy entry, if any: the policy in force.
    pub fn last_policy<'t>(&self, txn: ReadTxn<'t>) -> Result<Option<&'t [u8]>> {
        let start = meta::POLICY_PREFIX.as_bytes();
        // Keys of the history sort after the prefix and before "policy0" ('/' + 1 = '0').
        let end = b"policy0";
        let mut last = txn.rev_range(
            self.0,
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(&end[..]),
        )?;
        Ok(last.next().transpose()?.map(|(_, v)| v))
    }

    pub fn set_policy(&self, txn: &mut WriteTxn<'_>, seq: u64, value: &[u8]) -> Result<()> {
        txn.put(self.0, Self::policy_key(seq).as_bytes(), value)
    }

    fn watermark_key(view: &str) -> Vec<u8> {
        format!("{}{view}", meta::VIEW_PREFIX).into_bytes()
    }

    /// `view/<name>`: `version u32 BE ++ seq u64 BE`, the view's layout version and the last
    /// seq it applied. `None` when absent or malformed (the view is then rebuilt).
    pub fn watermark(&self, txn: ReadTxn<'_>, view: &str) -> Result<Option<(u32, u64)>> {
        let Some(b) = txn.get(self.0, &Self::watermark_key(view))? else {
            return Ok(None);
        };
        let v = b
            .get(..4)
            .and_then(|v| v.try_into().ok())
            .map(u32::from_be_bytes);
        let s = b
            .get(4..12)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_be_bytes);
        Ok(v.zip(s))
    }

    pub fn set_watermark(
        &self,
        txn: &mut WriteTxn<'_>,
        view: &str,
        version: u32,
        seq: u64,
    ) -> Result<()> {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&version.to_be_bytes());
        out[4..].copy_from_slice(&seq.to_be_bytes());
        txn.put(self.0, &Self::watermark_key(view), &out)
    }
}

/// For tests that damage a store on purpose: raw access to the own tables.
#[cfg(test)]
pub(crate) mod raw {
    pub fn seq_key(seq: u64) -> [u8; 8] {
        super::seq_key(seq)
    }
}
