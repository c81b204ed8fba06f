//! `aigw-bench`: runs the benchmark of issue #8 and prints a table; the same
//! figures go to a JSON file (default `bench-results/latest.json`).
//!
//!     aigw-bench [--smoke] [--out <file>]
//!
//! `--smoke` runs a few hundred requests in a few seconds (every code path,
//! no meaningful figures). `aigw-bench serve <spec>` is internal: one gateway
//! per child process (see `fleet`).

// serde_json::Value indexed by key: a missing key reads as Null (no panic), and writes go to objects
// built here, so `value["key"]` is safe in this file.
#![allow(clippy::indexing_slicing)]

use aigw_bench::fleet::{self, Launcher};
use aigw_bench::procfs;
use aigw_bench::run::{machine, Bench, Plan};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return match fleet::serve(args.get(1).map(String::as_str).unwrap_or_default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let mut smoke = false;
    let mut stream_hold_only = false;
    let mut out: Option<PathBuf> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--stream-hold" => stream_hold_only = true,
            "--out" => out = iter.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: aigw-bench [--smoke] [--stream-hold] [--out <file.json>]   (see BENCHMARKS.md)");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("aigw-bench: unknown argument {other:?} (try --help)");
                return ExitCode::FAILURE;
            }
        }
    }
    // `--stream-hold` alone must not overwrite the published full run.
    let default_out = if stream_hold_only { "bench-results/stream-hold.json" } else { "bench-results/latest.json" };
    let out = out.or_else(|| (!smoke).then(|| aigw_e2e::repo_root().join(default_out)));
    match run(smoke, stream_hold_only, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aigw-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(smoke: bool, stream_hold_only: bool, out: Option<PathBuf>) -> Result<(), String> {
    let cpus = procfs::cpus();
    // The load generator and the mocks on CPU 0, Envoy (one worker) on the last CPU.
    let envoy_cpu = (cpus >= 2).then_some(cpus - 1);
    let pinned = envoy_cpu.is_some() && procfs::pin_thread(0, 0);
    let slack = procfs::tight_timer_slack();
    let work_dir = std::env::temp_dir().join(format!("aigw-bench-{}", std::process::id()));
    let launcher = Launcher::new(&work_dir, aigw_e2e::envoy_bin(), 1, envoy_cpu)?;
    let mut plan = if smoke { Plan::smoke() } else { Plan::full() };
    plan.stream_hold_only = stream_hold_only;
    let started = SystemTime::now();
    let mut bench = Bench::new(plan.clone(), launcher)?;
    let machine = machine();
    let outcome = bench.run();
    let _ = std::fs::remove_dir_all(&work_dir);
    outcome?;
    let targets = bench.targets();

    println!("\naigw benchmark — {} — {} CPUs, {}", utc(started), procfs::cpus(), procfs::cpu_model());
    println!("A = Envoy without Wasm filters (bare.yaml), B = with filters; same mock, same request; median of {} rounds A,B,A,B…\n", plan.rounds);
    print!("{}", bench.table.render());
    println!("\ntargets (issue #8):");
    for t in &targets {
        println!(
            "  [{}] {:<72} {:.3} {} (limit {} {})",
            if t["met"].as_bool() == Some(true) { "met   " } else { "MISSED" },
            t["target"].as_str().unwrap_or_default(),
            t["value"].as_f64().unwrap_or(f64::NAN),
            t["unit"].as_str().unwrap_or_default(),
            t["limit"],
            t["unit"].as_str().unwrap_or_default()
        );
    }

    let report = json!({
        "date": utc(started),
        "machine": machine,
        "pinning": {
            "load_generator_and_mocks_cpu": if pinned { json!(0) } else { json!(null) },
            "envoy_cpu": envoy_cpu, "envoy_concurrency": 1, "timer_slack_1ns": slack,
        },
        "plan": plan,
        "results": bench.results,
        "table": bench.table.rows,
        "targets": targets,
    });
    if let Some(out) = out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&out, text + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
        println!("\nJSON: {}", out.display());
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` without a date crate (days → civil date, Howard Hinnant's algorithm).
fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
