//! OpenAI chat completion (JSON) → Responses API response object, for a
//! Responses request served by a chat backend (see `responses_request.rs`).
//!
//! The message's text becomes a `message` output item with one `output_text`
//! part (a refusal a `refusal` part), each tool call a `function_call` item;
//! `finish_reason: length` / `content_filter` make the response `incomplete`
//! with that reason; usage maps to `input_tokens` / `output_tokens` with the
//! cached and reasoning token details. Error bodies (already in OpenAI's
//! error shape) pass unchanged.

use super::responses_request::ResponsesInfo;
use aigw_shared::ApiError;
use serde_json::{json, Value};

/// Responses `usage` from chat `usage`.
pub fn usage(chat: &Value) -> Value {
    let number = |pointer: &str| chat.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let input = number("/prompt_tokens");
    let output = number("/completion_tokens");
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": number("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": number("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": input.saturating_add(output),
    })
}

/// `status` and `incomplete_details` for a chat `finish_reason`.
pub fn status(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// What identifies a response: the backend's id, creation time and model.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
}

/// A response object around `output` and `usage`.
pub fn response_object(
    head: Head<'_>,
    info: &ResponsesInfo,
    status: &str,
    incomplete: Value,
    output: Value,
    usage: Value,
) -> Value {
    let Head { id, created, model } = head;
    json!({
        "id": format!("resp_{id}"),
        "object": "response",
        "created_at": created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": info.instructions,
        "max_output_tokens": info.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "store": false,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": info.tools,
        "usage": usage,
    })
}

/// The output items of a chat message.
pub fn output_items(id: &str, message: &Value) -> Vec<Value> {
    let mut items = Vec::new();
    let text = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    };
    let refusal = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty());
    let mut content = Vec::new();
    if !text.is_empty() {
        content.push(json!({"type": "output_text", "text": text, "annotations": []}));
    }
    if let Some(refusal) = refusal {
        content.push(json!({"type": "refusal", "refusal": refusal}));
    }
    if !content.is_empty() {
        items.push(json!({"id": format!("msg_{id}"), "type": "message", "status": "completed", "role": "assistant", "content": content}));
    }
    if let Some(Value::Array(calls)) = message.get("tool_calls") {
        for call in calls {
            let call_id = call.get("id").and_then(Value::as_str).unwrap_or("");
            items.push(json!({
                "id": format!("fc_{call_id}"),
                "type": "function_call",
                "status": "completed",
                "call_id": call_id,
                "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or(""),
                "arguments": call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or(""),
            }));
        }
    }
    items
}

/// Translates a complete chat reply. Non-2xx bodies pass as they are.
pub fn from_chat(status_code: u32, body: &[u8], info: &ResponsesInfo, created: u64) -> Result<Vec<u8>, ApiError> {
    if !(200..300).contains(&status_code) {
        return Ok(body.to_vec());
    }
    let chat: Value = serde_json::from_slice(body).map_err(|_| {
        ApiError::bad_gateway("invalid_upstream_response", "The model's backend sent a reply that is not JSON.")
    })?;
    let id = chat.get("id").and_then(Value::as_str).unwrap_or("gateway");
    let model = chat.get("model").and_then(Value::as_str).unwrap_or("");
    let choice = chat.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let output = output_items(id, choice.get("message").unwrap_or(&Value::Null));
    let (state, incomplete) = status(choice.get("finish_reason").and_then(Value::as_str));
    let created = chat.get("created").and_then(Value::as_u64).unwrap_or(created);
    let usage = usage(chat.get("usage").unwrap_or(&Value::Null));
    let head = Head { id, created, model };
    let object = response_object(head, info, state, incomplete, Value::Array(output), usage);
    Ok(object.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::responses_request::responses_info;

    #[test]
    fn text_tool_calls_and_usage() {
        let info = responses_info(&json!({"model": "m", "input": "x", "instructions": "be brief"}));
        let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "claude-x",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Checking.",
                "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 6}}});
        let out: Value =
            serde_json::from_slice(&from_chat(200, chat.to_string().as_bytes(), &info, 1).unwrap()).unwrap();
        assert_eq!(out["object"], "response");
        assert_eq!(out["status"], "completed");
        assert_eq!(out["instructions"], "be brief");
        assert_eq!(
            out["output"][0]["content"][0],
            json!({"type": "output_text", "text": "Checking.", "annotations": []})
        );
        assert_eq!(out["output"][1]["type"], "function_call");
        assert_eq!(out["output"][1]["call_id"], "call_9");
        assert_eq!(out["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(out["usage"]["input_tokens"], 10);
        assert_eq!(out["usage"]["input_tokens_details"]["cached_tokens"], 6);
        assert_eq!(out["usage"]["total_tokens"], 14);
    }

    #[test]
    fn length_is_incomplete_and_errors_pass() {
        let info = responses_info(&json!({}));
        let chat = json!({"id": "c", "choices": [{"finish_reason": "length", "message": {"content": "abc"}}]});
        let out: Value =
            serde_json::from_slice(&from_chat(200, chat.to_string().as_bytes(), &info, 1).unwrap()).unwrap();
        assert_eq!(out["status"], "incomplete");
        assert_eq!(out["incomplete_details"]["reason"], "max_output_tokens");
        let error = br#"{"error":{"message":"slow down","type":"rate_limit_exceeded"}}"#;
        assert_eq!(from_chat(429, error, &info, 1).unwrap(), error.to_vec());
        assert_eq!(from_chat(200, b"nope", &info, 1).unwrap_err().status, 502);
    }
}
