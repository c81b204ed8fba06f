//! Masking a request body: every text of a chat request (OpenAI and
//! Anthropic shapes, all roles, content parts, tool-call arguments and tool
//! results), or every string of a JSON body on other paths.

use crate::actions::HashSettings;
use crate::config::{Config, OtherPaths};
use crate::scan::{Findings, Scanner};
use aigw_shared::api::{request_texts_mut, ApiShape, TextKind};
use aigw_shared::body::parse_json_object;
use aigw_shared::ApiError;
use serde_json::Value;

/// Keys whose string values are identifiers, not text, in bodies of unknown shape.
const STRUCTURAL_KEYS: &[&str] = &["model", "role", "type", "object", "id", "tool_call_id", "encoding_format"];

/// Visits every string value in `value` except those under structural keys.
pub fn generic_texts_mut(value: &mut Value, visit: &mut dyn FnMut(TextKind, &mut String)) {
    match value {
        Value::String(text) => visit(TextKind::Content, text),
        Value::Array(items) => items.iter_mut().for_each(|item| generic_texts_mut(item, visit)),
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if !STRUCTURAL_KEYS.contains(&key.as_str()) {
                    generic_texts_mut(item, visit);
                }
            }
        }
        _ => {}
    }
}

/// The outcome of masking one request.
#[derive(Debug, Default)]
pub struct RequestResult {
    /// The new body, if anything changed.
    pub body: Option<Vec<u8>>,
    pub findings: Findings,
    /// Set when a reject rule matched: the 400 to answer.
    pub reject: Option<ApiError>,
    /// The (masked) texts, for moderation, when asked for.
    pub texts: Vec<String>,
}

/// Masks every text of `value` with `scanner`. Returns whether anything changed.
pub fn mask_value(
    value: &mut Value,
    shape: Option<ApiShape>,
    scanner: &Scanner,
    hash: &HashSettings,
    findings: &mut Findings,
    mut collect: Option<&mut Vec<String>>,
) -> bool {
    let mut changed = false;
    let mut visit = |_kind: TextKind, text: &mut String| {
        if let Some(masked) = scanner.mask(text, hash, findings) {
            *text = masked;
            changed = true;
        }
        if let Some(texts) = collect.as_deref_mut() {
            if !text.is_empty() {
                texts.push(text.clone());
            }
        }
    };
    match shape {
        Some(shape) => {
            request_texts_mut(shape, value, &mut visit);
            // prompt-template runs after this filter and renders a templated
            // request's `variables` into its messages: scan them here, or their
            // values would reach the provider unchecked.
            if let Some(variables) = value.get_mut("variables") {
                generic_texts_mut(variables, &mut visit);
            }
        }
        None => generic_texts_mut(value, &mut visit),
    }
    changed
}

/// Masks a complete request body. `Err` is a client error (invalid body).
pub fn mask_request(
    body: &[u8],
    shape: Option<ApiShape>,
    config: &Config,
    collect_texts: bool,
) -> Result<RequestResult, ApiError> {
    let mut result = RequestResult::default();
    if shape.is_none() && config.other_paths == OtherPaths::Skip {
        return Ok(result);
    }
    let mut value = parse_json_object(body)?;
    let mut texts = Vec::new();
    let changed = mask_value(
        &mut value,
        shape,
        &config.request,
        &config.hash,
        &mut result.findings,
        collect_texts.then_some(&mut texts),
    );
    result.texts = texts;
    if let Some(rule) = result.findings.reject {
        let message = match config.request.rules.get(rule).map(|r| &r.action) {
            Some(crate::actions::Action::Reject { message }) => message.clone(),
            _ => crate::config::DEFAULT_REQUEST_REJECT_MESSAGE.to_string(),
        };
        result.reject = Some(ApiError::bad_request("sensitive_data_detected", message));
        return Ok(result);
    }
    if changed {
        result.body = Some(value.to_string().into_bytes());
    }
    Ok(result)
}

/// The value of the `aigw.pii.detected` filter state: the entity or rule
/// names that matched, comma-separated, in rule order.
pub fn detected_names(scanner: &Scanner, findings: &Findings) -> Option<String> {
    let names: Vec<&str> = findings
        .counts
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .filter_map(|(rule, _)| scanner.rules.get(rule).map(|r| r.name.as_str()))
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// The entity names found, with how many of each (`EMAIL_ADDRESS:1,US_SSN:2`),
/// for traces. Never the values.
pub fn detected_counts(scanner: &Scanner, findings: &Findings) -> Option<String> {
    let counts: Vec<String> = findings
        .counts
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .filter_map(|(rule, count)| scanner.rules.get(rule).map(|r| format!("{}:{count}", r.name)))
        .collect();
    (!counts.is_empty()).then(|| counts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;
    use serde_json::json;

    fn config(json: &str) -> Config {
        from_json(Some(json.as_bytes())).unwrap()
    }

    #[test]
    fn openai_request_every_role_and_tool_arguments() {
        let config = config("{}");
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Admin is root@corp.example.com"},
                {"role": "user", "content": [{"type": "text", "text": "My SSN is 123-45-6789"}, {"type": "image_url", "image_url": {"url": "https://x/a@b.com"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"card\":\"4111111111111111\"}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "ip 10.1.2.3"}
            ]
        });
        let result = mask_request(body.to_string().as_bytes(), Some(ApiShape::OpenAiChat), &config, true).unwrap();
        let out: Value = serde_json::from_slice(&result.body.unwrap()).unwrap();
        assert_eq!(out["messages"][0]["content"], "Admin is [EMAIL_ADDRESS]");
        assert_eq!(out["messages"][1]["content"][0]["text"], "My SSN is [US_SSN]");
        assert_eq!(out["messages"][1]["content"][1]["image_url"]["url"], "https://x/a@b.com");
        assert_eq!(out["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"card\":\"[CREDIT_CARD]\"}");
        assert_eq!(out["messages"][3]["content"], "ip [IP_ADDRESS]");
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(
            detected_names(&config.request, &result.findings).unwrap(),
            "EMAIL_ADDRESS,CREDIT_CARD,US_SSN,IP_ADDRESS"
        );
        assert_eq!(result.texts.len(), 4);
        assert!(result.texts.iter().all(|t| !t.contains("123-45-6789")));
    }

    #[test]
    fn anthropic_request_system_blocks_and_tool_use() {
        let config = config("{}");
        let body = json!({
            "model": "claude",
            "max_tokens": 10,
            "system": [{"type": "text", "text": "call +44 20 7946 0958"}],
            "messages": [
                {"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {"to": "bob@example.org"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "IBAN DE89370400440532013000"}]}
            ]
        });
        let result =
            mask_request(body.to_string().as_bytes(), Some(ApiShape::AnthropicMessages), &config, false).unwrap();
        let out: Value = serde_json::from_slice(&result.body.unwrap()).unwrap();
        assert_eq!(out["system"][0]["text"], "call [PHONE_NUMBER]");
        assert_eq!(out["messages"][0]["content"], "key [AWS_ACCESS_KEY]");
        assert_eq!(out["messages"][1]["content"][0]["input"]["to"], "[EMAIL_ADDRESS]");
        assert_eq!(out["messages"][2]["content"][0]["content"], "IBAN [IBAN_CODE]");
        assert!(result.texts.is_empty());
    }

    #[test]
    fn unchanged_body_is_not_rewritten() {
        let config = config("{}");
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;
        let result = mask_request(body, Some(ApiShape::OpenAiChat), &config, false).unwrap();
        assert!(result.body.is_none());
        assert!(!result.findings.any());
    }

    #[test]
    fn reject_gives_400_with_the_message() {
        let config = config(r#"{"entities": {"US_SSN": {"action": "reject", "message": "No SSNs please."}}}"#);
        let body = br#"{"messages":[{"role":"user","content":"ssn 123-45-6789"}]}"#;
        let result = mask_request(body, Some(ApiShape::OpenAiChat), &config, false).unwrap();
        let err = result.reject.unwrap();
        assert_eq!(err.status, 400);
        assert_eq!(err.message, "No SSNs please.");
        assert!(!String::from_utf8(err.body()).unwrap().contains("6789"));
    }

    #[test]
    fn template_variables_are_masked_before_prompt_template_renders_them() {
        let body = br#"{"model":"m","template":"summary","variables":{"customer":"mail jo@example.com","nested":{"ssn":"078-05-1120"}}}"#;
        let result = mask_request(body, Some(ApiShape::OpenAiChat), &config("{}"), false).unwrap();
        let masked = String::from_utf8(result.body.expect("changed")).unwrap();
        assert!(!masked.contains("jo@example.com"), "{masked}");
        assert!(!masked.contains("078-05-1120"), "{masked}");
        assert!(masked.contains("\"template\":\"summary\""), "{masked}");
    }

    #[test]
    fn other_paths_scan_every_string_or_skip() {
        let body = br#"{"model":"text-embedding-3","input":["mail a@b.com","x"]}"#;
        let result = mask_request(body, None, &config("{}"), false).unwrap();
        let out: Value = serde_json::from_slice(&result.body.unwrap()).unwrap();
        assert_eq!(out["input"][0], "mail [EMAIL_ADDRESS]");
        let result = mask_request(body, None, &config(r#"{"other_paths": "skip"}"#), false).unwrap();
        assert!(result.body.is_none());
    }

    #[test]
    fn responses_embeddings_and_completions_requests() {
        let cfg = config("{}");
        let body = json!({
            "model": "gpt-4o-mini",
            "instructions": "Admin is root@corp.example.com",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "My SSN is 123-45-6789"},
                    {"type": "input_image", "image_url": "https://x/a@b.com"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"card\":\"4111111111111111\"}"},
                {"type": "function_call_output", "call_id": "c", "output": "ip 10.1.2.3"}
            ]
        });
        let result = mask_request(body.to_string().as_bytes(), Some(ApiShape::OpenAiResponses), &cfg, false).unwrap();
        let out: Value = serde_json::from_slice(&result.body.unwrap()).unwrap();
        assert_eq!(out["instructions"], "Admin is [EMAIL_ADDRESS]");
        assert_eq!(out["input"][0]["content"][0]["text"], "My SSN is [US_SSN]");
        assert_eq!(out["input"][0]["content"][1]["image_url"], "https://x/a@b.com");
        assert_eq!(out["input"][1]["arguments"], "{\"card\":\"[CREDIT_CARD]\"}");
        assert_eq!(out["input"][2]["output"], "ip [IP_ADDRESS]");

        let body = json!({"model": "gpt-4o-mini", "input": "mail a@b.com"});
        let result = mask_request(body.to_string().as_bytes(), Some(ApiShape::OpenAiResponses), &cfg, false).unwrap();
        let out: Value = serde_json::from_slice(&result.body.unwrap()).unwrap();
        assert_eq!(out["input"], "mail [EMAIL_ADDRESS]");

        let body =
            json!({"model": "text-embedding-3-small", "input": ["mail a@b.com", "fine"], "encoding_format": "float"});
        let result = mask_request(body.to_string().as_bytes(), Some(ApiShape::OpenAiEmbeddings), &cfg, false).unwrap();
        let out: Value = serde_json::from_slice(&result.body.unwrap()).unwrap();
        assert_eq!(out["input"], json!(["mail [EMAIL_ADDRESS]", "fine"]));
        // Token arrays are not text: passed through unscanned.
        let tokens = br#"{"model":"text-embedding-3-small","input":[[1,2,3]]}"#;
        assert!(mask_request(tokens, Some(ApiShape::OpenAiEmbeddings), &cfg, false).unwrap().body.is_none());

        let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["ssn 123-45-6789"], "suffix": "ip 10.0.0.1"});
        let result = mask_request(body.to_string().as_bytes(), Some(ApiShape::OpenAiCompletions), &cfg, false).unwrap();
        let out: Value = serde_json::from_slice(&result.body.unwrap()).unwrap();
        assert_eq!(out["prompt"], json!(["ssn [US_SSN]"]));
        assert_eq!(out["suffix"], "ip [IP_ADDRESS]");
    }

    #[test]
    fn invalid_bodies_are_client_errors() {
        let config = config("{}");
        assert_eq!(mask_request(b"{", Some(ApiShape::OpenAiChat), &config, false).unwrap_err().code, "invalid_json");
        assert_eq!(mask_request(&[0xff], Some(ApiShape::OpenAiChat), &config, false).unwrap_err().code, "invalid_utf8");
        assert_eq!(mask_request(b"[]", Some(ApiShape::OpenAiChat), &config, false).unwrap_err().status, 400);
    }

    #[test]
    fn every_client_text_field_and_json_inside_json_is_masked() {
        let config = config("{}");
        let body = json!({
            "model": "m",
            "user": "ana@example.com",
            "metadata": {"customer": "call +1 415 555 0132"},
            "messages": [
                {"role": "user", "name": "ana.silva@example.com", "content": "hi"},
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f",
                    "arguments": "{\"to\":\"ana.silva\\u0040example.com\",\"card\":4111111111111111}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "{\"result\":\"ssn 078\\u002d05\\u002d1120\"}"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Escalate to ops@corp.example.com",
                "parameters": {"type": "object", "properties": {"id": {"type": "string", "description": "e.g. 123-45-6789"}}}}}],
            "prediction": {"type": "content", "content": "mail bob@example.org"},
            "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object", "description": "owner 10.1.2.3"}}}
        });
        let result = mask_request(body.to_string().as_bytes(), Some(ApiShape::OpenAiChat), &config, false).unwrap();
        let text = String::from_utf8(result.body.unwrap()).unwrap();
        for raw in [
            "ana@example.com",
            "415 555",
            "ana.silva",
            "4111111111111111",
            "1120",
            "ops@corp",
            "6789",
            "bob@",
            "10.1.2.3",
        ] {
            assert!(!text.contains(raw), "{raw} leaked: {text}");
        }
        let out: Value = serde_json::from_str(&text).unwrap();
        let args: Value =
            serde_json::from_str(out["messages"][1]["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
                .unwrap();
        assert_eq!(args, json!({"to": "[EMAIL_ADDRESS]", "card": "[CREDIT_CARD]"}));
        let tool: Value = serde_json::from_str(out["messages"][2]["content"].as_str().unwrap()).unwrap();
        assert_eq!(tool, json!({"result": "ssn [US_SSN]"}));
        assert_eq!(out["tools"][0]["function"]["name"], "lookup");
    }

    #[test]
    fn obfuscated_values_are_masked_in_requests_by_default() {
        let body =
            json!({"messages": [{"role": "user", "content": "mail ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ or a%40b.com"}]});
        let result =
            mask_request(body.to_string().as_bytes(), Some(ApiShape::OpenAiChat), &config("{}"), false).unwrap();
        let out: Value = serde_json::from_slice(&result.body.unwrap()).unwrap();
        assert_eq!(out["messages"][0]["content"], "mail [EMAIL_ADDRESS] or [EMAIL_ADDRESS]");
        let off = config(r#"{"normalize": {"request": false}}"#);
        let result = mask_request(body.to_string().as_bytes(), Some(ApiShape::OpenAiChat), &off, false).unwrap();
        assert!(result.body.is_none());
    }
}
