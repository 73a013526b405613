//! braidlog: key updates through `Kv::batch` (one signed node per update, durable commits),
//! replication with `braidlog::sync::sync` over loopback TCP.

use std::path::Path;
use std::time::Instant;

use braidlog::sync::{sync, Mode, SyncOptions, SyncStore};
use braidlog::{Durability, Kv, Log, LogOptions};

use crate::harness::{key, value, Outcome, BATCH};

pub fn open(dir: &Path, durability: Durability) -> Log {
    let options = LogOptions {
        durability,
        ..Default::default()
    };
    Log::open_with(dir, options).unwrap()
}

/// Writes updates `first..first + count`, `BATCH` per durable transaction; unsigned nodes
/// when `signed` is false (what signing every update costs).
pub fn write(dir: &Path, first: u64, count: u64, durability: Durability, signed: bool) -> Outcome {
    let log = open(dir, durability);
    if !signed {
        log.set_identity(None);
    }
    let kv = Kv::open(&log).unwrap();
    let t = Instant::now();
    let mut i = first;
    while i < first + count {
        let end = (i + BATCH).min(first + count);
        kv.batch(|b| {
            for j in i..end {
                b.put(key(j), value(j))?;
            }
            Ok(())
        })
        .unwrap();
        i = end;
    }
    Outcome {
        secs: t.elapsed().as_secs_f64(),
        moved: count,
        ..Default::default()
    }
}

/// One side of a sync over loopback TCP (`port` None: listen and print the port).
pub fn side(dir: &Path, port: Option<u16>) -> Outcome {
    let log = open(dir, Durability::Sync);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        use tokio::net::{TcpListener, TcpStream};
        let stream = match port {
            None => {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                println!("PORT {}", listener.local_addr().unwrap().port());
                std::io::Write::flush(&mut std::io::stdout()).unwrap();
                listener.accept().await.unwrap().0
            }
            Some(port) => TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
        };
        stream.set_nodelay(true).unwrap();
        sync(&log, stream, SyncOptions::new(Mode::Both))
            .await
            .unwrap()
    });
    Outcome {
        secs: report.duration.as_secs_f64(),
        round_trips: report.round_trips.into(),
        bytes_sent: report.bytes_sent,
        bytes_received: report.bytes_received,
        moved: report.nodes_received - report.duplicates,
    }
}

/// Forgets what each replica remembers of the other (its peer cursor): first contact again.
pub fn forget(a: &Path, b: &Path) {
    let (la, lb) = (open(a, Durability::NoSync), open(b, Durability::NoSync));
    SyncStore::set_peer_cursor(&la, lb.peer_id(), None).unwrap();
    SyncStore::set_peer_cursor(&lb, la.peer_id(), None).unwrap();
}
