//! [`Sim`]: the run loop: a schedule of app operations, sync sessions (cut at any byte,
//! one-way or both, live with writes during them), out-of-order deliveries and partitions,
//! read from an [`Input`]; then convergence and the checks.

use std::collections::HashSet;

use super::pool;
use super::pump::{pump, Ended, Wiring};
use super::{seed_bytes, App, Input, Replica};
use crate::hash::Hash;
use crate::kv::Kv;
use crate::log::Log;
use crate::node::Node;
use crate::sync::{Mode, SessionConfig};

/// Final rounds of exchange-then-merge before merges that keep writing count as a failure
/// (a merge that is not a pure function of the versions never settles).
pub const MERGE_ROUNDS: usize = 8;

/// Steps per run, at most, per app operation allowed: bounds the time of a run whatever the
/// input (a fuzzer's input of only sessions would otherwise run until its bytes end).
const STEPS_PER_OP: usize = 4;

/// Most nodes one out-of-order delivery step moves.
const MAX_DELIVER: u8 = 8;

/// Most schedule bytes one session reads (its steps; the rest is delivered in order).
const SESSION_SCHEDULE: u8 = 64;

/// A simulation: how many replicas, how long a run, where replicas live. Each
/// [`Sim::run`] starts from empty replicas and panics when a check fails.
#[derive(Debug, Clone)]
pub struct Sim {
    /// Replicas per run, at least 2. Default 3.
    pub replicas: usize,
    /// App operations per run, at most (sessions, deliveries and partitions do not count).
    /// Default 20.
    pub ops: usize,
    /// Take replicas from this thread's pool of emptied environments (default), rather than
    /// opening new ones for every run (about 0.5 ms each; see "Speed" in the [module
    /// docs](crate::sim)).
    pub reuse: bool,
    /// Also run [`Log::verify`] (the fsck: every node, index, head and the KV view rebuilt and
    /// compared; not its page walk of the data file, which is unlinked) on every replica at
    /// the end. Default false: it checks braidlog itself, which its own fuzz targets do, rather
    /// than the app, and a run takes about 1.4 times as long.
    pub verify: bool,
    /// Sign every write with the replica's own identity, as logs do by default. Default
    /// false: unsigned writes are content-addressed only, so two replicas that make the same
    /// write on the same state make one node (an app whose operations can coincide that way,
    /// such as two "+1" from one base, then sees one of them), while signed nodes carry their
    /// author and a clock time: node ids then differ from run to run (a seed replays the same
    /// steps, not the same ids), and a run costs about 4.5 times as much (signatures made
    /// and checked).
    pub signed: bool,
}

impl Default for Sim {
    fn default() -> Self {
        Sim {
            replicas: 3,
            ops: 20,
            reuse: true,
            verify: false,
            signed: false,
        }
    }
}

/// What one run did, for coverage statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// App operations run (including those during live sessions).
    pub ops: usize,
    /// Sync sessions run.
    pub sessions: usize,
    /// Sessions whose connection was cut.
    pub cuts: usize,
    /// Nodes delivered out of order, one at a time.
    pub delivered: usize,
    /// Partition changes (a replica cut off from, or back with, the others).
    pub partitions: usize,
    /// Final exchange-then-merge rounds until the merges settled.
    pub rounds: usize,
    /// Nodes every replica holds at the end.
    pub nodes: u64,
}

/// The replicas of a run; returned to the pool however the run ends.
struct Replicas {
    reps: Vec<Replica>,
    reuse: bool,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        if self.reuse {
            pool::give_back(self.reps.drain(..).map(|r| (r.log, r.kv, r.id)));
        }
    }
}

impl Sim {
    /// `replicas` replicas, the other settings default.
    pub fn new(replicas: usize) -> Sim {
        Sim {
            replicas,
            ..Sim::default()
        }
    }

    /// [`Sim::run`] on bytes expanded from `seed` ([`seed_bytes`]): the same seed replays
    /// the same run.
    pub fn run_seed(&self, app: &mut impl App, seed: u64) -> Report {
        self.run(app, &seed_bytes(seed, 48 * self.ops.max(1)))
    }

    /// Runs `app` on fresh replicas under the schedule in `data` (fuzzer bytes: any bytes
    /// are a valid schedule; reads past the end give zeros), then exchanges everything,
    /// lets `app` merge until every replica holds the same heads, and checks convergence.
    ///
    /// # Input
    /// Until the input ends, `ops` operations ran or `4 * ops` steps, a byte `b` picks the
    /// replica `x = (b >> 3) % replicas` and the step `b & 7`:
    /// - 0-3: an app operation on `x` ([`App::op`], which reads its own choices);
    /// - 4, 5: a session between `x` and another replica (chosen by `b >> 6`), both ways (4)
    ///   or `x` pushing only (5), unless one of them is partitioned. A byte `m`: bit 6 cuts
    ///   the connection after a u16 (mod 4096) delivered bytes, bit 7 makes both sides live;
    ///   a wiring byte (see [`Wiring::from_input`]); then `m % 64` bytes of schedule for
    ///   [`pump`], whose steps may run app operations on either side during the session. A
    ///   complete session without such operations must have given each receiving side every
    ///   node the other held when it began. Then [`App::on_sync`] runs on each side whose log
    ///   changed;
    /// - 6: `x` leaves the partition it is in, or rejoins the others;
    /// - 7: out-of-order delivery: up to `1 + next byte % 8` nodes that another replica
    ///   (next byte) has and `x` lacks, each chosen (one more byte) among those whose links
    ///   `x` holds, then [`App::on_sync`].
    ///
    /// # Panics
    /// When a check fails: a session between these honest replicas fails, stalls or leaves
    /// the receiver without nodes the sender had, an app's setup, operation or merge returns
    /// an error, the merges do not settle within [`MERGE_ROUNDS`], the replicas differ at the
    /// end (heads, node count, every key of the root namespace and its versions, the
    /// conflicts), `verify` (when on) finds a violation, or [`App::check`] panics.
    pub fn run(&self, app: &mut impl App, data: &[u8]) -> Report {
        let n = self.replicas;
        assert!(n >= 2, "a simulation needs at least two replicas");
        let envs = pool::take(n, self.reuse, self.signed).expect("opening the simulated replicas");
        let run = Replicas {
            reps: (envs.into_iter().enumerate())
                .map(|(index, (log, kv, id))| Replica { index, log, kv, id })
                .collect(),
            reuse: self.reuse,
        };
        let reps = &run.reps;
        for r in reps {
            app.setup(r)
                .unwrap_or_else(|e| panic!("app setup of replica {}: {e}", r.index));
        }
        let mut input = Input::new(data);
        let mut report = Report::default();
        let mut apart = vec![false; n];
        let other = |x: usize, c: u8| (x + 1 + usize::from(c) % (n - 1)) % n;
        let mut steps = 0;
        while !input.is_empty()
            && report.ops < self.ops
            && steps < STEPS_PER_OP.saturating_mul(self.ops)
        {
            steps += 1;
            let b = input.byte();
            let x = usize::from(b >> 3) % n;
            match b & 7 {
                0..=3 => {
                    report.ops += 1;
                    app.op(&reps[x], &mut input)
                        .unwrap_or_else(|e| panic!("app operation on replica {x}: {e}"));
                }
                4 | 5 => {
                    let y = other(x, b >> 6);
                    if apart[x] == apart[y] {
                        session(app, reps, [x, y], b & 7 == 5, &mut input, &mut report);
                    }
                }
                6 => {
                    apart[x] = !apart[x];
                    report.partitions += 1;
                }
                _ => {
                    let y = other(x, input.byte());
                    if apart[x] == apart[y] {
                        deliver(app, &reps[y], &reps[x], &mut input, &mut report);
                    }
                }
            }
        }
        settle(app, reps, &mut report);
        self.check(app, reps, &mut report);
        report
    }

    fn check(&self, app: &mut impl App, reps: &[Replica], report: &mut Report) {
        let first = &reps[0];
        let heads = first.log.heads().expect("heads");
        let len = first.log.len().expect("len");
        let keys = scan(&first.kv, false);
        let conflicts = scan(&first.kv, true);
        for r in &reps[1..] {
            let i = r.index;
            assert_eq!(r.log.heads().expect("heads"), heads, "heads of 0 and {i}");
            assert_eq!(r.log.len().expect("len"), len, "node count of 0 and {i}");
            assert_eq!(scan(&r.kv, false), keys, "keys of replicas 0 and {i}");
            assert_eq!(scan(&r.kv, true), conflicts, "conflicts of 0 and {i}");
        }
        if self.verify {
            for r in reps {
                let v = r.log.verify().expect("verify");
                assert!(v.is_ok(), "replica {}: {:?}", r.index, v.violations);
            }
        }
        report.nodes = len;
        app.check(reps);
    }
}

/// Every key of the root namespace (or only those in conflict) with its versions' hashes.
fn scan(kv: &Kv, conflicts: bool) -> Vec<(Vec<u8>, Vec<Hash>)> {
    let scan = if conflicts { kv.conflicts() } else { kv.iter() };
    scan.map(|e| {
        let e = e.expect("scan");
        (e.key, e.versions.hashes())
    })
    .collect()
}

/// One session between `pair` over the real codec (see [`Sim::run`] for its input).
fn session(
    app: &mut impl App,
    reps: &[Replica],
    pair: [usize; 2],
    one_way: bool,
    input: &mut Input<'_>,
    report: &mut Report,
) {
    let [x, y] = pair;
    let m = input.byte();
    let cut = (m & 0x40 != 0).then(|| usize::from(input.u16()) % 4096);
    let wiring = Wiring::from_input(cut, input);
    let mut schedule = Input::new(input.bytes(usize::from(m % SESSION_SCHEDULE)));
    let modes = if one_way {
        [Mode::Push, Mode::Pull]
    } else {
        [Mode::Both, Mode::Both]
    };
    let cfgs = [0, 1].map(|i| SessionConfig {
        mode: modes[i],
        live: m & 0x80 != 0,
        filter_key: [m ^ i as u8; 32],
    });
    let before = pair.map(|r| reps[r].log.last_seq().expect("last seq"));
    let ops_before = report.ops;
    let ops = &mut report.ops;
    let mut write = |side: usize, input: &mut Input<'_>| {
        let r = &reps[pair[side]];
        *ops += 1;
        app.op(r, input)
            .unwrap_or_else(|e| panic!("app operation on replica {} in a session: {e}", r.index));
        Some(r.log.last_seq().expect("last seq"))
    };
    let stores: [&Log; 2] = pair.map(|r| &reps[r].log);
    // What each side held when the session began: a complete session delivers all of it to
    // a receiving side (which may hold more after: merge operators write on arrival).
    let held = pair.map(|r| reps[r].log.heads().expect("heads"));
    let ended = pump(stores, cfgs, &wiring, &mut schedule, Some(&mut write));
    let wrote = report.ops != ops_before;
    match ended {
        Ok(Ended::Complete) if !wrote => {
            let flows: &[(usize, usize)] = if one_way {
                &[(0, 1)]
            } else {
                &[(0, 1), (1, 0)]
            };
            for &(from, to) in flows {
                for h in &held[from] {
                    let got = reps[pair[to]].log.contains(h).expect("contains");
                    assert!(got, "{} -> {}: {h} not delivered", pair[from], pair[to]);
                }
            }
        }
        Ok(Ended::Complete) => {}
        Ok(Ended::Cut) => report.cuts += 1,
        Err(e) => panic!("session between replicas {x} and {y} failed: {e}"),
    }
    report.sessions += 1;
    for (i, r) in pair.into_iter().enumerate() {
        if reps[r].log.last_seq().expect("last seq") != before[i] {
            app.on_sync(&reps[r])
                .unwrap_or_else(|e| panic!("merge on replica {r}: {e}"));
        }
    }
}

/// Moves a few nodes `from` has and `to` lacks, in an input-chosen order that respects links
/// (as several peers, or a gossip layer, might deliver them), one transaction each.
fn deliver(
    app: &mut impl App,
    from: &Replica,
    to: &Replica,
    input: &mut Input<'_>,
    report: &mut Report,
) {
    let mut missing: Vec<Node> = (from.log.changes(0))
        .map(|e| e.expect("feed").node)
        .filter(|n| !to.log.contains(&n.hash()).expect("contains"))
        .collect();
    let mut moved = 0;
    for _ in 0..1 + input.byte() % MAX_DELIVER {
        let mut ready = Vec::new();
        for (i, node) in missing.iter().enumerate() {
            let linked = node.links().iter();
            if linked
                .map(|l| to.log.contains(l))
                .all(|c| c.expect("contains"))
            {
                ready.push(i);
            }
        }
        if ready.is_empty() {
            break;
        }
        let node = missing.remove(ready[input.choose(ready.len())]);
        to.log.insert(&[node]).expect("inserting a delivered node");
        moved += 1;
    }
    report.delivered += moved;
    if moved > 0 {
        app.on_sync(to)
            .unwrap_or_else(|e| panic!("merge on replica {}: {e}", to.index));
    }
}

/// Every replica gets every node (copied in each holder's feed order, one batch per
/// replica), then merges; again until the replicas hold the same heads. Merge operators run
/// inside the exchange's writes, and signed merges of the same versions on two replicas are
/// two nodes: one more exchange then shows each operator both, and it writes nothing.
fn settle(app: &mut impl App, reps: &[Replica], report: &mut Report) {
    let seqs = || -> Vec<u64> {
        reps.iter()
            .map(|r| r.log.last_seq().expect("seq"))
            .collect()
    };
    loop {
        let before = seqs();
        exchange_all(reps);
        let exchanged = seqs();
        for r in reps {
            if report.rounds == 0 || exchanged[r.index] != before[r.index] {
                app.on_sync(r)
                    .unwrap_or_else(|e| panic!("merge on replica {}: {e}", r.index));
            }
        }
        report.rounds += 1;
        let heads: Vec<Vec<Hash>> = reps.iter().map(|r| r.log.heads().expect("heads")).collect();
        if heads.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(
            report.rounds < MERGE_ROUNDS,
            "merges still write after {MERGE_ROUNDS} rounds: is the merge a pure function of \
             the versions?"
        );
    }
}

/// Copies what each replica lacks from all the others. A session per pair would cost more
/// than the rest of a run; sessions are exercised by the schedule.
fn exchange_all(reps: &[Replica]) {
    let feeds: Vec<Vec<Node>> = reps
        .iter()
        .map(|r| r.log.changes(0).map(|e| e.expect("feed").node).collect())
        .collect();
    for (i, r) in reps.iter().enumerate() {
        let mut have: HashSet<Hash> = feeds[i].iter().map(Node::hash).collect();
        let mut batch = Vec::new();
        for feed in &feeds {
            for node in feed {
                if have.insert(node.hash()) {
                    batch.push(node.clone());
                }
            }
        }
        if !batch.is_empty() {
            r.log.insert(&batch).expect("exchanging nodes");
        }
    }
}
