//! Envoy stats this filter emits. Names are built so that the
//! `stats_config.stats_tags` regexes in the reference `gateway.yaml` turn
//! their `model.<m>.`, `rule.<r>.` and `key.<k>.` segments into Prometheus
//! labels; see the README for the full list and the regexes.
//!
//! Values that come from requests (model names, rule keys) go through
//! [`metric_segment`], and the host caps the number of metrics per VM, so a
//! client cannot grow the stats table without bound.

use aigw_shared::host::{metric_segment, Host};

/// Counters per model: `aigw.token_counter.tokens.model.<model>.<kind>`.
pub fn tokens(model: &str, kind: &str) -> String {
    format!("aigw.token_counter.tokens.model.{}.{kind}", metric_segment(model))
}

/// Counters per backend: `aigw.token_counter.backend.<backend>.<kind>_tokens` with
/// `input`, `output` (Prometheus: `aigw_input_tokens{backend=…}`, `aigw_output_tokens{backend=…}`),
/// for tokens per second per backend.
pub fn backend_tokens(backend: &str, kind: &str) -> String {
    format!("aigw.token_counter.backend.{}.{kind}_tokens", metric_segment(backend))
}

/// `aigw.token_counter.cost.model.<model>.micro_usd`.
pub fn cost(model: &str) -> String {
    format!("aigw.token_counter.cost.model.{}.micro_usd", metric_segment(model))
}

/// `aigw.token_counter.requests.model.<model>.<what>`: `total`, `usage_estimated`,
/// `prompt_approximated`, `unpriced`.
pub fn requests(model: &str, what: &str) -> String {
    format!("aigw.token_counter.requests.model.{}.{what}", metric_segment(model))
}

/// Histograms in milliseconds: `aigw.token_counter.latency.model.<model>.<what>_ms` with
/// `ttft`, `tpot`, `total`.
pub fn latency(model: &str, what: &str) -> String {
    format!("aigw.token_counter.latency.model.{}.{what}_ms", metric_segment(model))
}

/// Per rule: `aigw.token_counter.ratelimit.rule.<rule>.<what>` with `admitted`,
/// `rejected`, `signalled`, `store_errors`, `shared_budget`.
pub fn rule(rule: &str, what: &str) -> String {
    format!("aigw.token_counter.ratelimit.rule.{}.{what}", metric_segment(rule))
}

/// Per rule and key (when the rule sets `key_metrics`):
/// `aigw.token_counter.ratelimit_key.rule.<rule>.key.<key>.<what>` with `tokens`, `rejected` (counters)
/// and `budget_used_percent` (a gauge).
pub fn rule_key(rule: &str, key: &str, what: &str) -> String {
    format!("aigw.token_counter.ratelimit_key.rule.{}.key.{}.{what}", metric_segment(rule), metric_segment(key))
}

/// Filter-wide: `aigw.token_counter.<what>` with `uncountable_requests`,
/// `tokenizer_capped`, `usage_missing`, `usage_unreadable`,
/// `usage_chunks_removed`, `stream_usage_injected`.
pub fn filter(what: &str) -> String {
    format!("aigw.token_counter.{what}")
}

/// Failed exchanges by error type (`aigw_shared::outcome::ErrorType`): the
/// stats tag rules turn `errors.type.<t>` into `aigw_errors{type="<t>"}`.
pub fn error(error_type: &str) -> String {
    format!("aigw.token_counter.errors.type.{error_type}")
}

/// Emits the per-model counters and latency histograms of one finished request.
pub struct RequestMetrics<'a> {
    pub model: &'a str,
    /// The backend that answered, when model-router said so.
    pub backend: Option<&'a str>,
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub cache_creation: u64,
    pub reasoning: u64,
    pub cost_micro_usd: Option<u64>,
    pub usage_estimated: bool,
    pub ttft_ms: Option<u64>,
    pub tpot_ms: Option<u64>,
    pub total_ms: u64,
}

impl RequestMetrics<'_> {
    pub fn emit(&self, host: &dyn Host) {
        let model = self.model;
        host.increment_counter(&requests(model, "total"), 1);
        host.increment_counter(&tokens(model, "input"), self.input);
        host.increment_counter(&tokens(model, "output"), self.output);
        host.increment_counter(&tokens(model, "cached"), self.cached);
        host.increment_counter(&tokens(model, "cache_creation"), self.cache_creation);
        if let Some(backend) = self.backend {
            host.increment_counter(&backend_tokens(backend, "input"), self.input);
            host.increment_counter(&backend_tokens(backend, "output"), self.output);
        }
        if self.reasoning > 0 {
            host.increment_counter(&tokens(model, "reasoning"), self.reasoning);
        }
        match self.cost_micro_usd {
            Some(cost_value) => host.increment_counter(&cost(model), cost_value),
            None => host.increment_counter(&requests(model, "unpriced"), 1),
        }
        if self.usage_estimated {
            host.increment_counter(&requests(model, "usage_estimated"), 1);
        }
        if let Some(ttft) = self.ttft_ms {
            host.record_histogram(&latency(model, "ttft"), ttft);
        }
        if let Some(tpot) = self.tpot_ms {
            host.record_histogram(&latency(model, "tpot"), tpot);
        }
        host.record_histogram(&latency(model, "total"), self.total_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_shared::host::fake::FakeHost;

    #[test]
    fn names_are_tag_friendly() {
        assert_eq!(tokens("gpt-4o", "input"), "aigw.token_counter.tokens.model.gpt-4o.input");
        assert_eq!(tokens("gpt-4.1.mini", "output"), "aigw.token_counter.tokens.model.gpt-4_1_mini.output");
        assert_eq!(cost("claude-3.5"), "aigw.token_counter.cost.model.claude-3_5.micro_usd");
        assert_eq!(
            rule_key("per-sub", "user@example.com", "tokens"),
            "aigw.token_counter.ratelimit_key.rule.per-sub.key.user_example_com.tokens"
        );
        assert_eq!(latency("m", "ttft"), "aigw.token_counter.latency.model.m.ttft_ms");
    }

    #[test]
    fn emit_records_everything() {
        let host = FakeHost::new();
        RequestMetrics {
            model: "gpt-4o",
            backend: Some("openai.eu"),
            input: 10,
            output: 5,
            cached: 2,
            cache_creation: 0,
            reasoning: 3,
            cost_micro_usd: Some(75),
            usage_estimated: false,
            ttft_ms: Some(120),
            tpot_ms: Some(20),
            total_ms: 220,
        }
        .emit(&host);
        assert_eq!(host.counter("aigw.token_counter.tokens.model.gpt-4o.input"), 10);
        assert_eq!(host.counter("aigw.token_counter.tokens.model.gpt-4o.output"), 5);
        assert_eq!(host.counter("aigw.token_counter.tokens.model.gpt-4o.cached"), 2);
        assert_eq!(host.counter("aigw.token_counter.tokens.model.gpt-4o.reasoning"), 3);
        assert_eq!(host.counter("aigw.token_counter.cost.model.gpt-4o.micro_usd"), 75);
        assert_eq!(host.counter("aigw.token_counter.requests.model.gpt-4o.total"), 1);
        assert_eq!(host.counter("aigw.token_counter.backend.openai_eu.input_tokens"), 10);
        assert_eq!(host.counter("aigw.token_counter.backend.openai_eu.output_tokens"), 5);
        assert_eq!(host.histograms.borrow()["aigw.token_counter.latency.model.gpt-4o.ttft_ms"], vec![120]);
        assert_eq!(host.histograms.borrow()["aigw.token_counter.latency.model.gpt-4o.total_ms"], vec![220]);
    }
}
