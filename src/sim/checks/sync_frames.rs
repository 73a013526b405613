//! A session over a memory store fed arbitrary bytes: an untrusted peer.

use crate::identity::PeerId;
use crate::sim::Input;
use crate::sync::wire::{encode, preamble, Decoder};
use crate::sync::{MemStore, Mode, Phase, Session, SessionConfig};

/// `sync_frames`: arbitrary bytes, cut into input-chosen slices, through the codec's
/// [`Decoder`] and every decoded message into a [`Session`] over a [`MemStore`] holding a few
/// nodes. Nothing may panic (every failure is a typed [`SyncError`](crate::SyncError)), and
/// afterwards the store still passes [`MemStore::check`] and holds every node it had.
///
/// Input: a header byte (node count, mode, live, whether the preamble is supplied), a byte
/// seeding the slice sizes, then the stream itself.
pub fn check_sync_frames(data: &[u8]) {
    let mut input = Input::new(data);
    let header = input.byte();
    let seed = input.byte();
    let stream = input.bytes(data.len());

    let (store, cfg) = sync_frames_side(header);
    let before = store.hashes();
    let mut session = Session::new(store.clone(), cfg).expect("session on a memory store");
    let mut decoder = Decoder::new();
    if header & 0x40 == 0 {
        decoder.push(&preamble());
    }
    // Slice sizes from a little LCG, so that the stream bytes stay contiguous for the fuzzer.
    let mut state = u32::from(seed) | 1;
    let mut pos = 0;
    let outcome = 'feed: loop {
        if pos >= stream.len() {
            break Ok(());
        }
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % 48).min(stream.len() - pos);
        decoder.push(&stream[pos..pos + n]);
        pos += n;
        loop {
            let msg = match decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => break 'feed Err(e.with_store()),
            };
            if let Err(e) = session.handle(msg) {
                break 'feed Err(e);
            }
            // What the session answers is produced (and dropped): it reads the store.
            for _ in 0..10_000 {
                match session.poll_transmit() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => break 'feed Err(e),
                }
            }
        }
        if session.phase() == Phase::Live {
            if let Err(e) = session.flush() {
                break 'feed Err(e);
            }
        }
    };
    match outcome {
        Ok(()) => {
            let _ = session.on_eof();
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            session.salvage();
        }
    }
    store.check().expect("store valid after arbitrary frames");
    let after = store.hashes();
    assert!(before.is_subset(&after), "a stored node was lost");
}

/// The store and settings of the `sync_frames` session for this header byte.
fn sync_frames_side(header: u8) -> (MemStore, SessionConfig) {
    let store = MemStore::new(PeerId([1; 16]));
    let mut first = None;
    for i in 0..header % 8 {
        let node = match (i % 3, first) {
            (2, Some(root)) => store.add([root], vec![b'f', i]),
            _ => store.append(vec![b'n', i]),
        }
        .expect("a local write");
        first.get_or_insert(node.hash());
    }
    let cfg = SessionConfig {
        mode: [Mode::Push, Mode::Pull, Mode::Both][(header as usize >> 3) % 3],
        live: header & 0x20 != 0,
        filter_key: [7; 32],
    };
    (store, cfg)
}

/// A `sync_frames` seed: what an honest `peer` (in `peer_cfg`) sends in a whole conversation
/// with the target's session for `header`, after the two header bytes. With `close`, a live
/// peer ends with `Close`.
pub fn record_sync_frames(
    header: u8,
    seed: u8,
    peer: &MemStore,
    peer_cfg: SessionConfig,
    close: bool,
) -> Vec<u8> {
    let (store, cfg) = sync_frames_side(header);
    let mut mine = Session::new(store, cfg).expect("memory store");
    let mut theirs = Session::new(peer.clone(), peer_cfg).expect("memory store");
    let mut out = vec![header, seed];
    if header & 0x40 != 0 {
        out.extend_from_slice(&preamble());
    }
    for _ in 0..10_000 {
        let mut moved = false;
        while let Ok(Some(m)) = theirs.poll_transmit() {
            encode(&m, &mut out);
            if mine.handle(m).is_err() {
                return out;
            }
            moved = true;
        }
        while let Ok(Some(m)) = mine.poll_transmit() {
            if theirs.handle(m).is_err() {
                return out;
            }
            moved = true;
        }
        if !moved {
            if close && theirs.phase() == Phase::Live {
                theirs.close().expect("memory store");
                continue;
            }
            break;
        }
    }
    out
}
