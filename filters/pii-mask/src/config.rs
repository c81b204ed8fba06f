//! Plugin configuration: raw serde structs (unknown fields refused) turned
//! into a validated [`Config`] with compiled detectors for each direction.
//! Every error names the field at fault: `custom_rules[1].pattern: invalid
//! regex: …`, `entities.EMAIL: unknown entity …`.

use crate::actions::{Action, HashSettings};
use crate::custom::{DenyWords, RegexRule};
use crate::detectors::Entity;
use crate::scan::{Rule, RuleKind, Scanner};
use aigw_shared::body::DEFAULT_MAX_BODY_BYTES;
use aigw_shared::config::{index, join, parse_config, ConfigError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Default for custom regexes: the longest match the stream masker is
/// guaranteed to catch across chunks.
pub const DEFAULT_MAX_MATCH_CHARS: usize = 256;
pub const MAX_MAX_MATCH_CHARS: usize = 4096;
pub const DEFAULT_REQUEST_REJECT_MESSAGE: &str = "The request was blocked because it contains sensitive data.";
pub const DEFAULT_RESPONSE_REJECT_MESSAGE: &str = "The response was withheld because it contained sensitive data.";
pub const DEFAULT_MODERATION_MESSAGE: &str = "The request was blocked by the content moderation policy.";

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Replace,
    Mask,
    Redact,
    Hash,
    Reject,
}

/// Fields shared by entity settings and custom rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    enabled: Option<bool>,
    action: Option<ActionKind>,
    replacement: Option<String>,
    keep_last: Option<usize>,
    mask_char: Option<char>,
    message: Option<String>,
    request: Option<bool>,
    response: Option<bool>,
}

/// Repeats `RawEntity`'s fields rather than flattening it: serde's
/// `flatten` does not work with `deny_unknown_fields`, and unknown fields must
/// be refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustomRule {
    name: String,
    pattern: Option<String>,
    words: Option<Vec<String>>,
    max_match_chars: Option<usize>,
    enabled: Option<bool>,
    action: Option<ActionKind>,
    replacement: Option<String>,
    keep_last: Option<usize>,
    mask_char: Option<char>,
    message: Option<String>,
    request: Option<bool>,
    response: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHash {
    #[serde(default)]
    salt: String,
    #[serde(default = "default_hash_chars")]
    chars: usize,
}

fn default_hash_chars() -> usize {
    8
}

impl Default for RawHash {
    fn default() -> Self {
        RawHash { salt: String::new(), chars: default_hash_chars() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnreadableRequest {
    /// 415 for encoded bodies (and the JSON errors for unreadable ones).
    #[default]
    Reject,
    /// Forward unchanged, counted in a metric.
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnreadableResponse {
    /// Replace with a 502 error.
    #[default]
    Block,
    /// Forward unchanged, counted in a metric.
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OtherPaths {
    /// Scan every string of JSON bodies on paths that are not chat APIs.
    #[default]
    Scan,
    /// Leave them alone.
    Skip,
}

/// Moderation's `failure_mode` (default `closed`).
pub use aigw_shared::config::FailureMode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModeration {
    cluster: String,
    #[serde(default = "default_moderation_path")]
    path: String,
    authority: Option<String>,
    #[serde(default = "default_moderation_timeout")]
    timeout_ms: u64,
    #[serde(default = "FailureMode::closed")]
    failure_mode: FailureMode,
    model: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    message: Option<String>,
    #[serde(default)]
    categories: Vec<String>,
}

fn default_moderation_path() -> String {
    "/v1/moderations".to_string()
}

fn default_moderation_timeout() -> u64 {
    2000
}

/// Which directions undo obfuscations before matching.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNormalize {
    #[serde(default = "yes")]
    request: bool,
    #[serde(default)]
    response: bool,
}

impl Default for RawNormalize {
    fn default() -> Self {
        RawNormalize { request: true, response: false }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "yes")]
    request: bool,
    #[serde(default = "yes")]
    response: bool,
    #[serde(default)]
    entities: BTreeMap<String, RawEntity>,
    #[serde(default)]
    custom_rules: Vec<RawCustomRule>,
    #[serde(default)]
    hash: RawHash,
    max_body_bytes: Option<usize>,
    #[serde(default)]
    on_unreadable_request: UnreadableRequest,
    #[serde(default)]
    on_unreadable_response: UnreadableResponse,
    #[serde(default)]
    other_paths: OtherPaths,
    #[serde(default)]
    normalize: RawNormalize,
    moderation: Option<RawModeration>,
}

/// External moderation (OpenAI moderation API shape) through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    pub model: Option<String>,
    pub headers: Vec<(String, String)>,
    pub message: String,
    /// Only these categories count as flagged (empty: the `flagged` field decides).
    pub categories: Vec<String>,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub request: Scanner,
    /// Shared with the stream maskers of in-flight responses.
    pub response: Rc<Scanner>,
    pub hash: HashSettings,
    pub max_body_bytes: usize,
    pub on_unreadable_request: UnreadableRequest,
    pub on_unreadable_response: UnreadableResponse,
    pub other_paths: OtherPaths,
    pub moderation: Option<Moderation>,
}

/// The action fields of an entity or rule, validated.
struct ActionFields<'a> {
    action: Option<ActionKind>,
    replacement: &'a Option<String>,
    keep_last: Option<usize>,
    mask_char: Option<char>,
    message: &'a Option<String>,
}

/// Resolves the action for `name` in one direction.
fn resolve_action(path: &str, name: &str, fields: &ActionFields<'_>, request: bool) -> Result<Action, ConfigError> {
    let kind = fields.action.unwrap_or(ActionKind::Replace);
    let only = |field: &str, value: bool, wanted: &str| -> Result<(), ConfigError> {
        if value {
            Err(ConfigError::new(join(path, field), format!("only valid with action \"{wanted}\"")))
        } else {
            Ok(())
        }
    };
    only("replacement", fields.replacement.is_some() && kind != ActionKind::Replace, "replace")?;
    only("keep_last", fields.keep_last.is_some() && kind != ActionKind::Mask, "mask")?;
    only("mask_char", fields.mask_char.is_some() && kind != ActionKind::Mask, "mask")?;
    only("message", fields.message.is_some() && kind != ActionKind::Reject, "reject")?;
    Ok(match kind {
        ActionKind::Replace => {
            Action::Replace { text: fields.replacement.clone().unwrap_or_else(|| format!("[{name}]")) }
        }
        ActionKind::Mask => {
            Action::Mask { keep_last: fields.keep_last.unwrap_or(0), mask_char: fields.mask_char.unwrap_or('*') }
        }
        ActionKind::Redact => Action::Redact,
        ActionKind::Hash => Action::Hash,
        ActionKind::Reject => Action::Reject {
            message: fields.message.clone().unwrap_or_else(|| {
                if request { DEFAULT_REQUEST_REJECT_MESSAGE } else { DEFAULT_RESPONSE_REJECT_MESSAGE }.to_string()
            }),
        },
    })
}

fn valid_rule_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses and validates the plugin configuration (the JSON Envoy hands the
/// filter). Used by `on_configure` and by the test that checks every shipped
/// manifest against this parser.
pub fn from_json(bytes: Option<&[u8]>) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_config(bytes)?;
    for name in raw.entities.keys() {
        if Entity::from_name(name).is_none() {
            let known: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
            return Err(ConfigError::new(
                join("entities", name),
                format!("unknown entity `{name}`; known entities: {}", known.join(", ")),
            ));
        }
    }
    let mut request_rules = Vec::new();
    let mut response_rules = Vec::new();
    let default_entity = RawEntity::default();
    for entity in Entity::ALL {
        let settings = raw.entities.get(entity.name()).unwrap_or(&default_entity);
        let path = join("entities", entity.name());
        let fields = ActionFields {
            action: settings.action,
            replacement: &settings.replacement,
            keep_last: settings.keep_last,
            mask_char: settings.mask_char,
            message: &settings.message,
        };
        let request_action = resolve_action(&path, entity.name(), &fields, true)?;
        let response_action = resolve_action(&path, entity.name(), &fields, false)?;
        if !settings.enabled.unwrap_or(true) {
            continue;
        }
        if settings.request.unwrap_or(raw.request) {
            request_rules.push(Rule {
                name: entity.name().to_string(),
                kind: RuleKind::Builtin(entity),
                action: request_action,
            });
        }
        if settings.response.unwrap_or(raw.response) {
            response_rules.push(Rule {
                name: entity.name().to_string(),
                kind: RuleKind::Builtin(entity),
                action: response_action,
            });
        }
    }
    let mut names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
    for (i, rule) in raw.custom_rules.iter().enumerate() {
        let path = index("custom_rules", i);
        if !valid_rule_name(&rule.name) {
            return Err(ConfigError::new(
                join(&path, "name"),
                "must be 1-64 characters of letters, digits, `_` and `-` (it names metrics and placeholders)",
            ));
        }
        if names.contains(&rule.name.as_str()) {
            return Err(ConfigError::new(join(&path, "name"), format!("duplicate rule name `{}`", rule.name)));
        }
        names.push(&rule.name);
        let fields = ActionFields {
            action: rule.action,
            replacement: &rule.replacement,
            keep_last: rule.keep_last,
            mask_char: rule.mask_char,
            message: &rule.message,
        };
        let request_action = resolve_action(&path, &rule.name, &fields, true)?;
        let response_action = resolve_action(&path, &rule.name, &fields, false)?;
        let max_match_chars = rule.max_match_chars.unwrap_or(DEFAULT_MAX_MATCH_CHARS);
        if max_match_chars == 0 || max_match_chars > MAX_MAX_MATCH_CHARS {
            return Err(ConfigError::new(
                join(&path, "max_match_chars"),
                format!("must be between 1 and {MAX_MAX_MATCH_CHARS}"),
            ));
        }
        // Each direction gets its own compiled matcher (they are small).
        let build = || -> Result<RuleKind, ConfigError> {
            match (&rule.pattern, &rule.words) {
                (Some(pattern), None) => {
                    let regex = regex::Regex::new(pattern)
                        .map_err(|err| ConfigError::new(join(&path, "pattern"), format!("invalid regex: {err}")))?;
                    if regex.is_match("") {
                        return Err(ConfigError::new(join(&path, "pattern"), "the pattern matches the empty string"));
                    }
                    Ok(RuleKind::Regex(RegexRule::new(regex, max_match_chars)))
                }
                (None, Some(words)) => {
                    if rule.max_match_chars.is_some() {
                        return Err(ConfigError::new(
                            join(&path, "max_match_chars"),
                            "only valid with `pattern` (word lists know their longest entry)",
                        ));
                    }
                    if words.is_empty() {
                        return Err(ConfigError::new(join(&path, "words"), "must not be empty"));
                    }
                    DenyWords::new(words)
                        .map(RuleKind::Words)
                        .map_err(|at| ConfigError::new(index(&join(&path, "words"), at), "must not be empty"))
                }
                _ => Err(ConfigError::new(path.clone(), "needs exactly one of `pattern` or `words`")),
            }
        };
        let kind = build()?;
        if !rule.enabled.unwrap_or(true) {
            continue;
        }
        if rule.request.unwrap_or(raw.request) {
            request_rules.push(Rule { name: rule.name.clone(), kind, action: request_action });
        }
        if rule.response.unwrap_or(raw.response) {
            response_rules.push(Rule { name: rule.name.clone(), kind: build()?, action: response_action });
        }
    }
    if raw.hash.chars == 0 || raw.hash.chars > 64 {
        return Err(ConfigError::new("hash.chars", "must be between 1 and 64"));
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(ConfigError::new("max_body_bytes", "must be greater than 0"));
    }
    let moderation = match raw.moderation {
        None => None,
        Some(m) => {
            if m.cluster.trim().is_empty() {
                return Err(ConfigError::new("moderation.cluster", "must not be empty"));
            }
            if !m.path.starts_with('/') {
                return Err(ConfigError::new("moderation.path", "must start with `/`"));
            }
            if m.timeout_ms == 0 || m.timeout_ms > 60_000 {
                return Err(ConfigError::new("moderation.timeout_ms", "must be between 1 and 60000"));
            }
            for name in m.headers.keys() {
                if name.starts_with(':') || name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(ConfigError::new(
                        join("moderation.headers", name),
                        "header names must be lower case and not pseudo-headers",
                    ));
                }
            }
            Some(Moderation {
                authority: m.authority.unwrap_or_else(|| m.cluster.clone()),
                cluster: m.cluster,
                path: m.path,
                timeout_ms: m.timeout_ms,
                failure_mode: m.failure_mode,
                model: m.model,
                headers: m.headers.into_iter().collect(),
                message: m.message.unwrap_or_else(|| DEFAULT_MODERATION_MESSAGE.to_string()),
                categories: m.categories,
            })
        }
    };
    Ok(Config {
        request: Scanner::new(request_rules).with_deobfuscation(raw.normalize.request),
        response: Rc::new(Scanner::new(response_rules).with_deobfuscation(raw.normalize.response)),
        hash: HashSettings { salt: raw.hash.salt, chars: raw.hash.chars },
        max_body_bytes,
        on_unreadable_request: raw.on_unreadable_request,
        on_unreadable_response: raw.on_unreadable_response,
        other_paths: raw.other_paths,
        moderation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        from_json(Some(json.as_bytes())).unwrap_err().to_string()
    }

    #[test]
    fn empty_config_enables_every_builtin_both_ways() {
        let config = from_json(None).unwrap();
        assert_eq!(config.request.rules.len(), Entity::ALL.len());
        assert_eq!(config.response.rules.len(), Entity::ALL.len());
        assert_eq!(config.request.rules[0].action, Action::Replace { text: "[EMAIL_ADDRESS]".into() });
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(config.hash.chars, 8);
        assert!(config.moderation.is_none());
    }

    #[test]
    fn entity_settings_and_directions() {
        let config = from_json(Some(
            br##"{
                "response": false,
                "entities": {
                    "PHONE_NUMBER": {"enabled": false},
                    "CREDIT_CARD": {"action": "mask", "keep_last": 4, "mask_char": "#"},
                    "OPENAI_API_KEY": {"action": "reject", "message": "no keys", "response": true},
                    "EMAIL_ADDRESS": {"action": "replace", "replacement": "<email>"}
                },
                "custom_rules": [
                    {"name": "EMPLOYEE_ID", "pattern": "\\bEMP-\\d{6}\\b", "action": "hash", "max_match_chars": 10},
                    {"name": "CODENAMES", "words": ["bluebird", "project nightjar"], "request": false, "response": true}
                ],
                "hash": {"salt": "pepper", "chars": 12}
            }"##,
        ))
        .unwrap();
        let names = |scanner: &Scanner| scanner.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert!(!names(&config.request).contains(&"PHONE_NUMBER".to_string()));
        assert!(names(&config.request).contains(&"EMPLOYEE_ID".to_string()));
        assert!(!names(&config.request).contains(&"CODENAMES".to_string()));
        assert_eq!(names(&config.response), vec!["OPENAI_API_KEY", "CODENAMES"]);
        let card = config.request.rules.iter().find(|r| r.name == "CREDIT_CARD").unwrap();
        assert_eq!(card.action, Action::Mask { keep_last: 4, mask_char: '#' });
        let email = config.request.rules.iter().find(|r| r.name == "EMAIL_ADDRESS").unwrap();
        assert_eq!(email.action, Action::Replace { text: "<email>".into() });
        assert_eq!(config.response.rules[0].action, Action::Reject { message: "no keys".into() });
        assert_eq!(config.hash, HashSettings { salt: "pepper".into(), chars: 12 });
    }

    #[test]
    fn errors_name_the_rule() {
        assert!(err(r#"{"custom_rules": [{"name": "a", "pattern": "x"}, {"name": "b", "pattern": "("}]}"#)
            .starts_with("custom_rules[1].pattern: invalid regex: "));
        assert!(err(r#"{"entities": {"EMAIL": {}}}"#).starts_with("entities.EMAIL: unknown entity `EMAIL`"));
        assert!(
            err(r#"{"entities": {"US_SSN": {"actoin": "mask"}}}"#).starts_with("entities.US_SSN.actoin: unknown field")
        );
        assert!(err(r#"{"entities": {"US_SSN": {"action": "scramble"}}}"#)
            .starts_with("entities.US_SSN.action: unknown variant"));
        assert_eq!(
            err(r#"{"entities": {"US_SSN": {"keep_last": 4}}}"#),
            "entities.US_SSN.keep_last: only valid with action \"mask\""
        );
        assert_eq!(
            err(r#"{"custom_rules": [{"name": "x", "pattern": "a*"}]}"#),
            "custom_rules[0].pattern: the pattern matches the empty string"
        );
        assert_eq!(
            err(r#"{"custom_rules": [{"name": "x"}]}"#),
            "custom_rules[0]: needs exactly one of `pattern` or `words`"
        );
        assert_eq!(
            err(r#"{"custom_rules": [{"name": "x", "words": ["a", ""]}]}"#),
            "custom_rules[0].words[1]: must not be empty"
        );
        assert!(err(r#"{"custom_rules": [{"name": "US_SSN", "words": ["a"]}]}"#)
            .starts_with("custom_rules[0].name: duplicate"));
        assert!(
            err(r#"{"custom_rules": [{"name": "has space", "words": ["a"]}]}"#).starts_with("custom_rules[0].name: ")
        );
        assert!(err(r#"{"custom_rules": [{"name": "x", "pattern": "b", "max_match_chars": 0}]}"#)
            .starts_with("custom_rules[0].max_match_chars: "));
        assert_eq!(err(r#"{"hash": {"chars": 65}}"#), "hash.chars: must be between 1 and 64");
        assert_eq!(err(r#"{"max_body_bytes": 0}"#), "max_body_bytes: must be greater than 0");
        assert!(err(r#"{"moderation": {"cluster": "m", "timeout_ms": 0}}"#).starts_with("moderation.timeout_ms"));
        assert!(err(r#"{"on_unreadable_response": "ignore"}"#).starts_with("on_unreadable_response: unknown variant"));
        assert!(
            err(r#"{"unknown": 1}"#).starts_with("unknown: unknown field")
                || err(r#"{"unknown": 1}"#).contains("unknown field")
        );
    }

    #[test]
    fn moderation_defaults() {
        let config = from_json(Some(br#"{"moderation": {"cluster": "moderation"}}"#)).unwrap();
        let m = config.moderation.unwrap();
        assert_eq!(m.path, "/v1/moderations");
        assert_eq!(m.authority, "moderation");
        assert_eq!(m.timeout_ms, 2000);
        assert_eq!(m.failure_mode, FailureMode::Closed);
    }
}
