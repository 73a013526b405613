//! The `Log` through its public API: persistence, errors, feed, subscriptions, map growth,
//! and the laws every sequence of writes must keep.

use std::collections::{BTreeSet, HashSet};

use braidlog::{Hash, Inserted, Log, LogError, LogOptions, Node, NodeError};
use quickcheck::{quickcheck, Gen, TestResult};

mod common;

use common::{assert_verified, durable_replica, hashes, replica_with, small_map, Replica};

/// Builds a random DAG in memory: op `i` links to the nodes picked by `picks` among 0..i.
fn build_dag(ops: &[(Vec<u8>, u8)]) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, (picks, payload)) in ops.iter().enumerate() {
        let links: Vec<Hash> = if i == 0 {
            vec![]
        } else {
            picks
                .iter()
                .take(4)
                .map(|p| nodes[*p as usize % i].hash())
                .collect()
        };
        nodes.push(Node::new(links, vec![*payload, i as u8]).unwrap());
    }
    nodes
}

fn brute_force_heads(nodes: &[Node]) -> Vec<Hash> {
    let linked: HashSet<Hash> = nodes.iter().flat_map(|n| n.links().to_vec()).collect();
    let all: BTreeSet<Hash> = nodes.iter().map(Node::hash).collect();
    all.into_iter().filter(|h| !linked.contains(h)).collect()
}

/// A random topological order of `nodes`, driven by `seed`.
fn shuffled_topological(nodes: &[Node], seed: u64) -> Vec<Node> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut placed: HashSet<Hash> = HashSet::new();
    let mut pending: Vec<Node> = nodes.to_vec();
    let mut out = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].links().iter().all(|l| placed.contains(l)))
            .collect();
        let pick = ready[next() as usize % ready.len()];
        let n = pending.swap_remove(pick);
        placed.insert(n.hash());
        out.push(n);
    }
    out
}

#[test]
fn reopens_with_everything_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (heads, feed, peer) = {
        let log = Log::open(dir.path()).unwrap();
        let a = log.append(b"one".to_vec()).unwrap();
        log.add([a.hash()], b"two".to_vec()).unwrap();
        log.add([a.hash()], b"three".to_vec()).unwrap();
        let feed: Vec<_> = log.changes(0).map(|c| c.unwrap()).collect();
        (log.heads().unwrap(), feed, log.peer_id())
    };
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.heads().unwrap(), heads);
    assert_eq!(log.changes(0).map(|c| c.unwrap()).collect::<Vec<_>>(), feed);
    assert_eq!(log.peer_id(), peer, "the peer id survives a reopen");
    assert_eq!(log.len().unwrap(), 3);
    assert_verified(&log);
    let next = log.append(b"four".to_vec()).unwrap();
    assert_eq!(log.seq_of(&next.hash()).unwrap(), Some(4));
}

#[test]
fn add_rejects_a_missing_link_and_changes_nothing() {
    let Replica { dir: _d, log } = durable_replica();
    let a = log.append(b"a".to_vec()).unwrap();
    let ghost = Hash::of(b"never stored");
    let err = log.add([a.hash(), ghost], b"b".to_vec()).unwrap_err();
    assert!(
        matches!(err, LogError::MissingLink { link, .. } if link == ghost),
        "{err}"
    );
    assert_eq!(log.len().unwrap(), 1);
    assert_eq!(log.heads().unwrap(), vec![a.hash()]);
}

#[test]
fn a_batch_is_all_or_nothing() {
    let Replica { dir: _d, log } = durable_replica();
    let a = Node::new([], b"a".to_vec()).unwrap();
    let b = Node::new([a.hash()], b"b".to_vec()).unwrap();
    let bad = Node::new([Hash::of(b"nowhere")], b"c".to_vec()).unwrap();
    let err = log.insert(&[a.clone(), b.clone(), bad]).unwrap_err();
    assert!(matches!(err, LogError::MissingLink { .. }));
    assert!(log.is_empty().unwrap());
    assert_eq!(log.last_seq().unwrap(), 0);

    log.set_identity(None); // unsigned, so the ids are those built above
    let added = log
        .transaction(|w| {
            [(vec![], b"a".to_vec()), (vec![a.hash()], b"b".to_vec())]
                .into_iter()
                .map(|(l, p)| w.add(l, p))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    assert_eq!(added, vec![a, b.clone()]);
    assert_eq!(log.heads().unwrap(), vec![b.hash()]);
}

#[test]
fn insert_is_idempotent_and_checks_bytes() {
    let Replica { dir: _d, log } = durable_replica();
    let a = Node::new([], b"a".to_vec()).unwrap();
    assert_eq!(log.insert(&[&a]).unwrap(), [Inserted::New(1)]);
    assert_eq!(log.insert(&[&a]).unwrap(), [Inserted::Existing(1)]);
    assert_eq!(
        log.insert(&[Node::decode(&a.encode()).unwrap()]).unwrap(),
        [Inserted::Existing(1)]
    );
    let mut bad = a.encode();
    bad.push(0);
    assert!(matches!(
        Node::decode(&bad),
        Err(NodeError::TrailingBytes { extra: 1 })
    ));
    assert_eq!(log.len().unwrap(), 1);
    assert_eq!(log.get(&a.hash()).unwrap(), Some(a.clone()));
    assert_eq!(log.get_by_seq(1).unwrap(), Some(a));
    assert_eq!(log.get(&Hash::of(b"x")).unwrap(), None);
}

#[test]
fn limits_are_enforced_on_add() {
    let Replica { dir: _d, log } = durable_replica();
    let err = log
        .add([], vec![0; braidlog::MAX_PAYLOAD_BYTES + 1])
        .unwrap_err();
    assert!(matches!(
        err,
        LogError::Node(NodeError::PayloadTooLarge { .. })
    ));
    assert!(log.is_empty().unwrap());
}

#[test]
fn changes_resume_from_a_seq() {
    let Replica { dir: _d, log } = durable_replica();
    let nodes: Vec<Node> = (0..1500u32)
        .map(|i| log.append(i.to_be_bytes().to_vec()).unwrap())
        .collect();
    let tail: Vec<Hash> = log.changes(1200).map(|c| c.unwrap().node.hash()).collect();
    assert_eq!(
        tail,
        nodes[1200..].iter().map(Node::hash).collect::<Vec<_>>()
    );
    let raw: Vec<u64> = log.changes(0).raw().map(|c| c.unwrap().seq).collect();
    assert_eq!(raw, (1..=1500).collect::<Vec<_>>());
}

#[test]
fn walk_back_visits_each_ancestor_once_in_descending_order() {
    let Replica { dir: _d, log } = durable_replica();
    let a = log.append(b"a".to_vec()).unwrap();
    let b = log.add([a.hash()], b"b".to_vec()).unwrap();
    let c = log.add([a.hash()], b"c".to_vec()).unwrap();
    let d = log.add([b.hash(), c.hash()], b"d".to_vec()).unwrap();
    let mut seen = Vec::new();
    log.walk_back([d.hash()], |seq, _| {
        seen.push(seq);
        Ok(true)
    })
    .unwrap();
    assert_eq!(seen, vec![4, 3, 2, 1]);
    let mut pruned = Vec::new();
    log.walk_back([d.hash()], |seq, n| {
        pruned.push(seq);
        Ok(n.hash() != c.hash())
    })
    .unwrap();
    assert_eq!(pruned, vec![4, 3, 2, 1], "a is still reached through b");
}

#[test]
fn subscribers_hear_of_commits_from_other_threads() {
    let Replica { dir: _d, log } = durable_replica();
    let mut sub = log.subscribe();
    assert_eq!(sub.latest(), 0);
    let writer = log.clone();
    let t = std::thread::spawn(move || {
        writer
            .transaction(|w| {
                (0..10u8)
                    .map(|i| (vec![], vec![i]))
                    .map(|(l, p)| w.add(l, p))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
    });
    assert_eq!(
        sub.wait_blocking(),
        Some(10),
        "one notification for the whole batch"
    );
    t.join().unwrap();
}

#[tokio::test]
async fn subscribers_work_in_async_code() {
    let Replica { dir: _d, log } = durable_replica();
    let mut sub = log.subscribe();
    let writer = log.clone();
    tokio::task::spawn_blocking(move || writer.append(b"x".to_vec()).unwrap());
    assert_eq!(sub.changed().await, Some(1));
}

#[test]
fn many_threads_write_and_read_one_log() {
    let Replica { dir: _d, log } = durable_replica();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    log.append(vec![t, i]).unwrap();
                    log.heads().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.len().unwrap(), 200);
    assert_eq!(
        log.heads().unwrap().len(),
        1,
        "append links every head, read in its own txn"
    );
    assert_verified(&log);
}

#[test]
fn the_map_grows_past_its_initial_size() {
    let Replica { dir, log } = replica_with(small_map());
    let initial = log.map_size();
    // 16 MiB of payload through single adds and a batch, against a 1 MiB map.
    for i in 0..64u32 {
        log.append(vec![i as u8; 128 << 10]).unwrap();
    }
    let batch: Vec<_> = (0..64u32)
        .map(|i| Node::new([], vec![(i + 7) as u8; 128 << 10]).unwrap())
        .collect();
    log.insert(&batch).unwrap();
    assert!(
        log.map_size() >= 16 * initial,
        "map grew from {initial} to {}",
        log.map_size()
    );
    assert_eq!(log.len().unwrap(), 128);
    assert_verified(&log);
    drop(log);
    let log = Log::open_with(
        dir.path(),
        LogOptions {
            map_size: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        log.len().unwrap(),
        128,
        "reopening with a small map size still reads everything"
    );
}

#[test]
fn a_copied_directory_gets_a_new_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("a");
    let copy = dir.path().join("b");
    let id = {
        let log = Log::open(&original).unwrap();
        log.append(b"x".to_vec()).unwrap();
        log.peer_id()
    };
    std::fs::create_dir(&copy).unwrap();
    for f in ["data.mdb", "lock.mdb"] {
        std::fs::copy(original.join(f), copy.join(f)).unwrap();
    }
    let copied = Log::open(&copy).unwrap();
    assert_ne!(copied.peer_id(), id);
    assert_eq!(copied.len().unwrap(), 1, "the data came along");
    let reopened = Log::open(&original).unwrap();
    assert_eq!(reopened.peer_id(), id);
}

fn prop_adds_keep_invariants(ops: Vec<(Vec<u8>, u8)>) -> TestResult {
    let Replica { dir: _d, log } = durable_replica();
    log.set_identity(None); // unsigned, so the ids are those `build_dag` computed
    let nodes = build_dag(&ops);
    for n in &nodes {
        log.add(n.links().to_vec(), n.payload().to_vec()).unwrap();
    }
    let report = log.verify().unwrap();
    TestResult::from_bool(
        report.is_ok()
            && report.nodes == nodes.len() as u64
            && log.heads().unwrap() == brute_force_heads(&nodes),
    )
}

fn prop_any_topological_order_gives_the_same_replica(ops: Vec<(Vec<u8>, u8)>, seed: u64) -> bool {
    let nodes = build_dag(&ops);
    let Replica {
        dir: _d1,
        log: first,
    } = durable_replica();
    let Replica {
        dir: _d2,
        log: second,
    } = durable_replica();
    first.insert(&nodes).unwrap();
    for n in shuffled_topological(&nodes, seed) {
        second.insert(&[&n]).unwrap();
    }
    first.heads().unwrap() == second.heads().unwrap()
        && hashes(&first) == hashes(&second)
        && second.verify().unwrap().is_ok()
}

fn prop_reinserting_is_idempotent(ops: Vec<(Vec<u8>, u8)>, seed: u64) -> bool {
    let nodes = build_dag(&ops);
    let Replica { dir: _d, log } = durable_replica();
    log.insert(&nodes).unwrap();
    let (heads, last) = (log.heads().unwrap(), log.last_seq().unwrap());
    let again = log.insert(&shuffled_topological(&nodes, seed)).unwrap();
    again.iter().all(|i| matches!(i, Inserted::Existing(_)))
        && log.heads().unwrap() == heads
        && log.last_seq().unwrap() == last
}

#[test]
fn properties() {
    // Each case opens LMDB environments, so keep the case count moderate.
    let mut qc = quickcheck::QuickCheck::new().tests(60).rng(Gen::new(40));
    qc.quickcheck(prop_adds_keep_invariants as fn(Vec<(Vec<u8>, u8)>) -> TestResult);
    qc.quickcheck(
        prop_any_topological_order_gives_the_same_replica as fn(Vec<(Vec<u8>, u8)>, u64) -> bool,
    );
    qc.quickcheck(prop_reinserting_is_idempotent as fn(Vec<(Vec<u8>, u8)>, u64) -> bool);
}

quickcheck! {
    fn prop_insert_bytes_never_panics_and_never_corrupts(bytes: Vec<u8>) -> bool {
        let Replica { dir: _d, log } = durable_replica();
        let mut v = bytes;
        v.insert(0, 1);
        let _ = Node::decode(&v).map(|n| log.insert(&[n]));
        log.verify().unwrap().is_ok()
    }
}

#[test]
fn opening_an_open_directory_shares_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let first = Log::open(dir.path()).unwrap();
    let second = Log::open(dir.path().join(".")).unwrap();
    let node = first.append(b"shared".to_vec()).unwrap();
    assert!(second.contains(&node.hash()).unwrap());
    assert_eq!(first.peer_id(), second.peer_id());
}
