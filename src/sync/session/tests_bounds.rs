//! Sessions at and past their bounds: many heads, hostile `Want`s, child-first streams,
//! shared peer ids, modes that move nothing, several sessions into one store.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use super::tests::{cfg, chain, copy_of, drive, run, store};
use super::*;
use crate::log::Inserted;
use crate::log::RawEntry;
use crate::node::Node;
use crate::sync::wire::message::{Filter, SamplePrefix};

fn roots(s: &MemStore, n: usize, tag: &str) {
    let nodes: Vec<Node> = (0..n)
        .map(|i| Node::new([], format!("{tag}{i}").into_bytes()).unwrap())
        .collect();
    s.insert_batch(&nodes).unwrap();
}

use crate::sync::MemStore;

/// Adds a node linking to `last` only (a chain that ignores the other heads).
fn grow(s: &MemStore, last: Option<Hash>, tag: &str) -> Hash {
    s.add(last, tag.as_bytes().to_vec()).unwrap().hash()
}

#[test]
fn more_heads_than_one_message_converge() {
    // 4,200 independent roots: more than one Hello lists. Every one must arrive, on every
    // sync, in both directions.
    let (a, b) = (store(1), store(2));
    roots(&a, 4_200, "a");
    roots(&b, 10, "b");
    for seed in 0..3 {
        run(&a, &b, Mode::Both, Mode::Both, seed).unwrap();
        assert_eq!(a.hashes(), b.hashes(), "sync {seed}");
        assert_eq!(a.heads(), b.heads());
    }
    assert_eq!(b.len(), 4_210);
    b.check().unwrap();
}

#[test]
fn a_hundred_thousand_heads_converge() {
    let (a, b) = (store(1), store(2));
    roots(&a, 100_000, "a");
    chain(&b, 20, "b");
    let (sa, sb) = run(&a, &b, Mode::Both, Mode::Both, 7).unwrap();
    assert_eq!(a.hashes(), b.hashes());
    assert_eq!(a.heads(), b.heads());
    assert_eq!((sa.nodes_sent, sb.nodes_sent), (100_000, 20));
}

#[test]
fn thousands_of_hostile_roots_do_not_stop_delivery_to_honest_peers() {
    // A peer hands the victim 5,000 tiny roots; the victim must go on exchanging everything
    // with honest peers, both ways, sync after sync.
    let (victim, hostile, honest) = (store(1), store(2), store(3));
    let mut v = (0..30).fold(None, |l, i| Some(grow(&victim, l, &format!("v{i}"))));
    let mut h = (0..30).fold(None, |l, i| Some(grow(&honest, l, &format!("h{i}"))));
    roots(&hostile, 5_000, "x");
    run(&hostile, &victim, Mode::Push, Mode::Pull, 1).unwrap();
    assert!(victim.heads().len() > 5_000);
    for round in 0..3u64 {
        for i in 0..3 {
            h = Some(grow(&honest, h, &format!("h{round}-{i}")));
            v = Some(grow(&victim, v, &format!("v{round}-{i}")));
        }
        run(&victim, &honest, Mode::Both, Mode::Both, round).unwrap();
        assert_eq!(victim.hashes(), honest.hashes(), "round {round}");
        honest.check().unwrap();
    }
}

#[test]
fn heads_split_over_many_messages_under_random_schedules() {
    let limits = Limits {
        heads_per_message: 3,
        ..Limits::default()
    };
    for seed in 0..30u64 {
        let (a, b) = (store(1), store(2));
        chain(&a, 5, "common");
        run(&a, &b, Mode::Both, Mode::Both, seed).unwrap();
        let base = a.heads()[0];
        for i in 0..(seed % 11) {
            a.add([base], format!("a{i}").into_bytes()).unwrap();
            b.add([], format!("b{i}").into_bytes()).unwrap();
        }
        let sides = [
            Session::with_limits(a.clone(), cfg(Mode::Both, 1), limits.clone()).unwrap(),
            Session::with_limits(b.clone(), cfg(Mode::Both, 2), limits.clone()).unwrap(),
        ];
        drive(sides, seed).unwrap();
        assert_eq!(a.hashes(), b.hashes(), "seed {seed}");
        assert_eq!(a.heads(), b.heads(), "seed {seed}");
    }
}

#[test]
fn too_many_heads_is_refused() {
    let (a, b) = (store(1), store(2));
    roots(&a, 50, "a");
    let limits = Limits {
        peer_heads: 40,
        ..Limits::default()
    };
    let mut sa = Session::new(a.clone(), cfg(Mode::Both, 1)).unwrap();
    let mut sb = Session::with_limits(b.clone(), cfg(Mode::Both, 2), limits).unwrap();
    let hello = sa.poll_transmit().unwrap().unwrap();
    assert!(matches!(
        sb.handle(hello),
        Err(SyncError::TooManyHeads {
            count: 50,
            max: 40,
            ..
        })
    ));
}

#[test]
fn modes_that_move_nothing_are_refused_on_both_sides() {
    for mode in [Mode::Push, Mode::Pull] {
        let (a, b) = (store(1), store(2));
        chain(&a, 3, "a");
        chain(&b, 3, "b");
        let mut sa = Session::new(a.clone(), cfg(mode, 1)).unwrap();
        let mut sb = Session::new(b.clone(), cfg(mode, 2)).unwrap();
        let (ha, hb) = (sa.poll_transmit().unwrap(), sb.poll_transmit().unwrap());
        let ea = sa.handle(hb.unwrap());
        let eb = sb.handle(ha.unwrap());
        assert!(
            matches!(ea, Err(SyncError::ModeMismatch { .. })),
            "{mode:?}: {ea:?}"
        );
        assert!(
            matches!(eb, Err(SyncError::ModeMismatch { .. })),
            "{mode:?}: {eb:?}"
        );
    }
}

/// Hands `to` the Hello `from` would send, and drops what `to` answers.
fn hello(from: &mut Session<MemStore>, to: &mut Session<MemStore>) {
    while let Some(m) = from.poll_transmit().unwrap() {
        let last = matches!(m, Message::Hello(_));
        to.handle(m).unwrap();
        if last {
            break;
        }
    }
}

#[test]
fn a_want_flood_is_bounded() {
    // A peer that knows the victim's root asks, again and again, for its newest node and
    // never reads. Each `Want` used to queue the whole log again (3.76 GB for 91 KB of
    // Wants on a large log); now nothing is queued twice and the answers are counted.
    let (a, peer) = (store(1), store(2));
    chain(&a, 2_000, "a");
    let newest = a.heads()[0];
    let mut sa = Session::new(a.clone(), cfg(Mode::Both, 1)).unwrap();
    let mut sp = Session::new(peer.clone(), cfg(Mode::Both, 2)).unwrap();
    hello(&mut sp, &mut sa);
    sa.handle(Message::Summary(Summary {
        known_heads: vec![0],
        known_samples: vec![],
        filter: None,
        floor: vec![],
    }))
    .unwrap();
    let mut refused = None;
    for i in 0..100 {
        match sa.handle(Message::Want(vec![newest])) {
            Ok(()) => assert!(sa.buffered_bytes() < 64 * 1024, "after {i} Wants"),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (i, e) = refused.expect("the flood is refused");
    assert!(matches!(e, SyncError::TooManyWants { .. }), "{e}");
    assert_eq!(i, Limits::default().wants_answered as usize);
}

#[test]
fn a_want_in_an_in_sync_session_costs_almost_nothing() {
    let (a, b) = (store(1), store(2));
    chain(&a, 3_000, "a");
    run(&a, &b, Mode::Both, Mode::Both, 1).unwrap();
    let newest = a.heads()[0];
    let root = a.entry_at(1).unwrap().unwrap().hash;
    // Not live: the session is over after the Hellos, a Want is a protocol error.
    let mut sa = Session::new(a.clone(), cfg(Mode::Both, 1)).unwrap();
    let mut sb = Session::new(b.clone(), cfg(Mode::Both, 2)).unwrap();
    hello(&mut sb, &mut sa);
    assert!(matches!(
        sa.handle(Message::Want(vec![newest])),
        Err(SyncError::Unexpected { .. })
    ));
    // Live: a Want of a node the peer has (it is under the heads both share) is answered
    // with at most that node, never the log; a deep one is refused past the walk limit.
    let live = SessionConfig {
        live: true,
        ..cfg(Mode::Both, 1)
    };
    let limits = Limits {
        want_walk: 100,
        ..Limits::default()
    };
    let mut sa = Session::with_limits(a.clone(), live, limits).unwrap();
    let mut sb = Session::new(b.clone(), cfg(Mode::Both, 2)).unwrap();
    hello(&mut sb, &mut sa);
    assert_eq!(sa.phase(), Phase::Live);
    while sa.poll_transmit().unwrap().is_some() {}
    sa.handle(Message::Want(vec![newest])).unwrap();
    let mut nodes = 0;
    while let Some(m) = sa.poll_transmit().unwrap() {
        nodes += usize::from(matches!(m, Message::Node(_) | Message::NodeDelta(_)));
    }
    assert!(nodes <= 1, "{nodes} nodes for one Want");
    assert!(matches!(
        sa.handle(Message::Want(vec![root])),
        Err(SyncError::TooManyWants { .. })
    ));
}

/// A store that counts what a session asks of it.
#[derive(Clone)]
struct Counting {
    inner: MemStore,
    inserts: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
    cursor_writes: Arc<AtomicUsize>,
}

impl Counting {
    fn new(inner: MemStore) -> Counting {
        Counting {
            inner,
            inserts: Arc::default(),
            reads: Arc::default(),
            cursor_writes: Arc::default(),
        }
    }
}

impl SyncStore for Counting {
    type Error = crate::log::LogError;
    fn peer_id(&self) -> PeerId {
        self.inner.peer_id()
    }
    fn snapshot(&self) -> crate::log::Result<(Vec<Hash>, u64)> {
        self.inner.snapshot()
    }
    fn last_seq(&self) -> crate::log::Result<u64> {
        self.inner.last_seq()
    }
    fn seqs_of(&self, hashes: &[Hash]) -> crate::log::Result<Vec<Option<u64>>> {
        self.reads.fetch_add(hashes.len(), Relaxed);
        self.inner.seqs_of(hashes)
    }
    fn find_prefixes(&self, prefixes: &[SamplePrefix]) -> crate::log::Result<Vec<Option<Hash>>> {
        self.inner.find_prefixes(prefixes)
    }
    fn entry_at(&self, seq: u64) -> crate::log::Result<Option<RawEntry>> {
        self.reads.fetch_add(1, Relaxed);
        self.inner.entry_at(seq)
    }
    fn entries(&self, after: u64, upto: u64, limit: usize) -> crate::log::Result<Vec<RawEntry>> {
        let got = self.inner.entries(after, upto, limit)?;
        self.reads.fetch_add(got.len(), Relaxed);
        Ok(got)
    }
    fn walk_back(
        &self,
        starts: &[Hash],
        visit: &mut dyn FnMut(u64, &Node) -> crate::log::Result<bool>,
    ) -> crate::log::Result<()> {
        self.inner.walk_back(starts, visit)
    }
    fn insert_batch(&self, nodes: &[Node]) -> crate::log::Result<Vec<Inserted>> {
        self.inserts.fetch_add(1, Relaxed);
        self.inner.insert_batch(nodes)
    }
    fn peer_cursor(&self, peer: PeerId) -> crate::log::Result<Option<crate::sync::Cursor>> {
        self.inner.peer_cursor(peer)
    }
    fn set_peer_cursor(
        &self,
        peer: PeerId,
        cursor: Option<&crate::sync::Cursor>,
    ) -> crate::log::Result<()> {
        self.cursor_writes.fetch_add(1, Relaxed);
        self.inner.set_peer_cursor(peer, cursor)
    }
}

/// A receiving session over `dst` that has been told the peer's heads are `heads` and
/// that it knows none of this side's: it expects a stream.
fn receiver(dst: &Counting, heads: Vec<Hash>) -> Session<Counting> {
    let mut s = Session::new(dst.clone(), cfg(Mode::Pull, 1)).unwrap();
    s.poll_transmit().unwrap();
    s.handle(Message::Hello(Hello {
        peer: PeerId([9; 16]),
        mode: WireMode {
            send: true,
            receive: false,
            live: false,
        },
        last_seq: 0,
        head_count: heads.len() as u64,
        heads,
        samples: vec![],
    }))
    .unwrap();
    s.handle(Message::Summary(Summary {
        known_heads: vec![],
        known_samples: vec![],
        filter: None,
        floor: vec![],
    }))
    .unwrap();
    s
}

#[test]
fn child_first_is_stored_in_one_pass_and_one_commit() {
    // A 2,000-node chain sent newest first used to take 2,000 commits and about 2 million
    // index lookups.
    let src = store(2);
    chain(&src, 2_000, "c");
    let dst = Counting::new(store(1));
    let mut s = receiver(&dst, src.heads());
    let mut entries = src.entries(0, u64::MAX, usize::MAX).unwrap();
    entries.reverse();
    for e in entries {
        s.handle(Message::Node(e.bytes)).unwrap();
    }
    s.handle(Message::EndStream).unwrap();
    assert_eq!(dst.inner.hashes(), src.hashes());
    dst.inner.check().unwrap();
    assert_eq!(dst.inserts.load(Relaxed), 1, "commits");
    assert!(
        dst.reads.load(Relaxed) < 3 * 2_000,
        "{} reads",
        dst.reads.load(Relaxed)
    );
    let mut sent = Vec::new();
    while let Some(m) = s.poll_transmit().unwrap() {
        sent.push(m.name());
    }
    assert_eq!(sent, ["Summary", "Done"]);
    assert!(s.is_finished());
}

#[test]
fn nodes_in_any_order_are_stored_whatever_the_shape() {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let src = store(2);
    chain(&src, 50, "c");
    for i in 0..30u8 {
        let hs = src.hashes().into_iter().collect::<Vec<_>>();
        let links = [
            hs[usize::from(i) * 7 % hs.len()],
            hs[usize::from(i) * 13 % hs.len()],
        ];
        src.add(links, vec![i]).unwrap();
    }
    for seed in 0..20 {
        let dst = Counting::new(store(1));
        let mut s = receiver(&dst, src.heads());
        let mut entries = src.entries(0, u64::MAX, usize::MAX).unwrap();
        entries.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        for e in entries {
            s.handle(Message::Node(e.bytes)).unwrap();
        }
        s.handle(Message::EndStream).unwrap();
        assert_eq!(dst.inner.hashes(), src.hashes(), "seed {seed}");
        dst.inner.check().unwrap();
    }
}

#[test]
fn pending_nodes_are_bounded() {
    let src = store(2);
    chain(&src, 100, "c");
    let dst = Counting::new(store(1));
    let limits = Limits {
        pending_nodes: 10,
        ..Limits::default()
    };
    let mut s = Session::with_limits(dst.clone(), cfg(Mode::Pull, 1), limits).unwrap();
    let mut src_session = Session::new(src.clone(), cfg(Mode::Push, 2)).unwrap();
    let Some(Message::Hello(h)) = src_session.poll_transmit().unwrap() else {
        panic!("hello first");
    };
    s.handle(Message::Hello(h)).unwrap();
    s.handle(Message::Summary(Summary {
        known_heads: vec![],
        known_samples: vec![],
        filter: None,
        floor: vec![],
    }))
    .unwrap();
    let mut entries = src.entries(0, u64::MAX, usize::MAX).unwrap();
    entries.reverse();
    let mut err = None;
    for e in entries {
        if let Err(e) = s.handle(Message::Node(e.bytes)) {
            err = Some(e);
            break;
        }
    }
    assert!(
        matches!(err, Some(SyncError::TooManyPending { nodes: 11, .. })),
        "{err:?}"
    );
}

#[test]
fn a_live_pull_session_keeps_no_echo_state() {
    // The ranges of nodes stored from the peer are there to skip them in the live stream;
    // a side that does not send must not keep them (they grew for ever).
    let (a, b) = (store(1), store(2));
    let live = |mode, key| SessionConfig {
        live: true,
        ..cfg(mode, key)
    };
    let mut sa = Session::new(a.clone(), live(Mode::Pull, 1)).unwrap();
    let mut sb = Session::new(b.clone(), live(Mode::Push, 2)).unwrap();
    let pump = |from: &mut Session<MemStore>, to: &mut Session<MemStore>| {
        while let Some(m) = from.poll_transmit().unwrap() {
            to.handle(m).unwrap();
        }
        to.flush().unwrap();
    };
    for _ in 0..3 {
        pump(&mut sa, &mut sb);
        pump(&mut sb, &mut sa);
    }
    assert_eq!(sa.phase(), Phase::Live);
    let start = sa.buffered_bytes();
    for i in 0..300u32 {
        b.append(i.to_le_bytes().to_vec()).unwrap();
        sb.local_changed(b.last_seq().unwrap());
        pump(&mut sb, &mut sa);
        // A local write between two received nodes keeps their ranges apart.
        a.add([], i.to_be_bytes().to_vec()).unwrap();
        sa.local_changed(a.last_seq().unwrap());
    }
    assert!(b.hashes().is_subset(&a.hashes()));
    assert!(
        sa.buffered_bytes() <= start + 64,
        "{} bytes",
        sa.buffered_bytes()
    );
}

#[test]
fn a_shared_peer_id_costs_at_most_one_round_trip() {
    // `b` is a copy of `c`'s store taken before `c` synced with `a`: same id, less data.
    // `a` remembers a floor for that id which `b` does not have.
    let (a, c) = (store(1), store(3));
    chain(&c, 10, "c");
    let b = copy_of(&c);
    chain(&a, 100, "a");
    run(&a, &c, Mode::Both, Mode::Both, 1).unwrap();
    assert!(a.peer_cursor(c.peer_id()).unwrap().is_some());
    chain(&a, 5, "later");
    chain(&b, 3, "b");
    let (sa, sb) = run(&a, &b, Mode::Both, Mode::Both, 2).unwrap();
    assert_eq!(a.hashes(), b.hashes());
    // b does not confirm a's floor heads: one Want, answered from scratch.
    assert_eq!((sa.round_trips, sb.round_trips), (2, 2), "{sa:?} {sb:?}");
    assert_eq!(sa.duplicates + sb.duplicates, 0);
    // And the other way round: the copy remembers `a` from `c`'s past.
    let (a2, c2) = (store(4), store(5));
    chain(&a2, 50, "a");
    run(&a2, &c2, Mode::Both, Mode::Both, 3).unwrap();
    let b2 = copy_of(&c2);
    c2.set_peer_cursor(a2.peer_id(), None).unwrap();
    chain(&b2, 20, "b");
    let d = store(6);
    run(&a2, &d, Mode::Both, Mode::Both, 4).unwrap();
    run(&b2, &a2, Mode::Both, Mode::Both, 5).unwrap();
    assert_eq!(a2.hashes(), b2.hashes());
}

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
