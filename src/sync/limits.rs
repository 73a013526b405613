//! Every bound and timeout of replication, in one table. Anything a peer can grow (frames,
//! lists, buffers, queues, rounds, work per message, connections, time) is bounded here;
//! `docs/PROTOCOL.md` ("Limits and timeouts") lists each with what a peer that exceeds it
//! gets. The sections go bottom up: the wire's hard bounds (every implementation must keep
//! them; [`crate::sync::wire`] re-exports them), the session's [`Limits`] (may be tightened),
//! the driver's timings, the server's defaults and its memory budget, then iroh and gossip.
// The driver's and the server's constants are used only with the `net` feature.
#![cfg_attr(not(feature = "net"), allow(dead_code))]

use std::time::Duration;

use crate::node::MAX_NODE_BYTES;

// --- The wire: hard bounds of every message. ---

/// Largest frame body (kind byte included): the largest node plus one kind byte, rounded up.
/// Every other message is bounded to fit under it too.
pub const MAX_FRAME_BYTES: usize = MAX_NODE_BYTES + 64;

/// Most heads one `Hello` or `Heads` message lists. A replica with more heads sends the rest
/// in `Heads` messages right after its `Hello`.
pub const MAX_HEADS_PER_MESSAGE: usize = 4096;

/// Most heads a `Hello` may announce in all (`Hello::head_count`): the wire's hard bound. A
/// session may accept fewer ([`Limits::peer_heads`]).
pub const MAX_HEADS: usize = 1 << 20;

/// Most hashes in a `Summary`'s `floor`.
pub const MAX_FLOOR_HEADS: usize = 16;

/// Most feed samples a `Hello` carries.
pub const MAX_SAMPLES: usize = 64;

/// Most hashes in one `Want`.
pub const MAX_WANT: usize = 16 * 1024;

/// Largest Bloom filter bit array, in bytes.
pub const MAX_FILTER_BYTES: usize = 1 << 20;

/// Most probes per filter entry.
pub const MAX_FILTER_PROBES: u8 = 16;

/// Longest `Abort` detail, in bytes: enough for one error message, too little to make an
/// abort a way to ship data.
pub const MAX_ABORT_DETAIL: usize = 512;

// --- The session: what one peer may make it buffer, walk or ask for. ---

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

// --- The driver: timings and buffers of one connection. ---

/// Default of `SyncOptions::handshake_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Default of `SyncOptions::idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of frames prepared per trip to the blocking pool.
pub(crate) const OUT_CHUNK: usize = 256 * 1024;
/// The read buffer starts small (an idle connection costs little) and doubles up to
/// [`READ_MAX`] while reads fill it.
pub(crate) const READ_START: usize = 8 * 1024;
/// The read buffer's largest size.
pub(crate) const READ_MAX: usize = 64 * 1024;
/// Progress is reported at most once per this many nodes (and on every phase change).
pub(crate) const PROGRESS_EVERY: u64 = 1000;
/// How often a live session checks the store for commits made by another process.
pub(crate) const LIVE_POLL: Duration = Duration::from_secs(1);
/// After a shutdown, how long a busy session may take to finish (a live one to write its
/// `Close`) before it ends anyway.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a failing session may take to tell the peer why.
pub(crate) const ABORT_GRACE: Duration = Duration::from_secs(2);
/// Most bytes read from the peer after an abort, waiting for it to close.
pub(crate) const ABORT_DRAIN: usize = 256 * 1024;
/// A session that moved no byte for this long when a shutdown comes is idle: it ends at once.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

// --- The server: connections, accept errors, the shared memory budget. ---

/// Default of `ServeOptions::max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default of `ServeOptions::memory_budget`.
pub const DEFAULT_MEMORY_BUDGET: usize = 128 << 20;
/// The first backoff after an accept error that is not one connection's own ...
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ... doubled up to this.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bytes of peer data each connection may buffer without taking from the budget: every
/// frame up to this size is read without ever waiting for memory.
pub const FREE_BYTES: usize = 64 * 1024;
/// The smallest budget: one honest session's worst need (a receive batch of 4 MiB and one
/// frame of [`MAX_FRAME_BYTES`]) with room to spare.
pub const MIN_MEMORY_BUDGET: usize = 8 << 20;

const _: () = assert!(MIN_MEMORY_BUDGET > BATCH_BYTES + MAX_FRAME_BYTES);

// --- iroh and gossip (feature `iroh`). ---

/// Most bytes read from an iroh peer after a session ended (a well-behaved peer sends none).
#[cfg(feature = "iroh")]
pub(crate) const IROH_DRAIN: usize = 64 * 1024;
/// After its session, how long an iroh side waits for the peer to acknowledge its last bytes
/// before it closes the connection (closing drops bytes still in flight).
#[cfg(feature = "iroh")]
pub(crate) const IROH_LINGER: Duration = Duration::from_secs(5);
/// The largest gossip message iroh-gossip carries for braidlog (its own wire bound; ours,
/// `MAX_ANNOUNCE_BYTES`, is tighter).
#[cfg(feature = "iroh")]
pub const GOSSIP_MAX_MESSAGE: usize = 4096;
