//! `aigw-fuzz <seconds> [--seed N] [--slow-ms N] [--only NAME]`: runs a
//! campaign over every target, prints calls, panics and slow calls per
//! target, and writes the inputs of findings to `target/fuzz-findings/`.
//! Exits with 1 when a target panicked.

use aigw_fuzz::{run, targets, Options, Stop};
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut options = Options { stop: Stop::After(Duration::from_secs(60)), ..Options::default() };
    let mut only: Option<String> = None;
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            match args.next().and_then(|value| value.parse().ok()) {
                Some(value) => value,
                None => {
                    eprintln!("{name} needs a number");
                    std::process::exit(2);
                }
            }
        };
        match arg.as_str() {
            "--seed" => options.seed = number("--seed"),
            "--slow-ms" => options.slow_call = Duration::from_millis(number("--slow-ms")),
            "--only" => only = args.next(),
            seconds => match seconds.parse::<u64>() {
                Ok(seconds) => options.stop = Stop::After(Duration::from_secs(seconds)),
                Err(_) => {
                    eprintln!("usage: aigw-fuzz <seconds> [--seed N] [--slow-ms N] [--only NAME]");
                    std::process::exit(2);
                }
            },
        }
    }
    let all = targets::all();
    let chosen: Vec<_> =
        all.into_iter().filter(|target| only.as_deref().is_none_or(|name| target.name == name)).collect();
    if chosen.is_empty() {
        eprintln!("no target named {}", only.unwrap_or_default());
        std::process::exit(2);
    }
    eprintln!("fuzzing {} targets, seed {}, slow call > {:?}", chosen.len(), options.seed, options.slow_call);
    let reports = run(&chosen, &options);
    let findings_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-findings");
    let mut total = 0;
    let mut panicked = false;
    println!("{:<24} {:>12} {:>7} {:>6} {:>12} {:>12}", "target", "calls", "panics", "slow", "slowest", "largest in");
    for report in &reports {
        total += report.calls;
        panicked |= !report.panics.is_empty();
        println!(
            "{:<24} {:>12} {:>7} {:>6} {:>10.1}ms {:>12}",
            report.target,
            report.calls,
            report.panics.len(),
            report.slow.len(),
            report.slowest.as_secs_f64() * 1000.0,
            report.largest_input
        );
        for (kind, findings) in [("panic", &report.panics), ("slow", &report.slow)] {
            for (index, finding) in findings.iter().enumerate() {
                let _ = std::fs::create_dir_all(&findings_dir);
                let path = findings_dir.join(format!("{}-{kind}-{index}.bin", report.target));
                let _ = std::fs::write(&path, &finding.input);
                println!(
                    "  {kind}: {:.1} ms, {} bytes, {} {}",
                    finding.elapsed.as_secs_f64() * 1000.0,
                    finding.input.len(),
                    path.display(),
                    finding.message
                );
            }
        }
    }
    println!("total calls: {total}");
    if panicked {
        std::process::exit(1);
    }
}
