//! `envoy-config/gateway-bundle.yaml`: gateway.yaml with the one-pass build (`dist/aigw.wasm`,
//! filters/aigw) instead of the five filter modules. The listener's five Wasm filters become one
//! filter `aigw` whose configuration holds each filter's block, unchanged, under its name; the
//! upstream model-router instances on clusters run the same module with only a `model-router` block,
//! in the same VM (same `vm_id` and code). Everything else is gateway.yaml.
//!
//! The end-to-end fixture runs the file as it runs the others (`AIGW_E2E_LAYOUT=bundle`): a test's
//! `filter_config` replaces a block, `without_filter` removes one ([`apply_options`]).

use crate::config::{self, filter_id, key, RenderOptions, FILTERS, WASM_TYPE};
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// The bundle's filter name, root id and `vm_id`.
pub const NAME: &str = "aigw";
/// The module's file stem (`dist/aigw.wasm`).
pub const MODULE: &str = "aigw";

const HEADER: &str = "\
# GENERATED from envoy-config/gateway.yaml by `cargo run -q -p aigw-e2e --bin aigw-generate`; do not edit.
#
# gateway.yaml with the one-pass build: dist/aigw.wasm runs pii-mask, prompt-template, semantic-cache,
# token-counter and model-router as stages of ONE Wasm filter (one VM per worker, one filter context per
# stream, one body buffer). Its configuration is each filter's block from gateway.yaml, unchanged, under
# the filter's name; the stages run in the chain's order whatever the order of the keys. model-router's
# upstream instance on a cluster runs the same module (same vm_id and code: the same VM) with only a
# `model-router` block. filters/aigw/README.md documents the configuration; `AIGW_E2E_LAYOUT=bundle`
# runs the end-to-end suite on this file.
";

/// gateway-bundle.yaml from gateway.yaml.
pub fn bundle(gateway_yaml: &str) -> Result<String, String> {
    let mut root: Value = serde_yaml::from_str(gateway_yaml).map_err(|e| format!("not YAML: {e}"))?;
    let mut bundled = 0;
    for hcm in config::connection_managers(&mut root) {
        let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_sequence_mut) else { continue };
        let positions: Vec<usize> = filters
            .iter()
            .enumerate()
            .filter(|(_, f)| config::wasm_filter_name(f).is_some_and(|name| FILTERS.contains(&filter_id(name))))
            .map(|(i, _)| i)
            .collect();
        let Some(&first) = positions.first() else { continue };
        let mut blocks = Vec::new();
        for filter in positions.iter().filter_map(|&i| filters.get(i)) {
            let name = config::wasm_filter_name(filter).map(filter_id).unwrap_or_default().to_string();
            let text = configuration_text(filter).ok_or_else(|| format!("{name}: no configuration.value"))?;
            blocks.push((name, text));
        }
        let template = filters.get(first).cloned().ok_or("no first aigw filter")?;
        let aigw = bundle_filter(&template, NAME, &blocks)?;
        for &i in positions.iter().rev() {
            filters.remove(i);
        }
        filters.insert(first, aigw);
        bundled += 1;
    }
    if bundled == 0 {
        return Err("gateway.yaml has no aigw Wasm filter to bundle".to_string());
    }
    for filters in config::upstream_filter_chains(&mut root) {
        for filter in filters.iter_mut() {
            let Some(plugin) = config::get(filter, &["typed_config", "config"]) else { continue };
            if module_stem(plugin).as_deref() != Some("model-router") {
                continue;
            }
            let name = plugin.get("name").and_then(Value::as_str).unwrap_or("model-router-upstream").to_string();
            let text = configuration_text(filter).ok_or_else(|| format!("{name}: no configuration.value"))?;
            *filter = bundle_filter(filter, &name, &[("model-router".to_string(), text)])?;
        }
    }
    let body = serde_yaml::to_string(&root).map_err(|e| e.to_string())?;
    Ok(format!("{HEADER}\n{body}"))
}

fn configuration_text(filter: &Value) -> Option<String> {
    config::get(filter, &["typed_config", "config", "configuration", "value"])
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn module_stem(plugin: &Value) -> Option<String> {
    config::get(plugin, &["vm_config", "code", "local", "filename"])
        .and_then(Value::as_str)
        .and_then(|f| Path::new(f).file_stem())
        .map(|s| s.to_string_lossy().into_owned())
}

/// The bundle's configuration JSON: each block's text under its filter's name.
pub fn configuration(blocks: &[(String, String)]) -> String {
    let entries: Vec<String> = blocks
        .iter()
        .map(|(name, text)| {
            let text = text.trim().replace('\n', "\n  ");
            format!("  {:?}: {}", name, if text.is_empty() { "{}".to_string() } else { text })
        })
        .collect();
    format!("{{\n{}\n}}\n", entries.join(",\n"))
}

/// A Wasm filter entry running aigw.wasm, from `template` (its failure policy, the directory of its module).
fn bundle_filter(template: &Value, name: &str, blocks: &[(String, String)]) -> Result<Value, String> {
    let plugin = config::get(template, &["typed_config", "config"]).ok_or("Wasm filter without config")?;
    let filename = config::get(plugin, &["vm_config", "code", "local", "filename"])
        .and_then(Value::as_str)
        .ok_or("Wasm filter without vm_config.code.local.filename")?;
    let module = Path::new(filename).with_file_name(format!("{MODULE}.wasm")).to_string_lossy().into_owned();
    let code = config::mapping(&[("local", config::mapping(&[("filename", key(&module))]))]);
    let vm_config = config::mapping(&[
        ("vm_id", key(NAME)),
        (
            "runtime",
            plugin.get("vm_config").and_then(|v| v.get("runtime")).cloned().unwrap_or(key("envoy.wasm.runtime.v8")),
        ),
        ("code", code),
    ]);
    let mut config = Mapping::new();
    config.insert(key("name"), key(name));
    config.insert(key("root_id"), key(NAME));
    config.insert(key("vm_config"), vm_config);
    if let Some(policy) = plugin.get("failure_policy") {
        config.insert(key("failure_policy"), policy.clone());
    }
    config.insert(
        key("configuration"),
        config::mapping(&[
            ("@type", key("type.googleapis.com/google.protobuf.StringValue")),
            ("value", key(&configuration(blocks))),
        ]),
    );
    let entry_name = template.get("name").and_then(Value::as_str).filter(|_| name != NAME).unwrap_or("aigw");
    Ok(config::mapping(&[
        ("name", key(entry_name)),
        ("typed_config", config::mapping(&[("@type", key(WASM_TYPE)), ("config", Value::Mapping(config))])),
    ]))
}

/// The blocks of a bundle filter's configuration (name, JSON text), or None if `plugin` is not one.
fn bundle_blocks(plugin: &Value) -> Option<Result<Vec<(String, String)>, String>> {
    (module_stem(plugin).as_deref() == Some(MODULE)).then_some(())?;
    let text = config::get(plugin, &["configuration", "value"]).and_then(Value::as_str).unwrap_or("{}");
    Some(
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .map(|map| map.into_iter().map(|(name, block)| (name, block.to_string())).collect())
            .map_err(|e| format!("aigw configuration: {e}")),
    )
}

/// Applies a test's `filter_configs` and `remove_filters` to the bundle filters of a rendered config:
/// a block is replaced or removed by its filter's name (the upstream instance's block by the instance's
/// name, `model-router-upstream`); a bundle left without blocks is removed. Returns the names it
/// configured (for the renderer's check that every option found its filter).
pub fn apply_options(filters: &mut Vec<Value>, options: &RenderOptions) -> Result<Vec<String>, String> {
    let mut seen = Vec::new();
    let mut keep = Vec::with_capacity(filters.len());
    for mut filter in filters.drain(..) {
        let Some(plugin) = config::get(&filter, &["typed_config", "config"]) else {
            keep.push(filter);
            continue;
        };
        let Some(blocks) = bundle_blocks(plugin) else {
            keep.push(filter);
            continue;
        };
        let instance = plugin.get("name").and_then(Value::as_str).unwrap_or(NAME).to_string();
        let mut blocks = blocks?;
        blocks.retain(|(name, _)| !options.remove_filters.contains(name));
        if blocks.is_empty() {
            continue;
        }
        for (name, block) in blocks.iter_mut() {
            let option_name = if instance == NAME { name.clone() } else { instance.clone() };
            // The test's text as it is: a broken block must reach the filter, which names what is wrong.
            if let Some(json) = options.filter_configs.get(&option_name) {
                block.clone_from(json);
                seen.push(option_name);
            }
        }
        config::set(&mut filter, &["typed_config", "config", "configuration", "value"], key(&configuration(&blocks)))?;
        keep.push(filter);
    }
    *filters = keep;
    Ok(seen)
}
