//! What to send: the nodes reachable from my heads but not from points both sides share, found
//! by painting back from both in descending seq order (as git finds merge bases). The walk
//! stops as soon as nothing on the frontier is mine alone, so it costs the difference plus the
//! width of the DAG, not the size of the log.

use std::collections::{HashMap, VecDeque};

use super::filter::SeqBits;
use crate::hash::Hash;
use crate::log::RawEntry;
use crate::node::Node;
use crate::sync::error::SyncError;
use crate::sync::store::{StoreError, SyncStore};
use crate::sync::wire::message::Filter;

const MINE: u8 = 1;
const THEIRS: u8 = 2;
const CHUNK: usize = 512;

/// The result of [`paint`].
#[derive(Debug, Default)]
pub(crate) struct Painted {
    /// Seqs (ascending, all above the floor) of nodes reachable from `mine` and not from
    /// `theirs`; when `complete` is false, only the newest of them.
    pub seqs: Vec<u64>,
    /// Whether the walk finished within its budget.
    pub complete: bool,
    /// When not complete: the walk stopped here; seqs at or below it (and above the floor)
    /// were not classified, and `seqs` are all above it.
    pub stopped_at: u64,
}

impl Painted {
    /// The seqs to send when the walk may have stopped early: those found, and every seq the
    /// walk did not reach (a superset: the peer may get nodes it has, never fewer).
    pub fn or_everything_below(self, floor: u64) -> Vec<u64> {
        if self.complete {
            return self.seqs;
        }
        (floor + 1..=self.stopped_at).chain(self.seqs).collect()
    }
}

/// The seqs of nodes reachable from `mine` and not from `theirs`, above `floor` (nodes at or
/// below it are known to be shared and are not entered). The walk decodes at most `budget`
/// nodes; past that it stops and returns the newest seqs found with `complete == false`.
pub(crate) fn paint<St: SyncStore>(
    store: &St,
    mine: &[Hash],
    theirs: &[Hash],
    floor: u64,
    budget: usize,
) -> Result<Painted, SyncError<St::Error>> {
    let mine_seqs = store.seqs_of(mine)?;
    let their_seqs = store.seqs_of(theirs)?;
    if their_seqs.iter().all(Option::is_none) {
        // Nothing shared is known: everything above the floor is a candidate, no walk needed.
        let last = mine_seqs.iter().flatten().copied().max().unwrap_or(0);
        let lo = floor.max(last.saturating_sub(budget as u64));
        return Ok(Painted {
            seqs: (lo + 1..=last).collect(),
            complete: lo == floor,
            stopped_at: lo,
        });
    }
    // One walk in one read transaction (`walk_back`), in descending seq order: every path to
    // a node has been followed when it is visited (links have lower seqs), so its paint is
    // final then. `colours` holds the frontier's paint; `mine_only` counts the frontier nodes
    // painted MINE only, and the walk descends no further once there are none.
    let mut colours: HashMap<Hash, u8> = HashMap::new();
    let mut mine_only = 0usize;
    let mut starts = Vec::new();
    for (hashes, seqs, flag) in [(mine, mine_seqs, MINE), (theirs, their_seqs, THEIRS)] {
        for (h, s) in hashes.iter().zip(seqs) {
            if s.is_some() {
                paint_into(&mut colours, &mut mine_only, *h, flag);
                starts.push(*h);
            }
        }
    }
    let mut out = Vec::new();
    let mut visited = 0usize;
    let mut complete = true;
    let mut stopped_at = 0;
    let mut stop = false;
    store.walk_back(&starts, &mut |seq, node| {
        let flags = colours.remove(&node.hash()).unwrap_or(0);
        if stop || mine_only == 0 {
            return Ok(false);
        }
        if flags == MINE {
            mine_only -= 1;
        }
        if seq <= floor {
            return Ok(false);
        }
        if visited >= budget {
            complete = false;
            stopped_at = seq;
            stop = true;
            return Ok(false);
        }
        visited += 1;
        if flags == MINE {
            out.push(seq);
        }
        for l in node.links() {
            paint_into(&mut colours, &mut mine_only, *l, flags);
        }
        Ok(true)
    })?;
    out.reverse();
    Ok(Painted {
        seqs: out,
        complete,
        stopped_at,
    })
}

/// Adds `flag` to the paint of `h`, keeping the count of MINE-only nodes.
fn paint_into(colours: &mut HashMap<Hash, u8>, mine_only: &mut usize, h: Hash, flag: u8) {
    let c = colours.entry(h).or_insert(0);
    let before = *c;
    *c |= flag;
    if before != MINE && *c == MINE {
        *mine_only += 1;
    } else if before == MINE && *c != MINE {
        *mine_only -= 1;
    }
}

/// A run of nodes to stream in feed order: the catch-up candidates thinned by the peer's
/// filter, or the answer to a `Want`. Nodes already sent in the session (`sent`) are skipped.
#[derive(Debug)]
pub(crate) struct Plan {
    cands: Vec<u64>,
    pos: usize,
    filter: Option<Filter>,
    buf: VecDeque<RawEntry>,
    /// Candidates skipped because the peer's filter says it has them.
    pub skipped: u64,
}

impl Plan {
    pub fn new(cands: Vec<u64>, filter: Option<Filter>) -> Plan {
        Plan {
            cands,
            pos: 0,
            filter,
            buf: VecDeque::new(),
            skipped: 0,
        }
    }

    /// Bytes held (seqs to come and the read-ahead).
    pub fn bytes(&self) -> usize {
        (self.cands.len() - self.pos) * 8 + self.buf.iter().map(|e| e.bytes.len()).sum::<usize>()
    }

    /// The next node to send, or `None` when the plan is exhausted.
    pub fn next<St: SyncStore>(
        &mut self,
        store: &St,
        sent: &mut SeqBits,
    ) -> Result<Option<RawEntry>, SyncError<St::Error>> {
        loop {
            if self.buf.is_empty() {
                self.fill(store)?;
            }
            let Some(e) = self.buf.pop_front() else {
                return Ok(None);
            };
            let seq = e.seq;
            if sent.get(seq) {
                continue;
            }
            if let Some(f) = &self.filter {
                // A positive is skipped unless one of its links was sent: the peer lacks that
                // link, so it lacks this node too (it was a false positive).
                if f.contains(&e.hash) {
                    let node = Node::decode_trusted(&e.bytes, e.hash).map_err(|err| {
                        SyncError::Store(St::Error::corrupt(format!(
                            "stored node {}: {err}",
                            e.hash
                        )))
                    })?;
                    let linked_sent = store
                        .seqs_of(node.links())?
                        .into_iter()
                        .flatten()
                        .any(|s| sent.get(s));
                    if !linked_sent {
                        self.skipped += 1;
                        continue;
                    }
                }
            }
            sent.set(seq);
            return Ok(Some(e));
        }
    }

    /// Reads the next run of consecutive candidates (at most `CHUNK`) in one store call.
    fn fill<St: SyncStore>(&mut self, store: &St) -> Result<(), SyncError<St::Error>> {
        let Some(&first) = self.cands.get(self.pos) else {
            return Ok(());
        };
        let mut n = 1;
        while n < CHUNK && self.cands.get(self.pos + n) == Some(&(first + n as u64)) {
            n += 1;
        }
        let got = store.entries(first - 1, first + n as u64 - 1, n)?;
        if got.len() != n {
            return Err(SyncError::Store(St::Error::corrupt(format!(
                "feed seqs {first}.. vanished"
            ))));
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
        let p = |theirs: &[Hash], floor, budget| {
            let r = paint(&s, &heads, theirs, floor, budget).unwrap();
            (r.seqs, r.complete)
        };
        assert_eq!(p(&[c1.hash()], 0, usize::MAX), (vec![4, 5], true));
        assert_eq!(p(&[a.hash()], 0, usize::MAX), (vec![2, 3, 4, 5], true));
        assert_eq!(p(&[], 3, usize::MAX), (vec![4, 5], true));
        assert_eq!(p(&heads, 0, usize::MAX), (vec![], true));
        // Past the budget: the newest candidates, marked incomplete.
        assert_eq!(p(&[a.hash()], 0, 2), (vec![4, 5], false));
        assert_eq!(p(&[], 0, 2), (vec![4, 5], false));
        // Falling back to everything the walk did not reach: a superset.
        let r = paint(&s, &heads, &[a.hash()], 0, 2).unwrap();
        assert_eq!(r.or_everything_below(0), vec![1, 2, 3, 4, 5]);
        let r = paint(&s, &heads, &[a.hash()], 0, 3).unwrap();
        assert_eq!(r.or_everything_below(1), vec![2, 3, 4, 5]);
    }
}
