//! Optional external moderation: the request's texts (already masked, so no
//! PII leaves the gateway) go to an endpoint shaped like OpenAI's moderation
//! API (`POST /v1/moderations`, `{"input": [...]}` → `{"results": [{"flagged": …,
//! "categories": {…}}]}`) through an Envoy cluster.

use crate::config::Moderation;
use serde_json::{json, Value};

/// Most text sent for moderation (bytes); longer prompts are cut, the cut is
/// logged as a metric by the caller.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// The call's headers and body.
pub fn build_call(moderation: &Moderation, texts: &[String]) -> (Vec<(String, String)>, Vec<u8>) {
    let mut budget = MAX_INPUT_BYTES;
    let mut input = Vec::new();
    for text in texts {
        if budget == 0 {
            break;
        }
        let mut cut = text.len().min(budget);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        input.push(Value::String(text.get(..cut).unwrap_or_default().to_string()));
        budget -= cut;
    }
    let mut body = json!({"input": input});
    if let (Some(model), Some(map)) = (&moderation.model, body.as_object_mut()) {
        map.insert("model".into(), Value::String(model.clone()));
    }
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), moderation.path.clone()),
        (":authority".to_string(), moderation.authority.clone()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    headers.extend(moderation.headers.iter().cloned());
    (headers, body.to_string().into_bytes())
}

/// What the moderation endpoint said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Flagged, with the flagged category names (for metrics, not for clients).
    Flagged(Vec<String>),
    /// No usable answer (timeout, non-2xx, unparseable): the failure mode decides.
    Failed(&'static str),
}

impl Verdict {
    pub fn outcome(&self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Flagged(_) => "flagged",
            Verdict::Failed(_) => "failed",
        }
    }
}

/// Judges the endpoint's answer. `status` is None when the call failed
/// without a response (timeout, reset).
pub fn verdict(moderation: &Moderation, status: Option<u32>, body: Option<&[u8]>) -> Verdict {
    let Some(status) = status else { return Verdict::Failed("no_response") };
    if !(200..300).contains(&status) {
        return Verdict::Failed("bad_status");
    }
    let Some(value) = body.and_then(|b| serde_json::from_slice::<Value>(b).ok()) else {
        return Verdict::Failed("bad_body");
    };
    let Some(results) = value.get("results").and_then(Value::as_array) else { return Verdict::Failed("bad_body") };
    let mut flagged = Vec::new();
    let mut any_flagged = false;
    for result in results {
        let categories = result.get("categories").and_then(Value::as_object);
        if moderation.categories.is_empty() {
            if result.get("flagged").and_then(Value::as_bool) == Some(true) {
                any_flagged = true;
                if let Some(categories) = categories {
                    flagged
                        .extend(categories.iter().filter(|(_, v)| v.as_bool() == Some(true)).map(|(k, _)| k.clone()));
                }
            }
        } else if let Some(categories) = categories {
            for name in &moderation.categories {
                if categories.get(name).and_then(Value::as_bool) == Some(true) {
                    any_flagged = true;
                    flagged.push(name.clone());
                }
            }
        }
    }
    if any_flagged {
        flagged.sort();
        flagged.dedup();
        Verdict::Flagged(flagged)
    } else {
        Verdict::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;

    fn moderation(extra: &str) -> Moderation {
        let json = format!(
            r#"{{"moderation": {{"cluster": "mod", "model": "omni-moderation-latest", "headers": {{"authorization": "Bearer k"}}{extra}}}}}"#
        );
        from_json(Some(json.as_bytes())).unwrap().moderation.unwrap()
    }

    #[test]
    fn call_shape() {
        let (headers, body) = build_call(&moderation(""), &["a".into(), "b".into()]);
        assert!(headers.contains(&(":path".into(), "/v1/moderations".into())));
        assert!(headers.contains(&(":authority".into(), "mod".into())));
        assert!(headers.contains(&("authorization".into(), "Bearer k".into())));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({"input": ["a", "b"], "model": "omni-moderation-latest"}));
    }

    #[test]
    fn input_is_capped_on_char_boundaries() {
        let long = "é".repeat(MAX_INPUT_BYTES);
        let (_, body) = build_call(&moderation(""), &[long, "more".into()]);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["input"].as_array().unwrap().len(), 1);
        assert!(body["input"][0].as_str().unwrap().len() <= MAX_INPUT_BYTES);
    }

    #[test]
    fn verdicts() {
        let m = moderation("");
        let flagged = br#"{"results": [{"flagged": true, "categories": {"violence": true, "hate": false}}]}"#;
        assert_eq!(verdict(&m, Some(200), Some(flagged)), Verdict::Flagged(vec!["violence".into()]));
        let clean = br#"{"results": [{"flagged": false, "categories": {"violence": false}}]}"#;
        assert_eq!(verdict(&m, Some(200), Some(clean)), Verdict::Allowed);
        assert_eq!(verdict(&m, None, None), Verdict::Failed("no_response"));
        assert_eq!(verdict(&m, Some(500), Some(clean)), Verdict::Failed("bad_status"));
        assert_eq!(verdict(&m, Some(200), Some(b"nope")), Verdict::Failed("bad_body"));
        let only_hate = moderation(r#", "categories": ["hate"]"#);
        assert_eq!(verdict(&only_hate, Some(200), Some(flagged)), Verdict::Allowed);
    }
}
