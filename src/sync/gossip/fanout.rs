//! The fan-out task: reads the topic, announces heads, runs fetch sessions (see the module
//! docs of [`super`] for when it announces and what it bounds).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use iroh_gossip::api::{Event, GossipReceiver, GossipSender};
use n0_future::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant as Deadline;

use super::announce::{Announce, AnnounceError, Bucket};
use super::{GossipOptions, Topic};
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::sync::iroh::{IrohError, IrohNode, Ticket};
use crate::sync::net::options::SyncReport;
use crate::sync::session::Mode;

/// Head sets recently announced (by anyone), remembered so that reaching one is not
/// announced again.
const SEEN: usize = 64;
/// How often to look for commits made by other processes.
const POLL: Duration = Duration::from_secs(1);
/// Most neighbours whose rate is tracked; neighbours number a handful (iroh-gossip's
/// active view), so this only guards against a membership layer gone wrong.
const MAX_BUCKETS: usize = 256;

/// Counters of a replica's gossip, for tests, benchmarks and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Announcements this replica sent.
    pub announced: u64,
    /// Their bytes.
    pub announce_bytes: u64,
    /// Announcements received and accepted (within every bound).
    pub received: u64,
    /// Dropped: over [`super::MAX_ANNOUNCE_BYTES`].
    pub too_large: u64,
    /// Dropped: malformed.
    pub malformed: u64,
    /// Dropped: the delivering neighbour was over its rate.
    pub rate_limited: u64,
    /// Dropped: the announcer is not allowed by the access list.
    pub refused: u64,
    /// Dropped: [`super::GossipLimits::max_pending`] announcers were already waiting.
    pub pending_dropped: u64,
    /// Announcers waiting for a fetch now.
    pub pending: u64,
    /// Most announcers ever waiting at once.
    pub pending_peak: u64,
    /// Fetch sessions run now.
    pub in_flight: u64,
    /// Fetch sessions finished well.
    pub fetches: u64,
    /// Fetch sessions that failed.
    pub fetch_failures: u64,
    /// New nodes stored by fetches.
    pub nodes_fetched: u64,
    /// Bytes of fetch sessions, both ways.
    pub fetch_bytes: u64,
    /// Times the topic's receiver lagged and events were lost.
    pub lagged: u64,
}

/// A replica's part in a gossip topic. Dropping it stops the task (and leaves the topic).
#[derive(Debug)]
pub struct Fanout {
    stats: watch::Receiver<GossipStats>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Fanout {
    /// The counters now.
    pub fn stats(&self) -> GossipStats {
        self.stats.borrow().clone()
    }

    /// A receiver that sees every update of the counters, to wait on them.
    pub fn watch(&self) -> watch::Receiver<GossipStats> {
        self.stats.clone()
    }

    /// Leaves the topic: fetches in progress end (keeping what they checked).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl IrohNode {
    /// Joins `topic` through the replicas of `bootstrap` (none for the first replica) and
    /// starts fanning out. The node must have been bound with [`crate::sync::iroh::IrohConfig::gossip`],
    /// and should also [`IrohNode::serve`], so that neighbours can connect and fetch.
    pub async fn join_gossip(
        &self,
        topic: Topic,
        bootstrap: &[Ticket],
        options: GossipOptions,
    ) -> Result<Fanout, IrohError> {
        let gossip = self.gossip.as_ref().ok_or_else(|| {
            IrohError::Gossip("the node was bound without gossip (IrohConfig::gossip)".into())
        })?;
        let ids = bootstrap
            .iter()
            .filter(|t| t.id() != self.id())
            .map(|t| {
                self.add_peer(t);
                iroh::PublicKey::from_bytes(t.id().as_bytes()).expect("checked by the ticket")
            })
            .collect();
        let sub = gossip
            .subscribe(iroh_gossip::TopicId::from_bytes(topic.0), ids)
            .await
            .map_err(|e| IrohError::Gossip(e.to_string()))?;
        let (sender, receiver) = sub.split();
        let (stats_tx, stats) = watch::channel(GossipStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let runner = Runner {
            node: self.clone(),
            me: self.id(),
            options,
            sender,
            stats: GossipStats::default(),
            buckets: HashMap::new(),
            seen: VecDeque::new(),
            pending: BTreeMap::new(),
            in_flight: HashSet::new(),
            fetches: JoinSet::new(),
            dirty: true,
            greet: false,
            last_announce: None,
            stop: stop_rx,
        };
        let task = Some(tokio::spawn(runner.run(receiver, stats_tx)));
        Ok(Fanout { stats, stop, task })
    }
}

/// An announcer waiting for a fetch: its latest announcement, and the neighbour that
/// delivered it (tried when the announcer cannot be dialled).
struct Pending {
    announce: Announce,
    via: PublicKey,
}

type Fetched = (PublicKey, Result<SyncReport, IrohError>);

struct Runner {
    node: IrohNode,
    me: PublicKey,
    options: GossipOptions,
    sender: GossipSender,
    stats: GossipStats,
    buckets: HashMap<PublicKey, Bucket>,
    seen: VecDeque<Hash>,
    pending: BTreeMap<PublicKey, Pending>,
    in_flight: HashSet<PublicKey>,
    fetches: JoinSet<Fetched>,
    /// The heads may have changed since the last announcement.
    dirty: bool,
    /// A neighbour joined: tell the neighbours our heads.
    greet: bool,
    last_announce: Option<Deadline>,
    stop: watch::Receiver<bool>,
}

impl Runner {
    async fn run(mut self, mut receiver: GossipReceiver, stats: watch::Sender<GossipStats>) {
        let mut sub = self.node.log.subscribe();
        let mut reannounce = tokio::time::interval(self.options.reannounce);
        reannounce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reannounce.tick().await;
        let mut stop = self.stop.clone();
        // Commits by other processes on the same store do not reach `sub`: look at the feed's
        // end now and then, as live sessions do.
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seq = self.node.log.last_seq().unwrap_or(0);
        loop {
            self.start_fetches();
            self.stats.pending = self.pending.len() as u64;
            self.stats.pending_peak = self.stats.pending_peak.max(self.stats.pending);
            self.stats.in_flight = self.fetches.len() as u64;
            stats.send_replace(self.stats.clone());
            // Announce changed heads once fetches are done (not their halfway states), and
            // never more often than `min_interval`.
            let announce_at = ((self.dirty && self.fetches.is_empty()) || self.greet).then(|| {
                let now = Deadline::now();
                self.last_announce
                    .map_or(now, |t| (t + self.options.min_interval).max(now))
            });
            tokio::select! {
                () = stopped(&mut stop) => break,
                ev = receiver.next() => match ev {
                    Some(Ok(ev)) => self.on_event(ev),
                    // The gossip actor is gone (the endpoint closed).
                    _ => break,
                },
                seq = sub.changed() => match seq {
                    Some(_) => self.dirty = true,
                    None => break,
                },
                Some(done) = self.fetches.join_next() => self.fetched(done),
                () = sleep_until(announce_at), if announce_at.is_some() => self.announce().await,
                _ = reannounce.tick() => {
                    self.greet = true;
                }
                _ = poll.tick() => {
                    let seq = self.node.log.last_seq().unwrap_or(last_seq);
                    if seq != last_seq {
                        last_seq = seq;
                        self.dirty = true;
                    }
                }
            }
        }
        stats.send_replace(self.stats.clone());
        self.fetches.shutdown().await;
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::NeighborUp(_) => self.greet = true,
            Event::NeighborDown(id) => {
                self.buckets.remove(&PublicKey(*id.as_bytes()));
            }
            Event::Lagged => self.stats.lagged += 1,
            Event::Received(msg) => {
                let via = PublicKey(*msg.delivered_from.as_bytes());
                if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&via) {
                    self.buckets.clear();
                }
                let limits = &self.options.limits;
                let bucket = self
                    .buckets
                    .entry(via)
                    .or_insert_with(|| Bucket::new(limits.burst));
                if !bucket.take(limits.burst, limits.per_sec, Instant::now()) {
                    self.stats.rate_limited += 1;
                    return;
                }
                match Announce::decode(&msg.content) {
                    Ok(a) => self.on_announce(a, via),
                    Err(AnnounceError::TooLarge { .. }) => self.stats.too_large += 1,
                    Err(_) => self.stats.malformed += 1,
                }
            }
        }
    }

    fn on_announce(&mut self, a: Announce, via: PublicKey) {
        if a.from == self.me {
            return;
        }
        let log = self.node.log.clone();
        if !self.options.access.allows(&a.from, &log).unwrap_or(false) {
            self.stats.refused += 1;
            return;
        }
        self.stats.received += 1;
        self.remember(digest(&a.heads, a.more));
        if !self.lacks(&a) {
            return;
        }
        let room = self.pending.len() < self.options.limits.max_pending;
        if room || self.pending.contains_key(&a.from) {
            // One entry per announcer: a newer announcement replaces the older.
            self.pending.insert(a.from, Pending { announce: a, via });
        } else {
            self.stats.pending_dropped += 1;
        }
    }

    /// Whether the announced heads are not all stored here. A read of at most
    /// [`super::MAX_ANNOUNCE_HEADS`] keys in the memory map: short enough for the executor.
    fn lacks(&self, a: &Announce) -> bool {
        a.more
            || a.heads
                .iter()
                .any(|h| !self.node.log.contains(h).unwrap_or(false))
    }

    fn start_fetches(&mut self) {
        while self.fetches.len() < self.options.limits.max_fetches.max(1) {
            let next = self
                .pending
                .keys()
                .find(|k| !self.in_flight.contains(k))
                .copied();
            let Some(from) = next else { return };
            let p = self.pending.remove(&from).expect("found above");
            if !self.lacks(&p.announce) {
                continue;
            }
            self.in_flight.insert(from);
            let node = self.node.clone();
            let mut opts = self.options.session.clone();
            opts.mode = Mode::Both;
            opts.live = false;
            opts.progress = None;
            opts.shutdown = Some(self.stop.clone());
            self.fetches.spawn(async move {
                let id = iroh::PublicKey::from_bytes(from.as_bytes());
                let Ok(id) = id else {
                    let reason = "not a valid key".to_string();
                    return (from, Err(IrohError::Connect { peer: from, reason }));
                };
                let ips = p
                    .announce
                    .addrs
                    .iter()
                    .copied()
                    .map(iroh::TransportAddr::Ip);
                let addr = iroh::EndpointAddr::from_parts(id, ips);
                let r = node.connect_addr(addr, opts.clone()).await;
                let r = match (r, iroh::PublicKey::from_bytes(p.via.as_bytes())) {
                    // The announcer is out of reach: the neighbour that passed the
                    // announcement on is connected to us, and will have the heads soon.
                    (Err(IrohError::Connect { .. }), Ok(via)) if p.via != from => {
                        node.connect_addr(via, opts).await
                    }
                    (r, _) => r,
                };
                (from, r)
            });
        }
    }

    fn fetched(&mut self, done: Result<Fetched, tokio::task::JoinError>) {
        let (from, r) = match done {
            Ok(d) => d,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return,
        };
        self.in_flight.remove(&from);
        match r {
            Ok(r) => {
                self.stats.fetches += 1;
                self.stats.nodes_fetched += r.nodes_received;
                self.stats.fetch_bytes += r.bytes_sent + r.bytes_received;
            }
            Err(e) => {
                self.stats.fetch_failures += 1;
                if let IrohError::Sync(f) = &e {
                    self.stats.nodes_fetched += f.report.nodes_received;
                }
            }
        }
    }

    fn remember(&mut self, d: Hash) {
        if !self.seen.contains(&d) {
            if self.seen.len() >= SEEN {
                self.seen.pop_front();
            }
            self.seen.push_back(d);
        }
    }

    /// Sends our heads: to the whole topic when they changed to a set nobody announced, to
    /// the neighbours when greeting. Nothing when the log is empty.
    async fn announce(&mut self) {
        let greet = std::mem::take(&mut self.greet);
        let changed = std::mem::take(&mut self.dirty);
        self.last_announce = Some(Deadline::now());
        let (heads, len) = match (self.node.log.heads(), self.node.log.len()) {
            (Ok(h), Ok(l)) => (h, l),
            _ => return,
        };
        if heads.is_empty() {
            return;
        }
        let addrs: Vec<_> = self.node.endpoint.addr().ip_addrs().copied().collect();
        let a = Announce::new(self.me, &addrs, &heads, len);
        let d = digest(&a.heads, a.more);
        let news = changed && !self.seen.contains(&d);
        if !news && !greet {
            return;
        }
        self.remember(d);
        let bytes = a.encode();
        let n = bytes.len() as u64;
        let sent = if news {
            self.sender.broadcast(bytes.into()).await
        } else {
            self.sender.broadcast_neighbors(bytes.into()).await
        };
        if sent.is_ok() {
            self.stats.announced += 1;
            self.stats.announce_bytes += n;
        }
    }
}

/// A head set's identity, to recognise it when it comes round again.
fn digest(heads: &[Hash], more: bool) -> Hash {
    let mut sorted = heads.to_vec();
    sorted.sort();
    let mut h = blake3::Hasher::new();
    for x in &sorted {
        h.update(&x.0);
    }
    h.update(&[u8::from(more)]);
    Hash(*h.finalize().as_bytes())
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // A dropped sender (the `Fanout` is gone) stops it too.
    let _ = rx.wait_for(|s| *s).await;
}

async fn sleep_until(at: Option<Deadline>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
