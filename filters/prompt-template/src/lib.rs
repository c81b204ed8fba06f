//! prompt-template: governed system prompts and named templates for chat
//! requests (OpenAI chat completions and Anthropic messages).
//!
//! Wiring only: the shared skeleton (`aigw_shared::glue`) reads the request
//! body through the gate, [`request::process`] decides (new body, a retrieval
//! call, or an error), and the skeleton carries it out. See README.md for the
//! configuration and DESIGN.md for the callbacks.

pub mod config;
pub mod decorate;
pub mod metrics;
pub mod render;
pub mod request;
pub mod retrieval;
pub mod tenant;
pub mod variables;

use aigw_shared::api::ApiShape;
use aigw_shared::contract::STATE_TENANT;
use aigw_shared::gate::{BodyGate, GatePolicy};
use aigw_shared::glue::{self, BodyReader, Head, Plugin, SideCall};
use aigw_shared::host::{CapturedHost, Host};
use aigw_shared::{ApiError, ErrorDialect};
use config::Config;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use request::{Answer, Outcome, Pending};
use retrieval::RetrievalError;
use std::rc::Rc;

aigw_shared::filter_entry_point!(PromptTemplate);

struct PromptTemplate;

impl Plugin for PromptTemplate {
    type Config = Config;
    const NAME: &'static str = "prompt-template";
    fn parse(bytes: Option<&[u8]>) -> Result<Config, aigw_shared::config::ConfigError> {
        config::from_json(bytes)
    }
    fn summary(config: &Config) -> String {
        let templates: usize =
            config.default_set.templates.len() + config.tenants.values().map(|t| t.templates.len()).sum::<usize>();
        format!("{} tenant(s), {templates} template(s)", config.tenants.len())
    }
    fn http_context(config: &Rc<Config>) -> Box<dyn HttpContext> {
        Box::new(Filter {
            config: config.clone(),
            gate: BodyGate::default(),
            dialect: ErrorDialect::OpenAi,
            state: None,
            host: CapturedHost::default(),
        })
    }
}

enum State {
    /// Collecting the body of a chat request for this tenant.
    Collecting { shape: ApiShape, tenant: String },
    /// Waiting for the retrieval service (`size`: the buffered request body).
    Retrieving { token: u32, size: usize, pending: Pending },
}

struct Filter {
    config: Rc<Config>,
    gate: BodyGate,
    dialect: ErrorDialect,
    state: Option<State>,
    host: CapturedHost,
}

impl Filter {
    fn reject(&mut self, err: &ApiError) -> Action {
        self.host.increment_counter(&metrics::rejected(err.code), 1);
        self.state = None;
        glue::reply(err, self.dialect, &[])
    }

    /// Finishes a request whose retrieval answered, failed or could not start.
    fn complete(&mut self, size: usize, pending: Pending, answer: Answer<'_>) -> Action {
        match request::complete(&self.config, pending, answer, &self.host) {
            Ok(body) => {
                glue::replace_request_body(size, &body);
                Action::Continue
            }
            Err(err) => self.reject(&err),
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
        let Some(State::Collecting { shape, tenant }) = self.state.take() else { return Action::Continue };
        let body = glue::request_body_bytes(size);
        let config = self.config.clone();
        match request::process(&config, config.set(&tenant), shape, &body, &self.host) {
            Ok(Outcome::Unchanged) => Action::Continue,
            Ok(Outcome::Rewritten(new_body)) => {
                glue::replace_request_body(size, &new_body);
                Action::Continue
            }
            Ok(Outcome::Retrieve { call, pending }) => {
                let side_call = SideCall {
                    cluster: pending.cluster.clone(),
                    headers: call.headers,
                    body: call.body,
                    timeout: pending.timeout,
                };
                match glue::dispatch(&side_call) {
                    Some(token) => {
                        self.state = Some(State::Retrieving { token, size, pending });
                        Action::Pause
                    }
                    None => self.complete(size, pending, Answer::Failed(RetrievalError::Dispatch)),
                }
            }
            Err(err) => self.reject(&err),
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(State::Retrieving { token, .. }) = &self.state else { return };
        if *token != token_id {
            return;
        }
        let Some(State::Retrieving { size, pending, .. }) = self.state.take() else { return };
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size);
        let answer = Answer::Response { status: status.as_deref(), body: body.as_deref() };
        if self.complete(size, pending, answer) == Action::Continue {
            glue::resume_request();
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let head = Head::read(end_of_stream);
        self.dialect = head.dialect();
        self.host = head.host.clone();
        let shape = ApiShape::from_path(&head.path);
        let policy = GatePolicy::strict(self.config.max_body_bytes);
        let action = glue::open_gate(self, &head, shape.is_some(), policy);
        let Some(shape) = shape.filter(|_| self.gate.is_collecting()) else { return action };
        match tenant::select(&self.config, &self.host) {
            Ok(set) => {
                // For Envoy's tracer and access logs (envoy-config/observability/tracing.yaml).
                self.set_property(vec![STATE_TENANT], Some(set.name.as_bytes()));
                self.state = Some(State::Collecting { shape, tenant: set.name.clone() });
                Action::Continue
            }
            Err(err) => self.reject(&err),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        glue::request_body(self, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        glue::request_trailers(self)
    }
}
