//! braidlog's own fuzz checks, built on the simulator's lower layers (`Input`, `pump`). Each takes the raw fuzzer input and panics when braidlog disagrees
//! with a model, so libFuzzer (`fuzz/fuzz_targets/`) and `cargo test` (the committed corpora
//! in `tests/fuzz_corpus.rs`) run exactly the same code. The input formats are described in
//! `fuzz/README.md`; they are kept stable so that the committed corpora keep their meaning.

mod kv_model;
mod log_ops;
mod node_decode;
mod sync_frames;
mod sync_pair;

pub use kv_model::check_kv_model;
pub use log_ops::check_log_ops;
pub use node_decode::check_node_decode;
pub use sync_frames::{check_sync_frames, record_sync_frames};
pub use sync_pair::check_sync_pair;
