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
        braidlog::sim::checks::check_node_decode(&data);
    }
}

#[test]
fn log_ops_corpus() {
    for file in corpus("log_ops") {
        let data = std::fs::read(&file).unwrap();
        let dir = tempfile::tempdir().unwrap();
        braidlog::sim::checks::check_log_ops(dir.path(), &data);
    }
}

#[test]
fn sync_frames_corpus() {
    for file in corpus("sync_frames") {
        let data = std::fs::read(&file).unwrap();
        braidlog::sim::checks::check_sync_frames(&data);
    }
}

#[test]
fn sync_pair_corpus() {
    for file in corpus("sync_pair") {
        let data = std::fs::read(&file).unwrap();
        braidlog::sim::checks::check_sync_pair(&data);
    }
}

#[test]
fn kv_model_corpus() {
    for file in corpus("kv_model") {
        let data = std::fs::read(&file).unwrap();
        let dir = tempfile::tempdir().unwrap();
        braidlog::sim::checks::check_kv_model(dir.path(), &data);
    }
}

#[path = "../examples/sim_counter/app.rs"]
mod app;

#[test]
fn app_counter_corpus() {
    let sim = braidlog::sim::Sim::new(3);
    let mut sessions = 0;
    for file in corpus("app_counter") {
        let data = std::fs::read(&file).unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        // The `seed-N` files are the bytes a seeded run reads: a failing seed can be kept.
        if let Some(n) = name.strip_prefix("seed-") {
            assert_eq!(
                data,
                braidlog::sim::seed_bytes(n.parse().unwrap(), data.len())
            );
        }
        sessions += sim.run(&mut app::Stock::default(), &data).sessions;
    }
    assert!(sessions > 0);
}

/// Rewrites the recorded `sync_frames` seeds (honest conversations in the current protocol
/// version): `BRAID_WRITE_SEEDS=1 cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore]
fn write_sync_frames_seeds() {
    use braidlog::sim::checks::record_sync_frames;
    use braidlog::sync::{MemStore, Mode, SessionConfig};
    use braidlog::PeerId;
    if std::env::var("BRAID_WRITE_SEEDS").as_deref() != Ok("1") {
        return;
    }
    let peer = |n: u8, shared: u8| {
        let s = MemStore::new(PeerId([2; 16]));
        let mut first = None;
        for i in 0..shared {
            // The target's own first nodes, so the histories share a prefix.
            let node = match (i % 3, first) {
                (2, Some(root)) => s.add([root], vec![b'f', i]),
                _ => s.append(vec![b'n', i]),
            }
            .unwrap();
            first.get_or_insert(node.hash());
        }
        for i in 0..n {
            s.append(vec![b'p', i]).unwrap();
        }
        s
    };
    let cfg = |mode, live| SessionConfig {
        mode,
        live,
        filter_key: [9; 32],
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sync_frames");
    let seeds = [
        // header: nodes | mode << 3 | live << 5 | no-preamble << 6
        (
            "both-diverged-full-conversation",
            0x13,
            peer(5, 2),
            cfg(Mode::Both, false),
            false,
        ),
        (
            "peer-has-ours-and-more",
            0x15 | 0x40,
            peer(4, 5),
            cfg(Mode::Both, false),
            false,
        ),
        (
            "pull-from-empty-peer",
            0x0a,
            peer(0, 0),
            cfg(Mode::Both, false),
            false,
        ),
        (
            "live-then-close",
            0x34,
            peer(3, 4),
            cfg(Mode::Both, true),
            true,
        ),
        (
            "self-sync",
            0x10,
            MemStore::new(PeerId([1; 16])),
            cfg(Mode::Both, false),
            false,
        ),
    ];
    for (name, header, store, cfg, close) in seeds {
        let bytes = record_sync_frames(header, 1, &store, cfg, close);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
