//! The simulator catches what it is for (lost updates, merges that never settle), replays a
//! seed exactly, and hands every run empty replicas.

use crate::kv::MergeFn;
use crate::kv::{KvRead, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{App, Input, Replica, Sim};
use crate::kv::{Op, Version};
use crate::Result;

/// A register of one byte per write; `merge` picks what a conflict resolves to.
struct Register {
    merge: fn(&[Version]) -> Op,
    /// Every value written, in order.
    written: Vec<u8>,
}

fn max_value(versions: &[Version]) -> Op {
    Op::Put(
        versions
            .iter()
            .filter_map(|v| v.value())
            .max()
            .unwrap()
            .to_vec(),
    )
}

impl App for Register {
    fn op(&mut self, r: &Replica, input: &mut Input<'_>) -> Result<()> {
        // Raise to at least `v`: a plain put would overwrite a greater value it has seen.
        let v = input.byte();
        self.written.push(v);
        let seen = r
            .kv()
            .get(b"r")?
            .and_then(|vs| vs.values().max().map(|m| m[0]));
        r.kv().put(b"r", vec![seen.unwrap_or(0).max(v)])?;
        Ok(())
    }
    fn on_sync(&mut self, r: &Replica) -> Result<()> {
        r.kv()
            .resolve(b"r", MergeFn::new(|_, vs| (self.merge)(vs)))?;
        Ok(())
    }
    fn check(&mut self, replicas: &[Replica]) {
        // The claim under test: the register ends at the greatest value ever written.
        for r in replicas {
            let got = r.kv().get(b"r").unwrap().map(|v| v.value().unwrap()[0]);
            assert_eq!(
                got,
                self.written.iter().copied().max(),
                "replica {}",
                r.index
            );
        }
    }
}

fn register(merge: fn(&[Version]) -> Op) -> Register {
    Register {
        merge,
        written: Vec::new(),
    }
}

#[test]
fn a_max_register_converges_under_many_schedules() {
    let sim = Sim::new(3);
    let mut total = super::Report::default();
    for seed in 0..100 {
        let r = sim.run_seed(&mut register(max_value), seed);
        total.sessions += r.sessions;
        total.cuts += r.cuts;
        total.delivered += r.delivered;
        total.partitions += r.partitions;
        total.rounds += r.rounds;
    }
    // Every kind of step happens.
    assert!(total.sessions > 100 && total.cuts > 10, "{total:?}");
    assert!(total.delivered > 50 && total.partitions > 20, "{total:?}");
    assert!(total.rounds >= 100, "{total:?}");
}

#[test]
fn a_merge_that_loses_the_maximum_is_caught() {
    // Keeps the smallest value: replicas converge, but the app's invariant fails.
    fn min_value(versions: &[Version]) -> Op {
        Op::Put(
            versions
                .iter()
                .filter_map(|v| v.value())
                .min()
                .unwrap()
                .to_vec(),
        )
    }
    let sim = Sim::new(3);
    let caught = (0..200).find(|&seed| {
        catch_unwind(AssertUnwindSafe(|| {
            sim.run_seed(&mut register(min_value), seed);
        }))
        .is_err()
    });
    assert!(caught.is_some(), "no schedule exposed the lossy merge");
}

/// Writes on every merge, each replica its own value: a conflict again each round.
struct Restless;

impl App for Restless {
    fn op(&mut self, r: &Replica, input: &mut Input<'_>) -> Result<()> {
        r.kv().put(b"k", vec![input.byte()])?;
        Ok(())
    }
    fn on_sync(&mut self, r: &Replica) -> Result<()> {
        r.kv().put(b"k", vec![r.index() as u8])?;
        Ok(())
    }
}

#[test]
#[should_panic(expected = "merges still write")]
fn a_merge_that_never_settles_is_caught() {
    Sim::new(2).run_seed(&mut Restless, 1);
}

#[test]
fn a_seed_replays_exactly_on_pooled_and_new_replicas() {
    for seed in 0..20 {
        let pooled = Sim::new(3).run_seed(&mut register(max_value), seed);
        let again = Sim::new(3).run_seed(&mut register(max_value), seed);
        let fresh = Sim {
            reuse: false,
            ..Sim::new(3)
        }
        .run_seed(&mut register(max_value), seed);
        assert_eq!(pooled, again, "seed {seed}");
        assert_eq!(pooled, fresh, "seed {seed}");
    }
}

/// Writes keys and plain nodes, and leaves every replica requiring signatures: the next run
/// (unsigned writes) fails unless the policy was forgotten.
struct StartsEmpty;

impl App for StartsEmpty {
    fn op(&mut self, r: &Replica, input: &mut Input<'_>) -> Result<()> {
        r.kv().put([input.byte()], b"v".to_vec())?;
        r.log().append(b"plain".to_vec())?;
        Ok(())
    }
    fn check(&mut self, replicas: &[Replica]) {
        for r in replicas {
            let signed = crate::Policy::new(crate::PolicyMode::Signed);
            r.log().set_policy(&signed).unwrap();
        }
    }
}

#[test]
fn every_run_starts_from_empty_replicas() {
    let sim = Sim::new(3);
    for seed in 0..10 {
        sim.run_seed(&mut StartsEmpty, seed);
        let envs = super::pool::take(3, true, false).unwrap();
        let ids: std::collections::BTreeSet<_> = envs.iter().map(|(l, _, _)| l.peer_id()).collect();
        assert_eq!(ids.len(), 3, "replicas of one run share a peer id");
        for (log, kv, _) in &envs {
            for (other, _, _) in &envs {
                let cursor = crate::sync::SyncStore::peer_cursor(log, other.peer_id());
                assert_eq!(cursor.unwrap(), None, "a peer cursor survived");
            }
            assert_eq!(log.len().unwrap(), 0);
            assert!(log.heads().unwrap().is_empty());
            assert_eq!(kv.iter().count(), 0);
            assert!(log.policy_history().unwrap().is_empty());
            assert!(log.verify().unwrap().is_ok());
        }
        super::pool::give_back(envs);
    }
}

#[test]
fn conflicts_left_unresolved_must_read_the_same_everywhere() {
    // No merge: conflicts stay, and the built-in checks compare them across replicas (and
    // `verify` checks each replica's view against a rebuild).
    struct NoMerge;
    impl App for NoMerge {
        fn op(&mut self, r: &Replica, input: &mut Input<'_>) -> Result<()> {
            r.kv().put([input.byte() % 3], vec![input.byte()])?;
            Ok(())
        }
    }
    let sim = Sim {
        verify: true,
        ..Sim::new(4)
    };
    for seed in 0..50 {
        sim.run_seed(&mut NoMerge, seed);
    }
}

/// braidlog's own counter merge operator, registered in `setup`: every add counts.
#[derive(Default)]
struct OperatorCounter {
    total: i64,
}

impl App for OperatorCounter {
    fn setup(&mut self, r: &Replica) -> Result<()> {
        Ok(r.kv().register_merge("n/", crate::kv::Counter)?)
    }
    fn op(&mut self, r: &Replica, input: &mut Input<'_>) -> Result<()> {
        let delta = i64::from(input.byte() % 7) - 3;
        self.total += delta;
        crate::kv::Counter::add(r.kv(), b"n/stock", delta)?;
        Ok(())
    }
    fn check(&mut self, replicas: &[Replica]) {
        for r in replicas {
            let got = crate::kv::Counter::value(r.kv(), b"n/stock").unwrap();
            assert_eq!(got, self.total, "replica {}", r.index);
        }
    }
}

#[test]
fn a_merge_operator_registered_in_setup_converges_and_is_gone_next_run() {
    let sim = Sim {
        signed: true,
        ..Sim::new(3)
    };
    for seed in 0..30 {
        sim.run_seed(&mut OperatorCounter::default(), seed);
    }
    // The pool's replicas forgot the operator: concurrent writes on its prefix stay a
    // conflict.
    let envs = super::pool::take(1, true, false).unwrap();
    let kv = &envs[0].1;
    kv.write(
        b"n/stock",
        Write::from(Op::Put(b"a".to_vec())).superseding([]),
    )
    .unwrap();
    kv.write(
        b"n/stock",
        Write::from(Op::Put(b"b".to_vec())).superseding([]),
    )
    .unwrap();
    assert!(kv.get(b"n/stock").unwrap().unwrap().is_conflict());
    super::pool::give_back(envs);
}

#[test]
fn unsigned_identical_adds_on_two_replicas_are_one_node() {
    // Two replicas adding the same delta to the same total write the same unsigned node:
    // one add is lost. Signed runs (above) keep both; the simulator finds the difference.
    let sim = Sim::new(3);
    let lost = (0..100).find(|&seed| {
        catch_unwind(AssertUnwindSafe(|| {
            sim.run_seed(&mut OperatorCounter::default(), seed);
        }))
        .is_err()
    });
    assert!(lost.is_some(), "no schedule made two identical adds");
}
