//! Per-team model allow-lists.
//!
//! Two sources, checked in this order:
//! 1. a claim verified by `jwt_authn`, in the seed's shape
//!    `"llms": {"openai": ["gpt-4", "gpt-3.5-turbo"], "anthropic": ["claude-3-opus"]}`
//!    (keys are providers or backend names, `*` for any) or a flat list of models;
//! 2. a header or claim naming a team, looked up in the configured `lists`.
//!
//! Callers covered by neither get `default`, or are refused when there is
//! none. Entries are model names, `prefix*` or `*`.

use crate::config::Access;
use crate::route::pattern_matches;
use aigw_shared::attributes::Source;
use aigw_shared::ApiError;
use serde_json::Value;

/// What the check looks at for one request.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The model as the client named it and after its alias.
    pub names: &'a [&'a str],
    /// The provider and backend name the model maps to (claim keys).
    pub keys: &'a [&'a str],
}

fn denied(model: &str) -> ApiError {
    ApiError::forbidden("model_not_allowed", format!("The model `{model}` is not allowed for this caller."))
        .with_param("model")
}

fn any_match(patterns: &[String], names: &[&str]) -> bool {
    patterns.iter().any(|pattern| names.iter().any(|name| pattern_matches(pattern, name)))
}

/// Patterns from one claim entry: a list of strings or a single string
/// (comma- or space-separated, as some identity providers flatten lists).
fn claim_patterns(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Value::String(text) => {
            text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
        }
        _ => Vec::new(),
    }
}

/// Allows or refuses (403) the request. `resolve_json` reads a claim as JSON,
/// `resolve` a header or claim as text.
pub fn check(
    access: &Access,
    subject: Subject<'_>,
    resolve_json: &dyn Fn(&Source) -> Option<Value>,
    resolve: &dyn Fn(&Source) -> Option<String>,
) -> Result<(), ApiError> {
    let shown = subject.names.first().copied().unwrap_or("");
    if let Some(claim) = &access.claim {
        if let Some(value) = resolve_json(claim) {
            let allowed = match &value {
                Value::Object(map) => map
                    .iter()
                    .filter(|(key, _)| key.as_str() == "*" || subject.keys.contains(&key.as_str()))
                    .any(|(_, entry)| any_match(&claim_patterns(entry), subject.names)),
                other => any_match(&claim_patterns(other), subject.names),
            };
            return if allowed { Ok(()) } else { Err(denied(shown)) };
        }
    }
    if let Some(source) = &access.source {
        if let Some(patterns) = resolve(source).and_then(|team| access.lists.get(&team)) {
            return if any_match(patterns, subject.names) { Ok(()) } else { Err(denied(shown)) };
        }
    }
    match &access.default {
        Some(patterns) if any_match(patterns, subject.names) => Ok(()),
        _ => Err(denied(shown)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn access(claim: bool, lists: &[(&str, &[&str])], default: Option<&[&str]>) -> Access {
        Access {
            claim: claim.then(|| Source::parse("jwt:llms").unwrap()),
            source: (!lists.is_empty()).then(|| Source::parse("header:x-team").unwrap()),
            lists: lists
                .iter()
                .map(|(team, models)| (team.to_string(), models.iter().map(|m| m.to_string()).collect()))
                .collect::<HashMap<_, _>>(),
            default: default.map(|d| d.iter().map(|m| m.to_string()).collect()),
        }
    }

    fn run(
        access: &Access,
        names: &[&str],
        keys: &[&str],
        claim: Option<Value>,
        team: Option<&str>,
    ) -> Result<(), ApiError> {
        let claim_value = claim.clone();
        let team = team.map(str::to_string);
        check(
            access,
            Subject { names, keys },
            &move |source| match source {
                Source::JwtClaim(_) => claim_value.clone(),
                _ => None,
            },
            &move |source| match source {
                Source::Header(_) => team.clone(),
                _ => None,
            },
        )
    }

    #[test]
    fn seed_claim_shape_is_keyed_by_provider() {
        let a = access(true, &[], None);
        let claim = json!({"openai": ["gpt-4", "gpt-3.5-turbo"], "anthropic": ["claude-3-opus"]});
        assert!(run(&a, &["gpt-4"], &["openai", "mock"], Some(claim.clone()), None).is_ok());
        assert!(run(&a, &["claude-3-opus"], &["anthropic", "anthropic-prod"], Some(claim.clone()), None).is_ok());
        // Allowed model name, but under another provider: refused.
        let err = run(&a, &["claude-3-opus"], &["openai", "mock"], Some(claim.clone()), None).unwrap_err();
        assert_eq!(err.status, 403);
        assert_eq!(err.code, "model_not_allowed");
        assert_eq!(err.error_type, "permission_error");
        assert!(run(&a, &["gpt-4o"], &["openai"], Some(claim), None).is_err());
        // Alias names count too: the client asked `fast`, which maps to an allowed model.
        let claim = json!({"openai": ["gpt-4o-mini"]});
        assert!(run(&a, &["fast", "gpt-4o-mini"], &["openai"], Some(claim), None).is_ok());
        // Keyed by backend name, wildcard keys and patterns.
        assert!(run(&a, &["x"], &["openai", "mock"], Some(json!({"mock": ["*"]})), None).is_ok());
        assert!(run(&a, &["gpt-4o"], &["openai"], Some(json!({"*": ["gpt-4*"]})), None).is_ok());
    }

    #[test]
    fn flat_claims() {
        let a = access(true, &[], None);
        assert!(run(&a, &["m1"], &[], Some(json!(["m1", "m2"])), None).is_ok());
        assert!(run(&a, &["m2"], &[], Some(json!("m1 m2")), None).is_ok());
        assert!(run(&a, &["m3"], &[], Some(json!("m1,m2")), None).is_err());
    }

    #[test]
    fn missing_claim_falls_back_to_lists_then_default() {
        let a = access(true, &[("red", &["gpt-4o-mini"]), ("blue", &["*"])], Some(&["free-*"]));
        assert!(run(&a, &["gpt-4o-mini"], &[], None, Some("red")).is_ok());
        assert!(run(&a, &["gpt-4o"], &[], None, Some("red")).is_err());
        assert!(run(&a, &["anything"], &[], None, Some("blue")).is_ok());
        assert!(run(&a, &["free-llm"], &[], None, Some("green")).is_ok());
        assert!(run(&a, &["free-llm"], &[], None, None).is_ok());
        assert!(run(&a, &["gpt-4o"], &[], None, None).is_err());
        // A claim, when present, decides alone.
        assert!(run(&a, &["free-llm"], &["openai"], Some(json!({"openai": ["x"]})), Some("blue")).is_err());
    }

    #[test]
    fn nothing_configured_for_caller_is_refused() {
        let a = access(true, &[], None);
        let err = run(&a, &["gpt-4o"], &["openai"], None, None).unwrap_err();
        assert_eq!(err.status, 403);
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(body["error"]["code"], "model_not_allowed");
    }
}
