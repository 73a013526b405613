//! Finding things by the short names people type: a node by a prefix of its hash, the
//! namespaces of the key-value view by walking them in order.
//!
//! Both are bounded: a prefix lookup reads at most two index entries, and walking namespaces
//! seeks once per namespace, never loading every hash or key into memory.

use std::ops::Bound;

use super::error::LogError;
use crate::hash::{Hash, HASH_LEN};
use crate::store::{StorageError, Store};

/// The fewest hex characters a hash prefix may have: shorter prefixes match too much to be a
/// name (and invite a scan of the whole index to say so).
pub const MIN_PREFIX_HEX: usize = 4;

/// Why a hash prefix names no single node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// Fewer than [`MIN_PREFIX_HEX`] characters, or more than a whole hash.
    #[error("a hash prefix has {min} to 64 hex characters, got {len}")]
    Length {
        /// The characters given.
        len: usize,
        /// [`MIN_PREFIX_HEX`].
        min: usize,
    },
    /// A character that is not a hex digit.
    #[error("a hash prefix is hex digits, got {prefix:?}")]
    NotHex {
        /// The prefix given.
        prefix: String,
    },
    /// No stored node's hash starts with the prefix.
    #[error("no node in this replica has a hash starting with {prefix}")]
    NotFound {
        /// The prefix given (lowercased).
        prefix: String,
    },
    /// More than one stored node's hash starts with the prefix.
    #[error("hash prefix {prefix} is ambiguous: it matches {first}, {second} and maybe more; give more characters")]
    Ambiguous {
        /// The prefix given (lowercased).
        prefix: String,
        /// The first two matches, in hash order.
        first: Hash,
        /// See `first`.
        second: Hash,
    },
    /// Reading the index failed.
    #[error(transparent)]
    Store(#[from] LogError),
}

/// The one stored node whose hash, in hex, starts with `prefix` (see `Log::find_hash`).
pub(crate) fn find_hash(store: &Store, prefix: &str) -> Result<Hash, LookupError> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.len() < MIN_PREFIX_HEX || prefix.len() > HASH_LEN * 2 {
        return Err(LookupError::Length {
            len: prefix.chars().count(),
            min: MIN_PREFIX_HEX,
        });
    }
    if !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LookupError::NotHex { prefix });
    }
    // The whole bytes of the prefix; an odd last digit is the high half of one more byte,
    // so the scan starts at that byte with its low half zero.
    let mut start = hex::decode(&prefix[..prefix.len() / 2 * 2]).expect("checked hex");
    if prefix.len() % 2 == 1 {
        let high = u8::from_str_radix(&prefix[prefix.len() - 1..], 16).expect("checked hex");
        start.push(high << 4);
    }
    let index = store.index;
    let found: Vec<Hash> = store.read(|txn| {
        let mut out = Vec::with_capacity(2);
        for item in txn.range(index.0, Bound::Included(&start), Bound::Unbounded)? {
            let (key, _) = item?;
            let hash = Hash::from_slice(key)
                .map_err(|_| StorageError::Corrupt(format!("index key of {} bytes", key.len())))?;
            if !hash.to_string().starts_with(&prefix) || out.len() == 2 {
                break;
            }
            out.push(hash);
        }
        Ok::<_, LogError>(out)
    })?;
    match found.as_slice() {
        [] => Err(LookupError::NotFound { prefix }),
        [one] => Ok(*one),
        [first, second, ..] => Err(LookupError::Ambiguous {
            prefix,
            first: *first,
            second: *second,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Log;

    /// Hashes that share their first hex digits: a prefix that matches two is ambiguous, one
    /// more digit names one, and a prefix of no stored hash is unknown.
    #[test]
    fn prefixes_name_one_node_or_fail_typed() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        // Add nodes until two hashes share their first four hex digits (a birthday search in
        // 65536: a few hundred nodes).
        let mut by_prefix = std::collections::HashMap::new();
        let mut hashes = Vec::new();
        let (a, b) = (0u32..)
            .find_map(|i| {
                let h = log.append(i.to_be_bytes().to_vec()).unwrap().hash();
                hashes.push(h);
                by_prefix
                    .insert(h.to_string()[..4].to_string(), h)
                    .map(|old| (old, h))
            })
            .unwrap();
        let shared = common_hex(&a, &b);
        let p = &a.to_string()[..shared];
        match log.find_hash(p) {
            Err(LookupError::Ambiguous { first, second, .. }) => {
                assert_eq!((first, second), (a.min(b), a.max(b)));
            }
            other => panic!("{other:?}"),
        }
        for h in [a, b] {
            let p = &h.to_string()[..shared + 1];
            assert_eq!(log.find_hash(p).unwrap(), h);
            assert_eq!(log.find_hash(&p.to_uppercase()).unwrap(), h);
            assert_eq!(log.find_hash(&h.to_string()).unwrap(), h);
        }
        // An odd-length prefix of every stored hash.
        for h in &hashes {
            let s = h.to_string();
            match log.find_hash(&s[..5]) {
                Ok(found) => assert_eq!(found, *h),
                Err(LookupError::Ambiguous { first, second, .. }) => {
                    assert!(first.to_string().starts_with(&s[..5]));
                    assert!(second.to_string().starts_with(&s[..5]));
                }
                Err(e) => panic!("{e}"),
            }
        }
        let absent = (0..u16::MAX)
            .map(|i| format!("{i:04x}"))
            .find(|p| !hashes.iter().any(|h| h.to_string().starts_with(p)))
            .unwrap();
        assert!(matches!(
            log.find_hash(&absent),
            Err(LookupError::NotFound { .. })
        ));
        assert!(matches!(
            log.find_hash("abc"),
            Err(LookupError::Length { len: 3, .. })
        ));
        assert!(matches!(
            log.find_hash(&"a".repeat(65)),
            Err(LookupError::Length { .. })
        ));
        assert!(matches!(
            log.find_hash("abcz"),
            Err(LookupError::NotHex { .. })
        ));
        assert!(matches!(
            log.find_hash("ééé"),
            Err(LookupError::NotHex { .. } | LookupError::Length { .. })
        ));
    }

    quickcheck::quickcheck! {
        /// The lookup agrees with a scan of every stored hash, for prefixes of stored hashes
        /// and for arbitrary ones.
        fn prop_lookup_agrees_with_a_scan(nodes: u8, picks: Vec<(u8, u8)>, probes: Vec<u32>) -> bool {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(dir.path()).unwrap();
            // One transaction for all: the law is about the index, not the writes.
            let batch = (0..u32::from(nodes % 64) + 1).map(|i| (vec![], i.to_be_bytes().to_vec()));
            let hashes: Vec<String> = log
                .transaction(|w| batch.into_iter().map(|(l, p)| w.add(l, p)).collect::<Result<Vec<_>, _>>())
                .unwrap()
                .iter()
                .map(|n| n.hash().to_string())
                .collect();
            let prefixes = picks
                .iter()
                .map(|&(which, len)| {
                    let h = &hashes[usize::from(which) % hashes.len()];
                    h[..MIN_PREFIX_HEX + usize::from(len) % (64 - MIN_PREFIX_HEX + 1)].to_string()
                })
                .chain(probes.iter().map(|p| format!("{p:08x}")[..4 + (*p as usize % 5)].to_string()));
            prefixes.into_iter().all(|p| {
                let matching: Vec<&String> = hashes.iter().filter(|h| h.starts_with(&p)).collect();
                match (log.find_hash(&p), matching.as_slice()) {
                    (Ok(found), [one]) => found.to_string() == **one,
                    (Err(LookupError::NotFound { .. }), []) => true,
                    (Err(LookupError::Ambiguous { first, second, .. }), many) => {
                        many.len() >= 2
                            && many.contains(&&first.to_string())
                            && many.contains(&&second.to_string())
                    }
                    _ => false,
                }
            })
        }
    }

    fn common_hex(a: &Hash, b: &Hash) -> usize {
        let (a, b) = (a.to_string(), b.to_string());
        a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
    }
}
