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

/// One top-level field of a JSON object body, without building the rest: the
/// other fields are parsed and checked exactly as [`parse_json_object`] checks
/// them (UTF-8, JSON syntax, string escapes, numbers, nesting depth) but not
/// kept. For a filter that needs one field (`model`) of a body it forwards
/// unchanged, this skips the allocation of the whole tree. A body
/// [`parse_json_object`] refuses gets the same error from here.
pub fn json_object_field(bytes: &[u8], name: &str) -> Result<Option<Value>, ApiError> {
    let Ok(text) = std::str::from_utf8(bytes) else { return parse_json_object(bytes).map(|_| None) };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let read = serde::de::DeserializeSeed::deserialize(FieldOf { name }, &mut deserializer)
        .and_then(|field| deserializer.end().map(|()| field));
    match read {
        Ok(field) => Ok(field),
        // Not an object, or not JSON: the full parser words the error (and it is rare).
        Err(_) => parse_json_object(bytes).map(|_| None),
    }
}

/// Reads a JSON object, keeping the value of the key `name` (the last one, as a
/// `Value` map would) and checking, then dropping, everything else.
struct FieldOf<'a> {
    name: &'a str,
}

impl<'de> serde::de::DeserializeSeed<'de> for FieldOf<'_> {
    type Value = Option<Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldOf<'_> {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(wanted) = map.next_key_seed(KeyIs(self.name))? {
            if wanted {
                found = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<Checked>()?;
            }
        }
        Ok(found)
    }
}

/// A map key, compared with the wanted name without being kept.
struct KeyIs<'a>(&'a str);

impl<'de> serde::de::DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Any JSON value, parsed as `Value` would parse it (strings unescaped and
/// checked, numbers read), then dropped. Unlike `serde::de::IgnoredAny`, which
/// skips string escapes unchecked, this accepts exactly what `Value` accepts.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
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

    #[test]
    fn one_field_reads_like_the_full_parse() {
        let body =
            br#"{"messages":[{"role":"user","content":"a\nb \u00e9"}],"model":"m","n":1.5e3,"x":null,"t":[true,{}]}"#;
        assert_eq!(json_object_field(body, "model").unwrap(), Some(Value::String("m".into())));
        assert_eq!(json_object_field(body, "absent").unwrap(), None);
        assert_eq!(json_object_field(br#"{"model":1,"model":"last"}"#, "model").unwrap(), Some("last".into()));
        // Every body the full parser refuses is refused here with the same error.
        let bad: [&[u8]; 8] = [
            &[0x7b, 0xff],
            b"{\"secret prompt\": ",
            b"[1]",
            b"\"text\"",
            br#"{"model":"m"} trailing"#,
            br#"{"model":"m","x":"\ud800"}"#,
            br#"{"model":"m","x":"bad \q escape"}"#,
            b"{\"model\":\"m\",\"x\":01}",
        ];
        for body in bad {
            let full = parse_json_object(body).unwrap_err();
            let one = json_object_field(body, "model").unwrap_err();
            assert_eq!((one.code, one.message), (full.code, full.message), "{}", String::from_utf8_lossy(body));
        }
        let deep = format!("{{\"model\":\"m\",\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            json_object_field(deep.as_bytes(), "model").unwrap_err().code,
            parse_json_object(deep.as_bytes()).unwrap_err().code
        );
    }
}
