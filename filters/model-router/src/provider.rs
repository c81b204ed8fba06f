//! What the upstream instance does to a request for its backend: the path,
//! the model name, and for Anthropic the whole body. Pure.

use crate::config::{Backend, Provider};
use crate::translate::messages_request::{self, messages_info};
use crate::translate::request::{request_info, to_anthropic, Options, RequestInfo};
use crate::translate::responses_request::{self, responses_info, ResponsesInfo};
use crate::translate::BackTo;
use aigw_shared::api::{ApiShape, Endpoint};
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
    /// Set when a Responses request was translated to chat.
    pub responses: Option<ResponsesBack>,
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

/// Whether a request on `path` must be adapted for `backend` (path, model,
/// translation): chat completions, Responses, embeddings and legacy
/// completions always; Messages requests for a backend that does not speak
/// Messages (translated to chat completions). Messages for Anthropic pass
/// through, as does everything else (`count_tokens`, `/v1/models`).
pub fn needs_adapting(backend: &Backend, path: &str) -> bool {
    match Endpoint::from_path(path) {
        Some(Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Embeddings | Endpoint::Completions) => true,
        Some(Endpoint::Messages) => backend.provider != Provider::Anthropic,
        _ => false,
    }
}

/// Whether [`adapt_body`] would change nothing but `model` for this backend and path: an
/// OpenAI-compatible backend on an API it speaks (no Messages or Responses translation).
/// The downstream instance's plan already set `model`, so it skips adapting then.
pub fn only_model_changes(backend: &Backend, path: &str) -> bool {
    matches!(backend.provider, Provider::Openai | Provider::AzureOpenai)
        && !translates_responses(backend, path)
        && Endpoint::from_path(path) != Some(Endpoint::Messages)
}

/// A Responses request to this backend is translated to chat completions
/// (and on to Messages for Anthropic): the backend speaks no Responses API.
fn translates_responses(backend: &Backend, path: &str) -> bool {
    (backend.provider != Provider::Openai || backend.chat_only)
        && Endpoint::from_path(path) == Some(Endpoint::Responses)
}

/// The 400 for an endpoint a provider does not offer at all.
fn endpoint_unsupported(backend: &Backend, path: &str) -> ApiError {
    let what = match Endpoint::from_path(path) {
        Some(Endpoint::Embeddings) => "embeddings",
        Some(Endpoint::Completions) => "legacy completions",
        _ => "this endpoint",
    };
    ApiError::bad_request(
        "unsupported_endpoint",
        format!("The model's provider ({}) does not offer {what}.", backend.provider.as_str()),
    )
    .with_param("model")
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
    let endpoint = Endpoint::from_path(path);
    let messages_to_chat = endpoint == Some(Endpoint::Messages) && backend.provider != Provider::Anthropic;
    if messages_to_chat || translates_responses(backend, path) {
        // Translated to chat completions, and the reply is translated back,
        // so it must arrive readable.
        head.remove_headers.push("accept-encoding");
    }
    if messages_to_chat {
        // Anthropic's headers mean nothing to an OpenAI-shaped backend.
        head.remove_headers.push("anthropic-beta");
    }
    match backend.provider {
        Provider::Openai => {
            head.path = if messages_to_chat || translates_responses(backend, path) {
                format!("{}/v1/chat/completions", backend.path_prefix)
            } else {
                format!("{}{}", backend.path_prefix, path)
            };
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
            let operation = match endpoint {
                Some(Endpoint::Embeddings) => "embeddings",
                Some(Endpoint::Completions) => "completions",
                // Chat, and Responses or Messages translated to chat.
                _ => "chat/completions",
            };
            head.path = format!(
                "{}/openai/deployments/{}/{operation}?api-version={}",
                backend.path_prefix, deployment, backend.api_version
            );
            head.remove_headers.push("anthropic-version");
        }
        Provider::Anthropic => {
            match endpoint {
                Some(Endpoint::ChatCompletions | Endpoint::Responses) => {
                    head.path = format!("{}/v1/messages", backend.path_prefix);
                    head.set_headers.push(("anthropic-version", backend.anthropic_version.clone()));
                    head.set_headers.push(("content-type", "application/json".to_string()));
                    // The reply is translated, so it must arrive readable.
                    head.remove_headers.push("accept-encoding");
                }
                // Anthropic's own API passes through on its own path.
                Some(Endpoint::Messages | Endpoint::CountTokens) => {
                    head.path = format!("{}{}", backend.path_prefix, path);
                }
                _ => return Err(endpoint_unsupported(backend, path)),
            }
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
    /// Set when a Responses request was translated to chat: the reply goes
    /// back to the Responses shape (see `respond_responses.rs`).
    pub responses: Option<ResponsesBack>,
}

impl AdaptedBody {
    fn unchanged() -> Self {
        AdaptedBody { body: None, translate: None, responses: None }
    }
}

/// What the response side needs for a translated Responses request.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesBack {
    pub info: ResponsesInfo,
    /// Set for Anthropic: the reply is first translated from Messages to chat.
    pub anthropic: Option<RequestInfo>,
}

/// Adapts a `body` sent to `path` for `backend`. Chat completions get the
/// model name, and for Anthropic the whole request translated to Messages; a
/// Responses request passes to OpenAI-compatible backends and is translated
/// to chat (then Messages) for the others; an Anthropic Messages request for
/// an OpenAI-shaped backend is translated to chat completions; embeddings and
/// legacy completions get the model name, or a 400 from providers that have
/// no such endpoint. `model` is the model the downstream instance chose for
/// this backend; without it the body's own `model` is used.
pub fn adapt_body(backend: &Backend, path: &str, body: &[u8], model: Option<&str>) -> Result<AdaptedBody, ApiError> {
    let endpoint = Endpoint::from_path(path);
    if matches!(endpoint, Some(Endpoint::Embeddings | Endpoint::Completions)) && backend.provider == Provider::Anthropic
    {
        return Err(endpoint_unsupported(backend, path));
    }
    let mut value = parse_json_object(body)?;
    if translates_responses(backend, path) {
        let info = responses_info(&value);
        let chat_bytes = responses_request::to_chat(&value)?.to_string().into_bytes();
        let adapted = adapt_body(backend, "/v1/chat/completions", &chat_bytes, model)?;
        let anthropic = match adapted.translate {
            Some(BackTo::Chat(info)) => Some(info),
            _ => None,
        };
        let body = adapted.body.unwrap_or(chat_bytes);
        return Ok(AdaptedBody {
            body: Some(body),
            translate: None,
            responses: Some(ResponsesBack { info, anthropic }),
        });
    }
    let body_model = value.get("model").and_then(Value::as_str).map(str::to_string);
    let model = match (model, body_model) {
        (Some(model), _) => model.to_string(),
        (None, Some(model)) => model,
        (None, None) => {
            return Err(ApiError::bad_request("invalid_request", "The request has no `model`.").with_param("model"))
        }
    };
    if endpoint == Some(Endpoint::Messages) {
        if backend.provider == Provider::Anthropic {
            return Ok(AdaptedBody::unchanged());
        }
        let translated = messages_request::to_chat(&value, &model)?;
        return Ok(AdaptedBody {
            body: Some(translated.to_string().into_bytes()),
            translate: Some(BackTo::Messages(messages_info(&value))),
            responses: None,
        });
    }
    match backend.provider {
        Provider::Openai | Provider::AzureOpenai => {
            if value.get("model").and_then(Value::as_str) == Some(model.as_str()) {
                return Ok(AdaptedBody::unchanged());
            }
            if let Some(object) = value.as_object_mut() {
                object.insert("model".into(), Value::String(model));
            }
            Ok(AdaptedBody { body: Some(value.to_string().into_bytes()), translate: None, responses: None })
        }
        Provider::Anthropic => {
            let options = Options { default_max_tokens: backend.default_max_tokens };
            let translated = to_anthropic(&value, &model, &options)?;
            Ok(AdaptedBody {
                body: Some(translated.to_string().into_bytes()),
                translate: Some(BackTo::Chat(request_info(&value))),
                responses: None,
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
        responses: adapted.responses,
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
        assert_eq!(adapted, AdaptedBody::unchanged());
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

    const RESPONSES: &str = r#"{"model": "fast", "instructions": "Be brief.", "input": "hi", "stream": true}"#;

    #[test]
    fn responses_pass_to_openai_and_are_translated_for_the_others() {
        let b = backend(r#"{"name": "mock"}"#);
        let p = prepare(&b, "/v1/responses", RESPONSES.as_bytes(), Some("gpt-4o-mini")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/v1/responses"));
        let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(body["input"], "hi");
        assert_eq!(body["model"], "gpt-4o-mini");
        assert!(p.responses.is_none() && p.translate.is_none());

        let b = backend(r#"{"name": "claude", "provider": "anthropic", "default_max_tokens": 512}"#);
        let p = prepare(&b, "/v1/responses", RESPONSES.as_bytes(), Some("claude-x")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/v1/messages"));
        let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(body["system"], json!([{"type": "text", "text": "Be brief."}]));
        assert_eq!(body["model"], "claude-x");
        assert_eq!(body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]));
        let back = p.responses.unwrap();
        assert!(back.info.stream);
        assert_eq!(back.anthropic, Some(RequestInfo { stream: true, include_usage: true, json_tool: None }));
        assert!(p.translate.is_none(), "the Responses layer translates the reply, not the chat one");

        let b = backend(r#"{"name": "az", "provider": "azure_openai", "api_version": "2024-10-21"}"#);
        let p = prepare(&b, "/v1/responses", RESPONSES.as_bytes(), Some("gpt-4o")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"));
        let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "Be brief."}));
        assert!(p.remove_headers.contains(&"accept-encoding"));
        assert_eq!(p.responses.unwrap().anthropic, None);

        let b = backend(r#"{"name": "vllm", "path_prefix": "/vllm", "chat_only": true}"#);
        let p = prepare(&b, "/v1/responses", RESPONSES.as_bytes(), Some("llama")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/vllm/v1/chat/completions"));
        let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(body["model"], "llama");
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "hi"}));
        assert_eq!(p.responses.unwrap().anthropic, None);
        let p = prepare(&b, "/v1/chat/completions", CHAT.as_bytes(), Some("llama")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/vllm/v1/chat/completions"));
        assert!(p.responses.is_none());

        let stateful = r#"{"model": "claude-x", "input": "hi", "previous_response_id": "resp_1"}"#;
        let b = backend(r#"{"name": "claude", "provider": "anthropic"}"#);
        let err = prepare(&b, "/v1/responses", stateful.as_bytes(), None).unwrap_err();
        assert_eq!(
            (err.status, err.code, err.param.as_deref()),
            (400, "unsupported_parameter", Some("previous_response_id"))
        );
    }

    #[test]
    fn embeddings_and_completions_per_provider() {
        let embed = r#"{"model": "text-embedding-3-small", "input": "hi"}"#;
        let b = backend(r#"{"name": "az", "provider": "azure_openai", "api_version": "2024-10-21"}"#);
        let p = prepare(&b, "/v1/embeddings", embed.as_bytes(), Some("emb")).unwrap();
        assert_eq!(p.path.as_deref(), Some("/openai/deployments/emb/embeddings?api-version=2024-10-21"));
        let p = prepare(&b, "/v1/completions", br#"{"model": "i", "prompt": "x"}"#, None).unwrap();
        assert_eq!(p.path.as_deref(), Some("/openai/deployments/i/completions?api-version=2024-10-21"));
        let b = backend(r#"{"name": "mock"}"#);
        let p = prepare(&b, "/v1/embeddings", embed.as_bytes(), None).unwrap();
        assert_eq!((p.path.as_deref(), p.body), (Some("/v1/embeddings"), None));
        let b = backend(r#"{"name": "claude", "provider": "anthropic"}"#);
        let err = prepare(&b, "/v1/embeddings", embed.as_bytes(), None).unwrap_err();
        assert_eq!((err.status, err.code), (400, "unsupported_endpoint"));
        assert_eq!(adapt_head(&b, "/v1/completions", Some("c")).unwrap_err().code, "unsupported_endpoint");
        assert!(needs_adapting(&b, "/v1/embeddings") && needs_adapting(&b, "/v1/responses"));
        assert!(!needs_adapting(&b, "/v1/models") && !needs_adapting(&b, "/v1/messages"));
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
