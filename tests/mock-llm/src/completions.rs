//! `POST /v1/completions` (legacy completions, and Azure's deployment path):
//! `choices[].text` as one JSON body, or streamed `text_completion` chunks
//! ending in `data: [DONE]` (with a usage chunk when
//! `stream_options.include_usage` is set). Echo mode answers with the prompt
//! (the last string of a list); the other `x-mock-*` controls apply as for chat.

use crate::controls::{Controls, Finish, Mode};
use crate::reply::{count_tokens, now_secs, split_text, BadRequest};
use aigw_shared::api::{request_texts_mut, ApiShape};
use serde_json::{json, Value};

/// The reply to a completions request: a JSON object, or SSE event strings.
pub enum Answer {
    Json(Value),
    Stream(Vec<String>),
}

pub fn respond(id: u64, body: &[u8], controls: &Controls, default_model: Option<&str>) -> Result<Answer, BadRequest> {
    let mut value: Value = serde_json::from_slice(body).map_err(|err| format!("request body is not JSON: {err}"))?;
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .or(default_model)
        .ok_or_else(|| "model: missing".to_string())?
        .to_string();
    let prompt = match value.get("prompt") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items.iter().rev().find_map(Value::as_str).unwrap_or_default().to_string(),
        _ => return Err("prompt: missing".to_string()),
    };
    let stream = value.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = value.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let text = match &controls.mode {
        Mode::Echo => prompt,
        Mode::Request => String::from_utf8_lossy(body).into_owned(),
        Mode::Fixed(text) => text.clone(),
    };
    let mut prompt_tokens = 0;
    request_texts_mut(ApiShape::OpenAiCompletions, &mut value, &mut |_, text| prompt_tokens += count_tokens(text));
    let completion_tokens = count_tokens(&text);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens});
    let finish = match controls.finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ContentFilter => "content_filter",
    };
    let head = |choices: Value| {
        json!({"id": format!("cmpl-mock-{id}"), "object": "text_completion", "created": now_secs(), "model": model,
            "choices": choices})
    };
    if !stream {
        let mut body = head(json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]));
        if let Some(map) = body.as_object_mut() {
            map.insert("usage".into(), usage);
        }
        return Ok(Answer::Json(body));
    }
    let mut events: Vec<String> = split_text(&text, controls.chunks)
        .into_iter()
        .map(|piece| head(json!([{"text": piece, "index": 0, "logprobs": null, "finish_reason": null}])))
        .chain(std::iter::once(head(json!([{"text": "", "index": 0, "logprobs": null, "finish_reason": finish}]))))
        .map(|chunk| format!("data: {chunk}\n\n"))
        .collect();
    if include_usage {
        let mut chunk = head(json!([]));
        if let Some(map) = chunk.as_object_mut() {
            map.insert("usage".into(), usage);
        }
        events.push(format!("data: {chunk}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    Ok(Answer::Stream(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_stream() {
        let Answer::Json(out) =
            respond(1, br#"{"model":"m","prompt":"say this"}"#, &Controls::default(), None).unwrap()
        else {
            panic!()
        };
        assert_eq!(out["choices"][0]["text"], "say this");
        assert_eq!(out["usage"]["prompt_tokens"], count_tokens("say this"));
        let body = br#"{"model":"m","prompt":["a","one two"],"stream":true,"stream_options":{"include_usage":true}}"#;
        let Answer::Stream(events) = respond(2, body, &Controls::default(), None).unwrap() else { panic!() };
        let mut text = String::new();
        for event in &events[..events.len() - 1] {
            let data: Value = serde_json::from_str(event.trim_end().strip_prefix("data: ").unwrap()).unwrap();
            if let Some(piece) = data.pointer("/choices/0/text").and_then(Value::as_str) {
                text.push_str(piece);
            }
        }
        assert_eq!(text, "one two");
        assert!(events[events.len() - 2].contains("\"usage\""));
        assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
        assert!(respond(3, br#"{"model":"m"}"#, &Controls::default(), None).is_err());
    }
}
