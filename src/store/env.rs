//! The LMDB environment: opening, the map-size gate, growth between transactions.
//!
//! Map size. LMDB maps the whole file at a fixed size chosen at open, and the file only grows
//! as pages are used, so a large reservation costs address space, not disk. The store reserves
//! [`StoreOptions::map_size`] up front and grows the map only *between* transactions: after a
//! commit that leaves it more than half full, or after a write of braidlog's own failed with
//! `MDB_MAP_FULL` (that write is then retried; it runs no user code). A user closure
//! ([`crate::Log::transaction`]) never runs twice: if its transaction fills the map, it gets
//! the `MapFull` error after the map has grown.
//!
//! The gate. Resizing needs that no transaction of this process is live. Every transaction
//! enters the gate (a counter, plus a per-thread count of transactions held). Growth holds
//! back new top-level transactions and waits, for a bounded time, for the counter to reach
//! zero. A thread that already holds a transaction never waits (nested reads: a read inside
//! a read callback, a transaction closure, a `walk_back` visitor), and growth never waits
//! without bound, so nothing can deadlock: the worst case is that growth is put off to a
//! later commit, and a write of braidlog's own retries.
//!
//! Several processes. LMDB records the map size in the file when a process grows it; another
//! process learns of it as `MDB_MAP_RESIZED` when it begins a transaction, and adopts it
//! (`mdb_env_set_mapsize(0)`) under the same gate.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use heed::types::Bytes;
use heed::{CommitOrAbort, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use super::tables::{self, Feed, Heads, Index, Meta};
use super::txn::{ReadTxn, Table, WriteTxn};
use super::{is_map_full, TxnError, STORE_FORMAT_VERSION};
use super::{Result, StorageError};

const MAX_DBS: u32 = 64;

/// How many times a write of braidlog's own is retried after growing a full map.
const GROW_RETRIES: usize = 40;

/// How to open a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreOptions {
    /// Initial map size in bytes (address space reserved; the file grows with use).
    pub map_size: usize,
    /// LMDB's `MDB_NOSYNC`.
    pub no_sync: bool,
    /// LMDB's `MDB_RDONLY`: nothing is ever written.
    pub read_only: bool,
    /// LMDB's `MDB_WRITEMAP`, for the simulator's throwaway stores only: commits write into
    /// the map instead of a system call per dirty page, and a stray write anywhere in the
    /// process could damage the store.
    pub write_map: bool,
}

/// Counts live transactions; growth may close it only when none is live.
struct Gate {
    state: AtomicUsize,
    /// Growth is waiting for live transactions to end: new top-level ones wait (briefly).
    draining: AtomicBool,
}

const CLOSED: usize = usize::MAX;

/// How long growth waits for live transactions to end before giving up for now. New
/// top-level transactions wait at most this long; nested ones never wait.
const DRAIN_PATIENCE: Duration = Duration::from_millis(200);

thread_local! {
    /// Transactions (of any store) this thread holds: a thread that holds one never waits
    /// for growth, which would wait for it.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

struct Entered<'a>(&'a Gate);
struct Closed<'a>(&'a Gate);

impl Gate {
    fn new() -> Gate {
        Gate {
            state: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
        }
    }

    /// Enters. Waits while a resize runs (microseconds; it holds nothing a transaction could
    /// wait for), and, for a thread holding no transaction, while growth drains (bounded by
    /// [`DRAIN_PATIENCE`]). A nested transaction never waits for a drain.
    fn enter(&self) -> Entered<'_> {
        let nested = HELD.with(Cell::get) > 0;
        loop {
            let n = self.state.load(Ordering::Acquire);
            if n == CLOSED || (!nested && self.draining.load(Ordering::Acquire)) {
                std::thread::yield_now();
                continue;
            }
            if self
                .state
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                HELD.with(|h| h.set(h.get() + 1));
                return Entered(self);
            }
        }
    }

    /// Closes the gate when no transaction is live, waiting at most [`DRAIN_PATIENCE`] for
    /// live ones to end (new top-level ones are held back meanwhile). Returns `None` when
    /// this thread holds a transaction itself or the wait ran out.
    fn close(&self) -> Option<Closed<'_>> {
        if HELD.with(Cell::get) > 0 {
            return None;
        }
        let deadline = Instant::now() + DRAIN_PATIENCE;
        self.draining.store(true, Ordering::Release);
        let closed = loop {
            if self
                .state
                .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break Some(Closed(self));
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_micros(50));
        };
        self.draining.store(false, Ordering::Release);
        closed
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.state.fetch_sub(1, Ordering::AcqRel);
        HELD.with(|h| h.set(h.get() - 1));
    }
}

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.state.store(0, Ordering::Release);
    }
}

pub(crate) struct Store {
    pub feed: Feed,
    pub index: Index,
    pub heads: Heads,
    pub meta: Meta,
    /// View tables by name, with their ids (the own tables take ids 0-3).
    tables: Mutex<Vec<(String, Table)>>,
    gate: Gate,
    env: Env<WithoutTls>,
    /// LMDB's page size (the OS page size).
    page: usize,
    path: PathBuf,
    read_only: bool,
}

/// The one place the environment is opened.
fn open_env(path: &Path, options: StoreOptions, map_size: usize) -> Result<Env<WithoutTls>> {
    let mut opts = EnvOpenOptions::new().read_txn_without_tls();
    opts.map_size(map_size).max_dbs(MAX_DBS);
    let mut flags = EnvFlags::empty();
    if options.no_sync {
        flags |= EnvFlags::NO_SYNC;
    }
    if options.read_only {
        flags |= EnvFlags::READ_ONLY;
    }
    if options.write_map {
        flags |= EnvFlags::WRITE_MAP;
    }
    // SAFETY: heed marks two things unsafe here. (1) The flags: NO_SYNC trades safety for speed.
    // Without an fsync per commit, a crash of the *operating system* (not of this process) can
    // leave the file with a meta page that points at pages never written: the store may be
    // corrupt, not merely behind; the user chose this through `Durability::NoSync`, whose docs say
    // so. READ_ONLY is safe. WRITE_MAP (the simulator's throwaway stores only, never a user's)
    // maps the file writable: a stray write in the process could damage that store, whose content
    // is worthless after the run. (2) The mapping: the file must not be changed except through
    // LMDB while it is mapped, and must not be opened twice in this process. braidlog writes it
    // only through LMDB; other processes use LMDB's lock file, which coordinates them (including
    // map growth, see the module docs); heed refuses a second open in this process
    // (`EnvAlreadyOpened`), and `Log::open` shares one handle per directory. Anyone else writing
    // the file is outside what any mmap-based store can defend against; damaged node bytes are
    // still caught by the hash check on every read.
    unsafe {
        opts.flags(flags);
        Ok(opts.open(path)?)
    }
}

impl Store {
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store> {
        let io = |source| StorageError::io(path, source);
        if options.read_only {
            if !path.join("data.mdb").is_file() {
                return Err(StorageError::NotAStore { path: path.into() });
            }
        } else {
            std::fs::create_dir_all(path).map_err(io)?;
        }
        super::file::check_before_open(path, !options.read_only)?;
        // A multiple of every page size LMDB may use (up to 64 KiB), at least 1 MiB.
        let map_size = options.map_size.div_ceil(1 << 16).max(16) << 16;
        let env = open_env(path, options, map_size)?;
        let page = env.unnamed_database_stat().page_size as usize;
        let dbs = if options.read_only {
            let rtxn = env.read_txn()?;
            env.open_databases_and_commit(rtxn, |dbo, rtxn| -> heed::Result<_> {
                let open = |name| dbo.open_database::<Bytes, Bytes>(rtxn, Some(name));
                Ok(CommitOrAbort::<_, ()>::Commit((
                    open(tables::FEED)?,
                    open(tables::INDEX)?,
                    open(tables::HEADS)?,
                    open(tables::META)?,
                )))
            })?
            .unwrap_commit()
        } else {
            let wtxn = env.write_txn()?;
            let created = env
                .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                    let mut create = |name| dbo.create_database::<Bytes, Bytes>(wtxn, Some(name));
                    Ok(CommitOrAbort::<_, ()>::Commit((
                        create(tables::FEED)?,
                        create(tables::INDEX)?,
                        create(tables::HEADS)?,
                        create(tables::META)?,
                    )))
                })?
                .unwrap_commit();
            (
                Some(created.0),
                Some(created.1),
                Some(created.2),
                Some(created.3),
            )
        };
        let (Some(feed), Some(index), Some(heads), Some(meta)) = dbs else {
            return Err(StorageError::NotAStore { path: path.into() });
        };
        let t = |db, id| Table { db, id };
        let store = Store {
            feed: Feed(t(feed, 0)),
            index: Index(t(index, 1)),
            heads: Heads(t(heads, 2)),
            meta: Meta(t(meta, 3)),
            tables: Mutex::new(Vec::new()),
            gate: Gate::new(),
            env,
            page,
            path: path.into(),
            read_only: options.read_only,
        };
        store.check_format()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn check_format(&self) -> Result<()> {
        let got = self.read(|txn| self.meta.format(txn))?;
        match got {
            Some(got) if got == STORE_FORMAT_VERSION => Ok(()),
            Some(got) => Err(StorageError::FormatVersion {
                path: self.path.clone(),
                got,
                expected: STORE_FORMAT_VERSION,
            }),
            None if self.read_only => Err(StorageError::NotAStore {
                path: self.path.clone(),
            }),
            None => self.write(|txn| self.meta.set_format(txn, STORE_FORMAT_VERSION)),
        }
    }

    /// Empties the store for reuse by the simulator, in `txn`: the feed, index, heads, every
    /// view table, and the meta records about views, peers and policies. The format version
    /// and the peer id stay, so the store reads as freshly opened.
    #[cfg(feature = "sim")]
    pub(crate) fn clear_for_reuse(&self, txn: &mut WriteTxn<'_>) -> Result<()> {
        for t in [self.feed.0, self.index.0, self.heads.0] {
            txn.clear(t)?;
        }
        let known: Vec<Table> = (self.tables.lock().unwrap_or_else(|e| e.into_inner()))
            .iter()
            .map(|(_, t)| *t)
            .collect();
        for t in known {
            txn.clear(t)?;
        }
        self.meta.clear_for_reuse(txn)
    }

    /// Creates (or opens) a table for a view. Refuses braidlog's own names.
    pub fn create_table(&self, name: &str) -> Result<Table> {
        if tables::reserved(name) {
            return Err(StorageError::ReservedTable { name: name.into() });
        }
        let mut known = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = known.iter().find(|(n, _)| n == name) {
            return Ok(*t);
        }
        let db = if self.read_only {
            let (_entered, rtxn) = self.enter(|env| env.read_txn())?;
            self.env
                .open_databases_and_commit(rtxn, |dbo, rtxn| -> heed::Result<_> {
                    Ok(CommitOrAbort::<_, ()>::Commit(
                        dbo.open_database::<Bytes, Bytes>(rtxn, Some(name))?,
                    ))
                })?
                .unwrap_commit()
                .ok_or_else(|| StorageError::ReadOnly {
                    path: self.path.clone(),
                })?
        } else {
            let (_entered, wtxn) = self.enter(|env| env.write_txn())?;
            self.env
                .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                    Ok(CommitOrAbort::<_, ()>::Commit(
                        dbo.create_database::<Bytes, Bytes>(wtxn, Some(name))?,
                    ))
                })?
                .unwrap_commit()
        };
        let table = Table {
            db,
            id: 4 + known.len() as u32,
        };
        known.push((name.into(), table));
        Ok(table)
    }

    /// Enters the gate and begins a transaction with `begin`; adopts a map grown by another
    /// process (outside the gate, which adopting must close) and begins again.
    fn enter<'s, T>(
        &'s self,
        begin: impl Fn(&'s Env<WithoutTls>) -> heed::Result<T>,
    ) -> Result<(Entered<'s>, T)> {
        loop {
            let entered = self.gate.enter();
            match begin(&self.env) {
                Ok(t) => return Ok((entered, t)),
                Err(e) => {
                    drop(entered);
                    self.adopt_if_resized(e.into())?;
                }
            }
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(StorageError::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Runs `f` on one read snapshot.
    pub fn read<R, E: From<StorageError>>(
        &self,
        f: impl FnOnce(ReadTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let (_entered, txn) = self.enter(|env| env.read_txn())?;
        f(ReadTxn::new(&txn))
    }

    /// Runs `f` in one write transaction and commits, unless `f` failed or any write in the
    /// transaction failed (see [`WriteTxn`]). `f` runs once.
    pub fn write<R, E: TxnError>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        self.check_writable()?;
        let result = {
            let (_entered, txn) = self.enter(|env| env.write_txn())?;
            let mut txn = WriteTxn::new(txn);
            let r = f(&mut txn);
            txn.finish(r)
                .map_err(|e| e.map_storage(|s| super::file::diagnose(s, &self.path)))
        };
        match &result {
            Ok(_) => self.grow_if_half_full(),
            Err(e) if is_map_full(e) => {
                self.try_grow();
            }
            Err(_) => {}
        }
        result
    }

    /// [`Store::write`] for braidlog's own writes, which have no effects outside the
    /// transaction: after `MDB_MAP_FULL` the map grows and `f` runs again. Never pass user
    /// code here.
    pub fn write_retrying<R, E: TxnError>(
        &self,
        mut f: impl FnMut(&mut WriteTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut tries = 0;
        loop {
            match self.write(&mut f) {
                // `write` has tried to grow already; when it could not (long reads), the
                // next attempt tries again.
                Err(e) if is_map_full(&e) && tries < GROW_RETRIES => tries += 1,
                other => return other,
            }
        }
    }

    /// After a commit: grows when more than half the map is in use, so that ordinary writes
    /// never meet a full map. Cheap (reads two numbers); skipped when transactions are live.
    fn grow_if_half_full(&self) {
        let info = self.env.info();
        let used = info
            .last_page_number
            .saturating_add(1)
            .saturating_mul(self.page);
        if used > info.map_size / 2 {
            self.try_grow();
        }
    }

    /// Doubles the map once no transaction of this process is live (see [`Gate::close`]).
    /// Returns whether it grew.
    fn try_grow(&self) -> bool {
        let Some(_closed) = self.gate.close() else {
            return false;
        };
        let next = self.env.info().map_size.saturating_mul(2);
        // SAFETY: `mdb_env_set_mapsize` needs that this process has no live transaction on
        // the environment: every transaction holds the gate entered, and the gate is closed.
        // Other processes are unaffected until they begin a transaction, which then fails
        // with MDB_MAP_RESIZED and adopts the new size (see `adopt_if_resized`).
        unsafe { self.env.resize(next) }.is_ok()
    }

    /// Another process grew the map: adopt its size (LMDB: set the map size to 0). Any other
    /// error is returned. Needs the gate closed, which this thread's own live transactions
    /// (a nested read) would prevent forever: gives up after a bounded wait and returns the
    /// error.
    fn adopt_if_resized(&self, e: StorageError) -> Result<()> {
        if !e.is_map_resized() {
            return Err(e);
        }
        match self.gate.close() {
            Some(_closed) => {
                // SAFETY: as in `try_grow`: the gate is closed, no transaction is live.
                unsafe { self.env.resize(0) }?;
                Ok(())
            }
            None => Err(e),
        }
    }

    pub fn map_size(&self) -> usize {
        self.env.info().map_size
    }
}
