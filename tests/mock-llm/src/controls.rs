//! The `x-mock-*` request headers that choose the reply and inject faults.

use hyper::HeaderMap;
use std::time::Duration;

/// What text the mock answers with (`x-mock-mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The text of the last user message (the default).
    Echo,
    /// The whole request body as received, so a test sees exactly what reached the provider.
    Request,
    /// The given text (`fixed:<text>`).
    Fixed(String),
}

/// Every control a request can set. Parsed once per request; a malformed
/// value is a 400 from the mock (a test typo should fail loudly, not be ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controls {
    pub mode: Mode,
    /// `x-mock-status`: answer with this status and a provider-shaped error body.
    pub status: Option<u16>,
    /// `x-mock-retry-after`: copied into `retry-after` on an injected error.
    pub retry_after: Option<String>,
    /// `x-mock-delay-ms`: wait before the first byte (the response headers).
    pub delay: Duration,
    /// `x-mock-chunk-delay-ms`: wait between stream writes.
    pub chunk_delay: Duration,
    /// `x-mock-chunks`: split the reply text into exactly this many content chunks.
    pub chunks: Option<usize>,
    /// `x-mock-split`: write the response bytes in pieces of this many bytes,
    /// ignoring event, line and UTF-8 boundaries.
    pub split: Option<usize>,
    /// `x-mock-encoding: gzip`: gzip the response body and say so in `content-encoding`.
    pub gzip: bool,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            mode: Mode::Echo,
            status: None,
            retry_after: None,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunks: None,
            split: None,
            gzip: false,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(|v| Some(v.trim())).map_err(|_| format!("{name}: not valid text")),
    }
}

fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, String> {
    match header(headers, name)? {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| format!("{name}: not a number: {text:?}")),
    }
}

impl Controls {
    /// Reads the controls from the request headers. `backend` is this mock's
    /// name: when `x-mock-fault-backend` names another backend, the fault and
    /// delay controls are ignored here (so a failover test can break only the
    /// primary while the same headers reach both).
    pub fn from_headers(headers: &HeaderMap, backend: &str) -> Result<Controls, String> {
        let mut controls = Controls::default();
        if let Some(mode) = header(headers, "x-mock-mode")? {
            controls.mode = match mode {
                "echo" => Mode::Echo,
                "request" => Mode::Request,
                other => match other.strip_prefix("fixed:") {
                    Some(text) => Mode::Fixed(text.to_string()),
                    None => return Err(format!("x-mock-mode: expected echo, request or fixed:<text>, got {other:?}")),
                },
            };
        }
        controls.chunk_delay = Duration::from_millis(number(headers, "x-mock-chunk-delay-ms")?.unwrap_or(0));
        controls.chunks = number(headers, "x-mock-chunks")?;
        if controls.chunks == Some(0) {
            return Err("x-mock-chunks: must be at least 1".to_string());
        }
        controls.split = number(headers, "x-mock-split")?;
        if controls.split == Some(0) {
            return Err("x-mock-split: must be at least 1".to_string());
        }
        controls.gzip = match header(headers, "x-mock-encoding")? {
            None | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => return Err(format!("x-mock-encoding: expected gzip or identity, got {other:?}")),
        };
        let faults_apply = match header(headers, "x-mock-fault-backend")? {
            None => true,
            Some(names) => names.split(',').any(|name| name.trim() == backend),
        };
        let status: Option<u16> = number(headers, "x-mock-status")?;
        let delay = Duration::from_millis(number(headers, "x-mock-delay-ms")?.unwrap_or(0));
        if let Some(code) = status {
            if !(200..=599).contains(&code) {
                return Err(format!("x-mock-status: not an HTTP status: {code}"));
            }
        }
        if faults_apply {
            controls.status = status.filter(|code| *code != 200);
            controls.retry_after = header(headers, "x-mock-retry-after")?.map(str::to_string);
            controls.delay = delay;
        }
        Ok(controls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn defaults_to_echo_without_faults() {
        assert_eq!(Controls::from_headers(&HeaderMap::new(), "mock").unwrap(), Controls::default());
    }

    #[test]
    fn parses_every_control() {
        let c = Controls::from_headers(
            &headers(&[
                ("x-mock-mode", "fixed:hello: world"),
                ("x-mock-status", "429"),
                ("x-mock-retry-after", "7"),
                ("x-mock-delay-ms", "5"),
                ("x-mock-chunk-delay-ms", "6"),
                ("x-mock-chunks", "3"),
                ("x-mock-split", "7"),
                ("x-mock-encoding", "gzip"),
            ]),
            "mock",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Fixed("hello: world".into()));
        assert_eq!(c.status, Some(429));
        assert_eq!(c.retry_after.as_deref(), Some("7"));
        assert_eq!(c.delay, Duration::from_millis(5));
        assert_eq!(c.chunk_delay, Duration::from_millis(6));
        assert_eq!((c.chunks, c.split, c.gzip), (Some(3), Some(7), true));
    }

    #[test]
    fn faults_target_a_named_backend() {
        let h = headers(&[("x-mock-status", "503"), ("x-mock-fault-backend", "primary"), ("x-mock-delay-ms", "9")]);
        assert_eq!(Controls::from_headers(&h, "primary").unwrap().status, Some(503));
        let other = Controls::from_headers(&h, "secondary").unwrap();
        assert_eq!((other.status, other.delay), (None, Duration::ZERO));
    }

    #[test]
    fn rejects_malformed_values() {
        for (name, value) in [
            ("x-mock-mode", "shout"),
            ("x-mock-status", "abc"),
            ("x-mock-status", "99"),
            ("x-mock-chunks", "0"),
            ("x-mock-split", "-1"),
            ("x-mock-encoding", "br"),
        ] {
            assert!(Controls::from_headers(&headers(&[(name, value)]), "mock").is_err(), "{name}: {value}");
        }
    }
}
