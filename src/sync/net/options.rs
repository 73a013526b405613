//! What a caller says about one sync ([`SyncOptions`]) and what it gets back ([`SyncReport`],
//! [`Progress`]).

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::budget::MemoryBudget;
use crate::identity::PeerId;
use crate::sync::limits::{Limits, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT};
use crate::sync::session::{Mode, Phase};

/// How to run a sync.
///
/// The timeouts (on by default) and live sessions need a runtime with timers
/// (`enable_time` or `enable_all`); on one without, set both timeouts to `None`.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Direction (default both ways).
    pub mode: Mode,
    /// Keep the session open after catching up, forwarding new nodes both ways (from local
    /// writes and from any other peer) until either side closes. A live session checks the
    /// store's feed every second for commits made by other processes.
    pub live: bool,
    /// Receives [`Progress`] events; never blocks the sync (events are dropped when full).
    pub progress: Option<mpsc::Sender<Progress>>,
    /// When this turns `true` (or its sender is dropped), the session stops: a live one
    /// closes in order (commits, sends `Close`); one still handshaking, or catching up with
    /// no byte moved for a second, ends at once; one busy catching up may finish for up to
    /// 5 s. One that ends early commits what it checked and fails with
    /// [`crate::sync::SyncError::ShuttingDown`].
    pub shutdown: Option<watch::Receiver<bool>>,
    /// Fail with [`crate::sync::SyncError::Timeout`] when the peer's `Hello` has not arrived this
    /// long after the start, however it trickles bytes.
    /// Default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: wait forever.
    pub handshake_timeout: Option<Duration>,
    /// Fail with [`crate::sync::SyncError::Timeout`] when nothing moves either way for this long
    /// before the session is live. A live session may be quiet for any time, but not while
    /// it holds part of a frame, waits for memory, or has bytes the peer does not take. Default
    /// [`DEFAULT_IDLE_TIMEOUT`]; `None`: wait forever.
    pub idle_timeout: Option<Duration>,
    /// The budget that peer data beyond [`crate::sync::FREE_BYTES`] per connection is taken
    /// from; a server shares one across its sessions. `None`: only the per-message limits
    /// bound what this session buffers.
    pub memory: Option<MemoryBudget>,
    /// The session's bounds (what a peer may make it buffer, walk or ask for); default
    /// [`Limits::default`]. Tighten them for a server facing untrusted peers; a peer that
    /// exceeds one gets the typed error the field names, and an `Abort`.
    pub limits: Limits,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            mode: Mode::default(),
            live: false,
            progress: None,
            shutdown: None,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            memory: None,
            limits: Limits::default(),
        }
    }
}

impl SyncOptions {
    /// Options for `mode`, not live, default timeouts.
    pub fn new(mode: Mode) -> SyncOptions {
        SyncOptions {
            mode,
            ..SyncOptions::default()
        }
    }

    /// The same options, live.
    pub fn live(mut self) -> SyncOptions {
        self.live = true;
        self
    }
}

/// A progress event, for drawing a bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Where the session is.
    pub phase: Phase,
    /// Nodes sent so far.
    pub nodes_sent: u64,
    /// New nodes stored so far.
    pub nodes_received: u64,
    /// Bytes on the wire so far, both ways.
    pub bytes: u64,
    /// The peer's feed length: an upper bound of what may be received.
    pub total_hint: Option<u64>,
}

/// What a finished sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The peer (`None` if it never said hello).
    pub peer: Option<PeerId>,
    /// Nodes sent.
    pub nodes_sent: u64,
    /// New nodes stored.
    pub nodes_received: u64,
    /// Nodes received that were already stored.
    pub duplicates: u64,
    /// Bytes written to the stream.
    pub bytes_sent: u64,
    /// Bytes read from the stream.
    pub bytes_received: u64,
    /// Canonical bytes of the nodes sent.
    pub node_bytes_sent: u64,
    /// Canonical bytes of the new nodes stored.
    pub node_bytes_received: u64,
    /// Candidates not sent because the peer's filter said it had them.
    pub filtered: u64,
    /// Sequential waits for the peer (1 unless a `Want` round was needed).
    pub round_trips: u32,
    /// Wall time.
    pub duration: Duration,
}
