//! The Envoy configs Istio and Envoy Gateway run for the aigw chain, rendered from
//! `envoy-config/gateway.yaml` the way each controller renders what our manifests ask for:
//!
//! - `envoy-config/gateway-istio.yaml` ([`istio`]): the Wasm filters as Istio's pilot writes a
//!   `WasmPlugin` (only the PluginConfig fields it sets, no `vm_id`, the configuration re-encoded from
//!   a protobuf `Struct`), and the JWT payload where Istio's `RequestAuthentication` puts it.
//! - `envoy-config/gateway-envoy-gateway.yaml` ([`envoy_gateway`]): the Wasm filters as Envoy Gateway
//!   writes an `EnvoyExtensionPolicy` (its filter names and `vm_id`s, no failure policy, disabled in
//!   the connection manager and enabled per route), its buffer filter per route, and the buffer
//!   limits and route timeouts our policies set ([`EnvoyGatewayPolicies::ours`]; without them, Envoy
//!   Gateway's defaults: [`EnvoyGatewayPolicies::defaults`]).
//!
//! Everything a controller does not touch stays as gateway.yaml has it (listener, routes, clusters,
//! API keys, local replies), so the end-to-end suite runs unchanged on a render
//! (`AIGW_E2E_LAYOUT=istio|envoy-gateway`, [`Layout`]). The facts each transform follows, with the
//! controller source they come from, are in envoy-config/k8s/README.md#controller-renders.
//! `aigw-generate` writes both files; `aigw-generate --check` and the test
//! `tests/e2e/tests/controller_renders.rs` fail when they are stale.

use crate::config::{self, key, WASM_TYPE};
use serde_yaml::{Mapping, Value};
use std::path::PathBuf;

/// Selects the config the end-to-end fixture starts by default ([`Layout::from_env`]).
pub const LAYOUT_ENV: &str = "AIGW_E2E_LAYOUT";

/// Which Envoy config the end-to-end suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// envoy-config/gateway.yaml as shipped.
    Reference,
    /// envoy-config/gateway-istio.yaml.
    Istio,
    /// envoy-config/gateway-envoy-gateway.yaml.
    EnvoyGateway,
    /// envoy-config/gateway-bundle.yaml: the one-pass build (dist/aigw.wasm, [`crate::bundle`]).
    Bundle,
}

impl Layout {
    /// Every layout, the reference first.
    pub const ALL: [Layout; 4] = [Layout::Reference, Layout::Istio, Layout::EnvoyGateway, Layout::Bundle];

    /// The name `AIGW_E2E_LAYOUT` takes.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Reference => "reference",
            Layout::Istio => "istio",
            Layout::EnvoyGateway => "envoy-gateway",
            Layout::Bundle => "bundle",
        }
    }

    /// The config file in `envoy-config/`.
    pub fn config_file(self) -> &'static str {
        match self {
            Layout::Reference => "gateway.yaml",
            Layout::Istio => "gateway-istio.yaml",
            Layout::EnvoyGateway => "gateway-envoy-gateway.yaml",
            Layout::Bundle => "gateway-bundle.yaml",
        }
    }

    /// A layout by name (`reference`, `istio`, `envoy-gateway`).
    pub fn parse(text: &str) -> Result<Layout, String> {
        Layout::ALL.into_iter().find(|layout| layout.name() == text.trim()).ok_or_else(|| {
            let names: Vec<&str> = Layout::ALL.iter().map(|l| l.name()).collect();
            format!("unknown layout {text:?}: expected one of {names:?}")
        })
    }

    /// `AIGW_E2E_LAYOUT`, the reference when it is unset or empty.
    pub fn from_env() -> Result<Layout, String> {
        match std::env::var(LAYOUT_ENV) {
            Ok(text) if !text.trim().is_empty() => Layout::parse(&text),
            _ => Ok(Layout::Reference),
        }
    }
}

// ---- Istio -------------------------------------------------------------------------------------

/// The namespace of the Istio manifests' `WasmPlugin`s (envoy-config/k8s/istio/).
pub const ISTIO_NAMESPACE: &str = "istio-ingress";
/// Where Istio's `RequestAuthentication` (1.24 and later) has `jwt_authn` put the verified payload.
pub const ISTIO_JWT_PAYLOAD_KEY: &str = "payload";
/// The claims Istio's `jwt_authn` providers split at spaces into lists by default.
pub const ISTIO_SPACE_DELIMITED_CLAIMS: [&str; 2] = ["scope", "permission"];

/// The filter name Istio gives a `WasmPlugin` (`<namespace>.<name>`; the manifests name the
/// plugin of filter `f` `aigw-f`).
pub fn istio_plugin_name(filter: &str) -> String {
    format!("{ISTIO_NAMESPACE}.aigw-{filter}")
}

/// The aigw filter a Wasm plugin name stands for: the name itself, or `f` for Istio's
/// `<namespace>.aigw-f`.
pub fn filter_id(plugin_name: &str) -> &str {
    plugin_name.rsplit_once('.').and_then(|(_, name)| name.strip_prefix("aigw-")).unwrap_or(plugin_name)
}

/// gateway.yaml as Istio runs it with our manifests. Per Wasm filter of the listener, the
/// PluginConfig holds only what pilot's WasmPlugin conversion sets: `name` (`<namespace>.<name>`),
/// `root_id` (the WasmPlugin's `pluginName`, the filter's name), `configuration` (the `pluginConfig`
/// Struct marshalled back to JSON: keys sorted, compact), `vm_config` with the runtime and the code
/// (istio-agent replaces the OCI fetch by the local file it pulled, and strips the `ISTIO_META_*`
/// environment it reads, leaving none) and no `vm_id`, and `failure_policy` from `failStrategy`.
/// Istio delivers it through ECDS; inline here, with the same content. `jwt_authn` providers get
/// Istio's shape: named `origins-<n>`, payload under `payload`, `scope`/`permission` split at spaces,
/// CORS preflights bypassed. Upstream filters on clusters (model-router's upstream instance) come
/// from an EnvoyFilter patch, which writes them as we do: unchanged.
pub fn istio(gateway_yaml: &str) -> Result<String, String> {
    let mut root: Value = serde_yaml::from_str(gateway_yaml).map_err(|e| format!("not YAML: {e}"))?;
    for hcm in config::connection_managers(&mut root) {
        let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_sequence_mut) else { continue };
        for filter in filters.iter_mut() {
            if is_plain_wasm(filter) {
                *filter = istio_wasm_filter(filter)?;
            } else if let Some(jwt) = jwt_authn_config_mut(filter) {
                istio_jwt_authn(jwt)?;
            }
        }
    }
    render_text(&root, ISTIO_HEADER)
}

fn istio_wasm_filter(filter: &Value) -> Result<Value, String> {
    let config = config::get(filter, &["typed_config", "config"]).ok_or("Wasm filter without config")?;
    let name = config.get("name").and_then(Value::as_str).ok_or("Wasm filter without config.name")?;
    let plugin = istio_plugin_name(name);
    let code = config::get(config, &["vm_config", "code"]).cloned().ok_or_else(|| format!("{name}: no code"))?;
    let mut plugin_config = Mapping::new();
    plugin_config.insert(key("name"), key(&plugin));
    // The WasmPlugin's `pluginName`: the manifests give the filter's root id (its name in gateway.yaml).
    let root_id = config.get("root_id").and_then(Value::as_str).unwrap_or(name);
    plugin_config.insert(key("root_id"), key(root_id));
    plugin_config.insert(key("configuration"), string_value(&sorted_json(configuration(config, name)?)?));
    plugin_config
        .insert(key("vm_config"), config::mapping(&[("runtime", key("envoy.wasm.runtime.v8")), ("code", code)]));
    if let Some(policy) = config.get("failure_policy") {
        plugin_config.insert(key("failure_policy"), policy.clone());
    }
    Ok(config::mapping(&[
        ("name", key(&plugin)),
        ("typed_config", config::mapping(&[("@type", key(WASM_TYPE)), ("config", Value::Mapping(plugin_config))])),
    ]))
}

fn istio_jwt_authn(jwt: &mut Value) -> Result<(), String> {
    let providers = jwt.get_mut("providers").and_then(Value::as_mapping_mut).ok_or("jwt_authn without providers")?;
    let mut renamed = Mapping::new();
    let mut names = Vec::new();
    for (index, (old, provider)) in providers.iter().enumerate() {
        let old = old.as_str().ok_or("jwt_authn provider name is not a string")?.to_string();
        let new = format!("origins-{index}");
        let mut provider = provider.clone();
        let map = provider.as_mapping_mut().ok_or_else(|| format!("jwt_authn provider {old} is not a map"))?;
        map.insert(key("payload_in_metadata"), key(ISTIO_JWT_PAYLOAD_KEY));
        map.insert(
            key("normalize_payload_in_metadata"),
            config::mapping(&[(
                "space_delimited_claims",
                Value::Sequence(ISTIO_SPACE_DELIMITED_CLAIMS.iter().map(|c| key(c)).collect()),
            )]),
        );
        renamed.insert(key(&new), provider);
        names.push((old, new));
    }
    *providers = renamed;
    if let Some(rules) = jwt.get_mut("rules") {
        rename_provider_references(rules, &names);
    }
    if let Some(map) = jwt.as_mapping_mut() {
        map.insert(key("bypass_cors_preflight"), Value::Bool(true));
    }
    Ok(())
}

fn rename_provider_references(value: &mut Value, names: &[(String, String)]) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let renamed = v.as_str().and_then(|old| names.iter().find(|(o, _)| o == old)).map(|(_, n)| n.clone());
                match (k.as_str(), renamed) {
                    (Some("provider_name"), Some(new)) => *v = key(&new),
                    _ => rename_provider_references(v, names),
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|item| rename_provider_references(item, names)),
        _ => {}
    }
}

const ISTIO_HEADER: &str = "\
# GENERATED from envoy-config/gateway.yaml by `cargo run -q -p aigw-e2e --bin aigw-generate`; do not edit.
#
# gateway.yaml as Istio's ingress gateway runs it with the manifests in envoy-config/k8s/istio/
# (tests/e2e/src/controllers.rs, `istio`): each aigw Wasm filter carries only what pilot writes for a
# WasmPlugin (name `istio-ingress.aigw-<filter>`, root_id, configuration re-encoded from the pluginConfig
# Struct with its keys sorted, runtime and code, failure_policy from failStrategy; no vm_id), and jwt_authn
# leaves the verified payload under `payload`, as RequestAuthentication does. Everything else is gateway.yaml.
# `AIGW_E2E_LAYOUT=istio` runs the end-to-end suite on it (`just test-renders`); envoy-config/k8s/README.md
# says what it shows and what only a real cluster can.
";

// ---- Envoy Gateway -----------------------------------------------------------------------------

/// The Envoy Gateway `EnvoyExtensionPolicy` of the manifests (envoy-config/k8s/envoy-gateway/):
/// namespace and name, which Envoy Gateway builds its Wasm filter names and `vm_id`s from.
pub const EG_POLICY_NAMESPACE: &str = "aigw";
pub const EG_POLICY_NAME: &str = "aigw";
/// Envoy Gateway's default per-connection buffer limit, on listeners and clusters (32 KiB).
pub const EG_DEFAULT_BUFFER_LIMIT: u64 = 32768;
/// The JWT provider name in our SecurityPolicy: Envoy Gateway (1.2 and later) puts the verified payload
/// under the provider's name, and the filters read `jwt_payload`.
pub const EG_JWT_PROVIDER_NAME: &str = "jwt_payload";
/// The claims Envoy Gateway's `jwt_authn` providers split at spaces into lists.
pub const EG_SPACE_DELIMITED_CLAIMS: [&str; 2] = ["scope", "scp"];
const BUFFER_FILTER: &str = "envoy.filters.http.buffer";
const BUFFER_PER_ROUTE_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute";
const FILTER_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";

/// Envoy Gateway's Wasm filter name and `vm_id` for the policy's `index`-th Wasm extension:
/// `envoy.filters.http.wasm/envoyextensionpolicy/<namespace>/<name>/wasm/<index>` (the `vm_id` is the
/// part after the first `/`).
pub fn eg_wasm_filter_name(index: usize) -> String {
    format!("envoy.filters.http.wasm/{}", eg_vm_id(index))
}

/// Envoy Gateway's `vm_id` for the policy's `index`-th Wasm extension (one VM per extension).
pub fn eg_vm_id(index: usize) -> String {
    format!("envoyextensionpolicy/{EG_POLICY_NAMESPACE}/{EG_POLICY_NAME}/wasm/{index}")
}

/// What our Envoy Gateway policies set, each `None` where Envoy Gateway's default applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvoyGatewayPolicies {
    /// ClientTrafficPolicy `spec.connection.bufferLimit`: the listener's per-connection buffer limit
    /// (default 32 KiB).
    pub client_buffer_limit: Option<u64>,
    /// BackendTrafficPolicy `spec.connection.bufferLimit`: every cluster's (default 32 KiB).
    pub backend_buffer_limit: Option<u64>,
    /// BackendTrafficPolicy `spec.requestBuffer.limit` (Envoy Gateway 1.4 and later): the buffer
    /// filter, enabled per route (default: no buffer filter).
    pub request_buffer_limit: Option<u64>,
    /// HTTPRoute rules' `timeouts.request` (or BackendTrafficPolicy `spec.timeout.http.requestTimeout`):
    /// the route timeout (default: none set, so Envoy's 15 s).
    pub request_timeout: Option<String>,
    /// BackendTrafficPolicy `spec.timeout.http.streamIdleTimeout`: the route idle timeout (default:
    /// none, or off when the request timeout is off).
    pub stream_idle_timeout: Option<String>,
}

impl EnvoyGatewayPolicies {
    /// Envoy Gateway's defaults: no policy sets anything.
    pub fn defaults() -> Self {
        Self::default()
    }

    /// What our manifests' policies set: gateway.yaml's listener buffer limit, its buffer filter's
    /// limit, its clusters' limit, and its routes' timeouts (the catch-all route's).
    pub fn ours(gateway_yaml: &str) -> Result<Self, String> {
        let mut root: Value = serde_yaml::from_str(gateway_yaml).map_err(|e| format!("not YAML: {e}"))?;
        let listener_limit = config::get(&root, &["static_resources", "listeners"])
            .and_then(Value::as_sequence)
            .and_then(|l| l.first())
            .and_then(|l| l.get("per_connection_buffer_limit_bytes"))
            .and_then(Value::as_u64);
        let cluster_limit = config::get(&root, &["static_resources", "clusters"])
            .and_then(Value::as_sequence)
            .and_then(|clusters| clusters.iter().find_map(|c| c.get("per_connection_buffer_limit_bytes")))
            .and_then(Value::as_u64);
        let mut buffer_limit = None;
        let mut timeouts = (None, None);
        for hcm in config::connection_managers(&mut root) {
            let filters = hcm.get("http_filters").and_then(Value::as_sequence);
            if let Some(buffer) = filters.and_then(|f| f.iter().find(|f| config::is_buffer_filter(f))) {
                buffer_limit = config::get(buffer, &["typed_config", "max_request_bytes"]).and_then(Value::as_u64);
            }
            for route in routes_mut(hcm) {
                if is_first_match_route(route) && route.get("route").is_some() {
                    let action = route.get("route");
                    let text =
                        |field: &str| action.and_then(|a| a.get(field)).and_then(Value::as_str).map(str::to_string);
                    timeouts = (text("timeout"), text("idle_timeout"));
                }
            }
        }
        Ok(Self {
            client_buffer_limit: listener_limit,
            backend_buffer_limit: cluster_limit,
            request_buffer_limit: buffer_limit,
            request_timeout: timeouts.0,
            stream_idle_timeout: timeouts.1,
        })
    }
}

/// gateway.yaml as Envoy Gateway runs it with an `EnvoyExtensionPolicy` holding the five filters (on
/// the HTTPRoute the client's request first matches), the policies in `policies`, and an EnvoyProxy
/// `filterOrder` that moves the buffer filter after the Wasm filters:
/// - each Wasm filter is named `envoy.filters.http.wasm/envoyextensionpolicy/<ns>/<name>/wasm/<i>`, has
///   that `vm_id` (no VM shared between filters), its PluginConfig holds `name`, `root_id`,
///   `configuration` (the policy's JSON as the API server stores it: keys sorted, compact), the code and
///   `fail_open: false` (Envoy Gateway sets no `failure_policy`: Envoy's default applies, not a reload), and it
///   is `disabled` in the connection manager;
/// - the filters, and the buffer filter (`BufferPerRoute` with the request buffer limit), are enabled
///   per route on the routes a request matches FIRST: those without a `filter_state` matcher (when the
///   filter chain is built, model-router has not set the route yet). The routes model-router re-routes
///   to (the `filter_state` matchers, which an EnvoyPatchPolicy adds) enable nothing: Envoy builds the
///   chain once, at the first match, and re-routing keeps it;
/// - listener and cluster buffer limits, route timeout and idle timeout as `policies` say (Envoy
///   Gateway's defaults where they say nothing);
/// - `jwt_authn` providers leave the payload under the provider's name ([`EG_JWT_PROVIDER_NAME`]),
///   forward the token, and split `scope`/`scp` at spaces.
///
/// Upstream filters on clusters (model-router's upstream instance, the credential injectors) come
/// from an EnvoyPatchPolicy, which writes them as we do: unchanged.
pub fn envoy_gateway(gateway_yaml: &str, policies: &EnvoyGatewayPolicies) -> Result<String, String> {
    let mut root: Value = serde_yaml::from_str(gateway_yaml).map_err(|e| format!("not YAML: {e}"))?;
    let listener_limit = policies.client_buffer_limit.unwrap_or(EG_DEFAULT_BUFFER_LIMIT);
    if let Some(listeners) =
        config::get_mut(&mut root, &["static_resources", "listeners"]).and_then(Value::as_sequence_mut)
    {
        for listener in listeners.iter_mut().filter_map(Value::as_mapping_mut) {
            listener.insert(key("per_connection_buffer_limit_bytes"), Value::from(listener_limit));
        }
    }
    let cluster_limit = policies.backend_buffer_limit.unwrap_or(EG_DEFAULT_BUFFER_LIMIT);
    if let Some(clusters) =
        config::get_mut(&mut root, &["static_resources", "clusters"]).and_then(Value::as_sequence_mut)
    {
        for cluster in clusters.iter_mut().filter_map(Value::as_mapping_mut) {
            cluster.insert(key("per_connection_buffer_limit_bytes"), Value::from(cluster_limit));
        }
    }
    for hcm in config::connection_managers(&mut root) {
        let enabled = eg_filter_chain(hcm, policies)?;
        for route in routes_mut(hcm) {
            eg_route(route, &enabled, policies)?;
        }
    }
    render_text(&root, EG_HEADER)
}

/// Rewrites one connection manager's filters; returns the filters to enable per route, with the
/// per-route config each gets.
fn eg_filter_chain(hcm: &mut Value, policies: &EnvoyGatewayPolicies) -> Result<Vec<(String, Value)>, String> {
    let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_sequence_mut) else { return Ok(Vec::new()) };
    let mut enabled = Vec::new();
    let mut index = 0;
    for filter in filters.iter_mut() {
        if is_plain_wasm(filter) {
            let name = eg_wasm_filter_name(index);
            *filter = eg_wasm_filter(filter, index)?;
            enabled.push((
                name,
                config::mapping(&[("@type", key(FILTER_CONFIG_TYPE)), ("config", Value::Mapping(Mapping::new()))]),
            ));
            index += 1;
        } else if let Some(jwt) = jwt_authn_config_mut(filter) {
            eg_jwt_authn(jwt)?;
        }
    }
    // The buffer filter: Envoy Gateway adds it (disabled) only with a request buffer policy, and
    // enables it per route; EnvoyProxy `filterOrder` keeps it after the Wasm filters, where gateway.yaml has it.
    let buffer = filters.iter().position(config::is_buffer_filter);
    match (buffer, policies.request_buffer_limit) {
        (Some(position), Some(limit)) => {
            let buffer_config = config::mapping(&[
                ("@type", key("type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer")),
                ("max_request_bytes", Value::from(limit)),
            ]);
            if let Some(slot) = filters.get_mut(position) {
                *slot = config::mapping(&[
                    ("name", key(BUFFER_FILTER)),
                    ("typed_config", buffer_config.clone()),
                    ("disabled", Value::Bool(true)),
                ]);
            }
            let per_route = config::mapping(&[
                ("@type", key(BUFFER_PER_ROUTE_TYPE)),
                ("buffer", config::mapping(&[("max_request_bytes", Value::from(limit))])),
            ]);
            enabled.push((BUFFER_FILTER.to_string(), per_route));
        }
        (Some(position), None) => {
            filters.remove(position);
        }
        (None, _) => {}
    }
    Ok(enabled)
}

fn eg_wasm_filter(filter: &Value, index: usize) -> Result<Value, String> {
    let config = config::get(filter, &["typed_config", "config"]).ok_or("Wasm filter without config")?;
    let name = config.get("name").and_then(Value::as_str).ok_or("Wasm filter without config.name")?;
    let code = config::get(config, &["vm_config", "code"]).cloned().ok_or_else(|| format!("{name}: no code"))?;
    let mut plugin_config = Mapping::new();
    plugin_config.insert(key("name"), key(name));
    plugin_config.insert(
        key("vm_config"),
        config::mapping(&[("vm_id", key(&eg_vm_id(index))), ("runtime", key("envoy.wasm.runtime.v8")), ("code", code)]),
    );
    plugin_config.insert(key("configuration"), string_value(&sorted_json(configuration(config, name)?)?));
    plugin_config.insert(key("fail_open"), Value::Bool(false));
    if let Some(root_id) = config.get("root_id") {
        plugin_config.insert(key("root_id"), root_id.clone());
    }
    Ok(config::mapping(&[
        ("name", key(&eg_wasm_filter_name(index))),
        ("disabled", Value::Bool(true)),
        ("typed_config", config::mapping(&[("@type", key(WASM_TYPE)), ("config", Value::Mapping(plugin_config))])),
    ]))
}

fn eg_jwt_authn(jwt: &mut Value) -> Result<(), String> {
    let providers = jwt.get_mut("providers").and_then(Value::as_mapping_mut).ok_or("jwt_authn without providers")?;
    for (name, provider) in providers.iter_mut() {
        let map = provider.as_mapping_mut().ok_or_else(|| format!("jwt_authn provider {name:?} is not a map"))?;
        map.insert(key("payload_in_metadata"), key(EG_JWT_PROVIDER_NAME));
        map.insert(key("forward"), Value::Bool(true));
        map.insert(
            key("normalize_payload_in_metadata"),
            config::mapping(&[(
                "space_delimited_claims",
                Value::Sequence(EG_SPACE_DELIMITED_CLAIMS.iter().map(|c| key(c)).collect()),
            )]),
        );
    }
    Ok(())
}

/// Per-route enablement (on first-match routes) and the route timeouts the policies set.
fn eg_route(route: &mut Value, enabled: &[(String, Value)], policies: &EnvoyGatewayPolicies) -> Result<(), String> {
    let first_match = is_first_match_route(route);
    let map = route.as_mapping_mut().ok_or("route is not a map")?;
    if first_match && !enabled.is_empty() {
        let mut per_filter =
            map.get(key("typed_per_filter_config")).and_then(Value::as_mapping).cloned().unwrap_or_default();
        for (name, config) in enabled {
            per_filter.insert(key(name), config.clone());
        }
        map.insert(key("typed_per_filter_config"), Value::Mapping(per_filter));
    }
    // Envoy Gateway's policies reach the routes it generates from the HTTPRoute (the first-match
    // ones); the `filter_state` routes come from our EnvoyPatchPolicy with gateway.yaml's timeouts.
    let action = map.get_mut(key("route")).and_then(Value::as_mapping_mut);
    if let (true, Some(action)) = (first_match, action) {
        match &policies.request_timeout {
            Some(timeout) => action.insert(key("timeout"), key(timeout)),
            None => action.remove(key("timeout")),
        };
        match eg_idle_timeout(policies) {
            Some(timeout) => action.insert(key("idle_timeout"), key(&timeout)),
            None => action.remove(key("idle_timeout")),
        };
    }
    Ok(())
}

/// The route idle timeout Envoy Gateway sets: the BackendTrafficPolicy's stream idle timeout, else
/// (with a request timeout) an hour or the request timeout if longer, off when the request timeout is.
fn eg_idle_timeout(policies: &EnvoyGatewayPolicies) -> Option<String> {
    if let Some(idle) = &policies.stream_idle_timeout {
        return Some(idle.clone());
    }
    let request = policies.request_timeout.as_deref()?;
    let seconds = request.strip_suffix('s').and_then(|s| s.parse::<u64>().ok())?;
    Some(match seconds {
        0 => "0s".to_string(),
        s => format!("{}s", s.max(3600)),
    })
}

const EG_HEADER: &str = "\
# GENERATED from envoy-config/gateway.yaml by `cargo run -q -p aigw-e2e --bin aigw-generate`; do not edit.
#
# gateway.yaml as Envoy Gateway runs it with the manifests in envoy-config/k8s/envoy-gateway/
# (tests/e2e/src/controllers.rs, `envoy_gateway`): the aigw Wasm filters named and with vm_ids as Envoy Gateway
# names an EnvoyExtensionPolicy's, no failure_policy (fail_open: false), disabled in the connection manager and
# enabled per route on the routes a request matches first (the chain is built there; model-router's
# re-routing keeps it); the buffer filter likewise (BackendTrafficPolicy requestBuffer, moved after the Wasm
# filters by the EnvoyProxy filterOrder); buffer limits and route timeouts as our ClientTrafficPolicy,
# BackendTrafficPolicy and HTTPRoute set them (Envoy Gateway's defaults would be 32 KiB and 15 s); the JWT
# payload under the SecurityPolicy provider's name. Everything else is gateway.yaml.
# `AIGW_E2E_LAYOUT=envoy-gateway` runs the end-to-end suite on it (`just test-renders`).
";

// ---- shared ------------------------------------------------------------------------------------

/// A Wasm filter written directly in a chain (not wrapped in a matcher).
fn is_plain_wasm(filter: &Value) -> bool {
    config::get(filter, &["typed_config", "@type"]).and_then(Value::as_str) == Some(WASM_TYPE)
}

/// The `JwtAuthentication` of a `jwt_authn` filter, directly or inside its matcher wrapper.
fn jwt_authn_config_mut(filter: &mut Value) -> Option<&mut Value> {
    const JWT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
    let typed = filter.get_mut("typed_config")?;
    if typed.get("@type").and_then(Value::as_str) == Some(JWT_TYPE) {
        return Some(typed);
    }
    let inner = typed.get_mut("extension_config")?.get_mut("typed_config")?;
    (inner.get("@type").and_then(Value::as_str) == Some(JWT_TYPE)).then_some(inner)
}

/// The filter's configuration JSON, parsed.
fn configuration(config: &Value, name: &str) -> Result<serde_json::Value, String> {
    let text = config::get(config, &["configuration", "value"])
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{name}: no configuration.value string"))?;
    serde_json::from_str(text).map_err(|e| format!("{name}: configuration is not JSON: {e}"))
}

/// Compact JSON with every object's keys sorted: what Istio's Struct marshalling and the
/// Kubernetes API server (for Envoy Gateway's `config`) hand the filter.
pub fn sorted_json(value: serde_json::Value) -> Result<String, String> {
    serde_json::to_string(&sort_keys(value)).map_err(|e| e.to_string())
}

fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort_keys(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

fn string_value(text: &str) -> Value {
    config::mapping(&[("@type", key("type.googleapis.com/google.protobuf.StringValue")), ("value", key(text))])
}

/// Every route of a connection manager's inline route config.
fn routes_mut(hcm: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    let Some(hosts) = config::get_mut(hcm, &["route_config", "virtual_hosts"]).and_then(Value::as_sequence_mut) else {
        return out;
    };
    for host in hosts {
        if let Some(routes) = host.get_mut("routes").and_then(Value::as_sequence_mut) {
            out.extend(routes.iter_mut());
        }
    }
    out
}

/// A route a request can match before any aigw filter ran: one without a `filter_state` matcher.
fn is_first_match_route(route: &Value) -> bool {
    config::get(route, &["match", "filter_state"]).is_none()
}

fn render_text(root: &Value, header: &str) -> Result<String, String> {
    let body = serde_yaml::to_string(root).map_err(|e| e.to_string())?;
    Ok(format!("{header}\n{body}"))
}

/// The two renders, as `aigw-generate` writes them (path relative to the repository root, content).
pub fn generate(gateway_yaml: &str) -> Result<Vec<(PathBuf, String)>, String> {
    Ok(vec![
        (PathBuf::from("envoy-config").join(Layout::Istio.config_file()), istio(gateway_yaml)?),
        (
            PathBuf::from("envoy-config").join(Layout::EnvoyGateway.config_file()),
            envoy_gateway(gateway_yaml, &EnvoyGatewayPolicies::ours(gateway_yaml)?)?,
        ),
        (PathBuf::from("envoy-config").join(Layout::Bundle.config_file()), crate::bundle::bundle(gateway_yaml)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{render, wasm_configs, wasm_filter_count, RenderOptions, FILTERS};

    fn gateway_yaml() -> String {
        std::fs::read_to_string(crate::repo_root().join("envoy-config/gateway.yaml")).unwrap()
    }

    #[test]
    fn sorted_json_sorts_every_object_and_keeps_arrays_in_order() {
        let value = serde_json::json!({"b": 1, "a": {"z": [3, {"y": 1, "x": 2}], "c": 0.15}});
        assert_eq!(sorted_json(value).unwrap(), r#"{"a":{"c":0.15,"z":[3,{"x":2,"y":1}]},"b":1}"#);
    }

    #[test]
    fn the_fixture_finds_the_filters_of_both_renders_by_their_aigw_names() {
        let yaml = gateway_yaml();
        let renders =
            [istio(&yaml).unwrap(), envoy_gateway(&yaml, &EnvoyGatewayPolicies::ours(&yaml).unwrap()).unwrap()];
        for rendered in renders {
            let names: Vec<String> = wasm_configs(&rendered).unwrap().into_iter().map(|(name, _)| name).collect();
            assert_eq!(names, FILTERS);
            // A test's configuration replaces the render's; a removed filter leaves nothing behind, not even
            // its per-route enablement (Envoy Gateway), and model-router's upstream instance goes with it.
            let options = RenderOptions {
                filter_configs: [("pii-mask".to_string(), "{\"x\":1}".to_string())].into(),
                remove_filters: vec!["model-router".to_string()],
                ..RenderOptions::default()
            };
            let out = render(&rendered, &options).unwrap();
            assert_eq!(wasm_configs(&out).unwrap().first().map(|(_, c)| c.as_str()), Some("{\"x\":1}"));
            assert_eq!(wasm_filter_count(&out).unwrap(), 4);
            assert!(!out.contains(&eg_wasm_filter_name(4)), "a per-route enablement of a removed filter stayed");
        }
    }

    #[test]
    fn envoy_gateway_idle_timeouts_follow_its_rules() {
        let with = |request: Option<&str>, idle: Option<&str>| {
            eg_idle_timeout(&EnvoyGatewayPolicies {
                request_timeout: request.map(str::to_string),
                stream_idle_timeout: idle.map(str::to_string),
                ..EnvoyGatewayPolicies::default()
            })
        };
        assert_eq!(with(Some("0s"), Some("120s")).as_deref(), Some("120s"));
        assert_eq!(with(Some("0s"), None).as_deref(), Some("0s"));
        assert_eq!(with(Some("30s"), None).as_deref(), Some("3600s"));
        assert_eq!(with(Some("7200s"), None).as_deref(), Some("7200s"));
        assert_eq!(with(None, None), None);
    }

    #[test]
    fn our_policies_are_read_from_gateway_yaml() {
        let policies = EnvoyGatewayPolicies::ours(&gateway_yaml()).unwrap();
        assert_eq!(
            policies,
            EnvoyGatewayPolicies {
                client_buffer_limit: Some(16777216),
                backend_buffer_limit: Some(16777216),
                request_buffer_limit: Some(16777216),
                request_timeout: Some("0s".to_string()),
                stream_idle_timeout: Some("120s".to_string()),
            }
        );
    }
}
