//! VMs and streams: the Envoy side of the proxy-wasm conversation.

use crate::abi;
use crate::headers::Headers;
use crate::state::{
    Action, CallResponse, Direction, ForeignCall, GrpcCall, Guest, HarnessInner, HostState, HttpCall, LocalReply,
    LogLevel, LogLine, Stopped, StreamState,
};
use serde_json::Value;
use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;
use wasmtime::{Linker, Store, WasmParams, WasmResults};

const ROOT_CONTEXT_ID: u32 = 1;

/// Configures a VM before it starts; see [`crate::Harness::vm`].
#[must_use = "call .start() to run the VM"]
pub struct VmBuilder {
    harness: Rc<HarnessInner>,
    path: PathBuf,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    vm_id: String,
    plugin_name: String,
    root_id: String,
    log_level: LogLevel,
    properties: HashMap<Vec<String>, Vec<u8>>,
    route_metadata: BTreeMap<String, Value>,
    clusters: Option<Vec<String>>,
    call_deadline: Duration,
}

impl VmBuilder {
    pub(crate) fn new(harness: Rc<HarnessInner>, path: &Path) -> Self {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        VmBuilder {
            harness,
            path: path.to_path_buf(),
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            vm_id: stem.clone(),
            plugin_name: stem,
            root_id: String::new(),
            log_level: LogLevel::Trace,
            properties: HashMap::new(),
            route_metadata: BTreeMap::new(),
            clusters: None,
            call_deadline: crate::EPOCH_TICK * crate::CALL_DEADLINE_EPOCHS as u32,
        }
    }

    /// The plugin configuration (`configuration` in Envoy's PluginConfig), usually JSON.
    pub fn config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.plugin_config = config.as_ref().to_vec();
        self
    }

    /// The plugin configuration from a JSON value.
    pub fn config_json(self, config: &Value) -> Self {
        let text = config.to_string();
        self.config(text)
    }

    /// The VM configuration (`vm_config.configuration`), read in `on_vm_start`.
    pub fn vm_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.vm_config = config.as_ref().to_vec();
        self
    }

    /// The `vm_id`: VMs with the same vm_id share their shared-data keys. Defaults to the file stem.
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_string();
        self
    }

    /// The plugin name (`name` in PluginConfig; property `plugin_name`). Defaults to the file stem.
    pub fn plugin_name(mut self, name: &str) -> Self {
        self.plugin_name = name.to_string();
        self
    }

    /// The PluginConfig `root_id` (property `plugin_root_id`; empty by default, as in our configs).
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_string();
        self
    }

    /// The level `proxy_get_log_level` reports (default Trace: the filter logs everything).
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// A VM-level property every stream sees unless it sets its own (e.g. `["xds","route_name"]`).
    pub fn property(mut self, path: &[&str], value: impl AsRef<[u8]>) -> Self {
        self.properties.insert(path.iter().map(|s| (*s).to_string()).collect(), value.as_ref().to_vec());
        self
    }

    /// Route metadata every stream sees (`xds.route_metadata.filter_metadata.<namespace>`).
    pub fn route_metadata(mut self, namespace: &str, value: Value) -> Self {
        self.route_metadata.insert(namespace.to_string(), value);
        self
    }

    /// Restricts `dispatch_http_call` to these cluster names (others get BadArgument, like
    /// Envoy with an unknown cluster). By default every name is accepted.
    pub fn clusters(mut self, names: &[&str]) -> Self {
        self.clusters = Some(names.iter().map(|s| (*s).to_string()).collect());
        self
    }

    /// How long one call into the filter may run before it is interrupted and reported as a
    /// trap (default 60 s; a loop in the filter then fails the test instead of hanging it).
    pub fn call_deadline(mut self, deadline: Duration) -> Self {
        self.call_deadline = deadline;
        self
    }

    /// Instantiates the module and runs Envoy's start sequence: `_initialize`,
    /// root context creation, `proxy_on_vm_start`, then `proxy_on_configure`
    /// (only if the VM started). Check [`Vm::configured`] for the outcome.
    pub fn start(self) -> Vm {
        let module = crate::module(&self.path);
        let state = HostState {
            harness: Rc::clone(&self.harness),
            vm_id: self.vm_id,
            plugin_name: self.plugin_name,
            root_id_name: self.root_id,
            plugin_config: self.plugin_config,
            vm_config: self.vm_config,
            log_level: self.log_level,
            root_id: ROOT_CONTEXT_ID,
            effective: ROOT_CONTEXT_ID,
            callback: "instantiate",
            next_context_id: ROOT_CONTEXT_ID + 1,
            streams: BTreeMap::new(),
            vm_properties: self.properties,
            vm_route_metadata: self.route_metadata,
            logs: Vec::new(),
            notes: Vec::new(),
            metric_ids: HashMap::new(),
            next_metric_id: 1,
            http_calls: Vec::new(),
            next_token: 1,
            clusters: self.clusters,
            call_response: None,
            grpc_calls: Vec::new(),
            grpc_response: None,
            foreign_calls: Vec::new(),
            tick_period_ms: None,
            random_state: 0x9e37_79b9_7f4a_7c15,
            guest: None,
            dead: None,
            import_names: Vec::new(),
            host_calls: HashMap::new(),
        };
        let deadline_epochs = (self.call_deadline.as_millis() / crate::EPOCH_TICK.as_millis()).max(1) as u64;
        let mut store = Store::new(crate::engine(), state);
        store.set_epoch_deadline(deadline_epochs);
        let mut linker = Linker::new(crate::engine());
        if let Err(err) = abi::link(&mut linker) {
            panic!("aigw-harness: linking the host functions failed: {err:?}");
        }
        // Anything the module imports that the harness does not provide traps with its name when called.
        if let Err(err) = linker.define_unknown_imports_as_traps(&module) {
            panic!("aigw-harness: {}: {err:?}", self.path.display());
        }
        // Every import goes through a counting wrapper (crate::calls): tests assert host calls per request.
        let instance = match crate::calls::instantiate_counted(&linker, &mut store, &module) {
            Ok(instance) => instance,
            Err(err) => panic!("aigw-harness: {} does not instantiate: {err:?}", self.path.display()),
        };
        let Some(memory) = instance.get_memory(&mut store, "memory") else {
            panic!("aigw-harness: {} exports no memory", self.path.display());
        };
        let malloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"));
        let Ok(malloc) = malloc else {
            panic!("aigw-harness: {} exports neither proxy_on_memory_allocate nor malloc", self.path.display());
        };
        if instance.get_func(&mut store, "proxy_abi_version_0_2_1").is_none() {
            panic!(
                "aigw-harness: {} is not a proxy-wasm ABI 0.2.1 module (no proxy_abi_version_0_2_1 export)",
                self.path.display()
            );
        }
        store.data_mut().guest = Some(Guest { instance, memory, malloc });

        let vm = Vm {
            inner: Rc::new(VmInner {
                store: RefCell::new(store),
                harness: self.harness,
                path: self.path,
                started: Cell::new(false),
                configured: Cell::new(false),
                deadline_epochs,
            }),
        };
        // WASI reactor initialisation (the SDK's `main!` body runs here).
        let has_initialize = vm.with_store(|store| {
            let instance = store.data().guest.as_ref().map(|g| g.instance);
            instance.and_then(|i| i.get_func(&mut *store, "_initialize")).is_some()
        });
        let init = if has_initialize { "_initialize" } else { "_start" };
        vm.call::<(), ()>(init, ROOT_CONTEXT_ID, ());
        vm.call::<(i32, i32), ()>("proxy_on_context_create", ROOT_CONTEXT_ID, (ROOT_CONTEXT_ID as i32, 0));
        let vm_config_len = vm.with_store(|s| s.data().vm_config.len() as i32);
        let started: i32 = vm.call("proxy_on_vm_start", ROOT_CONTEXT_ID, (ROOT_CONTEXT_ID as i32, vm_config_len));
        vm.inner.started.set(started != 0);
        if started != 0 {
            let config_len = vm.with_store(|s| s.data().plugin_config.len() as i32);
            let configured: i32 = vm.call("proxy_on_configure", ROOT_CONTEXT_ID, (ROOT_CONTEXT_ID as i32, config_len));
            vm.inner.configured.set(configured != 0);
        }
        vm
    }
}

struct VmInner {
    store: RefCell<Store<HostState>>,
    harness: Rc<HarnessInner>,
    path: PathBuf,
    started: Cell<bool>,
    configured: Cell<bool>,
    deadline_epochs: u64,
}

/// One instance of a filter: what one Envoy worker thread runs. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Vm {
    inner: Rc<VmInner>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

fn action(raw: i32) -> Action {
    if raw == 0 {
        Action::Continue
    } else {
        Action::Pause
    }
}

impl Vm {
    fn store(&self) -> RefMut<'_, Store<HostState>> {
        match self.inner.store.try_borrow_mut() {
            Ok(store) => store,
            Err(_) => panic!(
                "aigw-harness: re-entrant use of the VM {}: a hook (e.g. after_shared_data_get) may only drive *other* VMs",
                self.inner.path.display()
            ),
        }
    }

    fn with_store<R>(&self, f: impl FnOnce(&mut Store<HostState>) -> R) -> R {
        f(&mut self.store())
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut HostState) -> R) -> R {
        f(self.store().data_mut())
    }

    /// Calls an export with `context` as the current context. A trap marks the VM dead and fails the test.
    fn call<P: WasmParams, R: WasmResults>(&self, name: &'static str, context: u32, params: P) -> R {
        let mut store = self.store();
        if let Some(reason) = &store.data().dead {
            panic!("aigw-harness: cannot call {name}: the VM is dead since an earlier trap:\n{reason}");
        }
        let Some(instance) = store.data().guest.as_ref().map(|g| g.instance) else {
            panic!("aigw-harness: VM not instantiated");
        };
        let func = match instance.get_typed_func::<P, R>(&mut *store, name) {
            Ok(func) => func,
            Err(err) => panic!(
                "aigw-harness: {} does not export `{name}` with the proxy-wasm 0.2.1 signature: {err}",
                self.inner.path.display()
            ),
        };
        {
            let state = store.data_mut();
            state.effective = context;
            state.callback = name;
        }
        // A guest loop becomes an `interrupt` trap after the call deadline.
        store.set_epoch_deadline(self.inner.deadline_epochs);
        let result = func.call(&mut *store, params);
        let state = store.data_mut();
        state.effective = state.root_id;
        state.callback = "none";
        match result {
            Ok(value) => value,
            Err(err) => {
                let report = self.trap_report(state, name, context, &err);
                state.dead = Some(report.clone());
                drop(store);
                panic!("{report}");
            }
        }
    }

    fn trap_report(&self, state: &HostState, name: &str, context: u32, err: &wasmtime::Error) -> String {
        let mut report = format!(
            "aigw-harness: the filter {} trapped in {name} (context {context}); the VM is now dead, as in Envoy.\n{err}\ncaused by: {}",
            self.inner.path.display(),
            err.root_cause()
        );
        let recent: Vec<&LogLine> = state.logs.iter().rev().take(8).collect();
        if !recent.is_empty() {
            report.push_str("\n--- last filter log lines (newest last) ---");
            for line in recent.into_iter().rev() {
                let _ = write!(report, "\n[{:?}] {}", line.level, line.message);
            }
        }
        if !state.notes.is_empty() {
            report.push_str("\n--- harness notes ---");
            for note in state.notes.iter().rev().take(8).rev() {
                let _ = write!(report, "\n{note}");
            }
        }
        report
    }

    /// The path the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The vm_id (shared-data namespace).
    pub fn vm_id(&self) -> String {
        self.with_state(|s| s.vm_id.clone())
    }

    /// Whether `proxy_on_vm_start` returned true.
    pub fn started(&self) -> bool {
        self.inner.started.get()
    }

    /// Whether `proxy_on_configure` returned true (false when the VM did not start).
    pub fn configured(&self) -> bool {
        self.inner.configured.get()
    }

    /// Why the VM is dead (it trapped), if it is.
    pub fn dead(&self) -> Option<String> {
        self.with_state(|s| s.dead.clone())
    }

    /// Every log line so far, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        self.with_state(|s| s.logs.clone())
    }

    /// The log messages so far, oldest first.
    pub fn log_messages(&self) -> Vec<String> {
        self.with_state(|s| s.logs.iter().map(|l| l.message.clone()).collect())
    }

    /// Whether some log line contains `text`.
    pub fn logs_contain(&self, text: &str) -> bool {
        self.with_state(|s| s.logs.iter().any(|l| l.message.contains(text)))
    }

    /// Fails the test if any log line contains `secret` (prompt text, a key, a PII value...).
    pub fn assert_no_log_contains(&self, secret: &str) {
        let leaked: Vec<String> = self
            .with_state(|s| s.logs.iter().filter(|l| l.message.contains(secret)).map(|l| l.message.clone()).collect());
        assert!(leaked.is_empty(), "a log line contains {secret:?}: {leaked:#?}");
    }

    /// Harness diagnostics: host calls the harness refused and why (Envoy would refuse them too).
    pub fn notes(&self) -> Vec<String> {
        self.with_state(|s| s.notes.clone())
    }

    /// Opens a new HTTP stream (`proxy_on_context_create` with the root context as parent).
    /// Panics if the VM is not configured: Envoy does not run a plugin whose configure failed.
    pub fn stream(&self) -> Stream {
        if !self.configured() {
            let logs = self.log_messages();
            panic!("aigw-harness: vm.stream() on a VM that is not configured (on_vm_start/on_configure returned false); logs: {logs:#?}");
        }
        let id = self.with_state(|s| {
            let id = s.next_context_id;
            s.next_context_id += 1;
            s.streams.insert(id, StreamState::new());
            id
        });
        self.call::<(i32, i32), ()>("proxy_on_context_create", id, (id as i32, ROOT_CONTEXT_ID as i32));
        Stream { vm: self.clone(), id }
    }

    /// Every HTTP call the filter dispatched (answered or not), oldest first.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.with_state(|s| s.http_calls.clone())
    }

    /// The HTTP calls not answered yet.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.with_state(|s| s.http_calls.iter().filter(|c| !c.answered).cloned().collect())
    }

    /// Answers an HTTP call: `proxy_on_http_call_response` runs with `:status`, the headers and
    /// the body readable (HttpCallResponseHeaders / HttpCallResponseBody).
    pub fn answer_http_call(&self, token: u32, status: u16, headers: &[(&str, &str)], body: impl AsRef<[u8]>) {
        let mut pairs = vec![(":status".to_string(), status.to_string())];
        pairs.extend(headers.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
        let response = CallResponse {
            headers: Headers::from_owned(pairs),
            body: body.as_ref().to_vec(),
            trailers: Headers::new(),
        };
        self.deliver_call_response(token, response, false);
    }

    /// Fails an HTTP call (reset, timeout, no healthy upstream): Envoy calls
    /// `proxy_on_http_call_response` with no headers and no body.
    pub fn fail_http_call(&self, token: u32) {
        let response = CallResponse { headers: Headers::new(), body: Vec::new(), trailers: Headers::new() };
        self.deliver_call_response(token, response, true);
    }

    fn deliver_call_response(&self, token: u32, response: CallResponse, failed: bool) {
        let (context, counts) = self.with_state(|s| {
            let Some(call) = s.http_calls.iter_mut().find(|c| c.token == token) else {
                panic!("aigw-harness: no HTTP call with token {token}; dispatched: {:?}", s.http_calls);
            };
            assert!(!call.answered, "aigw-harness: HTTP call {token} was already answered");
            call.answered = true;
            let context = call.context_id;
            let counts = if failed { (0, 0) } else { (response.headers.len() as i32, response.body.len() as i32) };
            s.call_response = Some(response);
            (context, counts)
        });
        if let Some(stream) = self.with_state(|s| s.streams.get(&context).map(|s| s.stopped() || s.finished)) {
            if stream {
                // Envoy cancels a stream's pending calls when the stream stops or ends.
                self.with_state(|s| s.call_response = None);
                return;
            }
        }
        self.call::<(i32, i32, i32, i32, i32), ()>(
            "proxy_on_http_call_response",
            context,
            (context as i32, token as i32, counts.0, counts.1, 0),
        );
        self.with_state(|s| s.call_response = None);
        self.settle(context);
    }

    /// Every gRPC call the filter dispatched (answered or not), oldest first.
    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        self.with_state(|s| s.grpc_calls.clone())
    }

    /// The gRPC calls not answered yet.
    pub fn pending_grpc_calls(&self) -> Vec<GrpcCall> {
        self.with_state(|s| s.grpc_calls.iter().filter(|c| !c.answered).cloned().collect())
    }

    /// Answers a gRPC call with OK and this response message: `proxy_on_grpc_receive` runs with the
    /// message readable (GrpcReceiveBuffer), then Envoy closes the call with status 0.
    pub fn answer_grpc_call(&self, token: u32, message: impl AsRef<[u8]>) {
        self.deliver_grpc(token, Some(message.as_ref().to_vec()), 0);
    }

    /// Fails a gRPC call with a gRPC status (14 UNAVAILABLE, 4 DEADLINE_EXCEEDED...):
    /// `proxy_on_grpc_close` runs.
    pub fn fail_grpc_call(&self, token: u32, grpc_status: u32) {
        self.deliver_grpc(token, None, grpc_status);
    }

    fn deliver_grpc(&self, token: u32, message: Option<Vec<u8>>, grpc_status: u32) {
        let context = self.with_state(|s| {
            let Some(call) = s.grpc_calls.iter_mut().find(|c| c.token == token) else {
                panic!("aigw-harness: no gRPC call with token {token}; dispatched: {:?}", s.grpc_calls);
            };
            assert!(!call.answered, "aigw-harness: gRPC call {token} was already answered");
            call.answered = true;
            call.context_id
        });
        let gone = self.with_state(|s| s.streams.get(&context).map(|s| s.finished));
        if gone == Some(true) {
            // Envoy cancels a context's calls when the context is destroyed.
            return;
        }
        match message {
            Some(message) => {
                let size = message.len() as i32;
                self.with_state(|s| s.grpc_response = Some(message));
                self.call::<(i32, i32, i32), ()>(
                    "proxy_on_grpc_receive",
                    context,
                    (context as i32, token as i32, size),
                );
                self.with_state(|s| s.grpc_response = None);
            }
            None => {
                self.call::<(i32, i32, i32), ()>(
                    "proxy_on_grpc_close",
                    context,
                    (context as i32, token as i32, grpc_status as i32),
                );
            }
        }
        if context != ROOT_CONTEXT_ID {
            self.settle(context);
        }
    }

    /// Calls `proxy_on_tick` on the root context. Panics if the filter never set a tick period
    /// (Envoy would never tick it). The clock does not move; use `Harness::advance_clock`.
    pub fn tick(&self) {
        assert!(
            self.tick_period().is_some(),
            "aigw-harness: vm.tick() but the filter never called set_tick_period (Envoy would not call on_tick)"
        );
        self.call::<i32, ()>("proxy_on_tick", ROOT_CONTEXT_ID, ROOT_CONTEXT_ID as i32);
    }

    /// The tick period the filter asked for.
    pub fn tick_period(&self) -> Option<Duration> {
        self.with_state(|s| s.tick_period_ms.map(|ms| Duration::from_millis(u64::from(ms))))
    }

    /// A counter's value (0 if no VM defined it). Stats are shared by every VM of the harness, like Envoy's.
    pub fn counter(&self, name: &str) -> u64 {
        self.inner.harness.stats.borrow().counters.get(name).copied().unwrap_or(0)
    }

    /// A gauge's value (0 if undefined).
    pub fn gauge(&self, name: &str) -> i64 {
        self.inner.harness.stats.borrow().gauges.get(name).copied().unwrap_or(0)
    }

    /// The values recorded in a histogram, oldest first.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        self.inner.harness.stats.borrow().histograms.get(name).cloned().unwrap_or_default()
    }

    /// The host calls this VM made so far (since start, or since [`Vm::reset_host_calls`]),
    /// by callback, import and the map or buffer named.
    pub fn host_calls(&self) -> crate::HostCalls {
        self.with_state(|s| s.host_call_snapshot())
    }

    /// Forgets the host calls counted so far (e.g. after start-up, to count one request).
    pub fn reset_host_calls(&self) {
        self.with_state(|s| s.host_calls.clear());
    }

    /// Names of every defined metric (counters, gauges, histograms), for debugging a test.
    pub fn metric_names(&self) -> Vec<String> {
        let stats = self.inner.harness.stats.borrow();
        stats.counters.keys().chain(stats.gauges.keys()).chain(stats.histograms.keys()).cloned().collect()
    }

    /// A VM-level property (set by the test or by the filter from its root context).
    pub fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path: Vec<String> = path.iter().map(|s| (*s).to_string()).collect();
        self.with_state(|s| abi::lookup_property(s, s.root_id, &path))
    }

    /// Sets a VM-level property every stream sees unless it has its own.
    pub fn set_property(&self, path: &[&str], value: impl AsRef<[u8]>) {
        let path: Vec<String> = path.iter().map(|s| (*s).to_string()).collect();
        self.with_state(|s| s.vm_properties.insert(path, value.as_ref().to_vec()));
    }

    /// Every `proxy_call_foreign_function` call, oldest first.
    pub fn foreign_calls(&self) -> Vec<ForeignCall> {
        self.with_state(|s| s.foreign_calls.clone())
    }
}

/// Applies `proxy_continue_stream` calls made during the last VM call (Envoy defers them to
/// after the call): whatever the direction held is forwarded.
fn apply_deferred(stream: &mut StreamState) {
    let (request, response) = (stream.continue_request, stream.continue_response);
    stream.continue_request = false;
    stream.continue_response = false;
    if request && !stream.stopped() && stream.request.headers.is_some() && stream.request.stopped != Stopped::No {
        stream.request.forward();
    }
    // While the filter encodes its own local reply the response side still flows.
    let response_flows = !stream.stopped() || stream.encoding_local_reply;
    if response && response_flows && stream.response.headers.is_some() && stream.response.stopped != Stopped::No {
        stream.response.forward();
    }
}

/// Applies a callback's return value to its direction, as Envoy's filter manager does.
fn apply_action(direction: &mut Direction, stage: Stage, result: Action) {
    direction.in_body_callback = false;
    if stage == Stage::Headers && result == Action::Continue {
        // Envoy drops its pointer to the header map once the headers callback continues.
        direction.exposed = false;
    }
    match result {
        Action::Continue => direction.forward(),
        Action::Pause => {
            if direction.stopped == Stopped::No {
                direction.stopped = match stage {
                    Stage::Headers => Stopped::Headers,
                    Stage::Body => Stopped::Body,
                    Stage::Trailers => Stopped::Trailers,
                };
            }
        }
    }
}

/// How a local reply reaches the client, by how far the response had got.
enum ReplyRoute {
    /// No response yet: through the encoder filters, this one included.
    FilterChain { headers: usize, body: usize },
    /// Response headers were in the filter chain but not sent: straight to the client.
    Direct,
    /// The client already got response headers: Envoy can only reset the stream.
    Reset,
}

impl Vm {
    /// Runs one stream callback, then what Envoy does after the VM call returns.
    fn run_stream_callback(
        &self,
        id: u32,
        side: Side,
        stage: Stage,
        name: &'static str,
        params: (i32, i32, i32),
    ) -> Action {
        let raw: i32 = match stage {
            Stage::Trailers => self.call::<(i32, i32), i32>(name, id, (params.0, params.1)),
            _ => self.call::<(i32, i32, i32), i32>(name, id, params),
        };
        let result = action(raw);
        self.with_state(|s| {
            if let Some(stream) = s.streams.get_mut(&id) {
                let flows = !stream.stopped() || (side == Side::Response && stream.encoding_local_reply);
                let direction = if side == Side::Request { &mut stream.request } else { &mut stream.response };
                direction.in_body_callback = false;
                if flows {
                    apply_action(direction, stage, result);
                }
            }
        });
        self.settle(id);
        result
    }

    /// The deferred after-call actions: continues, then a local reply the filter sent.
    fn settle(&self, id: u32) {
        let route = self.with_state(|s| {
            let stream = s.streams.get_mut(&id)?;
            apply_deferred(stream);
            if !stream.reply_pending {
                return None;
            }
            stream.reply_pending = false;
            let reply = stream.local_reply.clone()?;
            let mut headers = Headers::from_pairs(&[(":status", &reply.status.to_string())]);
            for (name, value) in reply.headers.iter() {
                headers.add(name, value.to_string());
            }
            if !reply.body.is_empty() {
                headers.replace("content-length", reply.body.len().to_string());
                if !headers.contains("content-type") {
                    headers.add("content-type", "text/plain".to_string());
                }
            }
            let response = &mut stream.response;
            let route = if response.forwarded_headers.is_some() {
                stream.closed = true;
                ReplyRoute::Reset
            } else if response.headers.is_some() {
                response.buffer.clear();
                response.headers = Some(headers.clone());
                response.forwarded_headers = Some(headers);
                response.forwarded_body = reply.body.clone();
                response.exposed = false;
                response.stopped = Stopped::No;
                response.end_seen = true;
                response.complete = true;
                ReplyRoute::Direct
            } else {
                let count = headers.len();
                response.headers = Some(headers);
                response.exposed = true;
                response.end_seen = reply.body.is_empty();
                stream.encoding_local_reply = true;
                ReplyRoute::FilterChain { headers: count, body: reply.body.len() }
            };
            if matches!(route, ReplyRoute::Reset) {
                s.note("local reply after the response headers reached the client: Envoy resets the stream".into());
            }
            Some(route)
        });
        let Some(ReplyRoute::FilterChain { headers, body }) = route else {
            return;
        };
        let id_arg = id as i32;
        let ended = i32::from(body == 0);
        self.run_stream_callback(
            id,
            Side::Response,
            Stage::Headers,
            "proxy_on_response_headers",
            (id_arg, headers as i32, ended),
        );
        if body > 0 {
            let proceed = self.with_state(|s| {
                let stream = s.streams.get_mut(&id)?;
                let reply_body = stream.local_reply.as_ref().map(|r| r.body.clone()).unwrap_or_default();
                stream.response.buffer.extend_from_slice(&reply_body);
                stream.response.end_seen = true;
                stream.response.in_body_callback = true;
                Some(stream.response.buffer.len())
            });
            if let Some(size) = proceed {
                self.run_stream_callback(
                    id,
                    Side::Response,
                    Stage::Body,
                    "proxy_on_response_body",
                    (id_arg, size as i32, 1),
                );
            }
        }
        self.with_state(|s| {
            if let Some(stream) = s.streams.get_mut(&id) {
                stream.encoding_local_reply = false;
            }
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Request,
    Response,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Headers,
    Body,
    Trailers,
}

/// One HTTP stream (an HTTP context in the VM). Drive it like Envoy would, then read what the
/// upstream and the client received.
#[derive(Clone)]
pub struct Stream {
    vm: Vm,
    id: u32,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("context_id", &self.id).finish_non_exhaustive()
    }
}

impl Stream {
    /// The HTTP context id.
    pub fn context_id(&self) -> u32 {
        self.id
    }

    /// The VM this stream runs in.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    fn with<R>(&self, f: impl FnOnce(&mut StreamState) -> R) -> R {
        self.vm.with_state(|s| match s.streams.get_mut(&self.id) {
            Some(stream) => f(stream),
            None => panic!("aigw-harness: stream {} no longer exists", self.id),
        })
    }

    fn direction<R>(&self, side: Side, f: impl FnOnce(&mut Direction) -> R) -> R {
        self.with(|s| f(if side == Side::Request { &mut s.request } else { &mut s.response }))
    }

    /// Runs a stream callback unless Envoy would no longer call the filter.
    fn run(&self, side: Side, stage: Stage, name: &'static str, params: (i32, i32, i32)) -> Action {
        if self.with(|s| s.stopped()) {
            // After a local reply or a reset Envoy no longer calls the filter.
            return Action::Pause;
        }
        self.vm.run_stream_callback(self.id, side, stage, name, params)
    }

    fn send_headers(&mut self, side: Side, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        if self.with(|s| s.stopped()) {
            // After a local reply or a reset Envoy no longer calls the filter; the data is dropped.
            return Action::Pause;
        }
        self.direction(side, |d| {
            assert!(d.headers.is_none(), "aigw-harness: {side:?} headers were already sent on this stream");
            d.headers = Some(Headers::from_pairs(headers));
            d.exposed = true;
            d.end_seen = end_of_stream;
        });
        let name = if side == Side::Request { "proxy_on_request_headers" } else { "proxy_on_response_headers" };
        self.run(side, Stage::Headers, name, (self.id as i32, headers.len() as i32, i32::from(end_of_stream)))
    }

    fn send_body(&mut self, side: Side, chunk: &[u8], end_of_stream: bool) -> Action {
        if self.with(|s| s.stopped()) {
            // After a local reply or a reset Envoy no longer calls the filter; the data is dropped.
            return Action::Pause;
        }
        let size = self.direction(side, |d| {
            assert!(d.headers.is_some(), "aigw-harness: send the {side:?} headers before the body");
            assert!(!d.end_seen, "aigw-harness: the {side:?} already ended (end_of_stream was sent)");
            // Envoy hands the filter everything it buffered for it so far plus the new chunk.
            d.buffer.extend_from_slice(chunk);
            d.end_seen = end_of_stream;
            d.in_body_callback = true;
            d.buffer.len()
        });
        let name = if side == Side::Request { "proxy_on_request_body" } else { "proxy_on_response_body" };
        let result = self.run(side, Stage::Body, name, (self.id as i32, size as i32, i32::from(end_of_stream)));
        self.direction(side, |d| d.in_body_callback = false);
        result
    }

    fn send_trailers(&mut self, side: Side, trailers: &[(&str, &str)]) -> Action {
        if self.with(|s| s.stopped()) {
            // After a local reply or a reset Envoy no longer calls the filter; the data is dropped.
            return Action::Pause;
        }
        self.direction(side, |d| {
            assert!(d.headers.is_some(), "aigw-harness: send the {side:?} headers before the trailers");
            assert!(!d.end_seen, "aigw-harness: the {side:?} already ended (end_of_stream was sent)");
            d.trailers = Some(Headers::from_pairs(trailers));
            d.end_seen = true;
        });
        let name = if side == Side::Request { "proxy_on_request_trailers" } else { "proxy_on_response_trailers" };
        self.run(side, Stage::Trailers, name, (self.id as i32, trailers.len() as i32, 0))
    }

    /// Request headers arrive from the client (`proxy_on_request_headers`).
    pub fn send_request_headers(&mut self, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        self.send_headers(Side::Request, headers, end_of_stream)
    }

    /// A request body chunk arrives (`proxy_on_request_body` with everything buffered so far).
    pub fn send_request_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Action {
        self.send_body(Side::Request, chunk.as_ref(), end_of_stream)
    }

    /// Request trailers arrive (ends the request).
    pub fn send_request_trailers(&mut self, trailers: &[(&str, &str)]) -> Action {
        self.send_trailers(Side::Request, trailers)
    }

    /// Response headers arrive from the upstream (`proxy_on_response_headers`).
    pub fn send_response_headers(&mut self, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        self.send_headers(Side::Response, headers, end_of_stream)
    }

    /// A response body chunk arrives (`proxy_on_response_body` with everything buffered so far).
    pub fn send_response_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Action {
        self.send_body(Side::Response, chunk.as_ref(), end_of_stream)
    }

    /// Response trailers arrive (ends the response).
    pub fn send_response_trailers(&mut self, trailers: &[(&str, &str)]) -> Action {
        self.send_trailers(Side::Response, trailers)
    }

    /// Ends the stream like Envoy: `proxy_on_log` (access-log phase: headers readable, not
    /// writable), then `proxy_on_done` and `proxy_on_delete`.
    /// Filter state the filter sets in `on_log` is readable afterwards.
    pub fn finish(&mut self) {
        if self.with(|s| std::mem::replace(&mut s.finished, true)) {
            return;
        }
        let id = self.id as i32;
        self.vm.call::<i32, ()>("proxy_on_log", self.id, id);
        let _: i32 = self.vm.call("proxy_on_done", self.id, id);
        self.vm.call::<i32, ()>("proxy_on_delete", self.id, id);
    }

    /// The request header map as it stands now, after the filter's edits.
    pub fn request_headers(&self) -> Headers {
        self.with(|s| s.request.headers.clone().unwrap_or_default())
    }

    /// The request headers the provider receives, as the reference chain
    /// delivers them: Envoy's `buffer` filter after the aigw filters holds the
    /// headers until the request is complete (None until then), and sets
    /// `content-length` from the final body when the filters removed it.
    /// [`Stream::forwarded_request_headers`] is what left the filter itself.
    pub fn upstream_request_headers(&self) -> Option<Headers> {
        self.with(|s| {
            if !s.request.complete {
                return None;
            }
            let mut headers = s.request.forwarded_headers.clone()?;
            if headers.get("content-length").is_none() && !s.request.forwarded_body.is_empty() {
                headers.replace("content-length", s.request.forwarded_body.len().to_string());
            }
            Some(headers)
        })
    }

    /// The request headers as the filter let them through (None until then).
    pub fn forwarded_request_headers(&self) -> Option<Headers> {
        self.with(|s| s.request.forwarded_headers.clone())
    }

    /// The request body bytes the upstream received so far.
    pub fn upstream_request_body(&self) -> Vec<u8> {
        self.with(|s| s.request.forwarded_body.clone())
    }

    /// The request trailers the upstream received.
    pub fn upstream_request_trailers(&self) -> Option<Headers> {
        self.with(|s| s.request.forwarded_trailers.clone())
    }

    /// Whether the whole request (through end_of_stream) reached the upstream.
    pub fn request_complete(&self) -> bool {
        self.with(|s| s.request.complete)
    }

    /// Request body bytes Envoy holds for the filter (buffered, not forwarded).
    pub fn buffered_request_body(&self) -> Vec<u8> {
        self.with(|s| s.request.buffer.clone())
    }

    /// The response header map as it stands now, after the filter's edits.
    pub fn response_headers(&self) -> Headers {
        self.with(|s| s.response.headers.clone().unwrap_or_default())
    }

    /// The response headers the client received from the upstream path (None until forwarded).
    /// A local reply is separate: see [`Stream::local_reply`].
    pub fn client_response_headers(&self) -> Option<Headers> {
        self.with(|s| s.response.forwarded_headers.clone())
    }

    /// The response body bytes the client received so far.
    pub fn client_response_body(&self) -> Vec<u8> {
        self.with(|s| s.response.forwarded_body.clone())
    }

    /// The response trailers the client received.
    pub fn client_response_trailers(&self) -> Option<Headers> {
        self.with(|s| s.response.forwarded_trailers.clone())
    }

    /// Whether the whole response (through end_of_stream) reached the client.
    pub fn response_complete(&self) -> bool {
        self.with(|s| s.response.complete)
    }

    /// Response body bytes Envoy holds for the filter (buffered, not forwarded).
    pub fn buffered_response_body(&self) -> Vec<u8> {
        self.with(|s| s.response.buffer.clone())
    }

    /// The local reply the filter sent, if any (the stream stops there).
    pub fn local_reply(&self) -> Option<LocalReply> {
        self.with(|s| s.local_reply.clone())
    }

    /// Whether the filter reset the stream (`proxy_close_stream`).
    pub fn closed(&self) -> bool {
        self.with(|s| s.closed)
    }

    /// HTTP calls this stream dispatched and that are not answered yet.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.vm.pending_http_calls().into_iter().filter(|c| c.context_id == self.id).collect()
    }

    /// HTTP calls this stream dispatched, answered or not.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.vm.http_calls().into_iter().filter(|c| c.context_id == self.id).collect()
    }

    /// Answers an HTTP call; see [`Vm::answer_http_call`].
    pub fn answer_http_call(&mut self, token: u32, status: u16, headers: &[(&str, &str)], body: impl AsRef<[u8]>) {
        self.vm.answer_http_call(token, status, headers, body);
    }

    /// Fails an HTTP call; see [`Vm::fail_http_call`].
    pub fn fail_http_call(&mut self, token: u32) {
        self.vm.fail_http_call(token);
    }

    /// A property as the filter would read it in this stream (Envoy's serialisation).
    pub fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path: Vec<String> = path.iter().map(|s| (*s).to_string()).collect();
        self.vm.with_state(|s| abi::lookup_property(s, self.id, &path))
    }

    /// A property as UTF-8 text (lossy).
    pub fn property_str(&self, path: &[&str]) -> Option<String> {
        self.property(path).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Sets a property Envoy would provide for this stream (e.g. `["xds","route_name"]`,
    /// `["source","address"]`), or filter state an earlier filter set.
    pub fn set_property(&mut self, path: &[&str], value: impl AsRef<[u8]>) {
        let path: Vec<String> = path.iter().map(|s| (*s).to_string()).collect();
        self.with(|s| s.properties.insert(path, value.as_ref().to_vec()));
    }

    /// Sets dynamic metadata under `metadata.filter_metadata.<namespace>`; lookups below it
    /// answer with Envoy's serialisation (strings raw, numbers f64, maps as protobuf Struct).
    pub fn set_metadata(&mut self, namespace: &str, value: Value) {
        self.with(|s| s.metadata.insert(namespace.to_string(), value));
    }

    /// What jwt_authn with `payload_in_metadata: jwt_payload` writes: the JWT payload under
    /// `metadata.filter_metadata["envoy.filters.http.jwt_authn"].jwt_payload`.
    pub fn set_jwt_payload(&mut self, payload: Value) {
        let mut namespace = serde_json::Map::new();
        namespace.insert("jwt_payload".to_string(), payload);
        self.set_metadata("envoy.filters.http.jwt_authn", Value::Object(namespace));
    }

    /// Route metadata for this stream's route (`xds.route_metadata.filter_metadata.<namespace>`).
    pub fn set_route_metadata(&mut self, namespace: &str, value: Value) {
        self.with(|s| s.route_metadata.insert(namespace.to_string(), value));
    }

    /// Foreign function calls this stream made (e.g. `clear_route_cache`).
    pub fn foreign_calls(&self) -> Vec<ForeignCall> {
        self.vm.foreign_calls().into_iter().filter(|c| c.context_id == self.id).collect()
    }

    /// How many times this stream called `clear_route_cache`.
    pub fn route_cache_clears(&self) -> usize {
        self.foreign_calls().iter().filter(|c| c.name == "clear_route_cache").count()
    }
}
