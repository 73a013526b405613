//! Simulator throughput: executions per second for 3 replicas and 20 app operations (the
//! stock counter of `examples/sim_counter/app.rs`), with pooled environments and with new
//! ones per run, pooled with the final `verify` on, and pooled with signed writes.
//! `cargo run --release --example sim_bench -- [SECONDS] [pooled|new|verified|signed]`.

#[path = "sim_counter/app.rs"]
mod app;

use std::time::{Duration, Instant};

use braidlog::sim::Sim;

fn measure(sim: &Sim, secs: f64) -> (f64, f64, f64) {
    let start = Instant::now();
    let (mut runs, mut ops, mut nodes) = (0u64, 0usize, 0u64);
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let report = sim.run_seed(&mut app::Stock::default(), runs);
        runs += 1;
        ops += report.ops;
        nodes += report.nodes;
    }
    let el = start.elapsed().as_secs_f64();
    (
        runs as f64 / el,
        ops as f64 / runs as f64,
        nodes as f64 / runs as f64,
    )
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map_or(5.0, |a| a.parse().expect("SECONDS: a number"));
    let only = std::env::args().nth(2);
    for (name, reuse, verify, signed) in [
        ("pooled", true, false, false),
        ("new", false, false, false),
        ("verified", true, true, false),
        ("signed", true, false, true),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let sim = Sim {
            reuse,
            verify,
            signed,
            ..Sim::new(3)
        };
        let (rate, ops, nodes) = measure(&sim, secs);
        println!(
            "{name}: {rate:.0} execs/s (3 replicas, {ops:.1} ops and {nodes:.1} nodes per run)"
        );
    }
}
