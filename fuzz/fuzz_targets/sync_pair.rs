//! Honest memory replicas syncing under an arbitrary schedule (cuts, live writes): stores stay
//! valid, nothing is lost, a final two-way sync converges.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| braidlog::sim::checks::check_sync_pair(data));
