//! What the mock answers: OpenAI chat completions and Anthropic messages, as
//! one JSON body or as the SSE events a real provider sends.

use crate::controls::{Controls, Finish, Mode, ToolCall};
use aigw_shared::api::{anthropic, openai, request_texts_mut, ApiShape};
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The provider API a request was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions` and Azure's `/openai/deployments/{d}/chat/completions`.
    OpenAi,
    /// `/v1/messages`.
    Anthropic,
}

impl Api {
    fn shape(self) -> ApiShape {
        match self {
            Api::OpenAi => ApiShape::OpenAiChat,
            Api::Anthropic => ApiShape::AnthropicMessages,
        }
    }
}

/// Tokens of `text` in o200k_base (the GPT-4o encoding). The BPE tables load
/// once per process. If they cannot be built, a rough 4-bytes-per-token
/// estimate keeps the mock answering.
pub fn count_tokens(text: &str) -> u64 {
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    match BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()) {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => text.len().div_ceil(4) as u64,
    }
}

/// Anthropic's `POST /v1/messages/count_tokens` answer: `{"input_tokens": N}`,
/// N counted over every text of the request as the mock counts prompts.
pub fn count_message_tokens(body: &[u8]) -> Result<Value, BadRequest> {
    let mut value: Value = serde_json::from_slice(body).map_err(|err| format!("request body is not JSON: {err}"))?;
    if value.get("model").and_then(Value::as_str).is_none() {
        return Err("model: missing".to_string());
    }
    if value.get("messages").and_then(Value::as_array).is_none() {
        return Err("messages: missing".to_string());
    }
    let mut tokens = 0;
    request_texts_mut(ApiShape::AnthropicMessages, &mut value, &mut |_, text| tokens += count_tokens(text));
    Ok(json!({"input_tokens": tokens}))
}

/// A reply to send, before it is serialised in the API's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub api: Api,
    pub id: String,
    pub model: String,
    pub text: String,
    pub stream: bool,
    pub include_usage: bool,
    /// All prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens reported as cache reads / (Anthropic) cache writes.
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub finish: Finish,
    pub tool_call: Option<ToolCall>,
}

/// Why a request body could not be answered (a 400 in the provider's shape).
pub type BadRequest = String;

/// Builds the reply to a chat request. `default_model` is used when the body
/// names none (Azure puts the deployment in the path instead).
pub fn build(
    api: Api,
    id: u64,
    body: &[u8],
    controls: &Controls,
    default_model: Option<&str>,
) -> Result<Reply, BadRequest> {
    let mut value: Value = serde_json::from_slice(body).map_err(|err| format!("request body is not JSON: {err}"))?;
    if !value.is_object() {
        return Err("request body is not a JSON object".to_string());
    }
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .or(default_model)
        .ok_or_else(|| "model: missing".to_string())?
        .to_string();
    let messages = value.get("messages").and_then(Value::as_array).ok_or_else(|| "messages: missing".to_string())?;
    let last_user = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let last_user_text = match (api, last_user.and_then(|m| m.get("content"))) {
        (_, None) => String::new(),
        (Api::OpenAi, Some(content)) => serde_json::from_value::<openai::Content>(content.clone())
            .map(|c| c.text())
            .map_err(|err| format!("messages: bad content: {err}"))?,
        (Api::Anthropic, Some(content)) => serde_json::from_value::<anthropic::Content>(content.clone())
            .map(|c| c.text())
            .map_err(|err| format!("messages: bad content: {err}"))?,
    };
    let stream = value.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = value.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let mut prompt_tokens = 0;
    request_texts_mut(api.shape(), &mut value, &mut |_, text| prompt_tokens += count_tokens(text));
    let text = match &controls.mode {
        Mode::Echo => last_user_text,
        Mode::Request => String::from_utf8_lossy(body).into_owned(),
        Mode::Fixed(text) => text.clone(),
    };
    let tool_call = controls.tool_call.clone();
    let completion_tokens = count_tokens(&text) + tool_call.as_ref().map_or(0, |call| count_tokens(&call.arguments));
    let cached_tokens = controls.cached_tokens.min(prompt_tokens);
    let cache_write_tokens = controls.cache_write_tokens.min(prompt_tokens - cached_tokens);
    let id = match api {
        Api::OpenAi => format!("chatcmpl-mock-{id}"),
        Api::Anthropic => format!("msg_mock_{id}"),
    };
    Ok(Reply {
        api,
        id,
        model,
        text,
        stream,
        include_usage,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cache_write_tokens,
        finish: controls.finish,
        tool_call,
    })
}

/// Splits `text` into the content pieces of a stream: exactly `chunks` pieces
/// of near-equal length in characters when given (trailing ones empty if the
/// text is shorter), else one piece per word (with its following whitespace).
pub fn split_text(text: &str, chunks: Option<usize>) -> Vec<String> {
    match chunks {
        Some(n) => {
            let chars: Vec<char> = text.chars().collect();
            let size = chars.len().div_ceil(n).max(1);
            let mut pieces: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
            pieces.resize(n, String::new());
            pieces
        }
        None => {
            let mut pieces = Vec::new();
            let mut current = String::new();
            let mut in_space = false;
            for ch in text.chars() {
                if !ch.is_whitespace() && in_space {
                    pieces.push(std::mem::take(&mut current));
                }
                in_space = ch.is_whitespace();
                current.push(ch);
            }
            if !current.is_empty() {
                pieces.push(current);
            }
            pieces
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Reply {
    fn openai_usage(&self) -> Value {
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        });
        if let (true, Some(map)) = (self.cached_tokens > 0, usage.as_object_mut()) {
            map.insert("prompt_tokens_details".to_string(), json!({"cached_tokens": self.cached_tokens}));
        }
        usage
    }

    /// Anthropic's usage: `input_tokens` excludes cache reads and writes.
    fn anthropic_usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.prompt_tokens - self.cached_tokens - self.cache_write_tokens,
            "cache_read_input_tokens": self.cached_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "output_tokens": output_tokens,
        })
    }

    fn openai_finish(&self) -> &'static str {
        match (self.finish, &self.tool_call) {
            (Finish::Length, _) => "length",
            (Finish::ContentFilter, _) => "content_filter",
            (Finish::Stop, Some(_)) => "tool_calls",
            (Finish::Stop, None) => "stop",
        }
    }

    fn anthropic_stop_reason(&self) -> &'static str {
        match (self.finish, &self.tool_call) {
            (Finish::Length, _) => "max_tokens",
            (Finish::ContentFilter, _) => "refusal",
            (Finish::Stop, Some(_)) => "tool_use",
            (Finish::Stop, None) => "end_turn",
        }
    }

    fn tool_call_id(&self) -> String {
        match self.api {
            Api::OpenAi => format!("call_{}", self.id),
            Api::Anthropic => format!("toolu_{}", self.id),
        }
    }

    /// The tool arguments in two pieces, as providers stream them.
    fn argument_pieces(arguments: &str) -> Vec<String> {
        let chars: Vec<char> = arguments.chars().collect();
        let half = chars.len() / 2;
        vec![chars.iter().take(half).collect(), chars.iter().skip(half).collect()]
    }

    /// The non-streamed response body.
    pub fn json_body(&self) -> Value {
        match self.api {
            Api::OpenAi => {
                let content = match (&self.tool_call, self.text.is_empty()) {
                    (Some(_), true) => Value::Null,
                    _ => json!(self.text),
                };
                let mut message = json!({"role": "assistant", "content": content, "refusal": null});
                if let (Some(call), Some(map)) = (&self.tool_call, message.as_object_mut()) {
                    let calls = json!([{"id": self.tool_call_id(), "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments}}]);
                    map.insert("tool_calls".to_string(), calls);
                }
                json!({
                    "id": self.id,
                    "object": "chat.completion",
                    "created": now_secs(),
                    "model": self.model,
                    "choices": [{
                        "index": 0,
                        "message": message,
                        "logprobs": null,
                        "finish_reason": self.openai_finish(),
                    }],
                    "usage": self.openai_usage(),
                    "system_fingerprint": "fp_mock",
                })
            }
            Api::Anthropic => {
                let mut content = Vec::new();
                if !self.text.is_empty() || self.tool_call.is_none() {
                    content.push(json!({"type": "text", "text": self.text}));
                }
                if let Some(call) = &self.tool_call {
                    let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                    content.push(
                        json!({"type": "tool_use", "id": self.tool_call_id(), "name": call.name, "input": input}),
                    );
                }
                json!({
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": content,
                    "stop_reason": self.anthropic_stop_reason(),
                    "stop_sequence": null,
                    "usage": self.anthropic_usage(self.completion_tokens),
                })
            }
        }
    }

    /// The SSE events of the streamed response, each a complete event
    /// (`data: …\n\n`, with `event: …` for Anthropic), in order.
    pub fn sse_events(&self, chunks: Option<usize>) -> Vec<String> {
        let pieces = split_text(&self.text, chunks);
        match self.api {
            Api::OpenAi => self.openai_events(&pieces),
            Api::Anthropic => self.anthropic_events(&pieces),
        }
    }

    fn openai_events(&self, pieces: &[String]) -> Vec<String> {
        let created = now_secs();
        let chunk = |delta: Value, finish: Value| {
            let mut chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if let (true, Some(object)) = (self.include_usage, chunk.as_object_mut()) {
                object.insert("usage".to_string(), Value::Null);
            }
            format!("data: {chunk}\n\n")
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null)];
        events.extend(pieces.iter().map(|piece| chunk(json!({"content": piece}), Value::Null)));
        if let Some(call) = &self.tool_call {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": self.tool_call_id(), "type": "function",
                    "function": {"name": call.name, "arguments": ""}}]}),
                Value::Null,
            ));
            for piece in Self::argument_pieces(&call.arguments) {
                events
                    .push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), Value::Null));
            }
        }
        events.push(chunk(json!({}), json!(self.openai_finish())));
        if self.include_usage {
            let usage = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "system_fingerprint": "fp_mock",
                "choices": [],
                "usage": self.openai_usage(),
            });
            events.push(format!("data: {usage}\n\n"));
        }
        events.push("data: [DONE]\n\n".to_string());
        events
    }

    fn anthropic_events(&self, pieces: &[String]) -> Vec<String> {
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut events = vec![event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": self.anthropic_usage(1),
            }}),
        )];
        let mut index = 0;
        if !self.text.is_empty() || self.tool_call.is_none() {
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            ));
            events.push(event("ping", json!({"type": "ping"})));
            events.extend(pieces.iter().map(|piece| {
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
                )
            }));
            events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": index})));
            index += 1;
        }
        if let Some(call) = &self.tool_call {
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                       "content_block": {"type": "tool_use", "id": self.tool_call_id(), "name": call.name, "input": {}}}),
            ));
            for piece in Self::argument_pieces(&call.arguments) {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
            events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        }
        events.push(event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": self.anthropic_stop_reason(), "stop_sequence": null},
                   "usage": {"output_tokens": self.completion_tokens}}),
        ));
        events.push(event("message_stop", json!({"type": "message_stop"})));
        events
    }
}

/// An error body in the provider's shape.
pub fn error_body(api: Api, status: u16, message: &str) -> Value {
    match api {
        Api::OpenAi => {
            let (kind, code) = match status {
                400 => ("invalid_request_error", "invalid_request"),
                401 => ("invalid_request_error", "invalid_api_key"),
                404 => ("invalid_request_error", "not_found"),
                429 => ("rate_limit_error", "rate_limit_exceeded"),
                _ => ("server_error", "server_error"),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Api::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                529 | 503 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(api: Api, body: Value, controls: &Controls) -> Reply {
        build(api, 1, body.to_string().as_bytes(), controls, None).unwrap()
    }

    #[test]
    fn count_tokens_counts_every_text_like_a_prompt() {
        let body = json!({"model": "claude", "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}]});
        let answer = count_message_tokens(body.to_string().as_bytes()).unwrap();
        assert_eq!(answer, json!({"input_tokens": count_tokens("be brief") + count_tokens("one two three")}));
        assert!(count_message_tokens(b"{\"messages\": []}").unwrap_err().contains("model"));
        assert!(count_message_tokens(b"nope").is_err());
    }

    #[test]
    fn echoes_the_last_user_message_and_counts_tokens() {
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
        ]});
        let r = reply(Api::OpenAi, body, &Controls::default());
        assert_eq!(r.text, "Hello there");
        assert_eq!(r.model, "gpt-4o");
        assert_eq!(r.completion_tokens, count_tokens("Hello there"));
        assert_eq!(
            r.prompt_tokens,
            ["Be brief.", "first", "ok", "Hello there"].iter().map(|t| count_tokens(t)).sum::<u64>()
        );
        assert!(r.completion_tokens >= 2);
    }

    #[test]
    fn request_mode_returns_the_raw_body() {
        let raw = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        let controls = Controls { mode: Mode::Request, ..Controls::default() };
        assert_eq!(build(Api::OpenAi, 1, raw.as_bytes(), &controls, None).unwrap().text, raw);
    }

    #[test]
    fn anthropic_counts_system_and_echoes_blocks() {
        let body = json!({"model": "claude", "max_tokens": 10, "system": "sys",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        let r = reply(Api::Anthropic, body, &Controls::default());
        assert_eq!(r.text, "hi");
        assert_eq!(r.prompt_tokens, count_tokens("sys") + count_tokens("hi"));
        assert_eq!(r.json_body()["content"][0]["text"], "hi");
    }

    #[test]
    fn azure_takes_the_model_from_the_path() {
        let body = br#"{"messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(build(Api::OpenAi, 1, body, &Controls::default(), Some("dep")).unwrap().model, "dep");
        assert!(build(Api::OpenAi, 1, body, &Controls::default(), None).is_err());
        assert!(build(Api::OpenAi, 1, b"not json", &Controls::default(), None).is_err());
    }

    #[test]
    fn splits_text_exactly_or_by_word() {
        assert_eq!(split_text("abcdefg", Some(3)), ["abc", "def", "g"]);
        assert_eq!(split_text("ab", Some(4)), ["a", "b", "", ""]);
        assert_eq!(split_text("héllo wörld  x", None), ["héllo ", "wörld  ", "x"]);
        assert!(split_text("", None).is_empty());
    }

    #[test]
    fn openai_stream_has_role_content_finish_usage_and_done() {
        let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "one two"}]});
        let events = reply(Api::OpenAi, body, &Controls::default()).sse_events(None);
        assert_eq!(events.len(), 1 + 2 + 1 + 1 + 1);
        let data: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap().trim_end()).unwrap())
            .collect();
        assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(data[1]["choices"][0]["delta"]["content"], "one ");
        assert_eq!(data[2]["choices"][0]["delta"]["content"], "two");
        assert_eq!(data[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(data[4]["usage"]["completion_tokens"], count_tokens("one two"));
        assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
    }

    #[test]
    fn openai_stream_without_usage_option_has_no_usage_chunk() {
        let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]});
        let events = reply(Api::OpenAi, body, &Controls::default()).sse_events(Some(2));
        assert_eq!(events.len(), 1 + 2 + 1 + 1);
        assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    }

    #[test]
    fn anthropic_stream_has_every_event_type_in_order() {
        let body = json!({"model": "c", "max_tokens": 5, "stream": true,
            "messages": [{"role": "user", "content": "a b c"}]});
        let events = reply(Api::Anthropic, body, &Controls::default()).sse_events(None);
        let names: Vec<&str> =
            events.iter().map(|e| e.lines().next().unwrap().strip_prefix("event: ").unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(events[7].contains(&format!("\"output_tokens\":{}", count_tokens("a b c"))));
    }

    #[test]
    fn tool_calls_finish_reasons_and_cache_usage() {
        let controls = Controls {
            tool_call: Some(ToolCall { name: "get_weather".into(), arguments: r#"{"city":"Paris"}"#.into() }),
            cached_tokens: 2,
            cache_write_tokens: 1,
            mode: Mode::Fixed(String::new()),
            ..Controls::default()
        };
        let body = json!({"model": "m", "stream": true, "max_tokens": 9,
            "messages": [{"role": "user", "content": "what is the weather in Paris today"}]});
        let openai = reply(Api::OpenAi, body.clone(), &controls);
        let message = &openai.json_body()["choices"][0];
        assert_eq!(message["finish_reason"], "tool_calls");
        assert_eq!(message["message"]["content"], Value::Null);
        assert_eq!(message["message"]["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(openai.json_body()["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
        let streamed: String = openai
            .sse_events(None)
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e.strip_prefix("data: ")?.trim_end()).ok())
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments")?.as_str().map(str::to_string))
            .collect();
        assert_eq!(streamed, r#"{"city":"Paris"}"#);

        let anthropic = reply(Api::Anthropic, body, &controls);
        let json = anthropic.json_body();
        assert_eq!(json["stop_reason"], "tool_use");
        assert_eq!(json["content"][0]["input"]["city"], "Paris");
        assert_eq!(json["usage"]["input_tokens"], anthropic.prompt_tokens - 3);
        assert_eq!(json["usage"]["cache_read_input_tokens"], 2);
        let events = anthropic.sse_events(None);
        let partial: String = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e.lines().nth(1)?.strip_prefix("data: ")?).ok())
            .filter_map(|d| d.pointer("/delta/partial_json")?.as_str().map(str::to_string))
            .collect();
        assert_eq!(partial, r#"{"city":"Paris"}"#);
        assert!(events.iter().any(|e| e.contains(r#""stop_reason":"tool_use""#)));

        let length = Controls { finish: Finish::Length, ..Controls::default() };
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(reply(Api::OpenAi, body.clone(), &length).json_body()["choices"][0]["finish_reason"], "length");
        assert_eq!(reply(Api::Anthropic, body, &length).json_body()["stop_reason"], "max_tokens");
    }

    #[test]
    fn error_bodies_follow_each_provider() {
        assert_eq!(error_body(Api::OpenAi, 429, "m")["error"]["type"], "rate_limit_error");
        assert_eq!(error_body(Api::Anthropic, 503, "m")["error"]["type"], "overloaded_error");
        assert_eq!(error_body(Api::Anthropic, 500, "m")["type"], "error");
    }
}
