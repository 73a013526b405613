//! Live sessions: new nodes stream as they are added, are forwarded across peers, and never
//! come back to where they came from. Every wait is on a store event, never a sleep.

mod common;

use braidlog::sync::{serve, sync, Mode, SyncOptions, SyncReport};
use braidlog::{Log, SyncError};
use common::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn live_opts(stop: &watch::Receiver<bool>) -> SyncOptions {
    SyncOptions {
        shutdown: Some(stop.clone()),
        ..SyncOptions::new(Mode::Both).live()
    }
}

/// A live session between two logs over a duplex pipe, each end in its own task.
fn link(
    a: &Log,
    b: &Log,
    stop: &watch::Receiver<bool>,
) -> [JoinHandle<Result<SyncReport, SyncError>>; 2] {
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    let (a, b) = (a.clone(), b.clone());
    let (oa, ob) = (live_opts(stop), live_opts(stop));
    [
        tokio::spawn(async move { sync(&a, sa, oa).await }),
        tokio::spawn(async move { sync(&b, sb, ob).await }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivers_a_node_added_after_the_session_started() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 10, "before");
    let (stop_tx, stop) = watch::channel(false);
    let [ta, tb] = link(&a.log, &b.log, &stop);
    let n = a.log.append(b"after".to_vec()).unwrap();
    until_has(&b.log, n.hash()).await;
    let m = b.log.append(b"reply".to_vec()).unwrap();
    until_has(&a.log, m.hash()).await;
    stop_tx.send(true).unwrap();
    let (ra, rb) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
    assert_eq!(ra.nodes_received, 1);
    assert_eq!(rb.nodes_received, 11);
    assert_eq!(ra.duplicates + rb.duplicates, 0);
    assert_same(&a.log, &b.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyperlog_live_echo_never_happens() {
    // Hyperlog's live replication sent nodes back to the peer they came from.
    let (a, b) = (replica(), replica());
    let (stop_tx, stop) = watch::channel(false);
    let [ta, tb] = link(&a.log, &b.log, &stop);
    let mut last = None;
    for i in 0..50u32 {
        last = Some(a.log.append(i.to_le_bytes().to_vec()).unwrap());
    }
    until_has(&b.log, last.unwrap().hash()).await;
    // One more round trip through b proves b had its chance to echo everything before it.
    let marker = b.log.append(b"marker".to_vec()).unwrap();
    until_has(&a.log, marker.hash()).await;
    stop_tx.send(true).unwrap();
    let (ra, rb) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
    assert_eq!(rb.nodes_received, 50);
    assert_eq!(ra.nodes_received, 1, "only b's own node comes back");
    assert_eq!(ra.duplicates, 0, "a received an echo");
    assert_eq!(rb.nodes_sent, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_forwards_across_a_line_of_four() {
    let r: Vec<_> = (0..4).map(|_| replica()).collect();
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..3 {
        tasks.extend(link(&r[i].log, &r[i + 1].log, &stop));
    }
    let from_a = r[0].log.append(b"from a".to_vec()).unwrap();
    until_has(&r[3].log, from_a.hash()).await;
    let from_d = r[3].log.append(b"from d".to_vec()).unwrap();
    until_has(&r[0].log, from_d.hash()).await;
    stop_tx.send(true).unwrap();
    let mut dups = 0;
    for t in tasks {
        dups += t.await.unwrap().unwrap().duplicates;
    }
    assert_eq!(dups, 0);
    for x in &r[1..] {
        assert_same(&r[0].log, &x.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_star_over_tcp_forwards_between_leaves() {
    let hub = replica();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop) = watch::channel(false);
    let mut server_stop = stop.clone();
    let srv = tokio::spawn(serve(
        listener,
        hub.log.clone(),
        SyncOptions::new(Mode::Both).live(),
        async move {
            let _ = server_stop.wait_for(|v| *v).await;
        },
    ));
    let leaves: Vec<_> = (0..3).map(|_| replica()).collect();
    let mut tasks = Vec::new();
    for l in &leaves {
        let (log, opts) = (l.log.clone(), live_opts(&stop));
        tasks.push(tokio::spawn(async move {
            braidlog::sync::connect(addr, &log, opts).await
        }));
    }
    let n = leaves[0].log.append(b"leaf 0".to_vec()).unwrap();
    until_has(&leaves[1].log, n.hash()).await;
    until_has(&leaves[2].log, n.hash()).await;
    stop_tx.send(true).unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let report = srv.await.unwrap().unwrap();
    assert_eq!(report.failed, 0);
    assert_same(&hub.log, &leaves[2].log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_session_ends_cleanly_when_the_peer_drops() {
    let (a, b) = (replica(), replica());
    let (stop_tx, stop) = watch::channel(false);
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    let log = a.log.clone();
    let opts = live_opts(&stop);
    let ta = tokio::spawn(async move { sync(&log, sa, opts).await });
    // b goes away without a Close (its task is dropped) once the session is live.
    let (_b_stop_tx, b_stop) = watch::channel(false);
    let log_b = b.log.clone();
    let tb = tokio::spawn(async move { sync(&log_b, sb, live_opts(&b_stop)).await });
    let n = a.log.append(b"x".to_vec()).unwrap();
    until_has(&b.log, n.hash()).await;
    // b's reply travels behind its Done: once a has it, both are live.
    let reply = b.log.append(b"y".to_vec()).unwrap();
    until_has(&a.log, reply.hash()).await;
    tb.abort();
    let _ = tb.await;
    let ra = ta.await.unwrap().unwrap();
    assert_eq!(ra.nodes_sent, 1);
    drop(stop_tx);
}

/// Copies `from` to `to`, and writes what arrives on `inject` between reads.
async fn forward(
    mut from: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    mut to: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    mut inject: tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(n) if n > 0 => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
            Some(bytes) = inject.recv() => {
                if to.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// A quiet live session stays open for any time, but a peer that stops halfway through a
/// frame meets the idle timeout, as before the session was live.
#[tokio::test(start_paused = true)]
async fn a_live_peer_may_be_quiet_but_not_halfway_through_a_frame() {
    let (a, b) = (replica(), replica());
    let (stop_tx, stop) = watch::channel(false);
    let (sa, sa_far) = tokio::io::duplex(64 * 1024);
    let (sb, sb_far) = tokio::io::duplex(64 * 1024);
    let (a_far_rd, a_far_wr) = tokio::io::split(sa_far);
    let (b_far_rd, b_far_wr) = tokio::io::split(sb_far);
    let (inject, injected) = tokio::sync::mpsc::channel(1);
    let (_none, nothing) = tokio::sync::mpsc::channel(1);
    tokio::spawn(forward(a_far_rd, b_far_wr, injected));
    tokio::spawn(forward(b_far_rd, a_far_wr, nothing));
    let (progress, mut events) = tokio::sync::mpsc::channel(64);
    let opts_b = SyncOptions {
        progress: Some(progress),
        ..live_opts(&stop)
    };
    let (la, lb) = (a.log.clone(), b.log.clone());
    let ta = tokio::spawn(async move { sync(&la, sa, live_opts(&stop)).await });
    let tb = tokio::spawn(async move { sync(&lb, sb, opts_b).await });
    while events.recv().await.expect("b reports").phase != braidlog::sync::Phase::Live {}
    // Ten quiet minutes: still live.
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    assert!(!tb.is_finished());
    // Five bytes of a frame header announcing 100 bytes, then nothing.
    inject.send(vec![100, 0, 0, 0, 3]).await.unwrap();
    let rb = tokio::time::timeout(std::time::Duration::from_secs(3600), tb)
        .await
        .expect("the stalled frame ends the session")
        .unwrap();
    assert!(
        matches!(rb, Err(SyncError::Timeout { state: "live", .. })),
        "{rb:?}"
    );
    // The timed-out side tells the other why, which ends it too.
    let ra = ta.await.unwrap();
    assert!(
        matches!(
            ra,
            Err(SyncError::PeerAborted {
                reason: braidlog::sync::AbortReason::LimitExceeded,
                ..
            })
        ),
        "{ra:?}"
    );
    drop(stop_tx);
}
