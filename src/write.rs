//! The write path: a node, its index entry, the heads and every view, in one transaction.
//!
//! Every step goes through a [`WriteTxn`], so any failure (a missing link, a view's error,
//! LMDB) poisons the transaction and nothing of it commits, whatever the caller does with the
//! error. That is what lets the path check links while it edits the heads, with one B-tree
//! descent per link instead of two.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::log::{Inserted, Log};
use crate::node::{Node, MAX_LINKS};
use crate::store::{ReadTxn, Store, WriteTxn};
use crate::view::{self, Change, Registered};

/// Stores one node in `txn` unless present: feed, index, heads, views. `seq` is the last
/// used seq and advances when the node is new.
pub(crate) fn store_node(
    store: &Store,
    txn: &mut WriteTxn<'_>,
    views: &[Registered],
    seq: &mut u64,
    policy: &crate::policy::Policy,
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
            return Err(Error::MissingLink {
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

/// A write transaction in progress; see [`Log::transaction`].
///
/// A write that fails (a missing link, a view's error) leaves the transaction unable to
/// commit: [`Log::transaction`] then returns the error even if the closure returned `Ok`.
pub struct Writer<'a, 't> {
    pub(crate) log: &'a Log,
    pub(crate) txn: &'a mut WriteTxn<'t>,
    pub(crate) views: &'a [Registered],
    pub(crate) seq: &'a mut u64,
    /// The log's policy, read in this transaction.
    pub(crate) policy: &'a crate::policy::Policy,
}

impl Writer<'_, '_> {
    /// Reads in this transaction (a view's tables, say); they see what this writer added.
    pub fn txn(&self) -> ReadTxn<'_> {
        self.txn.read()
    }

    /// The current heads, up to `limit`, including nodes this writer added.
    pub fn heads(&self, limit: usize) -> Result<Vec<Hash>> {
        self.log.store().heads.list(self.txn.read(), limit)
    }

    /// Adds a node; its links must be stored or added earlier in this transaction.
    pub fn add(&mut self, links: impl IntoIterator<Item = Hash>, payload: Vec<u8>) -> Result<Node> {
        let node = self.log.signing().node(links, payload)?;
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
        let r = store_node(
            self.log.store(),
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
