//! The storage core through the public API: transactions that cannot commit after a failed
//! write, map growth that never deadlocks nested reads, read-only `verify`, hash checks on
//! every read, re-opening races, read-only opening, monotonic commit notifications.

use braidlog::kv::KvRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use braidlog::sync::{Mode, SyncError};
use braidlog::{Change, Table, View, ViewTxn};
use braidlog::{Hash, Kv, KvError, Log, LogError, StorageError};

mod common;

use common::{
    assert_verified, durable_replica, replica, replica_with, small_map, try_pair, within_thread,
    Replica,
};

#[test]
fn a_swallowed_missing_link_commits_nothing() {
    let Replica { dir: _dir, log } = durable_replica();
    let root = log.append(b"root".to_vec()).unwrap();
    let ghost = Hash([9; 32]);
    let err = log
        .transaction(|w| {
            w.add([root.hash()], b"fine".to_vec())?;
            // The error is ignored and the closure reports success.
            let _ = w.add([root.hash(), ghost], b"dangling".to_vec());
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, LogError::Storage(StorageError::Aborted { .. })),
        "{err}"
    );
    // The cause is kept typed: the missing link the closure swallowed.
    let LogError::Storage(StorageError::Aborted { cause }) = &err else {
        unreachable!()
    };
    assert!(
        matches!(cause.downcast_ref::<LogError>(), Some(LogError::MissingLink { link, .. }) if *link == ghost),
        "{cause}"
    );
    assert_eq!(
        log.len().unwrap(),
        1,
        "nothing of the transaction committed"
    );
    assert_eq!(log.heads().unwrap(), vec![root.hash()]);
    assert_verified(&log);
    assert!(log.get(&ghost).unwrap().is_none());
}

/// Refuses every payload starting with `!`.
struct Picky(Table);
impl View for Picky {
    fn name(&self) -> &str {
        "picky"
    }
    fn tables(&self) -> Vec<Table> {
        vec![self.0]
    }
    fn apply(&self, txn: &mut ViewTxn<'_, '_>, change: Change<'_>) -> Result<(), LogError> {
        if change.node.payload().starts_with(b"!") {
            return Err(LogError::View {
                view: "picky".into(),
                message: "refused".into(),
            });
        }
        Ok(txn.put(self.0, change.node.hash().as_bytes(), &[])?)
    }
}

#[test]
fn a_swallowed_view_error_commits_nothing() {
    let Replica { dir: _dir, log } = durable_replica();
    let table = log.create_table("picky-v1").unwrap();
    log.register_view(Arc::new(Picky(table))).unwrap();
    log.append(b"ok".to_vec()).unwrap();
    let err = log
        .transaction(|w| {
            let _ = w.append(b"!no".to_vec());
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, LogError::Storage(StorageError::Aborted { .. })),
        "{err}"
    );
    let LogError::Storage(StorageError::Aborted { cause }) = &err else {
        unreachable!()
    };
    assert!(
        matches!(cause.downcast_ref::<LogError>(), Some(LogError::View { view, .. }) if view == "picky"),
        "{cause}"
    );
    assert_eq!(log.len().unwrap(), 1);
    assert_verified(&log);
    // The store still takes writes, and the watermark did not move past a lost node.
    log.append(b"ok2".to_vec()).unwrap();
    assert_eq!(log.read(|txn| txn.len(table)).unwrap(), 2);
    assert_verified(&log);
}

#[test]
fn nested_reads_never_deadlock_while_the_map_grows() {
    let Replica { dir: _dir, log } = replica_with(small_map());
    let root = log.append(b"root".to_vec()).unwrap().hash();
    let initial = log.map_size();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|kind| {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rounds = 0u64;
                while !done.load(Ordering::Acquire) || rounds == 0 {
                    match kind {
                        0 => log
                            .read(|_| log.read(|_| log.get(&root)))
                            .map(|_| ())
                            .unwrap(),
                        1 => log
                            .walk_back([root], |_, _| {
                                log.get(&root)?;
                                Ok(true)
                            })
                            .unwrap(),
                        _ => {
                            log.transaction(|w| {
                                log.read(|_| log.get(&root))?;
                                w.add([root], rounds.to_be_bytes().to_vec())
                            })
                            .unwrap();
                        }
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let writer = log.clone();
    let rounds = within_thread(120, move || {
        // 16 MiB through a 1 MiB map: the map grows several times under the readers.
        for i in 0..128u32 {
            writer.append(vec![i as u8; 128 << 10]).unwrap();
        }
        done.store(true, Ordering::Release);
        readers
            .into_iter()
            .map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(rounds.iter().all(|r| *r > 0), "{rounds:?}");
    assert!(
        log.map_size() >= 16 * initial,
        "map grew: {}",
        log.map_size()
    );
    assert_verified(&log);
}

#[test]
fn writes_larger_than_the_map_grow_it_without_running_user_code_twice() {
    let Replica { dir: _dir, log } = replica_with(small_map());
    // braidlog's own writes retry after growing.
    log.append(vec![1; 900 << 10]).unwrap();
    let nodes: Vec<_> = (0..4u8)
        .map(|i| braidlog::Node::new([], vec![i; 700 << 10]).unwrap())
        .collect();
    log.insert(&nodes).unwrap();
    // A user's closure runs once: it gets the map-full error, and a second run fits.
    let big = |log: &Log| {
        let mut runs = 0;
        let r = log.transaction(|w| {
            runs += 1;
            for i in 0..8u8 {
                w.add([], vec![i; 1000 << 10])?;
            }
            Ok(())
        });
        (r, runs)
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (r, runs) = big(&log);
        assert_eq!(runs, 1, "the closure ran once per call");
        match r {
            Ok(()) => break,
            Err(LogError::Storage(s)) if s.is_map_full() && attempts < 5 => continue,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(log.len().unwrap(), 13);
    assert_verified(&log);
}

#[test]
fn verify_during_puts_never_fails() {
    let Replica { dir: _dir, log } = replica_with(small_map());
    let kv = Kv::open(&log).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut checks = 0;
            while !done.load(Ordering::Acquire) || checks == 0 {
                let report = log.verify().expect("verify runs");
                assert!(report.is_ok(), "{report:?}");
                checks += 1;
            }
            checks
        })
    };
    for i in 0..300u32 {
        kv.put(format!("k{}", i % 50), vec![i as u8; 8 << 10])
            .unwrap();
    }
    done.store(true, Ordering::Release);
    assert!(checker.join().unwrap() > 0);
}

#[test]
fn verify_works_on_a_reopened_store_above_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open_with(dir.path(), small_map()).unwrap();
        let kv = Kv::open(&log).unwrap();
        for i in 0..36u32 {
            kv.put(format!("big{i}"), vec![i as u8; (1 << 20) - 1024])
                .unwrap();
        }
    }
    let size = std::fs::metadata(dir.path().join("data.mdb"))
        .unwrap()
        .len();
    assert!(size > 64 << 20, "store of {size} bytes");
    let log = Log::open_with(dir.path(), small_map()).unwrap();
    Kv::open(&log).unwrap();
    let report = log.verify().unwrap();
    assert!(report.is_ok() && report.views == 1, "{report:?}");
}

/// Flips one byte of every copy of the payload that starts with `marker` in `data.mdb`
/// (freed pages may hold older copies of the same leaf).
fn damage(dir: &Path, marker: &[u8]) {
    let path = dir.join("data.mdb");
    let mut bytes = std::fs::read(&path).unwrap();
    let spots: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i)
        .collect();
    assert!(!spots.is_empty(), "payload in the file");
    for at in spots {
        bytes[at + marker.len()] ^= 0x20;
    }
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test]
async fn a_damaged_node_is_reported_never_returned_or_sent() {
    let dir = tempfile::tempdir().unwrap();
    let marker = b"DAMAGE-ME:";
    let (victim, after) = {
        let log = Log::open(dir.path()).unwrap();
        log.append(b"before".to_vec()).unwrap();
        let mut payload = marker.to_vec();
        payload.extend_from_slice(b"the original value");
        let victim = log.append(payload).unwrap();
        let after = log.append(b"after".to_vec()).unwrap();
        (victim, after)
    };
    damage(dir.path(), marker);
    let log = Log::open(dir.path()).unwrap();

    let err = log.get(&victim.hash()).unwrap_err();
    assert!(
        matches!(err, LogError::Storage(StorageError::Damaged { seq: 2, expected, .. }) if expected == victim.hash()),
        "{err}"
    );
    assert!(matches!(
        log.get_by_seq(2),
        Err(LogError::Storage(StorageError::Damaged { .. }))
    ));
    let feed: Vec<_> = log.changes(0).collect();
    assert!(feed[0].is_ok(), "entries before the damage still read");
    assert!(matches!(
        feed[1],
        Err(LogError::Storage(StorageError::Damaged { seq: 2, .. }))
    ));
    let walk = log.walk_back([after.hash()], |_, _| Ok(true));
    assert!(
        matches!(
            walk,
            Err(LogError::Storage(StorageError::Damaged { seq: 2, .. }))
        ),
        "{walk:?}"
    );
    let report = log.verify().unwrap();
    assert!(!report.is_ok());

    // A peer pulling from the damaged replica never stores a corrupted node.
    let Replica {
        dir: _peer_dir,
        log: peer,
    } = durable_replica();
    let (ra, rb) = try_pair(&log, &peer, Mode::Push, Mode::Pull).await;
    // The damaged side reports what it found; the puller only sees the session end.
    assert!(
        matches!(
            ra,
            Err(SyncError::Store(LogError::Storage(StorageError::Damaged {
                seq: 2,
                ..
            })))
        ),
        "the sync reports the damage: {ra:?} {rb:?}"
    );
    for entry in peer.changes(0) {
        let node = entry.unwrap().node;
        assert!(
            !node.payload().starts_with(marker),
            "no corrupted copy stored"
        );
    }
    assert_verified(&peer);
}

#[test]
fn reopening_while_the_last_handle_drops_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    Log::open(dir.path()).unwrap();
    for _ in 0..1000 {
        let log = Log::open(dir.path()).unwrap();
        let dropper = std::thread::spawn(move || drop(log));
        let again = Log::open(dir.path()).expect("re-open while the last handle drops");
        dropper.join().unwrap();
        drop(again);
    }
}

fn fingerprint(dir: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let path = dir.join("data.mdb");
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    (std::fs::read(&path).unwrap(), modified)
}

#[test]
fn a_read_only_open_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let head = {
        let log = Log::open(dir.path()).unwrap();
        let kv = Kv::open(&log).unwrap();
        kv.put("k", "v").unwrap();
        log.append(b"x".to_vec()).unwrap()
    };
    let before = fingerprint(dir.path());
    {
        let log = Log::open_read_only(dir.path()).unwrap();
        assert!(log.is_read_only());
        assert_eq!(log.heads().unwrap(), vec![head.hash()]);
        let kv = Kv::open(&log).unwrap();
        assert_eq!(kv.get("k").unwrap().unwrap().value(), Some(&b"v"[..]));
        let report = log.verify().unwrap();
        assert!(report.is_ok() && report.views == 1, "{report:?}");
        assert!(matches!(
            log.append(b"y".to_vec()),
            Err(LogError::Storage(StorageError::ReadOnly { .. }))
        ));
        assert!(matches!(
            kv.put("k", "w"),
            Err(KvError::Log(LogError::Storage(
                StorageError::ReadOnly { .. }
            )))
        ));
    }
    assert!(fingerprint(dir.path()) == before, "data.mdb untouched");
    let missing = dir.path().join("nothing-here");
    assert!(matches!(
        Log::open_read_only(&missing),
        Err(LogError::Storage(StorageError::NotAStore { .. }))
    ));
    assert!(!missing.exists(), "a read-only open creates nothing");
}

#[cfg(unix)]
#[test]
fn a_read_only_open_works_without_write_permission() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let head = Log::open(&store).unwrap().append(b"x".to_vec()).unwrap();
    let set = |mode| {
        for f in ["data.mdb", "lock.mdb", ""] {
            std::fs::set_permissions(store.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    // (As root, permissions do not block; the test then shows only that nothing breaks.)
    set(0o555);
    let log = Log::open_read_only(&store);
    set(0o755);
    let log = log.unwrap();
    assert_eq!(log.heads().unwrap(), vec![head.hash()]);
}

#[test]
fn commit_notifications_never_go_backwards() {
    let Replica { dir: _dir, log } = replica();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    log.add([], [t, i as u8, (i >> 8) as u8].to_vec()).unwrap();
                }
            })
        })
        .collect();
    let mut sub = log.subscribe();
    let mut seen = 0;
    let watcher = within_thread(60, move || {
        let mut regressions = 0;
        while seen < 800 {
            let now = sub.wait_blocking().unwrap();
            if now < seen {
                regressions += 1;
            }
            seen = seen.max(now);
        }
        regressions
    });
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(watcher, 0);
    assert_eq!(log.subscribe().latest(), 800);
}
