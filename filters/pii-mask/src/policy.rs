//! What pii-mask decides about a request and a response: the policy the glue
//! in `lib.rs` carries out. Pure: it runs natively against `FakeHost`.
//!
//! Request: which bodies are read, masking or rejecting, the detected-entity
//! filter state, and the optional moderation call (on the masked texts).
//! Response: how each body is read (JSON and text whole, SSE event by event,
//! anything else withheld or passed by configuration), and what the client
//! gets when a body cannot be inspected.

use crate::config::{Config, OtherPaths, UnreadableRequest, UnreadableResponse};
use crate::metrics::{self, Direction};
use crate::moderation::{self, Verdict};
use crate::request;
use crate::response;
use crate::scan::Findings;
use crate::stream::SseMasker;
use aigw_shared::api::ApiShape;
use aigw_shared::body::{is_event_stream, is_identity_encoding, is_json_content_type};
use aigw_shared::config::FailureMode;
use aigw_shared::contract::{STATE_PII_COUNTS, STATE_PII_DETECTED};
use aigw_shared::gate::{GatePolicy, OnEncoded, OnOversize};
use aigw_shared::glue::{RequestDecision, RequestEdits, SideCall};
use aigw_shared::host::Host;
use aigw_shared::ApiError;
use std::time::Duration;

/// Whether the request body is read, and how the gate treats it. Bodies
/// left unread are counted (`pii_unreadable`) with the reason.
pub fn request_scope(
    config: &Config,
    host: &dyn Host,
    shape: Option<ApiShape>,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> (bool, GatePolicy) {
    let reject_encoded = config.on_unreadable_request == UnreadableRequest::Reject;
    let policy = GatePolicy {
        max_body_bytes: config.max_body_bytes,
        on_encoded: if reject_encoded { OnEncoded::Reject } else { OnEncoded::Pass },
        on_oversize: OnOversize::Reject,
    };
    if config.request.is_empty() && config.moderation.is_none() {
        return (false, policy);
    }
    if shape.is_none() {
        if config.other_paths == OtherPaths::Skip {
            return (false, policy);
        }
        if !is_json_content_type(content_type) {
            // Uploads (multipart audio, files) on other API paths carry no prompt text to mask.
            metrics::unreadable(host, Direction::Request, "content_type", false);
            return (false, policy);
        }
    }
    if !is_identity_encoding(content_encoding) {
        metrics::unreadable(host, Direction::Request, "encoded", reject_encoded);
    }
    (true, policy)
}

/// What happens after the request body was read.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestOutcome {
    /// Forward (edits applied) or reply.
    Decided(RequestDecision),
    /// Apply the edits, then ask the moderation service before forwarding.
    Moderate { edits: RequestEdits, call: SideCall },
}

/// Masks (or rejects) a complete request body.
pub fn on_request(config: &Config, host: &dyn Host, shape: Option<ApiShape>, body: &[u8]) -> RequestOutcome {
    let result = match request::mask_request(body, shape, config, config.moderation.is_some()) {
        Ok(result) => result,
        Err(err) => return RequestOutcome::Decided(RequestDecision::reply(err)),
    };
    metrics::report(host, Direction::Request, &config.request, &result.findings);
    let mut edits = RequestEdits::default();
    if let Some(names) = request::detected_names(&config.request, &result.findings) {
        let counts = request::detected_counts(&config.request, &result.findings).unwrap_or_default();
        if let Some(err) = result.reject {
            return RequestOutcome::Decided(RequestDecision::Reply {
                error: err,
                headers: Vec::new(),
                filter_state: vec![
                    (STATE_PII_DETECTED.to_string(), names.into_bytes()),
                    (STATE_PII_COUNTS.to_string(), counts.into_bytes()),
                ],
            });
        }
        edits.set_state(STATE_PII_DETECTED, names);
        edits.set_state(STATE_PII_COUNTS, counts);
    }
    edits.body = result.body;
    match &config.moderation {
        // Moderation sees the masked texts: no PII leaves through it either.
        Some(moderation) => {
            let (headers, body) = moderation::build_call(moderation, &result.texts);
            let call = SideCall {
                cluster: moderation.cluster.clone(),
                headers,
                body,
                timeout: Duration::from_millis(moderation.timeout_ms),
            };
            RequestOutcome::Moderate { edits, call }
        }
        None => RequestOutcome::Decided(RequestDecision::Forward(edits)),
    }
}

/// After the moderation service answered (or failed): `None` resumes the request.
pub fn on_moderation(config: &Config, host: &dyn Host, verdict: Verdict) -> Option<ApiError> {
    let moderation = config.moderation.as_ref()?;
    match verdict {
        Verdict::Allowed => {
            metrics::moderation(host, "allowed");
            None
        }
        Verdict::Flagged(_) => {
            metrics::moderation(host, "flagged");
            Some(ApiError::bad_request("content_policy_violation", moderation.message.clone()))
        }
        Verdict::Failed(_) if moderation.failure_mode == FailureMode::Open => {
            metrics::moderation(host, "failed_open");
            None
        }
        Verdict::Failed(_) => {
            metrics::moderation(host, "failed_closed");
            Some(ApiError::service_unavailable(
                "moderation_unavailable",
                "The content moderation service is unavailable; the request was not forwarded.",
            ))
        }
    }
}

/// How the response body is handled.
enum Mode {
    /// Not inspected (nothing to scan, no body, or passed by configuration).
    Pass,
    /// Buffered to the end and masked as JSON.
    Json,
    /// Buffered to the end and masked as plain text.
    Text,
    /// Masked event by event.
    Sse(Box<SseMasker>),
    /// Replaced by this error (its status was set with the headers).
    Block(ApiError),
}

/// The response's headers, as the policy needs them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseHead<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub end_of_stream: bool,
}

/// What to do with one response body callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStep {
    /// Let it through as it is.
    Continue,
    /// Hold it (Envoy buffers) until the end.
    Pause,
    /// Replace this callback's bytes, then continue.
    Replace(Vec<u8>),
}

/// One response through pii-mask.
pub struct ResponseGuard {
    mode: Mode,
    reported: bool,
}

impl Default for ResponseGuard {
    fn default() -> Self {
        ResponseGuard { mode: Mode::Pass, reported: false }
    }
}

/// Header edits: set (`Some`) or remove (`None`).
pub type HeaderEdits = Vec<(&'static str, Option<String>)>;

impl ResponseGuard {
    /// At the response headers: picks the mode; returns the header edits.
    pub fn on_headers(&mut self, config: &Config, host: &dyn Host, scanned: bool, head: ResponseHead) -> HeaderEdits {
        if head.end_of_stream || !scanned || config.response.is_empty() {
            return Vec::new();
        }
        if !is_identity_encoding(head.content_encoding) {
            return self.unreadable_at_headers(config, host, "encoded");
        }
        self.mode = if is_event_stream(head.content_type) {
            Mode::Sse(Box::new(SseMasker::new(
                config.response.clone(),
                config.hash.clone(),
                aigw_shared::sse::DEFAULT_MAX_EVENT_BYTES,
            )))
        } else if is_json_content_type(head.content_type) {
            Mode::Json
        } else if head.content_type.is_none_or(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/")) {
            Mode::Text
        } else {
            return self.unreadable_at_headers(config, host, "content_type");
        };
        // The body may change length.
        vec![("content-length", None)]
    }

    /// The body cannot be inspected: withhold it (502) or pass it, as configured.
    fn unreadable_at_headers(&mut self, config: &Config, host: &dyn Host, reason: &str) -> HeaderEdits {
        let blocked = config.on_unreadable_response == UnreadableResponse::Block;
        metrics::unreadable(host, Direction::Response, reason, blocked);
        if !blocked {
            self.mode = Mode::Pass;
            return Vec::new();
        }
        let err = ApiError::unreadable_upstream(reason);
        let edits = vec![
            (":status", Some(err.status.to_string())),
            ("content-type", Some("application/json".to_string())),
            ("content-encoding", None),
            ("content-length", None),
        ];
        self.mode = Mode::Block(err);
        edits
    }

    /// One response body callback. `read` returns the bytes Envoy holds for
    /// this callback (called only when they are needed).
    pub fn on_body(
        &mut self,
        config: &Config,
        host: &dyn Host,
        shape: Option<ApiShape>,
        body_size: usize,
        end_of_stream: bool,
        read: &dyn Fn() -> Vec<u8>,
    ) -> BodyStep {
        match &mut self.mode {
            Mode::Pass => BodyStep::Continue,
            Mode::Block(err) => BodyStep::Replace(if end_of_stream { err.body() } else { Vec::new() }),
            Mode::Sse(masker) => {
                let input = read();
                let out = masker.feed(&input, end_of_stream);
                if end_of_stream || masker.stopped() {
                    self.report(config, host);
                }
                // Released exactly as it came (nothing masked, nothing held): writing the same
                // bytes back would be a host call (and a copy) for nothing.
                if out == input {
                    BodyStep::Continue
                } else {
                    BodyStep::Replace(out)
                }
            }
            Mode::Json | Mode::Text if body_size > config.max_body_bytes => {
                let blocked = config.on_unreadable_response == UnreadableResponse::Block;
                metrics::unreadable(host, Direction::Response, "too_large", blocked);
                if !blocked {
                    self.mode = Mode::Pass;
                    return BodyStep::Continue;
                }
                // The status went out already: the body carries the error.
                let err = ApiError::upstream_too_large();
                let replacement = if end_of_stream { err.body() } else { Vec::new() };
                self.mode = Mode::Block(err);
                BodyStep::Replace(replacement)
            }
            Mode::Json | Mode::Text if !end_of_stream => BodyStep::Pause,
            Mode::Json | Mode::Text => {
                let json = matches!(self.mode, Mode::Json);
                self.mode = Mode::Pass;
                let body = read();
                let mut findings = Findings::default();
                let result = if json {
                    response::mask_json(&body, shape, config, &mut findings)
                } else {
                    response::mask_text(&body, config, &mut findings)
                };
                metrics::report(host, Direction::Response, &config.response, &findings);
                match result {
                    Ok(Some(new_body)) => BodyStep::Replace(new_body),
                    Ok(None) => BodyStep::Continue,
                    Err(unreadable) => {
                        let blocked = config.on_unreadable_response == UnreadableResponse::Block;
                        metrics::unreadable(host, Direction::Response, unreadable.reason(), blocked);
                        if blocked {
                            BodyStep::Replace(ApiError::unreadable_upstream(unreadable.reason()).body())
                        } else {
                            BodyStep::Continue
                        }
                    }
                }
            }
        }
    }

    /// The response is withheld (replaced by a 502 at its headers): other
    /// filters learn it from `aigw.response.withheld`.
    pub fn withheld(&self) -> bool {
        matches!(self.mode, Mode::Block(_))
    }

    /// The stream ended (or was reset): reports a stream's findings once.
    pub fn report(&mut self, config: &Config, host: &dyn Host) {
        if self.reported {
            return;
        }
        if let Mode::Sse(masker) = &self.mode {
            metrics::report(host, Direction::Response, &config.response, &masker.findings);
            if masker.error.is_some() {
                metrics::unreadable(host, Direction::Response, "bad_event", true);
            }
            self.reported = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;
    use aigw_shared::host::fake::FakeHost;

    fn config(json: &str) -> Config {
        from_json(Some(json.as_bytes())).unwrap()
    }

    const CHAT: Option<ApiShape> = Some(ApiShape::OpenAiChat);

    #[test]
    fn request_scope_by_path_and_content_type() {
        let host = FakeHost::new();
        let all = config("{}");
        assert!(request_scope(&all, &host, CHAT, None, None).0);
        assert!(request_scope(&all, &host, None, Some("application/json"), None).0);
        assert!(!request_scope(&all, &host, None, Some("multipart/form-data"), None).0);
        assert_eq!(host.counter("aigw.pii_mask.pii_unreadable.direction.request.reason.content_type.passed"), 1);
        let skip = config(r#"{"other_paths": "skip"}"#);
        assert!(!request_scope(&skip, &host, None, Some("application/json"), None).0);
        assert!(!request_scope(&config(r#"{"request": false}"#), &host, CHAT, None, None).0);
        let pass = config(r#"{"on_unreadable_request": "pass"}"#);
        assert_eq!(request_scope(&pass, &host, CHAT, None, Some("gzip")).1.on_encoded, OnEncoded::Pass);
        assert_eq!(host.counter("aigw.pii_mask.pii_unreadable.direction.request.reason.encoded.passed"), 1);
    }

    #[test]
    fn request_masks_and_sets_filter_state() {
        let host = FakeHost::new();
        let body = br#"{"model":"m","messages":[{"role":"user","content":"mail ana@example.com"}]}"#;
        let RequestOutcome::Decided(RequestDecision::Forward(edits)) = on_request(&config("{}"), &host, CHAT, body)
        else {
            panic!("forwarded")
        };
        let new_body = String::from_utf8(edits.body.unwrap()).unwrap();
        assert!(new_body.contains("[EMAIL_ADDRESS]") && !new_body.contains("ana@example.com"));
        assert_eq!(
            edits.filter_state,
            vec![
                (STATE_PII_DETECTED.to_string(), b"EMAIL_ADDRESS".to_vec()),
                (STATE_PII_COUNTS.to_string(), b"EMAIL_ADDRESS:1".to_vec())
            ]
        );
    }

    #[test]
    fn request_rejects_with_the_entity_in_filter_state() {
        let host = FakeHost::new();
        let config = config(r#"{"entities": {"US_SSN": {"action": "reject"}}}"#);
        let body = br#"{"messages":[{"role":"user","content":"ssn 123-45-6789"}]}"#;
        let RequestOutcome::Decided(RequestDecision::Reply { error, filter_state, .. }) =
            on_request(&config, &host, CHAT, body)
        else {
            panic!("rejected")
        };
        assert_eq!((error.status, error.code), (400, "sensitive_data_detected"));
        assert_eq!(
            filter_state,
            vec![
                (STATE_PII_DETECTED.to_string(), b"US_SSN".to_vec()),
                (STATE_PII_COUNTS.to_string(), b"US_SSN:1".to_vec())
            ]
        );
    }

    #[test]
    fn moderation_call_carries_masked_text_and_failure_modes_apply() {
        let host = FakeHost::new();
        let closed = config(r#"{"moderation": {"cluster": "mod"}}"#);
        let body = br#"{"messages":[{"role":"user","content":"mail ana@example.com"}]}"#;
        let RequestOutcome::Moderate { call, .. } = on_request(&closed, &host, CHAT, body) else { panic!() };
        assert_eq!(call.cluster, "mod");
        assert!(!String::from_utf8_lossy(&call.body).contains("ana@example.com"));
        assert_eq!(on_moderation(&closed, &host, Verdict::Failed("timeout")).unwrap().status, 503);
        assert_eq!(host.counter("aigw.pii_mask.pii_moderation.failed_closed"), 1);
        let open = config(r#"{"moderation": {"cluster": "mod", "failure_mode": "open"}}"#);
        assert!(on_moderation(&open, &host, Verdict::Failed("timeout")).is_none());
        assert_eq!(on_moderation(&open, &host, Verdict::Flagged(vec![])).unwrap().status, 400);
        assert!(on_moderation(&open, &host, Verdict::Allowed).is_none());
    }

    #[test]
    fn encoded_responses_are_withheld_as_502_or_passed() {
        let host = FakeHost::new();
        let head = ResponseHead {
            content_type: Some("application/json"),
            content_encoding: Some("gzip"),
            end_of_stream: false,
        };
        let mut guard = ResponseGuard::default();
        let edits = guard.on_headers(&config("{}"), &host, true, head);
        assert!(edits.contains(&(":status", Some("502".to_string()))));
        let step = guard.on_body(&config("{}"), &host, CHAT, 3, true, &|| b"\x1f\x8b\x08".to_vec());
        let BodyStep::Replace(body) = step else { panic!() };
        assert!(String::from_utf8_lossy(&body).contains("unreadable_response"));

        let pass = config(r#"{"on_unreadable_response": "pass"}"#);
        let mut guard = ResponseGuard::default();
        assert!(guard.on_headers(&pass, &host, true, head).is_empty());
        assert_eq!(guard.on_body(&pass, &host, CHAT, 3, true, &Vec::new), BodyStep::Continue);
    }

    #[test]
    fn json_responses_are_masked_whole() {
        let host = FakeHost::new();
        let config = config("{}");
        let head = ResponseHead { content_type: Some("application/json"), ..Default::default() };
        let mut guard = ResponseGuard::default();
        assert_eq!(guard.on_headers(&config, &host, true, head), vec![("content-length", None)]);
        assert_eq!(guard.on_body(&config, &host, CHAT, 10, false, &Vec::new), BodyStep::Pause);
        let completion =
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"write to bo@example.org"}}]}"#;
        let BodyStep::Replace(body) =
            guard.on_body(&config, &host, CHAT, completion.len(), true, &|| completion.to_vec())
        else {
            panic!()
        };
        assert!(String::from_utf8(body).unwrap().contains("[EMAIL_ADDRESS]"));
    }

    #[test]
    fn oversize_json_response_is_withheld() {
        let host = FakeHost::new();
        let config = config(r#"{"max_body_bytes": 8}"#);
        let head = ResponseHead { content_type: Some("application/json"), ..Default::default() };
        let mut guard = ResponseGuard::default();
        guard.on_headers(&config, &host, true, head);
        assert_eq!(guard.on_body(&config, &host, CHAT, 9, false, &Vec::new), BodyStep::Replace(Vec::new()));
        let BodyStep::Replace(tail) = guard.on_body(&config, &host, CHAT, 4, true, &Vec::new) else { panic!() };
        assert!(String::from_utf8_lossy(&tail).contains("response_too_large"));
    }
}
