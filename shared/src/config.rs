//! Plugin configuration loading with errors that name the field at fault.
//!
//! Envoy hands a filter its configuration as JSON text. A bad configuration
//! must make `on_configure` return `false` (so Envoy refuses it) and log one
//! line an operator can act on: `rules[2].pattern: invalid regex …`.
//!
//! serde_json reports where parsing failed only as a line and column. Rather
//! than pull in another crate, [`json_path_at`] walks the JSON text up to that
//! position and rebuilds the path of keys and indexes that lead to it. The raw
//! config structs use `#[serde(deny_unknown_fields)]`, so a misspelt option is
//! an error rather than a silently ignored line.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt;

/// What a filter does when something it depends on fails (a moderation or
/// retrieval call, the shared counters): the one vocabulary of every filter's
/// `failure_mode` option. Each filter documents its own default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Go on without it (counted in a metric and logged).
    Open,
    /// Refuse the request (503 in the client's dialect).
    Closed,
}

impl FailureMode {
    /// serde default for options whose default is `closed` (guardrails).
    pub fn closed() -> Self {
        FailureMode::Closed
    }

    /// serde default for options whose default is `open`.
    pub fn open() -> Self {
        FailureMode::Open
    }
}

/// A configuration error: the dotted path of the offending field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `rules[2].pattern`; empty for the document as a whole.
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError { path: path.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(root): {}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses a plugin configuration. An absent or blank configuration is read as
/// `{}`, so a filter with only defaults needs no configuration at all.
pub fn parse_config<T: DeserializeOwned>(bytes: Option<&[u8]>) -> Result<T, ConfigError> {
    let text = match bytes {
        None => "{}",
        Some(raw) => std::str::from_utf8(raw).map_err(|_| ConfigError::new("", "configuration is not valid UTF-8"))?,
    };
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|err| {
        // Syntax errors point at the offending character; data errors (wrong
        // type, unknown or missing field) point just past the value or object
        // they concern. Stop before the character in the first case so that a
        // closing bracket does not pop the object the error is in.
        let column = match err.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => err.column().saturating_sub(1),
            _ => err.column(),
        };
        let offset = byte_offset(text, err.line(), column);
        ConfigError::new(json_path_at(text, offset), strip_position(&err.to_string()))
    })
}

/// The most bytes a configuration may ask a filter to buffer or copy (a
/// body, one SSE event, a side-call reply): 256 MiB. Far above any sane
/// setting, far below what breaks a 32-bit Wasm VM; a larger number is
/// almost certainly a typo, and is refused rather than read as "unlimited".
pub const MAX_BUFFER_BYTES: usize = 256 * 1024 * 1024;

/// Refuses a configured number above `max`, naming its field:
/// `max_body_bytes: must be at most 268435456, got 1000000000000`.
/// Caps keep sums and products with client-supplied numbers far from
/// overflow (the arithmetic saturates as well).
pub fn at_most<T: PartialOrd + fmt::Display>(value: T, max: T, path: &str) -> Result<T, ConfigError> {
    if value > max {
        return Err(ConfigError::new(path, format!("must be at most {max}, got {value}")));
    }
    Ok(value)
}

/// Joins a parent path and a child key: `join("rules[0]", "pattern")`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Appends an index: `index("rules", 2)` is `rules[2]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message.get(..cut).unwrap_or(message).to_string(),
        None => message.to_string(),
    }
}

/// Converts serde_json's 1-based line and column into a byte offset.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    if line == 0 {
        return 0;
    }
    let mut offset = 0;
    for (number, content) in text.split_inclusive('\n').enumerate() {
        if number + 1 == line {
            return (offset + column).min(text.len());
        }
        offset += content.len();
    }
    text.len()
}

enum Frame {
    Object { key: Option<String>, expecting_key: bool },
    Array { index: usize },
}

/// The path of keys and indexes that leads to `offset` in a JSON text, such
/// as `filters[1].rules[0].pattern`. It tolerates invalid JSON: it only tracks
/// brackets, separators and strings.
pub fn json_path_at(text: &str, offset: usize) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let bytes = text.as_bytes();
    let end = offset.min(bytes.len());
    let mut pos = 0;
    while pos < end {
        match bytes.get(pos).copied().unwrap_or(b' ') {
            b'{' => stack.push(Frame::Object { key: None, expecting_key: true }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key, expecting_key }) => {
                    *key = None;
                    *expecting_key = true;
                }
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { expecting_key, .. }) = stack.last_mut() {
                    *expecting_key = false;
                }
            }
            b'"' => {
                let start = pos + 1;
                let mut cursor = start;
                while cursor < bytes.len() {
                    match bytes.get(cursor) {
                        Some(b'\\') => cursor += 2,
                        Some(b'"') => break,
                        _ => cursor += 1,
                    }
                }
                if let Some(Frame::Object { key, expecting_key: true }) = stack.last_mut() {
                    let raw = text.get(start..cursor.min(text.len())).unwrap_or("");
                    // Keys with escapes are rare in configs; decode them when we can.
                    let decoded =
                        serde_json::from_str::<String>(&format!("\"{raw}\"")).unwrap_or_else(|_| raw.to_string());
                    *key = Some(decoded);
                }
                pos = cursor;
            }
            _ => {}
        }
        pos += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        name: String,
        #[allow(dead_code)]
        pattern: String,
        #[serde(default)]
        #[allow(dead_code)]
        weight: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        rules: Vec<Rule>,
        #[serde(default)]
        #[allow(dead_code)]
        max_body_bytes: Option<usize>,
    }

    fn err_of(text: &str) -> ConfigError {
        parse_config::<Config>(Some(text.as_bytes())).unwrap_err()
    }

    #[test]
    fn empty_and_absent_configs_are_defaults() {
        assert!(parse_config::<Config>(None).unwrap().rules.is_empty());
        assert!(parse_config::<Config>(Some(b"  \n")).unwrap().rules.is_empty());
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let err = err_of(r#"{"rules": [{"name": "a", "pattern": "x"}, {"name": "b", "pattern": "y", "wieght": 3}]}"#);
        assert_eq!(err.path, "rules[1].wieght");
        assert!(err.reason.starts_with("unknown field `wieght`"), "{}", err.reason);
        assert!(!err.reason.contains("line"));
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let err = err_of("{\n  \"rules\": [\n    {\"name\": \"a\", \"pattern\": \"x\", \"weight\": \"heavy\"}\n  ]\n}");
        assert_eq!(err.path, "rules[0].weight");
        assert!(err.reason.contains("invalid type"), "{}", err.reason);
        assert_eq!(err.to_string(), format!("rules[0].weight: {}", err.reason));
    }

    #[test]
    fn missing_field_names_the_object() {
        let err = err_of(r#"{"rules": [{"name": "a"}]}"#);
        assert_eq!(err.path, "rules[0]");
        assert!(err.reason.contains("missing field `pattern`"));
    }

    #[test]
    fn top_level_type_error() {
        let err = err_of(r#"{"max_body_bytes": -1}"#);
        assert_eq!(err.path, "max_body_bytes");
        let err = err_of("\"a string\"");
        assert_eq!(err.path, "");
        assert!(err.to_string().starts_with("(root): "));
    }

    #[test]
    fn syntax_error_reports_position_path() {
        let err = err_of(r#"{"rules": [{"name": "a", "pattern": }]}"#);
        assert_eq!(err.path, "rules[0].pattern");
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let err = parse_config::<Config>(Some(&[0xff, 0xfe])).unwrap_err();
        assert!(err.reason.contains("UTF-8"));
    }

    #[test]
    fn path_helpers() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", "b"), "a.b");
        assert_eq!(index("rules", 3), "rules[3]");
        let ok = parse_config::<Config>(Some(br#"{"rules":[{"name":"n","pattern":"p"}]}"#)).unwrap();
        assert_eq!(ok.rules[0].name, "n");
    }

    #[test]
    fn at_most_names_the_field() {
        assert_eq!(at_most(5u64, 10, "a.b"), Ok(5));
        assert_eq!(at_most(10u64, 10, "a.b"), Ok(10));
        let err = at_most(11u64, 10, "a.b").unwrap_err();
        assert_eq!(err.to_string(), "a.b: must be at most 10, got 11");
    }

    #[test]
    fn json_path_handles_escaped_quotes_in_strings() {
        let text = r#"{"a": "x\"y", "b": [1, {"c": "#;
        assert_eq!(json_path_at(text, text.len()), "b[1].c");
    }
}
