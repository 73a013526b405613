//! The LMDB environment: tables, the map-growth gate, and the meta table.
//!
//! Schema (every table is `Bytes -> Bytes`; integers are big-endian so LMDB orders them):
//!
//! | table        | key              | value                         |
//! |--------------|------------------|-------------------------------|
//! | `feed-v1`    | seq `u64` BE     | hash (32) ++ canonical node   |
//! | `index-v1`   | hash (32)        | seq `u64` BE                  |
//! | `heads-v1`   | hash (32)        | empty                         |
//! | `meta-v1`    | utf-8 name       | bytes (see [`meta`])          |
//!
//! The feed is keyed by arrival order and written with `MDB_APPEND`, which is the cheap way to
//! insert into a B-tree; the index is the only random-order insert per node.
//!
//! Map growth: LMDB's map size is fixed while transactions are live. Every transaction holds a
//! shared guard on `gate`; a write that hits `MDB_MAP_FULL` aborts, takes the gate exclusively,
//! doubles the map, and runs again. Callers therefore pass closures that can run twice.

use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use heed::types::Bytes;
use heed::{
    CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, MdbError, RoTxn, RwTxn, WithoutTls,
};

use crate::error::{Error, Result};

/// A table: raw bytes to raw bytes.
pub type Table = Database<'static, Bytes, Bytes>;

/// A read transaction that can move between threads.
pub type ReadTxn<'a> = RoTxn<'a, WithoutTls>;

/// On-disk format of the whole store, checked on open.
pub const STORE_FORMAT_VERSION: u32 = 1;

/// Keys of the meta table.
pub mod meta {
    /// `u32` BE: [`super::STORE_FORMAT_VERSION`] of the store.
    pub const FORMAT: &str = "format";
    /// 16 random bytes identifying this replica to peers.
    pub const PEER_ID: &str = "peer-id";
    /// `dev u64 BE ++ inode u64 BE` of `data.mdb` when the peer id was made: a copied directory
    /// has another inode, and gets a new peer id (see [`crate::Log::peer_id`]).
    pub const PEER_ID_FILE: &str = "peer-id-file";
    /// Prefix of per-view watermarks: `view/<name>` -> `version u32 BE ++ applied seq u64 BE`.
    pub const VIEW_PREFIX: &str = "view/";
    /// Prefix of per-peer replication state: `peer/<hex peer id>/...`.
    pub const PEER_PREFIX: &str = "peer/";
}

const MAX_DBS: u32 = 64;

pub(crate) struct Store {
    // Field order matters for drop: tables are plain handles, the env closes last.
    pub feed: Table,
    pub index: Table,
    pub heads: Table,
    pub meta: Table,
    gate: RwLock<()>,
    pub env: Env<WithoutTls>,
    path: PathBuf,
}

/// A read transaction plus the guard that keeps the map from being resized under it.
pub(crate) struct Reader<'a> {
    pub txn: ReadTxn<'a>,
    _gate: RwLockReadGuard<'a, ()>,
}

fn is_map_full(e: &Error) -> bool {
    matches!(e, Error::Storage(heed::Error::Mdb(MdbError::MapFull)))
}

impl Store {
    pub fn open(path: &Path, map_size: usize, no_sync: bool) -> Result<Store> {
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        crate::store_file::check_before_open(path, true)?;
        let page = 4096;
        let map_size = map_size.div_ceil(page).max(16) * page;
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(map_size).max_dbs(MAX_DBS);
        if no_sync {
            // SAFETY: NO_SYNC only weakens durability (a crash may lose the last commits, never
            // corrupt the store); the user asked for it explicitly.
            unsafe { opts.flags(EnvFlags::NO_SYNC) };
        }
        // SAFETY: heed requires that the same file is not opened twice in this process (heed
        // checks and returns EnvAlreadyOpened) and that the file is not modified by other means
        // while mapped; braidlog only touches it through LMDB.
        let env = unsafe { opts.open(path) }?;
        let wtxn = env.write_txn()?;
        let (feed, index, heads, meta) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database::<Bytes, Bytes>(wtxn, Some("feed-v1"))?,
                    dbo.create_database::<Bytes, Bytes>(wtxn, Some("index-v1"))?,
                    dbo.create_database::<Bytes, Bytes>(wtxn, Some("heads-v1"))?,
                    dbo.create_database::<Bytes, Bytes>(wtxn, Some("meta-v1"))?,
                )))
            })?
            .unwrap_commit();
        let store = Store {
            feed,
            index,
            heads,
            meta,
            gate: RwLock::new(()),
            env,
            path: path.into(),
        };
        store.check_format()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_format(&self) -> Result<()> {
        let path = self.path.clone();
        self.write(|txn| {
            match self.meta.get(txn, meta::FORMAT.as_bytes())? {
                None => self.meta.put(
                    txn,
                    meta::FORMAT.as_bytes(),
                    &STORE_FORMAT_VERSION.to_be_bytes(),
                )?,
                Some(v) => {
                    let got = v.try_into().map(u32::from_be_bytes).unwrap_or(u32::MAX);
                    if got != STORE_FORMAT_VERSION {
                        return Err(Error::FormatVersion {
                            path: path.clone(),
                            got,
                            expected: STORE_FORMAT_VERSION,
                        });
                    }
                }
            }
            Ok(())
        })
    }

    /// Creates (or opens) an extra table, for views.
    pub fn create_table(&self, name: &str) -> Result<Table> {
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let wtxn = self.env.write_txn()?;
        let table = self
            .env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit(
                    dbo.create_database::<Bytes, Bytes>(wtxn, Some(name))?,
                ))
            })?
            .unwrap_commit();
        Ok(table)
    }

    pub fn read(&self) -> Result<Reader<'_>> {
        loop {
            let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
            match self.env.read_txn() {
                Ok(txn) => return Ok(Reader { txn, _gate: gate }),
                Err(e) => {
                    drop(gate);
                    self.adopt_if_resized(e.into())?;
                }
            }
        }
    }

    /// Another process grew the map: adopt its size (LMDB: set the map size to 0) and let
    /// the caller retry. Any other error is returned.
    fn adopt_if_resized(&self, e: Error) -> Result<()> {
        if !matches!(e, Error::Storage(heed::Error::Mdb(MdbError::MapResized))) {
            return Err(e);
        }
        let _exclusive = self.gate.write().unwrap_or_else(|e| e.into_inner());
        // SAFETY: as in `grow`: the exclusive gate means no transaction of ours is live.
        unsafe { self.env.resize(0) }?;
        Ok(())
    }

    /// Runs `f` in one write transaction and commits. Retries after growing the map when LMDB
    /// reports it full, so `f` must not have effects outside the transaction.
    pub fn write<R>(&self, mut f: impl FnMut(&mut RwTxn<'_>) -> Result<R>) -> Result<R> {
        loop {
            let attempt = {
                let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
                let mut txn = match self.env.write_txn() {
                    Ok(txn) => txn,
                    Err(e) => {
                        drop(_gate);
                        self.adopt_if_resized(e.into())?;
                        continue;
                    }
                };
                match f(&mut txn) {
                    Ok(r) => txn
                        .commit()
                        .map(|()| r)
                        .map_err(|e| crate::store_file::diagnose(e.into(), &self.path)),
                    Err(e) => Err(e), // dropping txn aborts it
                }
            };
            match attempt {
                Err(e) if is_map_full(&e) => self.grow()?,
                other => return other,
            }
        }
    }

    fn grow(&self) -> Result<()> {
        let _exclusive = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let current = self.env.info().map_size;
        let next = current.saturating_mul(2);
        // SAFETY: every transaction of this process holds a shared guard on `gate`, and we hold
        // it exclusively, so no transaction is live. Other processes do not open the store
        // while we have it (braidlog is one process per store); LMDB would adopt the new size
        // on their next transaction anyway.
        unsafe { self.env.resize(next) }?;
        Ok(())
    }

    pub fn map_size(&self) -> usize {
        self.env.info().map_size
    }
}
