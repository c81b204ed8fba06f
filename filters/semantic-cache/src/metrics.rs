//! Metric names. Envoy prefixes them with `wasmcustom.`; the reference
//! gateway's `stats_tags` turn the `semantic_cache.` segment into the tag
//! `aigw_filter="semantic_cache"` and `.reason.<r>` / `.kind.<k>` into tags.
//! Every name is built from static strings, never from request data.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `aigw.semantic_cache.hit.kind.exact` / `.semantic` | counter | requests answered from the cache |
//! | `aigw.semantic_cache.miss` | counter | looked up, not found (forwarded; the answer may be stored) |
//! | `aigw.semantic_cache.bypass.reason.<r>` | counter | not looked up: `no_cache`, `disabled`, `sampling`, `unsupported`, `unreadable` |
//! | `aigw.semantic_cache.similarity_permille` | histogram | similarity × 1000 of each hit (exact = 1000) |
//! | `aigw.semantic_cache.nearest_miss_permille` | histogram | similarity × 1000 of the nearest entry when it was below the threshold |
//! | `aigw.semantic_cache.compared` | histogram | vectors compared per semantic lookup (the brute-force cost) |
//! | `aigw.semantic_cache.saved_tokens.input` / `.output` | counter | tokens the hits did not spend upstream |
//! | `aigw.semantic_cache.saved_cost_micro_usd` | counter | their price (`prices`), in micro-dollars |
//! | `aigw.semantic_cache.embedding.latency_ms` | histogram | embeddings call time, answered or failed |
//! | `aigw.semantic_cache.embedding.failed.reason.<r>` | counter | `dispatch_failed`, `no_response` (timeout, reset), `bad_status`, `too_large`, `bad_body` |
//! | `aigw.semantic_cache.stored` | counter | answers stored |
//! | `aigw.semantic_cache.store_skipped.reason.<r>` | counter | answers not stored: `status`, `encoding`, `content_type`, `too_large`, `incomplete`, `not_final`, `unreadable`, `contended`, `store_failed`, `no_store` |
//! | `aigw.semantic_cache.evicted` | counter | live entries evicted to make room |
//! | `aigw.semantic_cache.corrupt` | counter | shared-data records ignored as corrupt (the index or an entry) |
//! | `aigw.semantic_cache.admin.cleared` | counter | entries removed through the admin path |
//! | `aigw.semantic_cache.store.latency_ms` | histogram | external store query time (`store.chroma`), answered or failed |
//! | `aigw.semantic_cache.store.written` | counter | entries written to the external store (by the root context) |
//! | `aigw.semantic_cache.store_failed.reason.<r>` | counter | external store calls that failed open: `dispatch_failed`, `no_response`, `not_found`, `bad_status`, `bad_body`, `not_text`, `queue_full` |
//! | `aigw.semantic_cache.entries` / `.bytes` | gauge | entries and bytes in shared data (as last seen by any worker) |

pub const MISS: &str = "aigw.semantic_cache.miss";
pub const SIMILARITY: &str = "aigw.semantic_cache.similarity_permille";
pub const NEAREST_MISS: &str = "aigw.semantic_cache.nearest_miss_permille";
pub const COMPARED: &str = "aigw.semantic_cache.compared";
pub const SAVED_INPUT: &str = "aigw.semantic_cache.saved_tokens.input";
pub const SAVED_OUTPUT: &str = "aigw.semantic_cache.saved_tokens.output";
pub const SAVED_COST: &str = "aigw.semantic_cache.saved_cost_micro_usd";
pub const EMBEDDING_LATENCY: &str = "aigw.semantic_cache.embedding.latency_ms";
pub const STORED: &str = "aigw.semantic_cache.stored";
pub const EVICTED: &str = "aigw.semantic_cache.evicted";
pub const CORRUPT: &str = "aigw.semantic_cache.corrupt";
pub const ADMIN_CLEARED: &str = "aigw.semantic_cache.admin.cleared";
pub const STORE_LATENCY: &str = "aigw.semantic_cache.store.latency_ms";
pub const STORE_WRITTEN: &str = "aigw.semantic_cache.store.written";
pub const ENTRIES: &str = "aigw.semantic_cache.entries";
pub const BYTES: &str = "aigw.semantic_cache.bytes";

/// `kind`: `exact` or `semantic`.
pub fn hit(kind: &str) -> String {
    format!("aigw.semantic_cache.hit.kind.{kind}")
}

/// `reason`: a [`crate::key::Bypass`] reason.
pub fn bypass(reason: &str) -> String {
    format!("aigw.semantic_cache.bypass.reason.{reason}")
}

/// `reason`: an [`crate::embedding::EmbeddingError`] reason.
pub fn embedding_failed(reason: &str) -> String {
    format!("aigw.semantic_cache.embedding.failed.reason.{reason}")
}

/// `reason`: an [`crate::answer::Skip`] or [`crate::store::InsertError`] reason, or `no_store`.
pub fn store_skipped(reason: &str) -> String {
    format!("aigw.semantic_cache.store_skipped.reason.{reason}")
}

/// `reason`: a [`crate::chroma::StoreError`] reason (the external store failed; the request went on).
pub fn store_failed(reason: &str) -> String {
    format!("aigw.semantic_cache.store_failed.reason.{reason}")
}

/// A similarity as an integer histogram value.
pub fn permille(similarity: f64) -> u64 {
    (similarity.clamp(0.0, 1.0) * 1000.0).round() as u64
}
