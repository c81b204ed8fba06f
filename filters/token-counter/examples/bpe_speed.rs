//! Native speed of token-counter's compiled-in BPE against tiktoken-rs
//! (release build):
//!
//!     cargo run --release -p token-counter --example bpe_speed
//!
//! Counts the benchmark's 100 KiB prompt (prose with a little PII, as in
//! `just bench` scenario 5) and a mixed text (code, JSON, CJK, emoji) with
//! both encodings, and reports tokens per second for each side, the fastest
//! of several batches (the machine may be shared), plus how long tiktoken-rs
//! takes to build its tables, which the compiled-in tables do not need.

// A measuring tool, not filter code: it may panic.
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::time::Instant;
use token_counter::bpe::{Bpe, CL100K_BASE, O200K_BASE};

fn fastest<F: FnMut() -> usize>(batches: usize, per_batch: usize, mut f: F) -> (f64, usize) {
    let mut best = f64::INFINITY;
    let mut tokens = 0;
    for _ in 0..batches {
        let started = Instant::now();
        for _ in 0..per_batch {
            tokens = f();
        }
        best = best.min(started.elapsed().as_secs_f64() / per_batch as f64);
    }
    (best, tokens)
}

fn mixed(target: usize) -> String {
    let parts = [
        "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n    println!(\"{x:?}\");\n}\n",
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi!"}],"max_tokens":100}"#,
        "日本語のテキストです。東京タワーは333メートル。中文文本：人工智能正在改变世界。",
        "I ❤️ emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 Привет, мир! हिन्दी पाठ: नमस्ते दुनिया।",
        "    indented\n\n\n\t\ttabs   and   spaces 1234567890 3.14159\n",
    ];
    let mut text = String::new();
    let mut index = 0;
    while text.len() < target {
        text.push_str(parts[index % parts.len()]);
        index += 1;
    }
    text
}

fn main() {
    let prose = aigw_shared::testing::prose_with_pii(100 * 1024);
    let mixed = mixed(100 * 1024);
    let started = Instant::now();
    let o200k = tiktoken_rs::o200k_base().unwrap_or_else(|err| panic!("o200k_base: {err}"));
    let o200k_load = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let cl100k = tiktoken_rs::cl100k_base().unwrap_or_else(|err| panic!("cl100k_base: {err}"));
    let cl100k_load = started.elapsed().as_secs_f64();
    println!("tiktoken-rs table build: o200k_base {:.0} ms, cl100k_base {:.0} ms", o200k_load * 1e3, cl100k_load * 1e3);
    let ours: [(&str, &Bpe, &tiktoken_rs::CoreBPE); 2] =
        [("o200k_base", &O200K_BASE, &o200k), ("cl100k_base", &CL100K_BASE, &cl100k)];
    for (name, bpe, reference) in ours {
        println!("{name}: compiled-in tables {:.2} MB", bpe.table_bytes() as f64 / 1e6);
        for (label, text) in [("100 KiB prose", &prose), ("100 KiB mixed", &mixed)] {
            let (ours_s, ours_tokens) = fastest(9, 5, || bpe.count(text));
            let (ref_s, ref_tokens) = fastest(9, 5, || reference.encode_ordinary(text).len());
            assert_eq!(ours_tokens, ref_tokens, "{name} {label}: counts differ");
            println!(
                "  {label:<14} {ours_tokens:>6} tokens   compiled-in {:>6.2} M tokens/s ({:>5.1} MB/s)   tiktoken-rs {:>6.2} M tokens/s   ratio {:.2}×",
                ours_tokens as f64 / ours_s / 1e6,
                text.len() as f64 / ours_s / 1e6,
                ref_tokens as f64 / ref_s / 1e6,
                ref_s / ours_s
            );
        }
    }
}
