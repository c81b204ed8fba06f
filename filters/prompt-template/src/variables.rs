//! Variable values for one request.
//!
//! - Client variables come from the request's `variables` object and must be
//!   declared by the template. Strings, numbers and booleans are accepted
//!   (numbers and booleans as their JSON text). Undeclared names, other types,
//!   values over `max_length` and missing required variables are 400s that
//!   name the variable.
//! - Platform variables are filled by the gateway from request attributes
//!   (headers, JWT claims verified by `jwt_authn`, route name and metadata,
//!   filter state), with a configured default when absent. A client cannot
//!   set them: a name the client sends that is a platform variable is refused.

use crate::config::{PlatformVariable, Template, TenantSet};
use crate::render::Values;
use aigw_shared::host::Host;
use aigw_shared::ApiError;
use serde_json::Value;

/// Longest variable name echoed in an error message.
const MAX_ECHOED_NAME: usize = 64;

fn echo(name: &str) -> String {
    name.chars().take(MAX_ECHOED_NAME).collect()
}

/// Resolves the platform variables of a set.
pub fn platform_values(variables: &[PlatformVariable], host: &dyn Host) -> Values {
    variables
        .iter()
        .map(|var| (var.name.clone(), var.source.resolve(host).unwrap_or_else(|| var.default.clone())))
        .collect()
}

/// Checks the client's `variables` against the template and returns the
/// values, defaults filled in.
pub fn client_values(template: &Template, set: &TenantSet, raw: Option<&Value>) -> Result<Values, ApiError> {
    let empty = serde_json::Map::new();
    let supplied = match raw {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_type", "`variables` must be a JSON object.").with_param("variables")
            )
        }
    };
    let mut values = Values::new();
    for (name, value) in supplied {
        let Some(spec) = template.variables.get(name) else {
            let platform = set.platform_variables.iter().any(|p| &p.name == name)
                || set.retrieval.as_ref().is_some_and(|r| &r.variable == name);
            let message = if platform {
                format!("The variable `{}` is set by the gateway and cannot be sent by the client.", echo(name))
            } else {
                format!("The template `{}` has no variable `{}`.", template.name, echo(name))
            };
            return Err(
                ApiError::bad_request("unknown_variable", message).with_param(format!("variables.{}", echo(name)))
            );
        };
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_variable",
                    format!("The variable `{name}` must be a string, number or boolean."),
                )
                .with_param(format!("variables.{name}")))
            }
        };
        if let Some(max) = spec.max_length {
            if text.chars().count() > max {
                return Err(ApiError::bad_request(
                    "invalid_variable",
                    format!("The variable `{name}` is longer than {max} characters."),
                )
                .with_param(format!("variables.{name}")));
            }
        }
        values.insert(name.clone(), text);
    }
    let missing: Vec<&str> = template
        .variables
        .iter()
        .filter(|(name, spec)| spec.required && !values.contains_key(*name))
        .map(|(name, _)| name.as_str())
        .collect();
    if let Some(first) = missing.first() {
        let list = missing.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ");
        let noun = if missing.len() == 1 { "variable" } else { "variables" };
        return Err(ApiError::bad_request(
            "missing_variable",
            format!("The template `{}` needs the {noun} {list}.", template.name),
        )
        .with_param(format!("variables.{first}")));
    }
    for (name, spec) in &template.variables {
        if !values.contains_key(name) {
            values.insert(name.clone(), spec.default.clone());
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_json, Config};
    use aigw_shared::attributes::envoy_value;
    use aigw_shared::host::fake::FakeHost;
    use serde_json::json;

    fn config() -> Config {
        from_json(Some(
            br#"{
            "platform_variables": {
                "user": {"from": "jwt:sub", "default": "anonymous"},
                "team": {"from": "header:x-team"},
                "route": {"from": "route"},
                "desk": {"from": "route_metadata:aigw:desk"}
            },
            "templates": {"t": {
                "variables": {"text": {"required": true, "max_length": 10}, "lang": {"required": true},
                              "tone": {"default": "neutral"}, "note": {}},
                "messages": [{"role": "user", "content": "{{text}}{{lang}}{{tone}}{{note}}{{user}}"}]
            }}
        }"#,
        ))
        .unwrap()
    }

    fn values(raw: Value) -> Result<Values, ApiError> {
        let config = config();
        let set = &config.default_set;
        client_values(&set.templates["t"], set, Some(&raw))
    }

    #[test]
    fn client_values_with_defaults_and_scalars() {
        let v = values(json!({"text": "hi", "lang": 3, "note": true})).unwrap();
        assert_eq!(v["text"], "hi");
        assert_eq!(v["lang"], "3");
        assert_eq!(v["tone"], "neutral");
        assert_eq!(v["note"], "true");
    }

    #[test]
    fn missing_required_variables_are_named() {
        let err = values(json!({"text": "hi"})).unwrap_err();
        assert_eq!((err.status, err.code), (400, "missing_variable"));
        assert!(err.message.contains("`lang`"), "{}", err.message);
        assert_eq!(err.param.as_deref(), Some("variables.lang"));
        let err = values(json!({})).unwrap_err();
        assert!(err.message.contains("variables `lang`, `text`"), "{}", err.message);
        let config = config();
        let set = &config.default_set;
        assert_eq!(client_values(&set.templates["t"], set, None).unwrap_err().code, "missing_variable");
    }

    #[test]
    fn wrong_types_and_unknown_names() {
        let err = values(json!({"text": {"a": 1}, "lang": "fr"})).unwrap_err();
        assert_eq!((err.code, err.param.as_deref()), ("invalid_variable", Some("variables.text")));
        let err = values(json!({"text": null, "lang": "fr"})).unwrap_err();
        assert_eq!(err.code, "invalid_variable");
        let err = values(json!({"text": "a", "lang": "fr", "colour": "red"})).unwrap_err();
        assert_eq!(err.code, "unknown_variable");
        assert!(err.message.contains("`colour`"));
        let err = values(json!({"text": "a", "lang": "fr", "user": "admin"})).unwrap_err();
        assert_eq!(err.code, "unknown_variable");
        assert!(err.message.contains("set by the gateway"), "{}", err.message);
        let err = values(json!(["text"])).unwrap_err();
        assert_eq!((err.code, err.param.as_deref()), ("invalid_type", Some("variables")));
        let err = values(json!({"text": "elevenchars", "lang": "fr"})).unwrap_err();
        assert!(err.message.contains("longer than 10"), "{}", err.message);
        assert!(values(json!({"text": "ééééééééé", "lang": "fr"})).is_ok(), "max_length counts characters");
    }

    #[test]
    fn platform_values_from_headers_jwt_route_and_metadata() {
        let config = config();
        let host = FakeHost::new()
            .with_header("x-team", "wealth")
            .with_property(
                &["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload", "sub"],
                envoy_value::encode(&json!("user-42")),
            )
            .with_property(&["xds", "route_name"], "chat")
            .with_property(
                &["xds", "route_metadata", "filter_metadata", "aigw", "desk"],
                envoy_value::encode(&json!("fx")),
            );
        let v = platform_values(&config.default_set.platform_variables, &host);
        assert_eq!(v["user"], "user-42");
        assert_eq!(v["team"], "wealth");
        assert_eq!(v["route"], "chat");
        assert_eq!(v["desk"], "fx");
        let v = platform_values(&config.default_set.platform_variables, &FakeHost::new());
        assert_eq!(v["user"], "anonymous");
        assert_eq!(v["team"], "");
    }
}
