//! Merge operators across replicas: merges on arrival, convergence in any delivery order,
//! no merge ping-pong between replicas, watch origins, and values an operator cannot read.

use braidlog::kv::MergeFn;
use braidlog::kv::{Counter, CountingSet, KvError, Op};
use braidlog::kv::{KvRead, Write};
use braidlog::sync::SyncStore;
use braidlog::Node;
use braidlog::Origin;

mod common;

use common::KvReplica;

/// A throwaway replica with a counter on `stock/` and a counting set on `tags/`.
fn merge_replica() -> KvReplica {
    let r = common::kv_replica();
    r.kv.register_merge("stock/", Counter).unwrap();
    r.kv.register_merge("tags/", CountingSet).unwrap();
    r
}

/// Everything `to` lacks from `from`, in `from`'s feed order, as one received batch (what
/// sync stores): the stand-in for replication.
fn sync(from: &KvReplica, to: &KvReplica) {
    let nodes = missing(from, to);
    if !nodes.is_empty() {
        to.log
            .insert_batch_from(&nodes, from.log.peer_id())
            .unwrap();
    }
}

/// The nodes of `from` that `to` lacks, in `from`'s feed order.
fn missing(from: &KvReplica, to: &KvReplica) -> Vec<Node> {
    from.log
        .changes(0)
        .map(|e| e.unwrap().node)
        .filter(|n| !to.log.contains(&n.hash()).unwrap())
        .collect()
}

/// Syncs every pair until nothing moves; returns the rounds it took.
fn settle(rs: &[KvReplica]) -> usize {
    for round in 0..6 {
        let before: Vec<u64> = rs.iter().map(|r| r.log.len().unwrap()).collect();
        for a in rs {
            for b in rs {
                if !std::ptr::eq(a, b) {
                    sync(a, b);
                }
            }
        }
        if rs.iter().map(|r| r.log.len().unwrap()).collect::<Vec<_>>() == before {
            return round;
        }
    }
    panic!("replicas kept writing merges");
}

#[test]
fn a_counter_merges_on_arrival_and_replicas_that_both_merged_agree() {
    let (a, b) = (merge_replica(), merge_replica());
    Counter::add(&a.kv, "stock/apples", 10).unwrap();
    sync(&a, &b);
    Counter::add(&a.kv, "stock/apples", 1).unwrap();
    Counter::add(&b.kv, "stock/apples", 2).unwrap();
    // Both receive the other's write before either merged: each merges on its own.
    let (len_a, len_b) = (a.log.len().unwrap(), b.log.len().unwrap());
    let to_b = missing(&a, &b);
    let to_a = missing(&b, &a);
    b.log.insert_batch_from(&to_b, a.log.peer_id()).unwrap();
    a.log.insert_batch_from(&to_a, b.log.peer_id()).unwrap();
    for r in [&a, &b] {
        let v = r.kv.get("stock/apples").unwrap().unwrap();
        assert!(!v.is_conflict());
        assert_eq!(Counter::value(&r.kv, "stock/apples").unwrap(), 13);
        assert_eq!(Counter::decode(v.value().unwrap()), Some((13, 0)));
    }
    assert!(a.log.len().unwrap() > len_a && b.log.len().unwrap() > len_b);
    // The two merges are different nodes with one value: once exchanged, nothing runs again.
    assert_eq!(settle(&[a, b]), 1);
}

#[test]
fn watchers_see_the_origin_and_the_conflict_state() {
    let (a, b) = (merge_replica(), merge_replica());
    let mut watch = a.kv.watch_prefix("");
    a.kv.put("plain", b"1".to_vec()).unwrap();
    let e = watch.try_next().unwrap().unwrap();
    assert_eq!((e.origin, e.conflict), (Origin::Local, false));
    sync(&a, &b);
    let root = a.kv.versions("plain").unwrap().hashes()[0];
    b.kv.write(
        "plain",
        Write::from(Op::Put(b"b".to_vec())).superseding([root]),
    )
    .unwrap();
    a.kv.write(
        "plain",
        Write::from(Op::Put(b"a".to_vec())).superseding([root]),
    )
    .unwrap();
    let e = watch.try_next().unwrap().unwrap();
    assert_eq!(e.origin, Origin::Local);
    sync(&b, &a);
    let e = watch.try_next().unwrap().unwrap();
    assert_eq!(e.origin, Origin::Peer(b.log.peer_id()));
    assert!(e.conflict, "no operator on this key: the conflict shows");
    // On a key with an operator the merge is written with the received node: the event
    // says the key is not in conflict, and the merge itself comes next, as a local write.
    Counter::add(&b.kv, "stock/x", 1).unwrap();
    sync(&b, &a);
    Counter::add(&a.kv, "stock/x", 1).unwrap();
    Counter::add(&b.kv, "stock/x", 1).unwrap();
    sync(&b, &a);
    let mut events = Vec::new();
    while let Some(e) = watch.try_next().unwrap() {
        events.push(e);
    }
    let last = events.last().unwrap();
    assert_eq!((last.origin, last.conflict), (Origin::Local, false));
    assert!(events
        .iter()
        .any(|e| e.origin == Origin::Peer(b.log.peer_id())));
    assert_eq!(Counter::value(&a.kv, "stock/x").unwrap(), 3);
}

/// A value the operator cannot read (a hostile peer's bytes) leaves the conflict visible and
/// never fails the sync that delivered it.
#[test]
fn an_operator_that_cannot_read_a_version_leaves_the_conflict() {
    let (a, b) = (merge_replica(), merge_replica());
    Counter::add(&a.kv, "stock/k", 5).unwrap();
    sync(&a, &b);
    let root = b.kv.versions("stock/k").unwrap().hashes()[0];
    b.kv.write(
        "stock/k",
        Write::from(Op::Put(b"junk".to_vec())).superseding([root]),
    )
    .unwrap();
    Counter::add(&a.kv, "stock/k", 1).unwrap();
    sync(&b, &a);
    assert!(a.kv.get("stock/k").unwrap().unwrap().is_conflict());
    let r = Counter::add(&a.kv, "stock/k", 1);
    assert!(
        matches!(r, Err(KvError::Codec { .. })),
        "a typed codec error: {r:?}"
    );
    // A person resolves it; the counter works again from there.
    a.kv.resolve("stock/k", MergeFn::new(|_, _| Counter::encode(7, 0)))
        .unwrap();
    Counter::add(&a.kv, "stock/k", 1).unwrap();
    assert_eq!(Counter::value(&a.kv, "stock/k").unwrap(), 8);
}

#[test]
fn registering_an_operator_merges_existing_conflicts() {
    let r = merge_replica();
    let root =
        r.kv.put("late/k", CountingSet::encode_members([b"a"]))
            .unwrap();
    r.kv.write(
        "late/k",
        Write::from(Op::Put(CountingSet::encode_members([b"a", b"b"]))).superseding([root]),
    )
    .unwrap();
    r.kv.write(
        "late/k",
        Write::from(Op::Put(CountingSet::encode_members(Vec::<Vec<u8>>::new())))
            .superseding([root]),
    )
    .unwrap();
    assert!(r.kv.get("late/k").unwrap().unwrap().is_conflict());
    r.kv.register_merge("late/", CountingSet).unwrap();
    assert!(!r.kv.get("late/k").unwrap().unwrap().is_conflict());
}

/// Criss-cross merges: each level's two versions both merge the previous level's two, so
/// their merge base is two operations and the sum recurses, once per level. The sum stays
/// exact up to the recursion limit (64 levels) and fails with a typed error past it, at the
/// limit and far beyond.
#[test]
fn counters_sum_through_criss_cross_merges_up_to_the_recursion_limit() {
    let r = merge_replica();
    let crossed = |levels: usize| {
        let key = format!("cross/{levels}");
        let root = r.kv.put(&key, Counter::encode(1, 1)).unwrap();
        let mut pair = [root, root];
        let mut sum = 1;
        for level in 0..=levels {
            let links: Vec<_> = if level == 0 {
                vec![root]
            } else {
                pair.to_vec()
            };
            // Deltas 1 and 2 make the two nodes differ; the totals stored are not used.
            pair = [1, 2].map(|d| {
                let op = braidlog::kv::Op::Put(Counter::encode(0, d));
                r.kv.write(&key, Write::from(op).superseding(links.clone()))
                    .unwrap()
            });
            sum += 3;
        }
        (Counter::value(&r.kv, &key), sum)
    };
    for levels in [0, 1, 10, 63] {
        let (value, sum) = crossed(levels);
        assert_eq!(value.unwrap(), sum, "{levels} levels");
    }
    for levels in [64, 100] {
        let (value, _) = crossed(levels);
        assert!(
            matches!(value, Err(braidlog::kv::KvError::Codec { .. })),
            "{levels} levels: {value:?}"
        );
    }
}

#[test]
fn operators_apply_per_namespace_and_longest_prefix() {
    let (a, b) = (merge_replica(), merge_replica());
    for r in [&a, &b] {
        let inv = r.kv.namespace("inv").unwrap();
        inv.register_merge("", Counter).unwrap();
        inv.register_merge("tags/", CountingSet).unwrap(); // longer prefix wins here
    }
    let (ia, ib) = (
        a.kv.namespace("inv").unwrap(),
        b.kv.namespace("inv").unwrap(),
    );
    Counter::add(&ia, "n", 1).unwrap();
    CountingSet::insert(&ia, "tags/t", "x").unwrap();
    sync(&a, &b);
    Counter::add(&ia, "n", 1).unwrap();
    Counter::add(&ib, "n", 1).unwrap();
    CountingSet::insert(&ia, "tags/t", "y").unwrap();
    CountingSet::remove(&ib, "tags/t", "x").unwrap();
    // The root namespace's "stock/" operator does not reach into "inv".
    let root = ib.put("stock/q", b"1".to_vec()).unwrap();
    sync(&a, &b);
    ib.write(
        "stock/q",
        Write::from(Op::Put(b"2".to_vec())).superseding([root]),
    )
    .unwrap();
    ib.write(
        "stock/q",
        Write::from(Op::Put(b"3".to_vec())).superseding([root]),
    )
    .unwrap();
    sync(&b, &a);
    for (r, inv) in [(&a, &ia), (&b, &ib)] {
        assert_eq!(Counter::value(inv, "n").unwrap(), 3);
        assert_eq!(
            CountingSet::members(inv, "tags/t").unwrap(),
            vec![b"y".to_vec()]
        );
        let conflicts: Vec<_> = inv.conflicts().map(|e| e.unwrap().key).collect();
        assert_eq!(
            conflicts,
            vec![b"stock/q".to_vec()],
            "{:?}",
            r.log.peer_id()
        );
    }
}

#[test]
fn history_since_includes_concurrent_writes_that_arrived_earlier() {
    let r = merge_replica();
    let base = r.kv.put("k", b"0".to_vec()).unwrap();
    // `early` arrives first (a lower feed position) but is concurrent with `v`.
    let early =
        r.kv.write("k", Write::from(Op::Put(b"e".to_vec())).superseding([base]))
            .unwrap();
    let v =
        r.kv.write("k", Write::from(Op::Put(b"v".to_vec())).superseding([base]))
            .unwrap();
    let after =
        r.kv.write("k", Write::from(Op::Put(b"a".to_vec())).superseding([v]))
            .unwrap();
    let since: Vec<_> =
        r.kv.history_since("k", v)
            .unwrap()
            .into_iter()
            .map(|e| e.hash)
            .collect();
    let mut want = vec![early, after];
    want.sort_by_key(|h| (h != &early, *h)); // depth 2 before depth 3
    assert_eq!(since, want);
    assert!(r
        .kv
        .history_since("k", after)
        .unwrap()
        .iter()
        .all(|e| e.hash == early));
}

mod props {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    const REPLICAS: usize = 3;

    #[derive(Debug, Clone)]
    enum Step {
        /// Replica adds a delta to the counter, or inserts/removes an element of the set.
        Write {
            at: u8,
            delta: i8,
            element: u8,
            insert: bool,
        },
        /// One replica sends everything it has to another.
        Sync { from: u8, to: u8 },
    }

    impl Arbitrary for Step {
        fn arbitrary(g: &mut Gen) -> Step {
            if bool::arbitrary(g) {
                Step::Write {
                    at: u8::arbitrary(g) % REPLICAS as u8,
                    delta: i8::arbitrary(g),
                    element: u8::arbitrary(g) % 4,
                    insert: bool::arbitrary(g),
                }
            } else {
                Step::Sync {
                    from: u8::arbitrary(g) % REPLICAS as u8,
                    to: u8::arbitrary(g) % REPLICAS as u8,
                }
            }
        }
    }

    fn run(steps: &[Step]) -> (Vec<KvReplica>, i64) {
        let rs: Vec<KvReplica> = (0..REPLICAS).map(|_| merge_replica()).collect();
        let mut sum = 0i64;
        for s in steps {
            match *s {
                Step::Write {
                    at,
                    delta,
                    element,
                    insert,
                } => {
                    let r = &rs[at as usize];
                    Counter::add(&r.kv, "stock/c", i64::from(delta)).unwrap();
                    sum += i64::from(delta);
                    if insert {
                        CountingSet::insert(&r.kv, "tags/s", [element]).unwrap();
                    } else {
                        CountingSet::remove(&r.kv, "tags/s", [element]).unwrap();
                    }
                }
                Step::Sync { from, to } if from != to => sync(&rs[from as usize], &rs[to as usize]),
                Step::Sync { .. } => {}
            }
        }
        (rs, sum)
    }

    /// Every node of every replica delivered to a fresh replica one at a time, each a commit
    /// of its own (so merges run at every step), interleaving the replicas' feeds as `order`
    /// says: one delivery order among many.
    fn deliver(rs: &[KvReplica], order: &[u8]) -> KvReplica {
        let fresh = merge_replica();
        let feeds: Vec<Vec<Node>> = rs
            .iter()
            .map(|r| r.log.changes(0).map(|e| e.unwrap().node).collect())
            .collect();
        let mut next = vec![0; rs.len()];
        let picks = order.iter().map(|b| usize::from(*b) % rs.len());
        for i in picks.chain((0..rs.len()).flat_map(|i| std::iter::repeat(i).take(feeds[i].len())))
        {
            // A replica's feed is topological: every link of its next node is in already.
            while let Some(node) = feeds[i].get(next[i]) {
                next[i] += 1;
                if !fresh.log.contains(&node.hash()).unwrap() {
                    let from = rs[i].log.peer_id();
                    fresh
                        .log
                        .insert_batch_from(std::slice::from_ref(node), from)
                        .unwrap();
                    break;
                }
            }
        }
        fresh
    }

    fn prop_any_delivery_order_converges(steps: Vec<Step>, order: Vec<u8>) -> bool {
        let (rs, sum) = run(&steps);
        // Before the replicas settle: fresh replicas receive everything, one node at a time,
        // in two different interleavings.
        let reversed: Vec<u8> = order.iter().rev().map(|b| b.wrapping_add(1)).collect();
        let one = deliver(&rs, &order);
        let two = deliver(&rs, &reversed);
        settle(&rs);
        let counter = |r: &KvReplica| Counter::value(&r.kv, "stock/c").unwrap();
        let set = |r: &KvReplica| CountingSet::members(&r.kv, "tags/s").unwrap();
        let no_conflict = |r: &KvReplica| r.kv.conflicts().count() == 0;
        let all: Vec<&KvReplica> = rs.iter().chain([&one, &two]).collect();
        all.iter().all(|r| counter(r) == sum && no_conflict(r))
            && all.iter().all(|r| set(r) == set(&rs[0]))
    }

    #[test]
    fn any_delivery_order_converges_to_the_same_value() {
        QuickCheck::new()
            .tests(40)
            .max_tests(400)
            .quickcheck(prop_any_delivery_order_converges as fn(Vec<Step>, Vec<u8>) -> bool);
    }
}

/// Through the real sync driver: nodes a session stores carry the peer's id as origin, and an
/// operator merges what the session delivered in the same transaction.
#[tokio::test]
async fn sync_records_the_peer_as_origin_and_merges_on_arrival() {
    let (a, b) = (merge_replica(), merge_replica());
    Counter::add(&a.kv, "stock/k", 1).unwrap();
    common::both(&a.log, &b.log).await;
    let seq = b.log.last_seq().unwrap();
    assert_eq!(b.log.origin(seq), Origin::Peer(a.log.peer_id()));
    assert_eq!(a.log.origin(a.log.last_seq().unwrap()), Origin::Local);
    Counter::add(&a.kv, "stock/k", 2).unwrap();
    Counter::add(&b.kv, "stock/k", 3).unwrap();
    common::both(&a.log, &b.log).await;
    for r in [&a, &b] {
        assert!(!r.kv.get("stock/k").unwrap().unwrap().is_conflict());
        assert_eq!(Counter::value(&r.kv, "stock/k").unwrap(), 6);
    }
}
