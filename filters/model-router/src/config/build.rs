//! Raw configuration → the validated, compiled form: names checked, regexes
//! compiled once per VM, failover lists and upstream instances checked, every
//! error naming the field at fault.

use super::raw::*;
use super::*;
use aigw_shared::config::{at_most, index, join, ConfigError, MAX_BUFFER_BYTES};
use aigw_shared::sse::DEFAULT_MAX_EVENT_BYTES;
use regex_lite::Regex;
use std::collections::{HashMap, HashSet};

pub(super) fn upstream(raw: RawConfig, max_body_bytes: usize) -> Result<Upstream, ConfigError> {
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

pub(super) fn check_name(value: &str, path: &str, what: &str) -> Result<(), ConfigError> {
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

pub(super) fn backend_of(raw: RawBackend, path: &str, upstream_instances: bool) -> Result<Backend, ConfigError> {
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
    let chat_only = raw.chat_only.unwrap_or(false);
    if chat_only && raw.provider != Provider::Openai {
        return Err(ConfigError::new(
            join(path, "chat_only"),
            "only for `provider: openai` (Anthropic and Azure backends get Responses requests translated anyway)",
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
        chat_only,
    })
}

pub(super) fn downstream(raw: RawConfig, max_body_bytes: usize) -> Result<Downstream, ConfigError> {
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
                    match (backend.path_prefix.is_empty(), backend.chat_only) {
                        (true, false) => "",
                        (false, false) => ", path_prefix",
                        (true, true) => ", chat_only",
                        (false, true) => ", path_prefix, chat_only",
                    }
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

pub(super) fn compile(pattern: &str, path: &str) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|err| ConfigError::new(path, format!("invalid regex: {err}")))
}

/// Every `$n` / `${name}` a target's model template uses must exist.
pub(super) fn check_captures(regex: &Regex, route: &RouteSpec, path: &str) -> Result<(), ConfigError> {
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
pub(super) fn template_references(template: &str) -> Vec<String> {
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
