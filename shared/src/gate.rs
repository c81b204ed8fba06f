//! The request-body gate: the one state machine every filter uses to decide
//! whether to read a request body, to refuse what it cannot read, and to know
//! when the body is complete.
//!
//! Two rules make it safe in every Envoy that loads the filters:
//! - **The headers are never paused.** Istio's `WasmPlugin` and Envoy Gateway
//!   cannot set `allow_on_headers_stop_iteration`, and without it a paused
//!   header callback never gets its body. The gate lets the headers continue
//!   and pauses the *body* until it is complete; Envoy's `buffer` filter,
//!   placed after the aigw filters, holds the headers from the router until
//!   then, so a filter can still set headers, rewrite the body and clear the
//!   route cache when the body is complete (envoy-config/README.md).
//! - **A body completes at end of stream or at trailers**, whichever comes
//!   first: an HTTP/2 request with trailers gets exactly the same treatment as
//!   the same request without them.
//!
//! On the LLM endpoints ([`Endpoint`]) the gate also refuses what no provider
//! should see, for every filter alike: a body-carrying endpoint called with
//! another method than POST (405) or with an empty body (400).

use crate::api::Endpoint;
use crate::body::is_identity_encoding;
use crate::ApiError;

/// What the gate needs from the request headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub content_encoding: Option<&'a str>,
    pub content_length: Option<&'a str>,
    /// The request ended with its headers (no body, no trailers).
    pub end_of_stream: bool,
}

impl RequestHead<'_> {
    pub fn endpoint(&self) -> Option<Endpoint> {
        Endpoint::from_path(self.path)
    }

    /// The declared `content-length`, when it is a number.
    pub fn declared_length(&self) -> Option<u64> {
        self.content_length.and_then(|value| value.trim().parse().ok())
    }
}

/// What to do with a body in a `content-encoding` the filter cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEncoded {
    /// 415: the client must send it uncompressed.
    Reject,
    /// Pass it on unread (a filter that only observes).
    Pass,
}

/// What to do with a body over `max_body_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOversize {
    /// 413.
    Reject,
    /// Stop reading and let the filter decide from the size ([`GateStep::Oversize`]).
    Release,
}

/// A filter's rules for its gate.
#[derive(Debug, Clone, Copy)]
pub struct GatePolicy {
    pub max_body_bytes: usize,
    pub on_encoded: OnEncoded,
    pub on_oversize: OnOversize,
}

impl GatePolicy {
    /// Refuse what cannot be read: the policy of a guardrail.
    pub fn strict(max_body_bytes: usize) -> Self {
        GatePolicy { max_body_bytes, on_encoded: OnEncoded::Reject, on_oversize: OnOversize::Reject }
    }
}

/// The gate's answer at the request headers. The headers always continue
/// (see the module docs); a reply is sent instead of continuing.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// The body is not read by this filter.
    Pass,
    /// The body is read: body callbacks pause until it is complete.
    Collect,
    /// Refused: answer with this error.
    Reject(ApiError),
}

/// The gate's answer at a body or trailers callback.
#[derive(Debug, Clone, PartialEq)]
pub enum GateStep {
    /// Not collecting: let the data through.
    Pass,
    /// Collecting: pause (Envoy buffers) until more arrives.
    Wait,
    /// The whole body is buffered: `size` bytes.
    Complete { size: usize },
    /// Over the limit with [`OnOversize::Release`]: `size` bytes seen, no longer collected.
    Oversize { size: usize },
    /// Refused: answer with this error.
    Reject(ApiError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Not interested in this request's body.
    #[default]
    Idle,
    /// Not reading the body, but watching that an LLM request has one.
    Watching { seen_bytes: bool },
    /// Reading the body: `seen` bytes buffered so far.
    Collecting { seen: usize, requires_body: bool },
    /// Finished (completed, released or refused).
    Done,
}

/// One request's gate.
#[derive(Debug, Clone, Default)]
pub struct BodyGate {
    state: State,
    policy: Option<GatePolicy>,
}

fn empty_body() -> ApiError {
    ApiError::bad_request("invalid_request", "The request body is empty; this endpoint takes a JSON body.")
}

impl BodyGate {
    /// At the request headers. `wants_body`: whether this filter reads the
    /// body of this request (its own scope: configured paths, content types).
    pub fn open(&mut self, head: &RequestHead, wants_body: bool, policy: GatePolicy) -> Opening {
        self.policy = Some(policy);
        let requires_body = head.endpoint().is_some_and(Endpoint::takes_body);
        if requires_body {
            if !head.method.eq_ignore_ascii_case("POST") {
                // A GET without a body on these paths lists or reads stored
                // objects (e.g. OpenAI's stored chat completions): not ours.
                if head.end_of_stream {
                    return Opening::Pass;
                }
                self.state = State::Done;
                return Opening::Reject(ApiError::method_not_allowed(head.method));
            }
            if head.end_of_stream {
                self.state = State::Done;
                return Opening::Reject(empty_body());
            }
        }
        if head.end_of_stream {
            return Opening::Pass;
        }
        let watch = if requires_body { State::Watching { seen_bytes: false } } else { State::Idle };
        if !wants_body {
            self.state = watch;
            return Opening::Pass;
        }
        if !is_identity_encoding(head.content_encoding) {
            if policy.on_encoded == OnEncoded::Pass {
                self.state = watch;
                return Opening::Pass;
            }
            self.state = State::Done;
            return Opening::Reject(ApiError::unsupported_media(
                "The gateway inspects request bodies and does not accept a content-encoding; send the body uncompressed.",
            ));
        }
        let max = u64::try_from(policy.max_body_bytes).unwrap_or(u64::MAX);
        if head.declared_length().is_some_and(|length| length > max) && policy.on_oversize == OnOversize::Reject {
            self.state = State::Done;
            return Opening::Reject(ApiError::payload_too_large(policy.max_body_bytes));
        }
        self.state = State::Collecting { seen: 0, requires_body };
        Opening::Collect
    }

    /// Whether the gate is collecting the body (the filter pauses body callbacks).
    pub fn is_collecting(&self) -> bool {
        matches!(self.state, State::Collecting { .. })
    }

    /// At a request body callback. While collecting, `body_size` is what Envoy
    /// has buffered so far; while passing, the size of this chunk.
    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> GateStep {
        match self.state {
            State::Collecting { requires_body, .. } => {
                let max = self.policy.map_or(usize::MAX, |policy| policy.max_body_bytes);
                if body_size > max {
                    self.state = State::Done;
                    return match self.policy.map(|policy| policy.on_oversize) {
                        Some(OnOversize::Release) => GateStep::Oversize { size: body_size },
                        _ => GateStep::Reject(ApiError::payload_too_large(max)),
                    };
                }
                if !end_of_stream {
                    self.state = State::Collecting { seen: body_size, requires_body };
                    return GateStep::Wait;
                }
                self.complete(body_size, requires_body)
            }
            State::Watching { seen_bytes } => {
                let seen_bytes = seen_bytes || body_size > 0;
                if end_of_stream && !seen_bytes {
                    self.state = State::Done;
                    return GateStep::Reject(empty_body());
                }
                self.state = if end_of_stream { State::Done } else { State::Watching { seen_bytes } };
                GateStep::Pass
            }
            State::Idle | State::Done => GateStep::Pass,
        }
    }

    /// At the request trailers: the body is complete.
    pub fn on_trailers(&mut self) -> GateStep {
        match self.state {
            State::Collecting { seen, requires_body } => self.complete(seen, requires_body),
            State::Watching { seen_bytes: false } => {
                self.state = State::Done;
                GateStep::Reject(empty_body())
            }
            _ => {
                self.state = State::Done;
                GateStep::Pass
            }
        }
    }

    fn complete(&mut self, size: usize, requires_body: bool) -> GateStep {
        self.state = State::Done;
        if size == 0 && requires_body {
            return GateStep::Reject(empty_body());
        }
        GateStep::Complete { size }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "/v1/chat/completions";

    fn head<'a>(method: &'a str, path: &'a str, end_of_stream: bool) -> RequestHead<'a> {
        RequestHead { method, path, end_of_stream, ..Default::default() }
    }

    fn strict() -> GatePolicy {
        GatePolicy::strict(100)
    }

    #[test]
    fn completes_at_end_of_stream() {
        let mut gate = BodyGate::default();
        assert_eq!(gate.open(&head("POST", CHAT, false), true, strict()), Opening::Collect);
        assert_eq!(gate.on_body(10, false), GateStep::Wait);
        assert_eq!(gate.on_body(20, true), GateStep::Complete { size: 20 });
        assert_eq!(gate.on_body(20, true), GateStep::Pass);
    }

    #[test]
    fn trailers_complete_the_body_like_end_of_stream() {
        let mut gate = BodyGate::default();
        gate.open(&head("POST", CHAT, false), true, strict());
        assert_eq!(gate.on_body(20, false), GateStep::Wait);
        assert_eq!(gate.on_trailers(), GateStep::Complete { size: 20 });
        // Trailers after a completed body change nothing.
        assert_eq!(gate.on_trailers(), GateStep::Pass);
    }

    #[test]
    fn empty_bodies_on_llm_endpoints_are_refused() {
        let mut gate = BodyGate::default();
        let Opening::Reject(err) = gate.open(&head("POST", CHAT, true), true, strict()) else { panic!() };
        assert_eq!((err.status, err.code), (400, "invalid_request"));
        // A zero-length body that ends at its first body callback, or at trailers.
        let mut gate = BodyGate::default();
        gate.open(&head("POST", CHAT, false), true, strict());
        assert!(matches!(gate.on_body(0, true), GateStep::Reject(err) if err.status == 400));
        let mut gate = BodyGate::default();
        gate.open(&head("POST", CHAT, false), true, strict());
        assert!(matches!(gate.on_trailers(), GateStep::Reject(err) if err.status == 400));
        // Also for a filter that does not read the body.
        let mut gate = BodyGate::default();
        assert_eq!(gate.open(&head("POST", CHAT, false), false, strict()), Opening::Pass);
        assert!(matches!(gate.on_body(0, true), GateStep::Reject(err) if err.status == 400));
        let mut gate = BodyGate::default();
        gate.open(&head("POST", CHAT, false), false, strict());
        assert_eq!(gate.on_body(5, false), GateStep::Pass);
        assert_eq!(gate.on_body(0, true), GateStep::Pass);
        // Other paths may be bodiless.
        let mut gate = BodyGate::default();
        assert_eq!(gate.open(&head("POST", "/upload", true), true, strict()), Opening::Pass);
    }

    #[test]
    fn other_methods_with_a_body_get_405() {
        let mut gate = BodyGate::default();
        let Opening::Reject(err) = gate.open(&head("PUT", CHAT, false), true, strict()) else { panic!() };
        assert_eq!(err.status, 405);
        // GET without a body (listing stored objects, /v1/models) passes.
        assert_eq!(BodyGate::default().open(&head("GET", CHAT, true), true, strict()), Opening::Pass);
        assert_eq!(BodyGate::default().open(&head("GET", "/v1/models", true), true, strict()), Opening::Pass);
        // Lower-case method names are the same method.
        assert_eq!(BodyGate::default().open(&head("post", CHAT, false), true, strict()), Opening::Collect);
    }

    #[test]
    fn encodings_and_sizes() {
        let mut encoded = head("POST", CHAT, false);
        encoded.content_encoding = Some("gzip");
        let Opening::Reject(err) = BodyGate::default().open(&encoded, true, strict()) else { panic!() };
        assert_eq!(err.status, 415);
        let pass = GatePolicy { on_encoded: OnEncoded::Pass, ..strict() };
        assert_eq!(BodyGate::default().open(&encoded, true, pass), Opening::Pass);

        let mut declared = head("POST", CHAT, false);
        declared.content_length = Some("101");
        let Opening::Reject(err) = BodyGate::default().open(&declared, true, strict()) else { panic!() };
        assert_eq!(err.status, 413);

        let mut gate = BodyGate::default();
        gate.open(&head("POST", CHAT, false), true, strict());
        assert!(matches!(gate.on_body(101, false), GateStep::Reject(err) if err.status == 413));

        let release = GatePolicy { on_oversize: OnOversize::Release, ..strict() };
        let mut gate = BodyGate::default();
        assert_eq!(gate.open(&declared, true, release), Opening::Collect);
        assert_eq!(gate.on_body(101, false), GateStep::Oversize { size: 101 });
        assert_eq!(gate.on_body(200, true), GateStep::Pass);
    }

    #[test]
    fn filters_that_skip_the_body_pass_it() {
        let mut gate = BodyGate::default();
        assert_eq!(gate.open(&head("POST", "/upload", false), false, strict()), Opening::Pass);
        assert!(!gate.is_collecting());
        assert_eq!(gate.on_body(0, true), GateStep::Pass);
        assert_eq!(gate.on_trailers(), GateStep::Pass);
    }
}
