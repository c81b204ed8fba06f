//! OpenAI chat completions ⇄ Anthropic messages.
//!
//! An OpenAI client of an Anthropic backend: the request ([`request`]), the
//! JSON reply ([`response`]) and the SSE stream event by event ([`stream`]).
//! An Anthropic client of an OpenAI-shaped backend: [`messages_request`],
//! [`messages_response`] and [`messages_stream`]. Every piece
//! is pure: bytes or `serde_json::Value` in, bytes or values out, so the whole
//! mapping is unit-tested natively.

pub mod messages_request;
pub mod messages_response;
pub mod messages_stream;
pub mod request;
pub mod response;
pub mod responses_request;
pub mod responses_response;
pub mod responses_stream;
pub mod stream;

/// What the response side must translate back to the client's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackTo {
    /// An OpenAI chat client answered by Anthropic: Messages → chat completions.
    Chat(request::RequestInfo),
    /// An Anthropic Messages client answered by an OpenAI-shaped backend: chat completions → Messages.
    Messages(messages_request::MessagesInfo),
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything added later.
        _ => "stop",
    }
}

/// OpenAI `usage` from Anthropic's usage. OpenAI's `prompt_tokens` counts every
/// input token, cached or not; Anthropic splits them into `input_tokens`,
/// `cache_read_input_tokens` and `cache_creation_input_tokens`.
///
/// The backend's numbers may be anything up to `u64::MAX`, so the sums
/// saturate: a wrapped sum would hand the client (and token-counter's
/// budgets, which read this usage) a small count for a huge one.
pub fn usage(anthropic: &aigw_shared::api::anthropic::Usage) -> serde_json::Value {
    let cached = anthropic.cache_read_input_tokens.unwrap_or(0);
    let prompt = anthropic
        .input_tokens
        .unwrap_or(0)
        .saturating_add(cached)
        .saturating_add(anthropic.cache_creation_input_tokens.unwrap_or(0));
    let completion = anthropic.output_tokens.unwrap_or(0);
    serde_json::json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// An Anthropic error `type` → OpenAI's (`type`, `code`).
pub fn error_kind(anthropic_type: &str) -> (&'static str, &'static str) {
    match anthropic_type {
        "invalid_request_error" => ("invalid_request_error", "invalid_request"),
        "authentication_error" => ("authentication_error", "invalid_api_key"),
        "permission_error" => ("permission_error", "permission_denied"),
        "not_found_error" => ("invalid_request_error", "not_found"),
        "request_too_large" => ("invalid_request_error", "request_too_large"),
        "rate_limit_error" => ("rate_limit_exceeded", "rate_limit_exceeded"),
        "overloaded_error" => ("api_error", "overloaded"),
        _ => ("api_error", "upstream_error"),
    }
}

/// An OpenAI error object `{"error":{…}}` from an Anthropic error body's
/// `error` member.
pub fn openai_error(error: &aigw_shared::api::anthropic::ErrorBody) -> serde_json::Value {
    let (kind, code) = error_kind(&error.kind);
    serde_json::json!({
        "error": {"message": error.message, "type": kind, "param": null, "code": code}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_shared::api::anthropic::{ErrorBody, Usage};

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason("end_turn"), "stop");
        assert_eq!(finish_reason("stop_sequence"), "stop");
        assert_eq!(finish_reason("max_tokens"), "length");
        assert_eq!(finish_reason("tool_use"), "tool_calls");
        assert_eq!(finish_reason("refusal"), "content_filter");
        assert_eq!(finish_reason("something_new"), "stop");
    }

    #[test]
    fn usage_counts_cached_input_as_prompt() {
        let u = Usage {
            input_tokens: Some(10),
            output_tokens: Some(5),
            cache_read_input_tokens: Some(100),
            cache_creation_input_tokens: Some(7),
            ..Default::default()
        };
        let v = usage(&u);
        assert_eq!(v["prompt_tokens"], 117);
        assert_eq!(v["completion_tokens"], 5);
        assert_eq!(v["total_tokens"], 122);
        assert_eq!(v["prompt_tokens_details"]["cached_tokens"], 100);
    }

    #[test]
    fn huge_usage_saturates_instead_of_wrapping() {
        // Regression: plain `+` wrapped (or aborted the VM in a debug build).
        let u = Usage {
            input_tokens: Some(u64::MAX - 1),
            output_tokens: Some(u64::MAX),
            cache_read_input_tokens: Some(5),
            cache_creation_input_tokens: Some(u64::MAX),
            ..Default::default()
        };
        let v = usage(&u);
        assert_eq!(v["prompt_tokens"], u64::MAX);
        assert_eq!(v["total_tokens"], u64::MAX);
        assert_eq!(v["prompt_tokens_details"]["cached_tokens"], 5);
        let just_below =
            usage(&Usage { input_tokens: Some(u64::MAX - 3), output_tokens: Some(2), ..Default::default() });
        assert_eq!(just_below["total_tokens"], u64::MAX - 1);
    }

    #[test]
    fn errors_map_to_openai_shape() {
        let v = openai_error(&ErrorBody { kind: "rate_limit_error".into(), message: "slow".into() });
        assert_eq!(v["error"]["type"], "rate_limit_exceeded");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["message"], "slow");
        assert!(v["error"]["param"].is_null());
        assert_eq!(error_kind("overloaded_error").1, "overloaded");
        assert_eq!(error_kind("weird").0, "api_error");
    }
}
