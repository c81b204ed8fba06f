//! Plugin configuration: raw serde structs → a validated, compiled form.
//!
//! One filter binary runs in two places, chosen by `mode`:
//! - `downstream` (default): in the HTTP connection manager's chain. Reads the
//!   request's `model`, applies access control and routing rules, and hands
//!   the decision to Envoy's route table through `x-aigw-route`.
//! - `upstream`: as an upstream HTTP filter on one provider cluster, once per
//!   attempt (retries included). Knows its backend and speaks its API: path,
//!   model name, Anthropic translation.
//!
//! Regexes are compiled here, once per VM; every error names the field at
//! fault (`models[3].regex: …`).

use aigw_shared::attributes::Source;
use aigw_shared::body::DEFAULT_MAX_BODY_BYTES;
use aigw_shared::config::{at_most, index, join, parse_config, ConfigError, MAX_BUFFER_BYTES};
use aigw_shared::sse::DEFAULT_MAX_EVENT_BYTES;
use regex_lite::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};

// The names shared with the other filters and Envoy's config live in one place.
pub use aigw_shared::contract::{
    CLIENT_ADDRESS_HEADERS, CLIENT_CREDENTIAL_HEADERS, ENDPOINT_BACKEND_METADATA as ENDPOINT_METADATA_PATH,
    HEADER_ATTEMPT_BACKEND as ATTEMPT_BACKEND_HEADER, HEADER_BACKEND as BACKEND_HEADER, HEADER_ROUTE as ROUTE_HEADER,
    INTERNAL_REQUEST_HEADERS, STATE_ROUTE_HANDOFF as HANDOFF_PROPERTY,
};

/// Longest model name the filter accepts or produces.
pub const MAX_MODEL_LEN: usize = 256;
/// Largest `default_max_tokens` (sent to Anthropic as `max_tokens`): models
/// produce at most hundreds of thousands of tokens, so a larger value is a typo.
pub const MAX_DEFAULT_MAX_TOKENS: u64 = 100_000_000;

// ---------------------------------------------------------------- raw form

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawMode {
    #[default]
    Downstream,
    Upstream,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: RawMode,
    #[serde(default)]
    backends: Vec<RawBackend>,
    #[serde(default)]
    backend: Option<RawBackend>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    default: Option<RawRoute>,
    #[serde(default)]
    access: Option<RawAccess>,
    #[serde(default)]
    split_key: Option<Source>,
    #[serde(default)]
    strip_request_headers: Vec<String>,
    #[serde(default = "yes")]
    backend_header: bool,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    max_event_bytes: Option<usize>,
    #[serde(default)]
    upstream_instances: bool,
    #[serde(default)]
    forward_client_address: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// OpenAI or any OpenAI-compatible API (vLLM, Ollama, the mock).
    #[default]
    Openai,
    Anthropic,
    AzureOpenai,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::AzureOpenai => "azure_openai",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: String,
    #[serde(default)]
    provider: Provider,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    anthropic_version: Option<String>,
    #[serde(default)]
    default_max_tokens: Option<u64>,
    #[serde(default)]
    upstream_instance: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    backend: String,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSplit {
    weight: u32,
    targets: Vec<RawTarget>,
    #[serde(default)]
    route: Option<String>,
}

/// Where a model (or rule, or the default) sends the request: an ordered
/// failover list, or weighted splits of such lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    targets: Option<Vec<RawTarget>>,
    #[serde(default)]
    splits: Option<Vec<RawSplit>>,
    #[serde(default)]
    route: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(flatten)]
    route: RawRoute,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    source: Source,
    #[serde(default)]
    equals: Option<String>,
    #[serde(default)]
    one_of: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    name: Option<String>,
    when: RawCondition,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    model: Option<String>,
    #[serde(flatten)]
    route: RawRoute,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default)]
    claim: Option<Source>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    default: Option<Vec<String>>,
}

// ---------------------------------------------------------- validated form

/// The validated configuration of one plugin instance.
#[derive(Debug)]
pub enum Config {
    Downstream(Box<Downstream>),
    Upstream(Upstream),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub provider: Provider,
    /// The `x-aigw-route` value that selects this backend alone.
    pub route: String,
    /// Prepended to the provider's path (`/v1/messages`, `/openai/deployments/…`).
    pub path_prefix: String,
    /// Azure deployment; `{model}` is replaced by the upstream model.
    pub deployment: String,
    pub api_version: String,
    pub anthropic_version: String,
    pub default_max_tokens: u64,
    /// A model-router upstream instance runs on this backend's cluster and
    /// adapts every attempt (default: the config's `upstream_instances`).
    pub upstream_instance: bool,
}

impl Backend {
    /// Whether a request for this backend needs another path or headers than
    /// the client sent. Only an upstream instance can make those changes:
    /// once the body is read, Envoy no longer lets a filter edit the request
    /// headers (they continued so that the body could arrive, see
    /// aigw_shared::gate), but the upstream instance sees them first.
    pub fn changes_head(&self) -> bool {
        self.provider != Provider::Openai || !self.path_prefix.is_empty()
    }
}

/// One backend in a failover list, with the model name it gets. `model` is a
/// template: `$0` the requested model, `$1`/`${name}` regex captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into [`Downstream::backends`].
    pub backend: usize,
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetList {
    pub targets: Vec<Target>,
    /// The `x-aigw-route` value for this list.
    pub route: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    Targets(TargetList),
    /// Weighted splits; weights are cumulative upper bounds, `total` their sum.
    Splits {
        splits: Vec<(u32, TargetList)>,
        total: u32,
    },
}

#[derive(Debug, Clone)]
pub enum Matcher {
    /// `prefix` and `regex` rules, both compiled to an anchored regex.
    Pattern(Regex),
}

#[derive(Debug, Clone)]
pub struct ModelRule {
    pub matcher: Matcher,
    pub route: RouteSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Present,
    Equals(String),
    OneOf(Vec<String>),
}

#[derive(Debug, Clone)]
pub enum RuleAction {
    /// Route as if the client had asked for this model.
    Model(String),
    Route(RouteSpec),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub source: Source,
    pub condition: Condition,
    /// Only for requests whose model matches one of these patterns.
    pub models: Option<Vec<String>>,
    pub action: RuleAction,
}

#[derive(Debug, Clone, Default)]
pub struct Access {
    /// A claim in the seed's shape: `{"openai": ["gpt-4"], "anthropic": [...]}`
    /// or a flat list of model patterns.
    pub claim: Option<Source>,
    /// A header or claim naming a team, looked up in `lists`.
    pub source: Option<Source>,
    pub lists: HashMap<String, Vec<String>>,
    /// Patterns for callers no claim or list covers; `None` denies them.
    pub default: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Downstream {
    pub backends: Vec<Backend>,
    pub aliases: HashMap<String, String>,
    pub exact: HashMap<String, RouteSpec>,
    pub patterns: Vec<ModelRule>,
    pub rules: Vec<Rule>,
    pub default: Option<RouteSpec>,
    pub access: Option<Access>,
    pub split_key: Source,
    pub strip_request_headers: Vec<String>,
    pub backend_header: bool,
    pub max_body_bytes: usize,
    pub max_event_bytes: usize,
    /// Upstream instances on the provider clusters adapt every attempt. When
    /// false, this instance adapts the request for the primary backend itself
    /// (path, model, Anthropic translation), so a failover list must stay
    /// within one OpenAI-compatible API and one model name.
    pub upstream_instances: bool,
    /// Send the client's address headers (`x-forwarded-for`, `x-real-ip`,
    /// `forwarded`) to providers. Off by default: providers need not know who
    /// the gateway's clients are.
    pub forward_client_address: bool,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// The backends this cluster's endpoints belong to. With one, every
    /// attempt is for it; with several (an aggregate cluster), each attempt's
    /// endpoint names its backend in its metadata (`aigw.backend`).
    pub backends: Vec<Backend>,
    pub backend_header: bool,
    pub max_body_bytes: usize,
    pub max_event_bytes: usize,
}

/// Parses and validates the plugin configuration (the JSON Envoy hands the
/// filter). Used by `on_configure` and by the tests that check every shipped
/// config and README example against this parser.
pub fn from_json(bytes: Option<&[u8]>) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_config(bytes)?;
    let max_body_bytes = match raw.max_body_bytes {
        Some(0) => return Err(ConfigError::new("max_body_bytes", "must be greater than 0")),
        Some(n) => at_most(n, MAX_BUFFER_BYTES, "max_body_bytes")?,
        None => DEFAULT_MAX_BODY_BYTES,
    };
    match raw.mode {
        RawMode::Upstream => upstream(raw, max_body_bytes).map(Config::Upstream),
        RawMode::Downstream => downstream(raw, max_body_bytes).map(|d| Config::Downstream(Box::new(d))),
    }
}

fn upstream(raw: RawConfig, max_body_bytes: usize) -> Result<Upstream, ConfigError> {
    let only_downstream: [(&str, bool); 9] = [
        ("aliases", !raw.aliases.is_empty()),
        ("models", !raw.models.is_empty()),
        ("rules", !raw.rules.is_empty()),
        ("default", raw.default.is_some()),
        ("access", raw.access.is_some()),
        ("split_key", raw.split_key.is_some()),
        ("strip_request_headers", !raw.strip_request_headers.is_empty()),
        ("upstream_instances", raw.upstream_instances),
        ("forward_client_address", raw.forward_client_address),
    ];
    if let Some((field, _)) = only_downstream.iter().find(|(_, set)| *set) {
        return Err(ConfigError::new(*field, "only allowed in downstream mode"));
    }
    let backends = match (raw.backend, raw.backends.is_empty()) {
        (Some(backend), true) => vec![backend_of(backend, "backend", true)?],
        (None, false) => {
            let mut backends: Vec<Backend> = Vec::with_capacity(raw.backends.len());
            for (i, backend) in raw.backends.into_iter().enumerate() {
                let path = index("backends", i);
                let backend = backend_of(backend, &path, true)?;
                if backends.iter().any(|b| b.name == backend.name) {
                    return Err(ConfigError::new(join(&path, "name"), format!("duplicate backend `{}`", backend.name)));
                }
                backends.push(backend);
            }
            backends
        }
        (Some(_), false) => return Err(ConfigError::new("backend", "use either `backend` or `backends`")),
        (None, true) => return Err(ConfigError::new("backend", "upstream mode needs `backend` or `backends`")),
    };
    let max_event_bytes = match raw.max_event_bytes {
        Some(0) => return Err(ConfigError::new("max_event_bytes", "must be greater than 0")),
        Some(n) => at_most(n, MAX_BUFFER_BYTES, "max_event_bytes")?,
        None => DEFAULT_MAX_EVENT_BYTES,
    };
    Ok(Upstream { backends, backend_header: raw.backend_header, max_body_bytes, max_event_bytes })
}

fn check_name(value: &str, path: &str, what: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::new(path, format!("{what} must not be empty")));
    }
    if value.len() > MAX_MODEL_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            path,
            format!("{what} must be printable ASCII without spaces, at most {MAX_MODEL_LEN} bytes"),
        ));
    }
    Ok(())
}

fn backend_of(raw: RawBackend, path: &str, upstream_instances: bool) -> Result<Backend, ConfigError> {
    check_name(&raw.name, &join(path, "name"), "a backend name")?;
    let route = raw.route.unwrap_or_else(|| raw.name.clone());
    check_name(&route, &join(path, "route"), "a route value")?;
    let path_prefix = raw.path_prefix.unwrap_or_default();
    if !path_prefix.is_empty() && (!path_prefix.starts_with('/') || path_prefix.ends_with('/')) {
        return Err(ConfigError::new(join(path, "path_prefix"), "must start with `/` and not end with `/`"));
    }
    let azure = raw.provider == Provider::AzureOpenai;
    let anthropic = raw.provider == Provider::Anthropic;
    if !azure && raw.deployment.is_some() {
        return Err(ConfigError::new(join(path, "deployment"), "only for `provider: azure_openai`"));
    }
    if !azure && raw.api_version.is_some() {
        return Err(ConfigError::new(join(path, "api_version"), "only for `provider: azure_openai`"));
    }
    if !anthropic && raw.anthropic_version.is_some() {
        return Err(ConfigError::new(join(path, "anthropic_version"), "only for `provider: anthropic`"));
    }
    if !anthropic && raw.default_max_tokens.is_some() {
        return Err(ConfigError::new(join(path, "default_max_tokens"), "only for `provider: anthropic`"));
    }
    let api_version = match (azure, raw.api_version) {
        (true, None) => {
            return Err(ConfigError::new(join(path, "api_version"), "required for `provider: azure_openai`"))
        }
        (_, Some(version)) => {
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
                return Err(ConfigError::new(join(path, "api_version"), "must look like `2024-10-21`"));
            }
            version
        }
        (false, None) => String::new(),
    };
    let deployment = raw.deployment.unwrap_or_else(|| if azure { "{model}".to_string() } else { String::new() });
    if azure && (deployment.is_empty() || !deployment.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?')) {
        return Err(ConfigError::new(
            join(path, "deployment"),
            "must be a deployment name (no `/` or `?`), `{model}` allowed",
        ));
    }
    let default_max_tokens = match raw.default_max_tokens {
        Some(0) => return Err(ConfigError::new(join(path, "default_max_tokens"), "must be greater than 0")),
        Some(n) => at_most(n, MAX_DEFAULT_MAX_TOKENS, &join(path, "default_max_tokens"))?,
        None => 4096,
    };
    Ok(Backend {
        name: raw.name,
        provider: raw.provider,
        route,
        path_prefix,
        deployment,
        api_version,
        anthropic_version: raw
            .anthropic_version
            .unwrap_or_else(|| aigw_shared::api::anthropic::API_VERSION.to_string()),
        default_max_tokens,
        upstream_instance: raw.upstream_instance.unwrap_or(upstream_instances),
    })
}

fn downstream(raw: RawConfig, max_body_bytes: usize) -> Result<Downstream, ConfigError> {
    if raw.backend.is_some() {
        return Err(ConfigError::new(
            "backend",
            "only allowed in upstream mode; list downstream backends in `backends`",
        ));
    }
    let max_event_bytes = match raw.max_event_bytes {
        Some(0) => return Err(ConfigError::new("max_event_bytes", "must be greater than 0")),
        Some(n) => at_most(n, MAX_BUFFER_BYTES, "max_event_bytes")?,
        None => DEFAULT_MAX_EVENT_BYTES,
    };
    let mut backends = Vec::with_capacity(raw.backends.len());
    let mut by_name = HashMap::new();
    for (i, backend) in raw.backends.into_iter().enumerate() {
        let path = index("backends", i);
        let backend = backend_of(backend, &path, raw.upstream_instances)?;
        if !backend.upstream_instance && backend.changes_head() {
            return Err(ConfigError::new(
                join(&path, "upstream_instance"),
                format!(
                    "backend `{}` ({}{}) needs another request path and headers, which only a model-router \
                     upstream instance on its cluster can set: set `upstream_instance: true` and add the \
                     upstream filter to the cluster (filters/model-router/README.md#upstream-mode)",
                    backend.name,
                    backend.provider.as_str(),
                    if backend.path_prefix.is_empty() { "" } else { ", path_prefix" }
                ),
            ));
        }
        if by_name.insert(backend.name.clone(), i).is_some() {
            return Err(ConfigError::new(join(&path, "name"), format!("duplicate backend `{}`", backend.name)));
        }
        backends.push(backend);
    }
    let ctx = Ctx { backends: &backends, by_name: &by_name };

    let mut exact = HashMap::new();
    let mut patterns = Vec::new();
    for (i, model) in raw.models.into_iter().enumerate() {
        let path = index("models", i);
        let route = ctx.route(model.route, &path)?;
        match (model.name, model.prefix, model.regex) {
            (Some(name), None, None) => {
                check_name(&name, &join(&path, "name"), "a model name")?;
                if exact.insert(name.clone(), route).is_some() {
                    return Err(ConfigError::new(join(&path, "name"), format!("model `{name}` is listed twice")));
                }
            }
            (None, Some(prefix), None) => {
                if prefix.is_empty() {
                    return Err(ConfigError::new(join(&path, "prefix"), "must not be empty"));
                }
                let regex = compile(&format!("^{}(.*)$", regex_lite::escape(&prefix)), &join(&path, "prefix"))?;
                patterns.push(ModelRule { matcher: Matcher::Pattern(regex), route });
            }
            (None, None, Some(pattern)) => {
                // Anchor the whole name: `anthropic/(.*)` must not match `x-anthropic/y`.
                let regex = compile(&format!("^(?:{pattern})$"), &join(&path, "regex"))?;
                check_captures(&regex, &route, &join(&path, "targets"))?;
                patterns.push(ModelRule { matcher: Matcher::Pattern(regex), route });
            }
            _ => return Err(ConfigError::new(path, "needs exactly one of `name`, `prefix` or `regex`")),
        }
    }

    let mut aliases = HashMap::new();
    for (alias, target) in raw.aliases {
        let path = join("aliases", &alias);
        check_name(&alias, &path, "an alias")?;
        check_name(&target, &path, "an alias target")?;
        aliases.insert(alias, target);
    }
    // Aliases resolve one step; a chain would make the table hard to read.
    for (alias, target) in &aliases {
        if aliases.contains_key(target) {
            return Err(ConfigError::new(
                join("aliases", alias),
                format!("points to `{target}`, which is itself an alias; point to the final model name"),
            ));
        }
    }

    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, rule) in raw.rules.into_iter().enumerate() {
        let path = index("rules", i);
        let condition = match (rule.when.equals, rule.when.one_of) {
            (None, None) => Condition::Present,
            (Some(value), None) => Condition::Equals(value),
            (None, Some(values)) if !values.is_empty() => Condition::OneOf(values),
            (None, Some(_)) => return Err(ConfigError::new(join(&path, "when.one_of"), "must not be empty")),
            (Some(_), Some(_)) => return Err(ConfigError::new(join(&path, "when"), "use either `equals` or `one_of`")),
        };
        let has_route = rule.route.targets.is_some() || rule.route.splits.is_some();
        let action = match (rule.model, has_route) {
            (Some(model), false) => {
                if rule.route.route.is_some() {
                    return Err(ConfigError::new(join(&path, "route"), "not allowed with `model`"));
                }
                check_name(&model, &join(&path, "model"), "a model name")?;
                RuleAction::Model(model)
            }
            (None, true) => RuleAction::Route(ctx.route(rule.route, &path)?),
            _ => return Err(ConfigError::new(path, "needs exactly one of `model`, `targets` or `splits`")),
        };
        if let Some(models) = &rule.models {
            if models.is_empty() {
                return Err(ConfigError::new(
                    join(&path, "models"),
                    "must not be empty (omit it to match every model)",
                ));
            }
        }
        rules.push(Rule {
            name: rule.name.unwrap_or_else(|| format!("rule{i}")),
            source: rule.when.source,
            condition,
            models: rule.models,
            action,
        });
    }

    let default = match raw.default {
        Some(route) => Some(ctx.route(route, "default")?),
        None => None,
    };

    let access = match raw.access {
        None => None,
        Some(access) => {
            if access.claim.is_none() && access.source.is_none() && access.default.is_none() {
                return Err(ConfigError::new("access", "needs `claim`, `source` with `lists`, or `default`"));
            }
            if access.source.is_some() == access.lists.is_empty() {
                return Err(ConfigError::new("access", "`source` and `lists` go together"));
            }
            Some(Access {
                claim: access.claim,
                source: access.source,
                lists: access.lists.into_iter().collect(),
                default: access.default,
            })
        }
    };

    let mut strip_request_headers = Vec::new();
    for (i, header) in raw.strip_request_headers.iter().enumerate() {
        let lower = header.to_ascii_lowercase();
        if lower.is_empty() || lower.starts_with(':') || !lower.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(index("strip_request_headers", i), "must be a header name"));
        }
        strip_request_headers.push(lower);
    }

    Ok(Downstream {
        backends,
        aliases,
        exact,
        patterns,
        rules,
        default,
        access,
        split_key: raw.split_key.unwrap_or_else(|| Source::Header("x-request-id".to_string())),
        strip_request_headers,
        backend_header: raw.backend_header,
        max_body_bytes,
        max_event_bytes,
        upstream_instances: raw.upstream_instances,
        forward_client_address: raw.forward_client_address,
    })
}

fn compile(pattern: &str, path: &str) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|err| ConfigError::new(path, format!("invalid regex: {err}")))
}

/// Every `$n` / `${name}` a target's model template uses must exist.
fn check_captures(regex: &Regex, route: &RouteSpec, path: &str) -> Result<(), ConfigError> {
    let names: HashSet<&str> = regex.capture_names().flatten().collect();
    let count = regex.captures_len();
    let lists: Vec<&TargetList> = match route {
        RouteSpec::Targets(list) => vec![list],
        RouteSpec::Splits { splits, .. } => splits.iter().map(|(_, list)| list).collect(),
    };
    for list in lists {
        for target in &list.targets {
            let Some(template) = &target.model else { continue };
            for reference in template_references(template) {
                let known = match reference.parse::<usize>() {
                    Ok(n) => n < count,
                    Err(_) => names.contains(reference.as_str()),
                };
                if !known {
                    return Err(ConfigError::new(
                        path,
                        format!("model template refers to `${reference}`, which the regex does not capture"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The group references in a replacement template (`$1`, `${name}`; `$$` is a literal `$`).
fn template_references(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = template.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'$') {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let end = template.get(i + 2..).and_then(|rest| rest.find('}'));
                match end {
                    Some(len) => {
                        out.push(template.get(i + 2..i + 2 + len).unwrap_or("").to_string());
                        i += 3 + len;
                    }
                    None => i += 2,
                }
            }
            _ => {
                let name: String = template
                    .get(i + 1..)
                    .unwrap_or("")
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                i += 1 + name.len();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        }
    }
    out
}

struct Ctx<'a> {
    backends: &'a [Backend],
    by_name: &'a HashMap<String, usize>,
}

impl Ctx<'_> {
    fn targets(&self, raw: Vec<RawTarget>, route: Option<String>, path: &str) -> Result<TargetList, ConfigError> {
        let targets_path = join(path, "targets");
        if raw.is_empty() {
            return Err(ConfigError::new(targets_path, "must list at least one backend"));
        }
        let mut targets = Vec::with_capacity(raw.len());
        let mut seen = HashSet::new();
        for (i, target) in raw.into_iter().enumerate() {
            let target_path = index(&targets_path, i);
            let Some(&backend) = self.by_name.get(&target.backend) else {
                return Err(ConfigError::new(
                    join(&target_path, "backend"),
                    format!("unknown backend `{}` (not in `backends`)", target.backend),
                ));
            };
            if !seen.insert(backend) {
                return Err(ConfigError::new(
                    join(&target_path, "backend"),
                    "a backend may appear once per failover list",
                ));
            }
            if let Some(model) = &target.model {
                if model.is_empty() {
                    return Err(ConfigError::new(join(&target_path, "model"), "must not be empty"));
                }
            }
            targets.push(Target { backend, model: target.model });
        }
        let all_adapted_upstream =
            targets.iter().all(|t| self.backends.get(t.backend).is_some_and(|b| b.upstream_instance));
        if !all_adapted_upstream && targets.len() > 1 {
            // Without per-attempt adaptation every backend gets the request
            // exactly as adapted for the first one.
            let first = targets.first().map(|t| t.model.clone()).unwrap_or_default();
            let uniform = targets.iter().all(|t| {
                t.model == first
                    && self
                        .backends
                        .get(t.backend)
                        .is_some_and(|b| b.provider == Provider::Openai && b.path_prefix.is_empty())
            });
            if !uniform {
                return Err(ConfigError::new(
                    targets_path,
                    "failover across providers, models or path prefixes needs `upstream_instances: true` \
                     (a model-router upstream filter on the clusters adapts each attempt)",
                ));
            }
        }
        let route = match route {
            Some(route) => {
                check_name(&route, &join(path, "route"), "a route value")?;
                route
            }
            None => match targets.as_slice() {
                [only] => self.backends.get(only.backend).map(|b| b.route.clone()).unwrap_or_default(),
                _ => targets
                    .iter()
                    .filter_map(|t| self.backends.get(t.backend).map(|b| b.name.as_str()))
                    .collect::<Vec<_>>()
                    .join("+"),
            },
        };
        Ok(TargetList { targets, route })
    }

    fn route(&self, raw: RawRoute, path: &str) -> Result<RouteSpec, ConfigError> {
        match (raw.targets, raw.splits) {
            (Some(targets), None) => Ok(RouteSpec::Targets(self.targets(targets, raw.route, path)?)),
            (None, Some(splits)) => {
                if raw.route.is_some() {
                    return Err(ConfigError::new(join(path, "route"), "set `route` on each split instead"));
                }
                if splits.is_empty() {
                    return Err(ConfigError::new(join(path, "splits"), "must not be empty"));
                }
                let mut total: u32 = 0;
                let mut out = Vec::with_capacity(splits.len());
                for (i, split) in splits.into_iter().enumerate() {
                    let split_path = index(&join(path, "splits"), i);
                    if split.weight == 0 {
                        return Err(ConfigError::new(join(&split_path, "weight"), "must be greater than 0"));
                    }
                    total = total
                        .checked_add(split.weight)
                        .ok_or_else(|| ConfigError::new(join(&split_path, "weight"), "weights add up to too much"))?;
                    out.push((total, self.targets(split.targets, split.route, &split_path)?));
                }
                Ok(RouteSpec::Splits { splits: out, total })
            }
            _ => Err(ConfigError::new(path.to_string(), "needs exactly one of `targets` or `splits`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Downstream {
        match from_json(Some(text.as_bytes())).unwrap() {
            Config::Downstream(config) => *config,
            Config::Upstream(_) => panic!("expected downstream"),
        }
    }

    fn err(text: &str) -> ConfigError {
        from_json(Some(text.as_bytes())).unwrap_err()
    }

    const BACKENDS: &str = r#""backends": [
        {"name": "openai"},
        {"name": "anthropic", "provider": "anthropic", "upstream_instance": true},
        {"name": "azure", "provider": "azure_openai", "upstream_instance": true, "api_version": "2024-10-21"}
    ]"#;

    #[test]
    fn empty_config_is_a_router_with_no_models() {
        let config = ok("{}");
        assert!(config.backends.is_empty() && config.exact.is_empty() && config.default.is_none());
        assert!(config.backend_header);
        assert_eq!(config.split_key, Source::Header("x-request-id".into()));
    }

    #[test]
    fn full_config_compiles() {
        let config = ok(&format!(
            r#"{{ {BACKENDS}, "upstream_instances": true,
            "aliases": {{"fast": "gpt-4o-mini"}},
            "models": [
                {{"name": "gpt-4o-mini", "targets": [{{"backend": "openai"}}]}},
                {{"prefix": "claude-", "targets": [{{"backend": "anthropic"}}]}},
                {{"regex": "anthropic/(?P<m>.*)", "targets": [{{"backend": "anthropic", "model": "${{m}}"}}]}},
                {{"name": "ha", "targets": [{{"backend": "openai", "model": "gpt-4o"}}, {{"backend": "azure", "model": "gpt-4o"}}]}},
                {{"name": "canary", "splits": [{{"weight": 9, "targets": [{{"backend": "openai"}}]}}, {{"weight": 1, "targets": [{{"backend": "anthropic", "model": "claude-x"}}], "route": "canary-b"}}]}}
            ],
            "rules": [{{"name": "budget", "when": {{"source": "filter_state:aigw.budget.exceeded", "equals": "1"}}, "models": ["gpt-4o*"], "model": "fast"}}],
            "default": {{"targets": [{{"backend": "openai"}}]}},
            "access": {{"claim": "jwt:llms", "source": "header:x-team", "lists": {{"red": ["*"]}}}}
        }}"#
        ));
        assert_eq!(config.backends.len(), 3);
        assert_eq!(config.backends[2].deployment, "{model}");
        assert_eq!(config.backends[1].anthropic_version, "2023-06-01");
        let RouteSpec::Targets(ha) = &config.exact["ha"] else { panic!() };
        assert_eq!(ha.route, "openai+azure");
        let RouteSpec::Splits { splits, total } = &config.exact["canary"] else { panic!() };
        assert_eq!(*total, 10);
        assert_eq!(splits[0].0, 9);
        assert_eq!(splits[1].1.route, "canary-b");
        assert_eq!(config.patterns.len(), 2);
        assert_eq!(config.rules[0].name, "budget");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(String, &str, &str)> = vec![
            (r#"{"backends": [{"name": "a", "provider": "bedrock"}]}"#.into(), "backends[0].provider", "unknown variant"),
            (r#"{"backends": [{"name": "a"}, {"name": "a"}]}"#.into(), "backends[1].name", "duplicate"),
            (r#"{"backends": [{"name": "a", "provider": "azure_openai", "upstream_instance": true}]}"#.into(), "backends[0].api_version", "required"),
            (r#"{"backends": [{"name": "a", "provider": "anthropic"}]}"#.into(), "backends[0].upstream_instance", "only a model-router upstream instance"),
            (r#"{"backends": [{"name": "a", "path_prefix": "/v"}]}"#.into(), "backends[0].upstream_instance", "path_prefix"),
            (r#"{"backends": [{"name": "a", "deployment": "x"}]}"#.into(), "backends[0].deployment", "only for"),
            (r#"{"backends": [{"name": "a b"}]}"#.into(), "backends[0].name", "printable"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"name": "m", "targets": [{{"backend": "nope"}}]}}]}}"#), "models[0].targets[0].backend", "unknown backend"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"name": "m", "targets": []}}]}}"#), "models[0].targets", "at least one"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"targets": [{{"backend": "openai"}}]}}]}}"#), "models[0]", "exactly one of `name`"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"name": "m"}}]}}"#), "models[0]", "exactly one of `targets`"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"regex": "(", "targets": [{{"backend": "openai"}}]}}]}}"#), "models[0].regex", "invalid regex"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"regex": "a/(.*)", "targets": [{{"backend": "openai", "model": "$2"}}]}}]}}"#), "models[0].targets", "`$2`"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"name": "m", "targets": [{{"backend": "openai"}}, {{"backend": "openai"}}]}}]}}"#), "models[0].targets[1].backend", "once"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"name": "m", "splits": [{{"weight": 0, "targets": [{{"backend": "openai"}}]}}]}}]}}"#), "models[0].splits[0].weight", "greater"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"name": "m", "targets": [{{"backend": "openai"}}]}}, {{"name": "m", "targets": [{{"backend": "openai"}}]}}]}}"#), "models[1].name", "twice"),
            (r#"{"aliases": {"a": "b", "b": "c"}}"#.into(), "aliases.a", "itself an alias"),
            (r#"{"rules": [{"when": {"source": "jwt:team"}}]}"#.into(), "rules[0]", "exactly one of `model`"),
            (r#"{"rules": [{"when": {"source": "cookie:x"}, "model": "m"}]}"#.into(), "rules[0].when", "unknown attribute kind"),
            (r#"{"rules": [{"when": {"source": "jwt:team", "one_of": []}, "model": "m"}]}"#.into(), "rules[0].when.one_of", "empty"),
            (r#"{"access": {}}"#.into(), "access", "needs"),
            (r#"{"access": {"source": "header:x-team"}}"#.into(), "access", "go together"),
            (r#"{"mode": "upstream"}"#.into(), "backend", "needs `backend` or `backends`"),
            (r#"{"mode": "upstream", "backend": {"name": "a"}, "backends": [{"name": "b"}]}"#.into(), "backend", "either"),
            (r#"{"mode": "upstream", "backends": [{"name": "a"}, {"name": "a"}]}"#.into(), "backends[1].name", "duplicate"),
            (r#"{"mode": "upstream", "backend": {"name": "a"}, "models": [{"name": "m", "targets": [{"backend": "a"}]}]}"#.into(), "models", "downstream"),
            (r#"{"backend": {"name": "a"}}"#.into(), "backend", "upstream mode"),
            (r#"{"mode": "sideways"}"#.into(), "mode", "unknown variant"),
            (r#"{"max_body_bytes": 0}"#.into(), "max_body_bytes", "greater"),
            (r#"{"max_body_bytes": 1000000000000}"#.into(), "max_body_bytes", "at most 268435456"),
            (r#"{"max_event_bytes": 1000000000000}"#.into(), "max_event_bytes", "at most"),
            (r#"{"mode": "upstream", "backend": {"name": "a"}, "max_event_bytes": 1000000000000}"#.into(), "max_event_bytes", "at most"),
            (r#"{"mode": "upstream", "backend": {"name": "a", "provider": "anthropic", "default_max_tokens": 18446744073709551615}}"#.into(), "backend.default_max_tokens", "at most"),
            (format!(r#"{{ {BACKENDS}, "models": [{{"name": "m", "targets": [{{"backend": "anthropic"}}, {{"backend": "openai"}}]}}]}}"#), "models[0].targets", "upstream_instances"),
            (r#"{"backends": [{"name": "a"}, {"name": "b"}], "models": [{"name": "m", "targets": [{"backend": "a", "model": "x"}, {"backend": "b", "model": "y"}]}]}"#.into(), "models[0].targets", "upstream_instances"),
            (r#"{"mode": "upstream", "backend": {"name": "a"}, "upstream_instances": true}"#.into(), "upstream_instances", "downstream"),
            (r#"{"modles": []}"#.into(), "modles", "unknown field"),
        ];
        for (text, path, reason) in cases {
            let error = err(&text);
            assert_eq!(error.path, path, "{text}: {error}");
            assert!(error.reason.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn upstream_mode() {
        let Config::Upstream(config) = from_json(Some(
            br#"{"mode": "upstream", "backend": {"name": "az", "provider": "azure_openai", "deployment": "gpt4o-prod", "api_version": "2024-10-21"}, "backend_header": false}"#,
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(config.backends[0].deployment, "gpt4o-prod");
        assert!(!config.backend_header);
        assert_eq!(config.max_event_bytes, DEFAULT_MAX_EVENT_BYTES);
    }

    #[test]
    fn upstream_mode_with_several_backends() {
        let Config::Upstream(config) = from_json(Some(
            br#"{"mode": "upstream", "backends": [{"name": "a"}, {"name": "b", "provider": "anthropic"}]}"#,
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(config.backends.len(), 2);
        assert_eq!(config.backends[1].provider, Provider::Anthropic);
    }

    #[test]
    fn template_references_are_found() {
        assert_eq!(template_references("$1-${name}-$$-$x_y"), vec!["1", "name", "x_y"]);
        assert!(template_references("plain").is_empty());
    }
}
