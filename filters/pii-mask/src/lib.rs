//! pii-mask: guardrails on prompts and completions.
//!
//! This file is proxy-wasm glue only: it reads headers and bodies, calls the
//! pure modules (which are tested natively) and writes the results back.
//! See README.md for the behaviour and the configuration reference.

pub mod actions;
pub mod config;
pub mod custom;
pub mod detectors;
pub mod metrics;
pub mod moderation;
pub mod request;
pub mod response;
pub mod scan;
pub mod sha256;
pub mod stream;

use aigw_shared::api::ApiShape;
use aigw_shared::body::{check_body_size, is_event_stream, is_identity_encoding, is_json_content_type};
use aigw_shared::host::{log, replace_request_body, send_error, ProxyWasmHost};
use aigw_shared::ApiError;
use config::{Config, FailMode, OtherPaths, UnreadableRequest, UnreadableResponse};
use metrics::Direction;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;
use stream::SseMasker;

/// Filter state naming the entities found in the request (CONTRACTS.md).
pub const DETECTED_PROPERTY: &str = "aigw.pii.detected";

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
                log(
                    LogLevel::Info,
                    &format!(
                        "pii-mask: configured: {} request rules, {} response rules, stream window {} bytes",
                        config.request.rules.len(),
                        config.response.rules.len(),
                        config.response.window_bytes()
                    ),
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(err) => {
                log(LogLevel::Error, &format!("pii-mask: invalid configuration: {err}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            config: self.config.clone(),
            host: ProxyWasmHost,
            shape: None,
            inspect_request: false,
            response: ResponseMode::Pass,
            response_reported: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// What the filter does with the response body.
enum ResponseMode {
    /// Not inspected (nothing to scan, no body, or passed by configuration).
    Pass,
    /// Buffer to the end and mask as JSON.
    Json,
    /// Buffer to the end and mask as plain text.
    Text,
    /// Mask event by event.
    Sse(Box<SseMasker>),
    /// Replace the body with this error (its status was set in the headers).
    Block(ApiError),
}

struct Filter {
    config: Option<Rc<Config>>,
    host: ProxyWasmHost,
    shape: Option<ApiShape>,
    inspect_request: bool,
    response: ResponseMode,
    response_reported: bool,
}

impl Filter {
    fn reply(&self, err: &ApiError) {
        send_error(err, &[]);
    }

    /// Makes the response an error at the headers stage (the status can still change).
    fn block_response(&mut self, reason: &str, config: &Config) {
        let blocked = config.on_unreadable_response == UnreadableResponse::Block;
        metrics::unreadable(&self.host, Direction::Response, reason, blocked);
        if !blocked {
            log(LogLevel::Warn, &format!("pii-mask: response not inspected ({reason}), passed by configuration"));
            self.response = ResponseMode::Pass;
            return;
        }
        log(LogLevel::Warn, &format!("pii-mask: response blocked: body not inspectable ({reason})"));
        let err = ApiError::bad_gateway(
            "unreadable_response",
            format!("The gateway could not inspect the upstream response ({reason}) and withheld it."),
        );
        self.set_http_response_header(":status", Some(&err.status.to_string()));
        self.set_http_response_header("content-type", Some("application/json"));
        self.set_http_response_header("content-encoding", None);
        self.set_http_response_header("content-length", None);
        self.response = ResponseMode::Block(err);
    }

    /// Sends the (masked) texts to moderation, if configured.
    fn moderate(&mut self, config: &Config, texts: &[String]) -> Action {
        let Some(moderation) = &config.moderation else { return Action::Continue };
        let (headers, call_body) = moderation::build_call(moderation, texts);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match self.dispatch_http_call(
            &moderation.cluster,
            pairs,
            Some(&call_body),
            vec![],
            Duration::from_millis(moderation.timeout_ms),
        ) {
            Ok(_) => Action::Pause,
            Err(_) => self.moderation_failed(config, "dispatch_failed"),
        }
    }

    fn moderation_failed(&self, config: &Config, reason: &str) -> Action {
        let open = config.moderation.as_ref().is_some_and(|m| m.failure_mode == FailMode::Open);
        if open {
            metrics::moderation(&self.host, "failed_open");
            log(LogLevel::Warn, &format!("pii-mask: moderation failed ({reason}); failing open"));
            Action::Continue
        } else {
            metrics::moderation(&self.host, "failed_closed");
            log(LogLevel::Warn, &format!("pii-mask: moderation failed ({reason}); failing closed"));
            self.reply(&ApiError::service_unavailable(
                "moderation_unavailable",
                "The content moderation service is unavailable; the request was not forwarded.",
            ));
            Action::Pause
        }
    }

    fn report_stream(&mut self, config: &Config) {
        if self.response_reported {
            return;
        }
        if let ResponseMode::Sse(masker) = &self.response {
            metrics::report(&self.host, Direction::Response, &config.response, &masker.findings);
            if masker.error.is_some() {
                metrics::unreadable(&self.host, Direction::Response, "bad_event", true);
            }
            self.response_reported = true;
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(config) = self.config.clone() else { return };
        let Some(moderation) = &config.moderation else { return };
        let status = self.get_http_call_response_header(":status").and_then(|s| s.trim().parse::<u32>().ok());
        let body = self.get_http_call_response_body(0, body_size);
        match moderation::verdict(moderation, status, body.as_deref()) {
            moderation::Verdict::Allowed => {
                metrics::moderation(&self.host, "allowed");
                self.resume_http_request();
            }
            moderation::Verdict::Flagged(categories) => {
                metrics::moderation(&self.host, "flagged");
                log(LogLevel::Info, &format!("pii-mask: moderation flagged the request ({})", categories.join(",")));
                self.reply(&ApiError::bad_request("content_policy_violation", moderation.message.clone()));
            }
            moderation::Verdict::Failed(reason) => {
                if self.moderation_failed(&config, reason) == Action::Continue {
                    self.resume_http_request();
                }
            }
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            self.reply(&ApiError::internal("The pii-mask filter has no valid configuration."));
            return Action::Pause;
        };
        let path = self.get_http_request_header(":path").unwrap_or_default();
        self.shape = ApiShape::from_path(&path);
        if !config.response.is_empty() {
            // Providers then answer with bodies this filter can read.
            self.set_http_request_header("accept-encoding", None);
        }
        let skipped = self.shape.is_none() && config.other_paths == OtherPaths::Skip;
        if end_of_stream || skipped || (config.request.is_empty() && config.moderation.is_none()) {
            return Action::Continue;
        }
        if self.shape.is_none() && !is_json_content_type(self.get_http_request_header("content-type").as_deref()) {
            // Uploads (multipart audio, files) on other API paths carry no prompt text to mask.
            metrics::unreadable(&self.host, Direction::Request, "content_type", false);
            return Action::Continue;
        }
        let encoding = self.get_http_request_header("content-encoding");
        if !is_identity_encoding(encoding.as_deref()) {
            let reject = config.on_unreadable_request == UnreadableRequest::Reject;
            metrics::unreadable(&self.host, Direction::Request, "encoded", reject);
            if reject {
                self.reply(&ApiError::unsupported_media(
                    "The gateway inspects request bodies and does not accept a content-encoding; send the body uncompressed.",
                ));
                return Action::Pause;
            }
            return Action::Continue;
        }
        let declared = self.get_http_request_header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
        if let Some(Err(err)) = declared.map(|len| check_body_size(len, config.max_body_bytes)) {
            self.reply(&err);
            return Action::Pause;
        }
        // The body may change length; the right value is set once it is known.
        self.set_http_request_header("content-length", None);
        self.inspect_request = true;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.inspect_request {
            return Action::Continue;
        }
        let Some(config) = self.config.clone() else { return Action::Continue };
        if let Err(err) = check_body_size(body_size, config.max_body_bytes) {
            self.inspect_request = false;
            self.reply(&err);
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.inspect_request = false;
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let result = match request::mask_request(&body, self.shape, &config, config.moderation.is_some()) {
            Ok(result) => result,
            Err(err) => {
                self.reply(&err);
                return Action::Pause;
            }
        };
        metrics::report(&self.host, Direction::Request, &config.request, &result.findings);
        if let Some(names) = request::detected_names(&config.request, &result.findings) {
            self.set_property(vec![DETECTED_PROPERTY], Some(names.as_bytes()));
            if let Some(err) = &result.reject {
                log(LogLevel::Info, &format!("pii-mask: request rejected ({names} detected)"));
                self.reply(err);
                return Action::Pause;
            }
        }
        match &result.body {
            Some(new_body) => replace_request_body(body_size, new_body),
            None => self.set_http_request_header("content-length", Some(&body_size.to_string())),
        }
        // Moderation sees the masked texts: no PII leaves through it either.
        self.moderate(&config, &result.texts)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        let skipped = self.shape.is_none() && config.other_paths == OtherPaths::Skip;
        if end_of_stream || skipped || config.response.is_empty() {
            return Action::Continue;
        }
        let content_type = self.get_http_response_header("content-type");
        let encoding = self.get_http_response_header("content-encoding");
        if !is_identity_encoding(encoding.as_deref()) {
            self.block_response("encoded", &config);
            return Action::Continue;
        }
        let content_type = content_type.as_deref();
        self.response = if is_event_stream(content_type) {
            ResponseMode::Sse(Box::new(SseMasker::new(
                config.response.clone(),
                config.hash.clone(),
                aigw_shared::sse::DEFAULT_MAX_EVENT_BYTES,
            )))
        } else if is_json_content_type(content_type) {
            ResponseMode::Json
        } else if content_type.is_none_or(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/")) {
            ResponseMode::Text
        } else {
            self.block_response("content_type", &config);
            return Action::Continue;
        };
        self.set_http_response_header("content-length", None);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        match &mut self.response {
            ResponseMode::Pass => Action::Continue,
            ResponseMode::Block(err) => {
                let replacement = if end_of_stream { err.body() } else { Vec::new() };
                self.set_http_response_body(0, body_size, &replacement);
                Action::Continue
            }
            ResponseMode::Sse(_) => {
                let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
                let ResponseMode::Sse(masker) = &mut self.response else { return Action::Continue };
                let out = masker.feed(&chunk, end_of_stream);
                let stopped = masker.stopped();
                self.set_http_response_body(0, body_size, &out);
                if end_of_stream || stopped {
                    self.report_stream(&config);
                }
                Action::Continue
            }
            ResponseMode::Json | ResponseMode::Text => {
                if check_body_size(body_size, config.max_body_bytes).is_err() {
                    let mode = std::mem::replace(&mut self.response, ResponseMode::Pass);
                    metrics::unreadable(
                        &self.host,
                        Direction::Response,
                        "too_large",
                        config.on_unreadable_response == UnreadableResponse::Block,
                    );
                    if config.on_unreadable_response == UnreadableResponse::Block {
                        // The status went out already: the body carries the error.
                        let err = ApiError::bad_gateway(
                            "response_too_large",
                            "The upstream response exceeded the gateway's inspection limit and was withheld.",
                        );
                        let replacement = if end_of_stream { err.body() } else { Vec::new() };
                        self.set_http_response_body(0, body_size, &replacement);
                        self.response = ResponseMode::Block(err);
                    } else {
                        drop(mode);
                    }
                    return Action::Continue;
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = self.get_http_response_body(0, body_size).unwrap_or_default();
                let mut findings = scan::Findings::default();
                let result = if matches!(self.response, ResponseMode::Json) {
                    response::mask_json(&body, self.shape, &config, &mut findings)
                } else {
                    response::mask_text(&body, &config, &mut findings)
                };
                metrics::report(&self.host, Direction::Response, &config.response, &findings);
                match result {
                    Ok(Some(new_body)) => self.set_http_response_body(0, body_size, &new_body),
                    Ok(None) => {}
                    Err(unreadable) => {
                        let blocked = config.on_unreadable_response == UnreadableResponse::Block;
                        metrics::unreadable(&self.host, Direction::Response, unreadable.reason(), blocked);
                        if blocked {
                            log(LogLevel::Warn, &format!("pii-mask: response blocked ({})", unreadable.reason()));
                            let err = ApiError::bad_gateway(
                                "unreadable_response",
                                "The gateway could not inspect the upstream response and withheld it.",
                            );
                            self.set_http_response_body(0, body_size, &err.body());
                        }
                    }
                }
                self.response = ResponseMode::Pass;
                Action::Continue
            }
        }
    }

    fn on_log(&mut self) {
        if let Some(config) = self.config.clone() {
            self.report_stream(&config);
        }
    }
}
