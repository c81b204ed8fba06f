//! Helpers shared by the semantic-cache integration tests.

/// A bag-of-words vector like the mock LLM's (`mock_llm::embeddings`, 64
/// dimensions here): texts sharing most words are close.
pub fn embed(text: &str) -> Vec<f32> {
    let mut vector = vec![0f32; 64];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        vector[(hash % 64) as usize] += if hash >> 63 == 0 { 1.0 } else { -1.0 };
    }
    vector
}

/// The request headers of a chat completion from `tenant` (its API key's client id).
pub fn chat_headers(tenant: &str) -> [(&'static str, &str); 4] {
    [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-aigw-client", tenant),
    ]
}
