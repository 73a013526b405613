//! Watching keys: notified of every new operation on a key or a prefix, local or received,
//! with where it came from ([`Origin`]) and whether the key is in conflict.
//!
//! Built on [`crate::Log::subscribe`] (which carries only the newest committed seq) and the
//! changes feed: a watcher sleeps until a commit, then reads the feed from where it stopped
//! and yields the operations that match. No polling, no queue that grows with a slow watcher:
//! the feed is the queue.

use super::op::{KvOp, Op};
use super::Kv;
use super::Result;
use crate::hash::Hash;
use crate::log::{Changes, Origin, Subscription};

/// Which keys a watcher reports.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    Key(Vec<u8>),
    Prefix(Vec<u8>),
}

/// One new operation on a watched key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Local feed position of the operation's node.
    pub seq: u64,
    /// The operation's node.
    pub hash: Hash,
    /// The key (without its namespace).
    pub key: Vec<u8>,
    /// What was written. The key's current versions may differ (a concurrent write).
    pub op: Op,
    /// Where the operation came from: a write of this process, or the peer sync got it from
    /// (see [`crate::Log::origin`] for when it is unknown).
    pub origin: Origin,
    /// Whether the key was in conflict when the event was read: after this operation and any
    /// later ones already committed (a merge operator's merge, say), so a watcher that merges
    /// on arrival is not told of conflicts that are already gone.
    pub conflict: bool,
}

/// Reports new operations on watched keys; see [`Kv::watch`] and [`Kv::watch_prefix`].
///
/// ```
/// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
/// # fn main() -> Result<(), braidlog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = braidlog::Log::open(dir.path())?;
/// let kv = braidlog::kv::Kv::open(&log)?;
/// let mut watcher = kv.watch(b"door");
/// let writer = kv.clone();
/// std::thread::spawn(move || {
///     writer.put(b"window", b"open".to_vec()).unwrap(); // not watched
///     writer.put(b"door", b"closed".to_vec()).unwrap();
/// });
/// let event = watcher.next_blocking()?;
/// assert_eq!(event.key, b"door");
/// assert_eq!(event.op.value(), Some(&b"closed"[..]));
/// # Ok(()) }
/// ```
pub struct Watcher {
    kv: Kv,
    filter: Filter,
    sub: Subscription,
    feed: Changes,
    /// The last feed seq looked at.
    after: u64,
}

impl Watcher {
    pub(crate) fn new(kv: Kv, filter: Filter) -> Watcher {
        // Subscribe before reading the last seq: a commit in between is then both in the
        // feed after `last` and announced, never missed.
        let sub = kv.log.subscribe();
        let last = kv.log.last_seq().unwrap_or_else(|_| sub.latest());
        let feed = kv.log.changes(last);
        Watcher {
            kv,
            filter,
            sub,
            feed,
            after: last,
        }
    }

    fn matches(&self, op: &KvOp) -> bool {
        op.namespace == self.kv.ns
            && match &self.filter {
                Filter::Key(k) => &op.key == k,
                Filter::Prefix(p) => op.key.starts_with(p),
            }
    }

    /// The next matching operation already committed, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Event>> {
        while let Some(entry) = self.feed.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    // The feed iterator stops after an error; resume from the last good seq.
                    self.feed = self.kv.log.changes(self.after);
                    return Err(e.into());
                }
            };
            self.after = entry.seq;
            let Some(op) = KvOp::decode(entry.node.payload()) else {
                continue;
            };
            if self.matches(&op) {
                let id = op.key_id();
                let conflict = self
                    .kv
                    .log
                    .read(|txn| super::view::in_conflict(&self.kv.tables, &txn, &id));
                let conflict = match conflict {
                    Ok(c) => c,
                    Err(e) => {
                        // Report this entry again on the next call.
                        self.after = entry.seq - 1;
                        self.feed = self.kv.log.changes(self.after);
                        return Err(e.into());
                    }
                };
                return Ok(Some(Event {
                    seq: entry.seq,
                    hash: entry.node.hash(),
                    origin: self.kv.log.origin(entry.seq),
                    conflict,
                    key: op.key,
                    op: op.op,
                }));
            }
        }
        Ok(None)
    }

    /// Waits for the next matching operation. Reads the feed (short LMDB reads) on the
    /// calling task; never holds a transaction across the wait.
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(event) = self.try_next()? {
                return Ok(event);
            }
            // The watcher holds the log, so the channel cannot close; guard against a spin.
            if self.sub.changed().await.is_none() {
                return Err(crate::log::LogError::View {
                    view: super::view::VIEW_NAME.into(),
                    message: "the log's commit channel closed".into(),
                }
                .into());
            }
        }
    }

    /// [`Watcher::next`] for threads outside an async runtime.
    pub fn next_blocking(&mut self) -> Result<Event> {
        pollster::block_on(self.next())
    }
}
