//! The checks of `file/mod.rs` on 64-bit little-endian Unix machines.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::pages::{
    check_reachable, check_roots, decode_meta, DataFile, Meta, MetaProblem, PageProblem,
};
use super::{Checked, FileProblem, DATA_FILE, LOCK_FILE, LOW_SPACE_BYTES};
use crate::store::StorageError;

/// Size of the lock file LMDB makes for its default 126 readers.
const LOCK_FILE_BYTES: usize = 8192;
/// Bytes read for a meta page: its header and the meta record.
const META_BYTES: usize = 152;
/// Page sizes tried for the second meta page when the first cannot tell.
const PAGE_SIZES: [u64; 8] = [4096, 8192, 16384, 65536, 32768, 512, 1024, 2048];

fn damaged(dir: &Path, problem: FileProblem) -> StorageError {
    StorageError::DamagedFile {
        path: dir.into(),
        problem,
    }
}

/// A page a snapshot reaches that is missing (the file is truncated) or malformed.
fn page_error(dir: &Path, file: &DataFile, page_size: u64, p: PageProblem) -> StorageError {
    let PageProblem { page, what } = p;
    let problem = if page >= file.pages() {
        FileProblem::Truncated {
            size: file.pages() * page_size,
            page,
            what,
        }
    } else {
        FileProblem::DamagedPage { page, what }
    };
    damaged(dir, problem)
}

fn io(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::io(path, source)
}

fn describe(p: &MetaProblem) -> String {
    match p {
        MetaProblem::Header(s) | MetaProblem::Content(s) => s.clone(),
    }
}

/// Checks `dir`'s files before LMDB opens them (see the module docs). `writable` says whether
/// the store is being opened for writing: only then is a damaged meta page rewritten.
pub(crate) fn check_before_open(dir: &Path, writable: bool) -> Result<Checked, StorageError> {
    let data = dir.join(DATA_FILE);
    let len = match std::fs::metadata(&data) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if writable {
                let available = available_bytes(dir).unwrap_or(u64::MAX);
                if available < LOW_SPACE_BYTES / 16 {
                    return Err(StorageError::DiskFull {
                        path: dir.into(),
                        available,
                    });
                }
                prepare_lock_file(dir)?;
            }
            return Ok(Checked::New);
        }
        Err(e) => return Err(io(&data, e)),
    };
    if len == 0 {
        return Err(damaged(dir, FileProblem::Empty));
    }
    if writable {
        prepare_lock_file(dir)?;
    }
    let (metas, page_size, file) = usable_metas(&data)?;
    let check_pages = |meta: &Meta| -> Result<(), StorageError> {
        if file.pages() > meta.last_page {
            return Ok(()); // the common case: no walk
        }
        match check_reachable(&file, meta) {
            Ok(_) => Ok(()),
            // A process writing meanwhile may reuse pages of the snapshot being walked (after
            // two commits); it opened the file itself, so leave the verdict to LMDB.
            Err(_) if opened_elsewhere(dir) => Ok(()),
            Err(p) => Err(page_error(dir, &file, page_size, p)),
        }
    };
    match metas {
        [Ok(a), Ok(b)] => {
            check_pages(if b.txnid > a.txnid { &b } else { &a })?;
            Ok(Checked::Sound)
        }
        [Err(first), Err(second)] => Err(damaged(
            dir,
            FileProblem::NoValidMeta {
                first: describe(&first),
                second: describe(&second),
            },
        )),
        [good, bad] => {
            let (slot, good, bad) = match (good, bad) {
                (Ok(g), Err(b)) => (1, g, b),
                (Err(b), Ok(g)) => (0, g, b),
                _ => unreachable!("both-ok and both-err matched above"),
            };
            check_pages(&good)?;
            let not_repaired = |error: String| {
                damaged(
                    dir,
                    FileProblem::MetaNotRepaired {
                        slot,
                        what: describe(&bad),
                        error,
                    },
                )
            };
            if !writable {
                return Err(not_repaired(
                    "the store is opened read-only; open it for writing once (`braid init`) \
                     to rewrite it from the intact page"
                        .into(),
                ));
            }
            if opened_elsewhere(dir) {
                // Another process has the store open: what looks damaged may be a meta page
                // it is writing right now. Never write over it; LMDB decides, as it does for
                // that process.
                return Ok(Checked::Sound);
            }
            rewrite_meta(&data, page_size, 1 - slot, slot)
                .map_err(|e| not_repaired(e.to_string()))?;
            Ok(Checked::MetaRepaired { slot })
        }
    }
}

/// Walks every page the newest snapshot of the store in `dir` reaches (every tree, every
/// overflow value) with `pread`, and returns how many there are; a missing or malformed page
/// is an [`StorageError::DamagedFile`]. This reads the whole file, so it is for `verify`, not for
/// every open; it finds the damage inside B-trees that LMDB would follow blindly (and may
/// crash on). When another process commits during the walk, pages of the snapshot being
/// walked may be reused, so the walk is repeated until no commit happened during it (at most
/// three times). No `data.mdb`: nothing to check, `Ok(0)`.
pub fn check_pages(dir: &Path) -> Result<u64, StorageError> {
    let data = dir.join(DATA_FILE);
    if !data.is_file() {
        return Ok(0);
    }
    let newest = |metas: &[MetaResult; 2]| metas.iter().flatten().max_by_key(|m| m.txnid).copied();
    let mut result = Ok(0);
    for _ in 0..3 {
        let (metas, page_size, file) = usable_metas(&data)?;
        let Some(meta) = newest(&metas) else {
            let [first, second] = metas.map(|m| m.err().as_ref().map(describe).unwrap_or_default());
            return Err(damaged(dir, FileProblem::NoValidMeta { first, second }));
        };
        result = check_reachable(&file, &meta)
            .map(|n| n as u64)
            .map_err(|p| page_error(dir, &file, page_size, p));
        let (again, _, _) = usable_metas(&data)?;
        if newest(&again).map(|m| m.txnid) == Some(meta.txnid) {
            break;
        }
    }
    result
}

type MetaResult = Result<Meta, MetaProblem>;

/// Both meta pages, each checked on its own and against the pages its roots name.
fn usable_metas(data: &Path) -> Result<([MetaResult; 2], u64, DataFile), StorageError> {
    let (metas, page_size) = read_metas(data)?;
    let file = DataFile::open(data, page_size).map_err(|e| io(data, e))?;
    let metas = metas.map(|m| {
        m.and_then(|m| match check_roots(&file, &m) {
            Ok(()) => Ok(m),
            Err(what) => Err(MetaProblem::Content(what)),
        })
    });
    Ok((metas, page_size, file))
}

/// Reads both meta pages; the page size comes from page 0, or from the first size at which
/// page 1 decodes when page 0 is damaged.
pub(crate) fn read_metas(data: &Path) -> Result<([MetaResult; 2], u64), StorageError> {
    let file = std::fs::File::open(data).map_err(|e| io(data, e))?;
    let read = |offset: u64| -> Option<Vec<u8>> {
        let mut buf = vec![0; META_BYTES];
        file.read_exact_at(&mut buf, offset).ok().map(|()| buf)
    };
    let short = || Err(MetaProblem::Header("beyond the end of the file".into()));
    let first = read(0).map_or_else(short, |b| decode_meta(&b, 0));
    let sizes: Vec<u64> = match &first {
        Ok(m) => vec![m.page_size],
        Err(_) => PAGE_SIZES.to_vec(),
    };
    let mut second = short();
    for &size in &sizes {
        second = read(size).map_or_else(short, |b| decode_meta(&b, 1));
        if second.is_ok() {
            break;
        }
    }
    let page_size = match (&first, &second) {
        (Ok(m), _) | (_, Ok(m)) => m.page_size,
        _ => PAGE_SIZES[0],
    };
    Ok(([first, second], page_size))
}

/// Copies meta page `from` over meta page `to`, with `to`'s page number, and flushes it.
fn rewrite_meta(data: &Path, page_size: u64, from: u64, to: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(data)?;
    let mut page = vec![0; page_size as usize];
    file.read_exact_at(&mut page, from * page_size)?;
    page[..8].copy_from_slice(&to.to_le_bytes());
    file.write_all_at(&page, to * page_size)?;
    file.sync_data()
}

/// Creates `lock.mdb` fully allocated, unless it exists. Written to a temporary file and
/// linked into place, so a process that opens the store meanwhile never sees it half written.
fn prepare_lock_file(dir: &Path) -> Result<(), StorageError> {
    let lock = dir.join(LOCK_FILE);
    if lock.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!("{LOCK_FILE}.{}.tmp", std::process::id()));
    if let Err(e) = std::fs::write(&tmp, [0u8; LOCK_FILE_BYTES]) {
        let _ = std::fs::remove_file(&tmp);
        return Err(diagnose(io(&lock, e), dir));
    }
    // Best effort: where hard links are not supported, LMDB creates the file as usual.
    let _ = std::fs::hard_link(&tmp, &lock);
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

/// Whether another process has the store open. LMDB holds a shared `fcntl` lock on the lock
/// file for as long as an environment is open (and one per reader), so an exclusive lock
/// that cannot be taken means someone else has it. This process has not opened it yet (the
/// check runs before LMDB opens), so closing the descriptor drops no lock of ours.
fn opened_elsewhere(dir: &Path) -> bool {
    let Ok(lock) = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
    else {
        return false;
    };
    use rustix::fs::{fcntl_lock, FlockOperation};
    match fcntl_lock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            let _ = fcntl_lock(&lock, FlockOperation::NonBlockingUnlock);
            false
        }
        Err(e) => e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS,
    }
}

/// Bytes available to this process on the file system holding `path`.
pub(crate) fn available_bytes(path: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Turns a write error on a full disk into [`StorageError::DiskFull`]; returns any other error as is.
/// `ENOSPC` and `EDQUOT` always mean a full disk; `EIO` does when the file system holding `dir`
/// has less than [`LOW_SPACE_BYTES`] left, since LMDB reports a short write as `EIO`.
pub(crate) fn diagnose(error: StorageError, dir: &Path) -> StorageError {
    let code = match &error {
        StorageError::Engine(_) => error.io_error().and_then(std::io::Error::raw_os_error),
        StorageError::Io { source: e, .. } => e.raw_os_error(),
        _ => None,
    };
    let Some(code) = code else { return error };
    let available = available_bytes(dir).unwrap_or(u64::MAX);
    let full = code == rustix::io::Errno::NOSPC.raw_os_error()
        || code == rustix::io::Errno::DQUOT.raw_os_error()
        || (code == rustix::io::Errno::IO.raw_os_error() && available < LOW_SPACE_BYTES);
    if full {
        StorageError::DiskFull {
            path: dir.into(),
            available,
        }
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: rustix::io::Errno) -> StorageError {
        StorageError::from_io(std::io::Error::from_raw_os_error(code.raw_os_error()))
    }

    #[test]
    fn no_space_is_a_full_disk_and_eio_only_when_space_is_low() {
        let dir = tempfile::tempdir().unwrap();
        let roomy = available_bytes(dir.path()).unwrap() >= LOW_SPACE_BYTES;
        for code in [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT] {
            assert!(matches!(
                diagnose(os(code), dir.path()),
                StorageError::DiskFull { .. }
            ));
        }
        let eio = diagnose(os(rustix::io::Errno::IO), dir.path());
        assert_eq!(
            matches!(eio, StorageError::DiskFull { .. }),
            !roomy,
            "{eio}"
        );
        let other = diagnose(os(rustix::io::Errno::ACCESS), dir.path());
        assert!(matches!(other, StorageError::Engine(_)), "{other}");
        let not_io = diagnose(StorageError::Corrupt("x".into()), dir.path());
        assert!(matches!(not_io, StorageError::Corrupt(_)));
    }

    #[test]
    fn a_new_directory_is_new_and_gets_a_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_before_open(dir.path(), true).unwrap(), Checked::New);
        let lock = std::fs::metadata(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(lock.len(), LOCK_FILE_BYTES as u64);
        // Read-only: nothing is created.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            check_before_open(other.path(), false).unwrap(),
            Checked::New
        );
        assert!(!other.path().join(LOCK_FILE).exists());
    }

    #[test]
    fn a_store_braidlog_wrote_is_sound_and_every_page_it_reaches_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = crate::Log::open(dir.path()).unwrap();
            for i in 0..50u32 {
                log.append(vec![i as u8; 3000 + i as usize * 100]).unwrap();
            }
        }
        assert_eq!(check_before_open(dir.path(), true).unwrap(), Checked::Sound);
        let data = dir.path().join(DATA_FILE);
        let (metas, page_size) = read_metas(&data).unwrap();
        let file = DataFile::open(&data, page_size).unwrap();
        for meta in metas.iter().flatten() {
            let reached = check_reachable(&file, meta).unwrap();
            assert!(reached as u64 <= meta.last_page, "{reached} pages");
            assert!(check_roots(&file, meta).is_ok());
        }
    }
}
