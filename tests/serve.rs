//! The server protecting itself: idle floods, the connection limit, timeouts, the shared
//! memory budget, and shutdown with idle peers connected.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use braidlog::sync::wire::{preamble, MAX_FRAME_BYTES};
use braidlog::sync::{
    connect, serve, sync, MemoryBudget, OnEvent, ServeEvent, ServeOptions, ServeReport, SyncError,
    SyncOptions, DEFAULT_HANDSHAKE_TIMEOUT,
};
use common::{assert_same, chain, replica};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The tests that flood a server run one at a time: a session quiet for a second counts as
/// idle at shutdown, and two floods at once on two cores can stall an honest one that long.
static FLOODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the tests see of a server's events, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Accepted(std::net::SocketAddr),
    Finished,
    Failed(String),
}

struct Server {
    addr: std::net::SocketAddr,
    events: mpsc::UnboundedReceiver<Seen>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<ServeReport, SyncError>>,
    /// The most sessions ever running at once.
    max_active: Arc<Mutex<(usize, usize)>>,
}

async fn start(log: braidlog::Log, mut options: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, events) = mpsc::unbounded_channel();
    let max_active = Arc::new(Mutex::new((0usize, 0usize)));
    let active = max_active.clone();
    let on_event: OnEvent = Arc::new(move |e| {
        let mut a = active.lock().unwrap();
        let seen = match e {
            ServeEvent::Accepted { peer } => {
                a.0 += 1;
                a.1 = a.1.max(a.0);
                Seen::Accepted(peer)
            }
            ServeEvent::Finished { .. } => {
                a.0 -= 1;
                Seen::Finished
            }
            ServeEvent::Failed { error, .. } => {
                a.0 -= 1;
                Seen::Failed(error.to_string())
            }
            _ => return,
        };
        let _ = tx.send(seen);
    });
    options.on_event = Some(on_event);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, log, options, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        events,
        stop,
        task,
        max_active,
    }
}

impl Server {
    async fn until_accepted(&mut self, n: usize) {
        let mut seen = 0;
        while seen < n {
            if let Seen::Accepted(_) = self.events.recv().await.unwrap() {
                seen += 1;
            }
        }
    }

    /// Stops the server and waits (bounded) for its report.
    async fn stop(self) -> ServeReport {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server stops at once on shutdown")
            .unwrap()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_stop_neither_honest_peers_nor_the_shutdown() {
    let _one_at_a_time = FLOODS.lock().await;
    let hub = replica();
    chain(&hub.log, 50, "hub");
    let options = ServeOptions {
        max_connections: 1100,
        ..ServeOptions::default()
    };
    let mut server = start(hub.log.clone(), options).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    server.until_accepted(1000).await;
    for i in 0..3 {
        let c = replica();
        chain(&c.log, 5, &format!("c{i}-"));
        let r = connect(server.addr, &c.log, SyncOptions::default())
            .await
            .unwrap();
        assert_eq!((r.nodes_received, r.nodes_sent), (50 + 5 * i, 5));
    }
    // Non-live peers that never said a word must not hold the server open.
    let report = server.stop().await;
    assert_eq!((report.sessions, report.failed), (1003, 1000));
    assert_eq!(report.nodes_received, 15);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_new_peers_wait_for_a_slot() {
    let hub = replica();
    chain(&hub.log, 10, "hub");
    let options = ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    };
    let mut server = start(hub.log.clone(), options).await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    server.until_accepted(2).await;
    let c = replica();
    let log = c.log.clone();
    let addr = server.addr;
    let honest = tokio::spawn(async move { connect(addr, &log, SyncOptions::default()).await });
    // Freeing a slot lets the waiting peer in.
    drop(first);
    let mut order = Vec::new();
    while order.len() < 2 {
        match server.events.recv().await.unwrap() {
            Seen::Failed(e) => order.push(format!("failed: {e}")),
            Seen::Accepted(_) => order.push("accepted".into()),
            Seen::Finished => {}
        }
    }
    assert!(order[0].starts_with("failed"), "{order:?}");
    assert_eq!(order[1], "accepted");
    assert_eq!(honest.await.unwrap().unwrap().nodes_received, 10);
    assert_same(&hub.log, &c.log);
    assert_eq!(
        server.max_active.lock().unwrap().1,
        2,
        "never over the limit"
    );
    server.stop().await;
}

/// Far more idle peers than slots: the server never runs more sessions than its limit, the
/// handshake timeout frees the slots, and an honest peer queued behind them gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_more_idle_peers_than_slots_wait_their_turn() {
    let hub = replica();
    chain(&hub.log, 10, "hub");
    let mut options = ServeOptions {
        max_connections: 4,
        ..ServeOptions::default()
    };
    options.session.handshake_timeout = Some(Duration::from_millis(200));
    let mut server = start(hub.log.clone(), options).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    server.until_accepted(4).await;
    let c = replica();
    let r = connect(server.addr, &c.log, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.nodes_received, 10);
    assert_eq!(
        server.max_active.lock().unwrap().1,
        4,
        "never over the limit"
    );
    let report = server.stop().await;
    assert_eq!(
        report.failed,
        report.sessions - 1,
        "every idle session ended"
    );
    drop(idle);
}

/// A peer that connects and then says nothing: the default handshake timeout ends the
/// session with a typed error instead of waiting forever.
#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out_in_the_handshake() {
    let l = replica();
    let (mine, _silent) = tokio::io::duplex(64 * 1024);
    let r = tokio::time::timeout(
        Duration::from_secs(3600),
        sync(&l.log, mine, SyncOptions::default()),
    )
    .await
    .expect("the sync ends by itself");
    match r {
        Err(SyncError::Timeout { state, after }) => {
            assert_eq!((state, after), ("handshaking", DEFAULT_HANDSHAKE_TIMEOUT));
        }
        other => panic!("{other:?}"),
    }
}

/// Trickling a byte now and then keeps the idle timer fed but not the handshake deadline.
#[tokio::test(start_paused = true)]
async fn a_trickling_peer_still_times_out_in_the_handshake() {
    let l = replica();
    let (mine, mut theirs) = tokio::io::duplex(64 * 1024);
    let trickle = tokio::spawn(async move {
        for b in preamble() {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if theirs.write_all(&[b]).await.is_err() {
                break;
            }
        }
        theirs
    });
    let started = tokio::time::Instant::now();
    let r = sync(&l.log, mine, SyncOptions::default()).await;
    assert!(
        matches!(
            r,
            Err(SyncError::Timeout {
                state: "handshaking",
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(started.elapsed(), DEFAULT_HANDSHAKE_TIMEOUT);
    drop(trickle.await.unwrap());
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// 300 peers each send a maximal frame but its last byte. Together they may hold the shared
/// budget and a little per connection, not a frame each; an honest peer still syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_incomplete_frames_stay_within_the_memory_budget() {
    let _one_at_a_time = FLOODS.lock().await;
    const PEERS: usize = 300;
    let hub = replica();
    chain(&hub.log, 10, "hub");
    let budget = MemoryBudget::new(8 << 20);
    let mut options = ServeOptions::default();
    options.session.memory = Some(budget.clone());
    let mut server = start(hub.log.clone(), options).await;
    let before = rss_bytes();
    let frame: Arc<Vec<u8>> = Arc::new({
        let mut f = preamble().to_vec();
        f.extend_from_slice(&(MAX_FRAME_BYTES as u32).to_le_bytes());
        f.push(3); // a Node
        f.resize(f.len() + MAX_FRAME_BYTES - 2, 0x55);
        f
    });
    let mut peers = Vec::new();
    for _ in 0..PEERS {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let frame = frame.clone();
        peers.push(tokio::spawn(async move {
            let _ = s.write_all(&frame).await;
            s
        }));
    }
    server.until_accepted(PEERS).await;
    // Every connection ends up stopped on the spent budget (they share it in small steps).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while budget.waiting() < PEERS - 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            budget.waiting()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(budget.in_use() <= budget.total());
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 150 << 20,
        "{PEERS} incomplete frames cost {} MiB",
        grown >> 20
    );
    let c = replica();
    let r = connect(server.addr, &c.log, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.nodes_received, 10);
    let report = server.stop().await;
    assert_eq!(report.failed, PEERS as u64);
    assert_eq!(budget.in_use(), 0, "every byte is given back");
    for p in peers {
        p.abort();
    }
}

/// A shutdown while a session is busy moving nodes lets it finish: nothing is cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_lets_a_busy_session_finish() {
    let _one_at_a_time = FLOODS.lock().await;
    let hub = replica();
    let server = start(hub.log.clone(), ServeOptions::default()).await;
    let c = replica();
    chain(&c.log, 20_000, "c");
    let (tx, mut progress) = mpsc::channel(1024);
    let opts = SyncOptions {
        progress: Some(tx),
        ..SyncOptions::default()
    };
    let (log, addr) = (c.log.clone(), server.addr);
    let client = tokio::spawn(async move { connect(addr, &log, opts).await });
    // Stop the server once the stream is under way.
    while let Some(p) = progress.recv().await {
        if p.nodes_sent >= 1000 {
            break;
        }
    }
    let report = server.stop().await;
    let r = client.await.unwrap().unwrap();
    assert_eq!(r.nodes_sent, 20_000);
    assert_eq!((report.failed, report.nodes_received), (0, 20_000));
    assert_same(&hub.log, &c.log);
}
