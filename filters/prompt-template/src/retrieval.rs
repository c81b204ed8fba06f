//! Optional retrieval augmentation: before the request goes upstream, the
//! filter asks a retrieval service (an Envoy cluster) for passages that match
//! the last user message and puts them into a variable (default `context`)
//! that templates and decorations can place where they like.
//!
//! The exchange, documented in the README:
//!
//! ```text
//! POST <path>   (content-type: application/json)
//! {"query": "<last user message>", "max_passages": 5, "tenant": "retail", "template": "kb-answer"}
//!
//! 200 OK
//! {"passages": [{"text": "…", "source": "…"}, "a plain string passage", …]}
//! ```
//!
//! Passages are either strings or objects with a string `text`; other fields
//! are ignored. At most `max_passages` are used, joined by `separator`, and the
//! result is cut to `max_context_bytes`. A timeout, a non-2xx status or an
//! unreadable body is a failure: with `failure_mode: open` the request goes on
//! with `fallback` in the variable; with `closed` the client gets 503.

use serde_json::{json, Value};
use std::time::Duration;

/// `open` (the default): go on without passages (the variable holds
/// `fallback`); `closed`: answer 503 `retrieval_unavailable`.
pub use aigw_shared::config::FailureMode;

#[derive(Debug, Clone)]
pub struct Retrieval {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub failure_mode: FailureMode,
    pub variable: String,
    pub max_passages: usize,
    pub max_context_bytes: usize,
    pub separator: String,
    pub fallback: String,
    pub max_query_bytes: usize,
    pub max_response_bytes: usize,
}

/// Why a retrieval call failed (also the metric suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrievalError {
    /// The call could not be sent (unknown cluster, …).
    Dispatch,
    /// No response: timeout or connection failure (Envoy answers without a status).
    NoResponse,
    /// A non-2xx status.
    Status,
    /// The body is over `max_response_bytes`.
    TooLarge,
    /// The body is not the documented JSON shape.
    BadBody,
}

impl RetrievalError {
    pub fn reason(self) -> &'static str {
        match self {
            RetrievalError::Dispatch => "dispatch_failed",
            RetrievalError::NoResponse => "no_response",
            RetrievalError::Status => "bad_status",
            RetrievalError::TooLarge => "too_large",
            RetrievalError::BadBody => "bad_body",
        }
    }
}

/// The HTTP call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Retrieval {
    /// Builds the call for a query (cut to `max_query_bytes`).
    pub fn call(&self, query: &str, tenant: &str, template: Option<&str>) -> Call {
        let mut body = json!({
            "query": truncate(query, self.max_query_bytes),
            "max_passages": self.max_passages,
            "tenant": tenant,
        });
        if let (Some(name), Some(map)) = (template, body.as_object_mut()) {
            map.insert("template".to_string(), Value::String(name.to_string()));
        }
        let mut headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), self.path.clone()),
            (":authority".to_string(), self.authority.clone()),
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "application/json".to_string()),
        ];
        headers.extend(self.headers.iter().cloned());
        Call { headers, body: body.to_string().into_bytes() }
    }

    /// Reads the passages from the response. `status` is the `:status`
    /// header (absent on timeout or reset). An empty list is a success whose
    /// text is `fallback`.
    pub fn passages(&self, status: Option<&str>, body: Option<&[u8]>) -> Result<String, RetrievalError> {
        let status: u16 = status.and_then(|s| s.trim().parse().ok()).ok_or(RetrievalError::NoResponse)?;
        if !(200..300).contains(&status) {
            return Err(RetrievalError::Status);
        }
        let body = body.unwrap_or_default();
        if body.len() > self.max_response_bytes {
            return Err(RetrievalError::TooLarge);
        }
        let value: Value = serde_json::from_slice(body).map_err(|_| RetrievalError::BadBody)?;
        let passages = value.get("passages").and_then(Value::as_array).ok_or(RetrievalError::BadBody)?;
        let mut out = String::new();
        let mut used = 0;
        for passage in passages {
            let text = match passage {
                Value::String(text) => text.as_str(),
                Value::Object(map) => map.get("text").and_then(Value::as_str).ok_or(RetrievalError::BadBody)?,
                _ => return Err(RetrievalError::BadBody),
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            if used == self.max_passages {
                break;
            }
            let separator = if out.is_empty() { "" } else { self.separator.as_str() };
            let room = self.max_context_bytes.saturating_sub(out.len() + separator.len());
            if room == 0 {
                break;
            }
            out.push_str(separator);
            out.push_str(truncate(text, room));
            used += 1;
        }
        if out.is_empty() {
            Ok(self.fallback.clone())
        } else {
            Ok(out)
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// The text of the last user message of a request body: the query for
/// retrieval, for both API shapes. Text parts are joined with newlines; images are skipped.
pub fn last_user_text(body: &Value) -> Option<String> {
    // A Responses request's `input` may be the user's text itself.
    if let Some(Value::String(text)) = body.get("input") {
        return Some(text.clone()).filter(|t| !t.trim().is_empty());
    }
    let messages = body.get("messages").or_else(|| body.get("input"))?.as_array()?;
    let message = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let text = match message.get("content")? {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            // OpenAI text parts and Anthropic text blocks have the same shape.
            parts
                .iter()
                .filter(|p| matches!(p.get("type").and_then(Value::as_str), Some("text" | "input_text")))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => return None,
    };
    if text.trim().is_empty() {
        None
    } else {
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrieval() -> Retrieval {
        Retrieval {
            cluster: "rag".into(),
            path: "/retrieve".into(),
            authority: "rag.internal".into(),
            headers: vec![("x-api-key".into(), "k".into())],
            timeout: Duration::from_millis(500),
            failure_mode: FailureMode::Open,
            variable: "context".into(),
            max_passages: 2,
            max_context_bytes: 100,
            separator: "\n---\n".into(),
            fallback: "(no passages)".into(),
            max_query_bytes: 10,
            max_response_bytes: 1000,
        }
    }

    #[test]
    fn call_carries_query_tenant_and_headers() {
        let call = retrieval().call("What is the fee for wire transfers?", "retail", Some("kb"));
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body["query"], "What is th");
        assert_eq!(body["tenant"], "retail");
        assert_eq!(body["template"], "kb");
        assert_eq!(body["max_passages"], 2);
        assert!(call.headers.contains(&(":authority".into(), "rag.internal".into())));
        assert!(call.headers.contains(&(":path".into(), "/retrieve".into())));
        assert!(call.headers.contains(&("x-api-key".into(), "k".into())));
        let call = retrieval().call("q", "default", None);
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert!(body.get("template").is_none());
    }

    #[test]
    fn passages_are_joined_and_capped() {
        let r = retrieval();
        let body = br#"{"passages": [{"text": "one", "source": "a"}, "  ", "two", "three"]}"#;
        assert_eq!(r.passages(Some("200"), Some(body)).unwrap(), "one\n---\ntwo");
        let long = format!(r#"{{"passages": ["{}", "b"]}}"#, "é".repeat(80));
        let out = r.passages(Some("200"), Some(long.as_bytes())).unwrap();
        assert!(out.len() <= 100);
        assert!(out.chars().all(|c| c == 'é'));
    }

    #[test]
    fn empty_passages_give_fallback() {
        let r = retrieval();
        assert_eq!(r.passages(Some("200"), Some(br#"{"passages": []}"#)).unwrap(), "(no passages)");
    }

    #[test]
    fn failures() {
        let r = retrieval();
        assert_eq!(r.passages(None, None), Err(RetrievalError::NoResponse));
        assert_eq!(r.passages(Some("503"), Some(b"{}")), Err(RetrievalError::Status));
        assert_eq!(r.passages(Some("200"), Some(b"not json")), Err(RetrievalError::BadBody));
        assert_eq!(r.passages(Some("200"), Some(br#"{"docs": []}"#)), Err(RetrievalError::BadBody));
        assert_eq!(r.passages(Some("200"), Some(br#"{"passages": [1]}"#)), Err(RetrievalError::BadBody));
        assert_eq!(r.passages(Some("200"), Some(&[b' '; 1001])), Err(RetrievalError::TooLarge));
        assert_eq!(RetrievalError::NoResponse.reason(), "no_response");
    }

    #[test]
    fn last_user_text_reads_strings_and_parts() {
        let body = serde_json::json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}, {"type": "text", "text": "b"}]}
        ]});
        assert_eq!(last_user_text(&body).as_deref(), Some("a\nb"));
        let body = serde_json::json!({"messages": [{"role": "assistant", "content": "x"}]});
        assert_eq!(last_user_text(&body), None);
        let body = serde_json::json!({"input": "plain"});
        assert_eq!(last_user_text(&body).as_deref(), Some("plain"));
        let body = serde_json::json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "c"}]}]});
        assert_eq!(last_user_text(&body).as_deref(), Some("c"));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
