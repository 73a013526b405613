//! Fold nodes: how one write supersedes more versions of a key than one node may link.
//!
//! A node links at most [`MAX_LINKS`] nodes, yet a key can have any number of current versions
//! (every replica may write it at once, and a hostile peer can add thousands cheaply). A write
//! that must supersede more than fit links them through *fold nodes*: each fold links up to
//! [`MAX_LINKS`] versions (or other folds of the same key), and the write links the folds.
//! The folds and the write go in one transaction.
//!
//! A fold is not an operation on the key: it has no value, is never a version, is not listed
//! by [`super::Kv::history`] as an entry of its own, and hides nothing by itself. A version
//! linked by a fold stays current until an operation on the key links that fold (directly or
//! through further folds); then the operation supersedes it exactly as if it linked it. So a
//! replica that has received the folds but not yet the write above them (a sync cut between
//! two batches) reads the same versions as before.
//!
//! Folds are deterministic: versions are folded in hash order, [`MAX_LINKS`] per fold, with
//! no log heads added, so two replicas folding the same versions write the same fold nodes.
//!
//! Payload of a fold (format version 1):
//!
//! ```text
//! +----------------+---------+---------------------------------------------+
//! | magic          | version | postcard { namespace: bytes, key: bytes }    |
//! | 00 'b' 'k' 'f' | u8 = 1  |                                             |
//! +----------------+---------+---------------------------------------------+
//! ```
//!
//! As for operations, a payload is a fold only when it is exactly the canonical encoding of
//! what it decodes to and respects the key and namespace limits.

use serde::{Deserialize, Serialize};

use super::op::{check_key, check_namespace, key_id};
use super::Result;
use crate::hash::Hash;
use crate::log::Writer;
use crate::node::MAX_LINKS;

/// First bytes of every fold payload.
pub const FOLD_MAGIC: [u8; 4] = *b"\0bkf";

/// The fold payload format version written by this release.
pub const FOLD_FORMAT_VERSION: u8 = 1;

/// A decoded fold payload: which key's versions the node folds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// Encoded namespace path (empty for the root namespace).
    #[serde(with = "serde_bytes")]
    pub namespace: Vec<u8>,
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
}

impl Fold {
    /// The node payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOLD_MAGIC.len() + 3 + self.key.len());
        out.extend_from_slice(&FOLD_MAGIC);
        out.push(FOLD_FORMAT_VERSION);
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes a node payload; `None` when it is not a valid fold.
    pub fn decode(payload: &[u8]) -> Option<Fold> {
        let rest = payload.strip_prefix(&FOLD_MAGIC)?;
        let (&version, body) = rest.split_first()?;
        if version != FOLD_FORMAT_VERSION {
            return None;
        }
        let (fold, trailing): (Fold, _) = postcard::take_from_bytes(body).ok()?;
        if !trailing.is_empty()
            || check_key(&fold.key).is_err()
            || check_namespace(&fold.namespace).is_err()
        {
            return None;
        }
        (fold.encode() == payload).then_some(fold)
    }

    pub(crate) fn key_id(&self) -> Vec<u8> {
        key_id(&self.namespace, &self.key)
    }
}

/// Returns links that stand for `versions` (of the key `key` in namespace `ns`) within `room`
/// links: `versions` itself when it fits, else fold nodes added through `w`, [`MAX_LINKS`]
/// versions each, in layers until the top layer fits. With `room` 0 nothing can fit and the
/// versions are returned as they are (the write then fails with `TooManyLinks`).
pub(crate) fn fold_versions(
    w: &mut Writer<'_, '_>,
    ns: &[u8],
    key: &[u8],
    versions: Vec<Hash>,
    room: usize,
) -> Result<Vec<Hash>> {
    fold_with_width(w, ns, key, versions, room, MAX_LINKS)
}

/// [`fold_versions`] with `width` links per fold (at least 2), so tests can fold small sets.
pub(crate) fn fold_with_width(
    w: &mut Writer<'_, '_>,
    ns: &[u8],
    key: &[u8],
    mut links: Vec<Hash>,
    room: usize,
    width: usize,
) -> Result<Vec<Hash>> {
    if links.len() <= room || room == 0 {
        return Ok(links);
    }
    let width = width.clamp(2, MAX_LINKS);
    let payload = Fold {
        namespace: ns.to_vec(),
        key: key.to_vec(),
    }
    .encode();
    while links.len() > room {
        // Hash order, so that replicas folding the same versions write the same folds.
        links.sort_unstable();
        links.dedup();
        let mut layer = Vec::with_capacity(links.len().div_ceil(width));
        for chunk in links.chunks(width) {
            match chunk {
                [one] => layer.push(*one), // a fold of one version would be that version
                _ => layer.push(w.add(chunk.iter().copied(), payload.clone())?.hash()),
            }
        }
        links = layer;
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::op::{KvOp, Op, MAGIC};
    use quickcheck::quickcheck;

    #[test]
    fn payload_format_is_stable_and_distinct_from_operations() {
        let fold = Fold {
            namespace: b"\x05users".to_vec(),
            key: b"ada".to_vec(),
        };
        let bytes = fold.encode();
        assert_eq!(bytes, b"\0bkf\x01\x06\x05users\x03ada");
        assert_eq!(Fold::decode(&bytes), Some(fold));
        assert_eq!(KvOp::decode(&bytes), None, "a fold is not an operation");
        let op = KvOp::new(b"", b"ada", Op::Del).unwrap().encode();
        assert_eq!(Fold::decode(&op), None);
        assert_ne!(FOLD_MAGIC, MAGIC);
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Fold::decode(&long), None, "trailing bytes");
        let mut v2 = bytes;
        v2[FOLD_MAGIC.len()] = 2;
        assert_eq!(Fold::decode(&v2), None, "unknown version");
    }

    quickcheck! {
        fn prop_decode_never_panics_and_is_canonical(body: Vec<u8>) -> bool {
            let mut payload = FOLD_MAGIC.to_vec();
            payload.push(FOLD_FORMAT_VERSION);
            payload.extend_from_slice(&body);
            match Fold::decode(&payload) {
                Some(fold) => fold.encode() == payload,
                None => true,
            }
        }
    }
}
