//! The receiving half of [`Session`]: checking, batching, holding nodes whose links have not
//! come, and asking for them.

use std::collections::HashSet;

use super::*;

impl<S: SyncStore> Session<S> {
    pub(super) fn on_node(&mut self, bytes: Vec<u8>) -> Result<(), SyncError> {
        let peer = self.peer();
        let node =
            Node::decode(&bytes).map_err(|source| SyncError::InvalidNode { peer, source })?;
        let hash = node.hash();
        if self.batch_set.contains(&hash) || self.pending_set.contains(&hash) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        // Whether the node itself is stored is not looked up here: `insert_batch` finds it
        // anyway (one index descent) and `commit` counts it as a duplicate. Only links that are
        // neither in the batch nor pending need the store; in feed order that is rare (a
        // chain's links are in the batch), so most nodes cost no read transaction at all.
        let mut probe = Vec::new();
        let mut waits = false;
        for l in node.links() {
            if self.pending_set.contains(l) {
                waits = true;
            } else if !self.batch_set.contains(l) {
                probe.push(*l);
            }
        }
        let missing_link =
            !waits && !probe.is_empty() && self.store.seqs_of(&probe)?.iter().any(Option::is_none);
        if waits || missing_link {
            self.pending_bytes += bytes.len();
            self.pending_set.insert(hash);
            self.pending.push(node);
            if self.pending.len() > MAX_PENDING_NODES || self.pending_bytes > MAX_PENDING_BYTES {
                return Err(SyncError::TooManyPending {
                    peer,
                    nodes: self.pending.len(),
                    bytes: self.pending_bytes,
                });
            }
            return Ok(());
        }
        self.batch_bytes += bytes.len();
        self.batch_set.insert(hash);
        self.batch.push(node);
        if self.batch.len() >= BATCH_NODES || self.batch_bytes >= BATCH_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    /// Stores the checked batch in one transaction.
    pub(super) fn commit(&mut self) -> Result<(), SyncError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let peer = self.peer();
        crate::policy::screen(peer, &mut self.batch)?;
        let done =
            (self.store.insert_batch(&self.batch)).map_err(|e| crate::policy::refused(peer, e))?;
        for (n, r) in self.batch.iter().zip(done) {
            match r {
                Inserted::New(seq) => {
                    self.stats.nodes_received += 1;
                    self.stats.node_bytes_received += n.encoded_len() as u64;
                    match self.from_peer.back_mut() {
                        Some((_, hi)) if *hi + 1 == seq => *hi = seq,
                        _ => self.from_peer.push_back((seq, seq)),
                    }
                }
                Inserted::Existing(_) => self.stats.duplicates += 1,
            }
        }
        self.batch.clear();
        self.batch_set.clear();
        self.batch_bytes = 0;
        Ok(())
    }

    /// Moves pending nodes whose links have all arrived into the batch, and commits.
    pub(super) fn resolve_pending(&mut self) -> Result<(), SyncError> {
        self.commit()?;
        loop {
            let before = self.pending.len();
            let mut keep = Vec::new();
            for node in std::mem::take(&mut self.pending) {
                let seqs = self.store.seqs_of(node.links())?;
                let ready = node
                    .links()
                    .iter()
                    .zip(&seqs)
                    .all(|(l, s)| s.is_some() || self.batch_set.contains(l));
                if ready {
                    self.pending_set.remove(&node.hash());
                    self.pending_bytes -= node.encoded_len();
                    self.batch_set.insert(node.hash());
                    self.batch.push(node);
                } else {
                    keep.push(node);
                }
            }
            self.pending = keep;
            self.commit()?;
            if self.pending.len() == before || self.pending.is_empty() {
                return Ok(());
            }
        }
    }

    /// Hashes still missing: links of pending nodes, and (until caught up) announced heads.
    pub(super) fn missing(&self) -> Result<Vec<(Hash, Option<Hash>)>, SyncError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for n in &self.pending {
            let seqs = self.store.seqs_of(n.links())?;
            for (l, s) in n.links().iter().zip(seqs) {
                if s.is_none() && !self.pending_set.contains(l) && seen.insert(*l) {
                    out.push((*l, Some(n.hash())));
                }
            }
        }
        if !self.recv_complete {
            let heads = &self.peer.as_ref().expect("after hello").heads;
            for (h, s) in heads.iter().zip(self.store.seqs_of(heads)?) {
                if s.is_none() && !self.pending_set.contains(h) && seen.insert(*h) {
                    out.push((*h, None));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn on_end_stream(&mut self) -> Result<(), SyncError> {
        self.resolve_pending()?;
        let missing = self.missing()?;
        let answered = self.wanted.take();
        if missing.is_empty() && self.pending.is_empty() {
            if !self.recv_complete && self.expect_stream() {
                self.recv_complete = true;
                self.out.push_back(Message::Done);
            }
            return self.maybe_finish();
        }
        let peer = self.peer();
        let fail = |(h, node): (Hash, Option<Hash>)| match node {
            Some(node) => SyncError::MissingLink {
                peer,
                node,
                link: h,
            },
            None => SyncError::MissingHead { peer, hash: h },
        };
        let repeat = answered
            .as_ref()
            .and_then(|w| missing.iter().find(|(h, _)| w.contains(h)));
        if let Some(m) = repeat {
            return Err(fail(*m));
        }
        if missing.is_empty() {
            // Pending nodes wait on other pending nodes only: impossible in a DAG.
            return Err(fail((
                self.pending[0].links()[0],
                Some(self.pending[0].hash()),
            )));
        }
        if !self.recv_complete && self.want_rounds >= MAX_WANT_ROUNDS {
            return Err(fail(missing[0]));
        }
        self.send_want(missing.into_iter().map(|(h, _)| h).collect());
        Ok(())
    }

    pub(super) fn send_want(&mut self, mut hashes: Vec<Hash>) {
        hashes.truncate(MAX_WANT);
        self.want_rounds += 1;
        self.stats.round_trips += 1;
        self.wanted = Some(hashes.iter().copied().collect());
        self.out.push_back(Message::Want(hashes));
    }

    /// Commits what has been received and checked so far; in a live session also asks for
    /// links that have not come. Call it when no more input is immediately available.
    pub fn flush(&mut self) -> Result<(), SyncError> {
        self.commit()?;
        if self.phase == Phase::Live && !self.pending.is_empty() && self.wanted.is_none() {
            self.resolve_pending()?;
            let missing: Vec<Hash> = self.missing()?.into_iter().map(|(h, _)| h).collect();
            if !missing.is_empty() {
                self.send_want(missing);
            }
        }
        Ok(())
    }
}
