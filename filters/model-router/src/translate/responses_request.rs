//! OpenAI Responses request → OpenAI chat completions request, for backends
//! that only speak chat (Anthropic, through the chat → Messages translation
//! after this one; Azure chat deployments).
//!
//! Mapped: `instructions` (a system message first), `input` (a string, or
//! items: messages with text and image parts, `function_call` items as
//! assistant tool calls, `function_call_output` items as tool messages;
//! `reasoning` items are the model's own notes and are left out), function
//! `tools` and `tool_choice`, `max_output_tokens`, `temperature`, `top_p`,
//! `parallel_tool_calls`, `user`, `text.format` (as `response_format`),
//! `reasoning.effort`, `stream`.
//!
//! Refused with 400 `unsupported_parameter`, naming the field, because a chat
//! backend cannot serve them and dropping them would change the answer:
//! `previous_response_id`, `conversation`, `store: true`, `background: true`,
//! `prompt` (stored prompts), built-in tools (web search, file search, …),
//! `item_reference` and built-in tool call items, file inputs.

use aigw_shared::ApiError;
use serde_json::{json, Map, Value};

/// What the response side needs to know to answer in the Responses shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesInfo {
    pub stream: bool,
    /// Echoed in the response object as OpenAI does.
    pub instructions: Value,
    pub tools: Value,
    pub max_output_tokens: Value,
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("unsupported_parameter", message).with_param(param)
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message).with_param(param)
}

/// The response-side information of a Responses request.
pub fn responses_info(body: &Value) -> ResponsesInfo {
    let field = |name: &str| body.get(name).cloned().unwrap_or(Value::Null);
    ResponsesInfo {
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        instructions: field("instructions"),
        tools: body.get("tools").cloned().unwrap_or(json!([])),
        max_output_tokens: field("max_output_tokens"),
    }
}

/// Refuses the stateful and built-in features a chat backend cannot serve.
fn check_supported(body: &Map<String, Value>) -> Result<(), ApiError> {
    for field in ["previous_response_id", "conversation", "prompt"] {
        if body.get(field).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(
                field,
                format!("`{field}` needs server-side state that this model's backend does not keep; send the whole conversation in `input`."),
            ));
        }
    }
    for field in ["store", "background"] {
        if body.get(field).and_then(Value::as_bool) == Some(true) {
            return Err(unsupported(
                field,
                format!("`{field}: true` is not supported for this model: its backend keeps no responses."),
            ));
        }
    }
    Ok(())
}

/// Text of a content part list or string (tool outputs, assistant messages).
fn joined_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").or_else(|| p.get("refusal")).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A message's content as chat content: a string stays; parts become text and
/// image_url parts.
fn chat_content(content: &Value, path: &str) -> Result<Value, ApiError> {
    let Value::Array(parts) = content else {
        return match content {
            Value::String(_) => Ok(content.clone()),
            _ => Err(invalid(path, format!("`{path}` must be a string or an array of parts."))),
        };
    };
    let mut out = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let part_path = format!("{path}[{index}]");
        match part.get("type").and_then(Value::as_str).unwrap_or("") {
            "input_text" | "output_text" | "text" => {
                let text = part.get("text").and_then(Value::as_str).unwrap_or("");
                out.push(json!({"type": "text", "text": text}));
            }
            "refusal" => {
                let text = part.get("refusal").and_then(Value::as_str).unwrap_or("");
                out.push(json!({"type": "text", "text": text}));
            }
            "input_image" => {
                let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                    return Err(unsupported(
                        &part_path,
                        "Images by `file_id` are not supported for this model; send `image_url`.",
                    ));
                };
                let mut image = json!({"url": url});
                if let (Some(detail), Some(map)) = (part.get("detail").and_then(Value::as_str), image.as_object_mut()) {
                    map.insert("detail".into(), json!(detail));
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(unsupported(
                    &part_path,
                    format!("Content parts of type `{other}` are not supported for this model."),
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

/// Converts the `input` items into chat messages, appended to `messages`.
fn input_items(items: &[Value], messages: &mut Vec<Value>) -> Result<(), ApiError> {
    for (index, item) in items.iter().enumerate() {
        let path = format!("input[{index}]");
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let content = item.get("content").cloned().unwrap_or(Value::Null);
                let content = if role == "assistant" {
                    Value::String(joined_text(&content))
                } else {
                    chat_content(&content, &format!("{path}.content"))?
                };
                messages.push(json!({"role": role, "content": content}));
            }
            "function_call" => {
                let call_id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
                let call = json!({"id": call_id, "type": "function", "function": {
                    "name": item.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
                }});
                // Parallel calls are consecutive items: one assistant turn.
                let joins = messages.last().is_some_and(|m| {
                    m.get("role").and_then(Value::as_str) == Some("assistant") && m.get("tool_calls").is_some()
                });
                match messages.last_mut().and_then(|m| m.get_mut("tool_calls")).filter(|_| joins) {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" => {
                let call_id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
                let output = joined_text(item.get("output").unwrap_or(&Value::Null));
                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
            }
            // The model's own reasoning from an earlier turn: a chat backend
            // cannot take it back, and the answer does not depend on it.
            "reasoning" => {}
            other => {
                return Err(unsupported(
                    &path,
                    format!("Input items of type `{other}` are not supported for this model."),
                ))
            }
        }
    }
    Ok(())
}

fn convert_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str).unwrap_or("") {
            "function" => {
                let mut function = Map::new();
                for field in ["name", "description", "parameters", "strict"] {
                    if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
                        function.insert(field.into(), value.clone());
                    }
                }
                out.push(json!({"type": "function", "function": function}));
            }
            other => {
                return Err(unsupported(
                    &format!("tools[{index}].type"),
                    format!("Built-in tools (`{other}`) are not supported for this model; only `function` tools are."),
                ))
            }
        }
    }
    Ok(out)
}

fn convert_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(_) => Ok(choice.clone()),
        Value::Object(map) if map.get("type").and_then(Value::as_str) == Some("function") => {
            let name = map.get("name").and_then(Value::as_str).unwrap_or("");
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(unsupported(
            "tool_choice",
            "Only `auto`, `none`, `required` and function tool choices are supported for this model.",
        )),
    }
}

/// The chat completions request for a Responses request body.
pub fn to_chat(body: &Value) -> Result<Value, ApiError> {
    let Some(request) = body.as_object() else {
        return Err(invalid("", "The request body must be a JSON object."));
    };
    check_supported(request)?;
    let mut messages = Vec::new();
    match request.get("instructions") {
        Some(Value::String(text)) if !text.is_empty() => messages.push(json!({"role": "system", "content": text})),
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("instructions", "`instructions` must be a string.")),
    }
    match request.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => input_items(items, &mut messages)?,
        _ => return Err(invalid("input", "The request needs `input`: a string or an array of items.")),
    }
    let mut out = Map::new();
    if let Some(model) = request.get("model") {
        out.insert("model".into(), model.clone());
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(Value::Array(tools)) = request.get("tools") {
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(convert_tools(tools)?));
        }
    }
    if let Some(choice) = request.get("tool_choice").filter(|v| !v.is_null()) {
        out.insert("tool_choice".into(), convert_tool_choice(choice)?);
    }
    if let Some(max) = request.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), max.clone());
    }
    for field in ["temperature", "top_p", "parallel_tool_calls", "user"] {
        if let Some(value) = request.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    if let Some(effort) = body.pointer("/reasoning/effort").filter(|v| !v.is_null()) {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(format) = body.pointer("/text/format") {
        match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut schema = Map::new();
                for field in ["name", "description", "schema", "strict"] {
                    if let Some(value) = format.get(field).filter(|v| !v.is_null()) {
                        schema.insert(field.into(), value.clone());
                    }
                }
                out.insert("response_format".into(), json!({"type": "json_schema", "json_schema": schema}));
            }
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        // response.completed carries usage: ask the backend for it.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_input_items_and_tools_map_to_chat() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"},
                    {"type": "input_image", "image_url": "https://x/p.png", "detail": "low"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
                {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "noon"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 18C."}]}
            ],
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object"}, "strict": null}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "max_output_tokens": 100,
            "temperature": 0.2,
            "stream": true,
            "store": false,
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}}
        });
        let chat = to_chat(&body).unwrap();
        assert_eq!(
            chat,
            json!({
                "model": "claude-sonnet-4-5",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                        {"type": "image_url", "image_url": {"url": "https://x/p.png", "detail": "low"}}]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                    {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
                    {"role": "assistant", "content": "It is 18C."}
                ],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "max_tokens": 100,
                "temperature": 0.2,
                "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}},
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
        let info = responses_info(&body);
        assert!(info.stream);
        assert_eq!(info.instructions, "Be brief.");
    }

    #[test]
    fn plain_string_input() {
        let chat = to_chat(&json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!(chat, json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    }

    #[test]
    fn stateful_and_builtin_features_are_refused_by_name() {
        let cases = [
            (json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}), "previous_response_id"),
            (json!({"model": "m", "input": "hi", "store": true}), "store"),
            (json!({"model": "m", "input": "hi", "background": true}), "background"),
            (json!({"model": "m", "input": "hi", "conversation": "conv_1"}), "conversation"),
            (json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}), "tools[0].type"),
            (json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}), "input[0]"),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "input[0].content[0]",
            ),
        ];
        for (body, param) in cases {
            let err = to_chat(&body).unwrap_err();
            assert_eq!(
                (err.status, err.code, err.param.as_deref()),
                (400, "unsupported_parameter", Some(param)),
                "{body}"
            );
        }
        assert_eq!(to_chat(&json!({"model": "m"})).unwrap_err().param.as_deref(), Some("input"));
        assert!(to_chat(&json!({"model": "m", "input": "x", "store": false, "previous_response_id": null})).is_ok());
    }
}
