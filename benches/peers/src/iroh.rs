//! iroh-docs: key updates as signed entries (namespace and author signatures) in its redb
//! store, flushed (committed) every `BATCH`. Replication with its range-based set
//! reconciliation (`Replica::sync_initial_message` / `sync_process_message`), the messages
//! framed as iroh-docs frames them (u32 length + postcard) over loopback TCP instead of a
//! QUIC stream. iroh-docs entries hold the hash and length of a value, not the value: iroh
//! fetches values separately through iroh-blobs, which is not measured here, so this
//! peer's bytes, round trips and times are lower bounds for moving the same updates.

use std::path::Path;
use std::time::Instant;

use iroh_docs::store::Store;
use iroh_docs::{Author, NamespaceSecret, SyncOutcome};

use crate::harness::{key, value, Outcome, Wire, BATCH};

fn read32(path: &Path) -> [u8; 32] {
    std::fs::read(path).unwrap().try_into().unwrap()
}

fn random32() -> [u8; 32] {
    let mut b = [0; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    b
}

/// Gives two replicas' directories the same namespace (both may write to it).
pub fn setup(a: &Path, b: &Path) {
    let ns = random32();
    for d in [a, b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("namespace.key"), ns).unwrap();
    }
}

fn open(dir: &Path) -> (Store, NamespaceSecret) {
    let mut store = Store::persistent(dir.join("docs.redb")).unwrap();
    let ns = NamespaceSecret::from_bytes(&read32(&dir.join("namespace.key")));
    store.import_namespace(ns.clone().into()).unwrap();
    store.flush().unwrap();
    (store, ns)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

pub fn write(dir: &Path, first: u64, count: u64) -> Outcome {
    let (mut store, ns) = open(dir);
    let author_path = dir.join("author.key");
    if !author_path.exists() {
        std::fs::write(&author_path, random32()).unwrap();
    }
    let author = Author::from_bytes(&read32(&author_path));
    store.import_author(author.clone()).unwrap();
    store.flush().unwrap();
    let id = ns.id();
    let t = Instant::now();
    runtime().block_on(async {
        let mut i = first;
        while i < first + count {
            let end = (i + BATCH).min(first + count);
            let mut replica = store.open_replica(&id).unwrap();
            for j in i..end {
                replica
                    .hash_and_insert(key(j), &author, value(j))
                    .await
                    .unwrap();
            }
            drop(replica);
            store.close_replica(id);
            store.flush().unwrap();
            i = end;
        }
    });
    Outcome {
        secs: t.elapsed().as_secs_f64(),
        moved: count,
        ..Default::default()
    }
}

/// One side of a reconciliation: the connecting side sends the namespace and the initial
/// message; each side answers every message until its answer is "nothing more" (an empty
/// frame, where iroh-docs closes its stream).
pub fn side(dir: &Path, port: Option<u16>) -> Outcome {
    let (mut store, ns) = open(dir);
    let id = ns.id();
    let mut wire = match port {
        None => Wire::serve(),
        Some(p) => Wire::connect(p),
    };
    let peer = [7u8; 32];
    let t = Instant::now();
    let mut outcome = SyncOutcome::default();
    runtime().block_on(async {
        let mut replica = store.open_replica(&id).unwrap();
        if port.is_some() {
            let init = replica.sync_initial_message().unwrap();
            wire.send(&postcard::to_stdvec(&(id.to_bytes(), init)).unwrap());
        } else {
            let m = wire.recv().unwrap();
            let (ns, msg): ([u8; 32], _) = postcard::from_bytes(&m).unwrap();
            assert_eq!(ns, id.to_bytes());
            match replica
                .sync_process_message(msg, peer, &mut outcome)
                .await
                .unwrap()
            {
                Some(reply) => wire.send(&postcard::to_stdvec(&reply).unwrap()),
                None => {
                    wire.send(&[]);
                    return;
                }
            }
        }
        loop {
            let m = wire.recv().unwrap();
            if m.is_empty() {
                break;
            }
            let msg = postcard::from_bytes(&m).unwrap();
            match replica
                .sync_process_message(msg, peer, &mut outcome)
                .await
                .unwrap()
            {
                Some(reply) => wire.send(&postcard::to_stdvec(&reply).unwrap()),
                None => {
                    wire.send(&[]);
                    break;
                }
            }
        }
    });
    store.close_replica(id);
    store.flush().unwrap();
    wire.outcome(t.elapsed().as_secs_f64(), outcome.num_recv as u64)
}
