//! The same guardrail, budget and metric checks for every OpenAI dialect, through a real Envoy running
//! gateway.yaml with all four filters: chat completions, the Responses API, embeddings and legacy
//! completions, JSON and (where the dialect streams) SSE. A prompt with an e-mail address must reach
//! the provider masked and come back masked; the exact usage must be counted (access log, metrics);
//! a JWT subject's 500 tokens/hour budget must end in an OpenAI-style 429 on every dialect.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::{jwt, Gateway};
use serde_json::{json, Value};

const ADDRESS: &str = "jane@example.org";

struct Dialect {
    name: &'static str,
    path: &'static str,
    model: &'static str,
    streams: bool,
}

const DIALECTS: [Dialect; 4] = [
    Dialect { name: "chat", path: "/v1/chat/completions", model: "gpt-4o-mini", streams: true },
    Dialect { name: "responses", path: "/v1/responses", model: "gpt-4o-mini", streams: true },
    Dialect { name: "embeddings", path: "/v1/embeddings", model: "text-embedding-3-small", streams: false },
    Dialect { name: "completions", path: "/v1/completions", model: "gpt-3.5-turbo-instruct", streams: true },
];

/// About 125 prompt tokens with one address, in the dialect's shape.
fn body(dialect: &Dialect, stream: bool) -> Value {
    let text = format!("Mail {ADDRESS} now. {}", "budget ".repeat(120));
    let mut body = match dialect.name {
        "chat" => json!({"messages": [{"role": "user", "content": text}], "max_tokens": 100}),
        "responses" => json!({"input": text, "max_output_tokens": 100}),
        "embeddings" => json!({"input": [text]}),
        _ => json!({"prompt": text, "max_tokens": 100}),
    };
    body["model"] = json!(dialect.model);
    if stream {
        body["stream"] = json!(true);
    }
    body
}

/// The text a client reassembles from a stream of any of the dialects.
fn streamed_text(body: &str) -> String {
    let mut text = String::new();
    for data in body.lines().filter_map(|line| line.strip_prefix("data: ")) {
        let Ok(event) = serde_json::from_str::<Value>(data) else { continue };
        let piece = if event["type"] == "response.output_text.delta" {
            event["delta"].as_str()
        } else {
            event
                .pointer("/choices/0/delta/content")
                .or_else(|| event.pointer("/choices/0/text"))
                .and_then(Value::as_str)
        };
        text.push_str(piece.unwrap_or(""));
    }
    text
}

#[test]
fn pii_budgets_and_metrics_hold_for_every_dialect_json_and_sse() {
    let gw = Gateway::start();
    let mut made = 0;
    for dialect in &DIALECTS {
        // Each check spends a budget of its own (the subject in the JWT).
        let bearer = |sub: String| format!("Bearer {}", jwt::demo_token(json!({"sub": sub})));
        let modes: &[bool] = if dialect.streams { &[false, true] } else { &[false] };
        // Guardrails both ways, JSON and SSE.
        for &stream in modes {
            let token = bearer(format!("{}-{stream}", dialect.name));
            let headers = [("content-type", "application/json"), ("authorization", token.as_str())];
            gw.clear_mocks();
            made += 1;
            let response = gw.request("POST", dialect.path, &headers, body(dialect, stream).to_string().as_bytes());
            assert_eq!(response.status, 200, "{} stream={stream}: {}", dialect.name, response.text());
            let sent = gw.upstream_requests();
            assert_eq!(sent.len(), 1, "{}", dialect.name);
            assert!(
                !sent[0].body.contains(ADDRESS),
                "{} reached the provider unmasked: {}",
                dialect.name,
                sent[0].body
            );
            assert!(sent[0].body.contains("[EMAIL_ADDRESS]"), "{}: {}", dialect.name, sent[0].body);
            let text = response.text();
            assert!(!text.contains(ADDRESS), "{} stream={stream} answered unmasked", dialect.name);
            if dialect.name != "embeddings" {
                let answer = if stream { streamed_text(&text) } else { text.clone() };
                assert!(
                    answer.contains("Mail [EMAIL_ADDRESS] now."),
                    "{} stream={stream}: the echo came back: {text}",
                    dialect.name
                );
            }
        }
        // The subject's budget (per-sub: 500 tokens/hour) ends in a 429 on this dialect too.
        let token = bearer(format!("{}-budget", dialect.name));
        let headers = [("content-type", "application/json"), ("authorization", token.as_str())];
        let refused = (0..12)
            .map(|_| {
                made += 1;
                gw.request("POST", dialect.path, &headers, body(dialect, false).to_string().as_bytes())
            })
            .find(|r| r.status == 429)
            .unwrap_or_else(|| panic!("{}: the budget never ran out", dialect.name));
        let error = refused.json();
        assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{}: {error}", dialect.name);
        assert!(refused.header("retry-after").is_some(), "{}", dialect.name);
    }

    // Exact usage was read from every dialect's responses, JSON and SSE.
    let entries = gw.access_log_entries(made);
    for dialect in &DIALECTS {
        let counted: Vec<&Value> = entries
            .iter()
            .filter(|e| e["path"] == dialect.path && e["status"] == 200)
            .filter(|e| e["tokens_in"].as_str().is_some_and(|t| t.parse::<u64>().unwrap() > 100))
            .collect();
        assert!(counted.len() >= 2, "{}: {entries:?}", dialect.name);
        if dialect.name == "embeddings" {
            assert!(counted.iter().all(|e| e["tokens_out"] == "0"), "{counted:?}");
        } else {
            assert!(
                counted.iter().all(|e| e["tokens_out"].as_str().unwrap().parse::<u64>().unwrap() > 100),
                "{counted:?}"
            );
        }
    }
    let prometheus = gw.prometheus();
    // Model names as metric labels (`.` becomes `_`).
    for model in ["gpt-4o-mini", "text-embedding-3-small", "gpt-3_5-turbo-instruct"] {
        assert!(
            prometheus
                .lines()
                .any(|l| l.starts_with("aigw_tokens_input{") && l.contains(&format!("model=\"{model}\""))),
            "no input-token metric for {model}"
        );
    }
}
