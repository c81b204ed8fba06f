//! Counters, through the shared host seam. Names follow the gateway's
//! convention `aigw.<filter>.<family>.<label>.<value>….<leaf>` so that
//! `stats_tags` can lift the labels (see the README for the regexes):
//!
//! - `aigw.pii_mask.pii.direction.<d>.entity.<E>.detected`: matches found;
//! - `aigw.pii_mask.pii.direction.<d>.entity.<E>.masked`: matches replaced,
//!   masked, redacted or hashed;
//! - `aigw.pii_mask.pii.direction.<d>.entity.<E>.rejected`: requests or
//!   responses rejected because of it;
//! - `aigw.pii_mask.pii_unreadable.direction.<d>.reason.<r>.<blocked|passed>`:
//!   bodies that could not be inspected (`encoded`, `content_type`,
//!   `not_json`, `not_utf8`, `too_large`, `bad_event`);
//! - `aigw.pii_mask.pii_moderation.<allowed|flagged|failed_open|failed_closed>`.
//!
//! `<d>` is `request` or `response`; `<E>` is a built-in entity name or a
//! custom rule name (both fixed by configuration, so the set of metrics is
//! bounded).

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
        let prefix = format!("aigw.pii_mask.pii.direction.{}.entity.{}", direction.as_str(), rule.name);
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
    host.increment_counter(
        &format!("aigw.pii_mask.pii_unreadable.direction.{}.reason.{reason}.{outcome}", direction.as_str()),
        1,
    );
}

/// Counts a moderation outcome.
pub fn moderation(host: &dyn Host, outcome: &str) {
    host.increment_counter(&format!("aigw.pii_mask.pii_moderation.{outcome}"), 1);
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
        assert_eq!(host.counter("aigw.pii_mask.pii.direction.request.entity.EMAIL_ADDRESS.detected"), 2);
        assert_eq!(host.counter("aigw.pii_mask.pii.direction.request.entity.EMAIL_ADDRESS.masked"), 2);
        assert_eq!(host.counter("aigw.pii_mask.pii.direction.request.entity.US_SSN.detected"), 1);
        assert_eq!(host.counter("aigw.pii_mask.pii.direction.request.entity.US_SSN.rejected"), 1);
        assert_eq!(host.counter("aigw.pii_mask.pii.direction.request.entity.US_SSN.masked"), 0);
        unreadable(&host, Direction::Response, "encoded", true);
        assert_eq!(host.counter("aigw.pii_mask.pii_unreadable.direction.response.reason.encoded.blocked"), 1);
    }
}
