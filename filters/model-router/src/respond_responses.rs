//! Glue for a Responses request translated to chat (see
//! `translate/responses_*.rs`): the backend's reply goes back to the
//! Responses shape as it passes through the upstream instance's response
//! callbacks. For Anthropic the reply is first translated from Messages to
//! chat with the chat translation (`translate/response.rs`, `stream.rs`).
//! The same conditions give the same errors as `respond.rs`.

use crate::provider::ResponsesBack;
use crate::translate::response;
use crate::translate::responses_response::from_chat;
use crate::translate::responses_stream::ResponsesStream;
use crate::translate::stream::StreamTranslator;
use aigw_shared::body::{is_event_stream, is_identity_encoding};
use aigw_shared::glue;
use aigw_shared::ApiError;
use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::Action;

/// What happens to the response body.
#[derive(Default)]
pub enum BackMode {
    #[default]
    Untouched,
    /// A whole JSON body, translated at its end (`status` 0: unreadable encoding).
    Json { status: u32 },
    /// An SSE stream, translated event by event.
    Stream { anthropic: Option<Box<StreamTranslator>>, responses: Box<ResponsesStream> },
    /// The reply was replaced; the rest of the upstream body is dropped.
    Discard,
}

/// Response headers of a reply to a translated Responses request.
pub fn on_headers(
    ctx: &dyn HttpContext,
    back: &ResponsesBack,
    end_of_stream: bool,
    max_event_bytes: usize,
    created: u64,
) -> (Action, BackMode) {
    if end_of_stream {
        return (Action::Continue, BackMode::Untouched);
    }
    let status = ctx.get_http_response_header(":status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    let readable = is_identity_encoding(ctx.get_http_response_header("content-encoding").as_deref());
    let streaming =
        (200..300).contains(&status) && is_event_stream(ctx.get_http_response_header("content-type").as_deref());
    ctx.set_http_response_header("content-length", None);
    if !readable {
        let error = ApiError::unreadable_upstream("encoded");
        ctx.set_http_response_header(":status", Some(&error.status.to_string()));
        ctx.set_http_response_header("content-encoding", None);
        ctx.set_http_response_header("content-type", Some("application/json"));
        return (Action::Continue, BackMode::Json { status: 0 });
    }
    if streaming {
        let anthropic = back
            .anthropic
            .as_ref()
            .map(|info| Box::new(StreamTranslator::new(info.include_usage, created, max_event_bytes)));
        let responses = Box::new(ResponsesStream::new(back.info.clone(), created, max_event_bytes));
        return (Action::Continue, BackMode::Stream { anthropic, responses });
    }
    ctx.set_http_response_header("content-type", Some("application/json"));
    (Action::Continue, BackMode::Json { status })
}

/// One response body callback: the action, the next mode, and whether
/// translation failed (for metrics).
pub fn on_body(
    back: &ResponsesBack,
    mode: BackMode,
    body_size: usize,
    end_of_stream: bool,
    max_body_bytes: usize,
    created: u64,
) -> (Action, BackMode, bool) {
    match mode {
        BackMode::Untouched => (Action::Continue, BackMode::Untouched, false),
        BackMode::Discard => {
            glue::replace_response_body(body_size, &[]);
            (Action::Continue, BackMode::Discard, false)
        }
        BackMode::Stream { mut anthropic, mut responses } => {
            let chunk = glue::response_body_bytes(body_size);
            let chat = match anthropic.as_mut() {
                Some(translator) => {
                    let mut chat = translator.feed(&chunk);
                    if end_of_stream {
                        chat.extend(translator.finish());
                    }
                    chat
                }
                None => chunk,
            };
            let mut out = responses.feed(&chat);
            if end_of_stream {
                out.extend(responses.finish());
            }
            glue::replace_response_body(body_size, &out);
            (Action::Continue, BackMode::Stream { anthropic, responses }, false)
        }
        BackMode::Json { status } => {
            if !end_of_stream && body_size <= max_body_bytes {
                return (Action::Pause, BackMode::Json { status }, false);
            }
            let body = glue::response_body_bytes(body_size);
            let translated = if status == 0 {
                Err(ApiError::unreadable_upstream("encoded"))
            } else if body_size > max_body_bytes {
                Err(ApiError::upstream_too_large())
            } else {
                let chat = match back.anthropic {
                    Some(_) => response::to_openai(status, &body, created),
                    None => Ok(body),
                };
                chat.and_then(|chat| from_chat(status, &chat, &back.info, created))
            };
            let (out, failed) = match translated {
                Ok(out) => (out, false),
                Err(error) => (error.body(), true),
            };
            glue::replace_response_body(body_size, &out);
            let next = if end_of_stream { BackMode::Untouched } else { BackMode::Discard };
            (Action::Continue, next, failed)
        }
    }
}
