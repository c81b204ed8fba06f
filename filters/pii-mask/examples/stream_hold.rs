//! What the stream masker holds back on prose, counted in pieces (no clock):
//!
//!     cargo run --release -p pii-mask --example stream_hold
//!
//! Feeds a prose answer without PII to [`TextStream`] in token-sized pieces
//! (4 bytes; words with the space after; words with the space before, as
//! models' tokens come) with three configurations: built-ins only, the
//! shipped config (built-ins and the `EMPLOYEE_ID` rule) and a custom rule
//! that any word can begin (`ACCOUNT_REF`: `<word> account <8 digits>`).
//! For each it prints:
//! - first out: the piece (0 = the first) by which the first text was
//!   released, i.e. the time to first token the masker adds, in pieces;
//! - delay p50/p99/max: how many pieces later than its arrival each byte was
//!   released (the masker's share of the gap between tokens);
//! - held: bytes held after a push, mean and max;
//! - empty: pushes that released nothing (an event sent with empty text).

// A measuring tool, not filter code: it may index and panic.
#![allow(clippy::panic, clippy::indexing_slicing)]

use pii_mask::config::from_json;
use pii_mask::scan::{Findings, Scanner};
use pii_mask::stream::TextStream;

const PROSE: &str = "Revenue grew in every region this quarter, led by strong demand for the new subscription \
tiers. Margins held steady despite higher logistics costs; the main risks are supplier concentration, \
exchange-rate swings and the timing of the platform migration. In Europe, sales rose by a fifth (mostly in \
Germany and Spain), while North America was flat! Should the board approve the plan in March, the team will \
hire two engineers, open an office in Lisbon and review prices before the summer. Questions? Ask the finance \
team: they keep the figures, the forecasts and the notes from every review.";

fn pieces(kind: &str) -> Vec<String> {
    match kind {
        "4 bytes" => PROSE.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect(),
        "word + space" => PROSE.split_inclusive(' ').map(String::from).collect(),
        _ => PROSE.split(' ').enumerate().map(|(i, w)| if i == 0 { w.to_string() } else { format!(" {w}") }).collect(),
    }
}

struct Figures {
    first_out: usize,
    delays: Vec<usize>,
    held_sum: usize,
    held_max: usize,
    empty: usize,
    pushes: usize,
}

fn run(scanner: &Scanner, hash: &pii_mask::actions::HashSettings, parts: &[String]) -> Figures {
    let mut stream = TextStream::new();
    let mut findings = Findings::default();
    // arrival[i]: the piece in which byte i arrived.
    let mut arrival = Vec::new();
    let mut released = 0;
    let mut figures =
        Figures { first_out: usize::MAX, delays: Vec::new(), held_sum: 0, held_max: 0, empty: 0, pushes: parts.len() };
    for (index, part) in parts.iter().enumerate() {
        arrival.extend(std::iter::repeat_n(index, part.len()));
        let out = stream.push(part, scanner, hash, &mut findings).text;
        if out.is_empty() {
            figures.empty += 1;
        } else if figures.first_out == usize::MAX {
            figures.first_out = index;
        }
        for &arrived in &arrival[released..released + out.len()] {
            figures.delays.push(index - arrived);
        }
        released += out.len();
        figures.held_sum += stream.held();
        figures.held_max = figures.held_max.max(stream.held());
    }
    let out = stream.finish(scanner, hash, &mut findings).text;
    for &arrived in &arrival[released..released + out.len()] {
        figures.delays.push(parts.len() - arrived);
    }
    figures
}

fn percentile(sorted: &[usize], p: f64) -> usize {
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn main() {
    let configs = [
        ("built-ins only", r#"{}"#.to_string()),
        (
            "shipped (built-ins + EMPLOYEE_ID)",
            r#"{"custom_rules": [{"name": "EMPLOYEE_ID", "pattern": "\\bEMP-[0-9]{6}\\b", "max_match_chars": 10}]}"#
                .to_string(),
        ),
        (
            "+ ACCOUNT_REF <word> account <8 digits>",
            r#"{"custom_rules": [{"name": "EMPLOYEE_ID", "pattern": "\\bEMP-[0-9]{6}\\b", "max_match_chars": 10},
                {"name": "ACCOUNT_REF", "pattern": "\\b[A-Za-z]+ account [0-9]{8}\\b", "max_match_chars": 40}]}"#
                .to_string(),
        ),
    ];
    println!("{} bytes of prose without PII, response direction\n", PROSE.len());
    println!(
        "{:<38} {:<14} {:>6} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "config", "pieces", "count", "first out", "delay50", "delay99", "delaymax", "held mean", "held max", "empty"
    );
    for (name, json) in &configs {
        let config = from_json(Some(json.as_bytes())).unwrap_or_else(|err| panic!("{name}: {err}"));
        for kind in ["4 bytes", "word + space", "space + word"] {
            let parts = pieces(kind);
            let mut figures = run(&config.response, &config.hash, &parts);
            figures.delays.sort_unstable();
            println!(
                "{:<38} {:<14} {:>6} {:>9} {:>8} {:>8} {:>8} {:>9.1} {:>8} {:>8}",
                name,
                kind,
                figures.pushes,
                figures.first_out,
                percentile(&figures.delays, 50.0),
                percentile(&figures.delays, 99.0),
                figures.delays.last().copied().unwrap_or(0),
                figures.held_sum as f64 / figures.pushes as f64,
                figures.held_max,
                figures.empty,
            );
        }
    }
}
