//! The sans-IO protocol state machine. It takes decoded messages ([`Session::handle`]) and
//! local events, asks its [`SyncStore`], and yields messages to send
//! ([`Session::poll_transmit`]). It never blocks on anything but the store, so the same code
//! runs under the tokio driver, in deterministic tests and in the fuzzer.
//!
//! A session is a handshake (both `Hello`s, with every head), then two halves that run side by
//! side, each an explicit state enum: `send.rs` (what this side streams to the peer) and
//! `recv.rs` (what it takes in). Which message is legal when is decided in one place,
//! [`Session::handle`]. Every bound is in [`Limits`].

use std::collections::VecDeque;

use super::error::SyncError;
use super::message::{bit, bitmap, Hello, Message, Summary, WireMode};
use super::message::{MAX_FLOOR_HEADS, MAX_SAMPLES, SAMPLE_PREFIX_LEN};
use super::plan::paint;
use super::store::{Cursor, SyncStore};
use crate::hash::Hash;
use crate::identity::PeerId;

pub mod delta;
mod limits;
mod recv;
mod send;

pub use limits::{
    Limits, BATCH_BYTES, BATCH_NODES, MAX_PENDING_BYTES, MAX_PENDING_NODES, MAX_WANT_ROUNDS,
};
use recv::{RecvHalf, RecvState};
use send::{SendHalf, SendState};

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
    /// Waiting for the peer's `Hello` (and the `Heads` that follow it).
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

/// This side's state when the session began: one snapshot, so that every node at or below
/// `last` is reachable from `heads`.
struct Mine {
    heads: Vec<Hash>,
    last: u64,
    samples: Vec<Hash>,
}

/// The handshake: the peer's `Hello`, then its remaining heads.
enum Handshake {
    /// Waiting for the peer's `Hello`.
    AwaitHello,
    /// The peer's `Hello` announced more heads than it listed; `Heads` messages follow.
    CollectHeads(Hello),
    /// The peer's `Hello` with every head.
    Done(Hello),
}

/// What the two sides have agreed after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// Same heads: nothing to exchange, no further catch-up message.
    InSync,
    /// Heads differ; the peer's `Summary` is not in yet.
    AwaitSummary,
    /// The peer's `Summary` is in.
    Summarised,
}

/// One replication session with one peer.
pub struct Session<S: SyncStore> {
    store: S,
    cfg: SessionConfig,
    limits: Limits,
    me: PeerId,
    mine: Mine,
    hs: Handshake,
    exchange: Exchange,
    phase: Phase,
    live: bool,
    /// Control messages to send, in order, before any node.
    out: VecDeque<Message>,
    send: SendHalf,
    recv: RecvHalf,
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

fn mode_name(send: bool) -> &'static str {
    if send {
        "only pushes"
    } else {
        "only pulls"
    }
}

impl<S: SyncStore> Session<S> {
    /// Starts a session with the default [`Limits`]: reads the local heads and queues the
    /// `Hello` (and `Heads`, when there are more heads than one message lists).
    pub fn new(store: S, cfg: SessionConfig) -> Result<Session<S>, SyncError> {
        Session::with_limits(store, cfg, Limits::default())
    }

    /// [`Session::new`] with other bounds.
    pub fn with_limits(
        store: S,
        cfg: SessionConfig,
        limits: Limits,
    ) -> Result<Session<S>, SyncError> {
        let me = store.peer_id();
        // One snapshot: a node stored between reading the heads and the last seq would be
        // neither in the catch-up (not under the heads) nor in the live stream (not after it).
        let (heads, last) = store.snapshot()?;
        let samples = samples(&store, last)?;
        let per = limits
            .heads_per_message
            .clamp(1, super::message::MAX_HEADS_PER_MESSAGE);
        let mut out = VecDeque::new();
        out.push_back(Message::Hello(Hello {
            peer: me,
            mode: WireMode {
                send: cfg.mode != Mode::Pull,
                receive: cfg.mode != Mode::Push,
                live: cfg.live,
            },
            last_seq: last,
            head_count: heads.len() as u64,
            heads: heads[..heads.len().min(per)].to_vec(),
            samples: samples
                .iter()
                .map(|h| h.0[..SAMPLE_PREFIX_LEN].try_into().expect("prefix"))
                .collect(),
        }));
        // Every head is announced, however many: a node reachable only from an unlisted head
        // could otherwise be missed by both sides without either noticing.
        for chunk in heads.chunks(per).skip(1) {
            out.push_back(Message::Heads(chunk.to_vec()));
        }
        Ok(Session {
            store,
            me,
            hs: Handshake::AwaitHello,
            exchange: Exchange::AwaitSummary,
            phase: Phase::Handshake,
            live: false,
            out,
            send: SendHalf::new(last),
            recv: RecvHalf::new(),
            mine: Mine {
                heads,
                last,
                samples,
            },
            cfg,
            limits,
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
        match &self.hs {
            Handshake::AwaitHello => None,
            Handshake::CollectHeads(h) | Handshake::Done(h) => Some(h.peer),
        }
    }

    /// Whether the session is over (everything to send has been handed out by
    /// [`Session::poll_transmit`]; the caller still flushes it).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished && self.out.is_empty() && !self.send.has_answers()
    }

    /// Whether the session is (or will be, once caught up) live.
    pub fn is_live(&self) -> bool {
        self.live || (!matches!(self.hs, Handshake::Done(_)) && self.cfg.live)
    }

    /// Whether the driver should read more input now. False while more than
    /// [`Limits::queued_messages`] control messages wait to be sent: a peer that sends but
    /// never reads then stops being read too, and the session's memory stays bounded. Node
    /// streams are read from the store only as the transport takes them and never count
    /// here, so two sides streaming to each other cannot block each other through this.
    pub fn wants_input(&self) -> bool {
        self.out.len() <= self.limits.queued_messages
    }

    /// Bytes this session holds on behalf of the peer (received nodes not yet stored, the
    /// peer's heads during the handshake, queued answers and messages), so that a driver can
    /// enforce a budget across all its sessions.
    pub fn buffered_bytes(&self) -> usize {
        let heads = match &self.hs {
            Handshake::CollectHeads(h) | Handshake::Done(h) => h.heads.len() * 32,
            Handshake::AwaitHello => 0,
        };
        let out: usize = self.out.iter().map(message_size).sum();
        heads + out + self.recv.buffered_bytes() + self.send.buffered_bytes()
    }

    fn peer(&self) -> PeerId {
        self.peer_id().unwrap_or(self.me)
    }

    fn peer_hello(&self) -> Option<&Hello> {
        match &self.hs {
            Handshake::Done(h) => Some(h),
            _ => None,
        }
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

    /// Handles one message from the peer. This is the one table of which message is legal
    /// in which state; anything else is [`SyncError::Unexpected`].
    pub fn handle(&mut self, msg: Message) -> Result<(), SyncError> {
        // An abort is legal in every state, even after a live Close crossed it: the peer is
        // gone either way, and its reason is worth more than "connection closed".
        if let Message::Abort { reason, detail } = msg {
            return Err(SyncError::PeerAborted { reason, detail });
        }
        if self.phase == Phase::Finished && self.live {
            // Both sides may close a live session at once; what crosses our Close is dropped
            // (the next sync brings it).
            return Ok(());
        }
        let handshake_done = matches!(self.hs, Handshake::Done(_));
        let live = self.phase == Phase::Live;
        match msg {
            Message::Hello(h) if matches!(self.hs, Handshake::AwaitHello) => self.on_hello(h),
            Message::Heads(h) if matches!(self.hs, Handshake::CollectHeads(_)) => self.on_heads(h),
            Message::Summary(s) if handshake_done && self.exchange == Exchange::AwaitSummary => {
                self.on_summary(s)
            }
            Message::Node(bytes)
                if handshake_done && self.recv.accepts_nodes(live, self.exchange_summarised()) =>
            {
                self.on_node(bytes)
            }
            Message::NodeDelta(body)
                if handshake_done && self.recv.accepts_nodes(live, self.exchange_summarised()) =>
            {
                let bytes = delta::expand(&self.recv.prev, &body)?;
                self.on_node(bytes)
            }
            Message::EndStream if handshake_done && self.recv.owes_end_stream() => {
                self.on_end_stream()
            }
            Message::Want(w) if handshake_done && self.send.answers_wants(live) => self.on_want(w),
            Message::Done if self.send.state == SendState::AwaitDone => {
                self.send.state = SendState::Caught;
                self.maybe_finish()
            }
            Message::Close if live => {
                self.commit()?;
                self.phase = Phase::Finished;
                Ok(())
            }
            other => Err(self.unexpected(&other)),
        }
    }

    fn exchange_summarised(&self) -> bool {
        self.exchange == Exchange::Summarised
    }

    fn on_hello(&mut self, h: Hello) -> Result<(), SyncError> {
        if h.peer == self.me {
            return Err(SyncError::SelfSync { peer: h.peer });
        }
        if h.head_count > self.limits.peer_heads as u64 {
            return Err(SyncError::TooManyHeads {
                peer: h.peer,
                count: h.head_count,
                max: self.limits.peer_heads,
            });
        }
        if (h.heads.len() as u64) < h.head_count {
            self.hs = Handshake::CollectHeads(h);
            return Ok(());
        }
        self.on_peer_heads(h)
    }

    fn on_heads(&mut self, more: Vec<Hash>) -> Result<(), SyncError> {
        let Handshake::CollectHeads(mut h) = std::mem::replace(&mut self.hs, Handshake::AwaitHello)
        else {
            unreachable!("checked by handle");
        };
        if (h.heads.len() + more.len()) as u64 > h.head_count {
            return Err(SyncError::Malformed {
                kind: "Heads",
                reason: format!("more heads than the {} announced", h.head_count),
            });
        }
        h.heads.extend(more);
        if (h.heads.len() as u64) < h.head_count {
            self.hs = Handshake::CollectHeads(h);
            return Ok(());
        }
        self.on_peer_heads(h)
    }

    /// The peer's `Hello` with all its heads: decides who streams and answers with a
    /// `Summary` (unless both have the same heads).
    fn on_peer_heads(&mut self, h: Hello) -> Result<(), SyncError> {
        let send_on = self.cfg.mode != Mode::Pull && h.mode.receive;
        let recv_on = self.cfg.mode != Mode::Push && h.mode.send;
        if !send_on && !recv_on {
            return Err(SyncError::ModeMismatch {
                peer: h.peer,
                mine: mode_name(self.cfg.mode == Mode::Push),
                theirs: mode_name(h.mode.send),
            });
        }
        self.live = self.cfg.live || h.mode.live;
        self.stats.total_hint = Some(h.last_seq);
        self.phase = Phase::CatchUp;
        let cursor = self.store.peer_cursor(h.peer)?;
        if let Some(c) = &cursor {
            if c.seq <= self.mine.last {
                self.send.set_floor(c.seq, c.heads.clone());
            }
        }
        if h.heads == self.mine.heads {
            self.exchange = Exchange::InSync;
            self.send.state = if send_on {
                SendState::Caught
            } else {
                SendState::Off
            };
            self.send.shared = self.mine.heads.clone();
            self.recv.state = if recv_on {
                RecvState::Caught
            } else {
                RecvState::Off
            };
            self.hs = Handshake::Done(h);
            return self.maybe_finish();
        }
        // Only nodes this side had at its snapshot count as known. The peer decides from our
        // Hello (the snapshot) whether we will stream to it; a head of the peer's stored since
        // (a local write, another session) could otherwise make us start a stream that the
        // peer, knowing all our heads, does not expect.
        let last = self.mine.last;
        let seqs: Vec<Option<u64>> = (self.store.seqs_of(&h.heads)?.into_iter())
            .map(|s| s.filter(|&s| s <= last))
            .collect();
        let found = self.store.find_prefixes(&h.samples)?;
        let knew_all = seqs.iter().all(Option::is_some);
        let known_points: Vec<Hash> = (h.heads.iter().zip(&seqs))
            .filter(|(_, s)| s.is_some())
            .map(|(h, _)| *h)
            .chain(found.iter().flatten().copied())
            .collect();
        // No filter when nothing shared is known: the peer's samples reach back through its
        // whole feed, so finding none of them means it shares (almost) nothing with me, and
        // a filter over my log would cost me a walk and hashing for nothing.
        let filter = if recv_on && !knew_all && !known_points.is_empty() {
            self.filter(&known_points)?
        } else {
            None
        };
        // With all the peer's heads known the plan uses no floor, so there is none to check.
        let floor = if send_on && !knew_all && self.send.floor > 0 {
            self.send.floor_heads.clone()
        } else {
            Vec::new()
        };
        self.out.push_back(Message::Summary(Summary {
            known_heads: bitmap(seqs.len(), |i| seqs[i].is_some()),
            known_samples: bitmap(found.len(), |i| found[i].is_some()),
            filter,
            floor,
        }));
        self.send.known_points = known_points;
        self.send.state = if !send_on {
            SendState::Off
        } else if knew_all {
            // I have everything the peer has: the difference is exact, start now. No floor is
            // needed (the walk stops at the peer's heads), so none can be wrong.
            let painted = paint(
                &self.store,
                &self.mine.heads,
                &h.heads,
                0,
                self.limits.plan_walk,
            )?;
            self.send.shared = h.heads.clone();
            self.send.start(painted.or_everything_below(0), None)
        } else {
            SendState::AwaitSummary
        };
        self.recv.state = if !recv_on {
            RecvState::Off
        } else if knew_all {
            RecvState::Caught
        } else {
            self.recv.owed = 1;
            RecvState::Stream
        };
        self.exchange = Exchange::AwaitSummary;
        self.hs = Handshake::Done(h);
        Ok(())
    }

    /// A Bloom filter of my nodes the peer may be about to offer: those outside what we are
    /// known to share. Its cost is bounded by [`Limits::filter_walk`], so a `Hello` from a
    /// peer that shares nothing costs a bounded walk, not one over the whole log.
    fn filter(&self, known_points: &[Hash]) -> Result<Option<super::message::Filter>, SyncError> {
        let painted = paint(
            &self.store,
            &self.mine.heads,
            known_points,
            self.send.floor,
            self.limits.filter_walk,
        )?;
        let mut f =
            super::message::Filter::with_capacity(self.cfg.filter_key, painted.seqs.len() as u64);
        if let Some(f) = &mut f {
            for h in send::hashes_at(&self.store, &painted.seqs)? {
                f.insert(&h);
            }
        }
        Ok(f)
    }

    fn on_summary(&mut self, s: Summary) -> Result<(), SyncError> {
        self.exchange = Exchange::Summarised;
        let peer_knows_all_mine = (0..self.mine.heads.len()).all(|i| bit(&s.known_heads, i));
        if self.send.state == SendState::AwaitSummary {
            self.send.state = if peer_knows_all_mine {
                SendState::Caught
            } else {
                let mut points = std::mem::take(&mut self.send.known_points);
                let mine = self.mine.heads.iter().enumerate();
                points.extend(
                    mine.filter(|(i, _)| bit(&s.known_heads, *i))
                        .map(|(_, h)| *h),
                );
                let smp = self.mine.samples.iter().enumerate();
                points.extend(
                    smp.filter(|(i, _)| bit(&s.known_samples, *i))
                        .map(|(_, h)| *h),
                );
                let floor = self.send.floor;
                let painted = paint(
                    &self.store,
                    &self.mine.heads,
                    &points,
                    floor,
                    self.limits.plan_walk,
                )?;
                self.send.shared = points;
                self.send
                    .start(painted.or_everything_below(floor), s.filter)
            };
        }
        if self.recv.state == RecvState::Stream && !s.floor.is_empty() {
            // The peer will not send what it believes I had at its floor. Check that belief:
            // if I lack any of its floor heads, its memory of me is wrong (another replica
            // with my id, or lost data), and asking for them makes it send from scratch.
            let seqs = self.store.seqs_of(&s.floor)?;
            let lacking: Vec<Hash> = (s.floor.iter().zip(seqs))
                .filter(|(_, s)| s.is_none())
                .map(|(h, _)| *h)
                .take(MAX_FLOOR_HEADS)
                .collect();
            if !lacking.is_empty() {
                self.recv
                    .ask(lacking, &mut self.out, &mut self.stats, false);
            }
        }
        self.maybe_finish()
    }

    /// Ends the catch-up when both halves are done: remembers the peer, then goes live or
    /// finishes.
    fn maybe_finish(&mut self) -> Result<(), SyncError> {
        if self.phase != Phase::CatchUp
            || self.exchange == Exchange::AwaitSummary
            || !self.send.caught_up()
            || !self.recv.caught_up()
        {
            return Ok(());
        }
        if self.send.state == SendState::Caught {
            self.remember_peer()?;
        }
        if self.live {
            self.phase = Phase::Live;
            let last = self.store.last_seq()?;
            self.send.local_changed(last);
        } else {
            self.phase = Phase::Finished;
        }
        Ok(())
    }

    /// The peer has every node I had at the start and those it sent me: remember a floor
    /// with heads that prove it (checked by the peer next time).
    fn remember_peer(&mut self) -> Result<(), SyncError> {
        let (heads, last) = self.store.snapshot()?;
        // If nothing but the peer's nodes was stored meanwhile, the peer has my whole feed.
        let cursor = if last == self.mine.last + self.stats.nodes_received
            && heads.len() <= MAX_FLOOR_HEADS
        {
            Some(Cursor { seq: last, heads })
        } else if self.mine.heads.len() <= MAX_FLOOR_HEADS && self.mine.last > 0 {
            Some(Cursor {
                seq: self.mine.last,
                heads: self.mine.heads.clone(),
            })
        } else {
            None
        };
        let cursor = cursor.filter(|c| c.seq > 0 && !c.heads.is_empty());
        // An already-in-sync check finds the cursor it would write: writing it again would
        // cost a durable commit (an fsync) for nothing.
        if self.store.peer_cursor(self.peer())? != cursor {
            self.store.set_peer_cursor(self.peer(), cursor.as_ref())?;
        }
        Ok(())
    }

    /// Tells a live session that the local log's newest seq is now `seq`.
    pub fn local_changed(&mut self, seq: u64) {
        self.send.local_changed(seq);
    }

    /// Whether [`Session::poll_transmit`] may have something to give.
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty() || self.send.wants_transmit(self.phase == Phase::Live)
    }

    /// Whether nodes may go as `NodeDelta` frames (on by default). A delta refers to the node
    /// of the frame before it, so a harness that reorders a session's node frames (to test
    /// another arrival order) turns them off.
    pub fn set_node_deltas(&mut self, on: bool) {
        self.send.deltas = on;
    }

    /// The next message to send, if any. Reads the store for node streams.
    pub fn poll_transmit(&mut self) -> Result<Option<Message>, SyncError> {
        if let Some(m) = self.out.pop_front() {
            return Ok(Some(m));
        }
        let live = self.phase == Phase::Live;
        self.send.poll(&self.store, live, &mut self.stats)
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
                self.send.clear_answers();
                Ok(())
            }
            _ => Err(SyncError::UnexpectedEof {
                state: self.state_name(),
            }),
        }
    }

    /// After `err` ended the session on this side: commits the checked batch (as
    /// [`Session::salvage`]) and gives the `Abort` to send the peer, if there is anyone to
    /// tell (see [`SyncError::abort_reason`]). The session's counters then include the
    /// nodes that batch committed.
    pub fn abort(&mut self, err: &SyncError) -> Option<Message> {
        self.salvage();
        self.out.clear();
        self.send.clear_answers();
        self.phase = Phase::Finished;
        let reason = err.abort_reason()?;
        Some(Message::Abort {
            reason,
            detail: super::message::clip_detail(&err.to_string()),
        })
    }

    /// After an error: commits the checked batch (every node in it has its links stored or
    /// earlier in it), so an interrupted sync keeps what it got.
    pub fn salvage(&mut self) {
        let _ = self.commit();
    }
}

/// About the bytes a queued message holds.
fn message_size(m: &Message) -> usize {
    match m {
        Message::Heads(h) | Message::Want(h) => h.len() * 32,
        Message::Summary(s) => {
            s.known_heads.len() + s.filter.as_ref().map_or(0, |f| f.bits.len()) + 64
        }
        Message::Node(b) | Message::NodeDelta(b) => b.len(),
        _ => 64,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_abort;
#[cfg(test)]
mod tests_bounds;
