//! The harness on our real filters (dist/*.wasm): the effects the fixture shows, on filters
//! whose configuration is stable enough to lean on. Filter-specific behaviour is tested in each
//! filter's own `tests/harness.rs`.

// Test code: a failed expectation is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};
use serde_json::{json, Value};

// ---------------------------------------------------------------- token-counter: CAS across workers

const TOKEN_COUNTER: &str = r#"{"rules":[{"name":"r","key":"header:x-user","limit":100000,"window":"hour"}]}"#;

fn token_counter(harness: &Harness) -> Vm {
    let vm = harness.vm(wasm_path("token-counter")).config(TOKEN_COUNTER).vm_id("token-counter").start();
    assert!(vm.configured(), "{:?}", vm.logs());
    vm
}

/// One chat completion for user u1 that the upstream answers with `prompt_tokens` + 3 tokens.
fn chat(vm: &Vm, prompt_tokens: u64) -> Stream {
    let mut s = vm.stream();
    let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}],"max_tokens":10}"#;
    let length = body.len().to_string();
    s.send_request_headers(
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("content-type", "application/json"),
            ("content-length", &length),
            ("x-user", "u1"),
        ],
        false,
    );
    s.send_request_body(body, true);
    assert!(s.request_complete(), "admitted: {:?}", s.local_reply());
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": 3, "total_tokens": prompt_tokens + 3});
    let response =
        json!({"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [], "usage": usage});
    s.send_response_body(response.to_string(), true);
    s.finish();
    s
}

fn remaining(stream: &Stream) -> u64 {
    let headers = stream.client_response_headers().expect("response forwarded");
    headers.get("x-ratelimit-remaining-tokens").expect("rate limit headers").parse().unwrap()
}

/// Runs: a warm-up on worker A, then worker B's request and worker A's request (interleaved:
/// B runs entirely between A's first shared-data read and A's write), then a probe.
fn budget_after(interleave: bool, warm: bool) -> (u64, u64) {
    let harness = Harness::new();
    let (a, b) = (token_counter(&harness), token_counter(&harness));
    if warm {
        chat(&a, 5);
    }
    if interleave {
        let b = b.clone();
        harness.after_any_shared_data_get("token-counter", move || {
            chat(&b, 20);
        });
    } else {
        chat(&b, 20);
    }
    chat(&a, 50);
    (remaining(&chat(&a, 1)), harness.cas_mismatches())
}

#[test]
fn token_counter_cas_conflict_between_two_workers_resolves() {
    let (serial, no_conflicts) = budget_after(false, true);
    assert_eq!(no_conflicts, 0);
    let (interleaved, conflicts) = budget_after(true, true);
    assert!(conflicts >= 1, "the interleaving must produce a CasMismatch");
    assert_eq!(interleaved, serial, "after retrying, no worker's tokens were lost");
}

/// On a key's very first write both workers would read NotFound and write with CAS 0, which
/// Envoy accepts unconditionally. token-counter creates its fixed slot keys at configure time, so
/// the interleaved first reservations still meet a real compare-and-swap.
#[test]
fn token_counter_first_write_race_loses_no_tokens() {
    let (serial, _) = budget_after(false, false);
    let (interleaved, _) = budget_after(true, false);
    assert_eq!(interleaved, serial, "a worker's first reservation was overwritten");
}

#[test]
fn token_counter_metrics_are_incremented() {
    let harness = Harness::new();
    let vm = token_counter(&harness);
    chat(&vm, 9);
    chat(&vm, 1);
    assert_eq!(vm.counter("aigw.token_counter.tokens.model.gpt-4o-mini.input"), 10);
    assert_eq!(vm.counter("aigw.token_counter.tokens.model.gpt-4o-mini.output"), 6);
}

// ---------------------------------------------------------------- prompt-template: body, local reply

fn prompt_template(harness: &Harness) -> Vm {
    let config = r#"{"decorate": {"prepend": [{"role": "system", "content": "ORG"}]}}"#;
    let vm = harness.vm(wasm_path("prompt-template")).config(config).vm_id("prompt-template").start();
    assert!(vm.configured(), "{:?}", vm.logs());
    vm
}

fn post_chat(vm: &Vm, body: &[u8]) -> Stream {
    let mut s = vm.stream();
    let length = body.len().to_string();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
    ];
    assert_eq!(
        s.send_request_headers(&headers, false),
        Action::Continue,
        "headers go on; the body is held until complete"
    );
    let (first, second) = body.split_at(body.len() / 2);
    s.send_request_body(first, false);
    s.send_request_body(second, true);
    s
}

#[test]
fn prompt_template_replaces_the_whole_body() {
    let harness = Harness::new();
    let vm = prompt_template(&harness);
    let s = post_chat(&vm, br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    let body: Value = serde_json::from_slice(&s.upstream_request_body()).unwrap();
    assert_eq!(body["messages"], json!([{"role": "system", "content": "ORG"}, {"role": "user", "content": "hi"}]));
    let headers = s.upstream_request_headers().unwrap();
    assert_eq!(headers.get("content-length"), Some(s.upstream_request_body().len().to_string().as_str()));
}

#[test]
fn prompt_template_rejects_a_broken_body_with_a_local_reply() {
    let harness = Harness::new();
    let vm = prompt_template(&harness);
    let s = post_chat(&vm, br#"{"model":"m","messages":["#);
    let reply = s.local_reply().expect("400");
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]["message"].is_string(), "OpenAI-shaped error: {}", reply.body_str());
    assert!(s.upstream_request_headers().is_none());
}
