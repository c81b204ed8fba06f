//! An OTLP/gRPC trace receiver for the tracing tests: tests/e2e/otel/otlp_receiver.py run with the project
//! venv's Python (grpcio and opentelemetry-proto, installed by `just sdk-tools`), writing every span it
//! receives as a JSON line. Killed on drop.

use crate::repo_root;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OtlpReceiver {
    child: Child,
    port: u16,
    spans_file: PathBuf,
}

impl OtlpReceiver {
    /// Starts the receiver on a free loopback port.
    pub fn start() -> OtlpReceiver {
        let dir = std::env::temp_dir().join(format!("aigw-otlp-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let spans_file = dir.join("spans.jsonl");
        let python = repo_root().join(".tools/bin/python");
        let mut child = Command::new(&python)
            .arg(repo_root().join("tests/e2e/otel/otlp_receiver.py"))
            .arg("0")
            .arg(&spans_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (run `just sdk-tools`)", python.display()));
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the OTLP receiver did not start (printed {line:?}); is grpcio installed? run `just sdk-tools`")
        });
        OtlpReceiver { child, port, spans_file }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.spans_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The raw text of everything received (to check what must never be there).
    pub fn raw(&self) -> String {
        std::fs::read_to_string(&self.spans_file).unwrap_or_default()
    }

    /// Waits (up to 30 s: Envoy's tracer flushes every 5 s) until `done` holds for the spans received.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; spans: {spans:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
