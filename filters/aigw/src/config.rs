//! The bundle's configuration: one block per filter, each exactly the JSON
//! that filter takes on its own (its README), under the filter's name:
//!
//! ```json
//! {"pii-mask": {...}, "prompt-template": {...}, "semantic-cache": {...},
//!  "token-counter": {...}, "model-router": {...}}
//! ```
//!
//! The stages run in the order of [`Stage::ALL`] whatever the order of the
//! keys, the order of the reference chain (envoy-config/gateway.yaml): PII is
//! masked before anything is templated, cached, counted or routed. A filter
//! without a block is not loaded.

use aigw_shared::config::ConfigError;
use serde_json::{Map, Value};

/// A filter the bundle can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    PiiMask,
    PromptTemplate,
    SemanticCache,
    TokenCounter,
    ModelRouter,
}

impl Stage {
    /// Every stage, in the order requests pass them (responses: the reverse).
    pub const ALL: [Stage; 5] =
        [Stage::PiiMask, Stage::PromptTemplate, Stage::SemanticCache, Stage::TokenCounter, Stage::ModelRouter];

    /// The filter's name: its key in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Stage::PiiMask => "pii-mask",
            Stage::PromptTemplate => "prompt-template",
            Stage::SemanticCache => "semantic-cache",
            Stage::TokenCounter => "token-counter",
            Stage::ModelRouter => "model-router",
        }
    }
}

/// The stages to run, in order, each with its configuration block (JSON text).
pub fn from_json(bytes: Option<&[u8]>) -> Result<Vec<(Stage, Vec<u8>)>, ConfigError> {
    let text = bytes.map(std::str::from_utf8).transpose().map_err(|_| ConfigError::new("", "not valid UTF-8"))?;
    let text = text.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(no_stage)?;
    let blocks: Map<String, Value> = serde_json::from_str(text)
        .map_err(|err| ConfigError::new("", format!("expected a JSON object of filter blocks: {err}")))?;
    if let Some(unknown) = blocks.keys().find(|key| !Stage::ALL.iter().any(|stage| stage.name() == key.as_str())) {
        let names: Vec<&str> = Stage::ALL.iter().map(|stage| stage.name()).collect();
        return Err(ConfigError::new(
            unknown.as_str(),
            format!("unknown filter; expected one of {}", names.join(", ")),
        ));
    }
    let mut stages = Vec::new();
    for stage in Stage::ALL {
        let Some(block) = blocks.get(stage.name()) else { continue };
        if !block.is_object() {
            return Err(ConfigError::new(stage.name(), "expected the filter's configuration object"));
        }
        stages.push((stage, block.to_string().into_bytes()));
    }
    if stages.is_empty() {
        return Err(no_stage());
    }
    Ok(stages)
}

fn no_stage() -> ConfigError {
    ConfigError::new("", "no filter configured: give at least one block, e.g. {\"pii-mask\": {}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(stages: &[(Stage, Vec<u8>)]) -> Vec<&'static str> {
        stages.iter().map(|(stage, _)| stage.name()).collect()
    }

    #[test]
    fn stages_run_in_chain_order_whatever_the_key_order() {
        let json = br#"{"model-router": {"mode": "upstream"}, "pii-mask": {"entities": {}}}"#;
        let stages = from_json(Some(json)).unwrap();
        assert_eq!(names(&stages), ["pii-mask", "model-router"]);
        assert_eq!(stages[0].1, br#"{"entities":{}}"#);
        assert_eq!(stages[1].1, br#"{"mode":"upstream"}"#);
    }

    #[test]
    fn an_empty_block_loads_the_filter_with_its_defaults() {
        assert_eq!(names(&from_json(Some(br#"{"token-counter": {}}"#)).unwrap()), ["token-counter"]);
    }

    #[test]
    fn errors_name_the_field() {
        let err = from_json(Some(br#"{"pii-mask": {}, "pii_mask": {}}"#)).unwrap_err();
        assert_eq!(err.path, "pii_mask");
        assert!(err.reason.contains("unknown filter"), "{err}");
        let err = from_json(Some(br#"{"token-counter": "x"}"#)).unwrap_err();
        assert_eq!(err.path, "token-counter");
        assert!(from_json(Some(b"{}")).unwrap_err().reason.contains("no filter configured"));
        assert!(from_json(None).is_err());
        assert!(from_json(Some(b"[1]")).unwrap_err().reason.contains("JSON object"));
        assert!(from_json(Some(&[0xff])).unwrap_err().reason.contains("UTF-8"));
    }
}
