//! The mock LLM over real HTTP (no Envoy): the shapes the filters rely on,
//! the fault and timing controls, and request recording.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use aigw_e2e::http::{self, openai_stream_text, sse_data, HttpResponse};
use aigw_e2e::MockServer;
use serde_json::{json, Value};
use std::io::Read;

fn post(mock: &MockServer, path: &str, headers: &[(&str, &str)], body: &Value) -> HttpResponse {
    http::request(mock.addr(), "POST", path, headers, body.to_string().as_bytes()).unwrap()
}

fn chat(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]})
}

#[test]
fn openai_json_and_stream() {
    let mock = MockServer::start("primary").unwrap();
    let response = post(&mock, "/v1/chat/completions", &[], &chat("héllo wörld", false));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-mock-backend"), Some("primary"));
    let body = response.json();
    assert_eq!(body["choices"][0]["message"]["content"], "héllo wörld");
    assert_eq!(body["usage"]["completion_tokens"], mock_llm::reply::count_tokens("héllo wörld"));
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap())
    );

    let response = post(&mock, "/v1/chat/completions", &[("x-mock-chunks", "3")], &chat("abcdefghi", true));
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events = sse_data(&response.text());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(openai_stream_text(&response.text()), "abcdefghi");
    // role chunk + 3 content chunks + finish + usage + [DONE]
    assert_eq!(events.len(), 7);
}

#[test]
fn anthropic_json_and_stream_and_azure_path() {
    let mock = MockServer::start("m").unwrap();
    let request = json!({"model": "claude-3-5-haiku", "max_tokens": 50, "system": "sys",
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "bonjour"}]}]});
    let body = post(&mock, "/v1/messages", &[], &request).json();
    assert_eq!((body["type"].as_str(), body["content"][0]["text"].as_str()), (Some("message"), Some("bonjour")));
    assert!(body["usage"]["input_tokens"].as_u64().unwrap() >= 2);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let text = post(&mock, "/v1/messages", &[], &streamed).text();
    let types: Vec<String> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    for expected in ["content_block_start", "ping", "content_block_delta", "content_block_stop", "message_delta"] {
        assert!(types.iter().any(|t| t == expected), "{expected} missing from {types:?}");
    }
    assert!(text.contains("event: message_delta\ndata: "));

    let azure = json!({"messages": [{"role": "user", "content": "az"}]});
    let body = post(&mock, "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21", &[], &azure).json();
    assert_eq!(
        (body["model"].as_str(), body["choices"][0]["message"]["content"].as_str()),
        (Some("my-gpt"), Some("az"))
    );

    let models = http::request(mock.addr(), "GET", "/v1/models", &[], b"").unwrap().json();
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "gpt-4o-mini"));
    assert_eq!(http::request(mock.addr(), "GET", "/healthz", &[], b"").unwrap().status, 200);
}

#[test]
fn modes_faults_and_encoding() {
    let mock = MockServer::start("m").unwrap();
    let raw = chat("x", false);
    let body = post(&mock, "/v1/chat/completions", &[("x-mock-mode", "request")], &raw).json();
    assert_eq!(body["choices"][0]["message"]["content"].as_str(), Some(raw.to_string().as_str()));
    let body = post(&mock, "/v1/chat/completions", &[("x-mock-mode", "fixed:Fixed: reply")], &raw).json();
    assert_eq!(body["choices"][0]["message"]["content"], "Fixed: reply");

    let response = post(&mock, "/v1/chat/completions", &[("x-mock-status", "429"), ("x-mock-retry-after", "3")], &raw);
    assert_eq!((response.status, response.header("retry-after")), (429, Some("3")));
    assert_eq!(response.json()["error"]["type"], "rate_limit_error");
    let response = post(&mock, "/v1/messages", &[("x-mock-status", "529")], &raw);
    assert_eq!((response.status, response.json()["type"].as_str()), (529, Some("error")));
    // Faults aimed at another backend do not apply here.
    let headers = [("x-mock-status", "503"), ("x-mock-fault-backend", "other")];
    assert_eq!(post(&mock, "/v1/chat/completions", &headers, &raw).status, 200);
    assert_eq!(post(&mock, "/v1/chat/completions", &[("x-mock-mode", "bogus")], &raw).status, 400);

    let response = post(&mock, "/v1/chat/completions", &[("x-mock-encoding", "gzip")], &chat("zipped", false));
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2_decode(&response.body, &mut text);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["choices"][0]["message"]["content"], "zipped");
}

fn flate2_decode(bytes: &[u8], out: &mut String) {
    // The e2e crate does not depend on flate2; shell out to gzip, which every test machine has.
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), bytes).unwrap();
    child.stdout.take().unwrap().read_to_string(out).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn split_streams_arrive_in_small_pieces_that_reassemble() {
    let mock = MockServer::start("m").unwrap();
    // Consecutive 3-byte characters: 7-byte pieces must cut through some of them.
    let text = "naïve café ✓ 日本語のテキスト";
    let body = chat(text, true).to_string();
    let response =
        http::send(mock.addr(), "POST", "/v1/chat/completions", &[("x-mock-split", "7")], body.as_bytes()).unwrap();
    let chunks = response.chunks().unwrap();
    assert!(chunks.len() > 20, "only {} pieces", chunks.len());
    assert!(chunks.iter().all(|c| c.data.len() <= 7));
    // Some piece ends inside a multi-byte character.
    assert!(chunks.iter().any(|c| std::str::from_utf8(&c.data).is_err()));
    let all: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
    assert_eq!(openai_stream_text(&String::from_utf8(all).unwrap()), text);
}

#[test]
fn records_requests_until_cleared() {
    let mock = MockServer::start("rec").unwrap();
    post(&mock, "/v1/chat/completions", &[("x-custom", "v")], &chat("remember me", false));
    let listed = http::request(mock.addr(), "GET", "/_mock/requests", &[], b"").unwrap().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let recorded = &mock.requests()[0];
    assert_eq!((recorded.method.as_str(), recorded.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(recorded.header("X-Custom"), Some("v"));
    assert_eq!(recorded.body_json().unwrap()["messages"][1]["content"], "remember me");
    assert_eq!((recorded.response.status, recorded.response.complete), (200, true));
    assert_eq!(listed[0]["backend"], "rec");
    assert_eq!(http::request(mock.addr(), "DELETE", "/_mock/requests", &[], b"").unwrap().status, 200);
    assert!(mock.requests().is_empty());
}

#[test]
fn tool_calls_and_cache_usage_over_http() {
    let mock = MockServer::start("m").unwrap();
    let headers = [("x-mock-tool-call", r#"lookup {"id": 7}"#), ("x-mock-cached-tokens", "3")];
    let body = post(&mock, "/v1/chat/completions", &headers, &chat("a fairly long prompt for caching", false)).json();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], r#"{"id": 7}"#);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
    let request = json!({"model": "c", "max_tokens": 9, "stream": true,
                         "messages": [{"role": "user", "content": "a fairly long prompt for caching"}]});
    let text = post(&mock, "/v1/messages", &headers, &request).text();
    assert!(text.contains(r#""type":"input_json_delta""#) && text.contains(r#""stop_reason":"tool_use""#), "{text}");
}

#[test]
fn abort_after_drops_the_connection_mid_stream() {
    let mock = MockServer::start("m").unwrap();
    let body = chat("one two three four", true).to_string();
    let mut response =
        http::send(mock.addr(), "POST", "/v1/chat/completions", &[("x-mock-abort-after", "2")], body.as_bytes())
            .unwrap();
    assert_eq!(response.status, 200);
    let mut received = Vec::new();
    let end = loop {
        match response.next_chunk() {
            Ok(Some(chunk)) => received.push(chunk),
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    assert!(end.is_err(), "the stream ended cleanly");
    assert_eq!(received.len(), 2);
    let progress = &mock.requests()[0].response;
    assert_eq!((progress.writes, progress.complete), (2, false));
}
