//! Builds the token-counter's tokenizer tables at compile time, so that a
//! Wasm VM starts with them ready in its data segment instead of decoding
//! and hashing ~300 000 base64 lines at configure time.
//!
//! * The token bytes of `o200k_base` and `cl100k_base` come from tiktoken-rs
//!   (a build-dependency here, and the reference the differential test
//!   compares against): rank `r`'s bytes are `decode_bytes(&[r])`.
//!   Per encoding it writes the bytes of every token in rank order
//!   (`*.bytes`), where each token starts (`*.offsets`, u32 little-endian,
//!   one more than there are tokens), and an open-addressing hash table
//!   (`*.slots`, u32 little-endian: rank in the low 18 bits, a hash tag
//!   above) probed linearly with `src/bpe_hash.rs`.
//! * The Unicode classes the pre-tokenizer needs come from regex-syntax, the
//!   crate behind the `\p{..}` and `\s` classes of tiktoken's patterns, so
//!   both sides classify every code point alike: one category byte per code
//!   point in a two-level table (`categories.index`, u16 little-endian block
//!   numbers, and `categories.blocks`, 128 bytes per distinct block).

#[path = "src/bpe_hash.rs"]
mod bpe_hash;

use regex_syntax::hir::{Class, HirKind};
use std::collections::HashMap;
use std::error::Error;
use std::path::Path;

/// Category codes; must match the constants in `src/bpe.rs`.
const OTHER: u8 = 0;
const SPACE: u8 = 1;
const NUMBER: u8 = 2;
const UPPER: u8 = 3;
const LOWER: u8 = 4;
const LETTER: u8 = 5;
const MARK: u8 = 6;

/// Code points per block of the category table.
const BLOCK: usize = 128;

/// Ordinary tokens per encoding: a check that the rank table is complete.
const ENCODINGS: [(&str, u32); 2] = [("o200k_base", 199_998), ("cl100k_base", 100_256)];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/bpe_hash.rs");
    let out = std::env::var("OUT_DIR")?;
    let out = Path::new(&out);
    for (name, expected) in ENCODINGS {
        let tokens = tokens(name)?;
        if tokens.len() != expected as usize {
            return Err(format!("{name}: {} ordinary tokens, expected {expected}", tokens.len()).into());
        }
        write_tables(out, name, &tokens)?;
    }
    write_categories(out)?;
    check_contraction_letters()?;
    Ok(())
}

/// The ordinary tokens' bytes, indexed by rank.
fn tokens(name: &str) -> Result<Vec<Vec<u8>>, Box<dyn Error>> {
    let bpe = match name {
        "o200k_base" => tiktoken_rs::o200k_base()?,
        _ => tiktoken_rs::cl100k_base()?,
    };
    let mut tokens = Vec::new();
    // Ranks are dense from 0; the first rank that does not decode ends the
    // ordinary tokens (the special tokens sit above a gap).
    for rank in 0u32.. {
        match bpe.decode_bytes(&[rank]) {
            Ok(bytes) => tokens.push(bytes),
            Err(_) => break,
        }
    }
    Ok(tokens)
}

fn write_tables(out: &Path, name: &str, tokens: &[Vec<u8>]) -> Result<(), Box<dyn Error>> {
    let mut bytes = Vec::new();
    let mut offsets = Vec::with_capacity(4 * (tokens.len() + 1));
    for token in tokens {
        offsets.extend_from_slice(&u32::try_from(bytes.len())?.to_le_bytes());
        bytes.extend_from_slice(token);
    }
    offsets.extend_from_slice(&u32::try_from(bytes.len())?.to_le_bytes());

    // A table at most 4/5 full (o200k_base: 76%, 1 MiB): the tag rejects
    // nearly every wrong slot without touching the token bytes, so even a
    // long probe is a few compares in one or two cache lines. Measured as
    // fast as a table half as full and twice as large (BENCHMARKS.md).
    let mut size = 1usize;
    while size * 4 < tokens.len() * 5 {
        size *= 2;
    }
    let mask = size - 1;
    let mut slots = vec![bpe_hash::EMPTY_SLOT; size];
    for (rank, token) in tokens.iter().enumerate() {
        let rank = u32::try_from(rank)?;
        if rank > bpe_hash::RANK_MASK {
            return Err(format!("{name}: rank {rank} does not fit in a slot").into());
        }
        let hash = bpe_hash::hash(token);
        let mut index = hash as usize & mask;
        loop {
            let slot = slots.get_mut(index).ok_or("slot index out of range")?;
            if *slot == bpe_hash::EMPTY_SLOT {
                *slot = rank | (bpe_hash::tag(hash) << bpe_hash::RANK_BITS);
                break;
            }
            index = (index + 1) & mask;
        }
    }
    let slot_bytes: Vec<u8> = slots.iter().flat_map(|slot| slot.to_le_bytes()).collect();
    std::fs::write(out.join(format!("{name}.bytes")), &bytes)?;
    std::fs::write(out.join(format!("{name}.offsets")), &offsets)?;
    std::fs::write(out.join(format!("{name}.slots")), &slot_bytes)?;
    Ok(())
}

/// The code points of a regex-syntax class such as `\p{Lu}`.
fn class(pattern: &str) -> Result<Vec<(u32, u32)>, Box<dyn Error>> {
    let hir = regex_syntax::Parser::new().parse(pattern)?;
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            Ok(class.ranges().iter().map(|range| (u32::from(range.start()), u32::from(range.end()))).collect())
        }
        _ => Err(format!("{pattern} is not a Unicode class").into()),
    }
}

fn write_categories(out: &Path) -> Result<(), Box<dyn Error>> {
    let mut categories = vec![OTHER; 0x11_0000];
    for (pattern, category) in [
        (r"\s", SPACE),
        (r"\p{N}", NUMBER),
        (r"[\p{Lu}\p{Lt}]", UPPER),
        (r"\p{Ll}", LOWER),
        (r"[\p{Lm}\p{Lo}]", LETTER),
        (r"\p{M}", MARK),
    ] {
        for (start, end) in class(pattern)? {
            for code in start..=end {
                let entry = categories.get_mut(code as usize).ok_or("code point out of range")?;
                if *entry != OTHER {
                    return Err(format!("U+{code:04X} is in two categories").into());
                }
                *entry = category;
            }
        }
    }
    // The letters as a whole must be exactly \p{L}.
    let letters: usize = class(r"\p{L}")?.iter().map(|(start, end)| (end - start + 1) as usize).sum();
    let counted = categories.iter().filter(|c| matches!(**c, UPPER | LOWER | LETTER)).count();
    if letters != counted {
        return Err(format!("\\p{{L}} has {letters} code points, the categories {counted}").into());
    }

    let mut index = Vec::new();
    let mut blocks: Vec<u8> = Vec::new();
    let mut seen: HashMap<&[u8], u16> = HashMap::new();
    for block in categories.chunks(BLOCK) {
        let number = match seen.get(block) {
            Some(number) => *number,
            None => {
                let number = u16::try_from(seen.len())?;
                seen.insert(block, number);
                blocks.extend_from_slice(block);
                number
            }
        };
        index.extend_from_slice(&number.to_le_bytes());
    }
    std::fs::write(out.join("categories.index"), &index)?;
    std::fs::write(out.join("categories.blocks"), &blocks)?;
    Ok(())
}

/// The contractions (`'s`, `'t`, `'re`, ...) are matched case-insensitively
/// by Unicode simple case folding; `src/bpe.rs` spells out the letters that
/// fold onto them (including `ſ`, U+017F, for `s`). Fail the build if
/// regex-syntax ever folds another code point onto one of them.
fn check_contraction_letters() -> Result<(), Box<dyn Error>> {
    let folded: Vec<(u32, u32)> = class("(?i)[sdmtlvre]")?;
    let expected: Vec<(u32, u32)> = class("[sdmtlvreSDMTLVRE\u{17F}]")?;
    if folded != expected {
        return Err(format!("case folding of the contraction letters changed: {folded:?}").into());
    }
    Ok(())
}
