//! pii-mask through a real Envoy with its shipped configuration (gateway.yaml): what the provider
//! received (the mock's recorded requests) and what the client got back, as JSON and as SSE streams
//! cut into small pieces by the mock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::http::{openai_stream_text, sse_data};
use aigw_e2e::{Gateway, RecordedRequest};
use serde_json::{json, Value};

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const SSN: &str = "123-45-6789";
const PHONE: &str = "+1 415 555 0132";
const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// The shipped gateway.yaml with only pii-mask in the chain (jwt_authn and the router stay).
fn gateway() -> Gateway {
    Gateway::builder().only_filters(&["pii-mask"]).start()
}

fn chat_requests(gw: &Gateway) -> Vec<RecordedRequest> {
    gw.upstream_requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions") || r.path.ends_with("/v1/messages"))
        .collect()
}

fn only_upstream(gw: &Gateway) -> RecordedRequest {
    let requests = chat_requests(gw);
    assert_eq!(requests.len(), 1, "expected one upstream request, got {requests:#?}");
    requests.into_iter().next().unwrap()
}

fn assert_absent(what: &str, text: &str, values: &[&str]) {
    for value in values {
        assert!(!text.contains(value), "{what} contains the raw value {value:?}: {text}");
    }
}

#[test]
fn provider_receives_masked_prompts_in_both_api_shapes() {
    let gw = gateway();
    let text = format!("I am {EMAIL}, card {CARD}, SSN {SSN}, employee EMP-004211, key {KEY}.");

    // OpenAI shape: system, user parts and tool-call arguments.
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": format!("Escalations go to {EMAIL}")},
            {"role": "user", "content": [{"type": "text", "text": text}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "call", "arguments": format!("{{\"phone\":\"{PHONE}\"}}")}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"}
        ]
    });
    let response = gw.chat_with(&[("accept-encoding", "gzip")], &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let upstream = only_upstream(&gw);
    assert_absent("the provider's request", &upstream.body, &[EMAIL, CARD, SSN, KEY, PHONE, "EMP-004211"]);
    assert!(upstream.header("accept-encoding").is_none(), "providers must be asked for identity bodies");
    let length: usize = upstream.header("content-length").expect("content-length").parse().unwrap();
    assert_eq!(length, upstream.body.len());
    let sent = upstream.body_json().unwrap();
    assert_eq!(sent["messages"][0]["content"], "Escalations go to [EMAIL_ADDRESS]");
    let user = sent["messages"][1]["content"][0]["text"].as_str().unwrap();
    assert!(user.starts_with("I am [EMAIL_ADDRESS], card **** **** **** 1111, SSN [US_SSN:"), "{user}");
    assert!(user.ends_with("], employee [EMPLOYEE_ID], key [AWS_ACCESS_KEY]."), "{user}");
    assert_eq!(sent["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"phone\":\"[PHONE_NUMBER]\"}");

    // Anthropic shape.
    gw.clear_mocks();
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": format!("Customer card {CARD}"),
        "messages": [{"role": "user", "content": [{"type": "text", "text": format!("Mail {EMAIL} from 10.20.30.40")}]}]
    });
    let response = gw.post_json("/v1/messages", &[], &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let upstream = only_upstream(&gw);
    assert_absent("the provider's request", &upstream.body, &[EMAIL, CARD, "10.20.30.40"]);
    let sent = upstream.body_json().unwrap();
    assert_eq!(sent["system"], "Customer card **** **** **** 1111");
    assert_eq!(sent["messages"][0]["content"][0]["text"], "Mail [EMAIL_ADDRESS] from [IP_ADDRESS]");
}

#[test]
fn private_keys_are_refused_before_the_provider() {
    let gw = gateway();
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4\n-----END RSA PRIVATE KEY-----";
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("store this: {pem}")}]});
    let response = gw.chat(&body);
    assert_eq!(response.status, 400);
    let error = response.json();
    assert_eq!(error["error"]["message"], "Private keys are not allowed through this gateway.");
    assert_eq!(error["error"]["code"], "sensitive_data_detected");
    assert!(chat_requests(&gw).is_empty(), "nothing may reach the provider");
    assert_absent("Envoy's log", &gw.envoy_log(), &["MIIEowIBAAKCAQEAx4"]);
}

#[test]
fn client_receives_a_masked_json_completion() {
    let gw = gateway();
    let reply = format!("Sure. Write to {EMAIL} or call {PHONE}; the card {CARD} is on file.");
    let mode = format!("fixed:{reply}");
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "contact?"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "contact?"}]}),
        ),
    ] {
        let response = gw.post_json(path, &[("x-mock-mode", &mode)], &body);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_absent(path, &response.text(), &[EMAIL, PHONE, CARD]);
        let json = response.json();
        let content = if path.ends_with("/messages") {
            json["content"][0]["text"].as_str().unwrap().to_string()
        } else {
            json["choices"][0]["message"]["content"].as_str().unwrap().to_string()
        };
        assert_eq!(
            content,
            "Sure. Write to [EMAIL_ADDRESS] or call [PHONE_NUMBER]; the card **** **** **** 1111 is on file."
        );
        if let Some(length) = response.header("content-length") {
            assert_eq!(length.parse::<usize>().unwrap(), response.body.len(), "{path}: stale content-length");
        }
    }
}

/// The text an Anthropic SSE body carries: every `content_block_delta` text, concatenated.
fn anthropic_stream_text(body: &str) -> String {
    sse_data(body)
        .iter()
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(|event| event["type"] == "content_block_delta")
        .filter_map(|event| event.pointer("/delta/text").and_then(Value::as_str).map(str::to_string))
        .collect()
}

#[test]
fn client_receives_a_masked_stream_whatever_the_split() {
    let gw = gateway();
    let reply = format!("Reach {EMAIL}, SSN {SSN}, key {KEY}, card {CARD}. Bye.");
    let mode = format!("fixed:{reply}");
    for split in ["1", "5", "17"] {
        for path in ["/v1/chat/completions", "/v1/messages"] {
            let body = json!({"model": "m", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
            let headers = [("x-mock-mode", mode.as_str()), ("x-mock-split", split), ("x-mock-chunks", "12")];
            let response = gw.post_json(path, &headers, &body);
            assert_eq!(response.status, 200, "{path} split {split}: {}", response.text());
            assert!(response.header("content-type").unwrap_or("").starts_with("text/event-stream"));
            let raw = response.text();
            assert_absent(&format!("{path} split {split}"), &raw, &[EMAIL, SSN, KEY, CARD, "6789", "EXAMPLE"]);
            let text = if path.ends_with("/messages") { anthropic_stream_text(&raw) } else { openai_stream_text(&raw) };
            assert!(text.starts_with("Reach [EMAIL_ADDRESS], SSN [US_SSN:"), "{path} split {split}: {text}");
            assert!(
                text.ends_with("], key [AWS_ACCESS_KEY], card **** **** **** 1111. Bye."),
                "{path} split {split}: {text}"
            );
            if path.ends_with("/messages") {
                assert!(raw.contains("message_stop"), "the stream ends properly: {raw}");
            } else {
                assert_eq!(sse_data(&raw).last().map(String::as_str), Some("[DONE]"), "the stream ends properly");
            }
        }
    }
}

#[test]
fn compressed_responses_are_blocked_and_counted() {
    let gw = gateway();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let response = gw.chat_with(&[("x-mock-encoding", "gzip"), ("x-mock-mode", &format!("fixed:{EMAIL}"))], &body);
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "unreadable_response");
    assert!(response.header("content-encoding").is_none());
    let stats = gw.stats();
    assert!(
        stats.contains("aigw.pii_mask.pii_unreadable.direction.response.reason.encoded.blocked: 1"),
        "{}",
        stats.lines().filter(|l| l.contains("pii_mask")).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn detections_are_counted_per_entity_and_direction() {
    let gw = gateway();
    let body =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("{EMAIL} and {EMAIL}")}]});
    let response = gw.chat_with(&[("x-mock-mode", &format!("fixed:ok {CARD}"))], &body);
    assert_eq!(response.status, 200);
    let stats = gw.stats();
    let line = |name: &str| stats.lines().find(|l| l.contains(name)).map(str::to_string);
    assert_eq!(
        line("aigw.pii_mask.pii.direction.request.entity.EMAIL_ADDRESS.detected")
            .as_deref()
            .and_then(|l| l.rsplit(": ").next()),
        Some("2"),
        "{stats}"
    );
    assert!(
        line("aigw.pii_mask.pii.direction.response.entity.CREDIT_CARD.masked").is_some_and(|l| l.ends_with(": 1")),
        "{stats}"
    );
}

/// prompt-template runs after pii-mask and renders a templated request's `variables` into messages, so
/// pii-mask must mask the variables: the provider sees the rendered template with the values masked.
#[test]
fn template_variables_are_masked_before_they_are_rendered() {
    let gw = Gateway::builder().only_filters(&["pii-mask", "prompt-template"]).start();
    let body = json!({
        "model": "gpt-4o-mini",
        "template": "sentiment-fr",
        "variables": {"text": format!("Great service, write to me at {EMAIL} or call {PHONE}!")}
    });
    let response = gw.chat(&body);
    assert_eq!(response.status, 200, "{}", response.text());
    let upstream = only_upstream(&gw);
    assert_absent("the provider's request", &upstream.body, &[EMAIL, PHONE]);
    let sent = upstream.body_json().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    let user = messages.iter().find(|m| m["role"] == "user").expect("the template's user message");
    assert_eq!(user["content"], "Great service, write to me at [EMAIL_ADDRESS] or call [PHONE_NUMBER]!");
    assert!(sent.get("variables").is_none() && sent.get("template").is_none(), "{sent}");
}
