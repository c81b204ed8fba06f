//! Reading and rendering the Envoy configs in `envoy-config/`.
//!
//! The shipped files use fixed ports (listener 10000, admin 9901, mock 18080)
//! and paths relative to the repository root (`dist/<filter>.wasm`, the SDS
//! files `envoy-config/secrets/*.yaml` and the key files they name,
//! `.run/keys/*`). Tests and `just up` render a copy: other ports, absolute
//! `.wasm` and SDS paths, the SDS files themselves rendered next to the copy
//! with their key files in a directory of the caller's choosing, provider
//! clusters pointed at a local mock, a filter's configuration replaced, or a
//! filter removed from the chain. Everything else stays exactly as shipped, so
//! the tests exercise the real config.

pub use crate::controllers::filter_id;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Wasm filters of the chain, in order (their `config.name` in gateway.yaml).
pub const FILTERS: [&str; 5] = ["pii-mask", "prompt-template", "semantic-cache", "token-counter", "model-router"];

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
    /// Filters to remove from the chain, by name. An upstream Wasm filter on a
    /// cluster is removed too when its `.wasm` file is that filter's
    /// (`model-router` also removes a `model-router-upstream` instance).
    pub remove_filters: Vec<String>,
    /// The directory relative paths in the config are relative to (Envoy's
    /// working directory for the shipped files: the repository root). When
    /// set, relative SDS `path_config_source` paths become absolute, so the
    /// rendered config can run from any directory.
    pub base_dir: Option<PathBuf>,
    /// Renders every SDS file the config reads (`path_config_source`) into
    /// this directory too (`<dir>/<file name>`, referenced by absolute path),
    /// with the relative key files it names (`filename: .run/keys/openai`)
    /// moved to `<dir>/keys/<file name>`: a test writes its provider keys
    /// there, never into the repository's `.run/keys/`. Absolute `filename`s
    /// (system CA bundles) stay. The rendered SDS files come back from
    /// [`render_all`] for the caller to write.
    pub secrets_dir: Option<PathBuf>,
    /// Extra HTTP filters (YAML, one list entry each) put before the first
    /// Wasm filter of the listener's chain (e.g. the harness's fixture filter).
    pub leading_filters: Vec<String>,
    /// Turns on OpenTelemetry tracing to an OTLP/gRPC collector at this
    /// host and port: the HTTP connection managers get the `tracing` block of
    /// `envoy-config/observability/tracing.yaml`, and its collector cluster is
    /// added. Without it the config is left untraced.
    pub otlp_collector: Option<(String, u16)>,
}

/// The tracing snippet `RenderOptions::otlp_collector` adds.
pub const TRACING_SNIPPET: &str = include_str!("../../../envoy-config/observability/tracing.yaml");

/// Adds tracing to every HTTP connection manager and the collector cluster.
fn add_tracing(root: &mut Value, host: &str, port: u16) -> Result<(), String> {
    let snippet: Value = serde_yaml::from_str(TRACING_SNIPPET).map_err(|e| format!("tracing snippet: {e}"))?;
    let tracing = snippet.get("tracing").cloned().ok_or("tracing snippet has no `tracing`")?;
    let mut cluster = snippet.get("cluster").cloned().ok_or("tracing snippet has no `cluster`")?;
    let endpoints = ["load_assignment", "endpoints"];
    let endpoint: Value = serde_yaml::from_str(&format!(
        "- lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {host:?}, port_value: {port}}}}}}}}}]"
    ))
    .map_err(|e| e.to_string())?;
    set(&mut cluster, &endpoints, endpoint)?;
    for hcm in connection_managers(root) {
        if let Some(map) = hcm.as_mapping_mut() {
            map.insert(key("tracing"), tracing.clone());
        }
    }
    get_mut(root, &["static_resources", "clusters"])
        .and_then(Value::as_sequence_mut)
        .ok_or("config has no clusters")?
        .push(cluster);
    Ok(())
}

/// A rendered config and the files it needs next to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// The Envoy config.
    pub config: String,
    /// Files to write before Envoy starts (the SDS resources rendered into
    /// [`RenderOptions::secrets_dir`]), as (absolute path, content).
    pub files: Vec<(PathBuf, String)>,
}

impl Rendered {
    /// Writes [`Rendered::files`] (creating their directories) and creates the
    /// `keys/` directory beside them, where key files go.
    pub fn write_files(&self) -> Result<(), String> {
        for (path, content) in &self.files {
            let dir = path.parent().ok_or_else(|| format!("{}: no parent directory", path.display()))?;
            std::fs::create_dir_all(dir.join("keys")).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

pub(crate) fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

pub(crate) fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, segment| v.get(*segment))
}

pub(crate) fn get_mut<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, segment| v.get_mut(*segment))
}

pub(crate) fn set(value: &mut Value, path: &[&str], new: Value) -> Result<(), String> {
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
pub(crate) fn connection_managers(root: &mut Value) -> Vec<&mut Value> {
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

/// `@type` of Envoy's matcher wrapper around a filter.
const EXTENSION_WITH_MATCHER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher";

/// The Wasm PluginConfig (`typed_config.config`) of `filter`, directly or
/// inside an `ExtensionWithMatcher` wrapper, if `filter` is a Wasm filter.
fn wasm_plugin_config_mut(filter: &mut Value) -> Option<&mut Value> {
    let typed = filter.get_mut("typed_config")?;
    let typed = if typed.get("@type").and_then(as_str) == Some(EXTENSION_WITH_MATCHER_TYPE) {
        typed.get_mut("extension_config")?.get_mut("typed_config")?
    } else {
        typed
    };
    (typed.get("@type").and_then(as_str) == Some(WASM_TYPE)).then_some(())?;
    typed.get_mut("config")
}

/// Whether `filter` is a Wasm filter (directly or inside an `ExtensionWithMatcher`).
fn is_wasm_filter(filter: &Value) -> bool {
    wasm_plugin_config_mut(&mut filter.clone()).is_some()
}

/// The upstream HTTP filter chains of every static cluster
/// (`typed_extension_protocol_options.*.http_filters`).
pub(crate) fn upstream_filter_chains(root: &mut Value) -> Vec<&mut Vec<Value>> {
    let mut out = Vec::new();
    if let Some(clusters) = get_mut(root, &["static_resources", "clusters"]).and_then(Value::as_sequence_mut) {
        for cluster in clusters {
            let Some(options) = cluster.get_mut("typed_extension_protocol_options").and_then(Value::as_mapping_mut)
            else {
                continue;
            };
            for (_, option) in options.iter_mut() {
                if let Some(filters) = option.get_mut("http_filters").and_then(Value::as_sequence_mut) {
                    out.push(filters);
                }
            }
        }
    }
    out
}

/// What a Wasm filter is called for `remove_filters`: its plugin name and the
/// stem of its `.wasm` file (`model-router-upstream` runs `model-router.wasm`).
fn wasm_filter_ids(config: &Value) -> (Option<String>, Option<String>) {
    let name = config.get("name").and_then(as_str).map(|name| filter_id(name).to_string());
    let stem = get(config, &["vm_config", "code", "local", "filename"])
        .and_then(as_str)
        .and_then(|f| Path::new(f).file_stem())
        .map(|s| s.to_string_lossy().into_owned());
    (name, stem)
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
                out.push((filter_id(name).to_string(), config.to_string()));
            }
        }
    }
    Ok(out)
}

/// Removes the per-route configs (`typed_per_filter_config`) of these HTTP filter entries from every
/// route of a connection manager's inline route config.
fn drop_per_route_configs(hcm: &mut Value, entries: &[String]) {
    if entries.is_empty() {
        return;
    }
    let Some(hosts) = get_mut(hcm, &["route_config", "virtual_hosts"]).and_then(Value::as_sequence_mut) else { return };
    for host in hosts {
        let Some(routes) = host.get_mut("routes").and_then(Value::as_sequence_mut) else { continue };
        for route in routes {
            if let Some(per_filter) = route.get_mut("typed_per_filter_config").and_then(Value::as_mapping_mut) {
                per_filter.retain(|name, _| name.as_str().is_none_or(|name| !entries.iter().any(|e| e == name)));
            }
        }
    }
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
    // The endpoint's metadata (`aigw.backend`, read by model-router) stays.
    let metadata = map
        .get(key("load_assignment"))
        .and_then(|l| get(l, &["endpoints"]))
        .and_then(Value::as_sequence)
        .and_then(|e| e.first())
        .and_then(|e| e.get("lb_endpoints"))
        .and_then(Value::as_sequence)
        .and_then(|e| e.first())
        .and_then(|e| e.get("metadata"))
        .cloned();
    let mut endpoint: Value = serde_yaml::from_str(&format!(
        "endpoint:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
    ))
    .map_err(|e| e.to_string())?;
    if let (Some(metadata), Some(endpoint)) = (metadata, endpoint.as_mapping_mut()) {
        endpoint.insert(key("metadata"), metadata);
    }
    let assignment = mapping(&[
        ("cluster_name", key(name)),
        ("endpoints", Value::Sequence(vec![mapping(&[("lb_endpoints", Value::Sequence(vec![endpoint]))])])),
    ]);
    map.insert(key("load_assignment"), assignment);
    // Plain HTTP/1.1 to the mock: no ALPN-based auto config, no SNI.
    if let Some(options) = map
        .get_mut(key("typed_extension_protocol_options"))
        .and_then(|o| o.get_mut("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"))
        .and_then(Value::as_mapping_mut)
    {
        // A gRPC cluster (the rate limit service) keeps its explicit HTTP/2.
        let grpc = options.get(key("explicit_http_config")).and_then(|c| c.get("http2_protocol_options")).is_some();
        options.remove(key("auto_config"));
        options.remove(key("upstream_http_protocol_options"));
        if !grpc {
            let explicit: Value = serde_yaml::from_str("http_protocol_options: {}").map_err(|e| e.to_string())?;
            options.insert(key("explicit_http_config"), explicit);
        }
    }
    Ok(())
}

/// Points a Wasm filter at the dist directory and replaces its configuration
/// (by plugin name) as `options` say; other filters are left alone.
fn render_wasm_filter(filter: &mut Value, options: &RenderOptions, seen: &mut Vec<String>) -> Result<(), String> {
    let Some(config) = wasm_plugin_config_mut(filter) else { return Ok(()) };
    let name = filter_id(config.get("name").and_then(as_str).unwrap_or("?")).to_string();
    if let Some(dist) = &options.dist_dir {
        let slot = get_mut(config, &["vm_config", "code", "local", "filename"])
            .ok_or_else(|| format!("filter {name}: no vm_config.code.local.filename"))?;
        // An absolute path (a test's own module) stays; the shipped `dist/…` ones move.
        if slot.as_str().is_some_and(|f| Path::new(f).is_relative()) {
            let file = slot.as_str().and_then(|f| Path::new(f).file_name()).ok_or("bad wasm filename")?;
            *slot = Value::String(dist.join(file).to_string_lossy().into_owned());
        }
    }
    if let Some(json) = options.filter_configs.get(&name) {
        set(config, &["configuration", "value"], Value::String(json.clone()))?;
    }
    seen.push(name);
    Ok(())
}

/// Renders `yaml` with `options` applied. Fails when something the options
/// name does not exist (a renamed cluster or filter must break the tests, not
/// be silently ignored), and when `options.secrets_dir` produced SDS files
/// (use [`render_all`], which returns them).
pub fn render(yaml: &str, options: &RenderOptions) -> Result<String, String> {
    let rendered = render_all(yaml, options)?;
    if !rendered.files.is_empty() {
        return Err("the rendered config reads SDS files rendered beside it: use render_all".to_string());
    }
    Ok(rendered.config)
}

/// Renders `yaml` with `options` applied, with the SDS files the rendered
/// config reads (when `options.secrets_dir` is set). Fails like [`render`].
pub fn render_all(yaml: &str, options: &RenderOptions) -> Result<Rendered, String> {
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
    let removed = |config: &Value| {
        let (name, stem) = wasm_filter_ids(config);
        [name, stem].iter().flatten().any(|id| options.remove_filters.contains(id))
    };
    let mut seen: Vec<String> = Vec::new();
    // The one-pass build (gateway-bundle.yaml): its blocks are configured and removed by filter name.
    for hcm in connection_managers(&mut root) {
        if let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_sequence_mut) {
            seen.extend(crate::bundle::apply_options(filters, options)?);
        }
    }
    for filters in upstream_filter_chains(&mut root) {
        seen.extend(crate::bundle::apply_options(filters, options)?);
    }
    for hcm in connection_managers(&mut root) {
        let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_sequence_mut) else { continue };
        let is_removed = |f: &Value| {
            wasm_filter_name(f).is_some_and(|name| options.remove_filters.iter().any(|r| r == filter_id(name)))
        };
        let removed_entries: Vec<String> = filters
            .iter()
            .filter(|f| is_removed(f))
            .filter_map(|f| f.get("name").and_then(as_str))
            .map(str::to_string)
            .collect();
        filters.retain(|f| !is_removed(f));
        let first_wasm = filters.iter().position(is_wasm_filter).unwrap_or(0);
        for (i, text) in options.leading_filters.iter().enumerate() {
            let filter: Value = serde_yaml::from_str(text).map_err(|e| format!("leading filter: {e}"))?;
            filters.insert(first_wasm + i, filter);
        }
        for filter in filters.iter_mut() {
            render_wasm_filter(filter, options, &mut seen)?;
        }
        // A filter enabled per route (Envoy Gateway's layout) leaves no per-route config behind.
        drop_per_route_configs(hcm, &removed_entries);
    }
    for filters in upstream_filter_chains(&mut root) {
        filters.retain_mut(|f| wasm_plugin_config_mut(f).is_none_or(|config| !removed(config)));
        for filter in filters.iter_mut() {
            render_wasm_filter(filter, options, &mut seen)?;
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
    if let Some((host, port)) = &options.otlp_collector {
        add_tracing(&mut root, host, *port)?;
    }
    let mut secrets = Secrets { options, files: Vec::new(), sources: BTreeMap::new(), keys: BTreeMap::new() };
    secrets.rewrite_config_sources(&mut root)?;
    let config = serde_yaml::to_string(&root).map_err(|e| e.to_string())?;
    Ok(Rendered { config, files: secrets.files })
}

/// Rewrites SDS `path_config_source`s, and renders the SDS files they name.
struct Secrets<'a> {
    options: &'a RenderOptions,
    files: Vec<(PathBuf, String)>,
    /// Rendered SDS file → the source it was rendered from.
    sources: BTreeMap<PathBuf, PathBuf>,
    /// Relocated key file → the `filename` it was moved from.
    keys: BTreeMap<PathBuf, String>,
}

impl Secrets<'_> {
    fn absolute(&self, path: &str) -> PathBuf {
        match &self.options.base_dir {
            Some(base) if Path::new(path).is_relative() => base.join(path),
            _ => PathBuf::from(path),
        }
    }

    /// Every `path_config_source` anywhere in the config (listener filters,
    /// upstream filters, matcher-wrapped filters).
    fn rewrite_config_sources(&mut self, value: &mut Value) -> Result<(), String> {
        match value {
            Value::Mapping(map) => {
                for (k, v) in map.iter_mut() {
                    if k.as_str() == Some("path_config_source") {
                        self.rewrite_config_source(v)?;
                    } else {
                        self.rewrite_config_sources(v)?;
                    }
                }
            }
            Value::Sequence(items) => {
                for item in items {
                    self.rewrite_config_sources(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn rewrite_config_source(&mut self, source: &mut Value) -> Result<(), String> {
        let path = source.get("path").and_then(as_str).ok_or("path_config_source without a path")?.to_string();
        let absolute = self.absolute(&path);
        let target = match &self.options.secrets_dir {
            Some(dir) => self.render_sds_file(&absolute, dir)?,
            None => absolute,
        };
        if self.options.base_dir.is_some() || self.options.secrets_dir.is_some() {
            set(source, &["path"], Value::String(target.to_string_lossy().into_owned()))?;
            // A watched directory is where the SDS file is: it moved with it.
            if let (Some(slot), Some(dir)) = (get_mut(source, &["watched_directory", "path"]), target.parent()) {
                *slot = Value::String(dir.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }

    /// Renders one SDS file into `dir` (once, however often it is referenced).
    fn render_sds_file(&mut self, source: &Path, dir: &Path) -> Result<PathBuf, String> {
        let name = source.file_name().ok_or_else(|| format!("SDS path {} names no file", source.display()))?;
        let target = dir.join(name);
        match self.sources.get(&target) {
            Some(previous) if previous == source => return Ok(target),
            Some(previous) => {
                return Err(format!(
                    "SDS files {} and {} would both render to {}",
                    previous.display(),
                    source.display(),
                    target.display()
                ))
            }
            None => {}
        }
        let text = std::fs::read_to_string(source).map_err(|e| format!("SDS file {}: {e}", source.display()))?;
        let mut sds: Value =
            serde_yaml::from_str(&text).map_err(|e| format!("SDS file {}: not YAML: {e}", source.display()))?;
        self.relocate_key_files(&mut sds, &dir.join("keys"))?;
        let rendered = format!(
            "# Rendered from {} (key files moved to {}).\n{}",
            source.display(),
            dir.join("keys").display(),
            serde_yaml::to_string(&sds).map_err(|e| e.to_string())?
        );
        self.sources.insert(target.clone(), source.to_path_buf());
        self.files.push((target.clone(), rendered));
        Ok(target)
    }

    /// Every relative `filename` in an SDS resource → `<keys>/<file name>`.
    fn relocate_key_files(&mut self, value: &mut Value, keys: &Path) -> Result<(), String> {
        match value {
            Value::Mapping(map) => {
                for (k, v) in map.iter_mut() {
                    let relative = v.as_str().filter(|f| Path::new(f).is_relative()).map(str::to_string);
                    match (k.as_str(), relative) {
                        (Some("filename"), Some(original)) => {
                            let file = Path::new(&original)
                                .file_name()
                                .ok_or_else(|| format!("key file {original:?} names no file"))?;
                            let target = keys.join(file);
                            if let Some(previous) = self.keys.get(&target).filter(|p| **p != original) {
                                return Err(format!(
                                    "key files {previous} and {original} would both move to {}",
                                    target.display()
                                ));
                            }
                            self.keys.insert(target.clone(), original);
                            *v = Value::String(target.to_string_lossy().into_owned());
                        }
                        _ => self.relocate_key_files(v, keys)?,
                    }
                }
            }
            Value::Sequence(items) => {
                for item in items {
                    self.relocate_key_files(item, keys)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Envoy's `buffer` filter: the aigw chain's companion (it holds the request
/// headers until the filters have read the body), so it goes with them.
pub(crate) fn is_buffer_filter(filter: &Value) -> bool {
    filter.get("name").and_then(as_str) == Some("envoy.filters.http.buffer")
}

/// Removes every Wasm HTTP filter and its companion buffer filter, in the
/// listeners' chains and in the clusters' upstream chains (the shape of
/// `bare.yaml`), for comparing configs.
pub fn without_wasm_filters(yaml: &str) -> Result<Value, String> {
    let mut root: Value = serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    for hcm in connection_managers(&mut root) {
        if let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_sequence_mut) {
            filters.retain(|f| !is_wasm_filter(f) && !is_buffer_filter(f));
        }
    }
    for filters in upstream_filter_chains(&mut root) {
        filters.retain(|f| !is_wasm_filter(f) && !is_buffer_filter(f));
    }
    Ok(root)
}

/// The number of Wasm HTTP filters anywhere in the config (listener chains
/// and clusters' upstream chains).
pub fn wasm_filter_count(yaml: &str) -> Result<usize, String> {
    let mut root: Value = serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let mut count = 0;
    for hcm in connection_managers(&mut root) {
        if let Some(filters) = hcm.get("http_filters").and_then(Value::as_sequence) {
            count += filters.iter().filter(|f| is_wasm_filter(f)).count();
        }
    }
    for filters in upstream_filter_chains(&mut root) {
        count += filters.iter().filter(|f| is_wasm_filter(f)).count();
    }
    Ok(count)
}

/// Marks a block of Wasm filters in gateway.yaml (whole lines). The listener's
/// chain has one; an upstream Wasm filter on a cluster (a model-router
/// upstream instance) gets its own pair of markers around its list entry.
pub const WASM_BLOCK_BEGIN: &str = "# BEGIN aigw Wasm filters";
pub const WASM_BLOCK_END: &str = "# END aigw Wasm filters";

const BARE_HEADER: &str = "\
# GENERATED from envoy-config/gateway.yaml by `cargo run -q -p aigw-e2e --bin aigw-generate`; do not edit.
#
# aigw baseline: the same Envoy as gateway.yaml (listener, routes, clusters, jwt_authn, timeouts, buffer
# limits, access log, the provider clusters' credential_injector) WITHOUT any Wasm filter (the four in the
# listener's chain and any upstream model-router instance on a cluster). The benchmarks compare the filter
# chain against it. Without model-router nothing sets the route (filter state `aigw.route`), so every
# request goes to the mock.
";

/// bare.yaml: gateway.yaml's text without its header comment and without the
/// lines from each Wasm block's BEGIN marker to its END marker. Fails when a
/// Wasm filter is left outside the markers (bare.yaml has none at all).
pub fn bare_from_gateway(gateway_yaml: &str) -> Result<String, String> {
    let lines: Vec<&str> = gateway_yaml.lines().collect();
    let find = |marker: &str| -> Vec<usize> {
        lines.iter().enumerate().filter(|(_, l)| l.trim_start().starts_with(marker)).map(|(i, _)| i).collect()
    };
    let (begins, ends) = (find(WASM_BLOCK_BEGIN), find(WASM_BLOCK_END));
    let body_start = lines.iter().position(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap_or(0);
    let blocks: Vec<(usize, usize)> = begins.iter().copied().zip(ends.iter().copied()).collect();
    let ordered = blocks.iter().zip(blocks.iter().skip(1)).all(|(a, b)| a.1 < b.0);
    if begins.is_empty() || begins.len() != ends.len() || !ordered {
        return Err(format!(
            "gateway.yaml must have matching, non-nested {WASM_BLOCK_BEGIN:?} / {WASM_BLOCK_END:?} lines"
        ));
    }
    if blocks.iter().any(|&(begin, end)| !(body_start < begin && begin < end)) {
        return Err("gateway.yaml: the Wasm block markers are out of order".to_string());
    }
    let mut out = String::from(BARE_HEADER);
    out.push('\n');
    for (i, line) in lines.iter().enumerate().skip(body_start) {
        if !blocks.iter().any(|&(begin, end)| (begin..=end).contains(&i)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    match wasm_filter_count(&out)? {
        0 => Ok(out),
        n => Err(format!(
            "gateway.yaml: {n} Wasm filter(s) outside the {WASM_BLOCK_BEGIN:?} / {WASM_BLOCK_END:?} markers \
             (bare.yaml must have none: put the markers around each)"
        )),
    }
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
    fn finds_the_five_filters_in_chain_order() {
        let names: Vec<String> = wasm_configs(&gateway_yaml()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, FILTERS);
        let chain = http_filter_names(&gateway_yaml()).unwrap();
        assert_eq!(chain.first().map(String::as_str), Some("aigw.strip-client-id"));
        assert!(chain.iter().any(|name| name == "envoy.filters.http.jwt_authn"));
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
        assert_eq!(configs.len(), 4);
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

    /// gateway.yaml with a model-router upstream instance (between its own
    /// markers) and a matcher-wrapped Wasm filter on the `mock-failover` aggregate.
    fn with_upstream_instance(markers: bool) -> String {
        let (begin, end) = if markers {
            ("        # BEGIN aigw Wasm filters (upstream)\n", "        # END aigw Wasm filters (upstream)\n")
        } else {
            ("", "")
        };
        let block = format!(
            "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http_protocol_options: {{}} }}
        http_filters:
{begin}        - name: model-router-upstream
          typed_config:
            \"@type\": {WASM_TYPE}
            config:
              name: model-router-upstream
              vm_config: {{ vm_id: model-router, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: dist/model-router.wasm }} }} }}
              configuration: {{ \"@type\": type.googleapis.com/google.protobuf.StringValue, value: '{{\"mode\": \"upstream\"}}' }}
        - name: wrapped
          typed_config:
            \"@type\": {EXTENSION_WITH_MATCHER_TYPE}
            extension_config:
              name: wrapped
              typed_config:
                \"@type\": {WASM_TYPE}
                config:
                  name: wrapped
                  vm_config: {{ vm_id: x, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: dist/model-router.wasm }} }} }}
{end}        - name: envoy.filters.http.upstream_codec
          typed_config:
            \"@type\": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
"
        );
        let yaml = gateway_yaml();
        let anchor = "        clusters: [mock, mock-secondary]\n";
        assert!(yaml.contains(anchor), "gateway.yaml's mock-failover changed; adapt this test");
        yaml.replacen(anchor, &format!("{anchor}{block}"), 1)
    }

    fn upstream_filenames(yaml: &str) -> Vec<String> {
        let mut root: Value = serde_yaml::from_str(yaml).unwrap();
        let mut out = Vec::new();
        for filters in upstream_filter_chains(&mut root) {
            for filter in filters.iter_mut() {
                if let Some(config) = wasm_plugin_config_mut(filter) {
                    out.push(
                        get(config, &["vm_config", "code", "local", "filename"]).unwrap().as_str().unwrap().into(),
                    );
                }
            }
        }
        out
    }

    #[test]
    fn renders_upstream_wasm_filters_and_removes_them_with_their_filter() {
        let yaml = with_upstream_instance(true);
        let options = RenderOptions { dist_dir: Some(PathBuf::from("/abs/dist")), ..RenderOptions::default() };
        let out = render(&yaml, &options).unwrap();
        // The two added here and gateway.yaml's own on the anthropic cluster.
        assert_eq!(upstream_filenames(&out), ["/abs/dist/model-router.wasm"; 3]);
        let options =
            RenderOptions { filter_configs: [("model-router-upstream".into(), "{}".into())].into(), ..options };
        assert!(render(&yaml, &options).unwrap().contains("value: '{}'"));
        let options = RenderOptions { remove_filters: vec!["model-router".into()], ..RenderOptions::default() };
        let out = render(&yaml, &options).unwrap();
        assert!(upstream_filenames(&out).is_empty());
        assert_eq!(wasm_filter_count(&out).unwrap(), 4);
        assert!(out.contains("envoy.filters.http.upstream_codec"));
    }

    #[test]
    fn pointing_a_cluster_at_a_mock_keeps_its_endpoint_metadata_and_upstream_filters() {
        let mut options = RenderOptions::default();
        options.cluster_ports.insert("openai".into(), 3333);
        let root: Value = serde_yaml::from_str(&render(&gateway_yaml(), &options).unwrap()).unwrap();
        let clusters = get(&root, &["static_resources", "clusters"]).unwrap().as_sequence().unwrap();
        let openai = clusters.iter().find(|c| c["name"] == "openai").unwrap();
        let endpoint = &openai["load_assignment"]["endpoints"][0]["lb_endpoints"][0];
        assert_eq!(endpoint["endpoint"]["address"]["socket_address"]["port_value"], Value::from(3333));
        assert_eq!(endpoint["metadata"]["filter_metadata"]["aigw"]["backend"], "openai");
        assert!(openai.get("transport_socket").is_none());
        let options =
            &openai["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        let filters: Vec<&str> =
            options["http_filters"].as_sequence().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(filters, ["envoy.filters.http.credential_injector", "envoy.filters.http.upstream_codec"]);
    }

    #[test]
    fn sds_paths_become_absolute_and_sds_files_render_with_their_key_files_moved() {
        let yaml = gateway_yaml();
        let root_dir = crate::repo_root();
        // base_dir alone: absolute SDS paths, the SDS files themselves untouched.
        let options = RenderOptions { base_dir: Some(root_dir.clone()), ..RenderOptions::default() };
        let out = render(&yaml, &options).unwrap();
        for provider in ["openai", "anthropic"] {
            let path = root_dir.join(format!("envoy-config/secrets/{provider}.yaml"));
            assert!(out.contains(&format!("path: {}", path.display())), "{out}");
        }
        assert!(!out.contains("path: envoy-config/secrets/"));
        // Without options nothing changes.
        assert!(render(&yaml, &RenderOptions::default()).unwrap().contains("path: envoy-config/secrets/openai.yaml"));

        // secrets_dir: the SDS files are rendered there, key files in keys/ below.
        let options = RenderOptions {
            base_dir: Some(root_dir.clone()),
            secrets_dir: Some(PathBuf::from("/t/secrets")),
            ..RenderOptions::default()
        };
        assert!(render(&yaml, &options).is_err(), "render() would drop the SDS files");
        let rendered = render_all(&yaml, &options).unwrap();
        assert!(rendered.config.contains("path: /t/secrets/openai.yaml"));
        assert!(rendered.config.contains("path: /t/secrets/anthropic.yaml"));
        let files: BTreeMap<PathBuf, String> = rendered.files.iter().cloned().collect();
        // The two provider key SDS files and the API keys' ECDS file.
        assert_eq!(files.len(), 3);
        assert!(rendered.config.contains("path: /t/secrets/api-keys.yaml"));
        assert!(files[Path::new("/t/secrets/api-keys.yaml")].contains("envoy.filters.http.api_key_auth"));
        let sds: Value = serde_yaml::from_str(&files[Path::new("/t/secrets/openai.yaml")]).unwrap();
        let secret = &sds["resources"][0];
        assert_eq!(secret["name"], "openai-key");
        assert_eq!(secret["generic_secret"]["secret"]["filename"], "/t/secrets/keys/openai");
        let sds: Value = serde_yaml::from_str(&files[Path::new("/t/secrets/anthropic.yaml")]).unwrap();
        assert_eq!(sds["resources"][0]["generic_secret"]["secret"]["filename"], "/t/secrets/keys/anthropic");
    }

    #[test]
    fn bare_drops_every_wasm_filter_and_keeps_the_credential_injectors() {
        let bare = bare_from_gateway(&gateway_yaml()).unwrap();
        assert_eq!(wasm_filter_count(&bare).unwrap(), 0);
        assert_eq!(bare.matches("envoy.filters.http.credential_injector").count(), 2);
        assert!(bare.contains("envoy.filters.http.jwt_authn"));
        // An upstream instance between its own markers goes too; the codec after it stays.
        let bare = bare_from_gateway(&with_upstream_instance(true)).unwrap();
        assert_eq!(wasm_filter_count(&bare).unwrap(), 0);
        assert_eq!(bare.matches("envoy.filters.http.upstream_codec").count(), 3);
        let root: Value = serde_yaml::from_str(&bare).unwrap();
        assert_eq!(root, without_wasm_filters(&with_upstream_instance(true)).unwrap());
        // One left outside the markers is an error, not a Wasm filter in the baseline.
        let err = bare_from_gateway(&with_upstream_instance(false)).unwrap_err();
        assert!(err.contains("2 Wasm filter(s) outside"), "{err}");
        // Unmatched markers.
        let broken = gateway_yaml().replacen(WASM_BLOCK_END, "# (end)", 1);
        assert!(bare_from_gateway(&broken).is_err());
    }
}
