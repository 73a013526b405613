//! The handshake half of [`Session`]: the peer's `Hello` and `Heads`, then the answer (a
//! `Summary`, unless both sides have the same heads) and the start of the catch-up.

use super::plan::paint;
use super::send;
use super::{Exchange, Handshake, Mode, RecvHalf, SendHalf, Session, State, SummaryState};
use crate::hash::Hash;
use crate::sync::error::SyncError;
use crate::sync::store::SyncStore;
use crate::sync::wire::message::{bitmap, Hello, Message, Summary};

fn mode_name(send: bool) -> &'static str {
    if send {
        "only pushes"
    } else {
        "only pulls"
    }
}

impl<S: SyncStore> Session<S> {
    pub(super) fn on_hello(&mut self, h: Hello) -> Result<(), SyncError<S::Error>> {
        if h.peer == self.me {
            return Err(SyncError::SelfSync { peer: h.peer });
        }
        if h.head_count > self.limits.peer_heads as u64 {
            return Err(SyncError::TooManyHeads {
                peer: h.peer,
                count: h.head_count,
                max: self.limits.peer_heads,
            });
        }
        if (h.heads.len() as u64) < h.head_count {
            self.state = State::Handshake(Handshake::CollectHeads(h));
            return Ok(());
        }
        self.on_peer_heads(h)
    }

    pub(super) fn on_heads(&mut self, more: Vec<Hash>) -> Result<(), SyncError<S::Error>> {
        let taken = std::mem::replace(&mut self.state, State::Handshake(Handshake::AwaitHello));
        let State::Handshake(Handshake::CollectHeads(mut h)) = taken else {
            unreachable!("checked by handle");
        };
        if (h.heads.len() + more.len()) as u64 > h.head_count {
            return Err(SyncError::Malformed {
                kind: "Heads",
                reason: format!("more heads than the {} announced", h.head_count),
            });
        }
        h.heads.extend(more);
        if (h.heads.len() as u64) < h.head_count {
            self.state = State::Handshake(Handshake::CollectHeads(h));
            return Ok(());
        }
        self.on_peer_heads(h)
    }

    /// The peer's `Hello` with all its heads: decides who streams and answers with a
    /// `Summary` (unless both have the same heads).
    fn on_peer_heads(&mut self, h: Hello) -> Result<(), SyncError<S::Error>> {
        let send_on = self.cfg.mode != Mode::Pull && h.mode.receive;
        let recv_on = self.cfg.mode != Mode::Push && h.mode.send;
        if !send_on && !recv_on {
            return Err(SyncError::ModeMismatch {
                peer: h.peer,
                mine: mode_name(self.cfg.mode == Mode::Push),
                theirs: mode_name(h.mode.send),
            });
        }
        let live = self.cfg.live || h.mode.live;
        self.stats.total_hint = Some(h.last_seq);
        let cursor = self.store.peer_cursor(h.peer)?;
        let floor = cursor.filter(|c| c.seq <= self.mine.last);
        let mut send = SendHalf::new(self.mine.last, floor, self.deltas);
        if h.heads == self.mine.heads {
            send.in_sync(send_on, self.mine.heads.clone());
            let recv = if recv_on {
                RecvHalf::caught()
            } else {
                RecvHalf::off()
            };
            self.state = State::CatchUp(Box::new(Exchange {
                peer: h,
                summary: SummaryState::InSync,
                live,
                send,
                recv,
            }));
            return self.maybe_finish();
        }
        // Only nodes this side had at its snapshot count as known. The peer decides from our
        // Hello (the snapshot) whether we will stream to it; a head of the peer's stored since
        // (a local write, another session) could otherwise make us start a stream that the
        // peer, knowing all our heads, does not expect.
        let last = self.mine.last;
        let seqs: Vec<Option<u64>> = (self.store.seqs_of(&h.heads)?.into_iter())
            .map(|s| s.filter(|&s| s <= last))
            .collect();
        let found = self.store.find_prefixes(&h.samples)?;
        let knew_all = seqs.iter().all(Option::is_some);
        let known_points: Vec<Hash> = (h.heads.iter().zip(&seqs))
            .filter(|(_, s)| s.is_some())
            .map(|(h, _)| *h)
            .chain(found.iter().flatten().copied())
            .collect();
        // No filter when nothing shared is known: the peer's samples reach back through its
        // whole feed, so finding none of them means it shares (almost) nothing with me, and
        // a filter over my log would cost me a walk and hashing for nothing.
        let filter = if recv_on && !knew_all && !known_points.is_empty() {
            self.filter(&known_points, send.floor())?
        } else {
            None
        };
        // With all the peer's heads known the plan uses no floor, so there is none to check.
        let floor = if send_on && !knew_all && send.floor() > 0 {
            send.floor_heads().to_vec()
        } else {
            Vec::new()
        };
        self.out.push_back(Message::Summary(Summary {
            known_heads: bitmap(seqs.len(), |i| seqs[i].is_some()),
            known_samples: bitmap(found.len(), |i| found[i].is_some()),
            filter,
            floor,
        }));
        if !send_on {
            send.off();
        } else if knew_all {
            // I have everything the peer has: the difference is exact, start now. No floor is
            // needed (the walk stops at the peer's heads), so none can be wrong.
            let painted = paint(
                &self.store,
                &self.mine.heads,
                &h.heads,
                0,
                self.limits.plan_walk,
            )?;
            send.start(painted.or_everything_below(0), None, h.heads.clone());
        } else {
            send.await_summary(known_points);
        }
        let recv = if !recv_on {
            RecvHalf::off()
        } else if knew_all {
            RecvHalf::caught()
        } else {
            RecvHalf::streaming()
        };
        self.state = State::CatchUp(Box::new(Exchange {
            peer: h,
            summary: SummaryState::Awaited,
            live,
            send,
            recv,
        }));
        Ok(())
    }

    /// A Bloom filter of my nodes the peer may be about to offer: those outside what we are
    /// known to share (above `floor`). Its cost is bounded by [`Limits::filter_walk`], so a
    /// `Hello` from a peer that shares nothing costs a bounded walk, not one over the whole
    /// log.
    fn filter(
        &self,
        known_points: &[Hash],
        floor: u64,
    ) -> Result<Option<crate::sync::wire::message::Filter>, SyncError<S::Error>> {
        let painted = paint(
            &self.store,
            &self.mine.heads,
            known_points,
            floor,
            self.limits.filter_walk,
        )?;
        let mut f = crate::sync::wire::message::Filter::with_capacity(
            self.cfg.filter_key,
            painted.seqs.len() as u64,
        );
        if let Some(f) = &mut f {
            for h in send::hashes_at(&self.store, &painted.seqs)? {
                f.insert(&h);
            }
        }
        Ok(f)
    }
}
