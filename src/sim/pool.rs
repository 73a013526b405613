//! Where the simulator's replicas live: LMDB environments on a RAM-backed file system, kept
//! in a per-thread pool and emptied for each run.
//!
//! Opening an environment (files, map, tables, peer id, the KV view) costs about as much as a
//! whole simulated run, so a run takes replicas from the pool and empties them in one
//! transaction each ([`Log::clear_for_reuse`]) instead. Their directories are unlinked as
//! soon as they are open (on Unix): the mapped files live until the process exits, so a
//! fuzzer that is killed leaves nothing behind. The price: a replica keeps its peer id from
//! run to run (replicas of one run always differ), and nothing may reopen it by path.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::Result;
use crate::identity::Identity;
use crate::kv::Kv;
use crate::log::Log;

/// Idle environments kept per thread; more are closed when returned.
const MAX_IDLE: usize = 16;

/// First map size: runs are small; the map grows by itself when needed.
const MAP_SIZE: usize = 1 << 20;

thread_local! {
    static IDLE: RefCell<Vec<Env>> = const { RefCell::new(Vec::new()) };
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// One pooled replica: its log, its KV view, and the identity it signs with when a run asks
/// for signed writes (made once: generating a key costs more than a run's writes).
pub(crate) type Env = (Log, Kv, Identity);

/// Where the simulator keeps its stores: `/dev/shm` when this process can create directories
/// there (RAM: creating, writing and removing files never waits for a disk), else the system
/// temporary directory. Decided once per process. Fuzz targets that need a directory of their
/// own create it here too.
pub fn scratch_base() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let probe = shm.join(format!("braidlog-sim-probe-{}", std::process::id()));
        if std::fs::create_dir(&probe).is_ok() && std::fs::remove_dir(&probe).is_ok() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

/// A directory for a fresh environment, unique in the process.
fn fresh_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    scratch_base().join(format!("braidlog-sim-{}-{n}", std::process::id()))
}

/// Opens a new empty replica: no fsync, and commits that write into the map (see
/// `Log::open_scratch`).
fn open_fresh() -> Result<Env> {
    let dir = fresh_dir();
    let log = Log::open_scratch(&dir, MAP_SIZE)?;
    let kv = Kv::open(&log)?;
    if cfg!(unix) {
        std::fs::remove_dir_all(&dir)
            .map_err(|source| crate::store::StorageError::io(dir, source))?;
    }
    Ok((log, kv, Identity::generate()))
}

/// `n` empty replicas: reused from this thread's pool when it has them, else new. Their writes
/// are signed with their own identity when `signed`, else unsigned (node ids then depend only
/// on content).
pub(crate) fn take(n: usize, reuse: bool, signed: bool) -> Result<Vec<Env>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let idle = if reuse {
            IDLE.with(|p| p.borrow_mut().pop())
        } else {
            None
        };
        let env = match idle {
            Some(env) => {
                env.0.clear_for_reuse()?;
                env
            }
            None => open_fresh()?,
        };
        env.0.set_identity(signed.then(|| env.2.clone()));
        out.push(env);
    }
    Ok(out)
}

/// Returns replicas to this thread's pool (they are emptied when taken again).
pub(crate) fn give_back(replicas: impl IntoIterator<Item = Env>) {
    IDLE.with(|p| {
        let mut p = p.borrow_mut();
        for r in replicas {
            if p.len() < MAX_IDLE {
                p.push(r);
            }
        }
    });
}
