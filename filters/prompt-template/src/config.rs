//! Plugin configuration. Not yet implemented: the filter accepts only `{}`.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}
