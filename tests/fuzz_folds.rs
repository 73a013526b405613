//! The `kv_model` fuzz check reaches KV fold nodes: its committed fold seeds make writes that
//! supersede more versions than one node may link, and the model agrees with what they read.

use std::path::Path;

use braidlog::kv::Fold;
use braidlog::Log;

/// Fold nodes in the replica at `dir`.
fn folds(dir: &Path) -> usize {
    let log = Log::open(dir).unwrap();
    log.changes(0)
        .filter(|e| Fold::decode(e.as_ref().unwrap().node.payload()).is_some())
        .count()
}

#[test]
fn the_kv_model_fold_seeds_write_and_check_folds() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/kv_model");
    for (seed, replicas) in [
        ("fold-flood-put-resolve", &["a"][..]),
        ("fold-flood-two-replicas", &["a", "b"][..]),
    ] {
        let data = std::fs::read(corpus.join(seed)).unwrap();
        let dir = tempfile::tempdir_in(braidlog::sim::scratch_base()).unwrap();
        braidlog::sim::checks::check_kv_model(dir.path(), &data);
        for r in replicas {
            let n = folds(&dir.path().join(r));
            assert!(n > 0, "{seed}: replica {r} holds no fold node");
            eprintln!("{seed}: replica {r} holds {n} fold nodes");
        }
    }
}
