//! The harness's own tests, on the fixture filter (tests/fixture-filter): every
//! effect the harness promises, asserted on what the upstream and the client got.

// Test code: a failed expectation is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{fixture_path, Action, Harness, LogLevel, Stream, Vm};
use aigw_shared::attributes::envoy_value;
use serde_json::json;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

fn fixture(harness: &Harness) -> Vm {
    let vm = harness.vm(fixture_path()).config(r#"{"header_value":"yes"}"#).vm_id("fixture").start();
    assert!(vm.configured(), "fixture did not configure: {:?}", vm.logs());
    vm
}

fn post(stream: &mut Stream, action: &str, end_of_stream: bool) -> Action {
    stream.send_request_headers(
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
            ("content-length", "11"),
            ("x-fixture-action", action),
            ("X-Fixture-Remove", "drop me"),
        ],
        end_of_stream,
    )
}

#[test]
fn start_sequence_and_logs() {
    let harness = Harness::new();
    let vm = harness.vm(fixture_path()).vm_config("vmcfg").start();
    assert!(vm.started() && vm.configured());
    assert_eq!(vm.log_messages(), vec!["fixture: vm started (5 bytes of vm configuration)", "fixture: configured"]);
    assert_eq!(vm.logs()[0].level, LogLevel::Info);
}

#[test]
fn bad_config_is_a_configure_failure() {
    let harness = Harness::new();
    let vm = harness.vm(fixture_path()).config(r#"{"nope":1}"#).start();
    assert!(vm.started());
    assert!(!vm.configured());
    let errors: Vec<_> = vm.logs().into_iter().filter(|l| l.level == LogLevel::Error).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.starts_with("fixture: invalid configuration: unknown field `nope`"), "{errors:?}");
    let refused = catch_unwind(AssertUnwindSafe(|| vm.stream()));
    assert!(refused.is_err(), "a VM whose configure failed must not serve streams");
}

#[test]
fn header_edit_reaches_the_upstream() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    assert_eq!(post(&mut s, "", true), Action::Continue);
    let upstream = s.upstream_request_headers().expect("headers forwarded");
    assert_eq!(upstream.get("x-fixture-seen"), Some("yes"));
    assert!(!upstream.contains("x-fixture-remove"));
    assert_eq!(upstream.get(":path"), Some("/v1/chat/completions"));
    assert!(s.request_complete());

    assert_eq!(s.send_response_headers(&[(":status", "200")], true), Action::Continue);
    let client = s.client_response_headers().expect("response forwarded");
    assert_eq!(client.get("x-fixture-response"), Some("1"));
    assert!(s.response_complete());
}

#[test]
fn streaming_chunks_are_forwarded_as_they_come() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    post(&mut s, "", false);
    assert_eq!(s.send_request_body("hello ", false), Action::Continue);
    assert_eq!(s.upstream_request_body(), b"hello ");
    assert_eq!(s.send_request_body("world", true), Action::Continue);
    assert_eq!(s.upstream_request_body(), b"hello world");
    assert!(s.request_complete());
    assert_eq!(vm.histogram("fixture.request_body_bytes"), vec![5], "the last callback saw only its chunk");
}

#[test]
fn whole_body_replacement_after_buffering() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    assert_eq!(post(&mut s, "replace-body", false), Action::Continue);
    // content-length was removed while the headers could still change.
    assert!(!s.forwarded_request_headers().unwrap().contains("content-length"));

    assert_eq!(s.send_request_body("hello ", false), Action::Pause);
    assert_eq!(s.send_request_body("big ", false), Action::Pause);
    assert!(s.upstream_request_body().is_empty(), "nothing forwarded while the filter buffers");
    assert_eq!(s.buffered_request_body(), b"hello big ");
    assert_eq!(s.send_request_body("world", true), Action::Continue);
    assert_eq!(s.upstream_request_body(), b"HELLO BIG WORLD");
    assert!(s.buffered_request_body().is_empty());
    assert!(s.request_complete());
    // The last callback saw everything Envoy buffered, not just its chunk.
    assert_eq!(vm.histogram("fixture.request_body_bytes"), vec![15]);

    s.send_response_headers(&[(":status", "200"), ("content-length", "7")], false);
    assert!(!s.client_response_headers().unwrap().contains("content-length"));
    assert_eq!(s.send_response_body("ans", false), Action::Pause);
    assert_eq!(s.send_response_body("wer", true), Action::Continue);
    assert_eq!(s.client_response_body(), b"ANSWER");
}

#[test]
fn paused_headers_go_out_with_the_body_and_late_edits() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    assert_eq!(post(&mut s, "pause-headers", false), Action::Pause);
    assert!(s.upstream_request_headers().is_none());
    assert_eq!(s.send_request_body("abc", false), Action::Pause);
    assert!(s.upstream_request_headers().is_none());
    assert_eq!(s.send_request_body("defgh", true), Action::Continue);
    let headers = s.upstream_request_headers().expect("released by the body callback");
    assert_eq!(headers.get("x-body-bytes"), Some("8"));
    assert_eq!(s.upstream_request_body(), b"abcdefgh");
}

#[test]
fn local_reply_stops_the_stream() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    assert_eq!(post(&mut s, "local-reply", false), Action::Pause);
    let reply = s.local_reply().expect("local reply");
    assert_eq!(reply.status, 403);
    assert_eq!(reply.headers.get("x-fixture"), Some("denied"));
    assert_eq!(reply.json(), json!({"error": "denied by fixture"}));
    assert!(s.upstream_request_headers().is_none(), "a rejected request never reaches the upstream");
    // Envoy runs a local reply through the encoder filters, the sender included.
    let client = s.client_response_headers().expect("the client got the reply");
    assert_eq!(client.get(":status"), Some("403"));
    assert_eq!(client.get("content-type"), Some("application/json"));
    assert_eq!(client.get("x-fixture-response"), Some("1"), "the filter's response callback saw its own reply");
    assert_eq!(client.get("content-length"), Some(reply.body.len().to_string().as_str()));
    assert_eq!(s.client_response_body(), reply.body);
    assert!(s.response_complete());
    // Envoy does not call the filter for this stream any more.
    assert_eq!(s.send_request_body("ignored", true), Action::Pause);
    assert!(s.upstream_request_body().is_empty());
    assert_eq!(vm.histogram("fixture.request_body_bytes"), Vec::<u64>::new());
}

#[test]
fn http_call_answered_resumes_the_request() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    assert_eq!(post(&mut s, "http-call", false), Action::Pause);
    let calls = s.pending_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.cluster, "authz");
    assert_eq!(call.headers.get(":path"), Some("/check"));
    assert_eq!(call.headers.get("x-check"), Some("1"));
    assert_eq!(call.body_str(), "check me");
    assert_eq!(call.headers.get("content-length"), Some("8"), "Envoy sets it on the call");
    assert_eq!(call.timeout_ms, 2500);

    // The body arrives while the call is in flight: held, not forwarded.
    assert_eq!(s.send_request_body("payload", true), Action::Pause);
    assert!(s.upstream_request_headers().is_none());

    s.answer_http_call(call.token, 200, &[("content-type", "text/plain")], "allowed");
    let headers = s.upstream_request_headers().expect("resumed by proxy_continue_stream");
    assert_eq!(headers.get("x-authz"), Some("allowed"));
    assert_eq!(s.upstream_request_body(), b"payload");
    assert!(s.request_complete());
    assert!(s.pending_http_calls().is_empty());
    assert!(vm.http_calls()[0].answered);
}

#[test]
fn http_call_denied_or_failed_becomes_a_local_reply() {
    let harness = Harness::new();
    let vm = fixture(&harness);

    let mut denied = vm.stream();
    post(&mut denied, "http-call", true);
    let token = denied.pending_http_calls()[0].token;
    denied.answer_http_call(token, 403, &[], "no");
    assert_eq!(denied.local_reply().map(|r| r.status), Some(403));
    assert!(denied.upstream_request_headers().is_none());

    let mut failed = vm.stream();
    post(&mut failed, "http-call", true);
    let token = failed.pending_http_calls()[0].token;
    failed.fail_http_call(token);
    assert_eq!(failed.local_reply().map(|r| r.status), Some(503));
    assert!(vm.logs_contain("fixture: authz call failed"));
}

#[test]
fn http_call_to_an_unknown_cluster_is_refused() {
    let harness = Harness::new();
    let vm = harness.vm(fixture_path()).clusters(&["other"]).start();
    let mut s = vm.stream();
    post(&mut s, "http-call", true);
    assert!(vm.http_calls().is_empty());
    assert_eq!(s.local_reply().map(|r| r.status), Some(500));
    assert!(vm.notes().iter().any(|n| n.contains("unknown cluster `authz`")), "{:?}", vm.notes());
}

#[test]
fn cas_conflict_between_two_vms_resolves() {
    let harness = Harness::new();
    let worker_a = fixture(&harness);
    let worker_b = fixture(&harness);
    harness.set_shared_data("fixture", "fixture.count", 0u64.to_le_bytes());

    // Worker B increments between worker A's read and its compare-and-swap write.
    let b = worker_b.clone();
    let b_stream = std::rc::Rc::new(std::cell::RefCell::new(None));
    let b_slot = b_stream.clone();
    harness.after_shared_data_get("fixture", "fixture.count", move || {
        let mut s = b.stream();
        post(&mut s, "count", true);
        *b_slot.borrow_mut() = Some(s);
    });

    let mut a = worker_a.stream();
    post(&mut a, "count", true);
    assert_eq!(harness.cas_mismatches(), 1, "worker A's first write conflicted");

    let b_done = b_stream.borrow_mut().take().expect("the hook ran worker B");
    assert_eq!(b_done.upstream_request_headers().unwrap().get("x-count"), Some("1"));
    // A's first write hit CasMismatch; it re-read 1 and wrote 2.
    assert_eq!(a.upstream_request_headers().unwrap().get("x-count"), Some("2"));
    let (value, _cas) = harness.shared_data("fixture", "fixture.count").unwrap();
    assert_eq!(value, 2u64.to_le_bytes());
}

#[test]
fn shared_data_is_per_vm_id() {
    let harness = Harness::new();
    let one = fixture(&harness);
    let other = harness.vm(fixture_path()).vm_id("other").start();
    for vm in [&one, &one, &other] {
        let mut s = vm.stream();
        post(&mut s, "count", true);
    }
    assert_eq!(harness.shared_data("fixture", "fixture.count").unwrap().0, 2u64.to_le_bytes());
    assert_eq!(harness.shared_data("other", "fixture.count").unwrap().0, 1u64.to_le_bytes());
}

#[test]
fn metrics_counters_gauges_histograms() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let second_worker = fixture(&harness);
    let mut s1 = vm.stream();
    post(&mut s1, "", true);
    let mut s2 = second_worker.stream();
    post(&mut s2, "", false);
    s2.send_request_body("abcd", true);
    assert_eq!(vm.counter("fixture.requests_total"), 2, "stats are shared by the workers");
    assert_eq!(vm.gauge("fixture.active_streams"), 2);
    s1.finish();
    assert_eq!(vm.gauge("fixture.active_streams"), 1);
    assert_eq!(harness.histogram("fixture.request_body_bytes"), vec![4]);
    assert_eq!(vm.counter("fixture.unknown"), 0);
}

#[test]
fn ticks_and_clock() {
    let harness = Harness::new();
    let vm = harness.vm(fixture_path()).config(r#"{"tick_period_ms":1500}"#).start();
    assert_eq!(vm.tick_period(), Some(Duration::from_millis(1500)));
    let before = harness.now();
    harness.advance_clock(Duration::from_secs(2));
    assert_eq!(harness.now().duration_since(before).unwrap(), Duration::from_secs(2));
    vm.tick();
    vm.tick();
    assert_eq!(vm.counter("fixture.ticks_total"), 2);

    let no_ticks = harness.vm(fixture_path()).start();
    assert!(catch_unwind(AssertUnwindSafe(|| no_ticks.tick())).is_err(), "Envoy never ticks without a period");
}

#[test]
fn properties_metadata_and_filter_state() {
    let harness = Harness::new();
    let vm = harness.vm(fixture_path()).property(&["xds", "route_name"], "default-route").start();
    let mut s = vm.stream();
    s.set_jwt_payload(json!({"sub": "user-1", "tier": {"name": "gold", "limit": 5}, "groups": ["a", "b"]}));
    post(&mut s, "properties", true);
    let headers = s.upstream_request_headers().unwrap();
    assert_eq!(headers.get("x-route"), Some("default-route"));
    assert_eq!(headers.get("x-jwt-sub"), Some("user-1"));
    assert_eq!(s.property_str(&["fixture.seen"]).as_deref(), Some("yes"), "filter state the filter set");

    // Envoy's serialisation of metadata values.
    let jwt = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload"];
    let limit = s.property(&[&jwt[..], &["tier", "limit"]].concat()).unwrap();
    assert_eq!(limit, 5f64.to_le_bytes());
    let tier = s.property(&[&jwt[..], &["tier"]].concat()).unwrap();
    assert_eq!(envoy_value::decode(&tier), json!({"name": "gold", "limit": 5.0}));
    assert_eq!(s.property(&[&jwt[..], &["groups", "1"]].concat()).unwrap(), b"b");
    assert!(s.property(&[&jwt[..], &["missing"]].concat()).is_none());

    // A stream's own property wins over the VM default; derived request attributes.
    let mut other = vm.stream();
    other.set_property(&["xds", "route_name"], "r2");
    post(&mut other, "properties", true);
    assert_eq!(other.upstream_request_headers().unwrap().get("x-route"), Some("r2"));
    assert_eq!(other.property_str(&["request", "path"]).as_deref(), Some("/v1/chat/completions"));
    assert!(other.upstream_request_headers().unwrap().get("x-jwt-sub").is_none());

    // Filter state written in on_log is readable after the stream ends.
    s.finish();
    assert_eq!(s.property_str(&["fixture.request_body_bytes"]).as_deref(), Some("0"));
}

#[test]
fn a_guest_panic_is_reported_with_the_callback_and_kills_the_vm() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    let failure =
        catch_unwind(AssertUnwindSafe(|| post(&mut s, "panic", true))).expect_err("the trap must fail the test");
    let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("trapped in proxy_on_request_headers"), "{message}");
    assert!(message.contains("fixture: panic requested"), "the guest's panic message is shown: {message}");
    assert!(vm.dead().is_some());
    let again = catch_unwind(AssertUnwindSafe(|| vm.stream())).expect_err("a dead VM serves nothing");
    let again = again.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(again.contains("VM is dead"), "{again}");
}

#[test]
fn logs_can_be_checked_for_secrets() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    s.send_request_headers(&[(":method", "GET"), (":path", "/"), ("authorization", "Bearer sk-secret")], true);
    vm.assert_no_log_contains("sk-secret");
    let leak = catch_unwind(AssertUnwindSafe(|| vm.assert_no_log_contains("fixture: configured")));
    assert!(leak.is_err(), "the assertion fails when a log line contains the text");
}

#[test]
fn local_reply_from_the_response_path_goes_straight_to_the_client() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    post(&mut s, "reply-on-response", true);
    assert!(s.request_complete());
    assert_eq!(s.send_response_headers(&[(":status", "200"), ("x-upstream", "1")], false), Action::Pause);
    assert_eq!(s.local_reply().map(|r| r.status), Some(502));
    let client = s.client_response_headers().unwrap();
    assert_eq!(client.get(":status"), Some("502"));
    assert_eq!(client.get("x-fixture"), Some("bad-upstream"));
    assert!(!client.contains("x-upstream"), "the upstream response is replaced");
    assert!(!client.contains("x-fixture-response"), "the reply bypasses the encoder filters");
    assert_eq!(s.client_response_body(), b"bad upstream");
    // The rest of the upstream response is dropped.
    assert_eq!(s.send_response_body("late", true), Action::Pause);
    assert_eq!(s.client_response_body(), b"bad upstream");
}

#[test]
fn headers_are_not_readable_after_they_were_forwarded() {
    let harness = Harness::new();
    let vm = fixture(&harness);
    let mut s = vm.stream();
    assert_eq!(post(&mut s, "late-header-read", false), Action::Continue);
    let failure =
        catch_unwind(AssertUnwindSafe(|| s.send_request_body("x", true))).expect_err("Envoy answers BadArgument");
    let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("trapped in proxy_on_request_body"), "{message}");
    assert!(message.contains("RequestHeaders are not available in proxy_on_request_body"), "{message}");
}

#[test]
fn a_filter_stuck_in_a_loop_is_interrupted() {
    let harness = Harness::new();
    let vm = harness.vm(fixture_path()).call_deadline(Duration::from_millis(300)).start();
    let mut s = vm.stream();
    let failure = catch_unwind(AssertUnwindSafe(|| post(&mut s, "spin", true))).expect_err("interrupted");
    let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("trapped in proxy_on_request_headers"), "{message}");
    assert!(message.contains("interrupt"), "{message}");
    assert!(vm.dead().is_some());
}
