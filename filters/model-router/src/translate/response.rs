//! Anthropic messages response (JSON) → OpenAI chat completion.

use super::{finish_reason, openai_error, usage};
use aigw_shared::api::anthropic::{ErrorBody, MessagesResponse};
use aigw_shared::ApiError;
use serde_json::{json, Value};

/// Translates a complete Anthropic reply body. `status` is the upstream's
/// HTTP status: 2xx bodies are messages, others are errors. `created` is the
/// Unix time in seconds for the `created` field.
///
/// A body that cannot be read gives `Err` (the caller answers 502).
pub fn to_openai(status: u32, body: &[u8], created: u64) -> Result<Vec<u8>, ApiError> {
    to_openai_with(status, body, created, None)
}

/// [`to_openai`] for a request whose `response_format` became the forced
/// tool `json_tool`: that tool's input is the answer's content (JSON text),
/// and the call is not shown as a tool call.
pub fn to_openai_with(status: u32, body: &[u8], created: u64, json_tool: Option<&str>) -> Result<Vec<u8>, ApiError> {
    if !(200..300).contains(&status) {
        return Ok(error_to_openai(status, body));
    }
    let message: MessagesResponse = serde_json::from_slice(body).map_err(|_| {
        ApiError::bad_gateway("upstream_invalid_response", "The model's backend sent an unreadable reply.")
    })?;
    if message.kind == "error" {
        // Anthropic never does this with a 2xx, but a proxy in between might.
        return Ok(error_to_openai(status, body));
    }
    let mut text = String::new();
    let mut has_text = false;
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block.kind.as_str() {
            "text" => {
                if let Some(part) = &block.text {
                    text.push_str(part);
                    has_text = true;
                }
            }
            "tool_use" if json_tool.is_some() && block.name.as_deref() == json_tool => {
                text.push_str(&block.input.as_ref().map(Value::to_string).unwrap_or_else(|| "{}".to_string()));
                has_text = true;
            }
            "tool_use" => {
                let arguments = block.input.as_ref().map(Value::to_string).unwrap_or_else(|| "{}".to_string());
                tool_calls.push(json!({
                    "id": block.id.clone().unwrap_or_default(),
                    "type": "function",
                    "function": {"name": block.name.clone().unwrap_or_default(), "arguments": arguments},
                }));
            }
            // thinking, redacted_thinking, server tool blocks: no OpenAI equivalent.
            _ => {}
        }
    }
    let finish = match message.stop_reason.as_deref() {
        // The forced format tool ends the answer: a normal stop for the client.
        Some("tool_use") if json_tool.is_some() && tool_calls.is_empty() => Some("stop"),
        other => other.map(finish_reason),
    };
    let mut reply = json!({
        "role": "assistant",
        "content": if has_text { Value::String(text) } else { Value::Null },
    });
    if !tool_calls.is_empty() {
        if let Some(object) = reply.as_object_mut() {
            object.insert("tool_calls".into(), Value::Array(tool_calls));
        }
    }
    let out = json!({
        "id": message.id,
        "object": "chat.completion",
        "created": created,
        "model": message.model,
        "choices": [{"index": 0, "message": reply, "finish_reason": finish, "logprobs": null}],
        "usage": usage(&message.usage),
    });
    Ok(out.to_string().into_bytes())
}

/// An Anthropic error body (any status) → OpenAI's error shape. A body that
/// is not Anthropic's error JSON (an HTML page from a proxy, a truncated
/// reply) becomes a generic error for that status; the original text is not
/// passed on.
pub fn error_to_openai(status: u32, body: &[u8]) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    let error = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope.error,
        Err(_) => ErrorBody {
            kind: fallback_kind(status).to_string(),
            message: format!("The model's backend answered {status}."),
        },
    };
    openai_error(&error).to_string().into_bytes()
}

fn fallback_kind(status: u32) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn text_reply() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 4}
        });
        let out = parse(to_openai(200, body.to_string().as_bytes(), 1700).unwrap());
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(out["id"], "msg_1");
        assert_eq!(out["created"], 1700);
        assert_eq!(out["model"], "claude-x");
        assert_eq!(out["choices"][0]["message"], json!({"role": "assistant", "content": "Hello there"}));
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert_eq!(out["usage"]["prompt_tokens"], 16);
        assert_eq!(out["usage"]["completion_tokens"], 3);
        assert_eq!(out["usage"]["total_tokens"], 19);
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    }

    #[test]
    fn tool_use_reply() {
        let body = json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}
        });
        let out = parse(to_openai(200, body.to_string().as_bytes(), 0).unwrap());
        let message = &out["choices"][0]["message"];
        assert!(message["content"].is_null());
        assert_eq!(message["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(message["tool_calls"][0]["type"], "function");
        assert_eq!(message["tool_calls"][0]["function"]["name"], "get_weather");
        let arguments: Value =
            serde_json::from_str(message["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"city": "Paris"}));
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn forced_format_tool_becomes_content() {
        let body = json!({
            "id": "m", "type": "message", "model": "claude-x", "stop_reason": "tool_use", "usage": {},
            "content": [{"type": "tool_use", "id": "t", "name": "reply", "input": {"answer": "42"}}]
        });
        let out = parse(to_openai_with(200, body.to_string().as_bytes(), 0, Some("reply")).unwrap());
        assert_eq!(out["choices"][0]["message"], json!({"role": "assistant", "content": "{\"answer\":\"42\"}"}));
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        let out = parse(to_openai(200, body.to_string().as_bytes(), 0).unwrap());
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn max_tokens_is_length() {
        let body = json!({"id": "m", "type": "message", "content": [{"type": "text", "text": "x"}], "stop_reason": "max_tokens", "usage": {}});
        let out = parse(to_openai(200, body.to_string().as_bytes(), 0).unwrap());
        assert_eq!(out["choices"][0]["finish_reason"], "length");
        assert_eq!(out["usage"]["total_tokens"], 0);
    }

    #[test]
    fn errors() {
        let body = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        let out = parse(to_openai(529, body.to_string().as_bytes(), 0).unwrap());
        assert_eq!(out["error"]["message"], "Overloaded");
        assert_eq!(out["error"]["code"], "overloaded");
        let out = parse(to_openai(429, b"<html>secret upstream page</html>", 0).unwrap());
        assert_eq!(out["error"]["type"], "rate_limit_exceeded");
        assert!(!out["error"]["message"].as_str().unwrap().contains("secret"));
        let out = parse(to_openai(200, body.to_string().as_bytes(), 0).unwrap());
        assert_eq!(out["error"]["type"], "api_error");
        let err = to_openai(200, b"{not json", 0).unwrap_err();
        assert_eq!(err.status, 502);
    }
}
