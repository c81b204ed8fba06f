//! Anthropic messages SSE → OpenAI `chat.completion.chunk` SSE, event by event.
//!
//! Each body chunk from the backend goes through [`StreamTranslator::feed`],
//! which returns the OpenAI bytes for the events that chunk completed. Nothing
//! waits for the end of the stream: an event is translated as soon as its
//! blank line arrives, and only the unfinished tail of an event is held back
//! (capped by the parser). Splits at any byte offset give the same output.

use super::{finish_reason, openai_error, usage};
use aigw_shared::api::anthropic::{BlockDelta, ContentBlock, ErrorBody, MessageDeltaBody, StreamEvent, Usage};
use aigw_shared::sse::{EventTooLarge, SseEvent, SseParser};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Streams Anthropic events out as OpenAI chunks.
#[derive(Debug)]
pub struct StreamTranslator {
    parser: SseParser,
    include_usage: bool,
    created: u64,
    id: String,
    model: String,
    usage: Usage,
    /// Anthropic content block index → OpenAI tool call index.
    tool_indexes: HashMap<u32, u32>,
    next_tool_index: u32,
    finish_reason: Option<&'static str>,
    done: bool,
    /// The forced tool that carries `response_format` (its input is the content).
    json_tool: Option<String>,
    /// The content block of that tool, once started.
    json_block: Option<u32>,
}

impl StreamTranslator {
    /// `include_usage`: the client asked for a final usage chunk
    /// (`stream_options.include_usage`). `created`: Unix seconds.
    pub fn new(include_usage: bool, created: u64, max_event_bytes: usize) -> Self {
        StreamTranslator {
            parser: SseParser::new(max_event_bytes),
            include_usage,
            created,
            id: String::new(),
            model: String::new(),
            usage: Usage::default(),
            tool_indexes: HashMap::new(),
            next_tool_index: 0,
            finish_reason: None,
            done: false,
            json_tool: None,
            json_block: None,
        }
    }

    /// For a request whose `response_format` became the forced tool `name`:
    /// its input streams out as content, not as a tool call.
    pub fn with_json_tool(mut self, name: Option<String>) -> Self {
        self.json_tool = name;
        self
    }

    /// Whether `data: [DONE]` has been sent.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Translates the events `chunk` completes. On an oversized event the
    /// stream is ended for the client with an OpenAI error event.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let result = self.parser.feed_with(chunk, |event| events.push(event));
        for event in events {
            self.translate(&event, &mut out);
        }
        if let Err(EventTooLarge { .. }) = result {
            self.parser.take_pending();
            self.fail("The model's backend sent an event larger than the gateway accepts.", &mut out);
        }
        out
    }

    /// The backend's stream ended: flush a last event that lacked its blank
    /// line. A stream cut short stays without `[DONE]`, so the client sees
    /// that it is incomplete.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(event) = self.parser.finish() {
            self.translate(&event, &mut out);
        }
        out
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        })
    }

    fn emit(out: &mut Vec<u8>, value: &Value) {
        out.extend_from_slice(&SseEvent::data(value.to_string()).to_bytes());
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let error = ErrorBody { kind: "api_error".into(), message: message.into() };
        Self::emit(out, &openai_error(&error));
        out.extend_from_slice(&SseEvent::data("[DONE]").to_bytes());
        self.done = true;
    }

    fn translate(&mut self, event: &SseEvent, out: &mut Vec<u8>) {
        if self.done || event.data.trim().is_empty() {
            return;
        }
        let parsed: StreamEvent = match serde_json::from_str(&event.data) {
            Ok(parsed) => parsed,
            Err(_) => {
                // Event types added after this code was written carry a
                // `type` we do not know; skip them. Anything else is garbage.
                if serde_json::from_str::<Value>(&event.data).is_ok_and(|v| v.get("type").is_some()) {
                    return;
                }
                self.fail("The model's backend sent an unreadable stream event.", out);
                return;
            }
        };
        match parsed {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage.merge_latest(&message.usage);
                Self::emit(out, &self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            StreamEvent::ContentBlockStart { index, content_block } => self.block_start(index, &content_block, out),
            StreamEvent::ContentBlockDelta { index, delta } => self.block_delta(index, &delta, out),
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping => {}
            StreamEvent::MessageDelta { delta, usage } => self.message_delta(&delta, &usage, out),
            StreamEvent::MessageStop => {
                if self.include_usage {
                    let mut last = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [],
                    });
                    if let Some(object) = last.as_object_mut() {
                        object.insert("usage".into(), usage(&self.usage));
                    }
                    Self::emit(out, &last);
                }
                out.extend_from_slice(&SseEvent::data("[DONE]").to_bytes());
                self.done = true;
            }
            StreamEvent::Error { error } => {
                Self::emit(out, &openai_error(&error));
                out.extend_from_slice(&SseEvent::data("[DONE]").to_bytes());
                self.done = true;
            }
        }
    }

    fn block_start(&mut self, index: u32, block: &ContentBlock, out: &mut Vec<u8>) {
        match block.kind.as_str() {
            "text" => {
                if let Some(text) = block.text.as_deref().filter(|text| !text.is_empty()) {
                    Self::emit(out, &self.chunk(json!({"content": text}), None));
                }
            }
            "tool_use" if self.json_tool.is_some() && block.name == self.json_tool => {
                self.json_block = Some(index);
            }
            "tool_use" => {
                let tool_index = self.next_tool_index;
                self.next_tool_index = self.next_tool_index.saturating_add(1);
                self.tool_indexes.insert(index, tool_index);
                let delta = json!({"tool_calls": [{
                    "index": tool_index,
                    "id": block.id.clone().unwrap_or_default(),
                    "type": "function",
                    "function": {"name": block.name.clone().unwrap_or_default(), "arguments": ""},
                }]});
                Self::emit(out, &self.chunk(delta, None));
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, index: u32, delta: &BlockDelta, out: &mut Vec<u8>) {
        match delta.kind.as_str() {
            "text_delta" => {
                if let Some(text) = &delta.text {
                    Self::emit(out, &self.chunk(json!({"content": text}), None));
                }
            }
            "input_json_delta" if self.json_block == Some(index) => {
                if let Some(partial) = delta.partial_json.as_deref().filter(|p| !p.is_empty()) {
                    Self::emit(out, &self.chunk(json!({"content": partial}), None));
                }
            }
            "input_json_delta" => {
                let (Some(partial), Some(tool_index)) = (&delta.partial_json, self.tool_indexes.get(&index)) else {
                    return;
                };
                if partial.is_empty() {
                    return;
                }
                let delta = json!({"tool_calls": [{"index": tool_index, "function": {"arguments": partial}}]});
                Self::emit(out, &self.chunk(delta, None));
            }
            // thinking_delta, signature_delta, citations_delta: no OpenAI equivalent.
            _ => {}
        }
    }

    fn message_delta(&mut self, delta: &MessageDeltaBody, latest: &Usage, out: &mut Vec<u8>) {
        self.usage.merge_latest(latest);
        if let Some(reason) = delta.stop_reason.as_deref() {
            let finish = match reason {
                // The forced format tool ends the answer: a normal stop for the client.
                "tool_use" if self.json_block.is_some() && self.next_tool_index == 0 => "stop",
                other => finish_reason(other),
            };
            self.finish_reason = Some(finish);
            Self::emit(out, &self.chunk(json!({}), Some(finish)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":5}}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_start\r\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo ✓ 日本\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Par\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"is\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    fn whole(include_usage: bool) -> Vec<u8> {
        let mut translator = StreamTranslator::new(include_usage, 42, 1 << 20);
        let mut out = translator.feed(STREAM.as_bytes());
        out.extend(translator.finish());
        out
    }

    fn events(bytes: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = parser.feed(bytes).unwrap();
        events.extend(parser.finish());
        events
    }

    fn chunks(bytes: &[u8]) -> Vec<Value> {
        events(bytes).iter().filter(|e| !e.is_done_marker()).map(|e| serde_json::from_str(&e.data).unwrap()).collect()
    }

    #[test]
    fn translates_a_full_stream() {
        let out = whole(true);
        let all = events(&out);
        assert!(all.last().unwrap().is_done_marker());
        assert!(all.iter().all(|e| e.event.is_none()), "OpenAI events carry no event name");
        let chunks = chunks(&out);
        assert!(chunks.iter().all(|c| c["id"] == "msg_1" && c["model"] == "claude-x" && c["created"] == 42));
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Héllo ✓ 日本");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}})
        );
        let arguments: String = chunks[3..5]
            .iter()
            .map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(arguments, "{\"city\": \"Paris\"}");
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        let usage = &chunks[6];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 30);
        assert_eq!(usage["usage"]["completion_tokens"], 15);
        assert_eq!(usage["usage"]["total_tokens"], 45);
        assert_eq!(chunks.len(), 7);
    }

    #[test]
    fn no_usage_chunk_unless_asked() {
        let chunks = chunks(&whole(false));
        assert_eq!(chunks.len(), 6);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn every_split_offset_gives_the_same_bytes() {
        let expected = whole(true);
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let mut translator = StreamTranslator::new(true, 42, 1 << 20);
            let mut out = translator.feed(&bytes[..cut]);
            out.extend(translator.feed(&bytes[cut..]));
            out.extend(translator.finish());
            assert_eq!(out, expected, "split at {cut}");
        }
        // Three pieces at a spread of offsets, and one byte at a time.
        for first in (0..bytes.len()).step_by(7) {
            for second in (first..=bytes.len()).step_by(11) {
                let mut translator = StreamTranslator::new(true, 42, 1 << 20);
                let mut out = translator.feed(&bytes[..first]);
                out.extend(translator.feed(&bytes[first..second]));
                out.extend(translator.feed(&bytes[second..]));
                out.extend(translator.finish());
                assert_eq!(out, expected, "splits at {first}, {second}");
            }
        }
        let mut translator = StreamTranslator::new(true, 42, 1 << 20);
        let mut out = Vec::new();
        for byte in bytes {
            out.extend(translator.feed(std::slice::from_ref(byte)));
        }
        out.extend(translator.finish());
        assert_eq!(out, expected);
    }

    #[test]
    fn events_are_released_as_they_complete() {
        let mut translator = StreamTranslator::new(false, 0, 1 << 20);
        let first_event_end = STREAM.find("\n\n").unwrap() + 2;
        let out = translator.feed(&STREAM.as_bytes()[..first_event_end]);
        assert_eq!(chunks(&out).len(), 1, "message_start is sent before the rest arrives");
        let out = translator.feed(&STREAM.as_bytes()[first_event_end..first_event_end + 5]);
        assert!(out.is_empty());
    }

    #[test]
    fn forced_format_tool_streams_as_content() {
        let stream = concat!(
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"reply\",\"input\":{}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\": \"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":3}}\n\n",
        );
        let mut translator = StreamTranslator::new(false, 0, 1 << 20).with_json_tool(Some("reply".into()));
        let chunks = chunks(&translator.feed(stream.as_bytes()));
        let content: String =
            chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
        assert_eq!(content, "{\"a\": 1}");
        assert!(chunks.iter().all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()));
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn stop_reasons_map() {
        for (reason, finish) in [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop")] {
            let stream = format!(
                "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{reason}\"}},\"usage\":{{\"output_tokens\":1}}}}\n\n"
            );
            let mut translator = StreamTranslator::new(false, 0, 1 << 20);
            let chunks = chunks(&translator.feed(stream.as_bytes()));
            assert_eq!(chunks[0]["choices"][0]["finish_reason"], finish);
        }
    }

    #[test]
    fn error_event_becomes_openai_error_and_ends_stream() {
        let stream = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut translator = StreamTranslator::new(true, 0, 1 << 20);
        let out = translator.feed(stream.as_bytes());
        let all = events(&out);
        assert_eq!(all.len(), 2);
        let error: Value = serde_json::from_str(&all[0].data).unwrap();
        assert_eq!(error["error"]["code"], "overloaded");
        assert!(all[1].is_done_marker());
        assert!(translator.is_done());
    }

    #[test]
    fn garbage_and_oversized_events_end_the_stream_with_an_error() {
        let mut translator = StreamTranslator::new(false, 0, 1 << 20);
        let out = translator.feed(b"data: {not json\n\n");
        assert!(String::from_utf8_lossy(&out).contains("unreadable"));
        assert!(translator.is_done());
        let mut translator = StreamTranslator::new(false, 0, 64);
        let out = translator.feed(&[b'x'; 100]);
        assert!(String::from_utf8_lossy(&out).contains("larger"));
        let mut translator = StreamTranslator::new(false, 0, 1 << 20);
        assert!(translator.feed(b"event: future\ndata: {\"type\":\"future_event\"}\n\n").is_empty());
        assert!(!translator.is_done());
    }

    #[test]
    fn unterminated_stream_has_no_done_marker() {
        let cut = STREAM.find("event: message_delta").unwrap();
        let mut translator = StreamTranslator::new(false, 0, 1 << 20);
        let mut out = translator.feed(&STREAM.as_bytes()[..cut]);
        out.extend(translator.finish());
        assert!(!events(&out).iter().any(SseEvent::is_done_marker));
    }
}
