//! The built filter (dist/model-router.wasm) in the wasmtime harness: the
//! route Envoy is handed, what the upstream receives (model, credentials,
//! translated body), what the client gets back (translated JSON and SSE at
//! every split), local replies, per-attempt behaviour of the upstream
//! instance, and metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{wasm_path, Action, Harness, Headers, Stream, Vm};
use serde_json::{json, Value};

const DOWNSTREAM: &str = r#"{
    "max_body_bytes": 4096,
    "backends": [
        {"name": "mock"}, {"name": "mock-b"},
        {"name": "claude", "provider": "anthropic", "upstream_instance": true, "default_max_tokens": 321}
    ],
    "aliases": {"fast": "gpt-4o-mini"},
    "models": [
        {"name": "gpt-4o-mini", "targets": [{"backend": "mock"}]},
        {"name": "failover-demo", "route": "mock-failover",
         "targets": [{"backend": "mock", "model": "gpt-4o-mini"}, {"backend": "mock-b", "model": "gpt-4o-mini"}]},
        {"regex": "anthropic/(.*)", "targets": [{"backend": "claude", "model": "$1"}]},
        {"name": "private-llm", "targets": [{"backend": "mock-b", "model": "llama-private"}]}
    ],
    "rules": [
        {"name": "pii", "when": {"source": "filter_state:aigw.pii.detected"}, "model": "private-llm"},
        {"name": "budget", "when": {"source": "filter_state:aigw.budget.exceeded", "equals": "1"}, "models": ["anthropic/*"], "model": "fast"}
    ],
    "access": {"claim": "jwt:llms", "default": ["*"]},
    "strip_request_headers": ["x-internal-token"]
}"#;

const ANTHROPIC_SSE: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüße \u{2713}\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" 日本\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":4}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn start(harness: &Harness, config: &str) -> Vm {
    let vm = harness.vm(wasm_path("model-router")).config(config).vm_id("model-router").start();
    assert!(vm.configured(), "configuration rejected: {:?}", vm.logs());
    vm
}

/// Sends a chat request (headers, then the body in two chunks).
fn send(vm: &Vm, extra: &[(&str, &str)], body: &Value) -> Stream {
    let text = body.to_string();
    let length = text.len().to_string();
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
    ];
    headers.extend_from_slice(extra);
    let mut s = vm.stream();
    assert_eq!(
        s.send_request_headers(&headers, false),
        Action::Continue,
        "headers go on; the body is held until complete"
    );
    let (first, second) = text.as_bytes().split_at(text.len() / 2);
    assert_eq!(s.send_request_body(first, false), Action::Pause);
    s.send_request_body(second, true);
    s
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.get(name)
}

fn upstream_json(s: &Stream) -> Value {
    serde_json::from_slice(&s.upstream_request_body()).unwrap()
}

#[test]
fn routes_by_model_and_hands_envoy_the_route() {
    let harness = Harness::new();
    let vm = start(&harness, DOWNSTREAM);
    let s = send(
        &vm,
        &[
            ("authorization", "Bearer client-secret"),
            ("x-api-key", "client-key"),
            ("api-key", "client-azure-key"),
            ("x-aigw-route", "spoofed"),
            ("x-internal-token", "t"),
        ],
        &chat("fast"),
    );
    assert!(s.local_reply().is_none());
    let headers = s.upstream_request_headers().expect("forwarded");
    assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("mock"));
    for removed in ["authorization", "x-api-key", "api-key", "x-internal-token"] {
        assert_eq!(header(&headers, removed), None, "{removed} reached the upstream");
    }
    assert_eq!(s.route_cache_clears(), 1, "Envoy must re-run route matching on the new header");
    let body = upstream_json(&s);
    assert_eq!(body["model"], "gpt-4o-mini", "the alias is resolved");
    let length: usize = header(&headers, "content-length").unwrap().parse().unwrap();
    assert_eq!(length, s.upstream_request_body().len());
    assert_eq!(s.property_str(&["aigw.route.backend"]).as_deref(), Some("mock"));
    assert_eq!(s.property_str(&["aigw.route.model"]).as_deref(), Some("gpt-4o-mini"));
    let handoff: Value = serde_json::from_str(&s.property_str(&["aigw.route.handoff"]).unwrap()).unwrap();
    assert_eq!(handoff, json!({"models": {"mock": "gpt-4o-mini"}, "path": "/v1/chat/completions", "adapted": true}));
    assert_eq!(vm.counter("aigw.model_router.backend.mock.routed_requests"), 1);
    vm.assert_no_log_contains("client-secret");
    vm.assert_no_log_contains("client-key");
}

#[test]
fn failover_list_and_regex_capture() {
    let harness = Harness::new();
    let vm = start(&harness, DOWNSTREAM);
    let s = send(&vm, &[], &chat("failover-demo"));
    assert!(s.upstream_request_headers().is_some());
    assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("mock-failover"));
    let handoff: Value = serde_json::from_str(&s.property_str(&["aigw.route.handoff"]).unwrap()).unwrap();
    assert_eq!(handoff["models"], json!({"mock": "gpt-4o-mini", "mock-b": "gpt-4o-mini"}));

    // The claude backend has an upstream instance: the downstream instance routes and hands the
    // model over; path, headers and body are adapted on the backend's cluster.
    let s = send(&vm, &[], &chat("anthropic/claude-opus-4"));
    assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("claude"));
    assert_eq!(upstream_json(&s)["model"], "claude-opus-4");
    assert!(upstream_json(&s).get("max_tokens").is_none(), "translation is left to the upstream instance");
    let handoff: Value = serde_json::from_str(&s.property_str(&["aigw.route.handoff"]).unwrap()).unwrap();
    assert_eq!(
        handoff,
        json!({"models": {"claude": "claude-opus-4"}, "path": "/v1/chat/completions", "adapted": false})
    );
}

#[test]
fn local_replies_in_openai_shape() {
    let harness = Harness::new();
    let vm = start(&harness, DOWNSTREAM);

    let s = send(&vm, &[], &chat("gpt-9"));
    let reply = s.local_reply().expect("404");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], "model_not_found");
    assert!(s.upstream_request_headers().is_none(), "nothing goes upstream");

    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false);
    s.send_request_body(b"{\"model\": \"secret prompt", true);
    let reply = s.local_reply().expect("400");
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (400, Some("invalid_json")));
    assert!(!reply.body_str().contains("secret"));

    let mut s = vm.stream();
    let action = s.send_request_headers(
        &[(":method", "POST"), (":path", "/v1/chat/completions"), ("content-length", "999999")],
        false,
    );
    assert_eq!(action, Action::Pause);
    assert_eq!(s.local_reply().expect("413").status, 413);

    // The seed's claim shape: allowed models per provider.
    let mut s = vm.stream();
    s.set_jwt_payload(json!({"sub": "u1", "llms": {"openai": ["gpt-4o-mini"], "anthropic": ["claude-3-opus"]}}));
    let body = chat("failover-demo").to_string();
    s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false);
    s.send_request_body(body.as_bytes(), true);
    assert!(s.local_reply().is_none(), "failover-demo goes upstream as gpt-4o-mini, which is allowed");
    let mut s = vm.stream();
    s.set_jwt_payload(json!({"sub": "u1", "llms": {"openai": ["gpt-4o-mini"], "anthropic": ["claude-3-opus"]}}));
    let body = chat("anthropic/claude-3-haiku").to_string();
    s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false);
    s.send_request_body(body.as_bytes(), true);
    let reply = s.local_reply().expect("403");
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["code"], "model_not_allowed");
    assert_eq!(vm.counter("aigw.model_router.routing_rejected.code.model_not_allowed"), 1);
    assert_eq!(vm.counter("aigw.model_router.routing_rejected.code.model_not_found"), 1);

    // A body-less request (GET /healthz) passes without a route header, and a spoofed one is dropped.
    // (GET /v1/models is answered by the filter: models_and_count_tokens_are_answered_locally.)
    let mut s = vm.stream();
    let action = s.send_request_headers(&[(":method", "GET"), (":path", "/healthz"), ("x-aigw-route", "x")], true);
    assert_eq!(action, Action::Continue);
    assert_eq!(header(&s.upstream_request_headers().unwrap(), "x-aigw-route"), None);
}

#[test]
fn content_signal_and_budget_rules() {
    let harness = Harness::new();
    let vm = start(&harness, DOWNSTREAM);
    let body = chat("gpt-4o-mini").to_string();
    let mut s = vm.stream();
    s.set_property(&["aigw.pii.detected"], b"EMAIL_ADDRESS");
    s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false);
    s.send_request_body(body.as_bytes(), true);
    assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("mock-b"));
    assert_eq!(upstream_json(&s)["model"], "llama-private");
    assert_eq!(vm.counter("aigw.model_router.rule_matched.rule.pii"), 1);

    let body = chat("anthropic/claude-opus-4").to_string();
    let mut s = vm.stream();
    s.set_property(&["aigw.budget.exceeded"], b"1");
    s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false);
    s.send_request_body(body.as_bytes(), true);
    assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("mock"));
    assert_eq!(upstream_json(&s)["model"], "gpt-4o-mini", "the budget fallback's cheaper model");
}

/// An attempt on the `claude` backend's cluster, through its upstream instance
/// (Anthropic backends are adapted there: path and headers can only change
/// before the body is read).
fn claude_attempt(vm: &Vm, body: &Value) -> Stream {
    let mut s = vm.stream();
    s.set_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "backend"], b"claude");
    let handoff = json!({"models": {"claude": "claude-x"}, "path": "/v1/chat/completions"});
    s.set_property(&["aigw.route.handoff"], handoff.to_string().as_bytes());
    let text = body.to_string();
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-length", &text.len().to_string())];
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    s.send_request_body(text.as_bytes(), true);
    assert_eq!(header(&s.upstream_request_headers().unwrap(), ":path"), Some("/v1/messages"));
    s
}

fn upstream_vm(harness: &Harness) -> Vm {
    start(harness, UPSTREAM)
}

fn anthropic_stream(vm: &Vm, include_usage: bool) -> Stream {
    let mut body = chat("anthropic/claude-x");
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    let s = claude_attempt(vm, &body);
    assert_eq!(upstream_json(&s)["stream"], true);
    s
}

/// The OpenAI chunks a client got, as JSON, and whether `[DONE]` ended them.
fn client_chunks(s: &Stream) -> (Vec<Value>, bool) {
    let text = String::from_utf8(s.client_response_body()).unwrap();
    let mut chunks = Vec::new();
    let mut done = false;
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not an OpenAI event: {event:?}"));
        if data == "[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_str(data).unwrap());
        }
    }
    (chunks, done)
}

#[test]
fn anthropic_stream_is_translated_at_every_split() {
    let harness = Harness::new();
    let vm = upstream_vm(&harness);
    let bytes = ANTHROPIC_SSE.as_bytes();
    let mut expected: Option<Vec<u8>> = None;
    for cut in 0..=bytes.len() {
        let mut s = anthropic_stream(&vm, true);
        s.set_property(&["response", "code_details"], b"via_upstream");
        s.send_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
        s.send_response_body(&bytes[..cut], false);
        s.send_response_body(&bytes[cut..], true);
        let got = s.client_response_body();
        match &expected {
            None => {
                let (chunks, done) = client_chunks(&s);
                assert!(done);
                let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
                assert_eq!(text, "Grüße \u{2713} 日本");
                assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "length"));
                let usage = &chunks.last().unwrap()["usage"];
                assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(9), Some(4)));
                let headers = s.client_response_headers().unwrap();
                assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
                assert_eq!(header(&headers, "x-aigw-backend"), Some("claude"));
                expected = Some(got);
            }
            Some(expected) => assert_eq!(&got, expected, "split at {cut}"),
        }
    }
}

#[test]
fn stream_events_reach_the_client_as_they_complete() {
    let harness = Harness::new();
    let vm = upstream_vm(&harness);
    let mut s = anthropic_stream(&vm, false);
    s.set_property(&["response", "code_details"], b"via_upstream");
    s.send_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
    let first_event = ANTHROPIC_SSE.find("\n\n").unwrap() + 2;
    assert_eq!(s.send_response_body(&ANTHROPIC_SSE.as_bytes()[..first_event], false), Action::Continue);
    let (chunks, done) = client_chunks(&s);
    assert_eq!(chunks.len(), 1, "message_start is passed on before the rest of the stream exists");
    assert!(!done);
}

#[test]
fn anthropic_json_reply_and_errors_are_translated() {
    let harness = Harness::new();
    let vm = upstream_vm(&harness);
    let reply = json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 2}
    })
    .to_string();
    let mut s = claude_attempt(&vm, &chat("anthropic/claude-x"));
    s.set_property(&["response", "code_details"], b"via_upstream");
    let length = reply.len().to_string();
    s.send_response_headers(
        &[(":status", "200"), ("content-type", "application/json"), ("content-length", &length)],
        false,
    );
    let (first, second) = reply.as_bytes().split_at(10);
    s.send_response_body(first, false);
    s.send_response_body(second, true);
    let body: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hi");
    assert_eq!(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(body["usage"]["total_tokens"], 5);
    // The translated body's length is unknown when the headers go: no stale content-length.
    assert_eq!(header(&s.client_response_headers().unwrap(), "content-length"), None);

    let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).to_string();
    let mut s = claude_attempt(&vm, &chat("anthropic/claude-x"));
    s.set_property(&["response", "code_details"], b"via_upstream");
    s.send_response_headers(&[(":status", "529"), ("content-type", "application/json")], false);
    s.send_response_body(error.as_bytes(), true);
    let body: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(header(&s.client_response_headers().unwrap(), ":status"), Some("529"));
    assert_eq!(vm.counter("aigw.model_router.backend.claude.attempt_errors"), 1);

    // An encoded reply is a 502 from its headers on (the same as pii-mask's); a reply found unreadable
    // only at its end keeps the status that already went out and gets an error body instead.
    let mut s = claude_attempt(&vm, &chat("anthropic/claude-x"));
    s.set_property(&["response", "code_details"], b"via_upstream");
    s.send_response_headers(
        &[(":status", "200"), ("content-type", "application/json"), ("content-encoding", "gzip")],
        false,
    );
    s.send_response_body(b"\x1f\x8b\x08", true);
    assert_eq!(header(&s.client_response_headers().unwrap(), ":status"), Some("502"));
    let body: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(body["error"]["code"], "unreadable_response");
    let mut s = claude_attempt(&vm, &chat("anthropic/claude-x"));
    s.set_property(&["response", "code_details"], b"via_upstream");
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.send_response_body(b"<html>proxy error</html>", true);
    let body: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(body["error"]["code"], "upstream_invalid_response");
    assert!(!String::from_utf8_lossy(&s.client_response_body()).contains("proxy error"));
}

#[test]
fn backend_header_can_be_turned_off() {
    let harness = Harness::new();
    let config =
        DOWNSTREAM.replacen("\"max_body_bytes\": 4096,", "\"max_body_bytes\": 4096, \"backend_header\": false,", 1);
    let vm = start(&harness, &config);
    let mut s = send(&vm, &[], &chat("gpt-4o-mini"));
    s.set_property(&["response", "code_details"], b"via_upstream");
    s.send_response_headers(&[(":status", "200"), ("x-aigw-backend", "leaked")], true);
    assert_eq!(header(&s.client_response_headers().unwrap(), "x-aigw-backend"), None);
}

const UPSTREAM: &str = r#"{"mode": "upstream", "backends": [
    {"name": "claude", "provider": "anthropic"},
    {"name": "gpt"},
    {"name": "azure", "provider": "azure_openai", "api_version": "2024-10-21"}
]}"#;

/// One attempt on an aggregate cluster: the endpoint's metadata names the
/// backend, the downstream instance's hand-off is in filter state, and the
/// header map still carries what an earlier attempt set.
fn attempt(vm: &Vm, backend: &str) -> Stream {
    let mut s = vm.stream();
    s.set_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "backend"], backend.as_bytes());
    let handoff =
        json!({"models": {"claude": "claude-x", "gpt": "gpt-4o", "azure": "gpt-4o"}, "path": "/v1/chat/completions"});
    s.set_property(&["aigw.route.handoff"], handoff.to_string().as_bytes());
    let body = json!({"model": "best", "stream": false, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/messages"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "key-of-an-earlier-attempt"),
        ("authorization", "Bearer key-of-an-earlier-attempt"),
        ("content-length", "9999"),
    ];
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    s.send_request_body(body.as_bytes(), true);
    s
}

#[test]
fn upstream_instance_adapts_each_attempt_to_its_backend() {
    let harness = Harness::new();
    let vm = harness.vm(wasm_path("model-router")).config(UPSTREAM).vm_id("model-router").start();
    assert!(vm.configured(), "{:?}", vm.logs());

    let s = attempt(&vm, "gpt");
    let headers = s.upstream_request_headers().unwrap();
    assert_eq!(header(&headers, ":path"), Some("/v1/chat/completions"), "the original path, not the last attempt's");
    assert_eq!(header(&headers, "x-aigw-attempt-backend"), Some("gpt"));
    for stale in ["anthropic-version", "x-api-key", "authorization"] {
        assert_eq!(header(&headers, stale), None, "{stale} from an earlier attempt");
    }
    assert_eq!(upstream_json(&s)["model"], "gpt-4o");
    assert_eq!(header(&headers, "content-length").unwrap().parse::<usize>().unwrap(), s.upstream_request_body().len());

    let s = attempt(&vm, "claude");
    let headers = s.upstream_request_headers().unwrap();
    assert_eq!(header(&headers, ":path"), Some("/v1/messages"));
    assert_eq!(header(&headers, "anthropic-version"), Some("2023-06-01"));
    assert_eq!(header(&headers, "x-aigw-attempt-backend"), Some("claude"));
    assert_eq!(upstream_json(&s)["model"], "claude-x");
    assert_eq!(upstream_json(&s)["max_tokens"], 4096);

    let mut s = attempt(&vm, "azure");
    let headers = s.upstream_request_headers().unwrap();
    assert_eq!(header(&headers, ":path"), Some("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"));
    s.send_response_headers(&[(":status", "503")], true);
    assert_eq!(header(&s.client_response_headers().unwrap(), "x-aigw-backend"), Some("azure"));

    assert_eq!(vm.counter("aigw.model_router.backend.gpt.attempts"), 1);
    assert_eq!(vm.counter("aigw.model_router.backend.azure.attempt_errors"), 1);

    // A request the downstream instance already adapted (no upstream instances configured there) is
    // not adapted twice.
    let mut s = vm.stream();
    s.set_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "backend"], b"claude");
    let handoff = json!({"models": {"claude": "claude-x"}, "path": "/v1/chat/completions", "adapted": true});
    s.set_property(&["aigw.route.handoff"], handoff.to_string().as_bytes());
    let anthropic_body = json!({"model": "claude-x", "max_tokens": 5, "messages": []}).to_string();
    assert_eq!(s.send_request_headers(&[(":method", "POST"), (":path", "/v1/messages")], false), Action::Continue);
    s.send_request_body(anthropic_body.as_bytes(), true);
    assert_eq!(s.upstream_request_body(), anthropic_body.as_bytes());

    // An endpoint that names no configured backend is a configuration error: 500, logged.
    let mut s = vm.stream();
    s.set_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "backend"], b"unknown");
    s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false);
    assert_eq!(s.local_reply().unwrap().status, 500);
    assert!(vm.logs_contain("names no configured backend"));
}

#[test]
fn bad_configuration_is_refused_with_the_field() {
    let harness = Harness::new();
    let vm = harness
        .vm(wasm_path("model-router"))
        .config(r#"{"backends": [{"name": "a"}], "models": [{"name": "m", "targets": [{"backend": "b"}]}]}"#)
        .vm_id("model-router")
        .start();
    assert!(!vm.configured());
    assert!(vm.logs_contain("model-router: invalid configuration: models[0].targets[0].backend: unknown backend `b`"));
}

/// HTTP/2 trailers end a request like end of stream does: the same route, 404 and 403.
#[test]
fn a_body_ended_by_trailers_is_routed_and_refused_like_any_other() {
    let harness = Harness::new();
    let vm = start(&harness, DOWNSTREAM);
    let post = |model: &str| {
        let mut s = vm.stream();
        let body = chat(model).to_string();
        assert_eq!(
            s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false),
            Action::Continue
        );
        assert_eq!(s.send_request_body(body.as_bytes(), false), Action::Pause);
        s.send_request_trailers(&[("x-checksum", "1")]);
        s
    };
    let s = post("fast");
    assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("mock"));
    assert_eq!(upstream_json(&s)["model"], "gpt-4o-mini");
    assert_eq!(s.route_cache_clears(), 1);
    let s = post("gpt-9");
    assert_eq!(s.local_reply().expect("404").status, 404);
    assert!(s.upstream_request_body().is_empty());
}

// ---- Anthropic Messages clients ------------------------------------------------------------------

/// Sends an Anthropic Messages request (to `path`) through the downstream instance.
fn send_messages(vm: &Vm, path: &str, body: &Value) -> Stream {
    let text = body.to_string();
    let mut s = vm.stream();
    let headers = [
        (":method", "POST"),
        (":path", path),
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
    ];
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    s.send_request_body(text.as_bytes(), true);
    s
}

const CHAT_SSE: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße \u{2713}\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn messages_for_an_openai_backend_are_translated_both_ways_at_every_split() {
    let harness = Harness::new();
    let vm = start(&harness, DOWNSTREAM);
    let body = json!({"model": "fast", "max_tokens": 20, "system": "brief", "stream": true,
                      "messages": [{"role": "user", "content": "hello"}]});
    let bytes = CHAT_SSE.as_bytes();
    let mut expected: Option<Vec<u8>> = None;
    for cut in 0..=bytes.len() {
        let mut s = send_messages(&vm, "/v1/messages", &body);
        assert!(s.local_reply().is_none());
        assert_eq!(s.property_str(&["aigw.route"]).as_deref(), Some("mock"));
        let sent = upstream_json(&s);
        assert_eq!(
            sent,
            json!({"model": "gpt-4o-mini", "max_tokens": 20, "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "system", "content": "brief"}, {"role": "user", "content": "hello"}]})
        );
        s.set_property(&["response", "code_details"], b"via_upstream");
        s.send_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
        s.send_response_body(&bytes[..cut], false);
        s.send_response_body(&bytes[cut..], true);
        let got = s.client_response_body();
        match &expected {
            None => {
                let text = String::from_utf8(got.clone()).unwrap();
                let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
                assert_eq!(
                    names,
                    [
                        "message_start",
                        "content_block_start",
                        "content_block_delta",
                        "content_block_stop",
                        "content_block_start",
                        "content_block_delta",
                        "content_block_delta",
                        "content_block_stop",
                        "message_delta",
                        "message_stop"
                    ]
                );
                assert!(text.contains("\"stop_reason\":\"tool_use\""));
                assert!(text.contains("\"partial_json\":\"{\\\"a\\\":\""));
                assert!(text.contains("\"output_tokens\":4"));
                expected = Some(got);
            }
            Some(expected) => assert_eq!(&got, expected, "split at {cut}"),
        }
    }

    // JSON, and an upstream error, in Anthropic's shape.
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]});
    let mut s = send_messages(&vm, "/v1/messages", &body);
    s.set_property(&["response", "code_details"], b"via_upstream");
    let reply = json!({"id": "c", "model": "gpt-4o-mini", "choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    .to_string();
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.send_response_body(reply.as_bytes(), true);
    let out: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(out["content"], json!([{"type": "text", "text": "Hi"}]));
    assert_eq!(out["stop_reason"], "max_tokens");
    let mut s = send_messages(&vm, "/v1/messages", &body);
    s.set_property(&["response", "code_details"], b"via_upstream");
    s.send_response_headers(&[(":status", "429"), ("content-type", "application/json")], false);
    s.send_response_body(br#"{"error": {"message": "slow down", "type": "requests"}}"#, true);
    let out: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(out, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}));

    // Refused fields: 400 in Anthropic's shape, nothing forwarded.
    let s = send_messages(&vm, "/v1/messages", &json!({"model": "fast", "max_tokens": 5, "messages": [], "top_k": 2}));
    let reply = s.local_reply().expect("refused");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("top_k"));

    // Messages for Claude pass through untouched (no translation on the way back either).
    let body = json!({"model": "anthropic/claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let s = send_messages(&vm, "/v1/messages", &body);
    assert!(s.local_reply().is_none());
    assert_eq!(upstream_json(&s)["messages"], body["messages"]);
}

#[test]
fn models_and_count_tokens_are_answered_locally() {
    let harness = Harness::new();
    let vm = start(&harness, DOWNSTREAM);
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "GET"), (":path", "/v1/models")], true);
    let reply = s.local_reply().expect("answered by the filter");
    assert_eq!(reply.status, 200);
    let ids: Vec<String> =
        reply.json()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["failover-demo", "fast", "gpt-4o-mini", "private-llm"]);
    let mut s = vm.stream();
    s.set_jwt_payload(json!({"llms": ["gpt-4o-mini"]}));
    s.send_request_headers(
        &[(":method", "GET"), (":path", "/v1/models?limit=20"), ("anthropic-version", "2023-06-01")],
        true,
    );
    let reply = s.local_reply().unwrap();
    assert_eq!(reply.json()["data"][0]["type"], "model");
    let listed = reply.json();
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    // failover-demo goes upstream as gpt-4o-mini, which the claim allows (as for a request).
    assert_eq!(ids, ["failover-demo", "fast", "gpt-4o-mini"]);
    assert_eq!((&listed["first_id"], &listed["has_more"]), (&json!("failover-demo"), &json!(false)));

    // One model: its object, or the 404 of an unknown model when the caller may not use it.
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "GET"), (":path", "/v1/models/fast")], true);
    let reply = s.local_reply().expect("answered by the filter");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["id"], "fast");
    assert_eq!(reply.json()["object"], "model");
    let mut s = vm.stream();
    s.set_jwt_payload(json!({"llms": ["gpt-4o-mini"]}));
    s.send_request_headers(
        &[(":method", "GET"), (":path", "/v1/models/private-llm"), ("anthropic-version", "2023-06-01")],
        true,
    );
    let reply = s.local_reply().unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "not_found_error");
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "GET"), (":path", "/v1/models/no-such-model")], true);
    let reply = s.local_reply().unwrap();
    assert_eq!((reply.status, reply.json()["error"]["code"].clone()), (404, json!("model_not_found")));

    // count_tokens for an OpenAI-shaped backend: token-counter's count from the filter state.
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]});
    let mut s = vm.stream();
    s.set_property(&["aigw.tokens.counted"], b"17");
    let headers = [(":method", "POST"), (":path", "/v1/messages/count_tokens"), ("content-type", "application/json")];
    s.send_request_headers(&headers, false);
    s.send_request_body(body.to_string().as_bytes(), true);
    let reply = s.local_reply().expect("answered by the gateway");
    assert_eq!((reply.status, reply.json()), (200, json!({"input_tokens": 17})));
    // For Claude it goes to Anthropic.
    let body = json!({"model": "anthropic/claude-x", "messages": [{"role": "user", "content": "hello"}]});
    let s = send_messages(&vm, "/v1/messages/count_tokens", &body);
    assert!(s.local_reply().is_none());
    assert_eq!(upstream_json(&s)["model"], "claude-x");
}
