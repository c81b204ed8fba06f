//! HTTP/2 trailers end a request like end of stream does: pii-mask masks or rejects exactly as
//! without them (the skeleton's body gate, on the built .wasm in the wasmtime harness).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};

fn start(harness: &Harness, config: &str) -> Vm {
    let vm = harness.vm(wasm_path("pii-mask")).config(config).vm_id("pii-mask").start();
    assert!(vm.configured(), "pii-mask did not configure: {:?}", vm.logs());
    vm
}

/// Headers, the body in two pieces, then trailers (no end_of_stream on the body).
fn post_with_trailers(vm: &Vm, body: &str) -> Stream {
    let mut s = vm.stream();
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")];
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    let (first, second) = body.as_bytes().split_at(body.len() / 2);
    assert_eq!(s.send_request_body(first, false), Action::Pause);
    assert_eq!(s.send_request_body(second, false), Action::Pause);
    s.send_request_trailers(&[("x-checksum", "1")]);
    s
}

#[test]
fn a_body_ended_by_trailers_is_masked() {
    let harness = Harness::new();
    let vm = start(&harness, "{}");
    let s =
        post_with_trailers(&vm, r#"{"model":"m","messages":[{"role":"user","content":"mail ana.silva@example.com"}]}"#);
    assert!(s.request_complete());
    let sent = String::from_utf8(s.upstream_request_body()).unwrap();
    assert!(sent.contains("[EMAIL_ADDRESS]") && !sent.contains("ana.silva"), "{sent}");
    assert_eq!(s.upstream_request_trailers().unwrap().get("x-checksum"), Some("1"));
}

#[test]
fn a_body_ended_by_trailers_is_rejected_like_any_other() {
    let harness = Harness::new();
    let vm = start(&harness, r#"{"entities": {"US_SSN": {"action": "reject"}}}"#);
    let s = post_with_trailers(&vm, r#"{"model":"m","messages":[{"role":"user","content":"ssn 123-45-6789"}]}"#);
    let reply = s.local_reply().expect("400");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "sensitive_data_detected");
    assert!(s.upstream_request_body().is_empty(), "the body reached the upstream");
}
