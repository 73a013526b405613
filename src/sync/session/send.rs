//! The sending half of [`Session`]: the catch-up stream, answers to `Want`, the live stream.

use std::collections::VecDeque;

use super::filter::SeqBits;
use super::plan::{paint, Plan};
use super::{Session, SessionStats};
use crate::hash::Hash;
use crate::log::RawEntry;
use crate::sync::error::SyncError;
use crate::sync::store::{Cursor, StoreError, SyncStore};
use crate::sync::wire::delta::{self, Prev};
use crate::sync::wire::message::{Filter, Message};

/// Entries read from the store per live-stream read.
const CHUNK: usize = 512;

/// Where the sending half is.
#[derive(Debug)]
pub(super) enum SendState {
    /// This side sends nothing in this session (its mode, or the peer's).
    Off,
    /// Will decide what to stream once the peer's `Summary` says what it has.
    AwaitSummary,
    /// Streaming the catch-up plan.
    Streaming(Plan),
    /// The catch-up stream ended; waiting for the peer's `Done`.
    AwaitDone,
    /// The peer has every node this side had at the start.
    Caught,
}

impl PartialEq for SendState {
    fn eq(&self, other: &SendState) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// The sending half's state and what it needs to answer `Want`s.
pub(super) struct SendHalf {
    state: SendState,
    /// The remembered floor (0 when none): my nodes at or below it are taken to be the
    /// peer's, once it confirmed `floor_heads`.
    floor: u64,
    floor_heads: Vec<Hash>,
    /// Points both sides are known to have, found from the peer's `Hello`.
    known_points: Vec<Hash>,
    /// The points the catch-up plan was painted against.
    shared: Vec<Hash>,
    /// Candidates of the catch-up plan: the work a `Want` answer may take beyond its limit.
    planned: usize,
    /// Every seq sent in the session (never sent twice).
    sent: SeqBits,
    /// Every seq queued in an answer to a `Want` (never queued twice).
    promised: SeqBits,
    /// Answers to `Want`s, each a run of nodes ended by `EndStream`, in order.
    answers: VecDeque<Plan>,
    wants_answered: u32,
    filtered: u64,
    live: LiveSend,
    /// The node of the last frame sent: what the next `NodeDelta` refers to.
    prev: Prev,
    /// Send `NodeDelta` frames where they are smaller (off only to test other orders).
    deltas: bool,
}

/// The live stream: my feed after the snapshot, without what the peer sent me.
struct LiveSend {
    next: u64,
    local_last: u64,
    buf: VecDeque<RawEntry>,
    /// Seq ranges of my feed stored from this peer, not yet passed by `next` (never echo).
    from_peer: VecDeque<(u64, u64)>,
}

impl SendHalf {
    /// A half that sends nothing yet, for a session whose snapshot ended at `last`, with the
    /// floor remembered for this peer.
    pub fn new(last: u64, floor: Option<Cursor>, deltas: bool) -> SendHalf {
        let (floor, floor_heads) = floor.map_or((0, Vec::new()), |c| (c.seq, c.heads));
        SendHalf {
            state: SendState::Off,
            floor,
            floor_heads,
            known_points: Vec::new(),
            shared: Vec::new(),
            planned: 0,
            sent: SeqBits::new(),
            promised: SeqBits::new(),
            answers: VecDeque::new(),
            wants_answered: 0,
            filtered: 0,
            live: LiveSend {
                next: last,
                local_last: last,
                buf: VecDeque::new(),
                from_peer: VecDeque::new(),
            },
            prev: Prev::default(),
            deltas,
        }
    }

    /// The remembered floor (0 when none).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The heads that prove the floor.
    pub fn floor_heads(&self) -> &[Hash] {
        &self.floor_heads
    }

    pub fn set_deltas(&mut self, on: bool) {
        self.deltas = on;
    }

    /// Both sides have the same heads: nothing to stream; `shared` are those heads.
    pub fn in_sync(&mut self, on: bool, shared: Vec<Hash>) {
        self.state = if on {
            SendState::Caught
        } else {
            SendState::Off
        };
        self.shared = shared;
    }

    /// This side sends nothing in this session.
    pub fn off(&mut self) {
        self.state = SendState::Off;
    }

    /// The plan waits for the peer's `Summary`; `known_points` were found from its `Hello`.
    pub fn await_summary(&mut self, known_points: Vec<Hash>) {
        self.known_points = known_points;
        self.state = SendState::AwaitSummary;
    }

    /// When the plan waits for the peer's `Summary`: the points found from its `Hello`.
    pub fn take_known_points(&mut self) -> Option<Vec<Hash>> {
        (self.state == SendState::AwaitSummary).then(|| std::mem::take(&mut self.known_points))
    }

    /// Streams the catch-up plan of `cands`, painted against `shared`.
    pub fn start(&mut self, cands: Vec<u64>, filter: Option<Filter>, shared: Vec<Hash>) {
        self.planned = cands.len();
        self.shared = shared;
        self.state = SendState::Streaming(Plan::new(cands, filter));
    }

    /// Whether the catch-up stream ended and the peer's `Done` is owed.
    pub fn awaits_done(&self) -> bool {
        self.state == SendState::AwaitDone
    }

    /// The peer has every node this side had at the start (its `Done`, or its `Summary`).
    pub fn peer_done(&mut self) {
        self.state = SendState::Caught;
    }

    /// Whether the peer is known to have every node this side had at the start.
    pub fn is_caught(&self) -> bool {
        self.state == SendState::Caught
    }

    pub fn caught_up(&self) -> bool {
        matches!(self.state, SendState::Off | SendState::Caught)
    }

    /// `Want` is legal while this side streams the catch-up or waits for its `Done`, and in a
    /// live session that sends. Never in an in-sync catch-up: there is nothing to ask for.
    pub fn answers_wants(&self, live: bool) -> bool {
        match self.state {
            SendState::Streaming(_) | SendState::AwaitDone => true,
            SendState::Caught => live,
            SendState::Off | SendState::AwaitSummary => false,
        }
    }

    pub fn has_answers(&self) -> bool {
        !self.answers.is_empty()
    }

    pub fn clear_answers(&mut self) {
        self.answers.clear();
    }

    pub fn buffered_bytes(&self) -> usize {
        let plan = match &self.state {
            SendState::Streaming(p) => p.bytes(),
            _ => 0,
        };
        plan + self.answers.iter().map(Plan::bytes).sum::<usize>()
            + self.sent.bytes()
            + self.promised.bytes()
            + self.live.from_peer.len() * 16
            + self.live.buf.iter().map(|e| e.bytes.len()).sum::<usize>()
    }

    pub fn local_changed(&mut self, seq: u64) {
        self.live.local_last = self.live.local_last.max(seq);
    }

    fn live_sending(&self, live: bool) -> bool {
        live && self.state == SendState::Caught
    }

    /// Notes a node stored from the peer at `seq`, so the live stream does not echo it. Only
    /// kept when there will be a live stream to consume it.
    pub fn note_from_peer(&mut self, seq: u64, live_session: bool) {
        if !live_session || self.state == SendState::Off {
            return;
        }
        match self.live.from_peer.back_mut() {
            Some((_, hi)) if *hi + 1 == seq => *hi = seq,
            _ => self.live.from_peer.push_back((seq, seq)),
        }
    }

    pub fn wants_transmit(&self, live: bool) -> bool {
        !self.answers.is_empty()
            || matches!(self.state, SendState::Streaming(_))
            || (self.live_sending(live)
                && (self.live.next < self.live.local_last || !self.live.buf.is_empty()))
    }

    /// The next node or `EndStream` to send: answers to `Want`s first, then the catch-up
    /// stream, then (live) new nodes.
    pub fn poll<St: SyncStore>(
        &mut self,
        store: &St,
        live: bool,
        stats: &mut SessionStats,
    ) -> Result<Option<Message>, SyncError<St::Error>> {
        if let Some(a) = self.answers.front_mut() {
            return Ok(Some(match a.next(store, &mut self.sent)? {
                Some(e) => sent(stats, &mut self.prev, self.deltas, e),
                None => {
                    self.answers.pop_front();
                    Message::EndStream
                }
            }));
        }
        if let SendState::Streaming(plan) = &mut self.state {
            let next = plan.next(store, &mut self.sent)?;
            self.filtered = plan.skipped;
            stats.filtered = self.filtered;
            return Ok(Some(match next {
                Some(e) => sent(stats, &mut self.prev, self.deltas, e),
                None => {
                    self.state = SendState::AwaitDone;
                    Message::EndStream
                }
            }));
        }
        if !self.live_sending(live) {
            return Ok(None);
        }
        let l = &mut self.live;
        loop {
            if l.buf.is_empty() && l.next < l.local_last {
                let chunk = store.entries(l.next, l.local_last, CHUNK)?;
                if chunk.is_empty() {
                    l.local_last = l.next;
                }
                l.buf.extend(chunk);
            }
            let Some(e) = l.buf.pop_front() else {
                return Ok(None);
            };
            l.next = e.seq;
            while l.from_peer.front().is_some_and(|r| r.1 < e.seq) {
                l.from_peer.pop_front();
            }
            // Never echo: what the peer sent us is not sent back.
            if l.from_peer.front().is_some_and(|r| r.0 <= e.seq) || self.sent.get(e.seq) {
                continue;
            }
            self.sent.set(e.seq);
            return Ok(Some(sent(stats, &mut self.prev, self.deltas, e)));
        }
    }
}

/// The frame of a node sent: a `NodeDelta` when the node before it lets it leave bytes out.
fn sent(stats: &mut SessionStats, prev: &mut Prev, deltas: bool, e: RawEntry) -> Message {
    stats.nodes_sent += 1;
    stats.node_bytes_sent += e.bytes.len() as u64;
    let body = deltas.then(|| delta::compact(prev, &e.bytes)).flatten();
    prev.note(e.hash, &e.bytes);
    match body {
        Some(body) => Message::NodeDelta(body),
        None => Message::Node(e.bytes),
    }
}

/// The hashes of the nodes at `seqs` (ascending), read in runs.
pub(super) fn hashes_at<St: SyncStore>(
    store: &St,
    seqs: &[u64],
) -> Result<Vec<Hash>, SyncError<St::Error>> {
    let mut out = Vec::with_capacity(seqs.len());
    let mut i = 0;
    while i < seqs.len() {
        let first = seqs[i];
        let mut n = 1;
        while n < CHUNK && seqs.get(i + n) == Some(&(first + n as u64)) {
            n += 1;
        }
        let got = store.entries(first - 1, first + n as u64 - 1, n)?;
        if got.len() != n {
            return Err(SyncError::Store(St::Error::corrupt(format!(
                "feed seqs {first}.. vanished"
            ))));
        }
        out.extend(got.into_iter().map(|e| e.hash));
        i += n;
    }
    Ok(out)
}

impl<S: SyncStore> Session<S> {
    /// The peer lacks `wanted`: after a Bloom false positive, a link it never got, or a floor
    /// of mine it does not confirm. Answered with the wanted nodes and their ancestors not
    /// known to be the peer's and not sent yet, oldest first, then `EndStream`. Bounded: at
    /// most [`super::Limits::wants_answered`] answers per session, each walking at most
    /// [`super::Limits::want_walk`] nodes beyond the catch-up plan's size; nothing is ever
    /// sent twice.
    pub(super) fn on_want(&mut self, wanted: Vec<Hash>) -> Result<(), SyncError<S::Error>> {
        let peer = self.peer();
        let ex = self.state.exchange_mut().expect("checked by handle");
        let s = &mut ex.send;
        s.wants_answered += 1;
        if s.wants_answered > self.limits.wants_answered {
            return Err(SyncError::TooManyWants {
                peer,
                rounds: s.wants_answered - 1,
                max: self.limits.wants_answered,
                walked: 0,
            });
        }
        let direct: Vec<u64> = self.store.seqs_of(&wanted)?.into_iter().flatten().collect();
        let (mine, floor, budget) = if s.floor > 0 && direct.iter().any(|&q| q <= s.floor) {
            // The peer lacks a node at or below my floor for it: the floor is wrong (another
            // replica with its id, or it lost data). Forget it and send everything the plan
            // left out because of it: the same work as a first contact, once per session.
            s.floor = 0;
            self.store.set_peer_cursor(peer, None)?;
            (self.mine.heads.clone(), 0, usize::MAX)
        } else {
            (
                wanted,
                s.floor,
                self.limits.want_walk.saturating_add(s.planned),
            )
        };
        let painted = paint(&self.store, &mine, &s.shared, floor, budget)?;
        if !painted.complete {
            return Err(SyncError::TooManyWants {
                peer,
                rounds: s.wants_answered,
                max: self.limits.wants_answered,
                walked: budget,
            });
        }
        let mut seqs = painted.seqs;
        seqs.extend(direct);
        seqs.sort_unstable();
        seqs.dedup();
        seqs.retain(|&q| !s.sent.get(q) && !s.promised.get(q));
        for &q in &seqs {
            s.promised.set(q);
        }
        self.stats.round_trips += 1;
        s.answers.push_back(Plan::new(seqs, None));
        Ok(())
    }
}
