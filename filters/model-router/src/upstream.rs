//! Glue for the upstream instance: runs on a provider cluster (or an
//! aggregate cluster over several), once per attempt, so a retry that lands on
//! another backend is adapted to that backend: path, model, Anthropic
//! translation both ways, and the header that selects its credentials. The
//! body is read through the shared gate; Envoy's `buffer` filter after this
//! one in the cluster's upstream filters holds the headers until it is done.

use crate::config::{
    Backend, Upstream, ATTEMPT_BACKEND_HEADER, BACKEND_HEADER, CLIENT_CREDENTIAL_HEADERS, ENDPOINT_METADATA_PATH,
    HANDOFF_PROPERTY, ROUTE_HEADER,
};
use crate::plan::backend_metric;
use crate::provider::{adapt_body, adapt_head, attempt_backend, needs_adapting, Handoff, ResponsesBack};
use crate::respond::{self, ResponseMode, Translation};
use crate::respond_responses::{self, BackMode};
use crate::translate::BackTo;
use aigw_shared::gate::{BodyGate, GatePolicy};
use aigw_shared::glue::{self, BodyReader, Head, RequestDecision, RequestEdits};
use aigw_shared::host::{log, Host, ProxyWasmHost};
use aigw_shared::{ApiError, ErrorDialect};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;

pub struct UpstreamFilter {
    config: Rc<crate::config::Config>,
    gate: BodyGate,
    dialect: ErrorDialect,
    backend: Option<Backend>,
    handoff: Handoff,
    path: String,
    translate: Option<BackTo>,
    response: ResponseMode,
    /// Set when a Responses request was translated to chat for this backend.
    responses: Option<ResponsesBack>,
    responses_mode: BackMode,
}

impl UpstreamFilter {
    pub fn new(config: &Rc<crate::config::Config>) -> Self {
        UpstreamFilter {
            config: config.clone(),
            gate: BodyGate::default(),
            dialect: ErrorDialect::OpenAi,
            backend: None,
            handoff: Handoff::default(),
            path: String::new(),
            translate: None,
            response: ResponseMode::Untouched,
            responses: None,
            responses_mode: BackMode::Untouched,
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
            self.count_for(&backend.name, what);
        }
    }

    fn count_for(&self, backend: &str, what: &str) {
        ProxyWasmHost.increment_counter(&backend_metric(backend, what), 1);
    }
}

impl BodyReader for UpstreamFilter {
    fn gate(&mut self) -> &mut BodyGate {
        &mut self.gate
    }
    fn dialect(&self) -> ErrorDialect {
        self.dialect
    }
    fn on_gate_reject(&mut self, _error: &ApiError) {
        self.count("attempt_rejected");
    }
    fn on_request_complete(&mut self, size: usize) -> Action {
        let Some(backend) = self.backend.clone() else { return Action::Continue };
        let body = glue::request_body_bytes(size);
        let model = self.handoff.model_for(&backend.name).map(str::to_string);
        match adapt_body(&backend, &self.path, &body, model.as_deref()) {
            Ok(adapted) => {
                self.translate = adapted.translate;
                self.responses = adapted.responses;
                let edits = RequestEdits { body: adapted.body, ..RequestEdits::default() };
                glue::apply_request(&RequestDecision::Forward(edits), size, self.dialect)
            }
            Err(error) => {
                self.on_gate_reject(&error);
                glue::reply(&error, self.dialect, &[])
            }
        }
    }
}

impl Context for UpstreamFilter {}

impl HttpContext for UpstreamFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config() else { return Action::Continue };
        let policy = GatePolicy::strict(config.max_body_bytes);
        let endpoint =
            self.get_property(ENDPOINT_METADATA_PATH.to_vec()).and_then(|bytes| String::from_utf8(bytes).ok());
        let backend = attempt_backend(&config.backends, endpoint.as_deref()).cloned();
        let head = Head::read(end_of_stream);
        self.handoff =
            self.get_property(vec![HANDOFF_PROPERTY]).map(|bytes| Handoff::decode(&bytes)).unwrap_or_default();
        self.path = self.handoff.path.clone().unwrap_or_else(|| head.path.clone());
        self.dialect = ErrorDialect::from_path(&self.path);
        let Some(backend) = backend else {
            ProxyWasmHost.increment_counter("aigw.model_router.upstream.unknown_endpoint", 1);
            log(
                LogLevel::Error,
                "model-router: the attempt's endpoint names no configured backend (endpoint metadata aigw.backend)",
            );
            let error = ApiError::internal("The gateway has no backend configured for this endpoint.");
            return glue::reply(&error, self.dialect, &[]);
        };
        // Envoy hands every attempt the same header map: whatever an earlier
        // attempt set (another provider's key, its path) is still there.
        // Start each attempt clean; the credential injector after this
        // filter adds this backend's key.
        for header in CLIENT_CREDENTIAL_HEADERS {
            self.set_http_request_header(header, None);
        }
        self.set_http_request_header(ROUTE_HEADER, None);
        self.set_http_request_header(ATTEMPT_BACKEND_HEADER, Some(&backend.name));
        // When the downstream instance already adapted the request (configured
        // without upstream instances), adapting again would translate twice.
        let needs = needs_adapting(&backend, &self.path) && !self.handoff.adapted;
        self.count_for(&backend.name, "attempts");
        if needs {
            // Path and headers now, while Envoy still lets this filter edit them; the body when it is complete.
            let model = self.handoff.model_for(&backend.name).map(str::to_string);
            match adapt_head(&backend, &self.path, model.as_deref()) {
                Ok(adapted) => {
                    self.set_http_request_header(":path", Some(&adapted.path));
                    for header in &adapted.remove_headers {
                        self.set_http_request_header(header, None);
                    }
                    for (header, value) in &adapted.set_headers {
                        self.set_http_request_header(header, Some(value));
                    }
                }
                Err(error) => {
                    self.backend = Some(backend);
                    self.on_gate_reject(&error);
                    return glue::reply(&error, self.dialect, &[]);
                }
            }
        }
        self.backend = Some(backend);
        glue::open_gate(self, &head, needs, policy)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        glue::request_body(self, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        glue::request_trailers(self)
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
        if let Some(back) = self.responses.clone() {
            let (action, mode) =
                respond_responses::on_headers(self, &back, end_of_stream, max_event_bytes, crate::unix_seconds(self));
            if let BackMode::Json { status: 0 } = mode {
                self.count("translation_errors");
            }
            self.responses_mode = mode;
            return action;
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
        if let Some(back) = self.responses.clone() {
            let mode = std::mem::take(&mut self.responses_mode);
            let (action, next, failed) =
                respond_responses::on_body(&back, mode, body_size, end_of_stream, max, crate::unix_seconds(self));
            if failed {
                self.count("translation_errors");
            }
            self.responses_mode = next;
            return action;
        }
        let mode = std::mem::take(&mut self.response);
        let (action, next, failed) = respond::on_body(mode, body_size, end_of_stream, max, crate::unix_seconds(self));
        if failed {
            self.count("translation_errors");
        }
        self.response = next;
        action
    }
}
