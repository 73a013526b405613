//! `PeerId`: a replica's random id, as peers see it (not a key: it signs nothing).
//!
//! Peers remember replication state per peer id, so two replicas sharing an id would confuse
//! every peer that talks to both. The store binds the id to its data file, so a copied
//! directory gets a fresh one on open (`store/replica_id.rs`).

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// A replica's 16-byte random id. Shown as 32 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerId(pub [u8; 16]);

impl PeerId {
    /// A fresh random id.
    pub fn random() -> PeerId {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        PeerId(b)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", &hex::encode(self.0)[..8])
    }
}

impl FromStr for PeerId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<PeerId, hex::FromHexError> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b)?;
        Ok(PeerId(b))
    }
}
