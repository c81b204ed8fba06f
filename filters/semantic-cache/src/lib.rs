//! semantic-cache: answers repeated and reworded chat questions from Envoy
//! shared data without calling the model (OpenAI chat completions and
//! Anthropic messages).
//!
//! Wiring only: the shared skeleton (`aigw_shared::glue`) reads the request
//! body through the gate, [`exchange::Exchange`] decides (forward, call the
//! embeddings endpoint, or answer from the cache), and the glue below carries
//! it out. With `store.chroma`, the same steps include calls to a Chroma
//! server shared by several replicas ([`chroma`]). See README.md for the
//! configuration and DESIGN.md for the design.

pub mod admin;
pub mod answer;
pub mod chroma;
pub mod config;
pub mod embedding;
pub mod exchange;
pub mod key;
pub mod metrics;
pub mod store;

use aigw_shared::api::ApiShape;
use aigw_shared::contract::{STATE_CACHE, STATE_CACHE_SIMILARITY};
use aigw_shared::gate::{BodyGate, GatePolicy, OnEncoded, OnOversize};
use aigw_shared::glue::{self, BodyReader, Head, Plugin, SideCall};
use aigw_shared::host::{CapturedHost, ProxyWasmHost};
use aigw_shared::ErrorDialect;
use config::Config;
use exchange::{Exchange, Step};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

aigw_shared::filter_entry_point!(SemanticCache);

/// How often a VM's root context sends its queued writes to the external store.
const WRITE_TICK: Duration = Duration::from_millis(50);

/// The root context's writer of `store.chroma`: the entries streams queued
/// (`chroma::queue`) leave in batches on a tick, one call in flight.
#[derive(Default)]
struct RootWrites {
    writer: chroma::Writer,
    /// The write call in flight.
    call: Option<u32>,
}

thread_local! {
    // Per VM (Wasm VMs are single-threaded).
    static ROOT_WRITES: RefCell<RootWrites> = RefCell::new(RootWrites::default());
}

/// Sends the writer's next call, if any and none is in flight.
fn send_writes(store: &config::Chroma) {
    let Some(call) = ROOT_WRITES.with(|w| w.borrow_mut().writer.on_tick(store)) else { return };
    let side =
        SideCall { cluster: store.cluster.clone(), headers: call.headers, body: call.body, timeout: store.timeout };
    let token = glue::dispatch(&side);
    let not_sent = ROOT_WRITES.with(|w| {
        let mut w = w.borrow_mut();
        w.call = token;
        token.is_none().then(|| w.writer.not_sent())
    });
    if let Some(written) = not_sent {
        count_written(&written);
    }
}

fn count_written(written: &chroma::Written) {
    let host = &ProxyWasmHost;
    match written {
        chroma::Written::Resolved => {}
        chroma::Written::Entries(n) => {
            aigw_shared::host::Host::increment_counter(host, metrics::STORE_WRITTEN, *n as u64)
        }
        chroma::Written::Failed(err, _) => {
            aigw_shared::host::Host::increment_counter(host, &metrics::store_failed(err.reason()), 1)
        }
    }
}

struct SemanticCache;

impl Plugin for SemanticCache {
    type Config = Config;
    const NAME: &'static str = "semantic-cache";
    fn parse(bytes: Option<&[u8]>) -> Result<Config, aigw_shared::config::ConfigError> {
        config::from_json(bytes)
    }
    fn summary(config: &Config) -> String {
        let semantic = match &config.semantic {
            Some(semantic) => format!("semantic via cluster {} (threshold {})", semantic.cluster, semantic.threshold),
            None => "exact only".to_string(),
        };
        let store = match &config.store {
            Some(chroma) => {
                format!("shared data + chroma collection {} via cluster {}", chroma.collection, chroma.cluster)
            }
            None => "shared data".to_string(),
        };
        format!(
            "{} entries, {} bytes, ttl {} s, {semantic}, store {store}, admin path {}",
            config.max_entries,
            config.max_bytes,
            config.ttl_seconds,
            if config.admin.is_some() { "on" } else { "off" }
        )
    }
    fn on_configured(config: &Config) {
        // The index key exists before traffic flows (Envoy has no conditional create).
        store::Cache::new(&ProxyWasmHost, config.max_entries).ensure_index();
    }
    /// Writes to the external store leave from the root context: a call made from a stream's
    /// context would be cancelled when the stream ends, and waiting for it would hold the response.
    fn tick_period(config: &Config) -> Option<Duration> {
        config.store.is_some().then_some(WRITE_TICK)
    }
    fn on_tick(config: &Config) {
        if let Some(store) = &config.store {
            send_writes(store);
        }
    }
    fn on_root_http_response(config: &Config, token_id: u32, status: Option<&str>, body: Option<&[u8]>) {
        let Some(store) = &config.store else { return };
        let written = ROOT_WRITES.with(|w| {
            let mut w = w.borrow_mut();
            if w.call != Some(token_id) {
                return None;
            }
            w.call = None;
            Some(w.writer.on_response(status, body))
        });
        let Some(written) = written else { return };
        count_written(&written);
        if written == chroma::Written::Resolved {
            send_writes(store); // the queued entries, at once
        }
    }
    fn http_context(config: &Rc<Config>) -> Box<dyn HttpContext> {
        Box::new(Filter {
            config: config.clone(),
            gate: BodyGate::default(),
            dialect: ErrorDialect::OpenAi,
            host: CapturedHost::default(),
            exchange: None,
            embedding_call: None,
            store_call: None,
            admin_clear: None,
            response_done: false,
        })
    }
}

struct Filter {
    config: Rc<Config>,
    gate: BodyGate,
    dialect: ErrorDialect,
    host: CapturedHost,
    exchange: Option<Exchange>,
    embedding_call: Option<u32>,
    /// The pending external store call (a lookup on the request side, a write on the response side).
    store_call: Option<u32>,
    /// The admin path is clearing the external store (the request is held until it answers).
    admin_clear: Option<admin::StoreClear>,
    response_done: bool,
}

thread_local! {
    // Wasm VMs are single-threaded: one table per VM.
    static GAUGE_IDS: RefCell<HashMap<&'static str, u32>> = RefCell::new(HashMap::new());
}

fn set_gauge(name: &'static str, value: u64) {
    let id = GAUGE_IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(MetricType::Gauge, name).ok()?;
        ids.insert(name, id);
        Some(id)
    });
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
    }
}

impl Filter {
    /// Carries out a step of the exchange.
    fn carry(&mut self, step: Step) -> Action {
        let Some(exchange) = self.exchange.as_mut() else { return Action::Continue };
        if let Some((entries, bytes)) = exchange.usage.take() {
            set_gauge(metrics::ENTRIES, entries);
            set_gauge(metrics::BYTES, bytes);
        }
        match step {
            Step::Forward => {
                let _ = hostcalls::set_property(vec![STATE_CACHE], Some(exchange.label().as_bytes()));
                Action::Continue
            }
            Step::Embed { headers, body } => {
                let Some(semantic) = &self.config.semantic else { return Action::Continue };
                let call = SideCall { cluster: semantic.cluster.clone(), headers, body, timeout: semantic.timeout };
                match glue::dispatch(&call) {
                    Some(token) => {
                        self.embedding_call = Some(token);
                        Action::Pause
                    }
                    None => {
                        let next = exchange.embedding_not_sent(&self.host);
                        self.carry(next)
                    }
                }
            }
            Step::Store(call) => {
                if self.dispatch_store(call) {
                    return Action::Pause;
                }
                let next = match self.exchange.as_mut() {
                    Some(exchange) => exchange.store_not_sent(&self.host),
                    None => Step::Forward,
                };
                self.carry(next)
            }
            Step::Hit(reply) => {
                let similarity = format!("{:.3}", reply.similarity);
                let _ = hostcalls::set_property(vec![STATE_CACHE], Some(b"hit"));
                let _ = hostcalls::set_property(vec![STATE_CACHE_SIMILARITY], Some(similarity.as_bytes()));
                let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                glue::send_response(200, headers, &reply.body)
            }
        }
    }

    /// Sends a call to the external store; false when it could not be sent.
    fn dispatch_store(&mut self, call: chroma::StoreCall) -> bool {
        let Some(store) = &self.config.store else { return false };
        let side =
            SideCall { cluster: store.cluster.clone(), headers: call.headers, body: call.body, timeout: store.timeout };
        self.store_call = glue::dispatch(&side);
        self.store_call.is_some()
    }

    /// Answers the admin path.
    fn admin(&mut self, head: &Head, token: &str) -> Action {
        let header = |name: &str| head.host.header(name).map(str::to_string);
        match admin::handle(token, &head.method, &header, &ProxyWasmHost, self.config.max_entries) {
            Ok(cleared) => {
                aigw_shared::host::Host::increment_counter(
                    &ProxyWasmHost,
                    metrics::ADMIN_CLEARED,
                    cleared.cleared as u64,
                );
                let Some(chroma) = self.config.store.clone() else {
                    return admin_reply(200, &cleared.body());
                };
                let (clear, step) = admin::StoreClear::start(&chroma, cleared);
                self.admin_clear = Some(clear);
                self.carry_admin(step)
            }
            Err(err) => glue::reply(&err, self.dialect, &[]),
        }
    }

    /// Carries out a step of clearing the external store from the admin path.
    fn carry_admin(&mut self, step: admin::AdminStep) -> Action {
        match step {
            admin::AdminStep::Call(call) => {
                if self.dispatch_store(call) {
                    return Action::Pause;
                }
                let next = match &self.admin_clear {
                    Some(clear) => clear.failed(chroma::StoreError::Dispatch),
                    None => return Action::Continue,
                };
                self.carry_admin(next)
            }
            admin::AdminStep::Reply { status, body, failed } => {
                self.admin_clear = None;
                if let Some(err) = failed {
                    aigw_shared::host::Host::increment_counter(&ProxyWasmHost, &metrics::store_failed(err.reason()), 1);
                }
                admin_reply(status, &body)
            }
        }
    }
}

/// The admin path's JSON reply (a local reply: nothing is forwarded).
fn admin_reply(status: u32, body: &[u8]) -> Action {
    let headers = vec![("content-type", "application/json")];
    glue::send_response(status, headers, body)
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
        let Some(exchange) = self.exchange.as_mut() else { return Action::Continue };
        let step = exchange.on_request(&self.config, &self.host, Some(&body));
        self.carry(step)
    }
    fn on_request_oversize(&mut self, _size: usize) -> Action {
        let Some(exchange) = self.exchange.as_mut() else { return Action::Continue };
        let step = exchange.on_request(&self.config, &self.host, None);
        self.carry(step)
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if self.store_call == Some(token_id) {
            self.store_call = None;
            let status = self.get_http_call_response_header(":status");
            let body = self.get_http_call_response_body(0, body_size);
            if let (Some(clear), Some(chroma)) = (self.admin_clear.as_mut(), self.config.store.clone()) {
                let step = clear.on_response(&chroma, status.as_deref(), body.as_deref());
                self.carry_admin(step);
                return;
            }
            let Some(exchange) = self.exchange.as_mut() else { return };
            let step = exchange.on_store(&self.config, &self.host, status.as_deref(), body.as_deref());
            if self.carry(step) == Action::Continue {
                glue::resume_request();
            }
            return;
        }
        if self.embedding_call != Some(token_id) {
            return;
        }
        self.embedding_call = None;
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size);
        let Some(exchange) = self.exchange.as_mut() else { return };
        let step = exchange.on_embedding(&self.config, &self.host, status.as_deref(), body.as_deref());
        if self.carry(step) == Action::Continue {
            glue::resume_request();
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let head = Head::read(end_of_stream);
        self.dialect = head.dialect();
        self.host = head.host.clone();
        if let Some(admin) = self.config.admin.clone() {
            if admin::is_admin_path(&admin.path, &head.path) {
                return self.admin(&head, &admin.token);
            }
        }
        // Only the APIs it can replay are held: the rest pass untouched, unbuffered.
        let shape = ApiShape::from_path(&head.path).filter(|shape| key::is_cacheable(*shape));
        // The cache never refuses a request: what it cannot read passes as a bypass.
        let policy = GatePolicy {
            max_body_bytes: self.config.max_body_bytes,
            on_encoded: OnEncoded::Pass,
            on_oversize: OnOversize::Release,
        };
        let action = glue::open_gate(self, &head, shape.is_some(), policy);
        if let Some(shape) = shape.filter(|_| self.gate.is_collecting()) {
            let cache_control = head.host.header("cache-control");
            self.exchange = Some(Exchange::new(&self.config, &self.host, shape, cache_control));
        }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.admin_clear.is_some() {
            return Action::Pause; // the admin path's request is never forwarded
        }
        glue::request_body(self, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.admin_clear.is_some() {
            return Action::Pause;
        }
        glue::request_trailers(self)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let status = self.get_http_response_header(":status").and_then(|value| value.parse().ok());
        let content_type = self.get_http_response_header("content-type");
        let content_encoding = self.get_http_response_header("content-encoding");
        let Some(exchange) = self.exchange.as_mut() else { return Action::Continue };
        if exchange.is_hit() {
            return Action::Continue; // our own local reply, headers already set
        }
        let headers = exchange.response_headers(
            &self.config,
            &self.host,
            status,
            content_type.as_deref(),
            content_encoding.as_deref(),
        );
        for (name, value) in headers {
            self.set_http_response_header(name, Some(&value));
        }
        if end_of_stream {
            self.response_done = true;
            if let Some(exchange) = self.exchange.as_mut() {
                exchange.response_body(&self.config, &self.host, &[], true);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(exchange) = self.exchange.as_mut() else { return Action::Continue };
        if exchange.is_hit() {
            return Action::Continue;
        }
        // A bypass or a hit keeps nothing: the body is not even read from the host.
        if exchange.wants_response_body() {
            let chunk = glue::response_body_bytes(body_size);
            exchange.response_body(&self.config, &self.host, &chunk, end_of_stream);
        }
        if end_of_stream {
            self.response_done = true;
        }
        if let Some((entries, bytes)) = exchange.usage.take() {
            set_gauge(metrics::ENTRIES, entries);
            set_gauge(metrics::BYTES, bytes);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if let Some(exchange) = self.exchange.as_mut() {
            exchange.response_body(&self.config, &self.host, &[], true);
            self.response_done = true;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(exchange) = self.exchange.as_mut() {
            exchange.finish(&self.host, self.response_done);
        }
    }
}
