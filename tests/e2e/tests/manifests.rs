//! The Kubernetes manifests in envoy-config/k8s/ cannot drift: every plugin
//! config in them is accepted by that filter's own parser, equals the
//! configuration gateway.yaml gives the filter, and the files are exactly what
//! `aigw-generate` generates; the filters keep the chain order.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use aigw_e2e::config::{wasm_configs, FILTERS};
use aigw_e2e::{k8s, repo_root};
use serde_json::Value as Json;
use serde_yaml::Value;
use std::collections::BTreeMap;

const REGENERATE: &str = "run `cargo run -q -p aigw-e2e --bin aigw-generate` and commit envoy-config/";

/// Runs the filter's own configuration parser.
fn parse_with_filter(filter: &str, json: &[u8]) -> Result<(), String> {
    let bytes = Some(json);
    match filter {
        "pii-mask" => pii_mask::config::from_json(bytes).map(drop).map_err(|e| e.to_string()),
        "prompt-template" => prompt_template::config::from_json(bytes).map(drop).map_err(|e| e.to_string()),
        "semantic-cache" => semantic_cache::config::from_json(bytes).map(drop).map_err(|e| e.to_string()),
        "token-counter" => token_counter::config::from_json(bytes).map(drop).map_err(|e| e.to_string()),
        "model-router" => model_router::config::from_json(bytes).map(drop).map_err(|e| e.to_string()),
        other => Err(format!("unknown filter {other}")),
    }
}

fn gateway_yaml() -> String {
    std::fs::read_to_string(repo_root().join("envoy-config/gateway.yaml")).unwrap()
}

/// gateway.yaml's configuration per filter, as JSON values.
fn gateway_configs() -> BTreeMap<String, Json> {
    wasm_configs(&gateway_yaml())
        .unwrap()
        .into_iter()
        .map(|(name, text)| {
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("gateway.yaml: {name}'s configuration is not JSON: {e}"));
            (name, value)
        })
        .collect()
}

/// gateway.yaml's configs as the manifests for one controller must carry them (k8s::target_config).
fn kubernetes_configs(target: k8s::Target) -> BTreeMap<String, Json> {
    gateway_configs()
        .into_iter()
        .map(|(name, value)| {
            let text = k8s::target_config(&name, &value.to_string(), target).unwrap();
            let value = serde_json::from_str(&text).unwrap();
            (name, value)
        })
        .collect()
}

/// Checks one manifest's plugin config against the filter's parser and gateway.yaml.
fn check_plugin_config(where_: &str, filter: &str, config: Option<&Value>, gateway: &BTreeMap<String, Json>) {
    let config: Json = match config {
        Some(config) => serde_json::to_value(config).unwrap(),
        None => panic!("{where_}: {filter} has no plugin config"),
    };
    let bytes = serde_json::to_vec(&config).unwrap();
    if let Err(err) = parse_with_filter(filter, &bytes) {
        panic!("{where_}: {filter}'s config is rejected by its parser: {err}");
    }
    // Nothing in front of the filters on Kubernetes strips a client's copy of the client-id header.
    assert!(
        !config.to_string().contains(k8s::CLIENT_ID_HEADER_SOURCE),
        "{where_}: {filter} trusts {} on Kubernetes, where a client can set it",
        k8s::CLIENT_ID_HEADER_SOURCE
    );
    assert_eq!(
        Some(&config),
        gateway.get(filter),
        "{where_}: {filter}'s config differs from gateway.yaml; {REGENERATE}"
    );
}

#[test]
fn gateway_yaml_configs_are_accepted_by_each_filter() {
    let configs = gateway_configs();
    assert_eq!(configs.len(), FILTERS.len());
    for (filter, config) in configs {
        if let Err(err) = parse_with_filter(&filter, config.to_string().as_bytes()) {
            panic!("gateway.yaml: {filter}'s configuration is rejected by its parser: {err}");
        }
    }
}

#[test]
fn derived_files_are_generated_from_gateway_yaml() {
    for (path, expected) in k8s::generate(&gateway_yaml()).unwrap() {
        let actual = std::fs::read_to_string(repo_root().join(&path)).unwrap_or_default();
        assert!(actual == expected, "{} is stale: {REGENERATE}", path.display());
    }
}

#[test]
fn every_manifest_carries_configs_its_filter_accepts_in_chain_order() {
    let istio_configs = kubernetes_configs(k8s::Target::Istio);
    let eg_configs = kubernetes_configs(k8s::Target::EnvoyGateway);
    let manifests = k8s::read_manifests(&repo_root().join("envoy-config/k8s")).unwrap();
    let mut istio: Vec<(i64, String)> = Vec::new();
    let mut policies = 0;
    for (path, doc) in &manifests {
        let where_ = path.strip_prefix(repo_root()).unwrap_or(path).display().to_string();
        match doc["kind"].as_str() {
            Some("WasmPlugin") => {
                assert_eq!(doc["apiVersion"].as_str(), Some("extensions.istio.io/v1alpha1"), "{where_}");
                let filter = doc["metadata"]["labels"]["app.kubernetes.io/component"].as_str().unwrap().to_string();
                let spec = &doc["spec"];
                assert!(spec["url"].as_str().unwrap().contains(&format!("/{filter}:")), "{where_}: url");
                assert_eq!(
                    spec["failStrategy"].as_str(),
                    Some("FAIL_RELOAD"),
                    "{where_}: a crashed VM is reloaded, traffic never skips the filter"
                );
                check_plugin_config(&where_, &filter, spec.get("pluginConfig"), &istio_configs);
                assert_eq!(
                    spec["selector"]["matchLabels"]["istio"].as_str(),
                    Some(k8s::ISTIO_GATEWAY_LABEL),
                    "{where_}"
                );
                istio.push((spec["priority"].as_i64().unwrap(), filter));
            }
            Some("EnvoyExtensionPolicy") => {
                policies += 1;
                let wasm = doc["spec"]["wasm"].as_sequence().unwrap();
                let names: Vec<&str> = wasm.iter().map(|w| w["name"].as_str().unwrap()).collect();
                assert_eq!(names, FILTERS, "{where_}: filters out of chain order");
                for entry in wasm {
                    let filter = entry["name"].as_str().unwrap();
                    assert_eq!(entry["failOpen"].as_bool(), Some(false), "{where_}: {filter}");
                    check_plugin_config(&where_, filter, entry.get("config"), &eg_configs);
                }
            }
            // The shared budget store (shared-store/ratelimit.yaml): Redis and the rate limit service.
            Some("Deployment") | Some("Service") => {
                assert!(where_.contains("shared-store"), "{where_}: a Deployment or Service outside shared-store/")
            }
            Some(
                "Gateway"
                | "VirtualService"
                | "ServiceEntry"
                | "DestinationRule"
                | "RequestAuthentication"
                | "EnvoyFilter"
                | "GatewayClass"
                | "EnvoyProxy"
                | "HTTPRoute"
                | "HTTPRouteFilter"
                | "Backend"
                | "BackendTLSPolicy"
                | "ClientTrafficPolicy"
                | "BackendTrafficPolicy"
                | "SecurityPolicy"
                | "EnvoyPatchPolicy"
                | "ConfigMap",
            ) => {}
            other => panic!("{where_}: unexpected manifest kind {other:?}"),
        }
    }
    // Istio runs higher priorities first: descending priority must give the chain order.
    istio.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
    let order: Vec<&str> = istio.iter().map(|(_, f)| f.as_str()).collect();
    assert_eq!(order, FILTERS, "Istio WasmPlugin priorities do not give the chain order");
    assert_eq!(policies, 1, "expected one EnvoyExtensionPolicy");
}

/// The token-counter configuration shared-store/ratelimit.yaml shows is accepted by token-counter and is
/// gateway.yaml's (Kubernetes) configuration plus the store.
#[test]
fn the_shared_store_manifest_shows_a_token_counter_config_that_uses_it() {
    let configs = kubernetes_configs(k8s::Target::Istio);
    let json = k8s::shared_store_token_counter(&configs["token-counter"].to_string()).unwrap();
    let config = token_counter::config::from_json(Some(json.as_bytes())).unwrap();
    assert!(
        matches!(config.store, token_counter::config::Store::Rls(ref rls) if rls.cluster == k8s::RATELIMIT_CLUSTER)
    );
    let manifest = std::fs::read_to_string(repo_root().join("envoy-config/k8s/shared-store/ratelimit.yaml")).unwrap();
    assert!(manifest.contains(k8s::RATELIMIT_CLUSTER) && manifest.contains("kind: Deployment"));
}

#[test]
fn no_mock_backend_demo_secret_or_compression_in_the_manifests() {
    for (path, doc) in k8s::read_manifests(&repo_root().join("envoy-config/k8s")).unwrap() {
        let text = serde_json::to_string(&doc).unwrap();
        for forbidden in ["mock", "demo", "change-me", "127.0.0.1", "compressor", "\"compression\""] {
            assert!(!text.contains(forbidden), "{}: contains {forbidden}", path.display());
        }
    }
}

#[test]
fn routes_match_the_filter_state_and_have_no_timeout() {
    let manifests = k8s::read_manifests(&repo_root().join("envoy-config/k8s")).unwrap();
    let text: String = manifests.iter().map(|(_, doc)| serde_json::to_string(doc).unwrap()).collect();
    for (provider, _) in k8s::PROVIDERS {
        // One filter-state route per provider and controller (Istio's EnvoyFilter, Envoy Gateway's patch).
        let matcher =
            format!(r#""filter_state":[{{"key":"wasm.aigw.route","string_match":{{"exact":"{provider}"}}}}]"#);
        assert_eq!(text.matches(&matcher).count(), 2, "{provider}: filter-state route matches");
    }
    assert!(text.contains(r#""timeout":"0s""#) && text.contains(r#""requestTimeout":"0s""#));
    assert_eq!(
        text.matches(&format!(r#""max_request_bytes":{}"#, k8s::BUFFER_LIMIT_BYTES)).count(),
        4,
        "buffer filters"
    );
}
