//! aigw-harness: runs the built proxy-wasm filters (`dist/*.wasm`) on wasmtime
//! with Envoy's semantics, and records what they did so that tests assert on
//! outcomes (bytes the upstream and the client got, local replies, calls,
//! metrics, shared data, logs) instead of call sequences.
//!
//! ```no_run
//! use aigw_harness::{wasm_path, Action, Harness};
//! let harness = Harness::new();
//! let vm = harness.vm(wasm_path("pii-mask")).config(r#"{}"#).start();
//! assert!(vm.configured(), "{:?}", vm.logs());
//! let mut s = vm.stream();
//! assert_eq!(s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false), Action::Pause);
//! s.send_request_body(br#"{"messages":[]}"#, true);
//! assert_eq!(s.upstream_request_body(), br#"{"messages":[]}"#);
//! ```
//!
//! See README.md for the semantics (buffering, forwarding, local replies).

// This crate is test infrastructure: it runs only inside `cargo test`, and a
// panic with a precise message is how it fails a test (a missing .wasm, a
// trap in the filter, a misuse of the API). The workspace lints against
// unwrap/expect/panic exist to keep filter code panic-free, not tests.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod abi;
mod calls;
mod headers;
mod state;
mod vm;

pub use calls::{category, category_map, HostCallCount, HostCalls, CATEGORIES};
pub use headers::Headers;
pub use state::{Action, ForeignCall, GrpcCall, HttpCall, LocalReply, LogLevel, LogLine, MetricKind};
pub use vm::{Stream, Vm, VmBuilder};

use state::{GetHook, HarnessInner};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::{Engine, Module};

/// Where the harness clock starts: 2026-01-01T00:00:00Z.
const START_SECONDS: u64 = 1_767_225_600;

/// One test's world: the shared-data store, the stats store and the clock that
/// all its VMs (Envoy workers) share. Create one per test; tests run in parallel.
#[derive(Clone)]
pub struct Harness {
    inner: Rc<HarnessInner>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("clock_nanos", &self.inner.clock_nanos.get()).finish_non_exhaustive()
    }
}

impl Harness {
    pub fn new() -> Self {
        Harness { inner: Rc::new(HarnessInner::new(START_SECONDS * 1_000_000_000)) }
    }

    /// Prepares a VM running the module at `path` (see [`wasm_path`], [`fixture_path`]).
    pub fn vm(&self, path: impl AsRef<Path>) -> VmBuilder {
        VmBuilder::new(Rc::clone(&self.inner), path.as_ref())
    }

    /// Moves the fake clock forward (what `proxy_get_current_time_nanoseconds` and WASI clocks return).
    pub fn advance_clock(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.inner.clock_nanos.set(self.inner.clock_nanos.get().saturating_add(nanos));
    }

    /// Sets the fake clock.
    pub fn set_clock(&self, time: SystemTime) {
        let nanos = time.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        self.inner.clock_nanos.set(u64::try_from(nanos).unwrap_or(u64::MAX));
    }

    /// The fake clock's time.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.inner.clock_nanos.get())
    }

    /// A shared-data entry `(value, cas)` in the `vm_id` namespace.
    pub fn shared_data(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.shared_get(vm_id, key)
    }

    /// Writes a shared-data entry unconditionally (as another worker would), giving it a new CAS.
    pub fn set_shared_data(&self, vm_id: &str, key: &str, value: impl AsRef<[u8]>) {
        // CAS 0 always succeeds.
        let _ = self.inner.shared_set(vm_id, key, value.as_ref(), 0);
    }

    /// Runs `hook` once, right after the next `get_shared_data(key)` by any VM in the `vm_id`
    /// namespace returns to the host, before the filter gets the value. Use it to make another
    /// VM write in between a read and a compare-and-swap write, so that the CAS conflicts.
    /// The hook may drive other VMs, not the one that is reading.
    pub fn after_shared_data_get(&self, vm_id: &str, key: &str, hook: impl FnOnce() + 'static) {
        self.inner.get_hooks.borrow_mut().push(GetHook {
            vm_id: vm_id.to_string(),
            key: Some(key.to_string()),
            run: Box::new(hook),
        });
    }

    /// Like [`Harness::after_shared_data_get`], for the next read of any key in `vm_id` (for
    /// filters whose keys a test does not know).
    pub fn after_any_shared_data_get(&self, vm_id: &str, hook: impl FnOnce() + 'static) {
        self.inner.get_hooks.borrow_mut().push(GetHook { vm_id: vm_id.to_string(), key: None, run: Box::new(hook) });
    }

    /// How many shared-data writes were refused with CasMismatch so far (proof that a test's
    /// interleaving really produced a conflict).
    pub fn cas_mismatches(&self) -> u64 {
        self.inner.cas_mismatches.get()
    }

    /// A counter's value across all VMs (0 if undefined).
    pub fn counter(&self, name: &str) -> u64 {
        self.inner.stats.borrow().counters.get(name).copied().unwrap_or(0)
    }

    /// A gauge's value (0 if undefined).
    pub fn gauge(&self, name: &str) -> i64 {
        self.inner.stats.borrow().gauges.get(name).copied().unwrap_or(0)
    }

    /// The values recorded in a histogram, oldest first.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        self.inner.stats.borrow().histograms.get(name).cloned().unwrap_or_default()
    }
}

fn workspace_root() -> PathBuf {
    // tests/harness -> workspace root
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<workspace>/dist/<name>.wasm` (or `$AIGW_DIST/<name>.wasm`), as built by `just build`.
/// Panics with what to do when the file is missing.
pub fn wasm_path(name: &str) -> PathBuf {
    let dist = std::env::var_os("AIGW_DIST").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("dist"));
    let path = dist.join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run `just build` first", path.display());
    path.canonicalize().unwrap_or(path)
}

/// The harness's fixture filter, built by `just build` into
/// `target/wasm32-wasip1/release/fixture_filter.wasm` (honours `CARGO_TARGET_DIR`).
pub fn fixture_path() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("wasm32-wasip1/release/fixture_filter.wasm");
    assert!(path.is_file(), "{} is missing: run `just build` first", path.display());
    path.canonicalize().unwrap_or(path)
}

pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        // Filters are compiled once per test process; fast compilation of the
        // 3 MB tokenizer filter matters more than peak speed of the code.
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // A filter stuck in a loop must fail its test, not hang the suite: every VM call gets
        // a deadline in epochs, and one thread per test process advances the epoch.
        config.epoch_interruption(true);
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(err) => panic!("aigw-harness: cannot create the wasmtime engine: {err:?}"),
        };
        let ticker = engine.clone();
        let spawned = std::thread::Builder::new().name("aigw-harness-epoch".into()).spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            ticker.increment_epoch();
        });
        if let Err(err) = spawned {
            panic!("aigw-harness: cannot start the epoch thread: {err}");
        }
        engine
    })
}

/// How often the epoch advances.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(100);
/// How long one VM call may run by default, in epochs (60 s), before it is interrupted.
pub(crate) const CALL_DEADLINE_EPOCHS: u64 = 600;

type ModuleSlot = Arc<OnceLock<Module>>;

/// Compiles each file once per process; VMs instantiate the compiled module.
pub(crate) fn module(path: &Path) -> Module {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, ModuleSlot>>> = OnceLock::new();
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let slot = {
        let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(cache.entry(key.clone()).or_default())
    };
    // Compiling outside the map lock: tests loading different filters compile in parallel.
    slot.get_or_init(|| {
        let bytes = match std::fs::read(&key) {
            Ok(bytes) => bytes,
            Err(err) => panic!("aigw-harness: cannot read {}: {err} (run `just build` first)", key.display()),
        };
        match Module::new(engine(), &bytes) {
            Ok(module) => module,
            Err(err) => panic!("aigw-harness: {} is not a valid Wasm module: {err:?}", key.display()),
        }
    })
    .clone()
}

/// The imports a module declares, as `module::name` strings (for checking the ABI coverage).
pub fn module_imports(path: impl AsRef<Path>) -> Vec<String> {
    module(path.as_ref()).imports().map(|i| format!("{}::{}", i.module(), i.name())).collect()
}
