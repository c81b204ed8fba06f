//! One exchange (request and response) through the filter, as a state
//! machine over the host seam.
//!
//! `lib.rs` feeds it the callbacks' inputs and carries out what it returns
//! (local replies, body and header edits, filter state); everything here runs
//! natively against `FakeHost` in tests.
//!
//! Request: the rules' keys are resolved from headers and metadata, the
//! prompt is counted when the body is complete, and every applicable rule
//! reserves `prompt + expected output` (by what it counts) with one CAS each.
//! A `reject` rule that would pass its limit answers 429 (and releases what
//! the earlier rules reserved); a `signal` rule sets `aigw.budget.exceeded`.
//! Response: usage is read as the body passes; at the end of the stream each
//! reservation is settled to the real usage, or released if the upstream
//! failed, and the metrics and filter state are written.

use crate::config::{Config, OnExceeded, RlsStore, Rule, Store, StreamUsage};
use crate::limits::{self, format_reset, Reservation, Snapshot};
use crate::metrics::{self, RequestMetrics};
use crate::prompt::{count_request, RequestInfo};
use crate::remote;
use crate::tokenize::{TokenCounter, FALLBACK_BYTES_PER_TOKEN};
use crate::usage::{BodyKind, Emit, ReadProblem, ResponseTracker, Usage};
use aigw_shared::api::{ApiShape, Endpoint};
use aigw_shared::body::{is_event_stream, is_identity_encoding, is_json_content_type};
use aigw_shared::glue::{RequestDecision, RequestEdits};
use aigw_shared::host::Host;
use aigw_shared::outcome::ResponseFacts;
use aigw_shared::ApiError;
use serde_json::Value;

pub use aigw_shared::contract::{
    STATE_BUDGET_EXCEEDED, STATE_COST_MICRO_USD as STATE_COST, STATE_ROUTE_BACKEND, STATE_ROUTE_MODEL,
    STATE_TOKENS_COUNTED, STATE_TOKENS_INPUT, STATE_TOKENS_OUTPUT, STATE_TOKENS_TOTAL,
};

/// A rule that applies to this request.
#[derive(Debug, Clone)]
struct Hit {
    rule: usize,
    subject: String,
    fingerprint: u64,
    key: String,
    /// Tokens reserved and the window they were reserved in; `None` when no
    /// reservation is held (not made, failed, or already settled).
    reserved: Option<(u64, u64)>,
    snapshot: Option<Snapshot>,
}

/// Response headers in OpenAI's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset_millis: u64,
}

impl RateHeaders {
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-ratelimit-limit-tokens", self.limit.to_string()),
            ("x-ratelimit-remaining-tokens", self.remaining.to_string()),
            ("x-ratelimit-reset-tokens", format_reset(self.reset_millis)),
        ]
    }
}

/// What the glue does after the request body (or bodiless headers).
#[derive(Debug, Clone, PartialEq)]
pub enum RequestAction {
    /// Forward; replace the body with these bytes if given (and fix
    /// `content-length`).
    Forward { new_body: Option<Vec<u8>> },
    /// Answer locally with this error (rate-limit headers included).
    Reject { error: ApiError, headers: Vec<(&'static str, String)> },
}

/// Values the glue stores as filter state at the end of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub usage: Usage,
    pub cost_micro_usd: Option<u64>,
}

impl Outcome {
    /// `(name, value)` pairs for `set_property`.
    pub fn filter_state(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (STATE_TOKENS_INPUT, self.usage.input.to_string()),
            (STATE_TOKENS_OUTPUT, self.usage.output.to_string()),
            (STATE_TOKENS_TOTAL, self.usage.total().to_string()),
        ];
        if let Some(cost) = self.cost_micro_usd {
            out.push((STATE_COST, cost.to_string()));
        }
        out
    }
}

#[derive(Debug)]
pub struct Stream {
    start_nanos: u64,
    shape: Option<ApiShape>,
    hits: Vec<Hit>,
    model: Option<String>,
    prompt_tokens: u64,
    output_reserve: u64,
    signal: bool,
    rejected: bool,
    status: Option<u32>,
    tracker: Option<ResponseTracker>,
    strip_usage_chunk: bool,
    first_token_nanos: Option<u64>,
    finished: bool,
    request_seen: bool,
    store_error_rules: Vec<String>,
    /// `store: rls`: reservations to send, and settlements for the root context.
    remote_pending: Vec<RemoteReservation>,
    remote_outbox: Vec<(String, Vec<u8>)>,
    /// `/v1/messages/count_tokens`: the prompt is counted for model-router's
    /// answer (filter state `aigw.tokens.counted`); nothing is reserved or
    /// charged, since no model runs.
    count_only: bool,
    counted: Option<u64>,
    /// The backend that answered (model-router's `x-aigw-backend`).
    answered_by: Option<String>,
}

/// A reservation asked of the rate limit service: the hit it is for, the
/// window and amount it reserves, and the `ShouldRateLimit` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReservation {
    pub position: usize,
    pub window: u64,
    pub amount: u64,
    pub message: Vec<u8>,
}

/// The share of a key's budget used in the current window, as of its latest
/// request (this request's reservation included when admitted): the gauge
/// `ratelimit_key.rule.<r>.key.<k>.budget_used_percent` behind the
/// dashboard's budget adherence panel. Over 100 when `signal` let it pass.
fn record_budget_use(host: &dyn Host, rule: &str, subject: &str, snapshot: &Snapshot) {
    if snapshot.limit == 0 {
        return;
    }
    let percent = snapshot.consumed.saturating_mul(100) / snapshot.limit;
    host.set_gauge(&metrics::rule_key(rule, subject, "budget_used_percent"), percent);
}

fn property_text(host: &dyn Host, name: &str) -> Option<String> {
    host.property(&[name]).and_then(|bytes| String::from_utf8(bytes).ok()).filter(|text| !text.is_empty())
}

/// Work done once per VM and configuration: the BPE tables built now rather
/// than on the first request (`preload`), and the rules' shared-data slots
/// created (Envoy has no conditional create). Returns the line to log.
pub fn prepare_vm(config: &Config, host: &dyn Host) -> Option<String> {
    if config.store == Store::SharedData {
        for rule in &config.rules {
            limits::create_slots(host, &rule.name, rule.slots);
        }
    }
    if !config.preload {
        return None;
    }
    let started = host.now_nanos();
    let names: Vec<&str> = config
        .models
        .preload_encodings()
        .into_iter()
        .filter(|encoding| crate::tokenize::bpe(*encoding).is_some())
        .map(|encoding| encoding.name())
        .collect();
    let millis = host.now_nanos().saturating_sub(started) / 1_000_000;
    Some(format!("token-counter: BPE tables {} ready in {millis} ms", names.join(", ")))
}

impl Stream {
    /// The skeleton's decision for a request action: the budget signal as
    /// filter state, a new body, or a local reply with its rate-limit headers.
    pub fn decision(&self, action: RequestAction) -> RequestDecision {
        let mut edits = RequestEdits::default();
        if self.signal {
            edits.set_state(STATE_BUDGET_EXCEEDED, "1");
        }
        if let Some(counted) = self.counted {
            edits.set_state(STATE_TOKENS_COUNTED, counted.to_string());
        }
        match action {
            RequestAction::Forward { new_body } => {
                edits.body = new_body;
                RequestDecision::Forward(edits)
            }
            RequestAction::Reject { error, headers } => RequestDecision::Reply {
                error,
                headers: headers.into_iter().map(|(name, value)| (name.to_string(), value)).collect(),
                filter_state: edits.filter_state,
            },
        }
    }

    /// Starts a stream at the request headers: resolves every rule's key.
    pub fn new(config: &Config, host: &dyn Host, path: &str) -> Stream {
        let count_only = Endpoint::from_path(path) == Some(Endpoint::CountTokens);
        let hits = config
            .rules
            .iter()
            .enumerate()
            .filter_map(|(index, rule)| {
                let subject = rule.key.resolve(host)?;
                let fingerprint = limits::fingerprint(&rule.name, &subject);
                Some(Hit {
                    rule: index,
                    key: limits::slot_key(&rule.name, fingerprint, rule.slots),
                    subject,
                    fingerprint,
                    reserved: None,
                    snapshot: None,
                })
            })
            .filter(|_| !count_only)
            .collect();
        Stream {
            start_nanos: host.now_nanos(),
            // A count_tokens body is a Messages request.
            shape: if count_only { Some(ApiShape::AnthropicMessages) } else { ApiShape::from_path(path) },
            hits,
            model: None,
            prompt_tokens: 0,
            output_reserve: 0,
            signal: false,
            rejected: false,
            status: None,
            tracker: None,
            strip_usage_chunk: false,
            first_token_nanos: None,
            finished: false,
            request_seen: false,
            store_error_rules: Vec::new(),
            remote_pending: Vec::new(),
            remote_outbox: Vec::new(),
            count_only,
            counted: None,
            answered_by: None,
        }
    }

    /// Whether `aigw.budget.exceeded` must be set.
    pub fn budget_signal(&self) -> bool {
        self.signal
    }

    /// Rules whose counters could not be read or written at admission (the
    /// glue logs them; the metric `store_errors` counts them).
    pub fn take_store_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.store_error_rules)
    }

    pub fn is_rejected(&self) -> bool {
        self.rejected
    }

    /// A request without a body: nothing to count or reserve; the headers
    /// report the current state of the rules.
    pub fn bodiless(&mut self, config: &Config, host: &dyn Host) {
        self.request_seen = true;
        if config.store != Store::SharedData {
            // A rate limit service has no read-only call: no headers without a reservation.
            return;
        }
        let now = host.now_nanos();
        for hit in &mut self.hits {
            let Some(rule) = config.rules.get(hit.rule) else { continue };
            let window = rule.window.index(now);
            let entry = limits::peek(host, &hit.key, hit.fingerprint, window);
            hit.snapshot = Some(Snapshot {
                limit: rule.limit,
                consumed: entry.used.saturating_add(entry.reserved),
                window,
                shared: false,
            });
        }
    }

    /// A body the filter does not parse (not JSON, or too large): the prompt
    /// is estimated from its size, so that a limit is never skipped.
    pub fn unparsed_body(&mut self, config: &Config, host: &dyn Host, size_bytes: u64) -> RequestAction {
        host.increment_counter(&metrics::filter("uncountable_requests"), 1);
        self.prompt_tokens = size_bytes.div_ceil(FALLBACK_BYTES_PER_TOKEN);
        self.output_reserve = self.output_reserve(config, None);
        self.admit(config, host)
    }

    /// The complete request body.
    pub fn request_body(&mut self, config: &Config, host: &dyn Host, body: &[u8]) -> RequestAction {
        let parsed = serde_json::from_slice::<Value>(body).ok().filter(Value::is_object);
        let Some(mut json) = parsed else {
            return self.unparsed_body(config, host, body.len() as u64);
        };
        let info = RequestInfo::from_body(&json);
        let model = info.model.clone().unwrap_or_default();
        let (counting, known) = config.models.resolve(&model);
        let mut counter = TokenCounter::new(counting, config.max_exact_bytes);
        count_request(self.shape, &json, &mut counter, config.image_tokens);
        self.prompt_tokens = counter.total();
        if counter.estimated() {
            host.increment_counter(&metrics::filter("tokenizer_capped"), 1);
        }
        if self.count_only {
            // Counted for model-router's answer; no budget is touched (no rule applies).
            self.counted = Some(self.prompt_tokens);
            return RequestAction::Forward { new_body: None };
        }
        if !known {
            host.increment_counter(&metrics::requests(&model, "unknown_model"), 1);
        }
        if !counting.exact {
            host.increment_counter(&metrics::requests(&model, "prompt_approximated"), 1);
        }
        self.model = info.model.clone();
        self.output_reserve = self.output_reserve(config, info.max_output_tokens);

        let mut new_body = None;
        if config.stream_usage == StreamUsage::Inject
            && matches!(self.shape, Some(ApiShape::OpenAiChat | ApiShape::OpenAiCompletions))
            && info.stream
            && !info.include_usage
        {
            if let Some(map) = json.as_object_mut() {
                let options = map.entry("stream_options").or_insert_with(|| Value::Object(Default::default()));
                if !options.is_object() {
                    *options = Value::Object(Default::default());
                }
                if let Some(options) = options.as_object_mut() {
                    options.insert("include_usage".into(), Value::Bool(true));
                    if let Ok(bytes) = serde_json::to_vec(&json) {
                        new_body = Some(bytes);
                        self.strip_usage_chunk = true;
                        host.increment_counter(&metrics::filter("stream_usage_injected"), 1);
                    }
                }
            }
        }
        match self.admit(config, host) {
            RequestAction::Forward { .. } => RequestAction::Forward { new_body },
            reject => reject,
        }
    }

    fn output_reserve(&self, config: &Config, requested: Option<u64>) -> u64 {
        // Embeddings answer with vectors: no output tokens to reserve.
        if self.shape == Some(ApiShape::OpenAiEmbeddings) {
            return 0;
        }
        let wanted = requested.unwrap_or(config.default_output_tokens);
        match config.max_output_tokens {
            Some(cap) => wanted.min(cap),
            None => wanted,
        }
    }

    /// Reserves on every applicable rule, in order.
    fn admit(&mut self, config: &Config, host: &dyn Host) -> RequestAction {
        self.request_seen = true;
        let now = host.now_nanos();
        if let Store::Rls(store) = &config.store {
            // Asked of the service; `remote_answers` decides when they are in.
            self.remote_pending = self.remote_reservations(config, store, now);
            return RequestAction::Forward { new_body: None };
        }
        for position in 0..self.hits.len() {
            let Some(hit) = self.hits.get(position) else { continue };
            let Some(rule) = config.rules.get(hit.rule) else { continue };
            let amount = rule.counts.pick(self.prompt_tokens, self.output_reserve);
            let window = rule.window.index(now);
            let force = rule.on_exceeded == OnExceeded::Signal;
            let result = limits::reserve(host, &hit.key, hit.fingerprint, window, rule.limit, amount, force);
            if let Some(reject) = self.take_reservation(config, host, position, window, now, result) {
                return reject;
            }
        }
        RequestAction::Forward { new_body: None }
    }

    /// Records one rule's reservation outcome; a rejection (429, or 503 when
    /// the store failed and `failure_mode` is closed) releases what the other
    /// rules hold and is returned.
    fn take_reservation(
        &mut self,
        config: &Config,
        host: &dyn Host,
        position: usize,
        window: u64,
        now: u64,
        result: Reservation,
    ) -> Option<RequestAction> {
        let hit = self.hits.get(position)?.clone();
        let rule = config.rules.get(hit.rule)?;
        let force = rule.on_exceeded == OnExceeded::Signal;
        if let Reservation::Admitted { snapshot, .. } | Reservation::Exceeded { snapshot, .. } = &result {
            if rule.key_metrics {
                record_budget_use(host, &rule.name, &hit.subject, snapshot);
            }
        }
        match result {
            Reservation::Admitted { amount, snapshot } => {
                if snapshot.shared {
                    host.increment_counter(&metrics::rule(&rule.name, "shared_budget"), 1);
                }
                host.increment_counter(&metrics::rule(&rule.name, "admitted"), 1);
                if let Some(slot) = self.hits.get_mut(position) {
                    slot.reserved = Some((amount, window));
                    slot.snapshot = Some(snapshot);
                }
            }
            Reservation::Exceeded { amount, snapshot } if force => {
                // Reserved anyway: the request goes through, flagged.
                self.signal = true;
                host.increment_counter(&metrics::rule(&rule.name, "signalled"), 1);
                if let Some(slot) = self.hits.get_mut(position) {
                    slot.reserved = Some((amount, window));
                    slot.snapshot = Some(snapshot);
                }
            }
            Reservation::Exceeded { amount, snapshot } => {
                host.increment_counter(&metrics::rule(&rule.name, "rejected"), 1);
                if rule.key_metrics {
                    host.increment_counter(&metrics::rule_key(&rule.name, &hit.subject, "rejected"), 1);
                }
                if let Some(slot) = self.hits.get_mut(position) {
                    slot.snapshot = Some(snapshot);
                }
                self.release_all(config, host);
                self.rejected = true;
                self.finished = true;
                let reset_millis = rule.window.reset_millis(now);
                let error = rejection(rule, amount, &snapshot, reset_millis);
                let mut headers =
                    RateHeaders { limit: rule.limit, remaining: snapshot.remaining(), reset_millis }.pairs();
                headers.extend(error.headers());
                if error.retry_after_seconds.is_none() {
                    // No wait makes it fit: tell the OpenAI and Anthropic SDKs not to retry it.
                    headers.push(("x-should-retry", "false".to_string()));
                }
                if !config.rate_limit_headers {
                    headers.retain(|(name, _)| !name.starts_with("x-ratelimit-"));
                }
                return Some(RequestAction::Reject { error, headers });
            }
            Reservation::StoreError => {
                host.increment_counter(&metrics::rule(&rule.name, "store_errors"), 1);
                self.store_error_rules.push(rule.name.clone());
                if !config.fail_open {
                    self.release_all(config, host);
                    self.rejected = true;
                    self.finished = true;
                    let error = ApiError::service_unavailable(
                        "rate_limit_unavailable",
                        "The gateway cannot check its token rate limits right now. Please retry.",
                    );
                    let headers = error.headers();
                    return Some(RequestAction::Reject { error, headers });
                }
            }
        }
        None
    }

    /// The reservations to ask the rate limit service for (`store: rls`).
    fn remote_reservations(&self, config: &Config, store: &RlsStore, now: u64) -> Vec<RemoteReservation> {
        let mut calls = Vec::new();
        for (position, hit) in self.hits.iter().enumerate() {
            let Some(rule) = config.rules.get(hit.rule) else { continue };
            let amount = rule.counts.pick(self.prompt_tokens, self.output_reserve);
            let force = rule.on_exceeded == OnExceeded::Signal;
            calls.push(RemoteReservation {
                position,
                window: rule.window.index(now),
                amount,
                message: remote::reserve_message(store, rule, &hit.subject, amount, force),
            });
        }
        calls
    }

    /// Reservations the glue must send to the rate limit service before the
    /// request goes on (empty with the shared-data store).
    pub fn take_remote_reservations(&mut self) -> Vec<RemoteReservation> {
        std::mem::take(&mut self.remote_pending)
    }

    /// Every answer to [`Self::take_remote_reservations`] is in:
    /// `(position, response message or None when the call failed)`. Returns
    /// the rejection, if any; otherwise the request goes on as decided at its body.
    pub fn remote_answers(
        &mut self,
        config: &Config,
        host: &dyn Host,
        calls: &[RemoteReservation],
        answers: &[(usize, Option<Vec<u8>>)],
    ) -> Option<RequestAction> {
        let now = host.now_nanos();
        let results: Vec<(usize, u64, Reservation)> = calls
            .iter()
            .filter_map(|call| {
                let rule = config.rules.get(self.hits.get(call.position)?.rule)?;
                let answer = answers.iter().find(|(position, _)| *position == call.position);
                let bytes = answer.and_then(|(_, bytes)| bytes.as_deref());
                Some((call.position, call.window, remote::verdict(rule, call.window, call.amount, bytes)))
            })
            .collect();
        // The calls ran in parallel: every reservation the service made is
        // recorded before a rejection releases them.
        for (position, window, result) in &results {
            let force =
                self.hits.get(*position).and_then(|hit| config.rules.get(hit.rule)).map(|rule| rule.on_exceeded)
                    == Some(OnExceeded::Signal);
            if let (Reservation::Admitted { amount, .. }, _) | (Reservation::Exceeded { amount, .. }, true) =
                (result, force)
            {
                if let Some(hit) = self.hits.get_mut(*position) {
                    hit.reserved = Some((*amount, *window));
                }
            }
        }
        for (position, window, result) in results {
            if let Some(reject) = self.take_reservation(config, host, position, window, now, result) {
                return Some(reject);
            }
        }
        None
    }

    /// Settlement messages for the rate limit service (sent by the root context).
    pub fn take_remote_settlements(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.remote_outbox)
    }

    /// Releases every reservation held (a rejection or an upstream failure).
    fn release_all(&mut self, config: &Config, host: &dyn Host) {
        self.settle_all(config, host, None);
    }

    /// Settles every reservation: to `usage` when given, else releases.
    fn settle_all(&mut self, config: &Config, host: &dyn Host, usage: Option<&Usage>) {
        let now = host.now_nanos();
        for hit in &mut self.hits {
            let Some(rule) = config.rules.get(hit.rule) else { continue };
            let actual = usage.map(|usage| rule.counts.pick(usage.input, usage.output)).unwrap_or(0);
            let current = rule.window.index(now);
            if let Store::Rls(store) = &config.store {
                // Sent by the root context (see remote::Outbox); failures are counted there.
                for message in remote::settle_messages(store, rule, &hit.subject, hit.reserved.take(), actual) {
                    self.remote_outbox.push((rule.name.clone(), message));
                }
                if rule.key_metrics && actual > 0 {
                    host.increment_counter(&metrics::rule_key(&rule.name, &hit.subject, "tokens"), actual);
                }
                continue;
            }
            let settled = match hit.reserved.take() {
                Some((amount, window)) => {
                    limits::settle(host, &hit.key, hit.fingerprint, window, current, amount, actual).is_some()
                }
                // Not reserved (store error at admission): still charge what was used.
                None if actual > 0 => {
                    limits::settle(host, &hit.key, hit.fingerprint, current, current, 0, actual).is_some()
                }
                None => true,
            };
            if !settled {
                host.increment_counter(&metrics::rule(&rule.name, "store_errors"), 1);
            }
            if rule.key_metrics && actual > 0 {
                host.increment_counter(&metrics::rule_key(&rule.name, &hit.subject, "tokens"), actual);
            }
        }
    }

    /// The rate-limit headers for the response: the applicable rule with the
    /// least room left. `None` when no rule applies.
    pub fn rate_headers(&self, config: &Config, host: &dyn Host) -> Option<RateHeaders> {
        if !config.rate_limit_headers {
            return None;
        }
        let now = host.now_nanos();
        self.hits
            .iter()
            .filter_map(|hit| {
                let rule = config.rules.get(hit.rule)?;
                let snapshot = hit.snapshot?;
                Some(RateHeaders {
                    limit: rule.limit,
                    remaining: snapshot.remaining(),
                    reset_millis: rule.window.reset_millis(now),
                })
            })
            .min_by_key(|headers| (headers.remaining, headers.limit))
    }

    /// Response headers. Returns whether the glue must drop `content-length`
    /// (the filter will change the body).
    pub fn response_headers(
        &mut self,
        config: &Config,
        status: Option<u32>,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> bool {
        self.status = status;
        if self.rejected || self.finished {
            return false;
        }
        let kind = if !is_identity_encoding(content_encoding) {
            BodyKind::Unreadable
        } else if is_event_stream(content_type) {
            BodyKind::EventStream
        } else if content_type.is_none() || is_json_content_type(content_type) {
            BodyKind::Json
        } else {
            BodyKind::Unreadable
        };
        let tracker = ResponseTracker::new(kind, self.strip_usage_chunk, config.max_body_bytes);
        let rewrites = tracker.rewrites();
        self.tracker = Some(tracker);
        rewrites
    }

    /// The backend that answered, from model-router's response header.
    pub fn answered_by(&mut self, backend: Option<String>) {
        self.answered_by = backend.filter(|name| !name.is_empty());
    }

    /// One response chunk. Returns the bytes to send instead, if they differ.
    pub fn response_body(&mut self, host: &dyn Host, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        let tracker = self.tracker.as_mut()?;
        let (emit, first) = tracker.feed(chunk);
        if first && self.first_token_nanos.is_none() {
            self.first_token_nanos = Some(host.now_nanos());
        }
        let mut replacement = match emit {
            Emit::Unchanged => None,
            Emit::Replace(bytes) => Some(bytes),
        };
        if end_of_stream {
            if let Some(tail) = tracker.finish() {
                let mut bytes = replacement.take().unwrap_or_else(|| chunk.to_vec());
                bytes.extend_from_slice(&tail);
                replacement = Some(bytes);
            }
        }
        replacement
    }

    /// Ends the stream: settles, emits metrics, returns the filter state.
    /// `completed` is false when the stream was reset before its end.
    ///
    /// `withheld`: a filter nearer the client replaced the provider's answer
    /// (pii-mask withholding a body it cannot inspect, `aigw.response.withheld`).
    /// The answer never reached the client, so the reservation is released,
    /// not charged.
    pub fn finish(&mut self, config: &Config, host: &dyn Host, completed: bool, withheld: bool) -> Option<Outcome> {
        if self.finished {
            return None;
        }
        self.finished = true;
        if withheld {
            self.status = Some(502);
            host.increment_counter(&metrics::filter("released_withheld"), 1);
        }
        if !self.request_seen {
            // Reset before the request was complete: nothing was reserved.
            return None;
        }
        let now = host.now_nanos();
        let success = self.status.is_some_and(|status| (200..300).contains(&status));
        let (usage, estimated) = match self.tracker.as_ref().and_then(ResponseTracker::usage) {
            // The client never got this answer: nothing is charged, whatever the provider reported.
            _ if withheld => (None, false),
            Some(usage) => (Some(usage), false),
            None if success => {
                let tracker = self.tracker.as_ref();
                let readable = tracker.is_some_and(|t| t.problem().is_none());
                let output = if readable {
                    tracker.map_or(0, ResponseTracker::output_text_bytes).div_ceil(FALLBACK_BYTES_PER_TOKEN)
                } else {
                    self.output_reserve
                };
                host.increment_counter(&metrics::filter("usage_missing"), 1);
                if matches!(tracker.and_then(ResponseTracker::problem), Some(ReadProblem::Unreadable)) {
                    host.increment_counter(&metrics::filter("usage_unreadable"), 1);
                }
                (Some(Usage { input: self.prompt_tokens, output, cached: 0, cache_creation: 0, reasoning: 0 }), true)
            }
            // The upstream failed (or never answered): release.
            None => (None, false),
        };
        self.settle_all(config, host, usage.as_ref());
        if let Some(tracker) = &self.tracker {
            if tracker.stripped_events() > 0 {
                host.increment_counter(&metrics::filter("usage_chunks_removed"), u64::from(tracker.stripped_events()));
            }
        }
        let usage = usage?;
        let model = property_text(host, STATE_ROUTE_MODEL)
            .or_else(|| self.model.clone())
            .unwrap_or_else(|| "unknown".to_string());
        let cost = config.prices.lookup(&model).map(|price| price.micro_usd(&usage));
        let streamed = self.is_stream();
        let ttft_ms = self.ttft_ms();
        let tpot_ms = match (self.first_token_nanos, streamed && completed) {
            (Some(first), true) if usage.output > 1 => Some(now.saturating_sub(first) / 1_000_000 / (usage.output - 1)),
            _ => None,
        };
        // Without the header (a route whose answering backend is unknown), the primary.
        let backend = self.answered_by.clone().or_else(|| property_text(host, STATE_ROUTE_BACKEND));
        RequestMetrics {
            model: &model,
            backend: backend.as_deref(),
            input: usage.input,
            output: usage.output,
            cached: usage.cached,
            cache_creation: usage.cache_creation,
            reasoning: usage.reasoning,
            cost_micro_usd: cost,
            usage_estimated: estimated,
            ttft_ms,
            tpot_ms,
            total_ms: now.saturating_sub(self.start_nanos) / 1_000_000,
        }
        .emit(host);
        Some(Outcome { usage, cost_micro_usd: cost })
    }

    fn is_stream(&self) -> bool {
        self.tracker.as_ref().is_some_and(ResponseTracker::is_event_stream)
    }

    /// What the response said about itself, if it was read.
    pub fn response_facts(&self) -> Option<&ResponseFacts> {
        self.tracker.as_ref().map(ResponseTracker::facts)
    }

    /// The status the upstream (or a local reply) gave, once known.
    pub fn status(&self) -> Option<u32> {
        self.status
    }

    /// Milliseconds to the first streamed token, for streams that produced one.
    pub fn ttft_ms(&self) -> Option<u64> {
        let first = self.first_token_nanos.filter(|_| self.is_stream())?;
        Some(first.saturating_sub(self.start_nanos) / 1_000_000)
    }
}

/// The 429 for a rule, worded like OpenAI's. A request larger than the rule's whole budget can never
/// succeed, however long the client waits: it gets its own code, `request_too_large_for_budget`, and
/// no `retry-after` (SDKs would otherwise wait and retry it).
fn rejection(rule: &Rule, amount: u64, snapshot: &Snapshot, reset_millis: u64) -> ApiError {
    let window = match rule.window {
        limits::Window::Minute => "minute",
        limits::Window::Hour => "hour",
        limits::Window::Day => "day",
    };
    if amount > rule.limit {
        return ApiError::new(
            429,
            "rate_limit_exceeded",
            "request_too_large_for_budget",
            format!(
                "Request too large for rate limit `{}`: it needs {amount} tokens, the limit is {} tokens per \
                 {window}. Lower max_tokens or shorten the prompt; retrying will not help.",
                rule.name, rule.limit
            ),
        );
    }
    let message = format!(
        "Rate limit reached for tokens (rule `{}`): limit {} per {window}, used {}, requested {amount}. \
         Please try again in {}.",
        rule.name,
        rule.limit,
        snapshot.consumed,
        format_reset(reset_millis)
    );
    ApiError::rate_limited(message, reset_millis.div_ceil(1000).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;
    use crate::limits::{fingerprint, peek, slot_key, Entry};
    use aigw_shared::host::fake::FakeHost;
    use serde_json::json;

    const HOUR: u64 = 3600 * 1_000_000_000;
    const CHAT: &str = "/v1/chat/completions";

    fn config(rules: &str) -> Config {
        from_json(Some(
            format!(r#"{{"rules": {rules}, "prices": {{"gpt-4o*": {{"input": 2.5, "output": 10}}}}}}"#).as_bytes(),
        ))
        .unwrap()
    }

    fn host(user: &str) -> FakeHost {
        FakeHost::new().with_header("x-user", user).with_time_nanos(10 * HOUR + 1_000_000_000)
    }

    fn entry(host: &FakeHost, rule: &str, user: &str, slots: u32) -> Entry {
        let fp = fingerprint(rule, user);
        let window = host.now_nanos() / HOUR;
        peek(host, &slot_key(rule, fp, slots), fp, window)
    }

    /// "hello world" to gpt-4o: 9 prompt tokens.
    fn chat_body(extra: serde_json::Value) -> Vec<u8> {
        let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]});
        if let (Some(map), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            map.extend(extra.clone());
        }
        serde_json::to_vec(&body).unwrap()
    }

    const USAGE_JSON: &str = r#"{"choices":[{"message":{"role":"assistant","content":"Hi!"}}],"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}"#;

    fn respond(stream: &mut Stream, config: &Config, host: &FakeHost, status: u32, body: &str) -> Option<Outcome> {
        stream.response_headers(config, Some(status), Some("application/json"), None);
        stream.response_body(host, body.as_bytes(), true);
        stream.finish(config, host, true, false)
    }

    #[test]
    fn count_tokens_requests_are_counted_never_charged() {
        let config = crate::config::from_json(Some(
            br#"{"rules": [{"name": "all", "key": "header:x-team", "limit": 1, "window": "minute"}]}"#,
        ))
        .unwrap();
        let host = aigw_shared::host::fake::FakeHost::new().with_header("x-team", "red");
        let mut stream = Stream::new(&config, &host, "/v1/messages/count_tokens");
        let body = br#"{"model": "claude-sonnet-4-5", "system": "be brief", "messages": [{"role": "user", "content": "hello there, how are you today?"}]}"#;
        // A limit of 1 token would refuse a real request; counting is free.
        let action = stream.request_body(&config, &host, body);
        assert_eq!(action, RequestAction::Forward { new_body: None });
        let RequestDecision::Forward(edits) = stream.decision(action) else { panic!() };
        let counted = edits.filter_state.iter().find(|(name, _)| name == STATE_TOKENS_COUNTED).unwrap();
        let tokens: u64 = String::from_utf8(counted.1.clone()).unwrap().parse().unwrap();
        assert!((8..40).contains(&tokens), "{tokens}");
        assert!(stream.finish(&config, &host, true, false).is_none(), "nothing to settle or report");
    }

    #[test]
    fn reserve_then_settle_to_real_usage() {
        let config = config(r#"[{"name": "u", "key": "header:x-user", "limit": 1000, "window": "hour"}]"#);
        let host = host("alice");
        let mut stream = Stream::new(&config, &host, CHAT);
        let action = stream.request_body(&config, &host, &chat_body(json!({"max_tokens": 50})));
        assert_eq!(action, RequestAction::Forward { new_body: None });
        assert_eq!(entry(&host, "u", "alice", config.rules[0].slots).reserved, 59);
        let headers = stream.rate_headers(&config, &host).unwrap();
        assert_eq!((headers.limit, headers.remaining), (1000, 941));
        assert_eq!(headers.pairs()[2], ("x-ratelimit-reset-tokens", "59m59s".to_string()));

        let outcome = respond(&mut stream, &config, &host, 200, USAGE_JSON).unwrap();
        let state = entry(&host, "u", "alice", config.rules[0].slots);
        assert_eq!((state.used, state.reserved), (14, 0));
        assert_eq!(outcome.usage.total(), 14);
        // 9 × 2.5 + 5 × 10 = 72.5 µ$.
        assert_eq!(outcome.cost_micro_usd, Some(73));
        assert!(outcome.filter_state().contains(&(STATE_TOKENS_TOTAL, "14".to_string())));
        assert_eq!(host.counter("aigw.token_counter.tokens.model.gpt-4o.input"), 9);
        assert_eq!(host.counter("aigw.token_counter.cost.model.gpt-4o.micro_usd"), 73);
        // Finishing twice (on_log after the end of stream) changes nothing.
        assert_eq!(stream.finish(&config, &host, false, false), None);
        assert_eq!(entry(&host, "u", "alice", config.rules[0].slots).used, 14);
    }

    #[test]
    fn a_response_withheld_nearer_the_client_is_released_not_charged() {
        let config = config(r#"[{"name": "u", "key": "header:x-user", "limit": 1000, "window": "hour"}]"#);
        let host = host("carol");
        let mut stream = Stream::new(&config, &host, CHAT);
        stream.request_body(&config, &host, &chat_body(json!({"max_tokens": 50})));
        assert_eq!(entry(&host, "u", "carol", config.rules[0].slots).reserved, 59);
        // The provider answered 200 with usage, but pii-mask withheld the body (`aigw.response.withheld`).
        stream.response_headers(&config, Some(200), Some("application/json"), None);
        stream.response_body(&host, USAGE_JSON.as_bytes(), true);
        assert_eq!(stream.finish(&config, &host, true, true), None);
        let state = entry(&host, "u", "carol", config.rules[0].slots);
        assert_eq!((state.used, state.reserved), (0, 0));
        assert_eq!(host.counter("aigw.token_counter.released_withheld"), 1);
    }

    #[test]
    fn over_the_limit_is_429_with_openai_headers_and_earlier_rules_are_released() {
        let config = config(
            r#"[{"name": "wide", "key": "header:x-user", "limit": 100000, "window": "day"},
                {"name": "tight", "key": "header:x-user", "limit": 100, "window": "minute"}]"#,
        );
        let host = host("bob");
        // The first request holds 59 of `tight`'s 100; a second one of 59 does not fit this minute.
        let mut first = Stream::new(&config, &host, CHAT);
        assert!(matches!(
            first.request_body(&config, &host, &chat_body(json!({"max_tokens": 50}))),
            RequestAction::Forward { .. }
        ));
        let mut stream = Stream::new(&config, &host, CHAT);
        let action = stream.request_body(&config, &host, &chat_body(json!({"max_tokens": 50})));
        let RequestAction::Reject { error, headers } = action else { panic!("expected 429, got {action:?}") };
        assert_eq!(error.status, 429);
        let body: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert!(body["error"]["message"].as_str().unwrap().contains("`tight`"));
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(header("x-ratelimit-limit-tokens").as_deref(), Some("100"));
        assert_eq!(header("x-ratelimit-remaining-tokens").as_deref(), Some("41"));
        assert_eq!(header("x-ratelimit-reset-tokens").as_deref(), Some("59s"));
        assert_eq!(header("retry-after").as_deref(), Some("59"));
        assert!(stream.is_rejected());
        assert_eq!(header("x-should-retry"), None);
        // The first rule's reservation was given back.
        let wide = entry(&host, "wide", "bob", config.rules[0].slots);
        assert_eq!((wide.used, wide.reserved), (0, 0));
        assert_eq!(host.counter("aigw.token_counter.ratelimit.rule.tight.rejected"), 1);
        // A smaller request still fits.
        let mut small = Stream::new(&config, &host, CHAT);
        assert!(matches!(
            small.request_body(&config, &host, &chat_body(json!({"max_tokens": 20}))),
            RequestAction::Forward { .. }
        ));
    }

    #[test]
    fn a_request_larger_than_the_whole_budget_gets_its_own_code_and_no_retry_after() {
        let config = config(r#"[{"name": "tight", "key": "header:x-user", "limit": 100, "window": "minute"}]"#);
        let host = host("dave");
        let mut stream = Stream::new(&config, &host, CHAT);
        // 9 prompt tokens + 200 reserved for output: more than the whole minute's 100.
        let action = stream.request_body(&config, &host, &chat_body(json!({"max_tokens": 200})));
        let RequestAction::Reject { error, headers } = action else { panic!("expected 429, got {action:?}") };
        assert_eq!(error.status, 429);
        let body: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
        assert_eq!(body["error"]["code"], "request_too_large_for_budget");
        assert!(body["error"]["message"].as_str().unwrap().contains("needs 209 tokens"));
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(header("retry-after"), None);
        assert_eq!(header("x-should-retry").as_deref(), Some("false"));
        // A request that fits once the window rolls over keeps the ordinary code and its retry-after.
        assert_eq!(host.counter("aigw.token_counter.ratelimit.rule.tight.rejected"), 1);
    }

    #[test]
    fn signal_rules_let_requests_through_flagged() {
        let config = config(
            r#"[{"name": "s", "key": "header:x-user", "limit": 10, "window": "hour", "on_exceeded": "signal"}]"#,
        );
        let host = host("carol");
        let mut stream = Stream::new(&config, &host, CHAT);
        assert!(matches!(stream.request_body(&config, &host, &chat_body(json!({}))), RequestAction::Forward { .. }));
        assert!(stream.budget_signal());
        assert_eq!(entry(&host, "s", "carol", config.rules[0].slots).reserved, 9 + 256);
        assert_eq!(host.counter("aigw.token_counter.ratelimit.rule.s.signalled"), 1);
    }

    #[test]
    fn a_failed_upstream_releases_its_reservation() {
        let config = config(r#"[{"name": "u", "key": "header:x-user", "limit": 1000, "window": "hour"}]"#);
        let host = host("dave");
        let mut stream = Stream::new(&config, &host, CHAT);
        stream.request_body(&config, &host, &chat_body(json!({})));
        assert_eq!(respond(&mut stream, &config, &host, 503, r#"{"error":{"message":"overloaded"}}"#), None);
        let state = entry(&host, "u", "dave", config.rules[0].slots);
        assert_eq!((state.used, state.reserved), (0, 0));
        assert_eq!(host.counter("aigw.token_counter.requests.model.gpt-4o.total"), 0);
    }

    #[test]
    fn a_reset_stream_is_charged_for_what_it_streamed() {
        let config = config(r#"[{"name": "u", "key": "header:x-user", "limit": 1000, "window": "hour"}]"#);
        let host = host("erin");
        let mut stream = Stream::new(&config, &host, CHAT);
        stream.request_body(&config, &host, &chat_body(json!({"stream": true})));
        stream.response_headers(&config, Some(200), Some("text/event-stream"), None);
        stream.response_body(&host, b"data: {\"choices\":[{\"delta\":{\"content\":\"12345678\"}}]}\n\n", false);
        let outcome = stream.finish(&config, &host, false, false).unwrap();
        // Prompt 9 + 8 bytes of output at 4 bytes per token.
        assert_eq!(outcome.usage.total(), 11);
        assert_eq!(entry(&host, "u", "erin", config.rules[0].slots).used, 11);
        assert_eq!(host.counter("aigw.token_counter.usage_missing"), 1);
    }

    #[test]
    fn stream_usage_is_injected_and_its_chunk_removed() {
        let config = config("[]");
        let host = host("x");
        let mut stream = Stream::new(&config, &host, CHAT);
        let RequestAction::Forward { new_body: Some(body) } =
            stream.request_body(&config, &host, &chat_body(json!({"stream": true, "stream_options": {"x": 1}})))
        else {
            panic!("expected a rewritten body")
        };
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["stream_options"], json!({"x": 1, "include_usage": true}));
        assert_eq!(body["messages"][0]["content"], "hello world");
        assert!(stream.response_headers(&config, Some(200), Some("text/event-stream"), None));
        let events = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n\
                      data: [DONE]\n\n";
        let sent = stream.response_body(&host, events.as_bytes(), true).unwrap();
        assert_eq!(
            String::from_utf8(sent).unwrap(),
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(stream.finish(&config, &host, true, false).unwrap().usage.total(), 10);

        // A client that asked for usage itself gets its chunk, untouched.
        let mut own = Stream::new(&config, &host, CHAT);
        let asked = chat_body(json!({"stream": true, "stream_options": {"include_usage": true}}));
        assert_eq!(own.request_body(&config, &host, &asked), RequestAction::Forward { new_body: None });
        assert!(!own.response_headers(&config, Some(200), Some("text/event-stream"), None));
        assert_eq!(own.response_body(&host, events.as_bytes(), true), None);
    }

    #[test]
    fn unparseable_bodies_are_estimated_not_skipped() {
        let config = config(r#"[{"name": "u", "key": "header:x-user", "limit": 1000, "window": "hour"}]"#);
        let host = host("frank");
        let mut stream = Stream::new(&config, &host, CHAT);
        stream.request_body(&config, &host, &[b'x'; 400]);
        // 400 bytes / 4 + the default output reservation.
        assert_eq!(entry(&host, "u", "frank", config.rules[0].slots).reserved, 100 + 256);
        assert_eq!(host.counter("aigw.token_counter.uncountable_requests"), 1);
    }

    #[test]
    fn windows_roll_over() {
        let config = config(r#"[{"name": "u", "key": "header:x-user", "limit": 300, "window": "hour"}]"#);
        let host = host("gina");
        let mut first = Stream::new(&config, &host, CHAT);
        first.request_body(&config, &host, &chat_body(json!({"max_tokens": 200})));
        respond(&mut first, &config, &host, 200, USAGE_JSON);
        let mut second = Stream::new(&config, &host, CHAT);
        assert!(matches!(
            second.request_body(&config, &host, &chat_body(json!({"max_tokens": 290}))),
            RequestAction::Reject { .. }
        ));
        host.now_nanos.set(host.now_nanos() + HOUR);
        let mut third = Stream::new(&config, &host, CHAT);
        assert!(matches!(
            third.request_body(&config, &host, &chat_body(json!({"max_tokens": 290}))),
            RequestAction::Forward { .. }
        ));
        assert_eq!(third.rate_headers(&config, &host).unwrap().remaining, 1);
    }

    #[test]
    fn headers_report_the_rule_with_the_least_room_and_key_metrics_count() {
        let config = config(
            r#"[{"name": "big", "key": "header:x-user", "limit": 100000, "window": "day"},
                {"name": "small", "key": "header:x-user", "limit": 1000, "window": "minute", "key_metrics": true}]"#,
        );
        let host = host("lee");
        let mut stream = Stream::new(&config, &host, CHAT);
        stream.request_body(&config, &host, &chat_body(json!({"max_tokens": 91})));
        let headers = stream.rate_headers(&config, &host).unwrap();
        assert_eq!((headers.limit, headers.remaining), (1000, 900));
        // 100 of 1,000 reserved: the key's gauge says 10 %; rules without key metrics set none.
        assert_eq!(host.gauge("aigw.token_counter.ratelimit_key.rule.small.key.lee.budget_used_percent"), Some(10));
        assert_eq!(host.gauge("aigw.token_counter.ratelimit_key.rule.big.key.lee.budget_used_percent"), None);
        // 1 s into the minute: 59 s to go.
        assert_eq!(headers.reset_millis, 59_000);
        respond(&mut stream, &config, &host, 200, USAGE_JSON);
        assert_eq!(host.counter("aigw.token_counter.ratelimit_key.rule.small.key.lee.tokens"), 14);
        assert_eq!(host.counter("aigw.token_counter.ratelimit_key.rule.big.key.lee.tokens"), 0);
    }

    #[test]
    fn rules_without_a_key_do_not_apply() {
        let config = config(r#"[{"name": "u", "key": "jwt:sub", "limit": 1, "window": "hour"}]"#);
        let host = host("h");
        let mut stream = Stream::new(&config, &host, CHAT);
        assert!(matches!(stream.request_body(&config, &host, &chat_body(json!({}))), RequestAction::Forward { .. }));
        assert_eq!(stream.rate_headers(&config, &host), None);
    }

    #[test]
    fn bodiless_requests_report_without_reserving() {
        let config = config(r#"[{"name": "u", "key": "header:x-user", "limit": 1000, "window": "hour"}]"#);
        let host = host("ivan");
        let mut stream = Stream::new(&config, &host, "/v1/models");
        stream.bodiless(&config, &host);
        assert_eq!(stream.rate_headers(&config, &host).unwrap().remaining, 1000);
        assert!(host.store.is_empty());
    }

    #[test]
    fn store_failures_fail_open_or_closed() {
        let open = config(r#"[{"name": "u", "key": "header:x-user", "limit": 1000, "window": "hour"}]"#);
        let host = host("j");
        host.store.force_conflicts(1000);
        let mut stream = Stream::new(&open, &host, CHAT);
        assert!(matches!(stream.request_body(&open, &host, &chat_body(json!({}))), RequestAction::Forward { .. }));
        assert_eq!(stream.take_store_errors(), vec!["u".to_string()]);
        let mut closed = open.clone();
        closed.fail_open = false;
        let mut stream = Stream::new(&closed, &host, CHAT);
        let RequestAction::Reject { error, .. } = stream.request_body(&closed, &host, &chat_body(json!({}))) else {
            panic!("expected 503")
        };
        assert_eq!(error.status, 503);
    }

    #[test]
    fn anthropic_stream_settles_last_values() {
        let config = config(r#"[{"name": "u", "key": "header:x-user", "limit": 100000, "window": "hour"}]"#);
        let host = host("k");
        let mut stream = Stream::new(&config, &host, "/v1/messages");
        let body = json!({"model": "claude-sonnet-4", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "hello world"}]});
        assert_eq!(
            stream.request_body(&config, &host, &serde_json::to_vec(&body).unwrap()),
            RequestAction::Forward { new_body: None }
        );
        stream.response_headers(&config, Some(200), Some("text/event-stream"), None);
        let events = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":30}}\n\n";
        assert_eq!(stream.response_body(&host, events.as_bytes(), true), None);
        let outcome = stream.finish(&config, &host, true, false).unwrap();
        assert_eq!((outcome.usage.input, outcome.usage.output), (12, 30));
        assert_eq!(entry(&host, "u", "k", config.rules[0].slots).used, 42);
        assert_eq!(host.counter("aigw.token_counter.requests.model.claude-sonnet-4.unpriced"), 1);
    }

    fn rls_config(rules: &str) -> Config {
        from_json(Some(format!(r#"{{"store": {{"rls": {{"cluster": "rls"}}}}, "rules": {rules}}}"#).as_bytes()))
            .unwrap()
    }

    fn rls_answer(code: aigw_shared::ratelimit_proto::Code, remaining: u32) -> Option<Vec<u8>> {
        use aigw_shared::ratelimit_proto::{Response, Status};
        let status =
            Status { code, current_limit: None, limit_remaining: remaining, duration_until_reset_seconds: None };
        Some(Response { overall_code: code, statuses: vec![status] }.encode())
    }

    #[test]
    fn rls_answers_in_any_order_release_every_reservation_on_a_rejection() {
        use aigw_shared::ratelimit_proto::{Code, Request, REFUND_KEY};
        let config = rls_config(
            r#"[{"name": "a", "key": "header:x-user", "limit": 1000, "window": "hour"},
                {"name": "b", "key": "header:x-user", "limit": 100, "window": "minute"},
                {"name": "c", "key": "header:x-user", "limit": 1000, "window": "day"}]"#,
        );
        let host = host("zed");
        let mut stream = Stream::new(&config, &host, CHAT);
        // With the rls store nothing is reserved locally: the calls are handed to the glue.
        assert_eq!(
            stream.request_body(&config, &host, &chat_body(json!({"max_tokens": 50}))),
            RequestAction::Forward { new_body: None }
        );
        assert!(host.store.is_empty());
        let calls = stream.take_remote_reservations();
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|call| call.amount == 59));
        // `b` refuses; `c`'s admission arrived too (the calls ran in parallel): both `a` and `c` are returned.
        let answers =
            vec![(2, rls_answer(Code::Ok, 941)), (1, rls_answer(Code::OverLimit, 10)), (0, rls_answer(Code::Ok, 941))];
        let Some(RequestAction::Reject { error, headers }) = stream.remote_answers(&config, &host, &calls, &answers)
        else {
            panic!("expected a 429")
        };
        assert_eq!(error.status, 429);
        assert!(headers.contains(&("x-ratelimit-remaining-tokens", "10".to_string())));
        let returns: Vec<(String, Request)> = stream
            .take_remote_settlements()
            .into_iter()
            .map(|(rule, message)| (rule, Request::decode(&message).unwrap()))
            .collect();
        let rules: Vec<&str> = returns.iter().map(|(rule, _)| rule.as_str()).collect();
        assert_eq!(rules, ["a", "c"]);
        for (_, request) in &returns {
            assert_eq!(request.hits_addend, 59);
            assert_eq!(request.descriptors[0].entries.last().unwrap().0, REFUND_KEY);
        }
        // Nothing is settled twice at the end of the stream.
        assert_eq!(stream.finish(&config, &host, false, false), None);
        assert!(stream.take_remote_settlements().is_empty());
    }

    #[test]
    fn rls_failure_mode_and_charge_at_the_end() {
        use aigw_shared::ratelimit_proto::{Code, Request};
        let rules = r#"[{"name": "a", "key": "header:x-user", "limit": 1000, "window": "hour"}]"#;
        let host = host("yan");
        // Closed: a failed call (None) is a 503.
        let mut closed = rls_config(rules);
        closed.fail_open = false;
        let mut stream = Stream::new(&closed, &host, CHAT);
        stream.request_body(&closed, &host, &chat_body(json!({})));
        let calls = stream.take_remote_reservations();
        let reject = stream.remote_answers(&closed, &host, &calls, &[(0, None)]);
        assert!(matches!(reject, Some(RequestAction::Reject { error, .. }) if error.status == 503));
        // Open: forwarded unreserved; the real usage is charged in full at the end.
        let open = rls_config(rules);
        let mut stream = Stream::new(&open, &host, CHAT);
        stream.request_body(&open, &host, &chat_body(json!({})));
        let calls = stream.take_remote_reservations();
        assert_eq!(stream.remote_answers(&open, &host, &calls, &[(0, None)]), None);
        assert_eq!(stream.take_store_errors(), vec!["a".to_string()]);
        respond(&mut stream, &open, &host, 200, USAGE_JSON);
        let settlements = stream.take_remote_settlements();
        let charge = Request::decode(&settlements[0].1).unwrap();
        assert_eq!((charge.hits_addend, charge.descriptors.len()), (14, 1));
        // Admitted, then usage above the reservation: the difference is charged.
        let mut stream = Stream::new(&open, &host, CHAT);
        stream.request_body(&open, &host, &chat_body(json!({"max_tokens": 1})));
        let calls = stream.take_remote_reservations();
        assert_eq!(calls[0].amount, 10);
        assert_eq!(stream.remote_answers(&open, &host, &calls, &[(0, rls_answer(Code::Ok, 990))]), None);
        assert_eq!(stream.rate_headers(&open, &host).unwrap().remaining, 990);
        respond(&mut stream, &open, &host, 200, USAGE_JSON);
        let charge = Request::decode(&stream.take_remote_settlements()[0].1).unwrap();
        assert_eq!(charge.hits_addend, 4);
    }
}
