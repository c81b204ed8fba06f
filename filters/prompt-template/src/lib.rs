//! prompt-template: governed system prompts and named templates for chat
//! requests (OpenAI chat completions and Anthropic messages).
//!
//! This file is proxy-wasm glue only: it pauses chat requests until their body
//! is complete, hands the body to [`request::process`], and applies the
//! outcome (new body and `content-length`, a retrieval call, or an
//! OpenAI-style error reply). The logic lives in the other modules and is
//! tested natively. See README.md for the configuration.

pub mod config;
pub mod decorate;
pub mod metrics;
pub mod render;
pub mod request;
pub mod retrieval;
pub mod tenant;
pub mod variables;

use aigw_shared::api::ApiShape;
use aigw_shared::body::is_identity_encoding;
use aigw_shared::host::{log, replace_request_body, send_error, Host, ProxyWasmHost};
use aigw_shared::ApiError;
use config::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use request::{Answer, Outcome, Pending};
use retrieval::RetrievalError;
use std::rc::Rc;

// The Wasm entry point (`_initialize`). Only built for Wasm: natively the
// crate is a library whose logic the tests call directly.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| new_root());
}}

/// A new root context: one per VM and plugin configuration.
pub fn new_root() -> Box<dyn RootContext> {
    Box::new(Root { config: None })
}

struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match config::from_json(self.get_plugin_configuration().as_deref()) {
            Ok(config) => {
                let templates: usize = config.default_set.templates.len()
                    + config.tenants.values().map(|t| t.templates.len()).sum::<usize>();
                log(
                    LogLevel::Info,
                    &format!("prompt-template: configured {} tenant(s), {templates} template(s)", config.tenants.len()),
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(err) => {
                log(LogLevel::Error, &format!("prompt-template: invalid configuration: {err}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { config: self.config.clone(), state: State::PassThrough }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum State {
    /// Not a chat request, or already handled.
    PassThrough,
    /// Headers paused; collecting the body (`body_size`: buffered so far).
    Buffering { shape: ApiShape, tenant: String, body_size: usize },
    /// Body paused; waiting for the retrieval service.
    Retrieving { token: u32, body_size: usize, pending: Pending },
}

struct Filter {
    config: Option<Rc<Config>>,
    state: State,
}

impl Filter {
    /// The whole request body is in Envoy's buffer (end of stream, or trailers
    /// arrived): process it.
    fn on_complete_body(&mut self, body_size: usize) -> Action {
        let State::Buffering { shape, tenant, .. } = std::mem::replace(&mut self.state, State::PassThrough) else {
            return Action::Continue;
        };
        let Some(config) = self.config.clone() else { return Action::Continue };
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        match request::process(&config, config.set(&tenant), shape, &body, &ProxyWasmHost) {
            Ok(Outcome::Unchanged) => Action::Continue,
            Ok(Outcome::Rewritten(new_body)) => {
                replace_request_body(body_size, &new_body);
                Action::Continue
            }
            Ok(Outcome::Retrieve { call, pending }) => self.start_retrieval(&config, body_size, call, pending),
            Err(err) => {
                self.reject(&err);
                Action::Pause
            }
        }
    }

    fn reject(&mut self, err: &ApiError) {
        ProxyWasmHost.increment_counter(&metrics::rejected(err.code), 1);
        log(LogLevel::Debug, &format!("prompt-template: rejected request: {} {}", err.status, err.code));
        send_error(err, &[]);
        self.state = State::PassThrough;
    }

    fn start_retrieval(
        &mut self,
        config: &Config,
        body_size: usize,
        call: retrieval::Call,
        pending: Pending,
    ) -> Action {
        let headers: Vec<(&str, &str)> = call.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        match self.dispatch_http_call(&pending.cluster, headers, Some(&call.body), vec![], pending.timeout) {
            Ok(token) => {
                self.state = State::Retrieving { token, body_size, pending };
                Action::Pause
            }
            Err(_) => {
                log(LogLevel::Warn, "prompt-template: could not dispatch the retrieval call (is the cluster defined?)");
                match request::complete(config, pending, Answer::Failed(RetrievalError::Dispatch), &ProxyWasmHost) {
                    Ok(body) => {
                        replace_request_body(body_size, &body);
                        self.state = State::PassThrough;
                        Action::Continue
                    }
                    Err(err) => {
                        self.reject(&err);
                        Action::Pause
                    }
                }
            }
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if !matches!(&self.state, State::Retrieving { token, .. } if *token == token_id) {
            return;
        }
        let State::Retrieving { body_size: request_size, pending, .. } =
            std::mem::replace(&mut self.state, State::PassThrough)
        else {
            return;
        };
        let Some(config) = self.config.clone() else { return };
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size);
        let answer = Answer::Response { status: status.as_deref(), body: body.as_deref() };
        match request::complete(&config, pending, answer, &ProxyWasmHost) {
            Ok(new_body) => {
                replace_request_body(request_size, &new_body);
                self.resume_http_request();
            }
            Err(err) => self.reject(&err),
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        if end_of_stream || self.get_http_request_header(":method").as_deref() != Some("POST") {
            return Action::Continue;
        }
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let Some(shape) = ApiShape::from_path(&path) else { return Action::Continue };
        if !is_identity_encoding(self.get_http_request_header("content-encoding").as_deref()) {
            self.reject(&ApiError::unsupported_media(
                "prompt-template cannot read a compressed request body; send it uncompressed.",
            ));
            return Action::Pause;
        }
        match tenant::select(&config, &ProxyWasmHost) {
            Ok(set) => {
                self.state = State::Buffering { shape, tenant: set.name.clone(), body_size: 0 };
                Action::Pause
            }
            Err(err) => {
                self.reject(&err);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let State::Buffering { body_size: seen, .. } = &mut self.state else { return Action::Continue };
        *seen = body_size;
        let max = self.config.as_ref().map_or(usize::MAX, |config| config.max_body_bytes);
        if body_size > max {
            self.reject(&ApiError::payload_too_large(max));
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.on_complete_body(body_size)
    }

    /// Trailers end the request too (HTTP/2 and gRPC-style clients): the body
    /// is complete, so it is processed here rather than slipping through.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let State::Buffering { body_size, .. } = &self.state else { return Action::Continue };
        let body_size = *body_size;
        self.on_complete_body(body_size)
    }
}
