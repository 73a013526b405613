//! KV operations on one or two replicas in a temporary directory, checked against a model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in(braidlog::sim::scratch_base()).expect("temp dir");
    braidlog::sim::checks::check_kv_model(dir.path(), data);
});
