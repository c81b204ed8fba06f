//! Anthropic messages events: each content block's `text` and
//! `partial_json` (JSON fragments) is its own text, keyed by block index.

use super::{Part, SseMasker};
use aigw_shared::sse::SseEvent;
use serde_json::{json, Map, Value};

impl SseMasker {
    pub(super) fn anthropic_event(
        &mut self,
        mut event: SseEvent,
        kind: &str,
        data: &mut Map<String, Value>,
        out: &mut Vec<u8>,
    ) {
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
    pub(super) fn flush_anthropic_block(&mut self, index: u64, out: &mut Vec<u8>) -> Option<()> {
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

    pub(super) fn anthropic_reject(&mut self, index: u64, rule: usize, out: &mut Vec<u8>) {
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
}
