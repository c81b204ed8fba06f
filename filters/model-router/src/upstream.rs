//! Glue for the upstream instance: runs on a provider cluster (or an
//! aggregate cluster over several), once per attempt, so a retry that lands on
//! another backend is adapted to that backend: path, model, Anthropic
//! translation both ways, and the header that selects its credentials.

use crate::config::{
    Backend, Upstream, ATTEMPT_BACKEND_HEADER, BACKEND_HEADER, CLIENT_CREDENTIAL_HEADERS, ENDPOINT_METADATA_PATH,
    HANDOFF_PROPERTY, ROUTE_HEADER,
};
use crate::plan::backend_metric;
use crate::provider::{attempt_backend, is_chat, prepare, Handoff};
use crate::translate::request::RequestInfo;
use crate::translate::response;
use crate::translate::stream::StreamTranslator;
use aigw_shared::body::{is_event_stream, is_identity_encoding};
use aigw_shared::host::{log, Host, ProxyWasmHost};
use aigw_shared::ApiError;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;

enum ResponseMode {
    /// Passed through as it is.
    Untouched,
    /// A whole Anthropic JSON body, translated at its end.
    Json { status: u32 },
    /// An Anthropic SSE stream, translated event by event.
    Stream(Box<StreamTranslator>),
    /// The reply was replaced by an error; the rest of the upstream body is dropped.
    Discard,
}

pub struct UpstreamFilter {
    config: Rc<crate::config::Config>,
    backend: Option<Backend>,
    handoff: Handoff,
    preparing: bool,
    translate: Option<RequestInfo>,
    response: ResponseMode,
}

impl UpstreamFilter {
    pub fn new(config: &Rc<crate::config::Config>) -> Self {
        UpstreamFilter {
            config: config.clone(),
            backend: None,
            handoff: Handoff::default(),
            preparing: false,
            translate: None,
            response: ResponseMode::Untouched,
        }
    }

    fn config(&self) -> Option<&Upstream> {
        match self.config.as_ref() {
            crate::config::Config::Upstream(config) => Some(config),
            crate::config::Config::Downstream(_) => None,
        }
    }

    fn count(&self, what: &str) {
        if let Some(backend) = &self.backend {
            ProxyWasmHost.increment_counter(&backend_metric(&backend.name, what), 1);
        }
    }

    fn fail_request(&mut self, error: &ApiError) -> Action {
        self.count("rejected");
        self.preparing = false;
        crate::reply(self, error);
        Action::Pause
    }
}

impl Context for UpstreamFilter {}

impl HttpContext for UpstreamFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config() else { return Action::Continue };
        let endpoint =
            self.get_property(ENDPOINT_METADATA_PATH.to_vec()).and_then(|bytes| String::from_utf8(bytes).ok());
        let Some(backend) = attempt_backend(&config.backends, endpoint.as_deref()).cloned() else {
            ProxyWasmHost.increment_counter("aigw.model_router.upstream.unknown_endpoint", 1);
            log(
                LogLevel::Error,
                "model-router: the attempt's endpoint names no configured backend (endpoint metadata aigw.backend)",
            );
            return self.fail_request(&ApiError::internal("The gateway has no backend configured for this endpoint."));
        };
        self.handoff =
            self.get_property(vec![HANDOFF_PROPERTY]).map(|bytes| Handoff::decode(&bytes)).unwrap_or_default();
        // Envoy hands every attempt the same header map: whatever an earlier
        // attempt set (another provider's key, its path) is still there.
        // Start each attempt clean; the credential injector after this
        // filter adds this backend's key.
        for header in CLIENT_CREDENTIAL_HEADERS {
            self.set_http_request_header(header, None);
        }
        self.set_http_request_header(ROUTE_HEADER, None);
        self.set_http_request_header(ATTEMPT_BACKEND_HEADER, Some(&backend.name));
        let path = match &self.handoff.path {
            Some(path) => path.clone(),
            None => self.get_http_request_header(":path").unwrap_or_default(),
        };
        let needs = !end_of_stream && is_chat(&path);
        self.backend = Some(backend);
        self.count("attempts");
        if !needs {
            return Action::Continue;
        }
        self.preparing = true;
        // The path and headers depend on the body (Azure's deployment, the
        // Anthropic API): hold them until it is complete. Needs
        // `allow_on_headers_stop_iteration: true` in the plugin config.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.preparing {
            return Action::Continue;
        }
        let (Some(config), Some(backend)) = (self.config(), self.backend.clone()) else { return Action::Continue };
        let max = config.max_body_bytes;
        if body_size > max {
            return self.fail_request(&ApiError::payload_too_large(max));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.preparing = false;
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let path = match &self.handoff.path {
            Some(path) => path.clone(),
            None => self.get_http_request_header(":path").unwrap_or_default(),
        };
        let model = self.handoff.model_for(&backend.name).map(str::to_string);
        let prepared = match prepare(&backend, &path, &body, model.as_deref()) {
            Ok(prepared) => prepared,
            Err(error) => return self.fail_request(&error),
        };
        if let Some(path) = &prepared.path {
            self.set_http_request_header(":path", Some(path));
        }
        for header in &prepared.remove_headers {
            self.set_http_request_header(header, None);
        }
        for (header, value) in &prepared.set_headers {
            self.set_http_request_header(header, Some(value));
        }
        let length = match &prepared.body {
            Some(new_body) => {
                self.set_http_request_body(0, body_size, new_body);
                new_body.len()
            }
            None => body_size,
        };
        self.set_http_request_header("content-length", Some(&length.to_string()));
        self.translate = prepared.translate;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config() else { return Action::Continue };
        let show = config.backend_header;
        let max_event_bytes = config.max_event_bytes;
        let Some(name) = self.backend.as_ref().map(|b| b.name.clone()) else { return Action::Continue };
        let status = self.get_http_response_header(":status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        if status >= 500 || status == 429 {
            self.count("attempt_errors");
        }
        if show {
            self.set_http_response_header(BACKEND_HEADER, Some(&name));
        }
        let Some(info) = self.translate.clone() else { return Action::Continue };
        if end_of_stream {
            return Action::Continue;
        }
        let readable = is_identity_encoding(self.get_http_response_header("content-encoding").as_deref());
        let streaming =
            (200..300).contains(&status) && is_event_stream(self.get_http_response_header("content-type").as_deref());
        self.set_http_response_header("content-length", None);
        if !readable {
            self.count("translation_errors");
            log(LogLevel::Warn, &format!("model-router: backend {name} sent an encoded body; it cannot be translated"));
            self.set_http_response_header("content-encoding", None);
            self.set_http_response_header("content-type", Some("application/json"));
            self.response = ResponseMode::Json { status: 0 };
            return Action::Pause;
        }
        if streaming {
            let created = crate::unix_seconds(self);
            self.response =
                ResponseMode::Stream(Box::new(StreamTranslator::new(info.include_usage, created, max_event_bytes)));
            return Action::Continue;
        }
        self.set_http_response_header("content-type", Some("application/json"));
        self.response = ResponseMode::Json { status };
        // Held until the body is translated, so that an unreadable reply can
        // still become a 502 and the translated body gets its length.
        Action::Pause
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max = self.config().map(|c| c.max_body_bytes).unwrap_or(0);
        match std::mem::replace(&mut self.response, ResponseMode::Untouched) {
            ResponseMode::Untouched => Action::Continue,
            ResponseMode::Discard => {
                self.set_http_response_body(0, body_size, &[]);
                self.response = ResponseMode::Discard;
                Action::Continue
            }
            ResponseMode::Stream(mut translator) => {
                let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
                let mut out = translator.feed(&chunk);
                if end_of_stream {
                    out.extend(translator.finish());
                }
                self.set_http_response_body(0, body_size, &out);
                self.response = ResponseMode::Stream(translator);
                Action::Continue
            }
            ResponseMode::Json { status } => {
                if !end_of_stream && body_size <= max {
                    self.response = ResponseMode::Json { status };
                    return Action::Pause;
                }
                let body = self.get_http_response_body(0, body_size).unwrap_or_default();
                let translated = if status == 0 {
                    Err(ApiError::bad_gateway(
                        "upstream_invalid_response",
                        "The model's backend sent an encoded reply the gateway cannot read.",
                    ))
                } else if body_size > max {
                    Err(ApiError::bad_gateway(
                        "upstream_response_too_large",
                        "The model's backend sent a reply larger than the gateway accepts.",
                    ))
                } else {
                    response::to_openai(status, &body, crate::unix_seconds(self))
                };
                let out = match translated {
                    Ok(out) => out,
                    Err(error) => {
                        self.count("translation_errors");
                        self.set_http_response_header(":status", Some(&error.status.to_string()));
                        error.body()
                    }
                };
                self.set_http_response_body(0, body_size, &out);
                self.set_http_response_header("content-length", Some(&out.len().to_string()));
                if !end_of_stream {
                    self.response = ResponseMode::Discard;
                }
                Action::Continue
            }
        }
    }
}
