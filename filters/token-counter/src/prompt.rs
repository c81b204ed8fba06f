//! Counting a request's prompt before it is forwarded.
//!
//! OpenAI chat requests are counted the way OpenAI's cookbook counts them
//! ("How to count tokens with tiktoken"), which matches the `prompt_tokens`
//! the API reports for plain chat messages: every message costs 3 tokens
//! plus the tokens of each of its string fields (role, content, name, ...),
//! a `name` costs 1 more, and every reply is primed with 3 tokens.
//!
//! What OpenAI does not document is approximated and errs high: tool
//! definitions and `response_format` are counted as their JSON text, images
//! as a fixed number of tokens. Anthropic requests use the same shape of
//! formula with the model's approximation factor. Any other JSON body counts
//! the text of all its string values.

use crate::tokenize::TokenCounter;
use aigw_shared::api::ApiShape;
use serde_json::Value;

/// OpenAI: tokens every message costs beside its fields.
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// OpenAI: extra token for a message `name`.
///
/// The Responses API is counted with the same formula: `instructions` and
/// each input item as a message (OpenAI documents no separate formula; its
/// reported `input_tokens` are exact and replace the estimate afterwards).
/// Embeddings count `input` and legacy completions `prompt` as bare text,
/// token-id arrays as one token per id.
pub const TOKENS_PER_NAME: u64 = 1;
/// OpenAI: every reply is primed with `<|start|>assistant<|message|>`.
pub const REPLY_PRIMING: u64 = 3;
/// Tokens counted for an image in `detail: low` (OpenAI's fixed cost).
pub const LOW_DETAIL_IMAGE_TOKENS: u64 = 85;

/// What the request asks for, beside its prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The `model` field, if any.
    pub model: Option<String>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_output_tokens: Option<u64>,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true` (OpenAI).
    pub include_usage: bool,
}

impl RequestInfo {
    pub fn from_body(body: &Value) -> Self {
        let max_output_tokens = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|field| body.get(*field).and_then(Value::as_u64));
        RequestInfo {
            model: body.get("model").and_then(Value::as_str).map(str::to_string),
            max_output_tokens,
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false),
        }
    }
}

/// Counts the prompt of a request body of the given shape (`None`: any JSON).
pub fn count_request(shape: Option<ApiShape>, body: &Value, counter: &mut TokenCounter, image_tokens: u64) {
    match shape {
        Some(ApiShape::OpenAiChat) => count_openai_chat(body, counter, image_tokens),
        Some(ApiShape::AnthropicMessages) => count_anthropic(body, counter, image_tokens),
        Some(ApiShape::OpenAiResponses) => count_responses(body, counter, image_tokens),
        Some(ApiShape::OpenAiEmbeddings) => {
            if let Some(input) = body.get("input") {
                count_text_or_tokens(input, counter);
            }
        }
        Some(ApiShape::OpenAiCompletions) => {
            if let Some(prompt) = body.get("prompt") {
                count_text_or_tokens(prompt, counter);
            }
            if let Some(suffix) = body.get("suffix").and_then(Value::as_str) {
                counter.text(suffix);
            }
        }
        None => count_strings(body, counter, true),
    }
}

/// Embeddings `input` / completions `prompt`: a string, a list of strings, a
/// list of token ids, or a list of such lists. Token ids are counted as what
/// they are, one token each.
fn count_text_or_tokens(value: &Value, counter: &mut TokenCounter) {
    match value {
        Value::String(text) => counter.text(text),
        Value::Number(_) => counter.fixed(1),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(text) => counter.text(text),
                    Value::Number(_) => counter.fixed(1),
                    Value::Array(tokens) => counter.fixed(tokens.len() as u64),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// OpenAI Responses API: `instructions` as a system message, `input` (a
/// string, or items: messages like chat messages, function calls and their
/// outputs, reasoning summaries), tools and the `text.format` schema as their
/// JSON text, like chat's `tools` and `response_format`.
pub fn count_responses(body: &Value, counter: &mut TokenCounter, image_tokens: u64) {
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        counter.fixed(TOKENS_PER_MESSAGE);
        counter.text("system");
        counter.text(instructions);
    }
    match body.get("input") {
        Some(Value::String(text)) => {
            counter.fixed(TOKENS_PER_MESSAGE);
            counter.text("user");
            counter.text(text);
        }
        Some(Value::Array(items)) => {
            for item in items {
                counter.fixed(TOKENS_PER_MESSAGE);
                match item.get("type").and_then(Value::as_str).unwrap_or("message") {
                    "message" => {
                        if let Some(role) = item.get("role").and_then(Value::as_str) {
                            counter.text(role);
                        }
                        match item.get("content") {
                            Some(Value::Array(parts)) => {
                                for part in parts {
                                    match part.get("type").and_then(Value::as_str) {
                                        Some("input_image") => {
                                            let low = part.get("detail").and_then(Value::as_str) == Some("low");
                                            counter.fixed(if low { LOW_DETAIL_IMAGE_TOKENS } else { image_tokens });
                                        }
                                        Some("input_file") | Some("input_audio") => counter.fixed(image_tokens),
                                        _ => {
                                            for field in ["text", "refusal"] {
                                                if let Some(text) = part.get(field).and_then(Value::as_str) {
                                                    counter.text(text);
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                            Some(Value::String(text)) => counter.text(text),
                            _ => {}
                        }
                    }
                    // Function calls, their outputs, reasoning and anything
                    // newer: the text of its string fields (ids included:
                    // erring high is the documented direction).
                    _ => count_strings(item, counter, false),
                }
            }
        }
        _ => {}
    }
    counter.fixed(REPLY_PRIMING);
    for field in ["tools", "text"] {
        if let Some(value) = body.get(field) {
            counter.text(&value.to_string());
        }
    }
}

/// OpenAI chat completions.
pub fn count_openai_chat(body: &Value, counter: &mut TokenCounter, image_tokens: u64) {
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for message in messages {
            counter.fixed(TOKENS_PER_MESSAGE);
            let Some(fields) = message.as_object() else { continue };
            for (key, value) in fields {
                match (key.as_str(), value) {
                    ("content", content) => openai_content(content, counter, image_tokens),
                    ("name", Value::String(name)) => {
                        counter.text(name);
                        counter.fixed(TOKENS_PER_NAME);
                    }
                    ("tool_calls", calls) => count_strings(calls, counter, false),
                    ("function_call", call) => count_strings(call, counter, false),
                    (_, Value::String(text)) => counter.text(text),
                    _ => {}
                }
            }
        }
        counter.fixed(REPLY_PRIMING);
    }
    for field in ["tools", "functions", "response_format"] {
        if let Some(value) = body.get(field) {
            counter.text(&value.to_string());
        }
    }
}

fn openai_content(content: &Value, counter: &mut TokenCounter, image_tokens: u64) {
    match content {
        Value::String(text) => counter.text(text),
        Value::Array(parts) => {
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("image_url") => {
                        let low = part.pointer("/image_url/detail").and_then(Value::as_str) == Some("low");
                        counter.fixed(if low { LOW_DETAIL_IMAGE_TOKENS } else { image_tokens });
                    }
                    Some("input_audio") | Some("file") => counter.fixed(image_tokens),
                    _ => {
                        if let Some(text) = part.get("text").and_then(Value::as_str) {
                            counter.text(text);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Anthropic messages: `system`, messages and their blocks, tools.
pub fn count_anthropic(body: &Value, counter: &mut TokenCounter, image_tokens: u64) {
    if let Some(system) = body.get("system") {
        anthropic_blocks(system, counter, image_tokens);
    }
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for message in messages {
            counter.fixed(TOKENS_PER_MESSAGE);
            if let Some(role) = message.get("role").and_then(Value::as_str) {
                counter.text(role);
            }
            if let Some(content) = message.get("content") {
                anthropic_blocks(content, counter, image_tokens);
            }
        }
        counter.fixed(REPLY_PRIMING);
    }
    if let Some(tools) = body.get("tools") {
        counter.text(&tools.to_string());
    }
}

/// Counts a `content` value: a string or a list of blocks. Tool results
/// nest content inside content as deep as a client likes, so the walk keeps
/// its own stack instead of recursing.
fn anthropic_blocks(content: &Value, counter: &mut TokenCounter, image_tokens: u64) {
    let mut pending = vec![content];
    while let Some(content) = pending.pop() {
        match content {
            Value::String(text) => counter.text(text),
            Value::Array(blocks) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("image") | Some("document") => counter.fixed(image_tokens),
                        Some("tool_use") => {
                            if let Some(name) = block.get("name").and_then(Value::as_str) {
                                counter.text(name);
                            }
                            if let Some(input) = block.get("input") {
                                counter.text(&input.to_string());
                            }
                        }
                        Some("tool_result") => {
                            // Counting is a sum, so the order does not matter.
                            if let Some(inner) = block.get("content") {
                                pending.push(inner);
                            }
                        }
                        _ => {
                            if let Some(text) = block.get("text").and_then(Value::as_str) {
                                counter.text(text);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Counts every string value (not keys); at the top level of a body the
/// `model` name is skipped. Keeps its own stack rather than recursing, so no
/// nesting can exhaust the Wasm stack.
pub fn count_strings(value: &Value, counter: &mut TokenCounter, top_level: bool) {
    let mut pending = vec![(value, top_level)];
    while let Some((value, top_level)) = pending.pop() {
        match value {
            Value::String(text) => counter.text(text),
            Value::Array(items) => pending.extend(items.iter().map(|item| (item, false))),
            Value::Object(map) => {
                for (key, item) in map {
                    if top_level && key == "model" {
                        continue;
                    }
                    pending.push((item, false));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::{Counting, Encoding, ModelMap};
    use serde_json::json;

    fn exact(body: &Value, shape: ApiShape) -> u64 {
        let counting = ModelMap::default().resolve("gpt-4o-mini").0;
        let mut counter = TokenCounter::new(counting, 1 << 20);
        count_request(Some(shape), body, &mut counter, 765);
        counter.total()
    }

    #[test]
    fn responses_count_like_the_same_chat() {
        // A Responses request with instructions and one user message costs
        // what the chat request with a system and a user message costs.
        let responses =
            json!({"model": "gpt-4o-mini", "instructions": "Be brief.", "input": "What is the capital of France?"});
        let chat = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]});
        assert_eq!(exact(&responses, ApiShape::OpenAiResponses), exact(&chat, ApiShape::OpenAiChat));
        let items = json!({"model": "gpt-4o-mini", "instructions": "Be brief.", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What is the capital of France?"}]}]});
        assert_eq!(exact(&items, ApiShape::OpenAiResponses), exact(&chat, ApiShape::OpenAiChat));
        let with_image = json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x", "detail": "low"}]}]});
        assert!(exact(&with_image, ApiShape::OpenAiResponses) >= LOW_DETAIL_IMAGE_TOKENS);
        let call =
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": "forty two"}]});
        assert!(exact(&call, ApiShape::OpenAiResponses) > TOKENS_PER_MESSAGE + REPLY_PRIMING);
    }

    #[test]
    fn embeddings_and_completions_count_text_and_token_ids() {
        let text = json!({"model": "text-embedding-3-small", "input": "hello world"});
        assert_eq!(exact(&text, ApiShape::OpenAiEmbeddings), 2);
        let list = json!({"model": "text-embedding-3-small", "input": ["hello world", "hello"]});
        assert_eq!(exact(&list, ApiShape::OpenAiEmbeddings), 3);
        let ids = json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]]});
        assert_eq!(exact(&ids, ApiShape::OpenAiEmbeddings), 4);
        let flat = json!({"model": "text-embedding-3-small", "input": [1, 2, 3]});
        assert_eq!(exact(&flat, ApiShape::OpenAiEmbeddings), 3);
        let prompt = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "hello world", "max_tokens": 5});
        assert_eq!(exact(&prompt, ApiShape::OpenAiCompletions), 2);
    }

    /// The example from OpenAI's cookbook "How to count tokens with tiktoken",
    /// for which the API reports `prompt_tokens` = 129 on gpt-3.5-turbo and
    /// gpt-4 (cl100k_base) and 124 on gpt-4o and gpt-4o-mini (o200k_base).
    fn cookbook_messages(model: &str) -> Value {
        json!({
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
                {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
                {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
                {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
                {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
                {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
            ]
        })
    }

    fn count_for(model: &str, body: &Value) -> u64 {
        let (counting, _) = ModelMap::default().resolve(model);
        let mut counter = TokenCounter::new(counting, usize::MAX);
        count_request(Some(ApiShape::OpenAiChat), body, &mut counter, 765);
        counter.total()
    }

    #[test]
    fn cookbook_prompt_tokens_match_openai() {
        for model in ["gpt-3.5-turbo", "gpt-4-0613", "gpt-4"] {
            assert_eq!(count_for(model, &cookbook_messages(model)), 129, "{model}");
        }
        for model in ["gpt-4o", "gpt-4o-mini"] {
            assert_eq!(count_for(model, &cookbook_messages(model)), 124, "{model}");
        }
    }

    #[test]
    fn message_overhead() {
        // One user message "hello world": 3 (message) + 1 ("user") + 2 + 3 (priming).
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]});
        assert_eq!(count_for("gpt-4o", &body), 9);
        // A name adds its own tokens plus one.
        let named = json!({"model": "gpt-4o", "messages": [{"role": "user", "name": "bob", "content": "hello world"}]});
        assert_eq!(count_for("gpt-4o", &named), 9 + 1 + 1);
        // Content parts count like the string.
        let parts = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]});
        assert_eq!(count_for("gpt-4o", &parts), 9);
        // Images cost a fixed amount.
        let image = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:...", "detail": "low"}}]}]});
        assert_eq!(count_for("gpt-4o", &image), 3 + 1 + 85 + 3);
        // No messages at all: nothing, not even priming.
        assert_eq!(count_for("gpt-4o", &json!({"model": "gpt-4o"})), 0);
    }

    #[test]
    fn tools_are_counted() {
        let plain = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        let mut with_tools = plain.clone();
        with_tools["tools"] =
            json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        assert!(count_for("gpt-4o", &with_tools) > count_for("gpt-4o", &plain) + 5);
    }

    #[test]
    fn anthropic_requests_are_approximated() {
        let body = json!({"model": "claude-3-5-sonnet", "max_tokens": 100, "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]});
        let (counting, _) = ModelMap::default().resolve("claude-3-5-sonnet");
        let mut counter = TokenCounter::new(counting, usize::MAX);
        count_request(Some(ApiShape::AnthropicMessages), &body, &mut counter, 1000);
        // "Be brief." 3 + "user" 1 + "hello world" 2 = 6 text tokens, ×1.2 → 7.2 → 8, + 6 fixed.
        assert_eq!(counter.total(), 8 + 6);
    }

    #[test]
    fn generic_bodies_count_strings_but_not_the_model() {
        let mut counter = TokenCounter::new(Counting::exact(Encoding::Cl100kBase), usize::MAX);
        count_request(
            None,
            &json!({"model": "text-embedding-3-small", "input": ["hello world", "hello"]}),
            &mut counter,
            0,
        );
        assert_eq!(counter.total(), 3);
    }

    #[test]
    fn request_info() {
        let info = RequestInfo::from_body(&json!({"model": "m", "max_tokens": 10, "max_completion_tokens": 20,
            "stream": true, "stream_options": {"include_usage": true}}));
        assert_eq!(info.model.as_deref(), Some("m"));
        assert_eq!(info.max_output_tokens, Some(20));
        assert!(info.stream && info.include_usage);
        let info = RequestInfo::from_body(&json!({"max_tokens": "lots", "stream": "yes"}));
        assert_eq!(info, RequestInfo::default());
    }

    #[test]
    fn image_tokens_times_parts_saturate_instead_of_wrapping() {
        // Regression: `image_tokens` × image parts used plain `+` and could wrap
        // to a small total that slips under a limit.
        let parts: Vec<Value> = (0..3).map(|_| json!({"type": "image_url", "image_url": {"url": "x"}})).collect();
        let body = json!({"messages": [{"role": "user", "content": parts}]});
        let mut counter = TokenCounter::new(Counting::exact(Encoding::Cl100kBase), usize::MAX);
        count_request(Some(ApiShape::OpenAiChat), &body, &mut counter, u64::MAX / 2);
        assert_eq!(counter.total(), u64::MAX);
        let mut counter = TokenCounter::new(Counting::exact(Encoding::Cl100kBase), usize::MAX);
        count_request(
            Some(ApiShape::AnthropicMessages),
            &json!({"messages": [{"role": "user",
            "content": [{"type": "image"}, {"type": "document"}, {"type": "image"}]}]}),
            &mut counter,
            u64::MAX / 2,
        );
        assert_eq!(counter.total(), u64::MAX);
    }

    /// Drops a deeply nested value without recursing (serde_json's drop recurses).
    fn drop_iteratively(value: Value) {
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::Array(items) => stack.extend(items),
                Value::Object(map) => stack.extend(map.into_iter().map(|(_, item)| item)),
                _ => {}
            }
        }
    }

    #[test]
    fn nesting_deeper_than_any_stack_is_counted_without_recursion() {
        // Regression for unbounded recursion in our own walks: serde_json caps
        // parsing depth, but a walk must not rely on where a value came from.
        let mut generic = Value::String("hello world".into());
        let mut tool_results = Value::String("hello world".into());
        for _ in 0..100_000 {
            generic = Value::Array(vec![generic]);
            let mut block = serde_json::Map::new();
            block.insert("type".into(), json!("tool_result"));
            block.insert("content".into(), tool_results);
            tool_results = Value::Array(vec![Value::Object(block)]);
        }
        let mut counter = TokenCounter::new(Counting::exact(Encoding::Cl100kBase), usize::MAX);
        count_strings(&generic, &mut counter, true);
        assert_eq!(counter.total(), 2);
        let mut counter = TokenCounter::new(Counting::exact(Encoding::Cl100kBase), usize::MAX);
        anthropic_blocks(&tool_results, &mut counter, 0);
        assert_eq!(counter.total(), 2);
        drop_iteratively(generic);
        drop_iteratively(tool_results);
    }
}
