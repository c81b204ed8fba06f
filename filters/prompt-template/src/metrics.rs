//! Metric names. Envoy prefixes them with `wasmcustom.`; the reference
//! gateway's `stats_tags` turn the `prompt_template.` segment into the tag
//! `aigw_filter="prompt_template"`. Tenant and template names come from the
//! configuration, never from the request, so the set of names is bounded.
//!
//! | name | counts |
//! |---|---|
//! | `aigw.prompt_template.template_applied.<tenant>.<template>` | requests rendered from a template |
//! | `aigw.prompt_template.decorated.<tenant>` | requests that received the tenant's decoration |
//! | `aigw.prompt_template.rejected.<code>` | local replies, by error code (`unknown_template`, `missing_variable`, …) |
//! | `aigw.prompt_template.retrieval.ok` / `.skipped` / `.failed.<reason>` | retrieval calls and their outcome |

use aigw_shared::host::metric_segment;

pub fn template_applied(tenant: &str, template: &str) -> String {
    format!("aigw.prompt_template.template_applied.{}.{}", metric_segment(tenant), metric_segment(template))
}

pub fn decorated(tenant: &str) -> String {
    format!("aigw.prompt_template.decorated.{}", metric_segment(tenant))
}

/// `code` is an `ApiError` code: a static string, never request data.
pub fn rejected(code: &str) -> String {
    format!("aigw.prompt_template.rejected.{}", metric_segment(code))
}

/// `outcome` is `ok`, `skipped` or `failed.<reason>` (static strings).
pub fn retrieval(outcome: &str) -> String {
    format!("aigw.prompt_template.retrieval.{outcome}")
}
