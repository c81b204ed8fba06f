//! Tracing for the Kubernetes targets, generated from envoy-config/observability/tracing.yaml (the
//! single source of the span attributes) into envoy-config/observability/k8s/.
//!
//! Neither controller's own tracing API can read filter state: Istio's `Telemetry` custom tags are
//! literals, environment variables or request headers, and Envoy Gateway's `EnvoyProxy` tracing custom
//! tags are the same kinds. So each target gets its controller's tracing switch (the provider, the
//! sampling) plus a patch that appends tracing.yaml's `custom_tags` to the connection manager: an Istio
//! `EnvoyFilter` (MERGE appends to a repeated field) and an Envoy Gateway `EnvoyPatchPolicy` (JSON patch).

use crate::k8s;
use serde_yaml::{Mapping, Value};
use std::path::PathBuf;

/// Where the generated manifests live.
pub const DIR: &str = "envoy-config/observability/k8s";

/// The collector Service the manifests send spans to (otel-collector.yaml deploys it).
const COLLECTOR_HOST: &str = "otel-collector.observability.svc.cluster.local";
const COLLECTOR_PORT: u64 = 4317;

const HEADER: &str =
    "# GENERATED from envoy-config/observability/tracing.yaml by `cargo run -q -p aigw-e2e --bin aigw-generate`.\n\
# Do not edit: change the span attributes in tracing.yaml and regenerate (tests/e2e/tests/tracing_manifests.rs\n\
# fails when this file is stale). The `value` custom tags need Envoy 1.37 or later in the gateway's proxy.\n";

/// tracing.yaml's `tracing.custom_tags`.
pub fn custom_tags(tracing_yaml: &str) -> Result<Value, String> {
    let doc: Value = serde_yaml::from_str(tracing_yaml).map_err(|e| format!("tracing.yaml: {e}"))?;
    let tags = doc
        .get("tracing")
        .and_then(|tracing| tracing.get("custom_tags"))
        .filter(|tags| tags.as_sequence().is_some_and(|s| !s.is_empty()))
        .ok_or("tracing.yaml: no tracing.custom_tags")?;
    Ok(tags.clone())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    let mut mapping = Mapping::new();
    for (key, value) in pairs {
        mapping.insert(Value::String(key.to_string()), value);
    }
    Value::Mapping(mapping)
}

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

fn documents(comment: &str, docs: &[Value]) -> Result<String, String> {
    let mut out = format!("{HEADER}#\n{comment}");
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(doc).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn istio(tags: &Value) -> Result<String, String> {
    let labels = map(vec![("app.kubernetes.io/part-of", s("aigw"))]);
    let telemetry = map(vec![
        ("apiVersion", s("telemetry.istio.io/v1")),
        ("kind", s("Telemetry")),
        (
            "metadata",
            map(vec![("name", s("aigw-tracing")), ("namespace", s(k8s::NAMESPACE)), ("labels", labels.clone())]),
        ),
        (
            "spec",
            map(vec![
                ("selector", map(vec![("matchLabels", map(vec![("istio", s(k8s::ISTIO_GATEWAY_LABEL))]))])),
                (
                    "tracing",
                    Value::Sequence(vec![map(vec![
                        ("providers", Value::Sequence(vec![map(vec![("name", s("aigw-otel"))])])),
                        ("randomSamplingPercentage", Value::Number(100.into())),
                    ])]),
                ),
            ]),
        ),
    ]);
    let hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    let envoy_filter = map(vec![
        ("apiVersion", s("networking.istio.io/v1alpha3")),
        ("kind", s("EnvoyFilter")),
        ("metadata", map(vec![("name", s("aigw-tracing-tags")), ("namespace", s(k8s::NAMESPACE)), ("labels", labels)])),
        (
            "spec",
            map(vec![
                ("workloadSelector", map(vec![("labels", map(vec![("istio", s(k8s::ISTIO_GATEWAY_LABEL))]))])),
                (
                    "configPatches",
                    Value::Sequence(vec![map(vec![
                        ("applyTo", s("NETWORK_FILTER")),
                        (
                            "match",
                            map(vec![
                                ("context", s("GATEWAY")),
                                (
                                    "listener",
                                    map(vec![(
                                        "filterChain",
                                        map(vec![(
                                            "filter",
                                            map(vec![("name", s("envoy.filters.network.http_connection_manager"))]),
                                        )]),
                                    )]),
                                ),
                            ]),
                        ),
                        (
                            "patch",
                            map(vec![
                                ("operation", s("MERGE")),
                                (
                                    "value",
                                    map(vec![(
                                        "typed_config",
                                        map(vec![
                                            ("@type", s(hcm)),
                                            ("tracing", map(vec![("custom_tags", tags.clone())])),
                                        ]),
                                    )]),
                                ),
                            ]),
                        ),
                    ])]),
                ),
            ]),
        ),
    ]);
    let comment = format!(
        "# Istio: spans from the dedicated AI gateway workload (`istio: {label}` in `{ns}`, as the WasmPlugins)\n\
# to the OTLP collector, with the aigw GenAI attributes. First declare the provider in istiod's mesh config\n\
# (IstioOperator `spec.meshConfig`, or the istiod Helm value `meshConfig`):\n\
#   meshConfig:\n\
#     extensionProviders:\n\
#     - name: aigw-otel\n\
#       opentelemetry: {{ service: {COLLECTOR_HOST}, port: {COLLECTOR_PORT} }}\n\
# The Telemetry resource turns tracing on for the workload; the EnvoyFilter appends the custom tags, which\n\
# read the filters' filter state (`%FILTER_STATE(wasm.aigw.…:PLAIN)%`), to its connection manager.\n",
        label = k8s::ISTIO_GATEWAY_LABEL,
        ns = k8s::NAMESPACE,
    );
    documents(&comment, &[telemetry, envoy_filter])
}

/// The tracing block for Envoy Gateway's `EnvoyProxy` (k8s.rs's `aigw-proxy`): merged into it with
/// `kubectl patch`, since a second EnvoyProxy of that name would replace the first.
pub fn envoy_proxy_tracing() -> serde_json::Value {
    serde_json::json!({"spec": {"telemetry": {"tracing": {
        "samplingRate": 100,
        "provider": {"type": "OpenTelemetry", "backendRefs": [{"name": "otel-collector", "namespace": "observability", "port": COLLECTOR_PORT}]}
    }}}})
}

fn envoy_gateway(tags: &Value) -> Result<String, String> {
    let labels = map(vec![("app.kubernetes.io/part-of", s("aigw"))]);
    let patch = map(vec![
        ("apiVersion", s("gateway.envoyproxy.io/v1alpha1")),
        ("kind", s("EnvoyPatchPolicy")),
        ("metadata", map(vec![("name", s("aigw-tracing-tags")), ("namespace", s(k8s::NAMESPACE)), ("labels", labels)])),
        (
            "spec",
            map(vec![
                (
                    "targetRef",
                    map(vec![("group", s("gateway.networking.k8s.io")), ("kind", s("Gateway")), ("name", s("aigw"))]),
                ),
                ("type", s("JSONPatch")),
                (
                    "jsonPatches",
                    Value::Sequence(vec![map(vec![
                        ("type", s("type.googleapis.com/envoy.config.listener.v3.Listener")),
                        ("name", s(&format!("{}/aigw/http", k8s::NAMESPACE))),
                        (
                            "operation",
                            map(vec![
                                ("op", s("add")),
                                ("path", s("/default_filter_chain/filters/0/typed_config/tracing/custom_tags")),
                                ("value", tags.clone()),
                            ]),
                        ),
                    ])]),
                ),
            ]),
        ),
    ]);
    let comment = format!(
        "# Envoy Gateway: tracing to the OTLP collector with the aigw GenAI attributes. First turn tracing on in\n\
# the gateway's EnvoyProxy (envoy-config/k8s/envoy-gateway/gateway.yaml) with a merge patch:\n\
#   kubectl patch envoyproxy aigw-proxy -n {ns} --type merge -p '{proxy}'\n\
# then apply the EnvoyPatchPolicy below (Envoy Gateway's config needs `extensionApis.enableEnvoyPatchPolicy`,\n\
# as for envoy-patch-policy.yaml): it appends the custom tags to the connection manager of the Gateway's HTTP\n\
# listener `http` (`<namespace>/<gateway>/<listener>`; an HTTPS listener's is under `/filter_chains/<n>/`).\n",
        ns = k8s::NAMESPACE,
        proxy = envoy_proxy_tracing(),
    );
    documents(&comment, &[patch])
}

/// The generated files, relative to the repository root.
pub fn manifests(tracing_yaml: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let tags = custom_tags(tracing_yaml)?;
    Ok(vec![
        (PathBuf::from(DIR).join("istio-tracing.yaml"), istio(&tags)?),
        (PathBuf::from(DIR).join("envoy-gateway-tracing.yaml"), envoy_gateway(&tags)?),
    ])
}
