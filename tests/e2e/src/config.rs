//! Reading and rendering the Envoy configs in `envoy-config/`.
//!
//! The shipped files use fixed ports (listener 10000, admin 9901, mock 18080)
//! and `dist/<filter>.wasm` paths relative to the repository root. Tests and
//! `just up` render a copy: other ports, absolute `.wasm` paths, provider
//! clusters pointed at a local mock, a filter's configuration replaced, or a
//! filter removed from the chain. Everything else stays exactly as shipped, so
//! the tests exercise the real config.

use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Wasm filters of the chain, in order (their `config.name` in gateway.yaml).
pub const FILTERS: [&str; 4] = ["pii-mask", "prompt-template", "token-counter", "model-router"];

/// `@type` of the Wasm HTTP filter.
pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// What to change in a config.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Port of the (first) listener.
    pub listener_port: Option<u16>,
    /// Port of the admin interface.
    pub admin_port: Option<u16>,
    /// Clusters to point at a plaintext HTTP/1.1 server on 127.0.0.1:<port>
    /// (mock backends; TLS, DNS and outlier detection are dropped).
    pub cluster_ports: BTreeMap<String, u16>,
    /// Directory holding `<filter>.wasm`; every Wasm `code.local.filename` is
    /// rewritten to `<dist>/<file name>`.
    pub dist_dir: Option<PathBuf>,
    /// Replacement configuration JSON per filter name.
    pub filter_configs: BTreeMap<String, String>,
    /// Filters to remove from the chain, by name.
    pub remove_filters: Vec<String>,
}

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, segment| v.get(*segment))
}

fn get_mut<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, segment| v.get_mut(*segment))
}

fn set(value: &mut Value, path: &[&str], new: Value) -> Result<(), String> {
    match get_mut(value, path) {
        Some(slot) => {
            *slot = new;
            Ok(())
        }
        None => Err(format!("config has no {}", path.join("."))),
    }
}

fn as_str(value: &Value) -> Option<&str> {
    value.as_str()
}

/// The HTTP connection managers of every listener.
fn connection_managers(root: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    if let Some(listeners) = get_mut(root, &["static_resources", "listeners"]).and_then(Value::as_sequence_mut) {
        for listener in listeners {
            let Some(chains) = listener.get_mut("filter_chains").and_then(Value::as_sequence_mut) else { continue };
            for chain in chains {
                let Some(filters) = chain.get_mut("filters").and_then(Value::as_sequence_mut) else { continue };
                for filter in filters {
                    if filter.get("name").and_then(as_str) == Some("envoy.filters.network.http_connection_manager") {
                        if let Some(hcm) = filter.get_mut("typed_config") {
                            out.push(hcm);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The Wasm filter's name (`typed_config.config.name`) if `filter` is one.
pub fn wasm_filter_name(filter: &Value) -> Option<&str> {
    let typed = filter.get("typed_config")?;
    (typed.get("@type").and_then(as_str) == Some(WASM_TYPE)).then_some(())?;
    get(typed, &["config", "name"]).and_then(as_str)
}

/// The configuration JSON string of every Wasm HTTP filter, by filter name,
/// in chain order.
pub fn wasm_configs(yaml: &str) -> Result<Vec<(String, String)>, String> {
    let mut root: Value = serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let mut out = Vec::new();
    for hcm in connection_managers(&mut root) {
        let Some(filters) = hcm.get("http_filters").and_then(Value::as_sequence) else { continue };
        for filter in filters {
            if let Some(name) = wasm_filter_name(filter) {
                let config = get(filter, &["typed_config", "config", "configuration", "value"])
                    .and_then(as_str)
                    .ok_or_else(|| format!("filter {name}: no configuration.value string"))?;
                out.push((name.to_string(), config.to_string()));
            }
        }
    }
    Ok(out)
}

/// The names of every static cluster.
pub fn cluster_names(yaml: &str) -> Result<Vec<String>, String> {
    let root: Value = serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    Ok(get(&root, &["static_resources", "clusters"])
        .and_then(Value::as_sequence)
        .map(|clusters| clusters.iter().filter_map(|c| c.get("name").and_then(as_str)).map(str::to_string).collect())
        .unwrap_or_default())
}

/// The names of every HTTP filter (Wasm filters by their plugin name, others
/// by their Envoy filter name), in chain order.
pub fn http_filter_names(yaml: &str) -> Result<Vec<String>, String> {
    let mut root: Value = serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let mut out = Vec::new();
    for hcm in connection_managers(&mut root) {
        let Some(filters) = hcm.get("http_filters").and_then(Value::as_sequence) else { continue };
        for filter in filters {
            let name = wasm_filter_name(filter).or_else(|| filter.get("name").and_then(as_str)).unwrap_or("?");
            out.push(name.to_string());
        }
    }
    Ok(out)
}

fn point_cluster_at(cluster: &mut Value, name: &str, port: u16) -> Result<(), String> {
    let Some(map) = cluster.as_mapping_mut() else { return Err(format!("cluster {name} is not a map")) };
    for field in ["transport_socket", "dns_lookup_family", "outlier_detection", "cluster_type"] {
        map.remove(key(field));
    }
    map.insert(key("type"), key("STATIC"));
    let endpoint: Value = serde_yaml::from_str(&format!(
        "cluster_name: {name}\nendpoints:\n- lb_endpoints:\n  - endpoint:\n      address:\n        socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
    ))
    .map_err(|e| e.to_string())?;
    map.insert(key("load_assignment"), endpoint);
    // Plain HTTP/1.1 to the mock: no ALPN-based auto config, no SNI.
    if let Some(options) = map
        .get_mut(key("typed_extension_protocol_options"))
        .and_then(|o| o.get_mut("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"))
        .and_then(Value::as_mapping_mut)
    {
        options.remove(key("auto_config"));
        options.remove(key("upstream_http_protocol_options"));
        let explicit: Value = serde_yaml::from_str("http_protocol_options: {}").map_err(|e| e.to_string())?;
        options.insert(key("explicit_http_config"), explicit);
    }
    Ok(())
}

/// Renders `yaml` with `options` applied. Fails when something the options
/// name does not exist (a renamed cluster or filter must break the tests, not
/// be silently ignored).
pub fn render(yaml: &str, options: &RenderOptions) -> Result<String, String> {
    let mut root: Value = serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    if let Some(port) = options.admin_port {
        set(&mut root, &["admin", "address", "socket_address", "port_value"], Value::from(port))?;
    }
    if let Some(port) = options.listener_port {
        let listener = get_mut(&mut root, &["static_resources", "listeners"])
            .and_then(Value::as_sequence_mut)
            .and_then(|l| l.first_mut())
            .ok_or("config has no listener")?;
        set(listener, &["address", "socket_address", "port_value"], Value::from(port))?;
    }
    for (name, port) in &options.cluster_ports {
        let cluster = get_mut(&mut root, &["static_resources", "clusters"])
            .and_then(Value::as_sequence_mut)
            .and_then(|clusters| clusters.iter_mut().find(|c| c.get("name").and_then(as_str) == Some(name.as_str())))
            .ok_or_else(|| format!("config has no cluster {name}"))?;
        point_cluster_at(cluster, name, *port)?;
    }
    let mut seen: Vec<String> = Vec::new();
    for hcm in connection_managers(&mut root) {
        let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_sequence_mut) else { continue };
        filters.retain(|f| wasm_filter_name(f).is_none_or(|name| !options.remove_filters.iter().any(|r| r == name)));
        for filter in filters.iter_mut() {
            let Some(name) = wasm_filter_name(filter).map(str::to_string) else { continue };
            let Some(config) = filter.get_mut("typed_config").and_then(|t| t.get_mut("config")) else { continue };
            if let Some(dist) = &options.dist_dir {
                let slot = get_mut(config, &["vm_config", "code", "local", "filename"])
                    .ok_or_else(|| format!("filter {name}: no vm_config.code.local.filename"))?;
                let file = slot.as_str().and_then(|f| Path::new(f).file_name()).ok_or("bad wasm filename")?;
                *slot = Value::String(dist.join(file).to_string_lossy().into_owned());
            }
            if let Some(json) = options.filter_configs.get(&name) {
                set(config, &["configuration", "value"], Value::String(json.clone()))?;
            }
            seen.push(name);
        }
    }
    for name in options.filter_configs.keys() {
        if !seen.contains(name) {
            return Err(format!("config has no Wasm filter {name} to configure"));
        }
    }
    for name in &options.remove_filters {
        if !FILTERS.contains(&name.as_str()) {
            return Err(format!("unknown filter {name} to remove"));
        }
    }
    serde_yaml::to_string(&root).map_err(|e| e.to_string())
}

/// Removes every Wasm HTTP filter (the shape of `bare.yaml`), for comparing configs.
pub fn without_wasm_filters(yaml: &str) -> Result<Value, String> {
    let mut root: Value = serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    for hcm in connection_managers(&mut root) {
        if let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_sequence_mut) {
            filters.retain(|f| wasm_filter_name(f).is_none());
        }
    }
    Ok(root)
}

/// Marks the Wasm filters' block in gateway.yaml (whole lines).
pub const WASM_BLOCK_BEGIN: &str = "# BEGIN aigw Wasm filters";
pub const WASM_BLOCK_END: &str = "# END aigw Wasm filters";

const BARE_HEADER: &str = "\
# GENERATED from envoy-config/gateway.yaml by `cargo run -q -p aigw-e2e --bin aigw-generate`; do not edit.
#
# aigw baseline: the same Envoy as gateway.yaml (listener, routes, clusters, jwt_authn, timeouts, buffer
# limits, access log) WITHOUT the four Wasm filters. The benchmarks compare the filter chain against it.
# Without model-router nothing sets `x-aigw-route`, so a request goes to the mock unless the client sets the
# header itself (e.g. `-H 'x-aigw-route: mock-secondary'`).
";

/// bare.yaml: gateway.yaml's text without its header comment and without the
/// lines from the Wasm block's BEGIN marker to its END marker.
pub fn bare_from_gateway(gateway_yaml: &str) -> Result<String, String> {
    let lines: Vec<&str> = gateway_yaml.lines().collect();
    let find = |marker: &str| {
        let found: Vec<usize> =
            lines.iter().enumerate().filter(|(_, l)| l.trim_start().starts_with(marker)).map(|(i, _)| i).collect();
        match found.as_slice() {
            [one] => Ok(*one),
            _ => Err(format!("gateway.yaml must have exactly one line starting with {marker:?}")),
        }
    };
    let (begin, end) = (find(WASM_BLOCK_BEGIN)?, find(WASM_BLOCK_END)?);
    let body_start = lines.iter().position(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap_or(0);
    if !(body_start < begin && begin < end) {
        return Err("gateway.yaml: the Wasm block markers are out of order".to_string());
    }
    let mut out = String::from(BARE_HEADER);
    out.push('\n');
    for (i, line) in lines.iter().enumerate().skip(body_start) {
        if i < begin || i > end {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A mapping helper for callers building values by hand.
pub fn mapping(pairs: &[(&str, Value)]) -> Value {
    let mut map = Mapping::new();
    for (k, v) in pairs {
        map.insert(key(k), v.clone());
    }
    Value::Mapping(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway_yaml() -> String {
        std::fs::read_to_string(crate::repo_root().join("envoy-config/gateway.yaml")).unwrap()
    }

    #[test]
    fn finds_the_four_filters_in_chain_order() {
        let names: Vec<String> = wasm_configs(&gateway_yaml()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, FILTERS);
        let chain = http_filter_names(&gateway_yaml()).unwrap();
        assert_eq!(chain.first().map(String::as_str), Some("envoy.filters.http.jwt_authn"));
        assert_eq!(chain.last().map(String::as_str), Some("envoy.filters.http.router"));
    }

    #[test]
    fn renders_ports_paths_clusters_and_configs() {
        let mut options = RenderOptions {
            listener_port: Some(1111),
            admin_port: Some(2222),
            dist_dir: Some(PathBuf::from("/abs/dist")),
            ..RenderOptions::default()
        };
        options.cluster_ports.insert("openai".into(), 3333);
        options.filter_configs.insert("pii-mask".into(), "{\"x\":1}".into());
        options.remove_filters.push("model-router".into());
        let out = render(&gateway_yaml(), &options).unwrap();
        let root: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(get(&root, &["admin", "address", "socket_address", "port_value"]).unwrap(), &Value::from(2222));
        assert!(out.contains("port_value: 1111"));
        assert!(out.contains("/abs/dist/pii-mask.wasm"));
        assert!(!out.contains("api.openai.com, port_value") && out.contains("port_value: 3333"));
        let configs = wasm_configs(&out).unwrap();
        assert_eq!(configs.len(), 3);
        assert_eq!(configs[0], ("pii-mask".to_string(), "{\"x\":1}".to_string()));
        // The anthropic cluster is untouched.
        assert!(out.contains("api.anthropic.com"));
    }

    #[test]
    fn refuses_unknown_names() {
        let yaml = gateway_yaml();
        let mut options = RenderOptions::default();
        options.cluster_ports.insert("nope".into(), 1);
        assert!(render(&yaml, &options).is_err());
        let mut options = RenderOptions::default();
        options.filter_configs.insert("nope".into(), "{}".into());
        assert!(render(&yaml, &options).is_err());
        let options = RenderOptions { remove_filters: vec!["nope".into()], ..RenderOptions::default() };
        assert!(render(&yaml, &options).is_err());
    }
}
