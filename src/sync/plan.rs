//! What to send: the nodes reachable from my heads but not from points both sides share, found
//! by painting back from both in descending seq order (as git finds merge bases). The walk
//! stops as soon as nothing on the frontier is mine alone, so it costs the difference plus the
//! width of the DAG, not the size of the log.

use std::collections::{BinaryHeap, VecDeque};

use super::error::SyncError;
use super::filter::SeqBits;
use super::message::Filter;
use super::store::SyncStore;
use crate::changes::RawEntry;
use crate::error::Error;
use crate::hash::Hash;
use crate::node::Node;

const MINE: u8 = 1;
const THEIRS: u8 = 2;
const CHUNK: usize = 512;

/// The seqs (ascending, all above `floor`) of nodes reachable from `mine` and not from
/// `theirs`. Nodes at or below `floor` are known to be shared and are not entered.
pub(crate) fn paint(
    store: &impl SyncStore,
    mine: &[Hash],
    theirs: &[Hash],
    floor: u64,
) -> Result<Vec<u64>, SyncError> {
    let mut heap: BinaryHeap<(u64, u8)> = BinaryHeap::new();
    // Entries painted MINE only; the walk ends when none is left.
    let mut mine_only = 0usize;
    let push = |heap: &mut BinaryHeap<(u64, u8)>, mine_only: &mut usize, s: u64, f: u8| {
        if f == MINE {
            *mine_only += 1;
        }
        heap.push((s, f));
    };
    for (hashes, flag) in [(mine, MINE), (theirs, THEIRS)] {
        for s in store.seqs_of(hashes)?.into_iter().flatten() {
            push(&mut heap, &mut mine_only, s, flag);
        }
    }
    if !heap.iter().any(|&(_, f)| f == THEIRS) {
        // Nothing shared is known: everything above the floor is a candidate, no walk needed.
        let last = heap.iter().map(|&(s, _)| s).max().unwrap_or(0);
        return Ok((floor + 1..=last).collect());
    }
    let mut out = Vec::new();
    while mine_only > 0 {
        let Some((seq, mut flags)) = heap.pop() else {
            break;
        };
        if flags == MINE {
            mine_only -= 1;
        }
        // Every path to `seq` has been followed (links have lower seqs), so its copies are
        // adjacent on the heap: merge their paint.
        while let Some(&(s, f)) = heap.peek() {
            if s != seq {
                break;
            }
            heap.pop();
            if f == MINE {
                mine_only -= 1;
            }
            flags |= f;
        }
        if seq <= floor {
            continue;
        }
        if flags == MINE {
            out.push(seq);
        }
        let entry = store
            .entry_at(seq)?
            .ok_or_else(|| Error::Corrupt(format!("seq {seq} indexed but not in the feed")))?;
        let node = Node::decode_trusted(&entry.bytes, entry.hash).map_err(Error::from)?;
        for s in store.seqs_of(node.links())? {
            let s =
                s.ok_or_else(|| Error::Corrupt(format!("{} has a missing link", entry.hash)))?;
            push(&mut heap, &mut mine_only, s, flags);
        }
    }
    out.reverse();
    Ok(out)
}

/// A catch-up stream in progress: candidates in feed order, thinned by the peer's filter.
#[derive(Debug)]
pub(crate) struct Plan {
    pub cands: Vec<u64>,
    pub pos: usize,
    pub sent: SeqBits,
    pub filter: Option<Filter>,
    pub done: bool,
    buf: VecDeque<RawEntry>,
    /// Candidates skipped because the peer's filter says it has them.
    pub skipped: u64,
}

impl Plan {
    pub fn new(cands: Vec<u64>, filter: Option<Filter>) -> Plan {
        let lo = cands.first().map_or(0, |s| s - 1);
        let hi = cands.last().copied().unwrap_or(0);
        Plan {
            sent: SeqBits::new(lo, hi),
            cands,
            pos: 0,
            filter,
            done: false,
            buf: VecDeque::new(),
            skipped: 0,
        }
    }

    /// The next node to send, or `None` when the plan is exhausted.
    pub fn next(&mut self, store: &impl SyncStore) -> Result<Option<RawEntry>, SyncError> {
        loop {
            if self.buf.is_empty() {
                self.fill(store)?;
            }
            let Some(e) = self.buf.pop_front() else {
                break;
            };
            let seq = e.seq;
            if let Some(f) = &self.filter {
                // A positive is skipped unless one of its links was sent: the peer lacks that
                // link, so it lacks this node too (it was a false positive).
                if f.contains(&e.hash) {
                    let node = Node::decode_trusted(&e.bytes, e.hash).map_err(Error::from)?;
                    let linked_sent = store
                        .seqs_of(node.links())?
                        .into_iter()
                        .flatten()
                        .any(|s| self.sent.get(s));
                    if !linked_sent {
                        self.skipped += 1;
                        continue;
                    }
                }
            }
            self.sent.set(seq);
            return Ok(Some(e));
        }
        self.done = true;
        Ok(None)
    }

    /// Reads the next run of consecutive candidates (at most `CHUNK`) in one store call.
    fn fill(&mut self, store: &impl SyncStore) -> Result<(), SyncError> {
        let Some(&first) = self.cands.get(self.pos) else {
            return Ok(());
        };
        let mut n = 1;
        while n < CHUNK && self.cands.get(self.pos + n) == Some(&(first + n as u64)) {
            n += 1;
        }
        let got = store.entries(first - 1, first + n as u64 - 1, n)?;
        if got.len() != n {
            return Err(Error::Corrupt(format!("feed seqs {first}.. vanished")).into());
        }
        self.pos += n;
        self.buf.extend(got);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::MemStore;
    use crate::PeerId;

    #[test]
    fn paint_finds_exactly_the_difference() {
        let s = MemStore::new(PeerId([1; 16]));
        let a = s.append(b"a".to_vec()).unwrap();
        let b = s.append(b"b".to_vec()).unwrap();
        let c1 = s.add([b.hash()], b"c1".to_vec()).unwrap();
        let c2 = s.add([b.hash()], b"c2".to_vec()).unwrap();
        let d = s.add([c1.hash()], b"d".to_vec()).unwrap();
        let heads = vec![c2.hash(), d.hash()];
        assert_eq!(paint(&s, &heads, &[c1.hash()], 0).unwrap(), vec![4, 5]);
        assert_eq!(paint(&s, &heads, &[a.hash()], 0).unwrap(), vec![2, 3, 4, 5]);
        assert_eq!(paint(&s, &heads, &[], 3).unwrap(), vec![4, 5]);
        assert!(paint(&s, &heads, &heads, 0).unwrap().is_empty());
    }
}
