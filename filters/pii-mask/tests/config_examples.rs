//! The configurations we ship or document must load with the filter's own parser: every
//! `<!-- example: config -->` block of the README, every `examples` entry of the JSON Schema, and the
//! block in envoy-config/gateway.yaml. The schema must name the same entities and fields as the parser.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_shared::testing;
use pii_mask::actions::Action;
use pii_mask::config::from_json;
use pii_mask::detectors::Entity;
use serde_json::Value;

fn read(relative: &str) -> String {
    testing::read_file(env!("CARGO_MANIFEST_DIR"), relative)
}

/// The JSON blocks that follow an `<!-- example: config -->` marker.
fn readme_examples() -> Vec<String> {
    testing::readme_config_examples(&read("README.md"))
}

fn schema() -> Value {
    serde_json::from_str(&read("config.schema.json")).expect("the schema is JSON")
}

#[test]
fn readme_examples_parse() {
    let examples = readme_examples();
    assert!(examples.len() >= 5, "found {} examples", examples.len());
    for example in examples {
        if let Err(err) = from_json(Some(example.as_bytes())) {
            panic!("README example rejected: {err}\n{example}");
        }
    }
}

#[test]
fn schema_examples_parse() {
    let schema = schema();
    let examples = schema["examples"].as_array().expect("examples");
    assert!(examples.len() >= 3);
    for example in examples {
        if let Err(err) = from_json(Some(example.to_string().as_bytes())) {
            panic!("schema example rejected: {err}\n{example}");
        }
    }
}

#[test]
fn schema_matches_the_parser() {
    let schema = schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["additionalProperties"], false);
    let names: Vec<&str> = schema["properties"]["entities"]["propertyNames"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let known: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
    assert_eq!(names, known, "the schema's entity names");
    let mut fields: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "custom_rules",
            "entities",
            "hash",
            "max_body_bytes",
            "moderation",
            "normalize",
            "on_unreadable_request",
            "on_unreadable_response",
            "other_paths",
            "request",
            "response"
        ]
    );
    // Every top-level field the schema lists is accepted by the parser, and an unknown one is not.
    for field in fields {
        let value = match field {
            "custom_rules" => "[]",
            "entities" | "hash" | "normalize" => "{}",
            "max_body_bytes" => "10",
            "moderation" => r#"{"cluster": "c"}"#,
            "on_unreadable_request" => r#""pass""#,
            "on_unreadable_response" => r#""pass""#,
            "other_paths" => r#""skip""#,
            _ => "true",
        };
        let config = format!("{{\"{field}\": {value}}}");
        assert!(from_json(Some(config.as_bytes())).is_ok(), "{config}");
    }
    assert!(from_json(Some(br#"{"entitys": {}}"#)).is_err());
}

/// The configuration block of this filter in envoy-config/gateway.yaml.
fn gateway_config() -> String {
    testing::gateway_config(&read("../../envoy-config/gateway.yaml"), "pii-mask")
}

#[test]
fn gateway_yaml_config_parses_with_the_documented_actions() {
    let text = gateway_config();
    let config = from_json(Some(text.as_bytes())).unwrap_or_else(|err| panic!("gateway.yaml rejected: {err}"));
    let action = |name: &str| config.request.rules.iter().find(|r| r.name == name).map(|r| r.action.clone());
    assert_eq!(action("CREDIT_CARD"), Some(Action::Mask { keep_last: 4, mask_char: '*' }));
    assert_eq!(action("US_SSN"), Some(Action::Hash));
    assert!(matches!(action("PRIVATE_KEY"), Some(Action::Reject { .. })));
    assert_eq!(action("EMPLOYEE_ID"), Some(Action::Replace { text: "[EMPLOYEE_ID]".into() }));
    assert_eq!(config.request.rules.len(), Entity::ALL.len() + 1);
    assert_eq!(config.response.rules.len(), Entity::ALL.len() + 1);
    // The README's second example is this configuration.
    let readme: Value = serde_json::from_str(&readme_examples()[1]).unwrap();
    assert_eq!(readme, serde_json::from_str::<Value>(&text).unwrap(), "README and gateway.yaml differ");
}
