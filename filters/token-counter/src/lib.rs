//! token-counter: counts tokens before forwarding, reads exact usage from
//! responses, enforces token rate limits shared by all Envoy workers
//! (reserve, then settle), and reports tokens, cost and latency.
//!
//! This file is the proxy-wasm glue only; the logic lives in the modules
//! below and runs natively in tests. See README.md for the configuration.

pub mod config;
pub mod cost;
pub mod limits;
pub mod metrics;
pub mod prompt;
pub mod stream;
pub mod tokenize;
pub mod usage;

use aigw_shared::body::is_json_content_type;
use aigw_shared::host::{log, replace_request_body, Host, ProxyWasmHost};
use config::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use stream::{RequestAction, Stream, STATE_BUDGET_EXCEEDED};

// The Wasm entry point (`_initialize`). Only built for Wasm: natively the
// crate is a library whose logic the tests call directly.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| new_root());
}}

/// A new root context: one per VM and plugin configuration.
pub fn new_root() -> Box<dyn RootContext> {
    Box::new(Root { config: Rc::new(Config::default()) })
}

struct Root {
    config: Rc<Config>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match config::from_json(self.get_plugin_configuration().as_deref()) {
            Ok(config) => config,
            Err(err) => {
                log(LogLevel::Error, &format!("token-counter: invalid configuration: {err}"));
                return false;
            }
        };
        if config.preload {
            // Build the BPE tables now rather than on the first request.
            let host = ProxyWasmHost;
            let started = host.now_nanos();
            let encodings = config.models.preload_encodings();
            let mut names = Vec::new();
            for encoding in &encodings {
                if tokenize::bpe(*encoding).is_some() {
                    names.push(encoding.name());
                }
            }
            let millis = host.now_nanos().saturating_sub(started) / 1_000_000;
            log(LogLevel::Info, &format!("token-counter: BPE tables {} ready in {millis} ms", names.join(", ")));
        }
        let host = ProxyWasmHost;
        for rule in &config.rules {
            limits::create_slots(&host, &rule.name, rule.slots);
        }
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { config: Rc::clone(&self.config), stream: None, awaiting_body: false }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    config: Rc<Config>,
    stream: Option<Stream>,
    awaiting_body: bool,
}

impl Filter {
    /// Carries out a request decision. Returns the action for the callback.
    fn apply(&mut self, action: RequestAction, body_size: Option<usize>) -> Action {
        for rule in self.stream.as_mut().map(Stream::take_store_errors).unwrap_or_default() {
            log(LogLevel::Warn, &format!("token-counter: rule {rule}: shared data unavailable or contended"));
        }
        if self.stream.as_ref().is_some_and(Stream::budget_signal) {
            self.set_property(vec![STATE_BUDGET_EXCEEDED], Some(b"1"));
        }
        match action {
            RequestAction::Forward { new_body } => {
                if let (Some(bytes), Some(size)) = (new_body, body_size) {
                    replace_request_body(size, &bytes);
                }
                Action::Continue
            }
            RequestAction::Reject { error, headers } => {
                let pairs: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
                self.send_http_response(error.status, pairs, Some(&error.body()));
                Action::Pause
            }
        }
    }

    fn finish(&mut self, completed: bool) {
        let Some(stream) = self.stream.as_mut() else { return };
        if let Some(outcome) = stream.finish(&self.config, &ProxyWasmHost, completed) {
            for (name, value) in outcome.filter_state() {
                self.set_property(vec![name], Some(value.as_bytes()));
            }
        }
    }

    fn content_length(&self) -> u64 {
        self.get_http_request_header("content-length").and_then(|value| value.trim().parse().ok()).unwrap_or(0)
    }
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let host = ProxyWasmHost;
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let mut stream = Stream::new(&self.config, &host, &path);
        if end_of_stream {
            stream.bodiless(&self.config, &host);
            self.stream = Some(stream);
            return Action::Continue;
        }
        let content_type = self.get_http_request_header("content-type");
        if content_type.is_some() && !is_json_content_type(content_type.as_deref()) {
            // Not JSON (multipart uploads, audio): estimated from its declared
            // size without buffering it.
            let action = stream.unparsed_body(&self.config, &host, self.content_length());
            self.stream = Some(stream);
            return self.apply(action, None);
        }
        self.stream = Some(stream);
        self.awaiting_body = true;
        // Hold the headers until the body is complete: the request may be
        // refused or its body (and content-length) rewritten.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.awaiting_body {
            return Action::Continue;
        }
        let host = ProxyWasmHost;
        if body_size > self.config.max_request_bytes {
            // Too large to parse: estimate from its size and stop buffering.
            self.awaiting_body = false;
            let size = self.content_length().max(body_size as u64);
            let Some(stream) = self.stream.as_mut() else { return Action::Continue };
            let action = stream.unparsed_body(&self.config, &host, size);
            return self.apply(action, None);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.awaiting_body = false;
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let action = stream.request_body(&self.config, &host, &body);
        self.apply(action, Some(body_size))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A request that ends with trailers never had a body callback with
        // end_of_stream: estimate it from its declared size rather than stall.
        if !self.awaiting_body {
            return Action::Continue;
        }
        self.awaiting_body = false;
        let size = self.content_length();
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let action = stream.unparsed_body(&self.config, &ProxyWasmHost, size);
        self.apply(action, None)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let host = ProxyWasmHost;
        let status = self.get_http_response_header(":status").and_then(|value| value.parse().ok());
        let content_type = self.get_http_response_header("content-type");
        let content_encoding = self.get_http_response_header("content-encoding");
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        let rate_headers = stream.rate_headers(&self.config, &host);
        let drop_length =
            stream.response_headers(&self.config, status, content_type.as_deref(), content_encoding.as_deref());
        if let Some(headers) = rate_headers {
            for (name, value) in headers.pairs() {
                self.set_http_response_header(name, Some(&value));
            }
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
        let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
        let Some(stream) = self.stream.as_mut() else { return Action::Continue };
        if let Some(bytes) = stream.response_body(&ProxyWasmHost, &chunk, end_of_stream) {
            self.set_http_response_body(0, body_size, &bytes);
        }
        if end_of_stream {
            self.finish(true);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // The body ended without end_of_stream: read what is left for usage.
        // (The body can no longer change here; an unfinished last event that
        // was held back is all that could be lost, and only while stripping.)
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.response_body(&ProxyWasmHost, &[], true);
        }
        self.finish(true);
        Action::Continue
    }

    fn on_log(&mut self) {
        // Streams reset before their end still settle (or release) here.
        self.finish(false);
    }
}
