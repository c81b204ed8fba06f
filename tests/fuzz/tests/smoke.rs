//! A short, seeded pass of every fuzz target under `cargo test`, so that a
//! change that makes an entry point panic (or break one of the targets'
//! properties) fails CI. Deterministic: a fixed number of calls per target
//! from a fixed seed; no timing is asserted.

use aigw_fuzz::{run, targets, Options, Stop};

#[test]
fn targets_have_seeds_and_their_configs_load() {
    assert_eq!(targets::fixed_configs_load(), Ok(()));
    for target in targets::all() {
        let seeds = (target.seeds)();
        assert!(!seeds.is_empty(), "{} has no seeds", target.name);
    }
    // The README and schema examples were found.
    let configs = targets::all().into_iter().find(|t| t.name == "config_model_router").map(|t| (t.seeds)());
    assert!(configs.is_some_and(|seeds| seeds.len() > 3));
}

#[test]
fn every_target_survives_a_short_seeded_pass() {
    let options = Options {
        stop: Stop::CallsPerTarget(150),
        seed: 23,
        // Debug builds are slow: keep the inputs small enough for seconds in all.
        max_input: 64 * 1024,
        max_run: 4 * 1024,
        ..Options::default()
    };
    let reports = run(&targets::all(), &options);
    assert_eq!(reports.len(), targets::all().len());
    let mut failures = Vec::new();
    for report in &reports {
        assert!(report.calls >= 150, "{} ran {} calls", report.target, report.calls);
        for finding in &report.panics {
            let preview = String::from_utf8_lossy(finding.input.get(..200).unwrap_or(&finding.input)).into_owned();
            failures.push(format!(
                "{}: {} (input {} bytes: {preview:?})",
                report.target,
                finding.message,
                finding.input.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
