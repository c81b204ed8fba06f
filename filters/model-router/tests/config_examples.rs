//! The configurations we ship or document must load: every `<!-- example: config -->` block of the
//! README, the block in envoy-config/gateway.yaml, and the JSON Schema must describe the same fields
//! the parser accepts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_shared::testing;
use model_router::config::{from_json, Config};
use serde_json::Value;

fn read(relative: &str) -> String {
    testing::read_file(env!("CARGO_MANIFEST_DIR"), relative)
}

/// The JSON blocks that follow an `<!-- example: config -->` marker.
fn readme_examples() -> Vec<String> {
    testing::readme_config_examples(&read("README.md"))
}

#[test]
fn readme_examples_parse() {
    let examples = readme_examples();
    assert!(examples.len() >= 8, "found {} examples", examples.len());
    for example in examples {
        if let Err(err) = from_json(Some(example.as_bytes())) {
            panic!("README example rejected: {err}\n{example}");
        }
    }
}

/// The configuration block of this filter in envoy-config/gateway.yaml.
fn gateway_config() -> String {
    testing::gateway_config(&read("../../envoy-config/gateway.yaml"), "model-router")
}

#[test]
fn gateway_yaml_configuration_parses_and_has_no_catch_all() {
    let Config::Downstream(config) = from_json(Some(gateway_config().as_bytes())).unwrap() else {
        panic!("gateway.yaml's model-router is the downstream instance")
    };
    assert!(config.default.is_none(), "the reference configuration must answer 404 to unknown models");
    let never = |_: &aigw_shared::attributes::Source| None;
    assert_eq!(config.select("no-such-model", &never, None).unwrap_err().status, 404);
    let decision = config.select("anthropic/claude-3-5-haiku", &never, None).unwrap();
    assert_eq!(decision.route, "anthropic");
    assert_eq!(decision.targets[0].1, "claude-3-5-haiku");
    assert_eq!(config.select("failover-demo", &never, None).unwrap().route, "mock-failover");
}

#[test]
fn schema_is_json_and_lists_exactly_the_accepted_fields() {
    let schema: Value = serde_json::from_str(&read("config.schema.json")).unwrap();
    for (def, mode) in [("downstream", "downstream"), ("upstream", "upstream")] {
        let properties = schema["$defs"][def]["properties"].as_object().unwrap();
        for field in properties.keys() {
            let text = format!(r#"{{"mode": "{mode}", "{field}": null}}"#);
            if let Err(err) = from_json(Some(text.as_bytes())) {
                assert!(!err.reason.contains("unknown field"), "schema field {def}.{field}: {err}");
            }
        }
        // And the parser knows no top-level field the schema does not list.
        let probe = format!(r#"{{"mode": "{mode}", "not_a_field": 1}}"#);
        let err = from_json(Some(probe.as_bytes())).unwrap_err();
        let expected = err.reason.split("expected one of ").nth(1).unwrap_or("");
        for name in expected.split(", ") {
            let name = name.trim_matches('`');
            assert!(
                schema["$defs"]["downstream"]["properties"].get(name).is_some()
                    || schema["$defs"]["upstream"]["properties"].get(name).is_some(),
                "parser field `{name}` missing from the schema"
            );
        }
    }
    for def in ["backend", "target", "split", "model", "rule", "access"] {
        assert!(schema["$defs"][def]["properties"].is_object(), "{def}");
    }
}
