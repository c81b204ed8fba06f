//! The configurations we ship or document must load: every `<!-- example: config -->` block of the
//! README, the block in envoy-config/gateway.yaml, and the JSON Schema must be well-formed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_shared::testing;
use semantic_cache::config::from_json;

fn read(relative: &str) -> String {
    testing::read_file(env!("CARGO_MANIFEST_DIR"), relative)
}

#[test]
fn readme_examples_parse() {
    let examples = testing::readme_config_examples(&read("README.md"));
    assert!(examples.len() >= 3, "found {} examples", examples.len());
    for example in examples {
        if let Err(err) = from_json(Some(example.as_bytes())) {
            panic!("README example rejected: {err}\n{example}");
        }
    }
}

#[test]
fn gateway_yaml_config_parses_with_semantic_lookup_and_admin() {
    let text = testing::gateway_config(&read("../../envoy-config/gateway.yaml"), "semantic-cache");
    let config = from_json(Some(text.as_bytes())).unwrap_or_else(|err| panic!("gateway.yaml rejected: {err}"));
    assert!(config.semantic.is_some());
    assert!(config.admin.is_some());
    assert!(!config.cache_when_sampling);
}

#[test]
fn schema_is_json_and_names_every_top_level_field() {
    let schema: serde_json::Value = serde_json::from_str(&read("config.schema.json")).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "tenant",
        "enabled",
        "ttl_seconds",
        "cache_when_sampling",
        "max_entries",
        "max_bytes",
        "max_entry_bytes",
        "max_body_bytes",
        "semantic",
        "tenants",
        "models",
        "prices",
        "admin",
        "store",
    ] {
        assert!(properties.contains_key(field), "{field} missing from the schema");
    }
}
