//! The built filter (dist/model-router.wasm) as the upstream instance on an
//! Anthropic cluster, for a client speaking the OpenAI Responses API: the
//! request goes out as Messages, the SSE reply comes back as the Responses
//! event sequence at every split, JSON replies and errors too, and stateful
//! features are refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};
use serde_json::{json, Value};

const UPSTREAM: &str = r#"{"mode": "upstream", "backends": [
    {"name": "claude", "provider": "anthropic", "default_max_tokens": 321}
]}"#;

const ANTHROPIC_SSE: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüße \u{2713}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":4}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn attempt(vm: &Vm, body: &Value) -> Stream {
    let mut s = vm.stream();
    s.set_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "backend"], b"claude");
    let handoff = json!({"models": {"claude": "claude-x"}, "path": "/v1/responses"});
    s.set_property(&["aigw.route.handoff"], handoff.to_string().as_bytes());
    let text = body.to_string();
    let headers = [(":method", "POST"), (":path", "/v1/responses"), ("content-length", &text.len().to_string())];
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    s.send_request_body(text.as_bytes(), true);
    s
}

fn events(bytes: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let (name, data) = event.split_once('\n').unwrap();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(name.strip_prefix("event: "), data["type"].as_str());
            data
        })
        .collect()
}

#[test]
fn a_responses_stream_from_anthropic_is_translated_at_every_split() {
    let harness = Harness::new();
    let vm = harness.vm(wasm_path("model-router")).config(UPSTREAM).vm_id("model-router").start();
    assert!(vm.configured(), "{:?}", vm.logs());
    let body = json!({"model": "claude-sonnet", "instructions": "Be brief.", "input": "Weather?", "stream": true,
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]});
    let bytes = ANTHROPIC_SSE.as_bytes();
    let mut expected: Option<Vec<u8>> = None;
    for cut in 0..=bytes.len() {
        let mut s = attempt(&vm, &body);
        let headers = s.upstream_request_headers().unwrap();
        assert!(headers.iter().any(|(n, v)| n == ":path" && v == "/v1/messages"));
        let sent: Value = serde_json::from_slice(&s.upstream_request_body()).unwrap();
        assert_eq!(sent["system"][0]["text"], "Be brief.");
        assert_eq!(sent["tools"][0]["name"], "get_weather");
        s.send_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
        s.send_response_body(&bytes[..cut], false);
        s.send_response_body(&bytes[cut..], true);
        let got = s.client_response_body();
        match &expected {
            None => {
                let out = events(&got);
                assert_eq!(out.first().unwrap()["type"], "response.created");
                let done = out.last().unwrap();
                assert_eq!(done["type"], "response.completed");
                assert_eq!(done["response"]["output"][0]["content"][0]["text"], "Grüße \u{2713}");
                assert_eq!(done["response"]["output"][1]["name"], "get_weather");
                assert_eq!(done["response"]["output"][1]["call_id"], "toolu_1");
                assert_eq!(done["response"]["output"][1]["arguments"], "{\"city\":\"Paris\"}");
                assert_eq!(done["response"]["usage"]["input_tokens"], 9);
                assert_eq!(done["response"]["usage"]["output_tokens"], 4);
                let text: String = out
                    .iter()
                    .filter(|e| e["type"] == "response.output_text.delta")
                    .filter_map(|e| e["delta"].as_str())
                    .collect();
                assert_eq!(text, "Grüße \u{2713}");
                expected = Some(got);
            }
            Some(expected) => assert_eq!(&got, expected, "split at {cut}"),
        }
    }
}

#[test]
fn json_replies_errors_and_refusals() {
    let harness = Harness::new();
    let vm = harness.vm(wasm_path("model-router")).config(UPSTREAM).vm_id("model-router").start();
    let mut s = attempt(&vm, &json!({"model": "claude-sonnet", "input": "hi"}));
    let reply = json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 1}});
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.send_response_body(reply.to_string(), true);
    let out: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(out["object"], "response");
    assert_eq!(out["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(out["usage"]["total_tokens"], 4);

    let mut s = attempt(&vm, &json!({"model": "claude-sonnet", "input": "hi"}));
    let error = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}});
    s.send_response_headers(&[(":status", "429"), ("content-type", "application/json")], false);
    s.send_response_body(error.to_string(), true);
    let out: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(out["error"]["code"], "rate_limit_exceeded", "{out}");

    let s = attempt(&vm, &json!({"model": "claude-sonnet", "input": "hi", "previous_response_id": "resp_1"}));
    let refused = s.local_reply().expect("refused before the backend");
    assert_eq!(refused.status, 400);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["error"]["code"], "unsupported_parameter");
    assert_eq!(body["error"]["param"], "previous_response_id");
}
