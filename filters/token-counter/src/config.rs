//! Plugin configuration: raw serde structs (unknown fields rejected), then a
//! validated form. Every error names its field, e.g.
//! `rules[1].window: unknown window "week": expected minute, hour or day`.
//! The README documents every option; `config.schema.json` mirrors them.

use crate::cost::{Price, PriceTable};
use crate::limits::{Counts, Window};
use crate::tokenize::{Counting, Encoding, ModelMap, ModelPattern, ModelTable, DEFAULT_MAX_EXACT_BYTES};
use aigw_shared::attributes::Source;
use aigw_shared::body::DEFAULT_MAX_BODY_BYTES;
use aigw_shared::config::FailureMode;
use aigw_shared::config::{at_most, index, join, parse_config, ConfigError, MAX_BUFFER_BYTES};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

/// Output tokens reserved when a request sets no `max_tokens`.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 256;
/// Subjects a rule tracks per window before some of them share a budget.
pub const DEFAULT_MAX_SUBJECTS: u32 = 10_000;
/// Upper bound on `max_subjects` (≈ 200 bytes of shared data each).
pub const MAX_SUBJECTS_CAP: u32 = 1_000_000;
/// OpenAI's cost of a 1024×1024 image at `detail: high` (also used for
/// images whose size is unknown, audio and files).
pub const DEFAULT_IMAGE_TOKENS: u64 = 765;

// Caps on numbers an operator configures. Each is far above any real use; they
// exist so that sums and products with client-supplied counts stay far from
// overflow (the arithmetic saturates as well) and a typo such as an extra
// row of zeros is refused with the field's path instead of silently meaning
// "unlimited".
/// Largest `limit`, `default_output_tokens` or `max_output_tokens`: 10^15 tokens.
pub const MAX_TOKENS_SETTING: u64 = 1_000_000_000_000_000;
/// Largest `tokenizer.image_tokens` (an image costs hundreds to thousands of tokens).
pub const MAX_IMAGE_TOKENS: u64 = 1_000_000;
/// Largest `max_body_bytes` and
/// `tokenizer.max_exact_bytes`: the shared buffer cap (256 MiB).
pub const MAX_BYTES_SETTING: usize = MAX_BUFFER_BYTES;
/// Largest price, USD per million tokens.
pub const MAX_PRICE: f64 = 1_000_000.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    reservation: RawReservation,
    #[serde(default)]
    tokenizer: RawTokenizer,
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
    #[serde(default)]
    stream_usage: Option<String>,
    #[serde(default)]
    rate_limit_headers: Option<bool>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default = "FailureMode::open")]
    failure_mode: FailureMode,
    #[serde(default)]
    store: Option<RawStore>,
}

/// `"store": "shared_data"` or `"store": {"rls": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawStore {
    Name(String),
    Remote(RawRemote),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    rls: RawRls,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRls {
    cluster: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    refunds: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    key: String,
    limit: u64,
    window: String,
    #[serde(default)]
    counts: Option<String>,
    #[serde(default)]
    on_exceeded: Option<String>,
    #[serde(default)]
    max_subjects: Option<u32>,
    #[serde(default)]
    key_metrics: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReservation {
    #[serde(default)]
    default_output_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenizer {
    #[serde(default)]
    models: BTreeMap<String, RawCounting>,
    #[serde(default)]
    unknown_models: Option<RawCounting>,
    #[serde(default)]
    max_exact_bytes: Option<usize>,
    #[serde(default)]
    preload: Option<bool>,
    #[serde(default)]
    image_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCounting {
    Encoding(String),
    Detailed(RawCountingDetailed),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCountingDetailed {
    encoding: String,
    #[serde(default)]
    factor: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: f64,
    output: f64,
    #[serde(default)]
    cached_input: Option<f64>,
    #[serde(default)]
    cache_write: Option<f64>,
}

/// What happens when a request would pass a rule's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExceeded {
    /// 429 with an OpenAI error body and `retry-after`.
    Reject,
    /// Let the request through and set filter state `aigw.budget.exceeded`
    /// to `1` (model-router's budget fallback reads it).
    Signal,
}

/// How OpenAI streams get their usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamUsage {
    /// Set `stream_options.include_usage` upstream when the client did not,
    /// and remove the extra usage chunk from what the client sees.
    Inject,
    /// Leave requests alone; streams without a usage chunk are estimated.
    Off,
}

/// Where the budgets' counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// Proxy-wasm shared data: exact for every worker of one Envoy (the default).
    SharedData,
    /// A rate limit service (Envoy's `ShouldRateLimit` API), shared by every replica.
    Rls(RlsStore),
}

/// `store.rls`: the rate limit service behind an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsStore {
    /// The Envoy cluster (HTTP/2) of the service.
    pub cluster: String,
    /// The `domain` of every request (the service's namespace for these budgets).
    pub domain: String,
    pub timeout_ms: u64,
    /// Send returns (aigw's refund descriptor); off for services that do not know it.
    pub refunds: bool,
}

/// Default `store.rls.domain`.
pub const DEFAULT_RLS_DOMAIN: &str = "aigw";
/// Default `store.rls.timeout_ms`: a Redis round trip is well under a millisecond.
pub const DEFAULT_RLS_TIMEOUT_MS: u64 = 200;
/// Largest `store.rls.timeout_ms`.
pub const MAX_RLS_TIMEOUT_MS: u64 = 60_000;

/// A validated rate-limit rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub key: Source,
    pub limit: u64,
    pub window: Window,
    pub counts: Counts,
    pub on_exceeded: OnExceeded,
    pub slots: u32,
    pub key_metrics: bool,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub rules: Vec<Rule>,
    pub default_output_tokens: u64,
    pub max_output_tokens: Option<u64>,
    pub models: ModelMap,
    pub max_exact_bytes: usize,
    pub preload: bool,
    pub image_tokens: u64,
    pub prices: PriceTable,
    pub stream_usage: StreamUsage,
    pub rate_limit_headers: bool,
    /// Largest request body parsed (larger ones are estimated from their size) and largest
    /// JSON response copied to read its usage.
    pub max_body_bytes: usize,
    /// Admit requests when shared data fails or stays contended (the
    /// default), or refuse them with 503.
    pub fail_open: bool,
    /// Where the counters live.
    pub store: Store,
}

impl Default for Config {
    fn default() -> Self {
        // An empty document is valid; build the defaults through the same path.
        from_json(None).unwrap_or(Config {
            rules: Vec::new(),
            default_output_tokens: DEFAULT_OUTPUT_TOKENS,
            max_output_tokens: None,
            models: ModelMap::default(),
            max_exact_bytes: DEFAULT_MAX_EXACT_BYTES,
            preload: true,
            image_tokens: DEFAULT_IMAGE_TOKENS,
            prices: PriceTable::default(),
            stream_usage: StreamUsage::Inject,
            rate_limit_headers: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            fail_open: true,
            store: Store::SharedData,
        })
    }
}

fn rule_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn counting(raw: &RawCounting, path: &str, default_factor: f64) -> Result<Counting, ConfigError> {
    let (name, factor, name_path) = match raw {
        RawCounting::Encoding(name) => (name.as_str(), None, path.to_string()),
        RawCounting::Detailed(detailed) => (detailed.encoding.as_str(), detailed.factor, join(path, "encoding")),
    };
    let encoding = Encoding::parse(name).ok_or_else(|| {
        ConfigError::new(name_path, format!("unknown encoding \"{name}\": expected o200k_base or cl100k_base"))
    })?;
    match factor {
        None if default_factor == 1.0 => Ok(Counting::exact(encoding)),
        None => Ok(Counting::approximate(encoding, default_factor)),
        Some(factor) if factor.is_finite() && factor > 0.0 && factor <= 10.0 => {
            if factor == 1.0 {
                Ok(Counting::exact(encoding))
            } else {
                Ok(Counting::approximate(encoding, factor))
            }
        }
        Some(factor) => Err(ConfigError::new(
            join(path, "factor"),
            format!("factor must be a number above 0 and at most 10, got {factor}"),
        )),
    }
}

fn price_value(value: f64, path: String) -> Result<f64, ConfigError> {
    if value.is_finite() && (0.0..=MAX_PRICE).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            path,
            format!("a price must be a number of USD per million tokens from 0 to {MAX_PRICE}, got {value}"),
        ))
    }
}

/// A token count from the config, at most [`MAX_TOKENS_SETTING`].
fn tokens_setting(value: u64, path: String) -> Result<u64, ConfigError> {
    at_most(value, MAX_TOKENS_SETTING, &path)
}

/// A byte size from the config, from 1 to [`MAX_BYTES_SETTING`].
fn bytes_setting(value: usize, path: &str) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(path, "must be at least 1"));
    }
    at_most(value, MAX_BYTES_SETTING, path)
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut rules = Vec::with_capacity(raw.rules.len());
    let mut names = HashSet::new();
    for (i, rule) in raw.rules.iter().enumerate() {
        let path = index("rules", i);
        if !rule_name_ok(&rule.name) {
            return Err(ConfigError::new(
                join(&path, "name"),
                format!("\"{}\" is not a valid rule name: use 1-64 letters, digits, '-' or '_'", rule.name),
            ));
        }
        if !names.insert(rule.name.clone()) {
            return Err(ConfigError::new(join(&path, "name"), format!("duplicate rule name \"{}\"", rule.name)));
        }
        let key = Source::parse(&rule.key).map_err(|reason| ConfigError::new(join(&path, "key"), reason))?;
        if rule.limit == 0 {
            return Err(ConfigError::new(join(&path, "limit"), "limit must be at least 1 token"));
        }
        tokens_setting(rule.limit, join(&path, "limit"))?;
        let window = Window::parse(&rule.window).ok_or_else(|| {
            ConfigError::new(
                join(&path, "window"),
                format!("unknown window \"{}\": expected minute, hour or day", rule.window),
            )
        })?;
        let counts = match rule.counts.as_deref() {
            None => Counts::Total,
            Some(text) => Counts::parse(text).ok_or_else(|| {
                ConfigError::new(
                    join(&path, "counts"),
                    format!("unknown token kind \"{text}\": expected input, output or total"),
                )
            })?,
        };
        let on_exceeded = match rule.on_exceeded.as_deref() {
            None | Some("reject") => OnExceeded::Reject,
            Some("signal") => OnExceeded::Signal,
            Some(other) => {
                return Err(ConfigError::new(
                    join(&path, "on_exceeded"),
                    format!("unknown action \"{other}\": expected reject or signal"),
                ))
            }
        };
        let slots = rule.max_subjects.unwrap_or(DEFAULT_MAX_SUBJECTS);
        if slots == 0 || slots > MAX_SUBJECTS_CAP {
            return Err(ConfigError::new(
                join(&path, "max_subjects"),
                format!("max_subjects must be between 1 and {MAX_SUBJECTS_CAP}, got {slots}"),
            ));
        }
        rules.push(Rule {
            name: rule.name.clone(),
            key,
            limit: rule.limit,
            window,
            counts,
            on_exceeded,
            slots,
            key_metrics: rule.key_metrics,
        });
    }

    let mut overrides = Vec::new();
    for (pattern, raw_counting) in &raw.tokenizer.models {
        let path = format!("tokenizer.models.{pattern}");
        let parsed = ModelPattern::parse(pattern).map_err(|reason| ConfigError::new(path.clone(), reason))?;
        overrides.push((parsed, counting(raw_counting, &path, 1.0)?));
    }
    let mut models = ModelMap { overrides: ModelTable::new(overrides), ..ModelMap::default() };
    if let Some(unknown) = &raw.tokenizer.unknown_models {
        let mut parsed = counting(unknown, "tokenizer.unknown_models", 1.0)?;
        parsed.exact = false;
        models.unknown = parsed;
    }
    // 0 is allowed here: it turns exact tokenizing off.
    let max_exact_bytes = at_most(
        raw.tokenizer.max_exact_bytes.unwrap_or(DEFAULT_MAX_EXACT_BYTES),
        MAX_BYTES_SETTING,
        "tokenizer.max_exact_bytes",
    )?;
    let image_tokens = at_most(
        raw.tokenizer.image_tokens.unwrap_or(DEFAULT_IMAGE_TOKENS),
        MAX_IMAGE_TOKENS,
        "tokenizer.image_tokens",
    )?;

    let mut prices = Vec::new();
    for (pattern, price) in &raw.prices {
        let path = format!("prices.{pattern}");
        let parsed = ModelPattern::parse(pattern).map_err(|reason| ConfigError::new(path.clone(), reason))?;
        let input = price_value(price.input, join(&path, "input"))?;
        prices.push((
            parsed,
            Price {
                input,
                output: price_value(price.output, join(&path, "output"))?,
                cached_input: price_value(price.cached_input.unwrap_or(input), join(&path, "cached_input"))?,
                cache_write: price_value(price.cache_write.unwrap_or(input), join(&path, "cache_write"))?,
            },
        ));
    }

    let stream_usage = match raw.stream_usage.as_deref() {
        None | Some("inject") => StreamUsage::Inject,
        Some("off") => StreamUsage::Off,
        Some(other) => {
            return Err(ConfigError::new("stream_usage", format!("unknown mode \"{other}\": expected inject or off")))
        }
    };
    let fail_open = raw.failure_mode == FailureMode::Open;
    let max_body_bytes = bytes_setting(raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES), "max_body_bytes")?;
    let default_output_tokens = tokens_setting(
        raw.reservation.default_output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS),
        "reservation.default_output_tokens".into(),
    )?;
    let max_output_tokens = match raw.reservation.max_output_tokens {
        Some(value) => Some(tokens_setting(value, "reservation.max_output_tokens".into())?),
        None => None,
    };

    let store = store(raw.store, &rules)?;

    Ok(Config {
        store,
        rules,
        default_output_tokens,
        max_output_tokens,
        models,
        max_exact_bytes,
        preload: raw.tokenizer.preload.unwrap_or(true),
        image_tokens,
        prices: PriceTable::new(prices),
        stream_usage,
        rate_limit_headers: raw.rate_limit_headers.unwrap_or(true),
        max_body_bytes,
        fail_open,
    })
}

fn store(raw: Option<RawStore>, rules: &[Rule]) -> Result<Store, ConfigError> {
    let rls = match raw {
        None => return Ok(Store::SharedData),
        Some(RawStore::Name(name)) if name == "shared_data" => return Ok(Store::SharedData),
        Some(RawStore::Name(name)) => {
            return Err(ConfigError::new(
                "store",
                format!("unknown store \"{name}\": expected \"shared_data\" or {{\"rls\": {{...}}}}"),
            ))
        }
        Some(RawStore::Remote(RawRemote { rls })) => rls,
    };
    if rls.cluster.is_empty() {
        return Err(ConfigError::new("store.rls.cluster", "must name the Envoy cluster of the rate limit service"));
    }
    let domain = rls.domain.unwrap_or_else(|| DEFAULT_RLS_DOMAIN.to_string());
    if domain.is_empty() {
        return Err(ConfigError::new("store.rls.domain", "must not be empty"));
    }
    let timeout_ms =
        at_most(rls.timeout_ms.unwrap_or(DEFAULT_RLS_TIMEOUT_MS), MAX_RLS_TIMEOUT_MS, "store.rls.timeout_ms")?;
    if timeout_ms == 0 {
        return Err(ConfigError::new("store.rls.timeout_ms", "must be at least 1"));
    }
    // The protocol's counts are uint32 (`requests_per_unit`, `hits_addend`).
    for (i, rule) in rules.iter().enumerate() {
        if rule.limit > u64::from(u32::MAX) {
            return Err(ConfigError::new(
                join(&index("rules", i), "limit"),
                format!("at most {} tokens with the rls store (the protocol's counts are 32-bit)", u32::MAX),
            ));
        }
    }
    Ok(Store::Rls(RlsStore { cluster: rls.cluster, domain, timeout_ms, refunds: rls.refunds.unwrap_or(true) }))
}

/// Parses and validates the plugin configuration (the JSON Envoy hands the
/// filter). Used by `on_configure` and by the tests that check the README
/// and schema examples.
pub fn from_json(bytes: Option<&[u8]>) -> Result<Config, ConfigError> {
    validate(parse_config::<RawConfig>(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        from_json(Some(text.as_bytes())).unwrap_err()
    }

    #[test]
    fn defaults() {
        let config = from_json(None).unwrap();
        assert!(config.rules.is_empty());
        assert_eq!(config.default_output_tokens, DEFAULT_OUTPUT_TOKENS);
        assert_eq!(config.stream_usage, StreamUsage::Inject);
        assert!(config.rate_limit_headers && config.fail_open && config.preload);
        assert_eq!(Config::default(), config);
    }

    #[test]
    fn full_config() {
        let config = from_json(Some(
            br#"{
            "rules": [
                {"name": "per-sub", "key": "jwt:sub", "limit": 500, "window": "hour"},
                {"name": "per-team", "key": "header:x-team", "limit": 100000, "window": "day", "counts": "output",
                 "on_exceeded": "signal", "max_subjects": 500, "key_metrics": true}
            ],
            "reservation": {"default_output_tokens": 100, "max_output_tokens": 4096},
            "tokenizer": {"models": {"my-llm*": "o200k_base", "mistral*": {"encoding": "cl100k_base", "factor": 1.1}},
                          "unknown_models": {"encoding": "cl100k_base", "factor": 1.3},
                          "max_exact_bytes": 65536, "preload": false, "image_tokens": 1000},
            "prices": {"gpt-4o*": {"input": 2.5, "output": 10, "cached_input": 1.25}},
            "stream_usage": "off", "rate_limit_headers": false, "failure_mode": "closed"
        }"#,
        ))
        .unwrap();
        assert_eq!(config.rules.len(), 2);
        assert_eq!(config.rules[0].counts, Counts::Total);
        assert_eq!(config.rules[0].on_exceeded, OnExceeded::Reject);
        assert_eq!(config.rules[0].key, Source::JwtClaim(vec!["sub".into()]));
        assert_eq!(config.rules[1].on_exceeded, OnExceeded::Signal);
        assert_eq!(config.rules[1].slots, 500);
        assert_eq!(config.models.resolve("my-llm-7b"), (Counting::exact(Encoding::O200kBase), true));
        assert_eq!(config.models.resolve("mistral-large").0.factor, 1.1);
        assert_eq!(config.models.resolve("who-knows").0.factor, 1.3);
        assert_eq!(config.prices.lookup("gpt-4o-mini").map(|p| p.cache_write), Some(2.5));
        assert_eq!(config.max_output_tokens, Some(4096));
        assert!(!config.fail_open && !config.preload && !config.rate_limit_headers);
    }

    #[test]
    fn errors_name_their_field() {
        let cases = [
            (r#"{"rules": [{"name": "a", "key": "jwt:sub", "limit": 5, "window": "week"}]}"#, "rules[0].window"),
            (
                r#"{"rules": [{"name": "a", "key": "jwt:sub", "limit": 5, "window": "hour"}, {"name": "a", "key": "route", "limit": 5, "window": "hour"}]}"#,
                "rules[1].name",
            ),
            (r#"{"rules": [{"name": "a b", "key": "route", "limit": 5, "window": "hour"}]}"#, "rules[0].name"),
            (r#"{"rules": [{"name": "a", "key": "cookie:x", "limit": 5, "window": "hour"}]}"#, "rules[0].key"),
            (r#"{"rules": [{"name": "a", "key": "route", "limit": 0, "window": "hour"}]}"#, "rules[0].limit"),
            (
                r#"{"rules": [{"name": "a", "key": "route", "limit": 5, "window": "hour", "counts": "all"}]}"#,
                "rules[0].counts",
            ),
            (
                r#"{"rules": [{"name": "a", "key": "route", "limit": 5, "window": "hour", "on_exceeded": "drop"}]}"#,
                "rules[0].on_exceeded",
            ),
            (
                r#"{"rules": [{"name": "a", "key": "route", "limit": 5, "window": "hour", "max_subjects": 0}]}"#,
                "rules[0].max_subjects",
            ),
            (r#"{"rules": [{"name": "a", "key": "route", "limit": 5, "window": "hour", "limt": 3}]}"#, "rules[0].limt"),
            (r#"{"tokenizer": {"models": {"x*": "p50k_base"}}}"#, "tokenizer.models.x*"),
            (
                r#"{"tokenizer": {"models": {"x*": {"encoding": "cl100k_base", "factor": -1}}}}"#,
                "tokenizer.models.x*.factor",
            ),
            (r#"{"tokenizer": {"models": {"a*b": "cl100k_base"}}}"#, "tokenizer.models.a*b"),
            (r#"{"prices": {"gpt-4o": {"input": -1, "output": 1}}}"#, "prices.gpt-4o.input"),
            (r#"{"stream_usage": "maybe"}"#, "stream_usage"),
            (r#"{"failure_mode": "panic"}"#, "failure_mode"),
            (r#"{"reservation": {"default_output_tokens": "many"}}"#, "reservation.default_output_tokens"),
        ];
        for (text, path) in cases {
            assert_eq!(err(text).path, path, "{text}");
        }
    }

    #[test]
    fn numbers_past_their_caps_are_refused_with_their_path() {
        let cases = [
            (
                r#"{"rules": [{"name": "a", "key": "route", "limit": 18446744073709551615, "window": "hour"}]}"#,
                "rules[0].limit",
            ),
            (r#"{"reservation": {"default_output_tokens": 1000000000000000001}}"#, "reservation.default_output_tokens"),
            (r#"{"reservation": {"max_output_tokens": 18446744073709551615}}"#, "reservation.max_output_tokens"),
            (r#"{"tokenizer": {"image_tokens": 18446744073709551615}}"#, "tokenizer.image_tokens"),
            (r#"{"tokenizer": {"max_exact_bytes": 1000000000000}}"#, "tokenizer.max_exact_bytes"),
            (r#"{"max_body_bytes": 1000000000000}"#, "max_body_bytes"),
            (r#"{"max_body_bytes": 0}"#, "max_body_bytes"),
            (r#"{"prices": {"gpt-4o": {"input": 1, "output": 1e300}}}"#, "prices.gpt-4o.output"),
        ];
        for (text, path) in cases {
            assert_eq!(err(text).path, path, "{text}");
        }
        let at_caps = format!(
            r#"{{"rules": [{{"name": "a", "key": "route", "limit": {MAX_TOKENS_SETTING}, "window": "hour"}}],
                "tokenizer": {{"image_tokens": {MAX_IMAGE_TOKENS}, "max_exact_bytes": {MAX_BYTES_SETTING}}},
                "max_body_bytes": {MAX_BYTES_SETTING}, "prices": {{"x": {{"input": {MAX_PRICE}, "output": 0}}}}}}"#
        );
        let config = from_json(Some(at_caps.as_bytes())).unwrap();
        assert_eq!((config.rules[0].limit, config.image_tokens), (MAX_TOKENS_SETTING, MAX_IMAGE_TOKENS));
    }
}
