//! Masking of streamed (SSE) responses.
//!
//! A value can be split across events and across TCP chunks at any offset.
//! [`TextStream`] masks one logical text (one choice's content, one tool
//! call's arguments, one Anthropic content block) that arrives in pieces: it
//! appends each piece to a carry, runs the scanner over it, releases the text
//! whose decisions are final and holds back only what a match still in
//! progress could cover (see [`crate::scan::Scanner::find_partial`]). The
//! output is exactly what masking the whole text at once would give; the
//! unit tests check that for every split offset.
//!
//! [`SseMasker`] sits on top: it parses the SSE byte stream, routes each
//! event's text to its [`TextStream`] (by OpenAI choice index and part, or by
//! Anthropic content block index), re-serialises changed events, and flushes
//! held text before the event that ends its text (`finish_reason`,
//! `content_block_stop`, `message_delta`, `message_stop`, `[DONE]`, or the end
//! of the body).

use crate::actions::HashSettings;
use crate::detectors::LEFT_CONTEXT;
use crate::scan::{Findings, Scanner};
use aigw_shared::sse::{SseEvent, SseParser};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

/// What one push released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Text now final, masked.
    pub text: String,
    /// Set when a match with the reject action was found: `text` then ends
    /// just before it, and nothing more may be released.
    pub reject: Option<usize>,
}

/// One logical text arriving in pieces.
#[derive(Debug, Default)]
pub struct TextStream {
    /// Context already released (at most [`LEFT_CONTEXT`] bytes) followed by
    /// text not yet released.
    carry: String,
    /// Where the unreleased text starts inside `carry`.
    from: usize,
}

impl TextStream {
    /// Bytes held back (not yet released).
    pub fn held(&self) -> usize {
        self.carry.len() - self.from
    }

    /// Appends a piece and releases what is final.
    pub fn push(&mut self, piece: &str, scanner: &Scanner, hash: &HashSettings, findings: &mut Findings) -> Released {
        self.carry.push_str(piece);
        self.release(scanner, hash, findings, false)
    }

    /// Ends the text: releases everything.
    pub fn finish(&mut self, scanner: &Scanner, hash: &HashSettings, findings: &mut Findings) -> Released {
        self.release(scanner, hash, findings, true)
    }

    fn release(&mut self, scanner: &Scanner, hash: &HashSettings, findings: &mut Findings, complete: bool) -> Released {
        let (matches, cut) = scanner.find_partial(&self.carry, self.from, complete);
        let mut released = Released::default();
        let reject_at = matches.iter().position(|m| scanner.rules.get(m.rule).is_some_and(|r| r.action.is_reject()));
        if let Some(at) = reject_at {
            let (before, rejected) = matches.split_at(at);
            let stop = rejected.first().map_or(self.from, |m| m.start);
            scanner.render_into(&self.carry, self.from, stop, before, hash, &mut released.text, findings);
            if let Some(m) = rejected.first() {
                findings.counts.resize(findings.counts.len().max(scanner.rules.len()), 0);
                if let Some(count) = findings.counts.get_mut(m.rule) {
                    *count += 1;
                }
                findings.reject.get_or_insert(m.rule);
                released.reject = Some(m.rule);
            }
            self.carry.clear();
            self.from = 0;
            return released;
        }
        scanner.render_into(&self.carry, self.from, cut, &matches, hash, &mut released.text, findings);
        // Keep a little released text as context for the next scan.
        let mut keep_from = cut.saturating_sub(LEFT_CONTEXT);
        while keep_from > 0 && !self.carry.is_char_boundary(keep_from) {
            keep_from -= 1;
        }
        self.carry.drain(..keep_from);
        self.from = cut - keep_from;
        released
    }
}

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
    /// After a reject or a fatal error nothing more is forwarded.
    stopped: bool,
    pub findings: Findings,
    /// Set when an event was too large or unparseable input forced a stop.
    pub error: Option<String>,
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
            stopped: false,
            findings: Findings::default(),
            error: None,
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
        let event = if self.anthropic {
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

    /// An event of another shape (OpenAI Responses API events, provider
    /// errors): its strings are masked within the event. Values split across
    /// such events are not joined; the chat shapes above are.
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
        let stream = self.streams.entry(key).or_default();
        stream.push(piece, &self.scanner, &self.hash, &mut self.findings)
    }

    fn finish_key(&mut self, key: Key) -> Released {
        match self.streams.remove(&key) {
            Some(mut stream) => stream.finish(&self.scanner, &self.hash, &mut self.findings),
            None => Released::default(),
        }
    }

    fn reject_message(&self, rule: usize) -> String {
        match self.scanner.rules.get(rule).map(|r| &r.action) {
            Some(crate::actions::Action::Reject { message }) => message.clone(),
            _ => crate::config::DEFAULT_RESPONSE_REJECT_MESSAGE.to_string(),
        }
    }

    // ----- OpenAI chat completion chunks -----

    fn openai_event(&mut self, mut event: SseEvent, mut data: Map<String, Value>, out: &mut Vec<u8>) {
        let mut template = data.clone();
        template.remove("choices");
        template.remove("usage");
        self.openai_template = Some(template);
        let mut reject: Option<(u64, usize)> = None;
        // Events whose text did not change are forwarded as they came.
        let mut changed = false;
        if let Some(Value::Array(choices)) = data.get_mut("choices") {
            for (position, choice) in choices.iter_mut().enumerate() {
                let index = choice.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
                let finished = choice.get("finish_reason").is_some_and(|r| !r.is_null());
                let Some(Value::Object(delta)) = choice.get_mut("delta") else { continue };
                for (field, part) in [("content", Part::Content), ("refusal", Part::Refusal)] {
                    if let Some(Value::String(text)) = delta.get_mut(field) {
                        let released = self.push((index, part), text);
                        changed |= released.text != *text;
                        *text = released.text;
                        if let Some(rule) = released.reject {
                            reject.get_or_insert((index, rule));
                        }
                    }
                }
                if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                    for (call_position, call) in calls.iter_mut().enumerate() {
                        let tool = call.get("index").and_then(Value::as_u64).unwrap_or(call_position as u64);
                        if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                            let released = self.push((index, Part::Tool(tool)), arguments);
                            changed |= released.text != *arguments;
                            *arguments = released.text;
                            if let Some(rule) = released.reject {
                                reject.get_or_insert((index, rule));
                            }
                        }
                    }
                }
                if finished && reject.is_none() {
                    let keys_before = delta.len();
                    let reject_here = self.flush_openai_choice(index, delta, &mut changed);
                    changed |= delta.len() != keys_before;
                    if let Some(rule) = reject_here {
                        reject.get_or_insert((index, rule));
                    }
                }
            }
        }
        if let Some((index, rule)) = reject {
            // Forward what was final before the rejected value, then end the stream.
            if let Some(Value::Array(choices)) = data.get_mut("choices") {
                for choice in choices.iter_mut() {
                    if let Some(reason) = choice.get_mut("finish_reason") {
                        *reason = Value::Null;
                    }
                }
            }
            event.data = Value::Object(data).to_string();
            out.extend(event.to_bytes());
            self.openai_reject(index, rule, out);
            return;
        }
        if changed {
            event.data = Value::Object(data).to_string();
        }
        out.extend(event.to_bytes());
    }

    /// Flushes every text of choice `index` into `delta` (setting `changed` when
    /// it adds text). Returns a reject rule if one fired.
    fn flush_openai_choice(&mut self, index: u64, delta: &mut Map<String, Value>, changed: &mut bool) -> Option<usize> {
        let keys: Vec<Key> = self.streams.keys().filter(|(i, _)| *i == index).copied().collect();
        let mut reject = None;
        for key in keys {
            let released = self.finish_key(key);
            reject = reject.or(released.reject);
            if released.text.is_empty() {
                continue;
            }
            *changed = true;
            match key.1 {
                Part::Content | Part::Refusal => {
                    let field = if key.1 == Part::Content { "content" } else { "refusal" };
                    let entry = delta.entry(field).or_insert_with(|| Value::String(String::new()));
                    match entry {
                        Value::String(text) => text.push_str(&released.text),
                        other => *other = Value::String(released.text),
                    }
                }
                Part::Tool(tool) => {
                    let calls = delta.entry("tool_calls").or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(calls) = calls {
                        let existing = calls.iter_mut().find(|c| c.get("index").and_then(Value::as_u64) == Some(tool));
                        match existing.and_then(|c| c.pointer_mut("/function/arguments")) {
                            Some(Value::String(arguments)) => arguments.push_str(&released.text),
                            _ => calls.push(json!({"index": tool, "function": {"arguments": released.text}})),
                        }
                    }
                }
                Part::BlockText | Part::BlockJson => {}
            }
        }
        reject
    }

    fn openai_chunk(&self, choices: Value) -> SseEvent {
        let mut data = self.openai_template.clone().unwrap_or_default();
        data.insert("choices".to_string(), choices);
        SseEvent::data(Value::Object(data).to_string())
    }

    fn openai_reject(&mut self, index: u64, rule: usize, out: &mut Vec<u8>) {
        let message = self.reject_message(rule);
        let chunk = self.openai_chunk(json!([{
            "index": index,
            "delta": {"content": message},
            "finish_reason": "content_filter"
        }]));
        out.extend(chunk.to_bytes());
        out.extend(SseEvent::data("[DONE]").to_bytes());
        self.streams.clear();
        self.stopped = true;
    }

    // ----- Anthropic messages events -----

    fn anthropic_event(&mut self, mut event: SseEvent, kind: &str, data: &mut Map<String, Value>, out: &mut Vec<u8>) {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let mut reject = None;
        let mut changed = false;
        match kind {
            "content_block_start" => {
                if let Some(Value::String(text)) = data.get_mut("content_block").and_then(|b| b.get_mut("text")) {
                    let released = self.push((index, Part::BlockText), text);
                    changed |= released.text != *text;
                    *text = released.text;
                    reject = released.reject;
                }
            }
            "content_block_delta" => {
                let delta = data.get_mut("delta");
                if let Some(Value::Object(delta)) = delta {
                    for (field, part) in [("text", Part::BlockText), ("partial_json", Part::BlockJson)] {
                        if let Some(Value::String(text)) = delta.get_mut(field) {
                            let released = self.push((index, part), text);
                            changed |= released.text != *text;
                            *text = released.text;
                            reject = reject.or(released.reject);
                        }
                    }
                }
            }
            "content_block_stop" => {
                if self.flush_anthropic_block(index, out).is_some() {
                    return;
                }
            }
            _ => {
                // message_delta / message_stop end every open block.
                let keys: Vec<u64> = self.streams.keys().map(|(i, _)| *i).collect();
                for block in keys {
                    if self.flush_anthropic_block(block, out).is_some() {
                        return;
                    }
                }
            }
        }
        if changed {
            event.data = Value::Object(std::mem::take(data)).to_string();
        }
        out.extend(event.to_bytes());
        if let Some(rule) = reject {
            self.anthropic_reject(index, rule, out);
        }
    }

    /// Emits a delta with block `index`'s held text. Returns Some if a reject ended the stream.
    fn flush_anthropic_block(&mut self, index: u64, out: &mut Vec<u8>) -> Option<()> {
        for part in [Part::BlockText, Part::BlockJson] {
            let released = self.finish_key((index, part));
            if !released.text.is_empty() {
                let delta = match part {
                    Part::BlockJson => json!({"type": "input_json_delta", "partial_json": released.text}),
                    _ => json!({"type": "text_delta", "text": released.text}),
                };
                let data = json!({"type": "content_block_delta", "index": index, "delta": delta});
                out.extend(SseEvent::named("content_block_delta", data.to_string()).to_bytes());
            }
            if let Some(rule) = released.reject {
                self.anthropic_reject(index, rule, out);
                return Some(());
            }
        }
        None
    }

    fn anthropic_reject(&mut self, index: u64, rule: usize, out: &mut Vec<u8>) {
        let message = self.reject_message(rule);
        let stop = |i: u64| json!({"type": "content_block_stop", "index": i}).to_string();
        // Close the block the value was in and say why in a new text block.
        out.extend(SseEvent::named("content_block_stop", stop(index)).to_bytes());
        let next = index + 1;
        let start =
            json!({"type": "content_block_start", "index": next, "content_block": {"type": "text", "text": ""}});
        out.extend(SseEvent::named("content_block_start", start.to_string()).to_bytes());
        let delta =
            json!({"type": "content_block_delta", "index": next, "delta": {"type": "text_delta", "text": message}});
        out.extend(SseEvent::named("content_block_delta", delta.to_string()).to_bytes());
        out.extend(SseEvent::named("content_block_stop", stop(next)).to_bytes());
        let message_delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 0}});
        out.extend(SseEvent::named("message_delta", message_delta.to_string()).to_bytes());
        out.extend(SseEvent::named("message_stop", json!({"type": "message_stop"}).to_string()).to_bytes());
        self.streams.clear();
        self.stopped = true;
    }

    /// End of the body without a closing event: release everything held.
    fn flush_all(&mut self, out: &mut Vec<u8>) {
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
            if !delta.is_empty() {
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

    fn scanner_with(action: impl Fn(Entity) -> Action) -> Scanner {
        Scanner::new(
            Entity::ALL
                .iter()
                .map(|&e| Rule { name: e.name().into(), kind: RuleKind::Builtin(e), action: action(e) })
                .collect(),
        )
    }

    fn replace_all() -> Scanner {
        scanner_with(|e| Action::Replace { text: format!("[{}]", e.name()) })
    }

    fn hash() -> HashSettings {
        HashSettings { salt: "s".into(), chars: 8 }
    }

    include!("../tests/common/samples.rs");

    fn whole(scanner: &Scanner, text: &str) -> String {
        scanner.mask(text, &hash(), &mut Findings::default()).unwrap_or_else(|| text.to_string())
    }

    fn pieces(scanner: &Scanner, parts: &[&str]) -> String {
        let mut stream = TextStream::default();
        let mut findings = Findings::default();
        let mut out = String::new();
        for part in parts {
            out.push_str(&stream.push(part, scanner, &hash(), &mut findings).text);
        }
        out.push_str(&stream.finish(scanner, &hash(), &mut findings).text);
        out
    }

    #[test]
    fn every_split_equals_whole_text_masking() {
        let scanner = replace_all();
        for (name, value) in SAMPLES {
            let text = format!("Hi, é my value is {value} and that's it.");
            let expected = whole(&scanner, &text);
            assert!(expected.contains(&format!("[{name}]")), "{name}: {expected}");
            assert!(!expected.contains(value), "{name}");
            let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
            for &cut in &cuts {
                assert_eq!(pieces(&scanner, &[&text[..cut], &text[cut..]]), expected, "{name} split at {cut}");
            }
            // Three pieces at every pair of cuts for the region around the value.
            let start = text.find(value).unwrap().saturating_sub(3);
            let end = (start + value.len() + 6).min(text.len());
            for &a in cuts.iter().filter(|&&c| c >= start && c <= end) {
                for &b in cuts.iter().filter(|&&c| c >= a && c <= end) {
                    assert_eq!(
                        pieces(&scanner, &[&text[..a], &text[a..b], &text[b..]]),
                        expected,
                        "{name} splits at {a},{b}"
                    );
                }
            }
        }
    }

    #[test]
    fn char_by_char_equals_whole_text_masking() {
        let scanner = replace_all();
        let mut text = String::from("Start. ");
        for (_, value) in SAMPLES {
            text.push_str(value);
            text.push_str(" then ");
        }
        let expected = whole(&scanner, &text);
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(pieces(&scanner, &parts), expected);
        for (_, value) in SAMPLES {
            assert!(!expected.contains(value));
        }
    }

    #[test]
    fn hold_back_is_bounded_and_small_for_prose() {
        let scanner = replace_all();
        let mut stream = TextStream::default();
        let mut findings = Findings::default();
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(50);
        let mut released = 0;
        for word in prose.split_inclusive(' ') {
            released += stream.push(word, &scanner, &hash(), &mut findings).text.len();
            assert!(stream.held() <= crate::scan::TRAILING_TOKEN_MAX);
        }
        assert_eq!(released, prose.len(), "prose ending in a space is released at once");
        // A long run without spaces is held only up to the window.
        let mut stream = TextStream::default();
        for _ in 0..1000 {
            stream.push("x", &scanner, &hash(), &mut findings);
            assert!(stream.held() <= scanner.window_bytes());
        }
    }

    #[test]
    fn non_ascii_prose_is_not_held_back() {
        let scanner = replace_all();
        let mut stream = TextStream::default();
        let mut findings = Findings::default();
        let mut out = String::new();
        for piece in ["日本語の", "文章です。", "メールは", "a@b.com", "です"] {
            out.push_str(&stream.push(piece, &scanner, &hash(), &mut findings).text);
            if !piece.is_ascii() {
                assert_eq!(stream.held(), 0, "nothing held after {piece}");
            }
        }
        assert_eq!(out, "日本語の文章です。メールは[EMAIL_ADDRESS]です");
    }

    #[test]
    fn reject_stops_before_the_value() {
        let scanner = scanner_with(|e| {
            if e == Entity::UsSsn {
                Action::Reject { message: "no".into() }
            } else {
                Action::Replace { text: "[X]".into() }
            }
        });
        let mut stream = TextStream::default();
        let mut findings = Findings::default();
        let a = stream.push("mail a@b.com, ssn 123-4", &scanner, &hash(), &mut findings);
        assert_eq!(a.reject, None);
        let b = stream.push("5-6789 tail", &scanner, &hash(), &mut findings);
        assert_eq!(format!("{}{}", a.text, b.text), "mail [X], ssn ");
        assert!(b.reject.is_some());
    }

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
            for body in [openai_stream(&[&first, &second]), anthropic_stream(&[&first, &second])] {
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
        let body = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"mail a@b.com \"}\n\n";
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
}
