//! [`App`]: what an application plugs into the simulator.

use super::{Input, Replica};
use crate::error::Result;

/// An application under simulation: its operations, its merge logic, its invariants.
///
/// Every method runs on one replica at a time, synchronously. Operations and merges must be
/// deterministic given their input and the replica's state (no clock, no randomness of their
/// own), so that a failing input reproduces; a merge must be a pure function of the versions
/// it merges, or replicas need not converge.
pub trait App {
    /// Prepares `replica` before the run's first step, as the application does when it opens
    /// a log: registering merge operators ([`Kv::register_merge`](crate::kv::Kv::register_merge)),
    /// namespaces, a policy. The default does nothing. Replicas start each run empty and
    /// without operators.
    fn setup(&mut self, replica: &Replica) -> Result<()> {
        let _ = replica;
        Ok(())
    }

    /// One application operation on `replica`, its choices read from `input` (which gives
    /// zeros once exhausted): a write, a read-modify-write, a local merge...
    fn op(&mut self, replica: &Replica, input: &mut Input<'_>) -> Result<()>;

    /// Sync just delivered nodes to `replica`: the place to merge conflicts on arrival. Also
    /// run in the final rounds, on every replica first, then on those that received, until
    /// all hold the same heads. The default does nothing (conflicts then stay, unless merge
    /// operators resolve them, and must be the same on every replica).
    fn on_sync(&mut self, replica: &Replica) -> Result<()> {
        let _ = replica;
        Ok(())
    }

    /// The app's own invariants, checked once every replica holds every node and the merges
    /// have settled: panic (`assert!`) when one does not hold. The simulator has already
    /// checked that the replicas hold the same nodes and read the same keys.
    fn check(&mut self, replicas: &[Replica]) {
        let _ = replicas;
    }
}
