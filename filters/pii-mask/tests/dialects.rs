//! pii-mask on the built .wasm (dist/pii-mask.wasm) for the OpenAI dialects
//! beside chat: the Responses API, embeddings and legacy completions, both
//! directions, JSON and SSE. Every test asserts on what the upstream or the
//! client received.

// Test helpers outside #[test] functions may unwrap and index: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};
use serde_json::{json, Value};

fn start(harness: &Harness) -> Vm {
    let vm = harness.vm(wasm_path("pii-mask")).config("{}").vm_id("pii-mask").start();
    assert!(vm.configured(), "pii-mask did not configure: {:?}", vm.logs());
    vm
}

fn post(stream: &mut Stream, path: &str, body: &[u8]) -> Action {
    let length = body.len().to_string();
    stream.send_request_headers(
        &[
            (":method", "POST"),
            (":path", path),
            (":authority", "gw"),
            ("content-type", "application/json"),
            ("content-length", &length),
        ],
        false,
    );
    stream.send_request_body(body, true)
}

fn upstream_json(stream: &Stream) -> Value {
    serde_json::from_slice(&stream.upstream_request_body()).expect("upstream body is JSON")
}

#[test]
fn requests_of_every_dialect_are_masked_where_their_text_is() {
    let harness = Harness::new();
    let vm = start(&harness);
    let mut s = vm.stream();
    post(
        &mut s,
        "/v1/responses",
        json!({"model": "gpt-4o-mini", "instructions": "Escalate to ops@corp.example.com", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "My SSN is 123-45-6789"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"to\":\"ana\\u0040example.com\"}"},
            {"type": "function_call_output", "call_id": "c", "output": "ip 10.1.2.3"}]})
        .to_string()
        .as_bytes(),
    );
    let out = upstream_json(&s);
    assert_eq!(out["instructions"], "Escalate to [EMAIL_ADDRESS]");
    assert_eq!(out["input"][0]["content"][0]["text"], "My SSN is [US_SSN]");
    assert_eq!(out["input"][1]["arguments"], "{\"to\":\"[EMAIL_ADDRESS]\"}");
    assert_eq!(out["input"][2]["output"], "ip [IP_ADDRESS]");

    let mut s = vm.stream();
    post(&mut s, "/v1/embeddings", br#"{"model":"text-embedding-3-small","input":["mail jane@example.org","x"]}"#);
    assert_eq!(upstream_json(&s)["input"], json!(["mail [EMAIL_ADDRESS]", "x"]));
    let mut s = vm.stream();
    let tokens = br#"{"model":"text-embedding-3-small","input":[[101,202,303]]}"#;
    post(&mut s, "/v1/embeddings", tokens);
    assert_eq!(s.upstream_request_body(), tokens.to_vec(), "token ids pass as they came");

    let mut s = vm.stream();
    post(&mut s, "/v1/completions", br#"{"model":"gpt-3.5-turbo-instruct","prompt":"card 4111 1111 1111 1111"}"#);
    assert_eq!(upstream_json(&s)["prompt"], "card [CREDIT_CARD]");
}

fn respond_json(vm: &Vm, path: &str, request: &str, body: &Value) -> Value {
    let mut s = vm.stream();
    post(&mut s, path, request.as_bytes());
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.send_response_body(body.to_string(), true);
    serde_json::from_slice(&s.client_response_body()).unwrap()
}

#[test]
fn json_responses_of_every_dialect_are_masked() {
    let harness = Harness::new();
    let vm = start(&harness);
    let out = respond_json(
        &vm,
        "/v1/responses",
        r#"{"model":"m","input":"hi"}"#,
        &json!({"id": "resp_1", "object": "response", "status": "completed", "output": [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Mail jane@example.org", "annotations": []}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"ssn\":\"123-45-6789\"}"}]}),
    );
    assert_eq!(out["output"][0]["content"][0]["text"], "Mail [EMAIL_ADDRESS]");
    assert_eq!(out["output"][1]["arguments"], "{\"ssn\":\"[US_SSN]\"}");
    let out = respond_json(
        &vm,
        "/v1/completions",
        r#"{"model":"m","prompt":"hi"}"#,
        &json!({"id": "cmpl", "object": "text_completion", "choices": [{"index": 0, "text": "ip 10.0.0.1", "finish_reason": "stop"}]}),
    );
    assert_eq!(out["choices"][0]["text"], "ip [IP_ADDRESS]");
}

fn responses_sse(pieces: &[&str]) -> Vec<u8> {
    let text: String = pieces.concat();
    let mut body = String::new();
    let mut event =
        |data: Value| body.push_str(&format!("event: {}\ndata: {data}\n\n", data["type"].as_str().unwrap()));
    event(
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "r", "object": "response", "status": "in_progress", "output": []}}),
    );
    event(
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": {"id": "m", "type": "message", "role": "assistant", "content": []}}),
    );
    for (i, piece) in pieces.iter().enumerate() {
        event(
            json!({"type": "response.output_text.delta", "sequence_number": 2 + i, "item_id": "m", "output_index": 0, "content_index": 0, "delta": piece}),
        );
    }
    event(
        json!({"type": "response.output_text.done", "sequence_number": 9, "item_id": "m", "output_index": 0, "content_index": 0, "text": text}),
    );
    let item = json!({"id": "m", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]});
    event(json!({"type": "response.output_item.done", "sequence_number": 10, "output_index": 0, "item": item}));
    event(
        json!({"type": "response.completed", "sequence_number": 11, "response": {"id": "r", "object": "response", "status": "completed", "output": [item],
        "usage": {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}}}),
    );
    body.into_bytes()
}

fn completions_sse(pieces: &[&str]) -> Vec<u8> {
    let mut body = String::new();
    for piece in pieces {
        let chunk = json!({"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": piece, "finish_reason": null}]});
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    body.push_str("data: {\"id\":\"c\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}]}\n\n");
    body.push_str("data: [DONE]\n\n");
    body.into_bytes()
}

/// What a client reads: the streamed text, and the whole texts the stream repeats.
fn read(body: &[u8]) -> (String, Vec<String>) {
    let text = String::from_utf8(body.to_vec()).expect("client got UTF-8");
    let (mut streamed, mut repeats) = (String::new(), Vec::new());
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else { continue };
        let Ok(value) = serde_json::from_str::<Value>(data) else { continue };
        let get = |p: &str| value.pointer(p).and_then(Value::as_str).map(str::to_string);
        match value["type"].as_str() {
            Some("response.output_text.delta") => streamed.push_str(&get("/delta").unwrap()),
            Some("response.output_text.done") => repeats.push(get("/text").unwrap()),
            Some("response.output_item.done") => repeats.push(get("/item/content/0/text").unwrap()),
            Some("response.completed") => repeats.push(get("/response/output/0/content/0/text").unwrap()),
            _ => streamed.push_str(&get("/choices/0/text").unwrap_or_default()),
        }
    }
    (streamed, repeats)
}

#[test]
fn responses_and_completions_streams_split_anywhere_are_masked_consistently() {
    let harness = Harness::new();
    let vm = start(&harness);
    let value = "jane.doe@example.com";
    let (a, b) = value.split_at(7);
    for (path, body) in [
        ("/v1/responses", responses_sse(&[&format!("Contact: {a}"), &format!("{b} thanks.")])),
        ("/v1/completions", completions_sse(&[&format!("Contact: {a}"), &format!("{b} thanks.")])),
    ] {
        let request = if path == "/v1/responses" {
            r#"{"model":"m","input":"hi","stream":true}"#
        } else {
            r#"{"model":"m","prompt":"hi","stream":true}"#
        };
        for cut in 0..=body.len() {
            let mut s = vm.stream();
            post(&mut s, path, request.as_bytes());
            s.send_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
            assert_eq!(s.send_response_body(&body[..cut], false), Action::Continue, "streams are never buffered whole");
            s.send_response_body(&body[cut..], true);
            let out = s.client_response_body();
            let (streamed, repeats) = read(&out);
            assert_eq!(streamed, "Contact: [EMAIL_ADDRESS] thanks.", "{path} cut at {cut}");
            if path == "/v1/responses" {
                assert_eq!(repeats, vec!["Contact: [EMAIL_ADDRESS] thanks."; 3], "{path} cut at {cut}");
            }
            assert!(!String::from_utf8_lossy(&out).contains(value), "{path} leaked at {cut}");
        }
    }
}
