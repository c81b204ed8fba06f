//! Counters, through the shared host seam. Names (Envoy prefixes Wasm
//! metrics with `wasmcustom.`):
//!
//! - `aigw_pii.<direction>.<ENTITY>.detected`: matches found;
//! - `aigw_pii.<direction>.<ENTITY>.masked`: matches replaced, masked, redacted or hashed;
//! - `aigw_pii.<direction>.<ENTITY>.rejected`: requests or responses rejected because of it;
//! - `aigw_pii.<direction>.unreadable.<reason>.<blocked|passed>`: bodies that could
//!   not be inspected (`encoded`, `not_json`, `not_utf8`, `too_large`, `bad_event`);
//! - `aigw_pii.moderation.<allowed|flagged|failed_open|failed_closed>`.
//!
//! `<direction>` is `request` or `response`; `<ENTITY>` is a built-in entity
//! name or a custom rule name (both fixed by configuration, so the set of
//! metrics is bounded).

use crate::scan::{Findings, Scanner};
use aigw_shared::host::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// Counts what a body's scan found.
pub fn report(host: &dyn Host, direction: Direction, scanner: &Scanner, findings: &Findings) {
    for (index, &count) in findings.counts.iter().enumerate() {
        let Some(rule) = scanner.rules.get(index) else { continue };
        if count == 0 {
            continue;
        }
        let prefix = format!("aigw_pii.{}.{}", direction.as_str(), rule.name);
        host.increment_counter(&format!("{prefix}.detected"), count);
        if rule.action.is_reject() {
            if findings.reject == Some(index) {
                host.increment_counter(&format!("{prefix}.rejected"), 1);
            }
        } else {
            host.increment_counter(&format!("{prefix}.masked"), count);
        }
    }
}

/// Counts a body that could not be inspected.
pub fn unreadable(host: &dyn Host, direction: Direction, reason: &str, blocked: bool) {
    let outcome = if blocked { "blocked" } else { "passed" };
    host.increment_counter(&format!("aigw_pii.{}.unreadable.{reason}.{outcome}", direction.as_str()), 1);
}

/// Counts a moderation outcome.
pub fn moderation(host: &dyn Host, outcome: &str) {
    host.increment_counter(&format!("aigw_pii.moderation.{outcome}"), 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;
    use aigw_shared::host::fake::FakeHost;

    #[test]
    fn counters_per_entity_and_outcome() {
        let config = from_json(Some(br#"{"entities": {"US_SSN": {"action": "reject"}}}"#)).unwrap();
        let host = FakeHost::new();
        let mut findings = Findings::default();
        config.request.mask("a@b.com c@d.org 123-45-6789", &config.hash, &mut findings);
        report(&host, Direction::Request, &config.request, &findings);
        assert_eq!(host.counter("aigw_pii.request.EMAIL_ADDRESS.detected"), 2);
        assert_eq!(host.counter("aigw_pii.request.EMAIL_ADDRESS.masked"), 2);
        assert_eq!(host.counter("aigw_pii.request.US_SSN.detected"), 1);
        assert_eq!(host.counter("aigw_pii.request.US_SSN.rejected"), 1);
        assert_eq!(host.counter("aigw_pii.request.US_SSN.masked"), 0);
        unreadable(&host, Direction::Response, "encoded", true);
        assert_eq!(host.counter("aigw_pii.response.unreadable.encoded.blocked"), 1);
    }
}
