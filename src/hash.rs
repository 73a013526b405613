//! `Hash`: the 32-byte blake3 digest that names every node.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Length of a [`Hash`](struct@Hash) in bytes.
pub const HASH_LEN: usize = 32;

/// Number of hex characters in [`Hash::short`].
pub const SHORT_HEX_LEN: usize = 12;

/// A blake3 digest. A node's id is the hash of its canonical encoding.
///
/// `Display` is lowercase hex; `FromStr` parses 64 hex characters; [`Hash::short`] gives the
/// first 12 hex characters for people. `Ord` is byte order, which is also LMDB key order.
///
/// ```
/// use braidlog::Hash;
/// let h = Hash::of(b"hello");
/// let parsed: Hash = h.to_string().parse().unwrap();
/// assert_eq!(h, parsed);
/// assert_eq!(h.short().len(), 12);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// Hashes `bytes` with blake3.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Reads a hash from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Hash, ParseHashError> {
        let arr: [u8; HASH_LEN] = bytes
            .try_into()
            .map_err(|_| ParseHashError::Length { got: bytes.len() })?;
        Ok(Hash(arr))
    }

    /// The first 12 hex characters, for logs and terminals. Not unique; never parse it back.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..SHORT_HEX_LEN / 2])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; HASH_LEN * 2];
        hex::encode_to_slice(self.0, &mut buf).expect("buffer is exactly twice the hash length");
        f.write_str(std::str::from_utf8(&buf).expect("hex is ascii"))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

/// Why a string or slice is not a [`Hash`](struct@Hash).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseHashError {
    /// Not exactly 64 hex characters (or 32 bytes).
    #[error("a hash is 32 bytes (64 hex characters), got {got}")]
    Length {
        /// The length that was given, in characters or bytes.
        got: usize,
    },
    /// A character that is not a hex digit.
    #[error("a hash is hex: {0}")]
    Hex(#[from] hex::FromHexError),
}

impl FromStr for Hash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Hash, ParseHashError> {
        if s.len() != HASH_LEN * 2 {
            return Err(ParseHashError::Length { got: s.len() });
        }
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Hash(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn rejects_bad_strings() {
        assert!(matches!(
            "abc".parse::<Hash>(),
            Err(ParseHashError::Length { got: 3 })
        ));
        let bad = "z".repeat(64);
        assert!(matches!(bad.parse::<Hash>(), Err(ParseHashError::Hex(_))));
        assert!(Hash::from_slice(&[0; 31]).is_err());
    }

    #[test]
    fn display_is_lowercase_hex() {
        let h = Hash([0xab; 32]);
        assert_eq!(h.to_string(), "ab".repeat(32));
        assert_eq!(h.short(), "abababababab");
    }

    quickcheck! {
        fn prop_hex_round_trip(bytes: Vec<u8>) -> bool {
            let h = Hash::of(&bytes);
            h.to_string().parse::<Hash>() == Ok(h)
        }

        fn prop_order_is_byte_order(a: Vec<u8>, b: Vec<u8>) -> bool {
            let (x, y) = (Hash::of(&a), Hash::of(&b));
            x.cmp(&y) == x.0.cmp(&y.0)
        }
    }
}
