//! Anthropic messages request → OpenAI chat completions request, for an
//! Anthropic client (Claude Code, the Anthropic SDKs) whose model routes to an
//! OpenAI-shaped backend (OpenAI, Azure OpenAI, vLLM, Ollama…).
//!
//! Works on `serde_json::Value` and checks every type it reads, so a
//! malformed request gets a 400 naming the field without quoting the prompt.
//! What the chat API cannot express is refused with 400
//! `unsupported_parameter` naming the field (a dropped `thinking` or `top_k`
//! would silently change the answer). Only hints that change nothing about
//! the answer are dropped: `cache_control`, top-level or on a block (prompt caching is the provider's
//! business), `thinking` blocks in the history (only a Claude model can read
//! them), and `tool_result.is_error` (the result's text says what failed).
//! The README's translation table lists every field.

use aigw_shared::ApiError;
use serde_json::{json, Map, Value};

/// What the response side needs to know about a translated Messages request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagesInfo {
    /// The client asked for a stream (`"stream": true`).
    pub stream: bool,
    /// The model the client asked for, echoed in `message_start` when the
    /// backend's chunks name none.
    pub model: String,
}

/// OpenAI allows at most four stop sequences.
const MAX_STOP_SEQUENCES: usize = 4;

/// Top-level fields of a Messages request this translation understands.
/// Anything else is refused, not dropped.
const KNOWN_FIELDS: [&str; 15] = [
    "cache_control",
    "model",
    "messages",
    "system",
    "max_tokens",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
];

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message).with_param(param)
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("unsupported_parameter", message).with_param(param)
}

/// A field or type name echoed in an error: short, and only if it looks like one.
fn safe(name: &str) -> &str {
    if name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        name
    } else {
        "(unrecognised)"
    }
}

/// Reads what the response side needs from a Messages request.
pub fn messages_info(body: &Value) -> MessagesInfo {
    MessagesInfo {
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        model: body.get("model").and_then(Value::as_str).unwrap_or_default().to_string(),
    }
}

/// Translates an Anthropic messages request into an OpenAI chat completions
/// request for `model`.
pub fn to_chat(body: &Value, model: &str) -> Result<Value, ApiError> {
    let Some(request) = body.as_object() else {
        return Err(ApiError::bad_request("invalid_request", "The request body must be a JSON object."));
    };
    if let Some(field) = request.keys().find(|key| !KNOWN_FIELDS.contains(&key.as_str())) {
        return Err(unsupported(
            safe(field),
            format!("`{}` cannot be translated for this model's backend (an OpenAI-compatible API).", safe(field)),
        ));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_string()));

    let mut messages = Vec::new();
    if let Some(system) = request.get("system") {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    match request.get("messages") {
        Some(Value::Array(turns)) => {
            for (i, turn) in turns.iter().enumerate() {
                convert_turn(turn, &format!("messages[{i}]"), &mut messages)?;
            }
        }
        Some(_) => return Err(invalid("messages", "`messages` must be an array.")),
        None => return Err(invalid("messages", "`messages` is required.")),
    }
    out.insert("messages".into(), Value::Array(messages));

    match request.get("max_tokens") {
        Some(value) => match value.as_u64() {
            Some(n) if n > 0 => {
                out.insert("max_tokens".into(), json!(n));
            }
            _ => return Err(invalid("max_tokens", "`max_tokens` must be a positive integer.")),
        },
        None => return Err(invalid("max_tokens", "`max_tokens` is required.")),
    }

    for field in ["temperature", "top_p"] {
        match request.get(field) {
            None | Some(Value::Null) => {}
            Some(value) if value.is_number() => {
                out.insert(field.into(), value.clone());
            }
            Some(_) => return Err(invalid(field, format!("`{field}` must be a number."))),
        }
    }
    if request.get("top_k").is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "top_k",
            "`top_k` has no equivalent in this model's backend (an OpenAI-compatible API).",
        ));
    }

    match request.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let mut stops = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(text) => stops.push(Value::String(text.clone())),
                    _ => return Err(invalid(&format!("stop_sequences[{i}]"), "Stop sequences must be strings.")),
                }
            }
            if stops.len() > MAX_STOP_SEQUENCES {
                return Err(unsupported("stop_sequences", "This model's backend takes at most 4 stop sequences."));
            }
            if !stops.is_empty() {
                out.insert("stop".into(), Value::Array(stops));
            }
        }
        Some(_) => return Err(invalid("stop_sequences", "`stop_sequences` must be an array of strings.")),
    }

    match request.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            out.insert("stream".into(), Value::Bool(true));
            // The usage chunk fills `message_delta.usage`; the client asked for
            // Anthropic's stream, which always carries usage.
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Some(_) => return Err(invalid("stream", "`stream` must be a boolean.")),
    }

    match request.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(metadata)) => {
            for (key, value) in metadata {
                match (key.as_str(), value) {
                    ("user_id", Value::String(user)) => {
                        out.insert("user".into(), Value::String(user.clone()));
                    }
                    ("user_id", Value::Null) => {}
                    ("user_id", _) => return Err(invalid("metadata.user_id", "`metadata.user_id` must be a string.")),
                    (other, _) => {
                        return Err(unsupported(
                            &format!("metadata.{}", safe(other)),
                            "Only `metadata.user_id` can be translated.",
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(invalid("metadata", "`metadata` must be an object.")),
    }

    match request.get("thinking") {
        None | Some(Value::Null) => {}
        Some(thinking) if thinking.get("type").and_then(Value::as_str) == Some("disabled") => {}
        Some(_) => {
            return Err(unsupported(
                "thinking",
                "Extended thinking is only available on Claude models; this model's backend cannot do it.",
            ))
        }
    }
    match request.get("service_tier") {
        None | Some(Value::Null) => {}
        Some(Value::String(tier)) if tier == "auto" => {}
        Some(_) => return Err(unsupported("service_tier", "Only `service_tier: auto` can be translated.")),
    }

    let mut has_tools = false;
    match request.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) if tools.is_empty() => {}
        Some(Value::Array(tools)) => {
            let mut converted = Vec::with_capacity(tools.len());
            for (i, tool) in tools.iter().enumerate() {
                converted.push(convert_tool(tool, &format!("tools[{i}]"))?);
            }
            out.insert("tools".into(), Value::Array(converted));
            has_tools = true;
        }
        Some(_) => return Err(invalid("tools", "`tools` must be an array.")),
    }
    if let Some(choice) = request.get("tool_choice").filter(|v| !v.is_null()) {
        let (converted, parallel) = convert_tool_choice(choice)?;
        if has_tools {
            out.insert("tool_choice".into(), converted);
            if parallel == Some(false) {
                out.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        } else if converted != json!("none") && converted != json!("auto") {
            return Err(invalid("tool_choice", "`tool_choice` needs `tools`."));
        }
    }
    Ok(Value::Object(out))
}

/// `system` as one string: a string, or text blocks joined by blank lines.
fn system_text(system: &Value) -> Result<String, ApiError> {
    match system {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let path = format!("system[{i}]");
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => parts.push(block_text(block, &path)?),
                    Some(other) => {
                        return Err(unsupported(
                            &path,
                            format!("System blocks of type `{}` cannot be translated.", safe(other)),
                        ))
                    }
                    None => return Err(invalid(&path, "A system block needs a string `type`.")),
                }
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(invalid("system", "`system` must be a string or an array of text blocks.")),
    }
}

fn block_text(block: &Value, path: &str) -> Result<String, ApiError> {
    match block.get("text") {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(invalid(path, "A text block needs a string `text`.")),
    }
}

/// One Anthropic turn → one or more chat messages. A user turn's
/// `tool_result` blocks become `tool` messages, placed first (the chat API
/// wants them right after the assistant's tool calls), then the rest of the
/// turn as a user message.
fn convert_turn(turn: &Value, path: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let Some(turn) = turn.as_object() else {
        return Err(invalid(path, "Each message must be an object."));
    };
    let role = match turn.get("role") {
        Some(Value::String(role)) => role.as_str(),
        _ => return Err(invalid(&format!("{path}.role"), "Each message needs a string `role`.")),
    };
    let content_path = format!("{path}.content");
    let content = turn.get("content").unwrap_or(&Value::Null);
    match role {
        "user" => user_turn(content, &content_path, out),
        "assistant" => assistant_turn(content, &content_path, out),
        _ => Err(invalid(&format!("{path}.role"), "`role` must be `user` or `assistant`.")),
    }
}

fn user_turn(content: &Value, path: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let blocks = match content {
        Value::String(text) => {
            out.push(json!({"role": "user", "content": text}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(invalid(path, "`content` must be a string or an array of blocks.")),
    };
    let mut parts = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let block_path = format!("{path}[{i}]");
        match block.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": block_text(block, &block_path)?})),
            Some("image") => parts.push(image_part(block, &block_path)?),
            Some("tool_result") => out.push(tool_message(block, &block_path)?),
            Some(other) => {
                return Err(unsupported(
                    &block_path,
                    format!("Content blocks of type `{}` cannot be translated for this model's backend.", safe(other)),
                ))
            }
            None => return Err(invalid(&block_path, "A content block needs a string `type`.")),
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    // Text-only turns as a plain string: every OpenAI-compatible server reads that.
    let content = if parts.iter().all(|p| p.get("type").and_then(Value::as_str) == Some("text")) {
        let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
        Value::String(texts.join("\n\n"))
    } else {
        Value::Array(parts)
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

/// An Anthropic image block → an `image_url` part (base64 sources as data URLs).
fn image_part(block: &Value, path: &str) -> Result<Value, ApiError> {
    let source_path = format!("{path}.source");
    let Some(source) = block.get("source").and_then(Value::as_object) else {
        return Err(invalid(&source_path, "An image block needs a `source`."));
    };
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let (Some(Value::String(media_type)), Some(Value::String(data))) =
                (source.get("media_type"), source.get("data"))
            else {
                return Err(invalid(&source_path, "A base64 image needs `media_type` and `data`."));
            };
            if !matches!(media_type.as_str(), "image/jpeg" | "image/png" | "image/gif" | "image/webp") {
                return Err(unsupported(
                    &format!("{source_path}.media_type"),
                    "Images must be image/jpeg, image/png, image/gif or image/webp.",
                ));
            }
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => match source.get("url") {
            Some(Value::String(url)) if url.starts_with("https://") || url.starts_with("http://") => url.clone(),
            _ => return Err(invalid(&format!("{source_path}.url"), "An image URL must be an http(s) URL.")),
        },
        _ => {
            return Err(unsupported(
                &format!("{source_path}.type"),
                "Only base64 and url image sources can be translated.",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `tool_result` block → a `tool` message. Its content must be text: the
/// chat API's tool messages carry no images.
fn tool_message(block: &Value, path: &str) -> Result<Value, ApiError> {
    let id = match block.get("tool_use_id") {
        Some(Value::String(id)) => id,
        _ => return Err(invalid(&format!("{path}.tool_use_id"), "A tool result needs a string `tool_use_id`.")),
    };
    let content_path = format!("{path}.content");
    let text = match block.get("content").unwrap_or(&Value::Null) {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, inner) in blocks.iter().enumerate() {
                let inner_path = format!("{content_path}[{i}]");
                match inner.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(block_text(inner, &inner_path)?),
                    _ => {
                        return Err(unsupported(
                            &inner_path,
                            "Tool results can only carry text for this model's backend.",
                        ))
                    }
                }
            }
            texts.join("\n\n")
        }
        _ => return Err(invalid(&content_path, "`content` must be a string or an array of blocks.")),
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

fn assistant_turn(content: &Value, path: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let blocks = match content {
        Value::String(text) => {
            out.push(json!({"role": "assistant", "content": text}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(invalid(path, "`content` must be a string or an array of blocks.")),
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let block_path = format!("{path}[{i}]");
        match block.get("type").and_then(Value::as_str) {
            Some("text") => texts.push(block_text(block, &block_path)?),
            Some("tool_use") => calls.push(tool_call(block, &block_path)?),
            // A Claude model's reasoning from an earlier turn: only Claude can read it.
            Some("thinking") | Some("redacted_thinking") => {}
            Some(other) => {
                return Err(unsupported(
                    &block_path,
                    format!("Content blocks of type `{}` cannot be translated for this model's backend.", safe(other)),
                ))
            }
            None => return Err(invalid(&block_path, "A content block needs a string `type`.")),
        }
    }
    if texts.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut message = Map::new();
    message.insert("role".into(), Value::String("assistant".into()));
    message.insert("content".into(), if texts.is_empty() { Value::Null } else { Value::String(texts.join("\n\n")) });
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(message));
    Ok(())
}

fn tool_call(block: &Value, path: &str) -> Result<Value, ApiError> {
    let id = match block.get("id") {
        Some(Value::String(id)) => id,
        _ => return Err(invalid(&format!("{path}.id"), "A tool use needs a string `id`.")),
    };
    let name = match block.get("name") {
        Some(Value::String(name)) => name,
        _ => return Err(invalid(&format!("{path}.name"), "A tool use needs a string `name`.")),
    };
    let arguments = match block.get("input") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(input @ Value::Object(_)) => input.to_string(),
        Some(_) => return Err(invalid(&format!("{path}.input"), "A tool use's `input` must be an object.")),
    };
    Ok(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
}

/// A client tool → a function tool. Anthropic's server and computer-use tools
/// (`web_search_…`, `bash_…`, `text_editor_…`) run at Anthropic: refused.
fn convert_tool(tool: &Value, path: &str) -> Result<Value, ApiError> {
    let Some(tool) = tool.as_object() else {
        return Err(invalid(path, "Each tool must be an object."));
    };
    match tool.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == "custom" => {}
        Some(Value::String(kind)) => {
            return Err(unsupported(
                &format!("{path}.type"),
                format!("Tools of type `{}` run at Anthropic and cannot be translated.", safe(kind)),
            ))
        }
        Some(_) => return Err(invalid(&format!("{path}.type"), "`type` must be a string.")),
    }
    let name = match tool.get("name") {
        Some(Value::String(name)) => name,
        _ => return Err(invalid(&format!("{path}.name"), "A tool needs a string `name`.")),
    };
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name.clone()));
    match tool.get("description") {
        None | Some(Value::Null) => {}
        Some(Value::String(description)) => {
            function.insert("description".into(), Value::String(description.clone()));
        }
        Some(_) => return Err(invalid(&format!("{path}.description"), "`description` must be a string.")),
    }
    match tool.get("input_schema") {
        Some(Value::Object(schema)) => {
            function.insert("parameters".into(), Value::Object(schema.clone()));
        }
        None | Some(Value::Null) => {
            function.insert("parameters".into(), json!({"type": "object", "properties": {}}));
        }
        Some(_) => return Err(invalid(&format!("{path}.input_schema"), "`input_schema` must be an object.")),
    }
    Ok(json!({"type": "function", "function": function}))
}

/// Anthropic `tool_choice` → OpenAI's, and whether parallel calls are allowed
/// (`disable_parallel_tool_use`).
fn convert_tool_choice(choice: &Value) -> Result<(Value, Option<bool>), ApiError> {
    let Some(choice) = choice.as_object() else {
        return Err(invalid("tool_choice", "`tool_choice` must be an object."));
    };
    let parallel = match choice.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(disable)) => Some(!disable),
        Some(_) => {
            return Err(invalid(
                "tool_choice.disable_parallel_tool_use",
                "`disable_parallel_tool_use` must be a boolean.",
            ))
        }
    };
    let converted = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice.get("name") {
            Some(Value::String(name)) => json!({"type": "function", "function": {"name": name}}),
            _ => return Err(invalid("tool_choice.name", "`tool_choice` of type `tool` needs a string `name`.")),
        },
        _ => return Err(invalid("tool_choice.type", "`tool_choice.type` must be auto, any, tool or none.")),
    };
    Ok((converted, parallel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Value {
        let mut body = body;
        if let Some(map) = body.as_object_mut() {
            map.entry("max_tokens").or_insert(json!(100));
        }
        to_chat(&body, "gpt-4o-mini").unwrap()
    }

    fn error(body: Value) -> ApiError {
        let mut body = body;
        if let Some(map) = body.as_object_mut() {
            map.entry("max_tokens").or_insert(json!(100));
        }
        to_chat(&body, "gpt-4o-mini").unwrap_err()
    }

    #[test]
    fn system_blocks_messages_and_parameters() {
        let out = translate(json!({
            "model": "claude-sonnet-4-5",
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Answer in French."}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "salut"}]},
                {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "b"}]}
            ],
            "max_tokens": 256, "temperature": 0.2, "top_p": 0.9,
            "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}, "stream": true
        }));
        assert_eq!(
            out,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You are terse.\n\nAnswer in French."},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "salut"},
                    {"role": "user", "content": "a\n\nb"}
                ],
                "max_tokens": 256, "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "user": "u-1",
                "stream": true, "stream_options": {"include_usage": true}
            })
        );
        assert_eq!(
            messages_info(&json!({"model": "m", "stream": true})),
            MessagesInfo { stream: true, model: "m".into() }
        );
    }

    #[test]
    fn tools_tool_use_and_tool_results() {
        let out = translate(json!({
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}], "is_error": false},
                    {"type": "text", "text": "and tomorrow?"}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}
        }));
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]})
        );
        assert_eq!(out["messages"][2], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}));
        assert_eq!(out["messages"][3], json!({"role": "user", "content": "and tomorrow?"}));
        assert_eq!(
            out["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
        );
        assert_eq!(out["tool_choice"], json!({"type": "function", "function": {"name": "get_weather"}}));
        assert_eq!(out["parallel_tool_calls"], false);
        let tools = json!([{"name": "f"}]);
        for (choice, expected) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
        ] {
            let out = translate(json!({"messages": [], "tools": tools, "tool_choice": choice}));
            assert_eq!(out["tool_choice"], expected);
            assert!(out.get("parallel_tool_calls").is_none());
        }
        assert_eq!(
            translate(json!({"messages": [], "tools": tools}))["tools"][0]["function"]["parameters"]["type"],
            "object"
        );
    }

    #[test]
    fn images_become_image_url_parts() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ])
        );
    }

    #[test]
    fn untranslatable_fields_are_refused_by_name() {
        let cases = [
            (json!({"messages": [], "top_k": 5}), "top_k"),
            (json!({"messages": [], "thinking": {"type": "enabled", "budget_tokens": 1024}}), "thinking"),
            (json!({"messages": [], "mcp_servers": []}), "mcp_servers"),
            (json!({"messages": [], "service_tier": "standard_only"}), "service_tier"),
            (json!({"messages": [], "metadata": {"session": "x"}}), "metadata.session"),
            (json!({"messages": [], "stop_sequences": ["a", "b", "c", "d", "e"]}), "stop_sequences"),
            (
                json!({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}]}]}),
                "messages[0].content[0].content[0]",
            ),
            (json!({"messages": [], "system": [{"type": "image"}]}), "system[0]"),
        ];
        for (body, param) in cases {
            let err = error(body.clone());
            assert_eq!((err.status, err.code), (400, "unsupported_parameter"), "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
        }
        // Disabled thinking, the default tier and caching hints change nothing: accepted, dropped.
        let out = translate(json!({"messages": [], "thinking": {"type": "disabled"}, "service_tier": "auto",
                                   "cache_control": {"type": "ephemeral"}}));
        for field in ["thinking", "service_tier", "cache_control"] {
            assert!(out.get(field).is_none(), "{field}");
        }
    }

    #[test]
    fn malformed_requests_name_the_field_without_quoting_text() {
        let cases = [
            (json!({"max_tokens": 1}), "messages"),
            (json!({"messages": "secret", "max_tokens": 1}), "messages"),
            (json!({"messages": ["secret"], "max_tokens": 1}), "messages[0]"),
            (json!({"messages": [{"role": "system", "content": "secret"}], "max_tokens": 1}), "messages[0].role"),
            (json!({"messages": [{"role": "user", "content": 4}], "max_tokens": 1}), "messages[0].content"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text"}]}], "max_tokens": 1}),
                "messages[0].content[0]",
            ),
            (json!({"messages": []}), "max_tokens"),
            (json!({"messages": [], "max_tokens": 0}), "max_tokens"),
            (json!({"messages": [], "max_tokens": 1, "temperature": "hot"}), "temperature"),
            (json!({"messages": [], "max_tokens": 1, "tool_choice": {"type": "any"}}), "tool_choice"),
            (
                json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "secret"}]}], "max_tokens": 1}),
                "messages[0].content[0].input",
            ),
        ];
        for (body, param) in cases {
            let err = to_chat(&body, "m").unwrap_err();
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
            assert!(!err.message.contains("secret"), "{}", err.message);
        }
        assert_eq!(to_chat(&json!([1]), "m").unwrap_err().status, 400);
        let err = to_chat(&json!({"messages": [], "max_tokens": 1, "sécret field": 1}), "m").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("(unrecognised)"));
    }
}
