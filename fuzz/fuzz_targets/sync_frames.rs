//! Arbitrary bytes through the sync codec into a session over a memory store: never panics,
//! errors are typed, the store stays valid and keeps its nodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| braidlog::sim::checks::check_sync_frames(data));
