//! The receiving half of [`Session`]: checking, batching, holding nodes whose links have not
//! come, and asking for what is missing.
//!
//! Nodes whose links have not arrived wait in `pending`, counted per missing link
//! (`waiters`: link -> nodes waiting for it). When a node is admitted, the nodes waiting for
//! it are released at once (Kahn's algorithm), so any arrival order, child-first included,
//! costs one pass and one commit per batch. Links that are neither in the batch, the last
//! committed batch nor pending are looked up in the store in bulk (one read per
//! [`PROBE_BATCH`] new links, or per as many nodes held), not one read per node.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Session, SessionStats, State};
use crate::hash::Hash;
use crate::log::Inserted;
use crate::node::Node;
use crate::sync::error::SyncError;
use crate::sync::store::SyncStore;
use crate::sync::wire::delta::Prev;
use crate::sync::wire::message::{Message, MAX_WANT};

/// New unknown links (or nodes held since the last lookup) that trigger one bulk lookup.
const PROBE_BATCH: usize = 1024;

/// Where the receiving half is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecvState {
    /// This side receives nothing in this session.
    Off,
    /// Taking the peer's catch-up stream (and answers to `Want`s).
    Stream,
    /// Has every node the peer had at the start (or the peer sends none).
    Caught,
}

/// A received node whose links have not all arrived.
struct Waiting {
    node: Node,
    missing: usize,
}

pub(super) struct RecvHalf {
    state: RecvState,
    /// `EndStream`s still to come: the catch-up stream and one per `Want` sent.
    owed: u32,
    /// `Want` rounds asked for missing nodes (the floor check is not counted).
    rounds: u32,
    /// Everything asked for so far: asked again means the peer does not have it.
    asked: HashSet<Hash>,
    batch: Vec<Node>,
    batch_set: HashSet<Hash>,
    /// The hashes of the last committed batch: stored, no lookup needed.
    recent: HashSet<Hash>,
    batch_bytes: usize,
    /// Links first waited for since the last lookup.
    to_probe: Vec<Hash>,
    /// Nodes held since the last lookup.
    held_since_probe: usize,
    pending: HashMap<Hash, Waiting>,
    waiters: HashMap<Hash, Vec<Hash>>,
    pending_bytes: usize,
    /// The node of the last `Node` or `NodeDelta` frame: what the next delta refers to.
    prev: Prev,
}

impl RecvHalf {
    /// A half that receives nothing in this session.
    pub fn off() -> RecvHalf {
        RecvHalf::new(RecvState::Off, 0)
    }

    /// A half that has every node the peer had at the start.
    pub fn caught() -> RecvHalf {
        RecvHalf::new(RecvState::Caught, 0)
    }

    /// A half that takes the peer's catch-up stream (one `EndStream` owed).
    pub fn streaming() -> RecvHalf {
        RecvHalf::new(RecvState::Stream, 1)
    }

    fn new(state: RecvState, owed: u32) -> RecvHalf {
        RecvHalf {
            state,
            owed,
            rounds: 0,
            asked: HashSet::new(),
            batch: Vec::new(),
            batch_set: HashSet::new(),
            recent: HashSet::new(),
            batch_bytes: 0,
            to_probe: Vec::new(),
            held_since_probe: 0,
            pending: HashMap::new(),
            waiters: HashMap::new(),
            pending_bytes: 0,
            prev: Prev::default(),
        }
    }

    /// Nodes are legal during the catch-up stream (after the peer's `Summary`, which always
    /// precedes it) and in a live session that receives.
    pub fn accepts_nodes(&self, live: bool, summarised: bool) -> bool {
        match self.state {
            RecvState::Stream => summarised,
            RecvState::Caught => live,
            RecvState::Off => false,
        }
    }

    /// What the next `NodeDelta` refers to.
    pub fn prev(&self) -> &Prev {
        &self.prev
    }

    /// Whether the peer's catch-up stream is still coming.
    pub fn is_streaming(&self) -> bool {
        self.state == RecvState::Stream
    }

    pub fn owes_end_stream(&self) -> bool {
        self.owed > 0
    }

    pub fn caught_up(&self) -> bool {
        matches!(self.state, RecvState::Off | RecvState::Caught) && self.owed == 0
    }

    pub fn buffered_bytes(&self) -> usize {
        self.batch_bytes + self.pending_bytes + self.waiters.len() * 64 + self.asked.len() * 32
    }

    /// Queues a `Want` for `hashes` (at most [`MAX_WANT`]).
    pub fn ask(
        &mut self,
        mut hashes: Vec<Hash>,
        out: &mut VecDeque<Message>,
        stats: &mut SessionStats,
        round: bool,
    ) {
        hashes.truncate(MAX_WANT);
        if round {
            self.rounds += 1;
        }
        self.owed += 1;
        stats.round_trips += 1;
        self.asked.extend(hashes.iter().copied());
        out.push_back(Message::Want(hashes));
    }

    /// Moves `node` (all links stored or in the batch) into the batch, then every pending
    /// node that was waiting only for it, transitively.
    fn admit(&mut self, node: Node) {
        let mut ready = vec![node];
        while let Some(n) = ready.pop() {
            let h = n.hash();
            self.release(&h, &mut ready);
            self.batch_bytes += n.encoded_len();
            self.batch_set.insert(h);
            self.batch.push(n);
        }
    }

    /// `link` is now available: nodes that waited for nothing else become ready.
    fn release(&mut self, link: &Hash, ready: &mut Vec<Node>) {
        for w in self.waiters.remove(link).unwrap_or_default() {
            let Some(p) = self.pending.get_mut(&w) else {
                continue;
            };
            p.missing -= 1;
            if p.missing == 0 {
                let p = self.pending.remove(&w).expect("present");
                self.pending_bytes -= p.node.encoded_len();
                ready.push(p.node);
            }
        }
    }

    /// Links waited for that are neither pending nor stored: what the peer still owes.
    /// Links stored meanwhile (by another session, or locally) release their waiters.
    fn settle<St: SyncStore>(
        &mut self,
        store: &St,
    ) -> Result<Vec<(Hash, Hash)>, SyncError<St::Error>> {
        self.to_probe.clear();
        self.held_since_probe = 0;
        let absent: Vec<Hash> = (self.waiters.keys())
            .filter(|l| !self.pending.contains_key(*l))
            .copied()
            .collect();
        let seqs = store.seqs_of(&absent)?;
        let mut missing = Vec::new();
        let mut ready = Vec::new();
        for (l, s) in absent.iter().zip(seqs) {
            if s.is_some() {
                self.release(l, &mut ready);
            } else if let Some(w) = self.waiters.get(l).and_then(|w| w.first()) {
                missing.push((*l, *w));
            }
        }
        for n in ready {
            self.admit(n);
        }
        Ok(missing)
    }

    /// Looks up the links first waited for since the last lookup, in one store call; those
    /// stored release their waiters.
    fn probe<St: SyncStore>(&mut self, store: &St) -> Result<(), SyncError<St::Error>> {
        let links = std::mem::take(&mut self.to_probe);
        self.held_since_probe = 0;
        let seqs = store.seqs_of(&links)?;
        let mut ready = Vec::new();
        for (l, s) in links.iter().zip(seqs) {
            if s.is_some() {
                self.release(l, &mut ready);
            }
        }
        for n in ready {
            self.admit(n);
        }
        Ok(())
    }
}

/// A hash still missing, with the node that waits for it (`None` for an announced head).
type Wait = (Hash, Option<Hash>);

impl<S: SyncStore> Session<S> {
    pub(super) fn on_node(&mut self, bytes: Vec<u8>) -> Result<(), SyncError<S::Error>> {
        let peer = self.peer();
        let node = Node::decode(&bytes)
            .map_err(|source| SyncError::<S::Error>::InvalidNode { peer, source })?;
        let hash = node.hash();
        let r = &mut self.state.exchange_mut().expect("checked by handle").recv;
        r.prev.note(hash, &bytes);
        if r.batch_set.contains(&hash) || r.pending.contains_key(&hash) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        // Whether the node itself is stored is not looked up here: `insert_batch` finds it
        // anyway (one index descent) and `commit` counts it as a duplicate. Links in the batch
        // or the last committed batch are known stored; in feed order that is every link but
        // a stream's first, so most nodes cost no store read at all. Other links are waited
        // for and looked up in bulk.
        let mut missing = 0;
        for l in node.links() {
            if r.batch_set.contains(l) || r.recent.contains(l) {
                continue;
            }
            missing += 1;
            let waiting = r.waiters.entry(*l).or_default();
            if waiting.is_empty() && !r.pending.contains_key(l) {
                r.to_probe.push(*l);
            }
            waiting.push(hash);
        }
        if missing == 0 {
            r.admit(node);
        } else {
            r.pending_bytes += bytes.len();
            r.pending.insert(hash, Waiting { node, missing });
            r.held_since_probe += 1;
            if r.pending.len() > self.limits.pending_nodes
                || r.pending_bytes > self.limits.pending_bytes
            {
                return Err(SyncError::TooManyPending {
                    peer,
                    nodes: r.pending.len(),
                    bytes: r.pending_bytes,
                });
            }
            let every = PROBE_BATCH.min(self.limits.pending_nodes / 2).max(1);
            if !r.to_probe.is_empty() && (r.to_probe.len() >= every || r.held_since_probe >= every)
            {
                r.probe(&self.store)?;
            }
        }
        if r.batch.len() >= self.limits.batch_nodes || r.batch_bytes >= self.limits.batch_bytes {
            self.commit()?;
        }
        Ok(())
    }

    /// Stores the checked batch in one transaction.
    pub(super) fn commit(&mut self) -> Result<(), SyncError<S::Error>> {
        let peer = self.peer();
        let Some(ex) = self.state.exchange_mut() else {
            return Ok(());
        };
        let (r, send, live) = (&mut ex.recv, &mut ex.send, ex.live);
        if r.batch.is_empty() {
            return Ok(());
        }
        // Signatures in batches on every core, then the policy in the write transaction; a
        // refusal names node and author and ends the session, storing nothing of the batch.
        crate::sync::refused::screen::<S::Error>(peer, &mut r.batch)?;
        let done = (self.store.insert_batch_from(&r.batch, peer))
            .map_err(|e| crate::sync::refused::refused(peer, e))?;
        for (n, res) in r.batch.iter().zip(done) {
            match res {
                Inserted::New(seq) => {
                    self.stats.nodes_received += 1;
                    self.stats.node_bytes_received += n.encoded_len() as u64;
                    send.note_from_peer(seq, live);
                }
                Inserted::Existing(_) => self.stats.duplicates += 1,
            }
        }
        r.batch.clear();
        r.recent = std::mem::take(&mut r.batch_set);
        r.batch_bytes = 0;
        Ok(())
    }

    /// Hashes still missing (with a node that waits for each, or `None` for an announced
    /// head), after admitting what links stored meanwhile released.
    fn missing(&mut self) -> Result<Vec<Wait>, SyncError<S::Error>> {
        let ex = self.state.exchange_mut().expect("after the handshake");
        let mut out: Vec<(Hash, Option<Hash>)> = (ex.recv.settle(&self.store)?.into_iter())
            .map(|(l, n)| (l, Some(n)))
            .collect();
        self.commit()?;
        let ex = self.state.exchange().expect("after the handshake");
        if ex.recv.state == RecvState::Stream {
            let heads = &ex.peer.heads;
            let seqs = self.store.seqs_of(heads)?;
            let r = &ex.recv;
            out.extend(
                (heads.iter().zip(seqs))
                    .filter(|(h, s)| s.is_none() && !r.pending.contains_key(*h))
                    .map(|(h, _)| (*h, None)),
            );
        }
        Ok(out)
    }

    fn recv(&mut self) -> &mut RecvHalf {
        &mut self.state.exchange_mut().expect("after the handshake").recv
    }

    pub(super) fn on_end_stream(&mut self) -> Result<(), SyncError<S::Error>> {
        self.recv().owed -= 1;
        self.commit()?;
        if self.recv().owed > 0 {
            return Ok(());
        }
        let missing = self.missing()?;
        let r = self.recv();
        if missing.is_empty() && r.pending.is_empty() {
            if r.state == RecvState::Stream {
                r.state = RecvState::Caught;
                self.out.push_back(Message::Done);
            }
            return self.maybe_finish();
        }
        let peer = self.peer();
        let fail = |(h, node): (Hash, Option<Hash>)| match node {
            Some(node) => SyncError::MissingLink {
                peer,
                node,
                link: h,
            },
            None => SyncError::MissingHead { peer, hash: h },
        };
        let r = &mut self.state.exchange_mut().expect("after the handshake").recv;
        if let Some(m) = missing.iter().find(|(h, _)| r.asked.contains(h)) {
            return Err(fail(*m));
        }
        if missing.is_empty() {
            // Pending nodes wait on other pending nodes only: impossible in a DAG.
            let p = r.pending.values().next().expect("pending");
            return Err(fail((p.node.links()[0], Some(p.node.hash()))));
        }
        if r.state == RecvState::Stream && r.rounds >= self.limits.want_rounds {
            return Err(fail(missing[0]));
        }
        let hashes = missing.into_iter().map(|(h, _)| h).collect();
        r.ask(hashes, &mut self.out, &mut self.stats, true);
        Ok(())
    }

    /// Commits what has been received and checked so far; in a live session also asks for
    /// links that have not come. Call it when no more input is immediately available.
    pub fn flush(&mut self) -> Result<(), SyncError<S::Error>> {
        self.commit()?;
        let State::Live(ex) = &self.state else {
            return Ok(());
        };
        if !ex.recv.pending.is_empty() && ex.recv.owed == 0 {
            let missing = self.missing()?;
            let peer = self.peer();
            let r = self.recv();
            if let Some((link, node)) = missing.iter().find(|(h, _)| r.asked.contains(h)) {
                return Err(SyncError::MissingLink {
                    peer,
                    node: node.unwrap_or(*link),
                    link: *link,
                });
            }
            if !missing.is_empty() {
                let hashes = missing.into_iter().map(|(h, _)| h).collect();
                let r = &mut self.state.exchange_mut().expect("live").recv;
                r.ask(hashes, &mut self.out, &mut self.stats, true);
            }
        }
        Ok(())
    }
}
