//! A randomized convergence harness over three replicas for an application's own merge
//! logic (a stock counter, `app.rs`), with braidlog's simulator: seeded runs of writes,
//! sessions cut at any byte, out-of-order deliveries and partitions, each ending with every
//! replica converged and the app's invariant checked.
//!
//! `cargo run --example sim_counter -- [RUNS]`; `cargo test` runs it too (a few hundred
//! seeds). The same app under cargo-fuzz: `fuzz/fuzz_targets/app_counter.rs`.

mod app;

use braidlog::sim::{Report, Sim};

/// Runs seeds `0..runs`; returns the summed reports' operations and sessions.
fn run(runs: u64) -> (usize, usize) {
    let sim = Sim::new(3);
    let (mut ops, mut sessions) = (0, 0);
    for seed in 0..runs {
        let mut stock = app::Stock::default();
        let report: Report = sim.run_seed(&mut stock, seed);
        ops += report.ops;
        sessions += report.sessions;
    }
    (ops, sessions)
}

fn main() {
    let runs = std::env::args()
        .nth(1)
        .map_or(500, |a| a.parse().expect("RUNS: a number"));
    let (ops, sessions) = run(runs);
    println!("{runs} runs converged: {ops} counter operations, {sessions} sync sessions");
}

#[test]
fn the_counter_converges_under_random_schedules() {
    let (ops, sessions) = run(200);
    assert!(
        ops > 1000 && sessions > 100,
        "{ops} ops, {sessions} sessions"
    );
}
