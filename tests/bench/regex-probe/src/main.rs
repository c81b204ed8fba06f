//! Reads a text on stdin and times `regex` and `regex-lite` on it, as a Wasm
//! (wasm32-wasip1) command run by V8 (Node's WASI). Prints one JSON object
//! per engine and pattern set.
//!
//! Pattern sets: the three custom rules of the bench's pii-mask config, and
//! five typical PII patterns (the set /work/shared/facts.md measured natively).

use std::io::Read;
use std::time::Instant;

const CUSTOM: [&str; 3] = [r"\bEMP-[0-9]{6}\b", r"\bORD-[A-Z]{2}[0-9]{8}\b", r"\b[a-z0-9-]+\.corp\.example\.net\b"];
const PII: [&str; 5] = [
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    r"\+?1?[ .-]?\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-]?[0-9]{4}",
    r"\b(?:[0-9]{4}[ -]?){3}[0-9]{4}\b",
    r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
    r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b",
];

/// The fastest of seven timed runs after one warm-up run (the minimum is the
/// code's own speed; anything else on the CPU only makes a run slower).
fn time(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut matches = f();
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let start = Instant::now();
        matches = f();
        best = best.min(start.elapsed().as_secs_f64());
    }
    (best, matches)
}

fn report(engine: &str, set: &str, patterns: usize, bytes: usize, (secs, matches): (f64, usize)) {
    println!(
        "{{\"engine\":\"{engine}\",\"set\":\"{set}\",\"patterns\":{patterns},\"ms\":{:.3},\"mb_per_s\":{:.2},\"matches\":{matches}}}",
        secs * 1e3,
        bytes as f64 / secs / 1e6
    );
}

fn main() {
    let mut text = String::new();
    if std::io::stdin().read_to_string(&mut text).is_err() || text.is_empty() {
        eprintln!("aigw-regex-probe: expected a text on stdin");
        std::process::exit(2);
    }
    for (set, patterns) in [("custom_rules", &CUSTOM[..]), ("pii_patterns", &PII[..])] {
        let full: Vec<regex::Regex> = patterns.iter().filter_map(|p| regex::Regex::new(p).ok()).collect();
        let lite: Vec<regex_lite::Regex> = patterns.iter().filter_map(|p| regex_lite::Regex::new(p).ok()).collect();
        if full.len() != patterns.len() || lite.len() != patterns.len() {
            eprintln!("aigw-regex-probe: a pattern did not compile");
            std::process::exit(2);
        }
        let n = patterns.len();
        report("regex-lite", set, n, text.len(), time(|| lite.iter().map(|r| r.find_iter(&text).count()).sum()));
        report("regex", set, n, text.len(), time(|| full.iter().map(|r| r.find_iter(&text).count()).sum()));
    }
}
