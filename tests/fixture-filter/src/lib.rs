//! A small proxy-wasm filter for the harness's own tests (issue #3).
//!
//! It is not shipped. Each behaviour the harness must host is switched on by
//! the request header `x-fixture-action` (a comma-separated list), so one
//! build covers every test:
//!
//! | action          | request side                                                        | response side |
//! |-----------------|---------------------------------------------------------------------|---------------|
//! | (always)        | sets `x-fixture-seen: <header_value>`, removes `x-fixture-remove`, counts the request | sets `x-fixture-response: 1` |
//! | `local-reply`   | answers 403 with a JSON body and stops                              | |
//! | `replace-body`  | drops `content-length`, buffers the body, forwards it upper-cased   | same for the response body |
//! | `pause-headers` | holds the headers until the body is complete, then adds `x-body-bytes` | |
//! | `http-call`     | calls cluster `authz` and holds the request; 200 adds `x-authz: <body>` and resumes, anything else answers 403, a failed call 503 | |
//! | `count`         | adds 1 to the shared-data counter `fixture.count` (CAS, retried) and sets `x-count` | |
//! | `properties`    | copies the route name and the JWT `sub` claim into `x-route` / `x-jwt-sub`, sets filter state `fixture.seen` | |
//! | `panic`         | panics (the harness must report the trap)                           | |
//! | `spin`          | loops forever (the harness must interrupt it)                       | |
//! | `late-header-read` | lets the headers go, then reads a request header in the body callback (Envoy answers BadArgument: the SDK panics) | |
//! | `reply-on-response` |                                                                  | answers 502 from the response headers callback |
//!
//! Configuration: `{"header_value": "...", "tick_period_ms": N, "authz_cluster": "..."}`; unknown fields are
//! rejected so that a bad configuration makes `on_configure` return false.

use aigw_shared::counter::{self, DEFAULT_CAS_RETRIES};
use aigw_shared::host::ProxyWasmHost;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use serde::Deserialize;
use std::rc::Rc;
use std::time::Duration;

// The Wasm entry point (`_initialize`). Only built for Wasm: natively the
// crate is a library whose logic the tests call directly.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| new_root());
}}

/// A new root context: one per VM and plugin configuration.
pub fn new_root() -> Box<dyn RootContext> {
    Box::new(Root::default())
}

const ACTION_HEADER: &str = "x-fixture-action";
const COUNTER_KEY: &str = "fixture.count";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_header_value")]
    header_value: String,
    #[serde(default)]
    tick_period_ms: u64,
    #[serde(default = "default_authz_cluster")]
    authz_cluster: String,
}

fn default_header_value() -> String {
    "1".to_string()
}

fn default_authz_cluster() -> String {
    "authz".to_string()
}

impl Default for Config {
    fn default() -> Self {
        Config { header_value: default_header_value(), tick_period_ms: 0, authz_cluster: default_authz_cluster() }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Metrics {
    requests: u32,
    active: u32,
    body_bytes: u32,
    ticks: u32,
}

impl Metrics {
    fn define() -> Option<Metrics> {
        Some(Metrics {
            requests: hostcalls::define_metric(MetricType::Counter, "fixture.requests_total").ok()?,
            active: hostcalls::define_metric(MetricType::Gauge, "fixture.active_streams").ok()?,
            body_bytes: hostcalls::define_metric(MetricType::Histogram, "fixture.request_body_bytes").ok()?,
            ticks: hostcalls::define_metric(MetricType::Counter, "fixture.ticks_total").ok()?,
        })
    }
}

#[derive(Default)]
struct Root {
    config: Rc<Config>,
    metrics: Metrics,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        log(LogLevel::Info, &format!("fixture: vm started ({vm_configuration_size} bytes of vm configuration)"));
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = match self.get_plugin_configuration() {
            None => Config::default(),
            Some(bytes) => match serde_json::from_slice::<Config>(&bytes) {
                Ok(config) => config,
                Err(err) => {
                    log(LogLevel::Error, &format!("fixture: invalid configuration: {err}"));
                    return false;
                }
            },
        };
        let Some(metrics) = Metrics::define() else {
            log(LogLevel::Error, "fixture: could not define metrics");
            return false;
        };
        if config.tick_period_ms > 0 {
            self.set_tick_period(Duration::from_millis(config.tick_period_ms));
        }
        self.metrics = metrics;
        self.config = Rc::new(config);
        log(LogLevel::Info, "fixture: configured");
        true
    }

    fn on_tick(&mut self) {
        let _ = hostcalls::increment_metric(self.metrics.ticks, 1);
        log(LogLevel::Debug, "fixture: tick");
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: Rc::clone(&self.config),
            metrics: self.metrics,
            actions: Vec::new(),
            request_body_seen: 0,
            waiting_for_call: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Rc<Config>,
    metrics: Metrics,
    actions: Vec<String>,
    request_body_seen: usize,
    /// An http call is in flight: the request stays paused until it is answered.
    waiting_for_call: bool,
}

impl Stream {
    fn has(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }

    fn deny(&self, status: u32, message: &str) {
        let body = format!("{{\"error\":\"{message}\"}}");
        self.send_http_response(
            status,
            vec![("content-type", "application/json"), ("x-fixture", "denied")],
            Some(body.as_bytes()),
        );
    }
}

impl Context for Stream {
    fn on_http_call_response(&mut self, _token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        self.waiting_for_call = false;
        if num_headers == 0 {
            // Envoy reports a failed call (reset, timeout, no cluster) with no headers.
            log(LogLevel::Warn, "fixture: authz call failed");
            self.deny(503, "authz unavailable");
            return;
        }
        let status = self.get_http_call_response_header(":status").unwrap_or_default();
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        if status == "200" {
            let verdict = String::from_utf8_lossy(&body).into_owned();
            self.set_http_request_header("x-authz", Some(&verdict));
            self.resume_http_request();
        } else {
            log(LogLevel::Info, &format!("fixture: authz answered {status}"));
            self.deny(403, "denied by authz");
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let _ = hostcalls::increment_metric(self.metrics.requests, 1);
        let _ = hostcalls::increment_metric(self.metrics.active, 1);
        self.actions = self
            .get_http_request_header(ACTION_HEADER)
            .map(|value| value.split(',').map(|a| a.trim().to_string()).collect())
            .unwrap_or_default();

        self.set_http_request_header("x-fixture-seen", Some(&self.config.header_value));
        self.set_http_request_header("x-fixture-remove", None);

        if self.has("panic") {
            panic_on_purpose();
        }
        if self.has("spin") {
            let mut turns = 0u64;
            loop {
                turns = std::hint::black_box(turns.wrapping_add(1));
            }
        }
        if self.has("local-reply") {
            self.deny(403, "denied by fixture");
            return Action::Pause;
        }
        if self.has("properties") {
            if let Some(route) = self.get_property(vec!["xds", "route_name"]) {
                self.set_http_request_header("x-route", Some(&String::from_utf8_lossy(&route)));
            }
            let sub_path = vec!["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload", "sub"];
            if let Some(sub) = self.get_property(sub_path) {
                self.set_http_request_header("x-jwt-sub", Some(&String::from_utf8_lossy(&sub)));
            }
            self.set_property(vec!["fixture.seen"], Some(b"yes"));
        }
        if self.has("probe-property") {
            // Reports the raw bytes Envoy answers for a property path (segments
            // separated by `/`), so tests can check Envoy's serialisation.
            if let Some(path) = self.get_http_request_header("x-fixture-property") {
                let segments: Vec<&str> = path.split('/').collect();
                let hex: String = match self.get_property(segments) {
                    Some(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
                    None => "absent".to_string(),
                };
                self.set_http_request_header("x-fixture-property-hex", Some(&hex));
            }
        }
        if self.has("count") {
            match counter::add(&ProxyWasmHost, COUNTER_KEY, 1, DEFAULT_CAS_RETRIES) {
                Ok(value) => self.set_http_request_header("x-count", Some(&value.to_string())),
                Err(err) => {
                    log(LogLevel::Error, &format!("fixture: counter update failed: {err:?}"));
                    self.deny(500, "counter update failed");
                    return Action::Pause;
                }
            }
        }
        if self.has("replace-body") {
            self.set_http_request_header("content-length", None);
        }
        if self.has("http-call") {
            let headers =
                vec![(":method", "POST"), (":path", "/check"), (":authority", "authz.local"), ("x-check", "1")];
            let call = self.dispatch_http_call(
                &self.config.authz_cluster,
                headers,
                Some(b"check me"),
                vec![],
                Duration::from_millis(2500),
            );
            return match call {
                Ok(_) => {
                    self.waiting_for_call = true;
                    Action::Pause
                }
                Err(status) => {
                    log(LogLevel::Error, &format!("fixture: dispatch_http_call failed: {status:?}"));
                    self.deny(500, "could not call authz");
                    Action::Pause
                }
            };
        }
        if self.has("pause-headers") {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_body_seen = body_size;
        if self.has("late-header-read") {
            // A bug on purpose: the headers were forwarded, Envoy no longer exposes them.
            let _ = self.get_http_request_header(":path");
        }
        if self.waiting_for_call {
            // Returning Continue here would also release the paused headers.
            return Action::Pause;
        }
        let buffering = self.has("replace-body") || self.has("pause-headers");
        if buffering && !end_of_stream {
            return Action::Pause;
        }
        if end_of_stream {
            let _ = hostcalls::record_metric(self.metrics.body_bytes, body_size as u64);
        }
        if self.has("replace-body") {
            let body = self.get_http_request_body(0, body_size).unwrap_or_default();
            self.set_http_request_body(0, body_size, &body.to_ascii_uppercase());
        }
        if self.has("pause-headers") {
            self.set_http_request_header("x-body-bytes", Some(&body_size.to_string()));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-fixture-response", Some("1"));
        if self.has("reply-on-response") {
            self.send_http_response(502, vec![("x-fixture", "bad-upstream")], Some(b"bad upstream"));
            return Action::Pause;
        }
        if self.has("replace-body") {
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.has("replace-body") {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_response_body(0, body_size).unwrap_or_default();
        self.set_http_response_body(0, body_size, &body.to_ascii_uppercase());
        Action::Continue
    }

    fn on_log(&mut self) {
        let _ = hostcalls::increment_metric(self.metrics.active, -1);
        self.set_property(vec!["fixture.request_body_bytes"], Some(self.request_body_seen.to_string().as_bytes()));
    }
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// The harness must turn a guest panic (an `unreachable` trap with
/// panic=abort) into a clear test failure; this is how the fixture causes one.
#[allow(clippy::panic)]
fn panic_on_purpose() -> ! {
    panic!("fixture: panic requested by x-fixture-action")
}
