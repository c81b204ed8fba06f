//! Anthropic Messages as a client API, through a real Envoy running the shipped gateway.yaml: the
//! real Anthropic Python SDK (as Claude Code would call it) on a Claude model (passed through to the
//! `anthropic` mock) and on `gpt-4o-mini` (translated to chat completions for the OpenAI-shaped
//! `mock`), count_tokens, errors, the model list; the raw bytes of translated streams; and PII and
//! budgets on `/v1/messages` as on `/v1/chat/completions`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test helpers outside #[test] fns

use aigw_e2e::{jwt, repo_root, Gateway, MockServer, RecordedRequest, DEMO_KEYS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;

const RETAIL: &str = DEMO_KEYS[0].0;
const WEALTH: &str = DEMO_KEYS[1].0;

fn chat_requests(mock: &MockServer) -> Vec<RecordedRequest> {
    mock.requests().into_iter().filter(|r| r.method == "POST").collect()
}

fn messages_body(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

/// The Anthropic events of an SSE body: (event name, data).
fn anthropic_events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event: ") {
                name = value.to_string();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push_str(value);
            }
        }
        out.push((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
    }
    out
}

#[test]
fn the_anthropic_sdk_reaches_claude_and_openai_models() {
    let python = repo_root().join(".tools/bin/python");
    let probe = Command::new(&python).args(["-c", "import anthropic"]).output();
    assert!(
        probe.as_ref().is_ok_and(|out| out.status.success()),
        "the SDK is not installed in .tools: run `just sdk-tools` ({probe:?})"
    );
    let gw = Gateway::start();
    let output = Command::new(&python)
        .arg(repo_root().join("tests/e2e/sdk/anthropic_check.py"))
        .args([gw.url().as_str(), WEALTH, RETAIL])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let cases: BTreeMap<String, Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|case| (case["case"].as_str().unwrap().to_string(), case))
        .collect();

    let question = "What is the weather in Paris?";
    let tool_use = json!({"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}, "id_set": true});
    for model in ["claude-sonnet-4-5", "gpt-4o-mini"] {
        let reply = &cases[&format!("json-{model}")];
        assert_eq!((&reply["type"], &reply["role"]), (&json!("message"), &json!("assistant")), "{model}");
        assert_eq!(reply["blocks"], json!([{"type": "text", "text": question}, tool_use]), "{model}");
        assert_eq!(reply["stop_reason"], "tool_use", "{model}");
        assert!(reply["usage"]["input_tokens"].as_u64().unwrap() > 0, "{model}: {reply}");
        assert!(reply["usage"]["output_tokens"].as_u64().unwrap() > 0, "{model}: {reply}");
        assert!(reply["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{model}: request-id header");

        let streamed = &cases[&format!("stream-{model}")];
        assert_eq!(streamed["text"], question, "{model}");
        assert_eq!(streamed["blocks"], json!([{"type": "text", "text": question}, tool_use]), "{model}");
        assert_eq!(streamed["stop_reason"], "tool_use", "{model}");
        assert!(streamed["usage"]["output_tokens"].as_u64().unwrap() > 0, "{model}: {streamed}");

        let followup = &cases[&format!("tool-result-{model}")];
        assert_eq!(followup["blocks"], json!([{"type": "text", "text": "Thanks, and tomorrow?"}]), "{model}");
        assert_eq!(followup["stop_reason"], "end_turn", "{model}");

        assert!(cases[&format!("count-{model}")]["input_tokens"].as_u64().unwrap() > 0, "{model}");
    }

    // What the providers received. Claude: Anthropic's own API, passed through.
    let to_claude = chat_requests(gw.mock("anthropic"));
    assert_eq!(to_claude.len(), 4, "{to_claude:#?}");
    assert!(to_claude[..3].iter().all(|r| r.path == "/v1/messages"), "{to_claude:#?}");
    assert_eq!(to_claude[3].path, "/v1/messages/count_tokens");
    let first = to_claude[0].body_json().unwrap();
    // prompt-template put the wealth team's system prompt first; the client's block follows, as sent.
    let client_block = first["system"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(client_block, json!({"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}));
    assert_eq!(first["tools"][0]["input_schema"]["required"], json!(["city"]));
    // gpt-4o-mini: chat completions, never the Messages body; count_tokens answered by the gateway.
    // (The fourth is the error-upstream case, answered 429 by the mock.)
    let to_mock = chat_requests(gw.mock("mock"));
    assert_eq!(to_mock.len(), 4, "{to_mock:#?}");
    assert!(to_mock.iter().all(|r| r.path == "/v1/chat/completions"), "{to_mock:#?}");
    let sent = to_mock[0].body_json().unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    // One system message: the wealth team's prompt (prompt-template) and the client's, then the question.
    let turns = sent["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{sent}");
    assert_eq!(turns[0]["role"], "system");
    let system = turns[0]["content"].as_str().unwrap();
    assert!(system.starts_with("You are the Acme Bank wealth") && system.ends_with("\n\nYou are terse."), "{system}");
    assert_eq!(turns[1], json!({"role": "user", "content": question}));
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["function"]["parameters"]["required"], json!(["city"]));
    assert_eq!(sent["user"], "user-42");
    assert_eq!(sent["stop"], json!(["STOP"]));
    assert_eq!(sent["max_tokens"], 64);
    assert!(sent.get("system").is_none() && sent.get("metadata").is_none());
    let streamed = to_mock[1].body_json().unwrap();
    assert_eq!((&streamed["stream"], &streamed["stream_options"]), (&json!(true), &json!({"include_usage": true})));
    let followup = to_mock[2].body_json().unwrap();
    let turns: Vec<&Value> =
        followup["messages"].as_array().unwrap().iter().filter(|t| t["role"] != "system").collect();
    assert_eq!(turns[1]["role"], "assistant");
    assert_eq!(turns[1]["tool_calls"][0]["function"]["name"], "get_weather");
    let call_id = turns[1]["tool_calls"][0]["id"].clone();
    assert_eq!(*turns[2], json!({"role": "tool", "tool_call_id": call_id, "content": "18 degrees"}));
    assert_eq!(*turns[3], json!({"role": "user", "content": "Thanks, and tomorrow?"}));

    // Errors: the SDK's classes, Anthropic's error types.
    assert_eq!(cases["error-not-found"]["status"], 404);
    assert_eq!(cases["error-not-found"]["error_type"], "not_found_error");
    assert!(cases["error-not-found"]["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(cases["error-unsupported"]["status"], 400);
    assert_eq!(cases["error-unsupported"]["error_type"], "invalid_request_error");
    assert!(cases["error-unsupported"]["message"].as_str().unwrap().contains("top_k"));
    assert_eq!(cases["error-forbidden"]["status"], 403);
    assert_eq!(cases["error-forbidden"]["error_type"], "permission_error");
    assert_eq!(cases["error-upstream"]["status"], 429);
    assert_eq!(cases["error-upstream"]["error_type"], "rate_limit_error");

    // The model lists: the routing table's names and aliases the key may use.
    assert_eq!(cases["models-wealth"]["ids"], json!(["failover-demo", "fast", "gpt-4o-mini", "smart"]));
    assert_eq!(cases["models-retail"]["ids"], json!(["failover-demo", "fast", "gpt-4o-mini"]));
    assert_eq!((&cases["model-smart"]["id"], &cases["model-smart"]["type"]), (&json!("smart"), &json!("model")));
    let refused = &cases["model-smart-retail"];
    assert_eq!((&refused["status"], &refused["error_type"]), (&json!(404), &json!("not_found_error")));
    // No provider was asked for its list.
    assert!(gw.upstream_requests().iter().all(|r| !r.path.starts_with("/v1/models")));
}

#[test]
fn translated_streams_json_count_tokens_and_models_on_the_wire() {
    let gw = Gateway::builder().only_filters(&["token-counter", "model-router"]).start();
    let anthropic = [("anthropic-version", "2023-06-01"), ("x-api-key", WEALTH)];

    // A stream cut at odd offsets by the mock: Anthropic's events, in order, with usage.
    for split in ["1", "7", "40"] {
        gw.clear_mocks();
        let headers = [anthropic[0], anthropic[1], ("x-mock-split", split), ("x-mock-chunks", "5")];
        let body = messages_body("gpt-4o-mini", "streamed through the translator ✓ ok", true);
        let response = gw.post_json("/v1/messages", &headers, &body);
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(response.header("content-type").unwrap_or("").starts_with("text/event-stream"));
        assert!(response.header("request-id").is_some_and(|id| !id.is_empty()));
        assert!(response.header("x-request-id").is_some());
        let events = anthropic_events(&response.text());
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
        assert_eq!(&names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"], "{names:?}");
        assert!(events.iter().all(|(name, data)| data["type"] == name.as_str()));
        let text: String =
            events.iter().filter_map(|(_, data)| data["delta"]["text"].as_str()).collect::<Vec<_>>().concat();
        assert_eq!(text, "streamed through the translator ✓ ok", "split {split}");
        let delta = &events[events.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
        assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > 0);
        assert!(!response.text().contains("\"usage\":null"));
        let sent = gw.mock("mock").requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].path, "/v1/chat/completions");
        assert!(sent_is_chat(&sent[0]));
    }

    // JSON: Anthropic's message, with the token-counter's accounting of it.
    gw.clear_mocks();
    let response = gw.post_json("/v1/messages", &anthropic, &messages_body("fast", "bonjour", false));
    assert_eq!(response.status, 200, "{}", response.text());
    let message = response.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"], json!([{"type": "text", "text": "bonjour"}]));
    assert_eq!(message["stop_reason"], "end_turn");
    assert!(response.header("x-ratelimit-remaining-tokens").is_some());

    // count_tokens: answered by the gateway with token-counter's count; no provider asked.
    gw.clear_mocks();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count these words please"}]});
    let response = gw.post_json("/v1/messages/count_tokens", &anthropic, &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let counted = response.json()["input_tokens"].as_u64().unwrap();
    assert!((4..30).contains(&counted), "{counted}");
    assert!(gw.upstream_requests().is_empty(), "{:#?}", gw.upstream_requests());
    // An untranslatable field: 400 naming it, in Anthropic's shape.
    let mut body = messages_body("gpt-4o-mini", "x", false);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let response = gw.post_json("/v1/messages", &anthropic, &body);
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["type"], "error");
    assert_eq!(response.json()["error"]["type"], "invalid_request_error");
    assert!(response.json()["error"]["message"].as_str().unwrap().contains("thinking"));
    assert!(response.header("request-id").is_some());

    // The model list: OpenAI's shape without anthropic-version, filtered by a JWT's `llms` claim.
    let response = gw.request("GET", "/v1/models", &[], b"");
    assert_eq!(response.status, 200, "{}", response.text());
    let list = response.json();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["failover-demo", "fast", "gpt-4o-mini", "smart"]);
    assert_eq!(list["data"][3]["owned_by"], "anthropic");
    let token = jwt::demo_token(json!({"sub": "u", "llms": {"anthropic": ["claude-*"]}}));
    let bearer = format!("Bearer {token}");
    let response = gw.request("GET", "/v1/models", &[("authorization", &bearer), anthropic[0]], b"");
    assert_eq!(
        response.json(),
        json!({"data": [{"type": "model", "id": "smart", "display_name": "smart", "created_at": "1970-01-01T00:00:00Z"}],
               "has_more": false, "first_id": "smart", "last_id": "smart"})
    );
    assert!(gw.upstream_requests().is_empty());
}

fn sent_is_chat(request: &RecordedRequest) -> bool {
    let body = request.body_json().unwrap();
    body["messages"].is_array() && body.get("max_tokens").is_some() && body.get("system").is_none()
}

/// PII on `/v1/messages` to an OpenAI-shaped backend: masked before translation, as on chat.
#[test]
fn pii_is_masked_and_budgets_apply_on_messages_as_on_chat() {
    let gw = Gateway::start();
    let email = "jane.doe@example.com";
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("mail {email} now")}]}),
        ),
        ("/v1/messages", messages_body("gpt-4o-mini", &format!("mail {email} now"), false)),
    ] {
        gw.clear_mocks();
        let response = gw.post_json(path, &[("x-api-key", WEALTH)], &body);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let sent = chat_requests(gw.mock("mock"));
        assert_eq!(sent.len(), 1, "{path}");
        assert_eq!(sent[0].path, "/v1/chat/completions", "{path}");
        assert!(!sent[0].body.contains(email), "{path}: {}", sent[0].body);
        assert!(sent[0].body.contains("[EMAIL_ADDRESS]"), "{path}: {}", sent[0].body);
    }

    // Budgets: the shipped 500 tokens/hour per JWT subject, spent on /v1/messages, refused in Anthropic's shape.
    let bearer = format!("Bearer {}", jwt::demo_token(json!({"sub": "messages-alice"})));
    let mut served = 0;
    let refused = loop {
        let body = messages_body("gpt-4o-mini", &"budget ".repeat(120), false);
        let response = gw.post_json("/v1/messages", &[("authorization", bearer.as_str())], &body);
        if response.status == 429 {
            break response;
        }
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("x-ratelimit-limit-tokens"), Some("500"));
        served += 1;
        assert!(served < 5, "never refused");
    };
    assert!(served >= 1);
    let error = refused.json();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert!(refused.header("retry-after").is_some());
}
