//! Bit sets over feed ranges and the keyed Bloom filter.

use super::message::{Filter, MAX_FILTER_BYTES};
use crate::hash::Hash;

/// Bits per filter entry and probes: about 0.3% false positives.
pub(crate) const BITS_PER_ENTRY: usize = 12;
pub(crate) const PROBES: u8 = 8;

/// One bit per seq in `(floor, floor + len]`. Seqs outside read as false.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqBits {
    floor: u64,
    words: Vec<u64>,
    len: u64,
}

impl SeqBits {
    pub fn new(floor: u64, upto: u64) -> SeqBits {
        let len = upto.saturating_sub(floor);
        SeqBits {
            floor,
            words: vec![0; len.div_ceil(64) as usize],
            len,
        }
    }

    fn index(&self, seq: u64) -> Option<usize> {
        (seq > self.floor && seq - self.floor <= self.len).then(|| (seq - self.floor - 1) as usize)
    }

    pub fn set(&mut self, seq: u64) {
        if let Some(i) = self.index(seq) {
            self.words[i / 64] |= 1 << (i % 64);
        }
    }

    pub fn get(&self, seq: u64) -> bool {
        self.index(seq)
            .is_some_and(|i| self.words[i / 64] & (1 << (i % 64)) != 0)
    }
}

fn probe_base(key: &[u8; 32], hash: &Hash) -> (u64, u64) {
    let d = blake3::keyed_hash(key, hash.as_bytes());
    let b = d.as_bytes();
    let a = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let step = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")) | 1;
    (a, step)
}

impl Filter {
    /// An empty filter sized for `entries`, or `None` when it would exceed
    /// [`MAX_FILTER_BYTES`] (the peer then gets no filter and may send duplicates).
    pub fn with_capacity(key: [u8; 32], entries: u64) -> Option<Filter> {
        let bytes = (entries as usize)
            .checked_mul(BITS_PER_ENTRY)?
            .div_ceil(8)
            .max(8);
        (bytes <= MAX_FILTER_BYTES).then(|| Filter {
            key,
            probes: PROBES,
            bits: vec![0; bytes],
        })
    }

    /// Adds a hash.
    pub fn insert(&mut self, hash: &Hash) {
        let m = self.bits.len() as u64 * 8;
        let (a, step) = probe_base(&self.key, hash);
        for i in 0..u64::from(self.probes) {
            let bit = a.wrapping_add(i.wrapping_mul(step)) % m;
            self.bits[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }

    /// Whether a hash may have been added (false positives at the designed rate, never false
    /// negatives).
    pub fn contains(&self, hash: &Hash) -> bool {
        let m = self.bits.len() as u64 * 8;
        if m == 0 {
            return false;
        }
        let (a, step) = probe_base(&self.key, hash);
        (0..u64::from(self.probes)).all(|i| {
            let bit = a.wrapping_add(i.wrapping_mul(step)) % m;
            self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_bits() {
        let mut b = SeqBits::new(10, 20);
        b.set(10);
        b.set(11);
        b.set(20);
        b.set(21);
        assert!(!b.get(10) && b.get(11) && b.get(20) && !b.get(21));
    }

    #[test]
    fn filter_false_positive_rate_is_low() {
        let mut f = Filter::with_capacity([3; 32], 10_000).unwrap();
        for i in 0u32..10_000 {
            f.insert(&Hash::of(&i.to_le_bytes()));
        }
        for i in 0u32..10_000 {
            assert!(f.contains(&Hash::of(&i.to_le_bytes())));
        }
        let fp = (10_000u32..110_000)
            .filter(|i| f.contains(&Hash::of(&i.to_le_bytes())))
            .count();
        assert!(fp < 1_000, "{fp} false positives in 100k");
    }

    #[test]
    fn another_key_gives_other_probes() {
        let h = Hash::of(b"x");
        assert_ne!(probe_base(&[1; 32], &h), probe_base(&[2; 32], &h));
    }
}
