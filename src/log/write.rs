//! The write path: a node, its index entry, the heads and every view, in one transaction.
//!
//! Every step goes through a [`WriteTxn`], so any failure (a missing link, a view's error,
//! LMDB) poisons the transaction and nothing of it commits, whatever the caller does with the
//! error. That is what lets the path check links while it edits the heads, with one B-tree
//! descent per link instead of two.

use std::borrow::Borrow;
use std::sync::{Mutex, RwLock};

use tokio::sync::watch;

use super::error::{LogError, Result};
use super::origin::{Origin, Origins};
use super::policy::{self, Policy};
use super::signing::Signing;
use super::view::{self, Change, Registered};
use crate::hash::Hash;
use crate::node::{Node, MAX_LINKS};
use crate::store::{ReadTxn, Store, WriteTxn};

/// What [`crate::Log::insert`] did with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored at this seq.
    New(u64),
    /// Already stored at this seq; nothing changed.
    Existing(u64),
}

/// Stores one node in `txn` unless present: feed, index, heads, views. `seq` is the last
/// used seq and advances when the node is new.
pub(crate) fn store_node(
    store: &Store,
    txn: &mut WriteTxn<'_>,
    views: &[Registered],
    seq: &mut u64,
    policy: &Policy,
    node: &Node,
) -> Result<Inserted> {
    let hash = node.hash();
    // One B-tree descent both tests presence and files the node at the next seq.
    let next = *seq + 1;
    if let Some(existing) = store.index.claim(txn, &hash, next)? {
        return Ok(Inserted::Existing(existing));
    }
    // Only new nodes face the policy (and their signature): a stored node stays whatever the
    // policy is now.
    policy.admit(node)?;
    // Nothing stored can link to a node that was not stored, so a new node is always a head.
    // It is put before its links are removed so the table never empties: an emptied LMDB
    // tree frees its root page, and the next put would dirty a fresh one for every node.
    store.heads.add(txn, &hash)?;
    for link in node.links() {
        // Links are usually heads (`append` links all of them): removing a head proves the
        // link stored without a lookup in the large index. A missing link fails the write
        // after the edits above; every caller passes the error through `WriteTxn::check`,
        // which poisons the transaction, so those edits never commit.
        if !store.heads.remove(txn, link)? && store.index.seq_of(txn.read(), link)?.is_none() {
            return Err(LogError::MissingLink {
                node: hash,
                link: *link,
            });
        }
    }
    store.feed.append(txn, next, node)?;
    *seq = next;
    let change = Change { seq: next, node };
    for v in views {
        view::apply(txn, v, change)?;
    }
    Ok(Inserted::New(next))
}

/// A write transaction in progress; see [`crate::Log::transaction`].
///
/// A write that fails (a missing link, a view's error) leaves the transaction unable to
/// commit: [`crate::Log::transaction`] then returns the error even if the closure returned
/// `Ok`.
pub struct Writer<'a, 't> {
    store: &'a Store,
    signing: &'a Signing,
    txn: &'a mut WriteTxn<'t>,
    views: &'a [Registered],
    seq: &'a mut u64,
    /// The log's policy, read in this transaction.
    policy: &'a Policy,
}

impl Writer<'_, '_> {
    /// Reads in this transaction (a view's tables, say); they see what this writer added.
    pub fn txn(&self) -> ReadTxn<'_> {
        self.txn.read()
    }

    /// The current heads, up to `limit`, including nodes this writer added.
    pub fn heads(&self, limit: usize) -> Result<Vec<Hash>> {
        self.store
            .heads
            .list(self.txn.read(), limit)
            .map_err(Into::into)
    }

    /// Adds a node; its links must be stored or added earlier in this transaction.
    pub fn add(&mut self, links: impl IntoIterator<Item = Hash>, payload: Vec<u8>) -> Result<Node> {
        let node = self.signing.node(links, payload)?;
        self.insert(&node)?;
        Ok(node)
    }

    /// Adds a node that links to every current head (as [`crate::Log::append`]).
    pub fn append(&mut self, payload: Vec<u8>) -> Result<Node> {
        let links = self.heads(MAX_LINKS)?;
        self.add(links, payload)
    }

    /// The last seq used in this transaction (it grows as nodes are stored).
    pub(crate) fn seq(&self) -> u64 {
        *self.seq
    }

    /// Makes this transaction abort, whatever the code running it returns.
    pub(crate) fn cancel(&mut self) {
        self.txn.cancel();
    }

    /// Stores a node built elsewhere. Idempotent.
    pub fn insert(&mut self, node: &Node) -> Result<Inserted> {
        let r = store_node(
            self.store,
            self.txn,
            self.views,
            self.seq,
            self.policy,
            node,
        );
        self.txn.check(r)
    }
}

/// Work run at the end of every write transaction that stored nodes, on the same [`Writer`]
/// (the key-value merge operators). It sees the nodes stored after seq `after`; what it adds
/// commits with them.
pub(crate) trait AfterWrite: Send + Sync + 'static {
    fn after_write(&self, w: &mut Writer<'_, '_>, after: u64) -> Result<()>;
}

type Hook = (
    std::any::TypeId,
    std::sync::Arc<dyn std::any::Any + Send + Sync>,
    std::sync::Arc<dyn AfterWrite>,
);

/// The hooks of a log, at most one of each type.
#[derive(Default)]
pub(crate) struct Hooks {
    list: std::sync::RwLock<Vec<Hook>>,
}

impl Hooks {
    pub(crate) fn get_or_insert<T: AfterWrite>(
        &self,
        make: impl FnOnce() -> T,
    ) -> std::sync::Arc<T> {
        let id = std::any::TypeId::of::<T>();
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, any, _)) = list.iter().find(|h| h.0 == id) {
            return any
                .clone()
                .downcast::<T>()
                .expect("stored under its type id");
        }
        let hook = std::sync::Arc::new(make());
        list.push((id, hook.clone(), hook.clone()));
        hook
    }

    /// Forgets every hook (the simulator's reuse of a log, `Log::clear_for_reuse`).
    #[cfg(feature = "sim")]
    pub(crate) fn clear(&self) {
        self.list.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub(crate) fn run(&self, w: &mut Writer<'_, '_>, after: u64) -> Result<()> {
        let list: Vec<_> = (self.list.read().unwrap_or_else(|e| e.into_inner()))
            .iter()
            .map(|h| h.2.clone())
            .collect();
        for hook in list {
            hook.after_write(w, after)?;
        }
        Ok(())
    }
}

/// An error type of a layer above the log that wraps [`LogError`] (the key-value layer's).
pub(crate) trait WrapsLog: From<LogError> {
    /// The log error this is, if it is one.
    fn log_error(&self) -> Option<&LogError>;
}

impl WrapsLog for LogError {
    fn log_error(&self) -> Option<&LogError> {
        Some(self)
    }
}

/// The write engine a log's handles share: its registered views, merge hooks, the record of
/// where recent commits came from, the commit notifier and the signing choice.
pub(crate) struct Engine {
    pub views: RwLock<Vec<Registered>>,
    pub hooks: Hooks,
    pub origins: Mutex<Origins>,
    pub committed: watch::Sender<u64>,
    pub signing: Signing,
}

impl Engine {
    pub fn new(signing: Signing, last_seq: u64) -> Engine {
        Engine {
            views: RwLock::new(Vec::new()),
            hooks: Hooks::default(),
            origins: Mutex::new(Origins::default()),
            committed: watch::channel(last_seq).0,
            signing,
        }
    }

    pub fn origins(&self) -> std::sync::MutexGuard<'_, Origins> {
        self.origins.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn registered_views(&self) -> std::sync::RwLockReadGuard<'_, Vec<Registered>> {
        self.views.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores prepared nodes. No user code runs, so a full map is grown and the write retried.
    pub fn commit<N: Borrow<Node>>(
        &self,
        store: &Store,
        nodes: &[N],
        origin: Origin,
    ) -> Result<Vec<Inserted>> {
        if nodes.iter().all(|n| n.borrow().signature_checked()) {
            return self.write(store, true, origin, |w| {
                nodes.iter().map(|n| w.insert(n.borrow())).collect()
            });
        }
        // Checked in batches on every core before the write transaction (which runs on one
        // thread and holds the writer lock) would check them one by one.
        let mut owned: Vec<Node> = nodes.iter().map(|n| n.borrow().clone()).collect();
        policy::verify_parallel(&mut owned)?;
        self.write(store, true, origin, |w| {
            owned.iter().map(|n| w.insert(n)).collect()
        })
    }

    /// [`Engine::write`] for code with an error type of its own that wraps the log's (the
    /// key-value layer's): an error that is a log error goes to the store as such (a full map
    /// then grows, and with `retry` the write runs again); any other aborts the transaction
    /// and is returned as it is.
    pub fn write_typed<R, E: WrapsLog>(
        &self,
        store: &Store,
        retry: bool,
        origin: Origin,
        mut f: impl FnMut(&mut Writer<'_, '_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let mut failed = None;
        let out = self.write(store, retry, origin, |w| match f(w) {
            Ok(r) => Ok(Some(r)),
            Err(e) => match e.log_error() {
                Some(l) => Err(l.clone()),
                None => {
                    failed = Some(e);
                    w.cancel();
                    Ok(None)
                }
            },
        });
        match (out, failed) {
            (_, Some(e)) => Err(e),
            (Ok(r), None) => Ok(r.expect("no failure: a result")),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// Runs a write: views catch up with nodes other processes stored, `f` stores nodes
    /// through a [`Writer`], views' watermarks follow; subscribers hear of the new last seq.
    /// `retry` (braidlog's own writes only) re-runs `f` after growing a full map. Hooks (merge
    /// operators) run after `f`, in the same transaction; `origin` is recorded for the nodes.
    pub fn write<R>(
        &self,
        store: &Store,
        retry: bool,
        origin: Origin,
        mut f: impl FnMut(&mut Writer<'_, '_>) -> Result<R>,
    ) -> Result<R> {
        // Hold the registry for the whole write: a view registered meanwhile must either see
        // this write's nodes in its catch-up or in `apply`, never miss them.
        let views = self.registered_views();
        let mut recorded = None;
        let mut body = |txn: &mut WriteTxn<'_>| -> Result<(R, u64)> {
            let start = store.feed.last_seq(txn.read())?;
            for v in views.iter() {
                view::catch_up(store, txn, v, start)?;
            }
            let mut seq = start;
            // Read in this transaction: a policy change commits before or after it, never
            // halfway through.
            let policy = policy::current(store, txn.read())?;
            let mut w = Writer {
                store,
                signing: &self.signing,
                txn,
                views: &views,
                seq: &mut seq,
                policy: &policy,
            };
            let out = f(&mut w)?;
            if *w.seq != start {
                let received = *w.seq;
                self.hooks.run(&mut w, start)?;
                // Recorded before the commit, under the write lock, so a reader that sees the
                // nodes finds their origin; a failed commit takes the record back below.
                self.origins().record(start + 1, received, origin);
                if *w.seq != received {
                    // What the hooks wrote (merges) is this replica's own.
                    self.origins().record(received + 1, *w.seq, Origin::Local);
                }
                recorded = Some(start + 1);
                for v in views.iter() {
                    store
                        .meta
                        .set_watermark(txn, v.name(), v.view.version(), seq)?;
                }
            }
            Ok((out, seq))
        };
        let written = if retry {
            store.write_retrying(&mut body)
        } else {
            store.write(body)
        };
        let (out, last) = match written {
            Ok(r) => r,
            Err(e) => {
                if let Some(first) = recorded {
                    self.origins().forget_from(first);
                }
                return Err(e);
            }
        };
        drop(views);
        // Commits finish in order, but their notifications may not: never go backwards.
        self.committed.send_if_modified(|seen| {
            let newer = last > *seen;
            *seen = (*seen).max(last);
            newer
        });
        Ok(out)
    }
}
