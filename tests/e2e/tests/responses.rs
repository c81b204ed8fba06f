//! The real OpenAI Python SDK on the Responses API, embeddings and legacy completions, against a real
//! Envoy running gateway.yaml: `responses.create` and `responses.stream` passed through to an OpenAI
//! backend (gpt-4o-mini) and translated for Anthropic (Claude), with tool calls; PII masked in
//! embeddings input at the provider; completions JSON and SSE; gateway and provider errors as the
//! SDK's classes. The calls are made by tests/e2e/sdk/responses_check.py.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test helpers outside #[test] fns

use aigw_e2e::{repo_root, Gateway, DEMO_KEYS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;

fn run_sdk(gw: &Gateway) -> BTreeMap<String, Value> {
    let python = repo_root().join(".tools/bin/python");
    let probe = Command::new(&python).args(["-c", "import openai"]).output();
    assert!(
        probe.as_ref().is_ok_and(|out| out.status.success()),
        "the SDK is not installed in .tools: run `just sdk-tools` ({probe:?})"
    );
    // The wealth key may use every model.
    let output = Command::new(&python)
        .arg(repo_root().join("tests/e2e/sdk/responses_check.py"))
        .args([gw.url().as_str(), DEMO_KEYS[1].0])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|case| (case["case"].as_str().unwrap().to_string(), case))
        .collect()
}

#[test]
fn the_openai_sdk_on_responses_embeddings_and_completions() {
    let gw = Gateway::start();
    let cases = run_sdk(&gw);
    let masked = "Mail [EMAIL_ADDRESS] about it.";
    for model in ["gpt-4o-mini", "claude-sonnet-4-5"] {
        let create = &cases[&format!("create-{model}")];
        assert_eq!(create["status"], "completed", "{create}");
        assert_eq!(create["text"], masked, "the mock echoes what reached it: {create}");
        assert!(create["input_tokens"].as_u64().unwrap() > 0, "{create}");
        assert_eq!(
            create["total_tokens"].as_u64(),
            Some(create["input_tokens"].as_u64().unwrap() + create["output_tokens"].as_u64().unwrap())
        );

        let tool = &cases[&format!("create-tool-{model}")];
        assert_eq!(tool["calls"][0]["name"], "get_weather", "{tool}");
        assert_eq!(
            serde_json::from_str::<Value>(tool["calls"][0]["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "Paris"})
        );

        let stream = &cases[&format!("stream-{model}")];
        assert_eq!(stream["first"], "response.created", "{stream}");
        assert_eq!(stream["last"], "response.completed", "{stream}");
        assert_eq!(stream["deltas"], masked, "{stream}");
        assert_eq!(stream["text"], masked, "the final response repeats the streamed text: {stream}");
        assert_eq!(
            serde_json::from_str::<Value>(stream["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(stream["calls"][0]["arguments"], stream["arguments"], "{stream}");
        assert!(stream["output_tokens"].as_u64().unwrap() > 0, "usage from response.completed: {stream}");
    }

    // What the providers received: the OpenAI mock got /v1/responses as sent; the Anthropic one got
    // Messages; nobody saw the address or the SSN.
    let sent = gw.upstream_requests();
    let responses: Vec<_> = sent.iter().filter(|r| r.path == "/v1/responses").collect();
    let messages: Vec<_> = sent.iter().filter(|r| r.path == "/v1/messages").collect();
    assert!(responses.len() >= 3 && messages.len() >= 3, "{:?}", sent.iter().map(|r| &r.path).collect::<Vec<_>>());
    let translated: Value = serde_json::from_str(&messages[0].body).unwrap();
    // prompt-template's decoration for the wealth key's tenant comes first, in `instructions`.
    let system = translated["system"][0]["text"].as_str().unwrap();
    assert!(system.starts_with("You are the Acme Bank") && system.ends_with("\n\nBe brief."), "{translated}");
    assert_eq!(translated["model"], "claude-sonnet-4-5");
    for request in &sent {
        assert!(!request.body.contains("jane.doe@example.com"), "{} leaked: {}", request.path, request.body);
        assert!(!request.body.contains("123-45-6789"), "{} leaked: {}", request.path, request.body);
    }
    // The reference config hashes SSNs (`[US_SSN:<hash>]`): the provider embeds the token, not the number.
    let embedded: Vec<_> =
        sent.iter().filter(|r| r.path == "/v1/embeddings" && r.body.contains("My SSN is [US_SSN:")).collect();
    assert_eq!(embedded.len(), 1, "the embeddings input was masked at the provider");
    assert_eq!(cases["embeddings"]["count"], 2);
    assert!(cases["embeddings"]["dimensions"].as_u64().unwrap() > 0);
    assert!(cases["embeddings"]["prompt_tokens"].as_u64().unwrap() > 0);

    assert_eq!(cases["completions"]["text"], masked, "{}", cases["completions"]);
    assert_eq!(cases["completions"]["finish_reason"], "stop");
    assert_eq!(cases["completions-stream"]["text"], masked);

    assert_eq!(
        cases["claude-previous-response"],
        json!({"case": "claude-previous-response", "class": "BadRequestError", "status": 400,
            "code": "unsupported_parameter", "param": "previous_response_id"})
    );
    assert_eq!(cases["claude-web-search"]["param"], "tools[0].type");
    for case in ["responses-429", "claude-responses-429", "embeddings-429"] {
        assert_eq!(cases[case]["class"], "RateLimitError", "{case}: {}", cases[case]);
        assert_eq!(cases[case]["status"], 429, "{case}");
    }

    // token-counter read the exact usage of every dialect: the access log has the provider's numbers.
    let entries = gw.access_log_entries(sent.len());
    let counted = |path: &str| {
        entries
            .iter()
            .filter(|e| e["path"].as_str().is_some_and(|p| p.starts_with(path)) && e["status"] == 200)
            .filter(|e| e["tokens_in"].as_str().is_some_and(|t| t.parse::<u64>().unwrap_or(0) > 0))
            .count()
    };
    // (The log shows the path as sent upstream: translated requests went to /v1/messages.)
    assert!(counted("/v1/responses") >= 3 && counted("/v1/messages") >= 3, "{entries:?}");
    assert!(counted("/v1/embeddings") >= 1, "{entries:?}");
    assert!(counted("/v1/completions") >= 2, "{entries:?}");
}
