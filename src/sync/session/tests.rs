//! Session tests over the in-memory store, with a deterministic scheduler: messages go through
//! the real codec, and a seeded generator decides which side runs next.

use super::*;
use crate::node::Node;
use crate::sim::pump::{slicing_schedule, Ended, Pair};
use crate::sim::Input;
use crate::sync::wire::codec::{encode, preamble, Decoder};
use crate::sync::wire::message::Summary;
use crate::sync::MemStore;
use rand::{Rng, SeedableRng};

pub(super) fn store(i: u8) -> MemStore {
    MemStore::new(PeerId([i; 16]))
}

pub(super) fn cfg(mode: Mode, key: u8) -> SessionConfig {
    SessionConfig {
        mode,
        live: false,
        filter_key: [key; 32],
    }
}

/// Runs two sessions to the end, delivering bytes in random slices in a seeded order.
/// Returns both sessions' stats.
pub(super) fn run(
    a: &MemStore,
    b: &MemStore,
    ma: Mode,
    mb: Mode,
    seed: u64,
) -> Result<(SessionStats, SessionStats), SyncError> {
    let sides = [
        Session::new(a.clone(), cfg(ma, 1))?,
        Session::new(b.clone(), cfg(mb, 2))?,
    ];
    let [x, y] = drive(sides, seed)?;
    Ok((x.stats().clone(), y.stats().clone()))
}

/// Scheduled steps of [`drive`]: long enough that most sessions end under the random schedule.
const DRIVE_STEPS: usize = 4000;

/// Runs two sessions to the end through the codec with the simulator's pump, delivering bytes
/// in random slices in a seeded order; returns them.
pub(super) fn drive<S: SyncStore>(
    sides: [Session<S>; 2],
    seed: u64,
) -> Result<[Session<S>; 2], SyncError<S::Error>> {
    let schedule = slicing_schedule(seed, DRIVE_STEPS);
    let mut pair = Pair::new(sides).with_steps(DRIVE_STEPS);
    match pair.run(&mut Input::new(&schedule), None)? {
        Ended::Complete => Ok(pair.into_sides()),
        Ended::Cut => unreachable!("an honest pair is never cut"),
    }
}

pub(super) fn chain(s: &MemStore, n: usize, tag: &str) {
    for i in 0..n {
        s.append(format!("{tag}{i}").into_bytes()).unwrap();
    }
}

#[test]
fn empty_with_empty() {
    let (a, b) = (store(1), store(2));
    let (sa, sb) = run(&a, &b, Mode::Both, Mode::Both, 1).unwrap();
    assert_eq!((sa.nodes_sent, sb.nodes_sent, sa.round_trips), (0, 0, 1));
}

#[test]
fn one_sided_in_each_mode() {
    for (ma, mb) in [
        (Mode::Push, Mode::Pull),
        (Mode::Both, Mode::Both),
        (Mode::Push, Mode::Both),
    ] {
        let (a, b) = (store(1), store(2));
        chain(&a, 50, "a");
        let (sa, sb) = run(&a, &b, ma, mb, 7).unwrap();
        assert_eq!(sa.nodes_sent, 50);
        assert_eq!(sb.nodes_received, 50);
        assert_eq!(sb.duplicates, 0);
        assert_eq!(a.hashes(), b.hashes());
        b.check().unwrap();
    }
}

#[test]
fn pull_only_does_not_send() {
    let (a, b) = (store(1), store(2));
    chain(&a, 5, "a");
    chain(&b, 5, "b");
    run(&a, &b, Mode::Pull, Mode::Both, 3).unwrap();
    assert_eq!(a.len(), 10);
    assert_eq!(b.len(), 5);
}

#[test]
fn diverged_converge_under_many_schedules() {
    for seed in 0..40 {
        let (a, b) = (store(1), store(2));
        chain(&a, 20, "common");
        run(&a, &b, Mode::Both, Mode::Both, seed).unwrap();
        chain(&a, 1 + seed as usize % 7, "a");
        chain(&b, 1 + seed as usize % 5, "b");
        let (sa, sb) = run(&a, &b, Mode::Both, Mode::Both, seed + 100).unwrap();
        assert_eq!(a.hashes(), b.hashes(), "seed {seed}");
        assert_eq!(a.heads(), b.heads());
        assert_eq!(sa.duplicates + sb.duplicates, 0, "seed {seed}");
        a.check().unwrap();
        b.check().unwrap();
    }
}

#[test]
fn in_sync_is_one_message_each_way() {
    let (a, b) = (store(1), store(2));
    chain(&a, 30, "x");
    run(&a, &b, Mode::Both, Mode::Both, 5).unwrap();
    let (sa, sb) = run(&a, &b, Mode::Both, Mode::Both, 6).unwrap();
    assert_eq!((sa.nodes_sent, sb.nodes_sent), (0, 0));
    assert_eq!(sa.round_trips, 1);
    // Hello is the only message.
    let mut s = Session::new(a.clone(), cfg(Mode::Both, 1)).unwrap();
    let mut peer = Session::new(b.clone(), cfg(Mode::Both, 2)).unwrap();
    let hello = peer.poll_transmit().unwrap().unwrap();
    assert!(matches!(
        s.poll_transmit().unwrap(),
        Some(Message::Hello(_))
    ));
    s.handle(hello).unwrap();
    assert!(s.is_finished());
    assert_eq!(s.poll_transmit().unwrap(), None);
}

#[test]
fn forks_and_merges() {
    let (a, b) = (store(1), store(2));
    let root = a.append(b"root".to_vec()).unwrap();
    run(&a, &b, Mode::Both, Mode::Both, 1).unwrap();
    let mut la = root.hash();
    let mut lb = root.hash();
    for i in 0..10 {
        la = a.add([la], format!("a{i}").into_bytes()).unwrap().hash();
        lb = b.add([lb], format!("b{i}").into_bytes()).unwrap().hash();
        if i % 3 == 0 {
            a.add([root.hash()], format!("side{i}").into_bytes())
                .unwrap();
        }
    }
    run(&a, &b, Mode::Both, Mode::Both, 2).unwrap();
    assert_eq!(a.hashes(), b.hashes());
    let m = a.append(b"merge".to_vec()).unwrap();
    assert!(m.links().len() >= 2);
    let (sa, _) = run(&a, &b, Mode::Both, Mode::Both, 3).unwrap();
    assert_eq!(sa.nodes_sent, 1);
    assert_eq!(b.heads(), vec![m.hash()]);
}

#[test]
fn remembered_peer_sends_only_new_nodes() {
    let (a, b) = (store(1), store(2));
    chain(&a, 200, "a");
    chain(&b, 200, "b");
    run(&a, &b, Mode::Both, Mode::Both, 1).unwrap();
    for round in 0..20u64 {
        chain(&a, 3, &format!("a{round}-"));
        chain(&b, 2, &format!("b{round}-"));
        let (sa, sb) = run(&a, &b, Mode::Both, Mode::Both, round).unwrap();
        assert_eq!((sa.nodes_sent, sb.nodes_sent), (3, 2), "round {round}");
        assert_eq!(sa.duplicates + sb.duplicates, 0);
        assert!(sa.round_trips <= 2);
    }
    assert_eq!(a.hashes(), b.hashes());
}

#[test]
fn first_contact_of_diverged_copies_sends_little_extra() {
    // b got a's history through a third replica, so neither remembers the other.
    let (a, b, c) = (store(1), store(2), store(3));
    chain(&a, 1000, "common");
    run(&a, &c, Mode::Both, Mode::Both, 1).unwrap();
    run(&c, &b, Mode::Both, Mode::Both, 2).unwrap();
    chain(&a, 10, "a");
    chain(&b, 10, "b");
    let (sa, sb) = run(&a, &b, Mode::Both, Mode::Both, 3).unwrap();
    assert_eq!(a.hashes(), b.hashes());
    assert_eq!(
        sa.nodes_sent + sb.nodes_sent,
        20 + sa.duplicates + sb.duplicates
    );
    assert!(sa.duplicates + sb.duplicates <= 2, "{sa:?} {sb:?}");
    assert!(sa.round_trips <= 2);
}

#[test]
fn live_streams_new_nodes_without_echo() {
    let (a, b) = (store(1), store(2));
    let sa = Session::new(
        a.clone(),
        SessionConfig {
            live: true,
            ..cfg(Mode::Both, 1)
        },
    )
    .unwrap();
    let sb = Session::new(b.clone(), cfg(Mode::Both, 2)).unwrap();
    let mut p = Pair::new([sa, sb]);
    for _ in 0..3 {
        p.exchange(0).unwrap();
        p.exchange(1).unwrap();
    }
    assert_eq!(p.side(0).phase(), Phase::Live);
    assert_eq!(p.side(1).phase(), Phase::Live);
    let n = a.append(b"late".to_vec()).unwrap();
    p.side_mut(0).local_changed(a.last_seq().unwrap());
    p.exchange(0).unwrap();
    assert!(b.hashes().contains(&n.hash()));
    p.side_mut(1).local_changed(b.last_seq().unwrap());
    assert_eq!(p.exchange(1).unwrap(), 0, "b echoed a's node");
    assert_eq!(p.side(0).stats().nodes_received, 0);
    p.side_mut(0).close().unwrap();
    p.exchange(0).unwrap();
    assert!(p.side(0).is_finished() && p.side(1).is_finished());
}

quickcheck::quickcheck! {
    fn prop_pairwise_syncs_converge(ops: Vec<(u8, u8, u8)>, seed: u64) -> bool {
        let stores: Vec<MemStore> = (0..4).map(|i| store(i + 1)).collect();
        for (i, (op, x, y)) in ops.into_iter().take(40).enumerate() {
            let (x, y) = (x as usize % 4, y as usize % 4);
            if op % 3 == 0 && x != y {
                run(&stores[x], &stores[y], Mode::Both, Mode::Both, seed ^ i as u64).unwrap();
            } else {
                stores[x].append(vec![op, i as u8]).unwrap();
            }
        }
        for (x, y) in [(0, 1), (1, 2), (2, 3), (3, 0), (0, 1), (1, 2)] {
            run(&stores[x], &stores[y], Mode::Both, Mode::Both, seed).unwrap();
        }
        let want = stores[0].hashes();
        stores.iter().all(|s| s.hashes() == want && s.check().is_ok())
    }
}

/// Copies a store's feed into a fresh store with the same id.
pub(super) fn copy_of(s: &MemStore) -> MemStore {
    let c = MemStore::new(s.peer_id());
    let nodes: Vec<Node> = s
        .entries(0, u64::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| Node::decode(&e.bytes).unwrap())
        .collect();
    c.insert_batch(&nodes).unwrap();
    c
}

#[test]
fn automerge_filter_degradation_with_ground_hashes_is_bounded() {
    // Automerge's sync degrades to a round trip per change when its Bloom filter gives false
    // positives, and an attacker can grind hashes to cause them. Here the attacker even knows
    // b's filter key (in real sessions it is random), grinds every new node of a into b's
    // filter, and the sync still ends after one extra round trip.
    let (a, b) = (store(1), store(2));
    chain(&a, 20, "common");
    run(&a, &b, Mode::Both, Mode::Both, 1).unwrap();
    chain(&b, 5, "b");
    // b's filter depends only on what b has and on which of a's samples it knows: learn it
    // from a dry run against a stand-in for a with as many new nodes.
    let dry = copy_of(&a);
    chain(&dry, 10, "dummy");
    let mut sa = Session::new(dry, cfg(Mode::Both, 1)).unwrap();
    let mut sb = Session::new(b.clone(), cfg(Mode::Both, 2)).unwrap();
    sb.poll_transmit().unwrap();
    sb.handle(sa.poll_transmit().unwrap().unwrap()).unwrap();
    let Some(Message::Summary(Summary {
        filter: Some(filter),
        ..
    })) = sb.poll_transmit().unwrap()
    else {
        panic!("b sends a filter");
    };
    for i in 0..10 {
        let head = a.heads();
        let node = (0u64..)
            .map(|k| Node::new(head.clone(), format!("ground{i}-{k}").into_bytes()).unwrap())
            .find(|n| filter.contains(&n.hash()))
            .unwrap();
        a.insert_batch(&[node]).unwrap();
    }
    let (st_a, st_b) = run(&a, &b, Mode::Both, Mode::Both, 9).unwrap();
    assert_eq!(a.hashes(), b.hashes());
    assert_eq!(st_b.nodes_received, 10);
    assert!(st_a.filtered >= 10, "the grinding worked: {st_a:?}");
    assert_eq!((st_a.round_trips, st_b.round_trips), (2, 2));
}

#[test]
fn two_sided_remembered_round_trips_meet_the_goal() {
    // Goal: one round trip in at least 97% of two-sided syncs with a remembered peer, mean at
    // most 1.05. Random filter keys, random divergence on both sides, forks included.
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let (a, b) = (store(1), store(2));
    chain(&a, 100, "base");
    run(&a, &b, Mode::Both, Mode::Both, 0).unwrap();
    let (mut one, mut total, mut syncs, mut dups) = (0u32, 0u32, 0u32, 0u64);
    for round in 0..300u64 {
        for (s, tag) in [(&a, "a"), (&b, "b")] {
            for i in 0..rng.random_range(1..12) {
                if rng.random_bool(0.2) {
                    let base = s.heads()[0];
                    s.add([base], format!("{tag}{round}-fork{i}").into_bytes())
                        .unwrap();
                } else {
                    s.append(format!("{tag}{round}-{i}").into_bytes()).unwrap();
                }
            }
        }
        let sides = [
            Session::new(
                a.clone(),
                SessionConfig {
                    filter_key: rng.random(),
                    ..cfg(Mode::Both, 0)
                },
            )
            .unwrap(),
            Session::new(
                b.clone(),
                SessionConfig {
                    filter_key: rng.random(),
                    ..cfg(Mode::Both, 0)
                },
            )
            .unwrap(),
        ];
        let mut p = Pair::new(sides);
        while !(p.side(0).is_finished() && p.side(1).is_finished()) {
            for i in 0..2 {
                p.exchange(i).unwrap();
            }
        }
        let sides = p.into_sides();
        let rt = sides[0]
            .stats()
            .round_trips
            .max(sides[1].stats().round_trips);
        dups += sides[0].stats().duplicates + sides[1].stats().duplicates;
        one += u32::from(rt == 1);
        total += rt;
        syncs += 1;
        assert_eq!(a.hashes(), b.hashes());
    }
    let mean = f64::from(total) / f64::from(syncs);
    eprintln!("two-sided: {one}/{syncs} in one round trip, mean {mean:.3}, {dups} duplicates");
    assert!(f64::from(one) / f64::from(syncs) >= 0.97, "{one}/{syncs}");
    assert!(mean <= 1.05, "mean {mean}");
    assert_eq!(dups, 0);
}

#[test]
fn interrupted_at_any_byte_keeps_a_valid_store_and_resumes() {
    let src = store(1);
    chain(&src, 30, "s");
    let fork = src.add([src.heads()[0]], b"fork".to_vec()).unwrap();
    src.add([fork.hash()], b"after fork".to_vec()).unwrap();
    let mut k = 0;
    loop {
        let dst = store(2);
        let mut s = Session::new(src.clone(), cfg(Mode::Both, 1)).unwrap();
        let mut d = Session::new(dst.clone(), cfg(Mode::Both, 2)).unwrap();
        let (mut to_d, mut to_s) = (preamble().to_vec(), preamble().to_vec());
        let (mut dec_d, mut dec_s) = (Decoder::new(), Decoder::new());
        let mut delivered = 0;
        let mut failed = None;
        for _ in 0..10_000 {
            while let Some(m) = s.poll_transmit().unwrap() {
                encode(&m, &mut to_d);
            }
            while let Some(m) = d.poll_transmit().unwrap() {
                encode(&m, &mut to_s);
            }
            dec_s.push(&to_s);
            to_s.clear();
            while let Some(m) = dec_s.next_message().unwrap() {
                s.handle(m).unwrap();
            }
            let n = (k - delivered).min(to_d.len());
            dec_d.push(&to_d[..n]);
            to_d.drain(..n);
            delivered += n;
            while let Ok(Some(m)) = dec_d.next_message() {
                if let Err(e) = d.handle(m) {
                    failed = Some(e);
                }
            }
            if delivered == k || d.is_finished() || failed.is_some() {
                break;
            }
        }
        let finished = d.is_finished();
        if !finished {
            assert!(d.on_eof().is_err(), "cut at byte {k}");
            d.salvage();
        }
        dst.check().unwrap();
        let kept = dst.len() as u64;
        let (_, st) = run(&src, &dst, Mode::Both, Mode::Both, k as u64)
            .unwrap_or_else(|e| panic!("cut at {k}, kept {kept}, finished {finished}: {e}"));
        assert_eq!(src.hashes(), dst.hashes(), "cut at byte {k}");
        assert_eq!(
            st.nodes_received,
            32 - kept,
            "cut at byte {k}: resent what was kept"
        );
        if finished {
            break;
        }
        k += 7;
    }
    // About 530 bytes of stream (its nodes go as `NodeDelta` frames): every 7th byte cut.
    assert!(k > 500, "the stream was cut at {} places", k / 7);
}

#[test]
fn peer_head_stored_after_the_snapshot_starts_no_unexpected_stream() {
    // Found by the `sync_pair` fuzz target (corpus file `unexpected-endstream-head-after-
    // snapshot`): b comes to hold a's head after building its Hello (here by writing the same
    // node; in real use from a concurrent session). b used to count it as known, start its
    // stream at once, and a, which knows all of b's (snapshot) heads and so expects no stream,
    // failed with "unexpected EndStream".
    let (a, b) = (store(1), store(2));
    let n = a.add([], b"same".to_vec()).unwrap();
    let sa = Session::new(a.clone(), cfg(Mode::Both, 1)).unwrap();
    let sb = Session::new(b.clone(), cfg(Mode::Push, 2)).unwrap();
    assert_eq!(b.add([], b"same".to_vec()).unwrap(), n);
    let mut p = Pair::new([sa, sb]);
    for _ in 0..10 {
        p.exchange(1).unwrap();
        p.exchange(0).unwrap();
    }
    assert!(p.side(0).is_finished() && p.side(1).is_finished());
    assert_eq!(a.hashes(), b.hashes());
}
