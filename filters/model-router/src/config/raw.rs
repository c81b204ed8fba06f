//! The configuration as written: serde structs that mirror the JSON, with
//! `deny_unknown_fields` so a misspelt option is an error. `build.rs` turns
//! them into the validated form in `mod.rs`.

use super::Provider;
use aigw_shared::attributes::Source;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawMode {
    #[default]
    Downstream,
    Upstream,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) mode: RawMode,
    #[serde(default)]
    pub(super) backends: Vec<RawBackend>,
    #[serde(default)]
    pub(super) backend: Option<RawBackend>,
    #[serde(default)]
    pub(super) aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) models: Vec<RawModel>,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    #[serde(default)]
    pub(super) default: Option<RawRoute>,
    #[serde(default)]
    pub(super) access: Option<RawAccess>,
    #[serde(default)]
    pub(super) split_key: Option<Source>,
    #[serde(default)]
    pub(super) strip_request_headers: Vec<String>,
    #[serde(default = "yes")]
    pub(super) backend_header: bool,
    #[serde(default)]
    pub(super) max_body_bytes: Option<usize>,
    #[serde(default)]
    pub(super) max_event_bytes: Option<usize>,
    #[serde(default)]
    pub(super) upstream_instances: bool,
    #[serde(default)]
    pub(super) forward_client_address: bool,
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) name: String,
    #[serde(default)]
    pub(super) provider: Provider,
    #[serde(default)]
    pub(super) route: Option<String>,
    #[serde(default)]
    pub(super) path_prefix: Option<String>,
    #[serde(default)]
    pub(super) deployment: Option<String>,
    #[serde(default)]
    pub(super) api_version: Option<String>,
    #[serde(default)]
    pub(super) anthropic_version: Option<String>,
    #[serde(default)]
    pub(super) default_max_tokens: Option<u64>,
    #[serde(default)]
    pub(super) upstream_instance: Option<bool>,
    #[serde(default)]
    pub(super) chat_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) backend: String,
    #[serde(default)]
    pub(super) model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSplit {
    pub(super) weight: u32,
    pub(super) targets: Vec<RawTarget>,
    #[serde(default)]
    pub(super) route: Option<String>,
}

/// Where a model (or rule, or the default) sends the request: an ordered
/// failover list, or weighted splits of such lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    #[serde(default)]
    pub(super) targets: Option<Vec<RawTarget>>,
    #[serde(default)]
    pub(super) splits: Option<Vec<RawSplit>>,
    #[serde(default)]
    pub(super) route: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) regex: Option<String>,
    #[serde(flatten)]
    pub(super) route: RawRoute,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCondition {
    pub(super) source: Source,
    #[serde(default)]
    pub(super) equals: Option<String>,
    #[serde(default)]
    pub(super) one_of: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default)]
    pub(super) name: Option<String>,
    pub(super) when: RawCondition,
    #[serde(default)]
    pub(super) models: Option<Vec<String>>,
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(flatten)]
    pub(super) route: RawRoute,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    #[serde(default)]
    pub(super) claim: Option<Source>,
    #[serde(default)]
    pub(super) source: Option<Source>,
    #[serde(default)]
    pub(super) lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub(super) default: Option<Vec<String>>,
}
