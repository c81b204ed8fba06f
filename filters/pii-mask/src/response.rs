//! Masking of non-streamed responses: JSON completions (OpenAI and
//! Anthropic), other JSON bodies (errors, unknown APIs) and plain text.

use crate::config::Config;
use crate::request::mask_value;
use crate::scan::Findings;
use aigw_shared::api::ApiShape;
use serde_json::{json, Value};

/// Why a response body could not be inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    NotUtf8,
    NotJson,
}

impl Unreadable {
    pub fn reason(self) -> &'static str {
        match self {
            Unreadable::NotUtf8 => "not_utf8",
            Unreadable::NotJson => "not_json",
        }
    }
}

/// The completion shape of a JSON body, judged by its content (shared with
/// token-counter): an error object, for instance, is none, and is scanned
/// generically.
fn body_shape(value: &Value, requested: Option<ApiShape>) -> Option<ApiShape> {
    aigw_shared::api::response_shape(value, requested)
}

fn reject_message(config: &Config, rule: usize) -> String {
    match config.response.rules.get(rule).map(|r| &r.action) {
        Some(crate::actions::Action::Reject { message }) => message.clone(),
        _ => crate::config::DEFAULT_RESPONSE_REJECT_MESSAGE.to_string(),
    }
}

/// Replaces the whole completion with `message`.
fn withhold(value: &mut Value, shape: Option<ApiShape>, message: &str) {
    match shape {
        Some(ApiShape::OpenAiChat) => {
            if let Some(Value::Array(choices)) = value.get_mut("choices") {
                for choice in choices {
                    if let Some(map) = choice.as_object_mut() {
                        map.insert("message".into(), json!({"role": "assistant", "content": message}));
                        map.insert("finish_reason".into(), json!("content_filter"));
                        map.remove("logprobs");
                    }
                }
            }
        }
        Some(ApiShape::AnthropicMessages) => {
            if let Some(map) = value.as_object_mut() {
                map.insert("content".into(), json!([{"type": "text", "text": message}]));
                map.insert("stop_reason".into(), json!("end_turn"));
            }
        }
        Some(ApiShape::OpenAiCompletions) => {
            if let Some(Value::Array(choices)) = value.get_mut("choices") {
                for choice in choices {
                    if let Some(map) = choice.as_object_mut() {
                        map.insert("text".into(), json!(message));
                        map.insert("finish_reason".into(), json!("content_filter"));
                        map.remove("logprobs");
                    }
                }
            }
        }
        Some(ApiShape::OpenAiResponses) => {
            if let Some(map) = value.as_object_mut() {
                let id = map.get("id").and_then(Value::as_str).unwrap_or("resp").to_string();
                map.insert(
                    "output".into(),
                    json!([{"id": format!("msg_{id}"), "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": message, "annotations": []}]}]),
                );
                map.insert("status".into(), json!("incomplete"));
                map.insert("incomplete_details".into(), json!({"reason": "content_filter"}));
            }
        }
        Some(ApiShape::OpenAiEmbeddings) | None => {
            *value = json!({"error": {"message": message, "type": "api_error", "param": null, "code": "sensitive_data_detected"}});
        }
    }
}

/// Masks a complete JSON response. `Ok(None)`: unchanged.
pub fn mask_json(
    body: &[u8],
    requested: Option<ApiShape>,
    config: &Config,
    findings: &mut Findings,
) -> Result<Option<Vec<u8>>, Unreadable> {
    let text = std::str::from_utf8(body).map_err(|_| Unreadable::NotUtf8)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut value: Value = serde_json::from_str(text).map_err(|_| Unreadable::NotJson)?;
    let shape = body_shape(&value, requested);
    let mut local = Findings::default();
    let changed = match shape {
        Some(shape) => {
            let mut changed = false;
            let mut visit = |_kind, text: &mut String| {
                if let Some(masked) = config.response.mask(text, &config.hash, &mut local) {
                    *text = masked;
                    changed = true;
                }
            };
            aigw_shared::api::response_texts_mut(shape, &mut value, &mut visit);
            changed
        }
        None => mask_value(&mut value, None, &config.response, &config.hash, &mut local, None),
    };
    findings.merge(&local);
    if let Some(rule) = local.reject {
        withhold(&mut value, shape, &reject_message(config, rule));
        return Ok(Some(value.to_string().into_bytes()));
    }
    Ok(changed.then(|| value.to_string().into_bytes()))
}

/// Masks a plain-text response (Envoy's own error pages, `text/plain`).
pub fn mask_text(body: &[u8], config: &Config, findings: &mut Findings) -> Result<Option<Vec<u8>>, Unreadable> {
    let text = std::str::from_utf8(body).map_err(|_| Unreadable::NotUtf8)?;
    let mut local = Findings::default();
    let masked = config.response.mask(text, &config.hash, &mut local);
    findings.merge(&local);
    if let Some(rule) = local.reject {
        return Ok(Some(reject_message(config, rule).into_bytes()));
    }
    Ok(masked.map(String::into_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;

    fn config(json: &str) -> Config {
        from_json(Some(json.as_bytes())).unwrap()
    }

    fn masked(config: &Config, body: &Value, shape: Option<ApiShape>) -> Value {
        let out = mask_json(body.to_string().as_bytes(), shape, config, &mut Findings::default()).unwrap().unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn openai_completion_content_and_tool_calls() {
        let body = json!({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Mail \"q\" a@b.com\n",
            "tool_calls": [{"function": {"name": "f", "arguments": "{\"ssn\":\"123-45-6789\"}"}}]}, "finish_reason": "stop"}],
            "usage": {"total_tokens": 3}});
        let out = masked(&config("{}"), &body, Some(ApiShape::OpenAiChat));
        assert_eq!(out["choices"][0]["message"]["content"], "Mail \"q\" [EMAIL_ADDRESS]\n");
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"ssn\":\"[US_SSN]\"}");
        assert_eq!(out["usage"]["total_tokens"], 3);
    }

    #[test]
    fn anthropic_completion() {
        let body = json!({"type": "message", "role": "assistant", "content": [{"type": "text", "text": "ip 10.0.0.1"}], "stop_reason": "end_turn"});
        let out = masked(&config("{}"), &body, Some(ApiShape::AnthropicMessages));
        assert_eq!(out["content"][0]["text"], "ip [IP_ADDRESS]");
    }

    #[test]
    fn reject_withholds_the_whole_completion() {
        let cfg = config(r#"{"entities": {"PRIVATE_KEY": {"action": "reject", "message": "Withheld."}}}"#);
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok -----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY----- done"}, "finish_reason": "stop"}]});
        let out = masked(&cfg, &body, Some(ApiShape::OpenAiChat));
        assert_eq!(out["choices"][0]["message"]["content"], "Withheld.");
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        let body =
            json!({"type": "message", "content": [{"type": "text", "text": "-----BEGIN PRIVATE KEY-----\nAAAA"}]});
        let out = masked(&cfg, &body, Some(ApiShape::AnthropicMessages));
        assert_eq!(out["content"], json!([{"type": "text", "text": "Withheld."}]));
    }

    #[test]
    fn responses_output_items_and_withholding() {
        let body = json!({"id": "resp_1", "object": "response", "status": "completed", "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "user is a@b.com"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ssn 123-45-6789", "annotations": []}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"to\":\"ana\\u0040example.com\"}"}
        ], "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}});
        let out = masked(&config("{}"), &body, Some(ApiShape::OpenAiResponses));
        assert_eq!(out["output"][0]["summary"][0]["text"], "user is [EMAIL_ADDRESS]");
        assert_eq!(out["output"][1]["content"][0]["text"], "ssn [US_SSN]");
        assert_eq!(out["output"][2]["arguments"], "{\"to\":\"[EMAIL_ADDRESS]\"}");
        assert_eq!(out["usage"]["total_tokens"], 7);
        let cfg = config(r#"{"entities": {"US_SSN": {"action": "reject", "message": "Withheld."}}}"#);
        let out = masked(&cfg, &body, Some(ApiShape::OpenAiResponses));
        assert_eq!(out["output"].as_array().unwrap().len(), 1);
        assert_eq!(out["output"][0]["content"][0]["text"], "Withheld.");
        assert_eq!(out["incomplete_details"]["reason"], "content_filter");
    }

    #[test]
    fn legacy_completion_text_is_masked_and_withheld() {
        let body = json!({"id": "cmpl", "object": "text_completion", "choices": [{"index": 0, "text": "mail a@b.com", "logprobs": null, "finish_reason": "stop"}]});
        let out = masked(&config("{}"), &body, Some(ApiShape::OpenAiCompletions));
        assert_eq!(out["choices"][0]["text"], "mail [EMAIL_ADDRESS]");
        let cfg = config(r#"{"entities": {"EMAIL_ADDRESS": {"action": "reject", "message": "Withheld."}}}"#);
        let out = masked(&cfg, &body, Some(ApiShape::OpenAiCompletions));
        assert_eq!(out["choices"][0]["text"], "Withheld.");
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn embeddings_vectors_are_left_alone() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let out = mask_json(body, Some(ApiShape::OpenAiEmbeddings), &config("{}"), &mut Findings::default()).unwrap();
        assert_eq!(out, None);
    }

    #[test]
    fn error_bodies_are_scanned_generically() {
        let body = json!({"error": {"message": "bad input near john@example.com", "type": "invalid_request_error"}});
        let out = masked(&config("{}"), &body, Some(ApiShape::OpenAiChat));
        assert_eq!(out["error"]["message"], "bad input near [EMAIL_ADDRESS]");
    }

    #[test]
    fn unreadable_and_unchanged() {
        let cfg = config("{}");
        let mut findings = Findings::default();
        assert_eq!(mask_json(b"{nope", None, &cfg, &mut findings), Err(Unreadable::NotJson));
        assert_eq!(mask_json(&[0xff], None, &cfg, &mut findings), Err(Unreadable::NotUtf8));
        assert_eq!(mask_json(br#"{"choices":[]}"#, None, &cfg, &mut findings), Ok(None));
        assert_eq!(mask_text(b"upstream connect error", &cfg, &mut findings), Ok(None));
        assert_eq!(mask_text(b"from 10.0.0.1", &cfg, &mut findings).unwrap().unwrap(), b"from [IP_ADDRESS]");
    }

    #[test]
    fn escaped_values_in_tool_json_are_masked_and_stay_valid() {
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"function": {"name": "send", "arguments": "{\"to\":\"ana\\u0040example.com\",\"n\":4111111111111111}"}}]}}]});
        let out = masked(&config("{}"), &body, Some(ApiShape::OpenAiChat));
        let args: Value = serde_json::from_str(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(args, json!({"to": "[EMAIL_ADDRESS]", "n": "[CREDIT_CARD]"}));
        // An Anthropic tool_use input string that holds JSON.
        let body = json!({"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "n",
            "input": {"payload": "{\"mail\":\"bob\\u0040example.org\"}"}}]});
        let out = masked(&config("{}"), &body, Some(ApiShape::AnthropicMessages));
        assert_eq!(out["content"][0]["input"]["payload"], "{\"mail\":\"[EMAIL_ADDRESS]\"}");
    }
}
