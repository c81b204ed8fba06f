//! OpenAI chat completion (JSON) → Anthropic message, for an Anthropic client
//! served by an OpenAI-shaped backend; and OpenAI error bodies → Anthropic's.

use aigw_shared::ApiError;
use serde_json::{json, Map, Value};

/// OpenAI `finish_reason` → Anthropic `stop_reason`. OpenAI does not say
/// whether `stop` came from a stop sequence, so it is always `end_turn`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage from OpenAI's. Anthropic's `input_tokens` excludes cache
/// reads, which OpenAI counts inside `prompt_tokens`.
pub fn usage(openai: Option<&Value>) -> Value {
    let field = |pointer: &str| openai.and_then(|u| u.pointer(pointer)).and_then(Value::as_u64).unwrap_or(0);
    let cached = field("/prompt_tokens_details/cached_tokens");
    let prompt = field("/prompt_tokens");
    json!({
        "input_tokens": prompt.saturating_sub(cached),
        "output_tokens": field("/completion_tokens"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// Anthropic's error `type` for an HTTP status (docs: "HTTP errors").
pub fn error_type(status: u32) -> &'static str {
    match status {
        400 | 405 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An Anthropic error body.
pub fn anthropic_error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// An OpenAI error body (any status) → Anthropic's shape. A body that is not
/// OpenAI's error JSON (an HTML page from a proxy) becomes a generic error
/// for the status; its text is not passed on.
pub fn error_to_anthropic(status: u32, body: &[u8]) -> Vec<u8> {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| format!("The model's backend answered {status}."));
    anthropic_error(error_type(status), &message).to_string().into_bytes()
}

fn unreadable() -> ApiError {
    ApiError::bad_gateway("upstream_invalid_response", "The model's backend sent an unreadable reply.")
}

/// Translates a complete chat completion reply. `status` is the upstream's
/// HTTP status: 2xx bodies are completions, others are errors. A body that
/// cannot be read gives `Err` (the caller answers 502).
pub fn to_message(status: u32, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if !(200..300).contains(&status) {
        return Ok(error_to_anthropic(status, body));
    }
    let completion: Value = serde_json::from_slice(body).map_err(|_| unreadable())?;
    if completion.get("error").is_some_and(Value::is_object) {
        // An error with a 2xx (some OpenAI-compatible servers do this).
        return Ok(error_to_anthropic(500, body));
    }
    let Some(choice) = completion.pointer("/choices/0") else { return Err(unreadable()) };
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    for field in ["content", "refusal"] {
        if let Some(Value::String(text)) = message.get(field) {
            if !text.is_empty() {
                content.push(json!({"type": "text", "text": text}));
            }
        }
    }
    if let Some(Value::Array(calls)) = message.get("tool_calls") {
        for call in calls {
            content.push(tool_use_block(call)?);
        }
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str).map(stop_reason);
    let mut out = Map::new();
    out.insert("id".into(), completion.get("id").cloned().unwrap_or_else(|| json!("")));
    out.insert("type".into(), json!("message"));
    out.insert("role".into(), json!("assistant"));
    out.insert("model".into(), completion.get("model").cloned().unwrap_or_else(|| json!("")));
    out.insert("content".into(), Value::Array(content));
    out.insert("stop_reason".into(), finish.map_or(Value::Null, |reason| json!(reason)));
    out.insert("stop_sequence".into(), Value::Null);
    out.insert("usage".into(), usage(completion.get("usage")));
    Ok(Value::Object(out).to_string().into_bytes())
}

/// A chat tool call → a `tool_use` block. Its arguments must be a JSON
/// object: Anthropic's `input` is one, and a guess would hand the client a
/// different call than the model made.
fn tool_use_block(call: &Value) -> Result<Value, ApiError> {
    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
    let input = if arguments.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(arguments) {
            Ok(value @ Value::Object(_)) => value,
            _ => return Err(unreadable()),
        }
    };
    Ok(json!({
        "type": "tool_use",
        "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
        "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
        "input": input,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn text_reply_with_cached_usage() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23, "prompt_tokens_details": {"cached_tokens": 8}}
        });
        let out = parse(to_message(200, body.to_string().as_bytes()).unwrap());
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o-mini",
                "content": [{"type": "text", "text": "Hello"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 8, "cache_creation_input_tokens": 0}
            })
        );
    }

    #[test]
    fn tool_calls_become_tool_use_blocks() {
        let body = json!({
            "id": "c", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7}
        });
        let out = parse(to_message(200, body.to_string().as_bytes()).unwrap());
        assert_eq!(
            out["content"],
            json!([
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}
            ])
        );
        assert_eq!(out["stop_reason"], "tool_use");
        let bad = json!({"choices": [{"message": {"tool_calls": [{"id": "x", "function": {"name": "f", "arguments": "[1"}}]}}]});
        assert_eq!(to_message(200, bad.to_string().as_bytes()).unwrap_err().status, 502);
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason("stop"), "end_turn");
        assert_eq!(stop_reason("length"), "max_tokens");
        assert_eq!(stop_reason("tool_calls"), "tool_use");
        assert_eq!(stop_reason("content_filter"), "refusal");
        let body = json!({"choices": [{"message": {"refusal": "no"}, "finish_reason": "content_filter"}]});
        let out = parse(to_message(200, body.to_string().as_bytes()).unwrap());
        assert_eq!(out["content"], json!([{"type": "text", "text": "no"}]));
        assert_eq!(out["stop_reason"], "refusal");
        assert_eq!(out["usage"]["output_tokens"], 0);
    }

    #[test]
    fn errors_take_anthropics_shape() {
        let body =
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}});
        let out = parse(to_message(429, body.to_string().as_bytes()).unwrap());
        assert_eq!(
            out,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
        );
        let out = parse(to_message(502, b"<html>secret proxy page</html>").unwrap());
        assert_eq!(out["error"]["type"], "api_error");
        assert!(!out["error"]["message"].as_str().unwrap().contains("secret"));
        assert_eq!(parse(to_message(404, b"{}").unwrap())["error"]["type"], "not_found_error");
        let out = parse(to_message(200, body.to_string().as_bytes()).unwrap());
        assert_eq!(out["type"], "error");
        assert_eq!(to_message(200, b"{not json").unwrap_err().status, 502);
        assert_eq!(to_message(200, b"{\"choices\": []}").unwrap_err().status, 502);
    }
}
