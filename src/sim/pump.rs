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

use crate::sim::{seed_bytes, Input};
use crate::sync::wire::{encode, preamble, Decoder, Message};
use crate::sync::{Limits, Mode, Phase, Session, SessionConfig, SyncError, SyncStore};

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
) -> Result<Ended, SyncError<S::Error>> {
    let wiring = Wiring::from_input(cut, input);
    pump(stores, cfgs, &wiring, input, write)
}

/// Runs one session between `stores[0]` and `stores[1]` through the real codec, with the
/// schedule read from `input` (see [`Pair::run`]).
pub fn pump<S: SyncStore + Clone>(
    stores: [&S; 2],
    cfgs: [SessionConfig; 2],
    wiring: &Wiring,
    input: &mut Input<'_>,
    write: Option<LocalWrite<'_>>,
) -> Result<Ended, SyncError<S::Error>> {
    let [c0, c1] = cfgs;
    let limits = wiring.limits.clone();
    let sides = [
        Session::with_limits(stores[0].clone(), c0, limits.clone())?,
        Session::with_limits(stores[1].clone(), c1, limits)?,
    ];
    Pair::wired(sides, wiring).run(input, write)
}

/// Two sans-IO sessions joined by in-memory wires through the real codec: the one in-memory
/// pump, used by the simulator, the fuzz checks and the session's own tests. Step it by hand
/// ([`Pair::transmit`], [`Pair::deliver`], [`Pair::exchange`]) or run it under a schedule
/// ([`Pair::run`]).
pub struct Pair<S: SyncStore> {
    sides: [Session<S>; 2],
    decoders: [Decoder; 2],
    /// `wires[i]`: bytes side `i` sent that the other side has not received yet.
    wires: [Vec<u8>; 2],
    child_first: [bool; 2],
    cut: Option<usize>,
    delivered: usize,
    steps: usize,
}

impl<S: SyncStore> Pair<S> {
    /// Joins two sessions honestly: nodes in feed order, no cut, [`SCHEDULED_STEPS`].
    pub fn new(sides: [Session<S>; 2]) -> Pair<S> {
        Pair {
            sides,
            decoders: [Decoder::new(), Decoder::new()],
            wires: [preamble().to_vec(), preamble().to_vec()],
            child_first: [false; 2],
            cut: None,
            delivered: 0,
            steps: SCHEDULED_STEPS,
        }
    }

    /// Joins two sessions as `wiring` says (its `limits` are the sessions' own business: build
    /// them with those). A side that sends child-first sends whole nodes: delta frames lean
    /// on the node sent just before.
    pub fn wired(mut sides: [Session<S>; 2], wiring: &Wiring) -> Pair<S> {
        for (side, &r) in sides.iter_mut().zip(&wiring.child_first) {
            side.set_node_deltas(!r);
        }
        Pair {
            child_first: wiring.child_first,
            cut: wiring.cut,
            ..Pair::new(sides)
        }
    }

    /// The same pair, with `steps` scheduled steps before [`Pair::run`] delivers the rest
    /// deterministically.
    pub fn with_steps(mut self, steps: usize) -> Pair<S> {
        self.steps = steps;
        self
    }

    /// Side `i`.
    pub fn side(&self, i: usize) -> &Session<S> {
        &self.sides[i]
    }

    /// Side `i`, to call it directly.
    pub fn side_mut(&mut self, i: usize) -> &mut Session<S> {
        &mut self.sides[i]
    }

    /// Both sessions back.
    pub fn into_sides(self) -> [Session<S>; 2] {
        self.sides
    }

    /// Whether both sides finished and every byte was delivered.
    pub fn is_done(&self) -> bool {
        self.sides.iter().all(Session::is_finished) && self.wires.iter().all(Vec::is_empty)
    }

    /// Encodes `msg` onto side `i`'s wire, as if side `i` had sent it.
    pub fn send(&mut self, i: usize, msg: &Message) {
        encode(msg, &mut self.wires[i]);
    }

    /// Lets side `i` produce up to `max` messages onto its wire; how many it produced.
    pub fn transmit(&mut self, i: usize, max: usize) -> Result<usize, SyncError<S::Error>> {
        let mut n = 0;
        let mut nodes = Vec::new();
        let wire = &mut self.wires[i];
        while n < max {
            match self.sides[i].poll_transmit()? {
                Some(m @ Message::Node(_)) if self.child_first[i] => nodes.push(m),
                Some(m) => {
                    for node in nodes.drain(..).rev() {
                        encode(&node, wire);
                    }
                    encode(&m, wire);
                }
                None => break,
            }
            n += 1;
        }
        for node in nodes.drain(..).rev() {
            encode(&node, wire);
        }
        Ok(n)
    }

    /// Delivers up to `n` bytes of the other side's wire to side `i`, which handles every
    /// whole message (and, live, flushes); `Ok(false)` when the connection was cut.
    pub fn deliver(&mut self, i: usize, n: usize) -> Result<bool, SyncError<S::Error>> {
        let mut n = n.min(self.wires[1 - i].len());
        let mut cut_now = false;
        if let Some(c) = self.cut {
            if self.delivered + n >= c {
                n = c - self.delivered;
                cut_now = true;
            }
        }
        self.decoders[i].push(&self.wires[1 - i][..n]);
        self.wires[1 - i].drain(..n);
        self.delivered += n;
        let s = &mut self.sides[i];
        while let Some(m) = self.decoders[i].next_message()? {
            s.handle(m)?;
        }
        if s.phase() == Phase::Live {
            s.flush()?;
        }
        Ok(!cut_now)
    }

    /// Moves everything side `from` has to send to the other side, as a driver would.
    pub fn exchange(&mut self, from: usize) -> Result<usize, SyncError<S::Error>> {
        let moved = self.transmit(from, usize::MAX)?;
        self.deliver(1 - from, usize::MAX)?;
        Ok(moved)
    }

    /// Runs the session to its end with the schedule read from `input`, one byte a step:
    /// which side runs, how many messages it produces, how many bytes of the in-flight buffer
    /// the other side receives (so frames arrive cut at any byte), a local write through
    /// `write`, closing a live side (or, when it is not live, ending the schedule). Once the
    /// input or the scheduled steps are exhausted, every side transmits and receives
    /// everything; live sides are closed when nothing moves.
    ///
    /// A cut (see [`Wiring::cut`]) ends with both sides seeing end of stream and keeping what
    /// they checked ([`Ended::Cut`]). An error is returned as it happened (both sides then
    /// stop, as over a dropped connection). Panics if honest sides stop making progress.
    pub fn run(
        &mut self,
        input: &mut Input<'_>,
        write: Option<LocalWrite<'_>>,
    ) -> Result<Ended, SyncError<S::Error>> {
        match self.schedule(input, write) {
            Ok(true) => Ok(Ended::Complete),
            Ok(false) => {
                // The connection dropped: each side sees end of stream and keeps what it
                // checked.
                for s in &mut self.sides {
                    if s.on_eof().is_err() {
                        s.salvage();
                    }
                }
                Ok(Ended::Cut)
            }
            Err((i, e)) => {
                self.sides[i].salvage();
                let _ = self.sides[1 - i].on_eof();
                self.sides[1 - i].salvage();
                Err(e)
            }
        }
    }

    /// The steps of [`Pair::run`]: `Ok(true)` when complete, `Ok(false)` on the cut, or the
    /// failing side and its error.
    fn schedule(
        &mut self,
        input: &mut Input<'_>,
        mut write: Option<LocalWrite<'_>>,
    ) -> Result<bool, (usize, SyncError<S::Error>)> {
        let mut idle_rounds = 0;
        let mut draining = false;
        let mut writes = 0;
        for step in 0.. {
            if self.is_done() {
                return Ok(true);
            }
            if step < self.steps && !input.is_empty() && !draining {
                let choice = input.byte();
                let i = usize::from(choice & 1);
                match (choice >> 1) % 8 {
                    0..=2 => {
                        let max = 1 + usize::from(choice >> 5);
                        self.transmit(i, max).map_err(|e| (i, e))?;
                    }
                    3..=5 => {
                        let n = match input.byte() {
                            255 => usize::MAX,
                            b => 1 + usize::from(b) * 3,
                        };
                        if !self.deliver(i, n).map_err(|e| (i, e))? {
                            return Ok(false);
                        }
                    }
                    6 => {
                        if let Some(w) = write.as_mut() {
                            if writes < 8 {
                                writes += 1;
                                if let Some(seq) = w(i, input) {
                                    self.sides[i].local_changed(seq);
                                }
                            }
                        }
                    }
                    // Close a live side, or else end the schedule: deliver everything now.
                    _ if self.sides[i].phase() == Phase::Live => {
                        self.sides[i].close().map_err(|e| (i, e))?;
                    }
                    _ => draining = true,
                }
                continue;
            }
            // Deterministic end: everything moves both ways until nothing does.
            let mut moved = 0;
            for i in 0..2 {
                moved += self.transmit(i, usize::MAX).map_err(|e| (i, e))?;
                let n = self.wires[1 - i].len();
                moved += n;
                if !self.deliver(i, n).map_err(|e| (i, e))? {
                    return Ok(false);
                }
            }
            if moved == 0 {
                if let Some(i) = (0..2).find(|&i| self.sides[i].phase() == Phase::Live) {
                    self.sides[i].close().map_err(|e| (i, e))?;
                } else {
                    idle_rounds += 1;
                    assert!(
                        idle_rounds < 3,
                        "sync made no progress: phases {:?} {:?}",
                        self.sides[0].phase(),
                        self.sides[1].phase()
                    );
                }
            }
        }
        unreachable!()
    }
}

/// A schedule for [`Pair::run`] of `steps` random steps from `seed` that only transmit (up
/// to 4 messages) and deliver (up to 300 bytes): no local write, and it never ends the
/// schedule early, so frames arrive cut at random bytes all through a long session.
pub fn slicing_schedule(seed: u64, steps: usize) -> Vec<u8> {
    let random = seed_bytes(seed, steps * 2);
    let mut out = Vec::with_capacity(steps * 2);
    for pair in random.chunks_exact(2) {
        let (side, r) = (pair[0] & 1, pair[0] >> 1);
        if r & 1 == 0 {
            // Kinds 0..=2 transmit 1 + (byte >> 5) messages: at most 4 here.
            out.push(side | ((r >> 1) % 3) << 1 | ((r >> 2) & 3) << 5);
        } else {
            // Kinds 3..=5 deliver 1 + 3 * b bytes: at most 298 here.
            out.push(side | (3 + (r >> 1) % 3) << 1);
            out.push(pair[1] % 100);
        }
    }
    out
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
