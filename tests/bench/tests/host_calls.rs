//! Host calls per request, per filter: the benchmark's request (1 KiB chat prompt with an
//! e-mail address, 2 KiB completion; JSON and streamed) through the five built filters
//! (dist/*.wasm) on the wasmtime harness, chained as in gateway.yaml and configured as the
//! benchmark runs them, and through the one-pass build (dist/aigw.wasm, the same five as
//! stages of one filter). Every import call is counted (tests/harness `calls.rs`).
//!
//! Counting is deterministic where timings on a shared machine are not: each host call is a
//! crossing of the Wasm boundary (in Envoy, a V8 → C++ call, often with a copy through the
//! guest allocator). The test prints the table and fails when a filter exceeds its bound, so a
//! change that adds host calls to the hot path has to raise the bound on purpose.
//! `just host-calls` writes the table to bench-results/host-calls.md (BENCHMARKS.md shows it).

// Test code: a failed expectation is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_bench::workload;
use aigw_harness::{wasm_path, Harness, HostCalls, Stream, Vm, CATEGORIES};
use mock_llm::controls::{Controls, Mode};
use mock_llm::reply::{build, Api};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The chain's order in gateway.yaml: the request passes them in this order, the response in reverse.
const CHAIN: [&str; 5] = ["pii-mask", "prompt-template", "semantic-cache", "token-counter", "model-router"];

/// Content chunks of the streamed completion (each SSE event arrives as its own body callback).
const STREAM_CHUNKS: usize = 20;

/// Upper bounds on host calls per request in steady state (after two warm-up requests), per
/// filter: (JSON, streamed). Measured values are in BENCHMARKS.md; a bound is the measured
/// value plus a little slack, so that an extra call per callback fails the test.
const BOUNDS: [(&str, u64, u64); 6] = [
    ("pii-mask", 16, 62),
    ("prompt-template", 10, 10),
    ("semantic-cache", 13, 13),
    ("token-counter", 45, 80),
    ("model-router", 18, 18),
    (ONE_PASS, 80, 135),
];

/// The one-pass build's row: the five filters as stages of dist/aigw.wasm.
const ONE_PASS: &str = "one-pass (aigw.wasm)";

/// One piece of a direction of the exchange, as a filter forwards it to the next.
#[derive(Debug, Clone)]
enum Event {
    Headers(Vec<(String, String)>),
    Body(Vec<u8>, bool),
}

fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

/// A direction of the exchange: which callbacks feed a filter, and where what it forwards shows.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Request,
    Response,
}

impl Direction {
    fn send_headers(self, stream: &mut Stream, headers: &[(&str, &str)]) {
        match self {
            Direction::Request => stream.send_request_headers(headers, false),
            Direction::Response => stream.send_response_headers(headers, false),
        };
    }

    fn send_body(self, stream: &mut Stream, bytes: &[u8], end: bool) {
        match self {
            Direction::Request => stream.send_request_body(bytes, end),
            Direction::Response => stream.send_response_body(bytes, end),
        };
    }

    fn forwarded_headers(self, stream: &Stream) -> Option<Vec<(String, String)>> {
        let headers = match self {
            Direction::Request => stream.forwarded_request_headers(),
            Direction::Response => stream.client_response_headers(),
        };
        headers.map(|h| h.pairs().to_vec())
    }

    fn forwarded_body(self, stream: &Stream) -> Vec<u8> {
        match self {
            Direction::Request => stream.upstream_request_body(),
            Direction::Response => stream.client_response_body(),
        }
    }

    fn complete(self, stream: &Stream) -> bool {
        match self {
            Direction::Request => stream.request_complete(),
            Direction::Response => stream.response_complete(),
        }
    }
}

/// Feeds `events` to one filter's side `direction`; returns what it forwarded (upstream for the
/// request, to the client for the response).
fn pass(direction: Direction, stream: &mut Stream, events: &[Event]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut headers_out = false;
    let mut forwarded = 0;
    for event in events {
        match event {
            Event::Headers(headers) => direction.send_headers(stream, &pairs(headers)),
            Event::Body(bytes, end) => direction.send_body(stream, bytes, *end),
        }
        if let Direction::Request = direction {
            assert!(stream.local_reply().is_none(), "local reply: {:?}", stream.local_reply());
        }
        if !headers_out {
            if let Some(headers) = direction.forwarded_headers(stream) {
                out.push(Event::Headers(headers));
                headers_out = true;
            }
        }
        let body = direction.forwarded_body(stream);
        let complete = direction.complete(stream);
        if body.len() > forwarded || (complete && matches!(event, Event::Body(_, true))) {
            out.push(Event::Body(body[forwarded..].to_vec(), complete));
            forwarded = body.len();
        }
    }
    assert!(direction.complete(stream), "{direction:?} did not complete");
    out
}

fn body_of(events: &[Event]) -> Vec<u8> {
    events.iter().flat_map(|e| if let Event::Body(b, _) = e { b.clone() } else { Vec::new() }).collect()
}

fn headers_of(events: &[Event]) -> Vec<(String, String)> {
    events.iter().find_map(|e| if let Event::Headers(h) = e { Some(h.clone()) } else { None }).unwrap_or_default()
}

struct Chain {
    vms: Vec<(&'static str, Vm)>,
    prompt: String,
    answer: String,
}

impl Chain {
    /// The five filters as separate modules (one VM each, as gateway.yaml), or as the stages of the
    /// one-pass build (dist/aigw.wasm, one VM, as gateway-bundle.yaml).
    fn start(harness: &Harness, one_pass: bool) -> Chain {
        let yaml = std::fs::read_to_string(aigw_e2e::repo_root().join("envoy-config/gateway.yaml")).unwrap();
        let shipped: BTreeMap<String, String> = aigw_e2e::config::wasm_configs(&yaml).unwrap().into_iter().collect();
        let configs = workload::chain_configs(&shipped).unwrap();
        let prompt = workload::bench_prompt();
        let answer = workload::bench_answer();
        if one_pass {
            let blocks: Vec<(String, String)> =
                CHAIN.iter().map(|name| (name.to_string(), configs.get(*name).unwrap().clone())).collect();
            let config = aigw_e2e::bundle::configuration(&blocks);
            let vm = harness.vm(wasm_path("aigw")).config(config).vm_id("aigw").start();
            assert!(vm.configured(), "aigw: {:?}", vm.logs());
            return Chain { vms: vec![(ONE_PASS, vm)], prompt, answer };
        }
        let vms = CHAIN
            .iter()
            .map(|name| {
                let config = configs.get(*name).unwrap_or_else(|| panic!("no config for {name}"));
                let vm = harness.vm(wasm_path(name)).config(config).vm_id(name).start();
                assert!(vm.configured(), "{name}: {:?}", vm.logs());
                (*name, vm)
            })
            .collect();
        Chain { vms, prompt, answer }
    }

    /// One request through the chain and its response back; returns what the client got.
    fn exchange(&self, stream: bool) -> (Vec<(String, String)>, Vec<u8>, Vec<u8>) {
        let body = workload::chat_body(&self.prompt, stream);
        let mode = format!("fixed:{}", self.answer);
        // What the load generator sends (tests/bench/src/http.rs) plus what Envoy adds.
        let headers: Vec<(String, String)> = [
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":scheme", "http"),
            (":authority", "bench.local"),
            ("content-type", "application/json"),
            ("content-length", &body.len().to_string()),
            ("x-mock-mode", &mode),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "3f0c9a52-8d4e-4f7b-9a51-0c6e2b7d1a11"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let mut streams: Vec<Stream> = self
            .vms
            .iter()
            .map(|(_, vm)| {
                let mut s = vm.stream();
                s.set_property(&["source", "address"], "127.0.0.1:40000");
                s
            })
            .collect();
        let mut events = vec![Event::Headers(headers), Event::Body(body, true)];
        for s in streams.iter_mut() {
            events = pass(Direction::Request, s, &events);
            assert!(s.pending_http_calls().is_empty(), "side call on the benchmark request: {:?}", s.http_calls());
        }
        let upstream_body = body_of(&events);
        let controls = Controls { mode: Mode::Fixed(self.answer.clone()), ..Controls::default() };
        let reply = build(Api::OpenAi, 1, &upstream_body, &controls, None).unwrap();
        let mut events = if stream {
            let mut events = vec![Event::Headers(vec![
                (":status".into(), "200".into()),
                ("content-type".into(), "text/event-stream".into()),
            ])];
            events
                .extend(reply.sse_events(Some(STREAM_CHUNKS)).into_iter().map(|e| Event::Body(e.into_bytes(), false)));
            events.push(Event::Body(Vec::new(), true));
            events
        } else {
            let json = reply.json_body().to_string().into_bytes();
            vec![
                Event::Headers(vec![
                    (":status".into(), "200".into()),
                    ("content-type".into(), "application/json".into()),
                    ("content-length".into(), json.len().to_string()),
                ]),
                Event::Body(json, true),
            ]
        };
        for s in streams.iter_mut().rev() {
            events = pass(Direction::Response, s, &events);
        }
        for s in streams.iter_mut() {
            s.finish();
        }
        (headers_of(&events), body_of(&events), upstream_body)
    }

    /// Host calls of each filter for one exchange (after resetting the counters).
    fn counted(&self, stream: bool) -> CountedExchange {
        for (_, vm) in &self.vms {
            vm.reset_host_calls();
        }
        let (headers, body, upstream) = self.exchange(stream);
        (self.vms.iter().map(|(name, vm)| (*name, vm.host_calls())).collect(), headers, body, upstream)
    }
}

/// Each filter's host calls for one exchange, then what the client got (headers, body) and the
/// body the provider received.
type CountedExchange = (Vec<(&'static str, HostCalls)>, Vec<(String, String)>, Vec<u8>, Vec<u8>);

fn table(rows: &[(String, HostCalls)]) -> String {
    let used: Vec<&str> = CATEGORIES
        .iter()
        .copied()
        .filter(|c| rows.iter().any(|(_, calls)| calls.by_category().iter().any(|(n, v)| n == c && *v > 0)))
        .collect();
    let mut out = String::from("| filter, request | total |");
    for c in &used {
        let _ = write!(out, " {c} |");
    }
    out.push_str("\n|---|---:|");
    for _ in &used {
        out.push_str("---:|");
    }
    out.push('\n');
    for (label, calls) in rows {
        let _ = write!(out, "| {label} | **{}** |", calls.total());
        let by = calls.by_category();
        for c in &used {
            let n = by.iter().find(|(name, _)| name == c).map(|(_, n)| *n).unwrap_or(0);
            let _ = write!(out, " {n} |");
        }
        out.push('\n');
    }
    out
}

#[test]
fn host_calls_per_request_stay_within_bounds() {
    let harness = Harness::new();
    let separate = Chain::start(&harness, false);
    let one_pass = Chain::start(&Harness::new(), true);
    let mut rows: Vec<(String, HostCalls)> = Vec::new();
    let mut details = String::new();
    let mut failures = Vec::new();
    let mut first_totals = Vec::new();
    let layouts = [
        (&separate, "JSON", false),
        (&separate, "streamed", true),
        (&one_pass, "JSON", false),
        (&one_pass, "streamed", true),
    ];
    for (chain, variant, stream) in layouts {
        // The first request of a VM also defines metrics and creates slots; report it apart.
        let (first, ..) = chain.counted(stream);
        first_totals.push((variant, first.iter().map(|(n, c)| (*n, c.total())).collect::<Vec<_>>()));
        chain.exchange(stream);
        let (calls, headers, body, upstream) = chain.counted(stream);

        // The chain did its work (a pass-through would count few calls for the wrong reason).
        let upstream = String::from_utf8_lossy(&upstream).into_owned();
        assert!(!upstream.contains("jane.doe@example.com"), "the e-mail address reached the provider");
        assert!(upstream.contains("Acme Bank assistant"), "no system prompt upstream");
        assert!(
            headers.iter().any(|(n, _)| n == "x-ratelimit-remaining-tokens"),
            "no rate-limit headers for the client: {headers:?}"
        );
        let body = String::from_utf8_lossy(&body).into_owned();
        let first_words = &chain.answer[..40];
        if stream {
            assert!(body.contains("data: [DONE]"), "stream incomplete: {body}");
        } else {
            assert!(body.contains(first_words), "completion lost: {body}");
        }

        let mut chain_total = HostCalls::default();
        for (name, calls) in calls {
            let bound = BOUNDS.iter().find(|(n, ..)| *n == name).map(|(_, j, s)| if stream { *s } else { *j });
            let bound = bound.unwrap_or_else(|| panic!("no bound for {name}"));
            if calls.total() > bound {
                failures.push(format!("{name} ({variant}): {} host calls > bound {bound}", calls.total()));
            }
            if calls.of("proxy_define_metric") > 0 {
                failures.push(format!("{name} ({variant}): defines metrics in steady state (cache the ids per VM)"));
            }
            let _ = writeln!(details, "\n{name}, {variant}:\n{}", calls.describe());
            chain_total.counts.extend(calls.counts.iter().cloned());
            rows.push((format!("{name}, {variant}"), calls));
        }
        if chain.vms.len() > 1 {
            rows.push((format!("**chain, {variant}**"), chain_total));
        }
    }
    let mut report = format!(
        "Host calls per request in steady state (third request of each VM), by kind. Request: 1 KiB chat prompt \
         with an e-mail address; response: 2 KiB chat.completion (JSON), or the same text in {STREAM_CHUNKS} SSE \
         content chunks (streamed, one body callback per event). Configuration as in `just bench`.\n\n"
    );
    report.push_str(&table(&rows));
    report.push_str("\nFirst request of a fresh VM (metric definitions, shared-data slots), total per filter:\n\n");
    for (variant, totals) in &first_totals {
        let line: Vec<String> = totals.iter().map(|(n, t)| format!("{n} {t}")).collect();
        let _ = writeln!(report, "- {variant}: {}", line.join(", "));
    }
    println!("{report}\nPer call site (count, callback, import(target)):\n{details}");
    if let Some(out) = std::env::var_os("AIGW_HOST_CALLS_OUT") {
        // Relative to the repository root (cargo runs tests in the crate's directory).
        let out = aigw_e2e::repo_root().join(out);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(
            &out,
            format!("{report}\n<details><summary>Per call site</summary>\n\n```\n{details}```\n</details>\n"),
        )
        .unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
