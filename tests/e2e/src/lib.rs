//! End-to-end test fixture: the mock LLM and a real Envoy running
//! `envoy-config/gateway.yaml` with the four aigw filters, on free loopback ports.
//!
//! ```no_run
//! use aigw_e2e::Gateway;
//! use serde_json::json;
//!
//! let gw = Gateway::builder()
//!     .filter_config("pii-mask", r#"{"entities": ["EMAIL_ADDRESS"]}"#) // replace one filter's configuration
//!     .start();
//! let response = gw.chat(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}));
//! assert_eq!(response.status, 200);
//! let upstream = gw.mock("mock").requests(); // what the provider received
//! assert_eq!(upstream[0].body_json().unwrap()["messages"][0]["content"], "hi");
//! ```
//!
//! What the fixture does:
//! - starts four in-process mock backends ([`MOCKS`]): `mock` and `mock-secondary` (the clusters of
//!   the same names) and `openai` / `anthropic`, which stand in for the real providers: their
//!   clusters are pointed at the mocks (plain HTTP, no TLS), so no test ever leaves the machine;
//! - renders gateway.yaml (or, with `AIGW_E2E_LAYOUT=istio|envoy-gateway`, the config Istio or Envoy
//!   Gateway would run: [`Layout`], [`controllers`]) into a temp dir with free ports, absolute `dist/*.wasm` paths and any
//!   overrides, and starts Envoy (`ENVOY_BIN`, else `.tools/bin/envoy`) with `--concurrency 2`;
//! - renders the SDS files the config reads (`envoy-config/secrets/*.yaml`) into `<temp dir>/secrets/`,
//!   with their key files in `<temp dir>/secrets/keys/` instead of the repository's `.run/keys/`:
//!   [`GatewayBuilder::provider_key`] writes a key there before Envoy starts, and
//!   [`Gateway::write_provider_key`] replaces it (atomic rename) while Envoy runs. Without a key the
//!   provider clusters send requests without one, as `just up` does without API keys;
//! - waits until the admin `/ready` says LIVE and the listener accepts;
//! - on drop, kills Envoy and waits for it, and stops the mocks. Envoy also dies with the test
//!   process (PR_SET_PDEATHSIG), so nothing outlives `cargo test`.
//!
//! Envoy-starting tests are serialised through a process-wide lock held by each [`Gateway`]
//! (the machine has two cores; Envoy with five Wasm VMs per worker is not cheap). Start one
//! gateway per test, in the test's own thread, and do several requests on it; never keep one in
//! a static shared by tests (it would hold the lock, and Envoy dies with the thread that started it).

// A test fixture: its helpers fail the calling test with a message (panic)
// instead of returning errors every test would unwrap anyway.
#![allow(clippy::panic)]

pub mod bundle;
pub mod config;
pub mod controllers;
pub mod http;
pub mod jwt;
pub mod k8s;
pub mod oci;
pub mod otel;
pub mod tracing_k8s;

pub use controllers::{Layout, LAYOUT_ENV};
pub use http::{Chunk, HttpResponse, StreamingResponse};
pub use mock_llm::{MockServer, RecordedRequest};

use config::RenderOptions;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The demo API keys in gateway.yaml's `api_key_auth` and the client id each one maps to.
pub const DEMO_KEYS: [(&str, &str); 2] = [("sk-aigw-retail-demo", "retail"), ("sk-aigw-wealth-demo", "wealth")];

/// The mock backends every gateway gets, named after the clusters they serve.
pub const MOCKS: [&str; 4] = ["mock", "mock-secondary", "openai", "anthropic"];

/// How long Envoy may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The Envoy binary: `ENVOY_BIN`, else `<root>/.tools/bin/envoy` (installed by `just tools`).
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => repo_root().join(".tools/bin/envoy"),
    }
}

/// Where the built filters are: `AIGW_DIST`, else `<root>/dist` (filled by `just build`).
pub fn dist_dir() -> PathBuf {
    match std::env::var_os("AIGW_DIST") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join("dist"),
    }
}

/// Every Envoy config we ship (`envoy-config/*.yaml`), sorted.
pub fn shipped_configs() -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("envoy-config"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    configs.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    configs.sort();
    configs
}

/// Runs `envoy --mode validate` on a config file, with its `.wasm` paths
/// pointed at [`dist_dir`] (the same files `just validate` checks from the
/// repository root); `Err` carries Envoy's output.
pub fn validate_config(path: &Path) -> Result<(), String> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let options = RenderOptions { dist_dir: Some(dist_dir()), base_dir: Some(repo_root()), ..RenderOptions::default() };
    let rendered = config::render(&source, &options)?;
    let instance = INSTANCE.fetch_add(1, Ordering::Relaxed);
    let copy = std::env::temp_dir().join(format!("aigw-validate-{}-{instance}.yaml", std::process::id()));
    std::fs::write(&copy, rendered).map_err(|e| format!("{}: {e}", copy.display()))?;
    let output = Command::new(envoy_bin())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&copy)
        .current_dir(repo_root())
        .output();
    let _ = std::fs::remove_file(&copy);
    let output = output.map_err(|e| format!("cannot run {}: {e}", envoy_bin().display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} does not validate:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Where a gateway's rendered SDS files go, inside its temp dir (key files in `keys/` below).
const SECRETS_DIR: &str = "secrets";

/// The directory of a gateway's key files.
fn key_dir(gateway_dir: &Path) -> PathBuf {
    gateway_dir.join(SECRETS_DIR).join("keys")
}

/// Replaces a key file the way a secret mount does: write a new file aside (mode 600), rename it
/// over the old one. Envoy notices the rename (not an in-place rewrite).
fn write_key_file(gateway_dir: &Path, name: &str, key: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(format!("bad key file name {name:?}"));
    }
    let dir = key_dir(gateway_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (tmp, target) = (dir.join(format!(".{name}.tmp")), dir.join(name));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    file.write_all(key.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &target).map_err(|e| format!("{}: {e}", target.display()))
}

static ENVOY_LOCK: Mutex<()> = Mutex::new(());
static INSTANCE: AtomicU32 = AtomicU32::new(0);

fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(err) => panic!("no free loopback port: {err}"),
    }
}

/// The harness's fixture filter (built by `just build` into target/) as an HTTP filter entry with
/// the reference config's crash policy: its `x-fixture-action: panic` traps the VM on purpose.
pub fn fixture_filter() -> String {
    let wasm = repo_root().join("target/wasm32-wasip1/release/fixture_filter.wasm");
    format!(
        r#"
name: aigw.fixture
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
  config:
    name: fixture
    root_id: fixture
    vm_config: {{ vm_id: fixture, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: {} }} }} }}
    failure_policy: FAIL_RELOAD
"#,
        wasm.display()
    )
}

/// Configures a [`Gateway`] before starting it.
#[derive(Debug, Clone)]
pub struct GatewayBuilder {
    config: PathBuf,
    options: RenderOptions,
    log_level: String,
    provider_keys: BTreeMap<String, String>,
}

impl GatewayBuilder {
    /// OpenTelemetry tracing to an OTLP/gRPC collector on 127.0.0.1:`port`
    /// (envoy-config/observability/tracing.yaml), as `AIGW_OTLP_ENDPOINT` does for `just up`.
    pub fn otlp_collector(mut self, port: u16) -> Self {
        self.options.otlp_collector = Some(("127.0.0.1".to_string(), port));
        self
    }

    /// The config of a layout: gateway.yaml, or how Istio or Envoy Gateway render it
    /// (envoy-config/gateway-istio.yaml, gateway-envoy-gateway.yaml). The default is `AIGW_E2E_LAYOUT`'s.
    pub fn layout(self, layout: Layout) -> Self {
        self.config_file(layout.config_file())
    }

    /// Another config from `envoy-config/` instead of gateway.yaml (e.g. `"bare.yaml"`).
    pub fn config_file(mut self, name: &str) -> Self {
        self.config = repo_root().join("envoy-config").join(name);
        self
    }

    /// A config at any path instead of gateway.yaml (e.g. a test's edited copy of it); relative paths in
    /// it are still relative to the repository root.
    pub fn config_path(mut self, path: PathBuf) -> Self {
        self.config = path;
        self
    }

    /// Replaces one filter's configuration JSON (`"pii-mask"`, `"prompt-template"`,
    /// `"token-counter"`, `"model-router"`).
    pub fn filter_config(mut self, filter: &str, json: impl Into<String>) -> Self {
        self.options.filter_configs.insert(filter.to_string(), json.into());
        self
    }

    /// Removes one Wasm filter from the chain.
    pub fn without_filter(mut self, filter: &str) -> Self {
        self.options.remove_filters.push(filter.to_string());
        self
    }

    /// Keeps only these Wasm filters in the chain (jwt_authn and the router stay).
    pub fn only_filters(mut self, filters: &[&str]) -> Self {
        self.options.remove_filters =
            config::FILTERS.iter().filter(|f| !filters.contains(f)).map(|f| f.to_string()).collect();
        self
    }

    /// An extra HTTP filter (YAML list entry) before the first aigw filter, e.g. [`fixture_filter`].
    pub fn leading_filter(mut self, yaml: String) -> Self {
        self.options.leading_filters.push(yaml);
        self
    }

    /// A provider key, written before Envoy starts to the key file `name` (the file name in the SDS
    /// resource: `openai` for `.run/keys/openai`, `anthropic`), in the gateway's own key directory.
    pub fn provider_key(mut self, name: &str, key: &str) -> Self {
        self.provider_keys.insert(name.to_string(), key.to_string());
        self
    }

    /// Envoy's log level (default `warn`); `debug` shows the filters' debug logs in [`Gateway::envoy_log`].
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// Starts the mocks and Envoy; panics with Envoy's log when it does not come up.
    pub fn start(self) -> Gateway {
        match self.try_start() {
            Ok(gateway) => gateway,
            Err(err) => panic!("gateway did not start: {err}"),
        }
    }

    /// Starts the mocks and Envoy.
    pub fn try_start(self) -> Result<Gateway, String> {
        let lock = ENVOY_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.start_with(Some(lock))
    }

    /// Starts another Envoy (a replica, e.g. on a shared rate limit store) while the caller holds a
    /// [`Gateway`] from [`Self::start`], which keeps the other tests' Envoys away meanwhile.
    pub fn start_replica(self, _first: &Gateway) -> Gateway {
        match self.start_with(None) {
            Ok(gateway) => gateway,
            Err(err) => panic!("replica did not start: {err}"),
        }
    }

    fn start_with(self, lock: Option<MutexGuard<'static, ()>>) -> Result<Gateway, String> {
        let bin = envoy_bin();
        if !bin.exists() {
            return Err(format!("no Envoy at {} (run `just tools` or set ENVOY_BIN)", bin.display()));
        }
        let dist = dist_dir();
        for filter in config::FILTERS {
            if !self.options.remove_filters.iter().any(|r| r == filter) && !dist.join(format!("{filter}.wasm")).exists()
            {
                return Err(format!("{}/{filter}.wasm is missing: run `just build` first", dist.display()));
            }
        }
        let mut mocks = BTreeMap::new();
        let mut options = self.options.clone();
        for name in MOCKS {
            let mock = MockServer::start(name).map_err(|e| format!("mock {name}: {e}"))?;
            options.cluster_ports.insert(name.to_string(), mock.port());
            mocks.insert(name.to_string(), mock);
        }
        options.dist_dir = Some(dist);
        // Relative paths in the shipped configs are relative to the repository root.
        options.base_dir = Some(repo_root());
        let source = std::fs::read_to_string(&self.config).map_err(|e| format!("{}: {e}", self.config.display()))?;
        // Another config may lack some clusters; point only those it has.
        let clusters = config::cluster_names(&source)?;
        options.cluster_ports.retain(|name, _| clusters.contains(name));

        // The listener and admin ports are picked free, then bound by Envoy: another process may take
        // one in between, so a start that fails on a taken port is retried with new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.launch(&bin, &source, &mut options) {
                Ok(envoy) => {
                    return Ok(Gateway {
                        envoy: Some(envoy.child),
                        mocks,
                        listener: envoy.listener,
                        admin: envoy.admin,
                        dir: envoy.dir,
                        rendered: envoy.rendered,
                        _lock: lock,
                    })
                }
                Err(err) if attempt < 3 && err.contains("Address already in use") => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Renders the config with fresh ports, starts Envoy and waits until it is ready.
    fn launch(&self, bin: &Path, source: &str, options: &mut RenderOptions) -> Result<Launched, String> {
        let (listener_port, admin_port) = (free_port(), free_port());
        options.listener_port = Some(listener_port);
        options.admin_port = Some(admin_port);
        let instance = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("aigw-e2e-{}-{instance}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        options.secrets_dir = Some(dir.join(SECRETS_DIR));
        let rendered = config::render_all(source, options)?;
        rendered.write_files()?;
        // The keys exist before Envoy reads the SDS files, so the first request carries them. (Envoy
        // watches the key directory, which `write_files` created: a key renamed into it later is
        // picked up too.)
        for (name, key) in &self.provider_keys {
            write_key_file(&dir, name, key)?;
        }
        let rendered = rendered.config;
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, &rendered).map_err(|e| e.to_string())?;
        let stderr = std::fs::File::create(dir.join("envoy.log")).map_err(|e| e.to_string())?;
        let stdout = std::fs::File::create(dir.join("access.log")).map_err(|e| e.to_string())?;

        let mut command = Command::new(bin);
        command
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", "2", "--log-level", &self.log_level])
            // Access log lines reach access.log within 50 ms (tests read them).
            .args(["--file-flush-interval-msec", "50"])
            // A unique base id keeps concurrent Envoys (other test binaries, `just up`) apart;
            // hot restart is not needed at all.
            .args(["--base-id", &admin_port.to_string(), "--disable-hot-restart"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut launched = Launched {
            child,
            listener: SocketAddr::from(([127, 0, 0, 1], listener_port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            dir,
            rendered,
        };
        match launched.wait_ready() {
            Ok(()) => Ok(launched),
            Err(err) => {
                let _ = launched.child.kill();
                let _ = launched.child.wait();
                // The error carries Envoy's log; the rendered config is reproducible.
                let _ = std::fs::remove_dir_all(&launched.dir);
                Err(err)
            }
        }
    }
}

/// An Envoy process that came up.
struct Launched {
    child: Child,
    listener: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
    rendered: String,
}

impl Launched {
    fn wait_ready(&mut self) -> Result<(), String> {
        let log = |dir: &Path| read_file(&dir.join("envoy.log"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("Envoy exited ({status}) during start-up:\n{}", log(&self.dir)));
            }
            let ready = http::request(self.admin, "GET", "/ready", &[], b"")
                .is_ok_and(|r| r.status == 200 && r.text().trim() == "LIVE");
            if ready && TcpStream::connect_timeout(&self.listener, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("Envoy not ready after {READY_TIMEOUT:?}:\n{}", log(&self.dir)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Makes the child die when the test process does (even on SIGKILL), so no
/// Envoy outlives `cargo test`. The signal fires when the spawning thread
/// exits, which is fine: a [`Gateway`] lives inside one test.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running gateway: Envoy with the rendered config, and its mock backends.
/// Dropping it stops everything it started.
pub struct Gateway {
    envoy: Option<Child>,
    mocks: BTreeMap<String, MockServer>,
    listener: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
    rendered: String,
    _lock: Option<MutexGuard<'static, ()>>,
}

impl Gateway {
    /// A builder for gateway.yaml with every filter and its shipped configuration; with
    /// `AIGW_E2E_LAYOUT=istio` or `envoy-gateway`, for that controller's render of it instead
    /// (`just test-renders`; [`controllers`]).
    pub fn builder() -> GatewayBuilder {
        let layout = match Layout::from_env() {
            Ok(layout) => layout,
            Err(err) => panic!("{LAYOUT_ENV}: {err}"),
        };
        GatewayBuilder {
            config: repo_root().join("envoy-config").join(layout.config_file()),
            options: RenderOptions::default(),
            log_level: "warn".to_string(),
            provider_keys: BTreeMap::new(),
        }
    }

    /// gateway.yaml as shipped.
    pub fn start() -> Gateway {
        Gateway::builder().start()
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listener
    }

    /// `http://127.0.0.1:<listener port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listener)
    }

    /// The admin interface's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// A mock backend by name (one of [`MOCKS`]); panics on an unknown name.
    pub fn mock(&self, name: &str) -> &MockServer {
        match self.mocks.get(name) {
            Some(mock) => mock,
            None => panic!("no mock backend {name:?}; there are {MOCKS:?}"),
        }
    }

    /// Forgets what every mock recorded.
    pub fn clear_mocks(&self) {
        self.mocks.values().for_each(MockServer::clear_requests);
    }

    /// Every request any mock received, in backend order.
    pub fn upstream_requests(&self) -> Vec<RecordedRequest> {
        self.mocks.values().flat_map(MockServer::requests).collect()
    }

    /// Sends a request through the gateway and reads the whole response.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        match http::request(self.listener, method, path, headers, body) {
            Ok(response) => response,
            Err(err) => panic!("{method} {path} through the gateway failed: {err}\n{}", self.envoy_log()),
        }
    }

    /// POSTs JSON through the gateway.
    pub fn post_json(&self, path: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> HttpResponse {
        self.request("POST", path, headers, body.to_string().as_bytes())
    }

    /// POSTs an OpenAI chat-completions request.
    pub fn chat(&self, body: &serde_json::Value) -> HttpResponse {
        self.post_json("/v1/chat/completions", &[], body)
    }

    /// POSTs an OpenAI chat-completions request with extra headers.
    pub fn chat_with(&self, headers: &[(&str, &str)], body: &serde_json::Value) -> HttpResponse {
        self.post_json("/v1/chat/completions", headers, body)
    }

    /// Sends a request and returns as soon as the response headers arrived;
    /// read the body piece by piece with [`StreamingResponse::next_chunk`].
    pub fn stream(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> StreamingResponse {
        match http::send(self.listener, method, path, headers, body) {
            Ok(response) => response,
            Err(err) => panic!("{method} {path} through the gateway failed: {err}\n{}", self.envoy_log()),
        }
    }

    /// GET on the admin interface.
    pub fn admin(&self, path: &str) -> HttpResponse {
        match http::request(self.admin, "GET", path, &[], b"") {
            Ok(response) => response,
            Err(err) => panic!("admin {path} failed: {err}"),
        }
    }

    /// All stats in Envoy's text format (`name: value` lines).
    pub fn stats(&self) -> String {
        self.admin("/stats").text()
    }

    /// One counter or gauge by its full name (e.g. `cluster.mock.upstream_rq_200`), if it exists.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let stats = self.admin(&format!("/stats?filter=^{}$", name.replace('.', "\\."))).text();
        stats.lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// All stats in Prometheus format.
    pub fn prometheus(&self) -> String {
        self.admin("/stats/prometheus").text()
    }

    /// The admin `/config_dump` as JSON.
    pub fn config_dump(&self) -> serde_json::Value {
        self.admin("/config_dump").json()
    }

    /// The config Envoy runs (gateway.yaml after rendering).
    pub fn rendered_config(&self) -> &str {
        &self.rendered
    }

    /// Envoy's log so far (stderr: warnings, errors, and the filters' logs at the chosen level).
    pub fn envoy_log(&self) -> String {
        read_file(&self.dir.join("envoy.log"))
    }

    /// Envoy's access log so far (one JSON object per request, see gateway.yaml).
    pub fn access_log(&self) -> String {
        read_file(&self.dir.join("access.log"))
    }

    /// The access log entries as JSON, waiting up to 5 s until there are at
    /// least `at_least` (Envoy writes an entry when a stream ends and flushes
    /// the file every 50 ms). Returns what is there after the wait.
    pub fn access_log_entries(&self, at_least: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let entries: Vec<serde_json::Value> =
                self.access_log().lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
            if entries.len() >= at_least || Instant::now() > deadline {
                return entries;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Replaces (or creates) the key file `name` (see [`GatewayBuilder::provider_key`]) by an atomic
    /// rename, as a Kubernetes secret mount does. Envoy picks up the new key without a restart, within
    /// moments (poll for it rather than expect it on the very next request).
    pub fn write_provider_key(&self, name: &str, key: &str) {
        if let Err(err) = write_key_file(&self.dir, name, key) {
            panic!("cannot write key file {name}: {err}");
        }
    }

    /// The directory of this gateway's key files (what `.run/keys/` is for `just up`).
    pub fn key_dir(&self) -> PathBuf {
        key_dir(&self.dir)
    }

    /// The temp dir with the rendered config and logs (kept when a test fails).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn read_file(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.envoy.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "gateway files kept in {} (envoy.yaml, envoy.log, access.log); Envoy log tail:\n{}",
                self.dir.display(),
                tail(&self.envoy_log(), 40)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // The mocks stop when `self.mocks` drops, after Envoy is gone.
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all.iter().skip(all.len().saturating_sub(lines)).copied().collect::<Vec<_>>().join("\n")
}
