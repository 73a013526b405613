//! Live fan-out by gossip, in one process on loopback: 20 replicas converge on every write
//! and verify, a late joiner catches up, and every bound on what a gossip peer sends holds
//! past its size. Every wait is on an event, bounded by a timeout that fails the test.
#![cfg(feature = "iroh")]

mod common;

use std::time::Duration;

use braidlog::sync::gossip::{
    Announce, Fanout, GossipLimits, GossipOptions, GossipStats, Topic, MAX_ANNOUNCE_BYTES,
};
use braidlog::sync::iroh::{Access, IrohConfig, IrohNode, IrohServeOptions, Ticket};
use braidlog::sync::SyncOptions;
use braidlog::{Hash, Identity, Log};
use common::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(120);

/// One replica on loopback: its log, node, server and fan-out.
struct Member {
    r: Replica,
    node: IrohNode,
    fanout: Fanout,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Member {
    async fn join(topic: Topic, bootstrap: &[Ticket], options: GossipOptions) -> Member {
        let r = replica();
        let config = IrohConfig {
            bind: Some("127.0.0.1:0".parse().unwrap()),
            gossip: true,
            ..Default::default()
        };
        let node = within(LIMIT, "bind", IrohNode::bind(&r.log, config))
            .await
            .unwrap();
        let (stop, rx) = oneshot::channel();
        let n = node.clone();
        let serve = IrohServeOptions {
            access: Access::Anyone,
            ..Default::default()
        };
        let server = tokio::spawn(async move {
            n.serve(serve, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let fanout = within(LIMIT, "join", node.join_gossip(topic, bootstrap, options))
            .await
            .unwrap();
        Member {
            r,
            node,
            fanout,
            stop,
            server,
        }
    }

    fn log(&self) -> &Log {
        &self.r.log
    }

    async fn leave(self) {
        self.fanout.shutdown().await;
        let _ = self.stop.send(());
        let _ = within(LIMIT, "server", self.server).await;
        self.node.close().await;
    }
}

fn options() -> GossipOptions {
    GossipOptions {
        access: Access::Anyone,
        // Short, so a lost announcement is repaired within a test's patience.
        reannounce: Duration::from_secs(2),
        ..Default::default()
    }
}

async fn swarm(n: usize, topic: Topic) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::new();
    for i in 0..n {
        // Each joins through up to two earlier members: the topic is one swarm, not a star.
        let boot: Vec<Ticket> = members
            .iter()
            .rev()
            .take(2)
            .map(|m| m.node.ticket())
            .collect();
        let m = Member::join(topic, &boot, options()).await;
        if i == 0 {
            chain(m.log(), 100, "seed");
        }
        members.push(m);
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_replicas_converge_and_a_late_joiner_catches_up() {
    let topic = Topic::named("twenty");
    let members = swarm(20, topic).await;
    let seed: Vec<Hash> = members[0].log().heads().unwrap();
    let mut written = seed.clone();
    // Writes on several replicas, some at once.
    for (round, w) in [3usize, 11, 19, 0, 7].into_iter().enumerate() {
        let n = members[w]
            .log()
            .append(format!("write {round} on {w}").into_bytes())
            .unwrap();
        written.push(n.hash());
        if round % 2 == 1 {
            continue; // let the next write overlap this one's fan-out
        }
        for m in &members {
            within(LIMIT, "fan-out", until_has_all(m.log(), &written)).await;
        }
    }
    for m in &members {
        within(LIMIT, "fan-out", until_has_all(m.log(), &written)).await;
    }
    // All heads agree once the merge writes settle: wait for every replica to reach the
    // union of everything written anywhere.
    let everything = || {
        let mut all = std::collections::BTreeSet::new();
        for m in &members {
            all.extend(hashes(m.log()));
        }
        all
    };
    within(LIMIT, "convergence", async {
        loop {
            let all: Vec<Hash> = everything().into_iter().collect();
            let mut done = true;
            for m in &members {
                if !all.iter().all(|h| m.log().contains(h).unwrap()) {
                    done = false;
                    until_has_all(m.log(), &all).await;
                }
            }
            if done {
                break;
            }
        }
    })
    .await;
    for m in &members {
        assert_verified(m.log());
        assert_eq!(hashes(m.log()), hashes(members[0].log()));
    }
    // A late joiner, through one member's ticket, gets the whole history.
    let late = Member::join(topic, &[members[5].node.ticket()], options()).await;
    let all: Vec<Hash> = hashes(members[0].log()).into_iter().collect();
    within(LIMIT, "late joiner", until_has_all(late.log(), &all)).await;
    assert_verified(late.log());
    // And its own write reaches everyone.
    let n = late.log().append(b"from the late joiner".to_vec()).unwrap();
    for m in &members {
        within(LIMIT, "late write", until_has_all(m.log(), &[n.hash()])).await;
    }
    let s: Vec<GossipStats> = members.iter().map(|m| m.fanout.stats()).collect();
    assert!(s.iter().map(|s| s.fetches).sum::<u64>() > 0);
    assert_eq!(s.iter().map(|s| s.malformed + s.too_large).sum::<u64>(), 0);
    // Together: an endpoint's close waits a while for peers that already left.
    let mut leaving = tokio::task::JoinSet::new();
    for m in members.into_iter().chain([late]) {
        leaving.spawn(m.leave());
    }
    within(LIMIT, "leaving", leaving.join_all()).await;
}

/// Waits until the victim has counted `n` announcements, whatever it did with them.
async fn until_counted(f: &Fanout, n: u64) -> GossipStats {
    let mut w = f.watch();
    let counted =
        |s: &GossipStats| s.received + s.too_large + s.malformed + s.rate_limited + s.refused >= n;
    let r = tokio::time::timeout(LIMIT, w.wait_for(counted)).await;
    match r {
        Ok(s) => s.unwrap().clone(),
        Err(_) => panic!("counted fewer than {n} within {LIMIT:?}: {:?}", f.stats()),
    }
}

/// A hostile member: a gossip endpoint that broadcasts whatever bytes it likes.
async fn attacker(topic: Topic, victim: &Member) -> (IrohNode, iroh_gossip::api::GossipSender) {
    let r = replica();
    let config = IrohConfig {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        gossip: true,
        ..Default::default()
    };
    let node = IrohNode::bind(&r.log, config).await.unwrap();
    node.add_peer(&victim.node.ticket());
    let id = iroh::PublicKey::from_bytes(victim.node.id().as_bytes()).unwrap();
    let topic = iroh_gossip::TopicId::from_bytes(topic.0);
    let gossip = node.gossip().unwrap();
    let sub = within(
        LIMIT,
        "attacker join",
        gossip.subscribe_and_join(topic, vec![id]),
    )
    .await
    .unwrap();
    let (tx, rx) = sub.split();
    // Kept, so the attacker stays in the topic; dropped with the test's runtime.
    tokio::spawn(async move {
        let _keep = (rx, r);
        std::future::pending::<()>().await
    });
    (node, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_past_their_size_or_malformed_are_dropped() {
    let topic = Topic::named("size");
    let victim = Member::join(topic, &[], options()).await;
    let (_x, tx) = attacker(topic, &victim).await;
    let mut sent = 0;
    for i in 0..5u8 {
        // Just past the bound, and far past it (iroh-gossip's own cap is larger).
        for len in [MAX_ANNOUNCE_BYTES + 1, 3000] {
            tx.broadcast(vec![i; len].into()).await.unwrap();
            sent += 1;
        }
        tx.broadcast(vec![0xff, i, 1, 2, 3].into()).await.unwrap();
        sent += 1;
    }
    let s = until_counted(&victim.fanout, sent).await;
    assert_eq!((s.too_large, s.malformed, s.received), (10, 5, 0), "{s:?}");
    assert_eq!(victim.log().len().unwrap(), 0);
    victim.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbour_over_its_rate_is_cut_off() {
    let topic = Topic::named("rate");
    let limits = GossipLimits {
        burst: 10,
        per_sec: 1,
        ..Default::default()
    };
    let victim = Member::join(
        topic,
        &[],
        GossipOptions {
            limits,
            ..options()
        },
    )
    .await;
    let (_x, tx) = attacker(topic, &victim).await;
    let started = std::time::Instant::now();
    let sent = 300u64;
    let me = Identity::generate().public_key();
    for i in 0..sent {
        // Distinct announcements (gossip drops repeats), of no heads: only the count matters.
        let a = Announce::new(me, &[], &[], i);
        tx.broadcast(a.encode().into()).await.unwrap();
    }
    let s = until_counted(&victim.fanout, sent).await;
    let secs = started.elapsed().as_secs() + 1;
    assert!(s.received <= 10 + secs, "{s:?} in {secs}s");
    assert_eq!(s.received + s.rate_limited, sent, "{s:?}");
    victim.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_fetches_are_bounded() {
    let topic = Topic::named("pending");
    let limits = GossipLimits {
        burst: 10_000,
        per_sec: 10_000,
        max_pending: 8,
        max_fetches: 1,
    };
    let mut opts = options();
    opts.limits = limits;
    // Fetches from announcers nobody can reach fail, each within this.
    opts.session = SyncOptions {
        handshake_timeout: Some(Duration::from_secs(30)),
        ..SyncOptions::default()
    };
    let victim = Member::join(topic, &[], opts).await;
    let (_x, tx) = attacker(topic, &victim).await;
    let sent = 200u64;
    for i in 0..sent {
        // 200 different announcers, each claiming a head the victim lacks, unreachable
        // (a loopback port nobody listens on).
        let who = Identity::generate().public_key();
        let head = Hash::of(&i.to_be_bytes());
        let a = Announce::new(who, &["127.0.0.1:9".parse().unwrap()], &[head], 1);
        tx.broadcast(a.encode().into()).await.unwrap();
    }
    let s = until_counted(&victim.fanout, sent).await;
    assert_eq!(s.received, sent, "{s:?}");
    assert!(s.pending_peak <= 8, "{s:?}");
    assert!(s.in_flight <= 1, "{s:?}");
    // At most the waiting ones and the one in flight were kept; the rest were dropped.
    assert!(
        s.pending_dropped >= sent - 8 - 1 - s.fetch_failures,
        "{s:?}"
    );
    assert_eq!(victim.log().len().unwrap(), 0);
    victim.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_from_keys_not_allowed_are_ignored() {
    let topic = Topic::named("access");
    let friend = Identity::generate().public_key();
    let mut opts = options();
    opts.access = Access::Keys([friend].into());
    let victim = Member::join(topic, &[], opts).await;
    // The attacker's own key must pass the server to connect at all: this victim's server
    // admits anyone, its fan-out only `friend`.
    let (_x, tx) = attacker(topic, &victim).await;
    for i in 0..20u64 {
        let who = Identity::generate().public_key();
        let a = Announce::new(who, &[], &[Hash::of(&i.to_be_bytes())], 1);
        tx.broadcast(a.encode().into()).await.unwrap();
    }
    let s = until_counted(&victim.fanout, 20).await;
    assert_eq!((s.refused, s.received, s.pending), (20, 0, 0), "{s:?}");
    victim.leave().await;
}
