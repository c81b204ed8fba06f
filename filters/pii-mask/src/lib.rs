//! pii-mask: guardrails on prompts and completions.
//!
//! Wiring only: the shared skeleton (`aigw_shared::glue`) reads the request
//! body through the gate, [`policy`] decides, and the skeleton carries the
//! decision out. See README.md for the behaviour and DESIGN.md for the callbacks.

pub mod actions;
pub mod config;
pub mod custom;
pub mod detectors;
pub mod metrics;
pub mod moderation;
pub mod policy;
pub mod request;
pub mod response;
pub mod scan;
pub mod sha256;
pub mod stream;

use aigw_shared::api::ApiShape;
use aigw_shared::contract::STATE_RESPONSE_WITHHELD;
use aigw_shared::gate::BodyGate;
use aigw_shared::glue::{self, BodyReader, Head, Plugin};
use aigw_shared::host::CapturedHost;
use aigw_shared::ErrorDialect;
use config::Config;
use policy::{BodyStep, RequestOutcome, ResponseGuard, ResponseHead};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

aigw_shared::filter_entry_point!(PiiMask);

struct PiiMask;

impl Plugin for PiiMask {
    type Config = Config;
    const NAME: &'static str = "pii-mask";
    fn parse(bytes: Option<&[u8]>) -> Result<Config, aigw_shared::config::ConfigError> {
        config::from_json(bytes)
    }
    fn summary(config: &Config) -> String {
        format!(
            "{} request rules, {} response rules, stream window {} bytes",
            config.request.rules.len(),
            config.response.rules.len(),
            config.response.window_bytes()
        )
    }
    fn http_context(config: &Rc<Config>) -> Box<dyn HttpContext> {
        let (config, gate, guard) = (config.clone(), BodyGate::default(), ResponseGuard::default());
        Box::new(Filter {
            config,
            gate,
            guard,
            shape: None,
            scanned: false,
            dialect: ErrorDialect::OpenAi,
            host: CapturedHost::default(),
        })
    }
}

struct Filter {
    config: Rc<Config>,
    gate: BodyGate,
    guard: ResponseGuard,
    shape: Option<ApiShape>,
    /// The path is one pii-mask scans (LLM APIs, or any when `other_paths` is `scan`).
    scanned: bool,
    dialect: ErrorDialect,
    host: CapturedHost,
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
        match policy::on_request(&self.config, &self.host, self.shape, &body) {
            RequestOutcome::Decided(decision) => glue::apply_request(&decision, size, self.dialect),
            RequestOutcome::Moderate { edits, call } => {
                glue::apply_edits(&edits, size);
                if glue::dispatch(&call).is_some() {
                    return Action::Pause;
                }
                self.moderated(moderation::Verdict::Failed("dispatch_failed"))
            }
        }
    }
}

impl Filter {
    /// Resumes or refuses the request after moderation.
    fn moderated(&mut self, verdict: moderation::Verdict) -> Action {
        match policy::on_moderation(&self.config, &self.host, verdict) {
            None => Action::Continue,
            Some(err) => glue::reply(&err, self.dialect, &[]),
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(moderation) = &self.config.moderation else { return };
        let status = self.get_http_call_response_header(":status").and_then(|s| s.trim().parse::<u32>().ok());
        let body = self.get_http_call_response_body(0, body_size);
        let verdict = moderation::verdict(moderation, status, body.as_deref());
        if self.moderated(verdict) == Action::Continue {
            glue::resume_request();
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let head = Head::read(end_of_stream);
        self.host = head.host.clone();
        self.shape = ApiShape::from_path(&head.path);
        self.dialect = head.dialect();
        self.scanned = self.shape.is_some() || self.config.other_paths == config::OtherPaths::Scan;
        if !self.config.response.is_empty() {
            // Providers then answer with bodies this filter can read.
            aigw_shared::compose::set_request_header("accept-encoding", None);
        }
        let (wanted, gate_policy) = policy::request_scope(
            &self.config,
            &self.host,
            self.shape,
            head.content_type.as_deref(),
            head.content_encoding.as_deref(),
        );
        glue::open_gate(self, &head, wanted, gate_policy)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        glue::request_body(self, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        glue::request_trailers(self)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (content_type, content_encoding) =
            (self.get_http_response_header("content-type"), self.get_http_response_header("content-encoding"));
        let head = ResponseHead {
            content_type: content_type.as_deref(),
            content_encoding: content_encoding.as_deref(),
            end_of_stream,
        };
        for (name, value) in self.guard.on_headers(&self.config, &self.host, self.scanned, head) {
            self.set_http_response_header(name, value.as_deref());
        }
        if self.guard.withheld() {
            self.set_property(vec![STATE_RESPONSE_WITHHELD], Some(b"1"));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let read = || glue::response_body_bytes(body_size);
        match self.guard.on_body(&self.config, &self.host, self.shape, body_size, end_of_stream, &read) {
            BodyStep::Continue => Action::Continue,
            BodyStep::Pause => Action::Pause,
            BodyStep::Replace(bytes) => {
                glue::replace_response_body(body_size, &bytes);
                Action::Continue
            }
        }
    }

    fn on_log(&mut self) {
        self.guard.report(&self.config, &self.host);
    }
}
