//! Crash safety, proven by killing real processes.
//!
//! A child process writes to a replica and prints `ACK <hash>` (flushed) after each write call
//! returns; the parent reads those lines, and after the k-th one plus a random delay of a few
//! microseconds to milliseconds sends SIGKILL. Then the parent reopens the replica and checks:
//! `verify()` passes, every acknowledged node is present, and a sync with a healthy replica
//! completes and both sides converge. The next kill point continues on the same replica, so
//! recoveries stack.
//!
//! Writers, one kind per kill point in turn:
//! - `add`: single `Log::add` / `Log::append` calls;
//! - `batch`: `Log::insert` and `Log::transaction`;
//! - `kv`: `Kv::batch` and `Kv::put`;
//! - `sync`: a live sync receiver pulling from a replica served by this (parent) process;
//! - `serve`: the `braid serve` binary receiving pushes from this process.
//!
//! Every other child of the first three commits with `Durability::NoSync`: a killed process
//! loses nothing then either, since its pages are in the operating system's cache.
//!
//! `BRAID_CRASH_POINTS` sets the number of kill points (default 30), `BRAID_CRASH_SEED` the
//! seed (printed, so a failure can be replayed).

#![cfg(unix)]

mod cli_common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use braidlog::sync::{self, Mode, SyncOptions};
use braidlog::{Durability, Hash, Kv, Log, LogOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Set in a child: which writer to run.
const CHILD_KIND: &str = "BRAID_CRASH_CHILD";
const CHILD_DIR: &str = "BRAID_CRASH_DIR";
const CHILD_ADDR: &str = "BRAID_CRASH_ADDR";
const CHILD_SEED: &str = "BRAID_CRASH_CHILD_SEED";
const CHILD_NO_SYNC: &str = "BRAID_CRASH_CHILD_NO_SYNC";
const KINDS: [&str; 5] = ["add", "batch", "kv", "sync", "serve"];

fn ack(hash: &Hash) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {hash}").unwrap();
    out.flush().unwrap();
}

fn ready() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
}

/// The child's side: not a test of its own. In a normal run the variable is unset and this
/// returns at once; the parent runs this binary with `--exact` on this name.
#[test]
fn crash_child_entry() {
    let Ok(kind) = std::env::var(CHILD_KIND) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(CHILD_DIR).unwrap());
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    // Every other child of the plain writers commits without fsync: a process crash must
    // lose nothing then either (the pages are in the OS cache).
    let durability = if std::env::var(CHILD_NO_SYNC).is_ok() {
        Durability::NoSync
    } else {
        Durability::Sync
    };
    let options = LogOptions {
        durability,
        ..LogOptions::default()
    };
    let log = Log::open_with(&dir, options).unwrap();
    match kind.as_str() {
        "add" => {
            ready();
            let mut recent = log.heads().unwrap();
            for i in 0u64.. {
                let payload = format!("add {seed} {i}").into_bytes();
                let node = if recent.is_empty() || rng.random_bool(0.5) {
                    log.append(payload).unwrap()
                } else {
                    let link = recent[rng.random_range(0..recent.len())];
                    log.add([link], payload).unwrap()
                };
                ack(&node.hash());
                recent.push(node.hash());
                if recent.len() > 16 {
                    recent.remove(0);
                }
            }
        }
        "batch" => {
            ready();
            for i in 0u64.. {
                let n = rng.random_range(1..200);
                let nodes = if i % 2 == 0 {
                    let mut prev: Option<Hash> = log.heads().unwrap().first().copied();
                    let mut batch = Vec::new();
                    for j in 0..n {
                        let node =
                            braidlog::Node::new(prev, format!("batch {seed} {i} {j}").into_bytes())
                                .unwrap();
                        prev = Some(node.hash());
                        batch.push(node);
                    }
                    // Built here, so stored as built (unsigned): the links are these hashes.
                    log.insert(&batch).unwrap();
                    batch
                } else {
                    log.transaction(|w| {
                        (0..n)
                            .map(|j| w.append(format!("txn {seed} {i} {j}").into_bytes()))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap()
                };
                for node in nodes {
                    ack(&node.hash());
                }
            }
        }
        "kv" => {
            let kv = Kv::open(&log).unwrap();
            ready();
            for i in 0u64.. {
                if i % 3 == 0 {
                    let k = rng.random_range(0..500);
                    ack(&kv.put(format!("key/{k}"), format!("{seed} {i}")).unwrap());
                    continue;
                }
                let n = rng.random_range(1..100);
                let keys: Vec<u32> = (0..n).map(|_| rng.random_range(0..500)).collect();
                let hashes = kv
                    .batch(|b| {
                        keys.iter()
                            .map(|k| b.put(format!("key/{k}"), format!("{seed} {i}")))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap();
                for h in hashes {
                    ack(&h);
                }
            }
        }
        "sync" => {
            // A live pull from the parent's replica; every committed arrival is acknowledged
            // (a node is only visible in the feed once its transaction committed).
            let addr = std::env::var(CHILD_ADDR).unwrap();
            let watcher = log.clone();
            let mut sub = log.subscribe();
            let mut seen = log.last_seq().unwrap();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let options = SyncOptions::new(Mode::Pull).live();
                rt.block_on(sync::connect(addr, &watcher, options)).unwrap();
            });
            ready();
            while sub.wait_blocking().is_some() {
                for entry in log.changes(seen) {
                    let entry = entry.unwrap();
                    ack(&entry.node.hash());
                    seen = entry.seq;
                }
            }
        }
        other => panic!("unknown writer {other}"),
    }
}

/// Kills a process that has not been killed by the test within a minute, so that a child
/// that stops acknowledging fails the test (it reads EOF) instead of hanging it.
struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    fn new(pid: u32) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(60)) {
                eprintln!("watchdog: child {pid} made no progress for 60 s; killing it");
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.take().map(|tx| tx.send(()));
    }
}

/// Runs `child_kind` in a child process on `dir`.
fn spawn_child(
    kind: &str,
    dir: &Path,
    seed: u64,
    addr: Option<&str>,
    no_sync: bool,
    stderr: &Path,
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "crash_child_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_KIND, kind)
    .env(CHILD_DIR, dir)
    .env(CHILD_SEED, seed.to_string());
    if let Some(addr) = addr {
        cmd.env(CHILD_ADDR, addr);
    }
    if no_sync {
        cmd.env(CHILD_NO_SYNC, "1");
    }
    cmd.stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// Reads the child's lines until `READY`, then until `acks` acknowledgements.
fn read_acks(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    want: usize,
    acked: &mut Vec<Hash>,
    what: &str,
) {
    let mut got = 0;
    while got < want {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{what}: the child ended early"))
            .unwrap();
        if let Some(hex) = line.strip_prefix("ACK ") {
            acked.push(hex.parse().unwrap());
            got += 1;
        }
    }
}

fn wait_ready(lines: &mut impl Iterator<Item = std::io::Result<String>>, what: &str) {
    for line in lines.by_ref() {
        if line.unwrap().ends_with("READY") {
            return;
        }
    }
    panic!("{what}: the child never got ready");
}

/// Kills the child and collects every acknowledgement it printed before dying (a line cut by
/// the kill has no newline and is not one).
fn kill_and_drain(mut child: Child, stdout: BufReader<ChildStdout>, acked: &mut Vec<Hash>) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut stdout = stdout;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if let Some(hex) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ACK ")) {
            acked.push(hex.parse().unwrap());
        }
        line.clear();
    }
}

/// Syncs two replicas both ways over an in-memory stream and checks they converged.
fn sync_and_converge(rt: &tokio::runtime::Runtime, a: &Log, b: &Log, what: &str) {
    let (x, y) = tokio::io::duplex(64 << 10);
    let (ra, rb) = rt.block_on(async {
        tokio::join!(
            sync::sync(a, x, SyncOptions::new(Mode::Both)),
            sync::sync(b, y, SyncOptions::new(Mode::Both))
        )
    });
    ra.unwrap_or_else(|e| panic!("{what}: sync failed: {e}"));
    rb.unwrap_or_else(|e| panic!("{what}: peer sync failed: {e}"));
    let (mut ha, mut hb) = (a.heads().unwrap(), b.heads().unwrap());
    ha.sort();
    hb.sort();
    assert_eq!(ha, hb, "{what}: heads differ after sync");
    assert_eq!(a.len().unwrap(), b.len().unwrap(), "{what}: sizes differ");
}

/// After a kill: reopen, verify, find every acknowledged node, sync with `healthy`.
fn check_after_kill(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    kv: bool,
    acked: &[Hash],
    healthy: &Log,
    what: &str,
) {
    let log = Log::open(dir).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let _kv = kv.then(|| Kv::open(&log).unwrap());
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{what}: verify failed: {report:?}");
    let missing: Vec<_> = acked.iter().filter(|h| !log.contains(h).unwrap()).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} acknowledged nodes lost, e.g. {}",
        missing.len(),
        acked.len(),
        missing[0]
    );
    sync_and_converge(rt, &log, healthy, what);
    assert!(log.verify().unwrap().is_ok(), "{what}: verify after sync");
}

fn points_from_env() -> (usize, u64) {
    let points = std::env::var("BRAID_CRASH_POINTS")
        .ok()
        .map(|v| v.parse().expect("BRAID_CRASH_POINTS is a number"))
        .unwrap_or(30);
    let seed = std::env::var("BRAID_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("BRAID_CRASH_SEED is a number"))
        .unwrap_or(0x5EED_B4A1D);
    (points, seed)
}

/// Adds a chain of `n` nodes in one batch; the first links every current head.
fn grow(log: &Log, n: usize, tag: &str) -> Vec<braidlog::Node> {
    let mut links = log.heads().unwrap();
    let mut batch = Vec::new();
    for i in 0..n {
        let node = braidlog::Node::new(links, format!("{tag} {i}").into_bytes()).unwrap();
        links = vec![node.hash()];
        batch.push(node);
    }
    // Stored as built (unsigned), so each link is the hash computed here.
    log.insert(&batch).unwrap();
    batch
}

/// One replica per writer kind, and a healthy replica it syncs with after each kill.
struct Rig {
    crashed: PathBuf,
    healthy: Log,
    acked: Vec<Hash>,
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_write() {
    if std::env::var(CHILD_KIND).is_ok() {
        return; // this binary is running as a child
    }
    let (points, seed) = points_from_env();
    eprintln!("crash test: {points} kill points, BRAID_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rigs: Vec<Rig> = KINDS
        .iter()
        .map(|kind| {
            let crashed = root.path().join(format!("{kind}-crashed"));
            let healthy = Log::open(root.path().join(format!("{kind}-healthy"))).unwrap();
            if *kind == "kv" {
                let kv = Kv::open(&healthy).unwrap();
                kv.put("healthy", "peer").unwrap();
            } else {
                healthy
                    .append(format!("{kind} healthy").into_bytes())
                    .unwrap();
            }
            // Created here, so no kill lands in the creation of a replica.
            drop(Log::open(&crashed).unwrap());
            Rig {
                crashed,
                healthy,
                acked: Vec::new(),
            }
        })
        .collect();
    let mut ran = [0usize; 5];
    let mut pushes_cut = 0;
    let mut no_sync_points = 0;
    for point in 0..points {
        let k = point % KINDS.len();
        let kind = KINDS[k];
        let rig = &mut rigs[k];
        let child_seed: u64 = rng.random();
        let delay = Duration::from_micros(rng.random_range(0..5_000));
        let what = format!("point {point} ({kind}, seed {child_seed}, delay {delay:?})");
        let stderr = root.path().join(format!("{kind}-{point}.stderr"));
        match kind {
            "serve" => {
                let delay = Duration::from_micros(rng.random_range(0..40_000));
                if kill_serve(&rt, rig, &mut rng, delay, &stderr, &what) {
                    pushes_cut += 1;
                }
            }
            "sync" => kill_sync_receiver(&rt, rig, &mut rng, child_seed, delay, &stderr, &what),
            _ => {
                let acks = rng.random_range(1..60);
                let no_sync = (point / KINDS.len()) % 2 == 1;
                no_sync_points += usize::from(no_sync);
                let mut child = spawn_child(kind, &rig.crashed, child_seed, None, no_sync, &stderr);
                let _watchdog = Watchdog::new(child.id());
                let mut stdout = BufReader::new(child.stdout.take().unwrap());
                let mut lines = (&mut stdout).lines();
                wait_ready(&mut lines, &what);
                read_acks(&mut lines, acks, &mut rig.acked, &what);
                std::thread::sleep(delay);
                kill_and_drain(child, stdout, &mut rig.acked);
            }
        }
        check_after_kill(
            &rt,
            &rig.crashed,
            kind == "kv",
            &rig.acked,
            &rig.healthy,
            &what,
        );
        ran[k] += 1;
    }
    let summary: Vec<String> = KINDS
        .iter()
        .zip(ran)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    eprintln!(
        "crash test: {points} kill points passed ({}; {no_sync_points} of the writers without \
         fsync; {pushes_cut} kills cut a push short); acknowledged nodes checked: {}",
        summary.join(", "),
        rigs.iter().map(|r| r.acked.len()).sum::<usize>()
    );
}

/// The `sync` writer: this process serves `rig.healthy` to a child that pulls live; nodes are
/// added here in batches, each waited for in the child's acknowledgements, then one big batch
/// is added and the child killed while it receives.
fn kill_sync_receiver(
    rt: &tokio::runtime::Runtime,
    rig: &mut Rig,
    rng: &mut StdRng,
    child_seed: u64,
    delay: Duration,
    stderr: &Path,
    what: &str,
) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(sync::serve(
        listener,
        rig.healthy.clone(),
        SyncOptions::new(Mode::Both).live(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let mut child = spawn_child("sync", &rig.crashed, child_seed, Some(&addr), false, stderr);
    let _watchdog = Watchdog::new(child.id());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = (&mut stdout).lines();
    wait_ready(&mut lines, what);
    let rounds = rng.random_range(0..4);
    for round in 0..=rounds {
        let n = if round == rounds {
            rng.random_range(1..3_000)
        } else {
            rng.random_range(1..50)
        };
        let nodes = grow(&rig.healthy, n, &format!("{what} {round}"));
        if round < rounds {
            // Wait until the child acknowledged all of them (it may also re-acknowledge
            // nodes it had, which is harmless).
            let want: HashSet<Hash> = nodes.iter().map(|n| n.hash()).collect();
            let mut have = HashSet::new();
            while !want.is_subset(&have) {
                let mut one = Vec::new();
                read_acks(&mut lines, 1, &mut one, what);
                have.extend(one.iter().copied());
                rig.acked.extend(one);
            }
        }
    }
    std::thread::sleep(delay);
    kill_and_drain(child, stdout, &mut rig.acked);
    let _ = stop_tx.send(());
    rt.block_on(server).unwrap().unwrap();
}

/// The `serve` writer: `braid serve` on the crashed replica; this process pushes batches from
/// the healthy replica; a push that returned `Ok` acknowledges every node the healthy replica
/// had. Killed after some pushes, once the next one started. Returns whether the kill cut
/// that push short.
fn kill_serve(
    rt: &tokio::runtime::Runtime,
    rig: &mut Rig,
    rng: &mut StdRng,
    delay: Duration,
    stderr: &Path,
    what: &str,
) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .arg("--dir")
        .arg(&rig.crashed)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let _watchdog = Watchdog::new(child.id());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addr = String::new();
    stdout.read_line(&mut addr).unwrap();
    let addr = addr.trim().to_string();
    let pushes = rng.random_range(1..5);
    let sizes: Vec<usize> = (0..=pushes).map(|_| rng.random_range(1..2_000)).collect();
    let (tx, rx) = mpsc::channel::<Push>();
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let healthy = rig.healthy.clone();
        let stop = stop.clone();
        let what = what.to_string();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            for (round, n) in sizes.into_iter().enumerate() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                grow(&healthy, n, &format!("{what} {round}"));
                let all: Vec<Hash> = healthy.changes(0).map(|e| e.unwrap().node.hash()).collect();
                let _ = tx.send(Push::Started);
                let pushed =
                    handle.block_on(sync::connect(&addr, &healthy, SyncOptions::new(Mode::Push)));
                let event = match pushed {
                    Ok(_) => Push::Acked(all),
                    Err(e) => Push::Failed(e.to_string()),
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        })
    };
    // Wait for `pushes` acknowledged pushes and the start of the next one, then kill after
    // `delay`: during the push, or after it.
    let mut acked = 0;
    let mut started = 0;
    while started <= pushes {
        match rx.recv().expect("the pusher ended early") {
            Push::Started => started += 1,
            Push::Acked(all) => {
                rig.acked = all;
                acked += 1;
            }
            Push::Failed(e) => panic!("{what}: push {acked} failed before the kill: {e}"),
        }
    }
    std::thread::sleep(delay);
    stop.store(true, Ordering::SeqCst);
    child.kill().unwrap();
    child.wait().unwrap();
    pusher.join().unwrap();
    // A push that completed between the last receive and the kill is acknowledged too.
    let mut cut = true;
    while let Ok(event) = rx.try_recv() {
        if let Push::Acked(all) = event {
            rig.acked = all;
            cut = false;
        }
    }
    cut
}

/// What the pushing thread reports.
enum Push {
    Started,
    Acked(Vec<Hash>),
    Failed(String),
}
