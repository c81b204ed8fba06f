//! The filter skeleton: the proxy-wasm side every aigw filter shares.
//!
//! - [`PluginRoot`]: the root context. It parses the configuration, logs a
//!   one-line summary or the field path of what is wrong (and refuses the
//!   configuration), and creates the filter's HTTP contexts. Policy when no
//!   valid configuration exists: Envoy refuses a plugin whose `on_configure`
//!   fails, so no stream should reach one; if one does, [`Unconfigured`]
//!   answers 500 in the client's dialect (fail closed, never unchecked).
//! - [`BodyReader`] with [`request_body`] and [`request_trailers`]: the
//!   request-body gate ([`crate::gate`]) wired to the callbacks, so a body
//!   completes at end of stream or trailers in every filter alike.
//! - [`RequestDecision`] and [`apply_request`]: what a pure module decided
//!   about a complete request (headers, body with its `content-length`, filter
//!   state, route cache, or a local reply) turned into host calls.
//! - [`reply`]: every local reply, in the client's dialect.

use crate::compose::{self, Direction};
use crate::config::ConfigError;
use crate::gate::{BodyGate, GatePolicy, GateStep, Opening, RequestHead};
use crate::host::{log, CapturedHost};
use crate::{ApiError, ErrorDialect};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

/// A filter, as the skeleton sees it.
pub trait Plugin: 'static {
    type Config: 'static;
    /// The filter's name in logs: `pii-mask`.
    const NAME: &'static str;
    /// Parses and validates the plugin configuration.
    fn parse(bytes: Option<&[u8]>) -> Result<Self::Config, ConfigError>;
    /// One line for the log when the configuration is accepted. Never secrets.
    fn summary(config: &Self::Config) -> String;
    /// Work done once per VM and configuration (tables, shared-data slots).
    fn on_configured(_config: &Self::Config) {}
    /// The HTTP context of one stream.
    fn http_context(config: &Rc<Self::Config>) -> Box<dyn HttpContext>;
    /// How often this configuration needs [`Plugin::on_tick`]; `None`: never. The root context
    /// does work that must outlive the stream that queued it (Envoy cancels a stream's calls
    /// when the stream is destroyed): budget settlements, cache writes.
    fn tick_period(_config: &Self::Config) -> Option<Duration> {
        None
    }
    /// The root context's work on a tick (state lives in the VM's thread-locals).
    fn on_tick(_config: &Self::Config) {}
    /// The answer to an HTTP call made from [`Plugin::on_tick`]: its `:status` and body
    /// (`None` for both when the call failed without a response).
    fn on_root_http_response(_config: &Self::Config, _token_id: u32, _status: Option<&str>, _body: Option<&[u8]>) {}
    /// The answer to a gRPC call made from [`Plugin::on_tick`] (0: OK).
    fn on_root_grpc_response(_config: &Self::Config, _token_id: u32, _status_code: u32) {}
}

/// The root context of a [`Plugin`].
pub struct PluginRoot<P: Plugin> {
    config: Option<Rc<P::Config>>,
    plugin: PhantomData<P>,
}

/// A new root context for `P`: one per VM and plugin configuration.
pub fn root<P: Plugin>() -> Box<dyn RootContext> {
    Box::new(PluginRoot::<P> { config: None, plugin: PhantomData })
}

impl<P: Plugin> Context for PluginRoot<P> {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(config) = self.config.clone() else { return };
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size);
        P::on_root_http_response(&config, token_id, status.as_deref(), body.as_deref());
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, _response_size: usize) {
        if let Some(config) = &self.config {
            P::on_root_grpc_response(config, token_id, status_code);
        }
    }
}

impl<P: Plugin> RootContext for PluginRoot<P> {
    fn on_configure(&mut self, _size: usize) -> bool {
        match P::parse(crate::compose::plugin_configuration().as_deref()) {
            Ok(config) => {
                P::on_configured(&config);
                if let Some(period) = P::tick_period(&config) {
                    compose::set_tick_period(period);
                }
                log(LogLevel::Info, &format!("{}: configured: {}", P::NAME, P::summary(&config)));
                self.config = Some(Rc::new(config));
                true
            }
            Err(err) => {
                log(LogLevel::Error, &format!("{}: invalid configuration: {err}", P::NAME));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(config) = &self.config {
            P::on_tick(config);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.config {
            Some(config) => P::http_context(config),
            None => Box::new(Unconfigured { name: P::NAME }),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A stream that reached a filter without a valid configuration: refused.
pub struct Unconfigured {
    name: &'static str,
}

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let err = ApiError::internal(format!("The {} filter has no valid configuration.", self.name));
        reply(&err, ErrorDialect::from_path(&path), &[])
    }
}

/// The request headers, copied once at their callback: the gate and the
/// filters read them from here, also later (Envoy exposes the request headers
/// only until their callback continues).
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_length: Option<String>,
    pub end_of_stream: bool,
    /// Every request header, for logic that runs when the body is complete.
    pub host: CapturedHost,
}

impl Head {
    /// Reads the head of the current request (at its headers callback).
    pub fn read(end_of_stream: bool) -> Self {
        let host = compose::request_headers();
        let header = |name: &str| host.header(name).map(str::to_string);
        Head {
            method: header(":method").unwrap_or_default(),
            path: header(":path").unwrap_or_default(),
            content_type: header("content-type"),
            content_encoding: header("content-encoding"),
            content_length: header("content-length"),
            end_of_stream,
            host,
        }
    }

    pub fn gate_view(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.method,
            path: &self.path,
            content_encoding: self.content_encoding.as_deref(),
            content_length: self.content_length.as_deref(),
            end_of_stream: self.end_of_stream,
        }
    }

    pub fn dialect(&self) -> ErrorDialect {
        ErrorDialect::from_path(&self.path)
    }
}

/// A filter that reads request bodies through the gate.
pub trait BodyReader {
    fn gate(&mut self) -> &mut BodyGate;
    /// The client's error dialect (from the request path).
    fn dialect(&self) -> ErrorDialect;
    /// The whole body is buffered (`size` bytes): decide.
    fn on_request_complete(&mut self, size: usize) -> Action;
    /// The body passed the gate's limit with [`crate::gate::OnOversize::Release`].
    fn on_request_oversize(&mut self, _size: usize) -> Action {
        Action::Continue
    }
    /// Called before a local reply the gate makes (e.g. to release what the filter holds).
    fn on_gate_reject(&mut self, _err: &ApiError) {}
}

/// Opens the gate at the request headers. The headers always continue unless
/// the request is refused (the module docs of [`crate::gate`] say why). When
/// the body is collected, `content-length` goes now, the last moment a header
/// can change: the body may be rewritten, and Envoy's `buffer` filter sets the
/// length of the final body.
pub fn open_gate<F: BodyReader + ?Sized>(filter: &mut F, head: &Head, wants_body: bool, policy: GatePolicy) -> Action {
    match filter.gate().open(&head.gate_view(), wants_body, policy) {
        Opening::Pass => Action::Continue,
        Opening::Collect => {
            if head.content_length.is_some() {
                compose::set_request_header("content-length", None);
            }
            Action::Continue
        }
        Opening::Reject(err) => {
            filter.on_gate_reject(&err);
            reply(&err, filter.dialect(), &[])
        }
    }
}

/// `on_http_request_body` of a [`BodyReader`].
pub fn request_body<F: BodyReader + ?Sized>(filter: &mut F, body_size: usize, end_of_stream: bool) -> Action {
    let step = filter.gate().on_body(body_size, end_of_stream);
    follow(filter, step)
}

/// `on_http_request_trailers` of a [`BodyReader`]: trailers complete the body.
pub fn request_trailers<F: BodyReader + ?Sized>(filter: &mut F) -> Action {
    let step = filter.gate().on_trailers();
    follow(filter, step)
}

fn follow<F: BodyReader + ?Sized>(filter: &mut F, step: GateStep) -> Action {
    match step {
        GateStep::Pass => Action::Continue,
        GateStep::Wait => Action::Pause,
        GateStep::Complete { size } => filter.on_request_complete(size),
        GateStep::Oversize { size } => filter.on_request_oversize(size),
        GateStep::Reject(err) => {
            filter.on_gate_reject(&err);
            reply(&err, filter.dialect(), &[])
        }
    }
}

/// The buffered request body (`size` bytes), or empty if the host has none.
pub fn request_body_bytes(size: usize) -> Vec<u8> {
    compose::body_bytes(Direction::Request, size)
}

/// The bytes of the current response body callback (`size` bytes).
pub fn response_body_bytes(size: usize) -> Vec<u8> {
    compose::body_bytes(Direction::Response, size)
}

/// Replaces the bytes of the current response body callback (`size` bytes) by `body`.
pub fn replace_response_body(size: usize, body: &[u8]) {
    compose::replace_body(Direction::Response, size, body);
}

/// Resumes a request this filter paused (for a call to another service).
pub fn resume_request() {
    compose::resume_request();
}

/// Asks for the root context's `on_tick` every `period`.
pub fn set_tick_period(period: Duration) {
    compose::set_tick_period(period);
}

/// Sends a local reply that is not an error (a cached answer, a listing).
/// Returns the action for the callback.
pub fn send_response(status: u32, headers: Vec<(&str, &str)>, body: &[u8]) -> Action {
    compose::send_response(status, headers, body);
    Action::Pause
}

/// What a filter's pure logic decided about a complete request.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestDecision {
    /// Forward, after these edits.
    Forward(RequestEdits),
    /// Answer locally; the request goes no further.
    Reply { error: ApiError, headers: Vec<(String, String)>, filter_state: Vec<(String, Vec<u8>)> },
}

impl RequestDecision {
    pub fn forward() -> Self {
        RequestDecision::Forward(RequestEdits::default())
    }

    pub fn reply(error: ApiError) -> Self {
        RequestDecision::Reply { error, headers: Vec::new(), filter_state: Vec::new() }
    }
}

/// Edits to a request that goes on, once its body was read.
///
/// There are no header edits here on purpose: Envoy stops exposing the
/// request headers once their callback continued (a write then fails and the
/// SDK aborts the VM). What must reach Envoy's routing or the upstream request
/// after the body was read goes through filter state: routes match it
/// (`filter_state` matcher) and `request_headers_to_add` can render it
/// (`%FILTER_STATE(wasm.<name>:PLAIN)%`). Path and header changes that depend
/// on the backend are made by model-router's upstream instance in its headers
/// callback.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestEdits {
    /// A new body. Its `content-length` was removed when the gate opened;
    /// Envoy's `buffer` filter sets it again from the final body.
    pub body: Option<Vec<u8>>,
    /// Filter state to set (`wasm.<name>` for Envoy's access logs and tags).
    pub filter_state: Vec<(String, Vec<u8>)>,
    /// Envoy must pick the route again (routing headers changed).
    pub clear_route_cache: bool,
}

impl RequestEdits {
    pub fn set_state(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.filter_state.push((name.into(), value.into()));
    }
}

/// Carries out a decision about a complete request of `buffered` bytes.
pub fn apply_request(decision: &RequestDecision, buffered: usize, dialect: ErrorDialect) -> Action {
    match decision {
        RequestDecision::Forward(edits) => {
            apply_edits(edits, buffered);
            Action::Continue
        }
        RequestDecision::Reply { error, headers, filter_state } => {
            set_filter_state(filter_state);
            let extra: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            reply(error, dialect, &extra)
        }
    }
}

/// Applies request edits (body, filter state, route cache).
pub fn apply_edits(edits: &RequestEdits, buffered: usize) {
    if let Some(body) = &edits.body {
        replace_request_body(buffered, body);
    }
    set_filter_state(&edits.filter_state);
    if edits.clear_route_cache && hostcalls::call_foreign_function("clear_route_cache", Some(&[])).is_err() {
        log(LogLevel::Warn, "clear_route_cache is unavailable; the route chosen before the body was read stays");
    }
}

fn set_filter_state(state: &[(String, Vec<u8>)]) {
    for (name, value) in state {
        let _ = hostcalls::set_property(vec![name.as_str()], Some(value));
    }
}

/// Replaces the whole buffered request body (`buffered` bytes). The gate
/// removed `content-length` when it started collecting; Envoy's `buffer`
/// filter after the aigw filters sets it from the final body.
pub fn replace_request_body(buffered: usize, body: &[u8]) {
    compose::replace_body(Direction::Request, buffered, body);
}

/// Sends `err` as a local reply in the client's dialect, with `extra_headers`
/// (e.g. rate-limit headers). Returns the action for the callback.
pub fn reply(err: &ApiError, dialect: ErrorDialect, extra_headers: &[(&str, &str)]) -> Action {
    let own = err.headers();
    let mut headers: Vec<(&str, &str)> = own.iter().map(|(name, value)| (*name, value.as_str())).collect();
    // The error's own headers win: a repeated `content-type` would reach the
    // client (and the filters before it) as two values.
    let extra = extra_headers.iter().filter(|(name, _)| !own.iter().any(|(mine, _)| mine.eq_ignore_ascii_case(name)));
    headers.extend(extra);
    // Named for the error-type metric and traces (filter state is read after the reply, in `on_log`).
    let _ = hostcalls::set_property(vec![crate::contract::STATE_ERROR_CODE], Some(err.code.as_bytes()));
    send_response(err.status, headers, &err.body_for(dialect))
}

/// A call to another service (moderation, retrieval) through an Envoy cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct SideCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// Dispatches a side call; the answer arrives in `on_http_call_response` with the returned token.
pub fn dispatch(call: &SideCall) -> Option<u32> {
    let headers: Vec<(&str, &str)> = call.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let token = hostcalls::dispatch_http_call(&call.cluster, headers, Some(&call.body), vec![], call.timeout).ok()?;
    compose::dispatched(token);
    Some(token)
}

/// Dispatches a unary gRPC call; the answer arrives in `on_grpc_call_response` with the returned token.
pub fn dispatch_grpc(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<u32, proxy_wasm::types::Status> {
    let token = hostcalls::dispatch_grpc_call(cluster, service, method, vec![], Some(message), timeout)?;
    compose::dispatched(token);
    Ok(token)
}

/// The Wasm entry point of a filter crate and its `new_root()` (which the
/// harness and native tests call): `aigw_shared::filter_entry_point!(PiiMask);`.
/// The entry point (`_initialize`) is only built for Wasm, and only with the
/// crate's `entry-point` feature (on by default): natively the crate is a
/// library whose logic the tests call directly, and the one-pass build
/// (`filters/aigw`) links the filter crates without their entry points.
#[macro_export]
macro_rules! filter_entry_point {
    ($plugin:ty) => {
        #[cfg(all(target_arch = "wasm32", feature = "entry-point"))]
        proxy_wasm::main! {{
            proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
            proxy_wasm::set_root_context(|_| $crate::glue::root::<$plugin>());
        }}

        /// A new root context: one per VM and plugin configuration.
        pub fn new_root() -> Box<dyn proxy_wasm::traits::RootContext> {
            $crate::glue::root::<$plugin>()
        }
    };
}
