//! Glue for the downstream instance: read the request body through the
//! shared gate, let [`crate::plan::route_request`] decide, hand the route to
//! Envoy's route table; on the way back, name the backend that answered and
//! translate its reply when this instance translated the request.

use crate::config::{Downstream, BACKEND_HEADER, ENDPOINT_METADATA_PATH};
use crate::local;
use crate::plan::{backend_metric, headers_to_strip, rejected_metric, route_request};
use crate::respond::{self, ResponseMode, Translation};
use crate::translate::BackTo;
use aigw_shared::api::Endpoint;
use aigw_shared::gate::{BodyGate, GatePolicy};
use aigw_shared::glue::{self, BodyReader, Head, RequestDecision};
use aigw_shared::host::{CapturedHost, Host};
use aigw_shared::{ApiError, ErrorDialect};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct DownstreamFilter {
    config: Rc<crate::config::Config>,
    gate: BodyGate,
    dialect: ErrorDialect,
    path: String,
    /// Primary backend, once routed.
    primary: Option<String>,
    /// Whether the route has a single backend (then whoever answered is it).
    single_target: bool,
    /// Set when this instance translated the request (no upstream instances).
    translate: Option<BackTo>,
    response: ResponseMode,
    host: CapturedHost,
}

impl DownstreamFilter {
    pub fn new(config: &Rc<crate::config::Config>) -> Self {
        DownstreamFilter {
            config: config.clone(),
            gate: BodyGate::default(),
            dialect: ErrorDialect::OpenAi,
            path: String::new(),
            primary: None,
            single_target: false,
            translate: None,
            response: ResponseMode::Untouched,
            host: CapturedHost::default(),
        }
    }

    fn config(&self) -> Option<&Downstream> {
        match self.config.as_ref() {
            crate::config::Config::Downstream(config) => Some(config),
            crate::config::Config::Upstream(_) => None,
        }
    }
}

impl BodyReader for DownstreamFilter {
    fn gate(&mut self) -> &mut BodyGate {
        &mut self.gate
    }
    fn dialect(&self) -> ErrorDialect {
        self.dialect
    }
    fn on_gate_reject(&mut self, error: &ApiError) {
        self.host.increment_counter(&rejected_metric(error), 1);
    }
    fn on_request_complete(&mut self, size: usize) -> Action {
        let config_rc = self.config.clone();
        let crate::config::Config::Downstream(config) = config_rc.as_ref() else { return Action::Continue };
        let body = glue::request_body_bytes(size);
        match route_request(config, &self.host, &self.path, &body) {
            Ok(routed) => match local::count_tokens_answer(config, &self.path, &routed.primary, &self.host, body.len())
            {
                Some(answer) => answer_json(&answer),
                None => {
                    self.single_target = routed.single_target;
                    self.primary = Some(routed.primary);
                    self.translate = routed.translate;
                    glue::apply_request(&RequestDecision::Forward(routed.edits), size, self.dialect)
                }
            },
            Err(error) => {
                self.on_gate_reject(&error);
                glue::reply(&error, self.dialect, &[])
            }
        }
    }
}

impl Context for DownstreamFilter {}

impl HttpContext for DownstreamFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let head = Head::read(end_of_stream);
        self.host = head.host.clone();
        let Some(config) = self.config() else { return Action::Continue };
        let (strip, policy) = (headers_to_strip(config, &head.path), GatePolicy::strict(config.max_body_bytes));
        // Only the ones the request has: removing an absent header is a host call that changes
        // nothing (the captured copy holds every request header, lower-cased).
        for header in strip.iter().filter(|name| head.host.header(name).is_some()) {
            aigw_shared::compose::set_request_header(header, None);
        }
        self.dialect = head.dialect();
        self.path = head.path.clone();
        // The model list comes from the routing table, never from a provider.
        if head.method == "GET" {
            let anthropic = head.host.header("anthropic-version").is_some();
            let listed = || self.config().map(|config| local::allowed_models(config, &head.host)).unwrap_or_default();
            if Endpoint::from_path(&head.path) == Some(Endpoint::Models) {
                return answer_json(&local::models_body(&listed(), anthropic));
            }
            if let Some(model) = aigw_shared::api::retrieved_model(&head.path) {
                let dialect = if anthropic { ErrorDialect::Anthropic } else { self.dialect };
                return match local::model_body(&listed(), model, anthropic) {
                    Ok(body) => answer_json(&body),
                    Err(err) => glue::reply(&err, dialect, &[]),
                };
            }
        }
        // Without a body there is no model: Envoy's own routes decide.
        glue::open_gate(self, &head, true, policy)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        glue::request_body(self, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        glue::request_trailers(self)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(primary) = self.primary.clone() else { return Action::Continue };
        let show = self.config().is_some_and(|c| c.backend_header);
        let via_upstream =
            self.get_property(vec!["response", "code_details"]).is_some_and(|details| details == b"via_upstream");
        // Who answered: the upstream instance says so in a header; without
        // one, the answering endpoint's metadata (`aigw.backend`) does; a
        // single-backend route needs neither. Otherwise it stays unknown
        // rather than guessed.
        let answered = self.get_http_response_header(BACKEND_HEADER).or_else(|| {
            if !via_upstream {
                return None;
            }
            self.get_property(ENDPOINT_METADATA_PATH.to_vec())
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .or_else(|| self.single_target.then(|| primary.clone()))
        });
        if let Some(answered) = &answered {
            if *answered != primary {
                self.host.increment_counter(&backend_metric(&primary, "failovers"), 1);
            }
        }
        let status = self.get_http_response_header(":status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        if status >= 500 || status == 429 {
            self.host.increment_counter(&backend_metric(answered.as_deref().unwrap_or(&primary), "upstream_errors"), 1);
        }
        if show {
            self.set_http_response_header(BACKEND_HEADER, answered.as_deref());
        } else {
            self.set_http_response_header(BACKEND_HEADER, None);
        }
        // Only a reply from the backend is translated; Envoy's own replies
        // (no healthy upstream, timeouts) are not Anthropic's.
        let Some(info) = self.translate.clone().filter(|_| via_upstream) else { return Action::Continue };
        let max_event_bytes = self.config().map(|c| c.max_event_bytes).unwrap_or(0);
        let (action, mode, outcome) =
            respond::on_headers(self, &info, end_of_stream, max_event_bytes, crate::unix_seconds(self));
        if let Translation::Unreadable = outcome {
            self.host.increment_counter(&backend_metric(&primary, "translation_errors"), 1);
        }
        self.response = mode;
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max = self.config().map(|c| c.max_body_bytes).unwrap_or(0);
        let mode = std::mem::take(&mut self.response);
        if matches!(mode, ResponseMode::Untouched) {
            // Not translated (the common OpenAI-to-OpenAI route): nothing to read, no clock.
            return Action::Continue;
        }
        let (action, next, failed) = respond::on_body(mode, body_size, end_of_stream, max, crate::unix_seconds(self));
        if failed {
            if let Some(primary) = &self.primary {
                self.host.increment_counter(&backend_metric(primary, "translation_errors"), 1);
            }
        }
        self.response = next;
        action
    }
}

/// A 200 JSON answer made by the gateway itself.
fn answer_json(body: &[u8]) -> Action {
    glue::send_response(200, vec![("content-type", "application/json")], body)
}
