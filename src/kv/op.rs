//! KV operations as node payloads, and the byte encoding of keys in the view's tables.
//!
//! Payload of a KV operation (format version 1):
//!
//! ```text
//! +----------------+---------+--------------------------------------------------+
//! | magic          | version | postcard { namespace: bytes, key: bytes, op }     |
//! | 00 'b' 'k' 'v' | u8 = 1  | op = 0 (Put) ++ value bytes | 1 (Del)             |
//! +----------------+---------+--------------------------------------------------+
//! ```
//!
//! A payload is a KV operation only if it has the magic, a known version, is exactly the
//! canonical encoding of what it decodes to (no trailing bytes, no overlong varints) and
//! respects [`MAX_KEY_LEN`] and [`MAX_NAMESPACE_LEN`]. Anything else is
//! some other application's node and the view ignores it. The rule depends on the bytes alone,
//! so every replica classifies every node the same way.
//!
//! Key ids (how the view's tables order keys):
//!
//! ```text
//! +--------------+-----------+--------------------------+-------+
//! | ns length u8 | namespace | key, each 00 as 00 FF    | 00 01 |
//! +--------------+-----------+--------------------------+-------+
//! ```
//!
//! Within one namespace, key ids sort exactly like the keys (bytewise), and no key id is a
//! prefix of another, so a version's table key `key id ++ hash` groups the versions of a key
//! together. The limits keep every table key under LMDB's 511-byte key limit:
//! `1 + 64 + (2 * 200 + 2) + 32 = 499`.

use serde::{Deserialize, Serialize};

use super::KvError;

/// First bytes of every KV payload. The leading zero byte keeps it apart from text payloads.
pub const MAGIC: [u8; 4] = *b"\0bkv";

/// The KV payload format version written by this release.
pub const OP_FORMAT_VERSION: u8 = 1;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 200;

/// Longest encoded namespace path, in bytes (each level costs its length plus one).
pub const MAX_NAMESPACE_LEN: usize = 64;

/// What a KV operation does to its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Sets the value.
    Put(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Deletes the key: a tombstone version.
    Del,
}

impl Op {
    /// The value of a put, `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Op::Put(v) => Some(v),
            Op::Del => None,
        }
    }

    /// Whether this is a delete.
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Op::Del)
    }
}

impl From<Vec<u8>> for Op {
    fn from(value: Vec<u8>) -> Op {
        Op::Put(value)
    }
}

impl From<&[u8]> for Op {
    fn from(value: &[u8]) -> Op {
        Op::Put(value.to_vec())
    }
}

/// A decoded KV operation: the payload of a KV node.
///
/// ```
/// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
/// use braidlog::kv::{KvOp, Op};
/// let op = KvOp::new(b"", b"colour", Op::Put(b"blue".to_vec())).unwrap();
/// assert_eq!(KvOp::decode(&op.encode()), Some(op));
/// assert_eq!(KvOp::decode(b"some other app's payload"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvOp {
    /// Encoded namespace path (empty for the root namespace).
    #[serde(with = "serde_bytes")]
    pub namespace: Vec<u8>,
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Put or delete.
    pub op: Op,
}

impl KvOp {
    /// Builds an operation, checking the limits.
    pub fn new(namespace: &[u8], key: &[u8], op: Op) -> Result<KvOp, KvError> {
        check_namespace(namespace)?;
        check_key(key)?;
        Ok(KvOp {
            namespace: namespace.to_vec(),
            key: key.to_vec(),
            op,
        })
    }

    /// The node payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + self.key.len() + 16);
        out.extend_from_slice(&MAGIC);
        out.push(OP_FORMAT_VERSION);
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes a node payload; `None` when it is not a valid KV operation.
    pub fn decode(payload: &[u8]) -> Option<KvOp> {
        let rest = payload.strip_prefix(&MAGIC)?;
        let (&version, body) = rest.split_first()?;
        if version != OP_FORMAT_VERSION {
            return None;
        }
        let (op, trailing): (KvOp, _) = postcard::take_from_bytes(body).ok()?;
        if !trailing.is_empty()
            || check_key(&op.key).is_err()
            || check_namespace(&op.namespace).is_err()
        {
            return None;
        }
        // One operation, one payload: postcard accepts overlong varints, so compare with the
        // canonical encoding (the bytes are at most a node's payload, 1 MiB).
        (op.encode() == payload).then_some(op)
    }

    /// The id of this operation's key in the view's tables.
    pub(crate) fn key_id(&self) -> Vec<u8> {
        key_id(&self.namespace, &self.key)
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<(), KvError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KvError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

pub(crate) fn check_namespace(ns: &[u8]) -> Result<(), KvError> {
    if ns.len() > MAX_NAMESPACE_LEN {
        return Err(KvError::NamespaceTooLong {
            len: ns.len(),
            max: MAX_NAMESPACE_LEN,
        });
    }
    Ok(())
}

/// Appends one level to an encoded namespace path: `len u8 ++ name`.
pub(crate) fn push_namespace(parent: &[u8], name: &[u8]) -> Result<Vec<u8>, KvError> {
    let len = parent.len() + 1 + name.len();
    if len > MAX_NAMESPACE_LEN {
        return Err(KvError::NamespaceTooLong {
            len,
            max: MAX_NAMESPACE_LEN,
        });
    }
    let mut out = parent.to_vec();
    out.push(name.len() as u8); // name.len() < MAX_NAMESPACE_LEN < 256
    out.extend_from_slice(name);
    Ok(out)
}

/// The common prefix of every key id in a namespace.
pub(crate) fn ns_prefix(ns: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + ns.len());
    out.push(ns.len() as u8); // checked: at most MAX_NAMESPACE_LEN
    out.extend_from_slice(ns);
    out
}

/// Escapes `key` so that the encoding keeps byte order and no key's escape is a prefix of
/// another's once terminated: `00` becomes `00 FF`, other bytes stay.
fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// The escaped key without its terminator: every key id of a key starting with `prefix`
/// starts with `ns_prefix ++ escaped_prefix`.
pub(crate) fn prefix_id(ns: &[u8], prefix: &[u8]) -> Vec<u8> {
    let mut out = ns_prefix(ns);
    escape_into(&mut out, prefix);
    out
}

/// `ns_prefix ++ escape(key) ++ 00 01`.
pub(crate) fn key_id(ns: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = prefix_id(ns, key);
    out.extend_from_slice(&[0, 1]);
    out
}

/// Decodes the key from an id (or an id followed by more bytes), given its namespace prefix
/// length. Returns the key and the length of the id.
pub(crate) fn split_key_id(bytes: &[u8], ns_prefix_len: usize) -> Option<(Vec<u8>, usize)> {
    let mut key = Vec::new();
    let mut i = ns_prefix_len;
    loop {
        match (bytes.get(i)?, bytes.get(i + 1)) {
            (0, Some(0xFF)) => {
                key.push(0);
                i += 2;
            }
            (0, Some(1)) => return Some((key, i + 2)),
            (0, _) => return None,
            (&b, _) => {
                key.push(b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn payload_round_trip_and_rejects() {
        let op = KvOp::new(b"ns", b"k", Op::Del).unwrap();
        let bytes = op.encode();
        assert_eq!(KvOp::decode(&bytes), Some(op));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(KvOp::decode(&long), None, "trailing bytes");
        let mut v2 = bytes.clone();
        v2[MAGIC.len()] = 2;
        assert_eq!(KvOp::decode(&v2), None, "unknown version");
        assert_eq!(KvOp::decode(&bytes[..bytes.len() - 1]), None, "truncated");
        assert_eq!(KvOp::decode(b""), None);
        let too_long = KvOp {
            namespace: vec![],
            key: vec![1; MAX_KEY_LEN + 1],
            op: Op::Del,
        };
        assert_eq!(KvOp::decode(&too_long.encode()), None, "key over the limit");
        assert!(KvOp::new(b"", &[1; MAX_KEY_LEN + 1], Op::Del).is_err());
    }

    /// The payload format is persisted and replicated: this pins it byte for byte.
    #[test]
    fn payload_format_is_stable() {
        let put = KvOp::new(b"\x05users", b"ada", Op::Put(b"x".to_vec())).unwrap();
        assert_eq!(put.encode(), b"\0bkv\x01\x06\x05users\x03ada\x00\x01x");
        let del = KvOp::new(b"", b"", Op::Del).unwrap();
        assert_eq!(del.encode(), b"\0bkv\x01\x00\x00\x01");
    }

    #[test]
    fn overlong_lengths_are_not_ops() {
        // Namespace length 0 written as two varint bytes.
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&[OP_FORMAT_VERSION, 0x80, 0x00, 0x00, 0x01]);
        assert_eq!(KvOp::decode(&payload), None);
    }

    #[test]
    fn namespace_paths_are_limited() {
        let a = push_namespace(b"", b"users").unwrap();
        assert_eq!(a, b"\x05users");
        let ab = push_namespace(&a, b"x").unwrap();
        assert_eq!(ab, b"\x05users\x01x");
        assert!(push_namespace(b"", &[b'a'; MAX_NAMESPACE_LEN]).is_err());
    }

    #[test]
    fn longest_table_key_fits_lmdb() {
        let ns = vec![0; MAX_NAMESPACE_LEN];
        let key = vec![0; MAX_KEY_LEN];
        assert!(key_id(&ns, &key).len() + 32 <= 511);
    }

    quickcheck! {
        fn prop_key_id_preserves_order(a: Vec<u8>, b: Vec<u8>) -> bool {
            key_id(b"n", &a).cmp(&key_id(b"n", &b)) == a.cmp(&b)
        }

        fn prop_key_id_round_trips(ns: Vec<u8>, key: Vec<u8>, tail: Vec<u8>) -> bool {
            let ns = &ns[..ns.len().min(MAX_NAMESPACE_LEN)];
            let mut id = key_id(ns, &key);
            let len = id.len();
            id.extend_from_slice(&tail);
            split_key_id(&id, 1 + ns.len()) == Some((key, len))
        }

        fn prop_prefix_id_matches_exactly_prefixed_keys(p: Vec<u8>, key: Vec<u8>) -> bool {
            key_id(b"", &key).starts_with(&prefix_id(b"", &p)) == key.starts_with(&p)
        }

        fn prop_decode_never_panics(body: Vec<u8>) -> bool {
            let mut payload = MAGIC.to_vec();
            payload.push(OP_FORMAT_VERSION);
            payload.extend_from_slice(&body);
            let _ = KvOp::decode(&body);
            match KvOp::decode(&payload) {
                Some(op) => op.encode() == payload,
                None => true,
            }
        }

        fn prop_ops_round_trip(ns: Vec<u8>, key: Vec<u8>, value: Option<Vec<u8>>) -> bool {
            let op = value.map_or(Op::Del, Op::Put);
            match KvOp::new(&ns, &key, op) {
                Ok(op) => KvOp::decode(&op.encode()) == Some(op),
                Err(_) => ns.len() > MAX_NAMESPACE_LEN || key.len() > MAX_KEY_LEN,
            }
        }

        fn prop_no_key_id_prefixes_another(a: Vec<u8>, b: Vec<u8>) -> bool {
            a == b || !key_id(b"", &b).starts_with(&key_id(b"", &a))
        }
    }
}
