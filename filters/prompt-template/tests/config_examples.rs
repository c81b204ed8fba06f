//! The configurations we ship or document must load: every `<!-- example: config -->` block of the
//! README, the block in envoy-config/gateway.yaml, and the JSON Schema must be well-formed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_shared::testing;
use prompt_template::config::from_json;

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
    assert!(examples.len() >= 5, "found {} examples", examples.len());
    for example in examples {
        if let Err(err) = from_json(Some(example.as_bytes())) {
            panic!("README example rejected: {err}\n{example}");
        }
    }
}

#[test]
fn readme_french_sentiment_example_is_the_seed_prompt() {
    let examples = readme_examples();
    let config = from_json(Some(examples[0].as_bytes())).unwrap();
    let template = &config.default_set.templates["sentiment-fr"];
    let values = [("text".to_string(), "x".to_string())].into_iter().collect();
    assert_eq!(
        template.messages[0].content.render(&values),
        "Analyse the sentiment of the user's text and answer with one French word."
    );
}

/// The configuration block of this filter in envoy-config/gateway.yaml.
fn gateway_config() -> String {
    testing::gateway_config(&read("../../envoy-config/gateway.yaml"), "prompt-template")
}

#[test]
fn gateway_yaml_config_parses_with_teams_and_sentiment_template() {
    let text = gateway_config();
    let config = from_json(Some(text.as_bytes())).unwrap_or_else(|err| panic!("gateway.yaml rejected: {err}"));
    assert!(!config.default_set.decoration.is_empty(), "the reference config decorates every request");
    assert!(config.default_set.templates.contains_key("sentiment-fr"));
    let retail = config.tenant("retail").expect("retail team");
    let wealth = config.tenant("wealth").expect("wealth team");
    let values = Default::default();
    assert_ne!(
        retail.decoration.prepend[0].content.render(&values),
        wealth.decoration.prepend[0].content.render(&values),
        "teams get different prompts"
    );
}

#[test]
fn schema_is_json_schema_2020_12() {
    let schema: serde_json::Value = serde_json::from_str(&read("config.schema.json")).expect("valid JSON");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["additionalProperties"], false);
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "max_body_bytes",
        "tenant",
        "tenants",
        "platform_variables",
        "decorate",
        "templates",
        "allow_untemplated_requests",
        "retrieval",
    ] {
        assert!(properties.contains_key(field), "schema lacks {field}");
    }
}
