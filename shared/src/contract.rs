//! The names the filters share with each other and with Envoy's config: filter
//! state keys, internal headers and metric prefixes.
//!
//! A name used by more than one crate, or by `envoy-config/gateway.yaml`, is
//! written once here. Envoy exposes filter state a Wasm filter sets under
//! `wasm.<key>` (e.g. `%FILTER_STATE(wasm.aigw.route.model:PLAIN)%` in an
//! access log), and custom metrics under `wasmcustom.<name>`.

/// Filter state: entity names pii-mask found in the request (`EMAIL_ADDRESS,US_SSN`).
pub const STATE_PII_DETECTED: &str = "aigw.pii.detected";
/// Filter state: the route model-router chose. Envoy's routes select the
/// cluster with a `filter_state` matcher on `wasm.aigw.route` (a header could
/// no longer be set once the body was read).
pub const STATE_ROUTE: &str = "aigw.route";
/// Filter state: the backend model-router chose for the first attempt.
pub const STATE_ROUTE_BACKEND: &str = "aigw.route.backend";
/// Filter state: the model sent to that backend (token-counter prices usage by it).
pub const STATE_ROUTE_MODEL: &str = "aigw.route.model";
/// Filter state: model-router's downstream instance hands its plan to the upstream instances.
pub const STATE_ROUTE_HANDOFF: &str = "aigw.route.handoff";
/// Filter state: a `signal` budget rule was exceeded (model-router may route on it).
pub const STATE_BUDGET_EXCEEDED: &str = "aigw.budget.exceeded";
/// Filter state: a filter nearer the client withheld the provider's response
/// (pii-mask answering 502 for a body it cannot inspect). The provider's
/// answer never reached the client, so token-counter releases the reservation
/// instead of charging it.
pub const STATE_RESPONSE_WITHHELD: &str = "aigw.response.withheld";
/// Filter state: token-counter's count of a `/v1/messages/count_tokens`
/// request's prompt. model-router answers that request with it when the model's
/// backend is not Anthropic (which has no such endpoint).
pub const STATE_TOKENS_COUNTED: &str = "aigw.tokens.counted";
/// Filter state: token counts and cost of the exchange, for access logs.
pub const STATE_TOKENS_INPUT: &str = "aigw.tokens.input";
pub const STATE_TOKENS_OUTPUT: &str = "aigw.tokens.output";
pub const STATE_TOKENS_TOTAL: &str = "aigw.tokens.total";
pub const STATE_COST_MICRO_USD: &str = "aigw.cost.micro_usd";
/// Filter state: prompt tokens the provider served from its cache.
pub const STATE_TOKENS_CACHED: &str = "aigw.tokens.cached";
/// Filter state: milliseconds from the request to the first streamed token.
pub const STATE_TTFT_MS: &str = "aigw.ttft_ms";
/// Filter state: the model the response named, and its finish reasons (`stop`, `tool_calls,stop`).
pub const STATE_RESPONSE_MODEL: &str = "aigw.response.model";
pub const STATE_RESPONSE_FINISH_REASONS: &str = "aigw.response.finish_reasons";
/// Filter state: the GenAI operation (`chat`, `embeddings`, `text_completion`,
/// ...) and provider (`openai`, `anthropic`, `azure.ai.openai`, ...) in the
/// OpenTelemetry GenAI conventions' terms, set by model-router.
pub const STATE_GENAI_OPERATION: &str = "aigw.gen_ai.operation";
pub const STATE_GENAI_PROVIDER: &str = "aigw.gen_ai.provider";
/// Filter state: the tenant prompt-template resolved for the request.
pub const STATE_TENANT: &str = "aigw.tenant";
/// Filter state: entities pii-mask found in the request, with counts (`EMAIL_ADDRESS:1,PHONE_NUMBER:2`).
pub const STATE_PII_COUNTS: &str = "aigw.pii.counts";
/// Filter state: the error code of a local reply an aigw filter made
/// (`rate_limit_exceeded`, `unsupported_parameter`, ...), set by `glue::reply`;
/// token-counter turns it into the error-type metric.
pub const STATE_ERROR_CODE: &str = "aigw.error.code";
/// Filter state: the error type of a failed exchange (`aigw_shared::outcome::ErrorType`), set by token-counter.
pub const STATE_ERROR_TYPE: &str = "aigw.error.type";

/// Request header model-router sets to pick a route in Envoy's route table.
/// Clients cannot set it: model-router removes any client value first, and the
/// virtual host removes it before the request leaves Envoy.
pub const HEADER_ROUTE: &str = "x-aigw-route";
/// Response header naming the backend that answered (when configured).
pub const HEADER_BACKEND: &str = "x-aigw-backend";
/// Request header an upstream instance sets to name the attempt's backend.
pub const HEADER_ATTEMPT_BACKEND: &str = "x-aigw-attempt-backend";
/// Every internal header: stripped from client requests by model-router.
pub const INTERNAL_REQUEST_HEADERS: [&str; 3] = [HEADER_ROUTE, HEADER_ATTEMPT_BACKEND, HEADER_BACKEND];

/// Headers that carry the client's own credentials. Providers never see them:
/// model-router removes them and Envoy's credential injector adds the provider's key.
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "proxy-authorization"];
/// Headers that carry the client's address. Providers do not see them unless
/// model-router is configured to forward them (`forward_client_address`).
pub const CLIENT_ADDRESS_HEADERS: [&str; 4] = ["x-forwarded-for", "x-real-ip", "forwarded", "x-envoy-external-address"];

/// Endpoint metadata naming a cluster member's backend (`filter_metadata: {aigw: {backend: …}}`).
pub const ENDPOINT_BACKEND_METADATA: [&str; 5] =
    ["xds", "upstream_host_metadata", "filter_metadata", "aigw", "backend"];

/// Prefix of every metric the filters define (Envoy adds `wasmcustom.`).
pub const METRIC_PREFIX: &str = "aigw";

/// The metric name prefix of one filter: `aigw.pii_mask`.
pub fn metric_prefix(filter: &str) -> String {
    format!("{METRIC_PREFIX}.{}", filter.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_prefix_uses_underscores() {
        assert_eq!(metric_prefix("pii-mask"), "aigw.pii_mask");
    }

    #[test]
    fn internal_headers_are_lowercase() {
        for name in INTERNAL_REQUEST_HEADERS.iter().chain(&CLIENT_CREDENTIAL_HEADERS).chain(&CLIENT_ADDRESS_HEADERS) {
            assert_eq!(name.to_ascii_lowercase(), *name);
        }
    }
}
