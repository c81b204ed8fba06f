//! OpenAI chat completions request → Anthropic messages request.
//!
//! Works on `serde_json::Value` and checks every type it reads, so a
//! malformed request gets a 400 that names the field (`messages[2].content[0]`)
//! without quoting the prompt. Fields Anthropic has no equivalent for are
//! refused with 400 `unsupported_parameter` naming the field (`seed`,
//! `response_format`, `logprobs`, `n > 1`, non-text modalities…): dropping
//! them would change the answer. Only fields that concern OpenAI's side
//! (`store`, `metadata`, `service_tier`) and neutral values are dropped.

use aigw_shared::ApiError;
use serde_json::{json, Map, Value};

/// Settings of the Anthropic backend that shape the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `max_tokens` when the client sent neither `max_tokens` nor
    /// `max_completion_tokens` (Anthropic requires one).
    pub default_max_tokens: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { default_max_tokens: 4096 }
    }
}

/// What the response side needs to know about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub stream: bool,
    /// `stream_options.include_usage`: send a final usage chunk.
    pub include_usage: bool,
    /// Structured output asked with `response_format`, sent to Anthropic as
    /// this forced tool: its input comes back as the message's content.
    pub json_tool: Option<String>,
}

/// The tool name for `response_format: json_object` (no schema of its own).
pub const JSON_OBJECT_TOOL: &str = "json_object";

/// The forced tool that expresses `response_format` faithfully: the tool's
/// input is a JSON object matching the schema, which is what structured
/// output returns as text. `None` for no or `text` format; `Err` for a
/// format or schema a tool cannot express.
fn json_output_tool(format: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(format) = format.filter(|f| !f.is_null()) else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({
            "name": JSON_OBJECT_TOOL,
            "description": "Answer with a JSON object.",
            "input_schema": {"type": "object"},
        }))),
        Some("json_schema") => {
            let Some(spec) = format.get("json_schema").and_then(Value::as_object) else {
                return Err(invalid("response_format.json_schema", "`json_schema` must be an object."));
            };
            let name = match spec.get("name") {
                Some(Value::String(name))
                    if !name.is_empty()
                        && name.len() <= 64
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
                {
                    name.clone()
                }
                _ => {
                    return Err(invalid("response_format.json_schema.name", "`name` must match ^[a-zA-Z0-9_-]{1,64}$."))
                }
            };
            // A tool's input is an object: a schema for anything else cannot be expressed.
            let schema =
                match spec.get("schema") {
                    Some(Value::Object(schema)) if schema.get("type").and_then(Value::as_str) == Some("object") => {
                        Value::Object(schema.clone())
                    }
                    _ => return Err(unsupported(
                        "response_format.json_schema.schema",
                        "Only a schema whose root is an object can be translated for this model's backend (Anthropic).",
                    )),
                };
            let mut tool = Map::new();
            tool.insert("name".into(), Value::String(name));
            let description = spec.get("description").and_then(Value::as_str).unwrap_or("Answer in this format.");
            tool.insert("description".into(), Value::String(description.to_string()));
            tool.insert("input_schema".into(), schema);
            Ok(Some(Value::Object(tool)))
        }
        _ => Err(invalid("response_format.type", "`response_format.type` must be text, json_object or json_schema.")),
    }
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message).with_param(param)
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("unsupported_parameter", message).with_param(param)
}

/// Reads `stream` and `stream_options.include_usage` from an OpenAI request.
pub fn request_info(body: &Value) -> RequestInfo {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage =
        stream && body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let json_tool = json_output_tool(body.get("response_format"))
        .ok()
        .flatten()
        .and_then(|tool| tool.get("name").and_then(Value::as_str).map(str::to_string));
    RequestInfo { stream, include_usage, json_tool }
}

/// Translates an OpenAI chat request into an Anthropic messages request for
/// `model`.
pub fn to_anthropic(body: &Value, model: &str, options: &Options) -> Result<Value, ApiError> {
    let Some(request) = body.as_object() else {
        return Err(ApiError::bad_request("invalid_request", "The request body must be a JSON object."));
    };
    refuse_untranslatable(request)?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_string()));

    if let Some(n) = request.get("n") {
        match n.as_u64() {
            Some(0) | Some(1) => {}
            Some(_) => return Err(unsupported("n", "This model's backend returns one choice; `n` must be 1.")),
            None if n.is_null() => {}
            None => return Err(invalid("n", "`n` must be an integer.")),
        }
    }

    let messages = match request.get("messages") {
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err(invalid("messages", "`messages` must be an array.")),
        None => return Err(invalid("messages", "`messages` is required.")),
    };
    let (system, converted) = convert_messages(messages)?;
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(converted));

    let max_tokens = match (request.get("max_completion_tokens"), request.get("max_tokens")) {
        (Some(value), _) if !value.is_null() => positive_int(value, "max_completion_tokens")?,
        (_, Some(value)) if !value.is_null() => positive_int(value, "max_tokens")?,
        _ => options.default_max_tokens,
    };
    out.insert("max_tokens".into(), json!(max_tokens));

    if let Some(stop) = request.get("stop") {
        let sequences: Vec<Value> = match stop {
            Value::Null => Vec::new(),
            Value::String(text) => vec![Value::String(text.clone())],
            Value::Array(items) => {
                let mut sequences = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(text) => sequences.push(Value::String(text.clone())),
                        _ => return Err(invalid(&format!("stop[{i}]"), "`stop` entries must be strings.")),
                    }
                }
                sequences
            }
            _ => return Err(invalid("stop", "`stop` must be a string or an array of strings.")),
        };
        // Anthropic refuses empty and whitespace-only stop sequences.
        let sequences: Vec<Value> =
            sequences.into_iter().filter(|s| s.as_str().is_some_and(|text| !text.trim().is_empty())).collect();
        if !sequences.is_empty() {
            out.insert("stop_sequences".into(), Value::Array(sequences));
        }
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

    let info = request_info(body);
    if info.stream {
        out.insert("stream".into(), Value::Bool(true));
    }

    if let Some(tools) = request.get("tools") {
        match tools {
            Value::Null => {}
            Value::Array(tools) if tools.is_empty() => {}
            Value::Array(tools) => {
                out.insert("tools".into(), Value::Array(convert_tools(tools)?));
            }
            _ => return Err(invalid("tools", "`tools` must be an array.")),
        }
    }
    let has_tools = out.contains_key("tools");
    let parallel = request.get("parallel_tool_calls").and_then(Value::as_bool);
    if let Some(tool) = json_output_tool(request.get("response_format"))? {
        // The forced tool is the answer's format: the client's own tools
        // could then never be called, which is not what it asked for.
        if has_tools || request.get("tool_choice").is_some_and(|c| !c.is_null()) {
            return Err(unsupported(
                "response_format",
                "Structured output together with tools cannot be translated for this model's backend (Anthropic).",
            ));
        }
        let name = tool.get("name").cloned().unwrap_or(Value::Null);
        out.insert("tools".into(), Value::Array(vec![tool]));
        out.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
    } else if let Some(choice) = convert_tool_choice(request.get("tool_choice"), parallel, has_tools)? {
        out.insert("tool_choice".into(), choice);
    }

    if let Some(Value::String(user)) = request.get("user") {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(Value::Object(out))
}

/// Fields this translation reads or may drop without changing the answer:
/// `store`, `metadata` (OpenAI's stored-completion labels) and `service_tier`
/// concern OpenAI's side only.
const TRANSLATED_FIELDS: [&str; 18] = [
    "response_format",
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "n",
    "store",
    "metadata",
    "service_tier",
];

/// Refuses (400 `unsupported_parameter`, naming the field) what Anthropic's
/// API cannot express: dropping it would hand the client a different answer
/// than it asked for (a structured-output parse failing later, a seed that
/// does not reproduce). Neutral values (`response_format: text`, penalties of
/// 0, `logprobs: false`, an empty `logit_bias`) are accepted.
fn refuse_untranslatable(request: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, value) in request {
        if TRANSLATED_FIELDS.contains(&field.as_str()) || value.is_null() {
            continue;
        }
        let neutral = match field.as_str() {
            "presence_penalty" | "frequency_penalty" => value.as_f64() == Some(0.0),
            "logprobs" => value.as_bool() == Some(false),
            "logit_bias" => value.as_object().is_some_and(Map::is_empty),
            "modalities" => value.as_array().is_some_and(|m| m.iter().all(|v| v.as_str() == Some("text"))),
            _ => false,
        };
        if neutral {
            continue;
        }
        let message = match field.as_str() {
            "seed" => "Anthropic has no `seed`; the answer would not be reproducible as asked.",
            _ => "This parameter cannot be translated for this model's backend (Anthropic).",
        };
        return Err(unsupported(safe(field), message));
    }
    Ok(())
}

fn positive_int(value: &Value, field: &str) -> Result<u64, ApiError> {
    match value.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(invalid(field, format!("`{field}` must be a positive integer."))),
    }
}

/// Splits system and developer messages into Anthropic's `system` blocks and
/// converts the rest. Consecutive messages of one role are merged, as
/// Anthropic expects alternating turns; tool results become `user` turns.
fn convert_messages(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut system = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let Some(message) = message.as_object() else {
            return Err(invalid(&path, "Each message must be an object."));
        };
        let role = match message.get("role") {
            Some(Value::String(role)) => role.as_str(),
            _ => return Err(invalid(&format!("{path}.role"), "Each message needs a string `role`.")),
        };
        let content = message.get("content").unwrap_or(&Value::Null);
        // Providers accept role names in any case; so does the translation.
        let role = role.to_ascii_lowercase();
        let (anthropic_role, blocks) = match role.as_str() {
            "system" | "developer" => {
                system.extend(text_blocks(content, &format!("{path}.content"))?);
                continue;
            }
            "user" => ("user", user_blocks(content, &format!("{path}.content"))?),
            "assistant" => ("assistant", assistant_blocks(message, &path)?),
            "tool" => ("user", vec![tool_result_block(message, &path)?]),
            "function" => {
                return Err(unsupported(
                    &format!("{path}.role"),
                    "The deprecated `function` role is not supported; use `tool` messages.",
                ))
            }
            _ => return Err(invalid(&format!("{path}.role"), "Unknown message role.")),
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last_role, last_blocks)) if last_role == anthropic_role => last_blocks.extend(blocks),
            _ => out.push((anthropic_role.to_string(), blocks)),
        }
    }
    let messages = out.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    Ok((system, messages))
}

/// Text-only content (system prompts, tool results): a string or text parts.
fn text_blocks(content: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let part_path = format!("{path}[{i}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => blocks.push(text_part(part, &part_path)?),
                    _ => return Err(unsupported(&part_path, "Only text parts are allowed here.")),
                }
            }
            Ok(blocks)
        }
        _ => Err(invalid(path, "`content` must be a string or an array of parts.")),
    }
}

fn text_part(part: &Value, path: &str) -> Result<Value, ApiError> {
    match part.get("text") {
        Some(Value::String(text)) => Ok(json!({"type": "text", "text": text})),
        _ => Err(invalid(path, "A text part needs a string `text`.")),
    }
}

fn user_blocks(content: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let part_path = format!("{path}[{i}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => blocks.push(text_part(part, &part_path)?),
                    Some("image_url") => blocks.push(image_block(part, &part_path)?),
                    Some(other) => {
                        return Err(unsupported(
                            &part_path,
                            format!(
                                "Content parts of type `{}` are not supported by this model's backend.",
                                safe(other)
                            ),
                        ))
                    }
                    None => return Err(invalid(&part_path, "A content part needs a string `type`.")),
                }
            }
            Ok(blocks)
        }
        Value::Null => Err(invalid(path, "A user message needs `content`.")),
        _ => text_blocks(content, path),
    }
}

/// A type name echoed in an error: short, and only if it looks like one.
fn safe(name: &str) -> &str {
    if name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        name
    } else {
        "(unrecognised)"
    }
}

/// `image_url` part → Anthropic image block. `data:` URLs become a base64
/// source, `http(s):` URLs a url source.
fn image_block(part: &Value, path: &str) -> Result<Value, ApiError> {
    let url = match part.get("image_url") {
        Some(Value::String(url)) => url.as_str(),
        Some(Value::Object(image)) => match image.get("url") {
            Some(Value::String(url)) => url.as_str(),
            _ => return Err(invalid(&format!("{path}.image_url.url"), "An image part needs a string `url`.")),
        },
        _ => return Err(invalid(&format!("{path}.image_url"), "An image part needs `image_url`.")),
    };
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(invalid(&format!("{path}.image_url.url"), "The data URL has no `,` before its data."));
        };
        let Some(media_type) = meta.strip_suffix(";base64") else {
            return Err(unsupported(&format!("{path}.image_url.url"), "Only base64 data URLs are supported."));
        };
        if !matches!(media_type, "image/jpeg" | "image/png" | "image/gif" | "image/webp") {
            return Err(unsupported(
                &format!("{path}.image_url.url"),
                "Images must be image/jpeg, image/png, image/gif or image/webp.",
            ));
        }
        Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        Err(unsupported(&format!("{path}.image_url.url"), "Image URLs must be https: or data: URLs."))
    }
}

fn assistant_blocks(message: &Map<String, Value>, path: &str) -> Result<Vec<Value>, ApiError> {
    let mut blocks = text_blocks_lenient(message.get("content").unwrap_or(&Value::Null), &format!("{path}.content"))?;
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (i, call) in calls.iter().enumerate() {
                blocks.push(tool_use_block(call, &format!("{path}.tool_calls[{i}]"))?);
            }
        }
        Some(_) => return Err(invalid(&format!("{path}.tool_calls"), "`tool_calls` must be an array.")),
    }
    Ok(blocks)
}

/// Assistant content: like [`text_blocks`] but tolerates `refusal` parts
/// (kept as text) which OpenAI allows in assistant history.
fn text_blocks_lenient(content: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let part_path = format!("{path}[{i}]");
                match (part.get("type").and_then(Value::as_str), part.get("refusal")) {
                    (Some("text"), _) => blocks.push(text_part(part, &part_path)?),
                    (Some("refusal"), Some(Value::String(text))) => blocks.push(json!({"type": "text", "text": text})),
                    _ => return Err(unsupported(&part_path, "Only text parts are allowed in assistant messages.")),
                }
            }
            Ok(blocks)
        }
        _ => text_blocks(content, path),
    }
}

fn tool_use_block(call: &Value, path: &str) -> Result<Value, ApiError> {
    let id = match call.get("id") {
        Some(Value::String(id)) => id,
        _ => return Err(invalid(&format!("{path}.id"), "A tool call needs a string `id`.")),
    };
    let name = match call.pointer("/function/name") {
        Some(Value::String(name)) => name,
        _ => return Err(invalid(&format!("{path}.function.name"), "A tool call needs `function.name`.")),
    };
    let input = match call.pointer("/function/arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(arguments)) if arguments.trim().is_empty() => json!({}),
        Some(Value::String(arguments)) => match serde_json::from_str::<Value>(arguments) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                return Err(invalid(
                    &format!("{path}.function.arguments"),
                    "Tool call arguments must be a JSON object encoded as a string.",
                ))
            }
        },
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => return Err(invalid(&format!("{path}.function.arguments"), "`arguments` must be a string.")),
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_result_block(message: &Map<String, Value>, path: &str) -> Result<Value, ApiError> {
    let id = match message.get("tool_call_id") {
        Some(Value::String(id)) => id,
        _ => return Err(invalid(&format!("{path}.tool_call_id"), "A tool message needs a string `tool_call_id`.")),
    };
    let content = match message.get("content").unwrap_or(&Value::Null) {
        Value::String(text) => Value::String(text.clone()),
        other => Value::Array(text_blocks(other, &format!("{path}.content"))?),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

fn convert_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(unsupported(&format!("{path}.type"), "Only `function` tools are supported."));
        }
        let Some(function) = tool.get("function").and_then(Value::as_object) else {
            return Err(invalid(&format!("{path}.function"), "A function tool needs `function`."));
        };
        let name = match function.get("name") {
            Some(Value::String(name)) => name,
            _ => return Err(invalid(&format!("{path}.function.name"), "A function tool needs a string `name`.")),
        };
        let mut converted = Map::new();
        converted.insert("name".into(), Value::String(name.clone()));
        if let Some(Value::String(description)) = function.get("description") {
            converted.insert("description".into(), Value::String(description.clone()));
        }
        let schema = match function.get("parameters") {
            Some(Value::Object(schema)) => Value::Object(schema.clone()),
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(_) => return Err(invalid(&format!("{path}.function.parameters"), "`parameters` must be an object.")),
        };
        converted.insert("input_schema".into(), schema);
        out.push(Value::Object(converted));
    }
    Ok(out)
}

fn convert_tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
    has_tools: bool,
) -> Result<Option<Value>, ApiError> {
    let mut converted = match choice {
        None | Some(Value::Null) => {
            if !has_tools {
                return Ok(None);
            }
            json!({"type": "auto"})
        }
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => return Err(invalid("tool_choice", "`tool_choice` must be auto, required, none or a function.")),
        },
        Some(Value::Object(object)) => match object.get("function").and_then(|f| f.get("name")) {
            Some(Value::String(name)) => json!({"type": "tool", "name": name}),
            _ => return Err(invalid("tool_choice.function.name", "`tool_choice` names no function.")),
        },
        Some(_) => return Err(invalid("tool_choice", "`tool_choice` must be a string or an object.")),
    };
    if parallel == Some(false) && converted.get("type").and_then(Value::as_str) != Some("none") {
        if let Some(object) = converted.as_object_mut() {
            object.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    if !has_tools && converted.get("type").and_then(Value::as_str) != Some("none") {
        return Err(invalid("tool_choice", "`tool_choice` needs `tools`."));
    }
    if !has_tools {
        // `none` without tools means nothing to Anthropic.
        return Ok(None);
    }
    Ok(Some(converted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Value {
        to_anthropic(&body, "claude-x", &Options::default()).unwrap()
    }

    fn error(body: Value) -> ApiError {
        to_anthropic(&body, "claude-x", &Options::default()).unwrap_err()
    }

    #[test]
    fn structured_output_becomes_a_forced_tool() {
        let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
        let body = json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": true}}});
        let out = translate(body.clone());
        assert_eq!(
            out["tools"],
            json!([{"name": "reply", "description": "Answer in this format.", "input_schema": schema}])
        );
        assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "reply"}));
        assert_eq!(request_info(&body).json_tool.as_deref(), Some("reply"));
        let body = json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}});
        assert_eq!(translate(body.clone())["tool_choice"]["name"], JSON_OBJECT_TOOL);
        assert_eq!(request_info(&body).json_tool.as_deref(), Some(JSON_OBJECT_TOOL));
        // With the client's own tools it cannot be expressed faithfully.
        let body = json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        assert_eq!(error(body).param.as_deref(), Some("response_format"));
        let body = json!({"messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "bad name", "schema": {"type": "object"}}}});
        assert_eq!(error(body).param.as_deref(), Some("response_format.json_schema.name"));
        assert_eq!(request_info(&json!({"response_format": {"type": "text"}})).json_tool, None);
    }

    #[test]
    fn untranslatable_parameters_are_refused_by_name() {
        for (field, value) in [
            (
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}),
            ),
            ("seed", json!(7)),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("presence_penalty", json!(0.5)),
            ("logit_bias", json!({"50256": -100})),
            ("functions", json!([])),
            ("audio", json!({"voice": "alloy"})),
            ("something_new", json!(1)),
        ] {
            let mut body = json!({"messages": [{"role": "user", "content": "x"}]});
            body[field] = value;
            let err = error(body);
            assert_eq!((err.status, err.code), (400, "unsupported_parameter"), "{field}");
            assert_eq!(err.param.as_deref().map(|p| p.split('.').next().unwrap_or(p)), Some(field));
        }
        // Neutral values change nothing and pass.
        let out =
            translate(json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"},
            "presence_penalty": 0, "frequency_penalty": 0.0, "logprobs": false, "logit_bias": {}, "seed": null,
            "store": false, "metadata": {"tag": "a"}, "service_tier": "auto", "modalities": ["text"]}));
        for field in ["response_format", "presence_penalty", "seed", "store", "metadata", "service_tier", "modalities"]
        {
            assert!(out.get(field).is_none(), "{field}");
        }
    }

    #[test]
    fn minimal_request_gets_default_max_tokens() {
        let out = translate(json!({"model": "anthropic/claude-x", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            out,
            json!({"model": "claude-x", "max_tokens": 4096, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
        );
        let out = to_anthropic(
            &json!({"messages": [{"role": "user", "content": "hi"}]}),
            "m",
            &Options { default_max_tokens: 77 },
        )
        .unwrap();
        assert_eq!(out["max_tokens"], 77);
    }

    #[test]
    fn system_and_developer_messages_become_system_blocks() {
        let out = translate(json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "use metric"}]},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "late system"}
        ]}));
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "be brief"}, {"type": "text", "text": "use metric"}, {"type": "text", "text": "late system"}])
        );
        assert_eq!(out["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn parameters_map() {
        let out = translate(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 10, "max_completion_tokens": 20, "temperature": 0.5, "top_p": 0.9,
            "stop": ["END", "  ", "STOP"], "stream": true, "stream_options": {"include_usage": true},
            "user": "u-1", "presence_penalty": 0, "seed": null
        }));
        assert_eq!(out["max_tokens"], 20);
        assert_eq!(out["temperature"], 0.5);
        assert_eq!(out["top_p"], 0.9);
        assert_eq!(out["stop_sequences"], json!(["END", "STOP"]));
        assert_eq!(out["stream"], true);
        assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
        for dropped in ["stream_options", "presence_penalty", "seed", "user", "stop", "max_completion_tokens"] {
            assert!(out.get(dropped).is_none(), "{dropped}");
        }
        let out = translate(json!({"messages": [{"role": "user", "content": "hi"}], "stop": "X", "max_tokens": 5}));
        assert_eq!(out["stop_sequences"], json!(["X"]));
        assert_eq!(out["max_tokens"], 5);
        let info = request_info(&json!({"stream": true, "stream_options": {"include_usage": true}}));
        assert_eq!(info, RequestInfo { stream: true, include_usage: true, json_tool: None });
        assert_eq!(request_info(&json!({"stream_options": {"include_usage": true}})), RequestInfo::default());
    }

    #[test]
    fn images_from_data_and_https_urls() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "text", "text": "what is this"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
        let err = error(
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}]}]}),
        );
        assert_eq!(err.param.as_deref(), Some("messages[0].content[0].image_url.url"));
        let err = error(
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
        );
        assert_eq!(err.status, 400);
        let err =
            error(json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}));
        assert_eq!(err.code, "unsupported_parameter");
        assert!(err.message.contains("input_audio"));
    }

    #[test]
    fn tools_tool_calls_and_results() {
        let out = translate(json!({
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                      {"type": "function", "function": {"name": "get_time"}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false
        }));
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
            ]})
        );
        // Both tool results and the next user turn merge into one user message.
        assert_eq!(
            out["messages"][2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                {"type": "text", "text": "thanks"}
            ]})
        );
        assert_eq!(out["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
        assert_eq!(out["tools"][0]["description"], "d");
        assert_eq!(out["tools"][1]["input_schema"], json!({"type": "object", "properties": {}}));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_choice_modes() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for (choice, expected) in [
            (json!("auto"), json!({"type": "auto"})),
            (json!("required"), json!({"type": "any"})),
            (json!("none"), json!({"type": "none"})),
            (Value::Null, json!({"type": "auto"})),
        ] {
            let out = translate(
                json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
            );
            assert_eq!(out["tool_choice"], expected);
        }
        let out = translate(json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}));
        assert!(out.get("tool_choice").is_none());
        assert_eq!(error(json!({"messages": [], "tool_choice": "required"})).param.as_deref(), Some("tool_choice"));
        assert_eq!(error(json!({"messages": [], "tools": tools, "tool_choice": "sometimes"})).status, 400);
    }

    #[test]
    fn malformed_requests_name_the_field_without_quoting_text() {
        let cases = [
            (json!({}), "messages"),
            (json!({"messages": "secret"}), "messages"),
            (json!({"messages": ["secret"]}), "messages[0]"),
            (json!({"messages": [{"content": "secret"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "wizard", "content": "secret"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "user", "content": 42}]}), "messages[0].content"),
            (json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}), "messages[0].content[0]"),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{secret"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (json!({"messages": [{"role": "tool", "content": "secret"}]}), "messages[0].tool_call_id"),
            (json!({"messages": [], "max_tokens": 0}), "max_tokens"),
            (json!({"messages": [], "max_tokens": "many"}), "max_tokens"),
            (json!({"messages": [], "temperature": "hot"}), "temperature"),
            (json!({"messages": [], "stop": [1]}), "stop[0]"),
            (json!({"messages": [], "n": 2}), "n"),
            (json!({"messages": [], "tools": [{"type": "code_interpreter"}]}), "tools[0].type"),
            (json!({"messages": [{"role": "function", "content": "secret"}]}), "messages[0].role"),
        ];
        for (body, param) in cases {
            let err = error(body.clone());
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
            assert!(!err.message.contains("secret"), "{}", err.message);
        }
        assert_eq!(to_anthropic(&json!([1]), "m", &Options::default()).unwrap_err().status, 400);
    }

    #[test]
    fn empty_content_is_skipped_and_n_one_is_fine() {
        let out = translate(json!({"n": 1, "messages": [
            {"role": "system", "content": ""},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"}
        ]}));
        assert!(out.get("system").is_none());
        assert_eq!(
            out["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
        );
    }
}
