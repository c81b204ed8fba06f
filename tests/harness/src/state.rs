//! What the host remembers: per-harness (shared data, clock, stats) and per-VM
//! (contexts, streams, logs, calls) state.

use crate::headers::Headers;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use wasmtime::{Instance, Memory, TypedFunc};

/// A property path, one string per segment (`["xds", "route_name"]`).
pub(crate) type PropertyPath = Vec<String>;

/// proxy-wasm statuses the SDK understands.
pub(crate) mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const CAS_MISMATCH: i32 = 8;
}

/// Log levels, as proxy-wasm numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_raw(raw: i32) -> Option<LogLevel> {
        Some(match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// One log line the filter wrote (through `proxy_log`, or stdout/stderr via WASI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The status a filter callback returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Envoy's `Continue`: the data goes on to the next filter.
    Continue,
    /// Envoy's `StopIteration` (headers) / `StopIterationAndBuffer` (body).
    Pause,
}

/// A reply the filter sent instead of forwarding the request (`send_http_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// The `details` string (Envoy's response code details); empty from the Rust SDK.
    pub details: String,
    /// The gRPC status argument (-1 when not a gRPC reply).
    pub grpc_status: i32,
}

impl LocalReply {
    /// The body as UTF-8 (lossy), for assertions.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(err) => panic!("local reply body is not JSON ({err}): {}", self.body_str()),
        }
    }
}

/// An HTTP call the filter dispatched (`dispatch_http_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The token the host returned; pass it to `answer_http_call`.
    pub token: u32,
    /// The context that dispatched the call (the root context or a stream).
    pub context_id: u32,
    /// The upstream cluster name.
    pub cluster: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    /// The timeout the filter asked for, in milliseconds.
    pub timeout_ms: u32,
    /// Whether the call was answered (or failed) already.
    pub answered: bool,
}

impl HttpCall {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A call to `proxy_call_foreign_function`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignCall {
    pub context_id: u32,
    pub name: String,
    pub arguments: Vec<u8>,
}

/// Metric kinds, as proxy-wasm numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_raw(raw: i32) -> Option<MetricKind> {
        Some(match raw {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return None,
        })
    }
}

/// Envoy's stats store: one per harness, shared by every VM like Envoy's
/// workers share their stats. Keyed by kind and name.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub counters: BTreeMap<String, u64>,
    pub gauges: BTreeMap<String, i64>,
    pub histograms: BTreeMap<String, Vec<u64>>,
}

/// One vm_id's shared data: key -> (value, cas).
pub(crate) type SharedNamespace = HashMap<String, (Vec<u8>, u32)>;

/// Everything one [`crate::Harness`] shares between its VMs.
pub(crate) struct HarnessInner {
    pub clock_nanos: Cell<u64>,
    /// vm_id -> key -> (value, cas)
    pub shared_data: RefCell<HashMap<String, SharedNamespace>>,
    pub next_cas: Cell<u32>,
    /// How many writes were refused with CasMismatch.
    pub cas_mismatches: Cell<u64>,
    pub stats: RefCell<Stats>,
    pub get_hooks: RefCell<Vec<GetHook>>,
}

/// Runs once after the next `proxy_get_shared_data` of `key` (any key if None) in `vm_id`.
pub(crate) struct GetHook {
    pub vm_id: String,
    pub key: Option<String>,
    pub run: Box<dyn FnOnce()>,
}

impl HarnessInner {
    pub fn new(start_nanos: u64) -> Self {
        HarnessInner {
            clock_nanos: Cell::new(start_nanos),
            shared_data: RefCell::new(HashMap::new()),
            next_cas: Cell::new(1),
            cas_mismatches: Cell::new(0),
            stats: RefCell::new(Stats::default()),
            get_hooks: RefCell::new(Vec::new()),
        }
    }

    pub fn shared_get(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared_data.borrow().get(vm_id).and_then(|map| map.get(key)).cloned()
    }

    /// Envoy's `SharedData::set`: a non-zero `cas` must match the stored one
    /// when the key exists; every write gets a fresh CAS token.
    pub fn shared_set(&self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> Result<(), ()> {
        let mut data = self.shared_data.borrow_mut();
        let map = data.entry(vm_id.to_string()).or_default();
        if let Some((_, current)) = map.get(key) {
            if cas != 0 && cas != *current {
                self.cas_mismatches.set(self.cas_mismatches.get() + 1);
                return Err(());
            }
        }
        let next = self.next_cas.get();
        self.next_cas.set(if next == u32::MAX { 1 } else { next + 1 });
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    /// Takes the hooks registered for `(vm_id, key)` so they run outside any borrow.
    pub fn take_get_hooks(&self, vm_id: &str, key: &str) -> Vec<GetHook> {
        let mut hooks = self.get_hooks.borrow_mut();
        let (matching, rest): (Vec<_>, Vec<_>) =
            hooks.drain(..).partition(|h| h.vm_id == vm_id && h.key.as_deref().is_none_or(|k| k == key));
        *hooks = rest;
        matching
    }
}

/// Where a paused direction stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// Nothing stopped: data flows through.
    No,
    /// The headers callback returned Pause: headers (and any body) are held.
    Headers,
    /// A body callback returned Pause: the body is buffered (headers may have gone).
    Body,
    /// The trailers callback returned Pause.
    Trailers,
}

/// One direction (request or response) of a stream, as Envoy's filter manager sees it.
#[derive(Debug)]
pub(crate) struct Direction {
    /// The header map as it stands (after the filter's edits). None before headers arrived.
    pub headers: Option<Headers>,
    /// Whether the filter can reach the header map: Envoy exposes it from the headers callback
    /// until that callback returns Continue or `continue_stream` is called (a body callback that
    /// releases paused headers leaves the map reachable, though edits no longer go out).
    pub exposed: bool,
    pub trailers: Option<Headers>,
    /// Data Envoy holds for this filter and has not forwarded.
    pub buffer: Vec<u8>,
    /// True while a body callback of this direction runs (the body buffer is readable).
    pub in_body_callback: bool,
    pub stopped: Stopped,
    /// end_of_stream came from the peer (with headers, a body chunk, or trailers).
    pub end_seen: bool,
    /// What the next hop (upstream or client) received.
    pub forwarded_headers: Option<Headers>,
    pub forwarded_body: Vec<u8>,
    pub forwarded_trailers: Option<Headers>,
    /// The end of stream was forwarded.
    pub complete: bool,
}

impl Direction {
    pub fn new() -> Self {
        Direction {
            headers: None,
            exposed: false,
            trailers: None,
            buffer: Vec::new(),
            in_body_callback: false,
            stopped: Stopped::No,
            end_seen: false,
            forwarded_headers: None,
            forwarded_body: Vec::new(),
            forwarded_trailers: None,
            complete: false,
        }
    }

    /// Forwards what is held: headers if not sent yet, the buffered body, and
    /// the trailers once they arrived; marks the end when the peer ended.
    pub fn forward(&mut self) {
        self.stopped = Stopped::No;
        if self.forwarded_headers.is_none() {
            self.forwarded_headers = Some(self.headers.clone().unwrap_or_default());
        }
        self.forwarded_body.append(&mut self.buffer);
        if let Some(trailers) = &self.trailers {
            self.forwarded_trailers = Some(trailers.clone());
        }
        if self.end_seen {
            self.complete = true;
        }
    }
}

/// One HTTP context (a stream) in a VM.
#[derive(Debug)]
pub(crate) struct StreamState {
    pub request: Direction,
    pub response: Direction,
    /// Properties this stream answers (set by the test or by the filter), by path.
    pub properties: HashMap<PropertyPath, Vec<u8>>,
    /// Dynamic metadata per filter namespace (`metadata.filter_metadata.<ns>`).
    pub metadata: BTreeMap<String, Value>,
    /// Route metadata per filter namespace (`xds.route_metadata.filter_metadata.<ns>`).
    pub route_metadata: BTreeMap<String, Value>,
    pub local_reply: Option<LocalReply>,
    /// A local reply was sent during the current VM call and not delivered yet (Envoy defers it).
    pub reply_pending: bool,
    /// The filter's own local reply is running through its response callbacks.
    pub encoding_local_reply: bool,
    /// proxy_continue_stream calls not yet applied (applied after the VM call, like Envoy).
    pub continue_request: bool,
    pub continue_response: bool,
    /// proxy_close_stream was called.
    pub closed: bool,
    pub finished: bool,
}

impl StreamState {
    pub fn new() -> Self {
        StreamState {
            request: Direction::new(),
            response: Direction::new(),
            properties: HashMap::new(),
            metadata: BTreeMap::new(),
            route_metadata: BTreeMap::new(),
            local_reply: None,
            reply_pending: false,
            encoding_local_reply: false,
            continue_request: false,
            continue_response: false,
            closed: false,
            finished: false,
        }
    }

    /// Envoy stops calling the filter once it replied locally or reset the stream.
    pub fn stopped(&self) -> bool {
        self.local_reply.is_some() || self.closed
    }
}

/// A gRPC call a filter dispatched (`proxy_grpc_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// The token the host returned; pass it to `answer_grpc_call` / `fail_grpc_call`.
    pub token: u32,
    /// The context that dispatched the call (the root context or a stream).
    pub context_id: u32,
    pub cluster: String,
    pub service: String,
    pub method: String,
    /// The request message (protobuf bytes, without gRPC framing).
    pub message: Vec<u8>,
    pub timeout_ms: u32,
    pub answered: bool,
}

/// The response to an HTTP call, readable during `proxy_on_http_call_response`.
#[derive(Debug, Clone)]
pub(crate) struct CallResponse {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

/// The exports the host calls back into.
#[derive(Clone)]
pub(crate) struct Guest {
    pub instance: Instance,
    pub memory: Memory,
    pub malloc: TypedFunc<i32, i32>,
}

/// Per-VM state, the `T` of the wasmtime `Store`.
pub(crate) struct HostState {
    pub harness: Rc<HarnessInner>,
    pub vm_id: String,
    pub plugin_name: String,
    /// The PluginConfig `root_id` (property `plugin_root_id`).
    pub root_id_name: String,
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub log_level: LogLevel,
    pub root_id: u32,
    /// The context host calls act on (the called context, or the one
    /// `proxy_set_effective_context` chose).
    pub effective: u32,
    /// The export currently running, for error messages.
    pub callback: &'static str,
    pub next_context_id: u32,
    pub streams: BTreeMap<u32, StreamState>,
    pub vm_properties: HashMap<PropertyPath, Vec<u8>>,
    pub vm_route_metadata: BTreeMap<String, Value>,
    pub logs: Vec<LogLine>,
    /// Harness diagnostics: why a host call was refused (shown when the VM traps).
    pub notes: Vec<String>,
    pub metric_ids: HashMap<u32, (MetricKind, String)>,
    pub next_metric_id: u32,
    pub http_calls: Vec<HttpCall>,
    pub next_token: u32,
    /// Cluster names http calls may use; None accepts every name.
    pub clusters: Option<Vec<String>>,
    pub call_response: Option<CallResponse>,
    pub grpc_calls: Vec<GrpcCall>,
    /// The message of a gRPC answer, readable (GrpcReceiveBuffer) during `proxy_on_grpc_receive`.
    pub grpc_response: Option<Vec<u8>>,
    pub foreign_calls: Vec<ForeignCall>,
    pub tick_period_ms: Option<u32>,
    pub random_state: u64,
    pub guest: Option<Guest>,
    /// Why the VM is dead (it trapped), if it is.
    pub dead: Option<String>,
    /// The module's import names, indexed by the counting wrappers (`crate::calls`).
    pub import_names: Vec<String>,
    /// How many times each host call happened (see `crate::calls`).
    pub host_calls: HashMap<crate::calls::CallSite, u64>,
}

impl HostState {
    pub fn note(&mut self, message: String) {
        self.notes
            .push(format!("{} (during {}, context {}): {message}", "aigw-harness", self.callback, self.effective));
    }
}
