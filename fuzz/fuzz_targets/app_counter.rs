//! An application's own merge logic under the simulator: the stock counter of
//! `examples/sim_counter/app.rs` on three replicas, the schedule from the fuzzer's bytes.
#![no_main]

#[path = "../../examples/sim_counter/app.rs"]
mod app;

use braidlog::sim::Sim;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    Sim::new(3).run(&mut app::Stock::default(), data);
});
