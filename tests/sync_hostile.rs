//! Hostile and broken peers, scripted frame by frame. Each gives a typed error, and the local
//! store stays valid and keeps everything it had.

mod common;

use braidlog::sync::wire::MAX_FRAME_BYTES;
use braidlog::sync::wire::{encode, preamble, Decoder};
use braidlog::sync::wire::{Hello, Message, Summary, WireMode, MAGIC};
use braidlog::sync::{sync, Mode, SyncOptions, SyncReport};
use braidlog::{Hash, Log, Node, PeerId, SyncError};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

struct Raw {
    io: DuplexStream,
    dec: Decoder,
}

impl Raw {
    async fn bytes(&mut self, b: &[u8]) {
        let _ = self.io.write_all(b).await;
    }
    async fn send(&mut self, m: Message) {
        let mut b = Vec::new();
        encode(&m, &mut b);
        self.bytes(&b).await;
    }
    /// The next message of the given kind, skipping others.
    async fn until(&mut self, name: &str) -> Message {
        let mut buf = vec![0u8; 4096];
        loop {
            while let Some(m) = self.dec.next_message().unwrap() {
                if m.name() == name {
                    return m;
                }
            }
            let n = self.io.read(&mut buf).await.unwrap();
            assert!(n > 0, "local side closed before sending {name}");
            self.dec.push(&buf[..n]);
        }
    }
    /// Preamble, Hello announcing `heads`, and a Summary claiming to know the local heads (so
    /// the local side only receives).
    async fn handshake(&mut self, heads: Vec<Hash>, local: &Log) {
        self.bytes(&preamble()).await;
        self.send(Message::Hello(Hello {
            peer: PeerId::random(),
            mode: WireMode {
                send: true,
                receive: true,
                live: false,
            },
            last_seq: 100,
            head_count: heads.len() as u64,
            heads,
            samples: vec![],
        }))
        .await;
        let n = local.heads().unwrap().len();
        self.send(Message::Summary(Summary {
            known_heads: vec![0xff; n.div_ceil(8)],
            known_samples: vec![0xff; 8],
            filter: None,
            floor: vec![],
        }))
        .await;
    }
}

/// Runs the local side against a scripted peer; checks the store afterwards.
async fn against<F, Fut>(local: &Log, script: F) -> Result<SyncReport, SyncError>
where
    F: FnOnce(Raw) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let before = hashes(local);
    let (mine, theirs) = tokio::io::duplex(1 << 20);
    let peer = tokio::spawn(script(Raw {
        io: theirs,
        dec: Decoder::new(),
    }));
    let r = sync(local, mine, SyncOptions::new(Mode::Both)).await;
    let _ = peer.await;
    assert!(local.verify().unwrap().is_ok(), "store invalid after {r:?}");
    assert!(hashes(local).is_superset(&before), "lost nodes after {r:?}");
    r
}

fn local_with_history() -> Replica {
    let r = replica();
    chain(&r.log, 5, "mine");
    r
}

fn nodes(n: usize, tag: &str) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::new();
    for i in 0..n {
        let links: Vec<Hash> = out.last().map(|p| p.hash()).into_iter().collect();
        out.push(Node::new(links, format!("{tag}{i}").into_bytes()).unwrap());
    }
    out
}

#[tokio::test]
async fn wrong_magic() {
    let l = local_with_history();
    let r = against(&l.log, |mut p| async move {
        p.bytes(b"HTTP/1.1 200 OK\r\n").await;
    })
    .await;
    assert!(matches!(r, Err(SyncError::BadMagic { got, .. }) if &got == b"HTTP/1.1"));
}

#[tokio::test]
async fn wrong_version() {
    let l = local_with_history();
    let r = against(&l.log, |mut p| async move {
        let mut pre = MAGIC.to_vec();
        pre.extend_from_slice(&99u32.to_be_bytes());
        p.bytes(&pre).await;
    })
    .await;
    assert!(matches!(
        r,
        Err(SyncError::Version {
            expected: braidlog::sync::wire::PROTOCOL_VERSION,
            got: 99
        })
    ));
}

#[tokio::test]
async fn closes_right_after_the_preamble() {
    let l = local_with_history();
    let r = against(&l.log, |mut p| async move {
        p.bytes(&preamble()).await;
    })
    .await;
    assert!(matches!(r, Err(SyncError::UnexpectedEof { .. })), "{r:?}");
}

#[tokio::test]
async fn message_before_hello() {
    let l = local_with_history();
    let r = against(&l.log, |mut p| async move {
        p.bytes(&preamble()).await;
        p.send(Message::EndStream).await;
        let _ = p.until("never").await;
    })
    .await;
    assert!(
        matches!(
            r,
            Err(SyncError::Unexpected {
                got: "EndStream",
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn truncated_frame() {
    let l = local_with_history();
    let ns = nodes(3, "t");
    let head = ns[2].hash();
    let r = against(&l.log, move |mut p| async move {
        p.handshake(vec![head], &durable_replica().log).await;
        let mut frame = Vec::new();
        encode(&Message::Node(ns[0].encode()), &mut frame);
        p.bytes(&frame[..frame.len() / 2]).await;
    })
    .await;
    assert!(matches!(r, Err(SyncError::UnexpectedEof { .. })), "{r:?}");
}

#[tokio::test]
async fn oversized_frame() {
    let l = local_with_history();
    let log = l.log.clone();
    let r = against(&l.log, move |mut p| async move {
        p.handshake(vec![Hash([9; 32])], &log).await;
        p.bytes(&((MAX_FRAME_BYTES + 1) as u32).to_le_bytes()).await;
        p.bytes(&[3; 64]).await;
    })
    .await;
    assert!(matches!(r, Err(SyncError::FrameTooLarge { got, .. }) if got == MAX_FRAME_BYTES + 1));
}

#[tokio::test]
async fn invalid_node_bytes() {
    let l = local_with_history();
    let log = l.log.clone();
    let r = against(&l.log, move |mut p| async move {
        p.handshake(vec![Hash([9; 32])], &log).await;
        let mut bytes = Node::new([], b"x".to_vec()).unwrap().encode();
        bytes.push(0); // trailing byte: not canonical
        p.send(Message::Node(bytes)).await;
        let _ = p.until("never").await;
    })
    .await;
    assert!(matches!(r, Err(SyncError::InvalidNode { .. })), "{r:?}");
}

#[tokio::test]
async fn node_bytes_do_not_match_the_announced_head() {
    let l = local_with_history();
    let log = l.log.clone();
    let real = Node::new([], b"real".to_vec()).unwrap();
    let fake = Node::new([], b"fake".to_vec()).unwrap();
    let announced = real.hash();
    let r = against(&l.log, move |mut p| async move {
        p.handshake(vec![announced], &log).await;
        p.send(Message::Node(fake.encode())).await;
        p.send(Message::EndStream).await;
        // Asked for the head it announced, it sends nothing again.
        let want = p.until("Want").await;
        assert_eq!(want, Message::Want(vec![announced]));
        p.send(Message::EndStream).await;
        let _ = p.until("never").await;
    })
    .await;
    assert!(
        matches!(r, Err(SyncError::MissingHead { hash, .. }) if hash == announced),
        "{r:?}"
    );
}

#[tokio::test]
async fn node_with_a_link_never_sent() {
    let l = local_with_history();
    let log = l.log.clone();
    let ns = nodes(3, "gap");
    let missing = ns[1].hash();
    let r = against(&l.log, move |mut p| async move {
        p.handshake(vec![ns[2].hash()], &log).await;
        p.send(Message::Node(ns[0].encode())).await;
        p.send(Message::Node(ns[2].encode())).await;
        p.send(Message::EndStream).await;
        let want = p.until("Want").await;
        assert_eq!(want, Message::Want(vec![missing]));
        p.send(Message::EndStream).await;
        let _ = p.until("never").await;
    })
    .await;
    assert!(
        matches!(r, Err(SyncError::MissingLink { link, .. }) if link == missing),
        "{r:?}"
    );
    // The node before the gap was checked and kept.
    assert_eq!(l.log.len().unwrap(), 6);
}

#[tokio::test]
async fn stops_mid_stream_and_the_next_sync_resumes() {
    let l = local_with_history();
    let source = replica();
    chain(&source.log, 10, "src");
    let feed: Vec<Vec<u8>> = source
        .log
        .changes(0)
        .map(|c| c.unwrap().node.encode())
        .collect();
    let head = source.log.heads().unwrap();
    let log = l.log.clone();
    let r = against(&l.log, move |mut p| async move {
        p.handshake(head, &log).await;
        for bytes in &feed[..4] {
            p.send(Message::Node(bytes.clone())).await;
        }
        // ... and the connection drops.
    })
    .await;
    assert!(matches!(r, Err(SyncError::UnexpectedEof { .. })), "{r:?}");
    assert_eq!(l.log.len().unwrap(), 5 + 4);
    let (rl, _) = both(&l.log, &source.log).await;
    assert_eq!(rl.nodes_received, 6);
    assert_same(&l.log, &source.log);
}

#[tokio::test]
async fn hyperlog_link_after_node_order_is_tolerated_and_never_produced() {
    // Hyperlog could emit a node before its links. braidlog senders never do; receivers hold
    // such a node until its links arrive in the same stream.
    let l = local_with_history();
    let log = l.log.clone();
    let ns = nodes(4, "rev");
    let head = ns[3].hash();
    let r = against(&l.log, move |mut p| async move {
        p.handshake(vec![head], &log).await;
        for n in ns.iter().rev() {
            p.send(Message::Node(n.encode())).await;
        }
        p.send(Message::EndStream).await;
        let _ = p.until("Done").await;
    })
    .await;
    let r = r.unwrap();
    assert_eq!((r.nodes_received, r.round_trips), (4, 1));

    // A sender's stream, read raw: every link comes before the node that names it.
    let src = replica();
    let root = src.log.append(b"root".to_vec()).unwrap();
    for i in 0..20u8 {
        src.log.add([root.hash()], vec![i]).unwrap();
        if i % 4 == 0 {
            src.log.append(vec![b'm', i]).unwrap();
        }
    }
    let (mine, theirs) = tokio::io::duplex(1 << 20);
    let src_log = src.log.clone();
    let sender =
        tokio::spawn(async move { sync(&src_log, mine, SyncOptions::new(Mode::Push)).await });
    let mut p = Raw {
        io: theirs,
        dec: Decoder::new(),
    };
    p.bytes(&preamble()).await;
    p.send(Message::Hello(Hello {
        peer: PeerId::random(),
        mode: WireMode {
            send: false,
            receive: true,
            live: false,
        },
        last_seq: 0,
        head_count: 0,
        heads: vec![],
        samples: vec![],
    }))
    .await;
    p.send(Message::Summary(Summary {
        known_heads: vec![0; 1],
        known_samples: vec![0; 2],
        filter: None,
        floor: vec![],
    }))
    .await;
    let mut seen = std::collections::HashSet::new();
    let mut prev = braidlog::sync::wire::delta::Prev::default();
    loop {
        let b = match p.until_any().await {
            Message::Node(b) => b,
            Message::NodeDelta(d) => braidlog::sync::wire::delta::expand(&prev, &d).unwrap(),
            Message::EndStream => break,
            _ => continue,
        };
        let n = Node::decode(&b).unwrap();
        prev.note(n.hash(), &b);
        assert!(n.links().iter().all(|l| seen.contains(l)));
        seen.insert(n.hash());
    }
    assert_eq!(seen.len() as u64, src.log.len().unwrap());
    p.send(Message::Done).await;
    sender.await.unwrap().unwrap();
}

impl Raw {
    async fn until_any(&mut self) -> Message {
        let mut buf = vec![0u8; 4096];
        loop {
            if let Some(m) = self.dec.next_message().unwrap() {
                return m;
            }
            let n = self.io.read(&mut buf).await.unwrap();
            assert!(n > 0);
            self.dec.push(&buf[..n]);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stalls_mid_stream_times_out() {
    let l = local_with_history();
    let log = l.log.clone();
    let ns = nodes(3, "stall");
    let head = ns[2].hash();
    let (mine, theirs) = tokio::io::duplex(1 << 20);
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let peer = tokio::spawn(async move {
        let mut p = Raw {
            io: theirs,
            dec: Decoder::new(),
        };
        p.handshake(vec![head], &log).await;
        p.send(Message::Node(ns[0].encode())).await;
        // Keeps the connection open, silent, until the test ends.
        let _ = hold_rx.await;
        drop(p);
    });
    let opts = SyncOptions {
        idle_timeout: Some(std::time::Duration::from_secs(30)),
        ..SyncOptions::new(Mode::Both)
    };
    let r = sync(&l.log, mine, opts).await;
    assert!(matches!(r, Err(SyncError::Timeout { .. })), "{r:?}");
    assert_verified(&l.log);
    assert_eq!(l.log.len().unwrap(), 6, "the node before the stall is kept");
    let _ = hold_tx.send(());
    peer.await.unwrap();
}

#[tokio::test]
async fn a_want_flood_from_a_peer_that_never_reads_is_refused() {
    // 91 KB of Wants took a 200k-node server to 3.76 GB: each queued the whole log again.
    let local = local_with_history();
    chain(&local.log, 2_000, "more");
    let newest = local.log.heads().unwrap()[0];
    let r = against(&local.log, move |mut p| async move {
        p.bytes(&preamble()).await;
        p.send(Message::Hello(Hello {
            peer: PeerId::random(),
            mode: WireMode {
                send: false,
                receive: true,
                live: false,
            },
            last_seq: 0,
            head_count: 0,
            heads: vec![],
            samples: vec![],
        }))
        .await;
        p.send(Message::Summary(Summary {
            known_heads: vec![],
            known_samples: vec![],
            filter: None,
            floor: vec![],
        }))
        .await;
        for _ in 0..2_000 {
            p.send(Message::Want(vec![newest])).await;
        }
        // Never reads; holds the connection until the local side gives up.
        let mut buf = [0u8; 1];
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), p.io.read(&mut buf)).await;
    })
    .await;
    assert!(matches!(r, Err(SyncError::TooManyWants { .. })), "{r:?}");
}
