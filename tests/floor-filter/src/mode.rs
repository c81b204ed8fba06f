//! The probe's modes and the body work each one does, without host calls.

use serde::Deserialize;

/// What the probe does with each body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every callback continues.
    #[default]
    Noop,
    /// Each body is held until its end, then forwarded unchanged.
    Buffer,
    /// Held, parsed and re-serialised.
    Parse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    mode: Mode,
}

impl Mode {
    /// The mode from the plugin configuration (none: `noop`); `None` when it is not valid.
    pub fn from_config(bytes: Option<&[u8]>) -> Option<Mode> {
        match bytes {
            None => Some(Mode::Noop),
            Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Some(Mode::Noop),
            Some(bytes) => serde_json::from_slice::<Config>(bytes).ok().map(|config| config.mode),
        }
    }

    /// Whether bodies are held until their end.
    pub fn buffers(self) -> bool {
        self != Mode::Noop
    }

    /// Whether the body is rewritten (so `content-length` must go at the headers).
    pub fn rewrites(self) -> bool {
        self == Mode::Parse
    }
}

/// The body re-serialised, or `None` when it is not JSON (an SSE stream, say):
/// then it is forwarded as it came.
pub fn reserialise(body: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    serde_json::to_vec(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_default_to_noop() {
        assert_eq!(Mode::from_config(None), Some(Mode::Noop));
        assert_eq!(Mode::from_config(Some(b"  ")), Some(Mode::Noop));
        assert_eq!(Mode::from_config(Some(br#"{"mode":"buffer"}"#)), Some(Mode::Buffer));
        assert_eq!(Mode::from_config(Some(br#"{"mode":"parse"}"#)), Some(Mode::Parse));
        assert_eq!(Mode::from_config(Some(br#"{"mode":"fast"}"#)), None);
        assert_eq!(Mode::from_config(Some(br#"{"mode":"noop","x":1}"#)), None);
        assert!(Mode::Parse.rewrites() && Mode::Parse.buffers() && !Mode::Noop.buffers());
    }

    #[test]
    fn reserialises_json_and_leaves_other_bodies() {
        let body = br#"{ "model" : "m", "messages": [ {"role":"user","content":"hi"} ] }"#;
        let out = reserialise(body).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
            serde_json::from_slice::<serde_json::Value>(body).unwrap()
        );
        assert!(out.len() < body.len(), "compact output");
        assert_eq!(reserialise(b"data: {}\n\n"), None);
    }
}
