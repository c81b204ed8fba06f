//! Glue for the downstream instance: pause the request until its body is
//! complete, plan the route, hand it to Envoy's route table.

use crate::config::{
    Downstream, ATTEMPT_BACKEND_HEADER, BACKEND_HEADER, CLIENT_CREDENTIAL_HEADERS, ENDPOINT_METADATA_PATH,
    HANDOFF_PROPERTY, ROUTE_HEADER,
};
use crate::plan::{backend_metric, plan};
use crate::provider::{is_chat, prepare, Handoff};
use crate::respond::{self, ResponseMode, Translation};
use crate::translate::request::RequestInfo;
use aigw_shared::body::{check_body_size, is_identity_encoding};
use aigw_shared::host::{log, Host, ProxyWasmHost};
use aigw_shared::ApiError;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

pub struct DownstreamFilter {
    config: std::rc::Rc<crate::config::Config>,
    /// Waiting for the request body.
    routing: bool,
    /// Primary backend, once routed.
    primary: Option<String>,
    /// Whether the route has a single backend (then whoever answered is it).
    single_target: bool,
    /// Set when this instance translated the request (no upstream instances).
    translate: Option<RequestInfo>,
    response: ResponseMode,
}

impl DownstreamFilter {
    pub fn new(config: &std::rc::Rc<crate::config::Config>) -> Self {
        DownstreamFilter {
            config: config.clone(),
            routing: false,
            primary: None,
            single_target: false,
            translate: None,
            response: ResponseMode::Untouched,
        }
    }

    fn config(&self) -> Option<&Downstream> {
        match self.config.as_ref() {
            crate::config::Config::Downstream(config) => Some(config),
            crate::config::Config::Upstream(_) => None,
        }
    }

    fn fail(&mut self, error: &ApiError) -> Action {
        ProxyWasmHost.increment_counter(&format!("aigw.model_router.routing_rejected.code.{}", error.code), 1);
        self.routing = false;
        aigw_shared::host::send_error(error, &[]);
        Action::Pause
    }
}

impl Context for DownstreamFilter {}

impl HttpContext for DownstreamFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config() else { return Action::Continue };
        // Headers this filter owns, and client credentials: a client can
        // neither pick the cluster nor have its key reach the provider.
        let mut remove: Vec<String> = [ROUTE_HEADER, ATTEMPT_BACKEND_HEADER, BACKEND_HEADER]
            .iter()
            .chain(CLIENT_CREDENTIAL_HEADERS.iter())
            .map(|h| h.to_string())
            .collect();
        remove.extend(config.strip_request_headers.iter().cloned());
        let max = config.max_body_bytes;
        for header in &remove {
            self.set_http_request_header(header, None);
        }
        if end_of_stream {
            // No body, no model: Envoy's own routes decide (e.g. GET /v1/models).
            return Action::Continue;
        }
        if !is_identity_encoding(self.get_http_request_header("content-encoding").as_deref()) {
            return self.fail(&ApiError::unsupported_media(
                "The gateway reads the `model` from the body; send it uncompressed.",
            ));
        }
        if let Some(length) =
            self.get_http_request_header("content-length").and_then(|v| v.trim().parse::<usize>().ok())
        {
            if let Err(error) = check_body_size(length, max) {
                return self.fail(&error);
            }
        }
        self.routing = true;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.routing {
            return Action::Continue;
        }
        let config_rc = self.config.clone();
        let crate::config::Config::Downstream(config) = config_rc.as_ref() else { return Action::Continue };
        if let Err(error) = check_body_size(body_size, config.max_body_bytes) {
            return self.fail(&error);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.routing = false;
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let plan = match plan(config, &body, &ProxyWasmHost) {
            Ok(plan) => plan,
            Err(error) => return self.fail(&error),
        };
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let mut new_body = plan.body.clone();
        let adapt_here = !config.upstream_instances && is_chat(&path);
        if adapt_here {
            // No upstream instance will adapt the attempt: do it here, for the
            // primary backend (the config allows failover lists only within
            // one OpenAI-compatible API and model when this is the case).
            let primary = plan.decision.primary().and_then(|(b, _)| config.backends.get(*b));
            if let Some(backend) = primary {
                let current = new_body.as_deref().unwrap_or(&body);
                let prepared = match prepare(backend, &path, current, Some(&plan.primary_model)) {
                    Ok(prepared) => prepared,
                    Err(error) => return self.fail(&error),
                };
                if let Some(new_path) = prepared.path.as_deref().filter(|p| *p != path) {
                    self.set_http_request_header(":path", Some(new_path));
                }
                for header in &prepared.remove_headers {
                    self.set_http_request_header(header, None);
                }
                for (header, value) in &prepared.set_headers {
                    self.set_http_request_header(header, Some(value));
                }
                if prepared.body.is_some() {
                    new_body = prepared.body;
                }
                self.translate = prepared.translate;
            }
        }
        self.set_http_request_header(ROUTE_HEADER, Some(&plan.route));
        let handoff = Handoff::encode(&plan.models, &path, adapt_here);
        let _ = hostcalls::set_property(vec![HANDOFF_PROPERTY], Some(handoff.as_bytes()));
        if let Some(new_body) = &new_body {
            aigw_shared::host::replace_request_body(body_size, new_body);
        }
        let _ = hostcalls::set_property(vec!["aigw.route.backend"], Some(plan.primary.as_bytes()));
        let _ = hostcalls::set_property(vec!["aigw.route.model"], Some(plan.primary_model.as_bytes()));
        if hostcalls::call_foreign_function("clear_route_cache", Some(&[])).is_err() {
            log(
                LogLevel::Warn,
                "model-router: clear_route_cache is unavailable; the route chosen before the body was read stays",
            );
        }
        ProxyWasmHost.increment_counter(&backend_metric(&plan.primary, "routed_requests"), 1);
        if let Some(rule) = &plan.decision.rule {
            ProxyWasmHost.increment_counter(
                &format!("aigw.model_router.rule_matched.rule.{}", aigw_shared::host::metric_segment(rule)),
                1,
            );
        }
        self.single_target = plan.decision.targets.len() == 1;
        self.primary = Some(plan.primary);
        Action::Continue
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
                ProxyWasmHost.increment_counter(&backend_metric(&primary, "failovers"), 1);
            }
        }
        let status = self.get_http_response_header(":status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        if status >= 500 || status == 429 {
            ProxyWasmHost
                .increment_counter(&backend_metric(answered.as_deref().unwrap_or(&primary), "upstream_errors"), 1);
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
            ProxyWasmHost.increment_counter(&backend_metric(&primary, "translation_errors"), 1);
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
            if let Some(primary) = &self.primary {
                ProxyWasmHost.increment_counter(&backend_metric(primary, "translation_errors"), 1);
            }
        }
        self.response = next;
        action
    }
}
