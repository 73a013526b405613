//! The sans-IO protocol state machine. It takes decoded messages ([`Session::handle`]) and
//! local events, asks its [`SyncStore`], and yields messages to send
//! ([`Session::poll_transmit`]). It never blocks on anything but the store, so the same code
//! runs under the tokio driver, in deterministic tests and in the fuzzer.

use std::collections::{HashSet, VecDeque};

use super::error::SyncError;
use super::message::{bit, bitmap, Filter, Hello, Message, Summary, WireMode, MAX_HELLO_HEADS};
use super::message::{MAX_SAMPLES, MAX_WANT, SAMPLE_PREFIX_LEN};
use super::plan::{paint, Plan};
use super::store::SyncStore;
use crate::changes::RawEntry;
use crate::hash::Hash;
use crate::log::Inserted;
use crate::node::Node;
use crate::peer::PeerId;

/// Nodes per receive transaction (each commit is durable by default, so fewer is faster; the
/// same as the raw-LMDB limit in the benchmarks).
pub const BATCH_NODES: usize = 10_000;
/// Bytes per receive transaction.
pub const BATCH_BYTES: usize = 4 << 20;
/// Nodes held back because a link has not arrived (normally only Bloom false positives).
pub const MAX_PENDING_NODES: usize = 100_000;
/// Bytes held back likewise.
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// `Want` rounds in the catch-up phase before a missing node is an error.
pub const MAX_WANT_ROUNDS: u32 = 2;
const CHUNK: usize = 512;

/// Which way nodes may flow, from this side's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Only send what the peer lacks.
    Push,
    /// Only receive what this side lacks.
    Pull,
    /// Both.
    #[default]
    Both,
}

/// Settings of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Direction.
    pub mode: Mode,
    /// Stay open after catching up and stream new nodes. The session is live when either
    /// side asks for it.
    pub live: bool,
    /// The key of the Bloom filter this side builds; random per session in real use.
    pub filter_key: [u8; 32],
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the peer's `Hello` or `Summary`.
    Handshake,
    /// Exchanging what each side lacks.
    CatchUp,
    /// Caught up; streaming new nodes both ways.
    Live,
    /// Over.
    Finished,
}

/// Counters of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Nodes sent.
    pub nodes_sent: u64,
    /// Canonical bytes of the nodes sent.
    pub node_bytes_sent: u64,
    /// New nodes stored from the peer.
    pub nodes_received: u64,
    /// Canonical bytes of the new nodes stored.
    pub node_bytes_received: u64,
    /// Nodes received that were already stored.
    pub duplicates: u64,
    /// Sequential waits for the peer: 1 for the handshake plus one per `Want` round.
    pub round_trips: u32,
    /// Nodes the peer may send us at most (its feed length), for progress bars.
    pub total_hint: Option<u64>,
    /// Candidates not sent because the peer's filter said it has them.
    pub filtered: u64,
}

/// One replication session with one peer.
pub struct Session<S: SyncStore> {
    store: S,
    cfg: SessionConfig,
    me: PeerId,
    phase: Phase,
    out: VecDeque<Message>,
    my_heads: Vec<Hash>,
    my_heads_complete: bool,
    my_samples: Vec<Hash>,
    my_last: u64,
    peer: Option<Hello>,
    send_on: bool,
    recv_on: bool,
    live: bool,
    in_sync: bool,
    knew_all_peer_heads: bool,
    known_points: Vec<Hash>,
    /// Nodes both sides are known to have: the points the plan was painted against.
    shared: Vec<Hash>,
    floor: u64,
    summary_in: bool,
    peer_knows_all_mine: bool,
    will_stream: Option<bool>,
    plan: Option<Plan>,
    resend: VecDeque<u64>,
    resend_active: bool,
    // receiving
    batch: Vec<Node>,
    batch_set: HashSet<Hash>,
    batch_bytes: usize,
    pending: Vec<Node>,
    pending_set: HashSet<Hash>,
    pending_bytes: usize,
    recv_complete: bool,
    want_rounds: u32,
    wanted: Option<HashSet<Hash>>,
    peer_done: bool,
    from_peer: VecDeque<(u64, u64)>,
    catchup_done: bool,
    // live
    live_next: u64,
    local_last: u64,
    live_buf: VecDeque<RawEntry>,
    stats: SessionStats,
}

fn samples(store: &impl SyncStore, last: u64) -> Result<Vec<Hash>, SyncError> {
    let mut out = Vec::new();
    let mut dist = 0u64;
    while dist < last && out.len() < MAX_SAMPLES.min(24) {
        if let Some(e) = store.entry_at(last - dist)? {
            out.push(e.hash);
        }
        dist = dist * 2 + 1;
    }
    Ok(out)
}

impl<S: SyncStore> Session<S> {
    /// Starts a session: reads the local heads and queues the `Hello`.
    pub fn new(store: S, cfg: SessionConfig) -> Result<Session<S>, SyncError> {
        let me = store.peer_id();
        // One snapshot: a node stored between reading the heads and the last seq would be
        // neither in the catch-up (not under the heads) nor in the live stream (not after it).
        let (mut my_heads, my_last) = store.snapshot()?;
        let my_heads_complete = my_heads.len() <= MAX_HELLO_HEADS;
        my_heads.truncate(MAX_HELLO_HEADS);
        let my_samples = samples(&store, my_last)?;
        let hello = Hello {
            peer: me,
            mode: WireMode {
                send: cfg.mode != Mode::Pull,
                receive: cfg.mode != Mode::Push,
                live: cfg.live,
            },
            last_seq: my_last,
            heads: my_heads.clone(),
            heads_complete: my_heads_complete,
            samples: my_samples
                .iter()
                .map(|h| h.0[..SAMPLE_PREFIX_LEN].try_into().expect("prefix"))
                .collect(),
        };
        Ok(Session {
            out: VecDeque::from([Message::Hello(hello)]),
            store,
            cfg,
            me,
            phase: Phase::Handshake,
            my_heads,
            my_heads_complete,
            my_samples,
            my_last,
            peer: None,
            send_on: false,
            recv_on: false,
            live: false,
            in_sync: false,
            knew_all_peer_heads: false,
            known_points: Vec::new(),
            shared: Vec::new(),
            floor: 0,
            summary_in: false,
            peer_knows_all_mine: false,
            will_stream: None,
            plan: None,
            resend: VecDeque::new(),
            resend_active: false,
            batch: Vec::new(),
            batch_set: HashSet::new(),
            batch_bytes: 0,
            pending: Vec::new(),
            pending_set: HashSet::new(),
            pending_bytes: 0,
            recv_complete: false,
            want_rounds: 0,
            wanted: None,
            peer_done: false,
            from_peer: VecDeque::new(),
            catchup_done: false,
            live_next: my_last,
            local_last: my_last,
            live_buf: VecDeque::new(),
            stats: SessionStats {
                round_trips: 1,
                ..SessionStats::default()
            },
        })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Where the session is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The counters so far.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The peer's id, once its `Hello` arrived.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.peer.as_ref().map(|h| h.peer)
    }

    /// Whether the session is over (everything to send has been handed out by
    /// [`Session::poll_transmit`]; the caller still flushes it).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished && self.out.is_empty()
    }

    /// Whether the session is (or will be, once caught up) live.
    pub fn is_live(&self) -> bool {
        self.live || (self.peer.is_none() && self.cfg.live)
    }

    fn peer(&self) -> PeerId {
        self.peer.as_ref().map_or(self.me, |h| h.peer)
    }

    fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Handshake => "handshaking",
            Phase::CatchUp => "catching up",
            Phase::Live => "live",
            Phase::Finished => "finished",
        }
    }

    fn unexpected(&self, got: &Message) -> SyncError {
        SyncError::Unexpected {
            state: self.state_name(),
            got: got.name(),
        }
    }

    /// Handles one message from the peer.
    pub fn handle(&mut self, msg: Message) -> Result<(), SyncError> {
        if self.phase == Phase::Finished && self.live {
            // Both sides may close a live session at once; what crosses our Close is dropped
            // (the next sync brings it).
            return Ok(());
        }
        match msg {
            Message::Hello(h) if self.peer.is_none() => self.on_hello(h),
            Message::Summary(s) if self.peer.is_some() && !self.in_sync && !self.summary_in => {
                self.on_summary(s)
            }
            Message::Node(bytes) if self.recv_on && (self.summary_in || self.in_sync) => {
                self.on_node(bytes)
            }
            Message::EndStream
                if self.wanted.is_some()
                    || (self.expect_stream() && self.summary_in && !self.recv_complete) =>
            {
                self.on_end_stream()
            }
            Message::Want(w) if self.send_on && self.phase != Phase::Finished => self.on_want(w),
            Message::Done
                if self.will_stream == Some(true)
                    && !self.peer_done
                    && self.plan.as_ref().is_some_and(|p| p.done) =>
            {
                self.peer_done = true;
                self.maybe_finish()
            }
            Message::Close if self.phase == Phase::Live => {
                self.commit()?;
                self.phase = Phase::Finished;
                Ok(())
            }
            other => Err(self.unexpected(&other)),
        }
    }

    fn expect_stream(&self) -> bool {
        self.recv_on && !self.in_sync && !self.knew_all_peer_heads
    }

    fn on_hello(&mut self, h: Hello) -> Result<(), SyncError> {
        if h.peer == self.me {
            return Err(SyncError::SelfSync { peer: h.peer });
        }
        self.send_on = self.cfg.mode != Mode::Pull && h.mode.receive;
        self.recv_on = self.cfg.mode != Mode::Push && h.mode.send;
        self.live = self.cfg.live || h.mode.live;
        self.floor = self.store.peer_cursor(h.peer)?.min(self.my_last);
        self.stats.total_hint = Some(h.last_seq);
        self.in_sync = h.heads_complete && self.my_heads_complete && h.heads == self.my_heads;
        self.phase = Phase::CatchUp;
        if self.in_sync {
            self.peer = Some(h);
            return self.maybe_finish();
        }
        // Only nodes this side had at its snapshot count as known. The peer decides from our
        // Hello (the snapshot) whether we will stream to it; a head of the peer's stored since
        // (a local write, another session) could otherwise make us start a stream that the
        // peer, knowing all our heads, does not expect.
        let my_last = self.my_last;
        let seqs: Vec<Option<u64>> = (self.store.seqs_of(&h.heads)?.into_iter())
            .map(|s| s.filter(|&s| s <= my_last))
            .collect();
        let found = self.store.find_prefixes(&h.samples)?;
        self.knew_all_peer_heads = h.heads_complete && seqs.iter().all(Option::is_some);
        self.known_points = h
            .heads
            .iter()
            .zip(&seqs)
            .filter(|(_, s)| s.is_some())
            .map(|(h, _)| *h)
            .chain(found.iter().flatten().copied())
            .collect();
        self.shared = self.known_points.clone();
        let filter = if self.recv_on && !self.knew_all_peer_heads {
            // My nodes the peer may be about to offer: outside what we are known to share.
            let cands = paint(&self.store, &self.my_heads, &self.known_points, self.floor)?;
            let mut f = Filter::with_capacity(self.cfg.filter_key, cands.len() as u64);
            if let Some(f) = &mut f {
                for seq in cands {
                    if let Some(e) = self.store.entry_at(seq)? {
                        f.insert(&e.hash);
                    }
                }
            }
            f
        } else {
            None
        };
        self.out.push_back(Message::Summary(Summary {
            known_heads: bitmap(seqs.len(), |i| seqs[i].is_some()),
            known_samples: bitmap(found.len(), |i| found[i].is_some()),
            filter,
        }));
        if self.send_on && self.knew_all_peer_heads {
            // I have everything the peer has: the difference is exact, start now.
            self.shared = h.heads.clone();
            let cands = paint(&self.store, &self.my_heads, &h.heads, self.floor)?;
            self.plan = Some(Plan::new(cands, None));
            self.will_stream = Some(true);
        }
        self.peer = Some(h);
        Ok(())
    }

    fn on_summary(&mut self, s: Summary) -> Result<(), SyncError> {
        self.summary_in = true;
        self.peer_knows_all_mine =
            self.my_heads_complete && (0..self.my_heads.len()).all(|i| bit(&s.known_heads, i));
        if self.will_stream.is_none() {
            if !self.send_on || self.peer_knows_all_mine {
                self.will_stream = Some(false);
            } else {
                let mut points = self.known_points.clone();
                let mine = self.my_heads.iter().enumerate();
                points.extend(
                    mine.filter(|(i, _)| bit(&s.known_heads, *i))
                        .map(|(_, h)| *h),
                );
                let smp = self.my_samples.iter().enumerate();
                points.extend(
                    smp.filter(|(i, _)| bit(&s.known_samples, *i))
                        .map(|(_, h)| *h),
                );
                let cands = paint(&self.store, &self.my_heads, &points, self.floor)?;
                self.shared = points;
                self.plan = Some(Plan::new(cands, s.filter));
                self.will_stream = Some(true);
            }
        }
        self.maybe_finish()
    }

    fn on_want(&mut self, wanted: Vec<Hash>) -> Result<(), SyncError> {
        // Everything under the wanted nodes that is not under a shared point (nor, unless the
        // floor is what failed, at or below the floor). A Want follows a filter false positive
        // or a wrong floor (a peer that lost data but kept its id); either is repaired in one
        // round.
        let direct: Vec<u64> = self.store.seqs_of(&wanted)?.into_iter().flatten().collect();
        let floor = if direct.iter().any(|&s| s <= self.floor) {
            0
        } else {
            self.floor
        };
        let mut seqs = paint(&self.store, &wanted, &self.shared, floor)?;
        let plan = self.plan.as_ref();
        seqs.retain(|s| !plan.is_some_and(|p| p.sent.get(*s)));
        seqs.extend(direct);
        seqs.sort_unstable();
        seqs.dedup();
        self.stats.round_trips += 1;
        self.resend.extend(seqs);
        self.resend_active = true;
        Ok(())
    }

    fn maybe_finish(&mut self) -> Result<(), SyncError> {
        if self.catchup_done {
            return Ok(());
        }
        let ready = self.in_sync
            || (self.summary_in
                && (!self.expect_stream() || self.recv_complete)
                && (self.will_stream == Some(false) || self.peer_done));
        if !ready {
            return Ok(());
        }
        self.catchup_done = true;
        // The peer checks that every head I announced arrived, and every node of mine up to
        // `my_last` lies under those heads; with a truncated head list it cannot check.
        let peer_has_mine = self.in_sync || self.peer_knows_all_mine || self.peer_done;
        if peer_has_mine && self.my_heads_complete {
            // The peer has every node I had at the start, and those it sent me. If nothing
            // else was stored meanwhile, that is my whole feed.
            let last = self.store.last_seq()?;
            let end = if last == self.my_last + self.stats.nodes_received {
                last
            } else {
                self.my_last
            };
            self.store.set_peer_cursor(self.peer(), end)?;
        }
        if self.live {
            self.phase = Phase::Live;
            self.local_last = self.local_last.max(self.store.last_seq()?);
        } else {
            self.phase = Phase::Finished;
        }
        Ok(())
    }

    /// Tells a live session that the local log's newest seq is now `seq`.
    pub fn local_changed(&mut self, seq: u64) {
        self.local_last = self.local_last.max(seq);
    }

    /// Whether [`Session::poll_transmit`] may have something to give.
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
            || !self.resend.is_empty()
            || self.resend_active
            || self.plan.as_ref().is_some_and(|p| !p.done)
            || (self.live_sending()
                && (self.live_next < self.local_last || !self.live_buf.is_empty()))
    }

    /// Whether the driver may read more from the peer: `false` while the outgoing side is
    /// over its bound, so a peer that asks without reading cannot grow it.
    pub fn wants_input(&self) -> bool {
        true
    }

    /// Bytes of peer data the session holds (nodes waiting for their commit or their link),
    /// which the driver accounts against its memory budget.
    pub fn buffered_bytes(&self) -> usize {
        self.batch_bytes + self.pending_bytes
    }

    fn live_sending(&self) -> bool {
        self.phase == Phase::Live && self.send_on && self.plan.as_ref().map_or(true, |p| p.done)
    }

    /// The next message to send, if any. Reads the store for node streams.
    pub fn poll_transmit(&mut self) -> Result<Option<Message>, SyncError> {
        if let Some(m) = self.out.pop_front() {
            return Ok(Some(m));
        }
        if let Some(seq) = self.resend.pop_front() {
            if let Some(e) = self.store.entry_at(seq)? {
                return Ok(Some(self.sent(e)));
            }
        }
        if self.resend_active {
            self.resend_active = false;
            return Ok(Some(Message::EndStream));
        }
        if let Some(plan) = &mut self.plan {
            if !plan.done {
                let next = plan.next(&self.store)?;
                self.stats.filtered = plan.skipped;
                return Ok(Some(match next {
                    Some(e) => self.sent(e),
                    None => Message::EndStream,
                }));
            }
        }
        if self.live_sending() {
            loop {
                if self.live_buf.is_empty() && self.live_next < self.local_last {
                    let chunk = self.store.entries(self.live_next, self.local_last, CHUNK)?;
                    if chunk.is_empty() {
                        self.local_last = self.live_next;
                    }
                    self.live_buf.extend(chunk);
                }
                let Some(e) = self.live_buf.pop_front() else {
                    break;
                };
                self.live_next = e.seq;
                while self.from_peer.front().is_some_and(|r| r.1 < e.seq) {
                    self.from_peer.pop_front();
                }
                // Never echo: what the peer sent us is not sent back.
                if self.from_peer.front().is_some_and(|r| r.0 <= e.seq) {
                    continue;
                }
                return Ok(Some(self.sent(e)));
            }
        }
        Ok(None)
    }

    fn sent(&mut self, e: RawEntry) -> Message {
        self.stats.nodes_sent += 1;
        self.stats.node_bytes_sent += e.bytes.len() as u64;
        Message::Node(e.bytes)
    }

    /// Ends a live session in order: commits, then queues `Close`.
    pub fn close(&mut self) -> Result<(), SyncError> {
        self.commit()?;
        if self.phase != Phase::Finished {
            self.out.push_back(Message::Close);
            self.phase = Phase::Finished;
        }
        Ok(())
    }

    /// The peer's stream ended. Fine once caught up in a live session; otherwise an error.
    /// Either way what was checked is committed.
    pub fn on_eof(&mut self) -> Result<(), SyncError> {
        self.commit()?;
        match self.phase {
            Phase::Finished => Ok(()),
            Phase::Live => {
                self.phase = Phase::Finished;
                self.out.clear();
                Ok(())
            }
            _ => Err(SyncError::UnexpectedEof {
                state: self.state_name(),
            }),
        }
    }

    /// After an error: commits the checked batch (every node in it has its links stored or
    /// earlier in it), so an interrupted sync keeps what it got.
    pub fn salvage(&mut self) {
        let _ = self.commit();
    }
}

#[path = "session_recv.rs"]
mod recv;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
