//! The configurations the docs show are the ones the code accepts: every
//! `json` block of README.md, the schema's examples and defaults, and the
//! block in the reference gateway.yaml parse with `config::from_json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_shared::testing;
use serde_json::{json, Value};
use token_counter::config::from_json;

fn read(relative: &str) -> String {
    testing::read_file(env!("CARGO_MANIFEST_DIR"), relative)
}

#[test]
fn readme_json_blocks_are_valid_configs() {
    let blocks = testing::json_blocks(&read("README.md"));
    assert!(blocks.len() >= 3, "expected the README's config examples, found {}", blocks.len());
    for block in blocks {
        if let Err(err) = from_json(Some(block.as_bytes())) {
            panic!("README example does not parse: {err}\n{block}");
        }
    }
}

#[test]
fn readme_seed_example_is_the_500_tokens_per_hour_rule() {
    let blocks = testing::json_blocks(&read("README.md"));
    let config = from_json(Some(blocks[0].as_bytes())).unwrap();
    assert_eq!(config.rules.len(), 1);
    assert_eq!(config.rules[0].limit, 500);
    assert_eq!(config.rules[0].key.to_string(), "jwt:sub");
}

fn schema() -> Value {
    serde_json::from_str(&read("config.schema.json")).unwrap()
}

#[test]
fn schema_examples_are_valid_configs() {
    let schema = schema();
    let examples = schema["examples"].as_array().unwrap();
    assert!(examples.len() >= 2);
    for example in examples {
        from_json(Some(example.to_string().as_bytes())).unwrap_or_else(|err| panic!("{err}: {example}"));
    }
}

/// Every property the schema documents is accepted with its default, and
/// documented in the README's reference.
#[test]
fn schema_properties_match_the_parser_and_the_readme() {
    let schema = schema();
    let readme = read("README.md");
    let top = schema["properties"].as_object().unwrap();
    for (name, property) in top {
        assert!(readme.contains(&format!("`{name}")), "README does not document `{name}`");
        if let Some(default) = property.get("default") {
            let config = json!({ name.as_str(): default });
            from_json(Some(config.to_string().as_bytes())).unwrap_or_else(|err| panic!("{name}: {err}"));
        }
    }
    for section in ["reservation", "tokenizer"] {
        for (name, property) in top[section]["properties"].as_object().unwrap() {
            assert!(readme.contains(&format!("`{section}.{name}`")), "README does not document {section}.{name}");
            if let Some(default) = property.get("default") {
                let config = json!({ section: { name.as_str(): default } });
                from_json(Some(config.to_string().as_bytes())).unwrap_or_else(|err| panic!("{section}.{name}: {err}"));
            }
        }
    }
    let rule = schema["$defs"]["rule"]["properties"].as_object().unwrap();
    for (name, property) in rule {
        assert!(readme.contains(&format!("| `{name}` |")), "README's rule table lacks `{name}`");
        let mut config = json!({"name": "r", "key": "route", "limit": 5, "window": "hour"});
        if let Some(default) = property.get("default") {
            config[name.as_str()] = default.clone();
        }
        from_json(Some(json!({"rules": [config]}).to_string().as_bytes()))
            .unwrap_or_else(|err| panic!("rules[].{name}: {err}"));
    }
    // And the parser refuses what the schema does not list.
    assert!(from_json(Some(br#"{"rulez": []}"#)).is_err());
}

/// The `configuration` block of token-counter in envoy-config/gateway.yaml.
#[test]
fn reference_gateway_config_is_valid() {
    let text = testing::gateway_config(&read("../../envoy-config/gateway.yaml"), "token-counter");
    let config = from_json(Some(text.as_bytes())).unwrap_or_else(|err| panic!("{err}\n{text}"));
    let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["per-client", "per-sub", "per-app"]);
    assert_eq!(config.rules[0].key.to_string(), "client_address");
    assert_eq!((config.rules[1].key.to_string().as_str(), config.rules[1].limit), ("jwt:sub", 500));
    // Each API key's budget, keyed by the client id api_key_auth sets.
    assert_eq!(config.rules[2].key.to_string(), "header:x-aigw-client");
}
