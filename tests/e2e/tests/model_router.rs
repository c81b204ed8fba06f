//! model-router through a real Envoy: routing by model from the shipped
//! gateway.yaml, 404/403, provider credentials (injected from SDS files,
//! rotated without a restart, never the client's), OpenAI ⇄ Anthropic
//! translation (JSON and streams), and failover on 503/429 for JSON and
//! streamed requests, within one provider and across providers (the upstream
//! instance on an aggregate cluster adapts every attempt).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::http::{openai_stream_text, sse_data};
use aigw_e2e::{jwt, repo_root, Gateway, GatewayBuilder, MockServer, RecordedRequest};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const OPENAI_KEY: &str = "sk-openai-e2e-key-0001";
const ANTHROPIC_KEY: &str = "sk-ant-e2e-key-0001";

fn chat_body(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

/// A temp dir for one test's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("aigw-mr-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// gateway.yaml (whose `openai` and `anthropic` clusters carry the credential injectors of
/// filters/model-router/README.md#credentials) with both provider keys in the gateway's key files.
fn with_keys(builder: GatewayBuilder) -> GatewayBuilder {
    builder.provider_key("openai", OPENAI_KEY).provider_key("anthropic", ANTHROPIC_KEY)
}

fn only_request(mock: &MockServer) -> RecordedRequest {
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "{}: {requests:#?}", mock.name());
    requests.into_iter().next().unwrap()
}

#[test]
fn routes_by_model_with_provider_keys_and_openai_errors() {
    let gw = with_keys(Gateway::builder()).only_filters(&["model-router"]).start();

    // Exact name → the mock, model untouched.
    let response = gw.chat(&chat_body("gpt-4o-mini", "exact", false));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-aigw-backend"), Some("mock"));
    let sent = only_request(gw.mock("mock"));
    assert_eq!(sent.body_json().unwrap()["model"], "gpt-4o-mini");

    // An alias is rewritten before the request leaves.
    gw.clear_mocks();
    let response = gw.chat(&chat_body("fast", "alias", false));
    assert_eq!(response.status, 200);
    assert_eq!(only_request(gw.mock("mock")).body_json().unwrap()["model"], "gpt-4o-mini");

    // A prefix rule → the OpenAI cluster (a mock in tests), with the gateway's key only. The client's
    // own credentials (x-api-key, api-key; its JWT is consumed by jwt_authn) never reach the provider.
    gw.clear_mocks();
    let token = jwt::demo_token(json!({"sub": "user-1"}));
    let headers = [
        ("authorization", format!("Bearer {token}")),
        ("x-api-key", "client-key-must-not-leak".to_string()),
        ("api-key", "client-azure-key-must-not-leak".to_string()),
        ("x-aigw-route", "mock-secondary".to_string()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = gw.chat_with(&headers, &chat_body("gpt-4o", "to openai", false));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-aigw-backend"), Some("openai"), "a client cannot pick the route");
    let sent = only_request(gw.mock("openai"));
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
    assert_eq!(sent.header("x-api-key"), None);
    assert_eq!(sent.header("api-key"), None);
    assert!(sent.headers.iter().all(|(_, v)| !v.contains("must-not-leak") && !v.contains(&token)));
    assert!(sent.headers.iter().all(|(n, _)| !n.starts_with("x-aigw-")), "{:?}", sent.headers);
    // The provider key never travels back to the client.
    assert!(!response.text().contains(OPENAI_KEY));
    assert!(response.headers.iter().all(|(_, v)| !v.contains(OPENAI_KEY)));

    // Rotating the key file (atomic rename) takes effect without a restart.
    gw.write_provider_key("openai", "sk-openai-e2e-key-0002");
    let mut rotated = false;
    for _ in 0..50 {
        gw.clear_mocks();
        assert_eq!(gw.chat(&chat_body("gpt-4o", "after rotation", false)).status, 200);
        if only_request(gw.mock("openai")).header("authorization") == Some("Bearer sk-openai-e2e-key-0002") {
            rotated = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(rotated, "the rotated key was never used");

    // No catch-all: an unknown model is a 404 in OpenAI's shape, and nothing goes upstream.
    gw.clear_mocks();
    let response = gw.chat(&chat_body("no-such-model", "unknown", false));
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"]["code"], "model_not_found");
    assert_eq!(response.json()["error"]["param"], "model");
    assert!(gw.upstream_requests().is_empty());

    // Bad bodies: 400 with OpenAI's error shape.
    let response = gw.request("POST", "/v1/chat/completions", &[], b"{\"model\": ");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"]["code"], "invalid_json");
    let response = gw.post_json("/v1/chat/completions", &[], &json!({"model": 7, "messages": []}));
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"]["param"], "model");

    // Per-team allow-list from the JWT claim, in the seed's shape: 403 for a model outside it.
    let token =
        jwt::demo_token(json!({"sub": "u2", "llms": {"openai": ["gpt-4o-mini"], "anthropic": ["claude-3-opus"]}}));
    let bearer = format!("Bearer {token}");
    let allowed = gw.chat_with(&[("authorization", &bearer)], &chat_body("gpt-4o-mini", "allowed", false));
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let allowed = gw.chat_with(&[("authorization", &bearer)], &chat_body("anthropic/claude-3-opus", "allowed", false));
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    gw.clear_mocks();
    let refused = gw.chat_with(&[("authorization", &bearer)], &chat_body("gpt-4o", "refused", false));
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"]["code"], "model_not_allowed");
    assert_eq!(refused.json()["error"]["type"], "permission_error");
    let refused = gw.chat_with(&[("authorization", &bearer)], &chat_body("claude-sonnet-4-5", "refused", false));
    assert_eq!(refused.status, 403);
    assert!(gw.upstream_requests().is_empty());

    // Keys are not in the metrics or the logs either.
    assert!(!gw.stats().contains("sk-"));
    assert!(!gw.envoy_log().contains(OPENAI_KEY) && !gw.envoy_log().contains("sk-openai-e2e-key-0002"));
    assert!(gw.stats().contains("model_router.backend.openai.routed_requests"));
}

#[test]
fn anthropic_backed_model_answers_an_openai_client() {
    let gw = with_keys(Gateway::builder()).only_filters(&["model-router"]).start();

    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "temperature": 0.2,
        "stop": ["STOP"],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Bonjour Anthropic ✓"}
        ]
    });
    // The client's key is a gateway API key (any other x-api-key gets 401 from api_key_auth); the
    // provider gets only the gateway's Anthropic key.
    let response = gw.chat_with(&[("x-api-key", aigw_e2e::DEMO_KEYS[1].0)], &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let reply = response.json();
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["model"], "claude-sonnet-4-5");
    assert_eq!(reply["choices"][0]["message"]["role"], "assistant");
    assert_eq!(reply["choices"][0]["message"]["content"], "Bonjour Anthropic ✓");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    let usage = &reply["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(response.header("x-aigw-backend"), Some("anthropic"));
    assert!(!response.text().contains(ANTHROPIC_KEY));

    // What Anthropic received: its own API, its key, nothing of the client's.
    let sent = only_request(gw.mock("anthropic"));
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
    let sent = sent.body_json().unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["system"], json!([{"type": "text", "text": "Be brief."}]));
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Bonjour Anthropic ✓"}]}])
    );
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(sent["stop_sequences"], json!(["STOP"]));

    // Streamed, split at odd offsets by the mock (mid-UTF-8, mid-line): OpenAI chunks, usage, [DONE].
    for split in ["1", "7", "50"] {
        gw.clear_mocks();
        let mut body = chat_body("anthropic/claude-3-5-haiku", "streamed through the translator ✓ ok", true);
        body["stream_options"] = json!({"include_usage": true});
        let headers = [("x-mock-split", split), ("x-mock-chunks", "6")];
        let response = gw.post_json("/v1/chat/completions", &headers, &body);
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(response.header("content-type").unwrap_or("").starts_with("text/event-stream"));
        let text = response.text();
        assert_eq!(openai_stream_text(&text), "streamed through the translator ✓ ok", "split {split}");
        let events = sse_data(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> =
            events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "claude-3-5-haiku"));
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        let sent = only_request(gw.mock("anthropic"));
        assert_eq!(sent.path, "/v1/messages");
        assert_eq!(sent.body_json().unwrap()["stream"], true);
        assert_eq!(sent.body_json().unwrap()["model"], "claude-3-5-haiku");
    }

    // An Anthropic error comes back in OpenAI's shape with its status.
    gw.clear_mocks();
    let response = gw.chat_with(&[("x-mock-status", "429")], &chat_body("claude-sonnet-4-5", "limited", false));
    assert_eq!(response.status, 429);
    assert_eq!(response.json()["error"]["type"], "rate_limit_exceeded");
}

#[test]
fn failover_on_503_and_429_for_json_and_streams() {
    let gw = Gateway::builder().only_filters(&["model-router"]).start();
    for status in ["503", "429"] {
        for stream in [false, true] {
            gw.clear_mocks();
            let text = format!("failover {status} stream={stream}");
            let headers = [("x-mock-status", status), ("x-mock-fault-backend", "mock")];
            let response = gw.chat_with(&headers, &chat_body("failover-demo", &text, stream));
            assert_eq!(response.status, 200, "{}", response.text());
            assert_eq!(response.header("x-mock-backend"), Some("mock-secondary"));
            // Without upstream instances the answering backend is known from the endpoint's metadata
            // (`aigw.backend`, kept by the fixture when it points the clusters at its mocks).
            assert_eq!(response.header("x-aigw-backend"), Some("mock-secondary"));
            if stream {
                assert_eq!(openai_stream_text(&response.text()), text);
                assert_eq!(sse_data(&response.text()).last().map(String::as_str), Some("[DONE]"));
            } else {
                assert_eq!(response.json()["choices"][0]["message"]["content"], text.as_str());
            }
            let primary = only_request(gw.mock("mock"));
            assert_eq!(primary.response.status.to_string(), status);
            let secondary = only_request(gw.mock("mock-secondary"));
            assert_eq!(secondary.body_json().unwrap()["model"], "gpt-4o-mini");
        }
    }
    // Both backends failing: the client gets the last one's error.
    let headers = [("x-mock-status", "503")];
    assert_eq!(gw.chat_with(&headers, &chat_body("failover-demo", "both down", false)).status, 503);
}

/// gateway.yaml plus the aggregate cluster of filters/model-router/README.md#failover-design-and-limits
/// over two clusters of the test's own (mocks it can stop, to test a primary that is down), with paths
/// as in the README: relative `dist/model-router.wasm` and the shipped SDS files, which the fixture
/// renders like gateway.yaml's own.
fn cross_provider_config(dir: &Path, claude: &MockServer, gpt: &MockServer) -> PathBuf {
    let cluster = |name: &str, port: u16| {
        format!(
            r#"
name: {name}
type: STATIC
connect_timeout: 2s
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {{ http_protocol_options: {{}} }}
load_assignment:
  cluster_name: {name}
  endpoints:
  - lb_endpoints:
    - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
      metadata: {{ filter_metadata: {{ aigw: {{ backend: {name} }} }} }}
"#
        )
    };
    let injector = |backend: &str, provider: &str, header: &str, prefix: &str| {
        format!(
            r#"
name: credentials-{backend}
typed_config:
  "@type": type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher
  extension_config:
    name: envoy.filters.http.credential_injector
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector
      overwrite: true
      credential:
        name: envoy.http.injected_credentials.generic
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic
          credential: {{ name: {provider}-key, sds_config: {{ path_config_source: {{ path: envoy-config/secrets/{provider}.yaml }} }} }}
          header: {header}
          header_value_prefix: "{prefix}"
  xds_matcher:
    matcher_list:
      matchers:
      - predicate:
          not_matcher:
            single_predicate:
              input:
                name: backend
                typed_config:
                  "@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput
                  header_name: x-aigw-attempt-backend
              value_match: {{ exact: {backend} }}
        on_match:
          action:
            name: skip
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter
"#
        )
    };
    let upstream_config = json!({
        "mode": "upstream",
        "backends": [{"name": "xp-claude", "provider": "anthropic", "upstream_instance": true}, {"name": "xp-gpt", "provider": "openai"}]
    })
    .to_string();
    let aggregate = format!(
        r#"
name: xp-failover
connect_timeout: 2s
lb_policy: CLUSTER_PROVIDED
cluster_type:
  name: envoy.clusters.aggregate
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig
    clusters: [xp-claude, xp-gpt]
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {{ http_protocol_options: {{}} }}
    http_filters:
    - name: model-router-upstream
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
        config:
          name: model-router-upstream
          root_id: model-router-upstream
          vm_config:
            vm_id: model-router
            runtime: envoy.wasm.runtime.v8
            code: {{ local: {{ filename: dist/model-router.wasm }} }}
          failure_policy: FAIL_RELOAD
          configuration:
            "@type": type.googleapis.com/google.protobuf.StringValue
            value: '{upstream_config}'
    - name: envoy.filters.http.buffer
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
        max_request_bytes: 16777216
    - {openai_injector}
    - {anthropic_injector}
    - name: strip-attempt-header
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
        mutations: {{ request_mutations: [{{ remove: x-aigw-attempt-backend }}] }}
    - name: envoy.filters.http.upstream_codec
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
"#,
        openai_injector =
            serde_json::to_string(&yaml_to_json(&injector("xp-gpt", "openai", "Authorization", "Bearer "))).unwrap(),
        anthropic_injector =
            serde_json::to_string(&yaml_to_json(&injector("xp-claude", "anthropic", "x-api-key", ""))).unwrap(),
    );
    let route = r#"
name: xp-failover
match:
  prefix: /
  filter_state: [{ key: wasm.aigw.route, string_match: { exact: xp-failover } }]
route:
  cluster: xp-failover
  timeout: 0s
  retry_policy:
    retry_on: 5xx,reset,connect-failure,retriable-status-codes
    retriable_status_codes: [429]
    num_retries: 1
    # A backend that has sent no response headers within 2 s counts as failed (kept short for the test).
    per_try_timeout: 2s
    retry_priority:
      name: envoy.retry_priorities.previous_priorities
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig
        update_frequency: 1
"#;
    let source = std::fs::read_to_string(repo_root().join("envoy-config/gateway.yaml")).unwrap();
    let mut root: serde_yaml::Value = serde_yaml::from_str(&source).unwrap();
    let clusters = root["static_resources"]["clusters"].as_sequence_mut().unwrap();
    for text in [cluster("xp-claude", claude.port()), cluster("xp-gpt", gpt.port()), aggregate] {
        clusters.push(serde_yaml::from_str(&text).unwrap());
    }
    let routes = root["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"]
        .as_sequence_mut()
        .unwrap();
    routes.insert(0, serde_yaml::from_str(route).unwrap());
    let out = dir.join("cross-provider.yaml");
    std::fs::write(&out, serde_yaml::to_string(&root).unwrap()).unwrap();
    out
}

/// gateway.yaml with a model-router upstream instance (and the buffer filter after it) added to `cluster`.
fn with_upstream_instance(dir: &std::path::Path, cluster: &str, upstream_config: &str) -> std::path::PathBuf {
    let filters = format!(
        r#"
- name: model-router-upstream
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: model-router-upstream
      root_id: model-router
      vm_config: {{ vm_id: model-router, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: dist/model-router.wasm }} }} }}
      failure_policy: FAIL_RELOAD
      configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: '{upstream_config}' }}
- name: envoy.filters.http.buffer
  typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 16777216 }}
"#
    );
    let added: Vec<serde_yaml::Value> = serde_yaml::from_str(&filters).unwrap();
    let source = std::fs::read_to_string(repo_root().join("envoy-config/gateway.yaml")).unwrap();
    let mut root: serde_yaml::Value = serde_yaml::from_str(&source).unwrap();
    let clusters = root["static_resources"]["clusters"].as_sequence_mut().unwrap();
    let target = clusters.iter_mut().find(|c| c["name"] == cluster).unwrap();
    let chain = target["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        ["http_filters"]
        .as_sequence_mut()
        .unwrap();
    for (i, filter) in added.into_iter().enumerate() {
        chain.insert(i, filter);
    }
    let out = dir.join("with-upstream-instance.yaml");
    std::fs::write(&out, serde_yaml::to_string(&root).unwrap()).unwrap();
    out
}

fn yaml_to_json(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

#[test]
fn failover_across_providers_translates_each_attempt() {
    let dir = TempDir::new("cross");
    let claude = MockServer::start("xp-claude").unwrap();
    let gpt = MockServer::start("xp-gpt").unwrap();
    let config = cross_provider_config(dir.path(), &claude, &gpt);
    let router = json!({
        "upstream_instances": true,
        "backends": [{"name": "xp-claude", "provider": "anthropic", "upstream_instance": true}, {"name": "xp-gpt"}, {"name": "mock"}],
        "models": [
            {"name": "best-effort", "route": "xp-failover",
             "targets": [{"backend": "xp-claude", "model": "claude-sonnet-4-5"}, {"backend": "xp-gpt", "model": "gpt-4o"}]}
        ]
    })
    .to_string();
    let gw = with_keys(Gateway::builder())
        .config_file(config.to_str().unwrap())
        .only_filters(&["model-router"])
        .filter_config("model-router", router)
        .start();

    // Healthy primary: Anthropic answers, translated.
    let response = gw.chat(&chat_body("best-effort", "primary answers", false));
    assert_eq!(response.status, 200, "{}\n{}", response.text(), gw.envoy_log());
    assert_eq!(response.header("x-aigw-backend"), Some("xp-claude"));
    assert_eq!(response.json()["choices"][0]["message"]["content"], "primary answers");
    assert_eq!(response.json()["model"], "claude-sonnet-4-5");
    let sent = only_request(&claude);
    assert_eq!((sent.path.as_str(), sent.header("x-api-key")), ("/v1/messages", Some(ANTHROPIC_KEY)));
    assert!(gpt.requests().is_empty());

    for status in ["503", "429"] {
        for stream in [false, true] {
            claude.clear_requests();
            gpt.clear_requests();
            let text = format!("cross failover {status} {stream}");
            let headers = [("x-mock-status", status), ("x-mock-fault-backend", "xp-claude")];
            let response = gw.chat_with(&headers, &chat_body("best-effort", &text, stream));
            assert_eq!(response.status, 200, "{}", response.text());
            assert_eq!(response.header("x-aigw-backend"), Some("xp-gpt"));
            if stream {
                assert_eq!(openai_stream_text(&response.text()), text);
            } else {
                assert_eq!(response.json()["choices"][0]["message"]["content"], text.as_str());
                assert_eq!(response.json()["model"], "gpt-4o");
            }
            // First attempt: Anthropic's API with its key; second: OpenAI's, with its key only.
            let first = only_request(&claude);
            assert_eq!(first.path, "/v1/messages");
            assert_eq!(first.header("x-api-key"), Some(ANTHROPIC_KEY));
            assert_eq!(first.header("authorization"), None);
            assert_eq!(first.response.status.to_string(), status);
            let second = only_request(&gpt);
            assert_eq!(second.path, "/v1/chat/completions");
            assert_eq!(second.header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
            assert_eq!(second.header("x-api-key"), None, "the Anthropic key leaked into the OpenAI attempt");
            assert_eq!(second.header("anthropic-version"), None);
            assert!(second.headers.iter().all(|(n, _)| !n.starts_with("x-aigw-")), "{:?}", second.headers);
            let body = second.body_json().unwrap();
            assert_eq!(body["model"], "gpt-4o");
            assert_eq!(body["messages"][0]["content"], text.as_str());
            assert_eq!(second.header("content-length").map(|l| l.parse::<usize>().unwrap()), Some(second.body.len()));
        }
    }
    let stats = gw.stats();
    assert!(stats.contains("model_router.backend.xp-claude.attempt_errors: 4"), "{stats}");
    assert!(stats.contains("model_router.backend.xp-claude.failovers: 4"), "{stats}");
    // In Prometheus the backend is a label (gateway.yaml's stats_tags).
    let prometheus = gw.prometheus();
    assert!(
        prometheus
            .lines()
            .any(|l| l.starts_with("aigw_failovers{") && l.contains("backend=\"xp-claude\"") && l.ends_with(" 4")),
        "{prometheus}"
    );

    // A primary too slow to answer: the per-try timeout moves the request to the next backend.
    gpt.clear_requests();
    let headers = [("x-mock-delay-ms", "10000"), ("x-mock-fault-backend", "xp-claude")];
    let response = gw.chat_with(&headers, &chat_body("best-effort", "too slow", true));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-aigw-backend"), Some("xp-gpt"));
    assert_eq!(openai_stream_text(&response.text()), "too slow");

    // A primary that is down (connection refused): straight to the next backend.
    drop(claude);
    gpt.clear_requests();
    let response = gw.chat(&chat_body("best-effort", "primary down", false));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-aigw-backend"), Some("xp-gpt"));
    assert_eq!(only_request(&gpt).body_json().unwrap()["model"], "gpt-4o");
}

#[test]
fn budget_fallback_routes_to_the_cheaper_model_once_token_counter_signals() {
    let counter = json!({
        "rules": [{"name": "team-hourly", "key": "header:x-team", "limit": 30, "window": "hour", "on_exceeded": "signal"}]
    })
    .to_string();
    let router = json!({
        "backends": [{"name": "mock"}, {"name": "anthropic", "provider": "anthropic", "upstream_instance": true}],
        "models": [
            {"name": "gpt-4o-mini", "targets": [{"backend": "mock"}]},
            {"prefix": "claude-", "targets": [{"backend": "anthropic"}]}
        ],
        "rules": [{"name": "budget", "when": {"source": "filter_state:aigw.budget.exceeded", "equals": "1"},
                   "models": ["claude-*"], "model": "gpt-4o-mini"}]
    })
    .to_string();
    let gw = Gateway::builder()
        .only_filters(&["token-counter", "model-router"])
        .filter_config("token-counter", counter)
        .filter_config("model-router", router)
        .start();
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
                      "messages": [{"role": "user", "content": "a question of about a dozen tokens for the budget"}]});
    let mut landed = Vec::new();
    for _ in 0..6 {
        gw.clear_mocks();
        let response = gw.chat_with(&[("x-team", "blue")], &body);
        assert_eq!(response.status, 200, "a signal rule never rejects: {}", response.text());
        landed.push(response.header("x-aigw-backend").unwrap_or("?").to_string());
        if landed.last().map(String::as_str) == Some("mock") {
            let sent = only_request(gw.mock("mock"));
            assert_eq!(sent.body_json().unwrap()["model"], "gpt-4o-mini");
            break;
        }
    }
    assert_eq!(landed.first().map(String::as_str), Some("anthropic"), "{landed:?}");
    assert_eq!(
        landed.last().map(String::as_str),
        Some("mock"),
        "the spent budget never triggered the fallback: {landed:?}\n{}",
        gw.stats().lines().filter(|l| l.contains("wasmcustom")).collect::<Vec<_>>().join("\n")
    );
    // Another team still gets the premium model.
    let response = gw.chat_with(&[("x-team", "green")], &body);
    assert_eq!(response.header("x-aigw-backend"), Some("anthropic"));
    assert!(gw.stats().contains("model_router.rule_matched.rule.budget"));
}

#[test]
fn azure_openai_backend_gets_its_deployment_path() {
    let router = json!({
        "backends": [{"name": "openai", "provider": "azure_openai", "upstream_instance": true,
                      "deployment": "prod-{model}", "api_version": "2024-10-21"}],
        "models": [{"prefix": "gpt-", "targets": [{"backend": "openai"}]}]
    })
    .to_string();
    // Azure's path names the deployment: the upstream instance on the cluster sets it.
    let dir = TempDir::new("azure");
    // The cluster's endpoint names its backend `openai` (endpoint metadata in gateway.yaml).
    let upstream = r#"{"mode": "upstream", "backend": {"name": "openai", "provider": "azure_openai", "deployment": "prod-{model}", "api_version": "2024-10-21"}}"#;
    let config = with_upstream_instance(dir.path(), "openai", upstream);
    let gw = Gateway::builder()
        .config_file(config.to_str().unwrap())
        .only_filters(&["model-router"])
        .filter_config("model-router", router)
        .start();
    for stream in [false, true] {
        gw.clear_mocks();
        let response = gw.chat(&chat_body("gpt-4o", "to azure", stream));
        assert_eq!(response.status, 200, "{}", response.text());
        let text = response.text();
        let content = if stream {
            openai_stream_text(&text)
        } else {
            response.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string()
        };
        assert_eq!(content, "to azure");
        let sent = only_request(gw.mock("openai"));
        assert_eq!(sent.path, "/openai/deployments/prod-gpt-4o/chat/completions?api-version=2024-10-21");
        assert_eq!(sent.body_json().unwrap()["model"], "gpt-4o");
    }
}
