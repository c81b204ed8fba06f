//! `aigw-native-paths`: each filter's pure request/response path on the benchmark's request,
//! natively (release), median of many runs, with heap allocations per request counted by a
//! counting allocator. `just native-paths`; `just bench` runs it too.
//!
//!     aigw-native-paths [--runs N] [--out <file.json>]

// The counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to the system
// allocator and adds two relaxed atomic counters. This is a measuring tool, not filter code.
#![allow(unsafe_code)]

use aigw_bench::{native, workload};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds GlobalAlloc's contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation is an allocation of the new size (what a growing Vec or String costs).
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 2000;
    let mut out = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--runs" => runs = iter.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            "--out" => out = iter.next().cloned(),
            other => {
                eprintln!("usage: aigw-native-paths [--runs N] [--out <file.json>] (unknown {other:?})");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(runs, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aigw-native-paths: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(runs: usize, out: Option<String>) -> Result<(), String> {
    let yaml = std::fs::read_to_string(aigw_e2e::repo_root().join("envoy-config/gateway.yaml"))
        .map_err(|e| format!("gateway.yaml: {e}"))?;
    let shipped: BTreeMap<String, String> = aigw_e2e::config::wasm_configs(&yaml)?.into_iter().collect();
    let configs = workload::chain_configs(&shipped)?;
    let count = || Some((ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed)));
    let mut costs = native::measure(&configs, runs / 10 + 10, runs, &count)?;
    costs.extend(native::reference(runs / 10 + 10, runs, &count));
    println!(
        "\nNative pure paths (release, no Wasm, no host calls), benchmark request: 1 KiB prompt, 2 KiB completion \
         (JSON) or {} SSE chunks (streamed); median of {runs} runs.\n",
        native::STREAM_CHUNKS
    );
    print!("{}", native::table(&costs));
    if let Some(out) = out {
        let text = serde_json::to_string_pretty(&costs).map_err(|e| e.to_string())?;
        if let Some(dir) = std::path::Path::new(&out).parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(&out, text + "\n").map_err(|e| format!("{out}: {e}"))?;
    }
    Ok(())
}
