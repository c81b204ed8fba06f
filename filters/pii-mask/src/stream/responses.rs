//! OpenAI Responses API events.
//!
//! Each text of an output item is its own stream, keyed by `output_index`
//! and part: an `output_text` or `refusal` part (by `content_index`), a
//! function call's `arguments` (JSON fragments), a custom tool call's
//! `input`, a reasoning summary part (by `summary_index`). Pieces arrive in
//! `*.delta` events and are masked like chat deltas.
//!
//! The API repeats every whole text after its pieces: in `*.done`,
//! `response.content_part.done`, `response.output_item.done` and the final
//! `response.completed` (or `.incomplete` / `.failed`). Those repeats get
//! exactly the masked text the client received in pieces (kept per key until
//! the response ends), so a client that reads the final object sees what it
//! streamed. A repeat of a text that never came in pieces is masked whole.
//! Text still held when a text ends is released in one more `*.delta` event
//! just before the event that ends it.

use super::{Key, Part, SseMasker};
use crate::scan::Findings;
use aigw_shared::api::TextKind;
use aigw_shared::sse::SseEvent;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// What the masker keeps for one Responses stream.
#[derive(Debug, Default)]
pub(super) struct ResponsesState {
    /// The stream speaks the Responses API (set at its first event).
    pub(super) active: bool,
    /// The masked text each key released so far, for the repeats.
    released: BTreeMap<Key, String>,
}

/// The delta event type and the field of its `*.done` event that repeats the text.
fn piece_event(part: Part) -> (&'static str, &'static str) {
    match part {
        Part::ResponseRefusal(_) => ("response.refusal.delta", "refusal"),
        Part::ResponseArguments => ("response.function_call_arguments.delta", "arguments"),
        Part::ResponseInput => ("response.custom_tool_call_input.delta", "input"),
        Part::ResponseReasoning(_) => ("response.reasoning_summary_text.delta", "text"),
        _ => ("response.output_text.delta", "text"),
    }
}

/// The key of a `*.delta` / `*.done` event: its kind of text and indexes.
fn piece_key(kind: &str, data: &Map<String, Value>) -> Option<(Key, &'static str)> {
    let output = data.get("output_index").and_then(Value::as_u64).unwrap_or(0);
    let content = data.get("content_index").and_then(Value::as_u64).unwrap_or(0);
    let summary = data.get("summary_index").and_then(Value::as_u64).unwrap_or(0);
    let (part, field) = match kind {
        "response.output_text.delta" => (Part::ResponseText(content), "delta"),
        "response.output_text.done" => (Part::ResponseText(content), "text"),
        "response.refusal.delta" => (Part::ResponseRefusal(content), "delta"),
        "response.refusal.done" => (Part::ResponseRefusal(content), "refusal"),
        "response.function_call_arguments.delta" => (Part::ResponseArguments, "delta"),
        "response.function_call_arguments.done" => (Part::ResponseArguments, "arguments"),
        "response.custom_tool_call_input.delta" => (Part::ResponseInput, "delta"),
        "response.custom_tool_call_input.done" => (Part::ResponseInput, "input"),
        "response.reasoning_summary_text.delta" => (Part::ResponseReasoning(summary), "delta"),
        "response.reasoning_summary_text.done" => (Part::ResponseReasoning(summary), "text"),
        _ => return None,
    };
    Some(((output, part), field))
}

impl SseMasker {
    pub(super) fn responses_event(
        &mut self,
        mut event: SseEvent,
        kind: &str,
        mut data: Map<String, Value>,
        out: &mut Vec<u8>,
    ) {
        self.responses.active = true;
        let sequence = data.get("sequence_number").cloned();
        let mut changed = false;
        if let Some((key, field)) = piece_key(kind, &data) {
            if field == "delta" {
                let Some(Value::String(piece)) = data.get_mut("delta") else {
                    out.extend(event.to_bytes());
                    return;
                };
                let released = self.push(key, piece);
                changed = released.text != *piece;
                self.responses.released.entry(key).or_default().push_str(&released.text);
                *piece = released.text;
                if let Some(rule) = released.reject {
                    event.data = Value::Object(data).to_string();
                    out.extend(event.to_bytes());
                    self.responses_reject(rule, sequence, out);
                    return;
                }
            } else {
                if self.flush_response_key(key, &data, out).is_some() {
                    return;
                }
                if let Some(Value::String(text)) = data.get_mut(field) {
                    match self.settle(key, text) {
                        Ok(c) => changed = c,
                        Err(rule) => return self.responses_reject(rule, sequence, out),
                    }
                }
            }
        } else {
            match kind {
                "response.content_part.done" | "response.content_part.added" => {
                    let output = data.get("output_index").and_then(Value::as_u64).unwrap_or(0);
                    let content = data.get("content_index").and_then(Value::as_u64).unwrap_or(0);
                    if kind.ends_with(".done") {
                        for key in [(output, Part::ResponseText(content)), (output, Part::ResponseRefusal(content))] {
                            if self.flush_response_key(key, &data, out).is_some() {
                                return;
                            }
                        }
                    }
                    if let Some(part) = data.get_mut("part") {
                        match self.settle_part(output, content, part) {
                            Ok(c) => changed = c,
                            Err(rule) => return self.responses_reject(rule, sequence, out),
                        }
                    }
                }
                "response.output_item.added" | "response.output_item.done" => {
                    let output = data.get("output_index").and_then(Value::as_u64).unwrap_or(0);
                    if kind.ends_with(".done") && self.flush_response_output(output, &data, out).is_some() {
                        return;
                    }
                    if let Some(item) = data.get_mut("item") {
                        match self.settle_item(output, item) {
                            Ok(c) => changed = c,
                            Err(rule) => return self.responses_reject(rule, sequence, out),
                        }
                    }
                }
                _ => {
                    let ends = matches!(kind, "response.completed" | "response.incomplete" | "response.failed");
                    if ends && self.flush_responses(&data, out).is_some() {
                        return;
                    }
                    if let Some(response) = data.get_mut("response") {
                        match self.settle_response(response) {
                            Ok(c) => changed = c,
                            Err(rule) => return self.responses_reject(rule, sequence, out),
                        }
                    }
                }
            }
        }
        if changed {
            event.data = Value::Object(data).to_string();
        }
        out.extend(event.to_bytes());
    }

    /// Sets a repeated text to what its pieces released, or masks it whole
    /// if it never came in pieces. `Err`: a reject rule matched.
    fn settle(&mut self, key: Key, text: &mut String) -> Result<bool, usize> {
        if let Some(released) = self.responses.released.get(&key) {
            let changed = released != text;
            text.clone_from(released);
            return Ok(changed);
        }
        self.mask_whole(text)
    }

    fn mask_whole(&mut self, text: &mut String) -> Result<bool, usize> {
        let mut local = Findings::default();
        let masked = self.scanner.mask(text, &self.hash, &mut local);
        self.findings.merge(&local);
        if let Some(rule) = local.reject {
            return Err(rule);
        }
        match masked {
            Some(masked) => {
                *text = masked;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// A content part `{type: output_text|refusal, text|refusal}`.
    fn settle_part(&mut self, output: u64, content: u64, part: &mut Value) -> Result<bool, usize> {
        let mut changed = false;
        if let Some(Value::String(text)) = part.get_mut("text") {
            changed |= self.settle((output, Part::ResponseText(content)), text)?;
        }
        if let Some(Value::String(text)) = part.get_mut("refusal") {
            changed |= self.settle((output, Part::ResponseRefusal(content)), text)?;
        }
        Ok(changed)
    }

    /// An output item at `output`: each text by its key; texts of item types
    /// without pieces (whatever the shared visitor finds) masked whole.
    fn settle_item(&mut self, output: u64, item: &mut Value) -> Result<bool, usize> {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        let mut changed = false;
        match kind.as_str() {
            "message" => {
                if let Some(Value::Array(parts)) = item.get_mut("content") {
                    for (index, part) in parts.iter_mut().enumerate() {
                        changed |= self.settle_part(output, index as u64, part)?;
                    }
                }
            }
            "function_call" => {
                if let Some(Value::String(text)) = item.get_mut("arguments") {
                    changed |= self.settle((output, Part::ResponseArguments), text)?;
                }
            }
            "custom_tool_call" => {
                if let Some(Value::String(text)) = item.get_mut("input") {
                    changed |= self.settle((output, Part::ResponseInput), text)?;
                }
            }
            "reasoning" => {
                if let Some(Value::Array(parts)) = item.get_mut("summary") {
                    for (index, part) in parts.iter_mut().enumerate() {
                        if let Some(Value::String(text)) = part.get_mut("text") {
                            changed |= self.settle((output, Part::ResponseReasoning(index as u64)), text)?;
                        }
                    }
                }
                if let Some(Value::Array(parts)) = item.get_mut("content") {
                    for part in parts.iter_mut() {
                        if let Some(Value::String(text)) = part.get_mut("text") {
                            changed |= self.mask_whole(text)?;
                        }
                    }
                }
            }
            _ => {
                let mut reject = None;
                aigw_shared::api::responses::item_texts_mut(item, &mut |_: TextKind, text: &mut String| {
                    if reject.is_none() {
                        match self.mask_whole(text) {
                            Ok(c) => changed |= c,
                            Err(rule) => reject = Some(rule),
                        }
                    }
                });
                if let Some(rule) = reject {
                    return Err(rule);
                }
            }
        }
        Ok(changed)
    }

    /// A response object: its output items by position, and the echoed
    /// `instructions` (masked whole).
    fn settle_response(&mut self, response: &mut Value) -> Result<bool, usize> {
        let mut changed = false;
        if let Some(Value::Array(items)) = response.get_mut("output") {
            for (index, item) in items.iter_mut().enumerate() {
                changed |= self.settle_item(index as u64, item)?;
            }
        }
        match response.get_mut("instructions") {
            Some(Value::String(text)) => changed |= self.mask_whole(text)?,
            Some(Value::Array(items)) => {
                // Echoed input items never came in pieces: no key matches them.
                for item in items.iter_mut() {
                    changed |= self.settle_item(u64::MAX, item)?;
                }
            }
            _ => {}
        }
        Ok(changed)
    }

    /// Ends the text of `key`: what it still held goes out in one more
    /// delta event (indexes and sequence number from `context`, the event that
    /// ends it). `Some` when a reject ended the stream.
    fn flush_response_key(&mut self, key: Key, context: &Map<String, Value>, out: &mut Vec<u8>) -> Option<()> {
        if !self.streams.contains_key(&key) {
            return None;
        }
        let released = self.finish_key(key);
        let sequence = context.get("sequence_number").cloned();
        if !released.text.is_empty() {
            self.responses.released.entry(key).or_default().push_str(&released.text);
            let (kind, _) = piece_event(key.1);
            let mut data = Map::new();
            data.insert("type".into(), json!(kind));
            for field in ["item_id", "output_index", "content_index", "summary_index"] {
                if let Some(value) = context.get(field) {
                    data.insert(field.into(), value.clone());
                }
            }
            data.insert("output_index".into(), json!(key.0));
            match key.1 {
                Part::ResponseText(index) | Part::ResponseRefusal(index) => {
                    data.insert("content_index".into(), json!(index));
                }
                Part::ResponseReasoning(index) => {
                    data.insert("summary_index".into(), json!(index));
                }
                _ => {}
            }
            data.insert("delta".into(), json!(released.text));
            if let Some(sequence) = &sequence {
                data.insert("sequence_number".into(), sequence.clone());
            }
            out.extend(SseEvent::named(kind, Value::Object(data).to_string()).to_bytes());
        }
        if let Some(rule) = released.reject {
            self.responses_reject(rule, sequence, out);
            return Some(());
        }
        None
    }

    fn flush_response_output(&mut self, output: u64, context: &Map<String, Value>, out: &mut Vec<u8>) -> Option<()> {
        let keys: Vec<Key> = self.streams.keys().filter(|(o, _)| *o == output).copied().collect();
        for key in keys {
            self.flush_response_key(key, context, out)?;
        }
        None
    }

    /// Ends every open text (before `response.completed`, or at the end of the body).
    pub(super) fn flush_responses(&mut self, context: &Map<String, Value>, out: &mut Vec<u8>) -> Option<()> {
        let keys: Vec<Key> = self.streams.keys().copied().collect();
        for key in keys {
            // `item_id` of the ending event is not this text's: leave it out.
            let mut context = context.clone();
            context.remove("item_id");
            self.flush_response_key(key, &context, out)?;
        }
        None
    }

    /// Ends the stream with an `error` event, as the API reports a failure mid-stream.
    pub(super) fn responses_reject(&mut self, rule: usize, sequence: Option<Value>, out: &mut Vec<u8>) {
        let message = self.reject_message(rule);
        let mut error = json!({"type": "error", "code": "sensitive_data_detected", "message": message, "param": null});
        if let (Some(sequence), Some(map)) = (sequence, error.as_object_mut()) {
            map.insert("sequence_number".into(), sequence);
        }
        out.extend(SseEvent::named("error", error.to_string()).to_bytes());
        self.streams.clear();
        self.responses.released.clear();
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hash, replace_all, scanner_with, SAMPLES};
    use super::super::SseMasker;
    use crate::actions::Action;
    use crate::detectors::Entity;
    use aigw_shared::sse::SseParser;
    use serde_json::{json, Value};
    use std::rc::Rc;

    fn run(scanner: &Rc<crate::scan::Scanner>, body: &[u8], cut: usize) -> Vec<u8> {
        let mut masker = SseMasker::new(scanner.clone(), hash(), 1 << 20);
        let mut out = masker.feed(&body[..cut], false);
        out.extend(masker.feed(&body[cut..], true));
        out
    }

    fn event(data: Value) -> String {
        format!("event: {}\ndata: {data}\n\n", data["type"].as_str().unwrap())
    }

    /// A realistic stream: one message with `text` in pieces, then a function
    /// call whose arguments come in pieces, with every repeat the API sends.
    fn stream(pieces: &[&str], args: &[&str]) -> Vec<u8> {
        let text: String = pieces.concat();
        let arguments: String = args.concat();
        let mut seq = 0;
        let mut next = || {
            seq += 1;
            seq
        };
        let mut body = String::new();
        let response = |status: &str, output: Value| json!({"id": "resp_1", "object": "response", "status": status, "output": output, "instructions": "be kind"});
        body.push_str(&event(json!({"type": "response.created", "sequence_number": next(), "response": response("in_progress", json!([]))})));
        body.push_str(&event(json!({"type": "response.in_progress", "sequence_number": next(), "response": response("in_progress", json!([]))})));
        body.push_str(&event(json!({"type": "response.output_item.added", "sequence_number": next(), "output_index": 0, "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}})));
        body.push_str(&event(json!({"type": "response.content_part.added", "sequence_number": next(), "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})));
        for piece in pieces {
            body.push_str(&event(json!({"type": "response.output_text.delta", "sequence_number": next(), "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": piece})));
        }
        body.push_str(&event(json!({"type": "response.output_text.done", "sequence_number": next(), "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text})));
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        body.push_str(&event(json!({"type": "response.content_part.done", "sequence_number": next(), "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part})));
        let message =
            json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [part]});
        body.push_str(&event(
            json!({"type": "response.output_item.done", "sequence_number": next(), "output_index": 0, "item": message}),
        ));
        let call = |arguments: &str| json!({"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "send", "arguments": arguments, "status": "completed"});
        body.push_str(&event(json!({"type": "response.output_item.added", "sequence_number": next(), "output_index": 1, "item": call("")})));
        for piece in args {
            body.push_str(&event(json!({"type": "response.function_call_arguments.delta", "sequence_number": next(), "item_id": "fc_1", "output_index": 1, "delta": piece})));
        }
        body.push_str(&event(json!({"type": "response.function_call_arguments.done", "sequence_number": next(), "item_id": "fc_1", "output_index": 1, "arguments": arguments})));
        body.push_str(&event(json!({"type": "response.output_item.done", "sequence_number": next(), "output_index": 1, "item": call(&arguments)})));
        body.push_str(&event(json!({"type": "response.completed", "sequence_number": next(), "response": response("completed", json!([message, call(&arguments)]))})));
        body.into_bytes()
    }

    /// What a client gets: the text from the deltas, and every repeat of it.
    struct Seen {
        text: String,
        arguments: String,
        repeats: Vec<String>,
        argument_repeats: Vec<String>,
    }

    fn read(body: &[u8]) -> Seen {
        let mut parser = SseParser::default();
        let mut events = parser.feed(body).unwrap();
        events.extend(parser.finish());
        let mut seen =
            Seen { text: String::new(), arguments: String::new(), repeats: vec![], argument_repeats: vec![] };
        for event in events {
            let data: Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(event.event.as_deref(), data["type"].as_str(), "event name and type agree");
            let get = |pointer: &str| data.pointer(pointer).and_then(Value::as_str).map(str::to_string);
            match data["type"].as_str().unwrap() {
                "response.output_text.delta" => seen.text.push_str(&get("/delta").unwrap()),
                "response.function_call_arguments.delta" => seen.arguments.push_str(&get("/delta").unwrap()),
                "response.output_text.done" => seen.repeats.push(get("/text").unwrap()),
                "response.content_part.done" => seen.repeats.push(get("/part/text").unwrap()),
                "response.function_call_arguments.done" => seen.argument_repeats.push(get("/arguments").unwrap()),
                "response.output_item.done" => {
                    if let Some(text) = get("/item/content/0/text") {
                        seen.repeats.push(text);
                    }
                    if let Some(arguments) = get("/item/arguments") {
                        seen.argument_repeats.push(arguments);
                    }
                }
                "response.completed" => {
                    seen.repeats.push(get("/response/output/0/content/0/text").unwrap());
                    seen.argument_repeats.push(get("/response/output/1/arguments").unwrap());
                }
                _ => {}
            }
        }
        seen
    }

    #[test]
    fn every_sample_split_across_deltas_and_chunks_is_masked_everywhere() {
        let scanner = Rc::new(replace_all());
        for (name, value) in SAMPLES {
            let mid = value.char_indices().nth(value.chars().count() / 2).unwrap().0;
            let (a, b) = value.split_at(mid);
            let first = format!("Contact: {a}");
            let second = format!("{b} thanks.");
            let args_json = json!({"to": value}).to_string();
            let args_mid = args_json.len() / 2;
            let args = [&args_json[..args_mid], &args_json[args_mid..]];
            let body = stream(&[&first, &second], &args);
            let expected = format!("Contact: [{name}] thanks.");
            let expected_args = json!({"to": format!("[{name}]")});
            for cut in 0..=body.len() {
                let out = run(&scanner, &body, cut);
                let seen = read(&out);
                assert_eq!(seen.text, expected, "{name} cut at {cut}");
                assert_eq!(seen.repeats, vec![expected.clone(); 4], "{name} cut at {cut}");
                let parsed: Value = serde_json::from_str(&seen.arguments).unwrap();
                assert_eq!(parsed, expected_args, "{name} cut at {cut}");
                assert_eq!(seen.argument_repeats, vec![seen.arguments.clone(); 3], "{name} cut at {cut}");
                let raw = String::from_utf8_lossy(&out);
                let escaped = serde_json::to_string(value).unwrap();
                assert!(!raw.contains(value) && !raw.contains(escaped.trim_matches('"')), "{name} leaked at {cut}");
            }
        }
    }

    #[test]
    fn every_split_of_one_delta_pair() {
        let scanner = Rc::new(replace_all());
        let text = "mail ana.silva@example.com now";
        for split in 0..=text.len() {
            if !text.is_char_boundary(split) {
                continue;
            }
            let body = stream(&[&text[..split], &text[split..]], &["{}"]);
            let seen = read(&run(&scanner, &body, body.len() / 2));
            assert_eq!(seen.text, "mail [EMAIL_ADDRESS] now", "split {split}");
            assert!(seen.repeats.iter().all(|r| r == "mail [EMAIL_ADDRESS] now"), "split {split}");
        }
    }

    #[test]
    fn clean_stream_keeps_every_event_but_the_pieces_byte_for_byte() {
        // Pieces may be re-cut (a trailing word is held until the text ends and
        // released in one more delta); every other event, the repeats of the
        // whole text included, passes as it came.
        let scanner = Rc::new(replace_all());
        let body = stream(&["hello ", "world"], &["{\"a\":", "1}"]);
        let out = String::from_utf8(run(&scanner, &body, 7)).unwrap();
        let body = String::from_utf8(body).unwrap();
        for event in body.split_inclusive("\n\n").filter(|e| !e.starts_with("event: response.output_text.delta")) {
            if !event.starts_with("event: response.function_call_arguments.delta") {
                assert!(out.contains(event), "{event} changed in {out}");
            }
        }
        let seen = read(out.as_bytes());
        assert_eq!((seen.text.as_str(), seen.arguments.as_str()), ("hello world", "{\"a\":1}"));
    }

    #[test]
    fn reject_ends_with_an_error_event() {
        let scanner = Rc::new(scanner_with(|e| {
            if e == Entity::AwsAccessKey {
                Action::Reject { message: "Withheld.".into() }
            } else {
                Action::Replace { text: format!("[{}]", e.name()) }
            }
        }));
        let body = stream(&["key AKIAIOSFOD", "NN7EXAMPLE and more"], &["{}"]);
        let out = String::from_utf8(run(&scanner, &body, 0)).unwrap();
        assert!(!out.contains("AKIA") && !out.contains("more"), "{out}");
        assert!(out.contains("event: error\ndata: {\"code\":\"sensitive_data_detected\""), "{out}");
        assert!(!out.contains("response.completed"), "{out}");
    }

    #[test]
    fn a_stream_cut_short_releases_its_held_text() {
        let scanner = Rc::new(replace_all());
        let body = format!(
            "{}{}",
            event(
                json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "ssn 123-45-67"})
            ),
            event(json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "89"}))
        );
        let seen = read(&run(&scanner, body.as_bytes(), 5));
        assert_eq!(seen.text, "ssn [US_SSN]");
    }
}
