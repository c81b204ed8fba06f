//! The one-pass build (dist/aigw.wasm) on the wasmtime harness: the stages run in the chain's order
//! inside one filter instance, each with its own configuration block, and the bytes the provider and
//! the client get are those of the separate filters: masked, decorated, counted and routed; a stage
//! that waits for a call holds the later ones; a local reply ends the chain; streams are masked at
//! every split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};
use serde_json::{json, Value};

fn config() -> Value {
    json!({
        "model-router": {
            "backends": [{"name": "mock", "provider": "openai"}],
            "models": [{"name": "gpt-4o-mini", "targets": [{"backend": "mock"}]}]
        },
        "pii-mask": {},
        "prompt-template": {"decorate": {"prepend": [{"role": "system", "content": "Be brief."}]}},
        "token-counter": {"rules": [{"name": "per-user", "key": "header:x-user", "limit": 400, "window": "hour"}]}
    })
}

fn start(harness: &Harness, config: &Value) -> Vm {
    let vm = harness.vm(wasm_path("aigw")).vm_id("aigw").config_json(config).start();
    assert!(vm.configured(), "{:?}", vm.logs());
    vm
}

fn chat(content: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": content}]}),
    )
    .unwrap()
}

/// Sends a chat request, its body in two chunks.
fn request(vm: &Vm, user: &str, body: &[u8]) -> Stream {
    let mut s = vm.stream();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-user", user),
    ];
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    let (first, second) = body.split_at(body.len() / 2);
    assert_eq!(s.send_request_body(first, false), Action::Pause);
    s.send_request_body(second, true);
    s
}

fn upstream_json(s: &Stream) -> Value {
    serde_json::from_slice(&s.upstream_request_body()).unwrap()
}

const EMAIL: &str = "jane.doe@example.com";

#[test]
fn configuration_errors_name_the_filter_and_the_field() {
    let harness = Harness::new();
    let vm = harness.vm(wasm_path("aigw")).config_json(&json!({"pii_mask": {}})).start();
    assert!(!vm.configured());
    assert!(vm.logs_contain("aigw: invalid configuration: pii_mask: unknown filter"), "{:?}", vm.logs());

    // A block the filter refuses: the filter's own error, with the field path inside its block.
    let vm = harness.vm(wasm_path("aigw")).config_json(&json!({"token-counter": {"rules": [{"name": "r"}]}})).start();
    assert!(!vm.configured());
    assert!(vm.logs_contain("token-counter: invalid configuration: rules[0]"), "{:?}", vm.logs());
    assert!(vm.logs_contain("aigw: invalid configuration: token-counter: refused by the filter"), "{:?}", vm.logs());

    let vm = harness.vm(wasm_path("aigw")).config("{}").start();
    assert!(!vm.configured());
    assert!(vm.logs_contain("no filter configured"), "{:?}", vm.logs());
}

#[test]
fn a_chat_passes_every_stage_in_order_and_back() {
    let harness = Harness::new();
    let vm = start(&harness, &config());
    assert!(vm.logs_contain("stages pii-mask → prompt-template → token-counter → model-router"), "{:?}", vm.logs());
    let mut s = request(&vm, "u1", &chat(&format!("Write to {EMAIL} please"), false));

    // pii-mask masked, prompt-template prepended, token-counter counted, model-router routed.
    assert!(s.local_reply().is_none(), "{:?}", s.local_reply());
    let up = upstream_json(&s);
    assert_eq!(up["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(up["messages"][1]["content"], "Write to [EMAIL_ADDRESS] please");
    assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("mock"));
    assert_eq!(s.property_str(&["aigw.pii.detected"]).as_deref(), Some("EMAIL_ADDRESS"));

    // The response passes the stages in reverse: the client never sees the address.
    let answer = json!({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("Mail {EMAIL}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}});
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.send_response_body(answer.to_string(), true);
    s.finish();
    let client: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(client["choices"][0]["message"]["content"], "Mail [EMAIL_ADDRESS]");
    assert_eq!(s.property_str(&["aigw.tokens.input"]).as_deref(), Some("20"));
    // token-counter's budget headers reach the client.
    let headers = s.client_response_headers().unwrap();
    assert!(headers.get("x-ratelimit-remaining-tokens").is_some(), "{headers:?}");
    assert_eq!(vm.counter("aigw.pii_mask.pii.direction.response.entity.EMAIL_ADDRESS.detected"), 1);
    vm.assert_no_log_contains(EMAIL);
}

#[test]
fn a_stage_waiting_for_a_call_holds_the_later_stages_until_its_answer() {
    let harness = Harness::new();
    let mut config = config();
    config["pii-mask"] = json!({"moderation": {"cluster": "moderation"}});
    let vm = start(&harness, &config);
    let mut s = request(&vm, "u1", &chat(&format!("Hello from {EMAIL}"), false));

    // pii-mask waits for moderation: nothing later ran, nothing went upstream.
    let calls = s.pending_http_calls();
    assert_eq!(calls.len(), 1);
    assert!(!String::from_utf8_lossy(&calls[0].body).contains(EMAIL), "the moderation call carries masked text");
    assert!(!s.request_complete());
    assert_eq!(s.property_str(&["aigw.route"]), None);

    s.answer_http_call(calls[0].token, 200, &[], json!({"results": [{"flagged": false}]}).to_string());
    // Then prompt-template, token-counter and model-router ran, and the request went on.
    assert!(s.request_complete());
    assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("mock"));
    let up = upstream_json(&s);
    assert_eq!(up["messages"][0]["content"], "Be brief.");
    assert_eq!(up["messages"][1]["content"], "Hello from [EMAIL_ADDRESS]");
}

#[test]
fn a_local_reply_ends_the_chain_and_the_later_stages_never_see_the_stream() {
    let harness = Harness::new();
    let mut config = config();
    config["token-counter"] =
        json!({"rules": [{"name": "per-user", "key": "header:x-user", "limit": 1, "window": "hour"}]});
    let vm = start(&harness, &config);
    let s = request(&vm, "u1", &chat("a prompt far longer than one token", false));
    let reply = s.local_reply().expect("token-counter refuses");
    assert_eq!(reply.status, 429);
    // model-router never ran: no route.
    assert_eq!(s.property_str(&["aigw.route"]), None);
    assert!(s.upstream_request_headers().is_none());
    // pii-mask and prompt-template ran before it.
    assert_eq!(s.property_str(&["aigw.pii.detected"]), None);
    let body: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_exceeded", "{body}");
}

#[test]
fn a_streamed_completion_is_masked_at_every_split() {
    let harness = Harness::new();
    let vm = start(&harness, &config());
    let text = format!("Write to {EMAIL} today.");
    let events: String = text
        .as_bytes()
        .chunks(5)
        .map(|piece| {
            let delta = json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": String::from_utf8_lossy(piece)}}]});
            format!("data: {delta}\n\n")
        })
        .chain(std::iter::once("data: [DONE]\n\n".to_string()))
        .collect();
    for split in 1..events.len() {
        let mut s = request(&vm, &format!("user-{split}"), &chat("hi", true));
        s.send_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
        let (first, second) = events.as_bytes().split_at(split);
        s.send_response_body(first, false);
        s.send_response_body(second, true);
        s.finish();
        let client = String::from_utf8(s.client_response_body()).unwrap();
        let streamed: String = client
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .filter_map(|event| event["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(streamed, "Write to [EMAIL_ADDRESS] today.", "split at {split}: {client}");
        assert!(client.ends_with("data: [DONE]\n\n"), "split at {split}");
    }
}
