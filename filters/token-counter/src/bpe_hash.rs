//! The hash that places BPE tokens in their lookup table. `build.rs` fills
//! the table with it at compile time and [`crate::bpe`] probes the table
//! with it at run time, so this one file is compiled into both.

/// Bits of a table slot that hold the token's rank (o200k_base has 199 998
/// ordinary tokens, below 2^18).
pub const RANK_BITS: u32 = 18;
/// Mask of the rank bits of a slot.
pub const RANK_MASK: u32 = (1 << RANK_BITS) - 1;
/// An empty slot. Never a real entry: no rank has all 18 bits set.
pub const EMPTY_SLOT: u32 = u32::MAX;

/// A 64-bit hash of a byte string, fast on the short strings (2 to 20
/// bytes) the BPE merge looks up: one multiply per 8 bytes and a final mix,
/// so that both the low bits (the slot) and the high bits (the tag) depend
/// on every input byte.
pub fn hash(bytes: &[u8]) -> u64 {
    const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut state = (bytes.len() as u64).wrapping_mul(MULTIPLIER);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state = (state.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(MULTIPLIER);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        for (to, from) in word.iter_mut().zip(rest) {
            *to = *from;
        }
        state = (state.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(MULTIPLIER);
    }
    state ^= state >> 31;
    state = state.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    state ^ (state >> 29)
}

/// The tag stored beside a rank: hash bits not used for the slot index, so
/// that most probes of a wrong slot are rejected without reading the bytes.
pub fn tag(hash: u64) -> u32 {
    (hash >> (64 - (32 - RANK_BITS))) as u32
}
