//! semantic-cache through a real Envoy running the shipped gateway.yaml (all five filters, the mock
//! LLM serving chat completions and /v1/embeddings): the "done when" scenario.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::http::{openai_stream_text, sse_data};
use aigw_e2e::{Gateway, HttpResponse, DEMO_KEYS};
use serde_json::{json, Value};

const QUESTION: &str = "What is the return policy for electronics in store 12?";
const REWORDED: &str = "What is the return policy for electronics in store 12, please?";

fn chat(question: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "temperature": 0, "stream": stream,
           "messages": [{"role": "user", "content": question}]})
}

fn ask(gw: &Gateway, key: &str, extra: &[(&str, &str)], body: &Value) -> HttpResponse {
    let bearer = format!("Bearer {key}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    gw.chat_with(&headers, body)
}

/// Chat requests the providers received (embeddings calls go to the mock too, on another path).
fn provider_chats(gw: &Gateway) -> usize {
    gw.upstream_requests().iter().filter(|r| r.path.ends_with("/chat/completions")).count()
}

fn content(response: &HttpResponse) -> String {
    response.json()["choices"][0]["message"]["content"].as_str().expect("an answer").to_string()
}

#[test]
fn reworded_question_is_answered_from_the_cache_per_team() {
    let gw = Gateway::start();
    let (retail, _) = DEMO_KEYS[0];
    let (wealth, _) = DEMO_KEYS[1];

    // 1. The first question goes to the provider and is stored.
    let first = ask(&gw, retail, &[], &chat(QUESTION, false));
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-aigw-cache"), Some("miss"));
    assert_eq!(provider_chats(&gw), 1);
    let embeddings: Vec<_> = gw.upstream_requests().into_iter().filter(|r| r.path == "/v1/embeddings").collect();
    assert_eq!(embeddings.len(), 1, "the question was embedded");
    assert_eq!(embeddings[0].body_json().unwrap()["input"], QUESTION);

    // 2. The reworded question is a semantic hit: the provider still saw one request.
    let second = ask(&gw, retail, &[], &chat(REWORDED, false));
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.header("x-aigw-cache"), Some("hit"), "{}", second.text());
    let similarity: f64 = second.header("x-aigw-cache-similarity").unwrap().parse().unwrap();
    assert!((0.9..1.0).contains(&similarity), "similarity {similarity}");
    assert!(second.header("age").is_some());
    assert_eq!(content(&second), content(&first));
    assert_eq!(second.json()["usage"]["aigw_cache"]["upstream_tokens"], 0);
    assert_eq!(provider_chats(&gw), 1, "the provider sees one request");

    // 3. The same question from another team is a miss.
    let other_team = ask(&gw, wealth, &[], &chat(QUESTION, false));
    assert_eq!(other_team.status, 200, "{}", other_team.text());
    assert_eq!(other_team.header("x-aigw-cache"), Some("miss"));
    assert_eq!(provider_chats(&gw), 2);

    // 4. cache-control: no-cache is a bypass.
    let bypass = ask(&gw, retail, &[("cache-control", "no-cache")], &chat(QUESTION, false));
    assert_eq!(bypass.status, 200, "{}", bypass.text());
    assert_eq!(bypass.header("x-aigw-cache"), Some("bypass"));
    assert_eq!(bypass.header("x-aigw-cache-bypass"), Some("no_cache"));
    assert_eq!(provider_chats(&gw), 3);

    // 5. A streamed request after the cached JSON answer: a valid SSE stream from the cache.
    let streamed = ask(&gw, retail, &[], &chat(QUESTION, true));
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert_eq!(streamed.header("x-aigw-cache"), Some("hit"));
    assert!(streamed.header("content-type").unwrap().starts_with("text/event-stream"));
    let text = streamed.text();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap_or_else(|e| panic!("{e}: {event}"));
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    assert_eq!(openai_stream_text(&text), content(&bypass), "the answer stored last (no-cache refreshed it)");
    assert_eq!(provider_chats(&gw), 3);

    // Metrics and the access log.
    let stats = gw.stats();
    let stat = |name: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("wasmcustom.{name}: ")).and_then(|v| v.trim().parse::<u64>().ok()))
            .unwrap_or(0)
    };
    assert_eq!(stat("aigw.semantic_cache.hit.kind.semantic"), 1, "{stats}");
    assert_eq!(stat("aigw.semantic_cache.hit.kind.exact"), 1, "{stats}");
    assert_eq!(stat("aigw.semantic_cache.bypass.reason.no_cache"), 1, "{stats}");
    assert!(stat("aigw.semantic_cache.stored") >= 3, "{stats}");
}

#[test]
fn admin_path_clears_one_team() {
    let gw = Gateway::start();
    let (retail, _) = DEMO_KEYS[0];
    assert_eq!(ask(&gw, retail, &[], &chat(QUESTION, false)).header("x-aigw-cache"), Some("miss"));
    assert_eq!(ask(&gw, retail, &[], &chat(QUESTION, false)).header("x-aigw-cache"), Some("hit"));
    let denied = gw.request(
        "POST",
        "/aigw/cache/clear",
        &[("x-aigw-cache-admin-token", "not-the-token-at-all"), ("x-aigw-cache-tenant", "retail")],
        b"",
    );
    assert_eq!(denied.status, 403, "{}", denied.text());
    let cleared = gw.request(
        "POST",
        "/aigw/cache/clear",
        &[("x-aigw-cache-admin-token", "aigw-demo-cache-admin-token-change-me"), ("x-aigw-cache-tenant", "retail")],
        b"",
    );
    assert_eq!(cleared.status, 200, "{}", cleared.text());
    assert_eq!(cleared.json()["cleared"], 1);
    assert_eq!(ask(&gw, retail, &[], &chat(QUESTION, false)).header("x-aigw-cache"), Some("miss"));
}
