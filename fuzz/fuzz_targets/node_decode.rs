//! Arbitrary bytes through `Node::decode`: never panics; what decodes is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| braidlog::sim::checks::check_node_decode(data));
