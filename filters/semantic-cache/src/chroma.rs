//! The external vector store: Chroma's HTTP API (v2), shared by every Envoy
//! replica. Pure request building and response parsing; `exchange.rs` drives
//! the calls and `lib.rs` sends them with `dispatch_http_call`.
//!
//! ```text
//! POST <base>/collections                  {"name": C, "get_or_create": true, "metadata": {"hnsw:space": "cosine"}}
//!   200 {"id": "<uuid>", …}                (once per VM; the id is kept in the VM)
//! POST <base>/collections/<id>/query       {"query_embeddings": [v], "n_results": 1,
//!                                           "where": {"$and": [tenant =, context =, expires_s >]}, "include": [...]}
//!   200 {"ids": [[…]], "documents": [[answer]], "embeddings": [[[…]]], "metadatas": [[{created_s, …}]]}
//! POST <base>/collections/<id>/upsert      {"ids": ["<tenant>-<exact>"], "embeddings": [v], "documents": [answer],
//!                                           "metadatas": [{tenant, context, created_s, expires_s}]}
//! POST <base>/collections/<id>/delete      {"where": {"tenant": {"$eq": t}}}      (the admin path)
//!   200 {"deleted": n}
//! ```
//!
//! `<base>` is `/api/v2/tenants/<chroma tenant>/databases/<database>`.
//!
//! **Tenants**: the cache tenant's 64-bit id (hex) is in every entry's metadata
//! and in its id, and every query filters on it: an entry is never returned to
//! another tenant. The similarity is computed here from the returned vector
//! (the collection's distance function is not trusted for the threshold).

use crate::config::Chroma;
use crate::embedding;
use crate::key::Key;
use crate::store::{Found, Lookup, NewEntry};
use serde_json::{json, Value};
use std::cell::RefCell;

/// Why a store call failed (also the metric suffix `store_failed.reason.<r>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The call could not be sent (unknown cluster…).
    Dispatch,
    /// No response: timeout or connection failure.
    NoResponse,
    /// 404: the collection is gone (deleted, or the store was reset); its id is resolved again.
    NotFound,
    /// Any other non-2xx status.
    Status,
    /// Not the JSON expected, or an entry of another tenant or context.
    BadBody,
    /// The answer is not UTF-8 JSON text (Chroma documents are strings).
    NotText,
}

impl StoreError {
    pub fn reason(self) -> &'static str {
        match self {
            StoreError::Dispatch => "dispatch_failed",
            StoreError::NoResponse => "no_response",
            StoreError::NotFound => "not_found",
            StoreError::Status => "bad_status",
            StoreError::BadBody => "bad_body",
            StoreError::NotText => "not_text",
        }
    }
}

/// Headers and body of one call to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreCall {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

thread_local! {
    // The collection's id, resolved once per VM (Wasm VMs are single-threaded).
    static COLLECTION_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The collection id this VM resolved, if any.
pub fn known_collection() -> Option<String> {
    COLLECTION_ID.with(|id| id.borrow().clone())
}

/// Keeps (or, with `None`, forgets: the collection was deleted) the resolved id.
pub fn remember_collection(id: Option<String>) {
    COLLECTION_ID.with(|cell| *cell.borrow_mut() = id);
}

fn post(chroma: &Chroma, path: String, body: &Value) -> StoreCall {
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), path),
        (":authority".to_string(), chroma.authority.clone()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    headers.extend(chroma.headers.iter().cloned());
    StoreCall { headers, body: body.to_string().into_bytes() }
}

fn base(chroma: &Chroma) -> String {
    format!("/api/v2/tenants/{}/databases/{}/collections", chroma.tenant, chroma.database)
}

fn hex64(value: u64) -> String {
    format!("{value:016x}")
}

fn hex128(value: Key) -> String {
    format!("{value:032x}")
}

/// Creates the collection if it does not exist, and returns its id either way.
pub fn resolve_call(chroma: &Chroma) -> StoreCall {
    let body = json!({"name": chroma.collection, "get_or_create": true, "metadata": {"hnsw:space": "cosine"}});
    post(chroma, base(chroma), &body)
}

fn status_ok(status: Option<&str>) -> Result<(), StoreError> {
    let status: u16 = status.and_then(|s| s.trim().parse().ok()).ok_or(StoreError::NoResponse)?;
    match status {
        200..=299 => Ok(()),
        404 => Err(StoreError::NotFound),
        _ => Err(StoreError::Status),
    }
}

/// The collection id from the answer to [`resolve_call`]. It goes into a path,
/// so only a UUID-like id is accepted.
pub fn parse_resolve(status: Option<&str>, body: Option<&[u8]>) -> Result<String, StoreError> {
    status_ok(status)?;
    let value: Value = serde_json::from_slice(body.unwrap_or_default()).map_err(|_| StoreError::BadBody)?;
    let id = value.get("id").and_then(Value::as_str).ok_or(StoreError::BadBody)?;
    let uuid_like = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if uuid_like {
        Ok(id.to_string())
    } else {
        Err(StoreError::BadBody)
    }
}

/// The nearest live entry of `tenant` and `context` to `vector`.
pub fn query_call(
    chroma: &Chroma,
    collection: &str,
    tenant: u64,
    context: Key,
    vector: &[f32],
    now_s: u64,
) -> StoreCall {
    let body = json!({
        "query_embeddings": [vector],
        "n_results": 1,
        "where": {"$and": [
            {"tenant": {"$eq": hex64(tenant)}},
            {"context": {"$eq": hex128(context)}},
            {"expires_s": {"$gt": now_s}},
        ]},
        "include": ["documents", "embeddings", "metadatas"],
    });
    post(chroma, format!("{}/{collection}/query", base(chroma)), &body)
}

/// A hit when the nearest entry's cosine similarity to `vector` is at least `threshold`.
/// The tenant and context are checked again on what came back.
pub fn parse_query(
    status: Option<&str>,
    body: Option<&[u8]>,
    tenant: u64,
    context: Key,
    vector: &[f32],
    threshold: f64,
) -> Result<Lookup, StoreError> {
    status_ok(status)?;
    let value: Value = serde_json::from_slice(body.unwrap_or_default()).map_err(|_| StoreError::BadBody)?;
    // Each field is a list per query embedding (one here) of lists per result.
    let first = |field: &str| value.get(field).and_then(|v| v.get(0)).and_then(|v| v.get(0));
    let mut lookup = Lookup::default();
    let Some(stored) = first("embeddings") else {
        // No entry of this tenant and context: `[[]]`.
        return match value.get("ids").and_then(|v| v.get(0)).and_then(Value::as_array) {
            Some(ids) if ids.is_empty() => Ok(lookup),
            _ => Err(StoreError::BadBody),
        };
    };
    let stored: Vec<f32> = serde_json::from_value(stored.clone()).map_err(|_| StoreError::BadBody)?;
    let metadata = first("metadatas").ok_or(StoreError::BadBody)?;
    let same_owner = metadata.get("tenant").and_then(Value::as_str) == Some(hex64(tenant).as_str())
        && metadata.get("context").and_then(Value::as_str) == Some(hex128(context).as_str());
    if !same_owner {
        return Err(StoreError::BadBody);
    }
    let created_s = metadata.get("created_s").and_then(Value::as_u64).ok_or(StoreError::BadBody)?;
    let answer = first("documents").and_then(Value::as_str).ok_or(StoreError::BadBody)?;
    let similarity = embedding::cosine(vector, &stored).ok_or(StoreError::BadBody)?;
    lookup.compared = 1;
    if similarity >= threshold {
        lookup.found = Some(Found { slot: 0, similarity, answer: answer.as_bytes().to_vec(), created_s });
    } else {
        lookup.best_below = Some(similarity);
    }
    Ok(lookup)
}

/// Stores (or replaces: the id is the tenant and exact key) an entry with a vector.
pub fn upsert_call(chroma: &Chroma, collection: &str, entry: &NewEntry, now_s: u64) -> Result<StoreCall, StoreError> {
    let answer = std::str::from_utf8(&entry.answer).map_err(|_| StoreError::NotText)?;
    let body = json!({
        "ids": [format!("{}-{}", hex64(entry.tenant), hex128(entry.exact))],
        "embeddings": [entry.vector],
        "documents": [answer],
        "metadatas": [{
            "tenant": hex64(entry.tenant),
            "context": hex128(entry.context),
            "created_s": now_s,
            "expires_s": now_s.saturating_add(entry.ttl_seconds),
        }],
    });
    Ok(post(chroma, format!("{}/{collection}/upsert", base(chroma)), &body))
}

/// The answer to an upsert.
pub fn parse_write(status: Option<&str>) -> Result<(), StoreError> {
    status_ok(status)
}

/// Deletes every entry of `tenant` (the admin path).
pub fn delete_tenant_call(chroma: &Chroma, collection: &str, tenant: u64) -> StoreCall {
    let body = json!({"where": {"tenant": {"$eq": hex64(tenant)}}});
    post(chroma, format!("{}/{collection}/delete", base(chroma)), &body)
}

/// How many entries a delete removed (`{"deleted": n}`; `None` when the server does not say).
pub fn parse_delete(status: Option<&str>, body: Option<&[u8]>) -> Result<Option<u64>, StoreError> {
    status_ok(status)?;
    let value: Value = serde_json::from_slice(body.unwrap_or_default()).unwrap_or(Value::Null);
    Ok(value.get("deleted").and_then(Value::as_u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;

    fn chroma() -> Chroma {
        let config = from_json(Some(
            br#"{"semantic": {"cluster": "embeddings"},
                 "store": {"chroma": {"cluster": "chroma", "collection": "answers", "headers": {"x-chroma-token": "t"}}}}"#,
        ))
        .unwrap();
        config.store.unwrap()
    }

    fn header<'a>(call: &'a StoreCall, name: &str) -> &'a str {
        call.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap()
    }

    #[test]
    fn resolve_creates_or_gets_the_collection_and_reads_its_id() {
        let call = resolve_call(&chroma());
        assert_eq!(header(&call, ":path"), "/api/v2/tenants/default_tenant/databases/default_database/collections");
        assert_eq!(header(&call, ":authority"), "chroma");
        assert_eq!(header(&call, "x-chroma-token"), "t");
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body, json!({"name": "answers", "get_or_create": true, "metadata": {"hnsw:space": "cosine"}}));

        let ok = br#"{"id":"c42cc861-c7e4-44af-a1af-fb541dc6abf4","name":"answers"}"#;
        assert_eq!(parse_resolve(Some("200"), Some(ok)).unwrap(), "c42cc861-c7e4-44af-a1af-fb541dc6abf4");
        assert_eq!(parse_resolve(Some("200"), Some(br#"{"id":"../../x"}"#)), Err(StoreError::BadBody));
        assert_eq!(parse_resolve(Some("500"), Some(ok)), Err(StoreError::Status));
        assert_eq!(parse_resolve(None, None), Err(StoreError::NoResponse));
        assert_eq!(parse_resolve(Some("200"), Some(b"<html>")), Err(StoreError::BadBody));
    }

    #[test]
    fn query_filters_on_tenant_context_and_expiry() {
        let call = query_call(&chroma(), "abc-1", 0x1f, 0x2a, &[0.6, 0.8], 1000);
        assert_eq!(
            header(&call, ":path"),
            "/api/v2/tenants/default_tenant/databases/default_database/collections/abc-1/query"
        );
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body["n_results"], 1);
        assert_eq!(body["where"]["$and"][0]["tenant"]["$eq"], "000000000000001f");
        assert_eq!(body["where"]["$and"][1]["context"]["$eq"], format!("{:032x}", 0x2a));
        assert_eq!(body["where"]["$and"][2]["expires_s"]["$gt"], 1000);
        assert_eq!(body["query_embeddings"][0][1].as_f64().unwrap() as f32, 0.8);
    }

    fn answer(tenant: &str, embedding: &str) -> Vec<u8> {
        format!(
            r#"{{"ids":[["x"]],"embeddings":[[{embedding}]],"documents":[["{{\"a\":1}}"]],
               "metadatas":[[{{"tenant":"{tenant}","context":"{:032x}","created_s":990,"expires_s":2000}}]]}}"#,
            0x2a
        )
        .into_bytes()
    }

    #[test]
    fn the_similarity_is_computed_here_and_the_owner_checked_again() {
        let mine = "000000000000001f";
        let hit = parse_query(Some("200"), Some(&answer(mine, "[0.6,0.8]")), 0x1f, 0x2a, &[0.6, 0.8], 0.9).unwrap();
        let found = hit.found.unwrap();
        assert!((found.similarity - 1.0).abs() < 1e-6);
        assert_eq!(found.answer, br#"{"a":1}"#);
        assert_eq!(found.created_s, 990);

        let below = parse_query(Some("200"), Some(&answer(mine, "[1.0,0.0]")), 0x1f, 0x2a, &[0.6, 0.8], 0.9).unwrap();
        assert!(below.found.is_none());
        assert!((below.best_below.unwrap() - 0.6).abs() < 1e-6);

        // A store that ignored the filter: never served to this tenant.
        let foreign = answer("00000000000000aa", "[0.6,0.8]");
        assert_eq!(parse_query(Some("200"), Some(&foreign), 0x1f, 0x2a, &[0.6, 0.8], 0.9), Err(StoreError::BadBody));
        // Another dimension (another embeddings model wrote it).
        let other = answer(mine, "[0.6,0.8,0.0]");
        assert_eq!(parse_query(Some("200"), Some(&other), 0x1f, 0x2a, &[0.6, 0.8], 0.9), Err(StoreError::BadBody));

        let empty = br#"{"ids":[[]],"embeddings":[[]],"documents":[[]],"metadatas":[[]],"distances":[[]]}"#;
        assert_eq!(parse_query(Some("200"), Some(empty), 1, 2, &[1.0], 0.9).unwrap(), Lookup::default());
        assert_eq!(parse_query(Some("200"), Some(b"{}"), 1, 2, &[1.0], 0.9), Err(StoreError::BadBody));
        assert_eq!(parse_query(Some("404"), Some(empty), 1, 2, &[1.0], 0.9), Err(StoreError::NotFound));
        assert_eq!(parse_query(Some("400"), Some(empty), 1, 2, &[1.0], 0.9), Err(StoreError::Status));
        assert_eq!(parse_query(Some("abc"), Some(empty), 1, 2, &[1.0], 0.9), Err(StoreError::NoResponse));
        assert_eq!(parse_query(None, None, 1, 2, &[1.0], 0.9), Err(StoreError::NoResponse));
    }

    #[test]
    fn upsert_ids_carry_the_tenant_and_the_answer_is_the_document() {
        let entry = NewEntry {
            tenant: 0x1f,
            exact: 7,
            context: 0x2a,
            vector: vec![1.0, 0.0],
            answer: br#"{"a":1}"#.to_vec(),
            ttl_seconds: 60,
        };
        let call = upsert_call(&chroma(), "abc", &entry, 1000).unwrap();
        assert!(header(&call, ":path").ends_with("/collections/abc/upsert"));
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body["ids"][0], format!("000000000000001f-{:032x}", 7));
        assert_eq!(body["documents"][0], r#"{"a":1}"#);
        assert_eq!(body["metadatas"][0]["tenant"], "000000000000001f");
        assert_eq!(body["metadatas"][0]["expires_s"], 1060);
        assert_eq!(body["embeddings"][0], json!([1.0, 0.0]));
        let binary = NewEntry { answer: vec![0xff, 0xfe], ..entry };
        assert_eq!(upsert_call(&chroma(), "abc", &binary, 1000), Err(StoreError::NotText));
        assert_eq!(parse_write(Some("200")), Ok(()));
        assert_eq!(parse_write(Some("422")), Err(StoreError::Status));
        assert_eq!(parse_write(None), Err(StoreError::NoResponse));
    }

    #[test]
    fn delete_removes_one_tenant() {
        let call = delete_tenant_call(&chroma(), "abc", 0x1f);
        assert!(header(&call, ":path").ends_with("/collections/abc/delete"));
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body, json!({"where": {"tenant": {"$eq": "000000000000001f"}}}));
        assert_eq!(parse_delete(Some("200"), Some(br#"{"deleted":3}"#)), Ok(Some(3)));
        assert_eq!(parse_delete(Some("200"), Some(b"null")), Ok(None));
        assert_eq!(parse_delete(Some("404"), None), Err(StoreError::NotFound));
        assert_eq!(parse_delete(None, None), Err(StoreError::NoResponse));
    }

    #[test]
    fn the_collection_id_is_kept_per_vm() {
        remember_collection(None);
        assert_eq!(known_collection(), None);
        remember_collection(Some("abc".to_string()));
        assert_eq!(known_collection().as_deref(), Some("abc"));
        remember_collection(None);
    }
}
