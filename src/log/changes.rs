//! The changes feed as an iterator, and subscriptions to new commits.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use super::error::{LogError, Result};
use super::registry::Shared;
use crate::hash::Hash;
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

/// Iterator over the changes feed; see [`crate::Log::changes`]. It holds the log open.
pub struct Changes {
    log: Arc<Shared>,
    after: u64,
    buf: VecDeque<RawEntry>,
    /// An error met while filling `buf`, reported once `buf` is drained.
    pending: Option<LogError>,
    failed: bool,
}

impl Changes {
    pub(crate) fn new(log: Arc<Shared>, since: u64) -> Changes {
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
/// newest seq, so a slow subscriber costs no memory; it then reads [`crate::Log::changes`] from the
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
