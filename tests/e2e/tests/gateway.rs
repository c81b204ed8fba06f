//! The gateway as shipped, through a real Envoy: configs validate, the four
//! filters load, requests and streams pass through to the mock and back, a
//! stream crosses Envoy chunk by chunk, the routes, failover and JWT wiring of
//! gateway.yaml work, and the provider clusters attach the keys from their
//! key files (and only those).

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use aigw_e2e::http::{openai_stream_text, sse_data};
use aigw_e2e::{config, jwt, shipped_configs, validate_config, Gateway, Layout, RecordedRequest};
use serde_json::{json, Value};

/// model-router configuration for the pass-through tests: every model goes to
/// the `mock` backend. These tests check Envoy's plumbing (the chain loads,
/// bodies and streams cross it), independent of the routing policy in
/// gateway.yaml's reference configuration (tests/e2e/tests/model_router.rs
/// covers that one); the other three filters run with their shipped configs.
const ROUTE_ALL_TO_MOCK: &str = r#"{
    "backends": [{"name": "mock", "provider": "openai", "route": "mock"}],
    "default": {"targets": [{"backend": "mock"}]}
}"#;

fn chain() -> Gateway {
    Gateway::builder().filter_config("model-router", ROUTE_ALL_TO_MOCK).start()
}

fn chat_body(text: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}

/// The one upstream request (on any mock) whose body carries `marker`.
fn upstream_with(gw: &Gateway, marker: &str) -> RecordedRequest {
    let matching: Vec<RecordedRequest> =
        gw.upstream_requests().into_iter().filter(|r| r.body.contains(marker)).collect();
    assert_eq!(matching.len(), 1, "expected one upstream request carrying {marker:?}, got {matching:#?}");
    matching.into_iter().next().unwrap()
}

#[test]
fn every_shipped_config_validates() {
    let configs = shipped_configs();
    assert!(configs.iter().any(|c| c.ends_with("gateway.yaml")), "gateway.yaml missing: {configs:?}");
    assert!(configs.iter().any(|c| c.ends_with("bare.yaml")), "bare.yaml missing: {configs:?}");
    for config in configs {
        if let Err(err) = validate_config(&config) {
            panic!("{err}");
        }
    }
}

#[test]
fn bare_is_gateway_without_the_wasm_filters() {
    let read = |name: &str| std::fs::read_to_string(aigw_e2e::repo_root().join("envoy-config").join(name)).unwrap();
    let gateway = config::without_wasm_filters(&read("gateway.yaml")).unwrap();
    let bare: serde_yaml::Value = serde_yaml::from_str(&read("bare.yaml")).unwrap();
    assert!(config::wasm_configs(&read("bare.yaml")).unwrap().is_empty());
    assert!(gateway == bare, "bare.yaml drifted from gateway.yaml: run `cargo run -q -p aigw-e2e --bin aigw-generate`");
}

#[test]
fn the_chain_loads_and_passes_json_and_streams_through() {
    let gw = chain();

    // All five filters are configured in Envoy, in chain order, and their VMs run.
    let dump = gw.config_dump().to_string();
    // The listener's chain (model-router's upstream instance on a cluster also runs model-router.wasm).
    let listeners = dump.find("ListenersConfigDump").expect("listeners in config_dump");
    let dump = dump.get(listeners..).unwrap_or_default();
    let active = gw.stat("wasm.envoy.wasm.runtime.v8.active").expect("no Wasm VM stats");
    if Layout::from_env() == Ok(Layout::Bundle) {
        // The one-pass build: one module, one VM per thread, every filter a stage of it.
        assert!(dump.contains("dist/aigw.wasm"), "aigw.wasm missing from config_dump");
        assert!(config::FILTERS.iter().all(|f| !dump.contains(&format!("dist/{f}.wasm"))));
        assert!(active >= 1, "no Wasm VM active");
    } else {
        let positions: Vec<usize> = config::FILTERS
            .iter()
            .map(|f| dump.find(&format!("dist/{f}.wasm")).unwrap_or_else(|| panic!("{f} missing from config_dump")))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "filters out of chain order: {positions:?}");
        // One VM per filter on the main thread and on each of the two workers.
        assert!(active >= 4, "only {active} Wasm VMs active");
    }
    let log = gw.envoy_log();
    assert!(!log.contains("Unable to create Wasm") && !log.contains("Failed to load"), "{log}");

    // JSON: the mock echoes the last user message; the client gets it back.
    let marker = "json-through-the-chain";
    let response = gw.chat(&chat_body(marker, false));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["choices"][0]["message"]["content"], marker);
    assert!(response.json()["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let upstream = upstream_with(&gw, marker);
    assert_eq!(upstream.method, "POST");

    // SSE: every delta arrives, in order, ending with [DONE].
    let marker = "stream through the whole filter chain";
    let response = gw.stream(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-chunks", "4")],
        chat_body(marker, true).to_string().as_bytes(),
    );
    assert_eq!(response.status, 200);
    assert!(response.header("content-type").unwrap_or("").starts_with("text/event-stream"));
    let body = String::from_utf8(response.into_response().unwrap().body).unwrap();
    assert_eq!(openai_stream_text(&body), marker);
    assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"));
    upstream_with(&gw, marker);
    // A stream the provider writes in 7-byte pieces (cut mid-line and mid-UTF-8) arrives intact.
    let marker = "split naïve 日本語のテキスト stream";
    let response = gw.post_json("/v1/chat/completions", &[("x-mock-split", "7")], &chat_body(marker, true));
    assert_eq!(response.status, 200);
    assert_eq!(openai_stream_text(&response.text()), marker);

    // The access log recorded the three requests.
    let entries = gw.access_log_entries(3);
    assert_eq!(entries.iter().filter(|e| e["path"] == "/v1/chat/completions" && e["status"] == 200).count(), 3);
}

#[test]
fn a_stream_reaches_the_client_before_the_provider_finished() {
    let gw = chain();
    let marker = "one two three four five six";
    let mut stream = gw.stream(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-chunks", "6"), ("x-mock-chunk-delay-ms", "250")],
        chat_body(marker, true).to_string().as_bytes(),
    );
    assert_eq!(stream.status, 200);
    let first = stream.next_chunk().unwrap().expect("no first chunk");
    assert!(!first.data.is_empty());
    // The first bytes are here: the mock must still be writing the rest.
    let progress = upstream_with(&gw, marker).response;
    assert!(
        !progress.complete && progress.writes < progress.total_writes,
        "Envoy buffered the stream: the client's first chunk came after the mock finished ({progress:?})"
    );
    let mut chunks = vec![first];
    while let Some(chunk) = stream.next_chunk().unwrap() {
        chunks.push(chunk);
    }
    assert!(chunks.len() > 2, "the stream arrived in {} piece(s)", chunks.len());
    assert!(upstream_with(&gw, marker).response.complete);
    let body: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(openai_stream_text(&String::from_utf8(body).unwrap()), marker);
}

/// gateway.yaml's routes, failover and JWT wiring, driven by the model (model-router sets the route as
/// filter state; a client's own routing header picks nothing).
#[test]
fn routes_failover_and_jwt_wiring() {
    let gw = Gateway::builder().start();
    let chat_model = |model: &str, headers: &[(&str, &str)], text: &str, stream: bool| {
        let mut body = chat_body(text, stream);
        body["model"] = json!(model);
        gw.chat_with(headers, &body)
    };
    let chat = |headers: &[(&str, &str)], text: &str| chat_model("gpt-4o-mini", headers, text, false);

    // gpt-4o-mini: the `mock` cluster, whatever routing header the client sends.
    let response = chat(&[], "default");
    assert_eq!((response.status, response.header("x-mock-backend")), (200, Some("mock")));
    let response = chat(&[("x-aigw-route", "mock-secondary")], "spoofed");
    assert_eq!(
        (response.status, response.header("x-mock-backend")),
        (200, Some("mock")),
        "a client cannot pick the route"
    );
    assert_eq!(upstream_with(&gw, "spoofed").header("x-aigw-route"), None);
    // Provider routes (the providers are mocks in tests; Host is rewritten to the cluster's host).
    let response = chat_model("gpt-4o", &[], "to-openai", false);
    assert_eq!((response.status, response.header("x-mock-backend")), (200, Some("openai")));
    // No key file (like `just up` without OPENAI_API_KEY): the credential_injector lets the request
    // through without a key.
    assert_eq!(upstream_with(&gw, "to-openai").header("authorization"), None);

    // Failover: the primary answers 503 / 429, Envoy retries once on the secondary.
    for status in ["503", "429"] {
        gw.clear_mocks();
        let text = format!("failover-{status}");
        let headers = [("x-mock-status", status), ("x-mock-fault-backend", "mock")];
        let response = chat_model("failover-demo", &headers, &text, false);
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("x-mock-backend"), Some("mock-secondary"));
        assert_eq!(response.json()["choices"][0]["message"]["content"], text.as_str());
        let primary = gw.mock("mock").requests();
        assert_eq!(primary.len(), 1);
        assert_eq!(primary[0].response.status.to_string(), status);
        assert_eq!(gw.mock("mock-secondary").requests().len(), 1);
    }
    // A streamed request fails over too (nothing was sent to the client yet).
    gw.clear_mocks();
    let headers = [("x-mock-status", "503"), ("x-mock-fault-backend", "mock")];
    let response = chat_model("failover-demo", &headers, "streamed failover", true);
    assert_eq!((response.status, response.header("x-mock-backend")), (200, Some("mock-secondary")));
    assert_eq!(openai_stream_text(&response.text()), "streamed failover");
    // Once bytes reached the client there is no failover: a provider dying mid-stream truncates it.
    gw.clear_mocks();
    let headers = [("x-mock-abort-after", "2"), ("x-mock-fault-backend", "mock")];
    let mut body = chat_body("dies mid stream", true);
    body["model"] = json!("failover-demo");
    let mut stream = gw.stream("POST", "/v1/chat/completions", &headers, body.to_string().as_bytes());
    assert_eq!(stream.status, 200);
    let mut received = Vec::new();
    let ended_cleanly = loop {
        match stream.next_chunk() {
            Ok(Some(chunk)) => received.extend(chunk.data),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    assert!(!ended_cleanly, "a stream cut by the provider must not look complete to the client");
    assert!(!String::from_utf8_lossy(&received).contains("[DONE]"));
    assert!(gw.mock("mock-secondary").requests().is_empty(), "a started stream was retried");
    // Both backends failing: the client gets the last backend's error.
    assert_eq!(chat_model("failover-demo", &[("x-mock-status", "503")], "both down", false).status, 503);

    // jwt_authn: a valid demo token is accepted and not forwarded; a bad one is rejected.
    gw.clear_mocks();
    let token = jwt::demo_token(json!({"sub": "user-1", "team": "alpha"}));
    let bearer = format!("Bearer {token}");
    let response = chat(&[("authorization", &bearer)], "with-jwt");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(upstream_with(&gw, "with-jwt").header("authorization"), None);
    let forged = jwt::sign(&json!({"iss": jwt::DEMO_ISSUER, "aud": jwt::DEMO_AUDIENCE, "sub": "x"}), b"wrong key");
    let response = chat(&[("authorization", &format!("Bearer {forged}"))], "forged-jwt");
    assert_eq!(response.status, 401);
    assert!(gw.upstream_requests().iter().all(|r| !r.body.contains("forged-jwt")));
}

/// The provider keys in gateway.yaml's `openai` and `anthropic` clusters: Envoy's credential_injector
/// reads them through the shipped SDS files from the key files (rendered into the gateway's temp dir by
/// the fixture), with the shipped configuration of every filter.
#[test]
fn provider_keys_from_key_files_reach_only_their_provider() {
    const OPENAI_KEY: &str = "sk-openai-shipped-e2e-7f3a9c";
    const ANTHROPIC_KEY: &str = "sk-ant-shipped-e2e-41be02";
    let gw = Gateway::builder().provider_key("openai", OPENAI_KEY).provider_key("anthropic", ANTHROPIC_KEY).start();
    // The key files are mode 600, written before Envoy started.
    let mode = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(gw.key_dir().join(name)).unwrap().permissions().mode() & 0o777
    };
    assert_eq!((mode("openai"), mode("anthropic")), (0o600, 0o600));

    // The client's own credentials: a gateway JWT as its API key (jwt_authn verifies and consumes it),
    // plus provider-style keys of its own.
    let token = jwt::demo_token(json!({"sub": "key-test"}));
    let client = [
        ("authorization", format!("Bearer {token}")),
        ("x-api-key", "client-x-api-key-must-not-leak".to_string()),
        ("api-key", "client-api-key-must-not-leak".to_string()),
    ];
    let client: Vec<(&str, &str)> = client.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let leaked = |r: &RecordedRequest| r.headers.iter().any(|(_, v)| v.contains("must-not-leak") || v.contains(&token));

    // `gpt-4o` → the openai cluster (a mock here): `authorization: Bearer <key from the key file>`.
    let openai_reply = gw.chat_with(
        &client,
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "to the openai provider"}]}),
    );
    assert_eq!(openai_reply.status, 200, "{}", openai_reply.text());
    assert_eq!(openai_reply.header("x-aigw-backend"), Some("openai"));
    let sent = only(gw.mock("openai").requests());
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
    assert_eq!((sent.header("x-api-key"), sent.header("api-key")), (None, None));
    assert!(!leaked(&sent), "a client credential reached OpenAI: {:?}", sent.headers);
    assert!(sent.headers.iter().all(|(_, v)| !v.contains(ANTHROPIC_KEY)));

    // `claude-sonnet-4-5` → the anthropic cluster: `x-api-key: <key>`, no Authorization at all.
    let anthropic_reply = gw.chat_with(
        &client,
        &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "to the anthropic provider"}]}),
    );
    assert_eq!(anthropic_reply.status, 200, "{}", anthropic_reply.text());
    assert_eq!(anthropic_reply.header("x-aigw-backend"), Some("anthropic"));
    let sent = only(gw.mock("anthropic").requests());
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!((sent.header("authorization"), sent.header("api-key")), (None, None));
    assert!(!leaked(&sent), "a client credential reached Anthropic: {:?}", sent.headers);
    assert!(sent.headers.iter().all(|(_, v)| !v.contains(OPENAI_KEY)));

    // The keys go nowhere else: not to the client, the access log, the stats, Envoy's log or config dump.
    let access_log = gw.access_log_entries(2);
    assert!(access_log.len() >= 2, "{access_log:?}");
    let places = [
        ("the OpenAI-routed response", format!("{:?}{}", openai_reply.headers, openai_reply.text())),
        ("the Anthropic-routed response", format!("{:?}{}", anthropic_reply.headers, anthropic_reply.text())),
        ("the access log", gw.access_log()),
        ("/stats", gw.stats()),
        ("/stats/prometheus", gw.prometheus()),
        ("Envoy's log", gw.envoy_log()),
        ("/config_dump", gw.config_dump().to_string()),
    ];
    for (place, text) in places {
        for key in [OPENAI_KEY, ANTHROPIC_KEY] {
            assert!(!text.contains(key), "a provider key is in {place}");
        }
    }
}

fn only(requests: Vec<RecordedRequest>) -> RecordedRequest {
    assert_eq!(requests.len(), 1, "{requests:#?}");
    requests.into_iter().next().unwrap()
}

/// A filter that rejects its configuration stops Envoy from starting
/// (failure_policy FAIL_CLOSED), and the fixture reports why.
#[test]
fn a_rejected_filter_config_keeps_envoy_from_starting() {
    let err = match Gateway::builder().filter_config("pii-mask", r#"{"no_such_field": 1}"#).try_start() {
        Ok(_) => panic!("Envoy started with an invalid pii-mask configuration"),
        Err(err) => err,
    };
    assert!(err.contains("pii-mask: invalid configuration: no_such_field"), "{err}");
}
