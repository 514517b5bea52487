//! Helpers shared by the fuzz targets (each target includes this file with `mod common;`).
#![allow(dead_code)]

use std::borrow::Cow;

/// The fixed "now" of every target (2023-11-14T22:13:20Z), as in the host tests.
pub const NOW: i64 = 1_700_000_000;

/// The input as text: valid UTF-8 as is, anything else with U+FFFD for the broken bytes (so
/// every input reaches the parser, and non-ASCII text is exercised too).
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Splits off the first byte (the target's flags); `None` for an empty input.
pub fn flags(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(f, rest)| (*f, rest))
}

/// A small deterministic generator (SplitMix64), seeded from the input, for the choices a target
/// makes about an input (which equivalent spelling to build, ...): the same input always makes the
/// same choices, as libFuzzer needs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded with FNV-1a of `data`.
    pub fn from_bytes(data: &[u8]) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng(h)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Upper-case hex digit.
pub fn hex_upper(v: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(v & 15)])
}

/// Lower-case hex digit.
pub fn hex_lower(v: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(v & 15)])
}

/// Big-endian `u16` from the first two bytes (missing bytes are zero).
pub fn u16_at(data: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([data.get(i).copied().unwrap_or(0), data.get(i + 1).copied().unwrap_or(0)])
}
