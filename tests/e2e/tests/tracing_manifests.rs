//! envoy-config/observability/k8s/: the tracing manifests for Istio and Envoy Gateway are generated from
//! tracing.yaml (never stale), carry exactly its custom tags, and send to the collector Service that
//! otel-collector.yaml deploys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::{repo_root, tracing_k8s};
use serde_yaml::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn documents(text: &str) -> Vec<Value> {
    text.split("\n---\n").skip(1).map(|doc| serde_yaml::from_str(doc).unwrap()).collect()
}

#[test]
fn tracing_manifests_are_fresh_and_carry_every_custom_tag() {
    let tracing = read("envoy-config/observability/tracing.yaml");
    let tags = tracing_k8s::custom_tags(&tracing).unwrap();
    let names: Vec<&str> = tags.as_sequence().unwrap().iter().map(|t| t["tag"].as_str().unwrap()).collect();
    for wanted in ["gen_ai.request.model", "gen_ai.usage.input_tokens", "aigw.cache", "aigw.pii.entities"] {
        assert!(names.contains(&wanted), "tracing.yaml lost {wanted}");
    }
    for (path, expected) in tracing_k8s::manifests(&tracing).unwrap() {
        let path = path.to_str().unwrap().to_string();
        assert_eq!(read(&path), expected, "{path} is stale: run `cargo run -q -p aigw-e2e --bin aigw-generate`");
    }

    let istio = documents(&read("envoy-config/observability/k8s/istio-tracing.yaml"));
    assert_eq!(istio[0]["kind"], "Telemetry");
    assert_eq!(istio[0]["spec"]["tracing"][0]["providers"][0]["name"], "aigw-otel");
    assert_eq!(istio[1]["kind"], "EnvoyFilter");
    let patch = &istio[1]["spec"]["configPatches"][0];
    assert_eq!(patch["patch"]["operation"], "MERGE");
    assert_eq!(patch["patch"]["value"]["typed_config"]["tracing"]["custom_tags"], tags);

    let eg_text = read("envoy-config/observability/k8s/envoy-gateway-tracing.yaml");
    let eg = documents(&eg_text);
    assert_eq!(eg[0]["kind"], "EnvoyPatchPolicy");
    assert_eq!(eg[0]["spec"]["jsonPatches"][0]["operation"]["value"], tags);
    // The EnvoyProxy patch names the collector, and the proxy it patches is the one the manifests deploy.
    let proxy = tracing_k8s::envoy_proxy_tracing();
    let backend = &proxy["spec"]["telemetry"]["tracing"]["provider"]["backendRefs"][0];
    assert_eq!((backend["name"].as_str(), backend["port"].as_u64()), (Some("otel-collector"), Some(4317)));
    assert!(eg_text.contains(&format!("kubectl patch envoyproxy aigw-proxy -n aigw --type merge -p '{proxy}'")));
    assert!(read("envoy-config/k8s/envoy-gateway/gateway.yaml").contains("name: aigw-proxy"));

    // Both send to the Service otel-collector.yaml deploys.
    let collector = read("envoy-config/observability/k8s/otel-collector.yaml");
    let service = collector
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str::<Value>(doc).unwrap())
        .find(|doc| doc["kind"] == "Service")
        .unwrap();
    assert_eq!(
        (service["metadata"]["name"].as_str(), service["metadata"]["namespace"].as_str()),
        (Some("otel-collector"), Some("observability"))
    );
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(4317));
    assert!(read("envoy-config/observability/k8s/istio-tracing.yaml")
        .contains("service: otel-collector.observability.svc.cluster.local, port: 4317"));
}
