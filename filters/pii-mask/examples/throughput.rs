//! Native throughput of the pii-mask scanner (release build):
//!
//!     cargo run --release -p pii-mask --example throughput
//!
//! Scans a 100 KiB prompt of prose with a sprinkling of PII, with every
//! built-in detector enabled, and reports MB/s and time per prompt. It also
//! times the stream masker on the same text in 4-byte deltas and, for
//! comparison, regex-lite running five typical PII patterns.

// A measuring tool, not filter code: it may index and panic.
#![allow(clippy::panic, clippy::indexing_slicing)]

use pii_mask::config::from_json;
use pii_mask::scan::Findings;
use pii_mask::stream::TextStream;
use std::time::Instant;

fn prompt(target: usize) -> String {
    aigw_shared::testing::prose_with_pii(target)
}

fn time<F: FnMut() -> usize>(label: &str, bytes: usize, rounds: usize, mut f: F) {
    let mut sink = 0;
    for _ in 0..3 {
        sink += f();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        sink += f();
    }
    let elapsed = start.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "{label:<44} {:>8.1} MB/s   {:>8.3} ms per {} KiB   (checksum {sink})",
        bytes as f64 / elapsed / 1e6,
        elapsed * 1e3,
        bytes / 1024
    );
}

fn main() {
    let text = prompt(100 * 1024);
    let config = from_json(None).unwrap_or_else(|err| panic!("default config: {err}"));
    let scanner = &config.request;
    let matches = scanner.find(&text).len();
    println!("100 KiB prompt, {} built-in rules, {matches} matches", scanner.rules.len());

    time("scan (find matches), all built-ins", text.len(), 200, || scanner.find(&text).len());
    time("mask (find + render), all built-ins", text.len(), 200, || {
        scanner.mask(&text, &config.hash, &mut Findings::default()).map_or(0, |s| s.len())
    });
    let clean = text.replace(|c: char| c.is_ascii_digit() || c == '@', "x");
    time("mask, text without PII", clean.len(), 200, || {
        scanner.mask(&clean, &config.hash, &mut Findings::default()).map_or(0, |s| s.len())
    });
    time("stream masker, 4-byte deltas", text.len(), 20, || {
        let mut stream = TextStream::default();
        let mut findings = Findings::default();
        let mut out = 0;
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let mut end = (start + 4).min(bytes.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            out += stream.push(&text[start..end], scanner, &config.hash, &mut findings).text.len();
            start = end;
        }
        out + stream.finish(scanner, &config.hash, &mut findings).text.len()
    });

    let patterns = [
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
        r"\b(?:\d[ -]?){13,19}\b",
        r"\b\d{3}-\d{2}-\d{4}\b",
        r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
        r"\+?\d{1,3}[ .-]?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}",
    ];
    let regexes: Vec<regex_lite::Regex> =
        patterns.iter().map(|p| regex_lite::Regex::new(p).unwrap_or_else(|err| panic!("{err}"))).collect();
    time("regex-lite, 5 typical PII patterns (compare)", text.len(), 5, || {
        regexes.iter().map(|r| r.find_iter(&text).count()).sum()
    });
}
