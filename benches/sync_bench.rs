//! Whole-scenario sync figures over loopback TCP: round trips, bytes on the wire against bytes
//! of the missing nodes, duplicates, nodes per second.
//!
//! `cargo bench --bench sync_bench` (add `-- 10000` to choose sizes; set
//! `BRAID_BENCH_NOSYNC=1` for non-durable commits).

use std::time::Instant;

use braidlog::sync::{sync, Mode, SyncOptions, SyncReport};
use braidlog::{Log, Node};
use tokio::net::{TcpListener, TcpStream};

/// Durable commits by default; `BRAID_BENCH_NOSYNC=1` leaves flushing to the OS, which
/// separates the protocol's cost from the disk's.
fn open(dir: &tempfile::TempDir) -> Log {
    let durability = if std::env::var_os("BRAID_BENCH_NOSYNC").is_some() {
        braidlog::Durability::NoSync
    } else {
        braidlog::Durability::Sync
    };
    let options = braidlog::LogOptions {
        durability,
        ..Default::default()
    };
    Log::open_with(dir.path(), options).unwrap()
}

/// Appends a chain of `n` nodes with 64-byte payloads, 1000 per transaction.
fn grow(log: &Log, n: usize, tag: &str) {
    let mut done = 0;
    while done < n {
        let mut prev = log.heads().unwrap();
        let k = (n - done).min(1000);
        let nodes: Vec<Node> = (0..k)
            .map(|i| {
                let mut p = format!("{tag}-{}", done + i).into_bytes();
                p.resize(64, b'.');
                let node = Node::new(prev.clone(), p).unwrap();
                prev = vec![node.hash()];
                node
            })
            .collect();
        log.insert_batch(&nodes).unwrap();
        done += k;
    }
}

async fn tcp_sync(a: &Log, b: &Log) -> (SyncReport, SyncReport) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (la, lb) = (a.clone(), b.clone());
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        sync(&lb, s, SyncOptions::new(Mode::Both)).await.unwrap()
    });
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let ra = sync(&la, s, SyncOptions::new(Mode::Both)).await.unwrap();
    (ra, server.await.unwrap())
}

fn row(scenario: &str, n: usize, ra: &SyncReport, rb: &SyncReport, secs: f64) {
    let moved = ra.nodes_received + rb.nodes_received;
    let node_bytes = ra.node_bytes_received + rb.node_bytes_received;
    let wire = ra.bytes_sent + rb.bytes_sent;
    let overhead = wire.saturating_sub(node_bytes);
    let per = if moved > 0 {
        format!("{:.1}", overhead as f64 / moved as f64)
    } else {
        "-".into()
    };
    let rate = if moved > 0 {
        format!("{:.0}", moved as f64 / secs)
    } else {
        "-".into()
    };
    println!(
        "{scenario:<22} {n:>7} {rt:>3} {moved:>7} {wire:>11} {node_bytes:>11} {overhead:>8} {per:>7} {dups:>5} {rate:>9} {ms:>9.1}",
        rt = ra.round_trips.max(rb.round_trips),
        dups = ra.duplicates + rb.duplicates,
        ms = secs * 1e3,
    );
}

async fn scenarios(n: usize) {
    let d = (n / 100).max(1);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b, c, e) = (
        open(&dirs[0]),
        open(&dirs[1]),
        open(&dirs[2]),
        open(&dirs[3]),
    );

    // One-sided: a fresh replica clones n nodes.
    grow(&a, n, "a");
    let t = Instant::now();
    let (ra, rb) = tcp_sync(&a, &b).await;
    row("one-sided (clone)", n, &ra, &rb, t.elapsed().as_secs_f64());

    // In sync.
    let t = Instant::now();
    let (ra, rb) = tcp_sync(&a, &b).await;
    row("in sync", n, &ra, &rb, t.elapsed().as_secs_f64());

    // Fast-forward by 1%.
    grow(&a, d, "ff");
    let t = Instant::now();
    let (ra, rb) = tcp_sync(&a, &b).await;
    row("fast-forward 1%", n, &ra, &rb, t.elapsed().as_secs_f64());

    // Two-sided, remembered peer: each adds 1%.
    grow(&a, d, "a2");
    grow(&b, d, "b2");
    let t = Instant::now();
    let (ra, rb) = tcp_sync(&a, &b).await;
    row(
        "two-sided remembered",
        n,
        &ra,
        &rb,
        t.elapsed().as_secs_f64(),
    );

    // Two-sided, first contact: c and e got the history through a and b, never met.
    tcp_sync(&a, &c).await;
    tcp_sync(&b, &e).await;
    grow(&c, d, "c");
    grow(&e, d, "e");
    let t = Instant::now();
    let (ra, rb) = tcp_sync(&c, &e).await;
    row(
        "two-sided first contact",
        n,
        &ra,
        &rb,
        t.elapsed().as_secs_f64(),
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    println!(
        "{:<22} {:>7} {:>3} {:>7} {:>11} {:>11} {:>8} {:>7} {:>5} {:>9} {:>9}",
        "scenario",
        "n",
        "rt",
        "moved",
        "wire B",
        "node B",
        "extra B",
        "B/node",
        "dups",
        "nodes/s",
        "ms"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in sizes {
        rt.block_on(scenarios(n));
    }
}
