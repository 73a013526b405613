//! The sans-IO protocol state machine. It takes decoded messages ([`Session::handle`]) and
//! local events, asks its [`SyncStore`], and yields messages to send
//! ([`Session::poll_transmit`]). It never blocks on anything but the store, so the same code
//! runs under the tokio driver, in deterministic tests and in the fuzzer.
//!
//! A session is one state enum, `State`, whose variants hold what each phase needs: the
//! handshake (both `Hello`s, with every head), the catch-up and the live stream (each the
//! peer's `Hello` and the two halves that run side by side: `send.rs`, what this side streams
//! to the peer, and `recv.rs`, what it takes in, each with its own state enum), and the end.
//! [`Phase`] is derived from it, never stored. Which message is legal when is decided in one
//! place, [`Session::handle`]. Every bound is in [`Limits`].

use std::collections::VecDeque;

use super::error::SyncError;
use super::store::{Cursor, SyncStore};
use crate::hash::Hash;
use crate::identity::PeerId;
use crate::sync::wire::message::{bit, Hello, Message, Summary, WireMode};
use crate::sync::wire::message::{MAX_FLOOR_HEADS, MAX_SAMPLES, SAMPLE_PREFIX_LEN};
use plan::paint;

mod filter;
mod handshake;
mod plan;
mod recv;
mod send;

pub use crate::sync::limits::Limits;
use crate::sync::wire::delta;
use recv::RecvHalf;
use send::SendHalf;

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

/// Where a session is, and what that phase holds: the one state of the session. Every
/// combination it can hold is a legal one; [`Phase`] is derived from it.
enum State {
    /// Waiting for the peer's `Hello` and its heads.
    Handshake(Handshake),
    /// Exchanging what each side lacks.
    CatchUp(Box<Exchange>),
    /// Caught up; streaming new nodes both ways.
    Live(Box<Exchange>),
    /// Over.
    Finished(Finished),
}

/// The handshake: the peer's `Hello`, then its remaining heads.
enum Handshake {
    /// Waiting for the peer's `Hello`.
    AwaitHello,
    /// The peer's `Hello` announced more heads than it listed; `Heads` messages follow.
    CollectHeads(Hello),
}

/// A session past its handshake: the peer's `Hello` with every head, what the two sides
/// agreed, and the two halves.
struct Exchange {
    peer: Hello,
    summary: SummaryState,
    /// Either side asked for a live session.
    live: bool,
    send: SendHalf,
    recv: RecvHalf,
}

/// The peer's `Summary`, after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SummaryState {
    /// Same heads: nothing to exchange, no further catch-up message.
    InSync,
    /// Heads differ; the peer's `Summary` is not in yet.
    Awaited,
    /// The peer's `Summary` is in.
    Received,
}

/// How a session ended, keeping what it still answers for.
enum Finished {
    /// During the handshake (an abort, a close): the handshake as it stood.
    Early(Handshake),
    /// After it: the exchange, for the answers still owed, the peer's id and, live, to drop
    /// what crosses a `Close`.
    Done(Box<Exchange>),
}

impl State {
    fn phase(&self) -> Phase {
        match self {
            State::Handshake(_) => Phase::Handshake,
            State::CatchUp(_) => Phase::CatchUp,
            State::Live(_) => Phase::Live,
            State::Finished(_) => Phase::Finished,
        }
    }

    /// The exchange, once the handshake is done (also after the session finished).
    fn exchange(&self) -> Option<&Exchange> {
        match self {
            State::CatchUp(e) | State::Live(e) | State::Finished(Finished::Done(e)) => Some(e),
            State::Handshake(_) | State::Finished(Finished::Early(_)) => None,
        }
    }

    fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match self {
            State::CatchUp(e) | State::Live(e) | State::Finished(Finished::Done(e)) => Some(e),
            State::Handshake(_) | State::Finished(Finished::Early(_)) => None,
        }
    }

    /// The peer's `Hello`, once it arrived.
    fn hello(&self) -> Option<&Hello> {
        match self {
            State::Handshake(Handshake::CollectHeads(h))
            | State::Finished(Finished::Early(Handshake::CollectHeads(h))) => Some(h),
            _ => self.exchange().map(|e| &e.peer),
        }
    }

    /// Ends the session, keeping what the phase held.
    fn finish(&mut self) {
        let was = std::mem::replace(self, State::Handshake(Handshake::AwaitHello));
        *self = State::Finished(match was {
            State::Handshake(h) => Finished::Early(h),
            State::CatchUp(e) | State::Live(e) => Finished::Done(e),
            State::Finished(f) => f,
        });
    }
}

/// One replication session with one peer.
pub struct Session<S: SyncStore> {
    store: S,
    cfg: SessionConfig,
    limits: Limits,
    me: PeerId,
    mine: Mine,
    state: State,
    /// Control messages to send, in order, before any node.
    out: VecDeque<Message>,
    /// Whether nodes may go as `NodeDelta` frames.
    deltas: bool,
    stats: SessionStats,
}

fn samples<St: SyncStore>(store: &St, last: u64) -> Result<Vec<Hash>, SyncError<St::Error>> {
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
    /// Starts a session with the default [`Limits`]: reads the local heads and queues the
    /// `Hello` (and `Heads`, when there are more heads than one message lists).
    pub fn new(store: S, cfg: SessionConfig) -> Result<Session<S>, SyncError<S::Error>> {
        Session::with_limits(store, cfg, Limits::default())
    }

    /// [`Session::new`] with other bounds.
    pub fn with_limits(
        store: S,
        cfg: SessionConfig,
        limits: Limits,
    ) -> Result<Session<S>, SyncError<S::Error>> {
        let me = store.peer_id();
        // One snapshot: a node stored between reading the heads and the last seq would be
        // neither in the catch-up (not under the heads) nor in the live stream (not after it).
        let (heads, last) = store.snapshot()?;
        let samples = samples(&store, last)?;
        let per = limits
            .heads_per_message
            .clamp(1, crate::sync::wire::message::MAX_HEADS_PER_MESSAGE);
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
            state: State::Handshake(Handshake::AwaitHello),
            out,
            deltas: true,
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
        self.state.phase()
    }

    /// The counters so far.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The peer's id, once its `Hello` arrived.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.state.hello().map(|h| h.peer)
    }

    /// Whether the session is over (everything to send has been handed out by
    /// [`Session::poll_transmit`]; the caller still flushes it).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished(_))
            && self.out.is_empty()
            && !self.state.exchange().is_some_and(|e| e.send.has_answers())
    }

    /// Whether the session is (or will be, once caught up) live.
    pub fn is_live(&self) -> bool {
        match self.state.exchange() {
            Some(e) => e.live,
            None => self.cfg.live,
        }
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
        let heads = self.state.hello().map_or(0, |h| h.heads.len() * 32);
        let out: usize = self.out.iter().map(message_size).sum();
        let halves = (self.state.exchange())
            .map_or(0, |e| e.recv.buffered_bytes() + e.send.buffered_bytes());
        heads + out + halves
    }

    fn peer(&self) -> PeerId {
        self.peer_id().unwrap_or(self.me)
    }

    fn state_name(&self) -> &'static str {
        match self.phase() {
            Phase::Handshake => "handshaking",
            Phase::CatchUp => "catching up",
            Phase::Live => "live",
            Phase::Finished => "finished",
        }
    }

    fn unexpected(&self, got: &Message) -> SyncError<S::Error> {
        SyncError::Unexpected {
            state: self.state_name(),
            got: got.name(),
        }
    }

    /// Handles one message from the peer. This is the one table of which message is legal
    /// in which state; anything else is [`SyncError::Unexpected`].
    pub fn handle(&mut self, msg: Message) -> Result<(), SyncError<S::Error>> {
        // An abort is legal in every state, even after a live Close crossed it: the peer is
        // gone either way, and its reason is worth more than "connection closed".
        if let Message::Abort { reason, detail } = msg {
            return Err(SyncError::PeerAborted { reason, detail });
        }
        let ex = match &self.state {
            State::Handshake(Handshake::AwaitHello) => {
                return match msg {
                    Message::Hello(h) => self.on_hello(h),
                    other => Err(self.unexpected(&other)),
                };
            }
            State::Handshake(Handshake::CollectHeads(_)) => {
                return match msg {
                    Message::Heads(h) => self.on_heads(h),
                    other => Err(self.unexpected(&other)),
                };
            }
            // Both sides may close a live session at once; what crosses our Close is dropped
            // (the next sync brings it).
            State::Finished(Finished::Done(e)) if e.live => return Ok(()),
            State::Finished(_) => return Err(self.unexpected(&msg)),
            State::CatchUp(e) | State::Live(e) => e,
        };
        let live = matches!(self.state, State::Live(_));
        let nodes = ex
            .recv
            .accepts_nodes(live, ex.summary == SummaryState::Received);
        match msg {
            Message::Summary(s) if ex.summary == SummaryState::Awaited => self.on_summary(s),
            Message::Node(bytes) if nodes => self.on_node(bytes),
            Message::NodeDelta(body) if nodes => {
                let bytes = delta::expand(ex.recv.prev(), &body)?;
                self.on_node(bytes)
            }
            Message::EndStream if ex.recv.owes_end_stream() => self.on_end_stream(),
            Message::Want(w) if ex.send.answers_wants(live) => self.on_want(w),
            Message::Done if ex.send.awaits_done() => {
                if let Some(e) = self.state.exchange_mut() {
                    e.send.peer_done();
                }
                self.maybe_finish()
            }
            Message::Close if live => {
                self.commit()?;
                self.state.finish();
                Ok(())
            }
            other => Err(self.unexpected(&other)),
        }
    }

    fn on_summary(&mut self, s: Summary) -> Result<(), SyncError<S::Error>> {
        let ex = self.state.exchange_mut().expect("checked by handle");
        ex.summary = SummaryState::Received;
        let peer_knows_all_mine = (0..self.mine.heads.len()).all(|i| bit(&s.known_heads, i));
        if let Some(mut points) = ex.send.take_known_points() {
            if peer_knows_all_mine {
                ex.send.peer_done();
            } else {
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
                let floor = ex.send.floor();
                let painted = paint(
                    &self.store,
                    &self.mine.heads,
                    &points,
                    floor,
                    self.limits.plan_walk,
                )?;
                ex.send
                    .start(painted.or_everything_below(floor), s.filter, points);
            }
        }
        if ex.recv.is_streaming() && !s.floor.is_empty() {
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
                ex.recv.ask(lacking, &mut self.out, &mut self.stats, false);
            }
        }
        self.maybe_finish()
    }

    /// Ends the catch-up when both halves are done: remembers the peer, then goes live or
    /// finishes.
    fn maybe_finish(&mut self) -> Result<(), SyncError<S::Error>> {
        let State::CatchUp(ex) = &self.state else {
            return Ok(());
        };
        if ex.summary == SummaryState::Awaited || !ex.send.caught_up() || !ex.recv.caught_up() {
            return Ok(());
        }
        if ex.send.is_caught() {
            self.remember_peer()?;
        }
        let State::CatchUp(mut ex) =
            std::mem::replace(&mut self.state, State::Handshake(Handshake::AwaitHello))
        else {
            unreachable!("checked above");
        };
        if ex.live {
            ex.send.local_changed(self.store.last_seq()?);
            self.state = State::Live(ex);
        } else {
            self.state = State::Finished(Finished::Done(ex));
        }
        Ok(())
    }

    /// The peer has every node I had at the start and those it sent me: remember a floor
    /// with heads that prove it (checked by the peer next time).
    fn remember_peer(&mut self) -> Result<(), SyncError<S::Error>> {
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

    /// Tells a live session that the local log's newest seq is now `seq`. Before the
    /// handshake is done there is no stream to tell: going live reads the store's newest seq.
    pub fn local_changed(&mut self, seq: u64) {
        if let Some(e) = self.state.exchange_mut() {
            e.send.local_changed(seq);
        }
    }

    /// Whether [`Session::poll_transmit`] may have something to give.
    pub fn wants_transmit(&self) -> bool {
        let live = matches!(self.state, State::Live(_));
        !self.out.is_empty() || (self.state.exchange()).is_some_and(|e| e.send.wants_transmit(live))
    }

    /// Whether nodes may go as `NodeDelta` frames (on by default). A delta refers to the node
    /// of the frame before it, so a harness that reorders a session's node frames (to test
    /// another arrival order) turns them off.
    pub fn set_node_deltas(&mut self, on: bool) {
        self.deltas = on;
        if let Some(e) = self.state.exchange_mut() {
            e.send.set_deltas(on);
        }
    }

    /// The next message to send, if any. Reads the store for node streams.
    pub fn poll_transmit(&mut self) -> Result<Option<Message>, SyncError<S::Error>> {
        if let Some(m) = self.out.pop_front() {
            return Ok(Some(m));
        }
        let live = matches!(self.state, State::Live(_));
        match self.state.exchange_mut() {
            Some(e) => e.send.poll(&self.store, live, &mut self.stats),
            None => Ok(None),
        }
    }

    /// Ends a live session in order: commits, then queues `Close`.
    pub fn close(&mut self) -> Result<(), SyncError<S::Error>> {
        self.commit()?;
        if !matches!(self.state, State::Finished(_)) {
            self.out.push_back(Message::Close);
            self.state.finish();
        }
        Ok(())
    }

    /// Forgets what was queued to send: the peer will read none of it.
    fn drop_output(&mut self) {
        self.out.clear();
        if let Some(e) = self.state.exchange_mut() {
            e.send.clear_answers();
        }
    }

    /// The peer's stream ended. Fine once caught up in a live session; otherwise an error.
    /// Either way what was checked is committed.
    pub fn on_eof(&mut self) -> Result<(), SyncError<S::Error>> {
        self.commit()?;
        match self.state {
            State::Finished(_) => Ok(()),
            State::Live(_) => {
                self.state.finish();
                self.drop_output();
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
    pub fn abort(&mut self, err: &SyncError<S::Error>) -> Option<Message> {
        self.salvage();
        self.drop_output();
        self.state.finish();
        let reason = err.abort_reason()?;
        Some(Message::Abort {
            reason,
            detail: crate::sync::wire::message::clip_detail(&err.to_string()),
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
#[cfg(test)]
mod tests_plan;
