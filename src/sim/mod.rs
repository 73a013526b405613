//! The simulator: fuzz an application's replication and merge logic on real replicas.
//!
//! A [`Sim`] runs N replicas (a [`Log`](crate::Log) with its [`Kv`](crate::kv::Kv) view each,
//! in temporary LMDB environments) through a schedule read from fuzzer bytes or expanded from
//! a seed: the application's own operations ([`App::op`]), sync sessions over the real codec
//! with frames delivered cut at any byte and connections dropped at any byte, one-way and
//! live sessions with writes during them, nodes delivered out of order, and partitions. After
//! each delivery the application may merge ([`App::on_sync`]), unless merge operators
//! registered in [`App::setup`] do it by themselves. At the end every replica gets every
//! node, the merges run until they settle, and the run checks that the replicas converged
//! (same heads, same keys and versions, same conflicts; optionally a clean
//! [`verify`](crate::Log::verify)) and then the application's own invariants
//! ([`App::check`]). Any failure panics, which is what a fuzzer and a test want.
//!
//! A grow-only counter whose merge takes the greatest count of each replica:
//!
//! ```
//! # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
//! use braidlog::sim::{App, Input, Replica, Sim};
//!
//! /// One byte per replica: how many increments that replica made.
//! struct Counter { made: u64 }
//!
//! fn merged(versions: &[braidlog::kv::Version]) -> Vec<u8> {
//!     let mut out = vec![0u8; 3];
//!     for v in versions.iter().filter_map(|v| v.value()) {
//!         for (o, b) in out.iter_mut().zip(v) {
//!             *o = (*o).max(*b);
//!         }
//!     }
//!     out
//! }
//!
//! impl App for Counter {
//!     fn op(&mut self, r: &Replica, input: &mut Input<'_>) -> braidlog::Result<()> {
//!         if input.flip() {
//!             let mut counts = match r.kv().get(b"n")? {
//!                 Some(versions) => merged(versions.as_slice()),
//!                 None => vec![0; 3],
//!             };
//!             counts[r.index()] += 1;
//!             self.made += 1;
//!             r.kv().put(b"n", counts)?; // supersedes every version it read
//!         }
//!         Ok(())
//!     }
//!     fn on_sync(&mut self, r: &Replica) -> braidlog::Result<()> {
//!         r.kv().resolve(b"n", braidlog::kv::MergeFn::new(|_, versions| braidlog::kv::Op::Put(merged(versions))))?;
//!         Ok(())
//!     }
//!     fn check(&mut self, replicas: &[Replica]) {
//!         for r in replicas {
//!             let total: u64 = match r.kv().get(b"n").unwrap() {
//!                 Some(v) => v.value().unwrap().iter().map(|&b| u64::from(b)).sum(),
//!                 None => 0,
//!             };
//!             assert_eq!(total, self.made, "replica {} lost increments", r.index());
//!         }
//!     }
//! }
//!
//! let sim = Sim::new(3);
//! for seed in 0..20 {
//!     sim.run_seed(&mut Counter { made: 0 }, seed);
//! }
//! ```
//!
//! A cargo-fuzz target is then one line in `fuzz_target!`:
//! `Sim::new(3).run(&mut Counter { made: 0 }, data);` (see `fuzz/fuzz_targets/app_counter.rs`
//! and `docs/FUZZING.md`).
//!
//! ## Speed, and where replicas live
//! A run with 3 replicas and 20 operations takes about half a millisecond of CPU when the
//! replicas come from the pool: LMDB environments on `/dev/shm` (else the temporary
//! directory), kept per thread and emptied in one transaction at the start of each run,
//! written through their map (`MDB_WRITEMAP`, no fsync), their files unlinked as soon as they
//! are open so that nothing is left behind. Opening new environments costs about 0.5 ms per
//! replica ([`Sim::reuse`] = `false`). Writes are unsigned. A replica keeps its peer id from
//! run to run, and its handles must not outlive the run. The figures and trade-offs are in
//! `docs/FUZZING.md`.
//!
//! ## Layout
//! - [`Input`]: fuzzer bytes read as small choices; [`seed_bytes`] for seeded runs.
//! - [`App`]: the application's operations, merge and invariants.
//! - [`Sim`], [`Report`]: the run loop, final convergence and checks.
//! - [`Replica`]: one replica's log and KV view; [`scratch_base`], where replicas live.
//! - [`pump`]: two sans-IO sessions joined by in-memory wires under a schedule (partial
//!   deliveries, cuts, child-first node runs, writes during a session).
//! - `checks` (hidden): braidlog's own fuzz checks (decoder, log, sync, KV against models).

mod app;
/// braidlog's own fuzz targets and corpus replays (`fuzz/`, `tests/fuzz_corpus.rs`): not part
/// of the public API, and free to change.
#[doc(hidden)]
pub mod checks;
mod input;
mod pool;
pub mod pump;
mod replica;
mod run;

pub use app::App;
pub use input::{seed_bytes, Input};
pub use pool::scratch_base;
pub use replica::Replica;
pub use run::{Report, Sim, MERGE_ROUNDS};

#[cfg(test)]
mod tests;
