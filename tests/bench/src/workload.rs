//! The requests the scenarios send: prompts, completions and the filter
//! configurations they run with.

// serde_json::Value indexed by key: a missing key reads as Null (no panic), and writes go to objects
// built here, so `value["key"]` is safe in this file.
#![allow(clippy::indexing_slicing)]

use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The benchmark's prompt: 1 KiB of business prose with an e-mail address.
pub fn bench_prompt() -> String {
    prose_with_pii(1024)
}

/// The benchmark's completion text; the mock wraps it in a chat.completion object
/// (~300 bytes), 2 KiB of JSON in all.
pub fn bench_answer() -> String {
    answer_prose(1750)
}

/// Every aigw filter's configuration as the benchmark runs it: gateway.yaml's shipped
/// blocks, with token-counter's budgets raised and model-router routing to the mock.
pub fn chain_configs(shipped: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let mut configs = shipped.clone();
    let token_counter = shipped.get("token-counter").ok_or("gateway.yaml has no token-counter filter")?;
    configs.insert("token-counter".to_string(), token_counter_config(token_counter)?);
    configs.insert("model-router".to_string(), model_router_config());
    Ok(configs)
}

/// Business prose with a little PII (see `aigw_shared::testing::prose_with_pii`):
/// the same text pii-mask's throughput example scans.
pub use aigw_shared::testing::prose_with_pii;

/// Completion prose without PII (a typical answer), `target` bytes.
pub fn answer_prose(target: usize) -> String {
    let prose = "Revenue grew in every region this quarter, led by strong demand for the new subscription \
                 tiers. Margins held steady despite higher logistics costs. The main risks are supplier \
                 concentration, exchange-rate swings and the timing of the platform migration. ";
    let mut text = String::with_capacity(target + prose.len());
    while text.len() < target {
        text.push_str(prose);
    }
    cut(text, target)
}

fn cut(mut text: String, target: usize) -> String {
    text.truncate(target);
    while !text.is_char_boundary(text.len()) {
        text.pop();
    }
    text.trim_end().to_string()
}

/// An OpenAI chat request with one user message.
pub fn chat_body(prompt: &str, stream: bool) -> Vec<u8> {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
    });
    if stream {
        body["stream"] = Value::Bool(true);
    }
    body.to_string().into_bytes()
}

/// token-counter's shipped configuration with every budget raised to 10^15
/// tokens: the benchmark sends far more than the shipped 1M tokens/hour per
/// client, and a 429 would measure the error path. The rules still run
/// (reservation and settlement through shared data, headers, metrics).
pub fn token_counter_config(shipped: &str) -> Result<String, String> {
    let mut config: Value = serde_json::from_str(shipped).map_err(|e| format!("token-counter config: {e}"))?;
    if let Some(rules) = config.get_mut("rules").and_then(Value::as_array_mut) {
        for rule in rules {
            if rule.get("limit").is_some() {
                rule["limit"] = json!(1_000_000_000_000_000u64);
            }
        }
    }
    Ok(config.to_string())
}

/// token-counter's shipped configuration without budget rules: counting,
/// usage, cost, metrics and filter state only (to separate the budgets' cost).
pub fn token_counter_without_rules(shipped: &str) -> Result<String, String> {
    let mut config: Value = serde_json::from_str(shipped).map_err(|e| format!("token-counter config: {e}"))?;
    if let Some(map) = config.as_object_mut() {
        map.insert("rules".to_string(), Value::Array(Vec::new()));
    }
    Ok(config.to_string())
}

/// model-router: `gpt-4o-mini` to the `mock` backend (OpenAI API), so the
/// filter reads the body, picks a backend, sets `x-aigw-route`, clears the
/// route cache and tags the response. The shipped `{}` would route nothing.
pub fn model_router_config() -> String {
    json!({
        "backends": [{"name": "mock", "provider": "openai"}],
        "models": [{"name": "gpt-4o-mini", "targets": [{"backend": "mock"}]}]
    })
    .to_string()
}

/// pii-mask's shipped configuration without custom rules (built-in scanners only).
pub fn pii_builtin_only(shipped: &str) -> Result<String, String> {
    let mut config: Value = serde_json::from_str(shipped).map_err(|e| format!("pii-mask config: {e}"))?;
    if let Some(map) = config.as_object_mut() {
        map.remove("custom_rules");
    }
    Ok(config.to_string())
}

/// pii-mask's shipped configuration plus two more custom regex rules (three in all).
pub fn pii_three_custom_rules(shipped: &str) -> Result<String, String> {
    let mut config: Value = serde_json::from_str(shipped).map_err(|e| format!("pii-mask config: {e}"))?;
    let extra = [
        json!({"name": "ORDER_ID", "pattern": "\\bORD-[A-Z]{2}[0-9]{8}\\b", "max_match_chars": 14}),
        json!({"name": "INTERNAL_HOST", "pattern": "\\b[a-z0-9-]+\\.corp\\.example\\.net\\b", "max_match_chars": 80}),
    ];
    match config.get_mut("custom_rules").and_then(Value::as_array_mut) {
        Some(rules) => rules.extend(extra),
        None => config["custom_rules"] = Value::Array(extra.to_vec()),
    }
    Ok(config.to_string())
}

/// pii-mask's shipped configuration plus a rule that any word can begin
/// (`<word> account <8 digits>`): the stream masker holds each trailing word
/// until the next one shows it is not followed by ` account`.
pub fn pii_word_prefix_rule(shipped: &str) -> Result<String, String> {
    let mut config: Value = serde_json::from_str(shipped).map_err(|e| format!("pii-mask config: {e}"))?;
    let extra = json!({"name": "ACCOUNT_REF", "pattern": "\\b[A-Za-z]+ account [0-9]{8}\\b", "max_match_chars": 40});
    match config.get_mut("custom_rules").and_then(Value::as_array_mut) {
        Some(rules) => rules.push(extra),
        None => config["custom_rules"] = Value::Array(vec![extra]),
    }
    Ok(config.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_shapes() {
        let p = prose_with_pii(1024);
        assert!(p.len() <= 1024 && p.len() > 1000);
        assert!(p.contains("@example.com"));
        let a = answer_prose(2000);
        assert!(a.len() <= 2000 && a.len() > 1950);
        let body: Value = serde_json::from_slice(&chat_body("hi", true)).unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["messages"][0]["content"], "hi");
    }

    #[test]
    fn config_edits() {
        let tc = token_counter_config(r#"{"rules":[{"name":"a","key":"client_address","limit":5,"window":"hour"}]}"#)
            .unwrap();
        assert!(tc.contains("1000000000000000"));
        let three = pii_three_custom_rules(r#"{"custom_rules":[{"name":"X","pattern":"x"}]}"#).unwrap();
        let v: Value = serde_json::from_str(&three).unwrap();
        assert_eq!(v["custom_rules"].as_array().unwrap().len(), 3);
        let builtin = pii_builtin_only(&three).unwrap();
        assert!(!builtin.contains("custom_rules"));
    }
}
