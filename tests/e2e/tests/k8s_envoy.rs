//! The Envoy configuration inside the Kubernetes manifests (what Istio's EnvoyFilter and Envoy Gateway's
//! EnvoyPatchPolicy add: the `buffer` filter, the filter-state routes, the provider clusters' upstream
//! filters with credential_injector and model-router's upstream instance) is checked by real Envoy: the
//! fragments are put into a bootstrap the way the controllers put them into their xDS, and
//! `envoy --mode validate` must accept it. The CRD schemas cannot check these fragments (`value` is
//! free-form there). What is substituted: mounted paths (/etc/aigw/...) become temp files, Istio's ECDS
//! reference to the upstream instance becomes the EXTENSION_CONFIG it names, and provider endpoints are
//! local addresses.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::{envoy_bin, k8s, repo_root};
use serde_json::{json, Value};
use std::path::Path;

fn manifests() -> Vec<Value> {
    k8s::read_manifests(&repo_root().join("envoy-config/k8s"))
        .unwrap()
        .into_iter()
        .map(|(_, doc)| serde_json::to_value(doc).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, namespace_part: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["apiVersion"].as_str().unwrap().contains(namespace_part))
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// Rewrites the pod paths to files in `dir`: SDS files from the ConfigMap, key files, model-router's module.
fn localise(value: &Value, dir: &Path) -> Value {
    let text = serde_json::to_string(value).unwrap();
    let wasm = repo_root().join("dist/model-router.wasm");
    let text = text
        .replace(&format!("{}/plugin.wasm", k8s::EG_WASM_DIR), wasm.to_str().unwrap())
        .replace(k8s::SDS_DIR, dir.join("sds").to_str().unwrap())
        .replace(k8s::KEYS_DIR, dir.join("keys").to_str().unwrap());
    serde_json::from_str(&text).unwrap()
}

fn write_pod_files(docs: &[Value], dir: &Path) {
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    std::fs::create_dir_all(dir.join("sds")).unwrap();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    for (name, content) in config_map["data"].as_object().unwrap() {
        let content = content.as_str().unwrap().replace(k8s::KEYS_DIR, dir.join("keys").to_str().unwrap());
        std::fs::write(dir.join("sds").join(name), content).unwrap();
    }
    for (provider, _) in k8s::PROVIDERS {
        std::fs::write(dir.join("keys").join(provider), "test-key").unwrap();
    }
}

fn cluster(name: &str, patch: &Value) -> Value {
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]},
    });
    for (key, value) in patch.as_object().unwrap() {
        cluster[key] = value.clone();
    }
    cluster
}

fn bootstrap(routes: Vec<Value>, http_filters: Vec<Value>, clusters: Vec<Value>) -> Value {
    json!({
        // Both controllers' proxies have a node identity (SDS needs one).
        "node": {"id": "aigw-gateway", "cluster": "aigw"},
        "static_resources": {
            "listeners": [{
                "name": "aigw",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "aigw",
                        "route_config": {"name": "aigw", "virtual_hosts": [{"name": "llm", "domains": ["*"], "routes": routes}]},
                        "http_filters": http_filters,
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    })
}

fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

fn validate(name: &str, config: &Value, dir: &Path) {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let output = std::process::Command::new(envoy_bin())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", envoy_bin().display()));
    assert!(
        output.status.success(),
        "{name}: Envoy rejects the manifests' fragments:\n{}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        serde_json::to_string_pretty(config).unwrap()
    );
}

#[test]
fn istio_envoy_filter_fragments_validate_in_envoy() {
    let docs: Vec<Value> = manifests()
        .into_iter()
        .filter(|d| d["apiVersion"].as_str().unwrap().contains("istio.io") || d["kind"] == "ConfigMap")
        .collect();
    let dir = std::env::temp_dir().join(format!("aigw-k8s-istio-{}", std::process::id()));
    write_pod_files(
        &docs
            .iter()
            .filter(|d| d["kind"] != "ConfigMap" || d["metadata"]["namespace"] == k8s::NAMESPACE)
            .cloned()
            .collect::<Vec<_>>(),
        &dir,
    );
    let filter = find(&docs, "EnvoyFilter", "networking.istio.io");
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let extension = patches.iter().find(|p| p["applyTo"] == "EXTENSION_CONFIG").unwrap()["patch"]["value"].clone();
    let mut http_filters = Vec::new();
    let mut routes = Vec::new();
    let mut clusters = Vec::new();
    for patch in patches {
        let value = localise(&patch["patch"]["value"], &dir);
        match patch["applyTo"].as_str().unwrap() {
            "HTTP_FILTER" => http_filters.push(value),
            "HTTP_ROUTE" => {
                // The VirtualService route Istio builds, with the patch merged into it.
                let name = patch["match"]["routeConfiguration"]["vhost"]["route"]["name"].as_str().unwrap();
                let host = k8s::PROVIDERS.iter().find(|(n, _)| *n == name).unwrap().1;
                let mut route = json!({"name": name, "match": {"prefix": "/"},
                    "route": {"cluster": format!("outbound|443||{host}"), "timeout": "0s"}});
                route["match"]["filter_state"] = value["match"]["filter_state"].clone();
                route["route"]["idle_timeout"] = value["route"]["idle_timeout"].clone();
                routes.push(route);
            }
            "CLUSTER" => {
                let host = patch["match"]["cluster"]["service"].as_str().unwrap();
                let mut value = value;
                // What Istio's agent does for the ECDS reference: the EXTENSION_CONFIG it names, with the
                // module fetched to a local file.
                for filter in value["typed_extension_protocol_options"]
                    ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
                    .as_array_mut()
                    .unwrap()
                {
                    if filter.get("config_discovery").is_some() {
                        assert_eq!(filter["name"], extension["name"]);
                        let mut typed = extension["typed_config"].clone();
                        typed["config"]["vm_config"]["code"] =
                            json!({"local": {"filename": repo_root().join("dist/model-router.wasm")}});
                        *filter = json!({"name": filter["name"], "typed_config": typed});
                    }
                }
                clusters.push(cluster(&format!("outbound|443||{host}"), &value));
            }
            _ => {}
        }
    }
    assert_eq!((http_filters.len(), routes.len(), clusters.len()), (1, 2, 2));
    http_filters.push(router());
    validate("istio", &bootstrap(routes, http_filters, clusters), &dir);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn envoy_gateway_patch_policy_fragments_validate_in_envoy() {
    let docs: Vec<Value> = manifests()
        .into_iter()
        .filter(|d| {
            d["apiVersion"].as_str().unwrap().contains("gateway")
                || d["metadata"]["namespace"] == k8s::EG_PROXY_NAMESPACE
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("aigw-k8s-eg-{}", std::process::id()));
    write_pod_files(&docs, &dir);
    let policy = find(&docs, "EnvoyPatchPolicy", "gateway.envoyproxy.io");
    let mut http_filters = Vec::new();
    let mut routes = Vec::new();
    let mut clusters: Vec<(String, Value)> = Vec::new();
    for patch in policy["spec"]["jsonPatches"].as_array().unwrap() {
        let operation = &patch["operation"];
        let value = localise(&operation["value"], &dir);
        match (patch["type"].as_str().unwrap().rsplit('.').next().unwrap(), operation["path"].as_str().unwrap()) {
            ("Listener", "") => http_filters.push(value),
            ("Listener", "/payload_in_metadata") => assert_eq!(value, "jwt_payload"),
            ("RouteConfiguration", _) => routes.insert(0, value),
            ("Cluster", path) => {
                let name = patch["name"].as_str().unwrap().to_string();
                let key = path.trim_start_matches('/').to_string();
                match clusters.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, fields)) => fields[&key] = value,
                    None => clusters.push((name, json!({ key: value }))),
                }
            }
            other => panic!("unexpected patch {other:?}"),
        }
    }
    assert_eq!((http_filters.len(), routes.len(), clusters.len()), (1, 2, 2));
    http_filters.push(router());
    let clusters = clusters.iter().map(|(name, fields)| cluster(name, fields)).collect();
    validate("envoy-gateway", &bootstrap(routes, http_filters, clusters), &dir);
    std::fs::remove_dir_all(&dir).ok();
}
