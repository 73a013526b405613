//! Sync over iroh on loopback, relays off: clone, two-sided, three replicas, live, and a key
//! the server refuses. Every wait is on an event and bounded by a timeout that fails the test.
#![cfg(feature = "iroh")]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braidlog::sync::iroh::{
    Access, IrohConfig, IrohError, IrohEvent, IrohNode, IrohServeOptions, IrohServeReport, Ticket,
};
use braidlog::sync::{Mode, SyncOptions};
use braidlog::{Log, PublicKey};
use common::*;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(60);

async fn node(log: &Log) -> IrohNode {
    let config = IrohConfig {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    within(LIMIT, "bind", IrohNode::bind(log, config))
        .await
        .unwrap()
}

struct Server {
    node: IrohNode,
    stop: oneshot::Sender<()>,
    task: JoinHandle<IrohServeReport>,
    refused: Arc<Mutex<Vec<PublicKey>>>,
}

impl Server {
    async fn start(log: &Log, access: Access, session: SyncOptions) -> Server {
        let node = node(log).await;
        let refused = Arc::new(Mutex::new(Vec::new()));
        let seen = refused.clone();
        let options = IrohServeOptions {
            access,
            session,
            on_event: Some(Arc::new(move |e| {
                if let IrohEvent::Refused { peer } = e {
                    seen.lock().unwrap().push(peer);
                }
            })),
            ..Default::default()
        };
        let (stop, rx) = oneshot::channel();
        let n = node.clone();
        let task = tokio::spawn(async move {
            n.serve(options, async {
                let _ = rx.await;
            })
            .await
            .unwrap()
        });
        Server {
            node,
            stop,
            task,
            refused,
        }
    }

    fn ticket(&self) -> Ticket {
        // What a user copies is the text: go through it.
        self.node.ticket().to_string().parse().unwrap()
    }

    async fn stop(self) -> IrohServeReport {
        let _ = self.stop.send(());
        let r = within(LIMIT, "server stop", self.task).await.unwrap();
        self.node.close().await;
        r
    }
}

fn keys(nodes: &[&IrohNode]) -> Access {
    Access::Keys(nodes.iter().map(|n| n.id()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_key_is_the_signing_identity() {
    let a = replica();
    let n = node(&a.log).await;
    let signer = a.log.identity().unwrap().expect("signing on by default");
    assert_eq!(n.id(), signer.public_key());
    assert_eq!(n.ticket().id(), n.id());
    assert!(n.ticket().addrs().iter().all(|a| a.ip().is_loopback()));
    n.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_over_iroh() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 2000, "a");
    let client = node(&b.log).await;
    let srv = Server::start(&a.log, keys(&[&client]), SyncOptions::default()).await;
    let r = within(
        LIMIT,
        "clone",
        client.connect(&srv.ticket(), SyncOptions::new(Mode::Pull)),
    )
    .await
    .unwrap();
    assert_eq!(r.nodes_received, 2000);
    assert_same(&a.log, &b.log);
    let report = srv.stop().await;
    assert_eq!((report.sessions, report.failed, report.refused), (1, 0, 0));
    assert_eq!(report.nodes_sent, 2000);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sided_over_iroh() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 300, "a");
    chain(&b.log, 200, "b");
    let client = node(&b.log).await;
    let srv = Server::start(&a.log, keys(&[&client]), SyncOptions::default()).await;
    let r = within(
        LIMIT,
        "sync",
        client.connect(&srv.ticket(), SyncOptions::new(Mode::Both)),
    )
    .await
    .unwrap();
    assert_eq!((r.nodes_received, r.nodes_sent), (300, 200));
    assert_same(&a.log, &b.log);
    srv.stop().await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_converge_through_one_server() {
    let (a, b, c) = (replica(), replica(), replica());
    chain(&a.log, 50, "a");
    chain(&b.log, 60, "b");
    chain(&c.log, 70, "c");
    let (nb, nc) = (node(&b.log).await, node(&c.log).await);
    let srv = Server::start(&a.log, keys(&[&nb, &nc]), SyncOptions::default()).await;
    let t = srv.ticket();
    let both = || SyncOptions::new(Mode::Both);
    within(LIMIT, "b", nb.connect(&t, both())).await.unwrap();
    within(LIMIT, "c", nc.connect(&t, both())).await.unwrap();
    // b learns c's nodes through a.
    within(LIMIT, "b again", nb.connect(&t, both()))
        .await
        .unwrap();
    assert_same(&a.log, &b.log);
    assert_same(&a.log, &c.log);
    assert_eq!(a.log.len().unwrap(), 180);
    srv.stop().await;
    nb.close().await;
    nc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_over_iroh_both_ways() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 10, "before");
    let client = node(&b.log).await;
    let srv = Server::start(&a.log, keys(&[&client]), SyncOptions::default()).await;
    let (stop_tx, stop) = watch::channel(false);
    let options = SyncOptions {
        shutdown: Some(stop),
        ..SyncOptions::new(Mode::Both).live()
    };
    let (c, t) = (client.clone(), srv.ticket());
    let session = tokio::spawn(async move { c.connect(&t, options).await });
    let n = a.log.append(b"after".to_vec()).unwrap();
    within(LIMIT, "a node to arrive", until_has(&b.log, n.hash())).await;
    let m = b.log.append(b"reply".to_vec()).unwrap();
    within(LIMIT, "a node to arrive", until_has(&a.log, m.hash())).await;
    stop_tx.send(true).unwrap();
    let r = within(LIMIT, "live close", session).await.unwrap().unwrap();
    assert!(r.nodes_received >= 11 && r.nodes_sent >= 1, "{r:?}");
    assert_same(&a.log, &b.log);
    srv.stop().await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_learns_nothing() {
    let (a, friend, stranger) = (replica(), replica(), replica());
    chain(&a.log, 500, "secret");
    let (nf, ns) = (node(&friend.log).await, node(&stranger.log).await);
    let srv = Server::start(&a.log, keys(&[&nf]), SyncOptions::default()).await;
    let t = srv.ticket();
    // Many times: whether the refusal is recognised once depended on timing.
    let modes = [Mode::Pull, Mode::Both, Mode::Push];
    for mode in modes.into_iter().cycle().take(30) {
        let r = within(LIMIT, "refused", ns.connect(&t, SyncOptions::new(mode))).await;
        match r {
            Err(IrohError::Refused { by }) => assert_eq!(by, srv.node.id()),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(stranger.log.len().unwrap(), 0, "the stranger got nodes");
    assert_eq!(a.log.len().unwrap(), 500, "the stranger pushed nodes");
    // The allowed key still syncs.
    within(
        LIMIT,
        "friend",
        nf.connect(&t, SyncOptions::new(Mode::Pull)),
    )
    .await
    .unwrap();
    assert_same(&a.log, &friend.log);
    assert_eq!(*srv.refused.lock().unwrap(), vec![ns.id(); 30]);
    let report = srv.stop().await;
    assert_eq!((report.refused, report.sessions), (30, 1));
    nf.close().await;
    ns.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorship_allow_list_is_read_per_connection() {
    let (a, b) = (replica(), replica());
    chain(&a.log, 20, "a");
    let nb = node(&b.log).await;
    let srv = Server::start(&a.log, Access::default(), SyncOptions::default()).await;
    let t = srv.ticket();
    let r = within(
        LIMIT,
        "before trust",
        nb.connect(&t, SyncOptions::new(Mode::Pull)),
    )
    .await;
    assert!(matches!(r, Err(IrohError::Refused { .. })), "{r:?}");
    assert_eq!(b.log.len().unwrap(), 0);
    a.log.trust(nb.id()).unwrap();
    within(
        LIMIT,
        "after trust",
        nb.connect(&t, SyncOptions::new(Mode::Pull)),
    )
    .await
    .unwrap();
    assert_same(&a.log, &b.log);
    a.log.distrust(nb.id()).unwrap();
    let r = within(
        LIMIT,
        "after distrust",
        nb.connect(&t, SyncOptions::new(Mode::Pull)),
    )
    .await;
    assert!(matches!(r, Err(IrohError::Refused { .. })), "{r:?}");
    // A separate reader needs no authorship.
    srv.stop().await;
    let readers: BTreeSet<PublicKey> = [nb.id()].into();
    let srv = Server::start(&a.log, Access::Authors { readers }, SyncOptions::default()).await;
    within(
        LIMIT,
        "reader",
        nb.connect(&srv.ticket(), SyncOptions::new(Mode::Pull)),
    )
    .await
    .unwrap();
    srv.stop().await;
    nb.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ticket_fails_in_time() {
    let b = replica();
    let nb = node(&b.log).await;
    // A key nobody holds, at a loopback port nobody listens on.
    let ghost = braidlog::Identity::generate().public_key();
    let t = Ticket::new(ghost, vec!["127.0.0.1:9".parse().unwrap()], None);
    let options = SyncOptions {
        handshake_timeout: Some(Duration::from_secs(2)),
        ..SyncOptions::new(Mode::Pull)
    };
    let r = within(LIMIT, "unreachable", nb.connect(&t, options)).await;
    assert!(
        matches!(r, Err(IrohError::Connect { peer, .. }) if peer == ghost),
        "{r:?}"
    );
    nb.close().await;
}
