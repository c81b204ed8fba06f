//! Plugin configuration. Not yet implemented: the filter accepts only `{}`.

use aigw_shared::config::{parse_config, ConfigError};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Parses and validates the plugin configuration (the JSON Envoy hands the
/// filter). Used by `on_configure` and by the test that checks every shipped
/// manifest against this parser.
pub fn from_json(bytes: Option<&[u8]>) -> Result<Config, ConfigError> {
    parse_config(bytes)
}
