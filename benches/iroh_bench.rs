//! iroh beside TCP on loopback, in one process, in one run:
//! - clone of N nodes (default 10^5) over iroh and over TCP, alternating, best of R runs each,
//!   and their ratio;
//! - live fan-out to 20 replicas: gossip (announce + fetch) against a chain of TCP live
//!   sessions; per write, the time until the last replica has it, and the messages and bytes
//!   it cost.
//!
//! ```text
//! cargo bench --features iroh --bench iroh_bench
//! BRAID_BENCH_N=10000 BRAID_BENCH_RUNS=3 BRAID_BENCH_WRITES=20 cargo bench --features iroh --bench iroh_bench
//! ```
//!
//! Gossip messages are counted at braidlog's level: announcements sent, announcements
//! delivered to replicas, fetch sessions and their bytes on the wire. iroh-gossip's own
//! membership traffic (joins, shuffles, lazy-push digests) is not in the count.

use std::time::{Duration, Instant};

use braidlog::sync::gossip::{GossipOptions, GossipStats, Topic};
use braidlog::sync::iroh::{Access, IrohConfig, IrohNode, IrohServeOptions, Ticket};
use braidlog::sync::{sync, Mode, SyncOptions, SyncReport};
use braidlog::{Durability, Hash, Log, LogOptions, Node};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn open() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        durability: Durability::NoSync,
        ..Default::default()
    };
    let log = Log::open_with(dir.path(), options).unwrap();
    (dir, log)
}

/// N unsigned 100-byte nodes in one chain, stored in batches.
fn fill(log: &Log, n: usize) {
    let mut prev: Vec<Hash> = log.heads().unwrap();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let mut p = format!("node {i} ").into_bytes();
        p.resize(100, b'.');
        let node = Node::new(prev.clone(), p).unwrap();
        prev = vec![node.hash()];
        batch.push(node);
        if batch.len() == 10_000 {
            log.insert(&batch).unwrap();
            batch.clear();
        }
    }
    log.insert(&batch).unwrap();
}

fn loopback() -> IrohConfig {
    IrohConfig {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    }
}

async fn clone_tcp(src: &Log) -> (Duration, SyncReport) {
    let (_d, dst) = open();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let src = src.clone();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        sync(&src, s, SyncOptions::new(Mode::Push)).await.unwrap()
    });
    let t = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let r = sync(&dst, s, SyncOptions::new(Mode::Pull)).await.unwrap();
    let took = t.elapsed();
    server.await.unwrap();
    (took, r)
}

async fn clone_iroh(src: &Log) -> (Duration, SyncReport) {
    let (_d, dst) = open();
    let server = IrohNode::bind(src, loopback()).await.unwrap();
    let client = IrohNode::bind(&dst, loopback()).await.unwrap();
    let options = IrohServeOptions {
        access: Access::Keys([client.id()].into()),
        session: SyncOptions::new(Mode::Push),
        ..Default::default()
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let s = server.clone();
    let task = tokio::spawn(async move {
        s.serve(options, async {
            let _ = rx.await;
        })
        .await
    });
    let ticket = server.ticket();
    let t = Instant::now();
    let r = client
        .connect(&ticket, SyncOptions::new(Mode::Pull))
        .await
        .unwrap();
    let took = t.elapsed();
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    client.close().await;
    server.close().await;
    (took, r)
}

async fn clone_figures(n: usize, runs: usize) {
    let (_d, src) = open();
    fill(&src, n);
    let (mut tcp, mut iroh) = (Duration::MAX, Duration::MAX);
    let (mut tcp_bytes, mut iroh_bytes) = (0, 0);
    for _ in 0..runs {
        let (t, r) = clone_tcp(&src).await;
        assert_eq!(r.nodes_received, n as u64);
        tcp = tcp.min(t);
        tcp_bytes = r.bytes_received + r.bytes_sent;
        let (t, r) = clone_iroh(&src).await;
        assert_eq!(r.nodes_received, n as u64);
        iroh = iroh.min(t);
        iroh_bytes = r.bytes_received + r.bytes_sent;
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("clone of {n} nodes (100-byte payloads), loopback, best of {runs}:");
    println!(
        "  tcp   {:>8.3} s  {:>9.0} nodes/s  {tcp_bytes} stream bytes",
        tcp.as_secs_f64(),
        rate(tcp)
    );
    println!(
        "  iroh  {:>8.3} s  {:>9.0} nodes/s  {iroh_bytes} stream bytes",
        iroh.as_secs_f64(),
        rate(iroh)
    );
    println!(
        "  iroh / tcp throughput: {:.0}%",
        100.0 * rate(iroh) / rate(tcp)
    );
}

/// Waits until every log holds `h`.
async fn until_all(logs: &[Log], h: Hash) {
    for log in logs {
        let mut sub = log.subscribe();
        while !log.contains(&h).unwrap() {
            sub.changed().await.unwrap();
        }
    }
}

struct Figures {
    last: Vec<Duration>,
    messages: f64,
    bytes: f64,
}

fn print(name: &str, f: &Figures) {
    let mut v = f.last.clone();
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {name:<12} to last replica: median {:>7.1} ms  max {:>7.1} ms   per write: {:>6.1} messages  {:>8.0} bytes",
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        f.messages,
        f.bytes
    );
}

async fn fanout_gossip(replicas: usize, writes: usize) -> Figures {
    let topic = Topic::named("bench");
    let mut members = Vec::new();
    let mut tickets: Vec<Ticket> = Vec::new();
    for _ in 0..replicas {
        let (d, log) = open();
        let config = IrohConfig {
            gossip: true,
            ..loopback()
        };
        let node = IrohNode::bind(&log, config).await.unwrap();
        let n = node.clone();
        let serve = IrohServeOptions {
            access: Access::Anyone,
            ..Default::default()
        };
        tokio::spawn(async move { n.serve(serve, std::future::pending()).await });
        let boot: Vec<Ticket> = tickets.iter().rev().take(2).cloned().collect();
        let options = GossipOptions {
            access: Access::Anyone,
            ..Default::default()
        };
        let fanout = node.join_gossip(topic, &boot, options).await.unwrap();
        tickets.push(node.ticket());
        members.push((d, log, node, fanout));
    }
    let logs: Vec<Log> = members.iter().map(|m| m.1.clone()).collect();
    // Warm up: one write everywhere, so every membership link is up.
    let h = logs[0].append(b"warm-up".to_vec()).unwrap().hash();
    until_all(&logs, h).await;
    let total = |m: &[(
        tempfile::TempDir,
        Log,
        IrohNode,
        braidlog::sync::gossip::Fanout,
    )]| {
        m.iter().fold(GossipStats::default(), |mut a, x| {
            let s = x.3.stats();
            a.announced += s.announced;
            a.announce_bytes += s.announce_bytes;
            a.received += s.received;
            a.fetches += s.fetches + s.fetch_failures;
            a.fetch_bytes += s.fetch_bytes;
            a
        })
    };
    let before = total(&members);
    let mut last = Vec::new();
    for i in 0..writes {
        let w = (i * 7) % replicas;
        let t = Instant::now();
        let h = logs[w]
            .append(format!("write {i}").into_bytes())
            .unwrap()
            .hash();
        until_all(&logs, h).await;
        last.push(t.elapsed());
    }
    // Let in-flight fetch bookkeeping land before reading counters.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = total(&members);
    let w = writes as f64;
    let per_announce = after.announce_bytes.saturating_sub(before.announce_bytes) as f64
        / (after.announced - before.announced).max(1) as f64;
    let deliveries = (after.received - before.received) as f64;
    let fetches = (after.fetches - before.fetches) as f64;
    let messages = ((after.announced - before.announced) as f64 + deliveries + fetches) / w;
    let bytes = (deliveries * per_announce + (after.fetch_bytes - before.fetch_bytes) as f64) / w;
    for m in &members {
        m.2.close().await;
    }
    Figures {
        last,
        messages,
        bytes,
    }
}

async fn fanout_tcp_chain(replicas: usize, writes: usize) -> Figures {
    let mut logs = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..replicas {
        let (d, l) = open();
        dirs.push(d);
        logs.push(l);
    }
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for pair in logs.windows(2) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let opts = |stop: &watch::Receiver<bool>| SyncOptions {
            shutdown: Some(stop.clone()),
            ..SyncOptions::new(Mode::Both).live()
        };
        let (a, b) = (pair[0].clone(), pair[1].clone());
        let (oa, ob) = (opts(&stop), opts(&stop));
        tasks.push(tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            sync(&a, s, oa).await
        }));
        tasks.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            sync(&b, s, ob).await
        }));
    }
    let h = logs[0].append(b"warm-up".to_vec()).unwrap().hash();
    until_all(&logs, h).await;
    let mut last = Vec::new();
    for i in 0..writes {
        let w = (i * 7) % replicas;
        let t = Instant::now();
        let h = logs[w]
            .append(format!("write {i}").into_bytes())
            .unwrap()
            .hash();
        until_all(&logs, h).await;
        last.push(t.elapsed());
    }
    stop_tx.send(true).unwrap();
    let mut bytes = 0u64;
    for t in tasks {
        if let Ok(Ok(r)) = t.await {
            bytes += r.bytes_sent;
        }
    }
    // Each write crosses every link of the chain once: one node frame per link.
    let links = (replicas - 1) as f64;
    Figures {
        last,
        messages: links,
        bytes: bytes as f64 / (writes + 1) as f64,
    }
}

fn main() {
    let n = env_usize("BRAID_BENCH_N", 100_000);
    let runs = env_usize("BRAID_BENCH_RUNS", 3);
    let replicas = env_usize("BRAID_BENCH_REPLICAS", 20);
    let writes = env_usize("BRAID_BENCH_WRITES", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        clone_figures(n, runs).await;
        println!("live fan-out, {replicas} replicas, {writes} writes on rotating replicas:");
        let g = fanout_gossip(replicas, writes).await;
        print("gossip", &g);
        let c = fanout_tcp_chain(replicas, writes).await;
        print("tcp chain", &c);
    });
}
