//! Plugin configuration: raw serde structs → a validated, compiled form.
//!
//! One filter binary runs in two places, chosen by `mode`:
//! - `downstream` (default): in the HTTP connection manager's chain. Reads the
//!   request's `model`, applies access control and routing rules, and hands
//!   the decision to Envoy's route table through the filter state `aigw.route`.
//! - `upstream`: as an upstream HTTP filter on one provider cluster, once per
//!   attempt (retries included). Knows its backend and speaks its API: path,
//!   model name, Anthropic translation.
//!
//! Regexes are compiled here, once per VM; every error names the field at
//! fault (`models[3].regex: …`).
//!
//! `raw.rs` mirrors the JSON, `build.rs` validates it into the types below.

mod build;
mod raw;

use aigw_shared::attributes::Source;
use aigw_shared::body::DEFAULT_MAX_BODY_BYTES;
use aigw_shared::config::{at_most, parse_config, ConfigError, MAX_BUFFER_BYTES};
use build::{downstream, upstream};
use raw::{RawConfig, RawMode};
use regex_lite::Regex;
use serde::Deserialize;
use std::collections::HashMap;

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

    /// `gen_ai.provider.name` in the OpenTelemetry GenAI conventions (traces).
    pub fn genai_name(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::AzureOpenai => "azure.ai.openai",
        }
    }
}

// The validated form.

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
    /// An OpenAI-compatible server without the Responses API (vLLM, Ollama):
    /// Responses requests are translated to chat completions for it.
    pub chat_only: bool,
}

impl Backend {
    /// Whether a request for this backend needs another path or headers than
    /// the client sent. Only an upstream instance can make those changes:
    /// once the body is read, Envoy no longer lets a filter edit the request
    /// headers (they continued so that the body could arrive, see
    /// aigw_shared::gate), but the upstream instance sees them first.
    pub fn changes_head(&self) -> bool {
        self.provider != Provider::Openai || !self.path_prefix.is_empty() || self.chat_only
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

#[cfg(test)]
mod tests {
    use super::build::template_references;
    use super::*;
    use aigw_shared::sse::DEFAULT_MAX_EVENT_BYTES;

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
            (r#"{"mode": "upstream", "backend": {"name": "a", "provider": "anthropic", "chat_only": true}}"#.into(), "backend.chat_only", "only for `provider: openai`"),
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
