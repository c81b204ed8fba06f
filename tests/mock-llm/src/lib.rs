//! A mock LLM provider for the gateway's end-to-end tests and for `just up`.
//!
//! It speaks OpenAI chat completions (`POST /v1/chat/completions`, and Azure's
//! `POST /openai/deployments/{deployment}/chat/completions`) and Anthropic
//! messages (`POST /v1/messages`), as JSON or as SSE streams shaped like the
//! real providers', with usage counted by tiktoken (o200k_base). It also
//! answers `POST /v1/embeddings` (and Azure's deployment path) with
//! deterministic vectors (see [`embeddings`]), the OpenAI Responses API
//! (`POST /v1/responses`, JSON or the real streamed event sequence with usage,
//! see [`responses`]), legacy completions (`POST /v1/completions` and Azure's
//! deployment path, JSON or SSE, see [`completions`]), `GET /v1/models` and
//! `GET /healthz`. The controls below apply to Responses and completions as to
//! chat (echo: the last user input / the prompt; the tool call becomes a
//! `function_call` output item).
//!
//! Request headers steer it (see [`controls`]):
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-mode` | `echo` (default: the last user message), `request` (the raw request body), `fixed:<text>` |
//! | `x-mock-status` | answer with this status and an error body in the provider's shape |
//! | `x-mock-retry-after` | `retry-after` value sent with an injected error |
//! | `x-mock-fault-backend` | comma-separated backend names: status, delays and aborts apply only on those |
//! | `x-mock-delay-ms` | wait before the response headers |
//! | `x-mock-chunk-delay-ms` | wait between stream writes |
//! | `x-mock-chunks` | exactly this many content chunks in a stream |
//! | `x-mock-split` | write the body in pieces of this many bytes (mid-UTF-8, mid-line) |
//! | `x-mock-encoding` | `gzip`: gzip the body and set `content-encoding: gzip` |
//! | `x-mock-abort-after` | drop the connection after this many stream writes (a provider dying mid-stream) |
//! | `x-mock-finish` | `stop` (default), `length` or `content_filter` (Anthropic: `end_turn`, `max_tokens`, `refusal`) |
//! | `x-mock-tool-call` | `<name> <JSON arguments>`: the reply calls this tool (OpenAI `tool_calls`, Anthropic `tool_use`) |
//! | `x-mock-cached-tokens` | prompt tokens reported as cache reads (`cached_tokens` / `cache_read_input_tokens`) |
//! | `x-mock-cache-write-tokens` | prompt tokens reported as cache writes (Anthropic `cache_creation_input_tokens`) |
//!
//! Every response carries `x-mock-backend: <name>` and `x-mock-request-id`.
//! Every request except `/healthz` and `/_mock/*` is recorded with its headers
//! and body: `GET /_mock/requests` lists them as JSON ([`RecordedRequest`]),
//! `DELETE /_mock/requests` clears them. In-process users (the e2e fixture)
//! get the same through [`MockServer::requests`].

pub mod completions;
pub mod controls;
pub mod embeddings;
pub mod reply;
pub mod responses;

use bytes::Bytes;
use controls::Controls;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use reply::Api;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// One request the mock received, and how far its response has got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Sequence number within this backend, from 1.
    pub id: u64,
    /// The name of the backend that received it (`--name`).
    pub backend: String,
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as received (invalid UTF-8 replaced).
    pub body: String,
    /// Milliseconds since the backend started, when the request was complete.
    pub received_ms: u64,
    pub response: ResponseProgress,
}

/// The response side of a [`RecordedRequest`], updated while it streams.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseProgress {
    pub status: u16,
    /// Body writes handed to the connection so far.
    pub writes: usize,
    /// Body writes the response has in total.
    pub total_writes: usize,
    /// True once the last byte was handed to the connection.
    pub complete: bool,
}

impl RecordedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// The state of one named backend.
#[derive(Debug)]
pub struct Backend {
    name: String,
    started: Instant,
    next_id: AtomicU64,
    records: Mutex<Vec<RecordedRequest>>,
}

impl Backend {
    pub fn new(name: &str) -> Arc<Backend> {
        Arc::new(Backend {
            name: name.to_string(),
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            records: Mutex::new(Vec::new()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn records(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // A poisoned lock only means a handler panicked mid-update; the data is still usable.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.records().clone()
    }

    pub fn clear(&self) {
        self.records().clear();
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut ResponseProgress)) {
        if let Some(record) = self.records().iter_mut().find(|r| r.id == id) {
            change(&mut record.response);
        }
    }
}

/// The response body: all at once, or written piece by piece from a task.
/// An error piece aborts the connection mid-body (`x-mock-abort-after`).
pub enum MockBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<io::Result<Bytes>>),
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Stream(rx) => rx.poll_recv(cx).map(|piece| piece.map(|p| p.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Stream(_) => SizeHint::default(),
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn json_response(backend: &Backend, id: u64, status: u16, body: &serde_json::Value) -> Response<MockBody> {
    let bytes = Bytes::from(body.to_string());
    let mut response = Response::new(MockBody::Full(Some(bytes.clone())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    add_mock_headers(headers, backend, id);
    response
}

fn add_mock_headers(headers: &mut hyper::HeaderMap, backend: &Backend, id: u64) {
    if let Ok(name) = HeaderValue::from_str(&backend.name) {
        headers.insert(HeaderName::from_static("x-mock-backend"), name);
    }
    if id > 0 {
        headers.insert(HeaderName::from_static("x-mock-request-id"), HeaderValue::from(id));
    }
}

/// Which provider API a path belongs to, and the Azure deployment if any.
fn classify(path: &str) -> Option<(Api, Option<String>)> {
    let path = path.split('?').next().unwrap_or("");
    if path == "/v1/chat/completions" || path == "/chat/completions" {
        return Some((Api::OpenAi, None));
    }
    if path == "/v1/messages" {
        return Some((Api::Anthropic, None));
    }
    // Answered by `responses.rs` and `completions.rs`; errors in OpenAI's shape.
    if path == "/v1/responses" || path == "/v1/completions" {
        return Some((Api::OpenAi, None));
    }
    let rest = path.strip_prefix("/openai/deployments/")?;
    let deployment = rest.strip_suffix("/chat/completions").or_else(|| rest.strip_suffix("/completions"))?;
    (!deployment.is_empty() && !deployment.contains('/')).then(|| (Api::OpenAi, Some(deployment.to_string())))
}

/// The endpoint beside chat that a path names: Responses or legacy completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtherApi {
    Responses,
    Completions,
}

fn other_api(path: &str) -> Option<OtherApi> {
    let path = path.split('?').next().unwrap_or("");
    if path == "/v1/responses" {
        Some(OtherApi::Responses)
    } else if path.ends_with("/completions") && !path.ends_with("/chat/completions") {
        Some(OtherApi::Completions)
    } else {
        None
    }
}

/// `/v1/embeddings`, or Azure's `/openai/deployments/{d}/embeddings`.
fn embeddings_path(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    path == "/v1/embeddings"
        || path
            .strip_prefix("/openai/deployments/")
            .and_then(|p| p.strip_suffix("/embeddings"))
            .is_some_and(|d| !d.is_empty() && !d.contains('/'))
}

/// The early answer to an embeddings request (wrong method, bad controls, an
/// injected status), if it gets one.
fn embeddings_status(
    method: &Method,
    headers: &hyper::HeaderMap,
    backend: &Backend,
) -> Option<(u16, serde_json::Value)> {
    if method != Method::POST {
        return Some((405, reply::error_body(Api::OpenAi, 405, "mock: use POST")));
    }
    match Controls::from_headers(headers, &backend.name) {
        Err(reason) => Some((400, reply::error_body(Api::OpenAi, 400, &format!("mock: {reason}")))),
        Ok(controls) => controls.status.map(|status| {
            let message = format!("mock: injected status {status} from backend {}", backend.name);
            (status, reply::error_body(Api::OpenAi, status, &message))
        }),
    }
}

/// Handles one request on `backend`.
pub async fn handle(request: Request<Incoming>, backend: Arc<Backend>) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let path = parts.uri.path_and_query().map(|pq| pq.as_str().to_string()).unwrap_or_else(|| "/".to_string());
    let bare_path = parts.uri.path();

    match (&parts.method, bare_path) {
        (&Method::GET, "/healthz") => {
            return Ok(json_response(&backend, 0, 200, &serde_json::json!({"status": "ok", "backend": backend.name})))
        }
        (&Method::GET, "/_mock/requests") => {
            let records = serde_json::to_value(backend.requests()).unwrap_or_default();
            return Ok(json_response(&backend, 0, 200, &records));
        }
        (&Method::DELETE, "/_mock/requests") => {
            backend.clear();
            return Ok(json_response(&backend, 0, 200, &serde_json::json!({"cleared": true})));
        }
        _ => {}
    }

    let id = backend.next_id.fetch_add(1, Ordering::Relaxed);
    backend.records().push(RecordedRequest {
        id,
        backend: backend.name.clone(),
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        received_ms: u64::try_from(backend.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        response: ResponseProgress::default(),
    });
    let response = respond(&parts.method, &path, &parts.headers, &body, &backend, id).await;
    let status = response.status().as_u16();
    let full = matches!(response.body(), MockBody::Full(_));
    backend.update(id, |progress| {
        progress.status = status;
        if full {
            (progress.writes, progress.total_writes, progress.complete) = (1, 1, true);
        }
    });
    Ok(response)
}

async fn respond(
    method: &Method,
    path: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
    backend: &Arc<Backend>,
    id: u64,
) -> Response<MockBody> {
    if method == Method::GET && path.split('?').next() == Some("/v1/models") {
        let names = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet-latest", "mock-model"];
        // Anthropic's shape for Anthropic's clients (they send `anthropic-version`).
        if headers.contains_key("anthropic-version") {
            let models: Vec<serde_json::Value> = names
                .iter()
                .map(|m| serde_json::json!({"type": "model", "id": m, "display_name": m, "created_at": "2024-10-22T00:00:00Z"}))
                .collect();
            let list = serde_json::json!({"data": models, "has_more": false, "first_id": names.first(), "last_id": names.last()});
            return json_response(backend, id, 200, &list);
        }
        let models: Vec<serde_json::Value> = names
            .iter()
            .map(|m| serde_json::json!({"id": m, "object": "model", "created": 1_700_000_000u64, "owned_by": "mock"}))
            .collect();
        return json_response(backend, id, 200, &serde_json::json!({"object": "list", "data": models}));
    }
    if path.split('?').next() == Some("/v1/messages/count_tokens") {
        if method != Method::POST {
            return json_response(backend, id, 405, &reply::error_body(Api::Anthropic, 405, "mock: use POST"));
        }
        return match reply::count_message_tokens(body) {
            Ok(answer) => json_response(backend, id, 200, &answer),
            Err(reason) => {
                json_response(backend, id, 400, &reply::error_body(Api::Anthropic, 400, &format!("mock: {reason}")))
            }
        };
    }
    if embeddings_path(path) {
        if let Some((status, error)) = embeddings_status(method, headers, backend) {
            return json_response(backend, id, status, &error);
        }
        tokio::time::sleep(Controls::from_headers(headers, &backend.name).map(|c| c.delay).unwrap_or_default()).await;
        return match embeddings::respond(body, reply::count_tokens) {
            Ok(answer) => json_response(backend, id, 200, &answer),
            Err(reason) => {
                json_response(backend, id, 400, &reply::error_body(Api::OpenAi, 400, &format!("mock: {reason}")))
            }
        };
    }
    let Some((api, deployment)) = classify(path) else {
        let message = format!("mock: no route for {method} {path}");
        return json_response(backend, id, 404, &reply::error_body(Api::OpenAi, 404, &message));
    };
    if method != Method::POST {
        return json_response(backend, id, 405, &reply::error_body(api, 405, "mock: use POST"));
    }
    let controls = match Controls::from_headers(headers, &backend.name) {
        Ok(controls) => controls,
        Err(reason) => {
            return json_response(backend, id, 400, &reply::error_body(api, 400, &format!("mock: {reason}")))
        }
    };
    if !controls.delay.is_zero() {
        tokio::time::sleep(controls.delay).await;
    }
    if let Some(status) = controls.status {
        let message = format!("mock: injected status {status} from backend {}", backend.name);
        let mut response = json_response(backend, id, status, &reply::error_body(api, status, &message));
        if let Some(value) = controls.retry_after.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
        }
        return response;
    }
    match other_api(path) {
        Some(OtherApi::Responses) => {
            return match responses::respond(id, body, &controls) {
                Ok(responses::Answer::Json(answer)) => json_response(backend, id, 200, &answer),
                Ok(responses::Answer::Stream(events)) => stream_response(events, &controls, backend, id),
                Err(reason) => json_response(backend, id, 400, &reply::error_body(api, 400, &reason)),
            }
        }
        Some(OtherApi::Completions) => {
            return match completions::respond(id, body, &controls, deployment.as_deref()) {
                Ok(completions::Answer::Json(answer)) => json_response(backend, id, 200, &answer),
                Ok(completions::Answer::Stream(events)) => stream_response(events, &controls, backend, id),
                Err(reason) => json_response(backend, id, 400, &reply::error_body(api, 400, &reason)),
            }
        }
        None => {}
    }
    let reply = match reply::build(api, id, body, &controls, deployment.as_deref()) {
        Ok(reply) => reply,
        Err(reason) => return json_response(backend, id, 400, &reply::error_body(api, 400, &reason)),
    };
    if !reply.stream {
        let mut response = json_response(backend, id, 200, &reply.json_body());
        if controls.gzip {
            let compressed = Bytes::from(gzip(&reply.json_body().to_string().into_bytes()));
            let headers = response.headers_mut();
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(compressed.len()));
            *response.body_mut() = MockBody::Full(Some(compressed));
        }
        return response;
    }
    stream_response(reply.sse_events(controls.chunks), &controls, backend, id)
}

/// The body writes of a stream: one per event, or `split`-byte pieces of the
/// whole (gzipped) stream.
fn stream_writes(events: Vec<String>, controls: &Controls) -> Vec<Bytes> {
    let writes: Vec<Bytes> = if controls.gzip {
        vec![Bytes::from(gzip(events.concat().as_bytes()))]
    } else {
        events.into_iter().map(Bytes::from).collect()
    };
    match controls.split {
        None => writes,
        Some(size) => {
            let whole: Vec<u8> = writes.concat();
            whole.chunks(size).map(Bytes::copy_from_slice).collect()
        }
    }
}

fn stream_response(events: Vec<String>, controls: &Controls, backend: &Arc<Backend>, id: u64) -> Response<MockBody> {
    let writes = stream_writes(events, controls);
    let total = writes.len();
    // Pieces of a split stream get a small pause each so that they reach the
    // peer as separate reads, not one coalesced buffer.
    let gap = match (controls.chunk_delay.is_zero(), controls.split.is_some()) {
        (false, _) => controls.chunk_delay,
        (true, true) => Duration::from_millis(1),
        (true, false) => Duration::ZERO,
    };
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(1);
    backend.update(id, |progress| progress.total_writes = total);
    let task_backend = Arc::clone(backend);
    let abort_after = controls.abort_after;
    tokio::spawn(async move {
        for (index, piece) in writes.into_iter().enumerate() {
            if index > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if abort_after == Some(index) {
                // Let the written pieces reach the peer, then drop the connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = tx.send(Err(io::Error::other("mock: aborted mid-stream (x-mock-abort-after)"))).await;
                return;
            }
            if tx.send(Ok(piece)).await.is_err() {
                return; // the client went away
            }
            task_backend.update(id, |progress| {
                progress.writes = index + 1;
                progress.complete = index + 1 == total;
            });
        }
        if total == 0 {
            task_backend.update(id, |progress| progress.complete = true);
        }
    });
    let mut response = Response::new(MockBody::Stream(rx));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if controls.gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    add_mock_headers(headers, backend, id);
    response
}

/// Serves `backend` on `listener` until `shutdown` turns true.
pub async fn serve(listener: tokio::net::TcpListener, backend: Arc<Backend>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let backend = Arc::clone(&backend);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&backend)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// A mock backend running on its own thread, for in-process use by tests.
/// Dropping it stops the server and joins the thread.
pub struct MockServer {
    backend: Arc<Backend>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockServer {
    /// Starts a backend named `name` on a free loopback port.
    pub fn start(name: &str) -> io::Result<MockServer> {
        MockServer::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), name)
    }

    /// Starts a backend named `name` on `addr` (port 0 picks a free one).
    pub fn start_on(addr: SocketAddr, name: &str) -> io::Result<MockServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let backend = Backend::new(name);
        let (shutdown, rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let task_backend = Arc::clone(&backend);
        let thread = std::thread::Builder::new().name(format!("mock-llm-{name}")).spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, task_backend, rx).await,
                    Err(err) => eprintln!("mock-llm: cannot serve: {err}"),
                }
            });
        })?;
        Ok(MockServer { backend, addr, shutdown, thread: Some(thread) })
    }

    pub fn name(&self) -> &str {
        self.backend.name()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.backend.requests()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.backend.clear();
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_provider_paths() {
        assert_eq!(classify("/v1/chat/completions"), Some((Api::OpenAi, None)));
        assert_eq!(classify("/v1/messages?beta=1"), Some((Api::Anthropic, None)));
        assert_eq!(classify("/v1/responses"), Some((Api::OpenAi, None)));
        assert_eq!(other_api("/v1/responses?x=1"), Some(OtherApi::Responses));
        assert_eq!(classify("/openai/deployments/d/completions?api-version=1"), Some((Api::OpenAi, Some("d".into()))));
        assert_eq!(other_api("/openai/deployments/d/completions"), Some(OtherApi::Completions));
        assert_eq!(other_api("/v1/chat/completions"), None);
        assert!(
            embeddings_path("/v1/embeddings") && embeddings_path("/openai/deployments/e3/embeddings?api-version=1")
        );
        assert!(!embeddings_path("/openai/deployments//embeddings") && !embeddings_path("/v1/embeddings/x"));
        assert_eq!(
            classify("/openai/deployments/gpt4/chat/completions?api-version=2024-06-01"),
            Some((Api::OpenAi, Some("gpt4".into())))
        );
        assert_eq!(classify("/openai/deployments//chat/completions"), None);
        assert_eq!(classify("/v2/other"), None);
    }

    #[test]
    fn split_writes_cover_the_stream_exactly() {
        let events = vec!["data: é\n\n".to_string(), "data: [DONE]\n\n".to_string()];
        let controls = Controls { split: Some(3), ..Controls::default() };
        let writes = stream_writes(events.clone(), &controls);
        assert!(writes.iter().all(|w| w.len() <= 3));
        assert_eq!(writes.concat(), events.concat().into_bytes());
        // "data: é" puts the two bytes of 'é' at offsets 6 and 7: split 7 cuts between them.
        let seven = stream_writes(events, &Controls { split: Some(7), ..Controls::default() });
        assert!(std::str::from_utf8(&seven[0]).is_err());
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gzip(b"hello")[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
    }
}
