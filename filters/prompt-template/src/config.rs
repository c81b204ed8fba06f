//! Plugin configuration: raw serde structs (unknown fields rejected) compiled
//! into a validated form once per VM. Template texts are parsed here, every
//! placeholder is checked against the variables it may use, and every error
//! names the field at fault, e.g.
//! `tenants.retail.templates.summary.messages[1].content: unknown variable {{foo}} …`.
//!
//! The top level of the configuration is the default set of decorations and
//! templates. Each entry of `tenants` inherits it and overrides parts of it;
//! `tenant.from` picks the entry for a request. See README.md for every field.

use crate::render::{is_valid_name, MessageTemplate, Role, TemplateText};
use crate::retrieval::{FailureMode, Retrieval};
use aigw_shared::attributes::Source;
use aigw_shared::body::DEFAULT_MAX_BODY_BYTES;
use aigw_shared::config::{at_most, index, join, parse_config, ConfigError, MAX_BUFFER_BYTES};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The name of the top-level set, in metrics and logs.
pub const DEFAULT_SET: &str = "default";

/// Body fields a template may not preset: the filter owns them.
const RESERVED_FIELDS: [&str; 4] = ["messages", "system", "template", "variables"];

// ---------------------------------------------------------------------------
// Raw form, as written by the operator.

/// The top level repeats `RawSet`'s fields rather than flattening it: serde's
/// `flatten` does not work with `deny_unknown_fields`, and unknown fields must
/// be refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    tenant: Option<RawTenantSelector>,
    #[serde(default)]
    platform_variables: Option<BTreeMap<String, RawPlatformVariable>>,
    #[serde(default)]
    decorate: Option<RawDecorate>,
    #[serde(default)]
    templates: Option<BTreeMap<String, RawTemplate>>,
    #[serde(default)]
    allow_untemplated_requests: Option<bool>,
    #[serde(default)]
    retrieval: Option<RawRetrieval>,
    #[serde(default)]
    tenants: BTreeMap<String, RawSet>,
}

/// The overridable part of the configuration: the top level, or one tenant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    #[serde(default)]
    platform_variables: Option<BTreeMap<String, RawPlatformVariable>>,
    #[serde(default)]
    decorate: Option<RawDecorate>,
    #[serde(default)]
    templates: Option<BTreeMap<String, RawTemplate>>,
    #[serde(default)]
    allow_untemplated_requests: Option<bool>,
    #[serde(default)]
    retrieval: Option<RawRetrieval>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenantSelector {
    from: String,
    #[serde(default)]
    on_unknown: OnUnknown,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlatformVariable {
    from: String,
    #[serde(default)]
    default: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecorate {
    #[serde(default)]
    prepend: Vec<RawMessage>,
    #[serde(default)]
    append: Vec<RawMessage>,
    #[serde(default)]
    client_system_prompt: ClientSystemPrompt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    role: Role,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    messages: Vec<RawMessage>,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    defaults: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

fn default_retrieval_path() -> String {
    "/retrieve".to_string()
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_max_passages() -> usize {
    5
}
fn default_max_context_bytes() -> usize {
    8 * 1024
}
fn default_variable() -> String {
    "context".to_string()
}
fn default_separator() -> String {
    "\n\n".to_string()
}
fn default_max_query_bytes() -> usize {
    4 * 1024
}
fn default_max_response_bytes() -> usize {
    1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetrieval {
    cluster: String,
    #[serde(default = "default_retrieval_path")]
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "FailureMode::open")]
    failure_mode: FailureMode,
    #[serde(default = "default_variable")]
    variable: String,
    #[serde(default = "default_max_passages")]
    max_passages: usize,
    #[serde(default = "default_max_context_bytes")]
    max_context_bytes: usize,
    #[serde(default = "default_separator")]
    separator: String,
    #[serde(default)]
    fallback: String,
    #[serde(default = "default_max_query_bytes")]
    max_query_bytes: usize,
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: usize,
}

// ---------------------------------------------------------------------------
// Validated form.

/// What to do when the tenant attribute is absent or names no tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnknown {
    /// Use the top-level (default) set.
    #[default]
    Default,
    /// Answer 403 `unknown_tenant`.
    Reject,
}

/// What to do with a system prompt the client sent when the decoration adds
/// one of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSystemPrompt {
    /// Keep both, the organisation's first.
    #[default]
    KeepBoth,
    /// Drop the client's system prompt.
    Replace,
    /// Answer 400 `system_prompt_not_allowed`.
    Reject,
}

#[derive(Debug)]
pub struct Config {
    pub max_body_bytes: usize,
    pub tenant_selector: Option<TenantSelector>,
    pub default_set: TenantSet,
    pub tenants: BTreeMap<String, TenantSet>,
}

#[derive(Debug)]
pub struct TenantSelector {
    pub source: Source,
    pub on_unknown: OnUnknown,
}

/// Decorations, templates and settings for one tenant (or the default).
#[derive(Debug)]
pub struct TenantSet {
    pub name: String,
    pub platform_variables: Vec<PlatformVariable>,
    pub decoration: Decoration,
    pub templates: BTreeMap<String, Template>,
    pub allow_untemplated_requests: bool,
    pub retrieval: Option<Retrieval>,
}

/// A variable the gateway fills from the request's attributes.
#[derive(Debug)]
pub struct PlatformVariable {
    pub name: String,
    pub source: Source,
    pub default: String,
}

#[derive(Debug, Default)]
pub struct Decoration {
    pub prepend: Vec<MessageTemplate>,
    pub append: Vec<MessageTemplate>,
    pub client_system_prompt: ClientSystemPrompt,
}

impl Decoration {
    pub fn is_empty(&self) -> bool {
        self.prepend.is_empty() && self.append.is_empty()
    }

    pub fn uses(&self, variable: &str) -> bool {
        self.prepend.iter().chain(&self.append).any(|m| m.content.uses(variable))
    }
}

#[derive(Debug)]
pub struct Template {
    pub name: String,
    pub messages: Vec<MessageTemplate>,
    pub variables: BTreeMap<String, VariableSpec>,
    /// Body fields set when the client did not send them (e.g. temperature).
    pub defaults: Map<String, Value>,
}

impl Template {
    pub fn uses(&self, variable: &str) -> bool {
        self.messages.iter().any(|m| m.content.uses(variable))
    }
}

/// A variable the client supplies in `variables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableSpec {
    pub required: bool,
    /// Used when the client omits an optional variable.
    pub default: String,
    /// Longest accepted value, in characters.
    pub max_length: Option<usize>,
}

impl Config {
    /// The set for a tenant name, if configured.
    pub fn tenant(&self, name: &str) -> Option<&TenantSet> {
        self.tenants.get(name)
    }

    /// The set with this name; the default set for `default` or an unknown name.
    pub fn set(&self, name: &str) -> &TenantSet {
        self.tenants.get(name).unwrap_or(&self.default_set)
    }
}

/// Parses and validates the plugin configuration (the JSON Envoy hands the
/// filter). Used by `on_configure` and by the tests that check every shipped
/// configuration and README example.
pub fn from_json(bytes: Option<&[u8]>) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_config(bytes)?;
    compile(raw)
}

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(ConfigError::new("max_body_bytes", "must be at least 1"));
    }
    at_most(max_body_bytes, MAX_BUFFER_BYTES, "max_body_bytes")?;
    let tenant_selector = match raw.tenant {
        Some(selector) => Some(TenantSelector {
            source: Source::parse(&selector.from).map_err(|reason| ConfigError::new("tenant.from", reason))?,
            on_unknown: selector.on_unknown,
        }),
        None => None,
    };
    if tenant_selector.is_none() && !raw.tenants.is_empty() {
        return Err(ConfigError::new(
            "tenant",
            "`tenants` are configured but `tenant.from` is missing: say which attribute names the tenant, e.g. \"jwt:team\"",
        ));
    }
    let top = RawSet {
        platform_variables: raw.platform_variables,
        decorate: raw.decorate,
        templates: raw.templates,
        allow_untemplated_requests: raw.allow_untemplated_requests,
        retrieval: raw.retrieval,
    };
    let default_set = compile_set(DEFAULT_SET, &[(&top, String::new())])?;
    let mut tenants = BTreeMap::new();
    for (name, set) in &raw.tenants {
        let path = join("tenants", name);
        if !is_valid_key(name) {
            return Err(ConfigError::new(path, "a tenant name is 1 to 64 letters, digits, `_` or `-`"));
        }
        if name == DEFAULT_SET {
            return Err(ConfigError::new(path, "`default` is the name of the top-level set; pick another name"));
        }
        let compiled = compile_set(name, &[(&top, String::new()), (set, path)])?;
        tenants.insert(name.clone(), compiled);
    }
    Ok(Config { max_body_bytes, tenant_selector, default_set, tenants })
}

/// Template and tenant names appear in metric names and error messages.
fn is_valid_key(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Compiles one set from layers, later layers overriding earlier ones. Each
/// layer carries the path prefix of its fields (empty for the top level).
/// The top level is compiled on its own first, so an error in an inherited
/// field that shows up only in a tenant's context (e.g. the tenant renamed the
/// retrieval variable) says which tenant.
fn compile_set(name: &str, layers: &[(&RawSet, String)]) -> Result<TenantSet, ConfigError> {
    compile_layers(name, layers).map_err(|err| {
        if name != DEFAULT_SET && !err.path.starts_with("tenants.") {
            ConfigError::new(err.path, format!("{} (as inherited by tenant `{name}`)", err.reason))
        } else {
            err
        }
    })
}

fn compile_layers(name: &str, layers: &[(&RawSet, String)]) -> Result<TenantSet, ConfigError> {
    let mut platform: BTreeMap<&str, (&RawPlatformVariable, String)> = BTreeMap::new();
    let mut templates: BTreeMap<&str, (&RawTemplate, String)> = BTreeMap::new();
    let mut decorate: Option<(&RawDecorate, String)> = None;
    let mut retrieval: Option<(&RawRetrieval, String)> = None;
    let mut allow_untemplated_requests = true;
    for (layer, prefix) in layers {
        for (var, raw) in layer.platform_variables.iter().flatten() {
            platform.insert(var, (raw, join(&join(prefix, "platform_variables"), var)));
        }
        for (template, raw) in layer.templates.iter().flatten() {
            templates.insert(template, (raw, join(&join(prefix, "templates"), template)));
        }
        if let Some(raw) = &layer.decorate {
            decorate = Some((raw, join(prefix, "decorate")));
        }
        if let Some(raw) = &layer.retrieval {
            retrieval = Some((raw, join(prefix, "retrieval")));
        }
        if let Some(allow) = layer.allow_untemplated_requests {
            allow_untemplated_requests = allow;
        }
    }

    let mut platform_variables = Vec::new();
    for (var, (raw, path)) in &platform {
        if !is_valid_name(var) {
            return Err(ConfigError::new(
                path.clone(),
                "a variable name is letters, digits and `_`, not starting with a digit",
            ));
        }
        let source = Source::parse(&raw.from).map_err(|reason| ConfigError::new(join(path, "from"), reason))?;
        platform_variables.push(PlatformVariable { name: var.to_string(), source, default: raw.default.clone() });
    }

    let retrieval = match retrieval {
        Some((raw, path)) => {
            let compiled = compile_retrieval(raw, &path)?;
            if platform.contains_key(compiled.variable.as_str()) {
                return Err(ConfigError::new(
                    join(&path, "variable"),
                    format!("`{}` is also a platform variable; give the passages another name", compiled.variable),
                ));
            }
            Some(compiled)
        }
        None => None,
    };
    let retrieval_variable = retrieval.as_ref().map(|r| r.variable.as_str());
    let is_platform = |var: &str| platform.contains_key(var) || Some(var) == retrieval_variable;

    let decoration = match decorate {
        Some((raw, path)) => {
            let check = |var: &str| -> Result<(), String> {
                if is_platform(var) {
                    Ok(())
                } else {
                    Err(format!(
                        "unknown variable {{{{{var}}}}}: decorations apply to every request and can use only \
                         platform variables (platform_variables) and the retrieval variable"
                    ))
                }
            };
            Decoration {
                prepend: compile_messages(&raw.prepend, &join(&path, "prepend"), &check)?,
                append: compile_messages(&raw.append, &join(&path, "append"), &check)?,
                client_system_prompt: raw.client_system_prompt,
            }
        }
        None => Decoration::default(),
    };

    let mut compiled_templates = BTreeMap::new();
    for (template, (raw, path)) in &templates {
        compiled_templates.insert(template.to_string(), compile_template(template, raw, path, &is_platform)?);
    }

    Ok(TenantSet {
        name: name.to_string(),
        platform_variables,
        decoration,
        templates: compiled_templates,
        allow_untemplated_requests,
        retrieval,
    })
}

fn compile_messages(
    raw: &[RawMessage],
    path: &str,
    check: &dyn Fn(&str) -> Result<(), String>,
) -> Result<Vec<MessageTemplate>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, message) in raw.iter().enumerate() {
        let content_path = join(&index(path, i), "content");
        let content =
            TemplateText::parse(&message.content).map_err(|reason| ConfigError::new(&content_path, reason))?;
        for var in content.variables() {
            check(var).map_err(|reason| ConfigError::new(&content_path, reason))?;
        }
        out.push(MessageTemplate { role: message.role, content });
    }
    Ok(out)
}

fn compile_template(
    name: &str,
    raw: &RawTemplate,
    path: &str,
    is_platform: &dyn Fn(&str) -> bool,
) -> Result<Template, ConfigError> {
    if !is_valid_key(name) {
        return Err(ConfigError::new(path, "a template name is 1 to 64 letters, digits, `_` or `-`"));
    }
    if raw.messages.is_empty() {
        return Err(ConfigError::new(join(path, "messages"), "a template needs at least one message"));
    }
    let mut variables = BTreeMap::new();
    for (var, spec) in &raw.variables {
        let var_path = join(&join(path, "variables"), var);
        if !is_valid_name(var) {
            return Err(ConfigError::new(
                var_path,
                "a variable name is letters, digits and `_`, not starting with a digit",
            ));
        }
        if is_platform(var) {
            return Err(ConfigError::new(
                var_path,
                "this name is a platform variable (or the retrieval variable), which the gateway fills; the client cannot set it",
            ));
        }
        if spec.required && spec.default.is_some() {
            return Err(ConfigError::new(join(&var_path, "default"), "a required variable cannot have a default"));
        }
        if spec.max_length == Some(0) {
            return Err(ConfigError::new(join(&var_path, "max_length"), "must be at least 1"));
        }
        if let (Some(default), Some(max)) = (&spec.default, spec.max_length) {
            if default.chars().count() > max {
                return Err(ConfigError::new(join(&var_path, "default"), "longer than max_length"));
            }
        }
        variables.insert(
            var.clone(),
            VariableSpec {
                required: spec.required,
                default: spec.default.clone().unwrap_or_default(),
                max_length: spec.max_length,
            },
        );
    }
    let template_vars_path = join(path, "variables");
    let check = |var: &str| -> Result<(), String> {
        if variables.contains_key(var) || is_platform(var) {
            Ok(())
        } else {
            Err(format!(
                "unknown variable {{{{{var}}}}}: declare it under {template_vars_path}, or as a platform variable"
            ))
        }
    };
    let messages = compile_messages(&raw.messages, &join(path, "messages"), &check)?;
    for key in raw.defaults.keys() {
        if RESERVED_FIELDS.contains(&key.as_str()) {
            return Err(ConfigError::new(
                join(&join(path, "defaults"), key),
                "the template itself sets this field; defaults are for fields such as temperature or max_tokens",
            ));
        }
    }
    Ok(Template { name: name.to_string(), messages, variables, defaults: raw.defaults.clone() })
}

fn compile_retrieval(raw: &RawRetrieval, path: &str) -> Result<Retrieval, ConfigError> {
    if raw.cluster.trim().is_empty() {
        return Err(ConfigError::new(join(path, "cluster"), "must name an Envoy cluster"));
    }
    if !raw.path.starts_with('/') {
        return Err(ConfigError::new(join(path, "path"), "must start with `/`"));
    }
    if raw.timeout_ms == 0 || raw.timeout_ms > 60_000 {
        return Err(ConfigError::new(join(path, "timeout_ms"), "must be between 1 and 60000"));
    }
    if !is_valid_name(&raw.variable) {
        return Err(ConfigError::new(
            join(path, "variable"),
            "a variable name is letters, digits and `_`, not starting with a digit",
        ));
    }
    for (field, value) in [
        ("max_passages", raw.max_passages),
        ("max_context_bytes", raw.max_context_bytes),
        ("max_query_bytes", raw.max_query_bytes),
        ("max_response_bytes", raw.max_response_bytes),
    ] {
        if value == 0 {
            return Err(ConfigError::new(join(path, field), "must be at least 1"));
        }
        if field.ends_with("_bytes") {
            at_most(value, MAX_BUFFER_BYTES, &join(path, field))?;
        }
    }
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let header_path = join(&join(path, "headers"), name);
        let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(ConfigError::new(header_path, "header names are lowercase letters, digits and `-`"));
        }
        if matches!(name.as_str(), "content-length" | "content-type" | "host") {
            return Err(ConfigError::new(header_path, "the filter sets this header itself"));
        }
        headers.push((name.clone(), value.clone()));
    }
    Ok(Retrieval {
        cluster: raw.cluster.clone(),
        path: raw.path.clone(),
        authority: raw.authority.clone().unwrap_or_else(|| raw.cluster.clone()),
        headers,
        timeout: Duration::from_millis(raw.timeout_ms),
        failure_mode: raw.failure_mode,
        variable: raw.variable.clone(),
        max_passages: raw.max_passages,
        max_context_bytes: raw.max_context_bytes,
        separator: raw.separator.clone(),
        fallback: raw.fallback.clone(),
        max_query_bytes: raw.max_query_bytes,
        max_response_bytes: raw.max_response_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Config {
        match from_json(Some(text.as_bytes())) {
            Ok(config) => config,
            Err(err) => panic!("config rejected: {err}"),
        }
    }

    fn err(text: &str) -> String {
        from_json(Some(text.as_bytes())).unwrap_err().to_string()
    }

    #[test]
    fn empty_config_is_a_pass_through() {
        let config = ok("{}");
        assert!(config.default_set.decoration.is_empty());
        assert!(config.default_set.templates.is_empty());
        assert!(config.default_set.allow_untemplated_requests);
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(from_json(None).is_ok());
    }

    #[test]
    fn unknown_field_is_named() {
        let e = err(r#"{"templates": {"t": {"messages": [{"role": "user", "content": "x", "contnet": 1}]}}}"#);
        assert!(e.starts_with("templates.t.messages[0].contnet: unknown field"), "{e}");
    }

    #[test]
    fn bad_role_is_named() {
        let e = err(r#"{"decorate": {"prepend": [{"role": "admin", "content": "x"}]}}"#);
        assert!(e.starts_with("decorate.prepend[0].role: unknown variant `admin`"), "{e}");
    }

    #[test]
    fn unknown_variable_in_tenant_template_names_the_field() {
        let e = err(r#"{
            "tenant": {"from": "header:x-team"},
            "tenants": {"retail": {"templates": {"summary": {
                "variables": {"text": {"required": true}},
                "messages": [{"role": "system", "content": "Summarise."}, {"role": "user", "content": "{{text}} {{foo}}"}]
            }}}}
        }"#);
        assert!(e.starts_with("tenants.retail.templates.summary.messages[1].content: unknown variable {{foo}}"), "{e}");
        assert!(e.contains("tenants.retail.templates.summary.variables"), "{e}");
    }

    #[test]
    fn bad_placeholder_is_named() {
        let e = err(r#"{"templates": {"t": {"messages": [{"role": "user", "content": "{{ a b }}"}]}}}"#);
        assert!(e.starts_with("templates.t.messages[0].content: invalid placeholder"), "{e}");
    }

    #[test]
    fn decoration_may_use_only_platform_variables() {
        let e = err(r#"{"decorate": {"prepend": [{"role": "system", "content": "Hi {{user}}"}]}}"#);
        assert!(e.starts_with("decorate.prepend[0].content: unknown variable {{user}}"), "{e}");
        let config = ok(r#"{
            "platform_variables": {"user": {"from": "jwt:sub", "default": "anonymous"}},
            "decorate": {"prepend": [{"role": "system", "content": "Hi {{user}}"}], "client_system_prompt": "reject"}
        }"#);
        assert_eq!(config.default_set.decoration.client_system_prompt, ClientSystemPrompt::Reject);
        assert_eq!(config.default_set.platform_variables[0].default, "anonymous");
    }

    #[test]
    fn platform_variable_source_errors_are_named() {
        let e = err(r#"{"platform_variables": {"user": {"from": "cookie:x"}}}"#);
        assert!(e.starts_with("platform_variables.user.from: unknown attribute kind `cookie`"), "{e}");
        let e = err(r#"{"platform_variables": {"bad-name": {"from": "jwt:sub"}}}"#);
        assert!(e.starts_with("platform_variables.bad-name:"), "{e}");
    }

    #[test]
    fn template_variable_rules() {
        let e = err(r#"{"templates": {"t": {"variables": {"a": {"required": true, "default": "x"}},
            "messages": [{"role": "user", "content": "{{a}}"}]}}}"#);
        assert!(e.starts_with("templates.t.variables.a.default: a required variable cannot have a default"), "{e}");
        let e = err(r#"{"platform_variables": {"user": {"from": "jwt:sub"}},
            "templates": {"t": {"variables": {"user": {}}, "messages": [{"role": "user", "content": "{{user}}"}]}}}"#);
        assert!(e.starts_with("templates.t.variables.user: this name is a platform variable"), "{e}");
        let e = err(r#"{"templates": {"t": {"messages": []}}}"#);
        assert!(e.starts_with("templates.t.messages: a template needs at least one message"), "{e}");
        let e = err(r#"{"templates": {"t.x": {"messages": [{"role": "user", "content": "x"}]}}}"#);
        assert!(e.starts_with("templates.t.x: a template name"), "{e}");
        let e = err(
            r#"{"templates": {"t": {"messages": [{"role": "user", "content": "x"}], "defaults": {"messages": []}}}}"#,
        );
        assert!(e.starts_with("templates.t.defaults.messages:"), "{e}");
        let e = err(r#"{"templates": {"t": {"variables": {"a": {"default": "long", "max_length": 2}},
            "messages": [{"role": "user", "content": "{{a}}"}]}}}"#);
        assert!(e.starts_with("templates.t.variables.a.default: longer than max_length"), "{e}");
    }

    #[test]
    fn optional_variables_default_to_empty() {
        let config =
            ok(r#"{"templates": {"t": {"variables": {"a": {}, "b": {"default": "x"}, "c": {"required": true}},
            "messages": [{"role": "user", "content": "{{a}}{{b}}{{c}}"}]}}}"#);
        let t = &config.default_set.templates["t"];
        assert_eq!(t.variables["a"], VariableSpec { required: false, default: String::new(), max_length: None });
        assert_eq!(t.variables["b"].default, "x");
        assert!(t.variables["c"].required);
    }

    #[test]
    fn tenants_inherit_and_override() {
        let config = ok(r#"{
            "tenant": {"from": "jwt:team", "on_unknown": "reject"},
            "decorate": {"prepend": [{"role": "system", "content": "Org prompt."}]},
            "templates": {"shared": {"messages": [{"role": "user", "content": "s"}]},
                          "over": {"messages": [{"role": "user", "content": "top"}]}},
            "tenants": {
                "wealth": {"decorate": {"prepend": [{"role": "system", "content": "Wealth prompt."}]},
                           "templates": {"over": {"messages": [{"role": "user", "content": "wealth"}]}},
                           "allow_untemplated_requests": false},
                "retail": {}
            }
        }"#);
        let selector = config.tenant_selector.as_ref().unwrap();
        assert_eq!(selector.on_unknown, OnUnknown::Reject);
        let wealth = config.tenant("wealth").unwrap();
        assert!(!wealth.allow_untemplated_requests);
        assert_eq!(wealth.templates.len(), 2);
        let values = Default::default();
        assert_eq!(wealth.templates["over"].messages[0].content.render(&values), "wealth");
        assert_eq!(wealth.decoration.prepend[0].content.render(&values), "Wealth prompt.");
        let retail = config.tenant("retail").unwrap();
        assert!(retail.allow_untemplated_requests);
        assert_eq!(retail.decoration.prepend[0].content.render(&values), "Org prompt.");
        assert_eq!(retail.templates["over"].messages[0].content.render(&values), "top");
        assert_eq!(retail.name, "retail");
        assert_eq!(config.default_set.name, DEFAULT_SET);
    }

    #[test]
    fn tenant_rules() {
        let e = err(r#"{"tenants": {"a": {}}}"#);
        assert!(e.starts_with("tenant: `tenants` are configured but `tenant.from` is missing"), "{e}");
        let e = err(r#"{"tenant": {"from": "header:x-team"}, "tenants": {"default": {}}}"#);
        assert!(e.starts_with("tenants.default:"), "{e}");
        let e = err(r#"{"tenant": {"from": "nope"}}"#);
        assert!(e.starts_with("tenant.from: unknown attribute"), "{e}");
        let e = err(r#"{"tenant": {"from": "header:x-team", "on_unknown": "drop"}}"#);
        assert!(e.starts_with("tenant.on_unknown: unknown variant `drop`"), "{e}");
        let e = err(
            r#"{"tenant": {"from": "header:x-team"}, "tenants": {"a": {"decorate": {"prepend": [{"role": "system", "content": "{{x}}"}]}}}}"#,
        );
        assert!(e.starts_with("tenants.a.decorate.prepend[0].content: unknown variable {{x}}"), "{e}");
    }

    #[test]
    fn inherited_template_checked_in_tenant_context() {
        // The top-level template uses the retrieval variable; tenant `b`
        // renames it, so the inherited template no longer resolves there.
        let e = err(r#"{
            "tenant": {"from": "header:x-team"},
            "retrieval": {"cluster": "rag"},
            "templates": {"kb": {"messages": [{"role": "system", "content": "Passages: {{context}}"}]}},
            "tenants": {"b": {"retrieval": {"cluster": "rag", "variable": "passages"}}}
        }"#);
        assert!(e.starts_with("templates.kb.messages[0].content: unknown variable {{context}}"), "{e}");
        assert!(e.ends_with("(as inherited by tenant `b`)"), "{e}");
    }

    #[test]
    fn retrieval_validation_and_defaults() {
        let config = ok(r#"{"retrieval": {"cluster": "rag"},
            "templates": {"kb": {"messages": [{"role": "system", "content": "{{context}}"}]}}}"#);
        let r = config.default_set.retrieval.as_ref().unwrap();
        assert_eq!(r.path, "/retrieve");
        assert_eq!(r.authority, "rag");
        assert_eq!(r.timeout, Duration::from_millis(2000));
        assert_eq!(r.failure_mode, FailureMode::Open);
        assert_eq!(r.variable, "context");
        for (body, prefix) in [
            (r#"{"retrieval": {"cluster": ""}}"#, "retrieval.cluster:"),
            (r#"{"retrieval": {"cluster": "r", "path": "x"}}"#, "retrieval.path:"),
            (r#"{"retrieval": {"cluster": "r", "timeout_ms": 0}}"#, "retrieval.timeout_ms:"),
            (r#"{"retrieval": {"cluster": "r", "max_passages": 0}}"#, "retrieval.max_passages:"),
            (r#"{"retrieval": {"cluster": "r", "variable": "a-b"}}"#, "retrieval.variable:"),
            (r#"{"retrieval": {"cluster": "r", "failure_mode": "maybe"}}"#, "retrieval.failure_mode:"),
            (r#"{"retrieval": {"cluster": "r", "headers": {"Host": "x"}}}"#, "retrieval.headers.Host:"),
            (r#"{"retrieval": {"cluster": "r", "headers": {"content-type": "x"}}}"#, "retrieval.headers.content-type:"),
            (
                r#"{"platform_variables": {"context": {"from": "route"}}, "retrieval": {"cluster": "r"}}"#,
                "retrieval.variable:",
            ),
            (
                r#"{"retrieval": {"cluster": "r", "max_response_bytes": 1000000000000}}"#,
                "retrieval.max_response_bytes:",
            ),
        ] {
            let e = err(body);
            assert!(e.starts_with(prefix), "{body}: {e}");
        }
    }

    #[test]
    fn max_body_bytes_must_be_positive() {
        assert!(err(r#"{"max_body_bytes": 0}"#).starts_with("max_body_bytes:"));
        assert!(err(r#"{"max_body_bytes": 1000000000000}"#).starts_with("max_body_bytes: must be at most"));
        assert_eq!(ok(r#"{"max_body_bytes": 10}"#).max_body_bytes, 10);
    }
}
