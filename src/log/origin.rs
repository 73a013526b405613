//! Where each stored node came from: this process, or a peer it was received from. Kept in
//! memory for watchers, not stored.

use std::collections::VecDeque;

use crate::identity::PeerId;

/// Where a stored node came from, as [`crate::Log::origin`] and KV watch events report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Written through this process's handle (including merges its operators wrote).
    Local,
    /// Received by sync from this peer.
    Peer(PeerId),
    /// Not known here: stored by another process, before this process opened the log, or
    /// more than [`ORIGIN_WINDOW`] commits ago.
    Unknown,
}

/// How many recent commits [`crate::Log::origin`] remembers (one record per commit, about 40
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
        let peer = Origin::Peer(PeerId([7; 16]));
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
