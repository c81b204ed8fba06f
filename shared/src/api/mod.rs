//! The two LLM APIs the gateway speaks.
//!
//! The typed structs document the shapes and serve code that builds bodies
//! (translation, templates). Code that edits a client's body in flight should
//! prefer the `*_texts_mut` visitors over `serde_json::Value`: they change only
//! the text they visit, so fields the gateway does not know survive untouched.
//! The typed structs are lossless too (`extra` keeps unknown fields), but a
//! round trip through them may reorder keys.

pub mod anthropic;
pub mod legacy;
pub mod openai;
pub mod responses;

/// Which API a request or response speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiShape {
    /// OpenAI chat completions: `POST /v1/chat/completions`.
    OpenAiChat,
    /// Anthropic messages: `POST /v1/messages`.
    AnthropicMessages,
    /// OpenAI Responses API: `POST /v1/responses`.
    OpenAiResponses,
    /// OpenAI embeddings: `POST /v1/embeddings` (and Azure's deployment path).
    OpenAiEmbeddings,
    /// OpenAI legacy completions: `POST /v1/completions`.
    OpenAiCompletions,
}

impl ApiShape {
    /// Recognises the API from the request path (query string ignored, any
    /// prefix such as `/openai` allowed).
    pub fn from_path(path: &str) -> Option<Self> {
        match Endpoint::from_path(path)? {
            Endpoint::ChatCompletions => Some(ApiShape::OpenAiChat),
            Endpoint::Messages => Some(ApiShape::AnthropicMessages),
            Endpoint::Responses => Some(ApiShape::OpenAiResponses),
            Endpoint::Embeddings => Some(ApiShape::OpenAiEmbeddings),
            Endpoint::Completions => Some(ApiShape::OpenAiCompletions),
            Endpoint::CountTokens | Endpoint::Models => None,
        }
    }

    /// Whether the body holds a conversation (messages or Responses input)
    /// that a system prompt and templates can decorate. Embeddings and legacy
    /// completions hold bare text: prompt-template leaves them alone.
    pub fn is_conversation(self) -> bool {
        matches!(self, ApiShape::OpenAiChat | ApiShape::AnthropicMessages | ApiShape::OpenAiResponses)
    }
}

/// The shape of a response body or one streamed event, judged by its
/// content: the request path says what the client asked for (`requested`),
/// the body says what came back (an error object is none of them, and a
/// translated reply has the client's shape whatever the backend spoke).
pub fn response_shape(value: &serde_json::Value, requested: Option<ApiShape>) -> Option<ApiShape> {
    use serde_json::Value;
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    if let Some(Value::Array(choices)) = value.get("choices") {
        let completion = value.get("object").and_then(Value::as_str).is_some_and(|o| o.starts_with("text_completion"))
            || choices.iter().any(|c| c.get("text").is_some_and(Value::is_string));
        return Some(if completion { ApiShape::OpenAiCompletions } else { ApiShape::OpenAiChat });
    }
    if kind.starts_with("response.")
        || value.get("object").and_then(Value::as_str) == Some("response")
        || (requested == Some(ApiShape::OpenAiResponses) && value.get("output").is_some_and(Value::is_array))
    {
        return Some(ApiShape::OpenAiResponses);
    }
    if kind == "message"
        || matches!(
            kind,
            "message_start"
                | "content_block_start"
                | "content_block_delta"
                | "content_block_stop"
                | "message_delta"
                | "message_stop"
        )
        || (requested == Some(ApiShape::AnthropicMessages) && value.get("content").is_some_and(Value::is_array))
    {
        return Some(ApiShape::AnthropicMessages);
    }
    if value.get("object").and_then(Value::as_str) == Some("list") && requested == Some(ApiShape::OpenAiEmbeddings) {
        return Some(ApiShape::OpenAiEmbeddings);
    }
    None
}

/// The LLM API endpoints the gateway knows, by request path. Every filter
/// applies the same request checks on them (method, empty body, encodings,
/// size), so a path no filter recognises cannot slip past one that would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/messages` (Anthropic)
    Messages,
    /// `POST /v1/messages/count_tokens` (Anthropic)
    CountTokens,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/completions` (legacy)
    Completions,
    /// `GET /v1/models`
    Models,
}

impl Endpoint {
    /// Recognises the endpoint from the request path (query string ignored,
    /// any prefix such as `/openai` allowed).
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
        let endpoint = if path.ends_with("/chat/completions") {
            Endpoint::ChatCompletions
        } else if path.ends_with("/v1/messages") || path == "/messages" {
            Endpoint::Messages
        } else if path.ends_with("/v1/messages/count_tokens") {
            Endpoint::CountTokens
        } else if path.ends_with("/v1/responses") {
            Endpoint::Responses
        } else if path.ends_with("/embeddings") {
            Endpoint::Embeddings
        } else if path.ends_with("/v1/completions") || path.ends_with("/openai/completions") {
            Endpoint::Completions
        } else if path.ends_with("/v1/models") {
            Endpoint::Models
        } else {
            return None;
        };
        Some(endpoint)
    }

    /// Whether requests to this endpoint carry a JSON body (and must be POSTs).
    pub fn takes_body(self) -> bool {
        !matches!(self, Endpoint::Models)
    }

    /// `gen_ai.operation.name` in the OpenTelemetry GenAI conventions (traces).
    /// Token counting and model listing are not model operations.
    pub fn genai_operation(self) -> Option<&'static str> {
        match self {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => Some("chat"),
            Endpoint::Embeddings => Some("embeddings"),
            Endpoint::Completions => Some("text_completion"),
            Endpoint::CountTokens | Endpoint::Models => None,
        }
    }

    /// The shape of the error bodies a client of this endpoint parses.
    pub fn error_dialect(self) -> crate::error::ErrorDialect {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => crate::error::ErrorDialect::Anthropic,
            _ => crate::error::ErrorDialect::OpenAi,
        }
    }
}

/// The model named by a `GET /v1/models/{model}` path (OpenAI's and
/// Anthropic's "retrieve model"; query ignored, any prefix allowed), as sent:
/// the SDKs put the name in the path unencoded, and routing-table names are
/// matched as written.
pub fn retrieved_model(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
    let (_, model) = path.rsplit_once("/v1/models/")?;
    (!model.is_empty()).then_some(model)
}

/// Whether a chat role is a system prompt. Providers accept role names in any
/// case (`"System"`), so policies that act on system prompts must too.
pub fn is_system_role(role: &str) -> bool {
    role.eq_ignore_ascii_case("system") || role.eq_ignore_ascii_case("developer")
}

/// Where a piece of text sits in a body, so a filter can act per location
/// (e.g. skip system prompts) and report it without quoting the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Message content (a string, or the `text` of a text part).
    Content,
    /// A system prompt (OpenAI system/developer message or Anthropic `system`).
    System,
    /// Arguments of a tool call (JSON text in OpenAI, an object's strings in Anthropic).
    ToolArguments,
    /// The result of a tool call sent back to the model.
    ToolResult,
    /// A refusal message from the model.
    Refusal,
}

/// Calls `visit` on every string leaf inside `value` (used for structured
/// tool inputs, whose strings may carry anything), in document order.
///
/// The walk keeps its own stack instead of recursing, so no nesting can
/// exhaust the Wasm stack, and no leaf is skipped however deep it sits (a
/// depth cut-off would let text past the guardrails).
pub(crate) fn visit_string_leaves(
    value: &mut serde_json::Value,
    kind: TextKind,
    visit: &mut dyn FnMut(TextKind, &mut String),
) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(text) => visit(kind, text),
            // Pushed in reverse so that they pop in document order.
            serde_json::Value::Array(items) => stack.extend(items.iter_mut().rev()),
            serde_json::Value::Object(map) => stack.extend(map.values_mut().rev()),
            _ => {}
        }
    }
}

/// Visits every text in a request body of the given shape.
pub fn request_texts_mut(shape: ApiShape, body: &mut serde_json::Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match shape {
        ApiShape::OpenAiChat => openai::request_texts_mut(body, visit),
        ApiShape::AnthropicMessages => anthropic::request_texts_mut(body, visit),
        ApiShape::OpenAiResponses => responses::request_texts_mut(body, visit),
        ApiShape::OpenAiEmbeddings => legacy::embeddings_request_texts_mut(body, visit),
        ApiShape::OpenAiCompletions => legacy::completions_request_texts_mut(body, visit),
    }
}

/// Visits every text in a non-streamed response body of the given shape.
pub fn response_texts_mut(shape: ApiShape, body: &mut serde_json::Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match shape {
        ApiShape::OpenAiChat => openai::response_texts_mut(body, visit),
        ApiShape::AnthropicMessages => anthropic::response_texts_mut(body, visit),
        ApiShape::OpenAiResponses => responses::response_texts_mut(body, visit),
        // An embeddings response holds vectors, no text.
        ApiShape::OpenAiEmbeddings => {}
        ApiShape::OpenAiCompletions => legacy::completions_response_texts_mut(body, visit),
    }
}

/// Visits every text in one streamed event's JSON data of the given shape.
pub fn stream_texts_mut(shape: ApiShape, data: &mut serde_json::Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match shape {
        ApiShape::OpenAiChat => openai::chunk_texts_mut(data, visit),
        ApiShape::AnthropicMessages => anthropic::stream_event_texts_mut(data, visit),
        ApiShape::OpenAiResponses => responses::stream_event_texts_mut(data, visit),
        ApiShape::OpenAiEmbeddings => {}
        ApiShape::OpenAiCompletions => legacy::completions_response_texts_mut(data, visit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_from_path() {
        assert_eq!(ApiShape::from_path("/v1/chat/completions"), Some(ApiShape::OpenAiChat));
        assert_eq!(ApiShape::from_path("/openai/v1/chat/completions?x=1"), Some(ApiShape::OpenAiChat));
        assert_eq!(ApiShape::from_path("/v1/messages"), Some(ApiShape::AnthropicMessages));
        assert_eq!(ApiShape::from_path("/v1/models"), None);
        assert_eq!(ApiShape::from_path("/v1/responses"), Some(ApiShape::OpenAiResponses));
        assert_eq!(
            ApiShape::from_path("/openai/deployments/e/embeddings?api-version=1"),
            Some(ApiShape::OpenAiEmbeddings)
        );
        assert_eq!(ApiShape::from_path("/v1/completions"), Some(ApiShape::OpenAiCompletions));
        assert_eq!(ApiShape::from_path("/v1/messages/count_tokens"), None);
        assert!(!ApiShape::OpenAiEmbeddings.is_conversation());
    }

    #[test]
    fn response_shapes_by_content() {
        use serde_json::json;
        let chat = json!({"object": "chat.completion", "choices": [{"message": {"content": "x"}}]});
        assert_eq!(response_shape(&chat, None), Some(ApiShape::OpenAiChat));
        let completion = json!({"object": "text_completion", "choices": [{"text": "x"}]});
        assert_eq!(response_shape(&completion, Some(ApiShape::OpenAiChat)), Some(ApiShape::OpenAiCompletions));
        let chunk = json!({"choices": [{"index": 0, "text": "x", "finish_reason": null}]});
        assert_eq!(response_shape(&chunk, None), Some(ApiShape::OpenAiCompletions));
        let response = json!({"object": "response", "output": []});
        assert_eq!(response_shape(&response, None), Some(ApiShape::OpenAiResponses));
        let event = json!({"type": "response.output_text.delta", "delta": "x"});
        assert_eq!(response_shape(&event, None), Some(ApiShape::OpenAiResponses));
        let message = json!({"type": "message", "content": []});
        assert_eq!(response_shape(&message, None), Some(ApiShape::AnthropicMessages));
        let delta = json!({"type": "content_block_delta", "delta": {"text": "x"}});
        assert_eq!(response_shape(&delta, Some(ApiShape::OpenAiResponses)), Some(ApiShape::AnthropicMessages));
        let error = json!({"error": {"message": "x"}});
        assert_eq!(response_shape(&error, Some(ApiShape::OpenAiResponses)), None);
        let vectors = json!({"object": "list", "data": [{"embedding": [0.1]}]});
        assert_eq!(response_shape(&vectors, Some(ApiShape::OpenAiEmbeddings)), Some(ApiShape::OpenAiEmbeddings));
    }

    #[test]
    fn endpoints_from_path() {
        assert_eq!(Endpoint::from_path("/v1/chat/completions?x=1"), Some(Endpoint::ChatCompletions));
        assert_eq!(Endpoint::from_path("/v1/messages"), Some(Endpoint::Messages));
        assert_eq!(Endpoint::from_path("/v1/messages/count_tokens"), Some(Endpoint::CountTokens));
        assert_eq!(Endpoint::from_path("/v1/responses"), Some(Endpoint::Responses));
        assert_eq!(Endpoint::from_path("/openai/deployments/d/embeddings"), Some(Endpoint::Embeddings));
        assert_eq!(Endpoint::from_path("/v1/completions"), Some(Endpoint::Completions));
        assert_eq!(Endpoint::from_path("/v1/models/"), Some(Endpoint::Models));
        assert_eq!(Endpoint::from_path("/v1/models/gpt-4o"), None);
        assert_eq!(retrieved_model("/v1/models/gpt-4o?x=1"), Some("gpt-4o"));
        assert_eq!(retrieved_model("/openai/v1/models/org/model-7b/"), Some("org/model-7b"));
        assert_eq!(retrieved_model("/v1/models"), None);
        assert_eq!(retrieved_model("/v1/models/"), None);
        assert_eq!(Endpoint::from_path("/healthz"), None);
        assert!(!Endpoint::Models.takes_body());
        assert_eq!(Endpoint::Messages.error_dialect(), crate::error::ErrorDialect::Anthropic);
    }

    #[test]
    fn system_roles_in_any_case() {
        assert!(is_system_role("System"));
        assert!(is_system_role("DEVELOPER"));
        assert!(!is_system_role("user"));
    }

    #[test]
    fn string_leaves_are_visited_in_order_at_any_depth() {
        let mut value = serde_json::json!({"a": ["one", {"b": "two", "n": 1}], "c": "three"});
        let mut seen = Vec::new();
        visit_string_leaves(&mut value, TextKind::ToolArguments, &mut |_, text| {
            seen.push(text.clone());
            text.make_ascii_uppercase();
        });
        assert_eq!(seen, ["one", "two", "three"]);
        assert_eq!(value, serde_json::json!({"a": ["ONE", {"b": "TWO", "n": 1}], "c": "THREE"}));

        // Regression for unbounded recursion: far deeper than any stack allows
        // for a recursive walk, and the innermost string is still visited.
        let mut deep = serde_json::Value::String("secret".into());
        for _ in 0..100_000 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        let mut visited = 0;
        visit_string_leaves(&mut deep, TextKind::ToolArguments, &mut |_, text| {
            visited += 1;
            text.clear();
        });
        assert_eq!(visited, 1);
        // Dropping a Value recurses (serde_json); unwind it by hand.
        while let serde_json::Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or_default();
        }
        assert_eq!(deep, serde_json::Value::String(String::new()));
    }
}
