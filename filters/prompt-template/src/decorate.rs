//! Decoration: messages the organisation adds to every chat request, before
//! (`prepend`) and after (`append`) the conversation.
//!
//! When the decoration adds a system prompt and the client sent one too,
//! `client_system_prompt` decides: keep both (the organisation's first),
//! replace the client's, or reject the request with 400. A decoration without
//! system messages leaves the client's system prompt alone. The system
//! messages of a rendered template are the gateway's own, never the client's,
//! so the policy does not apply to them.
//!
//! OpenAI: messages are inserted into `messages` as they are configured.
//! Anthropic: system (and developer) messages go to the top-level `system`:
//! joined by a blank line when it is a string (or absent), as text blocks
//! around the client's blocks when it is an array (so `cache_control` on the
//! client's blocks survives); user and assistant messages go to `messages`.

use crate::config::ClientSystemPrompt;
use crate::render::{message_value, Rendered};
use aigw_shared::api::ApiShape;
use aigw_shared::ApiError;
use serde_json::{json, Map, Value};

/// Applies a decoration to a request body. `client_system` says whether a
/// system prompt already in the body came from the client (untemplated
/// request) or from a template.
pub fn decorate(
    shape: ApiShape,
    body: &mut Map<String, Value>,
    prepend: &[Rendered],
    append: &[Rendered],
    policy: ClientSystemPrompt,
    client_system: bool,
) -> Result<(), ApiError> {
    if prepend.is_empty() && append.is_empty() {
        return Ok(());
    }
    let adds_system = prepend.iter().chain(append).any(|m| m.role.is_system());
    let enforce = client_system && adds_system;
    match shape {
        ApiShape::OpenAiChat => decorate_openai(body, prepend, append, policy, enforce),
        ApiShape::AnthropicMessages => decorate_anthropic(body, prepend, append, policy, enforce),
        ApiShape::OpenAiResponses => decorate_responses(body, prepend, append, policy, enforce),
        // Not conversations: nothing to decorate (request.rs passes them before this).
        ApiShape::OpenAiEmbeddings | ApiShape::OpenAiCompletions => Ok(()),
    }
}

/// Responses: system (and developer) messages go to `instructions`, joined by
/// a blank line around the client's; user and assistant messages become input
/// items around the client's (a string `input` becomes one user message
/// first). The client's system prompt is `instructions` and any
/// system/developer input item.
fn decorate_responses(
    body: &mut Map<String, Value>,
    prepend: &[Rendered],
    append: &[Rendered],
    policy: ClientSystemPrompt,
    enforce: bool,
) -> Result<(), ApiError> {
    let input = match body.remove("input") {
        Some(Value::String(text)) => vec![message_value("user", &text)],
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => Vec::new(),
        Some(other) => {
            body.insert("input".to_string(), other);
            return Err(ApiError::bad_request("invalid_type", "`input` must be a string or an array of items.")
                .with_param("input"));
        }
    };
    let instructions = match body.remove("instructions") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text).filter(|t| !t.is_empty()),
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_type", "`instructions` must be a string.").with_param("instructions")
            )
        }
    };
    let mut input = input;
    let mut instructions = instructions;
    if enforce && (instructions.is_some() || input.iter().any(is_system_message)) {
        match policy {
            ClientSystemPrompt::KeepBoth => {}
            ClientSystemPrompt::Replace => {
                instructions = None;
                input.retain(|m| !is_system_message(m));
            }
            ClientSystemPrompt::Reject => return Err(system_not_allowed()),
        }
    }
    let mut parts: Vec<&str> = prepend.iter().filter(|m| m.role.is_system()).map(|m| m.text.as_str()).collect();
    parts.extend(instructions.as_deref());
    parts.extend(append.iter().filter(|m| m.role.is_system()).map(|m| m.text.as_str()));
    if !parts.is_empty() {
        body.insert("instructions".to_string(), Value::String(parts.join("\n\n")));
    }
    let conversation = |list: &[Rendered]| -> Vec<Value> {
        list.iter().filter(|m| !m.role.is_system()).map(|m| message_value(m.role.as_str(), &m.text)).collect()
    };
    let mut items = conversation(prepend);
    items.extend(input);
    items.extend(conversation(append));
    body.insert("input".to_string(), Value::Array(items));
    Ok(())
}

fn messages_mut(body: &mut Map<String, Value>) -> Result<&mut Vec<Value>, ApiError> {
    match body.get_mut("messages") {
        Some(Value::Array(messages)) => Ok(messages),
        Some(_) => Err(ApiError::bad_request("invalid_type", "`messages` must be an array.").with_param("messages")),
        None => Err(ApiError::bad_request("invalid_request", "The request has no `messages`.").with_param("messages")),
    }
}

fn system_not_allowed() -> ApiError {
    ApiError::bad_request(
        "system_prompt_not_allowed",
        "This gateway sets the system prompt; remove the system prompt from the request.",
    )
}

fn is_system_message(message: &Value) -> bool {
    message.get("role").and_then(Value::as_str).is_some_and(aigw_shared::api::is_system_role)
}

fn decorate_openai(
    body: &mut Map<String, Value>,
    prepend: &[Rendered],
    append: &[Rendered],
    policy: ClientSystemPrompt,
    enforce: bool,
) -> Result<(), ApiError> {
    let messages = messages_mut(body)?;
    if enforce && messages.iter().any(is_system_message) {
        match policy {
            ClientSystemPrompt::KeepBoth => {}
            ClientSystemPrompt::Replace => messages.retain(|m| !is_system_message(m)),
            ClientSystemPrompt::Reject => return Err(system_not_allowed()),
        }
    }
    let existing = std::mem::take(messages);
    messages.reserve(prepend.len() + existing.len() + append.len());
    messages.extend(prepend.iter().map(|m| message_value(m.role.as_str(), &m.text)));
    messages.extend(existing);
    messages.extend(append.iter().map(|m| message_value(m.role.as_str(), &m.text)));
    Ok(())
}

fn decorate_anthropic(
    body: &mut Map<String, Value>,
    prepend: &[Rendered],
    append: &[Rendered],
    policy: ClientSystemPrompt,
    enforce: bool,
) -> Result<(), ApiError> {
    // Check both fields before changing either.
    messages_mut(body)?;
    let client_has_system = match body.get("system") {
        None | Some(Value::Null) => false,
        Some(Value::String(text)) => !text.is_empty(),
        Some(Value::Array(blocks)) => !blocks.is_empty(),
        Some(_) => {
            return Err(ApiError::bad_request("invalid_type", "`system` must be a string or an array of blocks.")
                .with_param("system"))
        }
    };
    if enforce && client_has_system {
        match policy {
            ClientSystemPrompt::KeepBoth => {}
            ClientSystemPrompt::Replace => {
                body.remove("system");
            }
            ClientSystemPrompt::Reject => return Err(system_not_allowed()),
        }
    }

    let before: Vec<&str> = prepend.iter().filter(|m| m.role.is_system()).map(|m| m.text.as_str()).collect();
    let after: Vec<&str> = append.iter().filter(|m| m.role.is_system()).map(|m| m.text.as_str()).collect();
    if !before.is_empty() || !after.is_empty() {
        let system = match body.remove("system") {
            Some(Value::Array(blocks)) => {
                let text_block = |text: &&str| json!({"type": "text", "text": text});
                let mut out: Vec<Value> = before.iter().map(text_block).collect();
                out.extend(blocks);
                out.extend(after.iter().map(text_block));
                Value::Array(out)
            }
            Some(Value::String(theirs)) if !theirs.is_empty() => {
                let mut parts = before.clone();
                parts.push(&theirs);
                parts.extend(&after);
                Value::String(parts.join("\n\n"))
            }
            _ => {
                let mut parts = before.clone();
                parts.extend(&after);
                Value::String(parts.join("\n\n"))
            }
        };
        body.insert("system".to_string(), system);
    }

    let messages = messages_mut(body)?;
    let existing = std::mem::take(messages);
    let conversation = |list: &[Rendered]| -> Vec<Value> {
        list.iter().filter(|m| !m.role.is_system()).map(|m| message_value(m.role.as_str(), &m.text)).collect()
    };
    messages.extend(conversation(prepend));
    messages.extend(existing);
    messages.extend(conversation(append));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Role;
    use serde_json::json;

    #[test]
    fn responses_system_goes_to_instructions_and_messages_around_input() {
        let decorate_one = |body: Value, policy| {
            let mut map = body.as_object().unwrap().clone();
            decorate(
                ApiShape::OpenAiResponses,
                &mut map,
                &[msg(Role::System, "ORG"), msg(Role::User, "CTX")],
                &[msg(Role::User, "END")],
                policy,
                true,
            )
            .map(|()| Value::Object(map))
        };
        let out =
            decorate_one(json!({"model": "m", "input": "hi", "instructions": "mine"}), ClientSystemPrompt::KeepBoth)
                .unwrap();
        assert_eq!(out["instructions"], "ORG\n\nmine");
        assert_eq!(
            out["input"],
            json!([{"role": "user", "content": "CTX"}, {"role": "user", "content": "hi"}, {"role": "user", "content": "END"}])
        );
        let body = json!({"model": "m", "input": [{"role": "developer", "content": "dev"}, {"type": "function_call_output", "call_id": "c", "output": "42"}]});
        let out = decorate_one(body.clone(), ClientSystemPrompt::Replace).unwrap();
        assert_eq!(out["instructions"], "ORG");
        assert_eq!(out["input"][1], json!({"type": "function_call_output", "call_id": "c", "output": "42"}));
        assert_eq!(out["input"].as_array().unwrap().len(), 3);
        let err = decorate_one(body, ClientSystemPrompt::Reject).unwrap_err();
        assert_eq!(err.code, "system_prompt_not_allowed");
        assert!(decorate_one(json!({"model": "m", "input": "hi"}), ClientSystemPrompt::Reject).is_ok());
        let err = decorate_one(json!({"model": "m", "input": 5}), ClientSystemPrompt::KeepBoth).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
    }

    fn msg(role: Role, text: &str) -> Rendered {
        Rendered { role, text: text.to_string() }
    }

    fn run(
        shape: ApiShape,
        body: Value,
        prepend: &[Rendered],
        append: &[Rendered],
        policy: ClientSystemPrompt,
        client: bool,
    ) -> Result<Value, ApiError> {
        let mut body = body;
        decorate(shape, body.as_object_mut().unwrap(), prepend, append, policy, client)?;
        Ok(body)
    }

    fn org() -> Vec<Rendered> {
        vec![msg(Role::System, "ORG")]
    }

    #[test]
    fn openai_keep_both_puts_ours_first() {
        let body = json!({"model": "m", "messages": [{"role": "system", "content": "THEIRS"}, {"role": "user", "content": "hi"}]});
        let out =
            run(ApiShape::OpenAiChat, body, &org(), &[msg(Role::User, "END")], ClientSystemPrompt::KeepBoth, true)
                .unwrap();
        assert_eq!(
            out["messages"],
            json!([
                {"role": "system", "content": "ORG"},
                {"role": "system", "content": "THEIRS"},
                {"role": "user", "content": "hi"},
                {"role": "user", "content": "END"}
            ])
        );
        assert_eq!(out["model"], "m");
    }

    #[test]
    fn openai_replace_drops_client_system_and_developer() {
        let body = json!({"messages": [{"role": "developer", "content": "D"}, {"role": "user", "content": "hi"}, {"role": "system", "content": "S"}]});
        let out = run(ApiShape::OpenAiChat, body, &org(), &[], ClientSystemPrompt::Replace, true).unwrap();
        assert_eq!(out["messages"], json!([{"role": "system", "content": "ORG"}, {"role": "user", "content": "hi"}]));
    }

    #[test]
    fn openai_reject_gives_400_only_when_client_sent_a_system_prompt() {
        let body = json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]});
        let err = run(ApiShape::OpenAiChat, body.clone(), &org(), &[], ClientSystemPrompt::Reject, true).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.code, "system_prompt_not_allowed");
        // A template's own system prompt is the gateway's: no rejection.
        assert!(run(ApiShape::OpenAiChat, body, &org(), &[], ClientSystemPrompt::Reject, false).is_ok());
        // No client system prompt: fine.
        let plain = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert!(run(ApiShape::OpenAiChat, plain, &org(), &[], ClientSystemPrompt::Reject, true).is_ok());
    }

    #[test]
    fn policy_ignored_when_decoration_adds_no_system_prompt() {
        let body = json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]});
        let out =
            run(ApiShape::OpenAiChat, body, &[msg(Role::User, "ctx")], &[], ClientSystemPrompt::Reject, true).unwrap();
        assert_eq!(out["messages"].as_array().unwrap().len(), 3);
        assert_eq!(out["messages"][1]["content"], "S");
    }

    #[test]
    fn openai_bad_messages() {
        let err = run(ApiShape::OpenAiChat, json!({"messages": "x"}), &org(), &[], ClientSystemPrompt::KeepBoth, true)
            .unwrap_err();
        assert_eq!((err.status, err.code, err.param.as_deref()), (400, "invalid_type", Some("messages")));
        let err = run(ApiShape::OpenAiChat, json!({"model": "m"}), &org(), &[], ClientSystemPrompt::KeepBoth, true)
            .unwrap_err();
        assert_eq!(err.code, "invalid_request");
    }

    #[test]
    fn empty_decoration_leaves_body_alone() {
        let body = json!({"messages": "not even an array"});
        let out = run(ApiShape::OpenAiChat, body.clone(), &[], &[], ClientSystemPrompt::Reject, true).unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn anthropic_string_system_keep_both() {
        let body = json!({"model": "c", "system": "THEIRS", "messages": [{"role": "user", "content": "hi"}]});
        let out = run(
            ApiShape::AnthropicMessages,
            body,
            &[msg(Role::System, "ORG"), msg(Role::User, "first")],
            &[msg(Role::Developer, "LAST RULE")],
            ClientSystemPrompt::KeepBoth,
            true,
        )
        .unwrap();
        assert_eq!(out["system"], "ORG\n\nTHEIRS\n\nLAST RULE");
        assert_eq!(out["messages"], json!([{"role": "user", "content": "first"}, {"role": "user", "content": "hi"}]));
    }

    #[test]
    fn anthropic_block_system_keeps_client_blocks() {
        let body = json!({"system": [{"type": "text", "text": "THEIRS", "cache_control": {"type": "ephemeral"}}],
                          "messages": [{"role": "user", "content": "hi"}]});
        let out = run(ApiShape::AnthropicMessages, body, &org(), &[], ClientSystemPrompt::KeepBoth, true).unwrap();
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "ORG"}, {"type": "text", "text": "THEIRS", "cache_control": {"type": "ephemeral"}}])
        );
    }

    #[test]
    fn anthropic_absent_system_and_replace_and_reject() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let out = run(ApiShape::AnthropicMessages, body, &org(), &[], ClientSystemPrompt::Reject, true).unwrap();
        assert_eq!(out["system"], "ORG");
        let body = json!({"system": [{"type": "text", "text": "THEIRS"}], "messages": []});
        let out =
            run(ApiShape::AnthropicMessages, body.clone(), &org(), &[], ClientSystemPrompt::Replace, true).unwrap();
        assert_eq!(out["system"], "ORG");
        let err = run(ApiShape::AnthropicMessages, body, &org(), &[], ClientSystemPrompt::Reject, true).unwrap_err();
        assert_eq!(err.code, "system_prompt_not_allowed");
    }

    #[test]
    fn anthropic_bad_system_type() {
        let body = json!({"system": 5, "messages": []});
        let err = run(ApiShape::AnthropicMessages, body, &org(), &[], ClientSystemPrompt::KeepBoth, true).unwrap_err();
        assert_eq!((err.code, err.param.as_deref()), ("invalid_type", Some("system")));
    }
}
