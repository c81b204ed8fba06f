//! Exact usage from responses, whatever their shape and however they are split.
//!
//! * OpenAI JSON: `usage.prompt_tokens` / `completion_tokens`, cached tokens in
//!   `usage.prompt_tokens_details.cached_tokens`.
//! * OpenAI SSE: the final chunk (`choices: []`, `usage: {...}`) sent when
//!   `stream_options.include_usage` is set. When the gateway set that option
//!   itself, [`ResponseTracker`] removes that one event from what the client
//!   sees, without holding back anything but an unfinished event.
//! * Anthropic JSON: `usage.input_tokens` / `output_tokens`,
//!   `cache_read_input_tokens`, `cache_creation_input_tokens`.
//! * Anthropic SSE: `message_start.message.usage` then `message_delta.usage`,
//!   which carry running totals: the last value of each field wins, nothing
//!   is summed.
//! * OpenAI Responses API (`response.completed`) and any JSON body with one of
//!   the shapes above.
//!
//! Normalised [`Usage`]: `input` is every prompt token the provider billed
//! (for Anthropic that is `input_tokens + cache_read + cache_creation`, since
//! Anthropic's `input_tokens` excludes cached tokens while OpenAI's
//! `prompt_tokens` includes them).

use aigw_shared::api::anthropic;
use aigw_shared::api::ApiShape;
use aigw_shared::outcome::ResponseFacts;
use aigw_shared::sse::{SseEvent, SseParser, DEFAULT_MAX_EVENT_BYTES};
use serde_json::Value;

/// Token usage of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub input: u64,
    pub output: u64,
    /// Prompt tokens served from the provider's cache (OpenAI `cached_tokens`,
    /// Anthropic `cache_read_input_tokens`).
    pub cached: u64,
    /// Prompt tokens written to the cache (Anthropic `cache_creation_input_tokens`).
    pub cache_creation: u64,
    /// Output tokens spent on reasoning (OpenAI `reasoning_tokens` in
    /// `completion_tokens_details` / `output_tokens_details`); part of `output`.
    pub reasoning: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// Where the numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    OpenAi,
    Anthropic,
}

/// Running usage state, fed with JSON values from bodies or events.
#[derive(Debug, Default, Clone)]
pub struct UsageAccumulator {
    openai: Option<Usage>,
    anthropic: Option<anthropic::Usage>,
    last: Option<Source>,
    /// Model, finish reasons and provider error, for traces and the error metric.
    facts: ResponseFacts,
}

fn u64_at(value: &Value, pointer: &str) -> Option<u64> {
    value.pointer(pointer).and_then(Value::as_u64)
}

impl UsageAccumulator {
    /// Reads the usage a `usage` object carries. OpenAI chat fields
    /// (`prompt_tokens`) or the Responses API (`input_tokens` with
    /// `input_tokens_details`) read as OpenAI; `input_tokens`/`output_tokens`
    /// otherwise read as Anthropic, merging field by field.
    fn absorb_usage(&mut self, usage: &Value) {
        if !usage.is_object() {
            return;
        }
        if usage.get("prompt_tokens").is_some() || usage.get("completion_tokens").is_some() {
            self.openai = Some(Usage {
                input: u64_at(usage, "/prompt_tokens").unwrap_or(0),
                output: u64_at(usage, "/completion_tokens").unwrap_or(0),
                cached: u64_at(usage, "/prompt_tokens_details/cached_tokens").unwrap_or(0),
                cache_creation: 0,
                reasoning: u64_at(usage, "/completion_tokens_details/reasoning_tokens").unwrap_or(0),
            });
            self.last = Some(Source::OpenAi);
        } else if usage.get("input_tokens_details").is_some() || usage.get("output_tokens_details").is_some() {
            // OpenAI Responses API: input_tokens includes the cached ones.
            self.openai = Some(Usage {
                input: u64_at(usage, "/input_tokens").unwrap_or(0),
                output: u64_at(usage, "/output_tokens").unwrap_or(0),
                cached: u64_at(usage, "/input_tokens_details/cached_tokens").unwrap_or(0),
                cache_creation: 0,
                reasoning: u64_at(usage, "/output_tokens_details/reasoning_tokens").unwrap_or(0),
            });
            self.last = Some(Source::OpenAi);
        } else if let Ok(later) = serde_json::from_value::<anthropic::Usage>(usage.clone()) {
            if later.input_tokens.is_some()
                || later.output_tokens.is_some()
                || later.cache_read_input_tokens.is_some()
                || later.cache_creation_input_tokens.is_some()
            {
                self.anthropic.get_or_insert_with(anthropic::Usage::default).merge_latest(&later);
                self.last = Some(Source::Anthropic);
            }
        }
    }

    /// Absorbs a whole (non-streamed) JSON response body.
    pub fn absorb_body(&mut self, body: &Value) {
        self.facts.absorb_body(body);
        if let Some(usage) = body.get("usage") {
            self.absorb_usage(usage);
        } else if let Some(usage) = body.pointer("/response/usage") {
            self.absorb_usage(usage);
        }
    }

    /// Absorbs one streamed event's JSON data.
    pub fn absorb_event(&mut self, data: &Value) {
        self.facts.absorb_event(data);
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(usage) = data.pointer("/message/usage") {
                    self.absorb_usage(usage);
                }
            }
            Some("response.completed") | Some("response.incomplete") | Some("response.failed") => {
                if let Some(usage) = data.pointer("/response/usage") {
                    self.absorb_usage(usage);
                }
            }
            _ => {
                // OpenAI chunks (`usage` is null except in the final one) and
                // Anthropic `message_delta`.
                if let Some(usage) = data.get("usage") {
                    self.absorb_usage(usage);
                }
            }
        }
    }

    /// The usage seen so far, if any.
    pub fn usage(&self) -> Option<Usage> {
        match self.last? {
            Source::OpenAi => self.openai,
            Source::Anthropic => self.anthropic.as_ref().map(|usage| {
                let cached = usage.cache_read_input_tokens.unwrap_or(0);
                let creation = usage.cache_creation_input_tokens.unwrap_or(0);
                Usage {
                    input: usage.input_tokens.unwrap_or(0).saturating_add(cached).saturating_add(creation),
                    output: usage.output_tokens.unwrap_or(0),
                    cached,
                    cache_creation: creation,
                    reasoning: 0,
                }
            }),
        }
    }
}

/// Whether a chunk is OpenAI's usage-only final chunk: `choices: []` and a
/// `usage` object.
pub fn is_usage_only_chunk(data: &Value) -> bool {
    data.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty)
        && data.get("usage").is_some_and(Value::is_object)
}

/// How a response body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// JSON (or anything not SSE): copied up to a cap and parsed at the end.
    Json,
    /// `text/event-stream`.
    EventStream,
    /// Compressed or otherwise unreadable: not parsed.
    Unreadable,
}

/// What the client should receive for one response chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    /// Pass the chunk on as it is.
    Unchanged,
    /// Replace the chunk with these bytes (possibly empty).
    Replace(Vec<u8>),
}

/// Why a response could not be fully read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadProblem {
    /// The JSON body was larger than the cap.
    TooLarge,
    /// The JSON body did not parse.
    Malformed,
    /// An SSE event grew past the cap; the rest of the stream went through unread.
    EventTooLarge,
    /// Compressed body.
    Unreadable,
}

/// Follows one response body: finds its usage, notices the first output
/// token, measures the output text (for an estimate when no usage comes) and,
/// when asked, drops OpenAI's usage-only chunk from what the client sees.
#[derive(Debug)]
pub struct ResponseTracker {
    kind: BodyKind,
    strip_usage_chunk: bool,
    usage: UsageAccumulator,
    json: Vec<u8>,
    max_json_bytes: usize,
    /// Holds the unfinished event and finds where events end (any SSE line
    /// end, each byte examined once however the stream is split).
    parser: SseParser,
    /// The last event was dropped: a lone `\n` that completes its blank
    /// line (a `\r\n` cut between two chunks) goes with it.
    dropped_last: bool,
    first_token: bool,
    output_text_bytes: u64,
    problem: Option<ReadProblem>,
    /// SSE parsing gave up (event too large): the rest passes through untouched.
    bypass: bool,
    stripped_events: u32,
}

impl ResponseTracker {
    pub fn new(kind: BodyKind, strip_usage_chunk: bool, max_json_bytes: usize) -> Self {
        ResponseTracker {
            kind,
            strip_usage_chunk: strip_usage_chunk && kind == BodyKind::EventStream,
            usage: UsageAccumulator::default(),
            json: Vec::new(),
            max_json_bytes,
            parser: SseParser::new(DEFAULT_MAX_EVENT_BYTES),
            dropped_last: false,
            first_token: false,
            output_text_bytes: 0,
            problem: (kind == BodyKind::Unreadable).then_some(ReadProblem::Unreadable),
            bypass: false,
            stripped_events: 0,
        }
    }

    /// Whether the client's bytes may differ from upstream's (the glue must
    /// then drop `content-length`).
    pub fn rewrites(&self) -> bool {
        self.strip_usage_chunk
    }

    /// Feeds one chunk. Returns what the client should get instead, and
    /// whether this chunk carried the first output token.
    pub fn feed(&mut self, chunk: &[u8]) -> (Emit, bool) {
        let had_first = self.first_token;
        let emit = match self.kind {
            BodyKind::Unreadable => Emit::Unchanged,
            BodyKind::Json => {
                if self.problem.is_none() {
                    if self.json.len().saturating_add(chunk.len()) > self.max_json_bytes {
                        self.problem = Some(ReadProblem::TooLarge);
                        self.json = Vec::new();
                    } else {
                        self.json.extend_from_slice(chunk);
                    }
                }
                if !chunk.is_empty() {
                    self.first_token = true;
                }
                Emit::Unchanged
            }
            BodyKind::EventStream => self.feed_stream(chunk),
        };
        (emit, self.first_token && !had_first)
    }

    fn feed_stream(&mut self, chunk: &[u8]) -> Emit {
        if self.bypass {
            return Emit::Unchanged;
        }
        // Collected first: the parser is borrowed while it calls back.
        let mut completed: Vec<(Vec<u8>, Option<SseEvent>)> = Vec::new();
        let fed = self.parser.feed_raw_with(chunk, |raw, event| completed.push((raw.to_vec(), event)));
        let mut out = Vec::new();
        for (raw, event) in completed {
            if self.keep_raw_event(&raw, event.as_ref()) && self.strip_usage_chunk {
                out.extend_from_slice(&raw);
            }
        }
        if fed.is_err() {
            if let Emit::Replace(held) = self.give_up() {
                out.extend_from_slice(&held);
            }
        }
        // Unchanged when every byte of the chunk went out as it came (no usage chunk dropped,
        // nothing held for the next one): the glue then writes nothing back.
        if self.strip_usage_chunk && out != chunk {
            Emit::Replace(out)
        } else {
            Emit::Unchanged
        }
    }

    /// Stops parsing: releases what was held and lets the rest through.
    fn give_up(&mut self) -> Emit {
        self.problem = Some(ReadProblem::EventTooLarge);
        self.bypass = true;
        let held = self.parser.take_pending();
        if self.strip_usage_chunk {
            Emit::Replace(held)
        } else {
            Emit::Unchanged
        }
    }

    /// Reads one completed event and returns whether the client should get
    /// its bytes.
    fn keep_raw_event(&mut self, raw: &[u8], event: Option<&SseEvent>) -> bool {
        let keep = match event {
            Some(event) => self.handle_event(event),
            None => !(self.dropped_last && raw == b"\n"),
        };
        self.dropped_last = !keep;
        keep
    }

    fn handle_event(&mut self, event: &SseEvent) -> bool {
        if event.is_done_marker() {
            return true;
        }
        let Ok(mut data) = serde_json::from_str::<Value>(&event.data) else { return true };
        self.usage.absorb_event(&data);
        let shape = aigw_shared::api::response_shape(&data, None).unwrap_or(ApiShape::AnthropicMessages);
        let mut text_bytes = 0u64;
        aigw_shared::api::stream_texts_mut(shape, &mut data, &mut |_, text| text_bytes += text.len() as u64);
        if text_bytes > 0 {
            self.first_token = true;
            self.output_text_bytes += text_bytes;
        }
        if self.strip_usage_chunk && is_usage_only_chunk(&data) {
            self.stripped_events += 1;
            return false;
        }
        true
    }

    /// Ends the body: returns the bytes still owed to the client (the
    /// unfinished tail of a stream, minus a dropped usage chunk), if the glue
    /// must replace the last chunk.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        match self.kind {
            BodyKind::Json => {
                if self.problem.is_none() && !self.json.is_empty() {
                    match serde_json::from_slice::<Value>(&self.json) {
                        Ok(mut body) => {
                            self.usage.absorb_body(&body);
                            // The output text's size only matters for the estimate made when
                            // the response reports no usage: walk the texts only then.
                            if self.usage.usage().is_none() {
                                let shape = aigw_shared::api::response_shape(&body, None)
                                    .unwrap_or(ApiShape::AnthropicMessages);
                                let mut text_bytes = 0u64;
                                aigw_shared::api::response_texts_mut(shape, &mut body, &mut |_, text| {
                                    text_bytes += text.len() as u64
                                });
                                self.output_text_bytes += text_bytes;
                            }
                        }
                        Err(_) => self.problem = Some(ReadProblem::Malformed),
                    }
                }
                self.json = Vec::new();
                None
            }
            BodyKind::EventStream if !self.bypass => {
                let (tail, event) = self.parser.finish_raw();
                if tail.is_empty() {
                    return if self.strip_usage_chunk { Some(Vec::new()) } else { None };
                }
                let keep = self.keep_raw_event(&tail, event.as_ref());
                if self.strip_usage_chunk {
                    Some(if keep { tail } else { Vec::new() })
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }

    /// What the response said about itself (model, finish reasons, error).
    pub fn facts(&self) -> &ResponseFacts {
        &self.usage.facts
    }

    pub fn problem(&self) -> Option<ReadProblem> {
        self.problem
    }

    pub fn first_token_seen(&self) -> bool {
        self.first_token
    }

    /// Output text seen, in bytes (for the estimate when no usage came). A JSON body that
    /// reports usage is not walked for its texts: then this stays 0.
    pub fn output_text_bytes(&self) -> u64 {
        self.output_text_bytes
    }

    pub fn is_event_stream(&self) -> bool {
        self.kind == BodyKind::EventStream
    }

    pub fn stripped_events(&self) -> u32 {
        self.stripped_events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_JSON: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#;

    const ANTHROPIC_JSON: &str = r#"{"id":"m1","type":"message","role":"assistant","model":"claude-3-5-sonnet","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":20,"cache_creation_input_tokens":7}}"#;

    const OPENAI_SSE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo\"}}],\"usage\":null}\n\n\
: keep-alive\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n\
data: [DONE]\n\n";

    const ANTHROPIC_SSE: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":0}}}\r\n\r\n\
event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n\
event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"日本\"}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":7}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

    fn run(kind: BodyKind, strip: bool, chunks: &[&[u8]]) -> (Option<Usage>, Vec<u8>, bool) {
        let mut tracker = ResponseTracker::new(kind, strip, 1 << 20);
        let mut client = Vec::new();
        for chunk in chunks {
            match tracker.feed(chunk).0 {
                Emit::Unchanged => client.extend_from_slice(chunk),
                Emit::Replace(bytes) => client.extend_from_slice(&bytes),
            }
        }
        if let Some(tail) = tracker.finish() {
            client.extend_from_slice(&tail);
        }
        (tracker.usage(), client, tracker.first_token_seen())
    }

    fn splits(body: &str) -> Vec<Vec<Vec<u8>>> {
        let bytes = body.as_bytes();
        let mut all = vec![vec![bytes.to_vec()]];
        for cut in 0..=bytes.len() {
            all.push(vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
        }
        all.push(bytes.iter().map(|b| vec![*b]).collect());
        all
    }

    #[test]
    fn openai_json_usage() {
        let (usage, client, _) = run(BodyKind::Json, false, &[OPENAI_JSON.as_bytes()]);
        assert_eq!(usage, Some(Usage { input: 12, output: 3, cached: 4, cache_creation: 0, reasoning: 0 }));
        assert_eq!(client, OPENAI_JSON.as_bytes());
    }

    #[test]
    fn anthropic_json_usage_counts_cache_in_input() {
        let (usage, _, _) = run(BodyKind::Json, false, &[ANTHROPIC_JSON.as_bytes()]);
        assert_eq!(usage, Some(Usage { input: 37, output: 5, cached: 20, cache_creation: 7, reasoning: 0 }));
    }

    #[test]
    fn every_split_gives_the_same_usage() {
        let cases = [
            (BodyKind::Json, OPENAI_JSON, Usage { input: 12, output: 3, cached: 4, cache_creation: 0, reasoning: 0 }),
            (
                BodyKind::Json,
                ANTHROPIC_JSON,
                Usage { input: 37, output: 5, cached: 20, cache_creation: 7, reasoning: 0 },
            ),
            (
                BodyKind::EventStream,
                OPENAI_SSE,
                Usage { input: 9, output: 2, cached: 0, cache_creation: 0, reasoning: 0 },
            ),
            (
                BodyKind::EventStream,
                ANTHROPIC_SSE,
                Usage { input: 30, output: 15, cached: 5, cache_creation: 0, reasoning: 0 },
            ),
        ];
        for (kind, body, expected) in cases {
            for strip in [false, true] {
                for chunks in splits(body) {
                    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                    let (usage, _, first) = run(kind, strip, &refs);
                    assert_eq!(usage, Some(expected), "{kind:?} strip={strip} chunks={}", chunks.len());
                    assert!(first);
                }
            }
        }
    }

    #[test]
    fn anthropic_deltas_are_not_summed() {
        let (usage, _, _) = run(BodyKind::EventStream, false, &[ANTHROPIC_SSE.as_bytes()]);
        // 7 then 15: the last value, never 1 + 7 + 15.
        assert_eq!(usage.map(|u| u.output), Some(15));
    }

    #[test]
    fn usage_chunk_is_stripped_at_every_split_and_nothing_else_changes() {
        let expected = OPENAI_SSE.replace(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
            "",
        );
        assert_ne!(expected, OPENAI_SSE);
        for chunks in splits(OPENAI_SSE) {
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let (_, client, _) = run(BodyKind::EventStream, true, &refs);
            assert_eq!(String::from_utf8(client).unwrap(), expected, "chunks={}", chunks.len());
            let (_, untouched, _) = run(BodyKind::EventStream, false, &refs);
            assert_eq!(untouched, OPENAI_SSE.as_bytes());
        }
    }

    #[test]
    fn complete_events_are_released_at_once() {
        let mut tracker = ResponseTracker::new(BodyKind::EventStream, true, 1 << 20);
        let first = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choi";
        let (emit, first_token) = tracker.feed(first.as_bytes());
        assert_eq!(emit, Emit::Replace(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".to_vec()));
        assert!(first_token);
        let (emit, first_token) = tracker.feed(b"ces\":[]}\n\n");
        assert_eq!(emit, Emit::Replace(b"data: {\"choices\":[]}\n\n".to_vec()));
        assert!(!first_token);
    }

    #[test]
    fn unterminated_final_event_is_handled() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}";
        let (usage, client, _) = run(BodyKind::EventStream, true, &[body.as_bytes()]);
        assert_eq!(usage.map(|u| u.total()), Some(2));
        assert_eq!(client, b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n");
    }

    #[test]
    fn responses_api_usage() {
        let body = r#"{"id":"r","object":"response","output":[],"usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":60},"output_tokens":20,"total_tokens":120}}"#;
        let (usage, _, _) = run(BodyKind::Json, false, &[body.as_bytes()]);
        assert_eq!(usage, Some(Usage { input: 100, output: 20, cached: 60, cache_creation: 0, reasoning: 0 }));
        let stream = "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":6}}}\n\n";
        let (usage, _, _) = run(BodyKind::EventStream, false, &[stream.as_bytes()]);
        assert_eq!(usage.map(|u| u.total()), Some(11));
        let reasoning = r#"{"object":"response","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":2},"output_tokens":30,"output_tokens_details":{"reasoning_tokens":24},"total_tokens":40}}"#;
        let (usage, _, _) = run(BodyKind::Json, false, &[reasoning.as_bytes()]);
        assert_eq!(usage, Some(Usage { input: 10, output: 30, cached: 2, cache_creation: 0, reasoning: 24 }));
    }

    #[test]
    fn responses_stream_output_is_seen_and_measured() {
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"output\":[]}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\"}\n\n";
        let mut tracker = ResponseTracker::new(BodyKind::EventStream, false, 1 << 20);
        let (_, first) = tracker.feed(stream.as_bytes());
        assert!(first, "the first delta is the first token");
        assert_eq!(tracker.output_text_bytes(), 5);
    }

    #[test]
    fn embeddings_and_completions_usage() {
        let embeddings = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let (usage, _, _) = run(BodyKind::Json, false, &[embeddings.as_bytes()]);
        assert_eq!(usage, Some(Usage { input: 8, ..Usage::default() }));
        let completion = r#"{"object":"text_completion","choices":[{"index":0,"text":"Hi there","finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#;
        let mut tracker = ResponseTracker::new(BodyKind::Json, false, 1 << 20);
        tracker.feed(completion.as_bytes());
        tracker.finish();
        assert_eq!(tracker.usage(), Some(Usage { input: 4, output: 2, ..Usage::default() }));
        // With usage reported, the texts are not walked (their size only feeds the estimate).
        assert_eq!(tracker.output_text_bytes(), 0);
        let without_usage =
            r#"{"object":"text_completion","choices":[{"index":0,"text":"Hi there","finish_reason":"stop"}]}"#;
        let mut tracker = ResponseTracker::new(BodyKind::Json, false, 1 << 20);
        tracker.feed(without_usage.as_bytes());
        tracker.finish();
        assert_eq!((tracker.usage(), tracker.output_text_bytes()), (None, 8));
    }

    #[test]
    fn malformed_and_oversized_bodies_are_reported_not_fatal() {
        let mut tracker = ResponseTracker::new(BodyKind::Json, false, 1 << 20);
        tracker.feed(b"{\"usage\": {\"prompt_");
        tracker.finish();
        assert_eq!(tracker.usage(), None);
        assert_eq!(tracker.problem(), Some(ReadProblem::Malformed));

        let mut tracker = ResponseTracker::new(BodyKind::Json, false, 8);
        tracker.feed(OPENAI_JSON.as_bytes());
        tracker.finish();
        assert_eq!(tracker.problem(), Some(ReadProblem::TooLarge));

        // Garbage SSE data is ignored; the stream still passes.
        let (usage, client, _) =
            run(BodyKind::EventStream, true, &[b"data: not json\n\n", b"data: {\"usage\": 5}\n\n"]);
        assert_eq!(usage, None);
        assert_eq!(client, b"data: not json\n\ndata: {\"usage\": 5}\n\n");
    }

    #[test]
    fn bare_cr_streams_give_usage_as_events_end() {
        // Regression: only `\n` ended a line, so a bare-`\r` stream was read
        // as one event at the very end.
        let bare_cr = ANTHROPIC_SSE.replace("\r\n", "\r");
        for strip in [false, true] {
            for chunks in splits(&bare_cr) {
                let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                let (usage, client, first) = run(BodyKind::EventStream, strip, &refs);
                assert_eq!(usage, Some(Usage { input: 30, output: 15, cached: 5, cache_creation: 0, reasoning: 0 }));
                assert_eq!(client, bare_cr.as_bytes());
                assert!(first);
            }
        }
        let mut tracker = ResponseTracker::new(BodyKind::EventStream, false, 1 << 20);
        let (_, first_token) = tracker.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\r");
        assert!(first_token, "the event is read when its blank line arrives, not at the end");
    }

    #[test]
    fn a_stripped_usage_chunk_takes_its_split_crlf_along() {
        let usage_event = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\r\n\r";
        let (usage, client, _) = run(BodyKind::EventStream, true, &[usage_event.as_bytes(), b"\ndata: [DONE]\r\n\r\n"]);
        assert_eq!(usage.map(|u| u.total()), Some(2));
        assert_eq!(client, b"data: [DONE]\r\n\r\n");
    }

    #[test]
    fn a_long_line_in_small_pieces_costs_linear_work() {
        // Regression: the line-end search restarted at the start of a pending
        // line on every chunk. Work is counted, not timed.
        let work = |line_bytes: usize| {
            let mut tracker = ResponseTracker::new(BodyKind::EventStream, true, 1 << 20);
            let mut wire = b"data: ".to_vec();
            wire.resize(line_bytes, b'9');
            wire.extend_from_slice(b"\n\n");
            let mut client = Vec::new();
            for piece in wire.chunks(16) {
                if let Emit::Replace(bytes) = tracker.feed(piece).0 {
                    client.extend_from_slice(&bytes);
                }
            }
            assert_eq!(client, wire);
            tracker.parser.bytes_examined()
        };
        let (small, large) = (work(64 * 1024), work(256 * 1024));
        assert!(small <= 2 * (64 * 1024 + 2), "{small}");
        assert!(large <= 4 * small + 64, "4x input took {large} vs {small}");
    }

    #[test]
    fn an_endless_event_stops_parsing_but_not_the_stream() {
        let mut tracker = ResponseTracker::new(BodyKind::EventStream, true, 1 << 20);
        let big = vec![b'x'; DEFAULT_MAX_EVENT_BYTES / 2 + 1];
        let mut client = Vec::new();
        let chunks =
            [b"data: ".as_slice(), &big, &big, b"\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n"];
        for chunk in chunks {
            match tracker.feed(chunk).0 {
                Emit::Unchanged => client.extend_from_slice(chunk),
                Emit::Replace(bytes) => client.extend_from_slice(&bytes),
            }
        }
        assert_eq!(tracker.problem(), Some(ReadProblem::EventTooLarge));
        assert_eq!(client, chunks.concat());
    }
}
