//! The entry points, each called the way its filter calls it, natively.
//!
//! Seeds come from the test corpora: the JSON examples of every filter's
//! README and JSON Schema (the same ones the config tests parse), and the
//! request, response and stream bodies the unit tests use.

use crate::{random_pieces, Rng, Target};
use aigw_shared::api::ApiShape;
use aigw_shared::attributes::{envoy_value, Source};
use aigw_shared::host::fake::FakeHost;
use aigw_shared::sse::{SseEvent, SseParser};
use serde_json::{json, Value};
use std::rc::Rc;

/// Every target, in the order reports list them.
pub fn all() -> Vec<Target> {
    vec![
        Target { name: "sse_parser", seeds: stream_seeds, run: sse_parser },
        Target { name: "attribute_decode", seeds: attribute_seeds, run: attribute_decode },
        Target { name: "attribute_source", seeds: source_seeds, run: attribute_source },
        Target { name: "config_pii_mask", seeds: pii_mask_configs, run: config_pii_mask },
        Target { name: "config_prompt_template", seeds: prompt_template_configs, run: config_prompt_template },
        Target { name: "config_token_counter", seeds: token_counter_configs, run: config_token_counter },
        Target { name: "config_model_router", seeds: model_router_configs, run: config_model_router },
        Target { name: "request_masking", seeds: request_seeds, run: request_masking },
        Target { name: "response_masking", seeds: response_seeds, run: response_masking },
        Target { name: "stream_masking", seeds: stream_seeds, run: stream_masking },
        Target { name: "usage_parsing", seeds: usage_seeds, run: usage_parsing },
        Target { name: "prompt_counting", seeds: request_seeds, run: prompt_counting },
        Target { name: "tokenizing", seeds: text_seeds, run: tokenizing },
        Target { name: "translate_request", seeds: request_seeds, run: translate_request },
        Target { name: "translate_response", seeds: response_seeds, run: translate_response },
        Target { name: "translate_stream", seeds: stream_seeds, run: translate_stream },
        Target { name: "planning", seeds: request_seeds, run: planning },
        Target { name: "templates", seeds: template_request_seeds, run: templates },
        Target { name: "template_text", seeds: text_seeds, run: template_text },
        Target { name: "retrieval_reply", seeds: retrieval_seeds, run: retrieval_reply },
    ]
}

// ---------------------------------------------------------------------------
// Seeds.

/// The ```json blocks of a README.
fn json_blocks(markdown: &str) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find("```json") {
        let after = rest.get(start + 7..).unwrap_or_default();
        let Some(end) = after.find("```") else { break };
        blocks.push(after.get(..end).unwrap_or_default().trim().as_bytes().to_vec());
        rest = after.get(end + 3..).unwrap_or_default();
    }
    blocks
}

/// The top-level `examples` of a JSON Schema.
fn schema_examples(schema: &str) -> Vec<Vec<u8>> {
    let value: Value = serde_json::from_str(schema).unwrap_or_default();
    value
        .get("examples")
        .and_then(Value::as_array)
        .map(|examples| examples.iter().map(|example| example.to_string().into_bytes()).collect())
        .unwrap_or_default()
}

fn configs(readme: &str, schema: &str) -> Vec<Vec<u8>> {
    let mut seeds = json_blocks(readme);
    seeds.extend(schema_examples(schema));
    seeds.push(b"{}".to_vec());
    seeds
}

fn pii_mask_configs() -> Vec<Vec<u8>> {
    configs(
        include_str!("../../../filters/pii-mask/README.md"),
        include_str!("../../../filters/pii-mask/config.schema.json"),
    )
}

fn prompt_template_configs() -> Vec<Vec<u8>> {
    let mut seeds = configs(
        include_str!("../../../filters/prompt-template/README.md"),
        include_str!("../../../filters/prompt-template/config.schema.json"),
    );
    seeds.push(PROMPT_TEMPLATE_CONFIG.as_bytes().to_vec());
    seeds
}

fn token_counter_configs() -> Vec<Vec<u8>> {
    configs(
        include_str!("../../../filters/token-counter/README.md"),
        include_str!("../../../filters/token-counter/config.schema.json"),
    )
}

fn model_router_configs() -> Vec<Vec<u8>> {
    let mut seeds = configs(
        include_str!("../../../filters/model-router/README.md"),
        include_str!("../../../filters/model-router/config.schema.json"),
    );
    seeds.push(MODEL_ROUTER_CONFIG.as_bytes().to_vec());
    seeds
}

const OPENAI_REQUEST: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":[{"type":"text","text":"Mail jane.doe@example.com or call +1 415 555 0134"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"card\":\"4111 1111 1111 1111\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"IBAN DE89370400440532013000"}],"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"card":{"type":"string"}}}}}]}"#;

const ANTHROPIC_REQUEST: &str = r#"{"model":"claude-3-5-sonnet","max_tokens":100,"system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":[{"type":"text","text":"SSN 123-45-6789"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"lookup","input":{"q":"10.0.0.1","nested":{"deep":["sk-abcdefghijklmnopqrstuvwxyz012345"]}}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"found"},{"type":"tool_result","content":"inner"}]}]}]}"#;

const EMBEDDINGS_REQUEST: &str =
    r#"{"model":"text-embedding-3-small","input":["hello world","jane@example.com"],"encoding_format":"float"}"#;

fn request_seeds() -> Vec<Vec<u8>> {
    vec![
        OPENAI_REQUEST.as_bytes().to_vec(),
        ANTHROPIC_REQUEST.as_bytes().to_vec(),
        EMBEDDINGS_REQUEST.as_bytes().to_vec(),
        br#"{"model":"fast","messages":[]}"#.to_vec(),
        br#"{"model":"anthropic/claude-3-haiku","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":5}"#
            .to_vec(),
    ]
}

fn template_request_seeds() -> Vec<Vec<u8>> {
    let mut seeds = request_seeds();
    seeds.push(br#"{"model":"m","template":"summary","variables":{"text":"call 555 0134","style":"prose"}}"#.to_vec());
    seeds.push(br#"{"model":"m","template":"sentiment-fr","variables":{"text":"{{text}}"},"messages":[]}"#.to_vec());
    seeds.push(br#"{"model":"m","template":"rag","variables":{"question":"why?"}}"#.to_vec());
    seeds
}

const OPENAI_RESPONSE: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Write to jane.doe@example.com","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"x\":\"4111111111111111\"}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#;

const ANTHROPIC_RESPONSE: &str = r#"{"id":"m1","type":"message","role":"assistant","model":"claude-3-5-sonnet","content":[{"type":"text","text":"Hi +1 415 555 0134"},{"type":"tool_use","id":"t","name":"f","input":{"a":["b"]}}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":20,"cache_creation_input_tokens":7}}"#;

const ANTHROPIC_ERROR: &str = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;

fn response_seeds() -> Vec<Vec<u8>> {
    vec![
        OPENAI_RESPONSE.as_bytes().to_vec(),
        ANTHROPIC_RESPONSE.as_bytes().to_vec(),
        ANTHROPIC_ERROR.as_bytes().to_vec(),
        br#"{"id":"r","object":"response","output":[],"usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":60},"output_tokens":20}}"#.to_vec(),
    ]
}

const OPENAI_STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Call +1 415\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" 555 0134 or jane@exa\"}}],\"usage\":null}\n\n\
: keep-alive\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mple.com\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n\
data: [DONE]\n\n";

const ANTHROPIC_STREAM: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":0}}}\r\n\r\n\
event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n\
event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"日本 4111 1111\"}}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" 1111 1111\"}}\r\n\r\n\
event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\": 1}\"}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":15}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

const RESPONSES_STREAM: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"r\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"delta\":\"mail jo@exa\"}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"delta\":\"mple.com\"}\n\n\
event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":3,\"output_index\":1,\"delta\":\"{\\\"to\\\": \\\"a\\\\u0040b.com\\\"}\"}\n\n\
event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":4,\"output_index\":0,\"content_index\":0,\"text\":\"mail jo@example.com\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":5,\"response\":{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"mail jo@example.com\"}]},{\"type\":\"function_call\",\"arguments\":\"{}\"}],\"usage\":{\"input_tokens\":5,\"input_tokens_details\":{\"cached_tokens\":1},\"output_tokens\":6,\"output_tokens_details\":{\"reasoning_tokens\":2},\"total_tokens\":11}}}\n\n";

/// A long number printed in 5-digit events (the stream from issue #23).
fn digit_stream() -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..200 {
        out.extend_from_slice(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"12345\"}}]}\n\n");
    }
    out
}

fn stream_seeds() -> Vec<Vec<u8>> {
    vec![
        OPENAI_STREAM.as_bytes().to_vec(),
        ANTHROPIC_STREAM.as_bytes().to_vec(),
        ANTHROPIC_STREAM.replace("\r\n", "\r").into_bytes(),
        RESPONSES_STREAM.as_bytes().to_vec(),
        b"data: {\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"ssn 123-45-\"}]}\n\ndata: {\"choices\":[{\"index\":0,\"text\":\"6789\",\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_vec(),
        digit_stream(),
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n"
            .to_vec(),
    ]
}

fn usage_seeds() -> Vec<Vec<u8>> {
    let mut seeds = stream_seeds();
    seeds.extend(response_seeds());
    seeds
}

fn text_seeds() -> Vec<Vec<u8>> {
    vec![
        b"Summarise in {{style}}: {{text}}".to_vec(),
        "Héllo wörld, 日本語のテキスト 🙂 and code: fn main() { println!(\"hi\"); }".as_bytes().to_vec(),
        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
        b"1234567890 1234567890 1234567890".to_vec(),
        b"{{#if}} {{ spaced }} {{unclosed".to_vec(),
    ]
}

fn attribute_seeds() -> Vec<Vec<u8>> {
    let values = [
        json!("user-1"),
        json!(true),
        json!(3.0),
        json!({"openai": ["gpt-4", "gpt-3.5-turbo"], "anthropic": ["claude-3-opus"]}),
        json!([["a", ["b", ["c"]]], {"k": {"v": [1.5, false]}}]),
    ];
    values.iter().map(envoy_value::encode).collect()
}

fn source_seeds() -> Vec<Vec<u8>> {
    [
        "header:x-team",
        "jwt:llms.openai",
        "route",
        "client_address",
        "route_metadata:aigw:tier",
        "metadata:f:a.b",
        "filter_state:x",
    ]
    .iter()
    .map(|text| text.as_bytes().to_vec())
    .collect()
}

fn retrieval_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"passages": [{"text": "one", "source": "a"}, "  ", "two", "three"]}"#.to_vec(),
        br#"{"passages": []}"#.to_vec(),
        br#"{"passages": [{"text": "call 555 0134"}]}"#.to_vec(),
    ]
}

// ---------------------------------------------------------------------------
// Fixed configurations the body targets run with (built once per thread: the
// scanners hold `Rc`s and compiled regexes).

const PII_MASK_CONFIG: &str = r#"{"custom_rules": [{"name": "TICKET", "pattern": "TCK-[0-9]{6}", "action": "redact"}, {"name": "WORDS", "words": ["secret plan"]}], "hash": {"salt": "fuzz"}}"#;

const PROMPT_TEMPLATE_CONFIG: &str = r#"{
    "tenant": {"from": "header:x-team"},
    "platform_variables": {"user": {"from": "jwt:sub", "default": "anonymous"}},
    "decorate": {"prepend": [{"role": "system", "content": "User: {{user}}."}], "client_system_prompt": "keep_both"},
    "templates": {
        "summary": {
            "variables": {"text": {"required": true}, "style": {"default": "bullet points"}},
            "messages": [{"role": "system", "content": "Summarise in {{style}}."}, {"role": "user", "content": "Text: {{text}}"}]
        },
        "sentiment-fr": {
            "variables": {"text": {"required": true}},
            "defaults": {"temperature": 0, "max_tokens": 5},
            "messages": [{"role": "user", "content": "{{text}}"}]
        },
        "rag": {
            "variables": {"question": {"required": true}},
            "messages": [{"role": "system", "content": "Context: {{context}}"}, {"role": "user", "content": "{{question}}"}]
        }
    },
    "retrieval": {"cluster": "rag", "max_passages": 3, "max_context_bytes": 256},
    "tenants": {"retail": {"decorate": {"prepend": [{"role": "system", "content": "Retail."}], "client_system_prompt": "replace"}}}
}"#;

const MODEL_ROUTER_CONFIG: &str = r#"{
    "backends": [{"name": "mock"}, {"name": "mock-b"}, {"name": "claude", "provider": "anthropic", "upstream_instance": true}],
    "aliases": {"fast": "gpt-4o-mini"},
    "models": [
        {"name": "gpt-4o-mini", "targets": [{"backend": "mock"}]},
        {"name": "split", "splits": [{"weight": 9, "targets": [{"backend": "mock"}]}, {"weight": 1, "targets": [{"backend": "mock-b"}]}]},
        {"regex": "anthropic/(.*)", "targets": [{"backend": "claude", "model": "$1"}]}
    ],
    "access": {"claim": "jwt:llms", "default": ["*"]}
}"#;

thread_local! {
    static PII_MASK: Option<pii_mask::config::Config> = pii_mask::config::from_json(Some(PII_MASK_CONFIG.as_bytes())).ok();
    static PROMPT_TEMPLATE: Option<prompt_template::config::Config> =
        prompt_template::config::from_json(Some(PROMPT_TEMPLATE_CONFIG.as_bytes())).ok();
    static MODEL_ROUTER: Option<model_router::config::Downstream> =
        match model_router::config::from_json(Some(MODEL_ROUTER_CONFIG.as_bytes())) {
            Ok(model_router::config::Config::Downstream(downstream)) => Some(*downstream),
            _ => None,
        };
}

/// Whether the fixed configurations the body targets use still load (if one
/// stopped loading, its targets would silently test nothing).
pub fn fixed_configs_load() -> Result<(), String> {
    pii_mask::config::from_json(Some(PII_MASK_CONFIG.as_bytes())).map_err(|err| format!("pii-mask: {err}"))?;
    let templates = prompt_template::config::from_json(Some(PROMPT_TEMPLATE_CONFIG.as_bytes()))
        .map_err(|err| format!("prompt-template: {err}"))?;
    if templates.default_set.retrieval.is_none() {
        return Err("prompt-template: the fixed config lost its retrieval".into());
    }
    match model_router::config::from_json(Some(MODEL_ROUTER_CONFIG.as_bytes())) {
        Ok(model_router::config::Config::Downstream(_)) => Ok(()),
        Ok(_) => Err("model-router: the fixed config is not downstream".into()),
        Err(err) => Err(format!("model-router: {err}")),
    }
}

fn shape(rng: &mut Rng) -> Option<ApiShape> {
    match rng.below(6) {
        0 => Some(ApiShape::OpenAiChat),
        1 => Some(ApiShape::AnthropicMessages),
        2 => Some(ApiShape::OpenAiResponses),
        3 => Some(ApiShape::OpenAiEmbeddings),
        4 => Some(ApiShape::OpenAiCompletions),
        _ => None,
    }
}

/// A host with a JWT claim and headers taken from the input (the same bytes
/// an attacker controls in the body may reach headers and claims too).
fn host_from(input: &[u8], rng: &mut Rng) -> FakeHost {
    let text = String::from_utf8_lossy(input.get(..input.len().min(64)).unwrap_or_default()).into_owned();
    let claim = if rng.one_in(2) { json!(["gpt-4o-mini", "anthropic/*"]) } else { json!({"mock": [text.clone()]}) };
    FakeHost::new()
        .with_header("x-team", if rng.one_in(2) { "retail" } else { &text })
        .with_property(
            &["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload", "llms"],
            envoy_value::encode(&claim),
        )
        .with_property(
            &["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload", "sub"],
            input.get(..input.len().min(32)).unwrap_or_default(),
        )
}

// ---------------------------------------------------------------------------
// Targets.

fn parse_whole(input: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new(usize::MAX);
    let mut events = parser.feed(input).unwrap_or_default();
    events.extend(parser.finish());
    events
}

/// Oracles: any cut gives the events the whole input gives, every byte comes
/// back exactly once through the raw interface, and the work counted by the
/// parser stays linear (each byte looked at a bounded number of times).
fn sse_parser(input: &[u8], rng: &mut Rng) {
    let expected = parse_whole(input);
    let mut parser = SseParser::new(usize::MAX);
    let mut events = Vec::new();
    let mut wire = Vec::new();
    for piece in random_pieces(input, rng) {
        let fed = parser.feed_raw_with(piece, |raw, event| {
            wire.extend_from_slice(raw);
            events.extend(event);
        });
        assert!(fed.is_ok(), "no cap was set");
    }
    let examined_before_finish = parser.bytes_examined();
    let (tail, last) = parser.finish_raw();
    wire.extend_from_slice(&tail);
    events.extend(last);
    assert!(events == expected, "events differ when the stream is cut");
    assert!(wire == input, "raw bytes were lost or repeated");
    assert!(
        examined_before_finish <= 2 * input.len() as u64 + 8,
        "the parser examined {examined_before_finish} bytes for {} bytes of input",
        input.len()
    );
    // With a small cap the parser refuses, it does not grow.
    let mut capped = SseParser::new(64);
    for piece in random_pieces(input, rng) {
        if capped.feed(piece).is_err() {
            break;
        }
        assert!(capped.pending_len() <= 64 + piece.len());
    }
}

/// Wraps bytes in `depth` one-element lists of Envoy's serialisation.
fn wrap_in_lists(inner: &[u8], depth: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(inner.len() + 14 * depth);
    for level in (0..depth).rev() {
        let inner_len = (inner.len() + 14 * level) as u32;
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&inner_len.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
    }
    bytes.extend_from_slice(inner);
    bytes.extend(std::iter::repeat_n(0, 2 * depth));
    bytes
}

fn attribute_decode(input: &[u8], rng: &mut Rng) {
    let nested;
    let input = if rng.one_in(4) {
        nested = wrap_in_lists(input, 1 << rng.below(14));
        &nested
    } else {
        input
    };
    if let Ok(value) = envoy_value::try_decode(input) {
        // What decodes re-encodes without trouble (the encoder recurses too).
        let _ = envoy_value::encode(&value);
    }
    let host = FakeHost::new().with_property(&["metadata", "filter_metadata", "f", "k"], input.to_vec());
    let source = Source::DynamicMetadata { filter: "f".into(), path: vec!["k".into()] };
    let _ = source.resolve(&host);
    let _ = source.resolve_json(&host);
}

fn attribute_source(input: &[u8], _rng: &mut Rng) {
    let text = String::from_utf8_lossy(input);
    if let Ok(source) = Source::parse(&text) {
        let _ = Source::parse(&source.to_string());
        let _ = source.resolve(&FakeHost::new().with_header("x-team", "blue"));
    }
}

fn config_pii_mask(input: &[u8], _rng: &mut Rng) {
    let _ = pii_mask::config::from_json(Some(input));
}

fn config_prompt_template(input: &[u8], _rng: &mut Rng) {
    let _ = prompt_template::config::from_json(Some(input));
}

fn config_token_counter(input: &[u8], _rng: &mut Rng) {
    let _ = token_counter::config::from_json(Some(input));
}

fn config_model_router(input: &[u8], _rng: &mut Rng) {
    let _ = model_router::config::from_json(Some(input));
}

fn request_masking(input: &[u8], rng: &mut Rng) {
    let shape = shape(rng);
    let collect = rng.one_in(2);
    PII_MASK.with(|config| {
        if let Some(config) = config {
            let _ = pii_mask::request::mask_request(input, shape, config, collect);
        }
    });
}

fn response_masking(input: &[u8], rng: &mut Rng) {
    let shape = shape(rng);
    PII_MASK.with(|config| {
        if let Some(config) = config {
            let mut findings = pii_mask::scan::Findings::default();
            let _ = pii_mask::response::mask_json(input, shape, config, &mut findings);
            let _ = pii_mask::response::mask_text(input, config, &mut findings);
        }
    });
}

fn stream_masking(input: &[u8], rng: &mut Rng) {
    PII_MASK.with(|config| {
        if let Some(config) = config {
            let mut masker =
                pii_mask::stream::SseMasker::new(Rc::clone(&config.response), config.hash.clone(), 1 << 20);
            let pieces = random_pieces(input, rng);
            let last = pieces.len().saturating_sub(1);
            for (index, piece) in pieces.into_iter().enumerate() {
                let _ = masker.feed(piece, index == last);
            }
        }
    });
}

/// Oracle: the usage read from random pieces is the usage read whole, and
/// without stripping the client gets the stream unchanged.
fn usage_parsing(input: &[u8], rng: &mut Rng) {
    use token_counter::usage::{BodyKind, Emit, ResponseTracker};
    let kind = match rng.below(3) {
        0 => BodyKind::Json,
        1 => BodyKind::EventStream,
        _ => BodyKind::Unreadable,
    };
    let strip = rng.one_in(2);
    let read = |pieces: Vec<&[u8]>| {
        let mut tracker = ResponseTracker::new(kind, strip, 1 << 20);
        let mut client = Vec::new();
        for piece in pieces {
            match tracker.feed(piece).0 {
                Emit::Unchanged => client.extend_from_slice(piece),
                Emit::Replace(bytes) => client.extend_from_slice(&bytes),
            }
        }
        if let Some(tail) = tracker.finish() {
            client.extend_from_slice(&tail);
        }
        if let Some(usage) = tracker.usage() {
            let _ = usage.total();
        }
        (tracker.usage(), client)
    };
    let (whole_usage, whole_client) = read(vec![input]);
    let (cut_usage, cut_client) = read(random_pieces(input, rng));
    assert!(whole_usage == cut_usage, "usage differs when the body is cut");
    if !strip {
        assert!(cut_client == input, "an unstripped stream was changed");
    } else {
        assert!(whole_client.len() <= input.len() && cut_client.len() <= input.len(), "stripping added bytes");
    }
}

fn prompt_counting(input: &[u8], rng: &mut Rng) {
    use token_counter::prompt::{count_request, RequestInfo};
    use token_counter::tokenize::{ModelMap, TokenCounter};
    let Ok(body) = serde_json::from_slice::<Value>(input) else { return };
    let info = RequestInfo::from_body(&body);
    let (counting, _) = ModelMap::default().resolve(info.model.as_deref().unwrap_or("gpt-4o"));
    let mut counter = TokenCounter::new(counting, 64 * 1024);
    let image_tokens = if rng.one_in(4) { u64::MAX / 3 } else { 765 };
    count_request(shape(rng), &body, &mut counter, image_tokens);
    let _ = counter.total();
}

fn tokenizing(input: &[u8], rng: &mut Rng) {
    use token_counter::tokenize::{ModelMap, TokenCounter};
    let text = String::from_utf8_lossy(input);
    let model = if rng.one_in(2) { "gpt-4o" } else { "gpt-4" };
    let (counting, _) = ModelMap::default().resolve(model);
    let mut counter = TokenCounter::new(counting, 64 * 1024);
    counter.text(&text);
    counter.fixed(rng.next_u64());
    let _ = counter.total();
}

fn translate_request(input: &[u8], _rng: &mut Rng) {
    use model_router::translate::request::{request_info, to_anthropic, Options};
    let Ok(body) = serde_json::from_slice::<Value>(input) else { return };
    let _ = request_info(&body);
    if let Ok(translated) = to_anthropic(&body, "claude-3-5-sonnet", &Options::default()) {
        let _ = serde_json::to_vec(&translated);
    }
}

fn translate_response(input: &[u8], rng: &mut Rng) {
    use model_router::translate::response::{error_to_openai, to_openai};
    let status = *rng.pick(&[200u32, 201, 400, 429, 500, 529, 0]).unwrap_or(&200);
    let _ = to_openai(status, input, rng.next_u64());
    let _ = error_to_openai(status, input);
}

fn translate_stream(input: &[u8], rng: &mut Rng) {
    use model_router::translate::stream::StreamTranslator;
    let mut translator = StreamTranslator::new(rng.one_in(2), rng.next_u64(), 1 << 20);
    for piece in random_pieces(input, rng) {
        let _ = translator.feed(piece);
    }
    let _ = translator.finish();
    let _ = translator.is_done();
}

fn planning(input: &[u8], rng: &mut Rng) {
    let host = host_from(input, rng);
    MODEL_ROUTER.with(|config| {
        if let Some(config) = config {
            let _ = model_router::plan::plan(config, input, &host);
        }
    });
}

fn templates(input: &[u8], rng: &mut Rng) {
    use prompt_template::request::{complete, process, Answer, Outcome};
    let host = host_from(input, rng);
    let shape = match rng.below(3) {
        0 => ApiShape::OpenAiChat,
        1 => ApiShape::AnthropicMessages,
        _ => ApiShape::OpenAiResponses,
    };
    PROMPT_TEMPLATE.with(|config| {
        let Some(config) = config else { return };
        let Ok(set) = prompt_template::tenant::select(config, &host) else { return };
        if let Ok(Outcome::Retrieve { call, pending }) = process(config, set, shape, input, &host) {
            let _ = call;
            let reply = retrieval_seeds();
            let body = rng.pick(&reply).map(Vec::as_slice);
            let answer = Answer::Response { status: Some("200"), body };
            let _ = complete(config, pending, answer, &host);
        }
    });
}

/// Template texts come from the operator's config (parsed when it loads),
/// values from the client: rendering is linear in the template plus what the
/// values add, so values stay short here (a long value times many uses would
/// only measure the size of the output).
fn template_text(input: &[u8], rng: &mut Rng) {
    use prompt_template::render::{TemplateText, Values};
    let text = String::from_utf8_lossy(input);
    if let Ok(template) = TemplateText::parse(&text) {
        let mut values = Values::new();
        let short: String = text.chars().take(64).collect();
        for name in template.variables() {
            let value = if rng.one_in(2) { short.clone() } else { "{{text}}".to_string() };
            values.insert(name.to_string(), value);
        }
        let _ = template.render(&values);
    }
}

fn retrieval_reply(input: &[u8], rng: &mut Rng) {
    PROMPT_TEMPLATE.with(|config| {
        if let Some(retrieval) = config.as_ref().and_then(|config| config.default_set.retrieval.as_ref()) {
            let status = *rng.pick(&["200", "204", "500", " 200 ", "x"]).unwrap_or(&"200");
            let _ = retrieval.passages(Some(status), Some(input));
            let query = String::from_utf8_lossy(input);
            let _ = retrieval.call(&query, "retail", Some("rag"));
        }
    });
}
