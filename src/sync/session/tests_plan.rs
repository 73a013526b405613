//! Bounds of the plan walk and of answering peers that share nothing; node deltas; several
//! sessions into one store.

use std::sync::atomic::Ordering::Relaxed;

use super::tests::{cfg, chain, drive, run, store};
use super::tests_bounds::{receiver, Counting};
use super::*;
use crate::node::Node;
use crate::sync::wire::message::Filter;

fn roots(s: &MemStore, n: usize, tag: &str) {
    let nodes: Vec<Node> = (0..n)
        .map(|i| Node::new([], format!("{tag}{i}").into_bytes()).unwrap())
        .collect();
    s.insert_batch(&nodes).unwrap();
}

use crate::sync::MemStore;

fn limits_of(filter_walk: usize) -> Limits {
    Limits {
        filter_walk,
        ..Limits::default()
    }
}

#[test]
fn answering_a_hello_that_shares_nothing_is_bounded() {
    // An unknown head used to cost a walk and a Bloom filter over the whole log.
    let a = Counting::new(store(1));
    chain(&a.inner, 5_000, "a");
    let limits = Limits {
        filter_walk: 100,
        ..Limits::default()
    };
    let mut s = Session::with_limits(a.clone(), cfg(Mode::Both, 1), limits).unwrap();
    s.poll_transmit().unwrap();
    let before = a.reads.load(Relaxed);
    s.handle(Message::Hello(Hello {
        peer: PeerId([9; 16]),
        mode: WireMode {
            send: true,
            receive: true,
            live: false,
        },
        last_seq: 1,
        head_count: 1,
        heads: vec![Hash([7; 32])],
        samples: vec![[1; 8]],
    }))
    .unwrap();
    assert!(
        a.reads.load(Relaxed) - before < 200,
        "{} reads",
        a.reads.load(Relaxed) - before
    );
    let Some(Message::Summary(Summary { filter: None, .. })) = s.poll_transmit().unwrap() else {
        panic!("a summary without a filter: nothing is known to be shared");
    };
    // A peer that claims one of my oldest nodes as its head: the walk down to it, and the
    // filter, stop at the bound.
    let root = a.inner.entry_at(1).unwrap().unwrap().hash;
    let mut s = Session::with_limits(a.clone(), cfg(Mode::Both, 1), limits_of(100)).unwrap();
    s.poll_transmit().unwrap();
    let before = a.reads.load(Relaxed);
    s.handle(Message::Hello(Hello {
        peer: PeerId([9; 16]),
        mode: WireMode {
            send: true,
            receive: true,
            live: false,
        },
        last_seq: 1,
        head_count: 2,
        heads: vec![root, Hash([7; 32])],
        samples: vec![],
    }))
    .unwrap();
    let reads = a.reads.load(Relaxed) - before;
    assert!(reads < 500, "{reads} reads");
    let Some(Message::Summary(Summary {
        filter: Some(Filter { bits, .. }),
        ..
    })) = s.poll_transmit().unwrap()
    else {
        panic!("a summary with a filter");
    };
    assert!(
        bits.len() <= 100 * 12 / 8 + 8,
        "{} filter bytes",
        bits.len()
    );
}

#[test]
fn several_sessions_deliver_the_same_nodes_into_one_store() {
    // Two senders with the same history stream it into one receiver at once, in every
    // interleaving the seed gives, child-first for one of them.
    for seed in 0..10u64 {
        let (s1, s2, dst) = (store(1), store(2), store(3));
        chain(&s1, 200, "x");
        run(&s1, &s2, Mode::Both, Mode::Both, seed).unwrap();
        roots(&s2, 20, "r");
        let mut r1 = Session::new(dst.clone(), cfg(Mode::Pull, 3)).unwrap();
        let mut r2 = Session::new(dst.clone(), cfg(Mode::Pull, 4)).unwrap();
        let mut p1 = Session::new(s1.clone(), cfg(Mode::Push, 1)).unwrap();
        let mut p2 = Session::new(s2.clone(), cfg(Mode::Push, 2)).unwrap();
        // p2's node frames are reordered below: plain frames only.
        p2.set_node_deltas(false);
        // Handshakes, then the two streams interleaved message by message.
        let mut to_r = [Vec::new(), Vec::new()];
        for (p, r, q) in [(&mut p1, &mut r1, 0), (&mut p2, &mut r2, 1)] {
            while let Some(m) = r.poll_transmit().unwrap() {
                p.handle(m).unwrap();
            }
            while let Some(m) = p.poll_transmit().unwrap() {
                to_r[q].push(m);
            }
        }
        if seed % 2 == 0 {
            let end = to_r[1].pop().unwrap();
            let first_node = to_r[1]
                .iter()
                .position(|m| matches!(m, Message::Node(_)))
                .unwrap();
            to_r[1][first_node..].reverse();
            to_r[1].push(end);
        }
        let mut its = to_r.map(|v| v.into_iter());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        use rand::{Rng, SeedableRng};
        loop {
            let i = rng.random_range(0..2);
            let (r, it) = if i == 0 {
                (&mut r1, &mut its[0])
            } else {
                (&mut r2, &mut its[1])
            };
            match it.next() {
                Some(m) => r.handle(m).unwrap(),
                None if its.iter().all(|it| it.len() == 0) => break,
                None => {}
            }
        }
        for (r, p) in [(&mut r1, &mut p1), (&mut r2, &mut p2)] {
            while let Some(m) = r.poll_transmit().unwrap() {
                p.handle(m).unwrap();
            }
            assert!(r.is_finished() && p.is_finished());
        }
        assert_eq!(dst.hashes(), s2.hashes(), "seed {seed}");
        dst.check().unwrap();
    }
}

#[test]
fn a_peer_claiming_only_an_old_node_cannot_make_the_plan_walk_long() {
    // b says it has a's root only (true here); a's walk down to it is cut at the bound and
    // a sends everything below the cut as well: more nodes, never fewer.
    let (a, b) = (store(1), store(2));
    let root = a.append(b"root".to_vec()).unwrap();
    b.insert_batch(&[root]).unwrap();
    chain(&a, 500, "a");
    chain(&b, 3, "b");
    let limits = Limits {
        plan_walk: 50,
        filter_walk: 10,
        ..Limits::default()
    };
    let counting = Counting::new(a.clone());
    let sides = [
        Session::with_limits(counting.clone(), cfg(Mode::Both, 1), limits).unwrap(),
        Session::new(Counting::new(b.clone()), cfg(Mode::Both, 2)).unwrap(),
    ];
    let [sa, sb] = drive(sides, 3).unwrap();
    assert_eq!(a.hashes(), b.hashes());
    // b knows none of a's points (a's samples miss the root), so it sends no filter and gets
    // the root again.
    assert_eq!(sa.stats().nodes_sent, 501);
    assert_eq!(sb.stats().duplicates, 1);
    assert!(
        counting.reads.load(Relaxed) < 3_000,
        "{}",
        counting.reads.load(Relaxed)
    );
}

quickcheck::quickcheck! {
    fn prop_many_roots_with_tight_limits_converge(ops: Vec<(u8, u8, u8)>, seed: u64) -> bool {
        // Head sets far above what one message lists (here 2), Bloom filters over a few
        // nodes only, plan walks cut short: replicas still converge.
        let limits = Limits {
            heads_per_message: 2,
            filter_walk: 3,
            plan_walk: 5,
            ..Limits::default()
        };
        let stores: Vec<MemStore> = (0..4).map(|i| store(i + 1)).collect();
        let sync = |x: usize, y: usize, k: u64| {
            let sides = [
                Session::with_limits(stores[x].clone(), cfg(Mode::Both, 1), limits.clone())
                    .unwrap(),
                Session::with_limits(stores[y].clone(), cfg(Mode::Both, 2), limits.clone())
                    .unwrap(),
            ];
            drive(sides, seed ^ k).unwrap();
        };
        for (i, (op, x, y)) in ops.into_iter().take(60).enumerate() {
            let (x, y) = (x as usize % 4, y as usize % 4);
            match op % 4 {
                0 if x != y => sync(x, y, i as u64),
                1 => {
                    stores[x].add([], vec![op, i as u8, 1]).unwrap();
                }
                2 => {
                    let hs = stores[x].heads();
                    let links = hs.into_iter().take(3);
                    stores[x].add(links, vec![op, i as u8, 2]).unwrap();
                }
                _ => {
                    stores[x].add([], vec![op, i as u8, 3]).unwrap();
                }
            }
        }
        for (x, y) in [(0, 1), (1, 2), (2, 3), (3, 0), (0, 1), (1, 2)] {
            sync(x, y, 99);
        }
        let want = stores[0].hashes();
        stores.iter().all(|s| s.hashes() == want && s.check().is_ok())
    }
}

#[test]
fn a_node_delta_with_nothing_before_it_is_malformed_and_nothing_is_stored() {
    let src = store(2);
    chain(&src, 3, "d");
    let entries = src.entries(0, u64::MAX, usize::MAX).unwrap();
    let mut prev = delta::Prev::default();
    prev.note(entries[0].hash, &entries[0].bytes);
    let body = delta::compact(&prev, &entries[1].bytes).expect("links the node before");

    // After the node it refers to, the delta stands for the node itself.
    let dst = Counting::new(store(1));
    let mut s = receiver(&dst, src.heads());
    s.handle(Message::Node(entries[0].bytes.clone())).unwrap();
    s.handle(Message::NodeDelta(body.clone())).unwrap();
    s.handle(Message::Node(entries[2].bytes.clone())).unwrap();
    s.handle(Message::EndStream).unwrap();
    assert_eq!(dst.inner.hashes(), src.hashes());
    dst.inner.check().unwrap();

    // As the first frame of a stream it refers to nothing: malformed, nothing stored.
    let dst = Counting::new(store(1));
    let mut s = receiver(&dst, src.heads());
    let err = s.handle(Message::NodeDelta(body)).unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Malformed {
                kind: "NodeDelta",
                ..
            }
        ),
        "{err}"
    );
    assert!(dst.inner.hashes().is_empty());
}

#[test]
fn a_chain_travels_as_deltas_and_arrives_whole() {
    let (a, b) = (store(1), store(2));
    chain(&a, 300, "a");
    let node_bytes: usize = a
        .entries(0, u64::MAX, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.bytes.len())
        .sum();
    let mut sa = Session::new(a.clone(), cfg(Mode::Push, 1)).unwrap();
    let mut sb = Session::new(b.clone(), cfg(Mode::Pull, 2)).unwrap();
    let (mut wire, mut deltas) = (0, 0);
    loop {
        let mut moved = false;
        while let Some(m) = sa.poll_transmit().unwrap() {
            let mut frame = Vec::new();
            crate::sync::wire::codec::encode(&m, &mut frame);
            wire += frame.len();
            deltas += usize::from(matches!(m, Message::NodeDelta(_)));
            sb.handle(m).unwrap();
            moved = true;
        }
        while let Some(m) = sb.poll_transmit().unwrap() {
            sa.handle(m).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(sa.is_finished() && sb.is_finished());
    assert_eq!(a.hashes(), b.hashes());
    b.check().unwrap();
    // Every node but the first leaves out its link to the one before: 31 bytes fewer each
    // (32 of the hash, one of the flags).
    assert_eq!(deltas, 299);
    assert!(
        wire < node_bytes + 5 * 300 + 1_000 - 31 * 299,
        "{wire} wire bytes for {node_bytes} node bytes"
    );
}

#[test]
fn an_in_sync_check_writes_nothing() {
    // Each side used to rewrite the same peer cursor, a durable commit, on every check.
    let (a, b) = (Counting::new(store(1)), Counting::new(store(2)));
    chain(&a.inner, 20, "a");
    let pair = |seed| {
        drive(
            [
                Session::new(a.clone(), cfg(Mode::Both, 1)).unwrap(),
                Session::new(b.clone(), cfg(Mode::Both, 2)).unwrap(),
            ],
            seed,
        )
        .unwrap()
    };
    pair(1);
    let writes = || (a.cursor_writes.load(Relaxed), b.cursor_writes.load(Relaxed));
    let first = writes();
    assert!(
        first.0 >= 1 && first.1 >= 1,
        "the first sync remembers: {first:?}"
    );
    let [sa, _] = pair(2);
    assert_eq!(sa.stats().round_trips, 1);
    assert_eq!(writes(), first, "nothing written by the in-sync check");
    // The cursor is still there: a later sync still starts from it.
    assert!(a.inner.peer_cursor(PeerId([2; 16])).unwrap().is_some());
}
