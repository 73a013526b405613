//! Framing: a preamble, then length-prefixed frames.
//!
//! ```text
//! preamble (once per direction):  | "braidlog" (8) | version u32 BE (4) |
//! frame:                          | len u32 LE (4) | kind u8 | body (len - 1 bytes) |
//! ```
//!
//! A `Node` frame's body is the node's canonical bytes as they are (5 bytes of framing per
//! node), a `NodeDelta` frame's a flags byte and the bytes the previous node does not give
//! (`session::delta`); the other bodies are postcard. The announced length is checked against
//! [`MAX_FRAME_BYTES`] as soon as its 4 bytes are in, before the body is read or buffered.

use crate::hash::Hash;
use crate::sync::error::{SyncError, WireError};
use crate::sync::wire::message::{
    AbortReason, Hello, Message, Summary, MAGIC, MAX_ABORT_DETAIL, MAX_FILTER_BYTES,
    MAX_FILTER_PROBES, MAX_FLOOR_HEADS, MAX_FRAME_BYTES, MAX_HEADS, MAX_HEADS_PER_MESSAGE,
    MAX_SAMPLES, MAX_WANT, PROTOCOL_VERSION,
};

const HELLO: u8 = 1;
const SUMMARY: u8 = 2;
const NODE: u8 = 3;
const END_STREAM: u8 = 4;
const WANT: u8 = 5;
const DONE: u8 = 6;
const CLOSE: u8 = 7;
const HEADS: u8 = 8;
const ABORT: u8 = 9;
const NODE_DELTA: u8 = 10;

/// Buffer room a decoder keeps after compacting.
const KEEP_CAPACITY: usize = 128 * 1024;

/// Length of the preamble.
pub const PREAMBLE_LEN: usize = 12;

/// Bytes of framing around a node's bytes: the length and the kind.
pub const NODE_FRAME_OVERHEAD: usize = 5;

/// The bytes each side writes first.
pub fn preamble() -> [u8; PREAMBLE_LEN] {
    let mut p = [0u8; PREAMBLE_LEN];
    p[..8].copy_from_slice(&MAGIC);
    p[8..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    p
}

/// Appends one frame holding `msg` to `out`.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let body = |out: &mut Vec<u8>, kind: u8, value: Option<&dyn erased::Ser>| {
        out.push(kind);
        if let Some(v) = value {
            v.append(out);
        }
    };
    match msg {
        Message::Hello(h) => body(out, HELLO, Some(h)),
        Message::Heads(h) => body(out, HEADS, Some(h)),
        Message::Summary(s) => body(out, SUMMARY, Some(s)),
        Message::Node(bytes) => {
            out.push(NODE);
            out.extend_from_slice(bytes);
        }
        Message::NodeDelta(body) => {
            out.push(NODE_DELTA);
            out.extend_from_slice(body);
        }
        Message::EndStream => body(out, END_STREAM, None),
        Message::Want(w) => body(out, WANT, Some(w)),
        Message::Done => body(out, DONE, None),
        Message::Close => body(out, CLOSE, None),
        Message::Abort { reason, detail } => {
            let detail = super::message::clip_detail(detail);
            body(out, ABORT, Some(&(reason.code(), detail)))
        }
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

mod erased {
    /// Object-safe postcard serialisation into a Vec.
    pub trait Ser {
        fn append(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Ser for T {
        fn append(&self, out: &mut Vec<u8>) {
            let v = postcard::to_extend(self, std::mem::take(out)).expect("Vec output");
            *out = v;
        }
    }
}

fn malformed(kind: &'static str, reason: impl ToString) -> WireError {
    SyncError::Malformed {
        kind,
        reason: reason.to_string(),
    }
}

fn postcard_all<'a, T: serde::Deserialize<'a>>(
    kind: &'static str,
    body: &'a [u8],
) -> Result<T, WireError> {
    let (v, rest) = postcard::take_from_bytes(body).map_err(|e| malformed(kind, e))?;
    if !rest.is_empty() {
        return Err(malformed(kind, format!("{} trailing bytes", rest.len())));
    }
    Ok(v)
}

/// Decodes one frame body (kind byte first) into a message, checking every message limit.
pub fn decode_body(frame: &[u8]) -> Result<Message, WireError> {
    let (&kind, body) = frame
        .split_first()
        .ok_or_else(|| malformed("empty", "frame of length 0"))?;
    let empty = |name: &'static str, m: Message| {
        if body.is_empty() {
            Ok(m)
        } else {
            Err(malformed(name, "unexpected body"))
        }
    };
    match kind {
        HELLO => {
            let h: Hello = postcard_all("Hello", body)?;
            if h.heads.len() > MAX_HEADS_PER_MESSAGE
                || h.head_count > MAX_HEADS as u64
                || (h.heads.len() as u64) > h.head_count
                || h.samples.len() > MAX_SAMPLES
            {
                return Err(malformed("Hello", "too many heads or samples"));
            }
            Ok(Message::Hello(h))
        }
        HEADS => {
            let h: Vec<Hash> = postcard_all("Heads", body)?;
            if h.is_empty() || h.len() > MAX_HEADS_PER_MESSAGE {
                return Err(malformed("Heads", format!("{} hashes", h.len())));
            }
            Ok(Message::Heads(h))
        }
        SUMMARY => {
            let s: Summary = postcard_all("Summary", body)?;
            if s.known_heads.len() > MAX_HEADS.div_ceil(8)
                || s.known_samples.len() > MAX_SAMPLES.div_ceil(8)
                || s.floor.len() > MAX_FLOOR_HEADS
            {
                return Err(malformed("Summary", "bitmap or floor too long"));
            }
            if let Some(f) = &s.filter {
                if f.bits.is_empty()
                    || f.bits.len() > MAX_FILTER_BYTES
                    || f.probes == 0
                    || f.probes > MAX_FILTER_PROBES
                {
                    return Err(malformed("Summary", "filter out of bounds"));
                }
            }
            Ok(Message::Summary(s))
        }
        NODE => Ok(Message::Node(body.to_vec())),
        NODE_DELTA if body.is_empty() => Err(malformed("NodeDelta", "empty body")),
        NODE_DELTA => Ok(Message::NodeDelta(body.to_vec())),
        END_STREAM => empty("EndStream", Message::EndStream),
        WANT => {
            let w: Vec<Hash> = postcard_all("Want", body)?;
            if w.is_empty() || w.len() > MAX_WANT {
                return Err(malformed("Want", format!("{} hashes", w.len())));
            }
            Ok(Message::Want(w))
        }
        DONE => empty("Done", Message::Done),
        CLOSE => empty("Close", Message::Close),
        ABORT => {
            let (code, detail): (u8, String) = postcard_all("Abort", body)?;
            if detail.len() > MAX_ABORT_DETAIL {
                return Err(malformed(
                    "Abort",
                    format!("detail of {} bytes", detail.len()),
                ));
            }
            Ok(Message::Abort {
                reason: AbortReason::from_code(code),
                detail,
            })
        }
        other => Err(malformed("unknown", format!("kind byte {other}"))),
    }
}

/// Incremental decoder: push bytes as they arrive, pull messages out. An incomplete preamble
/// or frame is `Ok(None)`, never an error.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    preamble_seen: bool,
}

impl Decoder {
    /// A decoder expecting the preamble first.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends received bytes. The buffer grows only as bytes arrive, never to a length a
    /// frame merely announces.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Drops decoded bytes, and gives back the room a large frame made the buffer grow to
    /// once that frame is decoded (an idle connection then holds little).
    pub fn compact(&mut self) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
            self.buf.shrink_to(self.buf.len().max(KEEP_CAPACITY));
        }
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Decodes the next message if a whole frame is buffered.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let avail = &self.buf[self.start..];
        if !self.preamble_seen {
            // Check the magic as soon as its bytes are in, so a foreign peer fails fast.
            let n = avail.len().min(8);
            if avail[..n] != MAGIC[..n] {
                let mut got = [0u8; 8];
                got[..n].copy_from_slice(&avail[..n]);
                return Err(SyncError::BadMagic {
                    expected: MAGIC,
                    got,
                });
            }
            if avail.len() < PREAMBLE_LEN {
                return Ok(None);
            }
            let got = u32::from_be_bytes(avail[8..12].try_into().expect("4 bytes"));
            if got != PROTOCOL_VERSION {
                return Err(SyncError::Version {
                    expected: PROTOCOL_VERSION,
                    got,
                });
            }
            self.preamble_seen = true;
            self.start += PREAMBLE_LEN;
            return self.next_message();
        }
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(avail[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(SyncError::FrameTooLarge {
                got: len,
                max: MAX_FRAME_BYTES,
            });
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let msg = decode_body(&avail[4..4 + len])?;
        self.start += 4 + len;
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::wire::message::{Filter, WireMode};
    use crate::PeerId;

    fn all() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                peer: PeerId([7; 16]),
                mode: WireMode {
                    send: true,
                    receive: false,
                    live: true,
                },
                last_seq: 9,
                head_count: 2,
                heads: vec![Hash([1; 32])],
                samples: vec![[2; 8], [3; 8]],
            }),
            Message::Summary(Summary {
                known_heads: vec![1],
                known_samples: vec![2],
                filter: Some(Filter {
                    key: [5; 32],
                    probes: 8,
                    bits: vec![0xff; 9],
                }),
                floor: vec![Hash([6; 32])],
            }),
            Message::Heads(vec![Hash([8; 32])]),
            Message::Node(crate::Node::new([], b"x".to_vec()).unwrap().encode()),
            Message::EndStream,
            Message::Want(vec![Hash([4; 32])]),
            Message::Done,
            Message::Close,
            Message::Abort {
                reason: AbortReason::DiskFull,
                detail: "no space left".into(),
            },
        ]
    }

    #[test]
    fn abort_detail_is_bounded_both_ways() {
        // Encoding clips a long detail (on a character boundary) ...
        let long = "é".repeat(MAX_ABORT_DETAIL);
        let mut wire = Vec::new();
        encode(
            &Message::Abort {
                reason: AbortReason::Refused,
                detail: long,
            },
            &mut wire,
        );
        match decode_body(&wire[4..]).unwrap() {
            Message::Abort { reason, detail } => {
                assert_eq!(reason, AbortReason::Refused);
                assert!(detail.len() <= MAX_ABORT_DETAIL && detail.len() >= MAX_ABORT_DETAIL - 1);
            }
            m => panic!("{m:?}"),
        }
        // ... and a peer's overlong detail is malformed; an unknown reason byte is Internal.
        let body = postcard::to_extend(&(3u8, "x".repeat(MAX_ABORT_DETAIL + 1)), vec![ABORT]);
        let body = body.unwrap();
        assert!(matches!(
            decode_body(&body),
            Err(SyncError::Malformed { kind: "Abort", .. })
        ));
        let body = postcard::to_extend(&(200u8, String::new()), vec![ABORT]).unwrap();
        assert!(matches!(
            decode_body(&body),
            Ok(Message::Abort {
                reason: AbortReason::Internal,
                ..
            })
        ));
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let mut wire = preamble().to_vec();
        for m in all() {
            encode(&m, &mut wire);
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in wire {
            d.push(&[b]);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, all());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn node_framing_is_five_bytes() {
        let n = crate::Node::new([], vec![0; 100]).unwrap().encode();
        let mut out = Vec::new();
        encode(&Message::Node(n.clone()), &mut out);
        assert_eq!(out.len(), n.len() + NODE_FRAME_OVERHEAD);
    }

    #[test]
    fn limits_checked_before_body() {
        let mut d = Decoder::new();
        d.push(&preamble());
        d.push(&((MAX_FRAME_BYTES + 1) as u32).to_le_bytes());
        assert!(matches!(
            d.next_message(),
            Err(SyncError::FrameTooLarge { .. })
        ));
        let mut d = Decoder::new();
        d.push(b"GET ");
        assert!(matches!(d.next_message(), Err(SyncError::BadMagic { .. })));
        let mut d = Decoder::new();
        let mut p = preamble();
        p[11] = 9;
        d.push(&p);
        assert!(matches!(
            d.next_message(),
            Err(SyncError::Version { got: 9, .. })
        ));
    }

    quickcheck::quickcheck! {
        fn prop_decode_arbitrary_never_panics(bytes: Vec<u8>) -> bool {
            let mut d = Decoder::new();
            d.push(&preamble());
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_message() {}
            let _ = decode_body(&bytes);
            true
        }
    }
}
