//! pii-mask on the built .wasm (dist/pii-mask.wasm), driven by the wasmtime
//! harness with Envoy's semantics. Every test asserts on what the upstream or
//! the client received.

// Test helpers outside #[test] functions may unwrap and index: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";

include!("common/samples.rs");

fn start(harness: &Harness, config: &str) -> Vm {
    let vm = harness.vm(wasm_path("pii-mask")).config(config).vm_id("pii-mask").start();
    assert!(vm.configured(), "pii-mask did not configure: {:?}", vm.logs());
    vm
}

fn post(stream: &mut Stream, path: &str, body: &[u8]) -> Action {
    let length = body.len().to_string();
    let action = stream.send_request_headers(
        &[
            (":method", "POST"),
            (":path", path),
            (":authority", "gw"),
            ("content-type", "application/json"),
            ("content-length", &length),
            ("accept-encoding", "gzip, br"),
        ],
        false,
    );
    assert_eq!(action, Action::Continue, "headers go on; the body is held until complete");
    stream.send_request_body(body, true)
}

fn upstream_json(stream: &Stream) -> Value {
    serde_json::from_slice(&stream.upstream_request_body()).expect("upstream body is JSON")
}

fn assert_no_leak(vm: &Vm, bytes: &[u8], values: &[&str]) {
    let text = String::from_utf8_lossy(bytes);
    for value in values {
        assert!(!text.contains(value), "raw value {value:?} reached the peer: {text}");
        let escaped = serde_json::to_string(value).unwrap();
        assert!(!text.contains(escaped.trim_matches('"')), "raw value {value:?} reached the peer: {text}");
        vm.assert_no_log_contains(value);
    }
}

#[test]
fn bad_configs_are_refused_with_the_rule_named() {
    let harness = Harness::new();
    for (config, expected) in [
        (
            r#"{"custom_rules": [{"name": "ok", "pattern": "x"}, {"name": "bad", "pattern": "(unclosed"}]}"#,
            "pii-mask: invalid configuration: custom_rules[1].pattern: invalid regex",
        ),
        (r#"{"entities": {"PASSPORT": {}}}"#, "pii-mask: invalid configuration: entities.PASSPORT: unknown entity"),
        (r#"{"entities": {"US_SSN": {"action": "mask", "replacement": "x"}}}"#, "entities.US_SSN.replacement"),
    ] {
        let vm = harness.vm(wasm_path("pii-mask")).config(config).vm_id("pii-mask").start();
        assert!(!vm.configured(), "{config} was accepted");
        assert!(vm.logs_contain(expected), "{config}: {:?}", vm.logs());
    }
}

#[test]
fn openai_request_is_masked_in_every_role_and_tool_arguments() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = vm.stream();
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Escalate to ops@corp.example.com"},
            {"role": "user", "content": [{"type": "text", "text": "My card is 4111-1111-1111-1111 and SSN 123-45-6789"}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"phone\":\"+44 20 7946 0958\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "key AKIAIOSFODNN7EXAMPLE"}
        ]
    });
    let raw = body.to_string();
    assert_eq!(post(&mut s, CHAT, raw.as_bytes()), Action::Continue);
    assert!(s.request_complete());
    let up = upstream_json(&s);
    assert_eq!(up["messages"][0]["content"], "Escalate to [EMAIL_ADDRESS]");
    assert_eq!(up["messages"][1]["content"][0]["text"], "My card is [CREDIT_CARD] and SSN [US_SSN]");
    assert_eq!(up["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"phone\":\"[PHONE_NUMBER]\"}");
    assert_eq!(up["messages"][3]["content"], "key [AWS_ACCESS_KEY]");
    assert_eq!(up["model"], "gpt-4o");
    let headers = s.upstream_request_headers().unwrap();
    assert_eq!(headers.get("content-length"), Some(s.upstream_request_body().len().to_string().as_str()));
    assert!(!headers.contains("accept-encoding"), "providers must answer uncompressed");
    assert_eq!(
        s.property_str(&["aigw.pii.detected"]).as_deref(),
        Some("EMAIL_ADDRESS,PHONE_NUMBER,CREDIT_CARD,US_SSN,AWS_ACCESS_KEY")
    );
    assert_eq!(vm.counter("aigw.pii_mask.pii.direction.request.entity.EMAIL_ADDRESS.detected"), 1);
    assert_eq!(vm.counter("aigw.pii_mask.pii.direction.request.entity.CREDIT_CARD.masked"), 1);
    assert_no_leak(&vm, &s.upstream_request_body(), &["ops@corp", "4111-1111", "123-45-6789", "7946", "AKIAIOSF"]);
}

#[test]
fn anthropic_request_is_masked() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = vm.stream();
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": "Customer IBAN: DE89 3704 0044 0532 0130 00",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Reach me at jane@example.org or 10.20.30.40"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "mail", "input": {"to": "jane@example.org"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sent from 2001:db8::1"}]}
        ]
    });
    assert_eq!(post(&mut s, MESSAGES, body.to_string().as_bytes()), Action::Continue);
    let up = upstream_json(&s);
    assert_eq!(up["system"], "Customer IBAN: [IBAN_CODE]");
    assert_eq!(up["messages"][0]["content"][0]["text"], "Reach me at [EMAIL_ADDRESS] or [IP_ADDRESS]");
    assert_eq!(up["messages"][1]["content"][0]["input"]["to"], "[EMAIL_ADDRESS]");
    assert_eq!(up["messages"][2]["content"][0]["content"], "sent from [IP_ADDRESS]");
    assert_no_leak(&vm, &s.upstream_request_body(), &["jane@example.org", "DE89", "10.20.30.40", "2001:db8"]);
}

#[test]
fn clean_request_passes_byte_identical() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = vm.stream();
    let body = br#"{"model":"m",  "messages":[{"role":"user","content":"hello there"}]}"#;
    assert_eq!(post(&mut s, CHAT, body), Action::Continue);
    assert_eq!(s.upstream_request_body(), body);
    assert_eq!(s.upstream_request_headers().unwrap().get("content-length"), Some(body.len().to_string().as_str()));
    assert_eq!(s.property(&["aigw.pii.detected"]), None);
}

#[test]
fn request_body_in_several_chunks_is_masked_whole() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = vm.stream();
    let body = br#"{"messages":[{"role":"user","content":"ssn 123-45-6789 please"}]}"#;
    s.send_request_headers(&[(":method", "POST"), (":path", CHAT), ("transfer-encoding", "chunked")], false);
    let cut = body.iter().position(|&b| b == b'-').unwrap();
    assert_eq!(s.send_request_body(&body[..cut], false), Action::Pause);
    assert_eq!(s.send_request_body(&body[cut..], true), Action::Continue);
    assert_eq!(upstream_json(&s)["messages"][0]["content"], "ssn [US_SSN] please");
}

#[test]
fn every_action_on_requests() {
    let harness = Harness::new();
    let config = r##"{
        "hash": {"salt": "test-salt", "chars": 8},
        "entities": {
            "EMAIL_ADDRESS": {"action": "hash"},
            "CREDIT_CARD": {"action": "mask", "keep_last": 4, "mask_char": "#"},
            "PHONE_NUMBER": {"action": "redact"},
            "IP_ADDRESS": {"action": "replace", "replacement": "<ip>"}
        },
        "custom_rules": [
            {"name": "EMPLOYEE_ID", "pattern": "\\bEMP-[0-9]{6}\\b", "action": "replace"},
            {"name": "CODENAME", "words": ["bluebird"], "action": "hash"}
        ]
    }"##;
    let vm = start(&harness, config);
    let send = |text: &str| {
        let mut s = vm.stream();
        let body = json!({"messages": [{"role": "user", "content": text}]}).to_string();
        post(&mut s, CHAT, body.as_bytes());
        upstream_json(&s)["messages"][0]["content"].as_str().unwrap().to_string()
    };
    let first =
        send("mail a@b.com card 4111 1111 1111 1111 call 415-555-0132 from 10.0.0.1 EMP-123456 Project BlueBird");
    let hashed = first.split(' ').nth(1).unwrap().to_string();
    assert!(hashed.starts_with("[EMAIL_ADDRESS:") && hashed.len() == "[EMAIL_ADDRESS:12345678]".len(), "{first}");
    assert_eq!(
        first.replace(&hashed, "H"),
        format!(
            "mail H card #### #### #### 1111 call  from <ip> [EMPLOYEE_ID] Project {}",
            first.rsplit(' ').next().unwrap()
        )
    );
    assert!(first.ends_with(']') && first.contains("[CODENAME:"), "{first}");
    // Hashes are stable across requests and VMs with the same salt.
    let second = send("again a@b.com");
    assert_eq!(second, format!("again {hashed}"));
    let other_vm = start(&harness, config);
    let mut s = other_vm.stream();
    post(&mut s, CHAT, json!({"messages": [{"role": "user", "content": "a@b.com"}]}).to_string().as_bytes());
    assert_eq!(upstream_json(&s)["messages"][0]["content"], hashed.as_str());
}

#[test]
fn reject_action_answers_400_and_nothing_goes_upstream() {
    let harness = Harness::new();
    let vm = start(
        &harness,
        r#"{"entities": {"OPENAI_API_KEY": {"action": "reject", "message": "API keys must not be sent to models."}}}"#,
    );
    let mut s = vm.stream();
    let key = "sk-proj-Ab3dEfGh1jKlMnOpQrStUvWxYz012345";
    let body = json!({"messages": [{"role": "user", "content": format!("use {key}")}]}).to_string();
    post(&mut s, CHAT, body.as_bytes());
    let reply = s.local_reply().expect("local reply");
    assert_eq!(reply.status, 400);
    let json = reply.json();
    assert_eq!(json["error"]["message"], "API keys must not be sent to models.");
    assert_eq!(json["error"]["code"], "sensitive_data_detected");
    assert!(s.upstream_request_body().is_empty());
    assert_eq!(vm.counter("aigw.pii_mask.pii.direction.request.entity.OPENAI_API_KEY.rejected"), 1);
    assert_no_leak(&vm, &reply.body, &[key]);
}

#[test]
fn oversize_bodies_get_413() {
    let harness = Harness::new();
    let vm = start(&harness, r#"{"max_body_bytes": 64}"#);
    // Declared length over the limit: refused at the headers.
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "POST"), (":path", CHAT), ("content-length", "65")], false);
    assert_eq!(s.local_reply().expect("413").status, 413);
    // Chunked: refused once the buffered body passes the limit.
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "POST"), (":path", CHAT)], false);
    assert_eq!(s.send_request_body(vec![b' '; 40], false), Action::Pause);
    s.send_request_body(vec![b' '; 40], false);
    let reply = s.local_reply().expect("413");
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "request_too_large");
    assert!(s.upstream_request_body().is_empty());
}

#[test]
fn invalid_request_bodies_get_400() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    for (body, code) in [
        (&b"{\"messages\": ["[..], "invalid_json"),
        (&[0xff, 0xfe][..], "invalid_utf8"),
        (&b"[1,2]"[..], "invalid_request"),
    ] {
        let mut s = vm.stream();
        post(&mut s, CHAT, body);
        let reply = s.local_reply().expect("400");
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json()["error"]["code"], code);
    }
}

#[test]
fn encoded_request_gets_415_and_encoded_response_502() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "POST"), (":path", CHAT), ("content-encoding", "gzip")], false);
    assert_eq!(s.local_reply().expect("415").status, 415);
    assert_eq!(vm.counter("aigw.pii_mask.pii_unreadable.direction.request.reason.encoded.blocked"), 1);

    let mut s = vm.stream();
    post(&mut s, CHAT, br#"{"messages":[]}"#);
    s.send_response_headers(
        &[(":status", "200"), ("content-type", "application/json"), ("content-encoding", "gzip")],
        false,
    );
    s.send_response_body([0x1f, 0x8b, 0x08, 0x00, 0x01], false);
    s.send_response_body([0x02, 0x03], true);
    let headers = s.client_response_headers().unwrap();
    assert_eq!(headers.get(":status"), Some("502"));
    assert!(!headers.contains("content-encoding"));
    let body: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(body["error"]["code"], "unreadable_response");
    assert_eq!(vm.counter("aigw.pii_mask.pii_unreadable.direction.response.reason.encoded.blocked"), 1);

    // Passing is possible by configuration, and counted.
    let vm = start(&harness, r#"{"on_unreadable_request": "pass", "on_unreadable_response": "pass"}"#);
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "POST"), (":path", CHAT), ("content-encoding", "gzip")], false);
    s.send_request_body([0x1f, 0x8b], true);
    assert_eq!(s.upstream_request_body(), vec![0x1f, 0x8b]);
    s.send_response_headers(
        &[(":status", "200"), ("content-type", "application/json"), ("content-encoding", "br")],
        false,
    );
    s.send_response_body([0x01, 0x02], true);
    assert_eq!(s.client_response_body(), vec![0x01, 0x02]);
    assert_eq!(vm.counter("aigw.pii_mask.pii_unreadable.direction.request.reason.encoded.passed"), 1);
    assert_eq!(vm.counter("aigw.pii_mask.pii_unreadable.direction.response.reason.encoded.passed"), 1);
}

fn chat_request(vm: &Vm) -> Stream {
    let mut s = vm.stream();
    post(&mut s, CHAT, br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    s
}

#[test]
fn json_response_is_masked_with_valid_json_and_no_stale_length() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = chat_request(&vm);
    let body =
        json!({"id": "c1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
        "content": "Sure: \"jane@example.org\", card 4111111111111111.\nDone"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
        .to_string();
    let length = body.len().to_string();
    s.send_response_headers(
        &[(":status", "200"), ("content-type", "application/json"), ("content-length", &length)],
        false,
    );
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    assert_eq!(s.send_response_body(a, false), Action::Pause);
    s.send_response_body(b, true);
    assert!(!s.client_response_headers().unwrap().contains("content-length"));
    let out: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "Sure: \"[EMAIL_ADDRESS]\", card [CREDIT_CARD].\nDone");
    assert_eq!(out["usage"]["total_tokens"], 3);
    assert_eq!(vm.counter("aigw.pii_mask.pii.direction.response.entity.EMAIL_ADDRESS.masked"), 1);
    assert_no_leak(&vm, &s.client_response_body(), &["jane@example.org", "4111111111111111"]);
}

#[test]
fn json_response_reject_withholds_the_completion() {
    let harness = Harness::new();
    let vm =
        start(&harness, r#"{"entities": {"PRIVATE_KEY": {"action": "reject", "message": "Withheld by policy."}}}"#);
    let mut s = vm.stream();
    post(&mut s, MESSAGES, br#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#);
    let body = json!({"type": "message", "role": "assistant", "content": [{"type": "text",
        "text": "Here: -----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"}], "stop_reason": "end_turn"});
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.send_response_body(body.to_string(), true);
    let out: Value = serde_json::from_slice(&s.client_response_body()).unwrap();
    assert_eq!(out["content"], json!([{"type": "text", "text": "Withheld by policy."}]));
    assert_eq!(vm.counter("aigw.pii_mask.pii.direction.response.entity.PRIVATE_KEY.rejected"), 1);
    assert_no_leak(&vm, &s.client_response_body(), &["MIIBVQ", "BEGIN PRIVATE"]);
}

fn openai_sse(pieces: &[&str]) -> Vec<u8> {
    let mut body = String::new();
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    body.push_str(&chunk(json!({"role": "assistant", "content": ""}), Value::Null));
    for piece in pieces {
        body.push_str(&chunk(json!({"content": piece}), Value::Null));
    }
    body.push_str(&chunk(json!({}), json!("stop")));
    body.push_str("data: [DONE]\n\n");
    body.into_bytes()
}

fn anthropic_sse(pieces: &[&str]) -> Vec<u8> {
    let mut body = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"role\":\"assistant\",\"content\":[]}}\n\n");
    body.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for piece in pieces {
        let data = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}});
        body.push_str(&format!("event: content_block_delta\ndata: {data}\n\n"));
    }
    body.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    body.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n");
    body.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    body.into_bytes()
}

/// The text a client reassembles from the SSE bytes it got.
fn reassemble(body: &[u8]) -> String {
    let text = String::from_utf8(body.to_vec()).expect("client got UTF-8");
    let mut out = String::new();
    for block in text.split("\n\n") {
        for line in block.lines() {
            let Some(data) = line.strip_prefix("data: ") else { continue };
            let Ok(value) = serde_json::from_str::<Value>(data) else { continue };
            if let Some(piece) = value.pointer("/choices/0/delta/content").and_then(Value::as_str) {
                out.push_str(piece);
            }
            if let Some(piece) = value.pointer("/delta/text").and_then(Value::as_str) {
                out.push_str(piece);
            }
        }
    }
    out
}

fn stream_response(vm: &Vm, path: &str, body: &[u8], cuts: &[usize]) -> Stream {
    let mut s = vm.stream();
    let request = if path == CHAT {
        br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec()
    } else {
        br#"{"model":"c","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec()
    };
    post(&mut s, path, &request);
    s.send_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
    let mut last = 0;
    for &cut in cuts {
        assert_eq!(s.send_response_body(&body[last..cut], false), Action::Continue, "streams are never buffered whole");
        last = cut;
    }
    s.send_response_body(&body[last..], true);
    s
}

#[test]
fn sse_split_at_every_byte_offset_never_leaks_any_entity() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    for (name, value) in SAMPLES {
        // The value spans two events; the body is cut at every byte offset.
        let mid = value.len() / 2;
        let first = format!("Contact: {}", &value[..mid]);
        let second = format!("{} thanks.", &value[mid..]);
        let expected = format!("Contact: [{name}] thanks.");
        for (path, body) in [(CHAT, openai_sse(&[&first, &second])), (MESSAGES, anthropic_sse(&[&first, &second]))] {
            for cut in 0..=body.len() {
                let s = stream_response(&vm, path, &body, &[cut]);
                let out = s.client_response_body();
                assert_eq!(reassemble(&out), expected, "{name} {path} cut at byte {cut}");
                assert_no_leak(&vm, &out, &[value]);
                assert!(s.response_complete());
            }
        }
    }
}

#[test]
fn sse_byte_by_byte_for_all_entities_in_one_stream() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut text = String::from("Values: ");
    let mut expected = String::from("Values: ");
    for (name, value) in SAMPLES {
        text.push_str(value);
        text.push_str(", ");
        expected.push_str(&format!("[{name}], "));
    }
    // Three-character deltas, delivered one byte per body callback.
    let chars: Vec<char> = text.chars().collect();
    let pieces: Vec<String> = chars.chunks(3).map(|c| c.iter().collect()).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    for (path, body) in [(CHAT, openai_sse(&refs)), (MESSAGES, anthropic_sse(&refs))] {
        let cuts: Vec<usize> = (1..body.len()).collect();
        let s = stream_response(&vm, path, &body, &cuts);
        let out = s.client_response_body();
        assert_eq!(reassemble(&out), expected, "{path}");
        let values: Vec<&str> = SAMPLES.iter().map(|(_, v)| *v).collect();
        assert_no_leak(&vm, &out, &values);
    }
    assert!(vm.counter("aigw.pii_mask.pii.direction.response.entity.CREDIT_CARD.masked") >= 2);
}

/// Custom rules and deny words in streams: each value starts exactly where
/// an event starts (and mid-event), the body is cut at every byte offset, and
/// nothing leaks; the event carrying `finish_reason` carries no text.
#[test]
fn sse_custom_rules_and_deny_words_never_leak_at_any_offset() {
    let harness = Harness::new();
    let config = r#"{"custom_rules": [
        {"name": "EMPLOYEE_ID", "pattern": "\\bEMP-[0-9]{6}\\b", "max_match_chars": 10},
        {"name": "CODENAME", "words": ["bluebird", "project nightjar"]}
    ]}"#;
    let vm = start(&harness, config);
    for (pieces, expected, values) in [
        (vec!["Badge ", "EMP-123456", " ok"], "Badge [EMPLOYEE_ID] ok", vec!["EMP-123456", "123456"]),
        (vec!["Badge EMP-12", "3456 ok"], "Badge [EMPLOYEE_ID] ok", vec!["EMP-123456", "123456"]),
        (vec!["Codename ", "Blue", "Bird."], "Codename [CODENAME].", vec!["Bird"]),
        (vec!["See project ", "nightjar now"], "See [CODENAME] now", vec!["nightjar"]),
        (vec!["mail ", "a@b.co", "m and EMP"], "mail [EMAIL_ADDRESS] and EMP", vec!["a@b.com"]),
    ] {
        for (path, body) in [(CHAT, openai_sse(&pieces)), (MESSAGES, anthropic_sse(&pieces))] {
            for cut in 0..=body.len() {
                let s = stream_response(&vm, path, &body, &[cut]);
                let out = s.client_response_body();
                assert_eq!(reassemble(&out), expected, "{path} cut at byte {cut}");
                assert_no_leak(&vm, &out, &values);
                let text = String::from_utf8(out).unwrap();
                if path == CHAT {
                    let finish = text.split("\n\n").find(|event| event.contains("\"finish_reason\":\"stop\"")).unwrap();
                    assert!(finish.contains("\"delta\":{}"), "finish event with text at {cut}: {finish}");
                } else {
                    let stop = text.find("content_block_stop").unwrap();
                    assert!(!text[stop..].contains("text_delta"), "text after content_block_stop at {cut}: {text}");
                }
            }
        }
    }
}

#[test]
fn sse_reject_ends_the_stream_with_the_message() {
    let harness = Harness::new();
    let vm =
        start(&harness, r#"{"entities": {"AWS_ACCESS_KEY": {"action": "reject", "message": "Withheld by policy."}}}"#);
    let body = openai_sse(&["Your key is AKIAIOSF", "ODNN7EXAMPLE and", " the secret is wJalr"]);
    let s = stream_response(&vm, CHAT, &body, &[body.len() / 3, body.len() / 2]);
    let out = s.client_response_body();
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(reassemble(&out), "Your key is Withheld by policy.");
    assert!(text.contains("\"finish_reason\":\"content_filter\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("wJalr"), "nothing after the reject is forwarded");
    assert_no_leak(&vm, &out, &["AKIAIOSF"]);
    assert_eq!(vm.counter("aigw.pii_mask.pii.direction.response.entity.AWS_ACCESS_KEY.rejected"), 1);
}

#[test]
fn plain_text_responses_are_masked_and_binary_blocked() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = chat_request(&vm);
    s.send_response_headers(&[(":status", "503"), ("content-type", "text/plain")], false);
    s.send_response_body("upstream 10.1.2.3 refused", true);
    assert_eq!(s.client_response_body(), b"upstream [IP_ADDRESS] refused");
    let mut s = chat_request(&vm);
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/octet-stream")], false);
    s.send_response_body([0u8, 1, 2], true);
    assert_eq!(s.client_response_headers().unwrap().get(":status"), Some("502"));
    assert_eq!(vm.counter("aigw.pii_mask.pii_unreadable.direction.response.reason.content_type.blocked"), 1);
}

fn moderated_vm(harness: &Harness, failure_mode: &str) -> Vm {
    let config = json!({"moderation": {"cluster": "moderation", "timeout_ms": 500, "failure_mode": failure_mode,
        "headers": {"authorization": "Bearer mod-key"}, "message": "Blocked by moderation."}});
    let vm = harness
        .vm(wasm_path("pii-mask"))
        .config(config.to_string())
        .vm_id("pii-mask")
        .clusters(&["moderation"])
        .start();
    assert!(vm.configured(), "{:?}", vm.logs());
    vm
}

#[test]
fn moderation_allows_flags_and_fails_by_mode() {
    let harness = Harness::new();
    let body = br#"{"messages":[{"role":"user","content":"mail bob@example.com about it"}]}"#;
    let vm = moderated_vm(&harness, "closed");

    // Allowed: the request continues, and moderation saw only masked text.
    let mut s = vm.stream();
    assert_eq!(post(&mut s, CHAT, body), Action::Pause);
    let call = s.pending_http_calls().pop().expect("moderation call");
    assert_eq!(call.cluster, "moderation");
    assert_eq!(call.timeout_ms, 500);
    assert_eq!(call.headers.get(":path"), Some("/v1/moderations"));
    assert_eq!(call.headers.get("authorization"), Some("Bearer mod-key"));
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["input"], json!(["mail [EMAIL_ADDRESS] about it"]));
    s.answer_http_call(call.token, 200, &[], br#"{"results":[{"flagged":false,"categories":{"violence":false}}]}"#);
    assert!(s.request_complete());
    assert_eq!(upstream_json(&s)["messages"][0]["content"], "mail [EMAIL_ADDRESS] about it");

    // Flagged: 400 with the configured message.
    let mut s = vm.stream();
    post(&mut s, CHAT, body);
    let call = s.pending_http_calls().pop().unwrap();
    s.answer_http_call(call.token, 200, &[], br#"{"results":[{"flagged":true,"categories":{"violence":true}}]}"#);
    let reply = s.local_reply().expect("400");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["message"], "Blocked by moderation.");
    assert!(s.upstream_request_body().is_empty());

    // Failure, closed: 503.
    let mut s = vm.stream();
    post(&mut s, CHAT, body);
    let call = s.pending_http_calls().pop().unwrap();
    s.fail_http_call(call.token);
    assert_eq!(s.local_reply().expect("503").status, 503);
    assert_eq!(vm.counter("aigw.pii_mask.pii_moderation.allowed"), 1);
    assert_eq!(vm.counter("aigw.pii_mask.pii_moderation.flagged"), 1);
    assert_eq!(vm.counter("aigw.pii_mask.pii_moderation.failed_closed"), 1);

    // Failure, open: the request continues.
    let vm = moderated_vm(&harness, "open");
    let mut s = vm.stream();
    post(&mut s, CHAT, body);
    let call = s.pending_http_calls().pop().unwrap();
    s.answer_http_call(call.token, 500, &[], "oops");
    assert!(s.request_complete());
    assert!(s.local_reply().is_none());
    assert_eq!(vm.counter("aigw.pii_mask.pii_moderation.failed_open"), 1);
    vm.assert_no_log_contains("bob@example.com");
}

/// Not a test: the cost of a 100 KiB prompt inside Wasm (wasmtime/Cranelift,
/// whole request path: JSON parse, scan, mask, serialise). Run with
/// `cargo test --release -p pii-mask --test harness -- --ignored --nocapture wasm_throughput`.
#[test]
#[ignore]
fn wasm_throughput() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let sentence = "The quarterly report shows steady growth across all regions; please summarise the risks. ";
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 100 * 1024 {
        text.push_str(sentence);
        if i % 8 == 0 {
            text.push_str("Contact jane.doe@example.com or +1 415 555 0132, card 4111 1111 1111 1111. ");
        }
        i += 1;
    }
    let body = json!({"model": "m", "messages": [{"role": "user", "content": text}]}).to_string();
    let rounds = 30;
    let mut total = std::time::Duration::ZERO;
    for round in 0..rounds + 3 {
        let mut s = vm.stream();
        let started = std::time::Instant::now();
        post(&mut s, CHAT, body.as_bytes());
        if round >= 3 {
            total += started.elapsed();
        }
        assert!(s.request_complete());
    }
    let per = total / rounds;
    println!(
        "wasm: {} KiB request masked in {:.3} ms ({:.1} MB/s)",
        body.len() / 1024,
        per.as_secs_f64() * 1e3,
        body.len() as f64 / per.as_secs_f64() / 1e6
    );
}

#[test]
fn uploads_on_other_paths_pass_uninspected_and_counted() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = vm.stream();
    let action = s.send_request_headers(
        &[
            (":method", "POST"),
            (":path", "/v1/audio/transcriptions"),
            ("content-type", "multipart/form-data; boundary=x"),
        ],
        false,
    );
    assert_eq!(action, Action::Continue);
    s.send_request_body(b"--x\r\nbinary a@b.com\r\n--x--", true);
    assert_eq!(s.upstream_request_body(), b"--x\r\nbinary a@b.com\r\n--x--");
    assert_eq!(vm.counter("aigw.pii_mask.pii_unreadable.direction.request.reason.content_type.passed"), 1);
    // JSON bodies on other paths are scanned.
    let mut s = vm.stream();
    s.send_request_headers(
        &[(":method", "POST"), (":path", "/v1/embeddings"), ("content-type", "application/json")],
        false,
    );
    s.send_request_body(br#"{"model":"e","input":"mail a@b.com"}"#, true);
    assert_eq!(upstream_json(&s)["input"], "mail [EMAIL_ADDRESS]");
}

/// The tool-call arguments a client reassembles from OpenAI stream bytes.
fn reassemble_tool_arguments(body: &[u8]) -> String {
    let mut out = String::new();
    for line in String::from_utf8_lossy(body).lines() {
        let Some(data) = line.strip_prefix("data: ") else { continue };
        let Ok(value) = serde_json::from_str::<Value>(data) else { continue };
        if let Some(piece) = value.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str) {
            out.push_str(piece);
        }
    }
    out
}

#[test]
fn streamed_tool_arguments_with_escaped_values_never_leak_at_any_split() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    // The model writes the address with a JSON escape; the client's parser
    // turns `\u0040` back into `@`.
    let args = r#"{"to": "ana.silva\u0040example.com", "card": "4111 1111 1111 1111"}"#;
    let chunk = |piece: &str| {
        let data = json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, "finish_reason": null}]});
        format!("data: {data}\n\n")
    };
    let mid = args.find("u0040").unwrap();
    let mut body = chunk(&args[..mid]);
    body.push_str(&chunk(&args[mid..]));
    body.push_str(
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
    );
    let body = body.into_bytes();
    for cut in 0..=body.len() {
        let s = stream_response(&vm, CHAT, &body, &[cut]);
        let out = s.client_response_body();
        let arguments: Value = serde_json::from_str(&reassemble_tool_arguments(&out))
            .unwrap_or_else(|err| panic!("arguments are not JSON at cut {cut}: {err}"));
        assert_eq!(arguments, json!({"to": "[EMAIL_ADDRESS]", "card": "[CREDIT_CARD]"}), "cut at byte {cut}");
        assert_no_leak(&vm, &out, &["ana.silva", "4111 1111"]);
    }
}

#[test]
fn request_fields_beyond_messages_are_masked() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let mut s = vm.stream();
    let body = json!({
        "model": "gpt-4o",
        "user": "ana.silva@example.com",
        "metadata": {"ticket": "caller +44 20 7946 0958"},
        "messages": [
            {"role": "user", "name": "bob@example.org", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"ssn\":\"078\\u002d05\\u002d1120\"}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "{\"ip\":\"10.1.2.3\"}"}
        ],
        "tools": [{"type": "function", "function": {"name": "notify", "description": "Pages oncall@corp.example.com",
            "parameters": {"type": "object", "properties": {"iban": {"type": "string", "description": "like DE89 3704 0044 0532 0130 00"}}}}}]
    });
    post(&mut s, CHAT, body.to_string().as_bytes());
    let upstream = s.upstream_request_body();
    assert_no_leak(
        &vm,
        &upstream,
        &["ana.silva@", "7946 0958", "bob@example.org", "1120", "10.1.2.3", "oncall@", "DE89 3704"],
    );
    let out = upstream_json(&s);
    assert_eq!(out["user"], "[EMAIL_ADDRESS]");
    assert_eq!(out["messages"][0]["name"], "[EMAIL_ADDRESS]");
    let arguments: Value =
        serde_json::from_str(out["messages"][1]["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"ssn": "[US_SSN]"}));
    assert_eq!(out["tools"][0]["function"]["name"], "notify");
}
