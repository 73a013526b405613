//! `NodeDelta` frames: a node's canonical bytes without what the previous node of the same
//! stream already told the receiver.
//!
//! A replica's nodes come in chains by one author: each node links the one before it and
//! names the same author. Sent as they are, that is 64 of a signed key update's ~260 bytes
//! repeated from the node before. A delta body is
//!
//! ```text
//! | flags u8 | the canonical bytes, minus the author if AUTHOR_PREV, minus one link if LINK_PREV |
//! ```
//!
//! With `LINK_PREV` the previous node's hash is one of the links and is left out of the list
//! (the link count still counts it); links are sorted and unique, so the receiver puts it
//! back where it sorts.
//!
//! where "previous" is the node of the frame before, `Node` or `NodeDelta`, in the same
//! direction of the same session. The receiver rebuilds the canonical bytes and decodes them
//! as any node: the hash and the signature are checked on the rebuilt bytes, so a wrong
//! reference can only produce a node that fails its checks or a different node, never a
//! stored node whose bytes are not canonical. Nothing is stored or sent differently; only
//! the frames are smaller.

use crate::hash::Hash;
use crate::node::SIGNED_FORMAT_VERSION;
use crate::sync::error::{SyncError, WireError};

/// The author is the previous node's.
pub const AUTHOR_PREV: u8 = 1;
/// One of the links is the previous node's hash.
pub const LINK_PREV: u8 = 2;

/// Bytes of the author key in a signed node.
const AUTHOR_LEN: usize = 32;

/// What the previous node of a stream lets the next one leave out. A reader of a stream
/// notes every node it gets, plain or delta, in order.
#[derive(Debug, Default, Clone)]
pub struct Prev {
    hash: Option<Hash>,
    author: Option<[u8; AUTHOR_LEN]>,
}

impl Prev {
    /// Remembers the node just sent or received.
    pub fn note(&mut self, hash: Hash, canonical: &[u8]) {
        self.hash = Some(hash);
        self.author = author_of(canonical);
    }
}

fn author_of(canonical: &[u8]) -> Option<[u8; AUTHOR_LEN]> {
    match canonical.split_first() {
        Some((&SIGNED_FORMAT_VERSION, rest)) => rest.get(..AUTHOR_LEN)?.try_into().ok(),
        _ => None,
    }
}

/// Where the link count starts: after the version byte, and for a signed node after the
/// author and the 8-byte timestamp.
fn links_at(canonical: &[u8]) -> usize {
    match canonical.first() {
        Some(&SIGNED_FORMAT_VERSION) => 1 + AUTHOR_LEN + 8,
        _ => 1,
    }
}

/// A postcard varint (LEB128): its value and its length, at most 5 bytes read.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(5).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The link count, and where the list of links starts.
fn links(canonical: &[u8]) -> Option<(usize, usize)> {
    let at = links_at(canonical);
    let (count, len) = varint(canonical.get(at..)?)?;
    Some((usize::try_from(count).ok()?, at + len))
}

/// Where `hash` starts in the node's link list, if it is one of its links.
fn link_at(canonical: &[u8], hash: &Hash) -> Option<usize> {
    let (count, start) = links(canonical)?;
    (0..count)
        .map(|i| start + 32 * i)
        .take_while(|&s| canonical.len() >= s + 32)
        .find(|&s| canonical[s..s + 32] == hash.0)
}

/// The `NodeDelta` body of `canonical` after `prev`, or `None` when it would leave nothing out
/// (then the node goes as a plain `Node` frame).
pub fn compact(prev: &Prev, canonical: &[u8]) -> Option<Vec<u8>> {
    let author = prev.author.is_some() && author_of(canonical) == prev.author;
    let link = prev.hash.and_then(|h| link_at(canonical, &h));
    if !author && link.is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(canonical.len() + 1);
    out.push(u8::from(author) * AUTHOR_PREV + u8::from(link.is_some()) * LINK_PREV);
    let mut from = 0;
    if author {
        out.push(canonical[0]);
        from = 1 + AUTHOR_LEN;
    }
    match link {
        Some(s) => {
            out.extend_from_slice(&canonical[from..s]);
            out.extend_from_slice(&canonical[s + 32..]);
        }
        None => out.extend_from_slice(&canonical[from..]),
    }
    Some(out)
}

fn malformed(reason: &str) -> WireError {
    SyncError::Malformed {
        kind: "NodeDelta",
        reason: reason.to_string(),
    }
}

/// The canonical bytes a delta body stands for, after `prev`.
pub fn expand(prev: &Prev, body: &[u8]) -> Result<Vec<u8>, WireError> {
    let (&flags, rest) = body.split_first().ok_or_else(|| malformed("empty body"))?;
    if flags == 0 || flags & !(AUTHOR_PREV | LINK_PREV) != 0 {
        return Err(malformed(&format!("flags {flags:#04x}")));
    }
    let mut out = Vec::with_capacity(rest.len() + AUTHOR_LEN + 32);
    if flags & AUTHOR_PREV != 0 {
        let author = prev
            .author
            .ok_or_else(|| malformed("no previous signed node to take the author from"))?;
        if rest.first() != Some(&SIGNED_FORMAT_VERSION) {
            return Err(malformed("author left out of a node that is not signed"));
        }
        out.push(rest[0]);
        out.extend_from_slice(&author);
        out.extend_from_slice(&rest[1..]);
    } else {
        out.extend_from_slice(rest);
    }
    if flags & LINK_PREV != 0 {
        let hash = prev
            .hash
            .ok_or_else(|| malformed("no previous node to link"))?;
        let (count, start) = links(&out).ok_or_else(|| malformed("no link count"))?;
        if count == 0 || out.len() < start + 32 * (count - 1) {
            return Err(malformed("a link left out of a node without as many links"));
        }
        // The other links are sorted: the left-out one goes before the first greater one.
        let others = (0..count - 1).map(|i| start + 32 * i);
        let s = others
            .clone()
            .find(|&s| out[s..s + 32] > hash.0[..])
            .unwrap_or(start + 32 * (count - 1));
        out.splice(s..s, hash.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::node::Node;
    use quickcheck::quickcheck;

    fn signed(id: &Identity, links: Vec<Hash>, payload: Vec<u8>, ts: u64) -> Node {
        Node::signed(id, ts, links, payload).unwrap()
    }

    #[test]
    fn a_chain_by_one_author_leaves_out_author_and_link() {
        let id = Identity::generate();
        let a = signed(&id, vec![], b"a".to_vec(), 1);
        let b = signed(&id, vec![a.hash()], b"b".to_vec(), 2);
        let mut prev = Prev::default();
        assert_eq!(
            compact(&prev, &a.encode()),
            None,
            "nothing before the first node"
        );
        prev.note(a.hash(), &a.encode());
        let body = compact(&prev, &b.encode()).unwrap();
        assert_eq!(body[0], AUTHOR_PREV | LINK_PREV);
        assert_eq!(body.len(), b.encode().len() + 1 - 64);
        assert_eq!(expand(&prev, &body).unwrap(), b.encode());
    }

    #[test]
    fn references_without_a_previous_node_are_malformed() {
        let id = Identity::generate();
        let a = signed(&id, vec![], b"a".to_vec(), 1);
        let b = signed(&id, vec![a.hash()], b"b".to_vec(), 2);
        let mut prev = Prev::default();
        prev.note(a.hash(), &a.encode());
        let body = compact(&prev, &b.encode()).unwrap();
        let err = expand(&Prev::default(), &body).unwrap_err();
        assert!(
            matches!(
                err,
                SyncError::Malformed {
                    kind: "NodeDelta",
                    ..
                }
            ),
            "{err}"
        );
        // An unsigned previous node has no author to give.
        let plain = Node::new([], b"p".to_vec()).unwrap();
        let mut unsigned = Prev::default();
        unsigned.note(plain.hash(), &plain.encode());
        assert!(expand(&unsigned, &[AUTHOR_PREV, SIGNED_FORMAT_VERSION]).is_err());
        for bad in [
            &[][..],
            &[0, 1, 0, 0],
            &[4, 1, 0, 0],
            &[LINK_PREV, 1, 0, 0],
            &[LINK_PREV, 1, 3],
        ] {
            assert!(expand(&prev, bad).is_err(), "{bad:?}");
        }
        // Truncated bodies are errors, not panics.
        for n in 0..body.len() {
            let _ = expand(&prev, &body[..n]);
        }
    }

    quickcheck! {
        /// Whatever the node and whatever came before it, expanding its delta gives back its
        /// canonical bytes.
        fn delta_round_trips(payload: Vec<u8>, links: Vec<u8>, same_author: bool, signed_prev: bool, ts: u64) -> bool {
            let id = Identity::from_secret_bytes(&[7; 32]);
            let other = Identity::from_secret_bytes(&[8; 32]);
            let prev_node = if signed_prev {
                signed(&id, vec![], vec![1], 1)
            } else {
                Node::new([], vec![1]).unwrap()
            };
            let mut links: Vec<Hash> = links.iter().take(4).map(|&b| Hash([b; 32])).collect();
            if links.first().is_some_and(|l| l.0[0] % 2 == 0) {
                links[0] = prev_node.hash();
            }
            let author = if same_author { &id } else { &other };
            let Ok(node) = Node::signed(author, ts, links.clone(), payload.clone()) else {
                return true;
            };
            let mut prev = Prev::default();
            prev.note(prev_node.hash(), &prev_node.encode());
            let plain = Node::new(links, payload).unwrap();
            [node.encode(), plain.encode()].iter().all(|bytes| match compact(&prev, bytes) {
                Some(body) => body.len() < bytes.len() && expand(&prev, &body).unwrap() == *bytes,
                None => true,
            })
        }
    }
}
