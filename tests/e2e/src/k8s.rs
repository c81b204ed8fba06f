//! The Kubernetes manifests in `envoy-config/k8s/`, generated from `envoy-config/gateway.yaml` (the single
//! source of truth for the filters' configurations, the buffer limits and the timeouts).
//!
//! Two targets, each a complete deployment of the gateway (envoy-config/k8s/README.md walks through it):
//! - `istio/`: a dedicated ingress gateway workload (`istio: aigw-gateway`, installed with Istio's
//!   `gateway` Helm chart and `istio/gateway-values.yaml`), its `Gateway`, `VirtualService`,
//!   `ServiceEntry`s and `DestinationRule`s (TLS to the providers), a `RequestAuthentication`, one
//!   `EnvoyFilter` for what Istio's APIs cannot say (filter-state route matches, the `buffer` filter,
//!   the provider clusters' upstream filters) and the five `WasmPlugin`s, selected on that workload only.
//! - `envoy-gateway/`: a dedicated `GatewayClass` + `EnvoyProxy`, the `Gateway`, the `HTTPRoute` `llm`,
//!   `Backend`s with `BackendTLSPolicy`s, traffic and security policies, the `EnvoyExtensionPolicy` with
//!   the five filters on that route, and an `EnvoyPatchPolicy` for the filter-state routes and the
//!   provider clusters' upstream filters.
//! - `<target>/provider-keys.yaml`: the SDS files (a `ConfigMap`) through which `credential_injector` reads
//!   the provider keys from a mounted `Secret` the operator creates from files (never generated).
//! - `shared-store/ratelimit.yaml`: Redis and the rate limit service (tools/ratelimit-redis) as their own
//!   Deployments and Services, for token-counter's budgets shared by every gateway replica; its header
//!   carries the token-counter configuration that uses them ([`shared_store_token_counter`]).
//!
//! Images: the committed manifests reference `registry.example.com/aigw/<filter>:<version>`. `just oci`
//! builds the OCI layouts and writes the same manifests with the registry given and each image pinned to
//! its manifest digest into `dist/k8s/` ([`Images`]); the digests depend on the build, so they are not
//! committed (a committed digest would be stale after every code change).
//!
//! Regenerate after changing gateway.yaml: `cargo run -q -p aigw-e2e --bin aigw-generate`. The test
//! `tests/e2e/tests/manifests.rs` fails when the files are stale, and validates every manifest against the
//! CRD schemas of the releases the README names (`tests/e2e/src/crd.rs`).

use crate::config::{wasm_configs, FILTERS};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the committed manifests expect the filter images (a placeholder: `just oci registry=...`).
pub const IMAGE_REGISTRY: &str = "registry.example.com/aigw";
/// The image tag (the workspace version).
pub const IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");
/// The namespace of everything aigw deploys.
pub const NAMESPACE: &str = "aigw";
/// Where Envoy Gateway runs the proxy pods of every Gateway by default (the controller's namespace): the
/// Secret and ConfigMap they mount must be there.
pub const EG_PROXY_NAMESPACE: &str = "envoy-gateway-system";
/// The label value of Istio's dedicated gateway workload (`helm install aigw-gateway istio/gateway`
/// labels its pods `istio: aigw-gateway`).
pub const ISTIO_GATEWAY_LABEL: &str = "aigw-gateway";
/// The providers the manifests route to: (backend and route name in model-router's config, host).
pub const PROVIDERS: [(&str, &str); 2] = [("openai", "api.openai.com"), ("anthropic", "api.anthropic.com")];
/// gateway.yaml's buffer limit (listener, clusters and the `buffer` filter): 16 MiB.
pub const BUFFER_LIMIT_BYTES: u64 = 16 * 1024 * 1024;
/// Where the gateway pods mount the provider keys (`Secret aigw-provider-keys`) and their SDS files
/// (`ConfigMap aigw-provider-sds`).
pub const KEYS_DIR: &str = "/etc/aigw/keys";
pub const SDS_DIR: &str = "/etc/aigw/sds";
/// Where Envoy Gateway's proxy pods mount model-router's image (an image volume) for the upstream instance.
pub const EG_WASM_DIR: &str = "/etc/aigw/wasm/model-router";

/// Which controller a manifest is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Istio,
    EnvoyGateway,
}

impl Target {
    /// The Envoy cluster a provider's traffic goes through, as the controller names it: Istio names
    /// ServiceEntry clusters `outbound|<port>||<host>`; Envoy Gateway names an HTTPRoute rule's cluster
    /// `httproute/<namespace>/<route>/rule/<index>` (the provider rules are 1 and 2 of `llm`).
    pub fn provider_cluster(self, provider: &str) -> String {
        let index = PROVIDERS.iter().position(|(name, _)| *name == provider).unwrap_or(0);
        match self {
            Target::Istio => format!("outbound|443||{}", PROVIDERS.get(index).map_or("", |p| p.1)),
            Target::EnvoyGateway => format!("httproute/{NAMESPACE}/llm/rule/{}", index + 1),
        }
    }
}

/// The images the manifests reference: registry, tag and, when built (`just oci`), each filter's manifest
/// digest (hex), pinned as `@sha256:` in the URL and in the controllers' `sha256` fields.
#[derive(Debug, Clone)]
pub struct Images {
    pub registry: String,
    pub tag: String,
    /// Filter -> hex digest of its image manifest (what the Wasm fetchers compare).
    pub digests: BTreeMap<String, String>,
    /// Filter -> hex digest of the image index its tag names (what a node's runtime pulls: image volumes).
    pub index_digests: BTreeMap<String, String>,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            registry: IMAGE_REGISTRY.to_string(),
            tag: IMAGE_TAG.to_string(),
            digests: BTreeMap::new(),
            index_digests: BTreeMap::new(),
        }
    }
}

impl Images {
    /// The image reference without scheme: `<registry>/<filter>@sha256:<hex>` when pinned, else `:<tag>`.
    pub fn reference(&self, filter: &str) -> String {
        match self.digests.get(filter) {
            Some(hex) => format!("{}/{filter}@sha256:{hex}", self.registry),
            None => format!("{}/{filter}:{}", self.registry, self.tag),
        }
    }

    /// The reference a node's container runtime pulls (an image volume): the index, pinned when built.
    pub fn volume_reference(&self, filter: &str) -> String {
        match self.index_digests.get(filter) {
            Some(hex) => format!("{}/{filter}@sha256:{hex}", self.registry),
            None => format!("{}/{filter}:{}", self.registry, self.tag),
        }
    }

    /// A `sha256: <hex>` line at `indent` when pinned (both fetchers check it against the manifest digest).
    fn sha256_line(&self, filter: &str, indent: usize) -> String {
        self.digests.get(filter).map_or(String::new(), |hex| format!("{}sha256: {hex}\n", " ".repeat(indent)))
    }
}

/// Istio priority of a filter: higher runs first within a phase.
pub fn istio_priority(filter: &str) -> i64 {
    let position = FILTERS.iter().position(|f| *f == filter).unwrap_or(FILTERS.len());
    (FILTERS.len() - position) as i64 * 10
}

/// A JSON value as YAML lines at `indent` (keys in their original order); ` {}` when empty.
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

/// Indents every line of a block by `indent` spaces.
fn indent(block: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    block.lines().map(|line| if line.is_empty() { "\n".to_string() } else { format!("{pad}{line}\n") }).collect()
}

const HEADER: &str = "# GENERATED from envoy-config/gateway.yaml by `cargo run -q -p aigw-e2e --bin aigw-generate`.\n\
# Do not edit: change gateway.yaml or tests/e2e/src/k8s.rs and regenerate\n\
# (tests/e2e/tests/manifests.rs fails when this file is stale).\n";

/// Fills `@NAME@` placeholders in a template.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("@{name}@"), value);
    }
    out
}

/// The header gateway.yaml's `api_key_auth` sets for the filters, after its
/// `header_mutation` removed any client copy.
pub const CLIENT_ID_HEADER_SOURCE: &str = "header:x-aigw-client";

/// Whether a model-router backend is one of gateway.yaml's local mocks (never deployed on Kubernetes).
fn is_mock(backend: &str) -> bool {
    backend.starts_with("mock")
}

/// A filter's gateway.yaml configuration as the manifests carry it, for either target:
/// - The manifests install no `api_key_auth` and nothing that strips a client's `x-aigw-client` in front
///   of the filters, so there a client could set that header itself: every policy keyed on it is left
///   out (token-counter's `per-app` rule, model-router's per-client lists) or keyed on a verified JWT
///   claim instead (prompt-template's and semantic-cache's tenant: `jwt:team`).
/// - No mock backends: model-router's `mock*` backends are dropped, their models go to `openai` (the
///   provider the mock stands in for), and models pinned to a mock-only route (`failover-demo`) are dropped.
/// - No demo secrets: pii-mask's hash salt and semantic-cache's admin token are removed (the README's
///   walk-through sets a salt per deployment; the cache admin endpoint stays off until one sets a token).
pub fn kubernetes_config(filter: &str, json: &str) -> Result<String, String> {
    let mut config: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("{filter}: configuration is not JSON: {e}"))?;
    let from_client_id =
        |value: Option<&serde_json::Value>| value.and_then(|v| v.as_str()) == Some(CLIENT_ID_HEADER_SOURCE);
    let routes: Vec<&str> = PROVIDERS.iter().map(|(name, _)| *name).collect();
    match filter {
        "pii-mask" => {
            if let Some(hash) = config.get_mut("hash").and_then(|h| h.as_object_mut()) {
                hash.remove("salt");
                if hash.is_empty() {
                    config.as_object_mut().map(|c| c.remove("hash"));
                }
            }
        }
        "token-counter" => {
            if let Some(rules) = config.get_mut("rules").and_then(|r| r.as_array_mut()) {
                rules.retain(|rule| !from_client_id(rule.get("key")));
            }
        }
        "semantic-cache" => {
            if let Some(map) = config.as_object_mut() {
                // Entries never cross tenants: the tenant comes from a verified claim there.
                if from_client_id(map.get("tenant")) {
                    map.insert("tenant".into(), serde_json::Value::String("jwt:team".into()));
                }
                map.remove("admin");
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
            if let Some(backends) = config.get_mut("backends").and_then(|b| b.as_array_mut()) {
                backends.retain(|b| !b.get("name").and_then(|n| n.as_str()).is_some_and(is_mock));
            }
            if let Some(models) = config.get_mut("models").and_then(|m| m.as_array_mut()) {
                // A model on its own route (a failover route) exists only where that route does.
                models.retain(|m| m.get("route").and_then(|r| r.as_str()).is_none_or(|r| routes.contains(&r)));
                for model in models.iter_mut() {
                    if let Some(targets) = model.get_mut("targets").and_then(|t| t.as_array_mut()) {
                        for target in targets.iter_mut() {
                            let mock = target.get("backend").and_then(|b| b.as_str()).is_some_and(is_mock);
                            if let (true, Some(target)) = (mock, target.as_object_mut()) {
                                target.insert("backend".into(), serde_json::Value::String("openai".into()));
                            }
                        }
                        targets.dedup();
                    }
                }
            }
        }
        _ => {}
    }
    serde_json::to_string(&config).map_err(|e| e.to_string())
}

/// [`kubernetes_config`] plus what differs per controller: semantic-cache's embeddings go to the OpenAI
/// cluster as that controller names it (its credential injector adds the key).
pub fn target_config(filter: &str, json: &str, target: Target) -> Result<String, String> {
    let mut config: serde_json::Value = serde_json::from_str(&kubernetes_config(filter, json)?)
        .map_err(|e| format!("{filter}: configuration is not JSON: {e}"))?;
    if filter == "semantic-cache" {
        if let Some(semantic) = config.get_mut("semantic").and_then(|s| s.as_object_mut()) {
            semantic.insert("cluster".into(), serde_json::Value::String(target.provider_cluster("openai")));
            semantic.insert("authority".into(), serde_json::Value::String("api.openai.com".into()));
        }
    }
    serde_json::to_string(&config).map_err(|e| e.to_string())
}

/// The Istio WasmPlugin for one filter, on the dedicated gateway workload only.
pub fn istio_wasm_plugin(filter: &str, config_json: &str, images: &Images) -> Result<String, String> {
    let position = FILTERS.iter().position(|f| *f == filter).ok_or_else(|| format!("unknown filter {filter}"))?;
    Ok(format!(
        "{HEADER}#\n\
# aigw {filter} ({step} of 5 in the chain pii-mask -> prompt-template -> semantic-cache -> token-counter ->\n\
# model-router) on the dedicated aigw gateway (pods labelled istio: {ISTIO_GATEWAY_LABEL}), no other workload.\n\
# Istio's RequestAuthentication (jwt.yaml) verifies JWTs first; the filters read its payload (`payload`).\n\
apiVersion: extensions.istio.io/v1alpha1\n\
kind: WasmPlugin\n\
metadata:\n\
\x20 name: aigw-{filter}\n\
\x20 namespace: {NAMESPACE}\n\
\x20 labels:\n\
\x20   app.kubernetes.io/part-of: aigw\n\
\x20   app.kubernetes.io/component: {filter}\n\
spec:\n\
\x20 selector:\n\
\x20   matchLabels:\n\
\x20     istio: {ISTIO_GATEWAY_LABEL}\n\
\x20 url: oci://{reference}\n\
{sha256}\
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
        reference = images.reference(filter),
        sha256 = images.sha256_line(filter, 2),
        priority = istio_priority(filter),
        config = config_yaml(config_json, 4)?,
    ))
}

const ISTIO_GATEWAY: &str = "@HEADER@#
# The aigw gateway for Istio: a Gateway on the dedicated gateway workload (`helm install aigw-gateway
# istio/gateway -n aigw -f envoy-config/k8s/istio/helm/aigw-gateway.values.yaml`, pods labelled
# istio: @LABEL@) and the VirtualService `llm` bound to it. Other apps keep their own ingress gateway:
# the WasmPlugins and the EnvoyFilter select this workload only.
#
# Routing: model-router sets the filter state `wasm.aigw.route` to `openai` or `anthropic` and clears the
# route cache; the routes `openai` and `anthropic` below match that filter state (envoy-filter.yaml adds
# the matcher, which VirtualService cannot express), so a client cannot pick a provider with a header.
# A request no filter routed gets 404 from `unrouted`.
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: aigw
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  selector:
    istio: @LABEL@
  servers:
  # Plain HTTP inside the cluster; terminate TLS here with an HTTPS server and `tls.credentialName`
  # (a kubernetes.io/tls Secret in this namespace) before exposing the gateway.
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - \"*\"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: llm
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  hosts:
  - \"*\"
  gateways:
  - aigw
  http:
@ROUTES@  # Nothing routed the request (no aigw filter set a route): nothing goes to a provider.
  - name: unrouted
    directResponse:
      status: 404
      body:
        string: '{\"error\":{\"message\":\"No backend for this request.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"no_route\"}}'
";

const ISTIO_ROUTE: &str =
    "  # Provider `@NAME@` (filter state wasm.aigw.route = @NAME@, added by envoy-filter.yaml). Streams last
  # minutes: no route timeout (the EnvoyFilter adds gateway.yaml's 120 s idle timeout). No retries here,
  # as in gateway.yaml. The client's copy of the old routing header never reaches a provider.
  - name: @NAME@
    match:
    - uri:
        prefix: /
    timeout: 0s
    retries:
      attempts: 0
    headers:
      request:
        remove:
        - x-aigw-route
        - x-aigw-client
@REWRITE@    route:
    - destination:
        host: @HOST@
        port:
          number: 443
";

const ISTIO_PROVIDER: &str = "---
# @NAME@: the provider outside the mesh. The gateway speaks HTTP to this entry and the DestinationRule
# originates TLS (SNI and certificate name @HOST@, the system CAs), like gateway.yaml's `@NAME@` cluster.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: @NAME@
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  hosts:
  - @HOST@
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - number: 443
    name: http-tls-origination
    protocol: HTTP
  exportTo:
  - \".\"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: @NAME@
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  host: @HOST@
  exportTo:
  - \".\"
  trafficPolicy:
    tls:
      mode: SIMPLE
      sni: @HOST@
      subjectAltNames:
      - @HOST@
    connectionPool:
      http:
        idleTimeout: 60s
    # A host that answers 5xx five times in a row is ejected for 30 s (gateway.yaml's outlier detection).
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
";

const ISTIO_JWT: &str = "@HEADER@#
# JWT verification on the aigw gateway (Istio's RequestAuthentication; gateway.yaml uses jwt_authn).
# Replace the issuer and JWKS URI with your identity provider's. A request without a token passes
# anonymously (budgets per subject then skip it); add an AuthorizationPolicy requiring
# `requestPrincipals: [\"*\"]` to refuse those. An invalid token gets 401.
#
# Claim location: Istio 1.24 and later store the verified payload in the dynamic metadata of
# envoy.filters.http.jwt_authn under `payload` (earlier: under the issuer), and the filters' `jwt:<claim>`
# sources read `jwt_payload` and then `payload`, so per-subject budgets (`jwt:sub`), the tenant
# (`jwt:team`) and the `llms` allow-list work unchanged from Istio 1.24.
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: aigw
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  selector:
    matchLabels:
      istio: @LABEL@
  jwtRules:
  - issuer: https://idp.example.com/
    jwksUri: https://idp.example.com/.well-known/jwks.json
    audiences:
    - aigw
    # The token is not forwarded to a provider.
    forwardOriginalToken: false
";

const ISTIO_ENVOY_FILTER: &str = "@HEADER@#
# What Istio's APIs cannot say, on the aigw gateway workload only:
# - Envoy's `buffer` filter after the aigw WasmPlugins (which Istio puts at the end of the chain), so the
#   router waits for the complete body and model-router's route (envoy-config/README.md);
# - the routes `openai` and `anthropic` of the VirtualService `llm` match model-router's filter state;
# - each provider cluster's upstream filters: `credential_injector` with the key read through SDS from
#   the mounted Secret (provider-keys.yaml), and on `anthropic` model-router's upstream instance (which
#   adapts each attempt to Anthropic's API) followed by a `buffer` filter. Istio fetches the upstream
#   instance's module from the OCI image like a WasmPlugin's (EXTENSION_CONFIG with an oci:// URL).
# The cluster patch replaces Istio's HttpProtocolOptions for these two clusters as a whole.
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: aigw
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  workloadSelector:
    labels:
      istio: @LABEL@
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.buffer
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
          max_request_bytes: @LIMIT@
@ROUTE_PATCHES@@CLUSTER_PATCHES@  - applyTo: EXTENSION_CONFIG
    patch:
      operation: ADD
      value:
        name: aigw.model-router-upstream
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config:
            name: model-router-upstream
            root_id: model-router
            vm_config:
              vm_id: model-router-upstream
              runtime: envoy.wasm.runtime.v8
              code:
                remote:
                  http_uri:
                    uri: oci://@MODEL_ROUTER_IMAGE@
                    timeout: 30s
                    # Istio's agent fetches the module itself (as for WasmPlugins, which use the same placeholder).
                    cluster: _
@MODEL_ROUTER_SHA@            failure_policy: FAIL_RELOAD
            configuration:
              \"@type\": type.googleapis.com/google.protobuf.StringValue
              value: '@UPSTREAM_CONFIG@'
";

const ISTIO_ROUTE_PATCH: &str = "  - applyTo: HTTP_ROUTE
    match:
      context: GATEWAY
      routeConfiguration:
        portNumber: 80
        vhost:
          route:
            name: @NAME@
    patch:
      operation: MERGE
      value:
        match:
          filter_state:
          - key: wasm.aigw.route
            string_match:
              exact: @NAME@
        route:
          idle_timeout: 120s
";

const ISTIO_CLUSTER_PATCH: &str = "  - applyTo: CLUSTER
    match:
      context: GATEWAY
      cluster:
        service: @HOST@
        portNumber: 443
    patch:
      operation: MERGE
      value:
        per_connection_buffer_limit_bytes: @LIMIT@
        typed_extension_protocol_options:
          envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
            \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
            explicit_http_config:
              http_protocol_options: {}
            common_http_protocol_options:
              idle_timeout: 60s
            http_filters:
@UPSTREAM_FILTERS@";

/// The Envoy Gateway EnvoyExtensionPolicy carrying all five filters in chain order, on the route `llm`.
pub fn envoy_extension_policy(configs: &[(String, String)], images: &Images) -> Result<String, String> {
    let mut wasm = String::new();
    for (filter, json) in configs {
        wasm.push_str(&format!(
            "  - name: {filter}\n\
\x20   rootID: {filter}\n\
\x20   failOpen: false\n\
\x20   code:\n\
\x20     type: Image\n\
\x20     image:\n\
\x20       url: {reference}\n\
{sha256}\
\x20   config:{config}",
            reference = images.reference(filter),
            sha256 = images.sha256_line(filter, 8),
            config = config_yaml(json, 6)?,
        ));
    }
    Ok(format!(
        "{HEADER}#\n\
# The aigw filter chain for Envoy Gateway: the five filters, in order, on the HTTPRoute `llm` (every rule of\n\
# it, so a request gets the whole chain whichever rule it first matches). Envoy Gateway enables Wasm per\n\
# route at the first route match; model-router's re-routing (envoy-patch-policy.yaml) does not rebuild the\n\
# chain, so per-backend work lives on the provider clusters, not on routes.\n\
apiVersion: gateway.envoyproxy.io/v1alpha1\n\
kind: EnvoyExtensionPolicy\n\
metadata:\n\
\x20 name: aigw\n\
\x20 namespace: {NAMESPACE}\n\
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

const EG_GATEWAY: &str = "@HEADER@#
# A dedicated gateway for aigw on Envoy Gateway: its own GatewayClass and EnvoyProxy (so its Envoy pods
# serve only this Gateway, mount the provider keys and model-router's image), and the Gateway.
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: aigw
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
  parametersRef:
    group: gateway.envoyproxy.io
    kind: EnvoyProxy
    name: aigw-proxy
    namespace: @NS@
---
# The proxy pods: the provider keys (Secret aigw-provider-keys, created from files in the README), their
# SDS files (ConfigMap aigw-provider-sds, provider-keys.yaml) and model-router's image as an image volume
# (Kubernetes 1.33+ with the ImageVolume feature), whose plugin.wasm the upstream instance on the anthropic
# cluster loads (envoy-patch-policy.yaml).
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyProxy
metadata:
  name: aigw-proxy
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  provider:
    type: Kubernetes
    kubernetes:
      envoyDeployment:
        pod:
          # Envoy runs as 65532 (Envoy Gateway's default): the keys are readable by its group only.
          securityContext:
            fsGroup: 65532
          volumes:
          - name: aigw-provider-keys
            secret:
              secretName: aigw-provider-keys
              defaultMode: 288
          - name: aigw-provider-sds
            configMap:
              name: aigw-provider-sds
          - name: aigw-model-router
            image:
              reference: @MODEL_ROUTER_IMAGE@
              pullPolicy: IfNotPresent
        container:
          volumeMounts:
          - name: aigw-provider-keys
            mountPath: @KEYS@
            readOnly: true
          - name: aigw-provider-sds
            mountPath: @SDS@
            readOnly: true
          - name: aigw-model-router
            mountPath: @WASM@
            readOnly: true
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: aigw
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  gatewayClassName: aigw
  listeners:
  # Plain HTTP inside the cluster; add an HTTPS listener with a certificateRef before exposing it.
  - name: http
    protocol: HTTP
    port: 80
    allowedRoutes:
      namespaces:
        from: Same
";

const EG_ROUTING: &str = "@HEADER@#
# The route `llm` carries the aigw chain (extension-policy.yaml). Its rules:
#   0: every request first matches here; if no aigw filter routes it, 404 (HTTPRouteFilter aigw-unrouted);
#   1: openai, 2: anthropic: these rules exist to make Envoy Gateway build the provider clusters
#      (httproute/aigw/llm/rule/1 and /2, with TLS from the BackendTLSPolicies). Their header match cannot
#      be met by a client: the ClientTrafficPolicy removes x-aigw-route before routing. Requests reach
#      them through the filter-state routes envoy-patch-policy.yaml adds in front.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: llm
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  parentRefs:
  - name: aigw
    sectionName: http
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    filters:
    - type: ExtensionRef
      extensionRef:
        group: gateway.envoyproxy.io
        kind: HTTPRouteFilter
        name: aigw-unrouted
@RULES@---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: HTTPRouteFilter
metadata:
  name: aigw-unrouted
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  directResponse:
    statusCode: 404
    contentType: application/json
    body:
      type: Inline
      inline: '{\"error\":{\"message\":\"No backend for this request.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"no_route\"}}'
@BACKENDS@";

const EG_RULE: &str = "  - matches:
    - path:
        type: PathPrefix
        value: /
      headers:
      - name: x-aigw-route
        value: @NAME@
    backendRefs:
    - group: gateway.envoyproxy.io
      kind: Backend
      name: @NAME@
      port: 443
";

const EG_BACKEND: &str = "---
# @NAME@ outside the cluster, over TLS (SNI and certificate check for @HOST@, the system CAs).
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata:
  name: @NAME@
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  endpoints:
  - fqdn:
      hostname: @HOST@
      port: 443
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: BackendTLSPolicy
metadata:
  name: @NAME@
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  targetRefs:
  - group: gateway.envoyproxy.io
    kind: Backend
    name: @NAME@
  validation:
    hostname: @HOST@
    wellKnownCACertificates: System
";

const EG_POLICIES: &str = "@HEADER@#
# Traffic and security policies of the aigw gateway, matching gateway.yaml:
# - buffers: 16 MiB per connection (Envoy Gateway's default is 32 KiB: a larger chat body would get 413);
# - no route timeout (Envoy Gateway's default of 15 s would cut streams), 120 s without a byte aborts;
# - no compression: none is configured here, so the filters see plain bodies (never add a
#   `compression` to these policies: a compressor before the filters would hide the bodies from them);
# - the headers that name a route or a client are removed from client requests before routing;
# - JWTs are verified by a SecurityPolicy; envoy-patch-policy.yaml stores the verified payload under
#   `jwt_payload` (Envoy Gateway's own key is the issuer), where the filters' `jwt:<claim>` sources read it.
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata:
  name: aigw
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: aigw
  connection:
    bufferLimit: 16Mi
  headers:
    earlyRequestHeaders:
      remove:
      - x-aigw-route
      - x-aigw-client
  # Connections idle for an hour are closed (gateway.yaml).
  timeout:
    http:
      idleTimeout: 3600s
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata:
  name: aigw
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: llm
  connection:
    bufferLimit: 16Mi
  timeout:
    http:
      requestTimeout: 0s
      connectionIdleTimeout: 60s
  # A host that answers 5xx five times in a row is ejected for 30 s (gateway.yaml's outlier detection).
  healthCheck:
    passive:
      consecutive5XxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
---
# Replace the issuer and JWKS URI with your identity provider's. Requests without a token pass anonymously
# (`optional`), as in gateway.yaml; an invalid token gets 401.
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata:
  name: aigw
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: llm
  jwt:
    optional: true
    providers:
    - name: idp
      issuer: https://idp.example.com/
      audiences:
      - aigw
      remoteJWKS:
        uri: https://idp.example.com/.well-known/jwks.json
";

const EG_PATCH_POLICY: &str = "@HEADER@#
# What Envoy Gateway's APIs cannot say, patched into the xDS of the aigw Gateway (EnvoyPatchPolicy must be
# enabled: `extensionApis.enableEnvoyPatchPolicy: true` in Envoy Gateway's configuration):
# - the `buffer` filter before the router, so the router waits for the complete body and model-router's
#   route (envoy-config/README.md);
# - routes matching model-router's filter state `wasm.aigw.route`, in front of the HTTPRoute's own, to the
#   provider clusters; no route timeout, 120 s idle timeout (gateway.yaml);
# - each provider cluster's upstream filters: `credential_injector` (the key through SDS from the mounted
#   Secret) and on `anthropic` model-router's upstream instance (from the image volume of EnvoyProxy
#   aigw-proxy) followed by a `buffer` filter;
# - the JWT payload under `jwt_payload`, where the filters read claims.
# Names follow Envoy Gateway's xDS naming: listener and route configuration `<namespace>/<gateway>/<listener>`,
# clusters `httproute/<namespace>/<route>/rule/<index>`.
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyPatchPolicy
metadata:
  name: aigw
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: Gateway
    name: aigw
  type: JSONPatch
  jsonPatches:
  - type: type.googleapis.com/envoy.config.listener.v3.Listener
    name: @NS@/aigw/http
    operation:
      op: add
      jsonPath: \"..http_filters[?(@.name == 'envoy.filters.http.router')]\"
      path: \"\"
      value:
        name: envoy.filters.http.buffer
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
          max_request_bytes: @LIMIT@
  - type: type.googleapis.com/envoy.config.listener.v3.Listener
    name: @NS@/aigw/http
    operation:
      op: add
      jsonPath: \"..http_filters[?(@.name == 'envoy.filters.http.jwt_authn')].typed_config.providers.*\"
      path: /payload_in_metadata
      value: jwt_payload
@ROUTE_PATCHES@@CLUSTER_PATCHES@";

const EG_ROUTE_PATCH: &str = "  - type: type.googleapis.com/envoy.config.route.v3.RouteConfiguration
    name: @NS@/aigw/http
    operation:
      op: add
      path: /virtual_hosts/0/routes/0
      value:
        name: aigw-@NAME@
        match:
          prefix: /
          filter_state:
          - key: wasm.aigw.route
            string_match:
              exact: @NAME@
        route:
          cluster: @CLUSTER@
          auto_host_rewrite: true
          timeout: 0s
          idle_timeout: 120s
@REWRITE@";

const EG_CLUSTER_PATCH: &str = "  - type: type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: @CLUSTER@
    operation:
      op: add
      path: /per_connection_buffer_limit_bytes
      value: @LIMIT@
  - type: type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: @CLUSTER@
    operation:
      op: add
      path: /typed_extension_protocol_options
      value:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http_protocol_options: {}
          common_http_protocol_options:
            idle_timeout: 60s
          http_filters:
@UPSTREAM_FILTERS@";

const PROVIDER_KEYS: &str = "@HEADER@#
# The SDS files through which Envoy's credential_injector on each provider cluster reads the provider's key
# (istio/envoy-filter.yaml or envoy-gateway/envoy-patch-policy.yaml). The keys themselves are
# never in this repository: create the Secret from files, in this namespace (envoy-config/k8s/README.md):
#   kubectl -n @NS@ create secret generic aigw-provider-keys --from-file=openai=./openai.key \\
#     --from-file=anthropic=./anthropic.key
# The gateway pods mount it at @KEYS@ and this ConfigMap at @SDS@. The Wasm filters never see a key.
apiVersion: v1
kind: ConfigMap
metadata:
  name: aigw-provider-sds
  namespace: @NS@
  labels:
    app.kubernetes.io/part-of: aigw
data:
@SDS_FILES@";

/// The SDS file of one provider's key (the shape of envoy-config/secrets/<provider>.yaml).
fn sds_file(provider: &str) -> String {
    format!(
        "  {provider}.yaml: |\n\
\x20   resources:\n\
\x20   - \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n\
\x20     name: {provider}-key\n\
\x20     generic_secret:\n\
\x20       secret:\n\
\x20         filename: {KEYS_DIR}/{provider}\n"
    )
}

/// The upstream filters of one provider cluster (the same chain as gateway.yaml's cluster), at `indent`.
/// `wasm_code` is how the controller loads model-router's upstream instance (None: not on this cluster).
fn upstream_filters(provider: &str, model_router: Option<&str>, indent_by: usize) -> String {
    let (header, prefix) = match provider {
        "anthropic" => ("x-api-key", String::new()),
        _ => ("Authorization", "\n  header_value_prefix: \"Bearer \"".to_string()),
    };
    let mut out = String::new();
    if let Some(model_router) = model_router {
        out.push_str(model_router);
        out.push_str(&format!(
            "- name: envoy.filters.http.buffer\n\
\x20 typed_config:\n\
\x20   \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer\n\
\x20   max_request_bytes: {BUFFER_LIMIT_BYTES}\n"
        ));
    }
    out.push_str(&format!(
        "- name: envoy.filters.http.credential_injector\n\
\x20 typed_config:\n\
\x20   \"@type\": type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector\n\
\x20   overwrite: true\n\
\x20   allow_request_without_credential: true\n\
\x20   credential:\n\
\x20     name: envoy.http.injected_credentials.generic\n\
\x20     typed_config:\n\
\x20       \"@type\": type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic\n\
\x20       credential:\n\
\x20         name: {provider}-key\n\
\x20         sds_config:\n\
\x20           path_config_source:\n\
\x20             path: {SDS_DIR}/{provider}.yaml\n\
\x20             watched_directory:\n\
\x20               path: {SDS_DIR}\n\
\x20       header: {header}{prefix_indented}\n\
- name: envoy.filters.http.upstream_codec\n\
\x20 typed_config:\n\
\x20   \"@type\": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec\n",
        prefix_indented = prefix.replace("\n  ", "\n        "),
    ));
    indent(&out, indent_by)
}

/// model-router's upstream-instance configuration for a backend (gateway.yaml's `mode: upstream`).
fn upstream_instance_config(model_router_json: &str, provider: &str) -> Result<String, String> {
    let config: serde_json::Value =
        serde_json::from_str(model_router_json).map_err(|e| format!("model-router: not JSON: {e}"))?;
    let backend = config
        .get("backends")
        .and_then(|b| b.as_array())
        .and_then(|b| b.iter().find(|b| b.get("name").and_then(|n| n.as_str()) == Some(provider)))
        .ok_or_else(|| format!("model-router has no backend {provider}"))?;
    let mut backend = backend.clone();
    if let Some(map) = backend.as_object_mut() {
        map.remove("upstream_instance");
    }
    serde_json::to_string(&serde_json::json!({"mode": "upstream", "backend": backend})).map_err(|e| e.to_string())
}

/// Whether model-router's config runs an upstream instance on a provider's cluster.
fn has_upstream_instance(model_router_json: &str, provider: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(model_router_json)
        .ok()
        .and_then(|c| c.get("backends").and_then(|b| b.as_array()).cloned())
        .is_some_and(|backends| {
            backends.iter().any(|b| {
                b.get("name").and_then(|n| n.as_str()) == Some(provider)
                    && b.get("upstream_instance").and_then(|u| u.as_bool()) == Some(true)
            })
        })
}

/// The rewrite an OpenAI-shaped provider route does for an Anthropic client's request that model-router
/// translated to chat completions (gateway.yaml's `regex_rewrite`), or nothing for Anthropic.
fn needs_messages_rewrite(provider: &str) -> bool {
    provider != "anthropic"
}

fn istio_files(configs: &[(String, String)], images: &Images) -> Result<Vec<(PathBuf, String)>, String> {
    let dir = Path::new("envoy-config/k8s/istio");
    let header = HEADER.to_string();
    let common = |t: &str| {
        fill(
            t,
            &[
                ("HEADER", header.clone()),
                ("NS", NAMESPACE.to_string()),
                ("LABEL", ISTIO_GATEWAY_LABEL.to_string()),
                ("LIMIT", BUFFER_LIMIT_BYTES.to_string()),
            ],
        )
    };
    let model_router = configs.iter().find(|(f, _)| f == "model-router").map(|(_, c)| c.as_str()).unwrap_or("{}");
    let mut files = Vec::new();
    for (filter, json) in configs {
        files.push((dir.join(format!("{filter}.yaml")), istio_wasm_plugin(filter, json, images)?));
    }
    let mut routes = String::new();
    let mut providers = String::new();
    let mut route_patches = String::new();
    let mut cluster_patches = String::new();
    for (name, host) in PROVIDERS {
        let rewrite = if needs_messages_rewrite(name) {
            "    rewrite:\n      authority: @HOST@\n      uriRegexRewrite:\n        match: ^/v1/messages$\n        rewrite: /v1/chat/completions\n"
        } else {
            "    rewrite:\n      authority: @HOST@\n"
        };
        let values = [("NAME", name.to_string()), ("HOST", host.to_string()), ("REWRITE", rewrite.to_string())];
        routes.push_str(&fill(&fill(ISTIO_ROUTE, &values), &values));
        providers.push_str(&common(&fill(ISTIO_PROVIDER, &values)));
        route_patches.push_str(&common(&fill(ISTIO_ROUTE_PATCH, &values)));
        let model_router_filter = has_upstream_instance(model_router, name).then(|| {
            "- name: aigw.model-router-upstream\n  config_discovery:\n    config_source:\n      ads: {}\n    type_urls:\n    - type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n".to_string()
        });
        let filters = upstream_filters(name, model_router_filter.as_deref(), 12);
        cluster_patches.push_str(&common(&fill(
            ISTIO_CLUSTER_PATCH,
            &[("HOST", host.to_string()), ("UPSTREAM_FILTERS", filters)],
        )));
    }
    files.push((dir.join("gateway.yaml"), common(&fill(ISTIO_GATEWAY, &[("ROUTES", routes)])) + &providers));
    files.push((dir.join("jwt.yaml"), common(ISTIO_JWT)));
    let sha = images.sha256_line("model-router", 18);
    files.push((
        dir.join("envoy-filter.yaml"),
        common(&fill(
            ISTIO_ENVOY_FILTER,
            &[
                ("ROUTE_PATCHES", route_patches),
                ("CLUSTER_PATCHES", cluster_patches),
                ("MODEL_ROUTER_IMAGE", images.reference("model-router")),
                ("MODEL_ROUTER_SHA", sha),
                ("UPSTREAM_CONFIG", upstream_instance_config(model_router, "anthropic")?),
            ],
        )),
    ));
    files.push((dir.join("helm/aigw-gateway.values.yaml"), istio_helm_values()));
    Ok(files)
}

/// Helm values for Istio's `gateway` chart installing the dedicated aigw gateway (not a Kubernetes object).
fn istio_helm_values() -> String {
    format!(
        "{HEADER}#\n\
# Values for Istio's `gateway` Helm chart: `helm install aigw-gateway istio/gateway -n {NAMESPACE} -f <this file>`.\n\
# The release name gives the pods the label istio: {ISTIO_GATEWAY_LABEL}, which the aigw resources select.\n\
# The pods mount the provider keys (Secret aigw-provider-keys) and their SDS files (provider-keys.yaml).\n\
# Envoy runs as the proxy user (1337): the keys are readable by its group only. Setting securityContext\n\
# replaces the chart's default, so its sysctl (ports below 1024 without privileges) is repeated.\n\
securityContext:\n\
\x20 fsGroup: 1337\n\
\x20 sysctls:\n\
\x20 - name: net.ipv4.ip_unprivileged_port_start\n\
\x20   value: \"0\"\n\
volumes:\n\
- name: aigw-provider-keys\n\
\x20 secret:\n\
\x20   secretName: aigw-provider-keys\n\
\x20   defaultMode: 288\n\
- name: aigw-provider-sds\n\
\x20 configMap:\n\
\x20   name: aigw-provider-sds\n\
volumeMounts:\n\
- name: aigw-provider-keys\n\
\x20 mountPath: {KEYS_DIR}\n\
\x20 readOnly: true\n\
- name: aigw-provider-sds\n\
\x20 mountPath: {SDS_DIR}\n\
\x20 readOnly: true\n"
    )
}

fn envoy_gateway_files(configs: &[(String, String)], images: &Images) -> Result<Vec<(PathBuf, String)>, String> {
    let dir = Path::new("envoy-config/k8s/envoy-gateway");
    let header = HEADER.to_string();
    let common = |t: &str| {
        fill(
            t,
            &[
                ("HEADER", header.clone()),
                ("NS", NAMESPACE.to_string()),
                ("LIMIT", BUFFER_LIMIT_BYTES.to_string()),
                ("KEYS", KEYS_DIR.to_string()),
                ("SDS", SDS_DIR.to_string()),
                ("WASM", EG_WASM_DIR.to_string()),
            ],
        )
    };
    let model_router = configs.iter().find(|(f, _)| f == "model-router").map(|(_, c)| c.as_str()).unwrap_or("{}");
    let mut rules = String::new();
    let mut backends = String::new();
    let mut route_patches = String::new();
    let mut cluster_patches = String::new();
    // Inserted at index 0 one after the other: insert in reverse so the routes keep PROVIDERS' order.
    for (name, host) in PROVIDERS.iter().rev() {
        let cluster = Target::EnvoyGateway.provider_cluster(name);
        let rewrite = if needs_messages_rewrite(name) {
            "          regex_rewrite:\n            pattern:\n              regex: ^/v1/messages$\n            substitution: /v1/chat/completions\n"
        } else {
            ""
        };
        route_patches.push_str(&common(&fill(
            EG_ROUTE_PATCH,
            &[("NAME", name.to_string()), ("CLUSTER", cluster.clone()), ("REWRITE", rewrite.to_string())],
        )));
        let _ = host;
    }
    for (name, host) in PROVIDERS {
        let cluster = Target::EnvoyGateway.provider_cluster(name);
        let values = [("NAME", name.to_string()), ("HOST", host.to_string())];
        rules.push_str(&fill(EG_RULE, &values));
        backends.push_str(&common(&fill(EG_BACKEND, &values)));
        let model_router_filter = has_upstream_instance(model_router, name)
            .then(|| -> Result<String, String> {
                let config = upstream_instance_config(model_router, name)?;
                Ok(format!(
                    "- name: aigw.model-router-upstream\n\
\x20 typed_config:\n\
\x20   \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n\
\x20   config:\n\
\x20     name: model-router-upstream\n\
\x20     root_id: model-router\n\
\x20     vm_config:\n\
\x20       vm_id: model-router-upstream\n\
\x20       runtime: envoy.wasm.runtime.v8\n\
\x20       code:\n\
\x20         local:\n\
\x20           filename: {EG_WASM_DIR}/plugin.wasm\n\
\x20     failure_policy: FAIL_RELOAD\n\
\x20     configuration:\n\
\x20       \"@type\": type.googleapis.com/google.protobuf.StringValue\n\
\x20       value: '{config}'\n"
                ))
            })
            .transpose()?;
        let filters = upstream_filters(name, model_router_filter.as_deref(), 10);
        cluster_patches
            .push_str(&common(&fill(EG_CLUSTER_PATCH, &[("CLUSTER", cluster), ("UPSTREAM_FILTERS", filters)])));
    }
    let model_router_image = images.volume_reference("model-router");
    Ok(vec![
        (dir.join("gateway.yaml"), common(&fill(EG_GATEWAY, &[("MODEL_ROUTER_IMAGE", model_router_image)]))),
        (dir.join("routing.yaml"), common(&fill(EG_ROUTING, &[("RULES", rules), ("BACKENDS", backends)]))),
        (dir.join("policies.yaml"), common(EG_POLICIES)),
        (
            dir.join("envoy-patch-policy.yaml"),
            common(&fill(EG_PATCH_POLICY, &[("ROUTE_PATCHES", route_patches), ("CLUSTER_PATCHES", cluster_patches)])),
        ),
        (dir.join("extension-policy.yaml"), envoy_extension_policy(configs, images)?),
    ])
}

/// Every file generated from gateway.yaml: path relative to the repository
/// root, and content (bare.yaml and the Kubernetes manifests).
pub fn generate(gateway_yaml: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let mut files = vec![(PathBuf::from("envoy-config/bare.yaml"), crate::config::bare_from_gateway(gateway_yaml)?)];
    files.extend(manifests(gateway_yaml, &Images::default())?);
    Ok(files)
}

/// The Kubernetes manifests generated from gateway.yaml, with these images.
pub fn manifests(gateway_yaml: &str, images: &Images) -> Result<Vec<(PathBuf, String)>, String> {
    let raw = wasm_configs(gateway_yaml)?;
    let names: Vec<&str> = raw.iter().map(|(n, _)| n.as_str()).collect();
    if names != FILTERS {
        return Err(format!("gateway.yaml has Wasm filters {names:?}, expected {FILTERS:?}"));
    }
    let for_target = |target: Target| -> Result<Vec<(String, String)>, String> {
        raw.iter()
            .map(|(filter, json)| target_config(filter, json, target).map(|json| (filter.clone(), json)))
            .collect()
    };
    let istio = for_target(Target::Istio)?;
    let token_counter = istio.iter().find(|(f, _)| f == "token-counter").map(|(_, json)| json.as_str()).unwrap_or("{}");
    let shared_store_manifest = shared_store(token_counter)?;
    let mut files = istio_files(&istio, images)?;
    files.extend(envoy_gateway_files(&for_target(Target::EnvoyGateway)?, images)?);
    let sds: String = PROVIDERS.iter().map(|(name, _)| sds_file(name)).collect();
    // The ConfigMap lives where the gateway pods run: Istio's in the aigw namespace (the Helm release), Envoy
    // Gateway's proxies in the controller's namespace (its default deployment mode).
    for (dir, namespace) in [("istio", NAMESPACE), ("envoy-gateway", EG_PROXY_NAMESPACE)] {
        files.push((
            Path::new("envoy-config/k8s").join(dir).join("provider-keys.yaml"),
            fill(
                PROVIDER_KEYS,
                &[
                    ("HEADER", HEADER.to_string()),
                    ("NS", namespace.to_string()),
                    ("KEYS", KEYS_DIR.to_string()),
                    ("SDS", SDS_DIR.to_string()),
                    ("SDS_FILES", sds.clone()),
                ],
            ),
        ));
    }
    files.push((PathBuf::from("envoy-config/k8s/shared-store/ratelimit.yaml"), shared_store_manifest));
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

/// Parses every YAML document in every `.yaml` file under `dir` (recursively), except Helm values
/// (`helm/` directories), which are not Kubernetes objects.
pub fn read_manifests(dir: &Path) -> Result<Vec<(PathBuf, Value)>, String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                if !path.ends_with("helm") {
                    dirs.push(path);
                }
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
