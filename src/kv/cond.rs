//! Read-modify-write without lost updates.
//!
//! [`Kv::put`] supersedes whatever the key's current versions are when it commits, including
//! versions that arrived by sync after the caller last read the key: right for "set this
//! value", a lost update for "add one to what I read". A write with
//! [`Write::expecting`](super::Write::expecting) checks, in the write transaction, that the
//! current versions are exactly those the caller read, and otherwise writes nothing and
//! returns [`KvError::Changed`] with the versions now current. [`Kv::update`] wraps the read,
//! the caller's function and that conditional write in a loop. The function runs outside the
//! write lock, so a slow one does not block other writers; the price is that it may run more
//! than once.

use super::op::Op;
use super::write::Write;
use super::{Kv, KvError, KvRead, Versions};
use crate::hash::Hash;

/// How many times [`Kv::update`] reads and tries again when the key keeps changing between
/// its read and its write; then it returns the last [`KvError::Changed`].
pub const MAX_UPDATE_TRIES: usize = 64;

impl Kv {
    /// Read-modify-write: reads the current versions of `key` (all of them, so `f` can merge
    /// a conflict), writes the operation `f` returns if the key did not change meanwhile, and
    /// otherwise reads again and calls `f` again, up to [`MAX_UPDATE_TRIES`] times. `f` may
    /// run more than once: keep it free of side effects. `f` may decline to write (`Ok(None)`,
    /// and the result is `Ok(None)`) or fail (its error is returned, nothing written): any
    /// error type a [`KvError`] converts into.
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// use braidlog::kv::{Kv, KvError, KvRead, Op};
    /// let kv = Kv::open(&log)?;
    /// let add = |n: u64| {
    ///     kv.update(b"hits", |versions| {
    ///         let old: u64 = versions.value().map_or(0, |v| String::from_utf8_lossy(v).parse().unwrap());
    ///         Ok::<_, KvError>(Some(Op::Put((old + n).to_string().into_bytes())))
    ///     })
    /// };
    /// add(2)?;
    /// add(3)?;
    /// assert_eq!(kv.get(b"hits")?.unwrap().value(), Some(&b"5"[..]));
    /// # Ok(()) }
    /// ```
    pub fn update<E: From<KvError>>(
        &self,
        key: impl AsRef<[u8]>,
        mut f: impl FnMut(&Versions) -> Result<Option<Op>, E>,
    ) -> Result<Option<Hash>, E> {
        let key = key.as_ref();
        let mut tries = 0;
        loop {
            let versions = self.versions(key)?;
            let Some(op) = f(&versions)? else {
                return Ok(None);
            };
            tries += 1;
            match self.write(key, Write::from(op).expecting(&versions.hashes())) {
                Err(KvError::Changed { .. }) if tries < MAX_UPDATE_TRIES => {}
                r => return Ok(Some(r?)),
            }
        }
    }
}
