//! Anthropic messages: request, response and stream events.

use super::{visit_string_leaves, TextKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `anthropic-version` the gateway sends when it talks to Anthropic.
pub const API_VERSION: &str = "2023-06-01";

/// `POST /v1/messages` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// Required by Anthropic.
    pub max_tokens: u64,
    /// A string or an array of text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `{"type":"auto"|"any"|"none"}` or `{"type":"tool","name":…}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message: `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Message {
    pub role: String,
    pub content: Content,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A string or an array of content blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl Content {
    /// The text blocks joined with newlines.
    pub fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Blocks(blocks) => {
                blocks.iter().filter_map(|block| block.text.as_deref()).collect::<Vec<_>>().join("\n")
            }
        }
    }
}

/// A content block: `text`, `image`, `tool_use`, `tool_result`, `thinking`, or
/// any later type (kept in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContentBlock {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `image`: `{"type":"base64","media_type":…,"data":…}` or `{"type":"url","url":…}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// `tool_use`: the call's id, name and input object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// `tool_result`: which call it answers, and its content (string or blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Non-streamed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessagesResponse {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`, `refusal`.
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Usage. In a stream, `message_start` carries the input side and
/// `message_delta` carries running totals: keep the last value of each field,
/// never add them up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Usage {
    /// Overwrites each field that `later` carries (last value wins).
    pub fn merge_latest(&mut self, later: &Usage) {
        if later.input_tokens.is_some() {
            self.input_tokens = later.input_tokens;
        }
        if later.output_tokens.is_some() {
            self.output_tokens = later.output_tokens;
        }
        if later.cache_creation_input_tokens.is_some() {
            self.cache_creation_input_tokens = later.cache_creation_input_tokens;
        }
        if later.cache_read_input_tokens.is_some() {
            self.cache_read_input_tokens = later.cache_read_input_tokens;
        }
    }
}

/// One streamed event's data, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: MessagesResponse,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Usage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorBody,
    },
}

/// `content_block_delta.delta`: `text_delta`, `input_json_delta`,
/// `thinking_delta`, `signature_delta`, ….
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BlockDelta {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_json: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessageDeltaBody {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type":"error","error":{"type":…,"message":…}}`, in replies and streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ErrorBody {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// A step of the walk in [`blocks_texts_mut`].
enum BlockWalk<'a> {
    /// A `content` value: a string or a list of blocks.
    Content(&'a mut Value, TextKind),
    /// One block of a list.
    Block(&'a mut Value, TextKind),
}

/// Visits the texts of a `content` value. Tool results nest content inside
/// content to any depth a client chooses, so the walk keeps its own stack
/// rather than recursing (no nesting can exhaust the Wasm stack), and visits
/// in document order.
fn blocks_texts_mut(content: &mut Value, kind: TextKind, visit: &mut dyn FnMut(TextKind, &mut String)) {
    let mut stack = vec![BlockWalk::Content(content, kind)];
    while let Some(step) = stack.pop() {
        match step {
            BlockWalk::Content(Value::String(text), kind) => visit(kind, text),
            BlockWalk::Content(Value::Array(blocks), kind) => {
                stack.extend(blocks.iter_mut().rev().map(|block| BlockWalk::Block(block, kind)));
            }
            BlockWalk::Content(_, _) => {}
            BlockWalk::Block(block, kind) => match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    if let Some(input) = block.get_mut("input") {
                        visit_string_leaves(input, TextKind::ToolArguments, visit);
                    }
                }
                Some("tool_result") => {
                    if let Some(inner) = block.get_mut("content") {
                        stack.push(BlockWalk::Content(inner, TextKind::ToolResult));
                    }
                }
                Some("document") => {
                    // A plain-text document carries its text in `source.data`;
                    // a content document, blocks in `source.content`.
                    let Some(map) = block.as_object_mut() else { continue };
                    for field in ["title", "context"] {
                        if let Some(Value::String(text)) = map.get_mut(field) {
                            visit(kind, text);
                        }
                    }
                    let Some(Value::Object(source)) = map.get_mut("source") else { continue };
                    let plain_text = source.get("type").and_then(Value::as_str) == Some("text");
                    if plain_text {
                        if let Some(Value::String(data)) = source.get_mut("data") {
                            visit(kind, data);
                        }
                    }
                    if let Some(inner) = source.get_mut("content") {
                        stack.push(BlockWalk::Content(inner, kind));
                    }
                }
                _ => {
                    if let Some(Value::String(text)) = block.get_mut("text") {
                        visit(kind, text);
                    }
                }
            },
        }
    }
}

/// Visits every text of a messages request: `system`, every message's
/// content (string and blocks, plain-text documents), tool inputs and tool
/// results, `metadata` values (`user_id`), and tool descriptions with the
/// prose of their `input_schema`.
pub fn request_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(system) = body.get_mut("system") {
        blocks_texts_mut(system, TextKind::System, visit);
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
            if let Some(Value::String(description)) = tool.get_mut("description") {
                visit(TextKind::System, description);
            }
            if let Some(schema) = tool.get_mut("input_schema") {
                super::openai::schema_texts_mut(schema, TextKind::System, visit);
            }
        }
    }
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for message in messages {
            if let Some(content) = message.get_mut("content") {
                blocks_texts_mut(content, TextKind::Content, visit);
            }
        }
    }
}

/// Visits every text of a non-streamed response.
pub fn response_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(content) = body.get_mut("content") {
        blocks_texts_mut(content, TextKind::Content, visit);
    }
}

/// Visits the text of one stream event: `content_block_delta` text and
/// partial tool JSON, and the text of a `content_block_start` block.
pub fn stream_event_texts_mut(event: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match event.get("type").and_then(Value::as_str) {
        Some("content_block_delta") => {
            if let Some(Value::String(text)) = event.pointer_mut("/delta/text") {
                visit(TextKind::Content, text);
            }
            if let Some(Value::String(partial)) = event.pointer_mut("/delta/partial_json") {
                visit(TextKind::ToolArguments, partial);
            }
        }
        Some("content_block_start") => {
            if let Some(Value::String(text)) = event.pointer_mut("/content_block/text") {
                visit(TextKind::Content, text);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trip_keeps_unknown_fields() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
                ]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"q": "x"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]}
            ],
            "metadata": {"user_id": "u"},
            "thinking": {"type": "enabled", "budget_tokens": 2000}
        });
        let typed: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(typed.system.as_ref().unwrap().text(), "be brief");
        assert_eq!(serde_json::to_value(&typed).unwrap(), body);
    }

    #[test]
    fn stream_events_parse() {
        let start: StreamEvent = serde_json::from_value(json!({
            "type": "message_start",
            "message": {"id": "m", "type": "message", "role": "assistant", "model": "c", "content": [], "stop_reason": null, "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 10}}
        }))
        .unwrap();
        let delta: StreamEvent = serde_json::from_value(json!({
            "type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}
        }))
        .unwrap();
        let (StreamEvent::MessageStart { message }, StreamEvent::MessageDelta { usage, delta }) = (start, delta) else {
            panic!("wrong variants")
        };
        let mut total = message.usage.clone();
        total.merge_latest(&usage);
        assert_eq!(total.input_tokens, Some(25));
        assert_eq!(total.output_tokens, Some(15));
        assert_eq!(total.cache_read_input_tokens, Some(10));
        assert_eq!(delta.stop_reason.as_deref(), Some("end_turn"));
        let text: StreamEvent = serde_json::from_value(
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
        )
        .unwrap();
        assert!(matches!(text, StreamEvent::ContentBlockDelta { delta: BlockDelta { text: Some(_), .. }, .. }));
        assert_eq!(serde_json::from_value::<StreamEvent>(json!({"type": "ping"})).unwrap(), StreamEvent::Ping);
    }

    /// Drops a deeply nested value without recursing (serde_json's own drop
    /// recurses once per level).
    fn drop_iteratively(value: Value) {
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::Array(items) => stack.extend(items),
                Value::Object(map) => stack.extend(map.into_iter().map(|(_, item)| item)),
                _ => {}
            }
        }
    }

    #[test]
    fn tool_results_nested_beyond_any_stack_are_still_visited() {
        // Regression for unbounded recursion: tool_result content inside
        // tool_result content, far deeper than a recursive walk survives.
        let mut content = json!("innermost");
        for _ in 0..50_000 {
            // Built by hand: `json!` would serialise `content` recursively.
            let mut block = serde_json::Map::new();
            block.insert("type".into(), json!("tool_result"));
            block.insert("content".into(), content);
            content = Value::Array(vec![Value::Object(block)]);
        }
        let mut message = serde_json::Map::new();
        message.insert("content".into(), content);
        let mut body = json!({"messages": []});
        body["messages"].as_array_mut().unwrap().push(Value::Object(message));
        let mut seen = Vec::new();
        request_texts_mut(&mut body, &mut |kind, text| seen.push((kind, text.clone())));
        assert_eq!(seen, vec![(TextKind::ToolResult, "innermost".to_string())]);
        drop_iteratively(body);
    }

    #[test]
    fn visitors_reach_system_blocks_tools_and_results() {
        let mut body = json!({
            "system": "sys",
            "messages": [
                {"role": "user", "content": "plain"},
                {"role": "user", "content": [{"type": "text", "text": "block"}, {"type": "image", "source": {"data": "AAAA"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "input": {"q": "query", "n": 3, "list": ["a"]}}]},
                {"role": "user", "content": [{"type": "tool_result", "content": [{"type": "text", "text": "res"}]}]}
            ]
        });
        let mut seen = Vec::new();
        request_texts_mut(&mut body, &mut |kind, text| {
            seen.push((kind, text.clone()));
            text.push('*');
        });
        assert_eq!(
            seen,
            vec![
                (TextKind::System, "sys".into()),
                (TextKind::Content, "plain".into()),
                (TextKind::Content, "block".into()),
                (TextKind::ToolArguments, "a".into()),
                (TextKind::ToolArguments, "query".into()),
                (TextKind::ToolResult, "res".into()),
            ]
        );
        assert_eq!(body["messages"][1]["content"][1]["source"]["data"], "AAAA");
        let mut event = json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "t"}});
        stream_event_texts_mut(&mut event, &mut |_, text| text.push('!'));
        assert_eq!(event["delta"]["text"], "t!");
        let mut response = json!({"content": [{"type": "text", "text": "r"}]});
        response_texts_mut(&mut response, &mut |_, text| text.push('?'));
        assert_eq!(response["content"][0]["text"], "r?");
    }

    #[test]
    fn request_visitor_reaches_metadata_tools_and_documents() {
        let mut body = json!({
            "metadata": {"user_id": "ana@example.com"},
            "tools": [{"name": "keep", "description": "tool desc", "input_schema": {"type": "object",
                "properties": {"to": {"type": "string", "description": "inner"}}}}],
            "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc text"}, "title": "t", "context": "c"},
                {"type": "document", "source": {"type": "base64", "data": "QUJD"}}
            ]}]
        });
        let mut seen = Vec::new();
        request_texts_mut(&mut body, &mut |_, text| seen.push(text.clone()));
        seen.sort();
        assert_eq!(seen, ["ana@example.com", "c", "doc text", "inner", "t", "tool desc"]);
    }
}
