//! `aigw-bench --smoke` end to end: starts the bare and full-chain Envoys,
//! runs a few hundred requests and streams, and prints the table. Needs
//! Envoy and dist/*.wasm (`just build`); not part of `just test` (ignored):
//!
//!     cargo test -p aigw-bench --test smoke -- --ignored

use std::process::Command;

#[test]
#[ignore = "starts two Envoys; run with --ignored after `just build`"]
fn smoke_run_prints_every_scenario_and_targets() {
    let output = Command::new(env!("CARGO_BIN_EXE_aigw-bench")).arg("--smoke").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "aigw-bench --smoke failed:\n{stdout}\n{stderr}");
    for needle in ["1 full chain", "max rps", "Envoy CPU ms / 1k req", "4 streaming", "targets (issue #8)"] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("ERRORS"), "requests failed:\n{stdout}\n{stderr}");
}
