//! [`Replica`]: one simulated replica, a [`Log`] with its [`Kv`] view.

use crate::kv::Kv;
use crate::log::Log;

/// One replica of a simulation: a log and its key-value view, in a temporary LMDB
/// environment. Writes are unsigned (ids depend only on content) unless the run is
/// [signed](super::Sim::signed).
///
/// The handles are valid for one run: the environment is emptied and reused afterwards, so
/// an app must not keep clones of them, nor subscribe to changes beyond the run.
#[derive(Debug)]
pub struct Replica {
    pub(crate) index: usize,
    pub(crate) log: Log,
    pub(crate) kv: Kv,
    /// The identity it signs with in signed runs (kept with the pooled environment).
    pub(crate) id: crate::identity::Identity,
}

impl Replica {
    /// The replica's position, `0..replicas`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Its key-value view (root namespace; [`Kv::namespace`] for others).
    pub fn kv(&self) -> &Kv {
        &self.kv
    }
}
