//! semantic-cache with the external vector store (`store.chroma`) on the wasmtime harness
//! (dist/semantic-cache.wasm): the calls it sends to Chroma (collection, query with the tenant
//! filter; the upsert from the root context's tick, the response never waiting for it), a hit on
//! another replica from the store's answer, and fail-open on every store failure. Each `Harness` is one Envoy replica (its own shared
//! data); the test plays Chroma.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{wasm_path, Action, Harness, HttpCall, Stream, Vm};
use serde_json::{json, Value};

mod common;
use common::{chat_headers, embed};

const VM_ID: &str = "semantic-cache";
const COLLECTIONS: &str = "/api/v2/tenants/default_tenant/databases/default_database/collections";
const QUESTION: &str = "What is the return policy for electronics in store 12?";
const REWORDED: &str = "What is the return policy for electronics in store 12, please?";
const COLLECTION_ID: &str = "5c1e6f0e-8f5e-4d3c-9a7b-2f1d0c9e8b7a";

const ADMIN_TOKEN: &str = "harness-admin-token-0123";

fn config() -> String {
    json!({
        "semantic": {"cluster": "embeddings", "threshold": 0.9, "timeout_ms": 250},
        "admin": {"path": "/aigw/cache/clear", "token": ADMIN_TOKEN},
        "store": {"chroma": {"cluster": "chroma", "authority": "chroma.internal", "collection": "answers",
                             "timeout_ms": 300, "headers": {"x-chroma-token": "store-token"}}}
    })
    .to_string()
}

/// One replica: its own harness (shared data, stats), one worker.
fn replica() -> (Harness, Vm) {
    let harness = Harness::new();
    let vm = harness.vm(wasm_path("semantic-cache")).config(config()).vm_id(VM_ID).start();
    assert!(vm.configured(), "{:?}", vm.logs());
    (harness, vm)
}

fn body(question: &str) -> String {
    json!({"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": question}]}).to_string()
}

fn answer(text: &str) -> String {
    json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}})
    .to_string()
}

/// A chat request of `tenant`, through its embeddings call.
fn ask(vm: &Vm, tenant: &str, question: &str) -> Stream {
    let mut s = vm.stream();
    assert_eq!(s.send_request_headers(&chat_headers(tenant), false), Action::Continue);
    s.send_request_body(body(question), true);
    let call = s.pending_http_calls().into_iter().next().expect("an embeddings call");
    assert_eq!(call.cluster, "embeddings");
    let reply = json!({"data": [{"embedding": embed(question)}]}).to_string();
    s.answer_http_call(call.token, 200, &[("content-type", "application/json")], reply);
    s
}

/// The one pending call of a stream, which must go to Chroma at `path`.
fn store_call(s: &Stream, path: &str) -> (HttpCall, Value) {
    check_call(s.pending_http_calls(), path)
}

/// The root context's write: after a tick, the one pending call of the VM.
fn write_call(vm: &Vm, path: &str) -> (HttpCall, Value) {
    assert_eq!(vm.tick_period(), Some(std::time::Duration::from_millis(50)));
    vm.tick();
    check_call(vm.pending_http_calls(), path)
}

fn check_call(pending: Vec<HttpCall>, path: &str) -> (HttpCall, Value) {
    assert_eq!(pending.len(), 1, "{pending:?}");
    let call = pending.into_iter().next().unwrap();
    assert_eq!(call.cluster, "chroma");
    assert_eq!(call.timeout_ms, 300);
    assert_eq!(call.headers.get(":method"), Some("POST"));
    assert_eq!(call.headers.get(":path"), Some(path));
    assert_eq!(call.headers.get(":authority"), Some("chroma.internal"));
    assert_eq!(call.headers.get("x-chroma-token"), Some("store-token"));
    assert_eq!(call.headers.get("content-type"), Some("application/json"));
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    (call, sent)
}

fn reply_json(s: &mut Stream, call: &HttpCall, status: u16, body: &Value) {
    s.answer_http_call(call.token, status, &[("content-type", "application/json")], body.to_string());
}

const NOTHING: &str =
    r#"{"ids":[[]],"embeddings":[[]],"documents":[[]],"uris":null,"metadatas":[[]],"distances":null}"#;

/// Chroma's answer to a query that found what `upsert` wrote.
fn found(upsert: &Value) -> Value {
    json!({"ids": [[upsert["ids"][0]]], "embeddings": [[upsert["embeddings"][0]]],
           "documents": [[upsert["documents"][0]]], "metadatas": [[upsert["metadatas"][0]]],
           "uris": null, "distances": null, "include": ["documents", "embeddings", "metadatas"]})
}

/// The tenant filter of a query, and that it is the first condition of the `$and`.
fn tenant_filter(query: &Value) -> String {
    query["where"]["$and"][0]["tenant"]["$eq"].as_str().expect("a tenant filter").to_string()
}

/// Replica A misses everywhere, forwards, stores, and writes the answer to Chroma while holding the
/// last chunk; replica B answers the reworded question from Chroma's answer; another tenant misses.
#[test]
fn a_second_replica_answers_from_the_store() {
    let (harness_a, a) = replica();
    let mut s = ask(&a, "retail", QUESTION);
    assert!(!s.request_complete(), "the request waits for the store");
    let (call, sent) = store_call(&s, COLLECTIONS);
    assert_eq!(sent, json!({"name": "answers", "get_or_create": true, "metadata": {"hnsw:space": "cosine"}}));
    reply_json(&mut s, &call, 200, &json!({"id": COLLECTION_ID, "name": "answers"}));
    let (call, query) = store_call(&s, &format!("{COLLECTIONS}/{COLLECTION_ID}/query"));
    let retail = tenant_filter(&query);
    assert_eq!(retail.len(), 16);
    assert!(query["where"]["$and"][1]["context"]["$eq"].is_string());
    assert!(query["where"]["$and"][2]["expires_s"]["$gt"].is_u64());
    assert_eq!(query["n_results"], 1);
    let vector = query["query_embeddings"][0].as_array().unwrap();
    assert_eq!(vector.len(), 64);
    assert!(!query.to_string().contains("return policy"), "no prompt text goes to the store");
    s.answer_http_call(call.token, 200, &[], NOTHING);
    assert!(s.request_complete(), "a miss is forwarded");
    assert_eq!(s.upstream_request_body(), body(QUESTION).into_bytes());

    // The provider answers: delivered at once, unchanged; the answer is written on the next tick.
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    assert_eq!(s.send_response_body(answer("Thirty days."), true), Action::Continue);
    assert!(s.response_complete(), "the response does not wait for the store");
    assert_eq!(s.client_response_body(), answer("Thirty days.").into_bytes());
    assert_eq!(s.client_response_headers().unwrap().get("x-aigw-cache"), Some("miss"));
    s.finish();
    let (call, upsert) = write_call(&a, &format!("{COLLECTIONS}/{COLLECTION_ID}/upsert"));
    assert_eq!(upsert["metadatas"][0]["tenant"], retail);
    assert_eq!(upsert["metadatas"][0]["context"], query["where"]["$and"][1]["context"]["$eq"]);
    assert_eq!(upsert["embeddings"][0], query["query_embeddings"][0]);
    let document: Value = serde_json::from_str(upsert["documents"][0].as_str().unwrap()).unwrap();
    assert_eq!(document["choices"][0]["message"]["content"], "Thirty days.");
    assert!(upsert["ids"][0].as_str().unwrap().starts_with(&format!("{retail}-")));
    a.answer_http_call(call.token, 200, &[], "{}");
    assert_eq!(harness_a.counter("aigw.semantic_cache.store.written"), 1);
    a.tick();
    assert!(a.pending_http_calls().is_empty(), "nothing left to write");
    assert_eq!(harness_a.counter("aigw.semantic_cache.stored"), 1);

    // Replica B: its own shared data is empty; Chroma has A's entry.
    let (harness_b, b) = replica();
    let mut s = ask(&b, "retail", REWORDED);
    let (call, _) = store_call(&s, COLLECTIONS);
    reply_json(&mut s, &call, 200, &json!({"id": COLLECTION_ID}));
    let (call, query) = store_call(&s, &format!("{COLLECTIONS}/{COLLECTION_ID}/query"));
    assert_eq!(tenant_filter(&query), retail, "the tenant filter is the tenant's, on every replica");
    reply_json(&mut s, &call, 200, &found(&upsert));
    let reply = s.local_reply().expect("a hit from the store");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers.get("x-aigw-cache"), Some("hit"));
    let similarity: f64 = reply.headers.get("x-aigw-cache-similarity").unwrap().parse().unwrap();
    assert!((0.9..1.0).contains(&similarity), "{similarity}");
    assert_eq!(reply.json()["choices"][0]["message"]["content"], "Thirty days.");
    assert_eq!(reply.json()["usage"]["aigw_cache"]["upstream_tokens"], 0);
    assert!(!s.request_complete(), "nothing reached the provider");
    assert_eq!(harness_b.counter("aigw.semantic_cache.hit.kind.semantic"), 1);

    // The collection id is kept by the VM: the next lookup queries at once. Another tenant is
    // filtered as itself; a store that answered with retail's entry anyway is not served.
    let mut s = ask(&b, "wealth", QUESTION);
    let (call, query) = store_call(&s, &format!("{COLLECTIONS}/{COLLECTION_ID}/query"));
    assert_ne!(tenant_filter(&query), retail);
    reply_json(&mut s, &call, 200, &found(&upsert));
    assert!(s.local_reply().is_none());
    assert!(s.request_complete(), "a miss");
    assert_eq!(harness_b.counter("aigw.semantic_cache.store_failed.reason.bad_body"), 1);

    // Below the threshold: computed here against the returned vector.
    let mut s = ask(&b, "retail", "Completely unrelated words about shipping times");
    let (call, _) = store_call(&s, &format!("{COLLECTIONS}/{COLLECTION_ID}/query"));
    reply_json(&mut s, &call, 200, &found(&upsert));
    assert!(s.local_reply().is_none());
    assert!(s.request_complete());
    assert_eq!(harness_b.counter("aigw.semantic_cache.miss"), 2);
    assert!(!b.logs().iter().any(|l| l.message.contains("panicked")));
}

/// Timeouts, errors and bad bodies from the store: the request is forwarded as a miss, the response
/// delivered whole, the failure counted by reason. Never a reply from the filter.
#[test]
fn store_failures_fail_open() {
    let (harness, vm) = replica();
    // The collection cannot be resolved (timeout): a miss.
    let mut s = ask(&vm, "retail", QUESTION);
    let (call, _) = store_call(&s, COLLECTIONS);
    s.fail_http_call(call.token);
    assert!(s.request_complete());
    assert!(s.local_reply().is_none());
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.no_response"), 1);
    assert_eq!(harness.counter("aigw.semantic_cache.miss"), 1);
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    assert_eq!(s.send_response_body(answer("Thirty days."), true), Action::Continue);
    assert!(s.response_complete());
    assert_eq!(s.client_response_body(), answer("Thirty days.").into_bytes());
    assert_eq!(harness.counter("aigw.semantic_cache.stored"), 1, "kept in this replica's shared data");
    s.finish();
    // The root context resolves the collection before writing, and that times out too: dropped.
    let (call, _) = write_call(&vm, COLLECTIONS);
    vm.fail_http_call(call.token);
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.no_response"), 2);
    vm.tick();
    assert!(vm.pending_http_calls().is_empty(), "the queue was dropped");

    // Resolved now; then each kind of bad query answer.
    let mut s = ask(&vm, "retail", "Another question about store hours");
    let (call, _) = store_call(&s, COLLECTIONS);
    reply_json(&mut s, &call, 200, &json!({"id": COLLECTION_ID}));
    let (call, _) = store_call(&s, &format!("{COLLECTIONS}/{COLLECTION_ID}/query"));
    s.answer_http_call(call.token, 500, &[], r#"{"error":"InternalError"}"#);
    assert!(s.request_complete());
    let query_path = format!("{COLLECTIONS}/{COLLECTION_ID}/query");
    let cases: [(u16, &str, &str); 4] = [
        (200, "<html>proxy error</html>", "bad_body"),
        (200, r#"{"ids":[["x"]],"embeddings":[[[1.0,"x"]]],"documents":[["a"]],"metadatas":[[{}]]}"#, "bad_body"),
        (
            400,
            r#"{"error":"InvalidArgumentError","message":"Collection expecting embedding with dimension of 3"}"#,
            "bad_status",
        ),
        (404, r#"{"error":"NotFoundError"}"#, "not_found"),
    ];
    for (i, (status, reply, reason)) in cases.into_iter().enumerate() {
        let mut s = ask(&vm, "retail", &format!("Question {i} about gift cards"));
        let (call, _) = store_call(&s, &query_path);
        s.answer_http_call(call.token, status, &[], reply);
        assert!(s.request_complete(), "{reason}: forwarded");
        assert!(s.local_reply().is_none(), "{reason}: no reply from the filter");
    }
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.bad_status"), 2);
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.bad_body"), 2);
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.not_found"), 1);
    // After a 404 the collection is resolved (and created) again.
    let mut s = ask(&vm, "retail", "Where is store 12?");
    let (call, _) = store_call(&s, COLLECTIONS);
    reply_json(&mut s, &call, 200, &json!({"id": "0bc1d2e3-0000-4000-8000-00000000abcd"}));
    let (call, _) = store_call(&s, &format!("{COLLECTIONS}/0bc1d2e3-0000-4000-8000-00000000abcd/query"));
    s.answer_http_call(call.token, 200, &[], NOTHING);
    assert!(s.request_complete());
    // A write refused with a 500: counted, nothing else.
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    assert_eq!(s.send_response_body(answer("Main street."), true), Action::Continue);
    assert_eq!(s.client_response_body(), answer("Main street.").into_bytes());
    let (call, _) = write_call(&vm, &format!("{COLLECTIONS}/0bc1d2e3-0000-4000-8000-00000000abcd/upsert"));
    vm.answer_http_call(call.token, 500, &[], "{}");
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.bad_status"), 3);
    assert_eq!(harness.counter("aigw.semantic_cache.store.written"), 0);
    assert_eq!(harness.counter("aigw.semantic_cache.miss"), 7);
    assert!(!vm.logs().iter().any(|l| l.message.contains("panicked")));
}

/// The store's cluster is unknown to Envoy: the call cannot be sent, the request goes on.
#[test]
fn an_unknown_store_cluster_fails_open() {
    let harness = Harness::new();
    let vm = harness.vm(wasm_path("semantic-cache")).config(config()).vm_id(VM_ID).clusters(&["embeddings"]).start();
    assert!(vm.configured(), "{:?}", vm.logs());
    let mut s = ask(&vm, "retail", QUESTION);
    assert!(s.pending_http_calls().is_empty());
    assert!(s.request_complete(), "forwarded at once");
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.dispatch_failed"), 1);
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    assert_eq!(s.send_response_body(answer("Thirty days."), true), Action::Continue);
    assert!(s.response_complete());
    vm.tick();
    assert!(vm.http_calls().iter().all(|call| call.cluster != "chroma"), "nothing could be sent");
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.dispatch_failed"), 2);
}

fn admin_clear(vm: &Vm, tenant: &str) -> Stream {
    let mut s = vm.stream();
    let headers = [
        (":method", "POST"),
        (":path", "/aigw/cache/clear"),
        ("x-aigw-cache-admin-token", ADMIN_TOKEN),
        ("x-aigw-cache-tenant", tenant),
    ];
    assert_eq!(s.send_request_headers(&headers, true), Action::Pause);
    s
}

/// The admin path clears the tenant in shared data and in the store (the reply waits for the store).
#[test]
fn the_admin_path_clears_the_store_too() {
    let (harness, vm) = replica();
    let mut s = admin_clear(&vm, "retail");
    assert!(s.local_reply().is_none(), "waits for the store");
    let (call, _) = store_call(&s, COLLECTIONS);
    reply_json(&mut s, &call, 200, &json!({"id": COLLECTION_ID}));
    let (call, sent) = store_call(&s, &format!("{COLLECTIONS}/{COLLECTION_ID}/delete"));
    let retail = sent["where"]["tenant"]["$eq"].as_str().unwrap().to_string();
    assert_eq!(retail.len(), 16);
    reply_json(&mut s, &call, 200, &json!({"deleted": 4}));
    let reply = s.local_reply().expect("the admin reply");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"tenant": "retail", "cleared": 0, "store_deleted": 4}));
    assert!(!s.request_complete(), "never forwarded");

    // The same tenant id as the lookups filter on.
    let mut q = ask(&vm, "retail", QUESTION);
    let (call, query) = store_call(&q, &format!("{COLLECTIONS}/{COLLECTION_ID}/query"));
    assert_eq!(tenant_filter(&query), retail);
    q.answer_http_call(call.token, 200, &[], NOTHING);

    // The store fails: 502, shared data cleared all the same, counted.
    let mut s = admin_clear(&vm, "wealth");
    let (call, sent) = store_call(&s, &format!("{COLLECTIONS}/{COLLECTION_ID}/delete"));
    assert_ne!(sent["where"]["tenant"]["$eq"], retail);
    s.fail_http_call(call.token);
    let reply = s.local_reply().expect("the admin reply");
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json(), json!({"tenant": "wealth", "cleared": 0, "store_error": "no_response"}));
    assert_eq!(harness.counter("aigw.semantic_cache.store_failed.reason.no_response"), 1);
    assert!(!s.request_complete());
    assert!(!vm.logs().iter().any(|l| l.message.contains(ADMIN_TOKEN)));
}
