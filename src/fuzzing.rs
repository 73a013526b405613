//! Checks shared by the fuzz targets in `fuzz/` and the corpus replay in `tests/fuzz_corpus.rs`.
//!
//! Each check takes the raw fuzzer input and panics when braidlog disagrees with a model, so
//! libFuzzer and `cargo test` run exactly the same code. Not part of the stable API.
//!
//! Later targets (sync, kv) add their own functions here, each reading its input with
//! [`Input`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::error::Error;
use crate::hash::{Hash, HASH_LEN};
use crate::kv::Kv;
use crate::log::{Durability, Inserted, Log, LogOptions};
use crate::node::{Node, MAX_LINKS, NODE_FORMAT_VERSION};
use crate::peer::PeerId;
use crate::sync::codec::{encode, preamble, Decoder};
use crate::sync::{
    Limits, MemStore, Message, Mode, Phase, Session, SessionConfig, SyncError, SyncStore,
};

/// Fuzzer bytes read as a stream of small choices; reads past the end give zeros, so every
/// input is a valid program.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads choices from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 once exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` next bytes (fewer once exhausted).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// `node_decode`: decoding arbitrary bytes never panics, and whatever decodes is canonical:
/// it re-encodes to the same bytes and its id is the hash of those bytes.
pub fn check_node_decode(data: &[u8]) {
    if let Ok(node) = Node::decode(data) {
        assert_eq!(node.encode(), data, "accepted bytes are not canonical");
        assert_eq!(node.encoded_len(), data.len());
        assert_eq!(node.hash(), Hash::of(data));
        let again = Node::decode_expecting(data, node.hash()).expect("decodes twice");
        assert_eq!(again, node);
        // An unsigned node is rebuilt from its parts; a signed one cannot be (no key), and
        // checking its signature must not panic either.
        if node.author().is_none() {
            let rebuilt = Node::new(node.links().iter().copied(), node.payload().to_vec())
                .expect("a decoded node is within limits");
            assert_eq!(rebuilt, node);
        } else {
            let _ = node.verify_signature();
        }
    }
}

/// The reference the log is compared with: the node set and the heads.
#[derive(Default)]
struct Model {
    nodes: HashMap<Hash, Node>,
    order: Vec<Hash>,
    heads: BTreeSet<Hash>,
}

impl Model {
    fn add(&mut self, node: &Node) -> bool {
        if self.nodes.contains_key(&node.hash()) {
            return false;
        }
        for l in node.links() {
            self.heads.remove(l);
        }
        self.heads.insert(node.hash());
        self.order.push(node.hash());
        self.nodes.insert(node.hash(), node.clone());
        true
    }

    fn has_all_links(&self, node: &Node, earlier: &[Node]) -> bool {
        node.links()
            .iter()
            .all(|l| self.nodes.contains_key(l) || earlier.iter().any(|e| e.hash() == *l))
    }

    /// A link: an existing node most of the time, otherwise a hash nobody stored.
    fn pick_link(&self, input: &mut Input<'_>) -> Hash {
        let choice = input.u16() as usize;
        if self.order.is_empty() || choice % 16 == 15 {
            Hash::of(&choice.to_le_bytes())
        } else {
            self.order[choice % self.order.len()]
        }
    }
}

fn payload(input: &mut Input<'_>) -> Vec<u8> {
    let len = input.byte() as usize % 48;
    input.bytes(len).to_vec()
}

/// Bytes that are usually a node with existing links, sometimes with one byte changed.
fn node_bytes(model: &Model, input: &mut Input<'_>) -> Vec<u8> {
    let mut links: Vec<Hash> = (0..input.byte() % 4)
        .map(|_| model.pick_link(input))
        .collect();
    links.sort_unstable();
    links.dedup();
    let body = payload(input);
    let mut out = vec![NODE_FORMAT_VERSION, links.len() as u8];
    for l in &links {
        out.extend_from_slice(l.as_bytes());
    }
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    let mutate = input.byte();
    if mutate >= 0xc0 {
        let at = input.u16() as usize % (out.len() + 1);
        match mutate % 3 {
            0 if at < out.len() => out[at] ^= input.byte() | 1,
            1 => out.insert(at, input.byte()),
            _ if at < out.len() => {
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

/// `log_ops`: runs the operations encoded in `data` on a fresh log in `dir` (which must be
/// empty) and on an in-memory model; after every operation the outcomes must agree, and at
/// the end the log's node set, heads, feed order and `verify` must match the model.
pub fn check_log_ops(dir: &Path, data: &[u8]) {
    let mut input = Input::new(data);
    // A tiny first map (64 KiB) makes the map-full-then-grow path common.
    let options = LogOptions {
        map_size: if input.byte() & 1 == 0 {
            64 << 10
        } else {
            1 << 20
        },
        durability: Durability::NoSync,
    };
    let mut log = Log::open_with(dir, options.clone()).expect("open");
    // The model predicts ids: unsigned nodes (a signed node's id depends on the clock).
    log.set_identity(None);
    let mut model = Model::default();
    let mut ops = 0;
    while !input.is_empty() && ops < 64 {
        ops += 1;
        match input.byte() % 6 {
            0 => {
                let links: Vec<Hash> = (0..input.byte() % 4)
                    .map(|_| model.pick_link(&mut input))
                    .collect();
                let expected = Node::new(links.iter().copied(), payload(&mut input)).unwrap();
                let got = log.add(links, expected.payload().to_vec());
                if model.has_all_links(&expected, &[]) {
                    assert_eq!(got.expect("add with stored links"), expected);
                    model.add(&expected);
                } else {
                    assert!(matches!(got, Err(Error::MissingLink { .. })), "{got:?}");
                }
            }
            1 => {
                let body = payload(&mut input);
                let expected = Node::new(model.heads.iter().copied(), body.clone()).unwrap();
                assert_eq!(log.append(body).expect("append"), expected);
                model.add(&expected);
            }
            2 => {
                let bytes = node_bytes(&model, &mut input);
                let got = log.insert_bytes(&bytes);
                match Node::decode(&bytes) {
                    Err(e) => assert!(matches!(got, Err(Error::Node(ref g)) if *g == e), "{got:?}"),
                    Ok(n) if !model.has_all_links(&n, &[]) => {
                        assert!(matches!(got, Err(Error::MissingLink { .. })), "{got:?}")
                    }
                    Ok(n) => {
                        let known = model.nodes.contains_key(&n.hash());
                        match got.expect("insert of a valid node") {
                            Inserted::New(_) => assert!(!known && model.add(&n)),
                            Inserted::Existing(_) => assert!(known),
                        }
                    }
                }
            }
            3 => {
                let mut batch: Vec<Node> = Vec::new();
                let mut valid = true;
                for _ in 0..input.byte() % 6 {
                    let node = match input.byte() % 4 {
                        // An already stored node, or one repeated from this batch.
                        0 if !model.order.is_empty() => {
                            let h = model.order[input.u16() as usize % model.order.len()];
                            model.nodes[&h].clone()
                        }
                        1 if !batch.is_empty() => {
                            batch[input.byte() as usize % batch.len()].clone()
                        }
                        // A node linking to one earlier in the batch.
                        2 if !batch.is_empty() => {
                            let prev = batch[input.byte() as usize % batch.len()].hash();
                            Node::new([prev], payload(&mut input)).unwrap()
                        }
                        _ => Node::decode(&node_bytes(&model, &mut input))
                            .unwrap_or_else(|_| Node::new([], payload(&mut input)).unwrap()),
                    };
                    valid &= model.has_all_links(&node, &batch);
                    batch.push(node);
                }
                let before = log.last_seq().unwrap();
                let got = log.insert_batch(&batch);
                if valid {
                    let got = got.expect("batch with stored links");
                    assert_eq!(got.len(), batch.len());
                    for (node, outcome) in batch.iter().zip(got) {
                        let fresh = model.add(node);
                        assert_eq!(fresh, matches!(outcome, Inserted::New(_)), "{outcome:?}");
                    }
                } else {
                    assert!(matches!(got, Err(Error::MissingLink { .. })), "{got:?}");
                    assert_eq!(log.last_seq().unwrap(), before, "a failed batch wrote");
                }
            }
            4 => {
                if let Some(h) = model
                    .order
                    .get(input.u16() as usize % (model.order.len() + 1))
                {
                    assert_eq!(log.get(h).unwrap().as_ref(), Some(&model.nodes[h]));
                } else {
                    let absent = Hash([input.byte(); HASH_LEN]);
                    assert_eq!(log.get(&absent).unwrap(), model.nodes.get(&absent).cloned());
                }
            }
            _ => {
                drop(log);
                log = Log::open_with(dir, options.clone()).expect("reopen");
                log.set_identity(None);
            }
        }
    }
    check_against_model(&log, &model);
}

fn check_against_model(log: &Log, model: &Model) {
    let heads: Vec<Hash> = model.heads.iter().copied().collect();
    assert_eq!(log.heads().unwrap(), heads);
    assert_eq!(log.len().unwrap(), model.order.len() as u64);
    let feed: Vec<Hash> = log.changes(0).map(|e| e.unwrap().node.hash()).collect();
    assert_eq!(feed, model.order, "feed is not the arrival order");
    for (h, n) in &model.nodes {
        assert_eq!(log.get(h).unwrap().as_ref(), Some(n));
    }
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

// ---------------------------------------------------------------------------------------------
// Sync: frames from an arbitrary peer, and sessions between honest in-memory replicas.

/// `sync_frames`: arbitrary bytes, cut into input-chosen slices, through the codec's
/// [`Decoder`] and every decoded message into a [`Session`] over a [`MemStore`] holding a few
/// nodes. Nothing may panic (every failure is a typed [`SyncError`]), and afterwards the store
/// still passes [`MemStore::check`] and holds every node it had.
///
/// Input: a header byte (node count, mode, live, whether the preamble is supplied), a byte
/// seeding the slice sizes, then the stream itself.
pub fn check_sync_frames(data: &[u8]) {
    let mut input = Input::new(data);
    let header = input.byte();
    let seed = input.byte();
    let stream = input.bytes(data.len());

    let (store, cfg) = sync_frames_side(header);
    let before = store.hashes();
    let mut session = Session::new(store.clone(), cfg).expect("session on a memory store");
    let mut decoder = Decoder::new();
    if header & 0x40 == 0 {
        decoder.push(&preamble());
    }
    // Slice sizes from a little LCG, so that the stream bytes stay contiguous for the fuzzer.
    let mut state = u32::from(seed) | 1;
    let mut pos = 0;
    let outcome = 'feed: loop {
        if pos >= stream.len() {
            break Ok(());
        }
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % 48).min(stream.len() - pos);
        decoder.push(&stream[pos..pos + n]);
        pos += n;
        loop {
            let msg = match decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => break 'feed Err(e),
            };
            if let Err(e) = session.handle(msg) {
                break 'feed Err(e);
            }
            // What the session answers is produced (and dropped): it reads the store.
            for _ in 0..10_000 {
                match session.poll_transmit() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => break 'feed Err(e),
                }
            }
        }
        if session.phase() == Phase::Live {
            if let Err(e) = session.flush() {
                break 'feed Err(e);
            }
        }
    };
    match outcome {
        Ok(()) => {
            let _ = session.on_eof();
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            session.salvage();
        }
    }
    store.check().expect("store valid after arbitrary frames");
    let after = store.hashes();
    assert!(before.is_subset(&after), "a stored node was lost");
}

/// The store and settings of the `sync_frames` session for this header byte.
fn sync_frames_side(header: u8) -> (MemStore, SessionConfig) {
    let store = MemStore::new(PeerId([1; 16]));
    let mut first = None;
    for i in 0..header % 8 {
        let node = match (i % 3, first) {
            (2, Some(root)) => store.add([root], vec![b'f', i]),
            _ => store.append(vec![b'n', i]),
        }
        .expect("a local write");
        first.get_or_insert(node.hash());
    }
    let cfg = SessionConfig {
        mode: [Mode::Push, Mode::Pull, Mode::Both][(header as usize >> 3) % 3],
        live: header & 0x20 != 0,
        filter_key: [7; 32],
    };
    (store, cfg)
}

/// A `sync_frames` seed: what an honest `peer` (in `peer_cfg`) sends in a whole conversation
/// with the target's session for `header`, after the two header bytes. With `close`, a live
/// peer ends with `Close`.
pub fn record_sync_frames(
    header: u8,
    seed: u8,
    peer: &MemStore,
    peer_cfg: SessionConfig,
    close: bool,
) -> Vec<u8> {
    let (store, cfg) = sync_frames_side(header);
    let mut mine = Session::new(store, cfg).expect("memory store");
    let mut theirs = Session::new(peer.clone(), peer_cfg).expect("memory store");
    let mut out = vec![header, seed];
    if header & 0x40 != 0 {
        out.extend_from_slice(&preamble());
    }
    for _ in 0..10_000 {
        let mut moved = false;
        while let Ok(Some(m)) = theirs.poll_transmit() {
            encode(&m, &mut out);
            if mine.handle(m).is_err() {
                return out;
            }
            moved = true;
        }
        while let Ok(Some(m)) = mine.poll_transmit() {
            if theirs.handle(m).is_err() {
                return out;
            }
            moved = true;
        }
        if !moved {
            if close && theirs.phase() == Phase::Live {
                theirs.close().expect("memory store");
                continue;
            }
            break;
        }
    }
    out
}

/// How one driven session ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Both sides finished and every byte was delivered.
    Complete,
    /// The connection was cut; both sides saw end of stream.
    Cut,
}

/// Local writes a driven session may make on side `i` (returning the store's new last seq).
type LocalWrite<'w> = &'w mut dyn FnMut(usize, &mut Input<'_>) -> Option<u64>;

/// Scheduled steps per session before the rest is delivered deterministically.
const SCHEDULED_STEPS: usize = 400;

/// Runs one session between `stores[0]` and `stores[1]` through the real codec, with the
/// schedule read from `input`: which side runs, how many messages it produces, how many bytes
/// of the in-flight buffer the other side receives, local writes, closing a live side (or, when
/// it is not live, ending the schedule), and an optional cut after `cut` delivered bytes. Once the input or the step budget is exhausted
/// every side transmits and receives everything; live sides are closed when nothing moves.
/// An error is returned as it happened (both sides then stop, as over a dropped connection).
fn drive<S: SyncStore + Clone>(
    stores: [&S; 2],
    cfgs: [SessionConfig; 2],
    cut: Option<usize>,
    input: &mut Input<'_>,
    mut write: Option<LocalWrite<'_>>,
) -> Result<Ended, SyncError> {
    let [c0, c1] = cfgs;
    // Small bounds from the input, so that the few nodes of an input reach them: heads over
    // several `Heads` messages, Bloom filters over only the newest nodes, few Want answers.
    let tight = input.byte();
    let limits = Limits {
        heads_per_message: 1 + usize::from(tight & 3),
        filter_walk: if tight & 4 != 0 {
            1 + usize::from(tight >> 5)
        } else {
            1 << 16
        },
        ..Limits::default()
    };
    // A side that sends each run of nodes it produces child-first (link after node), as
    // some implementations do.
    let reversed = [tight & 8 != 0, tight & 16 != 0];
    let mut sides = [
        Session::with_limits(stores[0].clone(), c0, limits.clone())?,
        Session::with_limits(stores[1].clone(), c1, limits)?,
    ];
    for (side, &r) in sides.iter_mut().zip(&reversed) {
        side.set_node_deltas(!r);
    }
    let mut decoders = [Decoder::new(), Decoder::new()];
    // wires[i]: bytes side i sent that the other side has not received yet.
    let mut wires = [preamble().to_vec(), preamble().to_vec()];
    let mut delivered = 0usize;
    let mut writes = 0;

    // Delivers up to `n` bytes of the other side's wire to side `i`; `Ok(false)` on the cut.
    let deliver = |sides: &mut [Session<S>; 2],
                   decoders: &mut [Decoder; 2],
                   wires: &mut [Vec<u8>; 2],
                   delivered: &mut usize,
                   i: usize,
                   n: usize|
     -> Result<bool, (usize, SyncError)> {
        let mut n = n.min(wires[1 - i].len());
        let mut cut_now = false;
        if let Some(c) = cut {
            if *delivered + n >= c {
                n = c - *delivered;
                cut_now = true;
            }
        }
        decoders[i].push(&wires[1 - i][..n]);
        wires[1 - i].drain(..n);
        *delivered += n;
        let s = &mut sides[i];
        while let Some(m) = decoders[i].next_message().map_err(|e| (i, e))? {
            s.handle(m).map_err(|e| (i, e))?;
        }
        if s.phase() == Phase::Live {
            s.flush().map_err(|e| (i, e))?;
        }
        Ok(!cut_now)
    };
    let transmit = |sides: &mut [Session<S>; 2],
                    wires: &mut [Vec<u8>; 2],
                    i: usize,
                    max: usize|
     -> Result<usize, (usize, SyncError)> {
        let mut n = 0;
        let mut nodes = Vec::new();
        while n < max {
            match sides[i].poll_transmit().map_err(|e| (i, e))? {
                Some(m @ Message::Node(_)) if reversed[i] => nodes.push(m),
                Some(m) => {
                    for node in nodes.drain(..).rev() {
                        encode(&node, &mut wires[i]);
                    }
                    encode(&m, &mut wires[i]);
                }
                None => break,
            }
            n += 1;
        }
        for node in nodes.drain(..).rev() {
            encode(&node, &mut wires[i]);
        }
        Ok(n)
    };

    let result = (|| -> Result<bool, (usize, SyncError)> {
        let mut idle_rounds = 0;
        let mut draining = false;
        for step in 0.. {
            if sides.iter().all(Session::is_finished) && wires.iter().all(Vec::is_empty) {
                return Ok(true);
            }
            if step < SCHEDULED_STEPS && !input.is_empty() && !draining {
                let choice = input.byte();
                let i = usize::from(choice & 1);
                match (choice >> 1) % 8 {
                    0..=2 => {
                        transmit(&mut sides, &mut wires, i, 1 + usize::from(choice >> 5))?;
                    }
                    3..=5 => {
                        let n = match input.byte() {
                            255 => usize::MAX,
                            b => 1 + usize::from(b) * 3,
                        };
                        if !deliver(&mut sides, &mut decoders, &mut wires, &mut delivered, i, n)? {
                            return Ok(false);
                        }
                    }
                    6 => {
                        if let Some(w) = write.as_mut() {
                            if writes < 8 {
                                writes += 1;
                                if let Some(seq) = w(i, input) {
                                    sides[i].local_changed(seq);
                                }
                            }
                        }
                    }
                    // Close a live side, or else end the schedule: deliver everything now.
                    _ if sides[i].phase() == Phase::Live => {
                        sides[i].close().map_err(|e| (i, e))?;
                    }
                    _ => draining = true,
                }
                continue;
            }
            // Deterministic end: everything moves both ways until nothing does.
            let mut moved = 0;
            for i in 0..2 {
                moved += transmit(&mut sides, &mut wires, i, usize::MAX)?;
                let n = wires[1 - i].len();
                moved += n;
                if !deliver(&mut sides, &mut decoders, &mut wires, &mut delivered, i, n)? {
                    return Ok(false);
                }
            }
            if moved == 0 {
                if let Some(i) = (0..2).find(|&i| sides[i].phase() == Phase::Live) {
                    sides[i].close().map_err(|e| (i, e))?;
                } else {
                    idle_rounds += 1;
                    assert!(
                        idle_rounds < 3,
                        "sync made no progress: phases {:?} {:?}",
                        sides[0].phase(),
                        sides[1].phase()
                    );
                }
            }
        }
        unreachable!()
    })();
    match result {
        Ok(true) => Ok(Ended::Complete),
        Ok(false) => {
            // The connection dropped: each side sees end of stream and keeps what it checked.
            for s in &mut sides {
                if s.on_eof().is_err() {
                    s.salvage();
                }
            }
            Ok(Ended::Cut)
        }
        Err((i, e)) => {
            sides[i].salvage();
            let _ = sides[1 - i].on_eof();
            sides[1 - i].salvage();
            Err(e)
        }
    }
}

const MODES: [Mode; 3] = [Mode::Push, Mode::Pull, Mode::Both];

fn sends(m: Mode) -> bool {
    m != Mode::Pull
}

fn receives(m: Mode) -> bool {
    m != Mode::Push
}

/// Whether nodes can flow at all between sides in these modes (else both sides refuse).
fn moves(modes: [Mode; 2]) -> bool {
    (sends(modes[0]) && receives(modes[1])) || (sends(modes[1]) && receives(modes[0]))
}

/// Most nodes the replicas of one `sync_pair` input hold together (local writes included).
const PAIR_MAX_NODES: usize = 48;

/// A local write on a memory replica: an append (merging every head), a fork off chosen stored
/// nodes, or the first node of another replica's feed that this one lacks and can store (as a
/// concurrent session with that replica would deliver it). `None` when the node budget is
/// spent.
fn mem_write(
    store: &MemStore,
    others: &[&MemStore],
    made: &mut usize,
    input: &mut Input<'_>,
) -> Option<u64> {
    if *made >= PAIR_MAX_NODES {
        return None;
    }
    *made += 1;
    let kind = input.byte();
    let payload = vec![kind & 0x0f];
    let hashes: Vec<Hash> = store.hashes().into_iter().collect();
    let imported = match others.get(usize::from(kind >> 6) % others.len().max(1)) {
        Some(other) if kind & 0x30 == 0x20 => {
            let have = store.hashes();
            other
                .entries(0, u64::MAX, usize::MAX)
                .expect("memory store")
                .into_iter()
                .map(|e| Node::decode(&e.bytes).expect("stored nodes decode"))
                .find(|n| !have.contains(&n.hash()) && n.links().iter().all(|l| have.contains(l)))
        }
        _ => None,
    };
    let node = if let Some(node) = imported {
        store
            .insert_batch(std::slice::from_ref(&node))
            .map(|_| node)
    } else if kind & 0x30 == 0x30 {
        // An independent root: many of them make head sets far above a `Hello`'s share.
        store.add([], vec![kind, *made as u8])
    } else if kind & 0x30 == 0x10 && !hashes.is_empty() {
        let links = (0..1 + (kind >> 6))
            .map(|_| hashes[input.byte() as usize % hashes.len()])
            .collect::<Vec<_>>();
        store.add(links, payload)
    } else {
        store.append(payload)
    };
    node.expect("a local write with stored links");
    Some(store.last_seq().expect("memory store"))
}

/// `sync_pair`: two or three [`MemStore`] replicas get nodes from the input (appends, forks,
/// merges) and run sessions with each other in input-chosen modes (Push, Pull, Both; live or
/// not) under an input-chosen schedule (see `drive`), with local writes during sessions and
/// sometimes a connection cut at an input-chosen byte.
///
/// Checked: sessions between honest replicas never fail; every session (cut or not) leaves
/// both stores valid and keeps every node they had before it; a complete session gives each
/// receiving side every node the sending side had when it began. At the end, complete two-way
/// syncs (0-1, then 1-2 and 0-1 with three replicas) leave each pair, and then all replicas,
/// with identical node sets and heads.
pub fn check_sync_pair(data: &[u8]) {
    let mut input = Input::new(data);
    let n = 2 + usize::from(input.byte() & 1);
    let stores: Vec<MemStore> = (0..n)
        .map(|i| MemStore::new(PeerId([i as u8 + 1; 16])))
        .collect();
    let mut made = 0;
    for _ in 0..32 {
        if input.is_empty() {
            break;
        }
        let b = input.byte();
        let x = usize::from(b >> 2) % n;
        if b & 3 != 3 {
            let others: Vec<&MemStore> = (0..n).filter(|&o| o != x).map(|o| &stores[o]).collect();
            mem_write(&stores[x], &others, &mut made, &mut input);
            continue;
        }
        let y = (x + 1 + usize::from(b >> 5) % (n - 1)) % n;
        let m = input.byte();
        let modes = [MODES[usize::from(m) % 3], MODES[usize::from(m >> 2) % 3]];
        let cut = (m & 0x40 != 0).then(|| usize::from(input.u16()) % 2048);
        let cfgs = [0, 1].map(|i| SessionConfig {
            mode: modes[i],
            live: m & (0x10 << i) != 0,
            filter_key: [input.byte(); 32],
        });
        let pair = [&stores[x], &stores[y]];
        let before = pair.map(MemStore::hashes);
        // A replica outside the session: writes may import from it, as a concurrent session
        // would.
        let third: Vec<&MemStore> = (0..n)
            .filter(|&o| o != x && o != y)
            .map(|o| &stores[o])
            .collect();
        let mut write =
            |i: usize, input: &mut Input<'_>| mem_write(pair[i], &third, &mut made, input);
        let ended = match drive(pair, cfgs, cut, &mut input, Some(&mut write)) {
            Err(SyncError::ModeMismatch { .. }) if !moves(modes) => Ended::Cut,
            Err(e) => panic!("honest session {x}-{y} ({modes:?}) failed: {e}"),
            // Cut before the Hellos crossed: nothing was decided.
            Ok(Ended::Complete) if !moves(modes) => {
                panic!("modes {modes:?} that move nothing succeeded")
            }
            Ok(ended) => ended,
        };
        for (i, s) in pair.iter().enumerate() {
            s.check().expect("store valid after a session");
            assert!(before[i].is_subset(&s.hashes()), "a session lost nodes");
        }
        if ended == Ended::Complete {
            for i in 0..2 {
                if sends(modes[i]) && receives(modes[1 - i]) {
                    assert!(
                        before[i].is_subset(&pair[1 - i].hashes()),
                        "complete session {x}-{y} ({modes:?}): side {} lacks nodes of side {i}",
                        1 - i
                    );
                }
            }
        }
    }
    let finals: &[(usize, usize)] = if n == 2 {
        &[(0, 1)]
    } else {
        &[(0, 1), (1, 2), (0, 1)]
    };
    for &(x, y) in finals {
        let cfgs = [0, 1].map(|i| SessionConfig {
            mode: Mode::Both,
            live: false,
            filter_key: [i as u8 + 0x51; 32],
        });
        let ended = drive([&stores[x], &stores[y]], cfgs, None, &mut input, None)
            .unwrap_or_else(|e| panic!("final sync {x}-{y} failed: {e}"));
        assert_eq!(ended, Ended::Complete);
        assert_eq!(stores[x].hashes(), stores[y].hashes(), "final sync {x}-{y}");
        assert_eq!(stores[x].heads(), stores[y].heads());
        stores[x].check().expect("valid after the final sync");
        stores[y].check().expect("valid after the final sync");
    }
    for s in &stores[1..] {
        assert_eq!(s.hashes(), stores[0].hashes(), "replicas did not converge");
    }
}

// ---------------------------------------------------------------------------------------------
// KV: operations on one or two replicas against a model of the current versions.

/// Keys the `kv_model` target writes: a zero byte and 0xff exercise the key-id escaping and
/// its order.
const KV_KEYS: [&[u8]; 8] = [b"", b"a", b"a\0", b"a\0b", b"a\xff", b"ab", b"b", b"\xff"];

/// Namespaces (paths of names) the `kv_model` target writes in.
const KV_NAMESPACES: [&[&[u8]]; 4] = [&[], &[b"x"], &[b""], &[b"x", b"y"]];

/// A KV operation the model knows: namespace and key (indexes), what it wrote, its links.
struct KvRecord {
    ns: usize,
    key: usize,
    op: KvOpKind,
    links: Vec<Hash>,
}

type KvOpKind = crate::kv::Op;

/// One replica: its log, and the node hashes it holds in arrival order.
struct KvReplica {
    dir: std::path::PathBuf,
    log: Log,
    kv: Kv,
    order: Vec<Hash>,
    set: HashSet<Hash>,
}

impl KvReplica {
    fn open(dir: std::path::PathBuf) -> KvReplica {
        let (log, kv) = kv_open(&dir);
        KvReplica {
            dir,
            log,
            kv,
            order: Vec::new(),
            set: HashSet::new(),
        }
    }

    fn push(&mut self, h: Hash) {
        if self.set.insert(h) {
            self.order.push(h);
        }
    }

    fn ns(&self, ns: usize) -> Kv {
        let mut kv = self.kv.clone();
        for name in KV_NAMESPACES[ns] {
            kv = kv.namespace(name).expect("short namespace");
        }
        kv
    }

    /// Appends to `order` what the feed has beyond it (a write's fold nodes).
    fn catch_up(&mut self) {
        let since = self.order.len() as u64;
        let new: Vec<Hash> = (self.log.changes(since))
            .map(|e| e.expect("feed").node.hash())
            .collect();
        for h in new {
            self.push(h);
        }
    }

    /// A written node's links with every fold replaced by what it folds: the versions the
    /// write links as the KV view counts them.
    fn through_folds(&self, node: &Node) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut todo: Vec<Hash> = node.links().to_vec();
        while let Some(h) = todo.pop() {
            let n = self.log.get(&h).expect("get").expect("linked node stored");
            if crate::kv::fold::Fold::decode(n.payload()).is_some() {
                todo.extend_from_slice(n.links());
            } else {
                out.push(h);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The log's feed, which must extend what the model had (arrival order is kept) with
    /// exactly `expected` new nodes (in some order).
    fn resync(&mut self, expected: &HashSet<Hash>) {
        let feed: Vec<Hash> = self
            .log
            .changes(0)
            .map(|e| e.unwrap().node.hash())
            .collect();
        assert_eq!(
            feed[..self.order.len()],
            self.order[..],
            "the feed was rewritten"
        );
        let new: HashSet<Hash> = feed[self.order.len()..].iter().copied().collect();
        assert_eq!(&new, expected, "nodes gained in an exchange");
        for h in feed {
            self.push(h);
        }
    }
}

fn kv_open(dir: &Path) -> (Log, Kv) {
    let options = LogOptions {
        map_size: 1 << 20,
        durability: Durability::NoSync,
    };
    let log = Log::open_with(dir, options).expect("open");
    log.set_identity(None);
    let kv = Kv::open(&log).expect("kv open");
    (log, kv)
}

/// The node a write of `op` on `key` with exactly `links` must produce.
fn expected_kv_node(kv: &Kv, key: &[u8], op: &KvOpKind, links: &[Hash]) -> Node {
    let payload = crate::kv::KvOp::new(kv.namespace_path(), key, op.clone())
        .unwrap()
        .encode();
    Node::new(links.iter().copied(), payload).unwrap()
}

/// The model: every KV operation ever made (content-addressed, so shared by the replicas),
/// and from it, per replica, the current versions of a key: its operations that no operation
/// on the same key held by the replica links to. Depth is 1 + the greatest depth of the
/// same-key operations an operation links.
#[derive(Default)]
struct KvModel {
    ops: HashMap<Hash, KvRecord>,
}

/// A version as the model sees it: hash, depth, op.
type ModelVersion = (Hash, u64, KvOpKind);

impl KvModel {
    /// Records an operation the replica now holds.
    fn record(
        &mut self,
        rep: &mut KvReplica,
        hash: Hash,
        ns: usize,
        key: usize,
        op: KvOpKind,
        links: Vec<Hash>,
    ) {
        self.ops.insert(hash, KvRecord { ns, key, op, links });
        // Fold nodes written in the same transaction come before it in the feed.
        rep.catch_up();
        rep.push(hash);
    }

    fn depth(&self, h: &Hash) -> u64 {
        let r = &self.ops[h];
        1 + r
            .links
            .iter()
            .filter(|l| {
                self.ops
                    .get(l)
                    .is_some_and(|o| (o.ns, o.key) == (r.ns, r.key))
            })
            .map(|l| self.depth(l))
            .max()
            .unwrap_or(0)
    }

    fn versions(&self, rep: &KvReplica, ns: usize, key: usize) -> Vec<ModelVersion> {
        let same = |h: &&Hash| self.ops.get(*h).is_some_and(|r| (r.ns, r.key) == (ns, key));
        let of_key: Vec<&Hash> = rep.order.iter().filter(same).collect();
        // One set of what the key's operations link: a flooded key has over a thousand.
        let linked: HashSet<&Hash> = of_key
            .iter()
            .flat_map(|o| self.ops[*o].links.iter())
            .collect();
        let mut out: Vec<ModelVersion> = of_key
            .iter()
            .filter(|h| !linked.contains(**h))
            .map(|h| (**h, self.depth(h), self.ops[*h].op.clone()))
            .collect();
        out.sort_by_key(|v| v.0);
        out
    }

    /// Present keys of a namespace, in key order, with their versions.
    fn present(&self, rep: &KvReplica, ns: usize) -> Vec<(Vec<u8>, Vec<ModelVersion>)> {
        let mut out: Vec<(Vec<u8>, Vec<ModelVersion>)> = (0..KV_KEYS.len())
            .map(|k| (KV_KEYS[k].to_vec(), self.versions(rep, ns, k)))
            .filter(|(_, v)| v.iter().any(|v| !v.2.is_tombstone()))
            .collect();
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    }
}

fn as_model(v: &crate::kv::Versions) -> Vec<ModelVersion> {
    v.iter().map(|v| (v.hash, v.depth, v.op.clone())).collect()
}

fn scan_model(scan: crate::kv::Scan) -> Vec<(Vec<u8>, Vec<ModelVersion>)> {
    scan.map(|e| {
        let e = e.expect("scan");
        (e.key, as_model(&e.versions))
    })
    .collect()
}

fn kv_value(input: &mut Input<'_>) -> Vec<u8> {
    let len = input.byte() as usize % 4;
    input.bytes(len).to_vec()
}

fn kv_bound(input: &mut Input<'_>) -> std::ops::Bound<Vec<u8>> {
    use std::ops::Bound;
    let b = input.byte();
    let key = KV_KEYS[usize::from(b >> 2) % KV_KEYS.len()].to_vec();
    match b % 3 {
        0 => Bound::Unbounded,
        1 => Bound::Included(key),
        _ => Bound::Excluded(key),
    }
}

fn in_bounds(key: &[u8], lo: &std::ops::Bound<Vec<u8>>, hi: &std::ops::Bound<Vec<u8>>) -> bool {
    use std::ops::Bound;
    (match lo {
        Bound::Unbounded => true,
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
    }) && (match hi {
        Bound::Unbounded => true,
        Bound::Included(h) => key <= h.as_slice(),
        Bound::Excluded(h) => key < h.as_slice(),
    })
}

/// Compares one replica's answers with the model: versions and presence of every key,
/// `iter`, `conflicts`, one input-chosen `range` and `prefix` per namespace, each key's
/// history; and `verify`.
fn kv_check_replica(model: &KvModel, rep: &KvReplica, input: &mut Input<'_>) {
    let report = rep.log.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.violations);
    for ns in 0..KV_NAMESPACES.len() {
        let kv = rep.ns(ns);
        for (k, key) in KV_KEYS.iter().enumerate() {
            let want = model.versions(rep, ns, k);
            let got = kv.versions(key).expect("versions");
            assert_eq!(
                as_model(&got),
                want,
                "versions of {key:?} in namespace {ns}"
            );
            assert_eq!(kv.get(key).unwrap().is_some(), got.is_present());
            // History: every operation on the key, newest arrival first.
            let mut history: Vec<Hash> = rep
                .order
                .iter()
                .filter(|h| model.ops.get(*h).is_some_and(|r| (r.ns, r.key) == (ns, k)))
                .copied()
                .collect();
            history.reverse();
            let got: Vec<_> = kv.history(key).map(|e| e.expect("history")).collect();
            assert_eq!(got.iter().map(|e| e.hash).collect::<Vec<_>>(), history);
            for e in &got {
                let r = &model.ops[&e.hash];
                assert_eq!((&e.op, e.depth), (&r.op, model.depth(&e.hash)));
                assert_eq!(e.current, want.iter().any(|v| v.0 == e.hash));
            }
        }
        let present = model.present(rep, ns);
        assert_eq!(scan_model(kv.iter()), present, "iter of namespace {ns}");
        let conflicts: Vec<_> = present
            .iter()
            .filter(|(_, v)| v.windows(2).any(|w| w[0].2 != w[1].2))
            .cloned()
            .collect();
        assert_eq!(scan_model(kv.conflicts()), conflicts, "conflicts in {ns}");
        let (lo, hi) = (kv_bound(input), kv_bound(input));
        let want: Vec<_> = present
            .iter()
            .filter(|(k, _)| in_bounds(k, &lo, &hi))
            .cloned()
            .collect();
        let got = scan_model(kv.range((lo.clone(), hi.clone())));
        assert_eq!(got, want, "range {lo:?}..{hi:?} in namespace {ns}");
        let prefix = KV_KEYS[input.byte() as usize % KV_KEYS.len()];
        let want: Vec<_> = present
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .cloned()
            .collect();
        assert_eq!(scan_model(kv.prefix(prefix)), want, "prefix {prefix:?}");
    }
}

/// Copies the nodes `from` has and `to` lacks, in `from`'s feed order, with `insert`.
fn kv_copy(from: &KvReplica, to: &mut KvReplica) {
    let missing: HashSet<Hash> = from.set.difference(&to.set).copied().collect();
    for e in from.log.changes(0) {
        let node = e.expect("feed").node;
        if missing.contains(&node.hash()) {
            assert!(matches!(
                to.log.insert(&node).expect("insert in feed order"),
                Inserted::New(_)
            ));
        }
    }
    to.resync(&missing);
}

/// `kv_model`: a program of KV operations (put, del, `write_with_links` with input-chosen
/// links, `resolve` with a simple merge, over several namespaces and keys that need escaping,
/// plain non-KV nodes, floods of more concurrent versions than one node may link so that the
/// next write folds them, reopening) on one or two [`Log`] replicas in `dir`, with exchanges
/// between them (copying missing nodes in feed order, or a sans-IO sync session over the
/// logs, sometimes cut). Every write is checked as it happens (the node written, or
/// `MissingLink`), and at the end each replica's `versions`, `get`, `iter`, `conflicts`,
/// `range`, `prefix`, `history` and `verify` must agree with the model; with two replicas,
/// after a final exchange both ways, their answers must also agree with each other.
pub fn check_kv_model(dir: &Path, data: &[u8]) {
    let mut input = Input::new(data);
    let two = input.byte() & 1 == 1;
    let mut reps = vec![KvReplica::open(dir.join("a"))];
    if two {
        reps.push(KvReplica::open(dir.join("b")));
    }
    let mut model = KvModel::default();
    for _ in 0..48 {
        if input.is_empty() {
            break;
        }
        let b = input.byte();
        let r = usize::from(b >> 7) % reps.len();
        if b % 8 == 7 {
            // Drop every handle on the environment and open it again: the view catches up
            // from its watermark (nothing to do) and must read the same.
            let KvReplica {
                dir,
                log,
                kv,
                order,
                set,
            } = reps.remove(r);
            drop((log, kv));
            let (log, kv) = kv_open(&dir);
            let rep = KvReplica {
                dir,
                log,
                kv,
                order,
                set,
            };
            reps.insert(r, rep);
            continue;
        }
        let (ns, k) = (usize::from(input.byte() % 4), usize::from(input.byte() % 8));
        let key = KV_KEYS[k];
        let rep = &mut reps[r];
        let kv = rep.ns(ns);
        let current = model.versions(rep, ns, k);
        match b % 8 {
            0 | 1 => {
                let op = if b % 8 == 0 {
                    KvOpKind::Put(kv_value(&mut input))
                } else {
                    KvOpKind::Del
                };
                let h = kv.write(key, op.clone()).expect("write");
                let node = rep.log.get(&h).unwrap().expect("written node stored");
                let decoded = crate::kv::KvOp::decode(node.payload()).expect("a kv op");
                assert_eq!((&decoded.key[..], &decoded.op), (key, &op));
                let links = rep.through_folds(&node);
                for v in &current {
                    assert!(
                        links.binary_search(&v.0).is_ok(),
                        "write does not supersede"
                    );
                }
                if current.len() > MAX_LINKS {
                    assert!(node.links().len() <= MAX_LINKS);
                }
                model.record(rep, h, ns, k, op, links);
            }
            2 => {
                let op = match input.byte() % 3 {
                    0 => KvOpKind::Del,
                    _ => KvOpKind::Put(kv_value(&mut input)),
                };
                let mut dangling = false;
                let links: Vec<Hash> = (0..input.byte() % 4)
                    .map(|_| {
                        let c = input.byte() as usize;
                        if rep.order.is_empty() || c % 16 == 15 {
                            dangling = true;
                            Hash::of(&[c as u8])
                        } else {
                            rep.order[c % rep.order.len()]
                        }
                    })
                    .collect();
                let expected = expected_kv_node(&kv, key, &op, &links);
                let got = kv.write_with_links(key, op.clone(), links);
                if dangling {
                    assert!(matches!(got, Err(Error::MissingLink { .. })), "{got:?}");
                } else {
                    assert_eq!(got.expect("write_with_links"), expected.hash());
                    model.record(rep, expected.hash(), ns, k, op, expected.links().to_vec());
                }
            }
            3 => {
                // Merge: the greatest value, or a delete when the input says so.
                let del = input.byte() & 1 == 1;
                let merge = |_: &[u8], vs: &[crate::kv::Version]| -> KvOpKind {
                    match vs.iter().filter_map(|v| v.value()).max() {
                        Some(v) if !del => KvOpKind::Put(v.to_vec()),
                        _ => KvOpKind::Del,
                    }
                };
                // `resolve` runs the merge once; when its write fills the map it grows the map
                // and returns map-full for the caller to run again (this merge is pure).
                let got = match kv.resolve(key, merge) {
                    Err(Error::Storage(e)) if e.is_map_full() => kv.resolve(key, merge),
                    other => other,
                }
                .expect("resolve");
                // Versions that all carry the same operation agree: no conflict.
                let conflict = current.iter().any(|v| !v.2.is_tombstone())
                    && current.windows(2).any(|w| w[0].2 != w[1].2);
                if conflict {
                    let op = match current.iter().filter_map(|v| v.2.value()).max() {
                        Some(v) if !del => KvOpKind::Put(v.to_vec()),
                        _ => KvOpKind::Del,
                    };
                    let h = got.expect("a conflict is resolved");
                    // Every version, directly or through fold nodes, plus the log's heads
                    // (so the resolution does not stay a head of its own).
                    let node = rep.log.get(&h).unwrap().expect("resolved node stored");
                    let decoded = crate::kv::KvOp::decode(node.payload()).expect("a kv op");
                    assert_eq!((&decoded.key[..], &decoded.op), (key, &op));
                    let links = rep.through_folds(&node);
                    for v in &current {
                        assert!(
                            links.binary_search(&v.0).is_ok(),
                            "resolve missed a version"
                        );
                    }
                    model.record(rep, h, ns, k, op, links);
                } else {
                    assert_eq!(got, None, "resolved a key not in conflict");
                }
            }
            4 if two => kv_exchange(&mut reps, &mut input),
            5 => {
                let got = kv.versions(key).expect("versions");
                assert_eq!(as_model(&got), current, "versions of {key:?} in {ns}");
            }
            6 => {
                let b = input.byte();
                if b >= KV_FLOOD_BYTE {
                    kv_flood(&mut model, rep, ns, k, usize::from(b - KV_FLOOD_BYTE));
                    continue;
                }
                let payload = [b"plain".as_slice(), &[b]].concat();
                let node = rep.log.append(payload).expect("append");
                rep.push(node.hash());
            }
            _ => {}
        }
    }
    if two {
        let (a, b) = reps.split_at_mut(1);
        kv_copy(&a[0], &mut b[0]);
        kv_copy(&b[0], &mut a[0]);
        assert_eq!(a[0].set, b[0].set);
    }
    for rep in &reps {
        kv_check_replica(&model, rep, &mut input);
    }
    if two {
        for ns in 0..KV_NAMESPACES.len() {
            let (a, b) = (reps[0].ns(ns), reps[1].ns(ns));
            for key in KV_KEYS {
                assert_eq!(a.get(key).unwrap(), b.get(key).unwrap(), "get {key:?}");
            }
            assert_eq!(scan_model(a.conflicts()), scan_model(b.conflicts()));
            assert_eq!(
                scan_model(a.range(&b"a"[..]..)),
                scan_model(b.range(&b"a"[..]..))
            );
            assert_eq!(scan_model(a.iter()), scan_model(b.iter()));
        }
    }
}

/// An op-6 byte at or above this floods a key instead of appending a plain node.
const KV_FLOOD_BYTE: u8 = 0xf0;

/// Floods `key` with `MAX_LINKS + 1 + extra` concurrent puts (linking nothing, one
/// transaction), so that the next operation that supersedes them must fold: the cheap way
/// for a fuzz program to reach fold nodes.
fn kv_flood(model: &mut KvModel, rep: &mut KvReplica, ns: usize, k: usize, extra: usize) {
    let kv = rep.ns(ns);
    let nodes: Vec<Node> = (0..MAX_LINKS + 1 + extra)
        .map(|i| {
            let op = KvOpKind::Put((i as u16).to_be_bytes().to_vec());
            expected_kv_node(&kv, KV_KEYS[k], &op, &[])
        })
        .collect();
    rep.log.insert_batch(&nodes).expect("flood");
    for (i, n) in nodes.iter().enumerate() {
        let op = KvOpKind::Put((i as u16).to_be_bytes().to_vec());
        model.record(rep, n.hash(), ns, k, op, Vec::new());
    }
}

/// One exchange between the two replicas of `kv_model`: a copy one way, or a sync session
/// over the logs (modes and schedule from the input, sometimes cut).
fn kv_exchange(reps: &mut [KvReplica], input: &mut Input<'_>) {
    let (a, b) = reps.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    match input.byte() % 4 {
        0 => kv_copy(a, b),
        1 => kv_copy(b, a),
        _ => {
            let m = input.byte();
            let modes = [MODES[usize::from(m) % 3], MODES[usize::from(m >> 2) % 3]];
            let cut = (m & 0x40 != 0).then(|| usize::from(input.u16()) % 4096);
            let cfgs = [0, 1].map(|i| SessionConfig {
                mode: modes[i],
                live: false,
                filter_key: [i as u8; 32],
            });
            let ended = match drive([&a.log, &b.log], cfgs, cut, input, None) {
                Err(SyncError::ModeMismatch { .. }) if !moves(modes) => return,
                Err(e) => panic!("sync between logs ({modes:?}) failed: {e}"),
                Ok(ended) => ended,
            };
            let (sa, sb) = (a.set.clone(), b.set.clone());
            if ended == Ended::Complete {
                let want = |from: &HashSet<Hash>, to: &HashSet<Hash>, on: bool| {
                    if on {
                        from.difference(to).copied().collect()
                    } else {
                        HashSet::new()
                    }
                };
                b.resync(&want(&sa, &sb, sends(modes[0]) && receives(modes[1])));
                a.resync(&want(&sb, &sa, sends(modes[1]) && receives(modes[0])));
            } else {
                // Cut: whatever arrived is a subset of what the other side had.
                for (rep, other) in [(&mut *a, &sb), (&mut *b, &sa)] {
                    let feed: Vec<Hash> =
                        rep.log.changes(0).map(|e| e.unwrap().node.hash()).collect();
                    let new: HashSet<Hash> = feed[rep.order.len()..].iter().copied().collect();
                    assert!(new.is_subset(other), "a cut sync stored foreign nodes");
                    rep.resync(&new);
                }
            }
        }
    }
}
