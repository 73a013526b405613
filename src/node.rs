//! `Node`: an immutable DAG entry, its canonical encoding and its limits.
//!
//! Encoding (postcard, format version 1):
//!
//! ```text
//! +---------+----------------+-----------------------+------------------+-----------+
//! | version | link count     | links                 | payload length   | payload   |
//! | u8 = 1  | varint         | count x 32-byte hash  | varint           | bytes     |
//! +---------+----------------+-----------------------+------------------+-----------+
//! ```
//!
//! Links are strictly increasing (sorted, no duplicates). Decoding accepts exactly one byte
//! string per node: the canonical one. Overlong varints, unsorted or repeated links, trailing
//! bytes and unknown versions are rejected, so one node has one encoding and one id. A later
//! format (author key, signature) will take a new version byte; version 1 stays readable.

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, HASH_LEN};

/// The node format version written by this release.
pub const NODE_FORMAT_VERSION: u8 = 1;

/// Largest payload a node may carry: 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Most links a node may carry. A merge of more heads than this takes several nodes.
pub const MAX_LINKS: usize = 1024;

/// Largest canonical encoding of a node: version byte, two varints of at most 3 bytes (both
/// counts are below 2^21), the links and the payload.
pub const MAX_NODE_BYTES: usize = 1 + 3 + MAX_LINKS * HASH_LEN + 3 + MAX_PAYLOAD_BYTES;

/// Why bytes are not a valid node, or why a node cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The bytes do not parse as a node.
    #[error("malformed node encoding: {0}")]
    Malformed(String),
    /// The encoding is longer than any valid node.
    #[error("encoded node is {got} bytes, the limit is {max}")]
    TooLarge {
        /// Length of the input.
        got: usize,
        /// [`MAX_NODE_BYTES`].
        max: usize,
    },
    /// A version byte this release does not know.
    #[error("unknown node format version {got} (this release reads {expected})")]
    UnknownVersion {
        /// The version found.
        got: u8,
        /// [`NODE_FORMAT_VERSION`].
        expected: u8,
    },
    /// Bytes left after a complete node.
    #[error("{extra} trailing bytes after the node")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
    /// Links are not strictly increasing.
    #[error("links are not sorted and unique at index {index}")]
    UnsortedLinks {
        /// Index of the first link that is not greater than the one before it.
        index: usize,
    },
    /// A length was written with more bytes than needed.
    #[error("non-canonical encoding (overlong length prefix)")]
    NonCanonical,
    /// More links than [`MAX_LINKS`].
    #[error("node has {got} links, the limit is {max}")]
    TooManyLinks {
        /// The number of links.
        got: usize,
        /// [`MAX_LINKS`].
        max: usize,
    },
    /// A payload larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload is {got} bytes, the limit is {max}")]
    PayloadTooLarge {
        /// The payload length.
        got: usize,
        /// [`MAX_PAYLOAD_BYTES`].
        max: usize,
    },
    /// The bytes hash to something other than what was announced.
    #[error("node bytes hash to {got}, expected {expected}")]
    HashMismatch {
        /// The hash the sender or the store claimed.
        expected: Hash,
        /// The hash of the bytes.
        got: Hash,
    },
}

/// An immutable entry of the DAG: a sorted set of links to earlier nodes and a payload.
///
/// Building a node checks the limits, sorts and deduplicates the links and computes its id.
///
/// ```
/// use braidlog::Node;
/// let a = Node::new([], b"first".to_vec()).unwrap();
/// let b = Node::new([a.hash(), a.hash()], b"second".to_vec()).unwrap();
/// assert_eq!(b.links(), &[a.hash()]);
/// assert_eq!(Node::decode(&b.encode()).unwrap(), b);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Node {
    hash: Hash,
    links: Vec<Hash>,
    payload: Vec<u8>,
}

#[derive(Serialize)]
struct WireOut<'a> {
    version: u8,
    links: &'a [Hash],
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

#[derive(Deserialize)]
struct WireIn<'a> {
    version: u8,
    links: Vec<Hash>,
    #[serde(borrow, with = "serde_bytes")]
    payload: &'a [u8],
}

fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

fn check_limits(links: usize, payload: usize) -> Result<(), NodeError> {
    if links > MAX_LINKS {
        return Err(NodeError::TooManyLinks {
            got: links,
            max: MAX_LINKS,
        });
    }
    if payload > MAX_PAYLOAD_BYTES {
        return Err(NodeError::PayloadTooLarge {
            got: payload,
            max: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

impl Node {
    /// Builds a node. Links are sorted and deduplicated; limits are checked.
    pub fn new(links: impl IntoIterator<Item = Hash>, payload: Vec<u8>) -> Result<Node, NodeError> {
        let mut links: Vec<Hash> = links.into_iter().collect();
        links.sort_unstable();
        links.dedup();
        check_limits(links.len(), payload.len())?;
        let hash = Hash::of(&encode_parts(&links, &payload));
        Ok(Node {
            hash,
            links,
            payload,
        })
    }

    /// The node's id: blake3 of its canonical encoding.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Links to earlier nodes, strictly increasing.
    pub fn links(&self) -> &[Hash] {
        &self.links
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Splits the node into its links and payload.
    pub fn into_parts(self) -> (Vec<Hash>, Vec<u8>) {
        (self.links, self.payload)
    }

    /// Length of [`Node::encode`] without encoding.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.links.len(), self.payload.len())
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_parts(&self.links, &self.payload)
    }

    /// Appends the canonical encoding to `out` (the store writes it after the hash, with no
    /// intermediate buffer).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let wire = WireOut {
            version: NODE_FORMAT_VERSION,
            links: &self.links,
            payload: &self.payload,
        };
        out.reserve(self.encoded_len());
        let taken = std::mem::take(out);
        *out = postcard::to_extend(&wire, taken).expect("encoding into a Vec cannot fail");
    }

    /// Decodes canonical bytes and computes the id. Rejects anything non-canonical.
    pub fn decode(bytes: &[u8]) -> Result<Node, NodeError> {
        let (links, payload) = decode_parts(bytes)?;
        Ok(Node {
            hash: Hash::of(bytes),
            links,
            payload,
        })
    }

    /// Decodes and checks that the bytes hash to `expected` (for nodes received from a peer).
    pub fn decode_expecting(bytes: &[u8], expected: Hash) -> Result<Node, NodeError> {
        let got = Hash::of(bytes);
        if got != expected {
            return Err(NodeError::HashMismatch { expected, got });
        }
        let (links, payload) = decode_parts(bytes)?;
        Ok(Node {
            hash: got,
            links,
            payload,
        })
    }

    /// Decodes bytes whose hash is already known to be `hash` (read back from the store, which
    /// checked them on the way in). Skips hashing; `verify` is what re-checks stored bytes.
    pub(crate) fn decode_trusted(bytes: &[u8], hash: Hash) -> Result<Node, NodeError> {
        let (links, payload) = decode_parts(bytes)?;
        Ok(Node {
            hash,
            links,
            payload,
        })
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("hash", &self.hash)
            .field("links", &self.links)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

fn encoded_len(links: usize, payload: usize) -> usize {
    1 + varint_len(links) + links * HASH_LEN + varint_len(payload) + payload
}

fn encode_parts(links: &[Hash], payload: &[u8]) -> Vec<u8> {
    let wire = WireOut {
        version: NODE_FORMAT_VERSION,
        links,
        payload,
    };
    let mut out = Vec::with_capacity(encoded_len(links.len(), payload.len()));
    out = postcard::to_extend(&wire, out).expect("encoding into a Vec cannot fail");
    out
}

fn decode_parts(bytes: &[u8]) -> Result<(Vec<Hash>, Vec<u8>), NodeError> {
    if bytes.len() > MAX_NODE_BYTES {
        return Err(NodeError::TooLarge {
            got: bytes.len(),
            max: MAX_NODE_BYTES,
        });
    }
    match bytes.first() {
        None => return Err(NodeError::Malformed("empty input".into())),
        Some(&v) if v != NODE_FORMAT_VERSION => {
            return Err(NodeError::UnknownVersion {
                got: v,
                expected: NODE_FORMAT_VERSION,
            })
        }
        Some(_) => {}
    }
    let (wire, rest): (WireIn<'_>, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| NodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(NodeError::TrailingBytes { extra: rest.len() });
    }
    debug_assert_eq!(wire.version, NODE_FORMAT_VERSION);
    check_limits(wire.links.len(), wire.payload.len())?;
    if let Some(i) = wire.links.windows(2).position(|w| w[0] >= w[1]) {
        return Err(NodeError::UnsortedLinks { index: i + 1 });
    }
    // Same decoded content and the canonical length means canonical varints: an overlong
    // varint is the only other way to spell these values, and it is longer.
    if bytes.len() != encoded_len(wire.links.len(), wire.payload.len()) {
        return Err(NodeError::NonCanonical);
    }
    Ok((wire.links, wire.payload.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    fn h(i: u8) -> Hash {
        Hash([i; 32])
    }

    #[test]
    fn layout_is_as_documented() {
        let n = Node::new([h(2), h(1)], b"xy".to_vec()).unwrap();
        let bytes = n.encode();
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes[1], 2);
        assert_eq!(&bytes[2..34], &[1; 32]);
        assert_eq!(&bytes[34..66], &[2; 32]);
        assert_eq!(&bytes[66..], &[2, b'x', b'y']);
        assert_eq!(n.encoded_len(), bytes.len());
        assert_eq!(n.hash(), Hash::of(&bytes));
    }

    #[test]
    fn rejects_non_canonical() {
        let n = Node::new([h(1), h(2)], b"p".to_vec()).unwrap();
        let good = n.encode();

        let mut swapped = good.clone();
        swapped[2..34].copy_from_slice(&[2; 32]);
        swapped[34..66].copy_from_slice(&[1; 32]);
        assert_eq!(
            Node::decode(&swapped),
            Err(NodeError::UnsortedLinks { index: 1 })
        );

        let mut dup = good.clone();
        dup[34..66].copy_from_slice(&[1; 32]);
        assert_eq!(
            Node::decode(&dup),
            Err(NodeError::UnsortedLinks { index: 1 })
        );

        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            Node::decode(&trailing),
            Err(NodeError::TrailingBytes { extra: 1 })
        );

        let mut version = good.clone();
        version[0] = 2;
        assert!(matches!(
            Node::decode(&version),
            Err(NodeError::UnknownVersion { got: 2, .. })
        ));

        // Payload length 1 written as an overlong varint (0x81 0x00).
        let mut overlong = good[..66].to_vec();
        overlong.extend_from_slice(&[0x81, 0x00, b'p']);
        assert_eq!(Node::decode(&overlong), Err(NodeError::NonCanonical));

        assert!(matches!(
            Node::decode(&good[..good.len() - 1]),
            Err(NodeError::Malformed(_))
        ));
        assert!(matches!(Node::decode(&[]), Err(NodeError::Malformed(_))));
    }

    #[test]
    fn enforces_limits() {
        let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            Node::new([], big),
            Err(NodeError::PayloadTooLarge { .. })
        ));
        let links = (0..=MAX_LINKS as u32).map(|i| Hash::of(&i.to_le_bytes()));
        assert!(matches!(
            Node::new(links, vec![]),
            Err(NodeError::TooManyLinks { .. })
        ));
        let max = Node::new([], vec![0; MAX_PAYLOAD_BYTES]).unwrap();
        assert!(max.encoded_len() <= MAX_NODE_BYTES);
        assert!(matches!(
            Node::decode(&vec![1; MAX_NODE_BYTES + 1]),
            Err(NodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn decode_expecting_checks_hash() {
        let n = Node::new([], b"a".to_vec()).unwrap();
        let err = Node::decode_expecting(&n.encode(), h(9)).unwrap_err();
        assert!(
            matches!(err, NodeError::HashMismatch { expected, got } if expected == h(9) && got == n.hash())
        );
    }

    quickcheck! {
        fn prop_round_trip(links: Vec<u8>, payload: Vec<u8>) -> bool {
            let n = Node::new(links.into_iter().map(h), payload).unwrap();
            let bytes = n.encode();
            bytes.len() == n.encoded_len() && Node::decode(&bytes).as_ref() == Ok(&n)
        }

        fn prop_decode_arbitrary_never_panics(bytes: Vec<u8>) -> bool {
            let _ = Node::decode(&bytes);
            let mut v = bytes;
            v.insert(0, 1);
            let _ = Node::decode(&v);
            true
        }

        fn prop_accepted_bytes_are_canonical(bytes: Vec<u8>) -> TestResult {
            let mut v = bytes;
            v.insert(0, 1);
            match Node::decode(&v) {
                Ok(n) => TestResult::from_bool(n.encode() == v),
                Err(_) => TestResult::discard(),
            }
        }

        fn prop_varint_len(n: usize) -> bool {
            varint_len(n) == postcard::to_stdvec(&n).unwrap().len()
        }
    }
}
