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
    /// `x-mock-abort-after`: after this many body writes, drop the connection
    /// mid-stream (no final chunk): a provider dying after the client got bytes.
    pub abort_after: Option<usize>,
    /// `x-mock-finish`: how the completion ends.
    pub finish: Finish,
    /// `x-mock-tool-call: <name> <json arguments>`: the reply also calls this tool.
    pub tool_call: Option<ToolCall>,
    /// `x-mock-cached-tokens`: prompt tokens reported as read from the prompt cache.
    pub cached_tokens: u64,
    /// `x-mock-cache-write-tokens`: prompt tokens reported as written to the cache (Anthropic).
    pub cache_write_tokens: u64,
}

/// How a completion ends (`x-mock-finish`), in OpenAI's terms; Anthropic's
/// `stop_reason` is derived (`end_turn`, `max_tokens`, `refusal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Finish {
    #[default]
    Stop,
    Length,
    ContentFilter,
}

/// A tool call the reply makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as JSON text (validated).
    pub arguments: String,
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
            abort_after: None,
            finish: Finish::Stop,
            tool_call: None,
            cached_tokens: 0,
            cache_write_tokens: 0,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        // UTF-8 is accepted (`x-mock-mode: fixed:Négatif` as curl sends it), not only visible ASCII.
        Some(value) => std::str::from_utf8(value.as_bytes())
            .map(|v| Some(v.trim()))
            .map_err(|_| format!("{name}: not valid UTF-8")),
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
        controls.finish = match header(headers, "x-mock-finish")? {
            None | Some("stop") => Finish::Stop,
            Some("length") => Finish::Length,
            Some("content_filter") => Finish::ContentFilter,
            Some(other) => {
                return Err(format!("x-mock-finish: expected stop, length or content_filter, got {other:?}"))
            }
        };
        if let Some(call) = header(headers, "x-mock-tool-call")? {
            let (name, arguments) = call.split_once(' ').unwrap_or((call, "{}"));
            let arguments = arguments.trim();
            if name.is_empty() || serde_json::from_str::<serde_json::Value>(arguments).map_or(true, |v| !v.is_object())
            {
                return Err("x-mock-tool-call: expected `<name> <JSON object of arguments>`".to_string());
            }
            controls.tool_call = Some(ToolCall { name: name.to_string(), arguments: arguments.to_string() });
        }
        controls.cached_tokens = number(headers, "x-mock-cached-tokens")?.unwrap_or(0);
        controls.cache_write_tokens = number(headers, "x-mock-cache-write-tokens")?.unwrap_or(0);
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
        let abort_after = number(headers, "x-mock-abort-after")?;
        if faults_apply {
            controls.abort_after = abort_after;
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
    fn utf8_header_values_are_accepted() {
        let mut map = HeaderMap::new();
        map.insert("x-mock-mode", HeaderValue::from_bytes("fixed:Négatif".as_bytes()).unwrap());
        let controls = Controls::from_headers(&map, "mock").unwrap();
        assert_eq!(controls.mode, Mode::Fixed("Négatif".to_string()));
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
    fn parses_completion_shape_controls() {
        let c = Controls::from_headers(
            &headers(&[
                ("x-mock-finish", "length"),
                ("x-mock-tool-call", r#"get_weather {"city": "Paris"}"#),
                ("x-mock-cached-tokens", "4"),
                ("x-mock-cache-write-tokens", "2"),
                ("x-mock-abort-after", "3"),
            ]),
            "mock",
        )
        .unwrap();
        assert_eq!(c.finish, Finish::Length);
        let call = c.tool_call.unwrap();
        assert_eq!((call.name.as_str(), call.arguments.as_str()), ("get_weather", r#"{"city": "Paris"}"#));
        assert_eq!((c.cached_tokens, c.cache_write_tokens, c.abort_after), (4, 2, Some(3)));
        let bare = Controls::from_headers(&headers(&[("x-mock-tool-call", "ping")]), "mock").unwrap();
        assert_eq!(bare.tool_call.unwrap().arguments, "{}");
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
            ("x-mock-finish", "tool_calls"),
            ("x-mock-tool-call", "f [1]"),
            ("x-mock-tool-call", "f {bad"),
            ("x-mock-abort-after", "x"),
        ] {
            assert!(Controls::from_headers(&headers(&[(name, value)]), "mock").is_err(), "{name}: {value}");
        }
    }
}
