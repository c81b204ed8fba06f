//! What the upstream instance does to a request for its backend: the path,
//! the model name, and for Anthropic the whole body. Pure.

use crate::config::{Backend, Provider};
use crate::translate::messages_request::{messages_info, to_chat};
use crate::translate::request::{request_info, to_anthropic, Options};
use crate::translate::BackTo;
use aigw_shared::api::ApiShape;
use aigw_shared::body::parse_json_object;
use aigw_shared::ApiError;
use serde_json::Value;

/// The request as the backend must receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// New `:path`, when it changes.
    pub path: Option<String>,
    /// Headers to set (replacing any present).
    pub set_headers: Vec<(&'static str, String)>,
    /// Headers to remove.
    pub remove_headers: Vec<&'static str>,
    /// The new body, when it changes.
    pub body: Option<Vec<u8>>,
    /// Set when the response must be translated back to the client's API.
    pub translate: Option<BackTo>,
    /// The model the backend was asked for.
    pub model: Option<String>,
}

/// Whether a request is one the upstream instance adapts: OpenAI chat
/// completions. Every attempt at one is prepared from the original path and
/// body, because an earlier attempt may have left its changes in the headers
/// Envoy shares between attempts.
pub fn is_chat(path: &str) -> bool {
    ApiShape::from_path(path) == Some(ApiShape::OpenAiChat)
}

/// Whether a request is an Anthropic Messages request (`/v1/messages`).
pub fn is_messages(path: &str) -> bool {
    ApiShape::from_path(path) == Some(ApiShape::AnthropicMessages)
}

/// Whether a request on `path` must be adapted for `backend`: every chat
/// completions request (path, model, Anthropic translation), and Messages
/// requests for a backend that does not speak Messages (translated to chat
/// completions). Messages for Anthropic pass through.
pub fn needs_adapting(backend: &Backend, path: &str) -> bool {
    is_chat(path) || (is_messages(path) && backend.provider != Provider::Anthropic)
}

/// What the downstream instance hands the upstream instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handoff {
    /// Backend name → the model it gets.
    pub models: serde_json::Map<String, Value>,
    /// The request path as the client sent it.
    pub path: Option<String>,
    /// The downstream instance already adapted the request (it was told no
    /// upstream instances exist): an upstream instance must not do it again.
    pub adapted: bool,
}

impl Handoff {
    pub fn encode(models: &serde_json::Map<String, Value>, path: &str, adapted: bool) -> String {
        serde_json::json!({"models": models, "path": path, "adapted": adapted}).to_string()
    }

    /// Reads the hand-off; anything unreadable counts as none.
    pub fn decode(bytes: &[u8]) -> Handoff {
        let Ok(Value::Object(mut value)) = serde_json::from_slice::<Value>(bytes) else { return Handoff::default() };
        let models = match value.remove("models") {
            Some(Value::Object(models)) => models,
            _ => serde_json::Map::new(),
        };
        let path = match value.remove("path") {
            Some(Value::String(path)) => Some(path),
            _ => None,
        };
        let adapted = value.get("adapted").and_then(Value::as_bool).unwrap_or(false);
        Handoff { models, path, adapted }
    }

    pub fn model_for(&self, backend: &str) -> Option<&str> {
        self.models.get(backend).and_then(Value::as_str)
    }
}

/// The path and headers a request for `backend` needs, from the client's
/// `path` and the `model` the backend gets. No body needed: an upstream
/// instance applies these in its headers callback, the only time Envoy lets a
/// filter edit request headers when headers are not paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub path: String,
    pub set_headers: Vec<(&'static str, String)>,
    pub remove_headers: Vec<&'static str>,
}

pub fn adapt_head(backend: &Backend, path: &str, model: Option<&str>) -> Result<Head, ApiError> {
    let mut head = Head { path: String::new(), set_headers: Vec::new(), remove_headers: Vec::new() };
    let messages = is_messages(path);
    if messages {
        // Translated to chat completions: Anthropic's headers mean nothing
        // there, and the reply is translated back, so it must arrive readable.
        head.remove_headers.extend(["anthropic-version", "anthropic-beta", "accept-encoding"]);
    }
    match backend.provider {
        Provider::Openai if messages => {
            head.path = format!("{}/v1/chat/completions", backend.path_prefix);
        }
        Provider::Openai => {
            head.path = format!("{}{}", backend.path_prefix, path);
            head.remove_headers.push("anthropic-version");
        }
        Provider::AzureOpenai => {
            // The deployment is named after the model, which only the downstream hand-off knows here.
            let Some(model) = model else {
                return Err(ApiError::internal(
                    "The Azure OpenAI backend needs the model from model-router's downstream instance.",
                ));
            };
            let deployment = backend.deployment.replace("{model}", model);
            head.path = format!(
                "{}/openai/deployments/{}/chat/completions?api-version={}",
                backend.path_prefix, deployment, backend.api_version
            );
            head.remove_headers.push("anthropic-version");
        }
        Provider::Anthropic => {
            head.path = format!("{}/v1/messages", backend.path_prefix);
            head.set_headers.push(("anthropic-version", backend.anthropic_version.clone()));
            head.set_headers.push(("content-type", "application/json".to_string()));
            // The reply is translated, so it must arrive readable.
            head.remove_headers.push("accept-encoding");
        }
    }
    Ok(head)
}

/// The body a backend gets, and what the response side must translate back.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptedBody {
    /// The new body, when it changes.
    pub body: Option<Vec<u8>>,
    /// Set when the response must be translated back to the client's API.
    pub translate: Option<BackTo>,
}

/// Adapts a `body` sent to `path` for `backend`: an OpenAI chat request gets
/// the model name, and for Anthropic the whole request translated; an
/// Anthropic Messages request for an OpenAI-shaped backend is translated to
/// chat completions. `model` is the model the downstream instance chose for
/// this backend; without it the body's own `model` is used.
pub fn adapt_body(backend: &Backend, path: &str, body: &[u8], model: Option<&str>) -> Result<AdaptedBody, ApiError> {
    let mut value = parse_json_object(body)?;
    let body_model = value.get("model").and_then(Value::as_str).map(str::to_string);
    let model = match (model, body_model) {
        (Some(model), _) => model.to_string(),
        (None, Some(model)) => model,
        (None, None) => {
            return Err(ApiError::bad_request("invalid_request", "The request has no `model`.").with_param("model"))
        }
    };
    if is_messages(path) {
        if backend.provider == Provider::Anthropic {
            return Ok(AdaptedBody { body: None, translate: None });
        }
        let translated = to_chat(&value, &model)?;
        return Ok(AdaptedBody {
            body: Some(translated.to_string().into_bytes()),
            translate: Some(BackTo::Messages(messages_info(&value))),
        });
    }
    match backend.provider {
        Provider::Openai | Provider::AzureOpenai => {
            if value.get("model").and_then(Value::as_str) == Some(model.as_str()) {
                return Ok(AdaptedBody { body: None, translate: None });
            }
            if let Some(object) = value.as_object_mut() {
                object.insert("model".into(), Value::String(model));
            }
            Ok(AdaptedBody { body: Some(value.to_string().into_bytes()), translate: None })
        }
        Provider::Anthropic => {
            let options = Options { default_max_tokens: backend.default_max_tokens };
            let translated = to_anthropic(&value, &model, &options)?;
            Ok(AdaptedBody {
                body: Some(translated.to_string().into_bytes()),
                translate: Some(BackTo::Chat(request_info(&value))),
            })
        }
    }
}

/// Head and body together (as one attempt needs them), for tests and tools.
pub fn prepare(backend: &Backend, path: &str, body: &[u8], handoff_model: Option<&str>) -> Result<Prepared, ApiError> {
    let adapted = adapt_body(backend, path, body, handoff_model)?;
    let model = match handoff_model {
        Some(model) => model.to_string(),
        None => parse_json_object(body)?.get("model").and_then(Value::as_str).unwrap_or_default().to_string(),
    };
    let head = adapt_head(backend, path, Some(&model))?;
    Ok(Prepared {
        path: Some(head.path),
        set_headers: head.set_headers,
        remove_headers: head.remove_headers,
        body: adapted.body,
        translate: adapted.translate,
        model: Some(model),
    })
}

/// The backend an attempt goes to: the one named by the endpoint's metadata,
/// or the only one configured.
pub fn attempt_backend<'a>(backends: &'a [Backend], endpoint: Option<&str>) -> Option<&'a Backend> {
    match (endpoint, backends) {
        (Some(name), _) => backends.iter().find(|b| b.name == name),
        (None, [only]) => Some(only),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_json, Config};
    use crate::translate::messages_request::MessagesInfo;
    use crate::translate::request::RequestInfo;
    use serde_json::json;

    fn backend(text: &str) -> Backend {
        match from_json(Some(format!(r#"{{"mode": "upstream", "backend": {text}}}"#).as_bytes())).unwrap() {
            Config::Upstream(mut up) => up.backends.remove(0),
            Config::Downstream(_) => panic!(),
        }
    }

    const CHAT: &str = r#"{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": true}"#;

    #[test]
    fn openai_backend_rewrites_only_the_model() {
        let b = backend(r#"{"name": "mock"}"#);
        let p = prepare(&b, "/v1/chat/completions", CHAT.as_bytes(), Some("gpt-4o-mini")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/v1/chat/completions"));
        assert!(p.remove_headers.contains(&"anthropic-version"));
        let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream"], true);
        assert!(p.translate.is_none());
        let p = prepare(&b, "/v1/chat/completions", CHAT.as_bytes(), Some("fast")).unwrap();
        assert_eq!(p.body, None, "unchanged model, untouched body");
        let b = backend(r#"{"name": "vllm", "path_prefix": "/vllm"}"#);
        let p = prepare(&b, "/v1/chat/completions", CHAT.as_bytes(), None).unwrap();
        assert_eq!(p.path.as_deref(), Some("/vllm/v1/chat/completions"));
    }

    #[test]
    fn azure_backend_uses_deployment_path() {
        let b = backend(r#"{"name": "az", "provider": "azure_openai", "api_version": "2024-10-21"}"#);
        let p = prepare(&b, "/v1/chat/completions", CHAT.as_bytes(), Some("gpt-4o")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"));
        let b = backend(
            r#"{"name": "az", "provider": "azure_openai", "deployment": "prod-{model}", "api_version": "2024-10-21"}"#,
        );
        let p = prepare(&b, "/v1/chat/completions", CHAT.as_bytes(), None).unwrap();
        assert_eq!(p.path.as_deref(), Some("/openai/deployments/prod-fast/chat/completions?api-version=2024-10-21"));
    }

    #[test]
    fn anthropic_backend_translates() {
        let b = backend(r#"{"name": "claude", "provider": "anthropic", "default_max_tokens": 512}"#);
        let p = prepare(&b, "/v1/chat/completions", CHAT.as_bytes(), Some("claude-x")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/v1/messages"));
        assert!(p.set_headers.contains(&("anthropic-version", "2023-06-01".to_string())));
        assert!(p.remove_headers.contains(&"accept-encoding"));
        let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"model": "claude-x", "max_tokens": 512, "stream": true, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
        );
        assert_eq!(
            p.translate,
            Some(BackTo::Chat(RequestInfo { stream: true, include_usage: false, json_tool: None }))
        );
    }

    const MESSAGES: &str = r#"{"model": "fast", "max_tokens": 50, "system": "be brief", "messages": [{"role": "user", "content": "hi"}], "stream": true}"#;

    #[test]
    fn messages_for_openai_shaped_backends_become_chat_completions() {
        for (b, path) in [
            (r#"{"name": "mock"}"#, "/v1/chat/completions"),
            (r#"{"name": "vllm", "path_prefix": "/vllm"}"#, "/vllm/v1/chat/completions"),
            (
                r#"{"name": "az", "provider": "azure_openai", "api_version": "2024-10-21"}"#,
                "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
            ),
        ] {
            let b = backend(b);
            assert!(needs_adapting(&b, "/v1/messages?beta=true"));
            let p = prepare(&b, "/v1/messages?beta=true", MESSAGES.as_bytes(), Some("gpt-4o-mini")).unwrap();
            assert_eq!(p.path.as_deref(), Some(path));
            for header in ["anthropic-version", "anthropic-beta", "accept-encoding"] {
                assert!(p.remove_headers.contains(&header), "{header}");
            }
            let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
            assert_eq!(
                body,
                json!({"model": "gpt-4o-mini", "max_tokens": 50, "stream": true, "stream_options": {"include_usage": true},
                       "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})
            );
            assert_eq!(p.translate, Some(BackTo::Messages(MessagesInfo { stream: true, model: "fast".into() })));
        }
        // Messages for Anthropic pass through untouched.
        let b = backend(r#"{"name": "claude", "provider": "anthropic"}"#);
        assert!(!needs_adapting(&b, "/v1/messages"));
        let adapted = adapt_body(&b, "/v1/messages", MESSAGES.as_bytes(), Some("claude-x")).unwrap();
        assert_eq!(adapted, AdaptedBody { body: None, translate: None });
        assert!(!needs_adapting(&b, "/v1/messages/count_tokens"));
        // Untranslatable fields are refused by name.
        let err = adapt_body(
            &backend(r#"{"name": "mock"}"#),
            "/v1/messages",
            br#"{"model": "m", "max_tokens": 5, "messages": [], "top_k": 3}"#,
            None,
        )
        .unwrap_err();
        assert_eq!((err.code, err.param.as_deref()), ("unsupported_parameter", Some("top_k")));
    }

    #[test]
    fn errors_and_handoff() {
        let b = backend(r#"{"name": "claude", "provider": "anthropic"}"#);
        assert_eq!(prepare(&b, "/v1/chat/completions", b"{", None).unwrap_err().status, 400);
        assert_eq!(prepare(&b, "/v1/chat/completions", b"{}", None).unwrap_err().param.as_deref(), Some("model"));
        let models = serde_json::json!({"claude": "c-1", "mock": "m"});
        let handoff =
            Handoff::decode(Handoff::encode(models.as_object().unwrap(), "/v1/chat/completions?x=1", true).as_bytes());
        assert_eq!(handoff.model_for("claude"), Some("c-1"));
        assert_eq!(handoff.model_for("other"), None);
        assert_eq!(handoff.path.as_deref(), Some("/v1/chat/completions?x=1"));
        assert!(handoff.adapted);
        assert_eq!(Handoff::decode(b"garbage"), Handoff::default());
        assert!(is_chat("/v1/chat/completions"));
        assert!(!is_chat("/v1/models"));
    }

    #[test]
    fn attempt_backend_follows_endpoint_metadata() {
        let backends = vec![backend(r#"{"name": "a"}"#), backend(r#"{"name": "b"}"#)];
        assert_eq!(attempt_backend(&backends, Some("b")).unwrap().name, "b");
        assert!(attempt_backend(&backends, Some("c")).is_none());
        assert!(attempt_backend(&backends, None).is_none());
        assert_eq!(attempt_backend(&backends[..1], None).unwrap().name, "a");
    }
}
