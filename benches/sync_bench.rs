//! Whole-scenario sync figures over loopback TCP, each side in its own process: round trips,
//! bytes on the wire against bytes of the missing nodes, duplicates, nodes per second, and peak
//! memory of each side; next to the raw LMDB batched-put rate for the same bytes and,
//! optionally, the JavaScript hyperlog's `replicate()`.
//!
//! ```text
//! cargo bench --bench sync_bench                          # 10^4 and 10^5 nodes
//! BRAID_BENCH_MAX=1000000 cargo bench --bench sync_bench  # adds 10^6
//! BRAID_BENCH_HYPERLOG=1 cargo bench --bench sync_bench   # adds hyperlog (npm install first)
//! BRAID_BENCH_ORDER_ONLY=1 cargo bench --bench sync_bench  # only feed order vs child-first
//! BRAID_BENCH_HELLO_ONLY=1 cargo bench --bench sync_bench  # only the cost of a foreign Hello
//! cargo bench --bench sync_bench -- 10000                 # chosen sizes
//! ```
//!
//! Other knobs: `BRAID_BENCH_PAYLOAD` (default 100 bytes), `BRAID_BENCH_NOSYNC=1` (non-durable
//! commits on both sides), `BRAID_BENCH_DIR` (where the stores go), `BRAID_BENCH_HYPERLOG_N`
//! (hyperlog's n, default 10^4), `BRAID_BENCH_PERF=FILE` (`perf record -g`
//! the connecting side of the k-th sync into `FILE.k`).
//!
//! The parent process builds the stores (untimed), then for every sync starts this binary twice:
//! `--side serve DIR` (prints its port) and `--side connect DIR PORT`. Each side samples its
//! own `RssAnon` (anonymous resident memory: what the process allocated) every 5 ms and reports
//! it with `VmHWM` (peak resident set, which also counts the file-backed LMDB map pages the
//! process touched: page cache, not memory the process holds). See docs/PERFORMANCE.md.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use braidlog::sync::{sync, Mode, SyncOptions, SyncReport, SyncStore};
use braidlog::{Durability, Hash, Log, LogOptions, Node, PeerId};
use tokio::net::{TcpListener, TcpStream};

#[path = "common/workload.rs"]
mod workload;
use workload::{hyperlog_field, hyperlog_run, lmdb_append_with, payload, status_kib, BATCH};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn nosync() -> bool {
    std::env::var_os("BRAID_BENCH_NOSYNC").is_some()
}

fn open(dir: &Path, durability: Durability) -> Log {
    let options = LogOptions {
        durability,
        ..Default::default()
    };
    Log::open_with(dir, options).unwrap()
}

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("BRAID_BENCH_DIR") {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .unwrap()
}

// ---------------------------------------------------------------- child: one side of a sync

/// Samples `RssAnon` every 5 ms until dropped; `peak()` is the largest sample.
struct AnonSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnonSampler {
    fn start() -> AnonSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(status_kib("RssAnon")));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(status_kib("RssAnon"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        AnonSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::Relaxed).max(status_kib("RssAnon"))
    }
}

fn side(args: &[String]) {
    let sampler = AnonSampler::start();
    let durability = if nosync() {
        Durability::NoSync
    } else {
        Durability::Sync
    };
    let log = open(Path::new(&args[1]), durability);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        let stream = if args[0] == "serve" {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("PORT {}", listener.local_addr().unwrap().port());
            std::io::stdout().flush().unwrap();
            listener.accept().await.unwrap().0
        } else {
            TcpStream::connect(("127.0.0.1", args[2].parse::<u16>().unwrap()))
                .await
                .unwrap()
        };
        stream.set_nodelay(true).unwrap();
        sync(&log, stream, SyncOptions::new(Mode::Both))
            .await
            .unwrap()
    });
    let anon = sampler.finish();
    let r = &report;
    println!(
        "RESULT {} {} {} {} {} {} {} {} {} {} {} {}",
        r.nodes_sent,
        r.nodes_received,
        r.duplicates,
        r.bytes_sent,
        r.bytes_received,
        r.node_bytes_sent,
        r.node_bytes_received,
        r.filtered,
        r.round_trips,
        r.duration.as_secs_f64(),
        status_kib("VmHWM"),
        anon
    );
}

/// What one side printed.
#[derive(Debug, Clone)]
struct Side {
    report: SyncReport,
    vmhwm_kib: u64,
    anon_kib: u64,
}

fn parse_side(line: &str) -> Side {
    let f: Vec<&str> = line.split_whitespace().collect();
    let u = |i: usize| f[i].parse::<u64>().unwrap();
    Side {
        report: SyncReport {
            peer: None,
            nodes_sent: u(0),
            nodes_received: u(1),
            duplicates: u(2),
            bytes_sent: u(3),
            bytes_received: u(4),
            node_bytes_sent: u(5),
            node_bytes_received: u(6),
            filtered: u(7),
            round_trips: u(8) as u32,
            duration: Duration::from_secs_f64(f[9].parse().unwrap()),
        },
        vmhwm_kib: u(10),
        anon_kib: u(11),
    }
}

fn result_of(child: std::process::Child, who: &str) -> Side {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) {
        Some(line) => parse_side(line),
        None => panic!(
            "{who} side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// One sync between the stores in `a` (serving) and `b` (connecting), each in a child.
fn tcp_sync(a: &Path, b: &Path) -> (Side, Side) {
    let exe = std::env::current_exe().unwrap();
    let mut server = Command::new(&exe)
        .args(["--side", "serve"])
        .arg(a)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .strip_prefix("PORT ")
        .expect("server prints its port")
        .trim()
        .to_string();
    // `BRAID_BENCH_PERF=FILE` profiles the connecting side (the receiver of a clone) into FILE.k.
    let mut client = match std::env::var_os("BRAID_BENCH_PERF") {
        Some(file) => {
            let mut c = Command::new("perf");
            static K: AtomicU64 = AtomicU64::new(0);
            let mut file = file;
            file.push(format!(".{}", K.fetch_add(1, Ordering::Relaxed)));
            c.args(["record", "-q", "-g", "-o"])
                .arg(file)
                .arg("--")
                .arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let client = client
        .args(["--side", "connect"])
        .arg(b)
        .arg(&port)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let cb = result_of(client, "connecting");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = server.wait().unwrap();
    assert!(status.success(), "serving side failed");
    let ca = parse_side(
        rest.lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .expect("serving side result"),
    );
    (ca, cb)
}

// ---------------------------------------------------------------- child: raw LMDB limit

fn lmdb_child(args: &[String]) {
    let dir = tempdir();
    let n: usize = args[0].parse().unwrap();
    let size: usize = args[1].parse().unwrap();
    let (nodes, t) = lmdb_append_with(dir.path(), n, size, nosync());
    println!("RESULT {nodes} {}", t.as_secs_f64());
}

fn lmdb_rate(n: usize, size: usize) -> Option<f64> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--lmdb", &n.to_string(), &size.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Some(f[0] / f[1])
}

// ---------------------------------------------------------------- parent: building stores

/// A replica's directory, and the payload counter of the nodes it writes.
struct Replica {
    dir: tempfile::TempDir,
    next: usize,
}

impl Replica {
    fn new(tag: usize) -> Replica {
        Replica {
            dir: tempdir(),
            next: tag << 40,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a chain of `n` nodes on top of every current head (NoSync, untimed).
    fn grow(&mut self, n: usize, size: usize) {
        let log = open(self.path(), Durability::NoSync);
        let mut prev: Vec<Hash> = log.heads().unwrap();
        let mut i = 0;
        while i < n {
            let m = BATCH.min(n - i);
            let nodes: Vec<Node> = (0..m)
                .map(|j| {
                    let node =
                        Node::new(std::mem::take(&mut prev), payload(self.next + i + j, size))
                            .unwrap();
                    prev = vec![node.hash()];
                    node
                })
                .collect();
            log.insert(&nodes).unwrap();
            i += m;
        }
        self.next += n;
    }

    fn peer_id(&self) -> PeerId {
        open(self.path(), Durability::NoSync).peer_id()
    }

    /// Forgets what this replica remembers of `peer` (as at first contact).
    fn forget(&self, peer: PeerId) {
        let log = open(self.path(), Durability::NoSync);
        SyncStore::set_peer_cursor(&log, peer, None).unwrap();
    }
}

// ---------------------------------------------------------------- parent: the table

struct Row {
    scenario: String,
    n: usize,
    a: Side,
    b: Side,
}

impl Row {
    fn moved(&self) -> u64 {
        self.a.report.nodes_received + self.b.report.nodes_received
    }
    fn secs(&self) -> f64 {
        self.a
            .report
            .duration
            .max(self.b.report.duration)
            .as_secs_f64()
    }
    fn rate(&self) -> Option<f64> {
        (self.moved() > 0).then(|| self.moved() as f64 / self.secs())
    }
}

fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn header() {
    println!(
        "{:<28} {:>7} {:>3} {:>7} {:>11} {:>11} {:>8} {:>6} {:>8} {:>4} {:>8} {:>8} {:>13} {:>13}",
        "scenario",
        "n",
        "rt",
        "moved",
        "wire B",
        "node B",
        "extra B",
        "B/node",
        "ovh/node",
        "dups",
        "nodes/s",
        "ms",
        "anon MiB a/b",
        "VmHWM MiB a/b"
    );
}

/// Bytes of framing per `Node` frame (u32 length + kind byte; docs/PROTOCOL.md section 2).
const FRAMING: f64 = 5.0;

fn print_row(r: &Row) {
    let (a, b) = (&r.a.report, &r.b.report);
    let node_bytes = a.node_bytes_received + b.node_bytes_received;
    let wire = a.bytes_sent + b.bytes_sent;
    // Negative when `NodeDelta` frames carry a chain in fewer bytes than its canonical form.
    let extra = wire as i64 - node_bytes as i64;
    let (per, ovh) = if r.moved() > 0 {
        let m = r.moved() as f64;
        (
            format!("{:.2}", extra as f64 / m),
            format!("{:.2}", (extra as f64 - FRAMING * m) / m),
        )
    } else {
        ("-".into(), "-".into())
    };
    println!(
        "{:<28} {:>7} {:>3} {:>7} {:>11} {:>11} {:>8} {:>6} {:>8} {:>4} {:>8} {:>8.1} {:>13} {:>13}",
        r.scenario,
        r.n,
        a.round_trips.max(b.round_trips),
        r.moved(),
        wire,
        node_bytes,
        extra,
        per,
        ovh,
        a.duplicates + b.duplicates,
        r.rate().map(human).unwrap_or_else(|| "-".into()),
        r.secs() * 1e3,
        format!("{}/{}", mib(r.a.anon_kib), mib(r.b.anon_kib)),
        format!("{}/{}", mib(r.a.vmhwm_kib), mib(r.b.vmhwm_kib)),
    );
}

fn scenarios(n: usize, size: usize, rows: &mut Vec<Row>) {
    let d = (n / 100).max(1);
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    let (ida, idb) = (a.peer_id(), b.peer_id());
    let mut run = |name: String, a: &Replica, b: &Replica| {
        let (sa, sb) = tcp_sync(a.path(), b.path());
        let row = Row {
            scenario: name,
            n,
            a: sa,
            b: sb,
        };
        print_row(&row);
        rows.push(row);
    };

    a.grow(n, size);
    run("one-sided (clone)".into(), &a, &b);
    run("in sync".into(), &a, &b);

    a.grow(d, size);
    run(format!("fast-forward +{d}"), &a, &b);

    // First contact on a plain history (one chain in common), each side one node ahead: what
    // is remembered about the peer (its feed cursor) is forgotten on both sides.
    a.grow(1, size);
    b.grow(1, size);
    a.forget(idb);
    b.forget(ida);
    run("first contact 1+1".into(), &a, &b);

    a.forget(idb);
    b.forget(ida);
    run("first contact, in sync".into(), &a, &b);

    a.grow(d, size);
    b.grow(d, size);
    run(format!("two-sided remembered {d}+{d}"), &a, &b);

    a.grow(d, size);
    b.grow(d, size);
    a.forget(idb);
    b.forget(ida);
    run(format!("two-sided no state {d}+{d}"), &a, &b);

    // The same small difference, with no state, right after two-sided rounds: the two feeds'
    // recent orders differ, so the newest common feed sample lies further back.
    a.grow(1, size);
    b.grow(1, size);
    a.forget(idb);
    b.forget(ida);
    run("no state 1+1 after 1%+1%".into(), &a, &b);

    // The same fixed divergence at every n: how first contact grows with the log.
    for (name, forget) in [
        ("two-sided remembered", false),
        ("two-sided no state", true),
    ] {
        a.grow(FIXED_D, size);
        b.grow(FIXED_D, size);
        if forget {
            a.forget(idb);
            b.forget(ida);
        }
        run(format!("{name} {FIXED_D}+{FIXED_D}"), &a, &b);
    }
}

fn print_hello_cost(sizes: &[usize], size: usize) {
    println!("\nanswering a Hello (best of 5): sharing nothing / claiming only the first node");
    for &n in sizes {
        println!(
            "  n {n:>8}: {:.2} ms / {:.2} ms",
            hello_cost(n, size, false) * 1e3,
            hello_cost(n, size, true) * 1e3
        );
    }
}

fn print_arrival_order(sizes: &[usize], size: usize) {
    println!("\narrival order: a chain received through the session into a durable log");
    for &n in sizes.iter().filter(|&&n| n <= 100_000) {
        let (fwd, rev) = arrival_order(n, size);
        println!(
            "  n {n:>8}: in feed order {:.1} ms, child-first {:.1} ms: ratio {:.2} (goal <= 2)",
            fwd * 1e3,
            rev * 1e3,
            rev / fwd
        );
    }
}

/// The time to answer a `Hello` from a peer that shares nothing (an unknown head, samples
/// that match nothing) on a log of `n` nodes: the walk and the Bloom filter are bounded by
/// `Limits::filter_walk`, not by `n`.
fn hello_cost(n: usize, size: usize, claim_root: bool) -> f64 {
    use braidlog::sync::wire::{Hello, Message, WireMode};
    use braidlog::sync::{Session, SessionConfig};
    let mut r = Replica::new(9);
    r.grow(n, size);
    let log = open(r.path(), Durability::NoSync);
    let cfg = SessionConfig {
        mode: Mode::Both,
        live: false,
        filter_key: [1; 32],
    };
    let root = log.get_by_seq(1).unwrap().unwrap().hash();
    let mut best = f64::MAX;
    for k in 0..5u8 {
        let mut heads = vec![Hash([k; 32])];
        if claim_root {
            heads.insert(0, root);
        }
        let mut s = Session::new(log.clone(), cfg.clone()).unwrap();
        let t = std::time::Instant::now();
        s.handle(Message::Hello(Hello {
            peer: PeerId::random(),
            mode: WireMode {
                send: true,
                receive: true,
                live: false,
            },
            last_seq: 1,
            head_count: heads.len() as u64,
            heads,
            samples: (0..24).map(|i| [i, k, 7, 7, 7, 7, 7, 7]).collect(),
        }))
        .unwrap();
        while s.poll_transmit().unwrap().is_some() {}
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// The divergence of the fixed-size first-contact rows.
const FIXED_D: usize = 1_000;

// ---------------------------------------------------------------- arrival order

/// Receives a chain of `n` nodes through the sans-IO session into a fresh durable log, in feed
/// order and child-first (every node before its link), and returns the seconds of each.
fn arrival_order(n: usize, size: usize) -> (f64, f64) {
    use braidlog::sync::wire::{Hello, Message, Summary, WireMode};
    use braidlog::sync::{Session, SessionConfig};
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    for i in 0..n {
        let links: Vec<Hash> = nodes.last().map(Node::hash).into_iter().collect();
        nodes.push(Node::new(links, payload(i, size)).unwrap());
    }
    let tip = nodes.last().unwrap().hash();
    let time = |reversed: bool| {
        let dir = tempdir();
        let log = open(dir.path(), Durability::default());
        let cfg = SessionConfig {
            mode: Mode::Pull,
            live: false,
            filter_key: [0; 32],
        };
        let mut s = Session::new(log.clone(), cfg).unwrap();
        s.handle(Message::Hello(Hello {
            peer: PeerId::random(),
            mode: WireMode {
                send: true,
                receive: false,
                live: false,
            },
            last_seq: n as u64,
            head_count: 1,
            heads: vec![tip],
            samples: vec![],
        }))
        .unwrap();
        s.handle(Message::Summary(Summary {
            known_heads: vec![],
            known_samples: vec![],
            filter: None,
            floor: vec![],
        }))
        .unwrap();
        let mut msgs: Vec<Message> = nodes.iter().map(|n| Message::Node(n.encode())).collect();
        if reversed {
            msgs.reverse();
        }
        let t = std::time::Instant::now();
        for m in msgs {
            s.handle(m).unwrap();
        }
        s.handle(Message::EndStream).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(log.len().unwrap(), n as u64);
        secs
    };
    (time(false), time(true))
}

// ---------------------------------------------------------------- hyperlog

/// hyperlog's (workload, n, payload) -> (nodes moved, secs, peak RSS KiB) on leveldb.
fn hyperlog(workload: &str, n: usize, size: usize) -> Option<(f64, f64, f64)> {
    let v = hyperlog_run("leveldb", workload, n, size)?;
    let f = |k| hyperlog_field(&v, k);
    Some((f("moved"), f("secs"), f("peak_rss_kib")))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--side") {
        return side(&args[i + 1..]);
    }
    if let Some(i) = args.iter().position(|a| a == "--lmdb") {
        return lmdb_child(&args[i + 1..]);
    }
    let max = env_usize("BRAID_BENCH_MAX", 100_000);
    let size = env_usize("BRAID_BENCH_PAYLOAD", 100);
    let sizes: Vec<usize> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        [10_000, 100_000, 1_000_000]
            .into_iter()
            .filter(|&n| n <= max)
            .collect()
    } else {
        sizes
    };
    println!(
        "braidlog sync over loopback TCP, each side its own process; chain of {size}-byte \
         payloads; n in {sizes:?}; commits {}",
        if nosync() { "NoSync" } else { "durable" }
    );
    println!(
        "rt: round trips; extra B: wire bytes minus canonical bytes of the new nodes; B/node: \
         extra per new node (negative where NodeDelta frames are shorter than the nodes); ovh/node: the same minus the 5 bytes of framing per node; anon: peak RssAnon (sampled every 5 ms); VmHWM includes LMDB's \
         file-backed map pages"
    );
    if std::env::var("BRAID_BENCH_ORDER_ONLY").is_ok_and(|v| v == "1") {
        return print_arrival_order(&sizes, size);
    }
    if std::env::var("BRAID_BENCH_HELLO_ONLY").is_ok_and(|v| v == "1") {
        return print_hello_cost(&sizes, size);
    }
    header();
    let mut rows = Vec::new();
    let mut lmdb = Vec::new();
    for &n in &sizes {
        scenarios(n, size, &mut rows);
        let l = lmdb_rate(n, size);
        if let Some(l) = l {
            println!(
                "{:<28} {n:>7} raw LMDB batched puts of the same bytes ({BATCH}/txn): {} nodes/s",
                "lmdb-append",
                human(l)
            );
        }
        lmdb.push((n, l));
    }

    print_arrival_order(&sizes, size);
    print_hello_cost(&sizes, size);

    println!("\ngoals:");
    let find = |n: usize, prefix: &str| {
        rows.iter()
            .find(|r| r.n == n && r.scenario.starts_with(prefix))
    };
    for &(n, l) in &lmdb {
        if let (Some(c), Some(l)) = (find(n, "one-sided"), l) {
            let x = c.rate().unwrap_or(0.0);
            println!(
                "  n {n:>8}: clone {} nodes/s / raw LMDB {} nodes/s = {:.0}% (goal >= 50%)",
                human(x),
                human(l),
                100.0 * x / l
            );
        }
        if let Some(c) = find(n, "one-sided") {
            println!(
                "  n {n:>8}: clone peak anon memory {} / {} MiB, VmHWM {} / {} MiB (goal < 200 MB each side)",
                mib(c.a.anon_kib),
                mib(c.b.anon_kib),
                mib(c.a.vmhwm_kib),
                mib(c.b.vmhwm_kib)
            );
        }
        let fixed = |p: &str| find(n, &format!("two-sided {p} {FIXED_D}+{FIXED_D}"));
        if let (Some(r), Some(f)) = (fixed("remembered"), fixed("no state")) {
            println!(
                "  n {n:>8}: {FIXED_D}+{FIXED_D} divergent: no state {:.1} ms in {} rt / remembered {:.1} ms = {:.2}x (goal <= 3x, <= 2 rt)",
                f.secs() * 1e3,
                f.a.report.round_trips.max(f.b.report.round_trips),
                r.secs() * 1e3,
                f.secs() / r.secs()
            );
        }
        for p in ["in sync", "first contact, in sync"] {
            if let Some(s) = find(n, p) {
                println!(
                    "  n {n:>8}: {p}: {} round trip(s), {} bytes on the wire (goal: 1, < 2 KB)",
                    s.a.report.round_trips.max(s.b.report.round_trips),
                    s.a.report.bytes_sent + s.b.report.bytes_sent
                );
            }
        }
    }

    if std::env::var("BRAID_BENCH_HYPERLOG").is_ok_and(|v| v == "1") {
        let hn = env_usize("BRAID_BENCH_HYPERLOG_N", 10_000);
        println!("\nhyperlog replicate() on leveldb, n = {hn} (benches/hyperlog/bench.js):");
        let ours = |p: &str| rows.iter().find(|r| r.n == hn && r.scenario.starts_with(p));
        for (workload, prefix) in [
            ("clone", "one-sided"),
            ("diverge", "two-sided remembered"),
            ("insync", "in sync"),
        ] {
            let Some((moved, secs, rss)) = hyperlog(workload, hn, size) else {
                continue;
            };
            let Some(r) = ours(prefix) else { continue };
            if moved > 0.0 {
                let h = moved / secs;
                let x = r.rate().unwrap_or(0.0);
                println!(
                    "  {workload:<8}: braidlog {} nodes/s / hyperlog {} nodes/s = {:.1}x (goal >= 30x); hyperlog peak RSS {} MiB",
                    human(x),
                    human(h),
                    x / h,
                    mib(rss as u64)
                );
            } else {
                println!(
                    "  {workload:<8}: braidlog {:.1} ms / hyperlog {:.1} ms = {:.1}x faster",
                    r.secs() * 1e3,
                    secs * 1e3,
                    secs / r.secs()
                );
            }
        }
    }
}
