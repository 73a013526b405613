//! [`Input`]: fuzzer bytes, or bytes expanded from a seed, read as a stream of small choices.

/// Fuzzer bytes read as a stream of small choices; reads past the end give zeros, so every
/// input is a valid program.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads choices from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 once exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` next bytes (fewer once exhausted).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

impl Input<'_> {
    /// A choice in `0..n` (0 when `n` is 0): one byte when `n` fits in a byte, else two.
    pub fn choose(&mut self, n: usize) -> usize {
        match n {
            0 => 0,
            1..=256 => usize::from(self.byte()) % n,
            _ => usize::from(self.u16()) % n,
        }
    }

    /// A coin flip (one byte).
    pub fn flip(&mut self) -> bool {
        self.byte() & 1 == 1
    }
}

/// Bytes for an [`Input`] expanded from `seed` (splitmix64): the same seed gives the same
/// bytes, so a seeded run reproduces exactly, and an input that fails can be kept as a file.
pub fn seed_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}
