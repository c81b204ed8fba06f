//! OpenAI `chat.completion.chunk` SSE → Anthropic messages SSE, chunk by chunk.
//!
//! Anthropic's stream is `message_start`, then per content block
//! `content_block_start`, its deltas and `content_block_stop`, then
//! `message_delta` (stop reason and usage) and `message_stop`. A chat stream
//! has no blocks: text deltas open a text block, each new tool call (a delta
//! with an `id`) closes the open block and opens a `tool_use` block whose
//! argument fragments become `input_json_delta`s. OpenAI sends the finish
//! reason before the usage chunk (the request asked for it), so
//! `message_delta` waits for `[DONE]`. Each event is translated when its
//! blank line arrives; splits at any byte offset give the same output.

use super::messages_response::{anthropic_error, error_type, stop_reason, usage};
use aigw_shared::sse::{EventTooLarge, SseEvent, SseParser};
use serde_json::{json, Value};

/// The content block open in the Anthropic stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool use, by the chat stream's tool call index.
    Tool(u64),
}

/// Streams chat chunks out as Anthropic events.
#[derive(Debug)]
pub struct ChatStreamTranslator {
    parser: SseParser,
    /// The model the client asked for (when the chunks name none).
    model: String,
    started: bool,
    open: Option<Block>,
    /// Index of the next content block.
    next_index: u64,
    /// Tool call indexes already given a block (a later delta for one of
    /// them after another block opened cannot be placed).
    seen_tools: Vec<u64>,
    stop_reason: Option<&'static str>,
    usage: Option<Value>,
    done: bool,
}

impl ChatStreamTranslator {
    pub fn new(model: &str, max_event_bytes: usize) -> Self {
        ChatStreamTranslator {
            parser: SseParser::new(max_event_bytes),
            model: model.to_string(),
            started: false,
            open: None,
            next_index: 0,
            seen_tools: Vec::new(),
            stop_reason: None,
            usage: None,
            done: false,
        }
    }

    /// Whether `message_stop` (or a final error) has been sent.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Translates the events `chunk` completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let result = self.parser.feed_with(chunk, |event| events.push(event));
        for event in events {
            self.translate(&event, &mut out);
        }
        if let Err(EventTooLarge { .. }) = result {
            self.parser.take_pending();
            self.fail("api_error", "The model's backend sent an event larger than the gateway accepts.", &mut out);
        }
        out
    }

    /// The backend's stream ended. A last event without its blank line is
    /// translated; a stream that finished (a finish reason came) but lacked
    /// `[DONE]` is closed properly; one cut short stays without
    /// `message_stop`, so the client sees that it is incomplete.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(event) = self.parser.finish() {
            self.translate(&event, &mut out);
        }
        if !self.done && self.stop_reason.is_some() {
            self.end(&mut out);
        }
        out
    }

    fn emit(out: &mut Vec<u8>, name: &str, data: &Value) {
        out.extend_from_slice(&SseEvent::named(name, data.to_string()).to_bytes());
    }

    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        Self::emit(out, "error", &anthropic_error(kind, message));
        self.done = true;
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let model = chunk.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(&self.model);
        let message = json!({
            "id": chunk.get("id").and_then(Value::as_str).unwrap_or_default(),
            "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        Self::emit(out, "message_start", &json!({"type": "message_start", "message": message}));
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let index = self.next_index.saturating_sub(1);
            Self::emit(out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}));
        }
    }

    fn open_block(&mut self, block: Block, content_block: Value, out: &mut Vec<u8>) {
        self.close_block(out);
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        Self::emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        );
        self.open = Some(block);
    }

    fn delta(&self, out: &mut Vec<u8>, delta: Value) {
        let index = self.next_index.saturating_sub(1);
        Self::emit(out, "content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}));
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        if self.open != Some(Block::Text) {
            self.open_block(Block::Text, json!({"type": "text", "text": ""}), out);
        }
        self.delta(out, json!({"type": "text_delta", "text": text}));
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
        if self.open != Some(Block::Tool(index)) {
            if self.seen_tools.contains(&index) {
                // Anthropic's blocks follow each other; an interleaved call cannot be placed.
                self.fail(
                    "api_error",
                    "The model's backend interleaved tool calls; the stream cannot be translated.",
                    out,
                );
                return;
            }
            self.seen_tools.push(index);
            let block = json!({
                "type": "tool_use",
                "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
                "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
                "input": {},
            });
            self.open_block(Block::Tool(index), block, out);
        }
        if !arguments.is_empty() {
            self.delta(out, json!({"type": "input_json_delta", "partial_json": arguments}));
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        // Anthropic's message_delta reports output tokens; input tokens too
        // here, since message_start went out before the backend counted them.
        let usage = usage(self.usage.as_ref());
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": usage,
        });
        Self::emit(out, "message_delta", &delta);
        Self::emit(out, "message_stop", &json!({"type": "message_stop"}));
        self.done = true;
    }

    fn translate(&mut self, event: &SseEvent, out: &mut Vec<u8>) {
        if self.done || event.data.trim().is_empty() {
            return;
        }
        if event.is_done_marker() {
            if !self.started {
                self.start(&Value::Null, out);
            }
            self.end(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else {
            self.fail("api_error", "The model's backend sent an unreadable stream event.", out);
            return;
        };
        if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("The model's backend failed.");
            let status = error.get("code").and_then(Value::as_u64).and_then(|c| u32::try_from(c).ok()).unwrap_or(500);
            self.fail(error_type(status), message, out);
            return;
        }
        self.start(&chunk, out);
        if let Some(found) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(found.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for field in ["content", "refusal"] {
            if let Some(Value::String(text)) = delta.get(field) {
                self.text(text, out);
            }
        }
        if let Some(Value::Array(calls)) = delta.get("tool_calls") {
            for call in calls {
                self.tool_call(call, out);
                if self.done {
                    return;
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason(reason));
            self.close_block(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(delta: Value, finish: Option<&str>) -> String {
        let data = json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {data}\n\n")
    }

    fn stream() -> String {
        let mut s = String::new();
        s += &chunk(json!({"role": "assistant", "content": ""}), None);
        s += &chunk(json!({"content": "Héllo ✓"}), None);
        s += &chunk(json!({"content": " 日本"}), None);
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        );
        s += &chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Par"}}]}), None);
        s += &chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "is\"}"}}]}), None);
        s += &chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]}),
            None,
        );
        s += &chunk(json!({}), Some("tool_calls"));
        s += "data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":15,\"total_tokens\":45,\"prompt_tokens_details\":{\"cached_tokens\":10}}}\n\n";
        s += "data: [DONE]\n\n";
        s
    }

    fn whole() -> Vec<u8> {
        let mut translator = ChatStreamTranslator::new("client-model", 1 << 20);
        let mut out = translator.feed(stream().as_bytes());
        out.extend(translator.finish());
        out
    }

    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let mut parser = SseParser::default();
        let mut events = parser.feed(bytes).unwrap();
        events.extend(parser.finish());
        events.into_iter().map(|e| (e.event.unwrap_or_default(), serde_json::from_str(&e.data).unwrap())).collect()
    }

    #[test]
    fn translates_text_and_tool_calls_into_blocks() {
        let all = events(&whole());
        let names: Vec<&str> = all.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert!(all.iter().all(|(name, data)| data["type"] == name.as_str()), "event name = data type");
        assert_eq!(all[0].1["message"]["id"], "chatcmpl-9");
        assert_eq!(all[0].1["message"]["model"], "gpt-4o-mini");
        assert_eq!(all[1].1["content_block"], json!({"type": "text", "text": ""}));
        assert_eq!(all[2].1["delta"], json!({"type": "text_delta", "text": "Héllo ✓"}));
        assert_eq!(
            all[5].1,
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}})
        );
        let arguments: String =
            all[6..8].iter().map(|(_, e)| e["delta"]["partial_json"].as_str().unwrap().to_string()).collect();
        assert_eq!(arguments, "{\"city\": \"Paris\"}");
        assert_eq!(all[8].1["index"], 1);
        assert_eq!(all[9].1["index"], 2);
        assert_eq!(all[9].1["content_block"]["name"], "now");
        assert_eq!(all[12].1["delta"], json!({"stop_reason": "tool_use", "stop_sequence": null}));
        assert_eq!(
            all[12].1["usage"],
            json!({"input_tokens": 20, "output_tokens": 15, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 0})
        );
    }

    #[test]
    fn every_split_offset_gives_the_same_bytes() {
        let expected = whole();
        let text = stream();
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut translator = ChatStreamTranslator::new("client-model", 1 << 20);
            let mut out = translator.feed(&bytes[..cut]);
            out.extend(translator.feed(&bytes[cut..]));
            out.extend(translator.finish());
            assert_eq!(out, expected, "split at {cut}");
        }
        let mut translator = ChatStreamTranslator::new("client-model", 1 << 20);
        let mut out = Vec::new();
        for byte in bytes {
            out.extend(translator.feed(std::slice::from_ref(byte)));
        }
        out.extend(translator.finish());
        assert_eq!(out, expected);
    }

    #[test]
    fn plain_text_stream_ends_with_end_turn() {
        let text = chunk(json!({"content": "hi"}), None) + &chunk(json!({}), Some("stop")) + "data: [DONE]\n\n";
        let mut translator = ChatStreamTranslator::new("m", 1 << 20);
        let all = events(&translator.feed(text.as_bytes()));
        assert_eq!(all.len(), 6);
        assert_eq!(all[3].0, "content_block_stop");
        assert_eq!(all[4].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(all[4].1["usage"]["output_tokens"], 0);
        assert!(translator.is_done());
        let text = chunk(json!({"content": "x"}), Some("length")) + "data: [DONE]\n\n";
        let all = events(&ChatStreamTranslator::new("m", 1 << 20).feed(text.as_bytes()));
        assert_eq!(all[4].1["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn cut_streams_and_errors() {
        // Cut before any finish reason: no message_stop.
        let mut translator = ChatStreamTranslator::new("m", 1 << 20);
        let mut out = translator.feed(chunk(json!({"content": "hi"}), None).as_bytes());
        out.extend(translator.finish());
        assert!(!events(&out).iter().any(|(name, _)| name == "message_stop"));
        // Finished but no [DONE]: closed properly.
        let mut translator = ChatStreamTranslator::new("m", 1 << 20);
        let mut out = translator.feed((chunk(json!({"content": "hi"}), Some("stop"))).as_bytes());
        out.extend(translator.finish());
        assert_eq!(events(&out).last().unwrap().0, "message_stop");
        // An error chunk.
        let mut translator = ChatStreamTranslator::new("m", 1 << 20);
        let out = translator.feed(b"data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\"}}\n\n");
        let all = events(&out);
        assert_eq!(all[0].0, "error");
        assert_eq!(all[0].1, json!({"type": "error", "error": {"type": "api_error", "message": "Overloaded"}}));
        assert!(translator.is_done());
        // Garbage and oversized events.
        let mut translator = ChatStreamTranslator::new("m", 1 << 20);
        assert!(String::from_utf8_lossy(&translator.feed(b"data: {nope\n\n")).contains("unreadable"));
        let mut translator = ChatStreamTranslator::new("m", 64);
        assert!(String::from_utf8_lossy(&translator.feed(&[b'x'; 100])).contains("larger"));
        // Interleaved tool calls cannot be placed.
        let text =
            chunk(json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}), None)
                + &chunk(
                    json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": ""}}]}),
                    None,
                )
                + &chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}), None);
        let all = events(&ChatStreamTranslator::new("m", 1 << 20).feed(text.as_bytes()));
        assert_eq!(all.last().unwrap().0, "error");
    }
}
