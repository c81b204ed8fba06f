//! token-counter: counts tokens before forwarding, reads exact usage from
//! responses, enforces token rate limits shared by all Envoy workers
//! (reserve, then settle), and reports tokens, cost and latency.
//!
//! Wiring only: the shared skeleton (`aigw_shared::glue`) reads the request
//! body through the gate, [`exchange::Stream`] decides, and the glue below
//! carries it out. See README.md for the configuration and DESIGN.md for the
//! callbacks.

pub mod bpe;
pub mod config;
pub mod cost;
pub mod exchange;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod prompt;
pub mod remote;
pub mod tokenize;
pub mod usage;

use aigw_shared::body::{is_identity_encoding, is_json_content_type};
use aigw_shared::contract::{HEADER_BACKEND, STATE_ERROR_CODE, STATE_RESPONSE_WITHHELD};
use aigw_shared::gate::{BodyGate, GatePolicy, OnEncoded, OnOversize};
use aigw_shared::glue::{self, BodyReader, Head, Plugin};
use aigw_shared::host::{log, CapturedHost, Host, ProxyWasmHost};
use aigw_shared::outcome::Ending;
use aigw_shared::ratelimit_proto;
use aigw_shared::ErrorDialect;
use config::{Config, Store};
use exchange::{RemoteReservation, RequestAction, Stream};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};
use remote::{Health, Outbox, Settlement};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

aigw_shared::filter_entry_point!(TokenCounter);

/// How often a root context sends the settlements its streams queued.
const SETTLE_TICK: Duration = Duration::from_millis(20);

thread_local! {
    // Per VM (Wasm VMs are single-threaded).
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
    static HEALTH: RefCell<Health> = RefCell::new(Health::default());
    /// The cluster of the rate limit service, when a configuration uses one.
    static RLS_CLUSTER: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records a call's outcome for the log (one line per change of state).
fn record_health(ok: bool) {
    let cluster = RLS_CLUSTER.with(|c| c.borrow().clone()).unwrap_or_default();
    if let Some(line) = HEALTH.with(|h| h.borrow_mut().record(ok, &cluster)) {
        log(if ok { LogLevel::Info } else { LogLevel::Warn }, &line);
    }
}

/// Hands a stream's settlements to the root context.
fn queue_settlements(config: &Config, stream: &mut Stream) {
    let Store::Rls(store) = &config.store else { return };
    for (rule, message) in stream.take_remote_settlements() {
        let settlement =
            Settlement { cluster: store.cluster.clone(), timeout_ms: store.timeout_ms, rule: rule.clone(), message };
        if !OUTBOX.with(|outbox| outbox.borrow_mut().push(settlement)) {
            ProxyWasmHost.increment_counter(&metrics::rule(&rule, "settlements_dropped"), 1);
        }
    }
}

struct TokenCounter;

impl Plugin for TokenCounter {
    type Config = Config;
    const NAME: &'static str = "token-counter";
    fn parse(bytes: Option<&[u8]>) -> Result<Config, aigw_shared::config::ConfigError> {
        config::from_json(bytes)
    }
    fn summary(config: &Config) -> String {
        format!("{} budget rule(s), preload {}", config.rules.len(), config.preload)
    }
    fn on_configured(config: &Config) {
        if let Store::Rls(store) = &config.store {
            RLS_CLUSTER.with(|cluster| *cluster.borrow_mut() = Some(store.cluster.clone()));
        }
        if let Some(line) = exchange::prepare_vm(config, &ProxyWasmHost) {
            log(LogLevel::Info, &line);
        }
    }
    /// Settlements are made just before a stream is destroyed, and Envoy cancels a gRPC call
    /// made from that stream's context when it is: the root context sends them.
    fn tick_period(config: &Config) -> Option<Duration> {
        matches!(config.store, Store::Rls(_)).then_some(SETTLE_TICK)
    }
    fn on_tick(_config: &Config) {
        for settlement in OUTBOX.with(|outbox| outbox.borrow_mut().take_all()) {
            let sent = glue::dispatch_grpc(
                &settlement.cluster,
                ratelimit_proto::SERVICE,
                ratelimit_proto::METHOD,
                &settlement.message,
                Duration::from_millis(settlement.timeout_ms),
            );
            match sent {
                Ok(token) => OUTBOX.with(|outbox| outbox.borrow_mut().sent(token, settlement.rule)),
                Err(_) => {
                    ProxyWasmHost.increment_counter(&metrics::rule(&settlement.rule, "store_errors"), 1);
                    record_health(false);
                }
            }
        }
    }
    fn on_root_grpc_response(_config: &Config, token_id: u32, status_code: u32) {
        let Some(rule) = OUTBOX.with(|outbox| outbox.borrow_mut().answered(token_id)) else { return };
        if status_code != 0 {
            ProxyWasmHost.increment_counter(&metrics::rule(&rule, "store_errors"), 1);
        }
        record_health(status_code == 0);
    }
    fn http_context(config: &Rc<Config>) -> Box<dyn HttpContext> {
        let config = config.clone();
        Box::new(Filter {
            config,
            gate: BodyGate::default(),
            dialect: ErrorDialect::OpenAi,
            stream: None,
            declared_length: 0,
            host: CapturedHost::default(),
            reserving: Vec::new(),
            calls: Vec::new(),
            answers: Vec::new(),
            held: None,
            body_held: false,
            observed: false,
        })
    }
}

struct Filter {
    config: Rc<Config>,
    gate: BodyGate,
    dialect: ErrorDialect,
    stream: Option<Stream>,
    /// The request's `content-length` (read with the headers: Envoy exposes them only then).
    declared_length: u64,
    host: CapturedHost,
    /// `store: rls`: reservation calls in flight (token, hit position), the
    /// calls, the answers so far, and the request decision waiting for them
    /// (with the body's size).
    reserving: Vec<(u32, usize)>,
    calls: Vec<RemoteReservation>,
    answers: Vec<(usize, Option<Vec<u8>>)>,
    held: Option<(RequestAction, usize)>,
    /// A request body callback returned Pause while the answers were awaited.
    body_held: bool,
    /// The exchange was settled and observed (at the end of the response): `on_log` then
    /// has nothing left to do, and must not count the same error twice.
    observed: bool,
}

impl Filter {
    /// Carries out a request decision (`buffered`: the body's size when it was read).
    fn apply(&mut self, action: RequestAction, buffered: usize) -> Action {
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let calls = stream.take_remote_reservations();
        if let (false, Store::Rls(store)) = (calls.is_empty(), &self.config.store) {
            // The body stays paused (never the headers) until every answer is in.
            for call in &calls {
                let sent = glue::dispatch_grpc(
                    &store.cluster,
                    ratelimit_proto::SERVICE,
                    ratelimit_proto::METHOD,
                    &call.message,
                    Duration::from_millis(store.timeout_ms),
                );
                match sent {
                    Ok(token) => self.reserving.push((token, call.position)),
                    Err(_) => self.answers.push((call.position, None)),
                }
            }
            self.calls = calls;
            if !self.reserving.is_empty() {
                self.held = Some((action, buffered));
                self.body_held = true;
                return Action::Pause;
            }
            return self.decide_remote(action, buffered);
        }
        self.conclude(action, buffered)
    }

    /// Every reservation answer is in: decide, and carry it out.
    fn decide_remote(&mut self, action: RequestAction, buffered: usize) -> Action {
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let answers = std::mem::take(&mut self.answers);
        let calls = std::mem::take(&mut self.calls);
        record_health(answers.iter().all(|(_, answer)| answer.is_some()));
        let action = stream.remote_answers(&self.config, &self.host, &calls, &answers).unwrap_or(action);
        self.conclude(action, buffered)
    }

    fn conclude(&mut self, action: RequestAction, buffered: usize) -> Action {
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let store = if self.config.store == Store::SharedData { "shared data" } else { "rate limit service" };
        for rule in stream.take_store_errors() {
            log(LogLevel::Warn, &format!("token-counter: rule {rule}: {store} unavailable or contended"));
        }
        // A rejection returns what the other rules reserved.
        queue_settlements(&self.config, stream);
        glue::apply_request(&stream.decision(action), buffered, self.dialect)
    }

    /// Estimates a body the filter does not parse from its size.
    fn estimate(&mut self, size: u64) -> Action {
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let action = stream.unparsed_body(&self.config, &self.host, size);
        self.apply(action, 0)
    }

    fn finish(&mut self, completed: bool) {
        if std::mem::replace(&mut self.observed, true) {
            return;
        }
        let withheld = self.get_property(vec![STATE_RESPONSE_WITHHELD]).is_some_and(|value| !value.is_empty());
        let text = |bytes: Option<Vec<u8>>| bytes.and_then(|b| String::from_utf8(b).ok());
        let error_code = text(self.get_property(vec![STATE_ERROR_CODE]));
        let code_details = text(self.get_property(vec!["response", "code_details"]));
        let response_code = self.get_property(vec!["response", "code"]).and_then(|b| <[u8; 8]>::try_from(b).ok());
        let Some(stream) = self.stream.as_mut() else { return };
        let outcome = stream.finish(&self.config, &self.host, completed, withheld);
        queue_settlements(&self.config, stream);
        let ending = Ending {
            status: stream.status().or(response_code.map(u64::from_le_bytes).and_then(|c| u32::try_from(c).ok())),
            gateway_error_code: error_code.as_deref(),
            code_details: code_details.as_deref(),
            facts: stream.response_facts(),
        };
        let observation = observe::observe(&ending, outcome.as_ref().map(|o| &o.usage), stream.ttft_ms());
        if let Some(error) = observation.error {
            self.host.increment_counter(&metrics::error(error.name()), 1);
        }
        let usage_state = outcome.iter().flat_map(|outcome| outcome.filter_state());
        for (name, value) in usage_state.chain(observation.filter_state) {
            self.set_property(vec![name], Some(value.as_bytes()));
        }
    }
}

impl BodyReader for Filter {
    fn gate(&mut self) -> &mut BodyGate {
        &mut self.gate
    }
    fn dialect(&self) -> ErrorDialect {
        self.dialect
    }
    fn on_request_complete(&mut self, size: usize) -> Action {
        let body = glue::request_body_bytes(size);
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let action = stream.request_body(&self.config, &self.host, &body);
        self.apply(action, size)
    }
    fn on_request_oversize(&mut self, size: usize) -> Action {
        // Too large to parse: estimated from its size, never skipped.
        self.estimate(self.declared_length.max(size as u64))
    }
}

impl Context for Filter {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(index) = self.reserving.iter().position(|(token, _)| *token == token_id) else { return };
        let (_, position) = self.reserving.swap_remove(index);
        let answer = if status_code == 0 {
            hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size).ok().flatten()
        } else {
            None
        };
        self.answers.push((position, answer));
        if !self.reserving.is_empty() {
            return;
        }
        if let Some((action, buffered)) = self.held.take() {
            // Resumed only if a body callback is paused (a request estimated at its headers may
            // have had no body callback yet).
            if self.decide_remote(action, buffered) == Action::Continue && self.body_held {
                self.body_held = false;
                glue::resume_request();
            }
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let head = Head::read(end_of_stream);
        self.dialect = head.dialect();
        self.declared_length = head.gate_view().declared_length().unwrap_or(0);
        self.host = head.host.clone();
        let host = self.host.clone();
        let mut stream = Stream::new(&self.config, &host, &head.path);
        if end_of_stream {
            stream.bodiless(&self.config, &host);
        }
        self.stream = Some(stream);
        // Not JSON (multipart uploads, audio) or compressed: estimated from its
        // declared size without buffering it.
        let readable = head.content_type.as_deref().is_none_or(|ct| is_json_content_type(Some(ct)))
            && is_identity_encoding(head.content_encoding.as_deref());
        let policy = GatePolicy {
            max_body_bytes: self.config.max_body_bytes,
            on_encoded: OnEncoded::Pass,
            on_oversize: OnOversize::Release,
        };
        let action = glue::open_gate(self, &head, readable, policy);
        if action == Action::Continue && !end_of_stream && !readable {
            let action = self.estimate(self.declared_length);
            if !self.reserving.is_empty() {
                // Asked of the rate limit service: the headers still continue (never paused); the body
                // is held below until the answers are in.
                self.body_held = false;
                return Action::Continue;
            }
            return action;
        }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.reserving.is_empty() {
            self.body_held = true;
            return Action::Pause;
        }
        glue::request_body(self, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if !self.reserving.is_empty() {
            self.body_held = true;
            return Action::Pause;
        }
        glue::request_trailers(self)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let host = self.host.clone();
        let status = self.get_http_response_header(":status").and_then(|value| value.parse().ok());
        let content_type = self.get_http_response_header("content-type");
        let content_encoding = self.get_http_response_header("content-encoding");
        let backend = self.get_http_response_header(HEADER_BACKEND);
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        stream.answered_by(backend);
        let rate_headers = stream.rate_headers(&self.config, &host);
        let drop_length =
            stream.response_headers(&self.config, status, content_type.as_deref(), content_encoding.as_deref());
        for (name, value) in rate_headers.map(|headers| headers.pairs()).unwrap_or_default() {
            self.set_http_response_header(name, Some(&value));
        }
        if drop_length {
            self.set_http_response_header("content-length", None);
        }
        if end_of_stream {
            self.finish(true);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let chunk = glue::response_body_bytes(body_size);
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        if let Some(bytes) = stream.response_body(&self.host, &chunk, end_of_stream) {
            glue::replace_response_body(body_size, &bytes);
        }
        if end_of_stream {
            self.finish(true);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // The body ended without end_of_stream: read what is left for usage.
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.response_body(&self.host, &[], true);
        }
        self.finish(true);
        Action::Continue
    }

    fn on_log(&mut self) {
        // Streams reset before their end still settle (or release) here.
        self.finish(false);
    }
}
