//! Plugin configuration: raw serde structs (unknown fields rejected) compiled
//! into a validated form once per VM. Every error names the field at fault,
//! e.g. `semantic.threshold: must be between 0 and 1, got 1.5`. README.md
//! documents every field.

use aigw_shared::attributes::Source;
use aigw_shared::body::DEFAULT_MAX_BODY_BYTES;
use aigw_shared::config::{at_most, join, parse_config, ConfigError, MAX_BUFFER_BYTES};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The tenant of requests whose tenant attribute is absent.
pub const DEFAULT_TENANT: &str = "default";
/// The most entries one cache may hold: the index of every slot is read on
/// each lookup (56 bytes a slot), so this bounds the work per request.
pub const MAX_ENTRIES: usize = 100_000;

/// What the semantic lookup embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedInput {
    /// The text of the last user message; the rest of the conversation must match exactly.
    LastUserMessage,
    /// Every message's text; only the parameters and tools must match exactly.
    Conversation,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    cache_when_sampling: Option<bool>,
    #[serde(default)]
    max_entries: Option<usize>,
    #[serde(default)]
    max_bytes: Option<usize>,
    #[serde(default)]
    max_entry_bytes: Option<usize>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    semantic: Option<RawSemantic>,
    #[serde(default)]
    tenants: BTreeMap<String, RawOverride>,
    #[serde(default)]
    models: BTreeMap<String, RawOverride>,
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    store: Option<RawStore>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    chroma: Option<RawChroma>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChroma {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    collection: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSemantic {
    cluster: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    input: Option<EmbedInput>,
    #[serde(default)]
    max_input_bytes: Option<usize>,
    #[serde(default)]
    max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    semantic: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: f64,
    output: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    path: String,
    token: String,
}

/// The embeddings endpoint (OpenAI-compatible `POST /v1/embeddings`).
#[derive(Debug, Clone)]
pub struct Semantic {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub model: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub threshold: f64,
    pub input: EmbedInput,
    pub max_input_bytes: usize,
    pub max_response_bytes: usize,
}

/// The external vector store shared by several Envoy replicas (Chroma's HTTP API, see `chroma.rs`).
#[derive(Debug, Clone)]
pub struct Chroma {
    pub cluster: String,
    pub authority: String,
    /// Chroma's own tenant and database (path segments), not the cache's tenant.
    pub tenant: String,
    pub database: String,
    pub collection: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// Per-tenant or per-model settings; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Override {
    pub enabled: Option<bool>,
    pub ttl_seconds: Option<u64>,
    pub threshold: Option<f64>,
    pub semantic: Option<bool>,
}

/// USD per million tokens (the same unit as token-counter's `prices`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// The guarded admin endpoint that clears a tenant's entries.
#[derive(Debug, Clone)]
pub struct Admin {
    pub path: String,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub tenant: Source,
    pub enabled: bool,
    pub ttl_seconds: u64,
    pub cache_when_sampling: bool,
    pub max_entries: usize,
    pub max_bytes: usize,
    pub max_entry_bytes: usize,
    pub max_body_bytes: usize,
    pub semantic: Option<Semantic>,
    pub tenants: BTreeMap<String, Override>,
    pub models: BTreeMap<String, Override>,
    /// Model pattern (exact, or a prefix ending in `*`) and price, longest pattern first.
    pub prices: Vec<(String, Price)>,
    pub admin: Option<Admin>,
    /// `None`: the embedded shared-data store only.
    pub store: Option<Chroma>,
}

/// What applies to one request after the tenant and model overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub enabled: bool,
    pub ttl_seconds: u64,
    /// `None`: no semantic lookup (exact matches only).
    pub threshold: Option<f64>,
}

impl Config {
    /// Settings for a request: defaults, then the model's entry, then the
    /// tenant's (the most specific wins); either may disable the cache.
    pub fn policy(&self, tenant: &str, model: &str) -> Policy {
        let model_entry = self.models.get(model).cloned().unwrap_or_default();
        let tenant_entry = self.tenants.get(tenant).cloned().unwrap_or_default();
        let enabled = self.enabled && model_entry.enabled.unwrap_or(true) && tenant_entry.enabled.unwrap_or(true);
        let ttl_seconds = tenant_entry.ttl_seconds.or(model_entry.ttl_seconds).unwrap_or(self.ttl_seconds);
        let semantic_on = tenant_entry.semantic.or(model_entry.semantic).unwrap_or(true);
        let threshold = self
            .semantic
            .as_ref()
            .filter(|_| semantic_on)
            .map(|semantic| tenant_entry.threshold.or(model_entry.threshold).unwrap_or(semantic.threshold));
        Policy { enabled, ttl_seconds, threshold }
    }

    /// The price of a model, if configured.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => model == pattern,
            })
            .map(|(_, price)| *price)
    }
}

fn threshold(value: f64, path: &str) -> Result<f64, ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(ConfigError::new(path, format!("must be above 0 and at most 1, got {value}")))
    }
}

fn ttl(value: u64, path: &str) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(path, "must be at least 1 second"));
    }
    // Ten years: far beyond any sane TTL, far from overflowing the clock arithmetic.
    at_most(value, 315_360_000, path)
}

fn compile_override(raw: RawOverride, path: &str) -> Result<Override, ConfigError> {
    Ok(Override {
        enabled: raw.enabled,
        ttl_seconds: raw.ttl_seconds.map(|v| ttl(v, &join(path, "ttl_seconds"))).transpose()?,
        threshold: raw.threshold.map(|v| threshold(v, &join(path, "threshold"))).transpose()?,
        semantic: raw.semantic,
    })
}

fn compile_semantic(raw: RawSemantic) -> Result<Semantic, ConfigError> {
    if raw.cluster.trim().is_empty() {
        return Err(ConfigError::new("semantic.cluster", "must name an Envoy cluster"));
    }
    let path = raw.path.unwrap_or_else(|| "/v1/embeddings".to_string());
    if !path.starts_with('/') {
        return Err(ConfigError::new("semantic.path", "must start with /"));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(500);
    if timeout_ms == 0 {
        return Err(ConfigError::new("semantic.timeout_ms", "must be at least 1"));
    }
    let headers = headers(raw.headers, "semantic.headers")?;
    Ok(Semantic {
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        path,
        model: raw.model.unwrap_or_else(|| "text-embedding-3-small".to_string()),
        headers,
        timeout: Duration::from_millis(at_most(timeout_ms, 60_000, "semantic.timeout_ms")?),
        threshold: threshold(raw.threshold.unwrap_or(0.92), "semantic.threshold")?,
        input: raw.input.unwrap_or(EmbedInput::LastUserMessage),
        max_input_bytes: at_most(
            raw.max_input_bytes.unwrap_or(8 * 1024),
            MAX_BUFFER_BYTES,
            "semantic.max_input_bytes",
        )?,
        max_response_bytes: at_most(
            raw.max_response_bytes.unwrap_or(1024 * 1024),
            MAX_BUFFER_BYTES,
            "semantic.max_response_bytes",
        )?,
    })
}

fn headers(raw: BTreeMap<String, String>, path: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers = Vec::new();
    for (name, value) in raw {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(':') || lower.is_empty() {
            return Err(ConfigError::new(join(path, &name), "pseudo-headers are set by the filter"));
        }
        headers.push((lower, value));
    }
    Ok(headers)
}

/// A Chroma name that goes into a URL path: letters, digits, `.`, `_`, `-`.
fn path_segment(value: Option<String>, default: &str, path: &str) -> Result<String, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_string());
    let valid = !value.is_empty()
        && value.len() <= 128
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(value)
    } else {
        Err(ConfigError::new(path, "must be 1 to 128 letters, digits, '.', '_' or '-'"))
    }
}

fn compile_store(raw: RawStore, semantic: Option<&Semantic>) -> Result<Option<Chroma>, ConfigError> {
    let Some(raw) = raw.chroma else {
        return Err(ConfigError::new("store", "must name a store: {\"chroma\": {...}}"));
    };
    if semantic.is_none() {
        return Err(ConfigError::new("store.chroma", "needs `semantic`: the store holds the embedded questions"));
    }
    if raw.cluster.trim().is_empty() {
        return Err(ConfigError::new("store.chroma.cluster", "must name an Envoy cluster"));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(200);
    if timeout_ms == 0 {
        return Err(ConfigError::new("store.chroma.timeout_ms", "must be at least 1"));
    }
    Ok(Some(Chroma {
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        tenant: path_segment(raw.tenant, "default_tenant", "store.chroma.tenant")?,
        database: path_segment(raw.database, "default_database", "store.chroma.database")?,
        collection: path_segment(raw.collection, "aigw-semantic-cache", "store.chroma.collection")?,
        headers: headers(raw.headers, "store.chroma.headers")?,
        timeout: Duration::from_millis(at_most(timeout_ms, 60_000, "store.chroma.timeout_ms")?),
    }))
}

/// Parses and validates the plugin configuration (absent or blank means `{}`).
pub fn from_json(bytes: Option<&[u8]>) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_config(bytes)?;
    let tenant = Source::parse(raw.tenant.as_deref().unwrap_or("header:x-aigw-client"))
        .map_err(|reason| ConfigError::new("tenant", reason))?;
    let max_entries = raw.max_entries.unwrap_or(1000);
    if max_entries == 0 {
        return Err(ConfigError::new("max_entries", "must be at least 1"));
    }
    let max_entries = at_most(max_entries, MAX_ENTRIES, "max_entries")?;
    let max_bytes = at_most(raw.max_bytes.unwrap_or(64 * 1024 * 1024), MAX_BUFFER_BYTES, "max_bytes")?;
    let max_entry_bytes = at_most(raw.max_entry_bytes.unwrap_or(256 * 1024), MAX_BUFFER_BYTES, "max_entry_bytes")?;
    if max_entry_bytes > max_bytes {
        return Err(ConfigError::new("max_entry_bytes", "must not be above max_bytes"));
    }
    let max_body_bytes =
        at_most(raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES), MAX_BUFFER_BYTES, "max_body_bytes")?;
    let mut tenants = BTreeMap::new();
    for (name, entry) in raw.tenants {
        let compiled = compile_override(entry, &join("tenants", &name))?;
        tenants.insert(name, compiled);
    }
    let mut models = BTreeMap::new();
    for (name, entry) in raw.models {
        let compiled = compile_override(entry, &join("models", &name))?;
        models.insert(name, compiled);
    }
    let mut prices = Vec::new();
    for (pattern, price) in raw.prices {
        let path = join("prices", &pattern);
        for (field, value) in [("input", price.input), ("output", price.output)] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::new(join(&path, field), "must be a non-negative number"));
            }
        }
        prices.push((pattern, Price { input: price.input, output: price.output }));
    }
    // Longest pattern first, so `gpt-4o-mini*` wins over `gpt-4o*`.
    prices.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    let admin = match raw.admin {
        Some(admin) => {
            if !admin.path.starts_with('/') {
                return Err(ConfigError::new("admin.path", "must start with /"));
            }
            if admin.token.len() < 16 {
                return Err(ConfigError::new("admin.token", "must be at least 16 characters"));
            }
            Some(Admin { path: admin.path, token: admin.token })
        }
        None => None,
    };
    let semantic = raw.semantic.map(compile_semantic).transpose()?;
    let store = match raw.store {
        Some(store) => compile_store(store, semantic.as_ref())?,
        None => None,
    };
    Ok(Config {
        tenant,
        enabled: raw.enabled.unwrap_or(true),
        ttl_seconds: ttl(raw.ttl_seconds.unwrap_or(3600), "ttl_seconds")?,
        cache_when_sampling: raw.cache_when_sampling.unwrap_or(false),
        max_entries,
        max_bytes,
        max_entry_bytes,
        max_body_bytes,
        semantic,
        tenants,
        models,
        prices,
        admin,
        store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_json(Some(text.as_bytes()))
    }

    #[test]
    fn defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.tenant, Source::Header("x-aigw-client".into()));
        assert_eq!(config.max_entries, 1000);
        assert_eq!(config.ttl_seconds, 3600);
        assert!(config.semantic.is_none());
        assert!(!config.cache_when_sampling);
        assert_eq!(config.policy("t", "m"), Policy { enabled: true, ttl_seconds: 3600, threshold: None });
    }

    #[test]
    fn overrides_tenant_over_model_over_default() {
        let config = parse(
            r#"{"semantic": {"cluster": "mock", "threshold": 0.9},
                "models": {"gpt-4o": {"ttl_seconds": 60, "threshold": 0.95}, "o1": {"enabled": false}},
                "tenants": {"retail": {"ttl_seconds": 30}, "wealth": {"semantic": false}, "off": {"enabled": false}}}"#,
        )
        .unwrap();
        assert_eq!(config.policy("x", "m"), Policy { enabled: true, ttl_seconds: 3600, threshold: Some(0.9) });
        assert_eq!(config.policy("x", "gpt-4o"), Policy { enabled: true, ttl_seconds: 60, threshold: Some(0.95) });
        assert_eq!(config.policy("retail", "gpt-4o").ttl_seconds, 30);
        assert_eq!(config.policy("wealth", "m").threshold, None);
        assert!(!config.policy("off", "m").enabled);
        assert!(!config.policy("retail", "o1").enabled);
    }

    #[test]
    fn prices_longest_pattern_first() {
        let config = parse(
            r#"{"prices": {"gpt-4o*": {"input": 2.5, "output": 10}, "gpt-4o-mini*": {"input": 0.15, "output": 0.6}}}"#,
        )
        .unwrap();
        assert_eq!(config.price("gpt-4o-mini-2024").map(|p| p.input), Some(0.15));
        assert_eq!(config.price("gpt-4o").map(|p| p.output), Some(10.0));
        assert_eq!(config.price("claude"), None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"semantic": {"cluster": "c", "threshold": 1.5}}"#, "semantic.threshold"),
            (r#"{"semantic": {"cluster": ""}}"#, "semantic.cluster"),
            (r#"{"tenants": {"a": {"ttl_seconds": 0}}}"#, "tenants.a.ttl_seconds"),
            (r#"{"max_entries": 0}"#, "max_entries"),
            (r#"{"max_entries": 1000000}"#, "max_entries"),
            (r#"{"admin": {"path": "/x", "token": "short"}}"#, "admin.token"),
            (r#"{"tenant": "bogus"}"#, "tenant"),
            (r#"{"max_entry_bytes": 10, "max_bytes": 5}"#, "max_entry_bytes"),
            (r#"{"prices": {"m": {"input": -1, "output": 1}}}"#, "prices.m.input"),
            (r#"{"store": {}}"#, "store"),
            (r#"{"store": {"chroma": {"cluster": "chroma"}}}"#, "store.chroma"),
            (r#"{"semantic": {"cluster": "e"}, "store": {"chroma": {"cluster": " "}}}"#, "store.chroma.cluster"),
            (
                r#"{"semantic": {"cluster": "e"}, "store": {"chroma": {"cluster": "c", "timeout_ms": 0}}}"#,
                "store.chroma.timeout_ms",
            ),
            (
                r#"{"semantic": {"cluster": "e"}, "store": {"chroma": {"cluster": "c", "collection": "a/b"}}}"#,
                "store.chroma.collection",
            ),
            (
                r#"{"semantic": {"cluster": "e"}, "store": {"chroma": {"cluster": "c", "headers": {":path": "x"}}}}"#,
                "store.chroma.headers.:path",
            ),
        ];
        for (text, path) in cases {
            let err = parse(text).err().unwrap_or_else(|| panic!("{text} accepted"));
            assert_eq!(err.path, path, "{text}: {err}");
        }
        assert!(parse(r#"{"unknown": 1}"#).is_err());
        assert!(parse(r#"{"semantic": {"cluster": "e"}, "store": {"chroma": {"cluster": "c", "bogus": 1}}}"#).is_err());
    }

    #[test]
    fn store_errors_give_the_field_and_the_reason() {
        let with = |chroma: &str| format!(r#"{{"semantic": {{"cluster": "e"}}, "store": {{"chroma": {chroma}}}}}"#);
        let cases = [
            (r#"{"store": {}}"#.to_string(), "store", "must name a store"),
            (r#"{"store": {"chroma": {"cluster": "c"}}}"#.to_string(), "store.chroma", "needs `semantic`"),
            (with(r#"{"cluster": ""}"#), "store.chroma.cluster", "must name an Envoy cluster"),
            (with(r#"{"cluster": "c", "timeout_ms": 0}"#), "store.chroma.timeout_ms", "at least 1"),
            (with(r#"{"cluster": "c", "timeout_ms": 60001}"#), "store.chroma.timeout_ms", "at most 60000, got 60001"),
            (with(r#"{"cluster": "c", "tenant": ""}"#), "store.chroma.tenant", "1 to 128 letters"),
            (with(r#"{"cluster": "c", "database": "a b"}"#), "store.chroma.database", "1 to 128 letters"),
            (with(r#"{"cluster": "c", "collection": "../x"}"#), "store.chroma.collection", "1 to 128 letters"),
            (
                with(r#"{"cluster": "c", "headers": {":authority": "x"}}"#),
                "store.chroma.headers.:authority",
                "pseudo-headers",
            ),
        ];
        for (text, path, reason) in cases {
            let err = parse(&text).err().unwrap_or_else(|| panic!("{text} accepted"));
            assert_eq!(err.path, path, "{text}: {err}");
            assert!(err.reason.contains(reason), "{text}: {err}");
        }
        let missing = parse(&with("{}")).err().unwrap();
        assert!(missing.to_string().contains("cluster"), "{missing}");
    }

    #[test]
    fn the_store_defaults_to_shared_data_and_chroma_has_defaults() {
        assert!(parse("{}").unwrap().store.is_none());
        let config = parse(r#"{"semantic": {"cluster": "e"}, "store": {"chroma": {"cluster": "chroma"}}}"#).unwrap();
        let chroma = config.store.unwrap();
        assert_eq!(chroma.authority, "chroma");
        assert_eq!(chroma.collection, "aigw-semantic-cache");
        assert_eq!((chroma.tenant.as_str(), chroma.database.as_str()), ("default_tenant", "default_database"));
        assert_eq!(chroma.timeout, Duration::from_millis(200));
        let full = parse(
            r#"{"semantic": {"cluster": "e"}, "store": {"chroma": {"cluster": "chroma", "authority": "chroma.internal:8000",
                "tenant": "t1", "database": "db_1", "collection": "c.2", "headers": {"X-Chroma-Token": "k"}, "timeout_ms": 50}}}"#,
        )
        .unwrap()
        .store
        .unwrap();
        assert_eq!(full.authority, "chroma.internal:8000");
        assert_eq!((full.tenant.as_str(), full.database.as_str(), full.collection.as_str()), ("t1", "db_1", "c.2"));
        assert_eq!(full.headers, vec![("x-chroma-token".to_string(), "k".to_string())]);
        assert_eq!(full.timeout, Duration::from_millis(50));
    }
}
