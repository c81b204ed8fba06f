//! `POST /v1/responses`: the OpenAI Responses API, as one response object or
//! as the event sequence OpenAI streams (`response.created`,
//! `response.in_progress`, per output item `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta`…, the `*.done`
//! events that repeat the whole text, and `response.completed` with usage).
//!
//! Steered by the same `x-mock-*` headers as chat: the mode picks the text
//! (echo: the last user input), `x-mock-tool-call` adds a `function_call`
//! item, `x-mock-chunks` the number of text deltas, `x-mock-finish` ends it
//! `incomplete`, `x-mock-cached-tokens` reports cached input.

use crate::controls::{Controls, Finish, Mode};
use crate::reply::{count_tokens, now_secs, split_text, BadRequest};
use aigw_shared::api::{request_texts_mut, ApiShape};
use serde_json::{json, Value};

/// The reply to a Responses request: a JSON object, or SSE event strings.
pub enum Answer {
    Json(Value),
    Stream(Vec<String>),
}

/// The text of the last user input: `input` itself when it is a string, else
/// the last user message's text (string content or `input_text` parts).
fn last_user_text(body: &Value) -> String {
    match body.get("input") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .rev()
            .find(|item| item.get("role").and_then(Value::as_str) == Some("user"))
            .map(|item| match item.get("content") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|part| part.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Builds the answer to a Responses request body.
pub fn respond(id: u64, body: &[u8], controls: &Controls) -> Result<Answer, BadRequest> {
    let mut value: Value = serde_json::from_slice(body).map_err(|err| format!("request body is not JSON: {err}"))?;
    if !value.is_object() {
        return Err("request body is not a JSON object".to_string());
    }
    let model = value.get("model").and_then(Value::as_str).ok_or("model: missing")?.to_string();
    if value.get("input").is_none() && value.get("prompt").is_none() {
        return Err("input: missing".to_string());
    }
    let stream = value.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let text = match &controls.mode {
        Mode::Echo => last_user_text(&value),
        Mode::Request => String::from_utf8_lossy(body).into_owned(),
        Mode::Fixed(text) => text.clone(),
    };
    let mut input_tokens = 0;
    request_texts_mut(ApiShape::OpenAiResponses, &mut value, &mut |_, text| input_tokens += count_tokens(text));
    let call = controls.tool_call.clone();
    let output_tokens = count_tokens(&text) + call.as_ref().map_or(0, |c| count_tokens(&c.arguments));
    let cached = controls.cached_tokens.min(input_tokens);
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    let response_id = format!("resp_mock_{id}");
    let message_id = format!("msg_mock_{id}");
    let call_id = format!("fc_mock_{id}");
    let (status, incomplete) = match controls.finish {
        Finish::Stop => ("completed", Value::Null),
        Finish::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        Finish::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
    };
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let message = |content: Value, status: &str| json!({"id": message_id, "type": "message", "status": status, "role": "assistant", "content": content});
    let function_call = |arguments: &str, status: &str| {
        call.as_ref().map(|c| {
            json!({"id": call_id, "type": "function_call", "status": status, "call_id": format!("call_mock_{id}"),
                "name": c.name, "arguments": arguments})
        })
    };
    // A reply that only calls a tool has no message item (as OpenAI answers).
    let has_message = !text.is_empty() || call.is_none();
    let mut output = Vec::new();
    if has_message {
        output.push(message(json!([part.clone()]), "completed"));
    }
    output.extend(function_call(call.as_ref().map_or("", |c| c.arguments.as_str()), "completed"));
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": response_id, "object": "response", "created_at": now_secs(), "status": status,
            "error": null, "incomplete_details": if status == "incomplete" { incomplete.clone() } else { Value::Null },
            "instructions": value.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": value.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model, "output": output, "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null}, "store": false, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": value.get("tools").cloned().unwrap_or(json!([])), "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "user": null, "metadata": {}
        })
    };
    if !stream {
        return Ok(Answer::Json(response(status, Value::Array(output), usage)));
    }
    let mut events = Vec::new();
    let mut sequence = 0u64;
    let mut emit = |mut data: Value| {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(map) = data.as_object_mut() {
            map.insert("sequence_number".into(), json!(sequence));
        }
        sequence += 1;
        events.push(format!("event: {kind}\ndata: {data}\n\n"));
    };
    emit(json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}));
    emit(json!({"type": "response.in_progress", "response": response("in_progress", json!([]), Value::Null)}));
    let mut index = 0;
    if has_message {
        emit(
            json!({"type": "response.output_item.added", "output_index": index, "item": message(json!([]), "in_progress")}),
        );
        let empty = json!({"type": "output_text", "text": "", "annotations": []});
        emit(
            json!({"type": "response.content_part.added", "item_id": message_id, "output_index": index, "content_index": 0, "part": empty}),
        );
        for piece in split_text(&text, controls.chunks) {
            emit(
                json!({"type": "response.output_text.delta", "item_id": message_id, "output_index": index, "content_index": 0, "delta": piece, "logprobs": []}),
            );
        }
        emit(
            json!({"type": "response.output_text.done", "item_id": message_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
        );
        emit(
            json!({"type": "response.content_part.done", "item_id": message_id, "output_index": index, "content_index": 0, "part": part}),
        );
        emit(
            json!({"type": "response.output_item.done", "output_index": index, "item": message(json!([part]), "completed")}),
        );
        index += 1;
    }
    if let Some(c) = &call {
        emit(
            json!({"type": "response.output_item.added", "output_index": index, "item": function_call("", "in_progress")}),
        );
        let pieces = split_text(&c.arguments, controls.chunks.or(Some(2)));
        for piece in pieces {
            emit(
                json!({"type": "response.function_call_arguments.delta", "item_id": call_id, "output_index": index, "delta": piece}),
            );
        }
        emit(
            json!({"type": "response.function_call_arguments.done", "item_id": call_id, "output_index": index, "arguments": c.arguments}),
        );
        emit(
            json!({"type": "response.output_item.done", "output_index": index, "item": function_call(&c.arguments, "completed")}),
        );
    }
    let last = if status == "completed" { "response.completed" } else { "response.incomplete" };
    emit(json!({"type": last, "response": response(status, Value::Array(output), usage)}));
    Ok(Answer::Stream(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::ToolCall;

    fn events(answer: Answer) -> Vec<Value> {
        let Answer::Stream(events) = answer else { panic!("not a stream") };
        events
            .iter()
            .map(|event| {
                let (name, data) = event.trim_end().split_once('\n').unwrap();
                let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(name.strip_prefix("event: "), data["type"].as_str());
                data
            })
            .collect()
    }

    #[test]
    fn json_echoes_the_last_user_input_with_usage() {
        let body = br#"{"model":"gpt-4o-mini","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hello there"}]}]}"#;
        let Answer::Json(out) = respond(7, body, &Controls::default()).unwrap() else { panic!() };
        assert_eq!(out["object"], "response");
        assert_eq!(out["status"], "completed");
        assert_eq!(out["output"][0]["content"][0]["text"], "hello there");
        assert_eq!(out["usage"]["input_tokens"], count_tokens("be brief") + count_tokens("hello there"));
        assert_eq!(out["usage"]["output_tokens"], count_tokens("hello there"));
        assert!(respond(1, br#"{"model":"m"}"#, &Controls::default()).is_err());
    }

    #[test]
    fn stream_follows_openai_event_order_with_a_tool_call() {
        let controls = Controls {
            chunks: Some(3),
            tool_call: Some(ToolCall { name: "get_weather".into(), arguments: "{\"city\":\"Paris\"}".into() }),
            ..Controls::default()
        };
        let out = events(respond(3, br#"{"model":"m","input":"abcdef","stream":true}"#, &controls).unwrap());
        let kinds: Vec<&str> = out.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let sequence: Vec<u64> = out.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(sequence, (0..out.len() as u64).collect::<Vec<_>>());
        let last = out.last().unwrap();
        assert_eq!(last["response"]["output"][1]["name"], "get_weather");
        assert_eq!(
            last["response"]["usage"]["output_tokens"],
            count_tokens("abcdef") + count_tokens("{\"city\":\"Paris\"}")
        );
        let text: String = out.iter().filter_map(|e| e["delta"].as_str()).take(3).collect();
        assert_eq!(text, "abcdef");
    }
}
