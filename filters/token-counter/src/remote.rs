//! Budgets on a rate limit service (`"store": {"rls": …}`): the messages
//! token-counter sends and how it reads the answers. Pure; the calls are made
//! by `lib.rs` (reservations from the stream, settlements from the root
//! context through [`Outbox`]).
//!
//! Each rule that applies is one descriptor:
//! `[("aigw_rule", <rule name>), ("subject", <key value>)]` with the rule's
//! limit as the limit override (`requests_per_unit` tokens per minute, hour
//! or day), so the limits stay in token-counter's configuration.
//!
//! - **Reserve** (request body complete): `hits_addend` = the reservation,
//!   plus aigw's reservation marker, so our service refuses without counting
//!   when it does not fit. `signal` rules send no marker: counted whatever
//!   the outcome, flagged when over.
//! - **Charge** (end of the response, usage above the reservation): the
//!   difference, without the marker (always counted).
//! - **Return** (usage below the reservation, or a failed upstream): the
//!   excess, as the descriptor plus aigw's refund entry naming the window the
//!   reservation was made in. Sent only with `refunds` on.
//!
//! See `aigw_shared::ratelimit_proto` for the markers and DESIGN.md for the bound.

use crate::config::{RlsStore, Rule};
use crate::limits::{Reservation, Snapshot, Window};
use aigw_shared::ratelimit_proto::{
    refund_value, Code, Descriptor, LimitOverride, Request, Response, Unit, OP_KEY, OP_RESERVE, REFUND_KEY,
};
use std::collections::VecDeque;

/// Descriptor entry keys of a rule's counter.
pub const RULE_ENTRY: &str = "aigw_rule";
pub const SUBJECT_ENTRY: &str = "subject";

/// Settlements waiting for the root context, per VM, at most this many (past
/// it they are dropped and counted: a stalled service must not grow memory).
pub const OUTBOX_CAPACITY: usize = 10_000;

pub fn unit(window: Window) -> Unit {
    match window {
        Window::Minute => Unit::Minute,
        Window::Hour => Unit::Hour,
        Window::Day => Unit::Day,
    }
}

fn entries(rule: &Rule, subject: &str) -> Vec<(String, String)> {
    vec![(RULE_ENTRY.to_string(), rule.name.clone()), (SUBJECT_ENTRY.to_string(), subject.to_string())]
}

fn counter(rule: &Rule, subject: &str) -> Descriptor {
    Descriptor {
        entries: entries(rule, subject),
        limit: Some(LimitOverride {
            requests_per_unit: u32::try_from(rule.limit).unwrap_or(u32::MAX),
            unit: unit(rule.window),
        }),
    }
}

/// The protocol counts in uint32; 0 would mean "1".
fn hits(amount: u64) -> u32 {
    u32::try_from(amount).unwrap_or(u32::MAX).max(1)
}

/// The `ShouldRateLimit` message reserving `amount` (`force`: a `signal`
/// rule, counted even past the limit).
pub fn reserve_message(store: &RlsStore, rule: &Rule, subject: &str, amount: u64, force: bool) -> Vec<u8> {
    let mut descriptors = vec![counter(rule, subject)];
    if !force {
        descriptors.push(Descriptor { entries: vec![(OP_KEY.into(), OP_RESERVE.into())], limit: None });
    }
    Request { domain: store.domain.clone(), descriptors, hits_addend: hits(amount) }.encode()
}

/// Charges `amount` more (usage past the reservation). `None` for 0.
pub fn charge_message(store: &RlsStore, rule: &Rule, subject: &str, amount: u64) -> Option<Vec<u8>> {
    (amount > 0).then(|| {
        Request { domain: store.domain.clone(), descriptors: vec![counter(rule, subject)], hits_addend: hits(amount) }
            .encode()
    })
}

/// Returns `amount` to the window `window` was reserved in. `None` for 0 or
/// when the store does not take returns.
pub fn refund_message(store: &RlsStore, rule: &Rule, subject: &str, window: u64, amount: u64) -> Option<Vec<u8>> {
    if amount == 0 || !store.refunds {
        return None;
    }
    let mut entries = entries(rule, subject);
    entries.push((REFUND_KEY.to_string(), refund_value(unit(rule.window), window)));
    let descriptor = Descriptor { entries, limit: None };
    Some(Request { domain: store.domain.clone(), descriptors: vec![descriptor], hits_addend: hits(amount) }.encode())
}

/// The messages settling a reservation of `reserved` (made in `window`) to
/// `actual` tokens.
pub fn settle_messages(
    store: &RlsStore,
    rule: &Rule,
    subject: &str,
    reserved: Option<(u64, u64)>,
    actual: u64,
) -> Vec<Vec<u8>> {
    let (amount, window) = reserved.unwrap_or((0, 0));
    if actual > amount {
        charge_message(store, rule, subject, actual - amount).into_iter().collect()
    } else {
        refund_message(store, rule, subject, window, amount - actual).into_iter().collect()
    }
}

/// Reads the answer to a reservation. `answer` is the response message, or
/// `None` when the call failed (gRPC error, timeout, no cluster).
pub fn verdict(rule: &Rule, window: u64, amount: u64, answer: Option<&[u8]>) -> Reservation {
    let Some(response) = answer.and_then(|bytes| Response::decode(bytes).ok()) else {
        return Reservation::StoreError;
    };
    let Some(status) = response.statuses.first() else { return Reservation::StoreError };
    let snapshot = Snapshot {
        limit: rule.limit,
        consumed: rule.limit.saturating_sub(u64::from(status.limit_remaining)),
        window,
        shared: false,
    };
    match status.code {
        Code::Ok => Reservation::Admitted { amount, snapshot },
        Code::OverLimit => Reservation::Exceeded { amount, snapshot },
        Code::Unknown => Reservation::StoreError,
    }
}

/// A settlement call waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub cluster: String,
    pub timeout_ms: u64,
    /// For the metric and the log line if it fails.
    pub rule: String,
    pub message: Vec<u8>,
}

/// Settlements of one VM, sent by its root context on its next tick: a call
/// made from a stream's context is cancelled by Envoy when the stream ends,
/// which is exactly when settlements are made.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Settlement>,
    /// Calls in flight: token → rule.
    in_flight: Vec<(u32, String)>,
    pub dropped: u64,
}

impl Outbox {
    /// Queues a settlement; false (and counted in `dropped`) when full.
    pub fn push(&mut self, settlement: Settlement) -> bool {
        if self.queue.len() >= OUTBOX_CAPACITY {
            self.dropped += 1;
            return false;
        }
        self.queue.push_back(settlement);
        true
    }

    pub fn take_all(&mut self) -> Vec<Settlement> {
        self.queue.drain(..).collect()
    }

    pub fn sent(&mut self, token: u32, rule: String) {
        self.in_flight.push((token, rule));
    }

    /// The rule of a call that answered, if it was one of ours.
    pub fn answered(&mut self, token: u32) -> Option<String> {
        let position = self.in_flight.iter().position(|(t, _)| *t == token)?;
        Some(self.in_flight.swap_remove(position).1)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The backend's health as the log sees it: one line when it goes down, one
/// when it comes back (not one per request).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    down: bool,
}

impl Health {
    /// Records a call's outcome; returns the line to log on a change.
    pub fn record(&mut self, ok: bool, cluster: &str) -> Option<String> {
        match (self.down, ok) {
            (false, false) => {
                self.down = true;
                Some(format!(
                    "token-counter: rate limit service (cluster {cluster}) unavailable; applying failure_mode"
                ))
            }
            (true, true) => {
                self.down = false;
                Some(format!("token-counter: rate limit service (cluster {cluster}) answers again"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_json, Store};
    use aigw_shared::ratelimit_proto::{parse_refund_value, Status};

    fn setup() -> (RlsStore, Rule) {
        let config = from_json(Some(
            br#"{"store": {"rls": {"cluster": "rls", "domain": "d"}},
                 "rules": [{"name": "team", "key": "header:x-team", "limit": 500, "window": "hour"}]}"#,
        ))
        .unwrap();
        let Store::Rls(store) = config.store else { panic!("rls store") };
        (store, config.rules[0].clone())
    }

    #[test]
    fn reservations_carry_the_limit_and_the_marker() {
        let (store, rule) = setup();
        let request = Request::decode(&reserve_message(&store, &rule, "alice", 300, false)).unwrap();
        assert_eq!(request.domain, "d");
        assert_eq!(request.hits_addend, 300);
        assert_eq!(request.descriptors[0].entries, entries(&rule, "alice"));
        assert_eq!(request.descriptors[0].limit, Some(LimitOverride { requests_per_unit: 500, unit: Unit::Hour }));
        assert_eq!(request.descriptors[1].entry(OP_KEY), Some(OP_RESERVE));
        // `signal` rules are counted whatever happens: no marker.
        let forced = Request::decode(&reserve_message(&store, &rule, "alice", 300, true)).unwrap();
        assert_eq!(forced.descriptors.len(), 1);
    }

    #[test]
    fn settlements_charge_the_difference_or_return_the_excess() {
        let (mut store, rule) = setup();
        let charge = settle_messages(&store, &rule, "a", Some((100, 7)), 130);
        let charge = Request::decode(&charge[0]).unwrap();
        assert_eq!((charge.hits_addend, charge.descriptors.len()), (30, 1));
        assert!(charge.descriptors[0].limit.is_some());
        let refund = settle_messages(&store, &rule, "a", Some((100, 7)), 40);
        let refund = Request::decode(&refund[0]).unwrap();
        assert_eq!(refund.hits_addend, 60);
        let (last_key, last_value) = refund.descriptors[0].entries.last().unwrap();
        assert_eq!((last_key.as_str(), parse_refund_value(last_value)), (REFUND_KEY, Some((Unit::Hour, 7))));
        assert_eq!(refund.descriptors[0].limit, None, "a stock service finds no limit for it");
        assert!(settle_messages(&store, &rule, "a", Some((100, 7)), 100).is_empty());
        // Not reserved (the service failed at admission): the usage is charged.
        assert_eq!(Request::decode(&settle_messages(&store, &rule, "a", None, 9)[0]).unwrap().hits_addend, 9);
        store.refunds = false;
        assert!(settle_messages(&store, &rule, "a", Some((100, 7)), 40).is_empty());
    }

    #[test]
    fn answers_become_reservations() {
        let (_, rule) = setup();
        let answer = |code, remaining| {
            Response {
                overall_code: code,
                statuses: vec![Status {
                    code,
                    current_limit: None,
                    limit_remaining: remaining,
                    duration_until_reset_seconds: None,
                }],
            }
            .encode()
        };
        match verdict(&rule, 3, 100, Some(&answer(Code::Ok, 150))) {
            Reservation::Admitted { amount: 100, snapshot } => {
                assert_eq!((snapshot.consumed, snapshot.remaining()), (350, 150))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(verdict(&rule, 3, 100, Some(&answer(Code::OverLimit, 20))), Reservation::Exceeded { .. }));
        assert_eq!(verdict(&rule, 3, 100, None), Reservation::StoreError);
        assert_eq!(verdict(&rule, 3, 100, Some(b"\xff")), Reservation::StoreError);
        assert_eq!(verdict(&rule, 3, 100, Some(&answer(Code::Unknown, 0))), Reservation::StoreError);
    }

    #[test]
    fn the_outbox_is_bounded_and_health_logs_changes_only() {
        let mut outbox = Outbox::default();
        let settlement = Settlement { cluster: "c".into(), timeout_ms: 1, rule: "r".into(), message: vec![] };
        for _ in 0..OUTBOX_CAPACITY {
            assert!(outbox.push(settlement.clone()));
        }
        assert!(!outbox.push(settlement));
        assert_eq!(outbox.dropped, 1);
        assert_eq!(outbox.take_all().len(), OUTBOX_CAPACITY);
        outbox.sent(4, "r".into());
        assert_eq!(outbox.answered(4).as_deref(), Some("r"));
        assert_eq!(outbox.answered(4), None);
        let mut health = Health::default();
        assert_eq!(health.record(true, "c"), None);
        assert!(health.record(false, "c").unwrap().contains("unavailable"));
        assert_eq!(health.record(false, "c"), None);
        assert!(health.record(true, "c").unwrap().contains("again"));
    }
}
