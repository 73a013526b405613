//! [`ViewTxn`]: what a view's `apply` may touch, its own tables and nothing else.
//!
//! Two backends: the log's write transaction (the normal case), or tables held in memory
//! ([`MemTables`]), which is how `verify` rebuilds a view to compare it without writing.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::txn::{Entries, EntriesInner, Table, WriteTxn};
use super::{Result, StorageError};

/// A view's tables rebuilt in memory: one ordered map per table id.
#[derive(Default)]
pub(crate) struct MemTables {
    pub tables: HashMap<u32, BTreeMap<Vec<u8>, Vec<u8>>>,
}

enum Backend<'a, 'e> {
    Lmdb(&'a mut WriteTxn<'e>),
    Memory(&'a mut MemTables),
}

/// The handle a [`crate::View`] updates its tables through, inside the log's write
/// transaction. It reaches only the tables the view declared in [`crate::View::tables`];
/// any failed write poisons the whole transaction (nothing of it commits, even if `apply`
/// swallows the error).
pub struct ViewTxn<'a, 'e> {
    backend: Backend<'a, 'e>,
    view: &'a str,
    allowed: &'a [Table],
    /// A failed read, passed on to the transaction by [`ViewTxn::done`]: reads borrow the
    /// transaction, so they cannot poison it on the spot.
    failed: Option<String>,
}

fn mem_range<'t>(
    map: Option<&'t BTreeMap<Vec<u8>, Vec<u8>>>,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Entries<'t> {
    let owned = |b: Bound<&[u8]>| match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    let bounds = (owned(start), owned(end));
    let empty = matches!(
        (&bounds.0, &bounds.1),
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) if s > e
    );
    let it: Box<dyn Iterator<Item = (&'t [u8], &'t [u8])> + 't> = match map {
        Some(m) if !empty => Box::new(
            m.range::<Vec<u8>, _>(bounds)
                .map(|(k, v)| (k.as_slice(), v.as_slice())),
        ),
        _ => Box::new(std::iter::empty()),
    };
    Entries(EntriesInner::Memory(it))
}

impl<'a, 'e> ViewTxn<'a, 'e> {
    pub(crate) fn lmdb(txn: &'a mut WriteTxn<'e>, view: &'a str, allowed: &'a [Table]) -> Self {
        ViewTxn {
            backend: Backend::Lmdb(txn),
            view,
            allowed,
            failed: None,
        }
    }

    pub(crate) fn memory(mem: &'a mut MemTables, view: &'a str, allowed: &'a [Table]) -> Self {
        ViewTxn {
            backend: Backend::Memory(mem),
            view,
            allowed,
            failed: None,
        }
    }

    /// Ends the view's step: a read that failed poisons the transaction, even if the view
    /// swallowed the error.
    pub(crate) fn done(self) {
        if let (Backend::Lmdb(txn), Some(message)) = (self.backend, self.failed) {
            txn.poison(&StorageError::View {
                view: self.view.into(),
                message,
            });
        }
    }

    fn note<T>(failed: &mut Option<String>, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            failed.get_or_insert_with(|| e.to_string());
        }
        r
    }

    fn own(&mut self, table: Table) -> Result<()> {
        if self.allowed.contains(&table) {
            return Ok(());
        }
        let e = StorageError::View {
            view: self.view.into(),
            message: format!("{table:?} is not one of the view's tables"),
        };
        if let Backend::Lmdb(txn) = &mut self.backend {
            txn.poison(&e);
        }
        Err(e)
    }

    /// The value under `key` in `table`, as written so far in this transaction.
    pub fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<&[u8]>> {
        self.own(table)?;
        match &mut self.backend {
            Backend::Lmdb(txn) => {
                let txn: &WriteTxn<'e> = txn;
                Self::note(&mut self.failed, txn.read().get(table, key))
            }
            Backend::Memory(m) => Ok(m
                .tables
                .get(&table.id)
                .and_then(|t| t.get(key))
                .map(Vec::as_slice)),
        }
    }

    /// Sets `key` to `value` in `table`.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        self.own(table)?;
        match &mut self.backend {
            Backend::Lmdb(txn) => txn.put(table, key, value),
            Backend::Memory(m) => {
                let t = m.tables.entry(table.id).or_default();
                t.insert(key.to_vec(), value.to_vec());
                Ok(())
            }
        }
    }

    /// Removes `key` from `table`; whether it was there.
    pub fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        self.own(table)?;
        match &mut self.backend {
            Backend::Lmdb(txn) => txn.delete(table, key),
            Backend::Memory(m) => Ok(m
                .tables
                .get_mut(&table.id)
                .is_some_and(|t| t.remove(key).is_some())),
        }
    }

    /// Entries of `table` within the bounds, in key order.
    pub fn range(
        &mut self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Entries<'_>> {
        self.own(table)?;
        match &mut self.backend {
            Backend::Lmdb(txn) => {
                let txn: &WriteTxn<'e> = txn;
                Self::note(&mut self.failed, txn.read().range(table, start, end))
            }
            Backend::Memory(m) => Ok(mem_range(m.tables.get(&table.id), start, end)),
        }
    }

    /// Entries of `table` whose key starts with `prefix`, in key order.
    pub fn prefix(&mut self, table: Table, prefix: &[u8]) -> Result<Entries<'_>> {
        self.own(table)?;
        match &mut self.backend {
            Backend::Lmdb(txn) => {
                let txn: &WriteTxn<'e> = txn;
                Self::note(&mut self.failed, txn.read().prefix(table, prefix))
            }
            Backend::Memory(m) => {
                let p = prefix.to_vec();
                let Entries(EntriesInner::Memory(it)) = mem_range(
                    m.tables.get(&table.id),
                    Bound::Included(prefix),
                    Bound::Unbounded,
                ) else {
                    unreachable!("memory ranges are memory entries")
                };
                Ok(Entries(EntriesInner::Memory(Box::new(
                    it.take_while(move |(k, _)| k.starts_with(&p)),
                ))))
            }
        }
    }

    /// Removes every entry of `table`.
    pub fn clear(&mut self, table: Table) -> Result<()> {
        self.own(table)?;
        match &mut self.backend {
            Backend::Lmdb(txn) => txn.clear(table),
            Backend::Memory(m) => {
                m.tables.remove(&table.id);
                Ok(())
            }
        }
    }
}
