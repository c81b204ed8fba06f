//! Mutations aimed at what breaks parsers and streaming code: numbers past
//! every integer type, values of the wrong type, nesting past every stack,
//! long runs of one character (the inputs that make naive scanners
//! quadratic), invalid UTF-8, NUL bytes, and pieces of other seeds.

use crate::{Options, Rng};
use serde_json::{Map, Value};

/// Numbers that overflow, underflow or lose precision somewhere.
const HUGE_NUMBERS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967295",
    "4294967296",
    "1e308",
    "-1e308",
    "1e400",
    "5e-324",
    "-1",
    "0",
    "-0",
    "0.5",
    "99999999999999999999999999999999",
];

/// Byte sequences that are not UTF-8 (lone continuation, overlong, surrogate,
/// truncated) and control bytes.
const INVALID_UTF8: &[&[u8]] =
    &[b"\xff", b"\xc3", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x00", b"\r"];

/// Characters repeated into long runs: digits (phone and card detectors),
/// letters (the tokenizer, e-mail local parts), separators and line ends
/// (the SSE parser), brackets (nesting).
const RUN_BYTES: &[u8] = b"0123456789aZ .-_@:\n\r\t{[\"\\/+=";

/// Texts worth planting inside strings.
const PLANTS: &[&str] = &[
    "\n\ndata: {}\n\n",
    "\r\rdata: x\r\r",
    "jane.doe@example.com",
    "+1 (415) 555-0134",
    "4111 1111 1111 1111",
    "sk-proj-0123456789abcdefghijklmnopqrstuvwxyzABCD",
    "{{user}}",
    "{{",
    "}}",
    "$1",
    "${9999999999}",
    "\u{0}",
    "\u{feff}",
    "日本語",
    "🙂",
];

/// A random position in `0..=len`.
fn position(rng: &mut Rng, len: usize) -> usize {
    rng.below(len + 1)
}

fn long_run(rng: &mut Rng, options: &Options) -> Vec<u8> {
    let byte = rng.pick(RUN_BYTES).copied().unwrap_or(b'0');
    // Lengths spread over orders of magnitude.
    let magnitude = rng.below(usize::BITS as usize - options.max_run.leading_zeros() as usize);
    let len = (1usize << magnitude).min(options.max_run).max(1) + rng.below(8);
    vec![byte; len]
}

/// Mutates `base` once to a few times. `others` are spliced from.
pub fn mutate(base: &[u8], others: &[Vec<u8>], rng: &mut Rng, options: &Options) -> Vec<u8> {
    let mut out = base.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        match rng.below(13) {
            0 => {
                if let Some(byte) = out.get_mut(rng.below(base.len().max(1))) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            1 => {
                let at = position(rng, out.len());
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, bytes);
            }
            2 => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(64)).min(out.len());
                if start < end {
                    out.drain(start..end);
                }
            }
            3 => {
                let at = position(rng, out.len());
                let bad = rng.pick(INVALID_UTF8).copied().unwrap_or(b"\xff");
                out.splice(at..at, bad.iter().copied());
            }
            4 => {
                let at = position(rng, out.len());
                let run = long_run(rng, options);
                out.splice(at..at, run);
            }
            5 => out = replace_number(&out, rng),
            6 => out = json_mutation(&out, rng, options).unwrap_or(out),
            7 => out = nest_textually(&out, rng),
            8 => {
                if let Some(other) = rng.pick(others) {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(other.len().max(1))).min(other.len());
                    let at = position(rng, out.len());
                    if let Some(piece) = other.get(start..end) {
                        out.splice(at..at, piece.iter().copied());
                    }
                }
            }
            9 => {
                // Repeat a slice many times (long lines, many events).
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(256)).min(out.len());
                if let Some(piece) = out.get(start..end).map(<[u8]>::to_vec) {
                    let times = 1 + rng.below(options.max_run / piece.len().max(1) + 1).min(4096);
                    let at = end;
                    out.splice(at..at, piece.iter().copied().cycle().take(piece.len() * times));
                }
            }
            10 => {
                // Line endings: all `\n` to `\r` or `\r\n`, or the reverse.
                let (from, to): (&[u8], &[u8]) = match rng.below(3) {
                    0 => (b"\n", b"\r"),
                    1 => (b"\n", b"\r\n"),
                    _ => (b"\r\n", b"\n"),
                };
                out = replace_all(&out, from, to);
            }
            11 => {
                let at = position(rng, out.len());
                let plant = rng.pick(PLANTS).copied().unwrap_or("");
                out.splice(at..at, plant.bytes());
            }
            _ => {
                // Truncate: streams and bodies that end early.
                let at = rng.below(out.len() + 1);
                out.truncate(at);
            }
        }
    }
    out.truncate(options.max_input);
    out
}

fn replace_all(input: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while !rest.is_empty() {
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = rest.get(from.len()..).unwrap_or_default();
        } else {
            out.extend_from_slice(rest.get(..1).unwrap_or_default());
            rest = rest.get(1..).unwrap_or_default();
        }
    }
    out
}

/// Replaces one run of digits with a number that overflows something, or
/// inserts one.
fn replace_number(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let number = rng.pick(HUGE_NUMBERS).copied().unwrap_or("0").as_bytes();
    let starts: Vec<usize> = (0..input.len())
        .filter(|&i| {
            input.get(i).is_some_and(u8::is_ascii_digit)
                && (i == 0 || !input.get(i - 1).is_some_and(u8::is_ascii_digit))
        })
        .collect();
    let mut out = input.to_vec();
    match rng.pick(&starts).copied() {
        Some(start) => {
            let end =
                (start..input.len()).find(|&i| !input.get(i).is_some_and(u8::is_ascii_digit)).unwrap_or(input.len());
            out.splice(start..end, number.iter().copied());
        }
        None => {
            let at = position(rng, out.len());
            out.splice(at..at, number.iter().copied());
        }
    }
    out
}

/// Wraps a random piece in hundreds to thousands of brackets.
fn nest_textually(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let depth = 1 << (4 + rng.below(10)); // 16 … 8192
    let (open, close): (&[u8], &[u8]) = match rng.below(3) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        _ => (b"[{\"type\":\"tool_result\",\"content\":", b"}]"),
    };
    let start = rng.below(input.len() + 1);
    let end = (start + rng.below(input.len() - start + 1)).min(input.len());
    let mut out = Vec::with_capacity(input.len() + depth * (open.len() + close.len()));
    out.extend_from_slice(input.get(..start).unwrap_or_default());
    for _ in 0..depth {
        out.extend_from_slice(open);
    }
    out.extend_from_slice(input.get(start..end).unwrap_or_default());
    for _ in 0..depth {
        out.extend_from_slice(close);
    }
    out.extend_from_slice(input.get(end..).unwrap_or_default());
    out
}

/// A value of another type (or an extreme of the same one) for `value`.
fn swapped(value: &Value, rng: &mut Rng, options: &Options) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => serde_json::from_str(rng.pick(HUGE_NUMBERS).copied().unwrap_or("0")).unwrap_or(Value::Null),
        3 => Value::String(String::new()),
        4 => Value::String(String::from_utf8_lossy(&long_run(rng, options)).into_owned()),
        5 => Value::String(rng.pick(PLANTS).copied().unwrap_or("").to_string()),
        6 => Value::Array(Vec::new()),
        7 => Value::Object(Map::new()),
        8 => Value::Array(vec![value.clone(); 1 + rng.below(64)]),
        9 => {
            let mut map = Map::new();
            map.insert("text".into(), value.clone());
            map.insert("type".into(), Value::String("text".into()));
            Value::Object(map)
        }
        10 => match value {
            Value::String(text) => Value::String(text.repeat(1 + rng.below(1000))),
            other => Value::String(other.to_string()),
        },
        _ => Value::Number((rng.next_u64() >> rng.below(64)).into()),
    }
}

/// Parses `input` as JSON and changes one node found by a random walk.
fn json_mutation(input: &[u8], rng: &mut Rng, options: &Options) -> Option<Vec<u8>> {
    let mut root: Value = serde_json::from_slice(input).ok()?;
    let mut node = &mut root;
    loop {
        let descend = rng.below(4) != 0;
        let children = match &*node {
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            _ => 0,
        };
        if !descend || children == 0 {
            break;
        }
        let pick = rng.below(children);
        node = match node {
            Value::Array(items) => items.get_mut(pick)?,
            Value::Object(map) => map.values_mut().nth(pick)?,
            _ => return None,
        };
    }
    if let (Value::Object(map), true) = (&mut *node, rng.one_in(4)) {
        // Drop or add a key instead.
        if rng.one_in(2) {
            let key = map.keys().nth(rng.below(map.len().max(1))).cloned();
            if let Some(key) = key {
                map.remove(&key);
            }
        } else {
            let key = ["model", "messages", "content", "stream", "usage", "type", "text", "max_tokens", "tools"];
            let replacement = swapped(&Value::Null, rng, options);
            map.insert(rng.pick(&key).copied().unwrap_or("x").to_string(), replacement);
        }
    } else {
        *node = swapped(node, rng, options);
    }
    serde_json::to_vec(&root).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_reproducible_from_the_seed() {
        let options = Options { max_run: 1024, ..Options::default() };
        let seed = br#"{"model": "m", "messages": [{"role": "user", "content": "hi 123"}]}"#.to_vec();
        let run = |seed_value| {
            let mut rng = Rng::new(seed_value);
            (0..50).map(|_| mutate(&seed, std::slice::from_ref(&seed), &mut rng, &options)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().any(|m| m != &seed));
    }

    #[test]
    fn replace_all_swaps_line_ends() {
        assert_eq!(replace_all(b"a\nb\n", b"\n", b"\r\n"), b"a\r\nb\r\n");
        assert_eq!(replace_all(b"a\r\nb", b"\r\n", b"\n"), b"a\nb");
    }
}
