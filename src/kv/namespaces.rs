//! Walking the key-value view's namespaces in order, and counting a namespace's keys, with
//! one seek per namespace: never loading every key into memory.

use std::ops::Bound;

use super::op;
use super::view::Tables;
use super::{Kv, KvError};
use crate::store::StorageError;

type Result<T, E = KvError> = std::result::Result<T, E>;

/// How many keys a namespace holds; see [`Kv::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct KeyCounts {
    /// Keys with a value (not deleted).
    pub keys: u64,
    /// Keys in conflict.
    pub conflicts: u64,
}

/// The names of an encoded namespace path's levels, outermost first (none for the root):
/// each is what [`Kv::namespace`] takes.
pub fn namespace_levels(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    out
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Kv {
    /// The encoded path of the first namespace after `after` (from the start when `None`)
    /// that has ever held a key: one seek, whatever the number of keys. Namespaces order by
    /// the length of their encoded path, then bytewise; the root (empty path) comes first.
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// let kv = braidlog::kv::Kv::open(&log)?;
    /// let users = kv.namespace("users")?;
    /// users.put(b"ada", b"admin".to_vec())?;
    /// let first = kv.next_namespace(None)?.unwrap();
    /// assert_eq!(first, users.namespace_path());
    /// assert_eq!(braidlog::kv::namespace_levels(&first), vec![b"users".to_vec()]);
    /// assert!(kv.next_namespace(Some(&first))?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn next_namespace(&self, after: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        let tables = Tables::open(self.log())?;
        let start = match after {
            None => Vec::new(),
            Some(path) => match prefix_end(&op::ns_prefix(path)) {
                Some(end) => end,
                None => return Ok(None),
            },
        };
        self.log().read(|txn| {
            // LMDB has no empty keys: the start of the table is an unbounded range.
            let from = match start.is_empty() {
                true => Bound::Unbounded,
                false => Bound::Included(start.as_slice()),
            };
            let first = txn
                .range(tables.keys, from, Bound::Unbounded)?
                .next()
                .transpose()?;
            let Some((id, _)) = first else {
                return Ok(None);
            };
            let path = id
                .first()
                .and_then(|&len| id.get(1..1 + usize::from(len)))
                .ok_or_else(|| StorageError::Corrupt(format!("kv key id of {} bytes", id.len())))?;
            Ok(Some(path.to_vec()))
        })
    }

    /// How many keys of this namespace have a value, and how many are in conflict: a scan of
    /// the namespace's per-key counts (16 bytes a key, no values).
    pub fn counts(&self) -> Result<KeyCounts> {
        let tables = Tables::open(self.log())?;
        let prefix = op::ns_prefix(self.namespace_path());
        self.log().read(|txn| {
            let mut counts = KeyCounts::default();
            for item in txn.prefix(tables.keys, &prefix)? {
                let (_, value) = item?;
                // versions u64 ++ puts u64: present when some current version is a put.
                let puts = value
                    .get(8..16)
                    .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
                    .ok_or_else(|| {
                        StorageError::Corrupt(format!("kv counts of {} bytes", value.len()))
                    })?;
                counts.keys += u64::from(puts > 0);
            }
            for item in txn.prefix(tables.conflicts, &prefix)? {
                item?;
                counts.conflicts += 1;
            }
            Ok(counts)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Log;

    #[test]
    fn namespaces_are_walked_in_order_with_counts() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let kv = Kv::open(&log).unwrap();
        assert!(kv.next_namespace(None).unwrap().is_none());
        kv.put("top", b"1".to_vec()).unwrap();
        let app = kv.namespace("app").unwrap();
        app.put("a", b"1".to_vec()).unwrap();
        app.put("gone", b"1".to_vec()).unwrap();
        app.del("gone").unwrap();
        let deep = app.namespace("deep").unwrap();
        deep.put("x", b"1".to_vec()).unwrap();
        // A conflict: two writes that did not see each other.
        let base = log.heads().unwrap();
        let z = kv.namespace([0xFFu8; 63]).unwrap();
        for v in [b"l", b"r"] {
            let op = crate::kv::KvOp::new(z.namespace_path(), b"k", crate::kv::Op::Put(v.to_vec()));
            log.add(base.clone(), op.unwrap().encode()).unwrap();
        }
        let mut seen = Vec::new();
        let mut after = None;
        while let Some(path) = kv.next_namespace(after.as_deref()).unwrap() {
            let mut handle = kv.clone();
            for level in namespace_levels(&path) {
                handle = handle.namespace(level).unwrap();
            }
            assert_eq!(handle.namespace_path(), path);
            let counts = handle.counts().unwrap();
            seen.push((namespace_levels(&path), counts.keys, counts.conflicts));
            after = Some(path);
        }
        assert_eq!(
            seen,
            vec![
                (vec![], 1, 0),
                (vec![b"app".to_vec()], 1, 0),
                (vec![b"app".to_vec(), b"deep".to_vec()], 1, 0),
                (vec![vec![0xFF; 63]], 1, 1),
            ]
        );
    }
}
