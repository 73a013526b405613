//! Replays every committed fuzz corpus file through the same checks the fuzz targets run, so
//! `cargo test` catches regressions without a fuzzer (see docs/FUZZING.md).

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

#[test]
fn node_decode_corpus() {
    for file in corpus("node_decode") {
        let data = std::fs::read(&file).unwrap();
        braidlog::fuzzing::check_node_decode(&data);
    }
}

#[test]
fn log_ops_corpus() {
    for file in corpus("log_ops") {
        let data = std::fs::read(&file).unwrap();
        let dir = tempfile::tempdir().unwrap();
        braidlog::fuzzing::check_log_ops(dir.path(), &data);
    }
}

#[test]
fn sync_frames_corpus() {
    for file in corpus("sync_frames") {
        let data = std::fs::read(&file).unwrap();
        braidlog::fuzzing::check_sync_frames(&data);
    }
}

#[test]
fn sync_pair_corpus() {
    for file in corpus("sync_pair") {
        let data = std::fs::read(&file).unwrap();
        braidlog::fuzzing::check_sync_pair(&data);
    }
}

#[test]
fn kv_model_corpus() {
    for file in corpus("kv_model") {
        let data = std::fs::read(&file).unwrap();
        let dir = tempfile::tempdir().unwrap();
        braidlog::fuzzing::check_kv_model(dir.path(), &data);
    }
}
