//! OpenAI chat completion chunks (SSE) → the Responses API event sequence,
//! for a streamed Responses request served by a chat backend.
//!
//! Emitted as OpenAI does: `response.created` and `response.in_progress` at
//! the first chunk; for the message `response.output_item.added`,
//! `response.content_part.added`, one `response.output_text.delta` per chunk
//! of content; for each tool call `response.output_item.added` and
//! `response.function_call_arguments.delta` per fragment; at `[DONE]` the
//! `*.done` events that repeat each whole text, then `response.completed`
//! (or `response.incomplete`) with the whole response and its usage (the
//! request asked the backend for `include_usage`). Every event carries a
//! `sequence_number`. A chat `error` event becomes an `error` event; a stream
//! cut short gets no `response.completed`, so the client sees it incomplete.
//! Like the chat translation, nothing waits for the end: only an unfinished
//! event is held (by the parser, capped).

use super::responses_request::ResponsesInfo;
use super::responses_response::{response_object, status, usage as responses_usage, Head};
use aigw_shared::sse::{EventTooLarge, SseEvent, SseParser};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
struct ToolCall {
    output_index: u64,
    call_id: String,
    name: String,
    arguments: String,
}

/// Streams chat chunks out as Responses events.
#[derive(Debug)]
pub struct ResponsesStream {
    parser: SseParser,
    info: ResponsesInfo,
    created: u64,
    id: String,
    model: String,
    sequence: u64,
    started: bool,
    /// The message item: its output index and the text so far.
    message: Option<(u64, String)>,
    /// Chat tool-call index → the call.
    tools: BTreeMap<u64, ToolCall>,
    next_output: u64,
    finish_reason: Option<String>,
    usage: Value,
    done: bool,
}

impl ResponsesStream {
    pub fn new(info: ResponsesInfo, created: u64, max_event_bytes: usize) -> Self {
        ResponsesStream {
            parser: SseParser::new(max_event_bytes),
            info,
            created,
            id: String::from("gateway"),
            model: String::new(),
            sequence: 0,
            started: false,
            message: None,
            tools: BTreeMap::new(),
            next_output: 0,
            finish_reason: None,
            usage: Value::Null,
            done: false,
        }
    }

    /// Translates the chunks `bytes` completes.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let result = self.parser.feed_with(bytes, |event| events.push(event));
        for event in events {
            self.translate(&event, &mut out);
        }
        if let Err(EventTooLarge { .. }) = result {
            self.parser.take_pending();
            self.error(
                "stream_event_too_large",
                "The model's backend sent an event larger than the gateway accepts.",
                &mut out,
            );
        }
        out
    }

    /// The backend's stream ended: a last event without its blank line.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(event) = self.parser.finish() {
            self.translate(&event, &mut out);
        }
        out
    }

    fn emit(&mut self, mut data: Value, out: &mut Vec<u8>) {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(map) = data.as_object_mut() {
            map.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        out.extend(SseEvent::named(kind, data.to_string()).to_bytes());
    }

    fn error(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        self.emit(json!({"type": "error", "code": code, "message": message, "param": null}), out);
    }

    fn message_id(&self) -> String {
        format!("msg_{}", self.id)
    }

    fn object(&self, status: &str, incomplete: Value, output: Value, usage: Value) -> Value {
        let head = Head { id: &self.id, created: self.created, model: &self.model };
        response_object(head, &self.info, status, incomplete, output, usage)
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(id) = chunk.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
            self.id = id.to_string();
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            self.model = model.to_string();
        }
        if let Some(created) = chunk.get("created").and_then(Value::as_u64) {
            self.created = created;
        }
        let response = self.object("in_progress", Value::Null, json!([]), Value::Null);
        self.emit(json!({"type": "response.created", "response": response}), out);
        let response = self.object("in_progress", Value::Null, json!([]), Value::Null);
        self.emit(json!({"type": "response.in_progress", "response": response}), out);
    }

    fn translate(&mut self, event: &SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if event.is_done_marker() {
            self.complete(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else { return };
        if let Some(error) = chunk.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("The model's backend failed.");
            let code = error.get("code").and_then(Value::as_str).or_else(|| error.get("type").and_then(Value::as_str));
            let code = code.unwrap_or("upstream_error").to_string();
            self.error(&code, message, out);
            return;
        }
        self.start(&chunk, out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = usage.clone();
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
        }
        let Some(delta) = choice.get("delta") else { return };
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.text(text, out);
        }
        if let Some(Value::Array(calls)) = delta.get("tool_calls") {
            for (position, call) in calls.iter().enumerate() {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
                self.tool_call(index, call, out);
            }
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let item_id = self.message_id();
        let output_index = match &self.message {
            Some((index, _)) => *index,
            None => {
                let index = self.next_output;
                self.next_output += 1;
                self.message = Some((index, String::new()));
                let item = json!({"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
                self.emit(json!({"type": "response.output_item.added", "output_index": index, "item": item}), out);
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                self.emit(
                    json!({"type": "response.content_part.added", "item_id": item_id, "output_index": index, "content_index": 0, "part": part}),
                    out,
                );
                index
            }
        };
        if let Some((_, so_far)) = &mut self.message {
            so_far.push_str(text);
        }
        self.emit(
            json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": output_index, "content_index": 0, "delta": text, "logprobs": []}),
            out,
        );
    }

    fn tool_call(&mut self, index: u64, call: &Value, out: &mut Vec<u8>) {
        if !self.tools.contains_key(&index) {
            let output_index = self.next_output;
            self.next_output += 1;
            let call_id = call.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or("").to_string();
            let item = json!({"id": format!("fc_{call_id}"), "type": "function_call", "status": "in_progress",
                "call_id": call_id, "name": name, "arguments": ""});
            self.emit(json!({"type": "response.output_item.added", "output_index": output_index, "item": item}), out);
            self.tools.insert(index, ToolCall { output_index, call_id, name, arguments: String::new() });
        }
        let Some(piece) = call.pointer("/function/arguments").and_then(Value::as_str).filter(|p| !p.is_empty()) else {
            return;
        };
        let Some(tool) = self.tools.get_mut(&index) else { return };
        tool.arguments.push_str(piece);
        let (output_index, item_id) = (tool.output_index, format!("fc_{}", tool.call_id));
        self.emit(
            json!({"type": "response.function_call_arguments.delta", "item_id": item_id, "output_index": output_index, "delta": piece}),
            out,
        );
    }

    /// `[DONE]`: the `*.done` events and the completed response.
    fn complete(&mut self, out: &mut Vec<u8>) {
        let mut items: Vec<(u64, Value)> = Vec::new();
        if let Some((index, text)) = self.message.take() {
            let item_id = self.message_id();
            self.emit(
                json!({"type": "response.output_text.done", "item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                out,
            );
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            self.emit(
                json!({"type": "response.content_part.done", "item_id": item_id, "output_index": index, "content_index": 0, "part": part}),
                out,
            );
            let item = json!({"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]});
            self.emit(json!({"type": "response.output_item.done", "output_index": index, "item": item}), out);
            items.push((index, item));
        }
        let tools = std::mem::take(&mut self.tools);
        for tool in tools.into_values() {
            let item_id = format!("fc_{}", tool.call_id);
            self.emit(
                json!({"type": "response.function_call_arguments.done", "item_id": item_id, "output_index": tool.output_index, "arguments": tool.arguments}),
                out,
            );
            let item = json!({"id": item_id, "type": "function_call", "status": "completed", "call_id": tool.call_id,
                "name": tool.name, "arguments": tool.arguments});
            self.emit(
                json!({"type": "response.output_item.done", "output_index": tool.output_index, "item": item}),
                out,
            );
            items.push((tool.output_index, item));
        }
        items.sort_by_key(|(index, _)| *index);
        let output: Vec<Value> = items.into_iter().map(|(_, item)| item).collect();
        let (state, incomplete) = status(self.finish_reason.as_deref());
        let usage = if self.usage.is_object() { responses_usage(&self.usage) } else { Value::Null };
        let response = self.object(state, incomplete, Value::Array(output), usage);
        let kind = if state == "completed" { "response.completed" } else { "response.incomplete" };
        self.emit(json!({"type": kind, "response": response}), out);
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::responses_request::responses_info;

    fn chat_stream() -> String {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 9, "model": "claude-x",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let mut body = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        body.push_str(&chunk(json!({"content": "Hel"}), Value::Null));
        body.push_str(&chunk(json!({"content": "lo"}), Value::Null));
        body.push_str(&chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ));
        body.push_str(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            Value::Null,
        ));
        body.push_str(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            Value::Null,
        ));
        body.push_str(&chunk(json!({}), json!("tool_calls")));
        body.push_str("data: {\"id\":\"chatcmpl-7\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n");
        body.push_str("data: [DONE]\n\n");
        body
    }

    fn events(bytes: &[u8]) -> Vec<Value> {
        let mut parser = SseParser::default();
        let mut events = parser.feed(bytes).unwrap();
        events.extend(parser.finish());
        events
            .into_iter()
            .map(|e| {
                let data: Value = serde_json::from_str(&e.data).unwrap();
                assert_eq!(e.event.as_deref(), data["type"].as_str());
                data
            })
            .collect()
    }

    #[test]
    fn chat_chunks_become_the_responses_event_sequence_at_any_split() {
        let body = chat_stream();
        let info = responses_info(&json!({"model": "claude-x", "input": "hi", "stream": true}));
        let mut whole = ResponsesStream::new(info.clone(), 1, 1 << 20);
        let expected = [whole.feed(body.as_bytes()), whole.finish()].concat();
        let out = events(&expected);
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
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let sequence: Vec<u64> = out.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(sequence, (0..out.len() as u64).collect::<Vec<_>>());
        let done = out.last().unwrap();
        assert_eq!(done["response"]["id"], "resp_chatcmpl-7");
        assert_eq!(done["response"]["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["response"]["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(done["response"]["output"][1]["call_id"], "call_1");
        assert_eq!(done["response"]["usage"]["input_tokens"], 11);
        assert_eq!(done["response"]["usage"]["total_tokens"], 18);
        for cut in 0..=body.len() {
            let mut split = ResponsesStream::new(info.clone(), 1, 1 << 20);
            let mut got = split.feed(&body.as_bytes()[..cut]);
            got.extend(split.feed(&body.as_bytes()[cut..]));
            got.extend(split.finish());
            assert_eq!(got, expected, "cut at {cut}");
        }
    }

    #[test]
    fn errors_and_cut_streams() {
        let info = responses_info(&json!({}));
        let mut stream = ResponsesStream::new(info.clone(), 1, 1 << 20);
        let out = stream
            .feed(b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"api_error\",\"code\":\"overloaded\"}}\n\n");
        let out = events(&out);
        assert_eq!(out[0]["type"], "error");
        assert_eq!(out[0]["code"], "overloaded");
        let mut stream = ResponsesStream::new(info, 1, 1 << 20);
        let mut out =
            stream.feed(b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n");
        out.extend(stream.finish());
        assert!(!String::from_utf8(out).unwrap().contains("response.completed"));
    }
}
