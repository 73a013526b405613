//! Runs the key-value examples under `examples/` (cargo builds examples but does not run them).

#[path = "../examples/stock_counter.rs"]
mod stock_counter;

#[path = "../examples/live_merge.rs"]
mod live_merge;

#[test]
fn the_audited_stock_counter_example_runs() {
    stock_counter::main().unwrap();
}

#[test]
fn the_live_merging_watcher_example_runs() {
    live_merge::main().unwrap();
}
