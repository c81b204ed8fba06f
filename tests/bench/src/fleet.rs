//! Envoys under test. Each one runs in its own child process
//! (`aigw-bench serve <spec>`) that holds an `aigw_e2e::Gateway`: the fixture
//! allows one gateway per process at a time, and the A/B rounds need the
//! bare Envoy and the filtered one up together.
//!
//! The fixture starts Envoy with `--concurrency 2`; the bench wants one
//! worker on its own core. The child therefore gets `ENVOY_BIN` pointing at a
//! small wrapper script that rewrites `--concurrency` and writes Envoy's pid
//! (`exec` keeps it) into the gateway's directory.

use crate::procfs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// What to start: a config from envoy-config/ and the fixture's overrides.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub config_file: String,
    pub only_filters: Option<Vec<String>>,
    pub filter_configs: BTreeMap<String, String>,
    /// Extra HTTP filters (YAML list entries) before the first aigw filter: the floor probes.
    #[serde(default)]
    pub leading_filters: Vec<String>,
}

/// What the child reports once Envoy is ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub envoy_pid: u32,
    /// From starting the mocks and Envoy to Envoy's `/ready` saying LIVE.
    pub ready_ms: f64,
}

/// Where the wrapper script is, and what it runs.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub wrapper: PathBuf,
    pub real_envoy: PathBuf,
    pub concurrency: usize,
    /// Pin Envoy to this CPU (None: no pinning).
    pub envoy_cpu: Option<usize>,
}

const WRAPPER: &str = r#"#!/bin/sh
# Written by aigw-bench: run the real Envoy with the bench's worker count and record its pid.
real="$AIGW_BENCH_REAL_ENVOY"
n="$AIGW_BENCH_CONCURRENCY"
first=1
for arg in "$@"; do
  if [ "$first" = 1 ]; then set --; first=0; fi
  if [ "$skip" = 1 ]; then set -- "$@" "$n"; skip=0; continue; fi
  [ "$arg" = "--concurrency" ] && skip=1
  set -- "$@" "$arg"
done
echo $$ > envoy.pid
exec "$real" "$@"
"#;

impl Launcher {
    pub fn new(
        dir: &Path,
        real_envoy: PathBuf,
        concurrency: usize,
        envoy_cpu: Option<usize>,
    ) -> Result<Launcher, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let wrapper = dir.join("envoy-wrapper.sh");
        std::fs::write(&wrapper, WRAPPER).map_err(|e| format!("{}: {e}", wrapper.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        Ok(Launcher { wrapper, real_envoy, concurrency, envoy_cpu })
    }
}

/// A running gateway (child process) and its Envoy.
pub struct Instance {
    pub spec: Spec,
    pub info: Info,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Instance {
    pub fn start(launcher: &Launcher, spec: Spec) -> Result<Instance, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let spec_json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg(&spec_json)
            .env("ENVOY_BIN", &launcher.wrapper)
            .env("AIGW_BENCH_REAL_ENVOY", &launcher.real_envoy)
            .env("AIGW_BENCH_CONCURRENCY", launcher.concurrency.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start serve child: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let info: Info = match serde_json::from_str(line.trim()) {
            Ok(info) => info,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("gateway {} did not start: {}", spec.name, line.trim()));
            }
        };
        if let Some(cpu) = launcher.envoy_cpu {
            procfs::pin_process(info.envoy_pid, cpu);
        }
        Ok(Instance { spec, info, child, stdin, stdout })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Forgets what the mocks recorded (they keep every request in memory).
    pub fn clear_mocks(&mut self) {
        if let Some(stdin) = self.stdin.as_mut() {
            if writeln!(stdin, "clear").and_then(|_| stdin.flush()).is_ok() {
                let mut line = String::new();
                let _ = self.stdout.read_line(&mut line);
            }
        }
    }

    /// The last request the `mock` backend received (what the filters forwarded).
    pub fn last_upstream_request(&mut self) -> Option<aigw_e2e::RecordedRequest> {
        let stdin = self.stdin.as_mut()?;
        writeln!(stdin, "last").and_then(|_| stdin.flush()).ok()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        serde_json::from_str(line.trim()).ok().flatten()
    }

    pub fn cpu_time(&self) -> Duration {
        procfs::cpu_time(self.info.envoy_pid).unwrap_or_default()
    }

    pub fn rss_kib(&self) -> u64 {
        procfs::rss_kib(self.info.envoy_pid).unwrap_or(0)
    }

    pub fn wasm_memories(&self) -> Vec<procfs::WasmMemory> {
        procfs::wasm_memories(self.info.envoy_pid)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // EOF on stdin: the child drops its Gateway (kills Envoy, stops the mocks) and exits.
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side: start the gateway, report, serve `clear` commands until stdin closes.
pub fn serve(spec_json: &str) -> Result<(), String> {
    let spec: Spec = serde_json::from_str(spec_json).map_err(|e| format!("bad spec: {e}"))?;
    let mut builder = aigw_e2e::Gateway::builder().config_file(&spec.config_file);
    if let Some(only) = &spec.only_filters {
        let names: Vec<&str> = only.iter().map(String::as_str).collect();
        builder = builder.only_filters(&names);
    }
    for (filter, config) in &spec.filter_configs {
        builder = builder.filter_config(filter, config.clone());
    }
    for filter in &spec.leading_filters {
        builder = builder.leading_filter(filter.clone());
    }
    let started = Instant::now();
    let gateway = match builder.try_start() {
        Ok(gateway) => gateway,
        Err(err) => {
            // One line for the parent; the details on stderr.
            println!("error: {}", err.lines().next().unwrap_or_default());
            eprintln!("{err}");
            return Err(err);
        }
    };
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    let pid_file = gateway.dir().join("envoy.pid");
    let envoy_pid: u32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("{}: no pid (was ENVOY_BIN the bench wrapper?)", pid_file.display()))?;
    let info = Info { addr: gateway.addr(), admin: gateway.admin_addr(), envoy_pid, ready_ms };
    println!("{}", serde_json::to_string(&info).map_err(|e| e.to_string())?);
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "clear" => {
                gateway.clear_mocks();
                println!("ok");
            }
            // The last request the `mock` backend received, as one JSON line.
            "last" => {
                let last = gateway.mock("mock").requests().pop();
                println!("{}", serde_json::to_string(&last).unwrap_or_else(|_| "null".to_string()));
            }
            _ => println!("error: unknown command"),
        }
    }
    drop(gateway);
    Ok(())
}
