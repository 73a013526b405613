//! A side that fails tells the peer why (`Abort`), and both keep counting what was stored:
//! over the in-memory store whose inserts start failing with a full disk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::tests::{cfg, chain, store};
use super::*;
use crate::log::Inserted;
use crate::log::RawEntry;
use crate::log::{LogError as Error, Result};
use crate::node::Node;
use crate::sim::pump::Pair;
use crate::sync::wire::message::{AbortReason, SamplePrefix};
use crate::sync::MemStore;

/// A [`MemStore`] with room for `room` more nodes: a batch that does not fit fails whole
/// with [`Error::DiskFull`] and stores nothing, as LMDB's does.
#[derive(Clone)]
struct Filling {
    mem: MemStore,
    room: Arc<AtomicUsize>,
}

impl SyncStore for Filling {
    type Error = crate::log::LogError;
    fn peer_id(&self) -> PeerId {
        self.mem.peer_id()
    }
    fn snapshot(&self) -> Result<(Vec<Hash>, u64)> {
        self.mem.snapshot()
    }
    fn last_seq(&self) -> Result<u64> {
        self.mem.last_seq()
    }
    fn seqs_of(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>> {
        self.mem.seqs_of(hashes)
    }
    fn find_prefixes(&self, prefixes: &[SamplePrefix]) -> Result<Vec<Option<Hash>>> {
        self.mem.find_prefixes(prefixes)
    }
    fn entry_at(&self, seq: u64) -> Result<Option<RawEntry>> {
        self.mem.entry_at(seq)
    }
    fn entries(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<RawEntry>> {
        self.mem.entries(after, upto, limit)
    }
    fn walk_back(
        &self,
        starts: &[Hash],
        visit: &mut crate::sync::store::Visit<'_, Self::Error>,
    ) -> Result<()> {
        self.mem.walk_back(starts, visit)
    }
    fn insert_batch(&self, nodes: &[Node]) -> Result<Vec<Inserted>> {
        let room = self.room.load(Ordering::SeqCst);
        if nodes.len() > room {
            return Err(crate::store::StorageError::DiskFull {
                path: "/full".into(),
                available: 0,
            }
            .into());
        }
        self.room.store(room - nodes.len(), Ordering::SeqCst);
        self.mem.insert_batch(nodes)
    }
    fn peer_cursor(&self, peer: PeerId) -> Result<Option<Cursor>> {
        self.mem.peer_cursor(peer)
    }
    fn set_peer_cursor(&self, peer: PeerId, cursor: Option<&Cursor>) -> Result<()> {
        self.mem.set_peer_cursor(peer, cursor)
    }
}

#[test]
fn a_full_disk_is_counted_and_reaches_the_peer_as_an_abort() {
    let src = store(1);
    chain(&src, 250, "n");
    let full = Filling {
        mem: store(2),
        room: Arc::new(AtomicUsize::new(120)),
    };
    let limits = Limits {
        batch_nodes: 50,
        ..Limits::default()
    };
    // The sender never fills: its store has room for anything.
    let roomy = Filling {
        mem: src.clone(),
        room: Arc::new(AtomicUsize::new(usize::MAX)),
    };
    let a = Session::new(roomy, cfg(Mode::Push, 1)).unwrap();
    let b = Session::with_limits(full.clone(), cfg(Mode::Pull, 2), limits).unwrap();
    let mut p = Pair::new([a, b]);
    // Run until the receiver fails: two batches of 50 fit, the third does not.
    let err = loop {
        p.transmit(0, usize::MAX).expect("the sender never fails");
        if let Err(e) = p.deliver(1, usize::MAX) {
            break e;
        }
        p.exchange(1).expect("the sender never fails");
    };
    assert!(
        matches!(
            err,
            SyncError::Store(Error::Storage(crate::store::StorageError::DiskFull { .. }))
        ),
        "{err:?}"
    );
    let abort = p
        .side_mut(1)
        .abort(&err)
        .expect("a full disk is worth telling the peer");
    // The counters say what is stored: the batches committed before the failure.
    assert_eq!(p.side(1).stats().nodes_received, 100);
    assert_eq!(full.mem.len(), 100);
    full.mem.check().unwrap();
    assert!(p.side(1).is_finished());
    // Through the codec to the sender, which ends with the typed reason.
    p.send(1, &abort);
    match p.deliver(0, usize::MAX) {
        Err(SyncError::PeerAborted { reason, detail }) => {
            assert_eq!(reason, AbortReason::DiskFull);
            assert!(detail.contains("no space left"), "{detail}");
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn an_abort_is_legal_in_every_phase() {
    let abort = || Message::Abort {
        reason: AbortReason::Refused,
        detail: "no".into(),
    };
    let is_abort = |r: std::result::Result<(), SyncError>| {
        matches!(
            r,
            Err(SyncError::PeerAborted {
                reason: AbortReason::Refused,
                ..
            })
        )
    };
    // Handshake.
    let mut s = Session::new(store(1), cfg(Mode::Both, 1)).unwrap();
    assert!(is_abort(s.handle(abort())));
    // Catch-up, and live (also after this side closed).
    for live in [false, true] {
        let (a, b) = (store(1), store(2));
        chain(&a, 5, "a");
        chain(&b, 5, "b");
        let mut c = cfg(Mode::Both, 1);
        c.live = live;
        let sa = Session::new(a.clone(), c.clone()).unwrap();
        let sb = Session::new(b.clone(), cfg(Mode::Both, 2)).unwrap();
        let mut p = Pair::new([sa, sb]);
        p.exchange(1).unwrap();
        assert_eq!(p.side(0).phase(), Phase::CatchUp);
        if live {
            for _ in 0..10 {
                p.exchange(0).unwrap();
                p.exchange(1).unwrap();
            }
            assert_eq!(p.side(0).phase(), Phase::Live);
            p.side_mut(0).close().unwrap();
        }
        assert!(is_abort(p.side_mut(0).handle(abort())), "live {live}");
    }
    // Errors that leave no one to tell send nothing.
    let mut s = Session::new(store(1), cfg(Mode::Both, 1)).unwrap();
    assert!(s.abort(&SyncError::UnexpectedEof { state: "x" }).is_none());
}
