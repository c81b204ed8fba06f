//! How an exchange ended, in the terms operators watch: the response's model
//! and finish reasons (for traces), and an error type with a small fixed set
//! of values (for the error-rate metric and dashboard).
//!
//! One place knows where each dialect puts these facts (OpenAI chat and
//! legacy completions, Anthropic Messages, OpenAI Responses, JSON bodies and
//! stream events), so every filter that reads a response agrees.

use serde_json::Value;

/// What a response said about itself, gathered from its body or its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    /// The model that answered (the response's `model`).
    pub model: Option<String>,
    /// Finish / stop reasons, one per choice, in order, without repeats.
    pub finish_reasons: Vec<String>,
    /// The provider's error code or type, from an error body.
    pub error_code: Option<String>,
    /// The provider's error said the prompt was too long.
    pub context_length_exceeded: bool,
}

impl ResponseFacts {
    fn set_model(&mut self, model: Option<&Value>) {
        if let Some(model) = model.and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.model = Some(model.to_string());
        }
    }

    fn add_finish_reason(&mut self, reason: Option<&Value>) {
        if let Some(reason) = reason.and_then(Value::as_str).filter(|r| !r.is_empty()) {
            if !self.finish_reasons.iter().any(|known| known == reason) && self.finish_reasons.len() < 8 {
                self.finish_reasons.push(reason.to_string());
            }
        }
    }

    fn absorb_error(&mut self, error: &Value) {
        let code = error.get("code").and_then(Value::as_str).or_else(|| error.get("type").and_then(Value::as_str));
        if let Some(code) = code {
            self.error_code = Some(code.chars().take(64).collect());
        }
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        self.context_length_exceeded |= code == Some("context_length_exceeded")
            || message.contains("prompt is too long")
            || message.contains("maximum context length");
    }

    fn absorb_choices(&mut self, choices: Option<&Value>) {
        for choice in choices.and_then(Value::as_array).into_iter().flatten() {
            self.add_finish_reason(choice.get("finish_reason"));
        }
    }

    /// A Responses API `response` object: its status, or why it is incomplete.
    fn absorb_response_object(&mut self, response: &Value) {
        self.set_model(response.get("model"));
        let reason = response.pointer("/incomplete_details/reason").or_else(|| response.get("status"));
        self.add_finish_reason(reason);
        if let Some(error) = response.get("error").filter(|e| e.is_object()) {
            self.absorb_error(error);
        }
    }

    /// A whole JSON response body, in any dialect.
    pub fn absorb_body(&mut self, body: &Value) {
        if let Some(error) = body.get("error").filter(|e| e.is_object()) {
            self.absorb_error(error);
            return;
        }
        match body.get("object").and_then(Value::as_str) {
            Some("response") => self.absorb_response_object(body),
            _ => {
                self.set_model(body.get("model"));
                self.absorb_choices(body.get("choices"));
                self.add_finish_reason(body.get("stop_reason"));
            }
        }
    }

    /// One stream event's JSON data, in any dialect.
    pub fn absorb_event(&mut self, data: &Value) {
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => self.set_model(data.pointer("/message/model")),
            Some("message_delta") => self.add_finish_reason(data.pointer("/delta/stop_reason")),
            Some("error") => {
                if let Some(error) = data.get("error") {
                    self.absorb_error(error);
                }
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                if let Some(response) = data.get("response") {
                    self.absorb_response_object(response);
                }
            }
            Some(_) => {}
            None => {
                if let Some(error) = data.get("error").filter(|e| e.is_object()) {
                    self.absorb_error(error);
                    return;
                }
                self.set_model(data.get("model"));
                self.absorb_choices(data.get("choices"));
            }
        }
    }

    /// Finish reasons as one filter-state value: `stop` or `tool_calls,stop`.
    pub fn finish_reasons_text(&self) -> String {
        self.finish_reasons.join(",")
    }

    /// The answer was cut by the provider's content filter.
    pub fn content_filtered(&self) -> bool {
        self.finish_reasons.iter().any(|r| matches!(r.as_str(), "content_filter" | "refusal"))
    }
}

/// Error types for the error-rate metric (`errors.type.<name>`): a fixed,
/// small set so the label cannot grow with what clients or providers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The prompt did not fit the model's context (the provider said so).
    ContextLengthExceeded,
    /// The provider's content filter cut the answer, or pii-mask refused a request or withheld an answer.
    ContentFiltered,
    /// The provider did not answer in time (Envoy's upstream timeout, 504, 408).
    Timeout,
    /// A gateway token budget refused the request.
    RateLimitedGateway,
    /// The provider answered 429.
    RateLimitedProvider,
    /// The provider answered 5xx, or could not be reached.
    Upstream5xx,
    /// A parameter cannot be translated for the chosen backend.
    TranslationRefused,
    /// No backend serves the model, or the caller may not use it.
    ModelNotAvailable,
    /// The client's credentials were missing or wrong.
    Authentication,
    /// Any other client error (bad JSON, bad field, too large...).
    InvalidRequest,
    /// The gateway itself failed (a filter without config, an unreadable body).
    Gateway,
}

impl ErrorType {
    pub const ALL: [ErrorType; 11] = [
        ErrorType::ContextLengthExceeded,
        ErrorType::ContentFiltered,
        ErrorType::Timeout,
        ErrorType::RateLimitedGateway,
        ErrorType::RateLimitedProvider,
        ErrorType::Upstream5xx,
        ErrorType::TranslationRefused,
        ErrorType::ModelNotAvailable,
        ErrorType::Authentication,
        ErrorType::InvalidRequest,
        ErrorType::Gateway,
    ];

    /// The metric label value.
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::ContextLengthExceeded => "context_length_exceeded",
            ErrorType::ContentFiltered => "content_filtered",
            ErrorType::Timeout => "timeout",
            ErrorType::RateLimitedGateway => "rate_limited_gateway",
            ErrorType::RateLimitedProvider => "rate_limited_provider",
            ErrorType::Upstream5xx => "upstream_5xx",
            ErrorType::TranslationRefused => "translation_refused",
            ErrorType::ModelNotAvailable => "model_not_available",
            ErrorType::Authentication => "authentication",
            ErrorType::InvalidRequest => "invalid_request",
            ErrorType::Gateway => "gateway",
        }
    }
}

/// What is known about an exchange when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending<'a> {
    /// The status the client got.
    pub status: Option<u32>,
    /// The error code of a local reply an aigw filter made (filter state
    /// `aigw.error.code`, set by every filter's reply), if one did.
    pub gateway_error_code: Option<&'a str>,
    /// Envoy's response code details (`upstream_response_timeout`, `via_upstream`, ...).
    pub code_details: Option<&'a str>,
    /// What the response said about itself.
    pub facts: Option<&'a ResponseFacts>,
}

/// The error type of an exchange, or `None` when it succeeded.
pub fn classify(ending: &Ending) -> Option<ErrorType> {
    let status = ending.status.unwrap_or(0);
    let details = ending.code_details.unwrap_or("");
    if let Some(code) = ending.gateway_error_code.filter(|code| !code.is_empty()) {
        return Some(match code {
            "rate_limit_exceeded" | "request_too_large_for_budget" => ErrorType::RateLimitedGateway,
            "unsupported_parameter" => ErrorType::TranslationRefused,
            "model_not_found" | "model_not_allowed" => ErrorType::ModelNotAvailable,
            "sensitive_data_detected" | "content_policy_violation" => ErrorType::ContentFiltered,
            "invalid_api_key" | "missing_api_key" => ErrorType::Authentication,
            _ if status == 429 => ErrorType::RateLimitedGateway,
            _ if status >= 500 => ErrorType::Gateway,
            _ => ErrorType::InvalidRequest,
        });
    }
    let facts = ending.facts;
    if (200..300).contains(&status) {
        return facts.filter(|f| f.content_filtered()).map(|_| ErrorType::ContentFiltered);
    }
    if details.contains("timeout") || status == 504 || status == 408 {
        return Some(ErrorType::Timeout);
    }
    if facts.is_some_and(|f| f.context_length_exceeded) {
        return Some(ErrorType::ContextLengthExceeded);
    }
    match status {
        0 => None,
        429 => Some(ErrorType::RateLimitedProvider),
        401 | 403 => Some(ErrorType::Authentication),
        400..=499 => Some(ErrorType::InvalidRequest),
        500..=599 => Some(ErrorType::Upstream5xx),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts_of_body(body: Value) -> ResponseFacts {
        let mut facts = ResponseFacts::default();
        facts.absorb_body(&body);
        facts
    }

    #[test]
    fn reads_model_and_finish_reasons_in_every_dialect() {
        let chat = facts_of_body(json!({"model": "gpt-4o-mini", "choices": [
            {"finish_reason": "tool_calls"}, {"finish_reason": "stop"}, {"finish_reason": "stop"}]}));
        assert_eq!(
            (chat.model.as_deref(), chat.finish_reasons_text().as_str()),
            (Some("gpt-4o-mini"), "tool_calls,stop")
        );
        let messages =
            facts_of_body(json!({"type": "message", "model": "claude-sonnet-4-5", "stop_reason": "end_turn"}));
        assert_eq!(messages.finish_reasons, ["end_turn"]);
        let responses = facts_of_body(json!({"object": "response", "model": "gpt-4o", "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"}}));
        assert_eq!(
            (responses.model.as_deref(), responses.finish_reasons_text().as_str()),
            (Some("gpt-4o"), "max_output_tokens")
        );
        let completions = facts_of_body(
            json!({"object": "text_completion", "model": "m", "choices": [{"text": "x", "finish_reason": "length"}]}),
        );
        assert_eq!(completions.finish_reasons, ["length"]);

        let mut stream = ResponseFacts::default();
        for event in [
            json!({"type": "message_start", "message": {"model": "claude-3-5-haiku"}}),
            json!({"type": "content_block_delta", "delta": {"text": "hi"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}}),
        ] {
            stream.absorb_event(&event);
        }
        assert_eq!(
            (stream.model.as_deref(), stream.finish_reasons_text().as_str()),
            (Some("claude-3-5-haiku"), "max_tokens")
        );
        let mut chunks = ResponseFacts::default();
        chunks
            .absorb_event(&json!({"model": "gpt-4o", "choices": [{"delta": {"content": "a"}, "finish_reason": null}]}));
        chunks.absorb_event(&json!({"model": "gpt-4o", "choices": [{"delta": {}, "finish_reason": "content_filter"}]}));
        assert!(chunks.content_filtered());
        let mut responses = ResponseFacts::default();
        responses.absorb_event(
            &json!({"type": "response.completed", "response": {"model": "gpt-4o", "status": "completed"}}),
        );
        assert_eq!(responses.finish_reasons, ["completed"]);
    }

    #[test]
    fn reads_provider_errors() {
        let openai = facts_of_body(
            json!({"error": {"code": "context_length_exceeded", "message": "This model's maximum context length is 128000 tokens"}}),
        );
        assert!(openai.context_length_exceeded);
        let anthropic = facts_of_body(
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}}),
        );
        assert!(anthropic.context_length_exceeded);
        assert_eq!(anthropic.error_code.as_deref(), Some("invalid_request_error"));
    }

    #[test]
    fn classifies_endings_into_a_fixed_set() {
        let ending = |status, code, details| Ending {
            status: Some(status),
            gateway_error_code: code,
            code_details: details,
            facts: None,
        };
        assert_eq!(classify(&ending(200, None, None)), None);
        assert_eq!(classify(&ending(429, Some("rate_limit_exceeded"), None)), Some(ErrorType::RateLimitedGateway));
        assert_eq!(classify(&ending(429, None, None)), Some(ErrorType::RateLimitedProvider));
        assert_eq!(classify(&ending(400, Some("unsupported_parameter"), None)), Some(ErrorType::TranslationRefused));
        assert_eq!(classify(&ending(400, Some("sensitive_data_detected"), None)), Some(ErrorType::ContentFiltered));
        assert_eq!(classify(&ending(404, Some("model_not_found"), None)), Some(ErrorType::ModelNotAvailable));
        assert_eq!(classify(&ending(400, Some("invalid_json"), None)), Some(ErrorType::InvalidRequest));
        assert_eq!(classify(&ending(500, Some("filter_not_configured"), None)), Some(ErrorType::Gateway));
        assert_eq!(classify(&ending(504, None, Some("upstream_response_timeout"))), Some(ErrorType::Timeout));
        assert_eq!(
            classify(&ending(503, None, Some("upstream_reset_before_response_started{connection_failure}"))),
            Some(ErrorType::Upstream5xx)
        );
        assert_eq!(classify(&ending(401, None, None)), Some(ErrorType::Authentication));
        let mut filtered = ResponseFacts::default();
        filtered.add_finish_reason(Some(&json!("content_filter")));
        let ok = Ending { status: Some(200), facts: Some(&filtered), ..Ending::default() };
        assert_eq!(classify(&ok), Some(ErrorType::ContentFiltered));
        let long = facts_of_body(json!({"error": {"code": "context_length_exceeded", "message": ""}}));
        let too_long = Ending { status: Some(400), facts: Some(&long), ..Ending::default() };
        assert_eq!(classify(&too_long), Some(ErrorType::ContextLengthExceeded));
        assert_eq!(
            ErrorType::ALL.len(),
            ErrorType::ALL.iter().map(|t| t.name()).collect::<std::collections::BTreeSet<_>>().len()
        );
    }
}
