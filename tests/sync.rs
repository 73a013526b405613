//! Replication scenarios through the public API, over `tokio::io::duplex` and loopback TCP.

mod common;

use braidlog::sync::{connect, serve, AbortReason, Mode, SyncError, SyncOptions};
use common::*;
use quickcheck::{QuickCheck, TestResult};

#[tokio::test]
async fn empty_with_empty() {
    let (a, b) = (replica(), replica());
    let (ra, rb) = both(&a.log, &b.log).await;
    assert_eq!((ra.nodes_sent, rb.nodes_sent, ra.round_trips), (0, 0, 1));
    assert_same(&a.log, &b.log);
}

#[tokio::test]
async fn one_side_has_n_push_pull_two_way() {
    for (ma, mb) in [
        (Mode::Push, Mode::Pull),
        (Mode::Push, Mode::Both),
        (Mode::Both, Mode::Pull),
        (Mode::Both, Mode::Both),
    ] {
        let (a, b) = (replica(), replica());
        chain(&a.log, 300, "a");
        let (ra, rb) = pair(&a.log, &b.log, ma, mb).await;
        assert_eq!(
            (ra.nodes_sent, rb.nodes_received, rb.duplicates),
            (300, 300, 0)
        );
        assert_eq!(ra.round_trips, 1);
        assert_same(&a.log, &b.log);
        // The other way round: the empty side pulls.
        let c = replica();
        let (rc, _) = pair(&c.log, &a.log, Mode::Pull, Mode::Both).await;
        assert_eq!(rc.nodes_received, 300);
    }
}

#[tokio::test]
async fn push_only_does_not_receive() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 5, "a");
    chain(&b.log, 7, "b");
    pair(&a.log, &b.log, Mode::Push, Mode::Both).await;
    assert_eq!((a.log.len().unwrap(), b.log.len().unwrap()), (5, 12));
}

#[tokio::test]
async fn both_diverged() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 100, "common");
    both(&a.log, &b.log).await;
    chain(&a.log, 40, "a");
    chain(&b.log, 60, "b");
    let (ra, rb) = both(&a.log, &b.log).await;
    assert_eq!((ra.nodes_sent, rb.nodes_sent), (40, 60));
    assert_eq!(ra.duplicates + rb.duplicates, 0);
    assert_same(&a.log, &b.log);
}

#[tokio::test]
async fn forks_converge_to_the_same_heads() {
    let (a, b) = (replica(), replica());
    let root = a.log.append(b"root".to_vec()).unwrap();
    both(&a.log, &b.log).await;
    for i in 0..5u8 {
        a.log.add([root.hash()], vec![b'a', i]).unwrap();
        b.log.add([root.hash()], vec![b'b', i]).unwrap();
    }
    both(&a.log, &b.log).await;
    assert_eq!(a.log.heads().unwrap().len(), 10);
    assert_same(&a.log, &b.log);
    let merge = b.log.append(b"merge".to_vec()).unwrap();
    let (ra, _) = both(&a.log, &b.log).await;
    assert_eq!(ra.nodes_received, 1);
    assert_eq!(a.log.heads().unwrap(), vec![merge.hash()]);
}

#[tokio::test]
async fn already_in_sync_costs_one_message_each_way_whatever_the_size() {
    for n in [10, 3000] {
        let (a, b) = (replica(), replica());
        chain(&a.log, n, "x");
        both(&a.log, &b.log).await;
        let (ra, rb) = both(&a.log, &b.log).await;
        assert_eq!((ra.nodes_sent, rb.nodes_sent, ra.round_trips), (0, 0, 1));
        // Preamble + Hello: one head and a dozen 8-byte feed samples.
        assert!(ra.bytes_sent < 256, "{n}: {}", ra.bytes_sent);
        assert_eq!(ra.bytes_sent, rb.bytes_received);
    }
}

#[tokio::test]
async fn repeated_syncs_transfer_nothing() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 50, "a");
    chain(&b.log, 50, "b");
    both(&a.log, &b.log).await;
    for _ in 0..3 {
        let (ra, rb) = both(&a.log, &b.log).await;
        assert_eq!(ra.nodes_sent + rb.nodes_sent, 0);
    }
}

#[tokio::test]
async fn a_line_of_four_and_a_star_converge() {
    let r: Vec<_> = (0..4).map(|_| replica()).collect();
    for (i, x) in r.iter().enumerate() {
        chain(&x.log, 20 + i, &format!("r{i}-"));
    }
    // Line: 0-1-2-3 forward, then back.
    for i in 0..3 {
        both(&r[i].log, &r[i + 1].log).await;
    }
    for i in (0..3).rev() {
        both(&r[i].log, &r[i + 1].log).await;
    }
    for x in &r[1..] {
        assert_same(&r[0].log, &x.log);
    }
    // Star around a new hub.
    let hub = replica();
    for (i, x) in r.iter().enumerate() {
        chain(&x.log, 5, &format!("star{i}-"));
        both(&hub.log, &x.log).await;
    }
    for x in &r {
        both(&hub.log, &x.log).await;
        assert_same(&hub.log, &x.log);
    }
}

#[tokio::test]
async fn over_tcp_with_many_peers_at_once() {
    let server = replica();
    chain(&server.log, 100, "s");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(serve(
        listener,
        server.log.clone(),
        SyncOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let clients: Vec<_> = (0..5).map(|_| replica()).collect();
    let mut tasks = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        chain(&c.log, 10 + i, &format!("c{i}-"));
        let log = c.log.clone();
        tasks.push(tokio::spawn(async move {
            connect(addr, &log, SyncOptions::default()).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.duplicates, 0);
    }
    // A second round brings every client what the others pushed.
    for c in &clients {
        connect(addr, &c.log, SyncOptions::default()).await.unwrap();
        assert_same(&server.log, &c.log);
    }
    stop.send(()).unwrap();
    let report = srv.await.unwrap().unwrap();
    assert_eq!((report.sessions, report.failed), (10, 0));
    assert_eq!(report.nodes_received, (10..15).sum::<u64>());
}

#[tokio::test]
async fn progress_events_are_emitted() {
    let (a, b) = (replica(), replica());
    // More than one receive batch, so progress is reported before the end.
    let n = braidlog::sync::Limits::default().batch_nodes as u64 + 2000;
    // Payloads long enough that the stream spans many reads of the driver (progress is
    // reported between reads).
    chain(&a.log, n as usize, &"p".repeat(64));
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    let opts = SyncOptions {
        progress: Some(tx),
        ..SyncOptions::default()
    };
    let (ra, rb) = tokio::join!(
        braidlog::sync::sync(&a.log, sa, SyncOptions::default()),
        braidlog::sync::sync(&b.log, sb, opts)
    );
    ra.unwrap();
    assert_eq!(rb.unwrap().nodes_received, n);
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(events.len() >= 3, "{events:?}");
    assert_eq!(events.last().unwrap().nodes_received, n);
    assert_eq!(events[1].total_hint, Some(n));
}

#[tokio::test]
async fn go_ds_crdt_per_level_walk_long_chain_is_one_round_trip() {
    // go-ds-crdt walks a DAG one level per round trip; a 5000-deep chain must not cost more.
    let (a, b) = (replica(), replica());
    chain(&a.log, 10, "base");
    both(&a.log, &b.log).await;
    chain(&a.log, 5000, "deep");
    chain(&b.log, 3, "b");
    let (ra, rb) = both(&a.log, &b.log).await;
    // One round trip, unless one of the 5,000 candidates is a false positive of b's Bloom
    // filter (its key is random per session): then one `Want` round repairs it. Never more,
    // and never a duplicate.
    assert!(ra.round_trips <= 2 && rb.round_trips <= 2, "{ra:?} {rb:?}");
    assert_eq!((ra.nodes_sent, rb.nodes_sent), (5000, 3));
    // First contact, too: a fresh replica learns the whole chain in one round trip.
    let c = replica();
    let (rc, _) = both(&c.log, &a.log).await;
    assert_eq!((rc.round_trips, rc.nodes_received), (1, 5013));
}

#[tokio::test]
async fn copied_directory_gets_its_own_peer_id() {
    let a = replica();
    chain(&a.log, 20, "a");
    let b = replica();
    both(&a.log, &b.log).await;
    // Copy a's directory while a is idle and open the copy.
    let copy_dir = tempfile::tempdir().unwrap();
    for f in ["data.mdb", "lock.mdb"] {
        std::fs::copy(a.dir.path().join(f), copy_dir.path().join(f)).unwrap();
    }
    let copy = braidlog::Log::open(copy_dir.path()).unwrap();
    assert_ne!(copy.peer_id(), a.log.peer_id());
    // The copy and the original diverge; b tells them apart and gets both sides.
    chain(&a.log, 3, "orig");
    chain(&copy, 4, "copy");
    let (rb1, _) = both(&b.log, &a.log).await;
    let (rb2, _) = both(&b.log, &copy).await;
    assert_eq!((rb1.nodes_received, rb2.nodes_received), (3, 4));
    both(&a.log, &copy).await;
    assert_same(&a.log, &copy);
    assert_same(&a.log, &b.log);
    // Syncing a replica with itself is refused.
    let (s1, s2) = tokio::io::duplex(4096);
    let (r1, r2) = tokio::join!(
        braidlog::sync::sync(&a.log, s1, SyncOptions::default()),
        braidlog::sync::sync(&a.log, s2, SyncOptions::default())
    );
    let self_sync = |r: &Result<_, _>| matches!(r, Err(SyncError::SelfSync { .. }));
    assert!(self_sync(&r1) || self_sync(&r2), "{r1:?} {r2:?}");
    // The other side is either refused the same way or told so by an abort.
    let refused = |r: &Result<_, _>| {
        self_sync(r)
            || matches!(
                r,
                Err(SyncError::PeerAborted {
                    reason: AbortReason::Refused,
                    ..
                })
            )
    };
    assert!(refused(&r1) && refused(&r2), "{r1:?} {r2:?}");
}

fn prop_random_adds_and_syncs(ops: Vec<(u8, u8, u8)>) -> TestResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let r: Vec<_> = (0..3).map(|_| replica()).collect();
        for (i, (op, x, y)) in ops.into_iter().take(30).enumerate() {
            let (x, y) = (x as usize % 3, y as usize % 3);
            if op % 3 == 0 && x != y {
                both(&r[x].log, &r[y].log).await;
            } else {
                let n = 1 + op as usize % 4;
                chain(&r[x].log, n, &format!("{i}-"));
            }
        }
        for (x, y) in [(0, 1), (1, 2), (0, 1)] {
            both(&r[x].log, &r[y].log).await;
        }
        for x in &r[1..] {
            assert_same(&r[0].log, &x.log);
        }
    });
    TestResult::passed()
}

#[test]
fn quickcheck_replicas_converge() {
    QuickCheck::new()
        .tests(25)
        .quickcheck(prop_random_adds_and_syncs as fn(Vec<(u8, u8, u8)>) -> TestResult);
}

/// Adds `n` independent roots in one transaction.
fn roots(log: &braidlog::Log, n: usize, tag: &str) {
    log.transaction(|w| {
        for i in 0..n {
            w.add([], format!("{tag}{i}").into_bytes())?;
        }
        Ok(())
    })
    .unwrap();
}

#[tokio::test]
async fn more_heads_than_one_hello_lists_converge() {
    // More heads than one Hello lists used to be cut, and the nodes under the cut ones were
    // never sent, while every sync reported success.
    let (a, b) = (replica(), replica());
    chain(&a.log, 5, "common");
    both(&a.log, &b.log).await;
    roots(&a.log, 4_200, "a");
    chain(&b.log, 2, "b");
    for _ in 0..2 {
        both(&a.log, &b.log).await;
        assert_same(&a.log, &b.log);
    }
    assert_eq!(b.log.len().unwrap(), 4_207);
}

#[tokio::test]
async fn both_push_or_both_pull_is_refused_on_both_sides() {
    for mode in [Mode::Push, Mode::Pull] {
        let (a, b) = (replica(), replica());
        chain(&a.log, 3, "a");
        chain(&b.log, 3, "b");
        let (ra, rb) = try_pair(&a.log, &b.log, mode, mode).await;
        // At least one side finds the mismatch; the other finds it too or is told by an
        // abort, whichever comes first.
        let mismatch = |r: &Result<_, _>| matches!(r, Err(SyncError::ModeMismatch { .. }));
        let refused = |r: &Result<_, _>| {
            mismatch(r)
                || matches!(
                    r,
                    Err(SyncError::PeerAborted {
                        reason: AbortReason::Refused,
                        ..
                    })
                )
        };
        assert!(mismatch(&ra) || mismatch(&rb), "{mode:?}: {ra:?} {rb:?}");
        assert!(refused(&ra) && refused(&rb), "{mode:?}: {ra:?} {rb:?}");
    }
}

#[tokio::test]
async fn a_hundred_thousand_heads_converge() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 3, "common");
    both(&a.log, &b.log).await;
    roots(&a.log, 100_000, "a");
    roots(&b.log, 10, "b");
    let (ra, rb) = both(&a.log, &b.log).await;
    assert_eq!((ra.nodes_sent, rb.nodes_sent), (100_000, 10));
    assert_same(&a.log, &b.log);
    assert_eq!(a.log.heads().unwrap().len(), 100_011);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_deliver_the_same_nodes_into_one_store_at_once() {
    let (s1, s2, dst) = (replica(), replica(), replica());
    chain(&s1.log, 3_000, "x");
    both(&s1.log, &s2.log).await;
    roots(&s2.log, 50, "r");
    let ((r1, _), (r2, _)) = tokio::join!(
        pair(&dst.log, &s1.log, Mode::Pull, Mode::Push),
        pair(&dst.log, &s2.log, Mode::Pull, Mode::Push),
    );
    assert_eq!(r1.nodes_received + r2.nodes_received, 3_050);
    assert_same(&dst.log, &s2.log);
}
