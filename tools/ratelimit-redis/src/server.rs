//! gRPC over HTTP/2 with the `h2` crate: one unary method. A request body is
//! one gRPC frame; the answer is headers, one frame, and trailers carrying
//! `grpc-status`. Redis failures answer `UNAVAILABLE` (14), so the gateway
//! applies its configured failure mode.

use crate::counting::Limiter;
use aigw_shared::ratelimit_proto::{grpc_frame, grpc_unframe, Request, PATH};
use bytes::Bytes;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Response};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest request accepted (a rate limit request is a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// gRPC status codes used here.
const GRPC_OK: u32 = 0;
const GRPC_INVALID_ARGUMENT: u32 = 3;
const GRPC_UNIMPLEMENTED: u32 = 12;
const GRPC_UNAVAILABLE: u32 = 14;

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, limiter: Arc<Limiter>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let _ = socket.set_nodelay(true);
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let Ok(mut connection) = h2::server::handshake(socket).await else { return };
            while let Some(Ok((request, respond))) = connection.accept().await {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let path = request.uri().path().to_string();
                    let mut body = request.into_body();
                    let mut bytes = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let Ok(chunk) = chunk else { return };
                        let _ = body.flow_control().release_capacity(chunk.len());
                        bytes.extend_from_slice(&chunk);
                        if bytes.len() > MAX_REQUEST_BYTES {
                            break;
                        }
                    }
                    answer(&limiter, &path, &bytes, respond).await;
                });
            }
        });
    }
}

async fn answer(limiter: &Limiter, path: &str, body: &[u8], respond: SendResponse<Bytes>) {
    if path != PATH {
        return finish(respond, None, GRPC_UNIMPLEMENTED, "unknown method");
    }
    let Some(request) = grpc_unframe(body).and_then(|(message, _)| Request::decode(message).ok()) else {
        return finish(respond, None, GRPC_INVALID_ARGUMENT, "malformed RateLimitRequest");
    };
    match limiter.should_rate_limit(&request).await {
        Ok(response) => finish(respond, Some(grpc_frame(&response.encode())), GRPC_OK, ""),
        Err(err) => {
            eprintln!("ratelimit-redis: {err}");
            finish(respond, None, GRPC_UNAVAILABLE, "counter store unavailable")
        }
    }
}

fn finish(mut respond: SendResponse<Bytes>, message: Option<Vec<u8>>, status: u32, text: &str) {
    let head = Response::builder().status(200).header("content-type", "application/grpc").body(());
    let Ok(head) = head else { return };
    let Ok(mut stream) = respond.send_response(head, false) else { return };
    if let Some(message) = message {
        if stream.send_data(Bytes::from(message), false).is_err() {
            return;
        }
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status));
    if let Ok(text) = HeaderValue::from_str(text) {
        if !text.is_empty() {
            trailers.insert("grpc-message", text);
        }
    }
    let _ = stream.send_trailers(trailers);
}
