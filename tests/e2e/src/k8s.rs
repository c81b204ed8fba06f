//! The Kubernetes manifests in `envoy-config/k8s/`, generated from the filter
//! configurations in `envoy-config/gateway.yaml` (the single source of truth).
//!
//! - `istio/<filter>.yaml`: one Istio `WasmPlugin` per filter. All five sit in
//!   the `UNSPECIFIED_PHASE` (the end of the chain, after Istio's own JWT
//!   authentication, just before the router) with descending priorities, so
//!   they run in gateway.yaml's order.
//! - `envoy-gateway/extension-policy.yaml`: one Envoy Gateway
//!   `EnvoyExtensionPolicy` listing the five filters in chain order.
//!
//! - `shared-store/ratelimit.yaml`: Redis and the rate limit service
//!   (tools/ratelimit-redis) as their own Deployments and Services, for
//!   token-counter's budgets shared by every gateway replica; its header
//!   carries the token-counter configuration that uses them
//!   ([`shared_store_token_counter`]).
//!
//! Regenerate after changing a filter's configuration in gateway.yaml:
//! `cargo run -q -p aigw-e2e --bin aigw-generate`. The test
//! `tests/e2e/tests/manifests.rs` fails when the files are stale.

use crate::config::{wasm_configs, FILTERS};
use serde::Deserialize;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// Where the filter images are expected (an OCI image per filter holding its
/// `.wasm`, e.g. pushed with `oras push <registry>/aigw/pii-mask:0.1.0 dist/pii-mask.wasm`).
pub const IMAGE_REGISTRY: &str = "registry.example.com/aigw";
/// The image tag (the workspace version).
pub const IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");

/// Istio priority of a filter: higher runs first within a phase.
pub fn istio_priority(filter: &str) -> i64 {
    let position = FILTERS.iter().position(|f| *f == filter).unwrap_or(FILTERS.len());
    (FILTERS.len() - position) as i64 * 10
}

/// A filter's configuration JSON as YAML (keys in their original order).
fn config_yaml(json: &str, indent: usize) -> Result<String, String> {
    let value: Value = serde_yaml::from_str(json).map_err(|e| format!("configuration is not JSON: {e}"))?;
    let is_empty = value.as_mapping().is_some_and(|m| m.is_empty()) || value.is_null();
    if is_empty {
        return Ok(" {}\n".to_string());
    }
    let text = serde_yaml::to_string(&value).map_err(|e| e.to_string())?;
    let pad = " ".repeat(indent);
    Ok(format!("\n{}", text.lines().map(|line| format!("{pad}{line}\n")).collect::<String>()))
}

const HEADER: &str = "# GENERATED from envoy-config/gateway.yaml by `cargo run -q -p aigw-e2e --bin aigw-generate`.\n\
# Do not edit: change the filter's configuration in gateway.yaml and regenerate\n\
# (tests/e2e/tests/manifests.rs fails when this file is stale).\n";

/// The Istio WasmPlugin for one filter.
pub fn istio_wasm_plugin(filter: &str, config_json: &str) -> Result<String, String> {
    let position = FILTERS.iter().position(|f| *f == filter).ok_or_else(|| format!("unknown filter {filter}"))?;
    Ok(format!(
        "{HEADER}#\n\
# aigw {filter} ({step} of 5 in the chain pii-mask -> prompt-template -> semantic-cache -> token-counter ->\n\
# model-router)\n\
# for the Istio ingress gateway. Istio's RequestAuthentication replaces gateway.yaml's jwt_authn (see\n\
# envoy-config/k8s/README.md for how claims reach the filters there).\n\
apiVersion: extensions.istio.io/v1alpha1\n\
kind: WasmPlugin\n\
metadata:\n\
\x20 name: aigw-{filter}\n\
\x20 namespace: istio-ingress\n\
\x20 labels:\n\
\x20   app.kubernetes.io/part-of: aigw\n\
\x20   app.kubernetes.io/component: {filter}\n\
spec:\n\
\x20 selector:\n\
\x20   matchLabels:\n\
\x20     istio: ingressgateway\n\
\x20 url: oci://{IMAGE_REGISTRY}/{filter}:{IMAGE_TAG}\n\
\x20 imagePullPolicy: IfNotPresent\n\
\x20 # The end of the chain (after authentication), in descending priority: the same order as gateway.yaml.\n\
\x20 phase: UNSPECIFIED_PHASE\n\
\x20 priority: {priority}\n\
\x20 type: HTTP\n\
\x20 # Like gateway.yaml's FAIL_RELOAD (Istio 1.27 and later; use FAIL_CLOSE before): a crashed VM is\n\
\x20 # reloaded, and traffic never skips the filter.\n\
\x20 failStrategy: FAIL_RELOAD\n\
\x20 pluginConfig:{config}",
        step = position + 1,
        priority = istio_priority(filter),
        config = config_yaml(config_json, 4)?,
    ))
}

/// The Envoy Gateway EnvoyExtensionPolicy carrying all five filters in chain order.
pub fn envoy_extension_policy(configs: &[(String, String)]) -> Result<String, String> {
    let mut wasm = String::new();
    for (filter, json) in configs {
        wasm.push_str(&format!(
            "  - name: {filter}\n\
\x20   rootID: {filter}\n\
\x20   failOpen: false\n\
\x20   code:\n\
\x20     type: Image\n\
\x20     image:\n\
\x20       url: {IMAGE_REGISTRY}/{filter}:{IMAGE_TAG}\n\
\x20   config:{config}",
            config = config_yaml(json, 6)?,
        ));
    }
    Ok(format!(
        "{HEADER}#\n\
# The aigw filter chain for Envoy Gateway: the five filters, in order, on the HTTPRoute `llm`.\n\
# Verify JWTs with a SecurityPolicy (jwt.providers) on the same route; Envoy Gateway runs it before these\n\
# filters. Provider clusters, TLS and retries come from the HTTPRoute's backends and BackendTrafficPolicy.\n\
apiVersion: gateway.envoyproxy.io/v1alpha1\n\
kind: EnvoyExtensionPolicy\n\
metadata:\n\
\x20 name: aigw\n\
\x20 namespace: aigw\n\
\x20 labels:\n\
\x20   app.kubernetes.io/part-of: aigw\n\
spec:\n\
\x20 targetRefs:\n\
\x20 - group: gateway.networking.k8s.io\n\
\x20   kind: HTTPRoute\n\
\x20   name: llm\n\
\x20 wasm:\n\
{wasm}"
    ))
}

/// Every file generated from gateway.yaml: path relative to the repository
/// root, and content (bare.yaml and the Kubernetes manifests).
pub fn generate(gateway_yaml: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let mut files = vec![(PathBuf::from("envoy-config/bare.yaml"), crate::config::bare_from_gateway(gateway_yaml)?)];
    files.extend(manifests(gateway_yaml)?);
    Ok(files)
}

/// The header gateway.yaml's `api_key_auth` sets for the filters, after its
/// `header_mutation` removed any client copy.
pub const CLIENT_ID_HEADER_SOURCE: &str = "header:x-aigw-client";

/// A filter's gateway.yaml configuration as the manifests carry it. The
/// manifests install no `api_key_auth` and nothing that strips a client's
/// `x-aigw-client` in front of the filters, so there a client could set that
/// header itself: every policy keyed on it is left out (token-counter's
/// `per-app` rule, model-router's per-client lists) or keyed on a verified JWT
/// claim instead (prompt-template's and semantic-cache's tenant: `jwt:team`).
pub fn kubernetes_config(filter: &str, json: &str) -> Result<String, String> {
    let mut config: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("{filter}: configuration is not JSON: {e}"))?;
    let from_client_id =
        |value: Option<&serde_json::Value>| value.and_then(|v| v.as_str()) == Some(CLIENT_ID_HEADER_SOURCE);
    match filter {
        "token-counter" => {
            if let Some(rules) = config.get_mut("rules").and_then(|r| r.as_array_mut()) {
                rules.retain(|rule| !from_client_id(rule.get("key")));
            }
        }
        // semantic-cache's tenant (entries never cross tenants) comes from a verified claim there.
        "semantic-cache" if from_client_id(config.get("tenant")) => {
            if let Some(map) = config.as_object_mut() {
                map.insert("tenant".into(), serde_json::Value::String("jwt:team".into()));
            }
        }
        "prompt-template" => {
            if let Some(tenant) = config.get_mut("tenant").and_then(|t| t.as_object_mut()) {
                if from_client_id(tenant.get("from")) {
                    tenant.insert("from".into(), serde_json::Value::String("jwt:team".into()));
                }
            }
        }
        "model-router" => {
            if let Some(access) = config.get_mut("access").and_then(|a| a.as_object_mut()) {
                if from_client_id(access.get("source")) {
                    access.remove("source");
                    access.remove("lists");
                }
            }
        }
        _ => {}
    }
    serde_json::to_string(&config).map_err(|e| e.to_string())
}

/// The Kubernetes manifests generated from gateway.yaml.
pub fn manifests(gateway_yaml: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let configs: Vec<(String, String)> = wasm_configs(gateway_yaml)?
        .into_iter()
        .map(|(filter, json)| kubernetes_config(&filter, &json).map(|json| (filter, json)))
        .collect::<Result<_, _>>()?;
    let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
    if names != FILTERS {
        return Err(format!("gateway.yaml has Wasm filters {names:?}, expected {FILTERS:?}"));
    }
    let mut files = Vec::new();
    for (filter, json) in &configs {
        files.push((
            Path::new("envoy-config/k8s/istio").join(format!("{filter}.yaml")),
            istio_wasm_plugin(filter, json)?,
        ));
    }
    files.push((
        PathBuf::from("envoy-config/k8s/envoy-gateway/extension-policy.yaml"),
        envoy_extension_policy(&configs)?,
    ));
    let token_counter =
        configs.iter().find(|(f, _)| f == "token-counter").map(|(_, json)| json.as_str()).unwrap_or("{}");
    files.push((PathBuf::from("envoy-config/k8s/shared-store/ratelimit.yaml"), shared_store(token_counter)?));
    Ok(files)
}

/// The Istio cluster name of the rate limit service in [`shared_store`].
pub const RATELIMIT_CLUSTER: &str = "outbound|8081||aigw-ratelimit.aigw-system.svc.cluster.local";

/// token-counter's Kubernetes configuration on the shared store: the same
/// rules, counted by the rate limit service (Istio's cluster name for it).
pub fn shared_store_token_counter(json: &str) -> Result<String, String> {
    let mut config: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("token-counter: {e}"))?;
    let Some(map) = config.as_object_mut() else { return Err("token-counter: config is not an object".into()) };
    map.insert(
        "store".into(),
        serde_json::json!({"rls": {"cluster": RATELIMIT_CLUSTER, "domain": "aigw", "timeout_ms": 200}}),
    );
    serde_json::to_string(&config).map_err(|e| e.to_string())
}

/// Redis and the rate limit service as Deployments and Services.
pub fn shared_store(token_counter_json: &str) -> Result<String, String> {
    let config = shared_store_token_counter(token_counter_json)?;
    let commented: String = config_yaml(&config, 2)?.lines().skip(1).map(|line| format!("#{line}\n")).collect();
    let body = r#"#
# token-counter's budgets shared by every gateway replica
# (filters/token-counter/README.md#budgets-shared-across-replicas): Redis counts (one atomic Lua script per
# call) and aigw-ratelimit speaks Envoy's rate limit service API (ShouldRateLimit, gRPC on port 8081).
# envoyproxy/ratelimit can replace aigw-ratelimit (then set "refunds": false); a managed Redis can replace
# the Deployment below (point aigw-ratelimit's --redis at it).
#
# To use it, give token-counter this configuration (the WasmPlugin's pluginConfig, or the
# EnvoyExtensionPolicy's config). On Istio the service's cluster is CLUSTER;
# on Envoy Gateway, add a cluster for it with an EnvoyPatchPolicy and name that cluster instead.
#
# token-counter configuration on the shared store:
CONFIG#
apiVersion: apps/v1
kind: Deployment
metadata:
  name: aigw-redis
  namespace: aigw-system
  labels: { app.kubernetes.io/name: aigw, app.kubernetes.io/component: redis }
spec:
  replicas: 1
  selector: { matchLabels: { app.kubernetes.io/component: redis } }
  template:
    metadata: { labels: { app.kubernetes.io/name: aigw, app.kubernetes.io/component: redis } }
    spec:
      containers:
      - name: redis
        image: redis:7.0
        args: ["--save", "", "--appendonly", "no"]
        ports: [{ containerPort: 6379 }]
---
apiVersion: v1
kind: Service
metadata:
  name: aigw-redis
  namespace: aigw-system
spec:
  selector: { app.kubernetes.io/component: redis }
  ports: [{ name: redis, port: 6379 }]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: aigw-ratelimit
  namespace: aigw-system
  labels: { app.kubernetes.io/name: aigw, app.kubernetes.io/component: ratelimit }
spec:
  # Stateless: any number of replicas share one Redis.
  replicas: 2
  selector: { matchLabels: { app.kubernetes.io/component: ratelimit } }
  template:
    metadata: { labels: { app.kubernetes.io/name: aigw, app.kubernetes.io/component: ratelimit } }
    spec:
      containers:
      - name: ratelimit
        image: IMAGE
        args: ["--listen", "0.0.0.0:8081", "--redis", "aigw-redis.aigw-system.svc.cluster.local:6379"]
        ports: [{ containerPort: 8081 }]
---
apiVersion: v1
kind: Service
metadata:
  name: aigw-ratelimit
  namespace: aigw-system
spec:
  selector: { app.kubernetes.io/component: ratelimit }
  # appProtocol grpc: the mesh speaks HTTP/2 to it.
  ports: [{ name: grpc, port: 8081, appProtocol: grpc }]
"#;
    let body = body
        .replace("CLUSTER", RATELIMIT_CLUSTER)
        .replace("IMAGE", &format!("{IMAGE_REGISTRY}/ratelimit-redis:{IMAGE_TAG}"))
        .replace("CONFIG", &commented);
    Ok(format!("{HEADER}{body}"))
}

/// Parses every YAML document in every `.yaml` file under `dir` (recursively).
pub fn read_manifests(dir: &Path) -> Result<Vec<(PathBuf, Value)>, String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                for document in serde_yaml::Deserializer::from_str(&text) {
                    let value = Value::deserialize(document).map_err(|e| format!("{}: {e}", path.display()))?;
                    if !value.is_null() {
                        out.push((path.clone(), value));
                    }
                }
            }
        }
    }
    Ok(out)
}
