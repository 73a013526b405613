//! The log layer: one replica's DAG on LMDB, and the operations on it.
//!
//! Files, bottom up (each uses only those above it in this list, and the layers below):
//! - `error.rs`: [`LogError`];
//! - `origin.rs`: where each recent commit came from ([`Origin`]);
//! - `view.rs`: the [`View`] trait and the catch-up and rebuild of views;
//! - `policy.rs`: which nodes the log accepts ([`Policy`]), and signature checks in batches;
//! - `signing.rs`: which key local writes are signed with;
//! - `write.rs`: the write path: one node into feed, index, heads and views ([`Writer`]), and
//!   the write engine every write runs through;
//! - `registry.rs`: the logs open in this process and the state their handles share;
//! - `changes.rs`: the feed iterator and subscriptions;
//! - `verify.rs`: the fsck; `lookup.rs`: a node by a prefix of its hash;
//! - `mod.rs` (this file): the [`Log`] façade.

mod changes;
mod error;
mod lookup;
mod origin;
mod policy;
mod registry;
mod signing;
mod verify;
mod view;
mod write;

use std::borrow::Borrow;
use std::path::Path;
use std::sync::Arc;

pub use changes::{Changes, FeedEntry, RawChanges, RawEntry, Subscription};
pub use error::{LogError, Result};
pub use lookup::{LookupError, MIN_PREFIX_HEX};
pub use origin::{Origin, ORIGIN_WINDOW};
pub use policy::{verify_parallel, Policy, PolicyError, PolicyMode, MAX_TRUSTED};
pub use verify::{VerifyReport, Violation, MAX_REPORTED_VIOLATIONS};
pub use view::{Change, View};
pub use write::{Inserted, Writer};

pub(crate) use view::Registered;
pub(crate) use write::{AfterWrite, WrapsLog};

use crate::hash::Hash;
use crate::identity::{Identity, PeerId, PublicKey};
use crate::node::Node;
use crate::store::{ReadTxn, StorageError, Store, StoreOptions, Table};
use registry::Shared;

/// How commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is flushed before it returns (LMDB's default). Survives power loss.
    #[default]
    Sync,
    /// Commits are left to the OS to flush (LMDB's `MDB_NOSYNC`). A crash of this process
    /// loses nothing. A crash of the *machine* (power loss, kernel panic) may lose the latest
    /// commits and, worse, can leave the database corrupt: the meta page may reach the disk
    /// before the pages it points to. Use it for data you can rebuild or re-sync from peers.
    NoSync,
}

/// Options for [`Log::open_with`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Address space reserved for the LMDB map, in bytes. The file grows with use, not with
    /// this; the map doubles whenever it gets half full. Default 64 GiB on 64-bit targets
    /// (about 2,000 open stores fit in the address space), 1 GiB elsewhere.
    pub map_size: usize,
    /// Default [`Durability::Sync`].
    pub durability: Durability,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            map_size: if cfg!(target_pointer_width = "64") {
                64 << 30
            } else {
                1 << 30
            },
            durability: Durability::Sync,
        }
    }
}

/// A replica: one LMDB environment holding one DAG, its feed, heads and views.
///
/// Cheap to clone (an `Arc`), `Send + Sync`. Reads run in parallel; writes are serialised by
/// LMDB, each one a single transaction. Every node read from disk is hash-checked before it
/// is returned ([`StorageError::Damaged`] otherwise).
///
/// ```
/// # fn main() -> Result<(), braidlog::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = braidlog::Log::open(dir.path())?;
/// let a = log.add([], b"hello".to_vec())?;
/// let b = log.add([a.hash()], b"world".to_vec())?;
/// assert_eq!(log.heads()?, vec![b.hash()]);
/// assert_eq!(log.len()?, 2);
/// assert!(log.verify()?.is_ok());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Log {
    inner: Arc<Shared>,
}

/// A handle that does not keep its log open (what a log's own hooks hold of it).
#[derive(Clone)]
pub(crate) struct WeakLog(std::sync::Weak<Shared>);

impl WeakLog {
    pub(crate) fn upgrade(&self) -> Option<Log> {
        self.0.upgrade().map(|inner| Log { inner })
    }
}

impl Log {
    /// Opens the store in `dir` (created if missing) with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Log> {
        Log::open_with(dir, LogOptions::default())
    }

    /// Opens the store in `dir` (created if missing).
    ///
    /// Opening a directory that is already open in this process returns another handle to
    /// the same replica (LMDB allows one environment per file per process); `options` are then
    /// those of the first open.
    pub fn open_with(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        let store = StoreOptions {
            map_size: options.map_size,
            no_sync: options.durability == Durability::NoSync,
            read_only: false,
            write_map: false,
        };
        Log::open_shared(dir.as_ref(), store)
    }

    /// Opens an existing store for reading only: nothing is ever written to its files, so it
    /// works on a read-only mount or a copy without write permission. Every write returns
    /// [`StorageError::ReadOnly`]. Views can be registered if their tables exist and are caught up
    /// (a read-only store cannot catch a view up).
    ///
    /// When the directory is already open in this process, this returns that handle
    /// (read-only or not).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Log> {
        let defaults = LogOptions::default();
        let store = StoreOptions {
            map_size: defaults.map_size,
            no_sync: false,
            read_only: true,
            write_map: false,
        };
        Log::open_shared(dir.as_ref(), store)
    }

    /// A throwaway replica for the simulator (`crate::sim`): no fsync, and LMDB writes
    /// straight into the map (`MDB_WRITEMAP`), which saves a system call per dirty page at
    /// every commit (a third of a simulated run) but leaves the store open to stray writes in
    /// the process. Never for data that matters.
    #[cfg(feature = "sim")]
    pub(crate) fn open_scratch(dir: &Path, map_size: usize) -> Result<Log> {
        let store = StoreOptions {
            map_size,
            no_sync: true,
            read_only: false,
            write_map: true,
        };
        Log::open_shared(dir, store)
    }

    fn open_shared(dir: &Path, options: StoreOptions) -> Result<Log> {
        Ok(Log {
            inner: registry::open(dir, options)?,
        })
    }

    /// This replica's id, as peers see it.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        self.store().path()
    }

    /// Whether this handle was opened with [`Log::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.store().is_read_only()
    }

    /// The current LMDB map size in bytes (address space; it grows on demand).
    pub fn map_size(&self) -> usize {
        self.store().map_size()
    }

    pub(crate) fn store(&self) -> &Store {
        self.inner.store()
    }

    pub(crate) fn downgrade(&self) -> WeakLog {
        WeakLog(Arc::downgrade(&self.inner))
    }

    fn engine(&self) -> &write::Engine {
        &self.inner.engine
    }

    /// Adds a node with these links and payload. Every link must be stored.
    pub fn add(&self, links: impl IntoIterator<Item = Hash>, payload: Vec<u8>) -> Result<Node> {
        let node = self.engine().signing.node(links, payload)?;
        self.commit(std::slice::from_ref(&node), Origin::Local)?;
        Ok(node)
    }

    /// Adds a node that links to every current head (up to [`crate::MAX_LINKS`] of them),
    /// read in the same transaction, so the new node is the single head afterwards.
    pub fn append(&self, payload: Vec<u8>) -> Result<Node> {
        // braidlog's own pure closure: a full map grows and the write runs again (each run
        // builds its node from a copy of the payload, which costs far less than the commit).
        self.write_with(true, Origin::Local, |w| w.append(payload.clone()))
    }

    /// Runs `f` once in one write transaction: every node it adds through the [`Writer`]
    /// commits together or not at all, and its reads see the nodes (and view updates) added
    /// before them. For bulk loads and multi-node read-modify-writes.
    ///
    /// Nothing commits if `f` returns an error, or if any write inside failed, even when `f`
    /// ignored that error and returned `Ok` ([`StorageError::Aborted`] then). If the transaction
    /// outgrows the map, the result is a map-full [`StorageError`]; the map has grown by
    /// then, so running the transaction again succeeds.
    ///
    /// ```
    /// # fn main() -> Result<(), braidlog::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = braidlog::Log::open(dir.path())?;
    /// let last = log.transaction(|w| {
    ///     let mut prev = w.add([], b"first".to_vec())?;
    ///     for i in 0..100u32 {
    ///         prev = w.add([prev.hash()], i.to_be_bytes().to_vec())?;
    ///     }
    ///     Ok(prev)
    /// })?;
    /// assert_eq!(log.len()?, 101);
    /// assert_eq!(log.heads()?, vec![last.hash()]);
    /// # Ok(()) }
    /// ```
    pub fn transaction<R>(&self, f: impl FnOnce(&mut Writer<'_, '_>) -> Result<R>) -> Result<R> {
        let mut f = Some(f);
        self.write_with(false, Origin::Local, |w| {
            let f = f.take().expect("runs once: user code is never retried");
            f(w)
        })
    }

    /// [`Log::transaction`] for the layers above (the key-value view), with their own error
    /// type; `f` runs once.
    pub(crate) fn transaction_typed<R, E: WrapsLog>(
        &self,
        f: impl FnOnce(&mut Writer<'_, '_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let mut f = Some(f);
        self.engine()
            .write_typed(self.store(), false, Origin::Local, |w| {
                let f = f.take().expect("runs once: user code is never retried");
                f(w)
            })
    }

    /// Stores nodes built or received elsewhere, in one transaction: all or none. Nodes
    /// already stored are skipped ([`Inserted::Existing`]); each link must be stored or
    /// earlier in the batch. Every node faces the policy and its signature is checked.
    ///
    /// ```
    /// # fn main() -> Result<(), braidlog::Error> {
    /// # let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    /// let (a, b) = (braidlog::Log::open(da.path())?, braidlog::Log::open(db.path())?);
    /// let root = a.append(b"root".to_vec())?;
    /// let child = a.append(b"child".to_vec())?;
    /// assert_eq!(b.insert(&[root, child.clone()])?, [braidlog::Inserted::New(1), braidlog::Inserted::New(2)]);
    /// assert_eq!(b.insert(&[&child])?, [braidlog::Inserted::Existing(2)]); // idempotent
    /// # Ok(()) }
    /// ```
    pub fn insert<N: Borrow<Node>>(&self, nodes: &[N]) -> Result<Vec<Inserted>> {
        self.commit(nodes, Origin::Local)
    }

    /// [`Log::insert`] for nodes received from `peer`: watchers see them with that
    /// [`Origin`]. What sync calls.
    pub(crate) fn insert_from(&self, nodes: &[Node], peer: PeerId) -> Result<Vec<Inserted>> {
        self.commit(nodes, Origin::Peer(peer))
    }

    /// Where the node at `seq` came from: a write of this process, or a peer it was received
    /// from. [`Origin::Unknown`] for nodes stored by another process, before this handle was
    /// opened, or more than [`crate::log::ORIGIN_WINDOW`] commits ago: origins are kept in
    /// memory for watchers, not stored.
    pub fn origin(&self, seq: u64) -> Origin {
        self.engine().origins().find(seq)
    }

    /// The hook of type `T` run at the end of every write, registered by `make` on first use.
    pub(crate) fn hook<T: AfterWrite>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        self.engine().hooks.get_or_insert(make)
    }

    /// Stores prepared nodes. No user code runs, so a full map is grown and the write retried.
    fn commit<N: Borrow<Node>>(&self, nodes: &[N], origin: Origin) -> Result<Vec<Inserted>> {
        self.engine().commit(self.store(), nodes, origin)
    }

    /// Runs a write through the engine (see `write::Engine::write`).
    fn write_with<R>(
        &self,
        retry: bool,
        origin: Origin,
        f: impl FnMut(&mut Writer<'_, '_>) -> Result<R>,
    ) -> Result<R> {
        self.engine().write(self.store(), retry, origin, f)
    }

    /// Empties this replica for reuse by the simulator (`crate::sim`), which holds every
    /// handle on it: no node, no view data, no policy, no peer records, no merge operators,
    /// no remembered origins; the peer id stays. The commit notifications start again from
    /// 0, so no subscription may outlive the reset.
    #[cfg(feature = "sim")]
    pub(crate) fn clear_for_reuse(&self) -> Result<()> {
        let store = self.store();
        store.write_retrying(|txn| store.clear_for_reuse(txn))?;
        let engine = self.engine();
        engine.hooks.clear();
        *engine.origins() = Default::default();
        engine.committed.send_replace(0);
        Ok(())
    }

    /// The node with this hash, if stored (hash-checked).
    pub fn get(&self, hash: &Hash) -> Result<Option<Node>> {
        self.store().read(|txn| self.get_in(txn, hash))
    }

    pub(crate) fn get_in(&self, txn: ReadTxn<'_>, hash: &Hash) -> Result<Option<Node>> {
        let store = self.store();
        let Some(seq) = store.index.seq_of(txn, hash)? else {
            return Ok(None);
        };
        let rec = store.feed.record(txn, seq)?.ok_or_else(|| {
            StorageError::Corrupt(format!("{hash} indexed at seq {seq}, not in the feed"))
        })?;
        if rec.hash != *hash {
            return Err(StorageError::Corrupt(format!(
                "{hash} indexed at seq {seq}, which holds {}",
                rec.hash
            ))
            .into());
        }
        Ok(Some(rec.node()?))
    }

    /// Whether a node is stored.
    pub fn contains(&self, hash: &Hash) -> Result<bool> {
        Ok(self.seq_of(hash)?.is_some())
    }

    /// The feed position of a stored node.
    pub fn seq_of(&self, hash: &Hash) -> Result<Option<u64>> {
        Ok(self
            .store()
            .read(|txn| self.store().index.seq_of(txn, hash))?)
    }

    /// The feed position of each hash (`None` when not stored), in one read transaction.
    /// Sync uses it to check many links or announced heads at once.
    pub(crate) fn seqs_of(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>> {
        let index = self.store().index;
        Ok(self
            .store()
            .read(|txn| hashes.iter().map(|h| index.seq_of(txn, h)).collect())?)
    }

    /// The node at a feed position (hash-checked).
    pub fn get_by_seq(&self, seq: u64) -> Result<Option<Node>> {
        Ok(self.store().read(|txn| self.store().feed.node(txn, seq))?)
    }

    /// The heads: stored nodes that no stored node links to, in hash order.
    pub fn heads(&self) -> Result<Vec<Hash>> {
        Ok(self
            .store()
            .read(|txn| self.store().heads.list(txn, usize::MAX))?)
    }

    pub(crate) fn heads_in(&self, txn: ReadTxn<'_>, limit: usize) -> Result<Vec<Hash>> {
        Ok(self.store().heads.list(txn, limit)?)
    }

    /// Number of stored nodes.
    pub fn len(&self) -> Result<u64> {
        Ok(self.store().read(|txn| self.store().index.len(txn))?)
    }

    /// Whether the log has no nodes.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The seq of the newest node (0 when empty).
    pub fn last_seq(&self) -> Result<u64> {
        Ok(self.store().read(|txn| self.store().feed.last_seq(txn))?)
    }

    /// The changes feed after `since` (exclusive; 0 for everything), oldest first. The
    /// iterator reads in chunks, each in its own short read transaction, so it holds little
    /// memory and never pins the map; it also yields nodes added while it runs.
    pub fn changes(&self, since: u64) -> Changes {
        Changes::new(self.inner.clone(), since)
    }

    /// Tells the caller about every commit from now on (see [`crate::Subscription`]).
    pub fn subscribe(&self) -> Subscription {
        Subscription::new(self.engine().committed.subscribe())
    }

    /// Creates or opens a table for a view. Name it with a version, like `"kv-heads-v1"`.
    /// braidlog's own names (`feed-v1`, `index-v1`, `heads-v1`, `meta-v1`, anything starting
    /// with `braidlog`) are refused with [`StorageError::ReservedTable`].
    pub fn create_table(&self, name: &str) -> Result<Table> {
        Ok(self.store().create_table(name)?)
    }

    /// Runs `f` on one read transaction (a consistent snapshot). Reads may nest.
    pub fn read<R, E: From<StorageError>>(
        &self,
        f: impl FnOnce(ReadTxn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        self.store().read(f)
    }

    /// Registers a view: from now on it sees every stored node in the same transaction. If its
    /// watermark is behind the feed (or its version changed) it is caught up (or rebuilt)
    /// first, in one transaction.
    pub fn register_view(&self, view: Arc<dyn View>) -> Result<()> {
        // Hold the views lock for writing across the catch-up so no write slips between the
        // catch-up and the registration.
        let mut views = (self.engine().views.write()).unwrap_or_else(|e| e.into_inner());
        view::check_unique(&views, view.name())?;
        let reg = Registered::new(view);
        let store = self.store();
        let current = store.read(|txn| -> Result<bool> {
            let end = store.feed.last_seq(txn)?;
            let wm = store.meta.watermark(txn, reg.name())?;
            Ok(wm == Some((reg.view.version(), end)))
        })?;
        if !current {
            store.write(|txn| {
                let end = store.feed.last_seq(txn.read())?;
                view::catch_up(store, txn, &reg, end)
            })?;
        }
        views.push(reg);
        Ok(())
    }

    /// Clears every registered view and rebuilds it from the feed, in one transaction.
    pub fn reindex(&self) -> Result<()> {
        let views = (self.engine().views.write()).unwrap_or_else(|e| e.into_inner());
        let store = self.store();
        store.write(|txn| {
            for v in views.iter() {
                view::rebuild(store, txn, v)?;
            }
            Ok(())
        })
    }

    pub(crate) fn registered_views(&self) -> Vec<Registered> {
        self.engine().registered_views().clone()
    }

    /// What this replica remembers of `peer` (sync's cursor, encoded by the sync layer).
    pub(crate) fn peer_record(&self, peer: PeerId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .store()
            .read(|txn| self.store().meta.peer_record(txn, peer))?)
    }

    /// Remembers [`Log::peer_record`].
    pub(crate) fn set_peer_record(&self, peer: PeerId, value: &[u8]) -> Result<()> {
        let store = self.store();
        Ok(store.write_retrying(|txn| store.meta.set_peer_record(txn, peer, value))?)
    }

    /// The heads (sorted) and the newest seq, read together (what sync announces).
    pub(crate) fn snapshot_heads(&self) -> Result<(Vec<Hash>, u64)> {
        let store = self.store();
        store.read(|txn| {
            Ok((
                store.heads.list(txn, usize::MAX)?,
                store.feed.last_seq(txn)?,
            ))
        })
    }

    /// For each prefix, the first stored hash that starts with it.
    pub(crate) fn first_with_prefixes(
        &self,
        prefixes: &[impl AsRef<[u8]>],
    ) -> Result<Vec<Option<Hash>>> {
        let index = self.store().index;
        Ok(self.store().read(|txn| {
            prefixes
                .iter()
                .map(|p| index.first_with_prefix(txn, p.as_ref()))
                .collect()
        })?)
    }

    /// The feed entry at `seq`, hash-checked.
    pub(crate) fn raw_entry_at(&self, seq: u64) -> Result<Option<RawEntry>> {
        let store = self.store();
        store.read(|txn| {
            let Some(rec) = store.feed.record(txn, seq)? else {
                return Ok(None);
            };
            Ok(Some(RawEntry {
                seq,
                hash: rec.hash,
                bytes: rec.checked()?.to_vec(),
            }))
        })
    }

    /// Walks back from `starts` through links in strictly decreasing seq order, visiting each
    /// reachable node once (hash-checked). `visit` returns whether to continue into that
    /// node's links. Memory is the frontier (the width of the DAG), not the visited set:
    /// descending seq order means every path to a node is exhausted before the node is
    /// popped, so duplicates are adjacent.
    pub fn walk_back(
        &self,
        starts: impl IntoIterator<Item = Hash>,
        mut visit: impl FnMut(u64, &Node) -> Result<bool>,
    ) -> Result<()> {
        use std::collections::BinaryHeap;
        let store = self.store();
        store.read(|txn| {
            let mut frontier = BinaryHeap::new();
            for h in starts {
                if let Some(seq) = store.index.seq_of(txn, &h)? {
                    frontier.push(seq);
                }
            }
            let mut last = None;
            while let Some(seq) = frontier.pop() {
                if last == Some(seq) {
                    continue;
                }
                last = Some(seq);
                let node = store.feed.node(txn, seq)?.ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "index points at seq {seq}, which is not in the feed"
                    ))
                })?;
                if visit(seq, &node)? {
                    for l in node.links() {
                        let s = store.index.seq_of(txn, l)?.ok_or(LogError::MissingLink {
                            node: node.hash(),
                            link: *l,
                        })?;
                        frontier.push(s);
                    }
                }
            }
            Ok(())
        })
    }
    /// The identity this log signs its local writes with: by default the replica's own,
    /// kept in its directory (see [`crate::identity::IDENTITY_FILE`]) and made on first use;
    /// `None` when signing was turned off with [`Log::set_identity`].
    pub fn identity(&self) -> Result<Option<Identity>> {
        Ok(self.engine().signing.current()?)
    }

    /// Signs local writes of this handle's replica with `identity` from now on, or writes
    /// unsigned nodes when `None` (which a `Signed` or `Trusted` policy then refuses). Not
    /// persisted: a reopened log signs with its default identity again.
    pub fn set_identity(&self, identity: Option<Identity>) {
        self.engine().signing.set(identity);
    }

    /// The policy in force now.
    pub fn policy(&self) -> Result<Policy> {
        self.read(|txn| policy::current(self.store(), txn))
    }

    /// Every policy this log has had: `(seq, policy)` governs nodes stored after feed
    /// position `seq`, until the next entry. Empty when the policy was never set (`Any`).
    pub fn policy_history(&self) -> Result<Vec<(u64, Policy)>> {
        self.read(|txn| policy::history(self.store(), txn))
    }

    /// Sets the policy for every node stored from now on (local writes and sync alike). Stored
    /// nodes are not touched. Takes effect for the next write transaction, so a sync that is
    /// running applies it to its next batch.
    pub fn set_policy(&self, policy: &Policy) -> Result<()> {
        self.update_policy(|p| *p = policy.clone())
    }

    /// Adds `key` to the allow-list.
    pub fn trust(&self, key: PublicKey) -> Result<()> {
        self.update_policy(|p| {
            p.trusted.insert(key);
        })
    }

    /// Removes `key` from the allow-list. Nodes it signed that are stored stay stored.
    pub fn distrust(&self, key: PublicKey) -> Result<()> {
        self.update_policy(|p| {
            p.trusted.remove(&key);
        })
    }

    fn update_policy(&self, mut change: impl FnMut(&mut Policy)) -> Result<()> {
        let store = self.store();
        store.write(|txn| {
            let mut p = policy::current(store, txn.read())?;
            change(&mut p);
            if p.trusted.len() > MAX_TRUSTED {
                return Err(LogError::Policy(PolicyError::AllowListFull {
                    max: MAX_TRUSTED,
                }));
            }
            let seq = store.feed.last_seq(txn.read())?;
            Ok(store.meta.set_policy(txn, seq, &p.encode())?)
        })
    }

    /// The one stored node whose hash, in hex, starts with `prefix` (at least
    /// [`lookup::MIN_PREFIX_HEX`] characters, any case), as git resolves short hashes. Reads
    /// at most two index entries.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let log = braidlog::Log::open(dir.path())?;
    /// let node = log.append(b"hello".to_vec())?;
    /// assert_eq!(log.find_hash(&node.hash().short())?, node.hash());
    /// assert!(log.find_hash("ab").is_err()); // too short to be a name
    /// # Ok(()) }
    /// ```
    pub fn find_hash(&self, prefix: &str) -> std::result::Result<Hash, LookupError> {
        lookup::find_hash(self.store(), prefix)
    }

    /// Checks every invariant of the store (the fsck): hashes, links, heads, the feed, every
    /// registered view, signatures and the policy history. Findings are reported, not fixed.
    pub fn verify(&self) -> Result<VerifyReport> {
        verify::run(self.store(), &self.registered_views())
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("path", &self.path())
            .field("peer_id", &self.peer_id())
            .finish()
    }
}
