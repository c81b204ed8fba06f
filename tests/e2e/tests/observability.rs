//! Traces: a real Envoy running gateway.yaml with tracing on (what `AIGW_OTLP_ENDPOINT` does for
//! `just up`) sends OpenTelemetry spans to an OTLP/gRPC receiver started by the test. Each request's
//! server span carries the GenAI attributes the filters hand to Envoy as filter state
//! (envoy-config/observability/tracing.yaml), a failover shows one client span per attempt, a 429 is
//! traced, and no prompt or completion text is ever on a span.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::otel::OtlpReceiver;
use aigw_e2e::{jwt, Gateway};
use serde_json::{json, Value};

const SECRET_EMAIL: &str = "jane.doe.trace@example.com";

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"][key].as_str()
}

/// The server span of the request sent with `user-agent: <name>` (Envoy records the user agent; it
/// replaces a client's x-request-id at the edge, so that cannot name a request).
fn server_span<'a>(spans: &'a [Value], name: &str) -> Option<&'a Value> {
    spans.iter().find(|s| s["kind"] == 2 && attr(s, "user_agent") == Some(name))
}

fn client_spans<'a>(spans: &'a [Value], trace_id: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["kind"] == 3 && s["trace_id"] == trace_id).collect()
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[test]
fn requests_are_traced_with_genai_attributes_and_never_with_text() {
    let receiver = OtlpReceiver::start();
    let gw = Gateway::builder().otlp_collector(receiver.port()).start();

    // A JSON chat with an e-mail address in the prompt, and a stream.
    let text = format!("Hello, my email is {SECRET_EMAIL}");
    // `temperature: 0`: semantic-cache stores only deterministic answers (by default).
    let mut cacheable = chat("gpt-4o-mini", &text, false);
    cacheable["temperature"] = json!(0);
    let json_reply = gw.chat_with(&[("user-agent", "trace-json")], &cacheable);
    assert_eq!(json_reply.status, 200, "{}", json_reply.text());
    // The same question again: semantic-cache answers it.
    let again = gw.chat_with(&[("user-agent", "trace-again")], &cacheable);
    assert_eq!(again.status, 200, "{}", again.text());
    let stream_reply = gw.chat_with(&[("user-agent", "trace-stream")], &chat("gpt-4o-mini", "stream me", true));
    assert_eq!(stream_reply.status, 200, "{}", stream_reply.text());
    // The provider's 429 (no failover for this model), and a failover: primary 503, secondary answers.
    let limited = gw.chat_with(
        &[("user-agent", "trace-429"), ("x-mock-status", "429")],
        &chat("claude-sonnet-4-5", "limited", false),
    );
    assert_eq!(limited.status, 429, "{}", limited.text());
    let failover = gw.chat_with(
        &[("user-agent", "trace-failover"), ("x-mock-status", "503"), ("x-mock-fault-backend", "mock")],
        &chat("failover-demo", "fail over", false),
    );
    assert_eq!(failover.status, 200, "{}", failover.text());
    // Our own 429: a subject over its token budget (per-sub: 500 tokens an hour).
    let bearer = format!("Bearer {}", jwt::demo_token(json!({"sub": "trace-budget"})));
    let long = chat("gpt-4o-mini", &"budget ".repeat(300), false);
    let mut refused = None;
    for i in 0..6 {
        let id = format!("trace-budget-{i}");
        let response = gw.chat_with(&[("authorization", bearer.as_str()), ("user-agent", id.as_str())], &long);
        if response.status == 429 {
            refused = Some(id);
            break;
        }
    }
    let refused = refused.expect("the budget refused a request");

    let ids = ["trace-json", "trace-again", "trace-stream", "trace-429", "trace-failover", refused.as_str()];
    let spans = receiver
        .wait_for("a server span for every request", |spans| ids.iter().all(|id| server_span(spans, id).is_some()));

    let json_span = server_span(&spans, "trace-json").unwrap();
    assert_eq!(attr(json_span, "gen_ai.operation.name"), Some("chat"), "{json_span:#}");
    assert_eq!(attr(json_span, "gen_ai.provider.name"), Some("openai"), "{json_span:#}");
    assert_eq!(attr(json_span, "gen_ai.request.model"), Some("gpt-4o-mini"));
    assert_eq!(attr(json_span, "gen_ai.response.model"), Some("gpt-4o-mini"));
    assert_eq!(attr(json_span, "gen_ai.response.finish_reasons"), Some("stop"));
    let input: u64 = attr(json_span, "gen_ai.usage.input_tokens").unwrap().parse().unwrap();
    let output: u64 = attr(json_span, "gen_ai.usage.output_tokens").unwrap().parse().unwrap();
    let usage = &json_reply.json()["usage"];
    assert_eq!(
        (input, output),
        (usage["prompt_tokens"].as_u64().unwrap(), usage["completion_tokens"].as_u64().unwrap())
    );
    assert_eq!(attr(json_span, "aigw.backend"), Some("mock"));
    assert_eq!(attr(json_span, "aigw.pii.entities"), Some("EMAIL_ADDRESS:1"));
    assert!(attr(json_span, "aigw.cost.micro_usd").is_some(), "{json_span:#}");
    assert!(attr(json_span, "server.address").is_some_and(|a| a.starts_with("127.0.0.1:")), "{json_span:#}");
    assert_eq!(attr(json_span, "http.status_code"), Some("200"));
    assert_eq!(attr(json_span, "aigw.cache"), Some("miss"), "{json_span:#}");
    let again_span = server_span(&spans, "trace-again").unwrap();
    assert_eq!(attr(again_span, "aigw.cache"), Some("hit"), "{again_span:#}");
    assert_eq!(attr(again_span, "aigw.cache.similarity"), Some("1.000"), "{again_span:#}");

    let stream_span = server_span(&spans, "trace-stream").unwrap();
    assert_eq!(attr(stream_span, "gen_ai.response.finish_reasons"), Some("stop"), "{stream_span:#}");
    assert!(attr(stream_span, "gen_ai.usage.output_tokens").is_some_and(|t| t != "0"), "{stream_span:#}");
    assert!(attr(stream_span, "aigw.ttft_ms").is_some_and(|t| t.parse::<u64>().is_ok()), "{stream_span:#}");

    let limited_span = server_span(&spans, "trace-429").unwrap();
    assert_eq!(attr(limited_span, "http.status_code"), Some("429"));
    assert_eq!(attr(limited_span, "gen_ai.provider.name"), Some("anthropic"), "{limited_span:#}");
    assert_eq!(attr(limited_span, "error.type"), Some("rate_limited_provider"), "{limited_span:#}");
    let refused_span = server_span(&spans, &refused).unwrap();
    assert_eq!(attr(refused_span, "http.status_code"), Some("429"));
    assert_eq!(attr(refused_span, "error.type"), Some("rate_limited_gateway"), "{refused_span:#}");
    assert!(attr(refused_span, "aigw.error.code").is_some_and(|c| c.contains("budget") || c == "rate_limit_exceeded"));
    assert_eq!(attr(json_span, "error.type"), None, "{json_span:#}");

    // The failover: one client span per attempt, under the request's trace.
    let failover_span = server_span(&spans, "trace-failover").unwrap();
    let trace = failover_span["trace_id"].as_str().unwrap();
    let spans = receiver.wait_for("both attempts' client spans", |spans| client_spans(spans, trace).len() >= 2);
    // The attempts go through the aggregate cluster `mock-failover`: each span names the host it reached.
    let attempts: Vec<(Option<&str>, Option<&str>)> = client_spans(&spans, trace)
        .iter()
        .map(|s| (attr(s, "upstream_address"), attr(s, "http.status_code")))
        .collect();
    let (primary, secondary) = (gw.mock("mock").addr().to_string(), gw.mock("mock-secondary").addr().to_string());
    assert!(attempts.contains(&(Some(primary.as_str()), Some("503"))), "{attempts:?}");
    assert!(attempts.contains(&(Some(secondary.as_str()), Some("200"))), "{attempts:?}");

    // Never a prompt or completion on a span.
    let raw = receiver.raw();
    for secret in [SECRET_EMAIL, "Hello, my email", "budget budget", "stream me"] {
        assert!(!raw.contains(secret), "{secret:?} reached a span");
    }
}

#[test]
fn without_a_collector_the_config_has_no_tracing() {
    let untraced = Gateway::start().rendered_config().to_string();
    assert!(!untraced.contains("envoy.tracers.opentelemetry"));
    let receiver = OtlpReceiver::start();
    let traced = Gateway::builder().otlp_collector(receiver.port()).start();
    assert!(traced.rendered_config().contains("envoy.tracers.opentelemetry"));
    assert!(traced.rendered_config().contains("aigw-otel-collector"));
}
