//! Error replies in the client's dialect.
//!
//! Every error a filter sends to a client goes through [`ApiError`] and is
//! rendered in the shape the client's SDK parses: OpenAI's
//! `{"error":{"message":…,"type":…,"param":…,"code":…}}`, or Anthropic's
//! `{"type":"error","error":{"type":"not_found_error","message":…}}` on
//! Anthropic paths ([`ErrorDialect`]), always with the matching HTTP status.

use serde_json::json;

/// The error body shape a client expects, chosen from the request path
/// ([`crate::api::Endpoint::error_dialect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorDialect {
    /// OpenAI's shape: chat completions, Responses, embeddings, completions, and any other path.
    #[default]
    OpenAi,
    /// Anthropic's shape: `/v1/messages` and `/v1/messages/count_tokens`.
    Anthropic,
}

impl ErrorDialect {
    /// The dialect of a request path; OpenAI's for paths that are no known LLM endpoint.
    pub fn from_path(path: &str) -> Self {
        crate::api::Endpoint::from_path(path).map(crate::api::Endpoint::error_dialect).unwrap_or_default()
    }
}

/// An error reply for the client, in the shape of OpenAI's API errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the local reply.
    pub status: u32,
    /// Human-readable message. Never include prompt text, matched PII or keys.
    pub message: String,
    /// OpenAI's `type` field, e.g. `invalid_request_error`.
    pub error_type: &'static str,
    /// OpenAI's `code` field, e.g. `model_not_found`.
    pub code: &'static str,
    /// OpenAI's `param` field: the request field at fault, when there is one.
    pub param: Option<String>,
    /// Seconds the client should wait before retrying (429 and 503).
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: u32, error_type: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), error_type, code, param: None, retry_after_seconds: None }
    }

    /// 400: the request is malformed or violates a policy.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message)
    }

    /// 403: the caller may not use this resource (e.g. a model outside its allow-list).
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", code, message)
    }

    /// 404 with OpenAI's `model_not_found` code.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_param("model")
    }

    /// 413: the body is larger than the filter's configured maximum.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("The body exceeds the gateway's limit of {limit_bytes} bytes."),
        )
    }

    /// 415: a body the filter cannot inspect (e.g. compressed).
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(415, "invalid_request_error", "unsupported_content", message)
    }

    /// 429 with a Retry-After.
    pub fn rate_limited(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        let mut err = Self::new(429, "rate_limit_exceeded", "rate_limit_exceeded", message);
        err.retry_after_seconds = Some(retry_after_seconds);
        err
    }

    /// 502: the upstream answered something the gateway cannot safely pass on.
    pub fn bad_gateway(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(502, "api_error", code, message)
    }

    /// 503: a dependency of the filter (moderation, retrieval) is unavailable.
    pub fn service_unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(503, "api_error", code, message)
    }

    /// 500: a fault inside the gateway itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "api_error", "internal_error", message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 502 for an upstream body the gateway cannot read (compressed, not the
    /// declared type, too large to inspect): withheld rather than passed unchecked.
    /// One constructor, so every filter and route answers the same condition alike.
    pub fn unreadable_upstream(reason: &str) -> Self {
        Self::bad_gateway(
            "unreadable_response",
            format!("The gateway could not inspect the upstream response ({reason}) and withheld it."),
        )
    }

    /// 502 for an upstream body over the gateway's inspection limit: withheld.
    pub fn upstream_too_large() -> Self {
        Self::bad_gateway(
            "response_too_large",
            "The upstream response exceeded the gateway's inspection limit and was withheld.",
        )
    }

    /// 405 for a method an LLM endpoint does not take.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            format!("The method {method} is not allowed on this endpoint; use POST."),
        )
    }

    /// The JSON body of the reply, in OpenAI's shape.
    pub fn body(&self) -> Vec<u8> {
        self.body_for(ErrorDialect::OpenAi)
    }

    /// The JSON body of the reply in the client's dialect.
    pub fn body_for(&self, dialect: ErrorDialect) -> Vec<u8> {
        if dialect == ErrorDialect::Anthropic {
            return json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": self.message}
            })
            .to_string()
            .into_bytes();
        }
        json!({
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        })
        .to_string()
        .into_bytes()
    }

    /// Anthropic's error `type` for this status (docs: "HTTP errors").
    fn anthropic_type(&self) -> &'static str {
        match self.status {
            400 | 405 | 415 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// Headers of the reply, beside the status.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(seconds) = self.retry_after_seconds {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn body_has_openai_shape() {
        let err = ApiError::bad_request("invalid_json", "body is not JSON").with_param("messages");
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(body["error"]["message"], "body is not JSON");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_json");
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(err.status, 400);
    }

    #[test]
    fn model_not_found_is_404_with_openai_code() {
        let err = ApiError::model_not_found("gpt-9");
        assert_eq!(err.status, 404);
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
        assert!(body["error"]["message"].as_str().unwrap().contains("gpt-9"));
    }

    #[test]
    fn message_is_escaped_as_json() {
        let err = ApiError::bad_request("x", "quote \" and newline \n");
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(body["error"]["message"], "quote \" and newline \n");
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let err = ApiError::rate_limited("slow down", 12);
        assert_eq!(err.status, 429);
        assert!(err.headers().contains(&("retry-after", "12".to_string())));
        assert!(ApiError::payload_too_large(10).headers().iter().all(|(name, _)| *name != "retry-after"));
    }

    #[test]
    fn anthropic_shape() {
        let err = ApiError::model_not_found("gpt-9");
        let body: Value = serde_json::from_slice(&err.body_for(ErrorDialect::Anthropic)).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "not_found_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("gpt-9"));
        let limited: Value =
            serde_json::from_slice(&ApiError::rate_limited("x", 1).body_for(ErrorDialect::Anthropic)).unwrap();
        assert_eq!(limited["error"]["type"], "rate_limit_error");
        assert_eq!(ErrorDialect::from_path("/v1/messages"), ErrorDialect::Anthropic);
        assert_eq!(ErrorDialect::from_path("/v1/chat/completions"), ErrorDialect::OpenAi);
        assert_eq!(ErrorDialect::from_path("/other"), ErrorDialect::OpenAi);
    }

    #[test]
    fn statuses() {
        assert_eq!(ApiError::payload_too_large(1).status, 413);
        assert_eq!(ApiError::forbidden("model_not_allowed", "no").status, 403);
        assert_eq!(ApiError::bad_gateway("x", "y").status, 502);
        assert_eq!(ApiError::service_unavailable("x", "y").status, 503);
        assert_eq!(ApiError::internal("x").status, 500);
        assert_eq!(ApiError::unsupported_media("x").status, 415);
    }
}
