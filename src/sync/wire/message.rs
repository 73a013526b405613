//! The typed protocol messages (their bounds are in `sync::limits`). The byte layout is in `docs/PROTOCOL.md`; the
//! framing is in [`super::codec`].

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::identity::PeerId;
pub use crate::sync::limits::{
    MAX_ABORT_DETAIL, MAX_FILTER_BYTES, MAX_FILTER_PROBES, MAX_FLOOR_HEADS, MAX_FRAME_BYTES,
    MAX_HEADS, MAX_HEADS_PER_MESSAGE, MAX_SAMPLES, MAX_WANT,
};

/// The first 8 bytes each side writes on a connection.
pub const MAGIC: [u8; 8] = *b"braidlog";

/// The protocol version, written right after [`MAGIC`] as a `u32` big-endian. A peer with
/// another version is refused with [`crate::sync::SyncError::Version`]: every frame layout may change
/// between versions, so nothing after the preamble is read.
pub const PROTOCOL_VERSION: u32 = 3;

/// Bytes of a node hash sent as a feed sample: a prefix is enough to find the node, and a
/// chance match (about `n / 2^64`) only costs a `Want` round.
pub const SAMPLE_PREFIX_LEN: usize = 8;

/// The first [`SAMPLE_PREFIX_LEN`] bytes of a node hash.
pub type SamplePrefix = [u8; SAMPLE_PREFIX_LEN];

/// What a side is willing to do in a session, as sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMode {
    /// It will send nodes the other side lacks.
    pub send: bool,
    /// It accepts nodes it lacks.
    pub receive: bool,
    /// It wants the session kept open after catching up, streaming new nodes.
    pub live: bool,
}

/// The first frame of each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's replica id.
    pub peer: PeerId,
    /// What the sender will do.
    pub mode: WireMode,
    /// The sender's newest feed seq when the session began. It only sends nodes up to here in
    /// the catch-up phase.
    pub last_seq: u64,
    /// How many heads the sender has in all (at most [`MAX_HEADS`]). When it is more than
    /// `heads.len()`, the rest follow in `Heads` messages before anything else.
    pub head_count: u64,
    /// The sender's first heads (at most [`MAX_HEADS_PER_MESSAGE`]), sorted; the heads of
    /// the following `Heads` messages continue the same sorted list.
    pub heads: Vec<Hash>,
    /// Hash prefixes of the nodes at exponentially spaced feed positions counted back from
    /// `last_seq` (distance 0, 1, 3, 7, ...): common points for first contact.
    pub samples: Vec<SamplePrefix>,
}

/// A Bloom filter of node hashes. Probe `i` of hash `h` is bit
/// `(a + i * b) mod (8 * bits.len())` where `a` and `b` are the first two little-endian `u64`
/// of `blake3::keyed_hash(key, h)`. The key is random per session, so nobody can grind node
/// hashes in advance to collide in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The per-session probe key.
    pub key: [u8; 32],
    /// Probes per entry (1..=[`MAX_FILTER_PROBES`]).
    pub probes: u8,
    /// The bit array (at most [`MAX_FILTER_BYTES`]).
    #[serde(with = "serde_bytes")]
    pub bits: Vec<u8>,
}

/// The second frame of each side (when heads differ): what it learned from the peer's
/// `Hello`, and a filter of what it has that the peer may not know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Bit `i` (LSB first) is set when the sender has the receiver's head `i`.
    #[serde(with = "serde_bytes")]
    pub known_heads: Vec<u8>,
    /// Bit `i` is set when the sender has the receiver's sample `i`.
    #[serde(with = "serde_bytes")]
    pub known_samples: Vec<u8>,
    /// The sender's nodes outside what both are known to share, when it wants to receive.
    pub filter: Option<Filter>,
    /// The sender's remembered floor for the receiver: heads (at most [`MAX_FLOOR_HEADS`])
    /// whose closure is every node of the sender's at or below the floor. Empty when the
    /// sender remembers nothing of the receiver (or will not send). A receiver that lacks any
    /// of them asks for them with `Want`, which tells the sender its floor is wrong.
    pub floor: Vec<Hash>,
}

pub use crate::sync::error::AbortReason;

/// One protocol message. See `docs/PROTOCOL.md` for when each is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Handshake.
    Hello(Hello),
    /// More of the sender's heads, after its `Hello` (when it has more than fit in one).
    Heads(Vec<Hash>),
    /// Answer to the peer's `Hello`.
    Summary(Summary),
    /// One node's canonical bytes. The receiver derives its hash.
    Node(Vec<u8>),
    /// One node as a delta from the node of the frame before in the same direction: a flags
    /// byte, then its canonical bytes without the author and/or the link the previous node
    /// gives (docs/PROTOCOL.md, section 3).
    NodeDelta(Vec<u8>),
    /// The end of a run of nodes (the catch-up stream, or an answer to `Want`).
    EndStream,
    /// Nodes the sender lacks after a stream: links it never got, or announced heads.
    Want(Vec<Hash>),
    /// The sender has stored everything the peer streamed in the catch-up phase.
    Done,
    /// Orderly end of a live session.
    Close,
    /// The sender gives up on the session (legal at any point) and closes the connection
    /// after it. Sent best-effort: a side that fails may also just hang up.
    Abort {
        /// Why.
        reason: AbortReason,
        /// The sender's error message, at most [`MAX_ABORT_DETAIL`] bytes.
        detail: String,
    },
}

impl Message {
    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Heads(_) => "Heads",
            Message::Summary(_) => "Summary",
            Message::Node(_) => "Node",
            Message::NodeDelta(_) => "NodeDelta",
            Message::EndStream => "EndStream",
            Message::Want(_) => "Want",
            Message::Done => "Done",
            Message::Close => "Close",
            Message::Abort { .. } => "Abort",
        }
    }
}

/// `detail` cut to at most [`MAX_ABORT_DETAIL`] bytes, on a character boundary.
pub(crate) fn clip_detail(detail: &str) -> String {
    let mut end = detail.len().min(MAX_ABORT_DETAIL);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_string()
}

/// A bit in a little-endian bitmap.
pub(crate) fn bit(map: &[u8], i: usize) -> bool {
    map.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Builds a bitmap of `n` bits from a predicate.
pub(crate) fn bitmap(n: usize, mut f: impl FnMut(usize) -> bool) -> Vec<u8> {
    let mut out = vec![0u8; n.div_ceil(8)];
    for i in 0..n {
        if f(i) {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}
