//! The session pump: two sans-IO sessions joined by in-memory wires under a schedule read
//! from an [`Input`]: partial deliveries cut at any byte, reordered node runs, local writes
//! during the session, and connection cuts. It runs over any [`SyncStore`]: [`crate::Log`]s,
//! or [`MemStore`](crate::sync::MemStore)s for protocol-level simulations.
//!
//! ```
//! use braidlog::sim::pump::{pump, Ended, Wiring};
//! use braidlog::sim::Input;
//! use braidlog::sync::{MemStore, Mode, SessionConfig};
//! use braidlog::PeerId;
//!
//! let (a, b) = (MemStore::new(PeerId([1; 16])), MemStore::new(PeerId([2; 16])));
//! for i in 0..5 {
//!     a.append(vec![i]).unwrap();
//! }
//! let cfg = |key| SessionConfig { mode: Mode::Both, live: false, filter_key: [key; 32] };
//! // The connection drops after 200 bytes, frames delivered 4 bytes at a time.
//! let cut = Wiring { cut: Some(200), ..Wiring::honest() };
//! let schedule = [0x06, 0x01, 0x07, 0x01, 0x00, 0x06, 0x01, 0x07, 0x01].repeat(20);
//! let ended = pump([&a, &b], [cfg(1), cfg(2)], &cut, &mut Input::new(&schedule), None);
//! assert_eq!(ended.unwrap(), Ended::Cut);
//! assert!(b.len() < 5); // whatever arrived was checked and kept
//! b.check().unwrap();
//!
//! // A session that is not cut delivers everything (no schedule: all bytes at once).
//! let ended = pump([&a, &b], [cfg(1), cfg(2)], &Wiring::honest(), &mut Input::new(&[]), None);
//! assert_eq!(ended.unwrap(), Ended::Complete);
//! assert_eq!(a.hashes(), b.hashes());
//! ```

use crate::sim::Input;
use crate::sync::codec::{encode, preamble, Decoder};
use crate::sync::{Limits, Message, Mode, Phase, Session, SessionConfig, SyncError, SyncStore};

/// How one driven session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides finished and every byte was delivered.
    Complete,
    /// The connection was cut; both sides saw end of stream.
    Cut,
}

/// Local writes a driven session may make on side `i` (returning the store's new last seq).
pub type LocalWrite<'w> = &'w mut dyn FnMut(usize, &mut Input<'_>) -> Option<u64>;

/// Scheduled steps per session before the rest is delivered deterministically.
pub const SCHEDULED_STEPS: usize = 400;

/// How the two sides of a pumped session are wired: the session bounds both use, which
/// side sends each run of nodes child-first, and where the connection is cut.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// The bounds of both sessions (small ones make a few nodes reach them).
    pub limits: Limits,
    /// Side `i` sends each run of nodes it produces child-first (link after node), as some
    /// implementations do; the receiver must store them anyway.
    pub child_first: [bool; 2],
    /// The connection drops after this many delivered bytes (both directions counted).
    pub cut: Option<usize>,
}

impl Wiring {
    /// Default bounds, nodes in feed order, no cut.
    pub fn honest() -> Wiring {
        Wiring {
            limits: Limits::default(),
            child_first: [false; 2],
            cut: None,
        }
    }

    /// Tight bounds and child-first sides read from one byte of `input`, so that the few
    /// nodes of a fuzz input reach them: heads over several `Heads` messages, Bloom filters
    /// over only the newest nodes.
    pub fn from_input(cut: Option<usize>, input: &mut Input<'_>) -> Wiring {
        let tight = input.byte();
        Wiring {
            limits: Limits {
                heads_per_message: 1 + usize::from(tight & 3),
                filter_walk: if tight & 4 != 0 {
                    1 + usize::from(tight >> 5)
                } else {
                    1 << 16
                },
                ..Limits::default()
            },
            child_first: [tight & 8 != 0, tight & 16 != 0],
            cut,
        }
    }
}

/// [`pump`] with the wiring read from `input` first ([`Wiring::from_input`]).
pub fn drive<S: SyncStore + Clone>(
    stores: [&S; 2],
    cfgs: [SessionConfig; 2],
    cut: Option<usize>,
    input: &mut Input<'_>,
    write: Option<LocalWrite<'_>>,
) -> Result<Ended, SyncError> {
    let wiring = Wiring::from_input(cut, input);
    pump(stores, cfgs, &wiring, input, write)
}

/// Runs one session between `stores[0]` and `stores[1]` through the real codec, with the
/// schedule read from `input`, one byte a step: which side runs, how many messages it
/// produces, how many bytes of the in-flight buffer the other side receives (so frames
/// arrive cut at any byte), a local write through `write`, closing a live side (or, when it
/// is not live, ending the schedule). Once the input or [`SCHEDULED_STEPS`] is exhausted,
/// every side transmits and receives everything; live sides are closed when nothing moves.
///
/// A cut (see [`Wiring::cut`]) ends with both sides seeing end of stream and keeping what
/// they checked ([`Ended::Cut`]). An error is returned as it happened (both sides then stop,
/// as over a dropped connection). Panics if honest sides stop making progress.
pub fn pump<S: SyncStore + Clone>(
    stores: [&S; 2],
    cfgs: [SessionConfig; 2],
    wiring: &Wiring,
    input: &mut Input<'_>,
    mut write: Option<LocalWrite<'_>>,
) -> Result<Ended, SyncError> {
    let [c0, c1] = cfgs;
    let (limits, reversed, cut) = (wiring.limits.clone(), wiring.child_first, wiring.cut);
    let mut sides = [
        Session::with_limits(stores[0].clone(), c0, limits.clone())?,
        Session::with_limits(stores[1].clone(), c1, limits)?,
    ];
    // Delta frames lean on the node sent just before; a side that reorders its runs sends
    // whole nodes.
    for (side, &r) in sides.iter_mut().zip(&reversed) {
        side.set_node_deltas(!r);
    }
    let mut decoders = [Decoder::new(), Decoder::new()];
    // wires[i]: bytes side i sent that the other side has not received yet.
    let mut wires = [preamble().to_vec(), preamble().to_vec()];
    let mut delivered = 0usize;
    let mut writes = 0;

    // Delivers up to `n` bytes of the other side's wire to side `i`; `Ok(false)` on the cut.
    let deliver = |sides: &mut [Session<S>; 2],
                   decoders: &mut [Decoder; 2],
                   wires: &mut [Vec<u8>; 2],
                   delivered: &mut usize,
                   i: usize,
                   n: usize|
     -> Result<bool, (usize, SyncError)> {
        let mut n = n.min(wires[1 - i].len());
        let mut cut_now = false;
        if let Some(c) = cut {
            if *delivered + n >= c {
                n = c - *delivered;
                cut_now = true;
            }
        }
        decoders[i].push(&wires[1 - i][..n]);
        wires[1 - i].drain(..n);
        *delivered += n;
        let s = &mut sides[i];
        while let Some(m) = decoders[i].next_message().map_err(|e| (i, e))? {
            s.handle(m).map_err(|e| (i, e))?;
        }
        if s.phase() == Phase::Live {
            s.flush().map_err(|e| (i, e))?;
        }
        Ok(!cut_now)
    };
    let transmit = |sides: &mut [Session<S>; 2],
                    wires: &mut [Vec<u8>; 2],
                    i: usize,
                    max: usize|
     -> Result<usize, (usize, SyncError)> {
        let mut n = 0;
        let mut nodes = Vec::new();
        while n < max {
            match sides[i].poll_transmit().map_err(|e| (i, e))? {
                Some(m @ Message::Node(_)) if reversed[i] => nodes.push(m),
                Some(m) => {
                    for node in nodes.drain(..).rev() {
                        encode(&node, &mut wires[i]);
                    }
                    encode(&m, &mut wires[i]);
                }
                None => break,
            }
            n += 1;
        }
        for node in nodes.drain(..).rev() {
            encode(&node, &mut wires[i]);
        }
        Ok(n)
    };

    let result = (|| -> Result<bool, (usize, SyncError)> {
        let mut idle_rounds = 0;
        let mut draining = false;
        for step in 0.. {
            if sides.iter().all(Session::is_finished) && wires.iter().all(Vec::is_empty) {
                return Ok(true);
            }
            if step < SCHEDULED_STEPS && !input.is_empty() && !draining {
                let choice = input.byte();
                let i = usize::from(choice & 1);
                match (choice >> 1) % 8 {
                    0..=2 => {
                        transmit(&mut sides, &mut wires, i, 1 + usize::from(choice >> 5))?;
                    }
                    3..=5 => {
                        let n = match input.byte() {
                            255 => usize::MAX,
                            b => 1 + usize::from(b) * 3,
                        };
                        if !deliver(&mut sides, &mut decoders, &mut wires, &mut delivered, i, n)? {
                            return Ok(false);
                        }
                    }
                    6 => {
                        if let Some(w) = write.as_mut() {
                            if writes < 8 {
                                writes += 1;
                                if let Some(seq) = w(i, input) {
                                    sides[i].local_changed(seq);
                                }
                            }
                        }
                    }
                    // Close a live side, or else end the schedule: deliver everything now.
                    _ if sides[i].phase() == Phase::Live => {
                        sides[i].close().map_err(|e| (i, e))?;
                    }
                    _ => draining = true,
                }
                continue;
            }
            // Deterministic end: everything moves both ways until nothing does.
            let mut moved = 0;
            for i in 0..2 {
                moved += transmit(&mut sides, &mut wires, i, usize::MAX)?;
                let n = wires[1 - i].len();
                moved += n;
                if !deliver(&mut sides, &mut decoders, &mut wires, &mut delivered, i, n)? {
                    return Ok(false);
                }
            }
            if moved == 0 {
                if let Some(i) = (0..2).find(|&i| sides[i].phase() == Phase::Live) {
                    sides[i].close().map_err(|e| (i, e))?;
                } else {
                    idle_rounds += 1;
                    assert!(
                        idle_rounds < 3,
                        "sync made no progress: phases {:?} {:?}",
                        sides[0].phase(),
                        sides[1].phase()
                    );
                }
            }
        }
        unreachable!()
    })();
    match result {
        Ok(true) => Ok(Ended::Complete),
        Ok(false) => {
            // The connection dropped: each side sees end of stream and keeps what it checked.
            for s in &mut sides {
                if s.on_eof().is_err() {
                    s.salvage();
                }
            }
            Ok(Ended::Cut)
        }
        Err((i, e)) => {
            sides[i].salvage();
            let _ = sides[1 - i].on_eof();
            sides[1 - i].salvage();
            Err(e)
        }
    }
}

/// The three modes, for choosing one from a byte.
pub const MODES: [Mode; 3] = [Mode::Push, Mode::Pull, Mode::Both];

/// Whether a side in this mode sends nodes.
pub fn sends(m: Mode) -> bool {
    m != Mode::Pull
}

/// Whether a side in this mode receives nodes.
pub fn receives(m: Mode) -> bool {
    m != Mode::Push
}

/// Whether nodes can flow at all between sides in these modes (else both sides refuse).
pub fn moves(modes: [Mode; 2]) -> bool {
    (sends(modes[0]) && receives(modes[1])) || (sends(modes[1]) && receives(modes[0]))
}
