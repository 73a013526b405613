//! Views: indexes kept in step with the log inside the same write transaction.
//!
//! A view sees every node once, in feed (topological) order, whether it was added locally, in a
//! batch, or received by sync, and in the same transaction that stores it: a view never lags
//! or runs ahead of the log, even across a crash. Each view has a watermark in the meta table
//! (its version and the last seq it applied); registering a view catches it up from there, and
//! a new version rebuilds it from the feed. [`crate::Log::verify`] checks that every registered
//! view equals a rebuild, which it computes in memory without writing.
//!
//! A view reaches its tables only through a [`ViewTxn`], and only the tables it declared;
//! braidlog's own tables cannot be created or opened by a view
//! (`StorageError::ReservedTable`).

use std::sync::Arc;

use super::error::{LogError, Result};
use crate::node::Node;
use crate::store::{MemTables, ReadTxn, Store, Table, ViewTxn, WriteTxn};

/// One node being stored, as a view sees it.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// Position in the local changes feed (1-based, increasing, topological).
    pub seq: u64,
    /// The node.
    pub node: &'a Node,
}

/// A materialised index over the log. Implement it to keep an app-specific index.
///
/// `apply` runs inside the log's write transaction, once per change. Returning an error, or
/// any failed write through the [`ViewTxn`] (even one `apply` swallows), aborts the whole
/// write: the node is not stored and the watermark does not move.
///
/// ```
/// # fn main() -> Result<(), braidlog::Error> {
/// use std::sync::Arc;
/// use braidlog::{Change, Table, View, ViewTxn};
///
/// /// Counts nodes by payload length.
/// struct Lengths(Table);
/// impl View for Lengths {
///     fn name(&self) -> &str { "lengths" }
///     fn tables(&self) -> Vec<Table> { vec![self.0] }
///     fn apply(&self, txn: &mut ViewTxn<'_, '_>, change: Change<'_>) -> Result<(), braidlog::LogError> {
///         let key = (change.node.payload().len() as u64).to_be_bytes();
///         let n = txn.get(self.0, &key)?.map_or(0, |v| v[0]);
///         Ok(txn.put(self.0, &key, &[n + 1])?)
///     }
/// }
///
/// let dir = tempfile::tempdir().unwrap();
/// let log = braidlog::Log::open(dir.path())?;
/// let table = log.create_table("lengths-v1")?;
/// log.register_view(Arc::new(Lengths(table)))?;
/// log.append(b"abc".to_vec())?;
/// log.append(b"xyz".to_vec())?;
/// let n = log.read(|txn| Ok::<_, braidlog::StorageError>(txn.get(table, &3u64.to_be_bytes())?.map(|v| v[0])))?;
/// assert_eq!(n, Some(2));
/// assert!(log.verify()?.is_ok());
/// # Ok(()) }
/// ```
pub trait View: Send + Sync + 'static {
    /// A stable name, unique per log; it keys the view's watermark.
    fn name(&self) -> &str;

    /// The version of the view's table layout. Changing it makes the next registration
    /// rebuild the view from the feed.
    fn version(&self) -> u32 {
        1
    }

    /// Every table the view writes (from [`crate::Log::create_table`]); a rebuild clears
    /// them, `verify` compares them, and the [`ViewTxn`] refuses any other.
    fn tables(&self) -> Vec<Table>;

    /// Updates the tables for one new node.
    fn apply(&self, txn: &mut ViewTxn<'_, '_>, change: Change<'_>) -> Result<()>;
}

/// A registered view and the tables it declared (asked once, at registration).
#[derive(Clone)]
pub(crate) struct Registered {
    pub view: Arc<dyn View>,
    pub tables: Vec<Table>,
}

impl Registered {
    pub fn new(view: Arc<dyn View>) -> Registered {
        let tables = view.tables();
        Registered { view, tables }
    }

    pub fn name(&self) -> &str {
        self.view.name()
    }
}

/// Applies one change to one view; any failure poisons `txn`.
pub(crate) fn apply(txn: &mut WriteTxn<'_>, reg: &Registered, change: Change<'_>) -> Result<()> {
    let mut vt = ViewTxn::lmdb(txn, reg.view.name(), &reg.tables);
    let r = reg.view.apply(&mut vt, change);
    vt.done();
    txn.check(r)
}

/// Nodes read per chunk when replaying the feed into a view.
const REPLAY_CHUNK: usize = 256;

/// Up to [`REPLAY_CHUNK`] hash-checked nodes with `after < seq <= upto`, in feed order. The
/// caller applies them after the read ends: the feed iterator borrows the transaction that
/// applying writes to.
fn read_chunk(store: &Store, txn: ReadTxn<'_>, after: u64, upto: u64) -> Result<Vec<(u64, Node)>> {
    let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
    for rec in store.feed.after(txn, after)?.take(REPLAY_CHUNK) {
        let rec = rec?;
        if rec.seq > upto {
            break;
        }
        chunk.push((rec.seq, rec.node()?));
    }
    Ok(chunk)
}

/// Brings a view up to `end` (the feed's last seq) from its watermark, rebuilding it when the
/// stored version differs, and records the new watermark. Costs one meta read when the view
/// is already there, which is every write but the first after another process wrote.
pub(crate) fn catch_up(
    store: &Store,
    txn: &mut WriteTxn<'_>,
    reg: &Registered,
    end: u64,
) -> Result<()> {
    let version = reg.view.version();
    let from = match store.meta.watermark(txn.read(), reg.name())? {
        Some((v, seq)) if v == version => {
            if seq == end {
                return Ok(());
            }
            seq
        }
        _ => {
            for t in &reg.tables {
                txn.clear(*t)?;
            }
            0
        }
    };
    let last = replay_into(store, txn, reg, from)?;
    Ok(store.meta.set_watermark(txn, reg.name(), version, last)?)
}

/// Clears a view and rebuilds it from the whole feed, in `txn`.
pub(crate) fn rebuild(store: &Store, txn: &mut WriteTxn<'_>, reg: &Registered) -> Result<()> {
    for t in &reg.tables {
        txn.clear(*t)?;
    }
    let last = replay_into(store, txn, reg, 0)?;
    Ok(store
        .meta
        .set_watermark(txn, reg.name(), reg.view.version(), last)?)
}

/// Feeds a view every node after `from`, in `txn`. Returns the last seq applied.
fn replay_into(store: &Store, txn: &mut WriteTxn<'_>, reg: &Registered, from: u64) -> Result<u64> {
    let mut last = from;
    loop {
        let chunk = read_chunk(store, txn.read(), last, u64::MAX)?;
        if chunk.is_empty() {
            return Ok(last);
        }
        for (seq, node) in &chunk {
            apply(txn, reg, Change { seq: *seq, node })?;
            last = *seq;
        }
    }
}

/// Rebuilds a view in memory from the feed up to `upto`, reading `txn` only (no write
/// transaction: works on a full map and a read-only store). Memory grows with the view.
pub(crate) fn rebuild_in_memory(
    store: &Store,
    txn: ReadTxn<'_>,
    reg: &Registered,
    upto: u64,
) -> Result<MemTables> {
    let mut mem = MemTables::default();
    let mut last = 0;
    loop {
        let chunk = read_chunk(store, txn, last, upto)?;
        if chunk.is_empty() {
            return Ok(mem);
        }
        for (seq, node) in &chunk {
            let mut vt = ViewTxn::memory(&mut mem, reg.view.name(), &reg.tables);
            reg.view.apply(&mut vt, Change { seq: *seq, node })?;
            last = *seq;
        }
    }
}

/// Checks that a view name is not taken.
pub(crate) fn check_unique(views: &[Registered], name: &str) -> Result<()> {
    if views.iter().any(|v| v.name() == name) {
        return Err(LogError::View {
            view: name.into(),
            message: "a view with this name is already registered".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::write::store_node;
    use crate::log::Log;

    struct Seen(Table);
    impl View for Seen {
        fn name(&self) -> &str {
            "seen"
        }
        fn tables(&self) -> Vec<Table> {
            vec![self.0]
        }
        fn apply(&self, txn: &mut ViewTxn<'_, '_>, change: Change<'_>) -> Result<()> {
            Ok(txn.put(self.0, change.node.hash().as_bytes(), &[])?)
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
                let mut seq = store.feed.last_seq(txn.read())?;
                store_node(store, txn, &[], &mut seq, &Default::default(), &foreign)
            })
            .unwrap();
        log.append(b"3".to_vec()).unwrap();
        let seen = log.read(|txn| txn.len(table)).unwrap();
        assert_eq!(
            seen, 3,
            "the foreign node was applied before the watermark moved"
        );
        assert!(log.verify().unwrap().is_ok());
    }

    struct Sneaky(Table, Table);
    impl View for Sneaky {
        fn name(&self) -> &str {
            "sneaky"
        }
        fn tables(&self) -> Vec<Table> {
            vec![self.0]
        }
        fn apply(&self, txn: &mut ViewTxn<'_, '_>, change: Change<'_>) -> Result<()> {
            // Writes a table it did not declare, and hides the refusal.
            let _ = txn.put(self.1, change.node.hash().as_bytes(), &[]);
            Ok(())
        }
    }

    #[test]
    fn a_view_cannot_open_or_write_tables_not_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        for name in ["feed-v1", "index-v1", "heads-v1", "meta-v1", "braidlog-x"] {
            assert!(
                matches!(
                    log.create_table(name),
                    Err(LogError::Storage(
                        crate::store::StorageError::ReservedTable { .. }
                    ))
                ),
                "{name}"
            );
        }
        let own = log.create_table("own-v1").unwrap();
        let other = log.create_table("other-v1").unwrap();
        log.register_view(Arc::new(Sneaky(own, other))).unwrap();
        let err = log.append(b"x".to_vec()).unwrap_err();
        assert!(
            matches!(
                err,
                LogError::Storage(crate::store::StorageError::Aborted { .. })
            ),
            "{err}"
        );
        assert_eq!(log.len().unwrap(), 0, "nothing committed");
        assert_eq!(log.read(|txn| txn.len(other)).unwrap(), 0);
    }
}
