//! The one gossip message, [`Announce`], and the rate bound on what a neighbour delivers.
//!
//! An announcement is postcard of:
//!
//! ```text
//! version u8 = 1
//! from    [u8; 32]          the announcing replica's endpoint id
//! addrs   Vec<SocketAddr>   its direct addresses (at most MAX_ANNOUNCE_ADDRS)
//! heads   Vec<[u8; 32]>     its heads (at most MAX_ANNOUNCE_HEADS)
//! more    bool              it has more heads than listed
//! len     u64               its node count (a hint for progress; never trusted)
//! ```
//!
//! It is at most [`MAX_ANNOUNCE_BYTES`] long; anything longer, malformed, of another
//! version, with trailing bytes or over a count bound is dropped whole.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::identity::PublicKey;

/// The announcement format version.
pub const ANNOUNCE_VERSION: u8 = 1;
/// Most heads an announcement lists; a replica with more sets `more`.
pub const MAX_ANNOUNCE_HEADS: usize = 32;
/// Most direct addresses an announcement carries.
pub const MAX_ANNOUNCE_ADDRS: usize = 8;
/// Most bytes an announcement may have: the largest valid one fits with room to spare.
pub const MAX_ANNOUNCE_BYTES: usize = 1536;

/// "I am here, and these are my heads."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// The announcing replica's endpoint id.
    pub from: PublicKey,
    /// Where to dial it directly.
    pub addrs: Vec<SocketAddr>,
    /// Its heads (at most [`MAX_ANNOUNCE_HEADS`]).
    pub heads: Vec<Hash>,
    /// It has more heads than `heads` lists.
    pub more: bool,
    /// Its node count.
    pub len: u64,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    version: u8,
    from: [u8; 32],
    addrs: Vec<SocketAddr>,
    heads: Vec<[u8; 32]>,
    more: bool,
    len: u64,
}

/// Why an announcement was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// Longer than [`MAX_ANNOUNCE_BYTES`].
    #[error("announcement of {got} bytes exceeds {max}")]
    TooLarge {
        /// Its size.
        got: usize,
        /// [`MAX_ANNOUNCE_BYTES`].
        max: usize,
    },
    /// It does not decode, has trailing bytes, another version, or too many entries.
    #[error("malformed announcement: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
}

impl Announce {
    /// An announcement of `heads` (the first [`MAX_ANNOUNCE_HEADS`] are listed).
    pub fn new(from: PublicKey, addrs: &[SocketAddr], heads: &[Hash], len: u64) -> Announce {
        let n = heads.len().min(MAX_ANNOUNCE_HEADS);
        Announce {
            from,
            addrs: addrs.iter().take(MAX_ANNOUNCE_ADDRS).copied().collect(),
            heads: heads[..n].to_vec(),
            more: heads.len() > n,
            len,
        }
    }

    /// The bytes sent.
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            version: ANNOUNCE_VERSION,
            from: self.from.0,
            addrs: self.addrs.clone(),
            heads: self.heads.iter().map(|h| h.0).collect(),
            more: self.more,
            len: self.len,
        };
        postcard::to_stdvec(&wire).expect("a bounded struct encodes")
    }

    /// Decodes received bytes, checking every bound (size first, before decoding).
    pub fn decode(bytes: &[u8]) -> Result<Announce, AnnounceError> {
        if bytes.len() > MAX_ANNOUNCE_BYTES {
            return Err(AnnounceError::TooLarge {
                got: bytes.len(),
                max: MAX_ANNOUNCE_BYTES,
            });
        }
        let bad = |reason: String| AnnounceError::Malformed { reason };
        let (w, left): (Wire, _) =
            postcard::take_from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
        if !left.is_empty() {
            return Err(bad(format!("{} trailing bytes", left.len())));
        }
        if w.version != ANNOUNCE_VERSION {
            return Err(bad(format!("version {}", w.version)));
        }
        if w.heads.len() > MAX_ANNOUNCE_HEADS || w.addrs.len() > MAX_ANNOUNCE_ADDRS {
            return Err(bad(format!(
                "{} heads and {} addresses (at most {MAX_ANNOUNCE_HEADS} and {MAX_ANNOUNCE_ADDRS})",
                w.heads.len(),
                w.addrs.len()
            )));
        }
        Ok(Announce {
            from: PublicKey(w.from),
            addrs: w.addrs,
            heads: w.heads.into_iter().map(Hash).collect(),
            more: w.more,
            len: w.len,
        })
    }
}

/// A token bucket: `burst` announcements at once, then `per_sec` a second.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(burst: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self, burst: u32, per_sec: u32, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last);
        self.last = now;
        let refill = dt.min(Duration::from_secs(3600)).as_secs_f64() * f64::from(per_sec);
        self.tokens = (self.tokens + refill).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn full() -> Announce {
        let heads: Vec<Hash> = (0..MAX_ANNOUNCE_HEADS + 5)
            .map(|i| Hash::of(&[i as u8]))
            .collect();
        let addrs: Vec<SocketAddr> = (0..20)
            .map(|i| SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, i], 65535)))
            .collect();
        Announce::new(Identity::generate().public_key(), &addrs, &heads, u64::MAX)
    }

    #[test]
    fn the_largest_announcement_fits_and_round_trips() {
        let a = full();
        assert!(a.more);
        assert_eq!(a.heads.len(), MAX_ANNOUNCE_HEADS);
        assert_eq!(a.addrs.len(), MAX_ANNOUNCE_ADDRS);
        let bytes = a.encode();
        assert!(bytes.len() <= MAX_ANNOUNCE_BYTES, "{}", bytes.len());
        assert_eq!(Announce::decode(&bytes), Ok(a));
    }

    #[test]
    fn bounds_are_checked_at_and_beyond_their_size() {
        let mut a = full();
        let mut bytes = a.encode();
        bytes.resize(MAX_ANNOUNCE_BYTES + 1, 0);
        assert!(matches!(
            Announce::decode(&bytes),
            Err(AnnounceError::TooLarge { got, .. }) if got == MAX_ANNOUNCE_BYTES + 1
        ));
        assert!(matches!(
            Announce::decode(&vec![0u8; 1 << 20]),
            Err(AnnounceError::TooLarge { .. })
        ));
        // One head too many, hand-built past the constructor's cut.
        a.heads.push(Hash::of(b"one more"));
        assert!(matches!(
            Announce::decode(&a.encode()),
            Err(AnnounceError::Malformed { .. })
        ));
        let mut b = full();
        b.heads.truncate(1);
        let mut tail = b.encode();
        tail.push(7);
        assert!(matches!(
            Announce::decode(&tail),
            Err(AnnounceError::Malformed { .. })
        ));
        let mut v2 = b.encode();
        v2[0] = 2;
        assert!(matches!(
            Announce::decode(&v2),
            Err(AnnounceError::Malformed { .. })
        ));
        assert!(Announce::decode(&[]).is_err());
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(4);
        assert_eq!((0..10).filter(|_| b.take(4, 2, t0)).count(), 4);
        // Half a second at 2/s refills one token.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| b.take(4, 2, t1)).count(), 1);
        // A long pause refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(1000);
        assert_eq!((0..10).filter(|_| b.take(4, 2, t2)).count(), 4);
    }
}
