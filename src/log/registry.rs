//! The logs open in this process, by canonical directory, and the state their handles share.
//!
//! LMDB allows one environment per file per process, so a second open of a directory must
//! share the first. An entry stays until its environment is closed (see `Drop for Shared`),
//! so an open that finds a dead entry waits for the close instead of racing it into
//! `EnvAlreadyOpened`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};

use super::error::Result;
use super::signing::Signing;
use super::write::Engine;
use crate::identity::PeerId;
use crate::store::{StorageError, Store, StoreOptions};

/// What every handle on one open log shares: the store and the write engine.
pub(crate) struct Shared {
    /// `Some` until dropped; see `Drop for Shared`.
    store: Option<Store>,
    pub engine: Engine,
    pub peer_id: PeerId,
    key: PathBuf,
}

impl Shared {
    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("present until dropped")
    }
}

static OPEN_LOGS: Mutex<BTreeMap<PathBuf, Weak<Shared>>> = Mutex::new(BTreeMap::new());
static CLOSED: Condvar = Condvar::new();

impl Drop for Shared {
    fn drop(&mut self) {
        // Close the environment first, then remove the entry: an open of the same directory
        // in between waits on `CLOSED` rather than failing.
        drop(self.store.take());
        let mut open = OPEN_LOGS.lock().unwrap_or_else(|e| e.into_inner());
        if open
            .get(&self.key)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
        {
            open.remove(&self.key);
        }
        CLOSED.notify_all();
    }
}

/// The shared state of the log in `dir`: the one already open in this process, or a newly
/// opened one.
pub(crate) fn open(dir: &Path, options: StoreOptions) -> Result<Arc<Shared>> {
    let io = |source| StorageError::io(dir, source);
    if options.read_only {
        if !dir.join(crate::store::file::DATA_FILE).is_file() {
            return Err(StorageError::NotAStore { path: dir.into() }.into());
        }
    } else {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let key = std::fs::canonicalize(dir).map_err(io)?;
    let mut open = OPEN_LOGS.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match open.get(&key).map(Weak::upgrade) {
            Some(Some(shared)) => return Ok(shared),
            // The last handle is being dropped: wait until its environment is closed.
            Some(None) => open = CLOSED.wait(open).unwrap_or_else(|e| e.into_inner()),
            None => break,
        }
    }
    let shared = Arc::new(open_new(dir, key.clone(), options)?);
    open.insert(key, Arc::downgrade(&shared));
    Ok(shared)
}

fn open_new(dir: &Path, key: PathBuf, options: StoreOptions) -> Result<Shared> {
    let store = Store::open(dir, options).map_err(|e| crate::store::file::diagnose(e, dir))?;
    let peer_id = crate::store::load_peer_id(&store)?;
    let last = store.read(|txn| store.feed.last_seq(txn))?;
    Ok(Shared {
        store: Some(store),
        engine: Engine::new(Signing::new(dir), last),
        peer_id,
        key,
    })
}
