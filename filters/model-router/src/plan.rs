//! The downstream instance's decision for one request body, as a pure
//! function over the body and the host seam (headers, claims, filter state).

use crate::access::{self, Subject};
use crate::config::{Downstream, CLIENT_ADDRESS_HEADERS, CLIENT_CREDENTIAL_HEADERS, INTERNAL_REQUEST_HEADERS};
use crate::provider::{adapt_body, is_chat, is_messages, needs_adapting, only_model_changes, Handoff};
use crate::route::Decision;
use crate::translate::BackTo;
use aigw_shared::api::Endpoint;
use aigw_shared::body::{json_object_field, parse_json_object};
use aigw_shared::contract::{
    STATE_GENAI_OPERATION, STATE_GENAI_PROVIDER, STATE_ROUTE, STATE_ROUTE_BACKEND, STATE_ROUTE_HANDOFF,
    STATE_ROUTE_MODEL,
};
use aigw_shared::glue::RequestEdits;
use aigw_shared::host::{metric_segment, Host};
use aigw_shared::ApiError;
use serde_json::{Map, Value};

/// Request headers removed before anything else: the gateway's internal
/// headers (a client cannot pick the cluster), the client's credentials (the
/// provider gets the gateway's key, never the client's), the client's address
/// unless configured, and the operator's own list. On chat completions also
/// `anthropic-version` (an OpenAI backend has no use for it, and an Anthropic
/// one gets the configured version from its upstream instance), and
/// `accept-encoding` (a translated reply must arrive readable); on Messages
/// `accept-encoding` too (the backend may be OpenAI-shaped).
pub fn headers_to_strip(config: &Downstream, path: &str) -> Vec<String> {
    let mut names: Vec<String> =
        INTERNAL_REQUEST_HEADERS.iter().chain(CLIENT_CREDENTIAL_HEADERS.iter()).map(|h| h.to_string()).collect();
    if is_chat(path) {
        names.extend(["anthropic-version".to_string(), "accept-encoding".to_string()]);
    } else if is_messages(path) {
        // An OpenAI-shaped backend's reply is translated back, so it must arrive readable.
        names.push("accept-encoding".to_string());
    }
    if !config.forward_client_address {
        names.extend(CLIENT_ADDRESS_HEADERS.iter().map(|h| h.to_string()));
    }
    names.extend(config.strip_request_headers.iter().cloned());
    names
}

/// The downstream instance's decision for a complete request body: the edits
/// that send it to its route, and what the response side needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub edits: RequestEdits,
    /// The primary backend's name.
    pub primary: String,
    /// The route has a single backend (then whoever answered is it).
    pub single_target: bool,
    /// The routing rule that matched, if any.
    pub rule: Option<String>,
    /// Set when this instance translated the request (no upstream instances).
    pub translate: Option<BackTo>,
}

/// Plans the route for `body` sent to `path`, and when no upstream instance
/// will adapt the attempt, adapts it here for the primary backend.
pub fn route_request(config: &Downstream, host: &dyn Host, path: &str, body: &[u8]) -> Result<Routed, ApiError> {
    let plan = plan(config, body, host)?;
    let mut edits = RequestEdits::default();
    let mut new_body = plan.body.clone();
    let mut translate = None;
    let primary_backend = plan.decision.primary().and_then(|(b, _)| config.backends.get(*b));
    // A backend without an upstream instance gets the request adapted here;
    // the config guarantees such a backend needs no other path or headers
    // (`Backend::changes_head`), since those can no longer change now.
    // A Messages request translated here for a plain OpenAI backend keeps
    // its path: Envoy's route rewrites `/v1/messages` to
    // `/v1/chat/completions` (gateway.yaml's OpenAI-shaped routes).
    let adapt_here = primary_backend.is_some_and(|b| !b.upstream_instance && needs_adapting(b, path));
    // When adapting would only set `model`, the plan's body has it already: no second parse.
    if let Some(backend) = primary_backend.filter(|b| adapt_here && !only_model_changes(b, path)) {
        let current = new_body.as_deref().unwrap_or(body);
        let adapted = adapt_body(backend, path, current, Some(&plan.primary_model))?;
        if adapted.responses.is_some() {
            // Only backends with upstream instances translate the Responses API.
            return Err(ApiError::internal(
                "This backend needs model-router's upstream instance for the Responses API.",
            ));
        }
        if adapted.body.is_some() {
            new_body = adapted.body;
        }
        translate = adapted.translate;
    }
    // Envoy's routes match this filter state (`filter_state` route matcher):
    // unlike a header, it can still be set once the body was read.
    edits.set_state(STATE_ROUTE, plan.route.clone());
    edits.body = new_body;
    edits.set_state(STATE_ROUTE_HANDOFF, Handoff::encode(&plan.models, path, adapt_here));
    edits.set_state(STATE_ROUTE_BACKEND, plan.primary.clone());
    edits.set_state(STATE_ROUTE_MODEL, plan.primary_model.clone());
    // For Envoy's tracer (envoy-config/observability/tracing.yaml).
    if let Some(backend) = primary_backend {
        edits.set_state(STATE_GENAI_PROVIDER, backend.provider.genai_name());
    }
    if let Some(operation) = Endpoint::from_path(path).and_then(Endpoint::genai_operation) {
        edits.set_state(STATE_GENAI_OPERATION, operation);
    }
    edits.clear_route_cache = true;
    host.increment_counter(&backend_metric(&plan.primary, "routed_requests"), 1);
    if let Some(rule) = &plan.decision.rule {
        host.increment_counter(&format!("aigw.model_router.rule_matched.rule.{}", metric_segment(rule)), 1);
    }
    Ok(Routed {
        edits,
        single_target: plan.decision.targets.len() == 1,
        rule: plan.decision.rule.clone(),
        primary: plan.primary,
        translate,
    })
}

/// `aigw.model_router.routing_rejected.code.<code>`.
pub fn rejected_metric(error: &ApiError) -> String {
    format!("aigw.model_router.routing_rejected.code.{}", error.code)
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub decision: Decision,
    /// `x-aigw-route` value.
    pub route: String,
    /// Backend name → the model it gets, in failover order.
    pub models: Map<String, Value>,
    /// The body with `model` set to the primary backend's model, when that
    /// differs from what the client sent.
    pub body: Option<Vec<u8>>,
    /// The primary backend's name.
    pub primary: String,
    /// The model the primary backend gets.
    pub primary_model: String,
}

/// Reads `model` from the body, applies the routing table, rules and access
/// control, and returns the plan or the error to answer.
pub fn plan(config: &Downstream, body: &[u8], host: &dyn Host) -> Result<Plan, ApiError> {
    // Only `model` is needed to route: the rest of the body is checked, not built (the
    // whole tree is parsed below only when the body must change).
    let requested = match json_object_field(body, "model")? {
        Some(Value::String(model)) if !model.is_empty() => model,
        Some(Value::String(_)) | None => {
            return Err(ApiError::bad_request("invalid_request", "The request needs a `model`.").with_param("model"))
        }
        Some(_) => {
            return Err(ApiError::bad_request("invalid_request", "`model` must be a string.").with_param("model"))
        }
    };
    let resolve = |source: &aigw_shared::attributes::Source| source.resolve(host);
    let split_key = config.split_key.resolve(host);
    let decision = config.select(&requested, &resolve, split_key.as_deref())?;

    check_access(config, &requested, &decision, host)?;

    let mut handoff = Map::new();
    for (backend, model) in &decision.targets {
        if let Some(backend) = config.backends.get(*backend) {
            handoff.insert(backend.name.clone(), Value::String(model.clone()));
        }
    }
    let Some((primary_index, primary_model)) = decision.primary().cloned() else {
        return Err(ApiError::internal("The route has no backend."));
    };
    let primary = config.backends.get(primary_index).map(|b| b.name.clone()).unwrap_or_default();
    let body = if primary_model != requested {
        let mut value = parse_json_object(body)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("model".into(), Value::String(primary_model.clone()));
        }
        Some(value.to_string().into_bytes())
    } else {
        None
    };
    Ok(Plan { route: decision.route.clone(), models: handoff, body, primary, primary_model, decision })
}

/// Allows or refuses (403) `requested`, routed as `decision`, for the caller
/// (`access`: JWT claim, team lists, default). Without `access` every model is allowed.
pub fn check_access(
    config: &Downstream,
    requested: &str,
    decision: &Decision,
    host: &dyn Host,
) -> Result<(), ApiError> {
    let Some(policy) = &config.access else { return Ok(()) };
    let resolve = |source: &aigw_shared::attributes::Source| source.resolve(host);
    let alias = config.aliases.get(requested).map(String::as_str);
    let mut names: Vec<&str> = vec![requested];
    names.extend(alias);
    // The provider's own name for the model counts too (`anthropic/claude-x` → `claude-x`),
    // unless a rule redirected the request elsewhere.
    if decision.rule.is_none() {
        names.extend(decision.primary().map(|(_, model)| model.as_str()));
    }
    let backend_index = decision.table_primary.or(decision.primary().map(|(b, _)| *b));
    let mut keys: Vec<&str> = Vec::new();
    if let Some(backend) = backend_index.and_then(|b| config.backends.get(b)) {
        keys.push(backend.provider.as_str());
        keys.push(backend.name.as_str());
    }
    let resolve_json = |source: &aigw_shared::attributes::Source| source.resolve_json(host);
    access::check(policy, Subject { names: &names, keys: &keys }, &resolve_json, &resolve)
}

/// `aigw.model_router.backend.<name>.<what>`.
pub fn backend_metric(backend: &str, what: &str) -> String {
    format!("aigw.model_router.backend.{}.{what}", metric_segment(backend))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_json, Config};
    use aigw_shared::attributes::envoy_value;
    use aigw_shared::host::fake::FakeHost;
    use serde_json::json;

    fn config(text: &str) -> Downstream {
        match from_json(Some(text.as_bytes())).unwrap() {
            Config::Downstream(config) => *config,
            Config::Upstream(_) => panic!(),
        }
    }

    const CONFIG: &str = r#"{
        "backends": [{"name": "mock"}, {"name": "mock-b"}, {"name": "claude", "provider": "anthropic", "upstream_instance": true}],
        "aliases": {"fast": "gpt-4o-mini"},
        "models": [
            {"name": "gpt-4o-mini", "targets": [{"backend": "mock"}]},
            {"name": "failover-demo", "targets": [{"backend": "mock-b", "model": "gpt-4o-mini"}, {"backend": "mock", "model": "gpt-4o-mini"}], "route": "failover-demo"},
            {"regex": "anthropic/(.*)", "targets": [{"backend": "claude", "model": "$1"}]}
        ],
        "access": {"claim": "jwt:llms", "default": ["*"]}
    }"#;

    fn jwt(host: FakeHost, claim: Value) -> FakeHost {
        host.with_property(
            &["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload", "llms"],
            envoy_value::encode(&claim),
        )
    }

    #[test]
    fn alias_rewrites_body_and_builds_handoff() {
        let c = config(CONFIG);
        let p = plan(&c, br#"{"model": "fast", "messages": []}"#, &FakeHost::new()).unwrap();
        assert_eq!(p.route, "mock");
        assert_eq!(p.primary, "mock");
        assert_eq!(Value::Object(p.models), json!({"mock": "gpt-4o-mini"}));
        let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(body, json!({"model": "gpt-4o-mini", "messages": []}));
        let p = plan(&c, br#"{"model": "gpt-4o-mini"}"#, &FakeHost::new()).unwrap();
        assert_eq!(p.body, None);
    }

    #[test]
    fn failover_handoff_names_every_backend() {
        let c = config(CONFIG);
        let p = plan(&c, br#"{"model": "failover-demo"}"#, &FakeHost::new()).unwrap();
        assert_eq!(p.route, "failover-demo");
        assert_eq!(p.primary, "mock-b");
        assert_eq!(Value::Object(p.models), json!({"mock-b": "gpt-4o-mini", "mock": "gpt-4o-mini"}));
    }

    #[test]
    fn bad_bodies_are_400() {
        let c = config(CONFIG);
        for body in [&b"{"[..], b"[]", b"{}", br#"{"model": 4}"#, br#"{"model": ""}"#] {
            let err = plan(&c, body, &FakeHost::new()).unwrap_err();
            assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(plan(&c, br#"{"model": "nope"}"#, &FakeHost::new()).unwrap_err().status, 404);
    }

    #[test]
    fn seed_claim_allows_and_forbids() {
        let c = config(CONFIG);
        let claim = json!({"openai": ["gpt-4o-mini"], "anthropic": ["claude-3-opus"]});
        let host = jwt(FakeHost::new(), claim);
        assert!(plan(&c, br#"{"model": "gpt-4o-mini"}"#, &host).is_ok());
        assert!(plan(&c, br#"{"model": "fast"}"#, &host).is_ok(), "alias of an allowed model");
        // failover-demo goes upstream as gpt-4o-mini, which the claim allows.
        assert!(plan(&c, br#"{"model": "failover-demo"}"#, &host).is_ok());
        let narrow = jwt(FakeHost::new(), json!({"openai": ["gpt-4o"]}));
        let err = plan(&c, br#"{"model": "failover-demo"}"#, &narrow).unwrap_err();
        assert_eq!((err.status, err.code), (403, "model_not_allowed"));
        // The provider's own model name counts: `anthropic/claude-3-opus` goes upstream as `claude-3-opus`.
        assert!(plan(&c, br#"{"model": "anthropic/claude-3-opus"}"#, &host).is_ok());
        assert_eq!(plan(&c, br#"{"model": "anthropic/claude-3-haiku"}"#, &host).unwrap_err().status, 403);
        let host = jwt(FakeHost::new(), json!({"anthropic": ["anthropic/claude-*"]}));
        assert!(plan(&c, br#"{"model": "anthropic/claude-3-opus"}"#, &host).is_ok());
        // No claim at all: the default list (everything) applies.
        assert!(plan(&c, br#"{"model": "failover-demo"}"#, &FakeHost::new()).is_ok());
    }

    #[test]
    fn metric_names_are_sanitised() {
        assert_eq!(backend_metric("mock.b/1", "requests"), "aigw.model_router.backend.mock_b_1.requests");
    }
}
