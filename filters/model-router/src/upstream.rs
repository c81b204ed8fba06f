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
use crate::respond::{self, ResponseMode, Translation};
use crate::translate::request::RequestInfo;
use aigw_shared::host::{log, Host, ProxyWasmHost};
use aigw_shared::ApiError;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;

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
        self.count("attempt_rejected");
        self.preparing = false;
        aigw_shared::host::send_error(error, &[]);
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
        // When the downstream instance already adapted the request (configured
        // without upstream instances), adapting again would translate twice.
        let needs = !end_of_stream && is_chat(&path) && !self.handoff.adapted;
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
        match &prepared.body {
            Some(new_body) => aigw_shared::host::replace_request_body(body_size, new_body),
            None => self.set_http_request_header("content-length", Some(&body_size.to_string())),
        }
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
        let (action, mode, outcome) =
            respond::on_headers(self, &info, end_of_stream, max_event_bytes, crate::unix_seconds(self));
        if let Translation::Unreadable = outcome {
            self.count("translation_errors");
        }
        self.response = mode;
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max = self.config().map(|c| c.max_body_bytes).unwrap_or(0);
        let mode = std::mem::take(&mut self.response);
        let (action, next, failed) =
            respond::on_body(self, mode, body_size, end_of_stream, max, crate::unix_seconds(self));
        if failed {
            self.count("translation_errors");
        }
        self.response = next;
        action
    }
}
