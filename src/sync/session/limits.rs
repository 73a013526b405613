//! Every bound of a session, in one table. Anything a peer can grow (buffers, queues, rounds,
//! work per message) is bounded here; `docs/PROTOCOL.md` ("Limits and timeouts") lists each
//! with what a peer that exceeds it gets. The wire's hard bounds (frame size, list lengths per
//! message) are in [`crate::sync::message`]; these are the session's, and may be tightened.

use crate::sync::message::{MAX_HEADS, MAX_HEADS_PER_MESSAGE};

/// Nodes per receive transaction (each commit is durable by default, so fewer is faster).
pub const BATCH_NODES: usize = 10_000;
/// Bytes per receive transaction.
pub const BATCH_BYTES: usize = 4 << 20;
/// Nodes held back because a link has not arrived yet.
pub const MAX_PENDING_NODES: usize = 100_000;
/// Bytes held back likewise.
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// `Want` rounds this side asks for in the catch-up phase before a missing node is an error.
pub const MAX_WANT_ROUNDS: u32 = 2;

/// The bounds of one session. [`Limits::default`] is what [`super::Session::new`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Heads this side lists per `Hello` / `Heads` message (at most
    /// [`MAX_HEADS_PER_MESSAGE`]).
    pub heads_per_message: usize,
    /// Heads the peer may announce in all (`Hello::head_count`, at most [`MAX_HEADS`]); over
    /// it, [`crate::sync::SyncError::TooManyHeads`]. 32 bytes each are held until the
    /// handshake is done.
    pub peer_heads: usize,
    /// Nodes per receive transaction.
    pub batch_nodes: usize,
    /// Bytes per receive transaction.
    pub batch_bytes: usize,
    /// Received nodes held because a link has not arrived; over it,
    /// [`crate::sync::SyncError::TooManyPending`].
    pub pending_nodes: usize,
    /// Bytes of such nodes.
    pub pending_bytes: usize,
    /// `Want` rounds this side asks in catch-up before a missing node is an error.
    pub want_rounds: u32,
    /// `Want`s this side answers in one session (catch-up and live together); one more is
    /// [`crate::sync::SyncError::TooManyWants`].
    pub wants_answered: u32,
    /// Nodes walked to answer one `Want`, on top of the catch-up plan's own size (so an
    /// honest `Want` after a false positive is always answered); over it, `TooManyWants`.
    pub want_walk: usize,
    /// Nodes walked, and entries put into the Bloom filter, to answer a `Hello`. Past it the
    /// filter covers only the newest of this side's nodes outside the shared part: the peer
    /// may then send nodes this side has (counted as duplicates), never fewer.
    pub filter_walk: usize,
    /// Nodes walked to plan the catch-up stream. Past it, every node the walk did not reach
    /// (and that lies above the floor) is sent too: a peer that claims to share only a very
    /// old node gets more nodes, never fewer, and cannot make the walk longer than this.
    pub plan_walk: usize,
    /// Messages queued to send (not counting node streams, which are read from the store as
    /// the transport takes them) above which [`super::Session::wants_input`] says stop.
    pub queued_messages: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            heads_per_message: MAX_HEADS_PER_MESSAGE,
            peer_heads: MAX_HEADS / 4,
            batch_nodes: BATCH_NODES,
            batch_bytes: BATCH_BYTES,
            pending_nodes: MAX_PENDING_NODES,
            pending_bytes: MAX_PENDING_BYTES,
            want_rounds: MAX_WANT_ROUNDS,
            wants_answered: 8,
            want_walk: 1 << 16,
            filter_walk: 1 << 16,
            plan_walk: 1 << 20,
            queued_messages: 64,
        }
    }
}
