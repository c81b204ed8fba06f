//! What makes two requests "the same question": the cache keys of a request.
//!
//! - The **exact key** hashes the tenant, the API shape and the request body
//!   in a canonical form (object keys sorted, no whitespace), without the
//!   fields that do not change the answer ([`IGNORED_FIELDS`]: `stream`,
//!   `user`, `metadata`…). Everything else — model, messages, tools,
//!   `temperature`, `top_p`, `max_tokens`, `response_format`, `seed` — is in it.
//! - The **context key** is the same hash without the part that is embedded
//!   (the last user message's text, or every message with
//!   [`EmbedInput::Conversation`]): a semantic match is only searched among
//!   entries with the same context key, so the system prompt, the earlier
//!   turns, the tools and the parameters always match exactly.
//!
//! Hashes are SipHash-2-4 under two fixed key pairs (128 bits): a client
//! cannot build a body that collides with another request's key without the
//! keys, and the keys only need to agree between the VMs of one Envoy.

use crate::config::EmbedInput;
use aigw_shared::api::ApiShape;
use serde_json::{Map, Value};
#[allow(deprecated)] // std's SipHasher: the keyed SipHash-2-4 we need, without another crate.
use std::hash::{Hasher, SipHasher};

/// Body fields that do not change the answer, left out of the keys.
pub const IGNORED_FIELDS: [&str; 9] = [
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
];

/// A 128-bit key.
pub type Key = u128;

/// Why a request is not looked up (also the metric suffix and the
/// `x-aigw-cache-bypass` header value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// `cache-control: no-cache` from the client.
    NoCache,
    /// Disabled for this tenant or model.
    Disabled,
    /// `temperature` above 0 (or absent: the provider's default is 1) without `cache_when_sampling`.
    Sampling,
    /// Several choices (`n` > 1) or another shape the cache does not store.
    Unsupported,
    /// The body is not a JSON object with `model` and `messages`, or is too large.
    Unreadable,
}

impl Bypass {
    pub fn reason(self) -> &'static str {
        match self {
            Bypass::NoCache => "no_cache",
            Bypass::Disabled => "disabled",
            Bypass::Sampling => "sampling",
            Bypass::Unsupported => "unsupported",
            Bypass::Unreadable => "unreadable",
        }
    }
}

/// A request the cache can answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRequest {
    pub shape: ApiShape,
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`: a replayed stream ends with a usage chunk.
    pub include_usage: bool,
    pub exact: Key,
    pub context: Key,
    /// The text to embed; `None` when the request has none (exact matches only).
    pub embed_text: Option<String>,
    /// `temperature` is above 0 or absent.
    pub sampling: bool,
}

#[allow(deprecated)]
fn hasher(k0: u64, k1: u64) -> SipHasher {
    SipHasher::new_with_keys(k0, k1)
}

/// Two SipHash-2-4 instances under different keys: one 128-bit hash.
#[allow(deprecated)]
#[derive(Debug, Clone)]
pub struct Hash128 {
    low: SipHasher,
    high: SipHasher,
}

impl Default for Hash128 {
    fn default() -> Self {
        Hash128 {
            low: hasher(0x6169_6777_2d73_656d, 0x616e_7469_632d_6361),
            high: hasher(0x6368_652d_6b65_792d, 0x7632_2d31_3238_6269),
        }
    }
}

impl Hash128 {
    pub fn write(&mut self, bytes: &[u8]) {
        self.low.write(bytes);
        self.high.write(bytes);
    }

    /// A length-prefixed field, so that `("ab", "c")` and `("a", "bc")` differ.
    pub fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    pub fn finish(&self) -> Key {
        (u128::from(self.high.finish()) << 64) | u128::from(self.low.finish())
    }
}

/// The 64-bit tenant id stored with each entry (to clear a tenant, and so
/// that a lookup never returns another tenant's entry even if keys collided).
pub fn tenant_id(tenant: &str) -> u64 {
    let mut hash = Hash128::default();
    hash.field(b"tenant");
    hash.field(tenant.as_bytes());
    hash.finish() as u64
}

/// Feeds `value` to the hash in a canonical form: object keys sorted, numbers
/// as serde_json prints them. Depth is bounded by serde_json's parser (128).
fn canonical(value: &Value, hash: &mut Hash128) {
    match value {
        Value::Null => hash.write(b"n"),
        Value::Bool(flag) => hash.write(if *flag { b"t" } else { b"f" }),
        Value::Number(number) => {
            hash.write(b"#");
            hash.field(number.to_string().as_bytes());
        }
        Value::String(text) => {
            hash.write(b"s");
            hash.field(text.as_bytes());
        }
        Value::Array(items) => {
            hash.write(b"[");
            hash.write(&(items.len() as u64).to_le_bytes());
            for item in items {
                canonical(item, hash);
            }
        }
        Value::Object(map) => canonical_object(map, &[], hash),
    }
}

fn canonical_object(map: &Map<String, Value>, skip: &[&str], hash: &mut Hash128) {
    let mut keys: Vec<&String> = map.keys().filter(|key| !skip.contains(&key.as_str())).collect();
    keys.sort();
    hash.write(b"{");
    hash.write(&(keys.len() as u64).to_le_bytes());
    for key in keys {
        hash.field(key.as_bytes());
        if let Some(value) = map.get(key) {
            canonical(value, hash);
        }
    }
}

/// The text of a message's content: a string, or its text parts joined by newlines.
pub fn content_text(content: &Value) -> Option<String> {
    let text = match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return None,
    };
    if text.trim().is_empty() {
        None
    } else {
        Some(text)
    }
}

/// The content without its text (images and other parts stay in the context key).
fn content_without_text(content: &Value) -> Value {
    match content {
        Value::Array(parts) => Value::Array(
            parts.iter().filter(|part| part.get("type").and_then(Value::as_str) != Some("text")).cloned().collect(),
        ),
        _ => Value::Null,
    }
}

fn is_sampling(body: &Map<String, Value>) -> bool {
    match body.get("temperature") {
        Some(Value::Number(number)) => number.as_f64().is_none_or(|t| t > 0.0),
        Some(Value::Null) | None => true,
        Some(_) => true,
    }
}

/// Reads a chat request body into its cache keys, or says why it cannot be cached.
pub fn read(shape: ApiShape, body: &[u8], tenant: &str, input: EmbedInput) -> Result<CacheRequest, Bypass> {
    let value: Value = serde_json::from_slice(body).map_err(|_| Bypass::Unreadable)?;
    let Value::Object(map) = value else { return Err(Bypass::Unreadable) };
    let model = map.get("model").and_then(Value::as_str).ok_or(Bypass::Unreadable)?.to_string();
    let messages = map.get("messages").and_then(Value::as_array).ok_or(Bypass::Unreadable)?;
    if map.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(Bypass::Unsupported);
    }
    let stream = map.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = map
        .get("stream_options")
        .and_then(|options| options.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let mut exact = Hash128::default();
    exact.field(b"exact");
    exact.field(tenant.as_bytes());
    exact.field(shape_name(shape).as_bytes());
    canonical_object(&map, &IGNORED_FIELDS, &mut exact);

    let mut context = Hash128::default();
    context.field(b"context");
    context.field(tenant.as_bytes());
    context.field(shape_name(shape).as_bytes());
    let mut skip: Vec<&str> = IGNORED_FIELDS.to_vec();
    skip.push("messages");
    canonical_object(&map, &skip, &mut context);
    let embed_text = match input {
        EmbedInput::LastUserMessage => {
            let last_user = messages.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"));
            let text = last_user.and_then(|i| messages.get(i)).and_then(|m| m.get("content")).and_then(content_text);
            context.field(b"messages");
            context.write(&(messages.len() as u64).to_le_bytes());
            for (i, message) in messages.iter().enumerate() {
                match (Some(i) == last_user && text.is_some(), message) {
                    (true, Value::Object(fields)) => {
                        // The embedded message: its role and non-text parts stay exact.
                        canonical_object(fields, &["content"], &mut context);
                        canonical(
                            &fields.get("content").map(content_without_text).unwrap_or(Value::Null),
                            &mut context,
                        );
                    }
                    _ => canonical(message, &mut context),
                }
            }
            text
        }
        EmbedInput::Conversation => {
            let text: Vec<String> = messages
                .iter()
                .filter_map(|m| {
                    let role = m.get("role").and_then(Value::as_str).unwrap_or("");
                    m.get("content").and_then(content_text).map(|text| format!("{role}: {text}"))
                })
                .collect();
            // Anthropic's `system` stays exact: it is in the context key with the other fields.
            if text.is_empty() {
                None
            } else {
                Some(text.join("\n"))
            }
        }
    };
    Ok(CacheRequest {
        shape,
        model,
        stream,
        include_usage,
        exact: exact.finish(),
        context: context.finish(),
        embed_text,
        sampling: is_sampling(&map),
    })
}

fn shape_name(shape: ApiShape) -> &'static str {
    match shape {
        ApiShape::OpenAiChat => "openai-chat",
        ApiShape::AnthropicMessages => "anthropic-messages",
        // Not cached (lib.rs), named apart all the same: keys of different APIs never meet.
        ApiShape::OpenAiResponses => "openai-responses",
        ApiShape::OpenAiEmbeddings => "openai-embeddings",
        ApiShape::OpenAiCompletions => "openai-completions",
    }
}

/// What `cache-control` asks: `(no_cache, no_store)`.
pub fn cache_control(value: Option<&str>) -> (bool, bool) {
    let Some(value) = value else { return (false, false) };
    let directives: Vec<String> = value.split(',').map(|d| d.trim().to_ascii_lowercase()).collect();
    let has = |name: &str| directives.iter().any(|d| d == name || d.starts_with(&format!("{name}=")));
    (has("no-cache"), has("no-store"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(body: Value) -> CacheRequest {
        read(ApiShape::OpenAiChat, body.to_string().as_bytes(), "retail", EmbedInput::LastUserMessage).unwrap()
    }

    fn chat(question: &str) -> Value {
        json!({"model": "gpt-4o-mini", "temperature": 0, "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": question}
        ]})
    }

    #[test]
    fn key_order_whitespace_and_ignored_fields_do_not_matter() {
        let a = keys(chat("hi"));
        let reordered: Value = serde_json::from_str(
            r#"{ "messages": [{"content": "You are helpful.", "role": "system"}, {"role": "user", "content": "hi"}],
                 "temperature": 0, "model": "gpt-4o-mini", "stream": true, "user": "u1", "stream_options": {"include_usage": true} }"#,
        )
        .unwrap();
        let b = keys(reordered);
        assert_eq!(a.exact, b.exact);
        assert_eq!(a.context, b.context);
        assert!(b.stream && b.include_usage);
    }

    #[test]
    fn answer_changing_fields_change_the_key() {
        let base = keys(chat("hi"));
        for (field, value) in [
            ("temperature", json!(0.5)),
            ("max_tokens", json!(10)),
            ("seed", json!(1)),
            ("top_p", json!(0.1)),
            ("response_format", json!({"type": "json_object"})),
            ("tools", json!([{"type": "function", "function": {"name": "f"}}])),
            ("model", json!("gpt-4o")),
        ] {
            let mut body = chat("hi");
            body[field] = value;
            let other = keys(body);
            assert_ne!(base.exact, other.exact, "{field}");
            assert_ne!(base.context, other.context, "{field}");
        }
    }

    #[test]
    fn context_ignores_the_last_user_text_only() {
        let a = keys(chat("What is the return policy?"));
        let b = keys(chat("What is the return policy, please?"));
        assert_ne!(a.exact, b.exact);
        assert_eq!(a.context, b.context);
        assert_eq!(b.embed_text.as_deref(), Some("What is the return policy, please?"));
        let mut other_system = chat("What is the return policy?");
        other_system["messages"][0]["content"] = json!("You are terse.");
        assert_ne!(keys(other_system).context, a.context);
    }

    #[test]
    fn tenants_and_shapes_never_share_keys() {
        let body = chat("hi").to_string();
        let a = read(ApiShape::OpenAiChat, body.as_bytes(), "retail", EmbedInput::LastUserMessage).unwrap();
        let b = read(ApiShape::OpenAiChat, body.as_bytes(), "wealth", EmbedInput::LastUserMessage).unwrap();
        let c = read(ApiShape::AnthropicMessages, body.as_bytes(), "retail", EmbedInput::LastUserMessage).unwrap();
        assert_ne!(a.exact, b.exact);
        assert_ne!(a.context, b.context);
        assert_ne!(a.exact, c.exact);
        assert_ne!(tenant_id("retail"), tenant_id("wealth"));
    }

    #[test]
    fn text_parts_and_conversation_mode() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "b"}]}
        ]});
        assert_eq!(keys(body.clone()).embed_text.as_deref(), Some("a\nb"));
        let mut other_image = body.clone();
        other_image["messages"][2]["content"][1]["image_url"]["url"] = json!("y");
        assert_ne!(keys(other_image).context, keys(body.clone()).context);
        let conv = read(ApiShape::OpenAiChat, body.to_string().as_bytes(), "t", EmbedInput::Conversation).unwrap();
        assert_eq!(conv.embed_text.as_deref(), Some("user: first\nassistant: ok\nuser: a\nb"));
    }

    #[test]
    fn sampling_and_bypasses() {
        assert!(!keys(chat("hi")).sampling);
        let mut body = chat("hi");
        body.as_object_mut().unwrap().remove("temperature");
        assert!(keys(body).sampling);
        let mut body = chat("hi");
        body["n"] = json!(2);
        assert_eq!(
            read(ApiShape::OpenAiChat, body.to_string().as_bytes(), "t", EmbedInput::LastUserMessage),
            Err(Bypass::Unsupported)
        );
        assert_eq!(read(ApiShape::OpenAiChat, b"[]", "t", EmbedInput::LastUserMessage), Err(Bypass::Unreadable));
        assert_eq!(
            read(ApiShape::OpenAiChat, br#"{"model":"m"}"#, "t", EmbedInput::LastUserMessage),
            Err(Bypass::Unreadable)
        );
        let no_user = json!({"model": "m", "temperature": 0, "messages": [{"role": "system", "content": "s"}]});
        assert_eq!(keys(no_user).embed_text, None);
    }

    #[test]
    fn cache_control_directives() {
        assert_eq!(cache_control(None), (false, false));
        assert_eq!(cache_control(Some("No-Cache")), (true, false));
        assert_eq!(cache_control(Some("max-age=0, no-store")), (false, true));
        assert_eq!(cache_control(Some("no-cache, no-store")), (true, true));
    }
}
