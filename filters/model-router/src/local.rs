//! What the downstream instance answers itself, without a provider:
//! `GET /v1/models` and `GET /v1/models/{model}` from the routing table, and
//! `POST /v1/messages/count_tokens` for models an OpenAI-shaped backend
//! serves (Anthropic's own backend answers those). Pure.

use crate::config::{Downstream, Provider};
use crate::plan::check_access;
use aigw_shared::api::Endpoint;
use aigw_shared::contract::STATE_TOKENS_COUNTED;
use aigw_shared::error::ApiError;
use aigw_shared::host::Host;
use serde_json::{json, Value};

/// Anthropic's `created_at` for models the gateway lists: the table has no
/// release dates, and the SDKs parse the field as a timestamp.
const CREATED_AT: &str = "1970-01-01T00:00:00Z";

/// One model the caller may use: its name and the provider that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub provider: &'static str,
}

/// The exact model names and aliases of the routing table that `host`'s
/// caller may use (the same access check as a request for that model), in
/// name order. Patterns (`prefix`, `regex`) and the default route name no
/// model, so they are not listed.
pub fn allowed_models(config: &Downstream, host: &dyn Host) -> Vec<Listed> {
    let mut names: Vec<&String> = config.exact.keys().chain(config.aliases.keys()).collect();
    names.sort();
    names.dedup();
    let resolve = |source: &aigw_shared::attributes::Source| source.resolve(host);
    names
        .into_iter()
        .filter_map(|name| {
            let decision = config.select(name, &resolve, None).ok()?;
            check_access(config, name, &decision, host).ok()?;
            let backend = decision.primary().and_then(|(b, _)| config.backends.get(*b))?;
            Some(Listed { id: name.clone(), provider: backend.provider.as_str() })
        })
        .collect()
}

/// One model in OpenAI's shape, or Anthropic's when the client speaks
/// Anthropic (it sent `anthropic-version`).
fn model_object(model: &Listed, anthropic: bool) -> Value {
    if anthropic {
        json!({"type": "model", "id": model.id, "display_name": model.id, "created_at": CREATED_AT})
    } else {
        json!({"id": model.id, "object": "model", "created": 0, "owned_by": model.provider})
    }
}

/// The `GET /v1/models` body: OpenAI's list, or Anthropic's when the client
/// speaks Anthropic (it sent `anthropic-version`).
pub fn models_body(models: &[Listed], anthropic: bool) -> Vec<u8> {
    let data: Vec<Value> = models.iter().map(|m| model_object(m, anthropic)).collect();
    let body = if anthropic {
        json!({
            "data": data,
            "has_more": false,
            "first_id": models.first().map(|m| m.id.as_str()),
            "last_id": models.last().map(|m| m.id.as_str()),
        })
    } else {
        json!({"object": "list", "data": data})
    };
    body.to_string().into_bytes()
}

/// The `GET /v1/models/{model}` body: the model's object when the caller may
/// use it (it is in `allowed`), else the 404 a request for an unknown model
/// gets, so a model outside the caller's allow-list is not revealed either.
pub fn model_body(allowed: &[Listed], id: &str, anthropic: bool) -> Result<Vec<u8>, ApiError> {
    let model = allowed.iter().find(|m| m.id == id).ok_or_else(|| ApiError::model_not_found(id))?;
    Ok(model_object(model, anthropic).to_string().into_bytes())
}

/// Bytes per token when token-counter's count is missing (it is not in the
/// chain): the usual rule of thumb for English text and JSON.
const FALLBACK_BYTES_PER_TOKEN: usize = 4;

/// The `count_tokens` answer for an OpenAI-shaped backend, which has no such
/// endpoint: token-counter's count of the request (filter state
/// `aigw.tokens.counted`), or an estimate from the body's size without it.
pub fn count_tokens_body(counted: Option<u64>, body_len: usize) -> Vec<u8> {
    let tokens = counted.unwrap_or_else(|| body_len.div_ceil(FALLBACK_BYTES_PER_TOKEN) as u64);
    json!({"input_tokens": tokens}).to_string().into_bytes()
}

/// The gateway's answer to a request on `path` routed to `primary`, when it
/// is a `count_tokens` request for a backend without that endpoint (any but
/// Anthropic): token-counter's count from the filter state.
pub fn count_tokens_answer(
    config: &Downstream,
    path: &str,
    primary: &str,
    host: &dyn Host,
    body_len: usize,
) -> Option<Vec<u8>> {
    if Endpoint::from_path(path) != Some(Endpoint::CountTokens) || !answers_count_tokens(config, primary) {
        return None;
    }
    let counted = host
        .property(&[STATE_TOKENS_COUNTED])
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    host.increment_counter("aigw.model_router.count_tokens_answered", 1);
    Some(count_tokens_body(counted, body_len))
}

/// Whether the gateway answers a `count_tokens` request routed to `primary`:
/// every backend but Anthropic's, which counts for itself.
pub fn answers_count_tokens(config: &Downstream, primary: &str) -> bool {
    config.backends.iter().find(|b| b.name == primary).is_some_and(|b| b.provider != Provider::Anthropic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_json, Config};
    use aigw_shared::attributes::envoy_value;
    use aigw_shared::host::fake::FakeHost;

    fn config(text: &str) -> Downstream {
        match from_json(Some(text.as_bytes())).unwrap() {
            Config::Downstream(config) => *config,
            Config::Upstream(_) => panic!(),
        }
    }

    const CONFIG: &str = r#"{
        "backends": [{"name": "mock"}, {"name": "claude", "provider": "anthropic", "upstream_instance": true}],
        "aliases": {"fast": "gpt-4o-mini", "smart": "claude-sonnet-4-5"},
        "models": [
            {"name": "gpt-4o-mini", "targets": [{"backend": "mock"}]},
            {"name": "claude-sonnet-4-5", "targets": [{"backend": "claude"}]},
            {"prefix": "claude-", "targets": [{"backend": "claude"}]}
        ],
        "access": {"claim": "jwt:llms", "source": "header:x-team", "lists": {"retail": ["gpt-4o-mini"]}, "default": ["*"]}
    }"#;

    fn ids(models: &[Listed]) -> Vec<&str> {
        models.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn lists_names_and_aliases_the_caller_may_use() {
        let c = config(CONFIG);
        let all = allowed_models(&c, &FakeHost::new());
        assert_eq!(ids(&all), ["claude-sonnet-4-5", "fast", "gpt-4o-mini", "smart"]);
        assert_eq!(all[0].provider, "anthropic");
        assert_eq!(all[2].provider, "openai");
        let retail = FakeHost::new().with_header("x-team", "retail");
        assert_eq!(ids(&allowed_models(&c, &retail)), ["fast", "gpt-4o-mini"]);
        let jwt = FakeHost::new().with_property(
            &["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload", "llms"],
            envoy_value::encode(&json!({"anthropic": ["claude-*"]})),
        );
        assert_eq!(ids(&allowed_models(&c, &jwt)), ["claude-sonnet-4-5", "smart"]);
        let none = config(
            r#"{"backends": [{"name": "m"}], "models": [{"name": "x", "targets": [{"backend": "m"}]}], "access": {"default": []}}"#,
        );
        assert!(allowed_models(&none, &FakeHost::new()).is_empty());
    }

    #[test]
    fn openai_and_anthropic_list_shapes() {
        let models =
            vec![Listed { id: "a".into(), provider: "openai" }, Listed { id: "b".into(), provider: "anthropic" }];
        let openai: Value = serde_json::from_slice(&models_body(&models, false)).unwrap();
        assert_eq!(
            openai,
            json!({"object": "list", "data": [
                {"id": "a", "object": "model", "created": 0, "owned_by": "openai"},
                {"id": "b", "object": "model", "created": 0, "owned_by": "anthropic"}
            ]})
        );
        let anthropic: Value = serde_json::from_slice(&models_body(&models, true)).unwrap();
        assert_eq!(
            anthropic,
            json!({"data": [
                {"type": "model", "id": "a", "display_name": "a", "created_at": CREATED_AT},
                {"type": "model", "id": "b", "display_name": "b", "created_at": CREATED_AT}
            ], "has_more": false, "first_id": "a", "last_id": "b"})
        );
        let empty: Value = serde_json::from_slice(&models_body(&[], true)).unwrap();
        assert_eq!(empty["first_id"], Value::Null);
    }

    #[test]
    fn one_model_in_either_shape_or_not_found() {
        let models = vec![Listed { id: "a".into(), provider: "openai" }];
        let openai: Value = serde_json::from_slice(&model_body(&models, "a", false).unwrap()).unwrap();
        assert_eq!(openai, json!({"id": "a", "object": "model", "created": 0, "owned_by": "openai"}));
        let anthropic: Value = serde_json::from_slice(&model_body(&models, "a", true).unwrap()).unwrap();
        assert_eq!(anthropic, json!({"type": "model", "id": "a", "display_name": "a", "created_at": CREATED_AT}));
        let missing = model_body(&models, "b", false).unwrap_err();
        assert_eq!((missing.status, missing.code), (404, "model_not_found"));
    }

    #[test]
    fn count_tokens_answers() {
        let c = config(CONFIG);
        assert!(answers_count_tokens(&c, "mock"));
        assert!(!answers_count_tokens(&c, "claude"));
        assert_eq!(count_tokens_body(Some(42), 999), br#"{"input_tokens":42}"#);
        assert_eq!(count_tokens_body(None, 10), br#"{"input_tokens":3}"#);
        let host = FakeHost::new().with_property(&[STATE_TOKENS_COUNTED], b"9".to_vec());
        assert_eq!(
            count_tokens_answer(&c, "/v1/messages/count_tokens", "mock", &host, 5),
            Some(br#"{"input_tokens":9}"#.to_vec())
        );
        assert_eq!(count_tokens_answer(&c, "/v1/messages/count_tokens", "claude", &host, 5), None);
        assert_eq!(count_tokens_answer(&c, "/v1/messages", "mock", &host, 5), None);
        assert_eq!(host.counter("aigw.model_router.count_tokens_answered"), 1);
    }
}
