//! The built filter (dist/token-counter.wasm) on the wasmtime harness: usage
//! from every response shape at every split, reservations shared by several
//! VMs (Envoy workers), 429s and their headers, windows rolling over, and the
//! filter state other filters and Envoy read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{wasm_path, Action, Harness, Stream, Vm};
use serde_json::{json, Value};
use std::time::Duration;

const VM_ID: &str = "token-counter";

fn start(harness: &Harness, config: &Value) -> Vm {
    let vm = harness.vm(wasm_path("token-counter")).vm_id(VM_ID).config_json(config).start();
    assert!(vm.configured(), "{:?}", vm.logs());
    vm
}

fn per_user(limit: u64) -> Value {
    json!({
        "rules": [{"name": "per-user", "key": "header:x-user", "limit": limit, "window": "hour"}],
        "prices": {"gpt-4o*": {"input": 2.5, "output": 10}}
    })
}

fn chat(model: &str, extra: Value) -> Vec<u8> {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hello world"}]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::to_vec(&body).unwrap()
}

/// Sends a chat request; returns the stream after the request phase.
fn request(vm: &Vm, user: &str, path: &str, body: &[u8]) -> Stream {
    let mut s = vm.stream();
    let action = s.send_request_headers(
        &[(":method", "POST"), (":path", path), ("content-type", "application/json"), ("x-user", user)],
        false,
    );
    assert_eq!(action, Action::Continue, "headers go on; the body is held until complete");
    s.send_request_body(body, true);
    s
}

fn respond(s: &mut Stream, content_type: &str, chunks: &[&[u8]]) {
    s.send_response_headers(&[(":status", "200"), ("content-type", content_type)], false);
    for (i, chunk) in chunks.iter().enumerate() {
        s.send_response_body(chunk, i + 1 == chunks.len());
    }
    s.finish();
}

fn state(s: &Stream, name: &str) -> Option<String> {
    s.property_str(&[name])
}

const OPENAI_JSON: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#;
const ANTHROPIC_JSON: &str = r#"{"id":"m1","type":"message","role":"assistant","model":"claude-sonnet-4","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":20,"cache_creation_input_tokens":7}}"#;
const USAGE_EVENT: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";

fn openai_sse() -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"Hé\"}}}}],\"usage\":null}}\n\n\
         data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"llo\"}},\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n\
         {USAGE_EVENT}data: [DONE]\n\n"
    )
}

const ANTHROPIC_SSE: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":5}}}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"日本\"}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":7}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

/// Every response shape, split at every byte offset into two chunks, gives
/// the same totals; the injected usage chunk never reaches the client.
#[test]
fn usage_from_every_shape_at_every_split() {
    let harness = Harness::new();
    let vm = start(&harness, &json!({}));
    let sse = openai_sse();
    let without_usage = sse.replace(USAGE_EVENT, "");
    // (path, request extra, content type, body, expected (input, output), what the client must get)
    type Case<'a> = (&'a str, Value, &'a str, &'a str, (u64, u64), String);
    let cases: Vec<Case> = vec![
        ("/v1/chat/completions", json!({}), "application/json", OPENAI_JSON, (12, 3), OPENAI_JSON.into()),
        ("/v1/messages", json!({"max_tokens": 50}), "application/json", ANTHROPIC_JSON, (37, 5), ANTHROPIC_JSON.into()),
        // The client asked for usage: its chunk stays.
        (
            "/v1/chat/completions",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
            "text/event-stream",
            &sse,
            (9, 2),
            sse.clone(),
        ),
        // The gateway asked for usage: the extra chunk is removed.
        ("/v1/chat/completions", json!({"stream": true}), "text/event-stream", &sse, (9, 2), without_usage),
        (
            "/v1/messages",
            json!({"max_tokens": 50, "stream": true}),
            "text/event-stream",
            ANTHROPIC_SSE,
            (30, 15),
            ANTHROPIC_SSE.into(),
        ),
    ];
    for (path, extra, content_type, body, (input, output), client) in cases {
        let bytes = body.as_bytes();
        for cut in 0..=bytes.len() {
            let mut s = request(&vm, "u", path, &chat("gpt-4o", extra.clone()));
            respond(&mut s, content_type, &[&bytes[..cut], &bytes[cut..]]);
            let label = format!("{path} {extra} split at {cut}");
            assert_eq!(state(&s, "aigw.tokens.input").as_deref(), Some(input.to_string().as_str()), "{label}");
            assert_eq!(state(&s, "aigw.tokens.output").as_deref(), Some(output.to_string().as_str()), "{label}");
            assert_eq!(state(&s, "aigw.tokens.total"), Some((input + output).to_string()), "{label}");
            assert_eq!(String::from_utf8(s.client_response_body()).unwrap(), client, "{label}");
        }
    }
    assert!(vm.dead().is_none());
}

#[test]
fn stream_usage_is_requested_upstream_with_a_correct_content_length() {
    let harness = Harness::new();
    let vm = start(&harness, &json!({}));
    let s = request(&vm, "u", "/v1/chat/completions", &chat("gpt-4o", json!({"stream": true})));
    let upstream: Value = serde_json::from_slice(&s.upstream_request_body()).unwrap();
    assert_eq!(upstream["stream_options"]["include_usage"], true);
    assert_eq!(upstream["messages"][0]["content"], "hello world");
    let headers = s.upstream_request_headers().unwrap();
    assert_eq!(headers.get("content-length"), Some(s.upstream_request_body().len().to_string().as_str()));
    assert_eq!(vm.counter("aigw.token_counter.stream_usage_injected"), 1);
}

#[test]
fn a_429_carries_openai_headers_and_body() {
    let harness = Harness::new();
    let vm = start(&harness, &per_user(100));
    // A request larger than the whole budget (9 prompt tokens + 95 requested = 104 > 100) can never fit:
    // its own code, and no retry-after.
    let s = request(&vm, "ann", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 95})));
    let reply = s.local_reply().expect("a local reply");
    assert_eq!(reply.status, 429);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "request_too_large_for_budget");
    assert_eq!(reply.headers.get("retry-after"), None);
    assert_eq!(reply.headers.get("x-should-retry"), Some("false"));
    // 9 + 50 = 59 fits and stays reserved (no response yet); a second 59 does not fit this hour.
    let mut held = request(&vm, "ann", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 50})));
    assert!(held.local_reply().is_none());
    let s = request(&vm, "ann", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 50})));
    let reply = s.local_reply().expect("a local reply");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers.get("x-ratelimit-limit-tokens"), Some("100"));
    assert_eq!(reply.headers.get("x-ratelimit-remaining-tokens"), Some("41"));
    // The harness clock starts at midnight: a full hour to go.
    assert_eq!(reply.headers.get("x-ratelimit-reset-tokens"), Some("1h0m0s"));
    assert_eq!(reply.headers.get("retry-after"), Some("3600"));
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(s.upstream_request_headers().is_none(), "nothing went upstream");
    assert_eq!(vm.counter("aigw.token_counter.ratelimit.rule.per-user.rejected"), 2);
    // The held request's answer settles it to its real usage, which leaves room again.
    respond(&mut held, "application/json", &[OPENAI_JSON.as_bytes()]);

    // A request that fits is served, and its response carries the headers too.
    let mut ok = request(&vm, "ann", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 50})));
    assert!(ok.local_reply().is_none());
    respond(&mut ok, "application/json", &[OPENAI_JSON.as_bytes()]);
    let headers = ok.client_response_headers().unwrap();
    assert_eq!(headers.get("x-ratelimit-limit-tokens"), Some("100"));
    // The held request used 15, this one reserves 59.
    assert_eq!(headers.get("x-ratelimit-remaining-tokens"), Some("26"));
    assert!(headers.get("x-ratelimit-reset-tokens").is_some());
}

#[test]
fn reservations_are_shared_by_two_vms() {
    let harness = Harness::new();
    let a = start(&harness, &per_user(1000));
    let b = start(&harness, &per_user(1000));
    // Worker A reserves 9 + 500; worker B's 509 no longer fits in 1000.
    let mut first = request(&a, "bea", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 500})));
    assert!(first.local_reply().is_none());
    let second = request(&b, "bea", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 500})));
    assert_eq!(second.local_reply().map(|r| r.status), Some(429));
    // Another user is not affected.
    let other = request(&b, "carl", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 500})));
    assert!(other.local_reply().is_none());
    // A settles to its real usage (15): B now fits.
    respond(&mut first, "application/json", &[OPENAI_JSON.as_bytes()]);
    let third = request(&b, "bea", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 500})));
    assert!(third.local_reply().is_none());
}

/// A slot's value if a subject uses it. Every VM creates all slot keys at
/// configure time with an empty entry (fingerprint 0), so existence alone says
/// nothing.
fn in_use(harness: &Harness, key: &str) -> Option<Vec<u8>> {
    let (value, _) = harness.shared_data(VM_ID, key)?;
    value.chunks_exact(32).any(|entry| entry[..8] != [0; 8]).then_some(value)
}

#[test]
fn a_cas_conflict_between_workers_loses_no_reservation() {
    let harness = Harness::new();
    let a = start(&harness, &per_user(1000));
    let b = start(&harness, &per_user(1000));
    // Find the slot key by making one request, then race on it.
    let mut warm = request(&a, "dan", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 100})));
    respond(&mut warm, "application/json", &[OPENAI_JSON.as_bytes()]);
    let key = (0..10_000)
        .map(|slot| format!("token-counter/per-user/{slot}"))
        .find(|key| in_use(&harness, key).is_some())
        .unwrap();
    let b2 = b.clone();
    let racer = std::rc::Rc::new(std::cell::RefCell::new(None));
    let racer_slot = racer.clone();
    // Right after A reads the counter, B reserves: A's CAS fails and it retries.
    harness.after_shared_data_get(VM_ID, &key, move || {
        *racer_slot.borrow_mut() =
            Some(request(&b2, "dan", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 400}))));
    });
    let mine = request(&a, "dan", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 400})));
    assert!(mine.local_reply().is_none());
    assert!(racer.borrow().as_ref().unwrap().local_reply().is_none());
    // 15 used + 409 + 409 reserved: both reservations are there, the third no longer fits.
    let third = request(&a, "dan", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 400})));
    assert_eq!(third.local_reply().map(|r| r.status), Some(429));
    assert_eq!(
        third.local_reply().unwrap().headers.get("x-ratelimit-remaining-tokens"),
        Some((1000 - 15 - 409 - 409).to_string().as_str())
    );
}

/// Requests that arrive together across three workers never overshoot the
/// budget by more than the documented bound: the sum over admitted requests
/// of what they used beyond their reservation.
#[test]
fn concurrent_requests_stay_within_the_overshoot_bound() {
    let harness = Harness::new();
    let limit = 2000;
    let vms: Vec<Vm> = (0..3).map(|_| start(&harness, &per_user(limit))).collect();
    // 30 requests in flight at once, round-robin over the workers: every
    // request's reservation happens before any response settles.
    let mut streams = Vec::new();
    for i in 0..30 {
        // Half ask max_tokens 100 (reserve 109), half set nothing (reserve 9 + 256).
        let extra = if i % 2 == 0 { json!({"max_tokens": 100}) } else { json!({}) };
        let s = request(&vms[i % 3], "eve", "/v1/chat/completions", &chat("gpt-4o", extra));
        streams.push((i, s));
    }
    let mut admitted_reserved = 0;
    let mut overshoot_allowance = 0;
    let mut used = 0;
    for (i, s) in &mut streams {
        if s.local_reply().is_some() {
            continue;
        }
        let reserved = if *i % 2 == 0 { 109 } else { 9 + 256 };
        admitted_reserved += reserved;
        // Requests with max_tokens use at most it; the others use 400 output tokens, 144 more than reserved.
        let output = if *i % 2 == 0 { 100 } else { 400 };
        overshoot_allowance += (9 + output as u64).saturating_sub(reserved);
        used += 9 + output as u64;
        let body = format!(
            r#"{{"choices":[{{"message":{{"role":"assistant","content":"x"}}}}],"usage":{{"prompt_tokens":9,"completion_tokens":{output}}}}}"#
        );
        respond(s, "application/json", &[body.as_bytes()]);
    }
    // Admission never let reservations pass the limit...
    assert!(admitted_reserved <= limit, "{admitted_reserved}");
    // ...and the real usage stays within limit + the bound.
    assert!(used <= limit + overshoot_allowance, "{used} > {limit} + {overshoot_allowance}");
    assert!(used > limit, "this scenario is meant to use part of its allowance");
    // The shared counter holds exactly the settled usage and no leftover
    // reservation: nothing was lost or double-counted across workers.
    let value = (0..10_000).find_map(|slot| in_use(&harness, &format!("token-counter/per-user/{slot}"))).unwrap();
    let field = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().unwrap());
    assert_eq!((field(16), field(24)), (used, 0), "used and reserved");
}

#[test]
fn windows_roll_over() {
    let harness = Harness::new();
    let vm = start(&harness, &per_user(500));
    let mut first = request(&vm, "fay", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 400})));
    let body = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":400}}"#;
    respond(&mut first, "application/json", &[body.as_bytes()]);
    let refused = request(&vm, "fay", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 200})));
    assert_eq!(refused.local_reply().map(|r| r.status), Some(429));
    harness.advance_clock(Duration::from_secs(3600));
    let mut later = request(&vm, "fay", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 200})));
    assert!(later.local_reply().is_none());
    respond(&mut later, "application/json", &[OPENAI_JSON.as_bytes()]);
    let headers = later.client_response_headers().unwrap();
    assert_eq!(headers.get("x-ratelimit-remaining-tokens"), Some((500 - 209).to_string().as_str()));
    // Still one key for this subject: windows reuse it.
    let keys = (0..10_000).filter(|slot| in_use(&harness, &format!("token-counter/per-user/{slot}")).is_some());
    assert_eq!(keys.count(), 1);
}

#[test]
fn the_seed_budget_500_tokens_per_hour_per_jwt_subject() {
    let harness = Harness::new();
    let config = json!({"rules": [{"name": "per-sub", "key": "jwt:sub", "limit": 500, "window": "hour"}]});
    let vm = start(&harness, &config);
    let send = |sub: &str, max_tokens: u64| {
        let mut s = vm.stream();
        s.set_jwt_payload(json!({"sub": sub, "iss": "aigw-demo"}));
        s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")], false);
        s.send_request_body(chat("gpt-4o", json!({"max_tokens": max_tokens})), true);
        s
    };
    let mut served = 0;
    for _ in 0..10 {
        let mut s = send("alice", 100);
        if s.local_reply().is_some() {
            break;
        }
        served += 1;
        let body = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":100}}"#;
        respond(&mut s, "application/json", &[body.as_bytes()]);
    }
    // 109 tokens each: four fit in 500, the fifth (545) does not.
    assert_eq!(served, 4);
    assert!(send("bob", 100).local_reply().is_none(), "another subject keeps its own budget");
}

#[test]
fn failed_upstreams_release_and_signal_rules_flag() {
    let harness = Harness::new();
    let config = json!({"rules": [
        {"name": "hard", "key": "header:x-user", "limit": 300, "window": "hour"},
        {"name": "soft", "key": "header:x-user", "limit": 10, "window": "hour", "on_exceeded": "signal"}
    ]});
    let vm = start(&harness, &config);
    let mut failed = request(&vm, "gus", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 280})));
    assert_eq!(failed.property_str(&["aigw.budget.exceeded"]).as_deref(), Some("1"));
    assert!(failed.local_reply().is_none(), "signal rules never reject");
    failed.send_response_headers(&[(":status", "503"), ("content-type", "application/json")], false);
    failed.send_response_body(br#"{"error":{"message":"overloaded"}}"#, true);
    failed.finish();
    // The 289 tokens came back: the same request fits again.
    let retry = request(&vm, "gus", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 280})));
    assert!(retry.local_reply().is_none());
    // A reset before the response releases as well.
    let mut reset = retry;
    reset.finish();
    let again = request(&vm, "gus", "/v1/chat/completions", &chat("gpt-4o", json!({"max_tokens": 280})));
    assert!(again.local_reply().is_none());
}

#[test]
fn metrics_and_filter_state_for_access_logs_and_hits_addend() {
    let harness = Harness::new();
    let vm = start(&harness, &per_user(100_000));
    let mut s = request(&vm, "hal", "/v1/chat/completions", &chat("gpt-4o", json!({"stream": true})));
    harness.advance_clock(Duration::from_millis(120));
    s.send_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
    let sse = openai_sse();
    let (head, tail) = sse.split_at(
        sse.find(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\"",
        )
        .unwrap(),
    );
    s.send_response_body(head, false);
    harness.advance_clock(Duration::from_millis(40));
    s.send_response_body(tail, true);
    s.finish();
    // What %FILTER_STATE(wasm.aigw.tokens.total:PLAIN)% and a rate limit
    // `hits_addend` read.
    assert_eq!(state(&s, "aigw.tokens.total").as_deref(), Some("11"));
    assert_eq!(state(&s, "aigw.tokens.input").as_deref(), Some("9"));
    // 9 × 2.5 + 2 × 10 = 42.5 µ$.
    assert_eq!(state(&s, "aigw.cost.micro_usd").as_deref(), Some("43"));
    assert_eq!(vm.counter("aigw.token_counter.tokens.model.gpt-4o.input"), 9);
    assert_eq!(vm.counter("aigw.token_counter.tokens.model.gpt-4o.output"), 2);
    assert_eq!(vm.counter("aigw.token_counter.cost.model.gpt-4o.micro_usd"), 43);
    assert_eq!(vm.counter("aigw.token_counter.requests.model.gpt-4o.total"), 1);
    assert_eq!(vm.counter("aigw.token_counter.usage_chunks_removed"), 1);
    assert_eq!(vm.histogram("aigw.token_counter.latency.model.gpt-4o.ttft_ms"), vec![120]);
    assert_eq!(vm.histogram("aigw.token_counter.latency.model.gpt-4o.tpot_ms"), vec![40]);
    assert_eq!(vm.histogram("aigw.token_counter.latency.model.gpt-4o.total_ms"), vec![160]);
}

#[test]
fn bad_input_never_crashes_and_is_still_counted() {
    let harness = Harness::new();
    let vm = start(&harness, &per_user(1_000_000));
    // Not JSON.
    let mut s = request(&vm, "ivy", "/v1/chat/completions", b"{not json at all");
    assert!(s.local_reply().is_none());
    assert_eq!(s.upstream_request_body(), b"{not json at all");
    respond(&mut s, "application/json", &[b"<html>oops</html>"]);
    assert_eq!(vm.counter("aigw.token_counter.uncountable_requests"), 1);
    // Unknown model: approximated, and said so in a metric.
    let mut s = request(&vm, "ivy", "/v1/chat/completions", &chat("mystery-llm", json!({})));
    respond(&mut s, "application/json", &[OPENAI_JSON.as_bytes()]);
    assert_eq!(vm.counter("aigw.token_counter.requests.model.mystery-llm.unknown_model"), 1);
    // A pathological prompt (one 300 000-letter word) is counted without stalling the VM.
    let word = "a".repeat(300_000);
    let body =
        serde_json::to_vec(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": word}]})).unwrap();
    let s = request(&vm, "ivy", "/v1/chat/completions", &body);
    assert!(s.local_reply().is_none());
    assert_eq!(vm.counter("aigw.token_counter.tokenizer_capped"), 1);
    // Multipart uploads are estimated from content-length, not buffered.
    let mut upload = vm.stream();
    let action = upload.send_request_headers(
        &[
            (":method", "POST"),
            (":path", "/v1/audio/transcriptions"),
            ("content-type", "multipart/form-data; boundary=x"),
            ("content-length", "4000"),
            ("x-user", "ivy"),
        ],
        false,
    );
    assert_eq!(action, Action::Continue);
    assert!(vm.dead().is_none());
}

#[test]
fn invalid_configs_are_refused_naming_the_field() {
    let harness = Harness::new();
    let vm = harness
        .vm(wasm_path("token-counter"))
        .vm_id(VM_ID)
        .config(r#"{"rules": [{"name": "r", "key": "jwt:sub", "limit": 5, "window": "fortnight"}]}"#)
        .start();
    assert!(!vm.configured());
    assert!(vm.logs_contain("token-counter: invalid configuration: rules[0].window"), "{:?}", vm.logs());
}

#[test]
fn trailers_end_requests_and_responses_without_stalling() {
    let harness = Harness::new();
    let vm = start(&harness, &per_user(100_000));
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions"), ("x-user", "kim")], false);
    s.send_request_body(chat("gpt-4o", json!({})), false);
    s.send_request_trailers(&[("x-checksum", "1")]);
    assert!(s.request_complete(), "the request went upstream");
    // Trailers complete the body: it is counted like the same request without them.
    assert_eq!(vm.counter("aigw.token_counter.uncountable_requests"), 0);
    s.send_response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.send_response_body(OPENAI_JSON, false);
    s.send_response_trailers(&[("grpc-status", "0")]);
    assert_eq!(state(&s, "aigw.tokens.total").as_deref(), Some("15"));
}

/// `store: rls` on the wasm: the body is held (never the headers) while the reservation is asked of
/// the rate limit service over gRPC; OK forwards, OVER_LIMIT answers 429 with the service's remaining
/// count, a failed call applies `failure_mode`; settlements leave from the root context on its tick.
#[test]
fn rate_limit_service_reservations_hold_the_body_and_settle_from_the_root() {
    use aigw_shared::ratelimit_proto::{Code, Request, Response, Status, METHOD, OP_KEY, REFUND_KEY, SERVICE};
    let answer = |code, remaining| {
        Response {
            overall_code: code,
            statuses: vec![Status {
                code,
                current_limit: None,
                limit_remaining: remaining,
                duration_until_reset_seconds: None,
            }],
        }
        .encode()
    };
    let config = |mode: &str| {
        json!({"store": {"rls": {"cluster": "ratelimit", "domain": "d", "timeout_ms": 300}}, "failure_mode": mode,
               "rules": [{"name": "per-user", "key": "header:x-user", "limit": 1000, "window": "hour"}]})
    };
    let harness = Harness::new();
    let vm = start(&harness, &config("open"));
    assert!(vm.tick_period().is_some(), "the root context sends settlements on its tick");

    // Admitted: one call, the body paused until it answers, then forwarded.
    let mut s = vm.stream();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-user", "ann"),
    ];
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    assert_eq!(s.send_request_body(chat("gpt-4o", json!({"max_tokens": 50})), true), Action::Pause);
    let calls = vm.pending_grpc_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!((call.cluster.as_str(), call.service.as_str(), call.method.as_str()), ("ratelimit", SERVICE, METHOD));
    assert_eq!(call.timeout_ms, 300);
    let reserve = Request::decode(&call.message).unwrap();
    assert_eq!(reserve.domain, "d");
    assert_eq!(reserve.descriptors[0].entry("subject"), Some("ann"));
    assert_eq!(reserve.descriptors[1].entry(OP_KEY), Some("reserve"));
    let reserved = reserve.hits_addend;
    assert!(reserved > 50, "prompt + max_tokens: {reserved}");
    assert!(!s.request_complete(), "nothing reaches the upstream before the answer");
    vm.answer_grpc_call(call.token, answer(Code::Ok, 1000 - reserved));
    assert!(s.request_complete(), "resumed after the answer");
    assert!(s.local_reply().is_none());
    // The provider reports 15 tokens: the excess comes back, sent from the root context on its tick.
    respond(&mut s, "application/json", &[OPENAI_JSON.as_bytes()]);
    assert_eq!(
        s.client_response_headers().unwrap().get("x-ratelimit-remaining-tokens"),
        Some((1000 - reserved).to_string().as_str())
    );
    assert!(vm.pending_grpc_calls().is_empty(), "nothing sent from the finished stream");
    vm.tick();
    let settle = vm.pending_grpc_calls();
    assert_eq!(settle.len(), 1);
    assert_eq!(settle[0].context_id, 1, "sent by the root context");
    let refund = Request::decode(&settle[0].message).unwrap();
    assert_eq!(refund.hits_addend, reserved - 15);
    assert_eq!(refund.descriptors[0].entries.last().unwrap().0, REFUND_KEY);
    vm.answer_grpc_call(settle[0].token, answer(Code::Ok, 0));

    // OVER_LIMIT: 429 with the service's numbers.
    let mut s = vm.stream();
    s.send_request_headers(&headers, false);
    s.send_request_body(chat("gpt-4o", json!({"max_tokens": 50})), true);
    let token = vm.pending_grpc_calls()[0].token;
    vm.answer_grpc_call(token, answer(Code::OverLimit, 7));
    let reply = s.local_reply().expect("429");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers.get("x-ratelimit-remaining-tokens"), Some("7"));
    assert!(!s.request_complete());

    // The service fails (UNAVAILABLE): fail open forwards, counted and logged once.
    let mut s = vm.stream();
    s.send_request_headers(&headers, false);
    s.send_request_body(chat("gpt-4o", json!({})), true);
    vm.fail_grpc_call(vm.pending_grpc_calls()[0].token, 14);
    assert!(s.request_complete() && s.local_reply().is_none());
    assert_eq!(vm.counter("aigw.token_counter.ratelimit.rule.per-user.store_errors"), 1);
    assert!(vm.logs_contain("rate limit service (cluster ratelimit) unavailable"));
    // Its usage is still charged at the end (not reserved: a plain charge).
    respond(&mut s, "application/json", &[OPENAI_JSON.as_bytes()]);
    vm.tick();
    let charge = Request::decode(&vm.pending_grpc_calls()[0].message).unwrap();
    assert_eq!((charge.hits_addend, charge.descriptors.len()), (15, 1));
    vm.answer_grpc_call(vm.pending_grpc_calls()[0].token, answer(Code::Ok, 0));
    assert!(vm.logs_contain("answers again"));

    // Fail closed: 503.
    let closed = start(&harness, &config("closed"));
    let mut s = closed.stream();
    s.send_request_headers(&headers, false);
    s.send_request_body(chat("gpt-4o", json!({})), true);
    closed.fail_grpc_call(closed.pending_grpc_calls()[0].token, 4);
    assert_eq!(s.local_reply().expect("503").status, 503);
    assert!(vm.dead().is_none() && closed.dead().is_none());
}

/// `store: rls`, a body the filter does not parse (estimated from `content-length` at the headers): the
/// reservation is asked at the headers, which continue anyway; the body waits for the answer.
#[test]
fn rate_limit_service_reservation_for_an_unparsed_body_holds_the_body_not_the_headers() {
    use aigw_shared::ratelimit_proto::{Code, Request, Response, Status};
    let ok = Response {
        overall_code: Code::Ok,
        statuses: vec![Status {
            code: Code::Ok,
            current_limit: None,
            limit_remaining: 500,
            duration_until_reset_seconds: None,
        }],
    }
    .encode();
    let harness = Harness::new();
    let vm = start(
        &harness,
        &json!({"store": {"rls": {"cluster": "ratelimit"}},
                "rules": [{"name": "per-user", "key": "header:x-user", "limit": 1000, "window": "hour"}]}),
    );
    let headers = [
        (":method", "POST"),
        (":path", "/v1/audio/transcriptions"),
        ("content-type", "multipart/form-data; boundary=x"),
        ("content-length", "400"),
        ("x-user", "uma"),
    ];
    // Answer before the body arrives: nothing to resume, the body then passes.
    let mut s = vm.stream();
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    let call = vm.pending_grpc_calls()[0].clone();
    assert_eq!(Request::decode(&call.message).unwrap().hits_addend, 100 + 256, "400 bytes / 4 + default output");
    vm.answer_grpc_call(call.token, ok.clone());
    assert_eq!(s.send_request_body(vec![b'x'; 400], true), Action::Continue);
    assert!(s.request_complete());
    // Body first: held until the answer, then resumed.
    let mut s = vm.stream();
    assert_eq!(s.send_request_headers(&headers, false), Action::Continue);
    assert_eq!(s.send_request_body(vec![b'x'; 400], true), Action::Pause);
    assert!(!s.request_complete());
    vm.answer_grpc_call(vm.pending_grpc_calls()[0].token, ok);
    assert!(s.request_complete());
    assert!(vm.dead().is_none());
}
