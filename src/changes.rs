//! The changes feed as an iterator, and subscriptions to new commits.

use std::collections::VecDeque;

use tokio::sync::watch;

use crate::error::Result;
use crate::hash::Hash;
use crate::log::Log;
use crate::node::Node;

const CHUNK: usize = 512;

/// One feed entry: a node and its local arrival position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Position in the feed (1-based).
    pub seq: u64,
    /// The node.
    pub node: Node,
}

/// One feed entry as stored: hash and canonical bytes, not decoded (what sync sends). The
/// bytes were checked to hash to `hash` when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Position in the feed (1-based).
    pub seq: u64,
    /// The node's hash.
    pub hash: Hash,
    /// The node's canonical encoding.
    pub bytes: Vec<u8>,
}

/// Iterator over the changes feed; see [`Log::changes`].
pub struct Changes {
    log: Log,
    after: u64,
    buf: VecDeque<RawEntry>,
    /// An error met while filling `buf`, reported once `buf` is drained.
    pending: Option<crate::error::Error>,
    failed: bool,
}

impl Changes {
    pub(crate) fn new(log: Log, since: u64) -> Changes {
        Changes {
            log,
            after: since,
            buf: VecDeque::new(),
            pending: None,
            failed: false,
        }
    }

    /// Yields raw entries (hash and bytes) instead of decoded nodes.
    pub fn raw(self) -> RawChanges {
        RawChanges(self)
    }

    fn next_raw(&mut self) -> Option<Result<RawEntry>> {
        if self.failed {
            return None;
        }
        if self.buf.is_empty() {
            if let Some(e) = self.pending.take() {
                self.failed = true;
                return Some(Err(e));
            }
            // Entries read before a failure in the same chunk come first, then the error.
            if let Err(e) = self.fill() {
                if self.buf.is_empty() {
                    self.failed = true;
                    return Some(Err(e));
                }
                self.pending = Some(e);
            }
        }
        match self.buf.pop_front() {
            Some(e) => {
                self.after = e.seq;
                Some(Ok(e))
            }
            None => None, // caught up; a later call reads again
        }
    }

    fn fill(&mut self) -> Result<()> {
        let store = self.log.store();
        store.read(|txn| {
            for rec in store.feed.after(txn, self.after)?.take(CHUNK) {
                let rec = rec?;
                // Hash-checked here, so that nothing damaged on disk is ever sent or used.
                let bytes = rec.checked()?;
                self.buf.push_back(RawEntry {
                    seq: rec.seq,
                    hash: rec.hash,
                    bytes: bytes.to_vec(),
                });
            }
            Ok(())
        })
    }
}

impl Iterator for Changes {
    type Item = Result<FeedEntry>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_raw()?.and_then(|e| {
            Ok(FeedEntry {
                seq: e.seq,
                node: Node::decode_trusted(&e.bytes, e.hash)?,
            })
        }))
    }
}

/// Iterator over raw feed entries; see [`Changes::raw`].
pub struct RawChanges(Changes);

impl Iterator for RawChanges {
    type Item = Result<RawEntry>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_raw()
    }
}

/// Tells its holder when new nodes are committed, without queueing them: it carries only the
/// newest seq, so a slow subscriber costs no memory; it then reads [`Log::changes`] from the
/// last seq it handled. Works from async code (`changed`) and from threads (`wait_blocking`).
///
/// ```
/// # fn main() -> Result<(), braidlog::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = braidlog::Log::open(dir.path())?;
/// let mut sub = log.subscribe();
/// let writer = log.clone();
/// std::thread::spawn(move || writer.append(b"x".to_vec()).unwrap());
/// assert_eq!(sub.wait_blocking(), Some(1));
/// # Ok(()) }
/// ```
pub struct Subscription {
    rx: watch::Receiver<u64>,
}

impl Subscription {
    pub(crate) fn new(rx: watch::Receiver<u64>) -> Subscription {
        Subscription { rx }
    }

    /// The newest committed seq.
    pub fn latest(&self) -> u64 {
        *self.rx.borrow()
    }

    /// Waits for a commit after the last one this subscription saw; returns the newest seq,
    /// or `None` when the log was dropped.
    pub async fn changed(&mut self) -> Option<u64> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// [`Subscription::changed`] for threads outside an async runtime.
    pub fn wait_blocking(&mut self) -> Option<u64> {
        pollster::block_on(self.changed())
    }
}

/// Where a stored node came from, as [`Log::origin`] and KV watch events report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Written through this process's handle (including merges its operators wrote).
    Local,
    /// Received by sync from this peer.
    Peer(crate::peer::PeerId),
    /// Not known here: stored by another process, before this process opened the log, or
    /// more than [`ORIGIN_WINDOW`] commits ago.
    Unknown,
}

/// How many recent commits [`Log::origin`] remembers (one record per commit, about 40
/// bytes each, in memory only). A watcher that falls further behind sees
/// [`Origin::Unknown`] for the older nodes.
pub const ORIGIN_WINDOW: usize = 4096;

/// The origins of recent commits: ranges of seqs, increasing.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    ranges: VecDeque<(u64, u64, Origin)>,
}

impl Origins {
    /// Records that seqs `first..=last` came from `origin`, replacing any record from
    /// `first` on (a transaction that was run again, or one that failed).
    pub(crate) fn record(&mut self, first: u64, last: u64, origin: Origin) {
        self.forget_from(first);
        if self.ranges.len() == ORIGIN_WINDOW {
            self.ranges.pop_front();
        }
        self.ranges.push_back((first, last, origin));
    }

    /// Drops the records of seqs from `first` on (their transaction did not commit).
    pub(crate) fn forget_from(&mut self, first: u64) {
        while self.ranges.back().is_some_and(|r| r.0 >= first) {
            self.ranges.pop_back();
        }
    }

    pub(crate) fn find(&self, seq: u64) -> Origin {
        let at = self.ranges.partition_point(|r| r.1 < seq);
        match self.ranges.get(at) {
            Some(&(first, last, origin)) if first <= seq && seq <= last => origin,
            _ => Origin::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_found_replaced_and_bounded() {
        let mut o = Origins::default();
        let peer = Origin::Peer(crate::peer::PeerId([7; 16]));
        o.record(1, 3, Origin::Local);
        o.record(4, 4, peer);
        assert_eq!(
            (o.find(0), o.find(1), o.find(3)),
            (Origin::Unknown, Origin::Local, Origin::Local)
        );
        assert_eq!((o.find(4), o.find(5)), (peer, Origin::Unknown));
        // A transaction run again from seq 4 replaces the record.
        o.record(4, 6, Origin::Local);
        assert_eq!(o.find(5), Origin::Local);
        o.forget_from(4);
        assert_eq!(o.find(4), Origin::Unknown);
        // At and far beyond the window: the oldest records go, memory stays bounded.
        for i in 0..(3 * ORIGIN_WINDOW as u64) {
            o.record(10 + i, 10 + i, peer);
        }
        assert_eq!(o.ranges.len(), ORIGIN_WINDOW);
        assert_eq!(o.find(10), Origin::Unknown);
        assert_eq!(o.find(9 + 3 * ORIGIN_WINDOW as u64), peer);
    }
}
