//! Gateway API keys (Envoy's `api_key_auth`) beside JWTs, per-key policy, and Envoy's own local
//! replies in OpenAI's (or Anthropic's) error JSON, through a real Envoy running gateway.yaml.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test helpers outside #[test] fns

use aigw_e2e::{jwt, Gateway, HttpResponse, DEMO_KEYS};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Asserts an OpenAI-shaped error reply from Envoy itself.
fn assert_openai_error(response: &HttpResponse, status: u16, code: &str) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"), "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(body["error"].as_object().is_some_and(|e| e.contains_key("param")), "{body}");
    body
}

/// Asserts an Anthropic-shaped error reply.
fn assert_anthropic_error(response: &HttpResponse, status: u16, error_type: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"), "{}", response.text());
    let body = response.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], error_type, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[test]
fn demo_keys_work_on_every_header_form_and_never_leave_the_gateway() {
    let gw = Gateway::start();
    let (retail_key, _) = DEMO_KEYS[0];
    let bearer = format!("Bearer {retail_key}");
    for (name, value) in [("authorization", bearer.as_str()), ("x-api-key", retail_key), ("api-key", retail_key)] {
        gw.clear_mocks();
        let response = gw.chat_with(&[(name, value)], &chat("gpt-4o-mini", "MARK-key hello"));
        assert_eq!(response.status, 200, "{name}: {}", response.text());
        let sent = gw.upstream_requests();
        assert_eq!(sent.len(), 1, "{name}");
        // The key's client picked retail's prompt (prompt-template's tenant).
        assert!(sent[0].body.contains("retail banking assistant"), "{name}: {}", sent[0].body);
        for header in ["authorization", "x-api-key", "api-key", "x-aigw-client"] {
            assert_eq!(sent[0].header(header), None, "{name}: {header} reached the provider");
        }
        assert!(!sent[0].body.contains(retail_key));
    }
    // The per-app budget counts the key's client.
    let tokens = gw.stat("wasmcustom.aigw.token_counter.ratelimit_key.rule.per-app.key.retail.tokens");
    assert!(tokens.unwrap_or(0) > 0, "{}", gw.stats());
    // Keys are never logged.
    let logs = format!("{}{}", gw.envoy_log(), gw.access_log());
    for (key, _) in DEMO_KEYS {
        assert!(!logs.contains(key), "a key appeared in Envoy's logs");
    }
}

#[test]
fn a_client_cannot_claim_a_client_id() {
    let gw = Gateway::start();
    // Anonymous, claiming to be wealth: the default prompt, not wealth's.
    let response = gw.chat_with(&[("x-aigw-client", "wealth")], &chat("gpt-4o-mini", "MARK-spoof"));
    assert_eq!(response.status, 200, "{}", response.text());
    let sent = gw.upstream_requests();
    assert!(!sent[0].body.contains("wealth management assistant"), "{}", sent[0].body);
    assert!(sent[0].body.contains("Acme Bank assistant"), "{}", sent[0].body);
    assert_eq!(sent[0].header("x-aigw-client"), None);
    // The retail key with a claimed wealth id: the key's client (retail) decides, so claude is refused.
    let (retail_key, _) = DEMO_KEYS[0];
    let response =
        gw.chat_with(&[("x-api-key", retail_key), ("x-aigw-client", "wealth")], &chat("claude-sonnet-4-5", "hi"));
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "model_not_allowed");
}

#[test]
fn wrong_keys_get_openai_401s_and_model_lists_403s() {
    let gw = Gateway::start();
    for (name, value) in [("authorization", "Bearer sk-wrong"), ("x-api-key", "sk-wrong"), ("api-key", "sk-wrong")] {
        let response = gw.chat_with(&[(name, value)], &chat("gpt-4o-mini", "hi"));
        assert_openai_error(&response, 401, "invalid_api_key");
    }
    // Anthropic's shape on /v1/messages.
    let messages =
        json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let response = gw.post_json("/v1/messages", &[("x-api-key", "sk-wrong")], &messages);
    assert_anthropic_error(&response, 401, "authentication_error");
    assert!(gw.upstream_requests().is_empty());

    // retail may use gpt-4o-mini (and its alias) only; wealth any model.
    let (retail_key, _) = DEMO_KEYS[0];
    let (wealth_key, _) = DEMO_KEYS[1];
    assert_eq!(gw.chat_with(&[("x-api-key", retail_key)], &chat("fast", "hi")).status, 200);
    let response = gw.chat_with(&[("x-api-key", retail_key)], &chat("claude-sonnet-4-5", "hi"));
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "model_not_allowed");
    let response = gw.chat_with(&[("x-api-key", wealth_key)], &chat("claude-sonnet-4-5", "hi"));
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn jwts_keep_working_beside_keys() {
    let gw = Gateway::start();
    let token = jwt::demo_token(json!({"sub": "u-1", "llms": {"openai": ["gpt-4o-mini"]}}));
    let auth = format!("Bearer {token}");
    let response = gw.chat_with(&[("authorization", &auth)], &chat("gpt-4o-mini", "hi"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(gw.upstream_requests()[0].header("authorization"), None);
    let response = gw.chat_with(&[("authorization", &auth)], &chat("claude-sonnet-4-5", "hi"));
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "model_not_allowed");
    // A broken JWT: jwt_authn's 401, in OpenAI's shape.
    let response = gw.chat_with(&[("authorization", "Bearer a.b.c")], &chat("gpt-4o-mini", "hi"));
    assert_openai_error(&response, 401, "invalid_api_key");
    // A JWT for another audience: jwt_authn's 403, in OpenAI's shape.
    let other = jwt::demo_token(json!({"sub": "u-1", "aud": "someone-else"}));
    let response = gw.chat_with(&[("authorization", &format!("Bearer {other}"))], &chat("gpt-4o-mini", "hi"));
    assert_openai_error(&response, 403, "permission_denied");
}

#[test]
fn the_filters_own_replies_keep_their_bodies() {
    let gw = Gateway::start();
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----";
    let response = gw.chat(&chat("gpt-4o-mini", pem));
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "sensitive_data_detected");
    assert_eq!(response.json()["error"]["message"], "Private keys are not allowed through this gateway.");
    let response = gw.chat(&chat("no-such-model", "hi"));
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "model_not_found");
    assert_eq!(response.json()["error"]["param"], "model");
    // Header validation (underscores are refused) and too-large headers come from Envoy's codec.
    let response = gw.request("POST", CHAT, &[("x_bad", "1")], chat("gpt-4o-mini", "hi").to_string().as_bytes());
    assert_openai_error(&response, 400, "invalid_request");
    let big = "a".repeat(70_000);
    let response = gw.request("POST", CHAT, &[("x-big", &big)], chat("gpt-4o-mini", "hi").to_string().as_bytes());
    assert_openai_error(&response, 431, "request_header_fields_too_large");
}

/// A copy of gateway.yaml with the failure cases reachable: the catch-all route goes to a port nothing
/// listens on (503), `mock-secondary` times out after 1 s (504), and the buffer filter holds 4 KiB (413).
fn failing_gateway() -> Gateway {
    let source = std::fs::read_to_string(aigw_e2e::repo_root().join("envoy-config/gateway.yaml")).unwrap();
    let catch_all = "              - name: mock\n                match: { prefix: / }\n                route:\n                  cluster: mock\n";
    assert!(source.contains(catch_all));
    let mut edited = source.replace(catch_all, &catch_all.replace("cluster: mock\n", "cluster: dead\n"));
    let secondary = "                  cluster: mock-secondary\n                  timeout: 0s\n";
    assert!(edited.contains(secondary));
    edited = edited.replace(secondary, "                  cluster: mock-secondary\n                  timeout: 1s\n");
    let buffer = "max_request_bytes: 16777216";
    assert!(edited.contains(buffer));
    edited = edited.replace(buffer, "max_request_bytes: 4096");
    let clusters = "  clusters:\n";
    assert!(edited.contains(clusters));
    edited = edited.replacen(
        clusters,
        "  clusters:\n  - name: dead\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: dead\n      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9 } } } }] }]\n",
        1,
    );
    let dir = std::env::temp_dir().join(format!("aigw-e2e-api-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway-failing.yaml");
    std::fs::write(&path, edited).unwrap();
    Gateway::builder()
        .config_path(path)
        .filter_config(
            "model-router",
            r#"{"backends": [{"name": "mock"}, {"name": "mock-secondary"}],
                "models": [{"name": "slow", "targets": [{"backend": "mock-secondary", "model": "gpt-4o-mini"}]},
                           {"name": "gpt-4o-mini", "targets": [{"backend": "mock"}]}]}"#,
        )
        .filter_config(
            "token-counter",
            r#"{"rules": [{"name": "per-app", "key": "header:x-aigw-client", "limit": 300, "window": "hour"}]}"#,
        )
        .leading_filter(aigw_e2e::fixture_filter())
        .start()
}

#[test]
fn envoys_own_errors_are_openai_or_anthropic_json() {
    let gw = failing_gateway();
    // 503: the upstream refuses connections.
    let response = gw.chat(&chat("gpt-4o-mini", "hi"));
    assert_openai_error(&response, 503, "service_unavailable");
    // 504: the route's timeout.
    let response = gw.chat_with(&[("x-mock-delay-ms", "3000")], &chat("slow", "hi"));
    assert_openai_error(&response, 504, "upstream_timeout");
    // 413: the buffer filter's limit (the aigw filters allow more).
    let long = "word ".repeat(2000);
    let response = gw.chat(&chat("gpt-4o-mini", &long));
    assert_openai_error(&response, 413, "request_too_large");
    let messages = json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": long}]});
    let response = gw.post_json("/v1/messages", &[], &messages);
    assert_anthropic_error(&response, 413, "request_too_large");

    // 429s of the per-app budget (300 tokens): one larger than the whole budget can never succeed.
    let (retail_key, _) = DEMO_KEYS[0];
    let mut too_big = chat("slow", "hi");
    too_big["max_tokens"] = json!(1000);
    let response = gw.chat_with(&[("x-api-key", retail_key)], &too_big);
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "request_too_large_for_budget");
    assert_eq!(response.header("retry-after"), None);
    assert_eq!(response.header("x-should-retry"), Some("false"));
    let mut fits = chat("slow", "hi");
    fits["max_tokens"] = json!(250);
    assert_eq!(gw.chat_with(&[("x-api-key", retail_key)], &fits).status, 200);
    let response = gw.chat_with(&[("x-api-key", retail_key)], &fits);
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "rate_limit_exceeded");
    assert!(response.header("retry-after").is_some());

    // A crashed filter VM: while it reloads, Envoy's empty 503 becomes JSON too.
    let mut reload_replies = Vec::new();
    for _ in 0..6 {
        let response =
            gw.request("POST", CHAT, &[("x-fixture-action", "panic")], chat("slow", "x").to_string().as_bytes());
        assert_ne!(response.status, 200);
        reload_replies.push(response);
    }
    for _ in 0..6 {
        let response = gw.chat(&chat("slow", "after"));
        if response.status != 200 {
            reload_replies.push(response);
        }
    }
    for response in &reload_replies {
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.header("content-type"), Some("application/json"), "{}", response.text());
        assert_eq!(response.json()["error"]["type"], "api_error", "{}", response.text());
    }
}

/// The keys file (envoy-config/secrets/api-keys.yaml, delivered by ECDS) rotates without a restart:
/// an atomic rename of a new file, and the new key works while the old one gets 401.
#[test]
fn renaming_a_new_keys_file_rotates_the_keys() {
    let gw = Gateway::start();
    let (retail_key, _) = DEMO_KEYS[0];
    let ok = |key: &str| gw.chat_with(&[("x-api-key", key)], &chat("gpt-4o-mini", "hi")).status;
    assert_eq!(ok(retail_key), 200);
    assert_eq!(ok("sk-rotated-e2e"), 401);

    let rendered = gw.dir().join("secrets/api-keys.yaml");
    let text = std::fs::read_to_string(&rendered).unwrap();
    assert!(text.contains(retail_key), "{text}");
    let aside = gw.dir().join("secrets/.api-keys.yaml.tmp");
    std::fs::write(&aside, text.replace(retail_key, "sk-rotated-e2e")).unwrap();
    std::fs::rename(&aside, &rendered).unwrap();

    // Envoy applies the file on its main thread soon after the rename: poll (bounded) for the new key.
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let status = ok("sk-rotated-e2e");
        statuses.push(status);
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(statuses.last(), Some(&200), "the new key never worked: {statuses:?}\n{}", gw.envoy_log());
    assert_eq!(ok(retail_key), 401, "the old key still works after rotation");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 200), "{statuses:?}");
}
