//! The configurations we ship or document load in the built module: the README's example, the
//! `aigw` filter and the upstream instances of envoy-config/gateway-bundle.yaml; the JSON Schema
//! names every stage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw::config::Stage;
use aigw_harness::{wasm_path, Harness};
use aigw_shared::testing;

fn read(relative: &str) -> String {
    testing::read_file(env!("CARGO_MANIFEST_DIR"), relative)
}

fn loads(config: &str) {
    let vm = Harness::new().vm(wasm_path("aigw")).config(config).start();
    assert!(vm.configured(), "rejected: {:?}\n{config}", vm.logs());
}

#[test]
fn readme_example_loads() {
    let examples = testing::readme_config_examples(&read("README.md"));
    assert_eq!(examples.len(), 1);
    loads(&examples[0]);
}

/// Every `value: |` block of a Wasm filter running dist/aigw.wasm in gateway-bundle.yaml.
#[test]
fn gateway_bundle_configurations_load() {
    let yaml = read("../../envoy-config/gateway-bundle.yaml");
    let mut found = 0;
    for (at, _) in yaml.match_indices("filename: dist/aigw.wasm") {
        let rest = &yaml[at..];
        let value = rest.find("value: |").unwrap() + "value: |".len();
        // The literal block: the lines indented at least as much as its first line.
        let body: Vec<&str> = rest[value..].lines().skip(1).collect();
        let indent = body.iter().find(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).unwrap();
        let lines: Vec<&str> = body
            .iter()
            .copied()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
            .collect();
        let json: String = lines.iter().map(|l| format!("{}\n", l.get(indent..).unwrap_or(""))).collect();
        loads(&json);
        found += 1;
    }
    assert!(found >= 2, "the listener's bundle and an upstream instance: found {found}");
}

#[test]
fn schema_names_every_stage() {
    let schema: serde_json::Value = serde_json::from_str(&read("config.schema.json")).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    for stage in Stage::ALL {
        let reference = properties[stage.name()]["$ref"].as_str().unwrap();
        let target = reference.trim_start_matches("../");
        let own: serde_json::Value = serde_json::from_str(&read(&format!("../{target}"))).unwrap();
        assert!(own.is_object(), "{reference}");
    }
    assert_eq!(properties.len(), Stage::ALL.len());
}
