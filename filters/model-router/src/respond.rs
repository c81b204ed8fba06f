//! Glue shared by both instances: translating a reply back to the client's
//! API as it passes through the response callbacks (an Anthropic reply to
//! OpenAI chat, or an OpenAI chat reply to Anthropic Messages).

use crate::translate::messages_response;
use crate::translate::messages_stream::ChatStreamTranslator;
use crate::translate::response;
use crate::translate::stream::StreamTranslator;
use crate::translate::BackTo;
use aigw_shared::body::{is_event_stream, is_identity_encoding};
use aigw_shared::glue;
use aigw_shared::host::log;
use aigw_shared::{ApiError, ErrorDialect};
use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::{Action, LogLevel};

/// What happens to the response body.
#[derive(Default)]
pub enum ResponseMode {
    /// Passed through as it is.
    #[default]
    Untouched,
    /// A whole JSON body, translated at its end (`status` 0: unreadable
    /// encoding); `to_messages`: to Anthropic's shape, else to OpenAI's.
    Json { status: u32, to_messages: bool, json_tool: Option<String> },
    /// An Anthropic SSE stream, translated event by event to chat chunks.
    Stream(Box<StreamTranslator>),
    /// A chat completions SSE stream, translated chunk by chunk to Anthropic events.
    MessagesStream(Box<ChatStreamTranslator>),
    /// The reply was replaced by an error; the rest of the upstream body is dropped.
    Discard,
}

/// Outcome of a response's headers, for metrics.
pub enum Translation {
    None,
    Started,
    Unreadable,
}

/// Response headers of a reply that must be translated (`back` from the
/// request). Returns the action and the new mode.
pub fn on_headers(
    ctx: &dyn HttpContext,
    back: &BackTo,
    end_of_stream: bool,
    max_event_bytes: usize,
    created: u64,
) -> (Action, ResponseMode, Translation) {
    if end_of_stream {
        return (Action::Continue, ResponseMode::Untouched, Translation::None);
    }
    let status = ctx.get_http_response_header(":status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    let readable = is_identity_encoding(ctx.get_http_response_header("content-encoding").as_deref());
    let streaming =
        (200..300).contains(&status) && is_event_stream(ctx.get_http_response_header("content-type").as_deref());
    // The body is rewritten; its new length is unknown until then (chunked).
    ctx.set_http_response_header("content-length", None);
    if !readable {
        // Known now, while the status can still change: the same 502 as pii-mask's.
        log(LogLevel::Warn, "model-router: the backend sent an encoded body; it cannot be translated");
        let error = ApiError::unreadable_upstream("encoded");
        ctx.set_http_response_header(":status", Some(&error.status.to_string()));
        ctx.set_http_response_header("content-encoding", None);
        ctx.set_http_response_header("content-type", Some("application/json"));
        let to_messages = matches!(back, BackTo::Messages(_));
        let mode = ResponseMode::Json { status: 0, to_messages, json_tool: None };
        return (Action::Continue, mode, Translation::Unreadable);
    }
    if streaming {
        let mode = match back {
            BackTo::Chat(info) => ResponseMode::Stream(Box::new(
                StreamTranslator::new(info.include_usage, created, max_event_bytes)
                    .with_json_tool(info.json_tool.clone()),
            )),
            BackTo::Messages(info) => {
                ResponseMode::MessagesStream(Box::new(ChatStreamTranslator::new(&info.model, max_event_bytes)))
            }
        };
        return (Action::Continue, mode, Translation::Started);
    }
    ctx.set_http_response_header("content-type", Some("application/json"));
    // The headers go on now (a filter cannot pause them without Envoy's
    // `allow_on_headers_stop_iteration`); the body is held until it is complete.
    let (to_messages, json_tool) = match back {
        BackTo::Chat(info) => (false, info.json_tool.clone()),
        BackTo::Messages(_) => (true, None),
    };
    (Action::Continue, ResponseMode::Json { status, to_messages, json_tool }, Translation::Started)
}

/// One response body callback. Returns the action, the next mode, and
/// whether translation failed (for metrics).
pub fn on_body(
    mode: ResponseMode,
    body_size: usize,
    end_of_stream: bool,
    max_body_bytes: usize,
    created: u64,
) -> (Action, ResponseMode, bool) {
    match mode {
        ResponseMode::Untouched => (Action::Continue, ResponseMode::Untouched, false),
        ResponseMode::Discard => {
            glue::replace_response_body(body_size, &[]);
            (Action::Continue, ResponseMode::Discard, false)
        }
        ResponseMode::Stream(mut translator) => {
            let chunk = glue::response_body_bytes(body_size);
            let mut out = translator.feed(&chunk);
            if end_of_stream {
                out.extend(translator.finish());
            }
            glue::replace_response_body(body_size, &out);
            (Action::Continue, ResponseMode::Stream(translator), false)
        }
        ResponseMode::MessagesStream(mut translator) => {
            let chunk = glue::response_body_bytes(body_size);
            let mut out = translator.feed(&chunk);
            if end_of_stream {
                out.extend(translator.finish());
            }
            glue::replace_response_body(body_size, &out);
            (Action::Continue, ResponseMode::MessagesStream(translator), false)
        }
        ResponseMode::Json { status, to_messages, json_tool } => {
            if !end_of_stream && body_size <= max_body_bytes {
                return (Action::Pause, ResponseMode::Json { status, to_messages, json_tool }, false);
            }
            let body = glue::response_body_bytes(body_size);
            // The same conditions give the same errors as pii-mask's on every route.
            let translated = if status == 0 {
                Err(ApiError::unreadable_upstream("encoded"))
            } else if body_size > max_body_bytes {
                Err(ApiError::upstream_too_large())
            } else if to_messages {
                messages_response::to_message(status, &body)
            } else {
                response::to_openai_with(status, &body, created, json_tool.as_deref())
            };
            // The status went out with the headers: an untranslatable body
            // becomes an error body (an encoded one already got its 502).
            let (out, failed) = match translated {
                Ok(out) => (out, false),
                Err(error) => {
                    let dialect = if to_messages { ErrorDialect::Anthropic } else { ErrorDialect::OpenAi };
                    (error.body_for(dialect), true)
                }
            };
            glue::replace_response_body(body_size, &out);
            let next = if end_of_stream { ResponseMode::Untouched } else { ResponseMode::Discard };
            (Action::Continue, next, failed)
        }
    }
}
