//! OpenAI embeddings (`POST /v1/embeddings`) and legacy completions
//! (`POST /v1/completions`): where their text sits.
//!
//! Both accept their input as token arrays too (`[1, 2, 3]` or `[[1, 2], [3]]`).
//! Those are not text the gateway can read without the model's tokenizer, so
//! they are passed through unscanned (documented in pii-mask's README).

use super::TextKind;
use serde_json::Value;

/// A string, or a list whose string members are visited (token arrays skipped).
fn strings_texts_mut(value: &mut Value, kind: TextKind, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match value {
        Value::String(text) => visit(kind, text),
        Value::Array(items) => {
            for item in items {
                if let Value::String(text) = item {
                    visit(kind, text);
                }
            }
        }
        _ => {}
    }
}

fn user_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(Value::String(text)) = body.get_mut("user") {
        visit(TextKind::Content, text);
    }
}

/// Embeddings request: `input` (string or list of strings) and `user`.
pub fn embeddings_request_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(input) = body.get_mut("input") {
        strings_texts_mut(input, TextKind::Content, visit);
    }
    user_texts_mut(body, visit);
}

/// Completions request: `prompt` (string or list of strings), `suffix` and `user`.
pub fn completions_request_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(prompt) = body.get_mut("prompt") {
        strings_texts_mut(prompt, TextKind::Content, visit);
    }
    if let Some(Value::String(suffix)) = body.get_mut("suffix") {
        visit(TextKind::Content, suffix);
    }
    user_texts_mut(body, visit);
}

/// Completions response or stream chunk: every `choices[].text`.
pub fn completions_response_texts_mut(body: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    if let Some(Value::Array(choices)) = body.get_mut("choices") {
        for choice in choices {
            if let Some(Value::String(text)) = choice.get_mut("text") {
                visit(TextKind::Content, text);
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

    fn texts(body: &mut Value, walk: Walk) -> Vec<String> {
        let mut seen = Vec::new();
        walk(body, &mut |_, text| seen.push(text.clone()));
        seen
    }

    #[test]
    fn embeddings_strings_visited_token_arrays_skipped() {
        let mut body = json!({"model": "e", "input": "one", "user": "u"});
        assert_eq!(texts(&mut body, embeddings_request_texts_mut), ["one", "u"]);
        let mut body = json!({"model": "e", "input": ["a", "b"]});
        assert_eq!(texts(&mut body, embeddings_request_texts_mut), ["a", "b"]);
        let mut body = json!({"model": "e", "input": [[1, 2], [3]]});
        assert!(texts(&mut body, embeddings_request_texts_mut).is_empty());
        let mut body = json!({"model": "e", "input": [1, 2, 3]});
        assert!(texts(&mut body, embeddings_request_texts_mut).is_empty());
    }

    #[test]
    fn completions_prompt_suffix_and_choices() {
        let mut body = json!({"model": "m", "prompt": ["p1", "p2"], "suffix": "s"});
        assert_eq!(texts(&mut body, completions_request_texts_mut), ["p1", "p2", "s"]);
        let mut body =
            json!({"object": "text_completion", "choices": [{"index": 0, "text": "t0"}, {"index": 1, "text": "t1"}]});
        assert_eq!(texts(&mut body, completions_response_texts_mut), ["t0", "t1"]);
    }
}
