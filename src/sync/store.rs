//! The little a session needs from a replica, as a trait: [`crate::Log`] implements it over
//! LMDB, [`MemStore`] in memory (for deterministic tests and fuzzing).

use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use crate::hash::Hash;
use crate::identity::PeerId;
use crate::log::{Inserted, Log};
use crate::log::{LogError as Error, Result};
use crate::log::{RawEntry, Subscription};
use crate::node::Node;
use crate::sync::wire::message::{SamplePrefix, MAX_FLOOR_HEADS};

/// What a store's error must tell the session: whether the disk was full (the peer is told
/// so), and whether it is the store refusing a received node (the peer's fault, named with
/// the node and its author) rather than the store failing.
pub trait StoreError: std::error::Error + Send + Sync + 'static {
    /// The disk holding the store is full.
    fn is_disk_full(&self) -> bool {
        false
    }
    /// The store refused a received node (its policy, or a signature that is not its
    /// author's): the node, its author when signed, and why.
    fn refusal(&self) -> Option<Refusal> {
        None
    }
    /// The store handed the session bytes that are not what it promised (a feed entry that
    /// vanished, stored bytes that do not decode): an error of this type saying so.
    fn corrupt(detail: String) -> Self;
}

/// A received node the store refused; see [`StoreError::refusal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The node.
    pub node: Hash,
    /// Its author, when signed.
    pub author: Option<crate::identity::PublicKey>,
    /// Why.
    pub reason: String,
}

impl StoreError for Error {
    fn corrupt(detail: String) -> Self {
        crate::store::StorageError::Corrupt(detail).into()
    }
    fn is_disk_full(&self) -> bool {
        Error::is_disk_full(self)
    }
    fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Policy(p) => p.node().map(|node| Refusal {
                node,
                author: p.author(),
                reason: p.to_string(),
            }),
            Error::Node(crate::node::NodeError::BadSignature { node, author }) => Some(Refusal {
                node: *node,
                author: Some(*author),
                reason: "signature is not the author's".into(),
            }),
            _ => None,
        }
    }
}

/// What [`SyncStore::walk_back`] calls for each node: whether to go on into its links.
pub type Visit<'a, E> = dyn FnMut(u64, &Node) -> Result<bool, E> + 'a;

/// A replica as the sync state machine sees it. Every method is synchronous and short or
/// bounded (the driver calls them off the async executor).
pub trait SyncStore {
    /// What the store fails with.
    type Error: StoreError;
    /// This replica's id.
    fn peer_id(&self) -> PeerId;
    /// The heads (sorted) and the newest feed seq, read together: every node at or below that
    /// seq is reachable from those heads.
    fn snapshot(&self) -> Result<(Vec<Hash>, u64), Self::Error>;
    /// The newest feed seq (0 when empty).
    fn last_seq(&self) -> Result<u64, Self::Error>;
    /// The feed seq of each hash, `None` when not stored.
    fn seqs_of(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>, Self::Error>;
    /// For each prefix, a stored node whose hash starts with it.
    fn find_prefixes(&self, prefixes: &[SamplePrefix]) -> Result<Vec<Option<Hash>>, Self::Error>;
    /// The feed entry at `seq`.
    fn entry_at(&self, seq: u64) -> Result<Option<RawEntry>, Self::Error>;
    /// Up to `limit` feed entries with `after < seq <= upto`, in feed order.
    fn entries(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<RawEntry>, Self::Error>;
    /// Visits the nodes reachable from `starts` in strictly decreasing seq order, each once;
    /// `visit` says whether to go on into a node's links (see [`Log::walk_back`]).
    fn walk_back(
        &self,
        starts: &[Hash],
        visit: &mut Visit<'_, Self::Error>,
    ) -> Result<(), Self::Error>;
    /// Stores checked nodes in one transaction (links stored or earlier in the batch).
    fn insert_batch(&self, nodes: &[Node]) -> Result<Vec<Inserted>, Self::Error>;
    /// [`SyncStore::insert_batch`] for nodes received from `peer`, so that watchers can say
    /// where a change came from.
    fn insert_batch_from(
        &self,
        nodes: &[Node],
        peer: PeerId,
    ) -> Result<Vec<Inserted>, Self::Error> {
        let _ = peer;
        self.insert_batch(nodes)
    }
    /// What this replica remembers of `peer`: a seq of its own feed up to which the peer had
    /// every node, with heads that prove it (see [`Cursor`]). Stored as
    /// `peer/<hex id>/acked`: the seq as `u64` big-endian, then the heads, 32 bytes each.
    fn peer_cursor(&self, peer: PeerId) -> Result<Option<Cursor>, Self::Error>;
    /// Remembers (or, with `None`, forgets) [`SyncStore::peer_cursor`].
    fn set_peer_cursor(&self, peer: PeerId, cursor: Option<&Cursor>) -> Result<(), Self::Error>;
    /// The newest feed seq after each commit, for live sessions. `None` (the default): the
    /// driver of a live session only polls [`SyncStore::last_seq`] (once a second).
    fn subscribe(&self) -> Option<Subscription> {
        None
    }
}

/// A remembered floor: the peer had every node of this replica's feed with a seq at or below
/// `seq`, and `heads` are nodes whose closure is exactly those nodes. The floor is only used
/// once the peer confirms it still holds every one of `heads` (peer ids can be shared by
/// copied stores), so a wrong cursor costs at most one `Want` round, never a missed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The floor seq.
    pub seq: u64,
    /// At most [`crate::sync::wire::MAX_FLOOR_HEADS`] hashes whose closure is the feed up
    /// to `seq`.
    pub heads: Vec<Hash>,
}

impl Cursor {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.seq.to_be_bytes().to_vec();
        for h in &self.heads {
            v.extend_from_slice(h.as_bytes());
        }
        v
    }

    /// `None` for a value without heads (nothing to check it against, as written by protocol
    /// version 1) or of a wrong length.
    fn decode(v: &[u8]) -> Option<Cursor> {
        let (seq, rest) = v.split_first_chunk::<8>()?;
        if rest.is_empty() || rest.len() % 32 != 0 || rest.len() / 32 > MAX_FLOOR_HEADS {
            return None;
        }
        let heads = rest
            .chunks_exact(32)
            .map(|c| Hash(c.try_into().expect("32 bytes")))
            .collect();
        Some(Cursor {
            seq: u64::from_be_bytes(*seq),
            heads,
        })
    }
}

impl SyncStore for Log {
    type Error = crate::log::LogError;
    fn peer_id(&self) -> PeerId {
        Log::peer_id(self)
    }
    fn snapshot(&self) -> Result<(Vec<Hash>, u64)> {
        self.snapshot_heads()
    }
    fn last_seq(&self) -> Result<u64> {
        Log::last_seq(self)
    }
    fn seqs_of(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>> {
        Log::seqs_of(self, hashes)
    }
    fn find_prefixes(&self, prefixes: &[SamplePrefix]) -> Result<Vec<Option<Hash>>> {
        self.first_with_prefixes(prefixes)
    }
    fn entry_at(&self, seq: u64) -> Result<Option<RawEntry>> {
        self.raw_entry_at(seq)
    }
    fn entries(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<RawEntry>> {
        let mut out = Vec::new();
        for e in self.changes(after).raw().take(limit) {
            let e = e?;
            if e.seq > upto {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }
    fn walk_back(&self, starts: &[Hash], visit: &mut Visit<'_, Self::Error>) -> Result<()> {
        Log::walk_back(self, starts.iter().copied(), visit)
    }
    fn insert_batch(&self, nodes: &[Node]) -> Result<Vec<Inserted>> {
        Log::insert(self, nodes)
    }
    fn insert_batch_from(&self, nodes: &[Node], peer: PeerId) -> Result<Vec<Inserted>> {
        Log::insert_from(self, nodes, peer)
    }
    fn peer_cursor(&self, peer: PeerId) -> Result<Option<Cursor>> {
        Ok(self.peer_record(peer)?.and_then(|v| Cursor::decode(&v)))
    }
    fn subscribe(&self) -> Option<Subscription> {
        Some(Log::subscribe(self))
    }
    fn set_peer_cursor(&self, peer: PeerId, cursor: Option<&Cursor>) -> Result<()> {
        // Forgetting writes a value without heads, which reads back as no cursor.
        let v = cursor.map_or_else(|| 0u64.to_be_bytes().to_vec(), Cursor::encode);
        self.set_peer_record(peer, &v)
    }
}

/// An in-memory replica for tests and fuzzing: the same invariants as the LMDB store (the feed
/// is topological, heads are the nodes nothing links to), none of the durability. Clones share
/// the same data.
#[derive(Clone, Debug)]
pub struct MemStore {
    inner: Arc<Mutex<Mem>>,
}

#[derive(Debug, Default)]
struct Mem {
    peer: Option<PeerId>,
    feed: Vec<(Hash, Vec<u8>)>,
    index: HashMap<Hash, u64>,
    heads: BTreeSet<Hash>,
    cursors: HashMap<PeerId, Vec<u8>>,
}

impl MemStore {
    /// An empty replica with this id.
    pub fn new(peer: PeerId) -> MemStore {
        MemStore {
            inner: Arc::new(Mutex::new(Mem {
                peer: Some(peer),
                ..Mem::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a node with these links (each must be stored) and payload.
    pub fn add(&self, links: impl IntoIterator<Item = Hash>, payload: Vec<u8>) -> Result<Node> {
        let node = Node::new(links, payload)?;
        self.insert_batch(std::slice::from_ref(&node))?;
        Ok(node)
    }

    /// Adds a node linking to every current head.
    pub fn append(&self, payload: Vec<u8>) -> Result<Node> {
        let heads: Vec<Hash> = self.lock().heads.iter().copied().collect();
        self.add(heads, payload)
    }

    /// The heads, sorted.
    pub fn heads(&self) -> Vec<Hash> {
        self.lock().heads.iter().copied().collect()
    }

    /// Every stored hash.
    pub fn hashes(&self) -> BTreeSet<Hash> {
        self.lock().index.keys().copied().collect()
    }

    /// Number of stored nodes.
    pub fn len(&self) -> usize {
        self.lock().feed.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the invariants: every link stored earlier, heads exactly the unlinked nodes.
    pub fn check(&self) -> std::result::Result<(), String> {
        let m = self.lock();
        let mut linked = BTreeSet::new();
        for (i, (h, bytes)) in m.feed.iter().enumerate() {
            let n = Node::decode_expecting(bytes, *h).map_err(|e| e.to_string())?;
            for l in n.links() {
                match m.index.get(l) {
                    Some(&s) if s <= i as u64 => {}
                    _ => return Err(format!("{h} links to {l}, not stored before it")),
                }
                linked.insert(*l);
            }
        }
        let heads: BTreeSet<Hash> = m
            .index
            .keys()
            .filter(|h| !linked.contains(*h))
            .copied()
            .collect();
        if heads != m.heads {
            return Err("heads differ from the unlinked nodes".into());
        }
        Ok(())
    }
}

impl SyncStore for MemStore {
    type Error = crate::log::LogError;
    fn peer_id(&self) -> PeerId {
        self.lock().peer.expect("set at construction")
    }
    fn snapshot(&self) -> Result<(Vec<Hash>, u64)> {
        let m = self.lock();
        Ok((m.heads.iter().copied().collect(), m.feed.len() as u64))
    }
    fn last_seq(&self) -> Result<u64> {
        Ok(self.lock().feed.len() as u64)
    }
    fn seqs_of(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>> {
        let m = self.lock();
        Ok(hashes.iter().map(|h| m.index.get(h).copied()).collect())
    }
    fn find_prefixes(&self, prefixes: &[SamplePrefix]) -> Result<Vec<Option<Hash>>> {
        let m = self.lock();
        Ok(prefixes
            .iter()
            .map(|p| m.index.keys().find(|h| h.0.starts_with(p)).copied())
            .collect())
    }
    fn entry_at(&self, seq: u64) -> Result<Option<RawEntry>> {
        let m = self.lock();
        Ok(seq
            .checked_sub(1)
            .and_then(|i| m.feed.get(i as usize))
            .map(|(hash, bytes)| RawEntry {
                seq,
                hash: *hash,
                bytes: bytes.clone(),
            }))
    }
    fn entries(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<RawEntry>> {
        let m = self.lock();
        let end = upto.min(m.feed.len() as u64);
        Ok((after + 1..=end)
            .take(limit)
            .map(|seq| {
                let (hash, bytes) = &m.feed[(seq - 1) as usize];
                RawEntry {
                    seq,
                    hash: *hash,
                    bytes: bytes.clone(),
                }
            })
            .collect())
    }
    fn walk_back(&self, starts: &[Hash], visit: &mut Visit<'_, Self::Error>) -> Result<()> {
        let mut frontier: BinaryHeap<u64> = {
            let m = self.lock();
            starts
                .iter()
                .filter_map(|h| m.index.get(h).copied())
                .collect()
        };
        let mut last = None;
        while let Some(seq) = frontier.pop() {
            if last == Some(seq) {
                continue;
            }
            last = Some(seq);
            let node = {
                let m = self.lock();
                let (h, bytes) = &m.feed[(seq - 1) as usize];
                Node::decode_trusted(bytes, *h)?
            };
            if visit(seq, &node)? {
                let m = self.lock();
                for l in node.links() {
                    frontier.push(*m.index.get(l).ok_or(Error::MissingLink {
                        node: node.hash(),
                        link: *l,
                    })?);
                }
            }
        }
        Ok(())
    }
    fn insert_batch(&self, nodes: &[Node]) -> Result<Vec<Inserted>> {
        let mut m = self.lock();
        // All or none: check first against the store plus the batch.
        let mut seen: BTreeSet<Hash> = BTreeSet::new();
        for n in nodes {
            for l in n.links() {
                if !m.index.contains_key(l) && !seen.contains(l) {
                    return Err(Error::MissingLink {
                        node: n.hash(),
                        link: *l,
                    });
                }
            }
            seen.insert(n.hash());
        }
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            if let Some(&s) = m.index.get(&n.hash()) {
                out.push(Inserted::Existing(s));
                continue;
            }
            m.feed.push((n.hash(), n.encode()));
            let seq = m.feed.len() as u64;
            m.index.insert(n.hash(), seq);
            for l in n.links() {
                m.heads.remove(l);
            }
            m.heads.insert(n.hash());
            out.push(Inserted::New(seq));
        }
        Ok(out)
    }
    fn peer_cursor(&self, peer: PeerId) -> Result<Option<Cursor>> {
        Ok(self
            .lock()
            .cursors
            .get(&peer)
            .and_then(|v| Cursor::decode(v)))
    }
    fn set_peer_cursor(&self, peer: PeerId, cursor: Option<&Cursor>) -> Result<()> {
        let mut m = self.lock();
        match cursor {
            Some(c) => m.cursors.insert(peer, c.encode()),
            None => m.cursors.remove(&peer),
        };
        Ok(())
    }
}
