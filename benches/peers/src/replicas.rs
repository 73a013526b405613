//! How replication grows with the number of replicas: 2, 8 and 32 braidlog replicas in one
//! process over in-memory streams (`tokio::io::duplex`), each writing 100 key updates, then
//! synced until every replica holds every update. Topology: a hub; every other replica syncs
//! with it once (the hub gathers everything), then every replica but the last once more
//! (it receives what arrived after its first sync). Total bytes and round trips.

use braidlog::sync::{sync, Mode, SyncOptions};
use braidlog::{Durability, Kv, Log};

use crate::harness::{key, value};

const EACH: u64 = 100;

async fn pair(a: &Log, b: &Log) -> (u64, u64) {
    let (x, y) = tokio::io::duplex(64 << 10);
    let (ra, rb) = tokio::join!(
        sync(a, x, SyncOptions::new(Mode::Both)),
        sync(b, y, SyncOptions::new(Mode::Both))
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    (
        ra.bytes_sent + rb.bytes_sent,
        u64::from(ra.round_trips.max(rb.round_trips)),
    )
}

pub fn run() {
    println!("\n| replicas | syncs | total wire B | total round trips | B per update moved | ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for r in [2u64, 8, 32] {
        let dirs: Vec<tempfile::TempDir> = (0..r).map(|_| tempfile::tempdir().unwrap()).collect();
        let logs: Vec<Log> = dirs
            .iter()
            .map(|d| crate::braid::open(d.path(), Durability::NoSync))
            .collect();
        for (i, log) in logs.iter().enumerate() {
            let kv = Kv::open(log).unwrap();
            let first = (i as u64) << 32;
            kv.batch(|b| {
                for j in first..first + EACH {
                    b.put(key(j), value(j))?;
                }
                Ok(())
            })
            .unwrap();
        }
        let t = std::time::Instant::now();
        let (mut bytes, mut trips, mut syncs) = (0, 0, 0);
        let order: Vec<usize> = (1..r as usize).chain(1..r as usize - 1).collect();
        rt.block_on(async {
            for j in order {
                let (b, t) = pair(&logs[0], &logs[j]).await;
                bytes += b;
                trips += t;
                syncs += 1;
            }
        });
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let total = r * EACH;
        for log in &logs {
            assert_eq!(log.len().unwrap(), logs[0].len().unwrap(), "not converged");
        }
        // Every replica lacked (r - 1) * 100 updates.
        let moved = r * (r - 1) * EACH;
        println!(
            "| {r} | {syncs} | {bytes} | {trips} | {:.1} | {ms:.1} |",
            bytes as f64 / moved as f64
        );
        let _ = total;
    }
}
