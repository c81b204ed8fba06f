//! Route selection: from the requested model (and request attributes) to an
//! ordered list of backends, each with the model name it gets. Pure: request
//! attributes come in through a resolver closure.

use crate::config::{Condition, Downstream, Matcher, RouteSpec, RuleAction, TargetList, MAX_MODEL_LEN};
use aigw_shared::attributes::Source;
use aigw_shared::ApiError;

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The model the client asked for.
    pub requested: String,
    /// The model after aliases and rules (what the table was consulted for).
    pub model: String,
    /// The `x-aigw-route` value.
    pub route: String,
    /// Backend indexes in failover order, each with its upstream model.
    pub targets: Vec<(usize, String)>,
    /// The rule that redirected the request, if any.
    pub rule: Option<String>,
    /// The first backend the requested model maps to before rules apply
    /// (access control keys provider lists on it).
    pub table_primary: Option<usize>,
}

impl Decision {
    /// The first backend and its model.
    pub fn primary(&self) -> Option<&(usize, String)> {
        self.targets.first()
    }
}

/// `*` matches everything, `prefix*` a prefix, anything else itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// FNV-1a: a stable, dependency-free hash for weighted splits.
pub fn split_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

enum Captured<'h> {
    Whole(&'h str),
    Regex(regex_lite::Captures<'h>),
}

impl Captured<'_> {
    fn expand(&self, template: Option<&str>) -> String {
        match (self, template) {
            (Captured::Whole(name), None) => name.to_string(),
            (Captured::Regex(caps), None) => caps.get(0).map(|m| m.as_str().to_string()).unwrap_or_default(),
            (Captured::Whole(name), Some(template)) => {
                template.replace("$$", "\u{0}").replace("${0}", name).replace("$0", name).replace('\u{0}', "$")
            }
            (Captured::Regex(caps), Some(template)) => {
                let mut out = String::new();
                caps.expand(template, &mut out);
                out
            }
        }
    }
}

impl Downstream {
    /// Looks `model` up in the table: exact names first, then `prefix` and
    /// `regex` rules in order, then the default.
    fn lookup<'a, 'h>(&'a self, model: &'h str) -> Option<(&'a RouteSpec, Captured<'h>)> {
        if let Some(spec) = self.exact.get(model) {
            return Some((spec, Captured::Whole(model)));
        }
        for rule in &self.patterns {
            let Matcher::Pattern(regex) = &rule.matcher;
            if let Some(caps) = regex.captures(model) {
                return Some((&rule.route, Captured::Regex(caps)));
            }
        }
        self.default.as_ref().map(|spec| (spec, Captured::Whole(model)))
    }

    fn alias<'a>(&'a self, model: &'a str) -> &'a str {
        self.aliases.get(model).map(String::as_str).unwrap_or(model)
    }

    /// Chooses the backends for a request for `requested`. `resolve` reads a
    /// request attribute (header, claim, filter state); `split_key` is the
    /// value that places the request in a weighted split.
    pub fn select(
        &self,
        requested: &str,
        resolve: &dyn Fn(&Source) -> Option<String>,
        split_key: Option<&str>,
    ) -> Result<Decision, ApiError> {
        let model = self.alias(requested);
        let table_primary =
            self.lookup(model).and_then(|(spec, _)| first_list(spec).targets.first().map(|t| t.backend));

        for rule in &self.rules {
            if let Some(models) = &rule.models {
                if !models.iter().any(|p| pattern_matches(p, requested) || pattern_matches(p, model)) {
                    continue;
                }
            }
            let value = resolve(&rule.source);
            let hit = match (&rule.condition, value.as_deref()) {
                (_, None) => false,
                (Condition::Present, Some(_)) => true,
                (Condition::Equals(expected), Some(value)) => expected == value,
                (Condition::OneOf(expected), Some(value)) => expected.iter().any(|e| e == value),
            };
            if !hit {
                continue;
            }
            let (spec, captured, effective) = match &rule.action {
                RuleAction::Model(target) => {
                    let target = self.alias(target);
                    let Some((spec, captured)) = self.lookup(target) else {
                        // A rule pointing at a model the table does not know
                        // is an operator error; say which model, not the rule.
                        return Err(ApiError::model_not_found(target));
                    };
                    (spec, captured, target)
                }
                RuleAction::Route(spec) => (spec, Captured::Whole(model), model),
            };
            return self.decide(
                requested,
                effective,
                spec,
                &captured,
                split_key,
                Some(rule.name.clone()),
                table_primary,
            );
        }

        let Some((spec, captured)) = self.lookup(model) else {
            return Err(ApiError::model_not_found(requested));
        };
        self.decide(requested, model, spec, &captured, split_key, None, table_primary)
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        requested: &str,
        model: &str,
        spec: &RouteSpec,
        captured: &Captured<'_>,
        split_key: Option<&str>,
        rule: Option<String>,
        table_primary: Option<usize>,
    ) -> Result<Decision, ApiError> {
        let list = match spec {
            RouteSpec::Targets(list) => list,
            RouteSpec::Splits { splits, total } => {
                let point = match split_key {
                    Some(key) => split_hash(key) % u64::from((*total).max(1)),
                    None => 0,
                };
                splits
                    .iter()
                    .find(|(upper, _)| point < u64::from(*upper))
                    .or(splits.last())
                    .map(|(_, list)| list)
                    .ok_or_else(|| ApiError::internal("The route has no splits."))?
            }
        };
        let mut targets = Vec::with_capacity(list.targets.len());
        for target in &list.targets {
            let upstream = captured.expand(target.model.as_deref());
            check_model_name(&upstream)?;
            targets.push((target.backend, upstream));
        }
        Ok(Decision {
            requested: requested.to_string(),
            model: model.to_string(),
            route: list.route.clone(),
            targets,
            rule,
            table_primary,
        })
    }
}

fn first_list(spec: &RouteSpec) -> &TargetList {
    match spec {
        RouteSpec::Targets(list) => list,
        // Non-empty by construction; the first split stands for the model.
        RouteSpec::Splits { splits, .. } => match splits.first() {
            Some((_, list)) => list,
            None => &EMPTY_LIST,
        },
    }
}

static EMPTY_LIST: TargetList = TargetList { targets: Vec::new(), route: String::new() };

/// A model name the gateway forwards must fit in a header: printable ASCII,
/// no spaces, bounded length.
pub fn check_model_name(model: &str) -> Result<(), ApiError> {
    if model.is_empty() || model.len() > MAX_MODEL_LEN || !model.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "invalid_model",
            format!("Model names must be 1 to {MAX_MODEL_LEN} printable ASCII characters without spaces."),
        )
        .with_param("model"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_json, Config};
    use std::collections::HashMap;

    fn config(text: &str) -> Downstream {
        match from_json(Some(text.as_bytes())).unwrap() {
            Config::Downstream(config) => *config,
            Config::Upstream(_) => panic!(),
        }
    }

    const TABLE: &str = r#"{
        "backends": [
            {"name": "openai"}, {"name": "mock-b"}, {"name": "anthropic", "provider": "anthropic", "upstream_instance": true, "route": "anthropic-route"},
            {"name": "private", "route": "private"}
        ],
        "aliases": {"fast": "gpt-4o-mini", "smart": "claude-sonnet-4-5"},
        "models": [
            {"name": "gpt-4o-mini", "targets": [{"backend": "openai"}]},
            {"name": "failover-demo", "targets": [{"backend": "mock-b", "model": "gpt-4o-mini"}, {"backend": "openai", "model": "gpt-4o-mini"}], "route": "failover-demo"},
            {"regex": "anthropic/(.*)", "targets": [{"backend": "anthropic", "model": "$1"}]},
            {"prefix": "claude-", "targets": [{"backend": "anthropic"}]},
            {"prefix": "llama-", "targets": [{"backend": "private", "model": "meta/$1"}]},
            {"name": "canary", "splits": [
                {"weight": 90, "targets": [{"backend": "openai", "model": "stable"}]},
                {"weight": 10, "targets": [{"backend": "mock-b", "model": "candidate"}], "route": "canary-candidate"}
            ]},
            {"name": "private-llm", "targets": [{"backend": "private", "model": "llama-3-70b"}]}
        ],
        "rules": [
            {"name": "pii", "when": {"source": "filter_state:aigw.pii.detected"}, "model": "private-llm"},
            {"name": "budget", "when": {"source": "filter_state:aigw.budget.exceeded", "equals": "1"}, "models": ["claude-*", "smart"], "model": "fast"},
            {"name": "override", "when": {"source": "header:x-llm-backend", "one_of": ["b", "mock-b"]}, "targets": [{"backend": "mock-b"}]}
        ]
    }"#;

    fn attrs(pairs: &[(&str, &str)]) -> impl Fn(&Source) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |source: &Source| map.get(&source.to_string()).cloned()
    }

    fn pick(config: &Downstream, model: &str, pairs: &[(&str, &str)]) -> Result<Decision, ApiError> {
        config.select(model, &attrs(pairs), Some("req-1"))
    }

    fn names(config: &Downstream, decision: &Decision) -> Vec<(String, String)> {
        decision.targets.iter().map(|(b, m)| (config.backends[*b].name.clone(), m.clone())).collect()
    }

    #[test]
    fn exact_names_and_aliases() {
        let c = config(TABLE);
        let d = pick(&c, "gpt-4o-mini", &[]).unwrap();
        assert_eq!(d.route, "openai");
        assert_eq!(names(&c, &d), vec![("openai".into(), "gpt-4o-mini".into())]);
        let d = pick(&c, "fast", &[]).unwrap();
        assert_eq!(d.requested, "fast");
        assert_eq!(d.model, "gpt-4o-mini");
        assert_eq!(names(&c, &d), vec![("openai".into(), "gpt-4o-mini".into())]);
        assert_eq!(d.rule, None);
    }

    #[test]
    fn regex_and_prefix_captures() {
        let c = config(TABLE);
        let d = pick(&c, "anthropic/claude-opus-4", &[]).unwrap();
        assert_eq!(d.route, "anthropic-route");
        assert_eq!(names(&c, &d), vec![("anthropic".into(), "claude-opus-4".into())]);
        let d = pick(&c, "claude-haiku", &[]).unwrap();
        assert_eq!(names(&c, &d), vec![("anthropic".into(), "claude-haiku".into())]);
        let d = pick(&c, "llama-3-8b", &[]).unwrap();
        assert_eq!(names(&c, &d), vec![("private".into(), "meta/3-8b".into())]);
        // Regexes are anchored to the whole name.
        assert_eq!(pick(&c, "x-anthropic/claude", &[]).unwrap_err().status, 404);
        let d = pick(&c, "smart", &[]).unwrap();
        assert_eq!(names(&c, &d), vec![("anthropic".into(), "claude-sonnet-4-5".into())]);
    }

    #[test]
    fn failover_list_keeps_order_and_route() {
        let c = config(TABLE);
        let d = pick(&c, "failover-demo", &[]).unwrap();
        assert_eq!(d.route, "failover-demo");
        assert_eq!(
            names(&c, &d),
            vec![("mock-b".into(), "gpt-4o-mini".into()), ("openai".into(), "gpt-4o-mini".into())]
        );
    }

    #[test]
    fn unknown_model_is_404_without_default() {
        let c = config(TABLE);
        let err = pick(&c, "gpt-9", &[]).unwrap_err();
        assert_eq!(err.status, 404);
        assert_eq!(err.code, "model_not_found");
        let with_default = config(r#"{"backends": [{"name": "x"}], "default": {"targets": [{"backend": "x"}]}}"#);
        let d = pick(&with_default, "anything-at-all", &[]).unwrap();
        assert_eq!(d.targets, vec![(0, "anything-at-all".to_string())]);
    }

    #[test]
    fn content_signal_routes_to_private_model() {
        let c = config(TABLE);
        let d = pick(&c, "gpt-4o-mini", &[("filter_state:aigw.pii.detected", "EMAIL_ADDRESS")]).unwrap();
        assert_eq!(d.rule.as_deref(), Some("pii"));
        assert_eq!(d.model, "private-llm");
        assert_eq!(names(&c, &d), vec![("private".into(), "llama-3-70b".into())]);
    }

    #[test]
    fn budget_fallback_applies_only_to_listed_models() {
        let c = config(TABLE);
        let signal = [("filter_state:aigw.budget.exceeded", "1")];
        let d = pick(&c, "claude-opus", &signal).unwrap();
        assert_eq!(d.rule.as_deref(), Some("budget"));
        assert_eq!(names(&c, &d), vec![("openai".into(), "gpt-4o-mini".into())]);
        assert_eq!(d.table_primary, Some(2), "access control still sees the requested model's backend");
        let d = pick(&c, "smart", &signal).unwrap();
        assert_eq!(d.rule.as_deref(), Some("budget"));
        let d = pick(&c, "anthropic/claude-opus", &signal).unwrap();
        assert_eq!(d.rule, None);
        let d = pick(&c, "claude-opus", &[("filter_state:aigw.budget.exceeded", "0")]).unwrap();
        assert_eq!(d.rule, None);
    }

    #[test]
    fn header_override_with_targets() {
        let c = config(TABLE);
        let d = pick(&c, "gpt-4o-mini", &[("header:x-llm-backend", "b")]).unwrap();
        assert_eq!(d.route, "mock-b");
        assert_eq!(names(&c, &d), vec![("mock-b".into(), "gpt-4o-mini".into())]);
        assert_eq!(pick(&c, "gpt-4o-mini", &[("header:x-llm-backend", "c")]).unwrap().route, "openai");
    }

    #[test]
    fn weighted_split_is_deterministic_and_weighted() {
        let c = config(TABLE);
        let mut candidate = 0;
        for i in 0..2000 {
            let key = format!("request-{i}");
            let a = c.select("canary", &attrs(&[]), Some(&key)).unwrap();
            let b = c.select("canary", &attrs(&[]), Some(&key)).unwrap();
            assert_eq!(a, b, "same key, same split");
            if a.route == "canary-candidate" {
                assert_eq!(a.targets[0].1, "candidate");
                candidate += 1;
            } else {
                assert_eq!(a.targets[0].1, "stable");
            }
        }
        // 10% ± a generous margin.
        assert!((120..=280).contains(&candidate), "{candidate}");
        assert_eq!(c.select("canary", &attrs(&[]), None).unwrap().targets[0].1, "stable");
    }

    #[test]
    fn upstream_model_must_fit_a_header() {
        let c = config(r#"{"backends": [{"name": "x"}], "default": {"targets": [{"backend": "x"}]}}"#);
        assert_eq!(pick(&c, "bad model", &[]).unwrap_err().code, "invalid_model");
        assert_eq!(pick(&c, "naïve", &[]).unwrap_err().status, 400);
        assert_eq!(pick(&c, &"m".repeat(300), &[]).unwrap_err().status, 400);
    }

    #[test]
    fn templates_on_exact_names() {
        let c = config(
            r#"{"backends": [{"name": "x"}], "models": [{"name": "m", "targets": [{"backend": "x", "model": "org/$0-$$"}]}]}"#,
        );
        assert_eq!(pick(&c, "m", &[]).unwrap().targets[0].1, "org/m-$");
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "x"));
        assert!(pattern_matches("gpt-4*", "gpt-4o"));
        assert!(!pattern_matches("gpt-4", "gpt-4o"));
        assert!(pattern_matches("gpt-4", "gpt-4"));
    }
}
