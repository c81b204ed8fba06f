//! semantic-cache on the wasmtime harness (dist/semantic-cache.wasm, Envoy's semantics): two
//! workers storing at once, eviction, TTL, corrupt shared data, embedding failures (fail-open),
//! tenant isolation, SSE replay and the admin path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};
use serde_json::{json, Value};
use std::time::Duration;

mod common;
use common::{chat_headers, embed};

const VM_ID: &str = "semantic-cache";
const INDEX_KEY: &str = "aigw.semantic_cache.index";
const ADMIN_TOKEN: &str = "harness-admin-token-0123";

fn config(max_entries: usize, ttl_seconds: u64) -> String {
    json!({
        "ttl_seconds": ttl_seconds,
        "max_entries": max_entries,
        "semantic": {"cluster": "embeddings", "threshold": 0.9, "timeout_ms": 250},
        "admin": {"path": "/aigw/cache/clear", "token": ADMIN_TOKEN}
    })
    .to_string()
}

fn worker(harness: &Harness, config: &str) -> Vm {
    let vm = harness.vm(wasm_path("semantic-cache")).config(config).vm_id(VM_ID).start();
    assert!(vm.configured(), "{:?}", vm.logs());
    vm
}

fn body(question: &str, stream: bool) -> String {
    json!({"model": "gpt-4o-mini", "temperature": 0, "stream": stream,
           "messages": [{"role": "user", "content": question}]})
    .to_string()
}

fn answer(text: &str) -> String {
    json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}})
    .to_string()
}

/// Sends a chat request for `tenant` up to the embeddings call (if any).
fn ask(vm: &Vm, tenant: &str, question: &str, stream: bool) -> Stream {
    let mut s = vm.stream();
    assert_eq!(s.send_request_headers(&chat_headers(tenant), false), Action::Continue);
    s.send_request_body(body(question, stream), true);
    s
}

/// Answers the pending embeddings call with the vector of `question`.
fn embed_answer(s: &mut Stream, question: &str) {
    let call = s.pending_http_calls().into_iter().next().expect("an embeddings call");
    assert_eq!(call.cluster, "embeddings");
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["input"], question, "the last user message is embedded");
    s.answer_http_call(
        call.token,
        200,
        &[("content-type", "application/json")],
        json!({"data": [{"embedding": embed(question)}]}).to_string(),
    );
}

/// The provider answers a forwarded request.
fn respond(s: &mut Stream, text: &str) {
    assert!(s.request_complete(), "forwarded: {:?}", s.local_reply());
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.send_response_body(answer(text), true);
    s.finish();
}

/// A full miss whose answer is stored.
fn miss_and_store(vm: &Vm, tenant: &str, question: &str, text: &str) {
    let mut s = ask(vm, tenant, question, false);
    embed_answer(&mut s, question);
    respond(&mut s, text);
    assert_eq!(s.client_response_headers().unwrap().get("x-aigw-cache"), Some("miss"));
}

/// Looks up; `Some(answer text)` on a hit.
fn lookup(vm: &Vm, tenant: &str, question: &str) -> Option<String> {
    let mut s = ask(vm, tenant, question, false);
    if let Some(reply) = s.local_reply() {
        return Some(reply.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string());
    }
    embed_answer(&mut s, question);
    let reply = s.local_reply()?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers.get("x-aigw-cache"), Some("hit"));
    Some(reply.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string())
}

const QUESTION: &str = "What is the return policy for electronics in store 12?";
const REWORDED: &str = "What is the return policy for electronics in store 12, please?";

#[test]
fn miss_then_semantic_hit_then_sse_replay() {
    let harness = Harness::new();
    let vm = worker(&harness, &config(10, 60));
    miss_and_store(&vm, "retail", QUESTION, "Thirty days.");
    assert_eq!(harness.counter("aigw.semantic_cache.stored"), 1);

    let mut s = ask(&vm, "retail", REWORDED, false);
    embed_answer(&mut s, REWORDED);
    let reply = s.local_reply().expect("a hit");
    assert_eq!(reply.headers.get("x-aigw-cache"), Some("hit"));
    let similarity: f64 = reply.headers.get("x-aigw-cache-similarity").unwrap().parse().unwrap();
    assert!((0.9..1.0).contains(&similarity), "{similarity}");
    assert_eq!(reply.json()["usage"]["aigw_cache"]["upstream_tokens"], 0);
    assert!(s.upstream_request_headers().is_none(), "a hit never reaches the provider");
    assert_eq!(s.property_str(&["aigw.cache"]).as_deref(), Some("hit"));

    // The same question again, streamed: an exact hit (no embeddings call), replayed as SSE.
    let s = ask(&vm, "retail", QUESTION, true);
    assert!(s.http_calls().is_empty());
    let reply = s.local_reply().expect("an exact hit");
    assert_eq!(reply.headers.get("content-type"), Some("text/event-stream"));
    assert_eq!(reply.headers.get("x-aigw-cache-similarity"), Some("1.000"));
    let text = reply.body_str();
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(content, "Thirty days.");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(harness.counter("aigw.semantic_cache.hit.kind.semantic"), 1);
    assert_eq!(harness.counter("aigw.semantic_cache.hit.kind.exact"), 1);
    assert_eq!(harness.histogram("aigw.semantic_cache.similarity_permille").len(), 2);
    assert_eq!(harness.counter("aigw.semantic_cache.saved_tokens.output"), 6);
    assert_eq!(harness.gauge("aigw.semantic_cache.entries"), 1);
    vm.assert_no_log_contains("return policy");
}

#[test]
fn two_workers_storing_at_once_both_keep_their_entries() {
    let harness = Harness::new();
    let cfg = config(10, 60);
    let a = worker(&harness, &cfg);
    let b = worker(&harness, &cfg);
    let mut s = ask(&a, "retail", "How do I reset my card PIN?", false);
    embed_answer(&mut s, "How do I reset my card PIN?");
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    // Worker B stores its own answer between A's read of the index and A's compare-and-swap.
    harness.after_shared_data_get(VM_ID, INDEX_KEY, move || {
        miss_and_store(&b, "retail", "Which branches open on Saturday?", "Central and North.");
    });
    s.send_response_body(answer("In the app, under Cards."), true);
    s.finish();
    assert!(harness.cas_mismatches() >= 1, "the interleaving produced a CAS conflict");
    assert_eq!(harness.counter("aigw.semantic_cache.stored"), 2);
    let c = worker(&harness, &cfg);
    assert_eq!(lookup(&c, "retail", "How do I reset my card PIN?").as_deref(), Some("In the app, under Cards."));
    assert_eq!(lookup(&c, "retail", "Which branches open on Saturday?").as_deref(), Some("Central and North."));
}

#[test]
fn the_oldest_entry_is_evicted_when_full() {
    let harness = Harness::new();
    let vm = worker(&harness, &config(2, 3600));
    miss_and_store(&vm, "retail", "first question about loans", "1");
    harness.advance_clock(Duration::from_secs(1));
    miss_and_store(&vm, "retail", "second question about savings", "2");
    harness.advance_clock(Duration::from_secs(1));
    miss_and_store(&vm, "retail", "third question about mortgages", "3");
    assert_eq!(harness.counter("aigw.semantic_cache.evicted"), 1);
    assert_eq!(lookup(&vm, "retail", "first question about loans"), None);
    assert_eq!(lookup(&vm, "retail", "third question about mortgages").as_deref(), Some("3"));
    assert_eq!(lookup(&vm, "retail", "second question about savings").as_deref(), Some("2"));
}

#[test]
fn entries_expire_after_their_ttl() {
    let harness = Harness::new();
    let vm = worker(&harness, &config(4, 60));
    miss_and_store(&vm, "retail", QUESTION, "Thirty days.");
    harness.advance_clock(Duration::from_secs(59));
    assert!(lookup(&vm, "retail", QUESTION).is_some());
    harness.advance_clock(Duration::from_secs(2));
    assert_eq!(lookup(&vm, "retail", QUESTION), None);
    assert_eq!(lookup(&vm, "retail", REWORDED), None);
}

#[test]
fn corrupt_shared_data_is_ignored_and_counted() {
    let harness = Harness::new();
    let vm = worker(&harness, &config(4, 60));
    miss_and_store(&vm, "retail", QUESTION, "Thirty days.");
    let (mut answer_record, _) = harness.shared_data(VM_ID, "aigw.semantic_cache.0.answer").unwrap();
    *answer_record.last_mut().unwrap() ^= 0x55;
    harness.set_shared_data(VM_ID, "aigw.semantic_cache.0.answer", &answer_record);
    harness.set_shared_data(VM_ID, "aigw.semantic_cache.0.vector", b"garbage");
    assert_eq!(lookup(&vm, "retail", QUESTION), None, "exact: the answer record fails its checksum");
    assert_eq!(lookup(&vm, "retail", REWORDED), None, "semantic: the vector record is unreadable");
    assert!(harness.counter("aigw.semantic_cache.corrupt") >= 2);
    // An unreadable index: lookups miss, the next store rebuilds it.
    harness.set_shared_data(VM_ID, INDEX_KEY, b"not an index");
    miss_and_store(&vm, "retail", QUESTION, "Thirty days.");
    assert_eq!(lookup(&vm, "retail", QUESTION).as_deref(), Some("Thirty days."));
    assert!(!vm.logs().iter().any(|l| l.message.contains("panicked")));
}

#[test]
fn embedding_timeouts_and_errors_fail_open() {
    let harness = Harness::new();
    let vm = worker(&harness, &config(4, 60));
    // Timeout (Envoy delivers no headers and no body).
    let mut s = ask(&vm, "retail", QUESTION, false);
    let call = s.pending_http_calls().into_iter().next().unwrap();
    assert_eq!(call.timeout_ms, 250);
    assert!(!s.request_complete(), "the request waits for the embeddings call");
    s.fail_http_call(call.token);
    assert_eq!(s.upstream_request_body(), body(QUESTION, false).into_bytes(), "forwarded unchanged");
    respond(&mut s, "Thirty days.");
    assert_eq!(harness.counter("aigw.semantic_cache.embedding.failed.reason.no_response"), 1);
    // Stored for exact matches only.
    assert_eq!(lookup(&vm, "retail", QUESTION).as_deref(), Some("Thirty days."));
    // A 500 and a body that is not an embedding.
    for (status, reply, reason) in [(500, "{}", "bad_status"), (200, "{\"data\": []}", "bad_body")] {
        let mut s = ask(&vm, "retail", REWORDED, false);
        let call = s.pending_http_calls().into_iter().next().unwrap();
        s.answer_http_call(call.token, status, &[], reply);
        assert!(s.request_complete(), "{reason}: forwarded");
        assert!(s.local_reply().is_none());
        assert_eq!(harness.counter(&format!("aigw.semantic_cache.embedding.failed.reason.{reason}")), 1);
    }
}

#[test]
fn entries_never_cross_tenants_and_admin_clears_one_tenant() {
    let harness = Harness::new();
    let vm = worker(&harness, &config(8, 60));
    miss_and_store(&vm, "retail", QUESTION, "Retail answer.");
    assert_eq!(lookup(&vm, "wealth", QUESTION), None, "exact key of another tenant");
    assert_eq!(lookup(&vm, "wealth", REWORDED), None, "semantic search of another tenant");
    miss_and_store(&vm, "wealth", QUESTION, "Wealth answer.");
    assert_eq!(lookup(&vm, "wealth", QUESTION).as_deref(), Some("Wealth answer."));
    assert_eq!(lookup(&vm, "retail", QUESTION).as_deref(), Some("Retail answer."));

    let clear = |token: &str| {
        let mut s = vm.stream();
        s.send_request_headers(
            &[
                (":method", "POST"),
                (":path", "/aigw/cache/clear"),
                ("x-aigw-cache-admin-token", token),
                ("x-aigw-cache-tenant", "retail"),
            ],
            true,
        );
        s.local_reply().expect("answered by the filter")
    };
    assert_eq!(clear("wrong-token-wrong-token").status, 403);
    let reply = clear(ADMIN_TOKEN);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"tenant": "retail", "cleared": 1}));
    assert_eq!(lookup(&vm, "retail", QUESTION), None);
    assert_eq!(lookup(&vm, "wealth", QUESTION).as_deref(), Some("Wealth answer."));
    vm.assert_no_log_contains(ADMIN_TOKEN);
}

#[test]
fn no_cache_bypasses_the_lookup_and_no_store_the_storage() {
    let harness = Harness::new();
    let vm = worker(&harness, &config(4, 60));
    miss_and_store(&vm, "retail", QUESTION, "Old answer.");
    let mut s = vm.stream();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-aigw-client", "retail"),
        ("cache-control", "no-cache"),
    ];
    s.send_request_headers(&headers, false);
    s.send_request_body(body(QUESTION, false), true);
    embed_answer(&mut s, QUESTION);
    respond(&mut s, "New answer.");
    let response = s.client_response_headers().unwrap();
    assert_eq!(response.get("x-aigw-cache"), Some("bypass"));
    assert_eq!(response.get("x-aigw-cache-bypass"), Some("no_cache"));
    assert_eq!(lookup(&vm, "retail", QUESTION).as_deref(), Some("New answer."), "the fresh answer replaced the old");
}

#[test]
fn anthropic_messages_are_cached_and_replayed_as_anthropic_events() {
    let harness = Harness::new();
    let vm = worker(&harness, &config(4, 60));
    let request = |stream: bool| {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "temperature": 0, "stream": stream,
               "system": "Be brief.", "messages": [{"role": "user", "content": QUESTION}]})
        .to_string()
    };
    let headers = [
        (":method", "POST"),
        (":path", "/v1/messages"),
        ("content-type", "application/json"),
        ("x-aigw-client", "retail"),
    ];
    let mut s = vm.stream();
    s.send_request_headers(&headers, false);
    s.send_request_body(request(false), true);
    embed_answer(&mut s, QUESTION);
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Thirty days."}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 4}});
    s.send_response_body(message.to_string(), true);
    s.finish();
    assert_eq!(harness.counter("aigw.semantic_cache.stored"), 1);

    // The same request, streamed: replayed as Anthropic's events.
    let mut s = vm.stream();
    s.send_request_headers(&headers, false);
    s.send_request_body(request(true), true);
    let reply = s.local_reply().expect("an exact hit");
    assert_eq!(reply.headers.get("content-type"), Some("text/event-stream"));
    let text = reply.body_str();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(text.contains(r#""text":"Thirty days.""#), "{text}");
    assert!(text.contains(r#""stop_reason":"end_turn""#), "{text}");
    // An OpenAI request with the same words is another API: no hit across shapes.
    assert_eq!(lookup(&vm, "retail", QUESTION), None);
}
