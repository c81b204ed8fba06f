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
//! POST <base>/collections/<id>/upsert      {"ids": ["<tenant>-<exact>", …], "embeddings": [v, …], "documents": [answer, …],
//!                                           "metadatas": [{tenant, context, created_s, expires_s}, …]}
//!                                          (from the root context's tick: a batch of this VM's queued entries)
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
use std::collections::VecDeque;

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
    /// This VM's write queue is full (the store is slower than the misses).
    QueueFull,
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
            StoreError::QueueFull => "queue_full",
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

/// An entry waiting to be written, with the time it was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub entry: NewEntry,
    pub now_s: u64,
}

fn entry_id(entry: &NewEntry) -> String {
    format!("{}-{}", hex64(entry.tenant), hex128(entry.exact))
}

/// Stores (or replaces: the id is the tenant and exact key) entries with a vector, in one call.
/// Of two entries with the same id the later one is written (Chroma refuses duplicate ids).
pub fn upsert_call(chroma: &Chroma, collection: &str, pending: &[Pending]) -> StoreCall {
    let mut latest: Vec<&Pending> = Vec::new();
    for item in pending {
        let id = entry_id(&item.entry);
        latest.retain(|kept| entry_id(&kept.entry) != id);
        latest.push(item);
    }
    let mut ids = Vec::new();
    let mut embeddings = Vec::new();
    let mut documents = Vec::new();
    let mut metadatas = Vec::new();
    for Pending { entry, now_s } in latest {
        ids.push(json!(entry_id(entry)));
        embeddings.push(json!(entry.vector));
        documents.push(json!(String::from_utf8_lossy(&entry.answer)));
        metadatas.push(json!({
            "tenant": hex64(entry.tenant),
            "context": hex128(entry.context),
            "created_s": now_s,
            "expires_s": now_s.saturating_add(entry.ttl_seconds),
        }));
    }
    let body = json!({"ids": ids, "embeddings": embeddings, "documents": documents, "metadatas": metadatas});
    post(chroma, format!("{}/{collection}/upsert", base(chroma)), &body)
}

/// The answer to an upsert.
pub fn parse_write(status: Option<&str>) -> Result<(), StoreError> {
    status_ok(status)
}

/// Entries a VM may hold for writing; beyond it new ones are dropped (`queue_full`).
pub const MAX_QUEUED: usize = 256;
/// Entries per upsert call.
pub const MAX_BATCH: usize = 32;

thread_local! {
    // Entries stored by this VM's streams, written by its root context on its tick.
    static QUEUE: RefCell<VecDeque<Pending>> = const { RefCell::new(VecDeque::new()) };
}

/// Queues an entry for the root context to write (streams never wait for the store).
pub fn enqueue(entry: NewEntry, now_s: u64) -> Result<(), StoreError> {
    if std::str::from_utf8(&entry.answer).is_err() {
        return Err(StoreError::NotText);
    }
    QUEUE.with(|queue| {
        let mut queue = queue.borrow_mut();
        if queue.len() >= MAX_QUEUED {
            return Err(StoreError::QueueFull);
        }
        queue.push_back(Pending { entry, now_s });
        Ok(())
    })
}

/// Entries waiting in this VM.
pub fn queued() -> usize {
    QUEUE.with(|queue| queue.borrow().len())
}

fn take_batch() -> Vec<Pending> {
    QUEUE.with(|queue| {
        let mut queue = queue.borrow_mut();
        let n = queue.len().min(MAX_BATCH);
        queue.drain(..n).collect()
    })
}

/// What a finished write call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The collection id was resolved; no entry written yet.
    Resolved,
    /// These many entries were written.
    Entries(usize),
    /// The call failed; these many entries were dropped.
    Failed(StoreError, usize),
}

/// The root context's writer: at most one call in flight per VM. On each tick it
/// sends the queued entries (up to [`MAX_BATCH`]) in one upsert, resolving the
/// collection id first when this VM has none.
#[derive(Debug, Default)]
pub struct Writer {
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
enum InFlight {
    Resolving,
    Writing(usize),
}

impl Writer {
    /// The call to send now, if any.
    pub fn on_tick(&mut self, chroma: &Chroma) -> Option<StoreCall> {
        if self.in_flight.is_some() || queued() == 0 {
            return None;
        }
        let Some(id) = known_collection() else {
            self.in_flight = Some(InFlight::Resolving);
            return Some(resolve_call(chroma));
        };
        let batch = take_batch();
        self.in_flight = Some(InFlight::Writing(batch.len()));
        Some(upsert_call(chroma, &id, &batch))
    }

    /// The call from [`Writer::on_tick`] could not be sent.
    pub fn not_sent(&mut self) -> Written {
        self.finish(Err(StoreError::Dispatch))
    }

    /// The store answered (`status` absent: timeout or reset).
    pub fn on_response(&mut self, status: Option<&str>, body: Option<&[u8]>) -> Written {
        match self.in_flight {
            Some(InFlight::Resolving) => match parse_resolve(status, body) {
                Ok(id) => {
                    remember_collection(Some(id));
                    self.in_flight = None;
                    Written::Resolved
                }
                Err(err) => self.finish(Err(err)),
            },
            _ => self.finish(parse_write(status)),
        }
    }

    fn finish(&mut self, result: Result<(), StoreError>) -> Written {
        let in_flight = self.in_flight.take();
        let entries = match in_flight {
            Some(InFlight::Writing(n)) => n,
            // A failed resolve drops what is queued (the store is unreachable).
            _ => QUEUE.with(|queue| std::mem::take(&mut *queue.borrow_mut()).len()),
        };
        match result {
            Ok(()) => Written::Entries(entries),
            Err(err) => {
                if err == StoreError::NotFound {
                    remember_collection(None);
                }
                Written::Failed(err, entries)
            }
        }
    }
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

    fn entry(exact: u128, answer: &[u8]) -> NewEntry {
        NewEntry {
            tenant: 0x1f,
            exact,
            context: 0x2a,
            vector: vec![1.0, 0.0],
            answer: answer.to_vec(),
            ttl_seconds: 60,
        }
    }

    #[test]
    fn upsert_ids_carry_the_tenant_and_the_answer_is_the_document() {
        let pending = [
            Pending { entry: entry(7, br#"{"a":0}"#), now_s: 990 },
            Pending { entry: entry(8, br#"{"b":1}"#), now_s: 995 },
            Pending { entry: entry(7, br#"{"a":1}"#), now_s: 1000 },
        ];
        let call = upsert_call(&chroma(), "abc", &pending);
        assert!(header(&call, ":path").ends_with("/collections/abc/upsert"));
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            body["ids"],
            json!([format!("000000000000001f-{:032x}", 8), format!("000000000000001f-{:032x}", 7)])
        );
        assert_eq!(body["documents"], json!([r#"{"b":1}"#, r#"{"a":1}"#]), "the later of two equal ids");
        assert_eq!(body["metadatas"][1]["tenant"], "000000000000001f");
        assert_eq!(body["metadatas"][1]["context"], format!("{:032x}", 0x2a));
        assert_eq!(body["metadatas"][1]["created_s"], 1000);
        assert_eq!(body["metadatas"][1]["expires_s"], 1060);
        assert_eq!(body["embeddings"][1], json!([1.0, 0.0]));
        assert_eq!(parse_write(Some("200")), Ok(()));
        assert_eq!(parse_write(Some("422")), Err(StoreError::Status));
        assert_eq!(parse_write(None), Err(StoreError::NoResponse));
    }

    #[test]
    fn the_writer_resolves_then_sends_batches_one_call_at_a_time() {
        remember_collection(None);
        let chroma = chroma();
        let mut writer = Writer::default();
        assert_eq!(writer.on_tick(&chroma), None, "nothing queued");
        assert_eq!(enqueue(entry(1, &[0xff, 0xfe]), 1000), Err(StoreError::NotText));
        for i in 0..40 {
            enqueue(entry(i, b"{}"), 1000).unwrap();
        }
        let resolve = writer.on_tick(&chroma).unwrap();
        assert!(header(&resolve, ":path").ends_with("/collections"));
        assert_eq!(writer.on_tick(&chroma), None, "one call in flight");
        assert_eq!(writer.on_response(Some("200"), Some(br#"{"id":"c-1"}"#)), Written::Resolved);
        let first = writer.on_tick(&chroma).unwrap();
        assert!(header(&first, ":path").ends_with("/c-1/upsert"));
        let body: Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(body["ids"].as_array().unwrap().len(), MAX_BATCH);
        assert_eq!(writer.on_response(Some("200"), Some(b"{}")), Written::Entries(MAX_BATCH));
        let _second = writer.on_tick(&chroma).unwrap();
        assert_eq!(writer.on_response(None, None), Written::Failed(StoreError::NoResponse, 8));
        assert_eq!(queued(), 0);
        assert_eq!(writer.on_tick(&chroma), None);

        // A 404: the collection id is forgotten; a failed resolve drops the queue.
        enqueue(entry(1, b"{}"), 1000).unwrap();
        writer.on_tick(&chroma).unwrap();
        assert_eq!(writer.on_response(Some("404"), None), Written::Failed(StoreError::NotFound, 1));
        assert_eq!(known_collection(), None);
        enqueue(entry(2, b"{}"), 1000).unwrap();
        enqueue(entry(3, b"{}"), 1000).unwrap();
        writer.on_tick(&chroma).unwrap();
        assert_eq!(writer.on_response(Some("503"), None), Written::Failed(StoreError::Status, 2));
        enqueue(entry(4, b"{}"), 1000).unwrap();
        writer.on_tick(&chroma).unwrap();
        assert_eq!(writer.not_sent(), Written::Failed(StoreError::Dispatch, 1));

        // The queue is bounded.
        for i in 0..MAX_QUEUED {
            enqueue(entry(i as u128, b"{}"), 1000).unwrap();
        }
        assert_eq!(enqueue(entry(0, b"{}"), 1000), Err(StoreError::QueueFull));
        QUEUE.with(|queue| queue.borrow_mut().clear());
        remember_collection(None);
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
