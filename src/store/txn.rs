//! Transactions: a read snapshot ([`ReadTxn`]) and a write transaction ([`WriteTxn`]) that
//! refuses to commit once any write in it failed.
//!
//! Why poisoning: a caller that ignores an error from a write (a closure in
//! [`crate::Log::transaction`] that swallows `Writer::add`'s `MissingLink`, a view whose table
//! write failed) would otherwise commit whatever the failed step had already changed, for
//! example an index entry without its feed entry. Every mutation goes through a `WriteTxn`
//! method that records the first failure; [`WriteTxn::finish`] then aborts instead of
//! committing, whatever the caller returned.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use heed::types::Bytes;
use heed::{Database, PutFlags, RoTxn, RwTxn};

use super::{Result, StorageError, TxnError};

/// The cause of a transaction its own code cancelled (never seen by callers: they get the
/// error that code returned).
#[derive(Debug)]
struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the transaction's code returned an error")
    }
}

impl std::error::Error for Cancelled {}

pub(crate) type Db = Database<'static, Bytes, Bytes>;

/// A handle on one named table of the store (bytes to bytes, ordered by key bytes). Cheap to
/// copy; valid for the life of the [`crate::Log`] that made it. Views get theirs from
/// [`crate::Log::create_table`]; braidlog's own tables are never handed out.
#[derive(Clone, Copy)]
pub struct Table {
    pub(crate) db: Db,
    /// Identity within the store, to check that a view writes only its own tables.
    pub(crate) id: u32,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Table({})", self.id)
    }
}

impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.id == other.id
    }
}
impl Eq for Table {}

/// A consistent read snapshot of the store (or the reading side of the current write
/// transaction). Copy it freely; it lives as long as the closure that received it.
#[derive(Clone, Copy)]
pub struct ReadTxn<'t> {
    txn: &'t RoTxn<'t>,
}

/// An ordered run of `(key, value)` entries of one table; see [`ReadTxn::range`].
pub struct Entries<'t>(pub(crate) EntriesInner<'t>);

pub(crate) enum EntriesInner<'t> {
    Range(heed::RoRange<'t, Bytes, Bytes>),
    RevRange(heed::RoRevRange<'t, Bytes, Bytes>),
    Prefix(heed::RoPrefix<'t, Bytes, Bytes>),
    Memory(Box<dyn Iterator<Item = (&'t [u8], &'t [u8])> + 't>),
}

impl<'t> Iterator for Entries<'t> {
    type Item = Result<(&'t [u8], &'t [u8])>;
    fn next(&mut self) -> Option<Self::Item> {
        let item = match &mut self.0 {
            EntriesInner::Range(i) => i.next()?,
            EntriesInner::RevRange(i) => i.next()?,
            EntriesInner::Prefix(i) => i.next()?,
            EntriesInner::Memory(i) => return i.next().map(Ok),
        };
        Some(item.map_err(StorageError::from))
    }
}

impl<'t> ReadTxn<'t> {
    pub(crate) fn new(txn: &'t RoTxn<'t>) -> ReadTxn<'t> {
        ReadTxn { txn }
    }

    /// The value stored under `key`.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<&'t [u8]>> {
        Ok(table.db.get(self.txn, key)?)
    }

    /// Entries with `start <= key < end` (as the bounds say), in key order.
    pub fn range(
        &self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Entries<'t>> {
        let r = table.db.range(self.txn, &(start, end))?;
        Ok(Entries(EntriesInner::Range(r)))
    }

    /// Entries within the bounds, in reverse key order.
    pub fn rev_range(
        &self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Entries<'t>> {
        let r = table.db.rev_range(self.txn, &(start, end))?;
        Ok(Entries(EntriesInner::RevRange(r)))
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn prefix(&self, table: Table, prefix: &[u8]) -> Result<Entries<'t>> {
        Ok(Entries(EntriesInner::Prefix(
            table.db.prefix_iter(self.txn, prefix)?,
        )))
    }

    /// Every entry, in key order.
    pub fn iter(&self, table: Table) -> Result<Entries<'t>> {
        self.range(table, Bound::Unbounded, Bound::Unbounded)
    }

    /// Number of entries.
    pub fn len(&self, table: Table) -> Result<u64> {
        Ok(table.db.len(self.txn)?)
    }

    /// The entry with the greatest key.
    pub(crate) fn last(&self, table: Table) -> Result<Option<(&'t [u8], &'t [u8])>> {
        Ok(table.db.last(self.txn)?)
    }
}

/// A write transaction. Every mutation records its failure; once one failed, the
/// transaction can only abort (see the module docs).
pub(crate) struct WriteTxn<'e> {
    txn: RwTxn<'e>,
    /// The first failure, kept typed; `Some` means poisoned.
    poisoned: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl<'e> WriteTxn<'e> {
    pub(crate) fn new(txn: RwTxn<'e>) -> WriteTxn<'e> {
        WriteTxn {
            txn,
            poisoned: None,
        }
    }

    /// The reading side: sees every write made so far in this transaction.
    pub(crate) fn read(&self) -> ReadTxn<'_> {
        ReadTxn::new(&self.txn)
    }

    /// Records that a step of this transaction failed: it will not commit.
    pub(crate) fn poison<E: TxnError>(&mut self, e: &E) {
        if self.poisoned.is_none() {
            self.poisoned = Some(Arc::new(e.clone()));
        }
    }

    /// Makes the transaction abort: the code running it gave up (it returned an error the
    /// caller keeps, see `Log`'s typed transactions).
    pub(crate) fn cancel(&mut self) {
        if self.poisoned.is_none() {
            self.poisoned = Some(Arc::new(Cancelled));
        }
    }

    /// Passes a result through, poisoning the transaction when it is an error.
    pub(crate) fn check<T, E: TxnError>(&mut self, r: Result<T, E>) -> Result<T, E> {
        if let Err(e) = &r {
            self.poison(e);
        }
        r
    }

    fn mutate<T>(&mut self, f: impl FnOnce(&mut RwTxn<'e>) -> heed::Result<T>) -> Result<T> {
        let r = f(&mut self.txn).map_err(StorageError::from);
        self.check(r)
    }

    pub(crate) fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        self.mutate(|t| table.db.put(t, key, value))
    }

    /// Puts at the end of the table (the key must sort after every key in it).
    pub(crate) fn append(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        self.mutate(|t| table.db.put_with_flags(t, PutFlags::APPEND, key, value))
    }

    /// Puts `value` unless `key` is present; returns the present value, passed through `read`
    /// (one B-tree descent, no copy).
    pub(crate) fn get_or_put<T>(
        &mut self,
        table: Table,
        key: &[u8],
        value: &[u8],
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>> {
        self.mutate(|t| table.db.get_or_put(t, key, value).map(|v| v.map(read)))
    }

    pub(crate) fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        self.mutate(|t| table.db.delete(t, key))
    }

    pub(crate) fn clear(&mut self, table: Table) -> Result<()> {
        self.mutate(|t| table.db.clear(t))
    }

    /// Commits `result`'s transaction when both it and every write succeeded; aborts
    /// otherwise. A poisoned transaction returns [`StorageError::Aborted`] even if `result` is `Ok`.
    pub(crate) fn finish<R, E: TxnError>(self, result: Result<R, E>) -> Result<R, E> {
        match (result, self.poisoned) {
            (Err(e), _) => Err(e), // dropping the txn aborts it
            (Ok(_), Some(cause)) => Err(StorageError::Aborted { cause }.into()),
            (Ok(r), None) => {
                self.txn.commit().map_err(StorageError::from)?;
                Ok(r)
            }
        }
    }
}
