//! `SyncError`: everything that can end a replication session.

use std::convert::Infallible;

use super::store::StoreError;
use crate::hash::Hash;
use crate::identity::PeerId;
use crate::log::LogError;
use crate::node::NodeError;

/// Why a sync session failed. Whatever the cause, the local store stays valid: only checked
/// nodes whose links are stored are ever committed.
///
/// `E` is the error of the store the session ran on (its [`SyncStore::Error`]): a
/// [`LogError`] for a [`crate::Log`], the default. The wire layer, which touches no store,
/// returns `SyncError<Infallible>`, which converts into any `SyncError<E>`.
///
/// [`SyncStore::Error`]: super::SyncStore::Error
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError<E = LogError> {
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer does not speak this protocol (its first bytes are not the magic).
    #[error("not a braidlog peer: expected magic {expected:02x?}, got {got:02x?}")]
    BadMagic {
        /// `wire::MAGIC`.
        expected: [u8; 8],
        /// The first 8 bytes received.
        got: [u8; 8],
    },
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: this side speaks {expected}, the peer {got}")]
    Version {
        /// [`super::wire::PROTOCOL_VERSION`].
        expected: u32,
        /// The peer's version.
        got: u32,
    },
    /// A frame announced a length over the limit (checked before reading it).
    #[error("frame of {got} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced length.
        got: usize,
        /// [`super::wire::MAX_FRAME_BYTES`].
        max: usize,
    },
    /// A frame that does not decode, or breaks a message limit.
    #[error("malformed {kind} frame: {reason}")]
    Malformed {
        /// The message kind, as far as it was read.
        kind: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A message that the protocol does not allow at this point.
    #[error("unexpected {got} message while {state}")]
    Unexpected {
        /// What the session was doing.
        state: &'static str,
        /// The message received.
        got: &'static str,
    },
    /// The connection ended before the session did.
    #[error("connection closed by the peer while {state}")]
    UnexpectedEof {
        /// What the session was doing.
        state: &'static str,
    },
    /// The peer has this replica's own id: it is this replica, or a copy sharing its id.
    #[error("peer has our own id {peer}")]
    SelfSync {
        /// The id.
        peer: PeerId,
    },
    /// The peer sent bytes that are not a valid node.
    #[error("peer {peer} sent an invalid node: {source}")]
    InvalidNode {
        /// The peer.
        peer: PeerId,
        /// Why it is invalid.
        source: NodeError,
    },
    /// The peer sent a node whose link it never sent, even when asked.
    #[error("peer {peer} sent node {node} but never its link {link}")]
    MissingLink {
        /// The peer.
        peer: PeerId,
        /// The node that cannot be stored.
        node: Hash,
        /// The link it lacks.
        link: Hash,
    },
    /// The peer announced a head and never sent it, even when asked.
    #[error("peer {peer} announced head {hash} but never sent it")]
    MissingHead {
        /// The peer.
        peer: PeerId,
        /// The head.
        hash: Hash,
    },
    /// The peer sent more nodes that cannot be stored yet than the session buffers.
    #[error("peer {peer} sent {nodes} nodes ({bytes} bytes) whose links are missing")]
    TooManyPending {
        /// The peer.
        peer: PeerId,
        /// Buffered nodes.
        nodes: usize,
        /// Buffered bytes.
        bytes: usize,
    },
    /// Both sides only receive, or both only send: nothing could move. Refused on both sides
    /// rather than reported as a successful sync.
    #[error(
        "peer {peer} and this side cannot exchange anything: this side {mine}, the peer {theirs}"
    )]
    ModeMismatch {
        /// The peer.
        peer: PeerId,
        /// What this side does ("push" or "pull").
        mine: &'static str,
        /// What the peer does.
        theirs: &'static str,
    },
    /// The peer announced more heads than the session accepts.
    #[error("peer {peer} announced {count} heads, more than the limit of {max}")]
    TooManyHeads {
        /// The peer.
        peer: PeerId,
        /// Heads announced.
        count: u64,
        /// [`crate::sync::Limits::peer_heads`].
        max: usize,
    },
    /// The peer asked for nodes more often, or for more work, than the session answers.
    #[error("peer {peer} sent too many Wants ({rounds} answered, limit {max}) or wanted a walk over {walked} nodes")]
    TooManyWants {
        /// The peer.
        peer: PeerId,
        /// `Want`s answered so far.
        rounds: u32,
        /// [`crate::sync::Limits::wants_answered`].
        max: u32,
        /// Nodes the last answer would have walked (0 when the count was the problem).
        walked: usize,
    },
    /// The peer sent nothing for [`super::SyncOptions::idle_timeout`], or did not finish the
    /// handshake within [`super::SyncOptions::handshake_timeout`].
    #[error("peer silent for {after:?} while {state}")]
    Timeout {
        /// What the session was doing.
        state: &'static str,
        /// The idle time allowed.
        after: std::time::Duration,
    },
    /// The peer sent a node this replica's policy refuses, or whose signature is not its
    /// author's. The session stops taking the peer's stream; nothing stored is touched.
    #[error("peer {peer} sent node {node}{}, refused: {reason}", author.map(|a| format!(" by {a}")).unwrap_or_default())]
    Rejected {
        /// The peer.
        peer: PeerId,
        /// The refused node.
        node: Hash,
        /// Its author, when signed.
        author: Option<crate::identity::PublicKey>,
        /// Why (policy or signature).
        reason: String,
    },
    /// This side stopped the session before it was over (its server is shutting down, or
    /// the runtime is). What was received and checked is kept.
    #[error("session stopped by a local shutdown while {state}")]
    ShuttingDown {
        /// What the session was doing.
        state: &'static str,
    },
    /// The peer gave up on the session and said why (its `Abort` message). What this side
    /// received and checked before is kept.
    #[error("the peer aborted the session: {reason}: {detail}")]
    PeerAborted {
        /// Why, as the peer classified it.
        reason: AbortReason,
        /// The peer's error message (at most [`crate::sync::wire::MAX_ABORT_DETAIL`] bytes).
        detail: String,
    },
    /// The local store failed.
    #[error("store error: {0}")]
    Store(E),
}

/// An error of the wire layer (framing, decoding): it touches no store.
pub type WireError = SyncError<Infallible>;

impl<E: StoreError> From<E> for SyncError<E> {
    fn from(e: E) -> Self {
        SyncError::Store(e)
    }
}

impl<E: StoreError> From<SyncError<Infallible>> for SyncError<E> {
    fn from(e: SyncError<Infallible>) -> Self {
        e.with_store()
    }
}

impl SyncError<Infallible> {
    /// This store-free error as a session's error on a store with error type `E`.
    pub fn with_store<E>(self) -> SyncError<E> {
        use SyncError as S;
        match self {
            S::Io(e) => S::Io(e),
            S::BadMagic { expected, got } => S::BadMagic { expected, got },
            S::Version { expected, got } => S::Version { expected, got },
            S::FrameTooLarge { got, max } => S::FrameTooLarge { got, max },
            S::Malformed { kind, reason } => S::Malformed { kind, reason },
            S::Unexpected { state, got } => S::Unexpected { state, got },
            S::UnexpectedEof { state } => S::UnexpectedEof { state },
            S::SelfSync { peer } => S::SelfSync { peer },
            S::InvalidNode { peer, source } => S::InvalidNode { peer, source },
            S::MissingLink { peer, node, link } => S::MissingLink { peer, node, link },
            S::MissingHead { peer, hash } => S::MissingHead { peer, hash },
            S::TooManyPending { peer, nodes, bytes } => S::TooManyPending { peer, nodes, bytes },
            S::ModeMismatch { peer, mine, theirs } => S::ModeMismatch { peer, mine, theirs },
            S::TooManyHeads { peer, count, max } => S::TooManyHeads { peer, count, max },
            S::TooManyWants {
                peer,
                rounds,
                max,
                walked,
            } => S::TooManyWants {
                peer,
                rounds,
                max,
                walked,
            },
            S::Timeout { state, after } => S::Timeout { state, after },
            S::Rejected {
                peer,
                node,
                author,
                reason,
            } => S::Rejected {
                peer,
                node,
                author,
                reason,
            },
            S::ShuttingDown { state } => S::ShuttingDown { state },
            S::PeerAborted { reason, detail } => S::PeerAborted { reason, detail },
            S::Store(never) => match never {},
        }
    }
}

impl<E: StoreError> SyncError<E> {
    /// What to tell the peer when this error ends a session on this side: the `Abort` reason,
    /// or `None` when there is no one to tell (the transport failed, the peer hung up or
    /// aborted itself, or it does not speak this protocol version).
    pub fn abort_reason(&self) -> Option<AbortReason> {
        use AbortReason as R;
        Some(match self {
            SyncError::Io(_)
            | SyncError::BadMagic { .. }
            | SyncError::Version { .. }
            | SyncError::UnexpectedEof { .. }
            | SyncError::PeerAborted { .. } => return None,
            SyncError::Store(e) if e.is_disk_full() => R::DiskFull,
            SyncError::Store(_) => R::Internal,
            SyncError::FrameTooLarge { .. }
            | SyncError::TooManyPending { .. }
            | SyncError::TooManyHeads { .. }
            | SyncError::TooManyWants { .. }
            | SyncError::Timeout { .. } => R::LimitExceeded,
            SyncError::SelfSync { .. }
            | SyncError::ModeMismatch { .. }
            | SyncError::Rejected { .. } => R::Refused,
            SyncError::Malformed { .. }
            | SyncError::Unexpected { .. }
            | SyncError::InvalidNode { .. }
            | SyncError::MissingLink { .. }
            | SyncError::MissingHead { .. } => R::Protocol,
            SyncError::ShuttingDown { .. } => R::ShuttingDown,
        })
    }
}

/// Why a side gave up on a session, as sent in `Message::Abort`. On the wire it is one byte;
/// a byte this version does not know decodes as [`AbortReason::Internal`], so a newer peer's
/// reason never makes the abort itself fail to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortReason {
    /// The sender's disk is full: what it committed before is kept, the rest was not stored.
    DiskFull,
    /// The receiver of the abort broke one of the sender's limits (too many heads, wants,
    /// pending nodes; a timeout).
    LimitExceeded,
    /// The sender will not sync with this peer (same replica id, directions that cannot
    /// exchange anything), or refuses a node the peer sent (its policy, or a signature that is
    /// not the author's; the detail names node and author).
    Refused,
    /// The receiver of the abort sent something the protocol does not allow.
    Protocol,
    /// The sender is shutting down.
    ShuttingDown,
    /// Anything else on the sender's side (a store or transport failure).
    Internal,
}

impl AbortReason {
    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            AbortReason::DiskFull => 1,
            AbortReason::LimitExceeded => 2,
            AbortReason::Refused => 3,
            AbortReason::Protocol => 4,
            AbortReason::ShuttingDown => 5,
            AbortReason::Internal => 6,
        }
    }

    /// The reason for a wire byte; unknown bytes are [`AbortReason::Internal`].
    pub fn from_code(code: u8) -> AbortReason {
        match code {
            1 => AbortReason::DiskFull,
            2 => AbortReason::LimitExceeded,
            3 => AbortReason::Refused,
            4 => AbortReason::Protocol,
            5 => AbortReason::ShuttingDown,
            _ => AbortReason::Internal,
        }
    }
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AbortReason::DiskFull => "its disk is full",
            AbortReason::LimitExceeded => "a limit was exceeded",
            AbortReason::Refused => "it refused the session",
            AbortReason::Protocol => "a protocol violation",
            AbortReason::ShuttingDown => "it is shutting down",
            AbortReason::Internal => "an internal error",
        })
    }
}
