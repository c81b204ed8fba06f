//! A fuzz driver that builds on stable Rust.
//!
//! Every entry point of the filters that takes untrusted input (bodies,
//! streams, property values, configuration) is a [`Target`]: a name, seed
//! inputs taken from the test corpora, and a function that feeds one input to
//! the filter's pure code natively. [`run`] mutates seeds with a seeded
//! [`Rng`] ([`mutate`]: type swaps, huge numbers, deep nesting, long runs of
//! one character, invalid UTF-8, NUL bytes; stream targets also cut their
//! input at random places), calls each target under `catch_unwind`, and
//! records every panic and every call slower than a budget.
//!
//! Some targets also check properties that need no clock: a stream parsed in
//! random pieces gives what it gives whole, and the work the SSE parser
//! reports stays linear in the input. A broken property panics, so it is
//! recorded like any other panic.
//!
//! `just fuzz <seconds>` runs a campaign (binary `aigw-fuzz`); the test
//! `tests/smoke.rs` runs a short seeded pass of every target under
//! `cargo test`.

pub mod mutate;
pub mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// SplitMix64: small, fast, and the same sequence on every platform, so a
/// seed reproduces a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Cuts `input` into pieces as a network would: mostly a few pieces, sometimes
/// one byte at a time, sometimes exactly between a `\r` and a `\n`.
pub fn random_pieces<'a>(input: &'a [u8], rng: &mut Rng) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = input;
    let style = rng.below(4);
    while !rest.is_empty() {
        let mut len = match style {
            0 => rest.len(),
            1 => 1 + rng.below(16),
            2 => 1 + rng.below(rest.len()),
            _ => 1 + rng.below(4096),
        };
        // Prefer a cut between `\r` and `\n` when one is near.
        if let Some(cr) = rest.get(..len.min(rest.len())).and_then(|head| head.iter().rposition(|&b| b == b'\r')) {
            if rng.one_in(2) {
                len = cr + 1;
            }
        }
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    if pieces.is_empty() || rng.one_in(8) {
        pieces.push(&[]);
    }
    pieces
}

/// One entry point that takes untrusted input.
pub struct Target {
    pub name: &'static str,
    /// Inputs known to be meaningful, from the test corpora.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Feeds one input. It may use the generator (to cut a stream, pick a
    /// dialect); it panics only when it finds a bug.
    pub run: fn(&[u8], &mut Rng),
}

/// How long a campaign lasts.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// This many mutated calls per target (deterministic for a seed).
    CallsPerTarget(u64),
    /// Until this much time has passed, shared round-robin by the targets.
    After(Duration),
}

/// Settings of a campaign.
#[derive(Debug, Clone)]
pub struct Options {
    pub stop: Stop,
    pub seed: u64,
    /// A call that takes longer is recorded (it would stall an Envoy worker).
    pub slow_call: Duration,
    /// Largest input the mutator builds.
    pub max_input: usize,
    /// Longest run of one character the mutator inserts.
    pub max_run: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stop: Stop::CallsPerTarget(100),
            seed: 1,
            slow_call: Duration::from_millis(250),
            max_input: 1 << 20,
            max_run: 1 << 17,
        }
    }
}

/// A panic or a slow call, with the input that caused it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub input: Vec<u8>,
    /// The panic message, or empty for a slow call.
    pub message: String,
    pub elapsed: Duration,
}

/// What one target did during a campaign.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub target: &'static str,
    pub calls: u64,
    pub panics: Vec<Finding>,
    pub slow: Vec<Finding>,
    pub slowest: Duration,
    pub largest_input: usize,
}

/// Findings kept per target and kind (the first ones are the interesting ones).
const KEEP_FINDINGS: usize = 8;

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

struct State<'a> {
    target: &'a Target,
    seeds: Vec<Vec<u8>>,
    /// Recent mutants, mutated again now and then so that changes stack up.
    pool: Vec<Vec<u8>>,
    report: Report,
    rng: Rng,
    /// Seeds are first run as they are, once each.
    next_seed: usize,
}

impl State<'_> {
    fn call(&mut self, options: &Options) {
        let input = if let Some(seed) = self.seeds.get(self.next_seed) {
            self.next_seed += 1;
            seed.clone()
        } else {
            let base = if !self.pool.is_empty() && self.rng.one_in(3) {
                self.rng.pick(&self.pool).cloned().unwrap_or_default()
            } else {
                self.rng.pick(&self.seeds).cloned().unwrap_or_default()
            };
            mutate::mutate(&base, &self.seeds, &mut self.rng, options)
        };
        let mut call_rng = Rng::new(self.rng.next_u64());
        let run = self.target.run;
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&input, &mut call_rng)));
        let elapsed = started.elapsed();
        self.report.calls += 1;
        self.report.largest_input = self.report.largest_input.max(input.len());
        self.report.slowest = self.report.slowest.max(elapsed);
        if let Err(payload) = outcome {
            if self.report.panics.len() < KEEP_FINDINGS {
                let message = panic_message(payload.as_ref());
                self.report.panics.push(Finding { input: input.clone(), message, elapsed });
            }
        } else if elapsed > options.slow_call && self.report.slow.len() < KEEP_FINDINGS {
            self.report.slow.push(Finding { input: input.clone(), message: String::new(), elapsed });
        }
        if self.pool.len() < 64 {
            self.pool.push(input);
        } else {
            let slot = self.rng.below(self.pool.len());
            if let Some(entry) = self.pool.get_mut(slot) {
                *entry = input;
            }
        }
    }
}

/// Runs a campaign over `targets` and reports per target. Panic messages are
/// silenced while it runs (they are in the report).
pub fn run(targets: &[Target], options: &Options) -> Vec<Report> {
    let mut master = Rng::new(options.seed);
    let mut states: Vec<State<'_>> = targets
        .iter()
        .map(|target| State {
            target,
            seeds: (target.seeds)(),
            pool: Vec::new(),
            report: Report { target: target.name, ..Report::default() },
            rng: Rng::new(master.next_u64()),
            next_seed: 0,
        })
        .collect();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    match options.stop {
        Stop::CallsPerTarget(calls) => {
            for state in &mut states {
                let total = calls + state.seeds.len() as u64;
                while state.report.calls < total {
                    state.call(options);
                }
            }
        }
        Stop::After(duration) => {
            let started = Instant::now();
            // Small batches, so that a slow target cannot starve the others.
            while started.elapsed() < duration {
                for state in &mut states {
                    let batch_started = Instant::now();
                    while batch_started.elapsed() < Duration::from_millis(50) {
                        state.call(options);
                    }
                }
            }
        }
    }
    std::panic::set_hook(previous_hook);
    states.into_iter().map(|state| state.report).collect()
}
