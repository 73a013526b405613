//! The wire, for people who write their own peers: the typed messages, the framing and the
//! node deltas, with the wire's hard bounds. No I/O: bytes in, messages out, and back.
//!
//! - [`Message`] and its parts (`message.rs`);
//! - the preamble ([`MAGIC`], [`PROTOCOL_VERSION`]) and length-prefixed frames
//!   ([`encode`], [`Decoder`]) (`codec.rs`);
//! - [`delta`]: how a `NodeDelta` frame leaves out what the node before it gives.
//!
//! The byte layout of every frame is in `docs/PROTOCOL.md`.

pub(crate) mod codec;
pub mod delta;
pub(crate) mod message;

pub use codec::{decode_body, encode, preamble, Decoder, NODE_FRAME_OVERHEAD, PREAMBLE_LEN};
pub use message::{
    AbortReason, Filter, Hello, Message, SamplePrefix, Summary, WireMode, MAGIC, MAX_ABORT_DETAIL,
    MAX_FILTER_BYTES, MAX_FILTER_PROBES, MAX_FLOOR_HEADS, MAX_FRAME_BYTES, MAX_HEADS,
    MAX_HEADS_PER_MESSAGE, MAX_SAMPLES, MAX_WANT, PROTOCOL_VERSION, SAMPLE_PREFIX_LEN,
};
