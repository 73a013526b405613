//! `Log`: one replica's DAG on LMDB, and the operations on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

use heed::{PutFlags, RwTxn};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::hash::{Hash, HASH_LEN};
use crate::node::{Node, MAX_LINKS};
use crate::peer::PeerId;
use crate::store::{ReadTxn, Store, Table};
use crate::view::{decode_watermark, encode_watermark, watermark_key, Change, View};

/// How commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is flushed before it returns (LMDB's default). Survives power loss.
    #[default]
    Sync,
    /// Commits are left to the OS to flush. A crash of the machine may lose the latest commits
    /// but never corrupts the store; a crash of the process loses nothing.
    NoSync,
}

/// Options for [`Log::open_with`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Initial LMDB map size in bytes. The map doubles whenever it fills, so this only sets
    /// where growth starts. Default 64 MiB.
    pub map_size: usize,
    /// Default [`Durability::Sync`].
    pub durability: Durability,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            map_size: 64 << 20,
            durability: Durability::Sync,
        }
    }
}

/// What [`Log::insert`] did with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored at this seq.
    New(u64),
    /// Already stored at this seq; nothing changed.
    Existing(u64),
}

/// A replica: one LMDB environment holding one DAG, its feed, heads and views.
///
/// Cheap to clone (an `Arc`), `Send + Sync`. Reads run in parallel; writes are serialised by
/// LMDB, each one a single transaction.
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
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    views: RwLock<Vec<Arc<dyn View>>>,
    committed: watch::Sender<u64>,
    peer_id: PeerId,
}

/// Logs open in this process, by canonical directory, so a second open shares the first.
static OPEN_LOGS: Mutex<BTreeMap<PathBuf, Weak<Inner>>> = Mutex::new(BTreeMap::new());

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn read_seq(bytes: &[u8]) -> Result<u64> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corrupt(format!("seq of {} bytes", bytes.len())))
}

/// Splits a feed value into the node hash and its canonical bytes.
pub(crate) fn split_feed_value(value: &[u8]) -> Result<(Hash, &[u8])> {
    if value.len() < HASH_LEN {
        return Err(Error::Corrupt(format!(
            "feed value of {} bytes",
            value.len()
        )));
    }
    let (h, bytes) = value.split_at(HASH_LEN);
    Ok((Hash::from_slice(h).expect("32 bytes"), bytes))
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
        let mut open = OPEN_LOGS.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(dir.as_ref()).map_err(|source| Error::Io {
            path: dir.as_ref().into(),
            source,
        })?;
        let key = std::fs::canonicalize(dir.as_ref()).map_err(|source| Error::Io {
            path: dir.as_ref().into(),
            source,
        })?;
        open.retain(|_, weak| weak.strong_count() > 0);
        if let Some(inner) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(Log { inner });
        }
        let log = Log::open_new(dir.as_ref(), options)?;
        open.insert(key, Arc::downgrade(&log.inner));
        Ok(log)
    }

    fn open_new(dir: &Path, options: LogOptions) -> Result<Log> {
        let store = Store::open(
            dir,
            options.map_size,
            options.durability == Durability::NoSync,
        )
        .map_err(|e| crate::store_file::diagnose(e, dir))?;
        let peer_id = crate::peer::load_or_create(&store)?;
        let last = {
            let r = store.read()?;
            last_seq(&store.feed, &r.txn)?
        };
        let (committed, _) = watch::channel(last);
        Ok(Log {
            inner: Arc::new(Inner {
                store,
                views: RwLock::new(Vec::new()),
                committed,
                peer_id,
            }),
        })
    }

    /// This replica's id, as peers see it.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        self.inner.store.path()
    }

    /// The current LMDB map size in bytes (it grows on demand).
    pub fn map_size(&self) -> usize {
        self.inner.store.map_size()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Adds a node with these links and payload. Every link must be stored.
    pub fn add(&self, links: impl IntoIterator<Item = Hash>, payload: Vec<u8>) -> Result<Node> {
        let node = Node::new(links, payload)?;
        self.commit(std::slice::from_ref(&node))?;
        Ok(node)
    }

    /// Adds a node that links to every current head (up to [`MAX_LINKS`] of them), read in
    /// the same transaction, so the new node is the single head afterwards.
    pub fn append(&self, payload: Vec<u8>) -> Result<Node> {
        self.transaction(|w| w.append(payload.clone()))
    }

    /// Runs `f` in one write transaction: every node it adds through the [`Writer`] commits
    /// together or not at all, and its reads see the nodes (and view updates) added before
    /// them. For bulk loads and multi-node read-modify-writes.
    ///
    /// `f` may run more than once (the transaction is retried when the map grows), so it must
    /// have no effects outside the writer; an error from it aborts everything it added.
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
    pub fn transaction<R>(&self, mut f: impl FnMut(&mut Writer<'_, '_>) -> Result<R>) -> Result<R> {
        let mut result = None;
        self.write_with(|txn, views, seq| {
            let mut w = Writer {
                log: self,
                txn,
                views,
                seq,
                outcomes: Vec::new(),
            };
            result = Some(f(&mut w)?);
            Ok(w.outcomes)
        })?;
        Ok(result.expect("set by the committed closure"))
    }

    /// Adds one node whose links and payload `build` computes from the store, in the same
    /// write transaction that stores the node: nothing can be committed between the read and
    /// the write (a read-modify-write, as the key-value view's `put` needs). When `build`
    /// returns `None` nothing is written and the result is `None`.
    ///
    /// `build` sees the transaction read-only, views' tables included. It may run more than
    /// once (the transaction is retried when the map grows), so it must have no effects of
    /// its own; its error aborts the write.
    ///
    /// ```
    /// # fn main() -> Result<(), braidlog::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = braidlog::Log::open(dir.path())?;
    /// let a = log.add([], b"a".to_vec())?;
    /// // A real caller reads its links from `_txn` (a view's table, say).
    /// let b = log.add_with(|_txn| Ok(Some((vec![a.hash()], b"b".to_vec()))))?;
    /// assert_eq!(b.unwrap().links(), &[a.hash()]);
    /// assert!(log.add_with(|_txn| Ok(None))?.is_none());
    /// assert_eq!(log.len()?, 2);
    /// # Ok(()) }
    /// ```
    pub fn add_with(
        &self,
        mut build: impl FnMut(&ReadTxn<'_>) -> Result<Option<(Vec<Hash>, Vec<u8>)>>,
    ) -> Result<Option<Node>> {
        self.transaction(|w| match build(w.txn())? {
            Some((links, payload)) => w.add(links, payload).map(Some),
            None => Ok(None),
        })
    }

    /// Adds many nodes in one transaction: all or none. A node may link to nodes earlier in
    /// the batch.
    pub fn add_batch(
        &self,
        nodes: impl IntoIterator<Item = (Vec<Hash>, Vec<u8>)>,
    ) -> Result<Vec<Node>> {
        let nodes = nodes
            .into_iter()
            .map(|(links, payload)| Node::new(links, payload))
            .collect::<Result<Vec<_>, _>>()?;
        self.commit(&nodes)?;
        Ok(nodes)
    }

    /// Stores a node built or received elsewhere. Idempotent.
    pub fn insert(&self, node: &Node) -> Result<Inserted> {
        Ok(self.commit(std::slice::from_ref(node))?[0])
    }

    /// Decodes canonical bytes (checking limits and form) and stores the node.
    pub fn insert_bytes(&self, bytes: &[u8]) -> Result<Inserted> {
        self.insert(&Node::decode(bytes)?)
    }

    /// Stores many nodes in one transaction, all or none. Nodes already stored are skipped;
    /// each link must be stored or earlier in the batch.
    pub fn insert_batch(&self, nodes: &[Node]) -> Result<Vec<Inserted>> {
        self.commit(nodes)
    }

    fn commit(&self, nodes: &[Node]) -> Result<Vec<Inserted>> {
        self.write_with(|txn, views, seq| {
            nodes
                .iter()
                .map(|n| store_node(self.store(), txn, views, seq, n))
                .collect()
        })
    }

    /// Runs a write: `f` stores nodes (advancing `seq`); views' watermarks follow; subscribers
    /// hear of the new last seq after the commit.
    fn write_with(
        &self,
        mut f: impl FnMut(&mut RwTxn<'_>, &[Arc<dyn View>], &mut u64) -> Result<Vec<Inserted>>,
    ) -> Result<Vec<Inserted>> {
        // Hold the registry for the whole write: a view registered meanwhile must either see
        // this write's nodes in its catch-up or in `apply`, never miss them.
        let views = self.inner.views.read().unwrap_or_else(|e| e.into_inner());
        let store = self.store();
        let (out, last) = store.write(|txn| {
            let start = last_seq(&store.feed, txn)?;
            // Another process may have stored nodes without this view registered: apply them
            // first, so the watermark written below never skips a node.
            for v in views.iter() {
                catch_up(store, txn, v.as_ref(), start)?;
            }
            let mut seq = start;
            let out = f(txn, &views, &mut seq)?;
            if seq != start {
                for v in views.iter() {
                    let wm = encode_watermark(v.version(), seq);
                    store.meta.put(txn, &watermark_key(v.as_ref()), &wm)?;
                }
            }
            Ok((out, (seq != start).then_some(seq)))
        })?;
        drop(views);
        if let Some(last) = last {
            self.inner.committed.send_replace(last);
        }
        Ok(out)
    }

    fn views(&self) -> Vec<Arc<dyn View>> {
        self.inner
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The node with this hash, if stored.
    pub fn get(&self, hash: &Hash) -> Result<Option<Node>> {
        let r = self.store().read()?;
        get_in(self.store(), &r.txn, hash)
    }

    /// Whether a node is stored.
    pub fn contains(&self, hash: &Hash) -> Result<bool> {
        Ok(self.seq_of(hash)?.is_some())
    }

    /// The feed position of a stored node.
    pub fn seq_of(&self, hash: &Hash) -> Result<Option<u64>> {
        let r = self.store().read()?;
        seq_in(self.store(), &r.txn, hash)
    }

    /// The feed position of each hash (`None` when not stored), in one read transaction.
    /// Sync uses it to check many links or announced heads at once.
    pub fn seqs_of(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>> {
        let r = self.store().read()?;
        hashes
            .iter()
            .map(|h| seq_in(self.store(), &r.txn, h))
            .collect()
    }

    /// The node at a feed position.
    pub fn get_by_seq(&self, seq: u64) -> Result<Option<Node>> {
        let r = self.store().read()?;
        match self.store().feed.get(&r.txn, &seq_key(seq))? {
            None => Ok(None),
            Some(v) => {
                let (hash, bytes) = split_feed_value(v)?;
                Ok(Some(Node::decode_trusted(bytes, hash)?))
            }
        }
    }

    /// The heads: stored nodes that no stored node links to, in hash order.
    pub fn heads(&self) -> Result<Vec<Hash>> {
        let r = self.store().read()?;
        self.heads_in(&r.txn, usize::MAX)
    }

    pub(crate) fn heads_in(&self, txn: &ReadTxn<'_>, limit: usize) -> Result<Vec<Hash>> {
        let mut out = Vec::new();
        for item in self.store().heads.iter(txn)?.take(limit) {
            let (k, _) = item?;
            out.push(Hash::from_slice(k).map_err(|e| Error::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// Number of stored nodes.
    pub fn len(&self) -> Result<u64> {
        let r = self.store().read()?;
        Ok(self.store().index.len(&r.txn)?)
    }

    /// Whether the log has no nodes.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The seq of the newest node (0 when empty).
    pub fn last_seq(&self) -> Result<u64> {
        let r = self.store().read()?;
        last_seq(&self.store().feed, &r.txn)
    }

    /// The changes feed after `since` (exclusive; 0 for everything), oldest first. The
    /// iterator reads in chunks, each in its own short read transaction, so it holds little
    /// memory and never pins the map; it also yields nodes added while it runs.
    pub fn changes(&self, since: u64) -> crate::changes::Changes {
        crate::changes::Changes::new(self.clone(), since)
    }

    /// Tells the caller about every commit from now on (see [`crate::Subscription`]).
    pub fn subscribe(&self) -> crate::changes::Subscription {
        crate::changes::Subscription::new(self.inner.committed.subscribe())
    }

    /// Creates or opens a table for a view. Name it with a version, like `"kv-heads-v1"`.
    pub fn create_table(&self, name: &str) -> Result<Table> {
        self.store().create_table(name)
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    pub fn read<R>(&self, f: impl FnOnce(&ReadTxn<'_>) -> Result<R>) -> Result<R> {
        let r = self.store().read()?;
        f(&r.txn)
    }

    /// Registers a view: from now on it sees every stored node in the same transaction. If its
    /// watermark is behind the feed (or its version changed) it is caught up (or rebuilt)
    /// first, in one transaction.
    pub fn register_view(&self, view: Arc<dyn View>) -> Result<()> {
        // Hold the views lock for writing across the catch-up so no write slips between the
        // catch-up and the registration.
        let mut views = self.inner.views.write().unwrap_or_else(|e| e.into_inner());
        if views.iter().any(|v| v.name() == view.name()) {
            return Err(Error::View {
                view: view.name().into(),
                message: "a view with this name is already registered".into(),
            });
        }
        let store = self.store();
        store.write(|txn| {
            let end = last_seq(&store.feed, txn)?;
            catch_up(store, txn, view.as_ref(), end)
        })?;
        views.push(view);
        Ok(())
    }

    /// Clears every registered view and rebuilds it from the feed, in one transaction.
    pub fn reindex(&self) -> Result<()> {
        let views = self.inner.views.write().unwrap_or_else(|e| e.into_inner());
        let store = self.store();
        store.write(|txn| {
            for view in views.iter() {
                for t in view.tables() {
                    t.clear(txn)?;
                }
                let last = replay(store, txn, view.as_ref(), 0)?;
                store.meta.put(
                    txn,
                    &watermark_key(view.as_ref()),
                    &encode_watermark(view.version(), last),
                )?;
            }
            Ok(())
        })
    }

    pub(crate) fn registered_views(&self) -> Vec<Arc<dyn View>> {
        self.views()
    }

    /// Reads a meta value (replication keeps per-peer state here).
    pub(crate) fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let r = self.store().read()?;
        Ok(self
            .store()
            .meta
            .get(&r.txn, key.as_bytes())?
            .map(<[u8]>::to_vec))
    }

    /// Writes a meta value.
    pub(crate) fn meta_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let store = self.store();
        store.write(|txn| Ok(store.meta.put(txn, key.as_bytes(), value)?))
    }

    /// Walks back from `starts` through links in strictly decreasing seq order, visiting each
    /// reachable node once. `visit` returns whether to continue into that node's links. Memory
    /// is the frontier (the width of the DAG), not the visited set: descending seq order means
    /// every path to a node is exhausted before the node is popped, so duplicates are adjacent.
    pub fn walk_back(
        &self,
        starts: impl IntoIterator<Item = Hash>,
        mut visit: impl FnMut(u64, &Node) -> Result<bool>,
    ) -> Result<()> {
        use std::collections::BinaryHeap;
        let r = self.store().read()?;
        let mut frontier = BinaryHeap::new();
        for h in starts {
            if let Some(seq) = seq_in(self.store(), &r.txn, &h)? {
                frontier.push(seq);
            }
        }
        let mut last = None;
        while let Some(seq) = frontier.pop() {
            if last == Some(seq) {
                continue;
            }
            last = Some(seq);
            let v = self
                .store()
                .feed
                .get(&r.txn, &seq_key(seq))?
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "index points at seq {seq}, which is not in the feed"
                    ))
                })?;
            let (hash, bytes) = split_feed_value(v)?;
            let node = Node::decode_trusted(bytes, hash)?;
            if visit(seq, &node)? {
                for l in node.links() {
                    let s = seq_in(self.store(), &r.txn, l)?.ok_or(Error::MissingLink {
                        node: hash,
                        link: *l,
                    })?;
                    frontier.push(s);
                }
            }
        }
        Ok(())
    }
}

/// A write transaction in progress; see [`Log::transaction`].
pub struct Writer<'a, 't> {
    log: &'a Log,
    txn: &'a mut RwTxn<'t>,
    views: &'a [Arc<dyn View>],
    seq: &'a mut u64,
    outcomes: Vec<Inserted>,
}

impl Writer<'_, '_> {
    /// The transaction, for reads (a view's tables, say). Reads see what this writer added.
    pub fn txn(&self) -> &ReadTxn<'_> {
        self.txn
    }

    /// The current heads, up to `limit`, including nodes this writer added.
    pub fn heads(&self, limit: usize) -> Result<Vec<Hash>> {
        self.log.heads_in(self.txn, limit)
    }

    /// Adds a node; its links must be stored or added earlier in this transaction.
    pub fn add(&mut self, links: impl IntoIterator<Item = Hash>, payload: Vec<u8>) -> Result<Node> {
        let node = Node::new(links, payload)?;
        self.insert(&node)?;
        Ok(node)
    }

    /// Adds a node that links to every current head (as [`Log::append`]).
    pub fn append(&mut self, payload: Vec<u8>) -> Result<Node> {
        let links = self.heads(MAX_LINKS)?;
        self.add(links, payload)
    }

    /// Stores a node built elsewhere. Idempotent.
    pub fn insert(&mut self, node: &Node) -> Result<Inserted> {
        let outcome = store_node(self.log.store(), self.txn, self.views, self.seq, node)?;
        self.outcomes.push(outcome);
        Ok(outcome)
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

/// A key range from `key` (inclusive) to the end of a table.
pub(crate) fn from_key(key: &[u8]) -> (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) {
    (std::ops::Bound::Included(key), std::ops::Bound::Unbounded)
}

pub(crate) fn last_seq(feed: &Table, txn: &ReadTxn<'_>) -> Result<u64> {
    match feed.last(txn)? {
        None => Ok(0),
        Some((k, _)) => read_seq(k),
    }
}

pub(crate) fn seq_in(store: &Store, txn: &ReadTxn<'_>, hash: &Hash) -> Result<Option<u64>> {
    store
        .index
        .get(txn, hash.as_bytes())?
        .map(read_seq)
        .transpose()
}

pub(crate) fn get_in(store: &Store, txn: &ReadTxn<'_>, hash: &Hash) -> Result<Option<Node>> {
    let Some(seq) = seq_in(store, txn, hash)? else {
        return Ok(None);
    };
    let v = store
        .feed
        .get(txn, &seq_key(seq))?
        .ok_or_else(|| Error::Corrupt(format!("{hash} indexed at seq {seq}, not in the feed")))?;
    let (_, bytes) = split_feed_value(v)?;
    Ok(Some(Node::decode_trusted(bytes, *hash)?))
}

/// Stores one node in `txn` unless present: feed, index, heads, views. `seq` is the last
/// used seq and advances when the node is new.
fn store_node(
    store: &Store,
    txn: &mut RwTxn<'_>,
    views: &[Arc<dyn View>],
    seq: &mut u64,
    node: &Node,
) -> Result<Inserted> {
    let hash = node.hash();
    // One B-tree descent both tests presence and claims the next seq in the index. Every error
    // below aborts the whole transaction (callers never commit after one), so the claim and
    // the heads edits never outlive a node that fails its link check.
    if let Some(existing) = store
        .index
        .get_or_put(txn, hash.as_bytes(), &seq_key(*seq + 1))?
    {
        return Ok(Inserted::Existing(read_seq(existing)?));
    }
    // Nothing stored can link to a node that was not stored (links are checked below), so a
    // new node is always a head. It is put before its links are removed so the table never
    // empties: an emptied LMDB tree frees its root page and the next put allocates a new one,
    // which made every node of a chain dirty (and later write) a fresh page.
    store.heads.put(txn, hash.as_bytes(), &[])?;
    for link in node.links() {
        // Heads are stored nodes, and links are usually heads (`append` links all of them):
        // removing a head proves the link stored without a lookup in the large index.
        if !store.heads.delete(txn, link.as_bytes())?
            && store.index.get(txn, link.as_bytes())?.is_none()
        {
            return Err(Error::MissingLink {
                node: hash,
                link: *link,
            });
        }
    }
    *seq += 1;
    let mut value = Vec::with_capacity(HASH_LEN + node.encoded_len());
    value.extend_from_slice(hash.as_bytes());
    node.encode_into(&mut value);
    store
        .feed
        .put_with_flags(txn, PutFlags::APPEND, &seq_key(*seq), &value)?;
    let change = Change { seq: *seq, node };
    for v in views {
        v.apply(txn, change)?;
    }
    Ok(Inserted::New(*seq))
}

/// Brings a view up to `end` (the feed's last seq) from its watermark, rebuilding it when the
/// stored version differs, and records the new watermark. Costs one meta read when the view is
/// already there, which is every write but the first after another process wrote.
fn catch_up(store: &Store, txn: &mut RwTxn<'_>, view: &dyn View, end: u64) -> Result<()> {
    let key = watermark_key(view);
    let from = match store.meta.get(txn, &key)?.and_then(decode_watermark) {
        Some((version, seq)) if version == view.version() => {
            if seq == end {
                return Ok(());
            }
            seq
        }
        _ => {
            for t in view.tables() {
                t.clear(txn)?;
            }
            0
        }
    };
    let last = replay(store, txn, view, from)?;
    store
        .meta
        .put(txn, &key, &encode_watermark(view.version(), last))?;
    Ok(())
}

/// Feeds a view every node after `from`, in feed order, inside `txn`. Returns the last seq.
pub(crate) fn replay(
    store: &Store,
    txn: &mut RwTxn<'_>,
    view: &dyn View,
    from: u64,
) -> Result<u64> {
    let mut next = from + 1;
    let mut last = from;
    loop {
        // Read a chunk, then apply it: the iterator borrows txn immutably, apply mutably.
        let mut chunk = Vec::with_capacity(256);
        let start = seq_key(next);
        for item in store.feed.range(txn, &from_key(&start))?.take(256) {
            let (k, v) = item?;
            let (hash, bytes) = split_feed_value(v)?;
            chunk.push((read_seq(k)?, Node::decode_trusted(bytes, hash)?));
        }
        if chunk.is_empty() {
            return Ok(last);
        }
        for (seq, node) in &chunk {
            view.apply(txn, Change { seq: *seq, node })?;
            last = *seq;
        }
        next = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Table;

    struct Seen(Table);
    impl View for Seen {
        fn name(&self) -> &str {
            "seen"
        }
        fn tables(&self) -> Vec<Table> {
            vec![self.0]
        }
        fn apply(&self, txn: &mut RwTxn<'_>, change: Change<'_>) -> Result<()> {
            self.0.put(txn, change.node.hash().as_bytes(), &[])?;
            Ok(())
        }
    }

    /// A node stored by a writer that does not have the view registered (another process)
    /// must reach the view before this process's next write moves the watermark past it.
    #[test]
    fn a_write_catches_views_up_with_nodes_stored_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let table = log.create_table("seen-v1").unwrap();
        log.register_view(Arc::new(Seen(table))).unwrap();
        let first = log.append(b"1".to_vec()).unwrap();
        // What another process does: store a node with no views.
        let foreign = Node::new([first.hash()], b"2".to_vec()).unwrap();
        let store = log.store();
        store
            .write(|txn| {
                let mut seq = last_seq(&store.feed, txn)?;
                store_node(store, txn, &[], &mut seq, &foreign)
            })
            .unwrap();
        log.append(b"3".to_vec()).unwrap();
        let seen = log.read(|txn| Ok(table.len(txn)?)).unwrap();
        assert_eq!(
            seen, 3,
            "the foreign node was applied before the watermark moved"
        );
        assert!(log.verify().unwrap().is_ok());
    }
}
