//! What a read returns: the current versions of a key.

use super::op::Op;
use crate::hash::Hash;

/// One current version of a key: the KV node that wrote it, and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Version {
    /// The node that wrote this version.
    pub hash: Hash,
    /// Causal depth within the key's own DAG: 1 for an operation that supersedes nothing,
    /// else 1 + the greatest depth among the same-key operations it links. Equal on every
    /// replica; used by the deterministic policy ([`super::resolve::winner`]).
    pub depth: u64,
    /// The value, or a tombstone.
    pub op: Op,
}

impl Version {
    /// The value, `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.op.value()
    }

    /// Whether this version is a delete.
    pub fn is_tombstone(&self) -> bool {
        self.op.is_tombstone()
    }
}

/// All current versions of a key, in hash order (the same order on every replica).
///
/// Usually one; several when writes were concurrent (a conflict). Tombstones are included:
/// [`Versions::is_present`] says whether any version is a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Versions {
    list: Vec<Version>,
}

impl Versions {
    pub(crate) fn from_list(list: Vec<Version>) -> Versions {
        Versions { list }
    }

    /// Number of current versions, tombstones included.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when the key was never written (no versions at all).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// True when some current version is a value (not every version is a tombstone).
    pub fn is_present(&self) -> bool {
        self.list.iter().any(|v| !v.is_tombstone())
    }

    /// True when the key is present and its current versions disagree: concurrent writes of
    /// different values (or a put beside a delete) that no later write has resolved.
    /// Versions that all carry the same value are not a conflict, nor are concurrent deletes
    /// (the key is simply absent): with authors in every node id, two replicas that resolve a
    /// conflict alike write two nodes, and those must read as the one value they agree on, or
    /// automatic resolvers would resolve each other's resolutions forever.
    pub fn is_conflict(&self) -> bool {
        self.is_present() && !self.agree()
    }

    /// Whether every current version carries the same operation (value or tombstone).
    fn agree(&self) -> bool {
        self.list.windows(2).all(|w| w[0].op == w[1].op)
    }

    /// The versions, in hash order.
    pub fn as_slice(&self) -> &[Version] {
        &self.list
    }

    /// Iterates the versions, in hash order.
    pub fn iter(&self) -> std::slice::Iter<'_, Version> {
        self.list.iter()
    }

    /// The hashes of the versions: what a write must link to supersede them all.
    pub fn hashes(&self) -> Vec<Hash> {
        self.list.iter().map(|v| v.hash).collect()
    }

    /// The value when every version is a put of that same value (usually there is one
    /// version): `None` when absent *or* in conflict (check [`Versions::is_conflict`]); never
    /// picks one of several different values.
    pub fn value(&self) -> Option<&[u8]> {
        match self.list.first() {
            Some(first) if self.agree() => first.value(),
            _ => None,
        }
    }

    /// The values of every version that is not a tombstone.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.list.iter().filter_map(Version::value)
    }

    /// The version the opt-in deterministic policy picks ([`super::resolve::winner`]).
    pub fn winner(&self) -> Option<&Version> {
        super::resolve::winner(&self.list)
    }
}

impl IntoIterator for Versions {
    type Item = Version;
    type IntoIter = std::vec::IntoIter<Version>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl<'a> IntoIterator for &'a Versions {
    type Item = &'a Version;
    type IntoIter = std::slice::Iter<'a, Version>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// A key and its current versions, as scans yield them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key (without its namespace).
    pub key: Vec<u8>,
    /// Its current versions.
    pub versions: Versions,
}
