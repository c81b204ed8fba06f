//! `POST /v1/embeddings` (and Azure's `/openai/deployments/{d}/embeddings`):
//! deterministic vectors that behave like real ones for the tests that matter.
//!
//! Each text becomes a bag of words: lower-cased runs of letters and digits.
//! Every word adds ±1 to one of [`DIMENSIONS`] components, both chosen by a
//! hash of the word (FNV-1a), and the vector is scaled to unit length. So the
//! cosine similarity of two texts is close to the share of words they have in
//! common: "What is the return policy for electronics in store 12?" and the
//! same question ending in ", please?" share 10 of 11 words and score about
//! 0.95; unrelated questions score near 0. Punctuation and case do not count.
//! Token arrays (lists of integers) are embedded the same way, one "word" per
//! token id. No text gives the zero vector: an empty text embeds as the word "".
//!
//! `encoding_format: "base64"` (what the OpenAI Python SDK asks for by
//! default) returns little-endian f32 bytes in base64, as OpenAI does.

use base64::Engine;
use serde_json::{json, Value};

/// Vector length (`dimensions` in the request may ask for fewer).
pub const DIMENSIONS: usize = 256;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

fn words(text: &str) -> Vec<String> {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    if words.is_empty() {
        vec![String::new()]
    } else {
        words
    }
}

/// The unit vector of a bag of words, `dimensions` long.
fn embed_words(words: &[String], dimensions: usize) -> Vec<f32> {
    let dimensions = dimensions.clamp(1, DIMENSIONS);
    let mut vector = vec![0f32; dimensions];
    for word in words {
        let hash = fnv1a(word.as_bytes());
        let index = usize::try_from(hash % dimensions as u64).unwrap_or(0);
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        if let Some(slot) = vector.get_mut(index) {
            *slot += sign;
        }
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// The embedding of one text.
pub fn embed(text: &str) -> Vec<f32> {
    embed_words(&words(text), DIMENSIONS)
}

/// The inputs of a request: strings, or token arrays turned into words.
fn inputs(input: &Value) -> Result<Vec<Vec<String>>, String> {
    const EXPECTED: &str = "input: expected a string, strings or token arrays";
    let tokens = |items: &[Value]| -> Result<Vec<String>, String> {
        items.iter().map(|t| t.as_u64().map(|t| t.to_string()).ok_or_else(|| EXPECTED.to_string())).collect()
    };
    match input {
        Value::String(text) => Ok(vec![words(text)]),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Ok(items.iter().filter_map(Value::as_str).map(words).collect())
        }
        Value::Array(items) if items.iter().all(Value::is_number) => Ok(vec![tokens(items)?]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_array().ok_or_else(|| EXPECTED.to_string()).and_then(|t| tokens(t)))
            .collect(),
        _ => Err(EXPECTED.into()),
    }
}

/// The OpenAI-shaped response to an embeddings request body, or the reason
/// it is a 400.
pub fn respond(body: &[u8], count_tokens: impl Fn(&str) -> u64) -> Result<Value, String> {
    let request: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let model = request.get("model").and_then(Value::as_str).ok_or("model: required")?;
    let input = request.get("input").ok_or("input: required")?;
    let dimensions = match request.get("dimensions") {
        None | Some(Value::Null) => DIMENSIONS,
        Some(value) => value
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .filter(|d| (1..=DIMENSIONS).contains(d))
            .ok_or(format!("dimensions: 1 to {DIMENSIONS}"))?,
    };
    let base64 = match request.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(format!("encoding_format: unknown value {other:?}")),
    };
    let inputs = inputs(input)?;
    let mut prompt_tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, words)| {
            prompt_tokens += if input.is_string() || input.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                count_tokens(&words.join(" "))
            } else {
                words.len() as u64
            };
            let vector = embed_words(words, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn reworded_questions_are_close_and_unrelated_ones_are_not() {
        let a = embed("What is the return policy for electronics in store 12?");
        let b = embed("What is the return policy for electronics in store 12, please?");
        let c = embed("Summarise the quarterly sales report for the board");
        assert!(cosine(&a, &b) > 0.9, "{}", cosine(&a, &b));
        assert!(cosine(&a, &c) < 0.5, "{}", cosine(&a, &c));
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(embed("Hello, WORLD"), embed("hello world"));
    }

    #[test]
    fn answers_in_openai_shape_as_floats_or_base64() {
        let words = |t: &str| t.split(' ').count() as u64;
        let out = respond(br#"{"model":"text-embedding-3-small","input":["a b","c"]}"#, words).unwrap();
        assert_eq!(out["data"].as_array().unwrap().len(), 2);
        assert_eq!(out["data"][1]["index"], 1);
        assert_eq!(out["data"][0]["embedding"].as_array().unwrap().len(), DIMENSIONS);
        assert_eq!(out["usage"]["prompt_tokens"], 3);
        let out = respond(br#"{"model":"m","input":"a","encoding_format":"base64","dimensions":8}"#, words).unwrap();
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(out["data"][0]["embedding"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len(), 8 * 4);
        let out = respond(br#"{"model":"m","input":[[1,2,3]]}"#, words).unwrap();
        assert_eq!(out["usage"]["prompt_tokens"], 3);
        assert!(respond(br#"{"model":"m","input":5}"#, words).is_err());
        assert!(respond(br#"{"input":"a"}"#, words).is_err());
    }
}
