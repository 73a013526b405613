//! `Node`: an immutable DAG entry, its canonical encoding and its limits.
//!
//! Two formats share one id rule (the blake3 hash of the canonical bytes). Version 1 is an
//! unsigned node; version 2 is a node signed by its author:
//!
//! ```text
//! version 1 (unsigned)
//! +---------+------------+----------------------+----------------+---------+
//! | u8 = 1  | link count | links                | payload length | payload |
//! |         | varint     | count x 32-byte hash | varint         | bytes   |
//! +---------+------------+----------------------+----------------+---------+
//!
//! version 2 (signed)
//! +--------+------------+--------------+------------+-------+----------------+---------+-----------+
//! | u8 = 2 | author key | timestamp ms | link count | links | payload length | payload | signature |
//! |        | 32 bytes   | u64 BE (8)   | varint     | 32 x n| varint         | bytes   | 64 bytes  |
//! +--------+------------+--------------+------------+-------+----------------+---------+-----------+
//! \_____________________ signed part: everything before the signature ______/
//! ```
//!
//! The signature is Ed25519 by the author key over a 32-byte digest of the signed part: blake3
//! in key-derivation mode with the context [`SIGNING_CONTEXT`], so a signature made for a node
//! can never be replayed as a signature of anything else. The id hashes the whole encoding,
//! author, timestamp and signature included: two authors writing the same payload at the same
//! heads write two nodes.
//!
//! The timestamp is what the author claims (milliseconds since the Unix epoch). It is shown in
//! history and never used to order or resolve anything: a clock is not evidence.
//!
//! Links are strictly increasing (sorted, no duplicates). Decoding accepts exactly one byte
//! string per node: the canonical one. Overlong varints, unsorted or repeated links, trailing
//! bytes and unknown versions are rejected, so one node has one encoding and one id. Decoding
//! does not check the signature (that is the expensive part, done in batches by
//! [`verify_signatures`] and always before a node is stored).

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, HASH_LEN};
use crate::identity::{self, Identity, PublicKey, PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// The unsigned node format (version 1), read and written.
pub const NODE_FORMAT_VERSION: u8 = 1;

/// The signed node format (version 2), the newest this release reads and writes.
pub const SIGNED_FORMAT_VERSION: u8 = 2;

/// Domain separation of node signatures: the blake3 key-derivation context of the digest that
/// is signed.
pub const SIGNING_CONTEXT: &str = "braidlog 2026-11-29 node v2 signature";

/// Largest payload a node may carry: 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Most links a node may carry. A merge of more heads than this takes several nodes.
pub const MAX_LINKS: usize = 1024;

/// Bytes a signed node carries beyond an unsigned one: key, timestamp, signature.
pub const SIGNED_OVERHEAD: usize = PUBLIC_KEY_LEN + 8 + SIGNATURE_LEN;

/// Largest canonical encoding of a node (a signed one): version byte, two varints of at most
/// 3 bytes (both counts are below 2^21), the links, the payload and [`SIGNED_OVERHEAD`].
pub const MAX_NODE_BYTES: usize =
    1 + 3 + MAX_LINKS * HASH_LEN + 3 + MAX_PAYLOAD_BYTES + SIGNED_OVERHEAD;

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
    #[error("unknown node format version {got} (this release reads 1 to {expected})")]
    UnknownVersion {
        /// The version found.
        got: u8,
        /// [`SIGNED_FORMAT_VERSION`].
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
    /// A signed node whose signature is not its author's over its content.
    #[error("node {node}: signature is not valid for author {author}")]
    BadSignature {
        /// The node.
        node: Hash,
        /// The author it names.
        author: PublicKey,
    },
}

/// Who signed a node, and when they say they did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorship {
    /// The author's public key.
    pub author: PublicKey,
    /// The author's claimed time of writing, in milliseconds since the Unix epoch. Not
    /// evidence of anything; never used to order or resolve.
    pub timestamp_ms: u64,
    /// Ed25519 signature over the node's signed part.
    pub signature: [u8; SIGNATURE_LEN],
}

/// An immutable entry of the DAG: a sorted set of links to earlier nodes, a payload and,
/// when signed, its [`Authorship`].
///
/// Building a node checks the limits, sorts and deduplicates the links and computes its id.
///
/// ```
/// use braidlog::{Identity, Node};
/// let a = Node::new([], b"first".to_vec()).unwrap();
/// let b = Node::new([a.hash(), a.hash()], b"second".to_vec()).unwrap();
/// assert_eq!(b.links(), &[a.hash()]);
/// assert_eq!(Node::decode(&b.encode()).unwrap(), b);
///
/// let me = Identity::generate();
/// let c = Node::signed(&me, 1_700_000_000_000, [b.hash()], b"third".to_vec()).unwrap();
/// assert_eq!(c.author(), Some(me.public_key()));
/// let back = Node::decode(&c.encode()).unwrap();
/// assert!(back.verify_signature().is_ok());
/// ```
#[derive(Clone)]
pub struct Node {
    hash: Hash,
    links: Vec<Hash>,
    payload: Vec<u8>,
    auth: Option<Authorship>,
    /// The signature is known good (made here, checked, or read from the store, which checks
    /// on the way in). Not part of the node's identity.
    verified: bool,
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        self.hash == other.hash
            && self.links == other.links
            && self.payload == other.payload
            && self.auth == other.auth
    }
}

impl Eq for Node {}

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

/// The signed part of a version-2 node; the 64 signature bytes follow it.
#[derive(Serialize)]
struct SignedOut<'a> {
    version: u8,
    author: &'a [u8; PUBLIC_KEY_LEN],
    timestamp: [u8; 8],
    links: &'a [Hash],
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

#[derive(Deserialize)]
struct SignedIn<'a> {
    version: u8,
    author: [u8; PUBLIC_KEY_LEN],
    timestamp: [u8; 8],
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

fn sorted_links(links: impl IntoIterator<Item = Hash>) -> Vec<Hash> {
    let mut links: Vec<Hash> = links.into_iter().collect();
    links.sort_unstable();
    links.dedup();
    links
}

/// The digest an author signs: blake3 of the signed part, keyed by [`SIGNING_CONTEXT`].
fn signing_digest(signed_part: &[u8]) -> [u8; 32] {
    *blake3::Hasher::new_derive_key(SIGNING_CONTEXT)
        .update(signed_part)
        .finalize()
        .as_bytes()
}

impl Node {
    /// Builds an unsigned (version 1) node. Links are sorted and deduplicated; limits are
    /// checked.
    pub fn new(links: impl IntoIterator<Item = Hash>, payload: Vec<u8>) -> Result<Node, NodeError> {
        let links = sorted_links(links);
        check_limits(links.len(), payload.len())?;
        let hash = Hash::of(&encode_v1(&links, &payload));
        Ok(Node {
            hash,
            links,
            payload,
            auth: None,
            verified: true,
        })
    }

    /// Builds a node signed by `identity`, claiming `timestamp_ms` as its time of writing.
    pub fn signed(
        identity: &Identity,
        timestamp_ms: u64,
        links: impl IntoIterator<Item = Hash>,
        payload: Vec<u8>,
    ) -> Result<Node, NodeError> {
        let links = sorted_links(links);
        check_limits(links.len(), payload.len())?;
        let author = identity.public_key();
        let mut bytes = encode_signed_part(&author, timestamp_ms, &links, &payload);
        let signature = identity.sign(&signing_digest(&bytes));
        bytes.extend_from_slice(&signature);
        Ok(Node {
            hash: Hash::of(&bytes),
            links,
            payload,
            auth: Some(Authorship {
                author,
                timestamp_ms,
                signature,
            }),
            verified: true,
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

    /// Author, claimed time and signature; `None` for an unsigned node.
    pub fn authorship(&self) -> Option<&Authorship> {
        self.auth.as_ref()
    }

    /// The author's public key; `None` for an unsigned node.
    pub fn author(&self) -> Option<PublicKey> {
        self.auth.map(|a| a.author)
    }

    /// The author's claimed time of writing (ms since the Unix epoch); `None` when unsigned.
    pub fn timestamp_ms(&self) -> Option<u64> {
        self.auth.map(|a| a.timestamp_ms)
    }

    /// The format version of the node's encoding (1 unsigned, 2 signed).
    pub fn version(&self) -> u8 {
        match self.auth {
            None => NODE_FORMAT_VERSION,
            Some(_) => SIGNED_FORMAT_VERSION,
        }
    }

    /// Splits the node into its links and payload.
    pub fn into_parts(self) -> (Vec<Hash>, Vec<u8>) {
        (self.links, self.payload)
    }

    /// Length of [`Node::encode`] without encoding.
    pub fn encoded_len(&self) -> usize {
        let base = encoded_len_v1(self.links.len(), self.payload.len());
        match self.auth {
            None => base,
            Some(_) => base + SIGNED_OVERHEAD,
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out` (the store writes it after the hash, with no
    /// intermediate buffer).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let taken = std::mem::take(out);
        *out = match &self.auth {
            None => postcard::to_extend(
                &WireOut {
                    version: NODE_FORMAT_VERSION,
                    links: &self.links,
                    payload: &self.payload,
                },
                taken,
            ),
            Some(a) => postcard::to_extend(
                &SignedOut {
                    version: SIGNED_FORMAT_VERSION,
                    author: &a.author.0,
                    timestamp: a.timestamp_ms.to_be_bytes(),
                    links: &self.links,
                    payload: &self.payload,
                },
                taken,
            ),
        }
        .expect("encoding into a Vec cannot fail");
        if let Some(a) = &self.auth {
            out.extend_from_slice(&a.signature);
        }
    }

    /// Decodes canonical bytes and computes the id. Rejects anything non-canonical. Does not
    /// check a signature (see [`Node::verify_signature`]).
    pub fn decode(bytes: &[u8]) -> Result<Node, NodeError> {
        decode_parts(bytes, Hash::of(bytes), false)
    }

    /// Decodes and checks that the bytes hash to `expected` (for nodes received from a peer).
    pub fn decode_expecting(bytes: &[u8], expected: Hash) -> Result<Node, NodeError> {
        let got = Hash::of(bytes);
        if got != expected {
            return Err(NodeError::HashMismatch { expected, got });
        }
        decode_parts(bytes, got, false)
    }

    /// Decodes bytes whose hash is already known to be `hash` (read back from the store, which
    /// checked them, signature included, on the way in). Skips hashing and the signature;
    /// `verify` is what re-checks stored bytes.
    pub(crate) fn decode_trusted(bytes: &[u8], hash: Hash) -> Result<Node, NodeError> {
        decode_parts(bytes, hash, true)
    }

    /// Checks the author's signature (Ed25519 under the ZIP-215 rules, see `identity`). An unsigned node has none to check and
    /// passes; whether unsigned nodes are welcome is a policy's business.
    pub fn verify_signature(&self) -> Result<(), NodeError> {
        match self.signing_item() {
            None => Ok(()),
            Some((author, digest, sig)) => {
                if identity::verify_single(&author, &digest, &sig) {
                    Ok(())
                } else {
                    Err(NodeError::BadSignature {
                        node: self.hash,
                        author,
                    })
                }
            }
        }
    }

    /// Whether the signature is already known good (or there is none).
    pub(crate) fn signature_checked(&self) -> bool {
        self.verified
    }

    /// Checks the signature unless already known good; remembers success.
    pub(crate) fn check_signature(&mut self) -> Result<(), NodeError> {
        if !self.verified {
            self.verify_signature()?;
            self.verified = true;
        }
        Ok(())
    }

    /// Key, signed digest and signature, for (batch) verification.
    fn signing_item(&self) -> Option<(PublicKey, [u8; 32], [u8; SIGNATURE_LEN])> {
        let a = self.auth.as_ref()?;
        let part = encode_signed_part(&a.author, a.timestamp_ms, &self.links, &self.payload);
        Some((a.author, signing_digest(&part), a.signature))
    }
}

/// Checks the signatures of `nodes` not yet known good, with Ed25519 batch verification, and
/// marks them good. On failure names the first node (in slice order) whose signature is bad,
/// found by single verification; the nodes before it are still marked good. The batch and
/// single checks apply the same rule (ZIP-215), so the path taken never changes the result.
///
/// A batch is about twice as fast per signature as checking one by one; callers that receive
/// many nodes split them over threads (see [`crate::log::verify_parallel`]).
pub fn verify_signatures(nodes: &mut [Node]) -> Result<(), NodeError> {
    let todo: Vec<usize> = (0..nodes.len()).filter(|&i| !nodes[i].verified).collect();
    // A batch pays off from a handful of signatures on; below that, checks one by one cost
    // as much. Both give the same answer (ZIP-215).
    if todo.len() < 8 {
        return todo.iter().try_for_each(|&i| nodes[i].check_signature());
    }
    let items: Vec<_> = todo
        .iter()
        .map(|&i| {
            nodes[i]
                .signing_item()
                .expect("unverified nodes are signed")
        })
        .collect();
    if identity::verify_batch(&items) {
        for &i in &todo {
            nodes[i].verified = true;
        }
        return Ok(());
    }
    for &i in &todo {
        nodes[i].check_signature()?;
    }
    Ok(())
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Node");
        d.field("hash", &self.hash)
            .field("links", &self.links)
            .field("payload_len", &self.payload.len());
        if let Some(a) = &self.auth {
            d.field("author", &a.author)
                .field("timestamp_ms", &a.timestamp_ms);
        }
        d.finish()
    }
}

fn encoded_len_v1(links: usize, payload: usize) -> usize {
    1 + varint_len(links) + links * HASH_LEN + varint_len(payload) + payload
}

fn encode_v1(links: &[Hash], payload: &[u8]) -> Vec<u8> {
    let wire = WireOut {
        version: NODE_FORMAT_VERSION,
        links,
        payload,
    };
    let out = Vec::with_capacity(encoded_len_v1(links.len(), payload.len()));
    postcard::to_extend(&wire, out).expect("encoding into a Vec cannot fail")
}

fn encode_signed_part(
    author: &PublicKey,
    timestamp_ms: u64,
    links: &[Hash],
    payload: &[u8],
) -> Vec<u8> {
    let wire = SignedOut {
        version: SIGNED_FORMAT_VERSION,
        author: &author.0,
        timestamp: timestamp_ms.to_be_bytes(),
        links,
        payload,
    };
    let len = encoded_len_v1(links.len(), payload.len()) + SIGNED_OVERHEAD;
    postcard::to_extend(&wire, Vec::with_capacity(len)).expect("encoding into a Vec cannot fail")
}

fn decode_parts(bytes: &[u8], hash: Hash, verified: bool) -> Result<Node, NodeError> {
    if bytes.len() > MAX_NODE_BYTES {
        return Err(NodeError::TooLarge {
            got: bytes.len(),
            max: MAX_NODE_BYTES,
        });
    }
    let malformed = |e: postcard::Error| NodeError::Malformed(e.to_string());
    let (links, payload, auth, canonical_len) = match bytes.first() {
        None => return Err(NodeError::Malformed("empty input".into())),
        Some(&NODE_FORMAT_VERSION) => {
            let (wire, rest): (WireIn<'_>, &[u8]) =
                postcard::take_from_bytes(bytes).map_err(malformed)?;
            if !rest.is_empty() {
                return Err(NodeError::TrailingBytes { extra: rest.len() });
            }
            debug_assert_eq!(wire.version, NODE_FORMAT_VERSION);
            let len = encoded_len_v1(wire.links.len(), wire.payload.len());
            (wire.links, wire.payload, None, len)
        }
        Some(&SIGNED_FORMAT_VERSION) => {
            let (wire, rest): (SignedIn<'_>, &[u8]) =
                postcard::take_from_bytes(bytes).map_err(malformed)?;
            let signature: [u8; SIGNATURE_LEN] = match rest.len() {
                n if n < SIGNATURE_LEN => {
                    return Err(NodeError::Malformed(format!(
                        "signature of {n} bytes, expected {SIGNATURE_LEN}"
                    )))
                }
                n if n > SIGNATURE_LEN => {
                    return Err(NodeError::TrailingBytes {
                        extra: n - SIGNATURE_LEN,
                    })
                }
                _ => rest.try_into().expect("length checked"),
            };
            debug_assert_eq!(wire.version, SIGNED_FORMAT_VERSION);
            let auth = Authorship {
                author: PublicKey(wire.author),
                timestamp_ms: u64::from_be_bytes(wire.timestamp),
                signature,
            };
            let len = encoded_len_v1(wire.links.len(), wire.payload.len()) + SIGNED_OVERHEAD;
            (wire.links, wire.payload, Some(auth), len)
        }
        Some(&v) => {
            return Err(NodeError::UnknownVersion {
                got: v,
                expected: SIGNED_FORMAT_VERSION,
            })
        }
    };
    check_limits(links.len(), payload.len())?;
    if let Some(i) = links.windows(2).position(|w| w[0] >= w[1]) {
        return Err(NodeError::UnsortedLinks { index: i + 1 });
    }
    // Same decoded content and the canonical length means canonical varints: an overlong
    // varint is the only other way to spell these values, and it is longer.
    if bytes.len() != canonical_len {
        return Err(NodeError::NonCanonical);
    }
    Ok(Node {
        hash,
        links,
        payload: payload.to_vec(),
        verified: verified || auth.is_none(),
        auth,
    })
}

#[cfg(test)]
mod tests;
