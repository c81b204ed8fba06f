//! The embeddings call (OpenAI-compatible `POST /v1/embeddings`, as OpenAI,
//! Azure, Ollama, TEI and vLLM serve it) and vector arithmetic.
//!
//! ```text
//! POST <semantic.path>     {"model": "<semantic.model>", "input": "<text>", "encoding_format": "float"}
//! 200 OK                   {"data": [{"embedding": [0.1, …]}]}      (or a base64 string of f32 LE)
//! ```
//!
//! Any failure — no answer within the timeout, a non-2xx status, a body that
//! is not that shape — fails open: the request goes on as a miss, and the
//! answer is not stored (there is no vector to store it under).

use crate::config::Semantic;
use base64::Engine;
use serde_json::{json, Value};

/// The most dimensions a vector may have (OpenAI's largest model has 3072).
pub const MAX_DIMENSIONS: usize = 8192;

/// Why an embeddings call failed (also the metric suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingError {
    /// The call could not be sent (unknown cluster…).
    Dispatch,
    /// No response: timeout or connection failure.
    NoResponse,
    Status,
    TooLarge,
    BadBody,
}

impl EmbeddingError {
    pub fn reason(self) -> &'static str {
        match self {
            EmbeddingError::Dispatch => "dispatch_failed",
            EmbeddingError::NoResponse => "no_response",
            EmbeddingError::Status => "bad_status",
            EmbeddingError::TooLarge => "too_large",
            EmbeddingError::BadBody => "bad_body",
        }
    }
}

/// Headers and body of the call for `text` (cut to `max_input_bytes`).
pub fn call(semantic: &Semantic, text: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = json!({
        "model": semantic.model,
        "input": truncate(text, semantic.max_input_bytes),
        "encoding_format": "float",
    });
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), semantic.path.clone()),
        (":authority".to_string(), semantic.authority.clone()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    headers.extend(semantic.headers.iter().cloned());
    (headers, body.to_string().into_bytes())
}

/// The unit vector from an embeddings response. `status` is `:status` (absent on timeout or reset).
pub fn parse(semantic: &Semantic, status: Option<&str>, body: Option<&[u8]>) -> Result<Vec<f32>, EmbeddingError> {
    let status: u16 = status.and_then(|s| s.trim().parse().ok()).ok_or(EmbeddingError::NoResponse)?;
    if !(200..300).contains(&status) {
        return Err(EmbeddingError::Status);
    }
    let body = body.unwrap_or_default();
    if body.len() > semantic.max_response_bytes {
        return Err(EmbeddingError::TooLarge);
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| EmbeddingError::BadBody)?;
    let embedding = value
        .get("data")
        .and_then(Value::as_array)
        .and_then(|data| data.first())
        .and_then(|first| first.get("embedding"))
        .ok_or(EmbeddingError::BadBody)?;
    let vector = match embedding {
        Value::Array(numbers) => numbers
            .iter()
            .map(|n| n.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or(EmbeddingError::BadBody)?,
        Value::String(encoded) => {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| EmbeddingError::BadBody)?;
            decode_f32(&bytes).ok_or(EmbeddingError::BadBody)?
        }
        _ => return Err(EmbeddingError::BadBody),
    };
    if vector.is_empty() || vector.len() > MAX_DIMENSIONS || vector.iter().any(|x| !x.is_finite()) {
        return Err(EmbeddingError::BadBody);
    }
    normalise(vector).ok_or(EmbeddingError::BadBody)
}

/// Scales to unit length (so cosine similarity is a dot product); `None` for the zero vector.
pub fn normalise(mut vector: Vec<f32>) -> Option<Vec<f32>> {
    let norm = vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm <= f64::EPSILON || !norm.is_finite() {
        return None;
    }
    vector.iter_mut().for_each(|x| *x = (f64::from(*x) / norm) as f32);
    Some(vector)
}

/// Cosine similarity of two unit vectors; `None` when their lengths differ
/// (another embedding model wrote that entry).
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    Some(a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum::<f64>().clamp(-1.0, 1.0))
}

/// f32 little-endian bytes.
pub fn encode_f32(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn decode_f32(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.len() % 4 != 0 {
        return None;
    }
    bytes.chunks_exact(4).map(|c| <[u8; 4]>::try_from(c).ok().map(f32::from_le_bytes)).collect()
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmbedInput;
    use std::time::Duration;

    fn semantic() -> Semantic {
        Semantic {
            cluster: "mock".into(),
            path: "/v1/embeddings".into(),
            authority: "embeddings".into(),
            model: "text-embedding-3-small".into(),
            headers: vec![("x-extra".into(), "1".into())],
            timeout: Duration::from_millis(100),
            threshold: 0.9,
            input: EmbedInput::LastUserMessage,
            max_input_bytes: 5,
            max_response_bytes: 1000,
        }
    }

    #[test]
    fn call_shape() {
        let (headers, body) = call(&semantic(), "hello world");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({"model": "text-embedding-3-small", "input": "hello", "encoding_format": "float"}));
        assert!(headers.contains(&(":path".into(), "/v1/embeddings".into())));
        assert!(headers.contains(&("x-extra".into(), "1".into())));
    }

    #[test]
    fn parses_floats_and_base64() {
        let s = semantic();
        let v = parse(&s, Some("200"), Some(br#"{"data": [{"embedding": [3, 4]}]}"#)).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
        let encoded = base64::engine::general_purpose::STANDARD.encode(encode_f32(&[0.0, 2.0]));
        let body = format!(r#"{{"data": [{{"embedding": "{encoded}"}}]}}"#);
        assert_eq!(parse(&s, Some("200"), Some(body.as_bytes())).unwrap(), vec![0.0, 1.0]);
    }

    #[test]
    fn failures() {
        let s = semantic();
        assert_eq!(parse(&s, None, None), Err(EmbeddingError::NoResponse));
        assert_eq!(parse(&s, Some("500"), Some(b"{}")), Err(EmbeddingError::Status));
        assert_eq!(parse(&s, Some("200"), Some(b"nope")), Err(EmbeddingError::BadBody));
        assert_eq!(parse(&s, Some("200"), Some(br#"{"data": [{"embedding": [0, 0]}]}"#)), Err(EmbeddingError::BadBody));
        assert_eq!(parse(&s, Some("200"), Some(br#"{"data": []}"#)), Err(EmbeddingError::BadBody));
        assert_eq!(parse(&s, Some("200"), Some(&[b' '; 1001])), Err(EmbeddingError::TooLarge));
    }

    #[test]
    fn cosine_of_unit_vectors() {
        let a = normalise(vec![1.0, 1.0]).unwrap();
        let b = normalise(vec![1.0, 0.0]).unwrap();
        assert!((cosine(&a, &b).unwrap() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine(&a, &[1.0]), None);
        assert_eq!(decode_f32(&encode_f32(&a)).unwrap(), a);
        assert_eq!(decode_f32(&[1, 2, 3]), None);
    }
}
