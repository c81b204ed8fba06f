//! Masking of streamed (SSE) responses.
//!
//! A value can be split across events and across TCP chunks at any offset.
//! [`TextStream`] (`text.rs`) masks one logical text that arrives in pieces
//! and holds back only what a match in progress could still cover, within a
//! documented bound.
//!
//! [`SseMasker`] sits on top: it parses the SSE byte stream, routes each
//! event's text to its [`TextStream`] (by OpenAI choice index and part in
//! `openai.rs`, by Anthropic content block index in `anthropic.rs`),
//! re-serialises changed events, and flushes held text before the event that
//! ends its text (`finish_reason`, `content_block_stop`, `message_delta`,
//! `message_stop`, `[DONE]`, or the end of the body). Tool-call arguments and
//! Anthropic `partial_json` are JSON fragments: their streams decode escapes
//! (`\u0040`) for matching and keep the JSON valid when they mask.

mod anthropic;
mod openai;
mod responses;
mod text;

pub use text::{Released, TextStream};

use crate::actions::HashSettings;
use crate::scan::{Findings, Scanner};
use aigw_shared::sse::{SseEvent, SseParser};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Which text of a stream an event piece belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    /// OpenAI `choices[i].delta.content`.
    Content,
    /// OpenAI `choices[i].delta.refusal`.
    Refusal,
    /// OpenAI `choices[i].delta.tool_calls[j].function.arguments` (j = tool index).
    Tool(u64),
    /// Anthropic content block: `delta.text` / `content_block.text`.
    BlockText,
    /// Anthropic content block: `delta.partial_json`.
    BlockJson,
    /// Legacy completions `choices[i].text`.
    CompletionText,
    /// Responses: an `output_text` part of an output item (content index).
    ResponseText(u64),
    /// Responses: a `refusal` part of an output item (content index).
    ResponseRefusal(u64),
    /// Responses: a function call's `arguments`.
    ResponseArguments,
    /// Responses: a custom tool call's `input`.
    ResponseInput,
    /// Responses: a reasoning summary part (summary index).
    ResponseReasoning(u64),
}

impl Part {
    /// Whether this text is JSON arriving in fragments.
    fn is_json(self) -> bool {
        matches!(self, Part::Tool(_) | Part::BlockJson | Part::ResponseArguments)
    }
}

type Key = (u64, Part);

/// Masks an SSE response body chunk by chunk.
pub struct SseMasker {
    scanner: Rc<Scanner>,
    hash: HashSettings,
    parser: SseParser,
    streams: BTreeMap<Key, TextStream>,
    /// Top-level fields of the last OpenAI chunk (id, model, …) for the
    /// chunks this masker adds.
    openai_template: Option<Map<String, Value>>,
    anthropic: bool,
    /// The stream is legacy completions (`choices[].text`).
    completions: bool,
    responses: responses::ResponsesState,
    /// After a reject or a fatal error nothing more is forwarded.
    stopped: bool,
    pub findings: Findings,
    /// Set when an event was too large or unparseable input forced a stop.
    pub error: Option<String>,
    /// Bytes scanned by texts that have ended (the work counter of
    /// [`SseMasker::scanned`]).
    scanned_done: u64,
}

impl SseMasker {
    pub fn new(scanner: Rc<Scanner>, hash: HashSettings, max_event_bytes: usize) -> Self {
        SseMasker {
            scanner,
            hash,
            parser: SseParser::new(max_event_bytes),
            streams: BTreeMap::new(),
            openai_template: None,
            anthropic: false,
            completions: false,
            responses: responses::ResponsesState::default(),
            stopped: false,
            findings: Findings::default(),
            error: None,
            scanned_done: 0,
        }
    }

    /// Whether the stream was cut short by a reject (or an error).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes currently held back across all texts.
    pub fn held(&self) -> usize {
        self.streams.values().map(TextStream::held).sum::<usize>() + self.parser.pending_len()
    }

    /// Bytes the text scanners have scanned so far (the work, for the
    /// complexity tests; the SSE parser's own work is not counted here).
    pub fn scanned(&self) -> u64 {
        self.scanned_done + self.streams.values().map(TextStream::scanned).sum::<u64>()
    }

    /// Feeds a chunk of the body; returns the bytes to forward now.
    pub fn feed(&mut self, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        let events = match self.parser.feed(chunk) {
            Ok(events) => events,
            Err(err) => {
                self.fail(&mut out, &err.to_string());
                return out;
            }
        };
        for event in events {
            if self.stopped {
                break;
            }
            self.event(event, &mut out);
        }
        if end_of_stream && !self.stopped {
            if let Some(event) = self.parser.finish() {
                self.event(event, &mut out);
            }
            if !self.stopped {
                self.flush_all(&mut out);
            }
        }
        out
    }

    fn fail(&mut self, out: &mut Vec<u8>, reason: &str) {
        self.stopped = true;
        self.error = Some(reason.to_string());
        let error = json!({"error": {"message": "The gateway stopped the stream: an event could not be inspected.", "type": "api_error", "code": "unreadable_stream"}});
        let event = if self.responses.active {
            let error = json!({"type": "error", "code": "unreadable_stream", "message": "The gateway stopped the stream: an event could not be inspected.", "param": null});
            SseEvent::named("error", error.to_string())
        } else if self.anthropic {
            SseEvent::named("error", error.to_string())
        } else {
            SseEvent::data(error.to_string())
        };
        out.extend(event.to_bytes());
    }

    fn event(&mut self, event: SseEvent, out: &mut Vec<u8>) {
        if event.is_done_marker() {
            self.flush_all(out);
            if !self.stopped {
                out.extend(event.to_bytes());
            }
            return;
        }
        let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(&event.data) else {
            // Not JSON (pings, comments): no text to mask.
            out.extend(event.to_bytes());
            return;
        };
        if data.get("choices").is_some_and(Value::is_array) {
            self.openai_event(event, data, out);
            return;
        }
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        if kind.starts_with("response.") {
            self.responses_event(event, &kind, data, out);
            return;
        }
        match kind.as_str() {
            "message_start"
            | "content_block_start"
            | "content_block_delta"
            | "content_block_stop"
            | "message_delta"
            | "message_stop" => {
                self.anthropic = true;
                self.anthropic_event(event, &kind, &mut data, out);
            }
            _ => self.generic_event(event, Value::Object(data), out),
        }
    }

    /// An event of another shape (provider errors): its strings are masked
    /// within the event. Values split across such events are not joined; the
    /// chat, completions, Messages and Responses shapes are.
    fn generic_event(&mut self, mut event: SseEvent, mut data: Value, out: &mut Vec<u8>) {
        let mut local = Findings::default();
        let mut changed = false;
        crate::request::generic_texts_mut(&mut data, &mut |_, text| {
            if let Some(masked) = self.scanner.mask(text, &self.hash, &mut local) {
                *text = masked;
                changed = true;
            }
        });
        self.findings.merge(&local);
        if let Some(rule) = local.reject {
            let message = self.reject_message(rule);
            let error = json!({"error": {"message": message, "type": "api_error", "code": "sensitive_data_detected"}});
            out.extend(SseEvent::named("error", error.to_string()).to_bytes());
            self.streams.clear();
            self.stopped = true;
            return;
        }
        if changed {
            event.data = data.to_string();
        }
        out.extend(event.to_bytes());
    }

    fn push(&mut self, key: Key, piece: &str) -> Released {
        let stream = self.streams.entry(key).or_insert_with(|| {
            if key.1.is_json() {
                TextStream::json()
            } else {
                TextStream::new()
            }
        });
        stream.push(piece, &self.scanner, &self.hash, &mut self.findings)
    }

    fn finish_key(&mut self, key: Key) -> Released {
        match self.streams.remove(&key) {
            Some(mut stream) => {
                let released = stream.finish(&self.scanner, &self.hash, &mut self.findings);
                self.scanned_done += stream.scanned();
                released
            }
            None => Released::default(),
        }
    }

    fn reject_message(&self, rule: usize) -> String {
        match self.scanner.rules.get(rule).map(|r| &r.action) {
            Some(crate::actions::Action::Reject { message }) => message.clone(),
            _ => crate::config::DEFAULT_RESPONSE_REJECT_MESSAGE.to_string(),
        }
    }

    /// End of the body without a closing event: release everything held.
    fn flush_all(&mut self, out: &mut Vec<u8>) {
        if self.responses.active {
            self.flush_responses(&Map::new(), out);
            return;
        }
        if self.anthropic {
            let keys: Vec<u64> = self.streams.keys().map(|(i, _)| *i).collect();
            for block in keys {
                if self.flush_anthropic_block(block, out).is_some() {
                    return;
                }
            }
            return;
        }
        let indexes: Vec<u64> = self.streams.keys().map(|(i, _)| *i).collect();
        let mut seen = Vec::new();
        for index in indexes {
            if seen.contains(&index) {
                continue;
            }
            seen.push(index);
            let mut delta = Map::new();
            let reject = self.flush_openai_choice(index, &mut delta, &mut false);
            if let Some(text) = delta.remove("text") {
                let chunk =
                    self.openai_chunk(json!([{"index": index, "text": text, "logprobs": null, "finish_reason": null}]));
                out.extend(chunk.to_bytes());
            } else if !delta.is_empty() {
                let chunk = self.openai_chunk(json!([{"index": index, "delta": delta, "finish_reason": null}]));
                out.extend(chunk.to_bytes());
            }
            if let Some(rule) = reject {
                self.openai_reject(index, rule, out);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Action;
    use crate::detectors::Entity;
    use crate::scan::{Rule, RuleKind};

    pub(super) fn scanner_with(action: impl Fn(Entity) -> Action) -> Scanner {
        Scanner::new(
            Entity::ALL
                .iter()
                .map(|&e| Rule { name: e.name().into(), kind: RuleKind::Builtin(e), action: action(e) })
                .collect(),
        )
    }

    pub(super) fn replace_all() -> Scanner {
        scanner_with(|e| Action::Replace { text: format!("[{}]", e.name()) })
    }

    pub(super) fn hash() -> HashSettings {
        HashSettings { salt: "s".into(), chars: 8 }
    }

    include!("../../tests/common/samples.rs");

    fn run_sse(scanner: &Rc<Scanner>, body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut masker = SseMasker::new(scanner.clone(), hash(), 1 << 20);
        let mut out = Vec::new();
        let mut last = 0;
        for &cut in cuts {
            out.extend(masker.feed(&body[last..cut], false));
            last = cut;
        }
        out.extend(masker.feed(&body[last..], true));
        out
    }

    fn openai_stream(pieces: &[&str]) -> Vec<u8> {
        let mut body = String::new();
        body.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
        for piece in pieces {
            let data = json!({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            body.push_str(&format!("data: {data}\n\n"));
        }
        body.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        body.push_str("data: [DONE]\n\n");
        body.into_bytes()
    }

    fn anthropic_stream(pieces: &[&str]) -> Vec<u8> {
        let mut body =
            String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\"}}\n\n");
        body.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
        for piece in pieces {
            let data =
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}});
            body.push_str(&format!("event: content_block_delta\ndata: {data}\n\n"));
        }
        body.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
        body.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n");
        body.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        body.into_bytes()
    }

    fn completions_stream(pieces: &[&str]) -> Vec<u8> {
        let mut body = String::new();
        for piece in pieces {
            let data = json!({"id": "cmpl-1", "object": "text_completion", "model": "m", "choices": [{"index": 0, "text": piece, "logprobs": null, "finish_reason": null}]});
            body.push_str(&format!("data: {data}\n\n"));
        }
        body.push_str("data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n");
        body.push_str("data: [DONE]\n\n");
        body.into_bytes()
    }

    /// The text a client reassembles from an SSE body.
    pub(crate) fn reassemble(body: &[u8]) -> String {
        let mut parser = SseParser::default();
        let mut events = parser.feed(body).unwrap();
        events.extend(parser.finish());
        let mut text = String::new();
        for event in events {
            let Ok(data) = serde_json::from_str::<Value>(&event.data) else { continue };
            if let Some(choices) = data.get("choices").and_then(Value::as_array) {
                for choice in choices {
                    if let Some(content) = choice.pointer("/delta/content").and_then(Value::as_str) {
                        text.push_str(content);
                    }
                    if let Some(content) = choice.get("text").and_then(Value::as_str) {
                        text.push_str(content);
                    }
                }
            }
            if let Some(piece) = data.pointer("/delta/text").and_then(Value::as_str) {
                text.push_str(piece);
            }
        }
        text
    }

    #[test]
    fn sse_split_at_every_byte_never_leaks() {
        let scanner = Rc::new(replace_all());
        for (name, value) in SAMPLES {
            // The value is split across two events, and the body across two chunks.
            let mid = value.char_indices().nth(value.chars().count() / 2).unwrap().0;
            let (a, b) = value.split_at(mid);
            let first = format!("Contact: {a}");
            let second = format!("{b} thanks.");
            for body in [
                openai_stream(&[&first, &second]),
                anthropic_stream(&[&first, &second]),
                completions_stream(&[&first, &second]),
            ] {
                let expected = format!("Contact: [{name}] thanks.");
                for cut in 0..=body.len() {
                    let out = run_sse(&scanner, &body, &[cut]);
                    let text = reassemble(&out);
                    assert_eq!(text, expected, "{name} cut at {cut}");
                    let raw = String::from_utf8_lossy(&out);
                    let escaped = serde_json::to_string(value).unwrap();
                    assert!(!raw.contains(value) && !raw.contains(escaped.trim_matches('"')), "{name} leaked at {cut}");
                }
            }
        }
    }

    #[test]
    fn sse_keeps_structure_and_flushes_before_terminal_events() {
        let scanner = Rc::new(replace_all());
        let out = run_sse(&scanner, &openai_stream(&["mail me at a@b.c", "om"]), &[]);
        let text = String::from_utf8(out).unwrap();
        let finish = text.find("\"finish_reason\":\"stop\"").unwrap();
        let masked = text.find("[EMAIL_ADDRESS]").unwrap();
        assert!(masked < finish, "{text}");
        assert!(text.trim_end().ends_with("data: [DONE]"));
        let out = run_sse(&scanner, &anthropic_stream(&["mail a@b.c", "om"]), &[]);
        let text = String::from_utf8(out).unwrap();
        let masked = text.find("[EMAIL_ADDRESS]").unwrap();
        assert!(masked < text.find("content_block_stop").unwrap(), "{text}");
        assert!(text.contains("\"output_tokens\":9"));
    }

    /// The held tail goes out in a content chunk; the chunk with the finish
    /// reason carries no text (OpenAI), and Anthropic's text comes before
    /// `content_block_stop`. Split at every byte of the body.
    #[test]
    fn held_tail_never_travels_with_the_finish_event() {
        let scanner = Rc::new(replace_all());
        let openai = openai_stream(&["mail me at a@b.c", "om", " or EMP"]);
        for cut in 0..=openai.len() {
            let out = run_sse(&scanner, &openai, &[cut]);
            assert_eq!(reassemble(&out), "mail me at [EMAIL_ADDRESS] or EMP", "cut {cut}");
            let mut parser = SseParser::default();
            let events = parser.feed(&out).unwrap();
            let finish = events.iter().position(|e| e.data.contains("\"finish_reason\":\"stop\"")).unwrap();
            let data: Value = serde_json::from_str(&events[finish].data).unwrap();
            assert_eq!(data["choices"][0]["delta"], json!({}), "cut {cut}: {}", events[finish].data);
            assert!(events[..finish].iter().any(|e| e.data.contains("EMP")), "cut {cut}");
        }
        let anthropic = anthropic_stream(&["mail a@b.c", "om or EMP"]);
        for cut in 0..=anthropic.len() {
            let out = String::from_utf8(run_sse(&scanner, &anthropic, &[cut])).unwrap();
            assert!(out.rfind("EMP").unwrap() < out.find("content_block_stop").unwrap(), "cut {cut}: {out}");
            assert_eq!(reassemble(out.as_bytes()), "mail [EMAIL_ADDRESS] or EMP", "cut {cut}");
        }
    }

    #[test]
    fn events_without_changes_keep_their_data() {
        let scanner = Rc::new(replace_all());
        let body = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"z\":1,\"a\":2}}\n\n\
data: {\"z\":1,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello \"},\"finish_reason\":null}],\"a\":2}\n\n";
        let out = run_sse(&scanner, body, &[]);
        assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(body.to_vec()).unwrap());
    }

    #[test]
    fn choices_are_masked_independently_when_interleaved() {
        let scanner = Rc::new(replace_all());
        let chunk = |index: u64, text: &str| {
            format!(
                "data: {}\n\n",
                json!({"choices": [{"index": index, "delta": {"content": text}, "finish_reason": null}]})
            )
        };
        let mut body = String::new();
        body.push_str(&chunk(0, "a: jo"));
        body.push_str(&chunk(1, "b: 123-4"));
        body.push_str(&chunk(0, "hn@example.com"));
        body.push_str(&chunk(1, "5-6789"));
        body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"},{\"index\":1,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        let out = run_sse(&scanner, body.as_bytes(), &[]);
        let mut texts = [String::new(), String::new()];
        let mut parser = SseParser::default();
        for event in parser.feed(&out).unwrap() {
            let Ok(data) = serde_json::from_str::<Value>(&event.data) else { continue };
            for choice in data["choices"].as_array().unwrap() {
                let index = choice["index"].as_u64().unwrap() as usize;
                if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
                    texts[index].push_str(text);
                }
            }
        }
        assert_eq!(texts, ["a: [EMAIL_ADDRESS]".to_string(), "b: [US_SSN]".to_string()]);
    }

    #[test]
    fn events_of_other_shapes_are_masked_within_the_event() {
        let scanner = Rc::new(replace_all());
        let body = b"event: error\ndata: {\"type\":\"error\",\"message\":\"mail a@b.com \"}\n\n";
        let out = String::from_utf8(run_sse(&scanner, body, &[])).unwrap();
        assert!(out.contains("mail [EMAIL_ADDRESS] "), "{out}");
        assert!(!out.contains("a@b.com"));
    }

    #[test]
    fn sse_without_terminal_event_flushes_at_end_of_body() {
        let scanner = Rc::new(replace_all());
        let body = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ssn 123-45-67\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"89\"}}]}\n\n";
        let out = run_sse(&scanner, body, &[]);
        assert_eq!(reassemble(&out), "ssn [US_SSN]");
    }

    #[test]
    fn sse_reject_ends_the_stream_properly() {
        let scanner = Rc::new(scanner_with(|e| {
            if e == Entity::AwsAccessKey {
                Action::Reject { message: "Withheld.".into() }
            } else {
                Action::Replace { text: format!("[{}]", e.name()) }
            }
        }));
        let out = run_sse(&scanner, &openai_stream(&["key AKIAIOSFOD", "NN7EXAMPLE and more", " text"]), &[]);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("AKIA"));
        assert!(!text.contains("more"));
        assert_eq!(reassemble(&out), "key Withheld.");
        assert!(text.contains("\"finish_reason\":\"content_filter\""));
        assert_eq!(text.matches("[DONE]").count(), 1);
        let out = run_sse(&scanner, &anthropic_stream(&["key AKIAIOSFOD", "NN7EXAMPLE and more"]), &[]);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("AKIA"));
        assert_eq!(reassemble(&out), "key Withheld.");
        assert_eq!(text.matches("message_stop").count(), 2, "one event name and one type: {text}");
        let out = run_sse(&scanner, &completions_stream(&["key AKIAIOSFOD", "NN7EXAMPLE and more"]), &[]);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("AKIA") && !text.contains("more"), "{text}");
        assert_eq!(reassemble(&out), "key Withheld.");
        assert!(text.contains("\"finish_reason\":\"content_filter\""), "{text}");
    }

    #[test]
    fn tool_call_arguments_are_masked_across_chunks() {
        let scanner = Rc::new(replace_all());
        let chunk = |args: &str| {
            format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args}}]}, "finish_reason": null}]})
            )
        };
        let mut body = chunk("{\"email\": \"jo");
        body.push_str(&chunk("hn@example.com\"}"));
        body.push_str(
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
        );
        let out = String::from_utf8(run_sse(&scanner, body.as_bytes(), &[])).unwrap();
        assert!(!out.contains("example.com"), "{out}");
        let mut args = String::new();
        let mut parser = SseParser::default();
        for event in parser.feed(out.as_bytes()).unwrap() {
            if let Ok(data) = serde_json::from_str::<Value>(&event.data) {
                if let Some(a) =
                    data.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str)
                {
                    args.push_str(a);
                }
            }
        }
        assert_eq!(args, "{\"email\": \"[EMAIL_ADDRESS]\"}");
    }

    /// Work and hold of a stream that prints `digits` digits in 5-digit events,
    /// fed to the masker one event per chunk.
    fn sse_digit_work(digits: usize) -> (u64, usize) {
        let scanner = Rc::new(replace_all());
        let mut masker = SseMasker::new(scanner.clone(), hash(), 1 << 20);
        let mut most_held = 0;
        for _ in 0..digits / 5 {
            let event = format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": "12345"}}]}));
            masker.feed(event.as_bytes(), false);
            most_held = most_held.max(masker.held());
        }
        masker.feed(b"data: [DONE]\n\n", true);
        (masker.scanned(), most_held)
    }

    #[test]
    fn streamed_digit_runs_cost_linear_work_and_bounded_hold() {
        let (small, held_small) = sse_digit_work(20_000);
        let (large, held_large) = sse_digit_work(80_000);
        let bound = replace_all().hold_limit_bytes();
        assert!(held_small.max(held_large) <= bound, "held {held_small}/{held_large} over {bound}");
        assert!(large * 2 <= small * 9, "4x the digits cost {small} -> {large} bytes scanned");
    }

    #[test]
    fn streamed_tool_arguments_with_escapes_never_leak_at_any_split() {
        let scanner = Rc::new(replace_all());
        let args = r#"{"to": "ana.silva\u0040example.com", "phone": "+1 415 555 0132"}"#;
        let chunk = |args: &str| {
            format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args}}]}, "finish_reason": null}]})
            )
        };
        for split in 0..=args.len() {
            let mut body = chunk(&args[..split]);
            body.push_str(&chunk(&args[split..]));
            body.push_str(
                "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
            );
            for cut in [0, body.len() / 3, body.len() / 2] {
                let out = String::from_utf8(run_sse(&scanner, body.as_bytes(), &[cut])).unwrap();
                let mut joined = String::new();
                let mut parser = SseParser::default();
                for event in parser.feed(out.as_bytes()).unwrap() {
                    if let Ok(data) = serde_json::from_str::<Value>(&event.data) {
                        if let Some(a) =
                            data.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str)
                        {
                            joined.push_str(a);
                        }
                    }
                }
                let parsed: Value = serde_json::from_str(&joined).unwrap_or_else(|_| panic!("{joined} at {split}"));
                assert_eq!(parsed, json!({"to": "[EMAIL_ADDRESS]", "phone": "[PHONE_NUMBER]"}), "split {split}");
                assert!(!out.contains("ana.silva") && !out.contains("415 555"), "leak at {split}/{cut}: {out}");
            }
        }
    }

    #[test]
    fn anthropic_partial_json_with_escapes_never_leaks_at_any_split() {
        let scanner = Rc::new(replace_all());
        let json_text = r#"{"to": "ana.silva\u0040example.com"}"#;
        for split in 0..=json_text.len() {
            let mut body = String::from("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{}}}\n\n");
            for piece in [&json_text[..split], &json_text[split..]] {
                let data = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}});
                body.push_str(&format!("event: content_block_delta\ndata: {data}\n\n"));
            }
            body.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
            let out = run_sse(&scanner, body.as_bytes(), &[body.len() / 2]);
            let mut joined = String::new();
            let mut parser = SseParser::default();
            for event in parser.feed(&out).unwrap() {
                if let Ok(data) = serde_json::from_str::<Value>(&event.data) {
                    if let Some(piece) = data.pointer("/delta/partial_json").and_then(Value::as_str) {
                        joined.push_str(piece);
                    }
                }
            }
            let parsed: Value = serde_json::from_str(&joined).unwrap_or_else(|_| panic!("{joined} at {split}"));
            assert_eq!(parsed, json!({"to": "[EMAIL_ADDRESS]"}), "split {split}");
        }
    }
}
