//! Bad disks and bad files: a full file system, and truncated, emptied or damaged `data.mdb`.
//! Every `braid` command on a damaged store must end with an exit code (a one-line error or
//! success after recovery), never a signal.

#![cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]

mod cli_common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use braidlog::{Error, Kv, Log, LogError, StorageError};
use cli_common::braid;

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "8m"), or prints why not and returns `None`.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "note: skipped, cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("note: skipped, cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system, leaving about `leave` bytes free.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let free = free_bytes(self.path());
        let size = free.saturating_sub(leave);
        std::fs::write(&filler, vec![0xA5u8; size as usize]).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Asserts `braid` ended with an exit code, and if it failed, with one line of error.
fn no_signal(out: &Output, what: &str) {
    assert!(
        out.status.signal().is_none(),
        "{what}: killed by signal {:?}; stderr: {}",
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr)
    );
    // 70: the CLI caught SIGBUS or SIGSEGV (see `braid salvage`'s module); the checks at open
    // must have refused the file before that.
    assert_ne!(
        out.status.code(),
        Some(70),
        "{what}: faulted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
    }
}

#[test]
fn a_write_on_a_full_disk_is_a_typed_error_and_the_store_stays_valid() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let dir = fs.path().join("replica");
    let log = Log::open(&dir).unwrap();
    let kv = Kv::open(&log).unwrap();
    let mut acked = Vec::new();
    let mut failure = None;
    for round in 0..10_000u32 {
        let payload = vec![round as u8; 2048];
        let result = kv.batch(|b| {
            (0..20)
                .map(|i| b.put(format!("k{round}/{i}"), payload.clone()))
                .collect::<Result<Vec<_>, _>>()
        });
        match result {
            Ok(hashes) => acked.extend(hashes),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("8 MiB fills up");
    assert!(
        matches!(
            Error::from(failure.clone()),
            Error::Storage(StorageError::DiskFull { .. })
        ),
        "expected DiskFull, got {failure:?}"
    );
    assert!(failure.to_string().contains("no space left"), "{failure}");
    assert!(acked.len() > 100, "only {} writes before full", acked.len());
    // A single write fails the same way, and nothing is half stored.
    let before = log.len().unwrap();
    let err = kv.put("one-more", vec![7u8; 64 << 10]).unwrap_err();
    assert!(
        matches!(
            Error::from(err.clone()),
            Error::Storage(StorageError::DiskFull { .. })
        ),
        "{err:?}"
    );
    assert_eq!(log.len().unwrap(), before);
    assert!(log.verify().unwrap().is_ok());
    for h in &acked {
        assert!(log.contains(h).unwrap());
    }
    drop((kv, log));
    // Reopened with the disk still full, the store reads and verifies.
    let log = Log::open(&dir).unwrap();
    assert!(log.verify().unwrap().is_ok());
    assert_eq!(log.len().unwrap(), before);
}

#[test]
fn creating_a_replica_on_a_full_disk_fails_with_a_message_not_sigbus() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    for leave in [0, 8 << 10, 64 << 10] {
        let filler = fs.fill(leave);
        let dir = fs.path().join(format!("new-{leave}"));
        let out = braid(&dir, &["init"]);
        no_signal(&out, &format!("init with {leave} bytes free"));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no space left"), "{err}");
        // The failed creation left no file that would later look like a damaged store.
        assert!(!dir.join("data.mdb").exists());
        std::fs::remove_file(filler).unwrap();
        let dir2 = fs.path().join(format!("ok-{leave}"));
        let out = braid(&dir2, &["init"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_dir_all(dir2).unwrap();
    }
}

/// A replica with `n` KV writes, closed; returns its directory.
fn make_store(root: &Path, n: u32) -> PathBuf {
    let dir = root.join("good");
    let log = Log::open(&dir).unwrap();
    let kv = Kv::open(&log).unwrap();
    for chunk in 0..n / 100 {
        kv.batch(|b| {
            for i in 0..100 {
                let k = chunk * 100 + i;
                b.put(
                    format!("key/{k:06}"),
                    vec![k as u8; 40 + (k % 300) as usize],
                )?;
            }
            Ok(())
        })
        .unwrap();
    }
    kv.put("big", vec![9u8; 20_000]).unwrap(); // a value on overflow pages
    dir
}

fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("data.mdb"), to.join("data.mdb")).unwrap();
}

/// Runs every command on `dir`; none may die by a signal.
fn every_command_survives(dir: &Path, what: &str) -> bool {
    let mut verified = false;
    for args in [
        &["verify"][..],
        &["get", "key/000042"],
        &["ls"],
        &["log"],
        &["heads"],
        &["put", "after", "damage"],
        &["verify"],
    ] {
        let out = braid(dir, args);
        no_signal(&out, &format!("{what}: braid {args:?}"));
        if args == ["verify"] && out.status.success() {
            verified = true;
        }
    }
    verified
}

#[test]
fn a_truncated_data_file_is_refused_at_open_with_one_line() {
    let root = tempfile::tempdir().unwrap();
    let good = make_store(root.path(), 3000);
    let len = std::fs::metadata(good.join("data.mdb")).unwrap().len();
    let page = 4096;
    let mut refused = 0;
    let cuts = [
        page + 10,
        2 * page,
        2 * page + 1,
        len / 4,
        len / 2,
        len * 3 / 4,
        len - page,
        len - page / 2,
        len - 1,
    ];
    for cut in cuts {
        let dir = root.path().join(format!("cut-{cut}"));
        copy_store(&good, &dir);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("data.mdb"))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let out = braid(&dir, &["verify"]);
        no_signal(&out, &format!("verify after a cut at {cut}"));
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            // Only pages no snapshot reaches (free pages at the end) were cut.
            assert!(cut >= len / 2, "a cut at {cut} of {len} passed verify");
            assert_eq!(keys(&dir), keys(&good), "cut at {cut}");
        } else {
            refused += 1;
            // The page walk may be what finds the cut: a reachable page past the end.
            assert!(
                err.contains("truncated")
                    || err.contains("meta page")
                    || err.contains("beyond the end of the file"),
                "cut at {cut}: {err}"
            );
        }
        every_command_survives(&dir, &format!("cut at {cut}"));
    }
    assert!(
        refused >= 6,
        "only {refused} of {} cuts refused",
        cuts.len()
    );
}

fn keys(dir: &Path) -> usize {
    cli_common::ok(dir, &["ls"]).lines().count()
}

#[test]
fn an_empty_or_zeroed_data_file_is_not_a_new_replica() {
    let root = tempfile::tempdir().unwrap();
    let good = make_store(root.path(), 200);
    let len = std::fs::metadata(good.join("data.mdb")).unwrap().len();
    for (name, bytes) in [("empty", 0), ("zeroed", len)] {
        let dir = root.path().join(name);
        copy_store(&good, &dir);
        std::fs::write(dir.join("data.mdb"), vec![0u8; bytes as usize]).unwrap();
        for args in [&["verify"][..], &["ls"], &["put", "a", "b"], &["init"]] {
            let out = braid(&dir, args);
            no_signal(&out, &format!("{name}: {args:?}"));
            assert!(!out.status.success(), "{name}: braid {args:?} succeeded");
        }
        let err = cli_common::fails(&dir, &["verify"]);
        assert!(
            err.contains("empty") || err.contains("meta page"),
            "{name}: {err}"
        );
        assert_eq!(
            std::fs::metadata(dir.join("data.mdb")).unwrap().len(),
            bytes,
            "{name}: the file was changed"
        );
    }
    // A directory with no data.mdb at all is still a new replica.
    let fresh = root.path().join("fresh");
    assert!(braid(&fresh, &["init"]).status.success());
}

#[test]
fn a_damaged_meta_page_falls_back_to_the_other() {
    let root = tempfile::tempdir().unwrap();
    let good = make_store(root.path(), 1000);
    let all = keys(&good);
    // Offsets in a meta page: flags, magic, version, page size, free root, main root, last
    // page, transaction id, and a byte past the meta record.
    for slot in 0..2u64 {
        for offset in [0u64, 10, 16, 19, 20, 40, 80, 128, 129, 136, 144, 150, 600] {
            let what = format!("meta {slot} byte {offset}");
            let dir = root.path().join(format!("flip-{slot}-{offset}"));
            copy_store(&good, &dir);
            let path = dir.join("data.mdb");
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[(slot * 4096 + offset) as usize] ^= 0xFF;
            std::fs::write(&path, bytes).unwrap();
            // Readers open read-only and never write: a damaged meta page is a one-line error
            // for them, and the first read-write open rewrites it.
            no_signal(&braid(&dir, &["verify"]), &format!("{what}, read-only"));
            let out = braid(&dir, &["init"]);
            no_signal(&out, &format!("{what}, init"));
            assert!(
                out.status.success(),
                "{what}: not repaired: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = braid(&dir, &["verify"]);
            no_signal(&out, &what);
            assert!(
                out.status.success(),
                "{what}: not recovered: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Falling back to the older snapshot may lose the newest commit, never more.
            let n = keys(&dir);
            assert!(n == all || n + 1 == all, "{what}: {n} of {all} keys");
            assert!(every_command_survives(&dir, &what), "{what}");
        }
    }
}

/// Syncs two replicas both ways in this process.
fn sync_both(a: &Log, b: &Log) {
    use braidlog::sync::{self, Mode, SyncOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (x, y) = tokio::io::duplex(64 << 10);
    let (ra, rb) = rt.block_on(async {
        tokio::join!(
            sync::sync(a, x, SyncOptions::new(Mode::Both)),
            sync::sync(b, y, SyncOptions::new(Mode::Both))
        )
    });
    ra.unwrap();
    rb.unwrap();
}

#[test]
fn salvage_copies_every_genuine_node_and_a_sync_restores_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let good = make_store(root.path(), 3000);
    let bytes = std::fs::read(good.join("data.mdb")).unwrap();
    let pages = bytes.len() / 4096;
    // Damage of three kinds: bytes flipped inside many pages, a run of pages zeroed (branch
    // pages included, so the feed tree cannot be walked), and a truncation.
    let mut flipped = bytes.clone();
    for page in (2..pages).step_by(7) {
        flipped[page * 4096 + 1500] ^= 0x5A;
    }
    let mut zeroed = bytes.clone();
    zeroed[(pages / 3) * 4096..(pages / 3 + 12) * 4096].fill(0);
    let truncated = bytes[..bytes.len() / 2].to_vec();
    let all = {
        let log = Log::open(&good).unwrap();
        let all: std::collections::HashSet<_> =
            log.changes(0).map(|e| e.unwrap().node.hash()).collect();
        all
    };
    for (name, damaged) in [
        ("flipped", flipped),
        ("zeroed", zeroed),
        ("truncated", truncated),
    ] {
        let from = root.path().join(format!("{name}-damaged"));
        let to = root.path().join(format!("{name}-saved"));
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("data.mdb"), &damaged).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args(["--json", "salvage", "--from"])
            .arg(&from)
            .arg("--to")
            .arg(&to)
            .output()
            .unwrap();
        no_signal(&out, &format!("salvage {name}"));
        assert!(
            out.status.success(),
            "salvage {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let saved = report["saved"].as_u64().unwrap();
        eprintln!("{name}: {report}");
        assert!(saved > 0, "{name}: nothing saved: {report}");
        // The salvaged replica is sound and holds only genuine nodes of the original.
        cli_common::ok(&to, &["verify"]);
        let log = Log::open(&to).unwrap();
        assert_eq!(log.len().unwrap(), saved);
        for e in log.changes(0) {
            assert!(
                all.contains(&e.unwrap().node.hash()),
                "{name}: a node not in the original"
            );
        }
        // A sync with a healthy peer brings back the rest.
        let peer = Log::open(&good).unwrap();
        sync_both(&log, &peer);
        assert_eq!(log.len().unwrap(), all.len() as u64, "{name}");
        assert!(log.verify().unwrap().is_ok());
        drop((log, peer));
        let kv = cli_common::ok(&to, &["get", "key/000042"]);
        assert!(!kv.is_empty());
        // Salvage refuses to mix into an existing replica.
        let again = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args(["salvage", "--from"])
            .arg(&from)
            .arg("--to")
            .arg(&to)
            .output()
            .unwrap();
        assert!(!again.status.success());
    }
}

#[test]
fn a_sync_receiver_on_a_full_disk_fails_with_a_typed_error_and_keeps_what_it_stored() {
    use braidlog::sync::{self, Mode, SyncError, SyncOptions};
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let root = tempfile::tempdir().unwrap();
    // About 16 MiB: twice what the file system holds.
    let source = sixteen_mib(&root.path().join("source"));
    let dest = Log::open(fs.path().join("dest")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (x, y) = tokio::io::duplex(64 << 10);
    let (rd, rs) = rt.block_on(async {
        tokio::join!(
            sync::sync_reporting(&dest, x, SyncOptions::new(Mode::Pull)),
            sync::sync(&source, y, SyncOptions::new(Mode::Push))
        )
    });
    let failure = rd.expect_err("16 MiB do not fit in 8");
    // The failed sync counts what it committed: every node it stored.
    assert_eq!(failure.report.nodes_received, dest.len().unwrap());
    // The pushing peer learns why, not just that the connection closed.
    match rs {
        Err(SyncError::PeerAborted { reason, detail }) => {
            assert_eq!(reason, sync::AbortReason::DiskFull);
            assert!(detail.contains("no space left"), "{detail}");
        }
        r => panic!("the pusher should see the abort: {r:?}"),
    }
    let err = failure.error;
    assert!(
        matches!(
            err,
            SyncError::Store(LogError::Storage(StorageError::DiskFull { .. }))
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no space left"), "{err}");
    assert!(dest.verify().unwrap().is_ok());
    assert!(
        dest.len().unwrap() > 0,
        "no batch was committed before the disk filled"
    );
    for e in dest.changes(0) {
        assert!(source.contains(&e.unwrap().node.hash()).unwrap());
    }
}

/// A source of about 16 MiB of nodes in one chain.
fn sixteen_mib(dir: &Path) -> Log {
    let source = Log::open(dir).unwrap();
    let mut prev = source.append(b"root".to_vec()).unwrap();
    for i in 0..10u32 {
        prev = source
            .transaction(|w| {
                let mut p = prev.clone();
                // 3,800 bytes: a signed node (104 bytes of authorship) still fills one
                // 4 KiB LMDB page; 4,000 signed bytes would spill into two pages, and the
                // first 4 MiB batch would no longer fit in the 8 MiB file system.
                for j in 0..400u32 {
                    p = w.add([p.hash()], vec![(i ^ j) as u8; 3800])?;
                }
                Ok(p)
            })
            .unwrap();
    }
    source
}

#[test]
fn a_server_on_a_full_disk_counts_what_it_stored_and_tells_the_pusher() {
    use braidlog::sync::SyncOptions;
    use braidlog::sync::{self, AbortReason, Mode, ServeEvent, ServeOptions, SyncError};
    use std::sync::{Arc, Mutex};
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let root = tempfile::tempdir().unwrap();
    let source = sixteen_mib(&root.path().join("source"));
    let dest = Log::open(fs.path().join("dest")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let failed = Arc::new(Mutex::new(Vec::new()));
    let seen = failed.clone();
    let mut opts = ServeOptions::from(SyncOptions::new(Mode::Both));
    opts.on_event = Some(Arc::new(move |e| {
        if let ServeEvent::Failed { error, report, .. } = e {
            seen.lock()
                .unwrap()
                .push((error.to_string(), report.nodes_received));
        }
    }));
    let (pushed, served) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(sync::serve(listener, dest.clone(), opts, async {
            let _ = stopped.await;
        }));
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let pushed = sync::sync(&source, stream, SyncOptions::new(Mode::Push)).await;
        // The server waits for its sessions to end before it reports.
        let _ = stop.send(());
        (pushed, server.await.unwrap().unwrap())
    });
    match pushed {
        Err(SyncError::PeerAborted { reason, detail }) => {
            assert_eq!(reason, AbortReason::DiskFull);
            assert!(detail.contains("no space left"), "{detail}");
        }
        r => panic!("the pusher should see why: {r:?}"),
    }
    let stored = dest.len().unwrap();
    assert!(stored > 0, "no batch was committed before the disk filled");
    assert_eq!(served.failed, 1);
    assert_eq!(served.nodes_received, stored, "{served:?}");
    let failed = failed.lock().unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].0.contains("no space left"), "{failed:?}");
    assert_eq!(failed[0].1, stored);
    assert!(dest.verify().unwrap().is_ok());
}

#[test]
fn random_damage_never_ends_a_command_by_a_signal() {
    use rand::{Rng, SeedableRng};
    let root = tempfile::tempdir().unwrap();
    let good = make_store(root.path(), 600);
    let bytes = std::fs::read(good.join("data.mdb")).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut failed, mut fault_messages) = (0, 0);
    for copy in 0..30 {
        let mut damaged = bytes.clone();
        for _ in 0..[1, 4, 16][copy % 3] {
            // Past the two meta pages: the B-tree pages LMDB follows without checks.
            let at = rng.random_range(8192..damaged.len());
            damaged[at] ^= rng.random_range(1..=255u8);
        }
        let dir = root.path().join(format!("random-{copy}"));
        copy_store(&good, &dir);
        std::fs::write(dir.join("data.mdb"), &damaged).unwrap();
        for args in [
            &["verify"][..],
            &["get", "key/000042"],
            &["ls"],
            &["put", "x", "y"],
        ] {
            let out = braid(&dir, args);
            let what = format!("copy {copy}: braid {args:?}");
            assert!(out.status.signal().is_none(), "{what}: {:?}", out.status);
            if out.status.success() {
                continue;
            }
            failed += 1;
            let err = String::from_utf8_lossy(&out.stderr);
            if args == ["verify"] && err.is_empty() {
                continue; // the violations are listed on stdout
            }
            assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
            if out.status.code() == Some(70) {
                fault_messages += 1;
            }
        }
    }
    eprintln!("{failed} of 120 commands failed with a message, {fault_messages} after a fault");
}

#[test]
fn a_meta_page_is_never_rewritten_while_another_process_has_the_store_open() {
    let root = tempfile::tempdir().unwrap();
    let good = make_store(root.path(), 200);
    let (mut server, _addr) = cli_common::spawn(&good, &["serve", "--listen", "127.0.0.1:0"]);
    // Damage the older meta page (the live process does not use it).
    let path = good.join("data.mdb");
    let mut bytes = std::fs::read(&path).unwrap();
    let txnid = |slot: usize| {
        u64::from_le_bytes(
            bytes[slot * 4096 + 144..slot * 4096 + 152]
                .try_into()
                .unwrap(),
        )
    };
    let older = if txnid(0) < txnid(1) { 0 } else { 1 };
    bytes[older * 4096 + 16] ^= 0xFF;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| {
            use std::os::unix::fs::FileExt;
            f.write_all_at(
                &bytes[older * 4096..older * 4096 + 4096],
                older as u64 * 4096,
            )
        })
        .unwrap();
    let out = braid(&good, &["verify"]);
    no_signal(&out, "verify beside a server");
    let after = std::fs::read(&path).unwrap();
    assert_eq!(
        after[older * 4096 + 16],
        bytes[older * 4096 + 16],
        "rewritten under a live process"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    // Alone, the next read-write open repairs it.
    cli_common::ok(&good, &["init"]);
    cli_common::ok(&good, &["verify"]);
    let repaired = std::fs::read(&path).unwrap();
    assert_ne!(repaired[older * 4096 + 16], bytes[older * 4096 + 16]);
}

#[test]
fn every_byte_of_either_meta_record_flipped_is_recovered_or_refused() {
    let root = tempfile::tempdir().unwrap();
    let good = make_store(root.path(), 300);
    let bytes = std::fs::read(good.join("data.mdb")).unwrap();
    let (mut recovered, mut refused) = (0, 0);
    // Every byte takes about 10 s here; by default every third one.
    let step = if std::env::var("BRAID_EVERY_META_BYTE").is_ok() {
        1
    } else {
        3
    };
    for slot in 0..2 {
        for offset in (0..152).step_by(step) {
            let dir = root.path().join("flip");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut damaged = bytes.clone();
            damaged[slot * 4096 + offset] ^= 0xFF;
            std::fs::write(dir.join("data.mdb"), &damaged).unwrap();
            let what = format!("meta {slot} byte {offset}");
            no_signal(&braid(&dir, &["verify"]), &format!("{what}, read-only"));
            no_signal(&braid(&dir, &["init"]), &format!("{what}, init"));
            let out = braid(&dir, &["verify"]);
            no_signal(&out, &what);
            if out.status.success() {
                recovered += 1;
            } else {
                eprintln!(
                    "meta {slot} byte {offset}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                refused += 1;
            }
        }
    }
    eprintln!("{recovered} flips recovered, {refused} refused with one line");
}
