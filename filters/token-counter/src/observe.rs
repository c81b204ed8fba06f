//! What token-counter tells operators about how an exchange ended, besides
//! tokens and cost: the error type (for the `errors.type.<t>` metric) and the
//! filter state Envoy's tracer puts on the request's span (response model,
//! finish reasons, cached tokens, time to first token).
//!
//! token-counter does this because it is the filter that reads every
//! response; the facts come from `aigw_shared::outcome`, which knows where
//! each dialect keeps them.

use crate::usage::Usage;
use aigw_shared::contract::{
    STATE_ERROR_TYPE, STATE_RESPONSE_FINISH_REASONS, STATE_RESPONSE_MODEL, STATE_TOKENS_CACHED, STATE_TTFT_MS,
};
use aigw_shared::outcome::{classify, Ending, ErrorType};

/// The end of one exchange as token-counter saw it.
#[derive(Debug, Default)]
pub struct Observation {
    /// Filter state to set (name, value).
    pub filter_state: Vec<(&'static str, String)>,
    /// The error type, when the exchange failed.
    pub error: Option<ErrorType>,
}

/// Builds the observation from what the exchange left behind.
pub fn observe(ending: &Ending, usage: Option<&Usage>, ttft_ms: Option<u64>) -> Observation {
    let mut filter_state = Vec::new();
    if let Some(facts) = ending.facts {
        if let Some(model) = &facts.model {
            filter_state.push((STATE_RESPONSE_MODEL, model.clone()));
        }
        if !facts.finish_reasons.is_empty() {
            filter_state.push((STATE_RESPONSE_FINISH_REASONS, facts.finish_reasons_text()));
        }
    }
    if let Some(usage) = usage.filter(|u| u.cached > 0) {
        filter_state.push((STATE_TOKENS_CACHED, usage.cached.to_string()));
    }
    if let Some(ttft) = ttft_ms {
        filter_state.push((STATE_TTFT_MS, ttft.to_string()));
    }
    let error = classify(ending);
    if let Some(error) = error {
        filter_state.push((STATE_ERROR_TYPE, error.name().to_string()));
    }
    Observation { filter_state, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_shared::outcome::ResponseFacts;
    use serde_json::json;

    #[test]
    fn a_streamed_answer_gives_model_reasons_cached_tokens_and_ttft() {
        let mut facts = ResponseFacts::default();
        facts.absorb_event(&json!({"model": "gpt-4o", "choices": [{"delta": {}, "finish_reason": "stop"}]}));
        let usage = Usage { input: 10, output: 5, cached: 4, cache_creation: 0, reasoning: 0 };
        let ending = Ending { status: Some(200), facts: Some(&facts), ..Ending::default() };
        let seen = observe(&ending, Some(&usage), Some(120));
        assert_eq!(
            seen.filter_state,
            vec![
                (STATE_RESPONSE_MODEL, "gpt-4o".to_string()),
                (STATE_RESPONSE_FINISH_REASONS, "stop".to_string()),
                (STATE_TOKENS_CACHED, "4".to_string()),
                (STATE_TTFT_MS, "120".to_string()),
            ]
        );
        assert_eq!(seen.error, None);
    }

    #[test]
    fn failures_get_an_error_type() {
        let ending = Ending { status: Some(429), gateway_error_code: Some("rate_limit_exceeded"), ..Ending::default() };
        assert_eq!(observe(&ending, None, None).error, Some(ErrorType::RateLimitedGateway));
        let ending = Ending { status: Some(504), code_details: Some("upstream_response_timeout"), ..Ending::default() };
        assert_eq!(observe(&ending, None, None).error, Some(ErrorType::Timeout));
        assert_eq!(observe(&ending, None, None).filter_state, vec![(STATE_ERROR_TYPE, "timeout".to_string())]);
    }
}
