//! Bit sets over feed ranges and the keyed Bloom filter.

use crate::hash::Hash;
use crate::sync::wire::message::{Filter, MAX_FILTER_BYTES};

/// Bits per filter entry and probes: about 0.3% false positives.
pub(crate) const BITS_PER_ENTRY: usize = 12;
pub(crate) const PROBES: u8 = 8;

/// A set of feed seqs, one bit each over the span between the lowest and the highest seq ever
/// set (a plan's seqs are nearly contiguous, so this stays about one bit per node sent).
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqBits {
    /// Index of `words[0]`: seq `s` is bit `s % 64` of word `s / 64 - base`.
    base: u64,
    words: std::collections::VecDeque<u64>,
}

impl SeqBits {
    pub fn new() -> SeqBits {
        SeqBits::default()
    }

    pub fn set(&mut self, seq: u64) {
        let w = seq / 64;
        if self.words.is_empty() {
            self.base = w;
            self.words.push_back(0);
        }
        while w < self.base {
            self.words.push_front(0);
            self.base -= 1;
        }
        while w >= self.base + self.words.len() as u64 {
            self.words.push_back(0);
        }
        self.words[(w - self.base) as usize] |= 1 << (seq % 64);
    }

    pub fn get(&self, seq: u64) -> bool {
        let w = seq / 64;
        w >= self.base
            && self
                .words
                .get((w - self.base) as usize)
                .is_some_and(|x| x & (1 << (seq % 64)) != 0)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
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
        let mut b = SeqBits::new();
        b.set(200);
        b.set(11);
        b.set(1000);
        assert!(b.get(11) && b.get(200) && b.get(1000));
        assert!(!b.get(10) && !b.get(12) && !b.get(0) && !b.get(1001) && !b.get(u64::MAX));
        assert_eq!(b.bytes(), 8 * (1000 / 64 + 1));
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
