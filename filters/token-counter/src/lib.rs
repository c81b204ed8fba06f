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
pub mod tokenize;
pub mod usage;

use aigw_shared::body::{is_identity_encoding, is_json_content_type};
use aigw_shared::contract::{STATE_ERROR_CODE, STATE_RESPONSE_WITHHELD};
use aigw_shared::gate::{BodyGate, GatePolicy, OnEncoded, OnOversize};
use aigw_shared::glue::{self, BodyReader, Head, Plugin};
use aigw_shared::host::{log, CapturedHost, Host, ProxyWasmHost};
use aigw_shared::outcome::Ending;
use aigw_shared::ErrorDialect;
use config::Config;
use exchange::{RequestAction, Stream};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;

aigw_shared::filter_entry_point!(TokenCounter);

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
        if let Some(line) = exchange::prepare_vm(config, &ProxyWasmHost) {
            log(LogLevel::Info, &line);
        }
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
}

impl Filter {
    /// Carries out a request decision (`buffered`: the body's size when it was read).
    fn apply(&mut self, action: RequestAction, buffered: usize) -> Action {
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        for rule in stream.take_store_errors() {
            log(LogLevel::Warn, &format!("token-counter: rule {rule}: shared data unavailable or contended"));
        }
        glue::apply_request(&stream.decision(action), buffered, self.dialect)
    }

    /// Estimates a body the filter does not parse from its size.
    fn estimate(&mut self, size: u64) -> Action {
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let action = stream.unparsed_body(&self.config, &self.host, size);
        self.apply(action, 0)
    }

    fn finish(&mut self, completed: bool) {
        let withheld = self.get_property(vec![STATE_RESPONSE_WITHHELD]).is_some_and(|value| !value.is_empty());
        let text = |bytes: Option<Vec<u8>>| bytes.and_then(|b| String::from_utf8(b).ok());
        let error_code = text(self.get_property(vec![STATE_ERROR_CODE]));
        let code_details = text(self.get_property(vec!["response", "code_details"]));
        let response_code = self.get_property(vec!["response", "code"]).and_then(|b| <[u8; 8]>::try_from(b).ok());
        let Some(stream) = self.stream.as_mut() else { return };
        let outcome = stream.finish(&self.config, &self.host, completed, withheld);
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

impl Context for Filter {}

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
            return self.estimate(self.declared_length);
        }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        glue::request_body(self, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        glue::request_trailers(self)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let host = self.host.clone();
        let status = self.get_http_response_header(":status").and_then(|value| value.parse().ok());
        let content_type = self.get_http_response_header("content-type");
        let content_encoding = self.get_http_response_header("content-encoding");
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
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
            self.set_http_response_body(0, body_size, &bytes);
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
