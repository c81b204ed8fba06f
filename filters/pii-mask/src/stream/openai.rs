//! OpenAI chat completion chunks: each choice's `delta.content`,
//! `delta.refusal` and every `delta.tool_calls[j].function.arguments`
//! (JSON fragments) is its own text, keyed by choice and tool index. Legacy
//! completions chunks carry `choices[i].text` instead of a delta: the same
//! text stream per choice, released into `text`.

use super::{Key, Part, SseMasker};
use aigw_shared::sse::SseEvent;
use serde_json::{json, Map, Value};

impl SseMasker {
    pub(super) fn openai_event(&mut self, mut event: SseEvent, mut data: Map<String, Value>, out: &mut Vec<u8>) {
        let mut template = data.clone();
        template.remove("choices");
        template.remove("usage");
        self.openai_template = Some(template);
        let mut reject: Option<(u64, usize)> = None;
        // Events whose text did not change are forwarded as they came.
        let mut changed = false;
        // Finish reasons moved to their own chunk, after the held text.
        let mut finishes: Vec<(u64, Value)> = Vec::new();
        if let Some(Value::Array(choices)) = data.get_mut("choices") {
            for (position, choice) in choices.iter_mut().enumerate() {
                let index = choice.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
                let finished = choice.get("finish_reason").is_some_and(|r| !r.is_null());
                let mut tail_flushed = false;
                if let Value::Object(completion) = choice {
                    if !completion.get("text").is_some_and(Value::is_string) {
                        // A chat chunk: handled below.
                    } else {
                        self.completions = true;
                        if let Some(Value::String(text)) = completion.get_mut("text") {
                            let released = self.push((index, Part::CompletionText), text);
                            changed |= released.text != *text;
                            *text = released.text;
                            if let Some(rule) = released.reject {
                                reject.get_or_insert((index, rule));
                            }
                        }
                        if finished && reject.is_none() {
                            if let Some(rule) = self.flush_openai_choice(index, completion, &mut changed) {
                                reject.get_or_insert((index, rule));
                            }
                        }
                        continue;
                    }
                }
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
                    let reject_here = self.flush_openai_choice(index, delta, &mut tail_flushed);
                    changed |= tail_flushed;
                    if let Some(rule) = reject_here {
                        reject.get_or_insert((index, rule));
                    }
                }
                // The held tail goes out in this content chunk; the finish
                // reason follows in a chunk of its own, so clients that stop
                // reading at the finish reason still get all the text.
                if tail_flushed {
                    if let Some(reason) = choice.get_mut("finish_reason") {
                        finishes.push((index, std::mem::take(reason)));
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
        for (index, reason) in finishes {
            let chunk = self.openai_chunk(json!([{"index": index, "delta": {}, "finish_reason": reason}]));
            out.extend(chunk.to_bytes());
        }
    }

    /// Flushes every text of choice `index` into `delta` (setting `changed` when
    /// it adds text). Returns a reject rule if one fired.
    pub(super) fn flush_openai_choice(
        &mut self,
        index: u64,
        delta: &mut Map<String, Value>,
        changed: &mut bool,
    ) -> Option<usize> {
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
                Part::Content | Part::Refusal | Part::CompletionText => {
                    let field = match key.1 {
                        Part::Content => "content",
                        Part::Refusal => "refusal",
                        _ => "text",
                    };
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
                _ => {}
            }
        }
        reject
    }

    pub(super) fn openai_chunk(&self, choices: Value) -> SseEvent {
        let mut data = self.openai_template.clone().unwrap_or_default();
        data.insert("choices".to_string(), choices);
        SseEvent::data(Value::Object(data).to_string())
    }

    pub(super) fn openai_reject(&mut self, index: u64, rule: usize, out: &mut Vec<u8>) {
        let message = self.reject_message(rule);
        let choice = if self.completions {
            json!([{"index": index, "text": message, "logprobs": null, "finish_reason": "content_filter"}])
        } else {
            json!([{"index": index, "delta": {"content": message}, "finish_reason": "content_filter"}])
        };
        let chunk = self.openai_chunk(choice);
        out.extend(chunk.to_bytes());
        out.extend(SseEvent::data("[DONE]").to_bytes());
        self.streams.clear();
        self.stopped = true;
    }
}
