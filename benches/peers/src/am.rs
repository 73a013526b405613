//! automerge: key updates as map puts in the root object, one change per `BATCH`; durable by
//! appending each incremental save to `doc.am` and fsyncing it. Replication with automerge's
//! sync protocol (Bloom filters over changes), lock-step over the framed TCP wire. The sync
//! state (the peer's shared heads) is kept in `sync-state` between syncs, as automerge
//! advises for a remembered peer.

use std::path::Path;
use std::time::Instant;

use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ReadDoc, ScalarValue, ROOT};

use crate::harness::{append_durably, key, value, Outcome, Wire, BATCH};

fn load(dir: &Path) -> Automerge {
    match std::fs::read(dir.join("doc.am")) {
        Ok(bytes) => Automerge::load(&bytes).unwrap(),
        Err(_) => Automerge::new(),
    }
}

pub fn write(dir: &Path, first: u64, count: u64) -> Outcome {
    std::fs::create_dir_all(dir).unwrap();
    let mut doc = load(dir);
    let t = Instant::now();
    let mut i = first;
    while i < first + count {
        let end = (i + BATCH).min(first + count);
        let heads = doc.get_heads();
        let mut tx = doc.transaction();
        for j in i..end {
            tx.put(ROOT, key(j), ScalarValue::Bytes(value(j))).unwrap();
        }
        tx.commit();
        append_durably(&dir.join("doc.am"), &doc.save_after(&heads));
        i = end;
    }
    Outcome {
        secs: t.elapsed().as_secs_f64(),
        moved: count,
        ..Default::default()
    }
}

/// One side of a sync. The connecting side speaks first; each turn a side sends its next
/// sync message or an empty frame, and both stop after a turn where neither had one.
pub fn side(dir: &Path, port: Option<u16>) -> Outcome {
    std::fs::create_dir_all(dir).unwrap();
    let mut doc = load(dir);
    let state_path = dir.join("sync-state");
    let mut state = match std::fs::read(&state_path) {
        Ok(b) => State::decode(&b).unwrap(),
        Err(_) => State::new(),
    };
    let mut wire = match port {
        None => Wire::serve(),
        Some(p) => Wire::connect(p),
    };
    let t = Instant::now();
    let heads = doc.get_heads();
    let before = doc.length(ROOT) as u64;
    let speak = |doc: &Automerge, state: &mut State, wire: &mut Wire| -> bool {
        match doc.generate_sync_message(state) {
            Some(m) => {
                wire.send(&m.encode());
                true
            }
            None => {
                wire.send(&[]);
                false
            }
        }
    };
    let hear = |doc: &mut Automerge, state: &mut State, wire: &mut Wire| -> bool {
        let m = wire.recv().expect("peer closed");
        if m.is_empty() {
            return false;
        }
        doc.receive_sync_message(state, Message::decode(&m).unwrap())
            .unwrap();
        true
    };
    loop {
        let (said, heard) = if port.is_some() {
            let s = speak(&doc, &mut state, &mut wire);
            (s, hear(&mut doc, &mut state, &mut wire))
        } else {
            let h = hear(&mut doc, &mut state, &mut wire);
            (speak(&doc, &mut state, &mut wire), h)
        };
        if !said && !heard {
            break;
        }
    }
    let saved = doc.save_after(&heads);
    if doc.get_heads() != heads {
        append_durably(&dir.join("doc.am"), &saved);
    }
    std::fs::write(&state_path, state.encode()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    // Every update writes a key of its own: the keys gained are the updates received.
    wire.outcome(secs, doc.length(ROOT) as u64 - before)
}

pub fn forget(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("sync-state"));
}
