//! Sessions at and past their bounds: many heads, hostile `Want`s, child-first streams,
//! shared peer ids, modes that move nothing, several sessions into one store.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use super::tests::{cfg, chain, copy_of, drive, run, store};
use super::*;
use crate::log::Inserted;
use crate::log::RawEntry;
use crate::node::Node;
use crate::sync::wire::message::SamplePrefix;

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
pub(super) struct Counting {
    pub(super) inner: MemStore,
    pub(super) inserts: Arc<AtomicUsize>,
    pub(super) reads: Arc<AtomicUsize>,
    pub(super) cursor_writes: Arc<AtomicUsize>,
}

impl Counting {
    pub(super) fn new(inner: MemStore) -> Counting {
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
        visit: &mut crate::sync::store::Visit<'_, Self::Error>,
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
pub(super) fn receiver(dst: &Counting, heads: Vec<Hash>) -> Session<Counting> {
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
