//! OpenAI's byte-pair encodings `o200k_base` and `cl100k_base`, counted from
//! tables built at compile time (`build.rs`).
//!
//! The tables are static data: a VM holds them in its data segment (3.25 MB
//! for `o200k_base`, 1.57 MB for `cl100k_base`) and uses them at once, where
//! tiktoken-rs decoded ~300 000 base64 lines into hash maps at start-up
//! (≈25 MB of heap per table, and most of a VM's start-up time in V8).
//!
//! Counting works as tiktoken does, and the differential test
//! (`tests/bpe_differential.rs`) checks that it gives the same tokens:
//! 1. The pre-tokenizer cuts the text into pieces. tiktoken does it with a
//!    regular expression per encoding (with a lookahead, hence fancy-regex);
//!    here each pattern is a hand-written matcher over Unicode categories
//!    that returns, at each position, the end the pattern's leftmost-first
//!    (backtracking) semantics would give. The categories come from the
//!    same Unicode tables as the regex crate's (`build.rs`).
//! 2. A piece that is a token counts one; otherwise its bytes are merged
//!    pairwise, always the adjacent pair whose merged bytes have the lowest
//!    rank, the leftmost on a tie, until no adjacent pair is a token.

#[path = "bpe_hash.rs"]
mod bpe_hash;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

macro_rules! generated {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file))
    };
}

/// `o200k_base` (gpt-4o, gpt-4.1, gpt-5, o-series).
pub static O200K_BASE: Bpe = Bpe {
    bytes: generated!("o200k_base.bytes"),
    offsets: generated!("o200k_base.offsets"),
    slots: generated!("o200k_base.slots"),
    pretokenizer: Pretokenizer::O200k,
};

/// `cl100k_base` (gpt-4, gpt-3.5).
pub static CL100K_BASE: Bpe = Bpe {
    bytes: generated!("cl100k_base.bytes"),
    offsets: generated!("cl100k_base.offsets"),
    slots: generated!("cl100k_base.slots"),
    pretokenizer: Pretokenizer::Cl100k,
};

/// One code point's category per entry, in blocks of [`BLOCK`] code points.
static CATEGORY_INDEX: &[u8] = generated!("categories.index");
static CATEGORY_BLOCKS: &[u8] = generated!("categories.blocks");
const BLOCK: usize = 128;

// Category codes written by build.rs. White space, numbers, letters split the
// way o200k_base's pattern needs (upper and title case; lower case; modifier
// and other letters, which count as both), marks, and everything else.
const OTHER: u8 = 0;
const SPACE: u8 = 1;
const NUMBER: u8 = 2;
const UPPER: u8 = 3;
const LOWER: u8 = 4;
const LETTER: u8 = 5;
const MARK: u8 = 6;

/// Rank of "no merge possible".
const NO_RANK: u32 = u32::MAX;

/// Pieces at least this long are merged with a heap (n log n) rather than
/// by rescanning the pairs after every merge (n², faster for short pieces).
/// Both give the same tokens.
const HEAP_MERGE_BYTES: usize = 100;

/// Which pre-tokenizing pattern an encoding uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pretokenizer {
    O200k,
    Cl100k,
}

/// A byte-pair encoding whose tables are compiled into the filter.
pub struct Bpe {
    /// Every ordinary token's bytes, in rank order.
    bytes: &'static [u8],
    /// Where each token starts in `bytes` (u32 little-endian), plus the end.
    offsets: &'static [u8],
    /// Open-addressing table (u32 little-endian): rank and hash tag, or empty.
    slots: &'static [u8],
    pretokenizer: Pretokenizer,
}

impl std::fmt::Debug for Bpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bpe").field("pretokenizer", &self.pretokenizer).field("tokens", &self.token_count()).finish()
    }
}

/// Reusable buffers for merging pieces (one allocation per text, not per piece).
#[derive(Default)]
struct Scratch {
    /// Token boundaries of the piece being merged, with the rank of the pair
    /// that starts at each (the last entry is the piece's end).
    parts: Vec<(usize, u32)>,
}

impl Bpe {
    /// Number of ordinary tokens in the encoding.
    pub fn token_count(&self) -> usize {
        (self.offsets.len() / 4).saturating_sub(1)
    }

    /// Bytes of the table data this encoding keeps in memory.
    pub fn table_bytes(&self) -> usize {
        self.bytes.len() + self.offsets.len() + self.slots.len()
    }

    /// Number of tokens in `text` (tiktoken's `encode_ordinary(text).len()`).
    pub fn count(&self, text: &str) -> usize {
        let mut scratch = Scratch::default();
        self.pieces(text).map(|piece| self.piece_tokens(piece.as_bytes(), &mut scratch)).sum()
    }

    /// The token ranks of `text` (tiktoken's `encode_ordinary`). Counting
    /// needs only [`Bpe::count`]; this serves the differential test.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        for piece in self.pieces(text) {
            let piece = piece.as_bytes();
            if let Some(rank) = self.rank(piece) {
                out.push(rank);
                continue;
            }
            self.merge(piece, &mut scratch);
            for pair in scratch.parts.windows(2) {
                if let [(start, _), (end, _)] = pair {
                    out.push(piece.get(*start..*end).and_then(|bytes| self.rank(bytes)).unwrap_or(NO_RANK));
                }
            }
        }
        out
    }

    /// The pre-tokenizer's pieces of `text`, in order; they concatenate to
    /// `text`.
    pub fn pieces<'a>(&self, text: &'a str) -> Pieces<'a> {
        Pieces { text, at: 0, pretokenizer: self.pretokenizer }
    }

    fn piece_tokens(&self, piece: &[u8], scratch: &mut Scratch) -> usize {
        // Every single byte is a token (build.rs checks it).
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return piece.len().min(1);
        }
        self.merge(piece, scratch);
        scratch.parts.len().saturating_sub(1)
    }

    /// The bytes of the token of rank `rank`.
    fn token(&self, rank: u32) -> Option<&'static [u8]> {
        let rank = rank as usize;
        let start = u32_at(self.offsets, rank)? as usize;
        let end = u32_at(self.offsets, rank + 1)? as usize;
        self.bytes.get(start..end)
    }

    /// The rank of the token whose bytes are `bytes`, if there is one.
    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let slot_count = self.slots.len() / 4;
        let mask = slot_count.wrapping_sub(1);
        let hash = bpe_hash::hash(bytes);
        let tag = bpe_hash::tag(hash);
        let mut index = hash as usize & mask;
        // The table is at most 4/5 full, so an empty slot ends every probe;
        // the bound only guards against a corrupt table.
        for _ in 0..slot_count {
            let slot = u32_at(self.slots, index)?;
            if slot == bpe_hash::EMPTY_SLOT {
                return None;
            }
            if slot >> bpe_hash::RANK_BITS == tag {
                let rank = slot & bpe_hash::RANK_MASK;
                if self.token(rank) == Some(bytes) {
                    return Some(rank);
                }
            }
            index = (index + 1) & mask;
        }
        None
    }

    fn range_rank(&self, piece: &[u8], start: usize, end: usize) -> u32 {
        piece.get(start..end).and_then(|bytes| self.rank(bytes)).unwrap_or(NO_RANK)
    }

    /// Merges `piece` (two bytes or more); the tokens' boundaries end up in
    /// `scratch.parts`.
    fn merge(&self, piece: &[u8], scratch: &mut Scratch) {
        if piece.len() < HEAP_MERGE_BYTES {
            self.merge_by_scan(piece, &mut scratch.parts);
        } else {
            self.merge_by_heap(piece, &mut scratch.parts);
        }
    }

    fn merge_by_scan(&self, piece: &[u8], parts: &mut Vec<(usize, u32)>) {
        let len = piece.len();
        parts.clear();
        for start in 0..len.saturating_sub(1) {
            parts.push((start, self.range_rank(piece, start, start + 2)));
        }
        parts.push((len.saturating_sub(1), NO_RANK));
        parts.push((len, NO_RANK));
        loop {
            // The lowest-ranked pair, the leftmost on a tie.
            let mut best = (NO_RANK, 0);
            for (index, (_, rank)) in parts.iter().enumerate() {
                if *rank < best.0 {
                    best = (*rank, index);
                }
            }
            if best.0 == NO_RANK {
                return;
            }
            let index = best.1;
            // Token `index` absorbs token `index + 1`: it now ends where token
            // `index + 2` starts. Re-rank the pairs it takes part in.
            let start = parts.get(index).map_or(0, |part| part.0);
            let merged_end = parts.get(index + 2).map_or(len, |part| part.0);
            let next_rank = match parts.get(index + 3) {
                Some((next_end, _)) => self.range_rank(piece, start, *next_end),
                None => NO_RANK,
            };
            if let Some(previous) = index.checked_sub(1) {
                let previous_start = parts.get(previous).map_or(0, |part| part.0);
                let previous_rank = self.range_rank(piece, previous_start, merged_end);
                if let Some(part) = parts.get_mut(previous) {
                    part.1 = previous_rank;
                }
            }
            if let Some(part) = parts.get_mut(index) {
                part.1 = next_rank;
            }
            if index + 1 < parts.len() {
                parts.remove(index + 1);
            } else {
                return;
            }
        }
    }

    fn merge_by_heap(&self, piece: &[u8], parts: &mut Vec<(usize, u32)>) {
        let len = piece.len();
        // Per byte position: where the token starting there ends, where the
        // token before it starts, and the rank of the pair starting there
        // (NO_RANK once the position is inside a merged token).
        let mut end: Vec<usize> = (1..=len).collect();
        let mut previous: Vec<usize> = (0..len).map(|index| index.wrapping_sub(1)).collect();
        let mut pair: Vec<u32> = (0..len).map(|start| self.range_rank(piece, start, start + 2)).collect();
        let mut heap: BinaryHeap<Reverse<(u32, usize)>> = pair
            .iter()
            .enumerate()
            .filter(|(_, rank)| **rank != NO_RANK)
            .map(|(start, rank)| Reverse((*rank, start)))
            .collect();
        while let Some(Reverse((rank, start))) = heap.pop() {
            if pair.get(start) != Some(&rank) {
                continue; // superseded by a later merge
            }
            let Some(right) = end.get(start).copied() else { break };
            let Some(right_end) = end.get(right).copied() else { break };
            if let Some(entry) = end.get_mut(start) {
                *entry = right_end;
            }
            if let Some(entry) = pair.get_mut(right) {
                *entry = NO_RANK;
            }
            let next_rank = match end.get(right_end) {
                Some(next_end) => {
                    if let Some(entry) = previous.get_mut(right_end) {
                        *entry = start;
                    }
                    self.range_rank(piece, start, *next_end)
                }
                None => NO_RANK,
            };
            if let Some(entry) = pair.get_mut(start) {
                *entry = next_rank;
            }
            if next_rank != NO_RANK {
                heap.push(Reverse((next_rank, start)));
            }
            if start > 0 {
                if let Some(before) = previous.get(start).copied() {
                    let before_rank = self.range_rank(piece, before, right_end);
                    if let Some(entry) = pair.get_mut(before) {
                        *entry = before_rank;
                    }
                    if before_rank != NO_RANK {
                        heap.push(Reverse((before_rank, before)));
                    }
                }
            }
        }
        parts.clear();
        let mut at = 0;
        while at < len {
            parts.push((at, NO_RANK));
            at = end.get(at).copied().unwrap_or(len);
        }
        parts.push((len, NO_RANK));
    }
}

/// Iterator over the pre-tokenizer's pieces (see [`Bpe::pieces`]).
pub struct Pieces<'a> {
    text: &'a str,
    at: usize,
    pretokenizer: Pretokenizer,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.at;
        let (_, _, first_len) = char_at(self.text, start)?;
        let end = match self.pretokenizer {
            Pretokenizer::O200k => o200k_piece_end(self.text, start),
            Pretokenizer::Cl100k => cl100k_piece_end(self.text, start),
        };
        // Every character matches some alternative, so a piece is never
        // empty; one character is the fallback that keeps the loop moving.
        let end = if end > start { end } else { start + first_len };
        self.at = end;
        self.text.get(start..end)
    }
}

/// The little-endian u32 at `index` (in u32 units) of `bytes`.
fn u32_at(bytes: &[u8], index: usize) -> Option<u32> {
    let start = index.checked_mul(4)?;
    let word: [u8; 4] = bytes.get(start..start.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(word))
}

fn category(c: char) -> u8 {
    let code = c as usize;
    // Block 0 (ASCII) is the first block stored.
    if code < BLOCK {
        return CATEGORY_BLOCKS.get(code).copied().unwrap_or(OTHER);
    }
    let Some(block) = CATEGORY_INDEX.get(2 * (code / BLOCK)..2 * (code / BLOCK) + 2) else { return OTHER };
    let block =
        usize::from(u16::from_le_bytes([block.first().copied().unwrap_or(0), block.get(1).copied().unwrap_or(0)]));
    CATEGORY_BLOCKS.get(block * BLOCK + code % BLOCK).copied().unwrap_or(OTHER)
}

/// The character at byte `at` of `text`, its category and its length.
#[inline]
fn char_at(text: &str, at: usize) -> Option<(char, u8, usize)> {
    let first = *text.as_bytes().get(at)?;
    if first < 0x80 {
        let c = char::from(first);
        return Some((c, category(c), 1));
    }
    let c = text.get(at..)?.chars().next()?;
    Some((c, category(c), c.len_utf8()))
}

/// End of the run of characters satisfying `accept` that starts at `at`.
#[inline]
fn run_end(text: &str, mut at: usize, accept: impl Fn(char, u8) -> bool) -> usize {
    while let Some((c, category, len)) = char_at(text, at) {
        if !accept(c, category) {
            break;
        }
        at += len;
    }
    at
}

fn is_letter(category: u8) -> bool {
    matches!(category, UPPER | LOWER | LETTER)
}

/// `[^\r\n\p{L}\p{N}]`: the one character allowed before a word.
fn is_word_prefix(c: char, category: u8) -> bool {
    c != '\r' && c != '\n' && matches!(category, OTHER | SPACE | MARK)
}

/// `[^\s\p{L}\p{N}]`: punctuation, symbols, marks, controls.
fn is_punctuation(category: u8) -> bool {
    matches!(category, OTHER | MARK)
}

/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
fn is_upperish(category: u8) -> bool {
    matches!(category, UPPER | LETTER | MARK)
}

/// o200k's `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
fn is_lowerish(category: u8) -> bool {
    matches!(category, LOWER | LETTER | MARK)
}

fn is_newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// A whitespace run starting at `at`: its end, the end of its last `\r` or
/// `\n` if any, where its last character starts, and how many it has.
struct SpaceRun {
    end: usize,
    after_last_newline: Option<usize>,
    last_start: usize,
    chars: usize,
}

fn space_run(text: &str, start: usize) -> SpaceRun {
    let mut run = SpaceRun { end: start, after_last_newline: None, last_start: start, chars: 0 };
    while let Some((c, category, len)) = char_at(text, run.end) {
        if category != SPACE {
            break;
        }
        run.last_start = run.end;
        run.end += len;
        run.chars += 1;
        if is_newline(c) {
            run.after_last_newline = Some(run.end);
        }
    }
    run
}

/// After a word, o200k's optional `(?i:'s|'t|'re|'ve|'m|'ll|'d)`; cl100k's
/// `'(?i:[sdmt]|ll|ve|re)` piece. `None` if there is none at `at`.
fn contraction_end(text: &str, at: usize) -> Option<usize> {
    if text.as_bytes().get(at) != Some(&b'\'') {
        return None;
    }
    let (first, _, first_len) = char_at(text, at + 1)?;
    match first {
        // ſ (U+017F) folds to `s` under Unicode case-insensitive matching.
        's' | 'S' | '\u{17F}' | 't' | 'T' | 'm' | 'M' | 'd' | 'D' => Some(at + 1 + first_len),
        'r' | 'R' | 'v' | 'V' | 'l' | 'L' => {
            let second = text.as_bytes().get(at + 2).copied()?;
            let matches = match first {
                'l' | 'L' => second.eq_ignore_ascii_case(&b'l'),
                _ => second.eq_ignore_ascii_case(&b'e'),
            };
            matches.then_some(at + 3)
        }
        _ => None,
    }
}

/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` then
/// an optional contraction, from `at`. The greedy first run backtracks
/// until the second can match, so when no lower-case-like character follows
/// the upper run, the word ends after the run's last lower-case-like
/// character.
fn o200k_lower_word(text: &str, at: usize) -> Option<usize> {
    let mut end = at;
    let mut after_last_lowerish = None;
    while let Some((_, category, len)) = char_at(text, end) {
        if !is_upperish(category) {
            break;
        }
        end += len;
        if is_lowerish(category) {
            after_last_lowerish = Some(end);
        }
    }
    let word_end = match char_at(text, end) {
        Some((_, category, _)) if is_lowerish(category) => run_end(text, end, |_, category| is_lowerish(category)),
        _ => after_last_lowerish?,
    };
    Some(contraction_end(text, word_end).unwrap_or(word_end))
}

/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` then an
/// optional contraction, from `at`.
fn o200k_upper_word(text: &str, at: usize) -> Option<usize> {
    let upper_end = run_end(text, at, |_, category| is_upperish(category));
    if upper_end == at {
        return None;
    }
    let word_end = run_end(text, upper_end, |_, category| is_lowerish(category));
    Some(contraction_end(text, word_end).unwrap_or(word_end))
}

/// Up to three `\p{N}` from `at` (which is one).
fn digits_end(text: &str, at: usize) -> usize {
    let mut end = at;
    for _ in 0..3 {
        match char_at(text, end) {
            Some((_, NUMBER, len)) => end += len,
            _ => break,
        }
    }
    end
}

/// ` ?[^\s\p{L}\p{N}]+` then a run of `extra` characters, or `None`.
fn punctuation_end(text: &str, at: usize, first: char, extra: impl Fn(char) -> bool) -> Option<usize> {
    let start = if first == ' ' { at + 1 } else { at };
    let (_, category, _) = char_at(text, start)?;
    if !is_punctuation(category) {
        return None;
    }
    let end = run_end(text, start, |_, category| is_punctuation(category));
    Some(run_end(text, end, |c, _| extra(c)))
}

/// The end of the piece that o200k_base's pattern matches at `at`:
///
/// ```text
/// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
/// |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
/// |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
/// ```
fn o200k_piece_end(text: &str, at: usize) -> usize {
    let Some((first, category, first_len)) = char_at(text, at) else { return at };
    let prefixed = is_word_prefix(first, category);
    // The alternatives in order; the optional prefix is tried taken first.
    if prefixed {
        if let Some(end) = o200k_lower_word(text, at + first_len) {
            return end;
        }
    }
    if let Some(end) = o200k_lower_word(text, at) {
        return end;
    }
    if prefixed {
        if let Some(end) = o200k_upper_word(text, at + first_len) {
            return end;
        }
    }
    if let Some(end) = o200k_upper_word(text, at) {
        return end;
    }
    if category == NUMBER {
        return digits_end(text, at);
    }
    if let Some(end) = punctuation_end(text, at, first, |c| is_newline(c) || c == '/') {
        return end;
    }
    if category != SPACE {
        return at + first_len;
    }
    let run = space_run(text, at);
    if let Some(end) = run.after_last_newline {
        // \s*[\r\n]+ : the white space up to and including the last newline.
        return end;
    }
    if run.end == text.len() || run.chars < 2 {
        // \s+(?!\S) at the end of the text, or \s+ for one space before a word.
        return run.end;
    }
    // \s+(?!\S): all but the last space, which goes with the next word.
    run.last_start
}

/// The end of the piece that cl100k_base's pattern matches at `at`:
///
/// ```text
/// '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
/// |\s++$|\s*[\r\n]|\s+(?!\S)|\s
/// ```
fn cl100k_piece_end(text: &str, at: usize) -> usize {
    let Some((first, category, first_len)) = char_at(text, at) else { return at };
    if let Some(end) = contraction_end(text, at) {
        return end;
    }
    if is_letter(category) {
        return run_end(text, at, |_, category| is_letter(category));
    }
    if is_word_prefix(first, category) {
        if let Some((_, next, _)) = char_at(text, at + first_len) {
            if is_letter(next) {
                return run_end(text, at + first_len, |_, category| is_letter(category));
            }
        }
    }
    if category == NUMBER {
        return digits_end(text, at);
    }
    if let Some(end) = punctuation_end(text, at, first, is_newline) {
        return end;
    }
    if category != SPACE {
        return at + first_len;
    }
    let run = space_run(text, at);
    if run.end == text.len() {
        return run.end; // \s++$
    }
    if let Some(end) = run.after_last_newline {
        return end; // \s*[\r\n]
    }
    if run.chars >= 2 {
        return run.last_start; // \s+(?!\S)
    }
    run.end // \s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(bpe: &Bpe, text: &str) -> Vec<String> {
        bpe.pieces(text).map(str::to_string).collect()
    }

    #[test]
    fn tables_are_complete() {
        assert_eq!(O200K_BASE.token_count(), 199_998);
        assert_eq!(CL100K_BASE.token_count(), 100_256);
        for bpe in [&O200K_BASE, &CL100K_BASE] {
            for byte in 0..=255u8 {
                assert!(bpe.rank(&[byte]).is_some(), "byte {byte} is a token");
            }
            for rank in [0, 1, 1000, bpe.token_count() as u32 - 1] {
                assert_eq!(bpe.rank(bpe.token(rank).unwrap()), Some(rank));
            }
            assert_eq!(bpe.rank(b"\xff\xfe\xfd not a token \xff"), None);
        }
    }

    #[test]
    fn categories() {
        assert_eq!(category('a'), LOWER);
        assert_eq!(category('A'), UPPER);
        assert_eq!(category('ǅ'), UPPER); // title case
        assert_eq!(category('日'), LETTER);
        assert_eq!(category('ʰ'), LETTER); // modifier letter
        assert_eq!(category('\u{301}'), MARK);
        assert_eq!(category('7'), NUMBER);
        assert_eq!(category('½'), NUMBER);
        assert_eq!(category(' '), SPACE);
        assert_eq!(category('\u{3000}'), SPACE);
        assert_eq!(category('\u{85}'), SPACE);
        assert_eq!(category('!'), OTHER);
        assert_eq!(category('😀'), OTHER);
    }

    #[test]
    fn o200k_pieces() {
        let bpe = &O200K_BASE;
        assert_eq!(pieces(bpe, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(bpe, "don't STOP'S"), ["don't", " STOP'S"]);
        assert_eq!(pieces(bpe, "a  b\n\n c  "), ["a", " ", " b", "\n\n", " c", "  "]);
        assert_eq!(pieces(bpe, "12345"), ["123", "45"]);
        assert_eq!(pieces(bpe, "x = a/b;\n//"), ["x", " =", " a", "/b", ";\n//"]);
        assert_eq!(pieces(bpe, "HTMLParser"), ["HTMLParser"]);
    }

    #[test]
    fn cl100k_pieces() {
        let bpe = &CL100K_BASE;
        assert_eq!(pieces(bpe, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(bpe, "don't"), ["don", "'t"]);
        assert_eq!(pieces(bpe, "a  b\n\n c  "), ["a", " ", " b", "\n\n", " c", "  "]);
        assert_eq!(pieces(bpe, "12345"), ["123", "45"]);
    }

    #[test]
    fn both_merges_agree() {
        // The scan and the heap give the same tokens on any piece.
        let piece = "abcabcabcabababababcccccabcxyzxyzxyzxyzaaaaaaaaaaaaaaaaaaaaa".repeat(4);
        for bpe in [&O200K_BASE, &CL100K_BASE] {
            let (mut scan, mut heap) = (Vec::new(), Vec::new());
            bpe.merge_by_scan(piece.as_bytes(), &mut scan);
            bpe.merge_by_heap(piece.as_bytes(), &mut heap);
            let bounds = |parts: &[(usize, u32)]| parts.iter().map(|part| part.0).collect::<Vec<_>>();
            assert_eq!(bounds(&scan), bounds(&heap));
            assert!(scan.len() > 2);
        }
    }
}
