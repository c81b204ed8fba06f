//! Request and response bodies: size limits, encodings and JSON parsing, each
//! failure mapped to the client-facing error it deserves.

use crate::error::ApiError;
use serde_json::Value;

/// Default cap on a body a filter buffers: 4 MiB fits the largest prompts of
/// current context windows with room to spare, while keeping a VM's memory in
/// check. Operators can raise it per filter (`max_body_bytes`).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// 413 if a body of `size` bytes is over `max`.
pub fn check_body_size(size: usize, max: usize) -> Result<(), ApiError> {
    if size > max {
        Err(ApiError::payload_too_large(max))
    } else {
        Ok(())
    }
}

/// A byte buffer that refuses to grow past its maximum. Used where a filter
/// must keep part of a body itself (streamed responses); for whole request
/// bodies Envoy does the buffering and the filter checks the size.
#[derive(Debug, Default)]
pub struct BoundedBuffer {
    data: Vec<u8>,
    max: usize,
}

impl BoundedBuffer {
    pub fn new(max: usize) -> Self {
        BoundedBuffer { data: Vec::new(), max }
    }

    /// Appends `chunk`, or answers 413 and keeps the buffer as it was.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        check_body_size(self.data.len() + chunk.len(), self.max)?;
        self.data.extend_from_slice(chunk);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }
}

/// Whether a `content-encoding` header value means the bytes are readable as
/// they are. Absent, empty and `identity` are; gzip, br, zstd and anything
/// unknown are not.
pub fn is_identity_encoding(content_encoding: Option<&str>) -> bool {
    match content_encoding.map(str::trim) {
        None | Some("") => true,
        Some(value) => value.eq_ignore_ascii_case("identity"),
    }
}

/// Whether a `content-type` is JSON (`application/json`, `…+json`, any params).
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else { return false };
    let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}

/// Whether a `content-type` is an SSE stream.
pub fn is_event_stream(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else { return false };
    value.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/event-stream")
}

/// Parses a chat request body: valid UTF-8, valid JSON, and a JSON object.
/// Each failure gets its own 400 so the client knows what to fix.
pub fn parse_json_object(bytes: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        ApiError::bad_request(
            "invalid_utf8",
            format!("The request body is not valid UTF-8 (at byte {}).", err.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|err| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "The request body is not valid JSON: {} at line {} column {}.",
                err_kind(&err),
                err.line(),
                err.column()
            ),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request("invalid_request", "The request body must be a JSON object."));
    }
    Ok(value)
}

/// serde_json's message without the echoed input, which may contain prompt text.
fn err_kind(err: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match err.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "invalid data",
        Category::Io => "read error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit_gives_413() {
        assert!(check_body_size(10, 10).is_ok());
        assert_eq!(check_body_size(11, 10).unwrap_err().status, 413);
    }

    #[test]
    fn bounded_buffer_refuses_overflow_and_keeps_data() {
        let mut buffer = BoundedBuffer::new(8);
        buffer.push(b"12345").unwrap();
        let err = buffer.push(b"6789").unwrap_err();
        assert_eq!(err.status, 413);
        assert_eq!(buffer.as_slice(), b"12345");
        buffer.push(b"678").unwrap();
        assert_eq!(buffer.len(), 8);
        assert_eq!(buffer.take(), b"12345678");
        assert!(buffer.is_empty());
    }

    #[test]
    fn encodings() {
        assert!(is_identity_encoding(None));
        assert!(is_identity_encoding(Some("")));
        assert!(is_identity_encoding(Some("Identity")));
        assert!(!is_identity_encoding(Some("gzip")));
        assert!(!is_identity_encoding(Some("br")));
        assert!(!is_identity_encoding(Some("x-unknown")));
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type(Some("application/json; charset=utf-8")));
        assert!(is_json_content_type(Some("application/problem+json")));
        assert!(!is_json_content_type(Some("text/plain")));
        assert!(!is_json_content_type(None));
        assert!(is_event_stream(Some("text/event-stream; charset=utf-8")));
        assert!(!is_event_stream(Some("application/json")));
    }

    #[test]
    fn json_object_errors() {
        assert_eq!(parse_json_object(&[0x7b, 0xff]).unwrap_err().code, "invalid_utf8");
        let err = parse_json_object(b"{\"secret prompt\": ").unwrap_err();
        assert_eq!(err.code, "invalid_json");
        assert!(!err.message.contains("secret"));
        assert_eq!(parse_json_object(b"[1]").unwrap_err().code, "invalid_request");
        assert!(parse_json_object(b"{\"model\":\"m\"}").unwrap().is_object());
    }
}
