//! negentropy: range-based set reconciliation of ids, nothing more. Its "store" here is an
//! append-only file of records (timestamp, 32-byte id, value) fsynced per `BATCH`, loaded into
//! a sealed `NegentropyStorageVector` before each sync (untimed: a server keeps it in memory).
//! negentropy only finds which ids differ; moving the values is up to the application, so
//! after reconciliation the connecting side sends the records the other lacks together with
//! the ids it needs, and gets those records back: one round trip more than negentropy's own.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use negentropy::{Id, Negentropy, NegentropyStorageVector};

use crate::harness::{append_durably, key, value, Outcome, Wire, BATCH};

const RECORD: usize = 8 + 32 + crate::harness::VALUE_BYTES;
const RECONCILE: u8 = 0;
const DATA: u8 = 1;

fn record(i: u64) -> Vec<u8> {
    let v = value(i);
    let id = blake3::Hasher::new()
        .update(key(i).as_bytes())
        .update(&v)
        .finalize();
    let mut r = Vec::with_capacity(RECORD);
    r.extend_from_slice(&i.to_be_bytes());
    r.extend_from_slice(id.as_bytes());
    r.extend_from_slice(&v);
    r
}

fn id_of(r: &[u8]) -> [u8; 32] {
    r[8..40].try_into().unwrap()
}

pub fn write(dir: &Path, first: u64, count: u64) -> Outcome {
    std::fs::create_dir_all(dir).unwrap();
    let t = Instant::now();
    let mut i = first;
    while i < first + count {
        let end = (i + BATCH).min(first + count);
        let bytes: Vec<u8> = (i..end).flat_map(record).collect();
        append_durably(&dir.join("items.bin"), &bytes);
        i = end;
    }
    Outcome {
        secs: t.elapsed().as_secs_f64(),
        moved: count,
        ..Default::default()
    }
}

fn framed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + body.len());
    m.push(tag);
    m.extend_from_slice(body);
    m
}

pub fn side(dir: &Path, port: Option<u16>) -> Outcome {
    let file = std::fs::read(dir.join("items.bin")).unwrap_or_default();
    let records: HashMap<[u8; 32], &[u8]> = file.chunks(RECORD).map(|r| (id_of(r), r)).collect();
    let mut storage = NegentropyStorageVector::with_capacity(records.len());
    for r in file.chunks(RECORD) {
        let ts = u64::from_be_bytes(r[..8].try_into().unwrap());
        storage.insert(ts, Id::from_byte_array(id_of(r))).unwrap();
    }
    storage.seal().unwrap();
    let mut wire = match port {
        None => Wire::serve(),
        Some(p) => Wire::connect(p),
    };
    let t = Instant::now();
    let mut neg = Negentropy::owned(storage, 0).unwrap();
    let received: Vec<u8> = if port.is_some() {
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let mut q = neg.initiate().unwrap();
        loop {
            wire.send(&framed(RECONCILE, &q));
            let r = wire.recv().unwrap();
            match neg
                .reconcile_with_ids(&r[1..], &mut have, &mut need)
                .unwrap()
            {
                Some(next) => q = next,
                None => break,
            }
        }
        if have.is_empty() && need.is_empty() {
            // Nothing to move: closing the stream tells the peer.
            Vec::new()
        } else {
            // The records the peer lacks, then the ids this side needs.
            let mut body = (have.len() as u64).to_be_bytes().to_vec();
            for id in &have {
                body.extend_from_slice(records[id.as_bytes()]);
            }
            for id in &need {
                body.extend_from_slice(id.as_bytes());
            }
            wire.send(&framed(DATA, &body));
            wire.recv().unwrap()[1..].to_vec()
        }
    } else {
        loop {
            let Some(q) = wire.recv() else {
                break Vec::new();
            };
            if q[0] == RECONCILE {
                let r = neg.reconcile(&q[1..]).unwrap();
                wire.send(&framed(RECONCILE, &r));
                continue;
            }
            let body = &q[1..];
            let n = u64::from_be_bytes(body[..8].try_into().unwrap()) as usize;
            let (got, wanted) = body[8..].split_at(n * RECORD);
            let reply: Vec<u8> = wanted
                .chunks(32)
                .flat_map(|id| records[id].iter().copied())
                .collect();
            wire.send(&framed(DATA, &reply));
            break got.to_vec();
        }
    };
    if !received.is_empty() {
        append_durably(&dir.join("items.bin"), &received);
    }
    wire.outcome(t.elapsed().as_secs_f64(), (received.len() / RECORD) as u64)
}
