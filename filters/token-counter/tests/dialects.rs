//! The built filter (dist/token-counter.wasm) on the wasmtime harness for the
//! OpenAI dialects beside chat: exact usage from Responses JSON and from
//! `response.completed` at every split (cached and reasoning tokens too),
//! embeddings usage with no output reserved, legacy completions streams with
//! the usage chunk injected and hidden, and a budget that refuses each dialect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};
use serde_json::{json, Value};

fn start(harness: &Harness, config: &Value) -> Vm {
    let vm = harness.vm(wasm_path("token-counter")).vm_id("token-counter").config_json(config).start();
    assert!(vm.configured(), "{:?}", vm.logs());
    vm
}

fn request(vm: &Vm, user: &str, path: &str, body: &Value) -> Stream {
    let mut s = vm.stream();
    let action = s.send_request_headers(
        &[(":method", "POST"), (":path", path), ("content-type", "application/json"), ("x-user", user)],
        false,
    );
    assert_eq!(action, Action::Continue);
    s.send_request_body(body.to_string(), true);
    s
}

fn respond(s: &mut Stream, content_type: &str, chunks: &[&[u8]]) {
    s.send_response_headers(&[(":status", "200"), ("content-type", content_type)], false);
    for (i, chunk) in chunks.iter().enumerate() {
        s.send_response_body(chunk, i + 1 == chunks.len());
    }
    s.finish();
}

fn state(s: &Stream, name: &str) -> Option<String> {
    s.property_str(&[name])
}

const RESPONSES_SSE: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"r\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"output_index\":0,\"content_index\":0,\"delta\":\"Hé\"}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"output_index\":0,\"content_index\":0,\"delta\":\"llo\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":40,\"input_tokens_details\":{\"cached_tokens\":16},\"output_tokens\":30,\"output_tokens_details\":{\"reasoning_tokens\":24},\"total_tokens\":70}}}\n\n";

#[test]
fn responses_usage_from_json_and_from_response_completed_at_every_split() {
    let harness = Harness::new();
    let vm = start(&harness, &json!({}));
    let body = json!({"model": "gpt-4o-mini", "instructions": "Be brief.", "input": "hello world", "stream": true});
    let sse = RESPONSES_SSE.as_bytes();
    for cut in 0..=sse.len() {
        let mut s = request(&vm, "u", "/v1/responses", &body);
        respond(&mut s, "text/event-stream", &[&sse[..cut], &sse[cut..]]);
        assert_eq!(s.client_response_body(), sse.to_vec(), "a Responses stream passes untouched");
        assert_eq!(state(&s, "aigw.tokens.input").as_deref(), Some("40"), "cut at {cut}");
        assert_eq!(state(&s, "aigw.tokens.output").as_deref(), Some("30"), "cut at {cut}");
    }
    let runs = sse.len() as u64 + 1;
    assert_eq!(vm.counter("aigw.token_counter.tokens.model.gpt-4o-mini.cached"), 16 * runs);
    assert_eq!(vm.counter("aigw.token_counter.tokens.model.gpt-4o-mini.reasoning"), 24 * runs);

    let json_body = json!({"id": "r", "object": "response", "status": "completed", "output": [],
        "usage": {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3, "total_tokens": 10}});
    let mut s = request(&vm, "u", "/v1/responses", &json!({"model": "gpt-4o-mini", "input": "hi"}));
    respond(&mut s, "application/json", &[json_body.to_string().as_bytes()]);
    assert_eq!(state(&s, "aigw.tokens.total").as_deref(), Some("10"));
}

#[test]
fn embeddings_and_completions_usage_and_budgets() {
    let harness = Harness::new();
    let config = json!({"rules": [{"name": "per-user", "key": "header:x-user", "limit": 60, "window": "hour"}],
        "reservation": {"default_output_tokens": 40}});
    let vm = start(&harness, &config);

    // Embeddings: input tokens only, nothing reserved for output.
    let embed = json!({"model": "text-embedding-3-small", "input": ["hello world", "x"]});
    let mut s = request(&vm, "e", "/v1/embeddings", &embed);
    let reply = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
        "model": "text-embedding-3-small", "usage": {"prompt_tokens": 3, "total_tokens": 3}});
    respond(&mut s, "application/json", &[reply.to_string().as_bytes()]);
    assert_eq!(state(&s, "aigw.tokens.input").as_deref(), Some("3"));
    assert_eq!(state(&s, "aigw.tokens.output").as_deref(), Some("0"));

    // Completions stream: usage injected upstream, its chunk hidden from the client.
    let mut s = request(
        &vm,
        "c",
        "/v1/completions",
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "stream": true}),
    );
    let sent: Value = serde_json::from_slice(&s.upstream_request_body()).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let chunks = "data: {\"id\":\"c\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"Hi\",\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"c\",\"object\":\"text_completion\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n\
data: [DONE]\n\n";
    respond(&mut s, "text/event-stream", &[chunks.as_bytes()]);
    let client = String::from_utf8(s.client_response_body()).unwrap();
    assert!(!client.contains("\"usage\""), "{client}");
    assert!(client.contains("\"text\":\"Hi\""), "{client}");
    assert_eq!(state(&s, "aigw.tokens.total").as_deref(), Some("2"));

    // A budget of 60 tokens: a Responses request reserving 40 output tokens fits once, not twice.
    let ask = json!({"model": "gpt-4o-mini", "input": "hello"});
    let mut first = request(&vm, "r", "/v1/responses", &ask);
    assert!(first.local_reply().is_none(), "the first request fits");
    let second = request(&vm, "r", "/v1/responses", &ask);
    let refused = second.local_reply().expect("the second request is refused while the first holds its reservation");
    assert_eq!(refused.status, 429);
    let error: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    first.finish();
}
