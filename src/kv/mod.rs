//! A key-value store over the log, with explicit conflicts (see `docs/KV.md`).
//!
//! Every write is a node whose payload is a [`KvOp`] and whose links are the current versions
//! of its key, so each key has its own small DAG inside the log's. Replicas write at any time
//! and exchange nodes; writes that did not see each other are *concurrent* and both stay
//! current: [`Kv::get`] shows every version until a write that links them all supersedes
//! them. Nothing is silently overridden.
//!
//! ```
//! # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
//! # fn main() -> Result<(), braidlog::Error> {
//! use braidlog::kv::{Kv, KvRead};
//! use braidlog::Log;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path())?;
//! let kv = Kv::open(&log)?;
//!
//! kv.put(b"colour", b"blue".to_vec())?;
//! kv.put(b"colour", b"green".to_vec())?;         // supersedes "blue"
//! let versions = kv.get(b"colour")?.unwrap();
//! assert_eq!(versions.value(), Some(&b"green"[..]));
//! assert!(!versions.is_conflict());
//!
//! kv.del(b"colour")?;
//! assert!(kv.get(b"colour")?.is_none());             // absent...
//! assert!(kv.versions(b"colour")?.as_slice()[0].is_tombstone()); // ...as a tombstone
//! assert_eq!(kv.history(b"colour").count(), 3);    // nothing is forgotten
//! # Ok(()) }
//! ```
//!
//! Writes: one [`Kv::write`] with its options ([`Write`]: the versions it supersedes, the
//! versions it expects, extra links), [`Kv::put`] and [`Kv::del`] as sugar, [`Kv::update`]
//! for read-modify-write, [`Kv::batch`] for many writes in one transaction. Reads: the
//! [`KvRead`] trait, shared by [`Kv`], a [`Snapshot`] and a [`KvBatch`]; scans ([`Scan`],
//! [`History`]) and watches ([`Watcher`]).
//!
//! Writing app merges (see `docs/MERGING.md`): [`Kv::resolve`] with a [`Strategy`]
//! ([`MergeFn`], [`Pick`], [`Deterministic`]); [`Ancestry`] gives what a three-way merge
//! needs (merge base, history since); [`Kv::register_merge`] runs a [`Merge`] operator
//! whenever a write or a sync leaves a key with several versions ([`Counter`] and
//! [`CountingSet`] ship here); watch events say where a change came from and whether the key
//! is in conflict.
//!
//! Files: `op.rs` (payload and key encoding), `view.rs` (tables, applying nodes),
//! `versions.rs` (what reads return), `read.rs`, `write.rs`, `cond.rs` (read-modify-write),
//! `resolve.rs`, `ancestry.rs`, `merge.rs` (merge operators), `sums.rs`, `fold.rs`
//! (superseding more versions than one node may link), `scan.rs`, `watch.rs`, `typed.rs`,
//! `batch.rs`, `namespaces.rs`.

mod ancestry;
mod batch;
mod cond;
mod fold;
mod merge;
mod namespaces;
mod op;
#[cfg(test)]
mod prop_tests;
mod read;
mod resolve;
mod scan;
mod sums;
mod typed;
mod versions;
mod view;
mod watch;
mod write;

use std::ops::RangeBounds;
use std::sync::Arc;

pub use ancestry::{Ancestry, MAX_WALK};
pub use batch::KvBatch;
pub use cond::MAX_UPDATE_TRIES;
pub use fold::Fold;
pub use merge::{Merge, OPERATOR_WALK, OPERATOR_WALK_PER_NODE};
pub use namespaces::{namespace_levels, KeyCounts};
pub use op::{KvOp, Op, MAX_KEY_LEN, MAX_NAMESPACE_LEN};
pub use read::KvRead;
pub use resolve::{winner, Deterministic, MergeFn, Pick, Strategy};
pub use scan::{History, HistoryEntry, Scan};
pub use sums::{Counter, CountingSet};
pub use typed::{Typed, TypedVersion};
pub use versions::{Entry, Version, Versions};
pub use watch::{Event, Watcher};
pub use write::Write;

use crate::hash::Hash;
use crate::log::{Log, LogError, Writer};
use crate::node::{NodeError, MAX_LINKS};
use crate::store::{ReadTxn, StorageError};
use view::{versions_in, KvView, Tables, VIEW_NAME};

/// Results of the key-value layer.
pub type Result<T, E = KvError> = std::result::Result<T, E>;

/// Errors of the key-value layer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The log underneath failed (storage, a refused node, a missing link).
    #[error(transparent)]
    Log(#[from] LogError),
    /// A key longer than [`MAX_KEY_LEN`].
    #[error("key of {len} bytes, the limit is {max}")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// [`MAX_KEY_LEN`].
        max: usize,
    },
    /// A namespace path longer than [`MAX_NAMESPACE_LEN`].
    #[error("namespace path of {len} bytes, the limit is {max}")]
    NamespaceTooLong {
        /// The encoded path's length.
        len: usize,
        /// [`MAX_NAMESPACE_LEN`].
        max: usize,
    },
    /// A typed value failed to encode or decode.
    #[error("value of key {key:?} ({hash}): {message}")]
    Codec {
        /// The key.
        key: Vec<u8>,
        /// The version's node, or the zero hash when encoding.
        hash: Hash,
        /// The codec's message.
        message: String,
    },
    /// A conditional write found other current versions than the caller saw: nothing was
    /// written. Read again (or use [`Kv::update`], which does).
    #[error("key {key:?} changed: expected {} versions, found {}", expected.len(), current.len())]
    Changed {
        /// The key.
        key: Vec<u8>,
        /// The versions the caller expected, in hash order.
        expected: Vec<Hash>,
        /// The current versions, in hash order.
        current: Vec<Hash>,
    },
    /// No current version's hash starts with the prefix given to [`Pick`].
    #[error("no current version of key {key:?} has a hash starting with {prefix}")]
    NoSuchVersion {
        /// The key.
        key: Vec<u8>,
        /// The hash prefix (hex).
        prefix: String,
    },
    /// Several current versions' hashes start with the prefix given to [`Pick`].
    #[error("{prefix} matches {matches} versions of key {key:?}")]
    AmbiguousVersion {
        /// The key.
        key: Vec<u8>,
        /// The hash prefix (hex).
        prefix: String,
        /// How many versions it matches.
        matches: usize,
    },
    /// A hash given to an ancestry query is not an operation on the key.
    #[error("{hash} is not an operation on key {key:?}")]
    NotAnOperation {
        /// The key.
        key: Vec<u8>,
        /// The hash.
        hash: Hash,
    },
    /// An ancestry walk met more nodes than its limit ([`MAX_WALK`]).
    #[error("ancestry walk on key {key:?} passed {limit} nodes")]
    WalkTooLong {
        /// The key.
        key: Vec<u8>,
        /// The limit.
        limit: usize,
    },
    /// A single value was asked for, but the key is in conflict.
    #[error("key {key:?} is in conflict between {} versions", versions.len())]
    Conflict {
        /// The key.
        key: Vec<u8>,
        /// The current versions.
        versions: Vec<Hash>,
    },
}

impl From<StorageError> for KvError {
    fn from(e: StorageError) -> Self {
        KvError::Log(e.into())
    }
}

impl From<NodeError> for KvError {
    fn from(e: NodeError) -> Self {
        KvError::Log(e.into())
    }
}

impl crate::log::WrapsLog for KvError {
    fn log_error(&self) -> Option<&LogError> {
        self.log()
    }
}

impl KvError {
    /// This error as the log layer's, for the log's own interfaces (views and write hooks
    /// report log errors): a log error as it is, a key-value one as a view error.
    pub(crate) fn into_log(self) -> LogError {
        match self {
            KvError::Log(l) => l,
            other => LogError::View {
                view: view::VIEW_NAME.into(),
                message: other.to_string(),
            },
        }
    }

    /// The log error underneath, if that is what this is.
    pub fn log(&self) -> Option<&LogError> {
        match self {
            KvError::Log(l) => Some(l),
            _ => None,
        }
    }
}

/// A consistent read view of a [`Kv`] namespace; see [`Kv::read`].
pub struct Snapshot<'a> {
    pub(crate) kv: &'a Kv,
    pub(crate) txn: &'a ReadTxn<'a>,
}

impl KvRead for Snapshot<'_> {
    fn versions(&self, key: impl AsRef<[u8]>) -> Result<Versions> {
        let id = self.kv.op(key.as_ref(), Op::Del)?.key_id();
        Ok(versions_in(&self.kv.tables, self.txn, &id)?)
    }
}

/// A key-value store in a [`Log`], or one namespace of it. Cheap to clone.
///
/// Keys and values are bytes; keys order bytewise within a namespace. Every method runs its
/// own transactions: reads see a consistent snapshot of one key; scans read in chunks (see
/// [`Scan`]).
#[derive(Clone)]
pub struct Kv {
    log: Log,
    tables: Tables,
    /// Encoded namespace path; empty for the root namespace.
    ns: Vec<u8>,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("log", &self.log)
            .field("namespace", &self.ns)
            .finish()
    }
}

impl KvRead for Kv {
    fn versions(&self, key: impl AsRef<[u8]>) -> Result<Versions> {
        self.read(|snap| snap.versions(key))
    }
}

impl Kv {
    /// Opens the store in `log`: creates its tables and registers its view (catching it up
    /// with the feed). Opening again on the same log returns another handle on the same view.
    pub fn open(log: &Log) -> Result<Kv> {
        let tables = Tables::open(log)?;
        let kv = Kv {
            log: log.clone(),
            tables,
            ns: Vec::new(),
        };
        let registered = |log: &Log| log.registered_views().iter().any(|v| v.name() == VIEW_NAME);
        if !registered(log) {
            if let Err(e) = log.register_view(Arc::new(KvView { tables })) {
                // Lost a race with another `open`: fine, the view is there.
                if !registered(log) {
                    return Err(e.into());
                }
            }
        }
        Ok(kv)
    }

    /// The log this store writes to.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// An independent key space in the same log, like a leveldb sublevel. Namespaces nest;
    /// the whole path is at most [`MAX_NAMESPACE_LEN`] bytes (each level costs its length
    /// plus one). Keys of one namespace never appear in another's reads or scans.
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// let kv = braidlog::kv::Kv::open(&log)?;
    /// let users = kv.namespace("users")?;
    /// users.put(b"ada", b"admin".to_vec())?;
    /// assert!(kv.get(b"ada")?.is_none());
    /// assert_eq!(users.get(b"ada")?.unwrap().value(), Some(&b"admin"[..]));
    /// # Ok(()) }
    /// ```
    pub fn namespace(&self, name: impl AsRef<[u8]>) -> Result<Kv> {
        Ok(Kv {
            ns: op::push_namespace(&self.ns, name.as_ref())?,
            ..self.clone()
        })
    }

    /// The encoded namespace path of this handle (empty for the root).
    pub fn namespace_path(&self) -> &[u8] {
        &self.ns
    }

    /// Adds the log's heads to a write's links, within [`MAX_LINKS`]. They are not versions of
    /// the key, so they supersede nothing; they tie the write to everything this replica had
    /// seen, which keeps the DAG's head count at the number of concurrent writers rather than
    /// the number of keys (sync's first message lists the heads, so this keeps it small).
    pub(crate) fn with_log_heads(
        &self,
        txn: &ReadTxn<'_>,
        mut links: Vec<Hash>,
    ) -> Result<Vec<Hash>> {
        let room = MAX_LINKS.saturating_sub(links.len());
        links.extend(self.log.heads_in(*txn, room)?);
        Ok(links)
    }

    /// Runs `f` in one write transaction; a transaction that filled the map runs again once
    /// the map has grown. Only for this module's own writes, whose `f` has no effects outside
    /// the transaction (never an application's closure).
    fn write_retrying<R>(&self, mut f: impl FnMut(&mut Writer<'_, '_>) -> Result<R>) -> Result<R> {
        // Each failed try has doubled the map; a write that still does not fit is refused.
        const TRIES: usize = 8;
        let mut tries = 0;
        loop {
            match self.log.transaction_typed(&mut f) {
                Err(KvError::Log(e)) if e.is_map_full() && tries < TRIES => tries += 1,
                other => return other,
            }
        }
    }

    pub(crate) fn op(&self, key: &[u8], op: Op) -> Result<KvOp> {
        KvOp::new(&self.ns, key, op)
    }

    /// Runs `f` on one consistent snapshot of the store, for reads that must agree with each
    /// other (several keys at one point in history). Keep `f` short: it holds a read
    /// transaction, which keeps old pages from being reused.
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// let kv = braidlog::kv::Kv::open(&log)?;
    /// kv.put(b"from", b"10".to_vec())?;
    /// kv.put(b"to", b"0".to_vec())?;
    /// let both = kv.read(|snap| Ok((snap.get(b"from")?, snap.get(b"to")?)))?;
    /// assert!(both.0.is_some() && both.1.is_some());
    /// # Ok(()) }
    /// ```
    pub fn read<R>(&self, f: impl FnOnce(&Snapshot<'_>) -> Result<R>) -> Result<R> {
        self.log.read(|txn| {
            f(&Snapshot {
                kv: self,
                txn: &txn,
            })
        })
    }

    /// Present keys in `range`, in key order, each with its current versions (conflicts
    /// shown).
    ///
    /// ```
    /// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = braidlog::Log::open(dir.path())?;
    /// let kv = braidlog::kv::Kv::open(&log)?;
    /// for k in ["b", "a", "d", "c"] {
    ///     kv.put(k, k.to_uppercase())?;
    /// }
    /// let keys: Vec<_> = kv.range(&b"b"[..]..&b"d"[..]).map(|e| e.unwrap().key).collect();
    /// assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
    /// # Ok(()) }
    /// ```
    pub fn range<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Scan {
        Scan::range(self.clone(), range)
    }

    /// Present keys starting with `prefix`, in key order.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Scan {
        Scan::prefix(self.clone(), prefix.as_ref())
    }

    /// Every present key of this namespace, in key order.
    pub fn iter(&self) -> Scan {
        self.prefix([])
    }

    /// Keys of this namespace in conflict (present, with more than one current version), in
    /// key order.
    pub fn conflicts(&self) -> Scan {
        Scan::conflicts(self.clone())
    }

    /// Every operation ever applied to `key`, newest first (reverse local arrival order, which
    /// is a reverse topological order, but differs between replicas), superseded ones
    /// included. For an order every replica shares see [`Kv::history_causal`]; for what
    /// happened after a version, [`Kv::history_since`].
    pub fn history(&self, key: impl AsRef<[u8]>) -> History {
        History::new(self.clone(), key.as_ref())
    }

    /// Notifies of every new operation on `key` (local or received), from now on, with its
    /// [`Origin`](crate::Origin) and the key's conflict state.
    pub fn watch(&self, key: impl AsRef<[u8]>) -> Watcher {
        Watcher::new(self.clone(), watch::Filter::Key(key.as_ref().to_vec()))
    }

    /// Notifies of every new operation on a key starting with `prefix`, from now on.
    pub fn watch_prefix(&self, prefix: impl AsRef<[u8]>) -> Watcher {
        Watcher::new(
            self.clone(),
            watch::Filter::Prefix(prefix.as_ref().to_vec()),
        )
    }

    /// A view of this store with values encoded by postcard.
    pub fn typed<V>(&self) -> Typed<V> {
        Typed::new(self.clone())
    }
}
