//! OpenAI chat completions: request, response and stream chunk.

use super::{visit_string_leaves, TextKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// A string or an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `"auto"`, `"none"`, `"required"` or `{"type":"function","function":{"name":…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Fields the gateway does not model, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message, of any role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`. Stream deltas
    /// after the first carry none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message content: a plain string or an array of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content, parts joined with newlines; images skipped.
    pub fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => {
                parts.iter().filter_map(|part| part.text.as_deref()).collect::<Vec<_>>().join("\n")
            }
        }
    }
}

/// A content part: `{"type":"text","text":…}`, `{"type":"image_url","image_url":{…}}`,
/// `input_audio`, `file`, or any type added later (kept in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImageUrl {
    /// An `https:` URL or a `data:<media>;base64,…` URL.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDefinition>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Present in stream deltas: which tool call a fragment belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCall>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// JSON text, possibly partial in stream deltas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Non-streamed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default = "chat_completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn chat_completion_object() -> String {
    "chat.completion".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub message: Message,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PromptTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `data:` chunk of a streamed response (`object: chat.completion.chunk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default = "chat_completion_chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Only in the final chunk, when `stream_options.include_usage` is set
    /// (and then `choices` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn chat_completion_chunk_object() -> String {
    "chat.completion.chunk".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Message,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn content_texts_mut(content: &mut Value, kind: TextKind, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match content {
        Value::String(text) => visit(kind, text),
        Value::Array(parts) => {
            for part in parts {
                if let Some(Value::String(text)) = part.get_mut("text") {
                    visit(kind, text);
                }
            }
        }
        _ => {}
    }
}

fn tool_calls_texts_mut(message: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
        for call in calls {
            if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                visit(TextKind::ToolArguments, arguments);
            }
        }
    }
    // The deprecated single `function_call` form.
    if let Some(Value::String(arguments)) = message.pointer_mut("/function_call/arguments") {
        visit(TextKind::ToolArguments, arguments);
    }
}

fn message_texts_mut(message: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    let role = message.get("role").and_then(Value::as_str).unwrap_or("");
    let kind = if super::is_system_role(role) {
        TextKind::System
    } else if role.eq_ignore_ascii_case("tool") || role.eq_ignore_ascii_case("function") {
        TextKind::ToolResult
    } else {
        TextKind::Content
    };
    if let Some(content) = message.get_mut("content") {
        content_texts_mut(content, kind, visit);
    }
    // A participant name is free text the client chose (often a person's name or handle).
    if let Some(Value::String(name)) = message.get_mut("name") {
        visit(TextKind::Content, name);
    }
    if let Some(Value::String(refusal)) = message.get_mut("refusal") {
        visit(TextKind::Refusal, refusal);
    }
    tool_calls_texts_mut(message, visit);
}

/// Keys of a JSON Schema whose string values are prose a client wrote (and
/// a model reads), as opposed to structure (`type`, `pattern`, `enum`, property names).
const SCHEMA_PROSE_KEYS: &[&str] = &["description", "title", "default", "examples", "$comment"];

/// Visits the prose of a JSON Schema (tool `parameters`, `input_schema`,
/// `response_format` schemas): every `description`, `title`, `$comment`, and
/// string `default` / `examples`, at any depth. Iterative, so a deeply nested
/// schema cannot exhaust the stack.
pub fn schema_texts_mut(schema: &mut Value, kind: TextKind, visit: &mut dyn FnMut(TextKind, &mut String)) {
    let mut pending: Vec<&mut Value> = vec![schema];
    while let Some(node) = pending.pop() {
        match node {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if SCHEMA_PROSE_KEYS.contains(&key.as_str()) {
                        match child {
                            Value::String(text) => visit(kind, text),
                            Value::Array(items) => {
                                for item in items.iter_mut() {
                                    if let Value::String(text) = item {
                                        visit(kind, text);
                                    }
                                }
                            }
                            // `default` / `examples` may be objects with prose inside.
                            other => pending.push(other),
                        }
                    } else if child.is_object() || child.is_array() {
                        pending.push(child);
                    }
                }
            }
            Value::Array(items) => pending.extend(items.iter_mut().filter(|item| item.is_object() || item.is_array())),
            _ => {}
        }
    }
}

/// A tool definition's description and the prose inside its parameter schema
/// (`{"type":"function","function":{…}}`, the deprecated `functions[]` entries,
/// and `{"type":"custom","custom":{…}}`).
fn function_definition_texts_mut(definition: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(Value::String(description)) = definition.get_mut("description") {
        visit(TextKind::System, description);
    }
    if let Some(parameters) = definition.get_mut("parameters") {
        schema_texts_mut(parameters, TextKind::System, visit);
    }
}

/// Visits every text of a chat request: all messages of every role, string and
/// part forms, participant `name`s, tool-call arguments; the end-user fields
/// `user`, `safety_identifier` and `metadata` values; tool and function
/// descriptions with the prose of their parameter schemas; `prediction`
/// content; and the `response_format` schema's description and prose.
pub fn request_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for message in messages {
            message_texts_mut(message, visit);
        }
    }
    for field in ["user", "safety_identifier"] {
        if let Some(Value::String(text)) = body.get_mut(field) {
            visit(TextKind::Content, text);
        }
    }
    if let Some(Value::Object(metadata)) = body.get_mut("metadata") {
        for value in metadata.values_mut() {
            if let Value::String(text) = value {
                visit(TextKind::Content, text);
            }
        }
    }
    if let Some(Value::Array(tools)) = body.get_mut("tools") {
        for tool in tools {
            for field in ["function", "custom"] {
                if let Some(definition) = tool.get_mut(field) {
                    function_definition_texts_mut(definition, visit);
                }
            }
        }
    }
    if let Some(Value::Array(functions)) = body.get_mut("functions") {
        for definition in functions {
            function_definition_texts_mut(definition, visit);
        }
    }
    if let Some(content) = body.pointer_mut("/prediction/content") {
        content_texts_mut(content, TextKind::Content, visit);
    }
    if let Some(json_schema) = body.pointer_mut("/response_format/json_schema") {
        if let Some(Value::String(description)) = json_schema.get_mut("description") {
            visit(TextKind::System, description);
        }
        if let Some(schema) = json_schema.get_mut("schema") {
            schema_texts_mut(schema, TextKind::System, visit);
        }
    }
}

/// Visits every text of a non-streamed response: each choice's message.
pub fn response_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(Value::Array(choices)) = body.get_mut("choices") {
        for choice in choices {
            if let Some(message) = choice.get_mut("message") {
                message_texts_mut(message, visit);
            }
        }
    }
}

/// Visits every text of a stream chunk: each choice's delta.
pub fn chunk_texts_mut(chunk: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
        for choice in choices {
            if let Some(delta) = choice.get_mut("delta") {
                message_texts_mut(delta, visit);
            }
        }
    }
}

/// Visits the string leaves of a value as tool input (shared with Anthropic).
pub fn tool_input_texts_mut(value: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    visit_string_leaves(value, TextKind::ToolArguments, visit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trip_keeps_unknown_fields() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "xx", "format": "wav"}}
                ], "x-custom": 1},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "logit_bias": {"50256": -100},
            "seed": 7,
            "response_format": {"type": "json_object"}
        });
        let typed: ChatRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(typed.messages.len(), 4);
        assert_eq!(typed.messages[1].content.as_ref().unwrap().text(), "what is this?");
        assert_eq!(typed.extra["seed"], 7);
        let back = serde_json::to_value(&typed).unwrap();
        // `content: null` is dropped (same meaning); everything else survives.
        let mut expected = body;
        expected["messages"][2].as_object_mut().unwrap().remove("content");
        assert_eq!(back, expected);
    }

    #[test]
    fn response_and_chunk_parse() {
        let response: ChatResponse = serde_json::from_value(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6, "prompt_tokens_details": {"cached_tokens": 2}},
            "system_fingerprint": "fp"
        }))
        .unwrap();
        assert_eq!(response.usage.as_ref().unwrap().prompt_tokens_details.as_ref().unwrap().cached_tokens, Some(2));
        assert_eq!(response.extra["system_fingerprint"], "fp");
        let chunk: ChatChunk = serde_json::from_value(json!({
            "id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "he"}, "finish_reason": null}]
        }))
        .unwrap();
        assert_eq!(chunk.choices[0].delta.content, Some(Content::Text("he".into())));
        let usage_chunk: ChatChunk = serde_json::from_value(
            json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}),
        )
        .unwrap();
        assert_eq!(usage_chunk.usage.unwrap().total_tokens, 3);
    }

    #[test]
    fn visitors_reach_every_text_and_edit_in_place() {
        let mut body = json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "part"}, {"type": "image_url", "image_url": {"url": "u"}}]},
                {"role": "assistant", "content": "asst", "tool_calls": [{"function": {"name": "f", "arguments": "args"}}]},
                {"role": "tool", "content": "result"}
            ],
            "metadata": {"keep": "me"}
        });
        let mut seen = Vec::new();
        request_texts_mut(&mut body, &mut |kind, text| {
            seen.push((kind, text.clone()));
            text.make_ascii_uppercase();
        });
        assert_eq!(
            seen,
            vec![
                (TextKind::System, "sys".into()),
                (TextKind::Content, "part".into()),
                (TextKind::Content, "asst".into()),
                (TextKind::ToolArguments, "args".into()),
                (TextKind::ToolResult, "result".into()),
                (TextKind::Content, "me".into()),
            ]
        );
        assert_eq!(body["messages"][1]["content"][0]["text"], "PART");
        assert_eq!(body["messages"][1]["content"][1]["image_url"]["url"], "u");
        assert_eq!(body["metadata"]["keep"], "ME");

        let mut response = json!({"choices": [{"message": {"role": "assistant", "content": "a", "tool_calls": [{"function": {"arguments": "b"}}]}}]});
        // (`metadata` of a response is not visited; the request's is, below.)
        let mut count = 0;
        response_texts_mut(&mut response, &mut |_, _| count += 1);
        assert_eq!(count, 2);

        let mut chunk = json!({"choices": [{"delta": {"content": "c"}}]});
        chunk_texts_mut(&mut chunk, &mut |kind, text| {
            assert_eq!(kind, TextKind::Content);
            text.push('!');
        });
        assert_eq!(chunk["choices"][0]["delta"]["content"], "c!");
    }

    #[test]
    fn request_visitor_reaches_names_user_metadata_tools_prediction_and_schemas() {
        let mut body = json!({
            "model": "m",
            "messages": [{"role": "user", "name": "ana", "content": "hi"}],
            "user": "u1",
            "safety_identifier": "s1",
            "metadata": {"k": "meta", "n": 3},
            "tools": [
                {"type": "function", "function": {"name": "f", "description": "tool desc",
                    "parameters": {"type": "object", "description": "params", "properties": {
                        "to": {"type": "string", "description": "inner", "examples": ["ex1"], "enum": ["keep"]},
                        "deep": {"type": "array", "items": {"type": "object", "properties": {"x": {"title": "deeper", "default": "dflt"}}}}
                    }}}},
                {"type": "custom", "custom": {"name": "c", "description": "custom desc"}}
            ],
            "functions": [{"name": "old", "description": "legacy"}],
            "prediction": {"type": "content", "content": [{"type": "text", "text": "predicted"}]},
            "response_format": {"type": "json_schema", "json_schema": {"name": "keepname", "description": "rf desc",
                "schema": {"type": "object", "properties": {"a": {"type": "string", "description": "rf inner"}}}}}
        });
        let mut seen = Vec::new();
        request_texts_mut(&mut body, &mut |_, text| {
            seen.push(text.clone());
            text.push('*');
        });
        seen.sort();
        let mut expected = vec![
            "hi",
            "ana",
            "u1",
            "s1",
            "meta",
            "tool desc",
            "params",
            "inner",
            "ex1",
            "deeper",
            "dflt",
            "custom desc",
            "legacy",
            "predicted",
            "rf desc",
            "rf inner",
        ];
        expected.sort_unstable();
        assert_eq!(seen, expected);
        assert_eq!(body["tools"][0]["function"]["parameters"]["properties"]["to"]["enum"][0], "keep");
        assert_eq!(body["tools"][0]["function"]["parameters"]["properties"]["to"]["type"], "string");
        assert_eq!(body["response_format"]["json_schema"]["name"], "keepname");
        assert_eq!(body["tools"][0]["function"]["name"], "f");
        assert_eq!(body["metadata"]["n"], 3);
    }

    #[test]
    fn schema_walk_is_iterative() {
        // Far deeper than a 1 MiB Wasm stack could recurse.
        let mut schema = json!({"description": "leaf"});
        for _ in 0..20_000 {
            let mut wrapper = Map::new();
            wrapper.insert("items".to_string(), schema);
            schema = Value::Object(wrapper);
        }
        let mut count = 0;
        schema_texts_mut(&mut schema, TextKind::System, &mut |_, _| count += 1);
        assert_eq!(count, 1);
        // Dropping a deep serde_json::Value recurses; leak it in the test instead.
        std::mem::forget(schema);
    }
}
