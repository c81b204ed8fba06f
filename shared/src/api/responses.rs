//! OpenAI Responses API (`POST /v1/responses`): where the text sits in a
//! request, a response object and each streamed event.
//!
//! The request's prompt is `instructions` (a system prompt) and `input`: a
//! string, or a list of items. Items are messages (`role` + string content or
//! parts `input_text` / `output_text` / `refusal`; `input_image` and
//! `input_file` are media and not visited), `function_call` (`arguments`, JSON
//! text), `function_call_output` (`output`, a string or parts), custom tool
//! calls and their outputs, and `reasoning` items (`summary[].text`). Items of
//! other types (`item_reference`, built-in tool calls) carry no client text the
//! gateway knows of and are passed as they are.
//!
//! A response object carries `output` items of the same kinds (`message` with
//! `output_text` parts, `function_call`, `reasoning`) and may echo
//! `instructions`. Streamed events carry pieces (`*.delta`) and repeat the whole
//! text in `*.done`, `response.content_part.done`, `response.output_item.done`
//! and `response.completed`.

use super::{is_system_role, TextKind};
use serde_json::Value;

/// Kind of a message's text by its role.
fn role_kind(item: &Value) -> TextKind {
    match item.get("role").and_then(Value::as_str) {
        Some(role) if is_system_role(role) => TextKind::System,
        _ => TextKind::Content,
    }
}

/// A message's content: a string, or parts with `text` (input_text,
/// output_text) or `refusal`. Media parts are skipped.
fn message_content_texts_mut(content: &mut Value, kind: TextKind, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match content {
        Value::String(text) => visit(kind, text),
        Value::Array(parts) => {
            for part in parts {
                part_texts_mut(part, kind, visit);
            }
        }
        _ => {}
    }
}

/// One content part: its `text` or `refusal`.
fn part_texts_mut(part: &mut Value, kind: TextKind, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(Value::String(text)) = part.get_mut("text") {
        visit(kind, text);
    }
    if let Some(Value::String(refusal)) = part.get_mut("refusal") {
        visit(TextKind::Refusal, refusal);
    }
}

/// One input or output item.
pub fn item_texts_mut(item: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message").to_string();
    match kind.as_str() {
        "message" => {
            let text_kind = role_kind(item);
            if let Some(content) = item.get_mut("content") {
                message_content_texts_mut(content, text_kind, visit);
            }
        }
        "function_call" => {
            if let Some(Value::String(arguments)) = item.get_mut("arguments") {
                visit(TextKind::ToolArguments, arguments);
            }
        }
        "custom_tool_call" => {
            if let Some(Value::String(input)) = item.get_mut("input") {
                visit(TextKind::ToolArguments, input);
            }
        }
        "function_call_output" | "custom_tool_call_output" => {
            if let Some(output) = item.get_mut("output") {
                message_content_texts_mut(output, TextKind::ToolResult, visit);
            }
        }
        "reasoning" => {
            for field in ["summary", "content"] {
                if let Some(Value::Array(parts)) = item.get_mut(field) {
                    for part in parts {
                        if let Some(Value::String(text)) = part.get_mut("text") {
                            visit(TextKind::Content, text);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// `instructions`: a string, or (as a response echoes it) a list of items.
fn instructions_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match body.get_mut("instructions") {
        Some(Value::String(text)) => visit(TextKind::System, text),
        Some(Value::Array(items)) => {
            for item in items {
                item_texts_mut(item, visit);
            }
        }
        _ => {}
    }
}

/// Visits every text of a Responses request: `instructions`, `input` (string
/// or items), `user` / `safety_identifier` / `metadata` values, function and
/// custom tool descriptions with the prose of their parameter schemas, the
/// `text.format` schema's description and prose, and string values of a
/// reusable `prompt`'s `variables`.
pub fn request_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    instructions_texts_mut(body, visit);
    match body.get_mut("input") {
        Some(Value::String(text)) => visit(TextKind::Content, text),
        Some(Value::Array(items)) => {
            for item in items {
                item_texts_mut(item, visit);
            }
        }
        _ => {}
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
            if let Some(Value::String(description)) = tool.get_mut("description") {
                visit(TextKind::System, description);
            }
            if let Some(parameters) = tool.get_mut("parameters") {
                super::openai::schema_texts_mut(parameters, TextKind::System, visit);
            }
        }
    }
    if let Some(format) = body.pointer_mut("/text/format") {
        if let Some(Value::String(description)) = format.get_mut("description") {
            visit(TextKind::System, description);
        }
        if let Some(schema) = format.get_mut("schema") {
            super::openai::schema_texts_mut(schema, TextKind::System, visit);
        }
    }
    if let Some(Value::Object(variables)) = body.pointer_mut("/prompt/variables") {
        for value in variables.values_mut() {
            match value {
                Value::String(text) => visit(TextKind::Content, text),
                Value::Object(_) => {
                    if let Some(Value::String(text)) = value.get_mut("text") {
                        visit(TextKind::Content, text);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Visits every text of a response object: each `output` item and the echoed
/// `instructions`.
pub fn response_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    instructions_texts_mut(body, visit);
    if let Some(Value::Array(items)) = body.get_mut("output") {
        for item in items {
            item_texts_mut(item, visit);
        }
    }
}

/// Visits the text of one streamed event: the piece of a `*.delta`, the whole
/// text of a `*.done`, the part or item of `content_part.*` /
/// `output_item.*`, and the response object of `response.*` lifecycle events.
pub fn stream_event_texts_mut(event: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    match kind.as_str() {
        "response.output_text.delta" | "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
            if let Some(Value::String(text)) = event.get_mut("delta") {
                visit(TextKind::Content, text);
            }
        }
        "response.output_text.done" | "response.reasoning_summary_text.done" | "response.reasoning_text.done" => {
            if let Some(Value::String(text)) = event.get_mut("text") {
                visit(TextKind::Content, text);
            }
        }
        "response.refusal.delta" => {
            if let Some(Value::String(text)) = event.get_mut("delta") {
                visit(TextKind::Refusal, text);
            }
        }
        "response.refusal.done" => {
            if let Some(Value::String(text)) = event.get_mut("refusal") {
                visit(TextKind::Refusal, text);
            }
        }
        "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
            if let Some(Value::String(text)) = event.get_mut("delta") {
                visit(TextKind::ToolArguments, text);
            }
        }
        "response.function_call_arguments.done" => {
            if let Some(Value::String(text)) = event.get_mut("arguments") {
                visit(TextKind::ToolArguments, text);
            }
        }
        "response.custom_tool_call_input.done" => {
            if let Some(Value::String(text)) = event.get_mut("input") {
                visit(TextKind::ToolArguments, text);
            }
        }
        "response.content_part.added" | "response.content_part.done" => {
            if let Some(part) = event.get_mut("part") {
                part_texts_mut(part, TextKind::Content, visit);
            }
        }
        "response.output_item.added" | "response.output_item.done" => {
            if let Some(item) = event.get_mut("item") {
                item_texts_mut(item, visit);
            }
        }
        _ => {
            if let Some(response) = event.get_mut("response") {
                response_texts_mut(response, visit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A text visitor of this module.
    type Walk = fn(&mut Value, &mut dyn FnMut(TextKind, &mut String));

    fn collect(value: &mut Value, walk: Walk) -> Vec<(TextKind, String)> {
        let mut seen = Vec::new();
        walk(value, &mut |kind, text| {
            seen.push((kind, text.clone()));
            text.make_ascii_uppercase();
        });
        seen
    }

    #[test]
    fn request_every_text_in_order_and_media_skipped() {
        let mut body = json!({
            "model": "gpt-4o-mini",
            "instructions": "be brief",
            "input": [
                {"role": "developer", "content": "dev"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "hello"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
                ]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":\"x\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "result"},
                {"type": "reasoning", "id": "r", "summary": [{"type": "summary_text", "text": "thought"}], "encrypted_content": "zz"},
                {"type": "item_reference", "id": "msg_1"}
            ],
            "user": "u",
            "metadata": {"k": "meta"},
            "tools": [{"type": "function", "name": "f", "description": "desc", "parameters": {"type": "object", "properties": {"a": {"type": "string", "description": "pd"}}}}],
            "text": {"format": {"type": "json_schema", "name": "n", "description": "fd", "schema": {"type": "object", "title": "st"}}},
            "prompt": {"id": "p", "variables": {"name": "var", "file": {"type": "input_text", "text": "vt"}}}
        });
        let seen = collect(&mut body, request_texts_mut);
        let texts: Vec<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                "be brief",
                "dev",
                "hello",
                "{\"a\":\"x\"}",
                "result",
                "thought",
                "u",
                "meta",
                "desc",
                "pd",
                "fd",
                "st",
                "vt",
                "var"
            ]
        );
        assert_eq!(seen[0].0, TextKind::System);
        assert_eq!(seen[1].0, TextKind::System);
        assert_eq!(seen[2].0, TextKind::Content);
        assert_eq!(seen[3].0, TextKind::ToolArguments);
        assert_eq!(seen[4].0, TextKind::ToolResult);
        assert_eq!(body["input"][1]["content"][1]["image_url"], "data:image/png;base64,AAAA");
        assert_eq!(body["input"][4]["encrypted_content"], "zz");
        assert_eq!(body["instructions"], "BE BRIEF");

        let mut plain = json!({"model": "m", "input": "just text"});
        assert_eq!(collect(&mut plain, request_texts_mut), [(TextKind::Content, "just text".to_string())]);
    }

    #[test]
    fn response_output_items() {
        let mut body = json!({
            "object": "response",
            "instructions": "sys",
            "output": [
                {"type": "reasoning", "summary": []},
                {"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "answer", "annotations": []},
                    {"type": "refusal", "refusal": "no"}
                ]},
                {"type": "function_call", "name": "f", "arguments": "{}"}
            ],
            "usage": {"input_tokens": 1}
        });
        let seen = collect(&mut body, response_texts_mut);
        assert_eq!(
            seen,
            [
                (TextKind::System, "sys".to_string()),
                (TextKind::Content, "answer".to_string()),
                (TextKind::Refusal, "no".to_string()),
                (TextKind::ToolArguments, "{}".to_string())
            ]
        );
    }

    #[test]
    fn stream_events() {
        let cases = [
            (json!({"type": "response.output_text.delta", "delta": "a"}), "a"),
            (json!({"type": "response.output_text.done", "text": "b"}), "b"),
            (json!({"type": "response.function_call_arguments.delta", "delta": "c"}), "c"),
            (json!({"type": "response.function_call_arguments.done", "arguments": "d"}), "d"),
            (json!({"type": "response.content_part.done", "part": {"type": "output_text", "text": "e"}}), "e"),
            (
                json!({"type": "response.output_item.done", "item": {"type": "message", "content": [{"type": "output_text", "text": "f"}]}}),
                "f",
            ),
            (
                json!({"type": "response.completed", "response": {"output": [{"type": "function_call", "arguments": "g"}]}}),
                "g",
            ),
        ];
        for (mut event, expected) in cases {
            let seen = collect(&mut event, stream_event_texts_mut);
            assert_eq!(seen.len(), 1, "{event}");
            assert_eq!(seen[0].1, expected);
            assert!(event.to_string().contains(&expected.to_uppercase()), "{event}");
        }
    }
}
