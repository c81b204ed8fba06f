//! Each filter's pure request/response path, natively, on the benchmark's request (issue #19):
//! the same functions `lib.rs` of each filter calls, in the same order, over the fake host
//! (`aigw_shared::host::fake::FakeHost`) instead of proxy-wasm. No Envoy, no Wasm, no host
//! calls: what is left is the filters' own work (parsing, scanning, tokenizing, serialising).
//!
//! Timings are the median of many runs of one request each; on a shared machine they move
//! from run to run, so `count` (a caller-supplied reader of allocation counters, see the
//! `aigw-native-paths` binary) adds what does not move: heap allocations per request.

// serde_json::Value indexed by key: a missing key reads as Null (no panic).
#![allow(clippy::indexing_slicing)]

use crate::workload;
use aigw_shared::api::ApiShape;
use aigw_shared::host::fake::FakeHost;
use mock_llm::controls::{Controls, Mode};
use mock_llm::reply::{build, Api};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Content chunks of the streamed completion (one body callback per SSE event), as in the
/// host-call count (tests/bench/tests/host_calls.rs).
pub const STREAM_CHUNKS: usize = 20;

const PATH: &str = "/v1/chat/completions";

/// One filter's path on one variant of the request.
#[derive(Debug, Clone, Serialize)]
pub struct PathCost {
    pub filter: &'static str,
    pub variant: &'static str,
    pub runs: usize,
    pub median_us: f64,
    pub p10_us: f64,
    pub p90_us: f64,
    /// Heap allocations and bytes allocated per request (None without a counting allocator).
    pub allocations: Option<u64>,
    pub allocated_bytes: Option<u64>,
}

/// Reads cumulative (allocations, bytes) of the process, when the binary counts them.
pub type AllocReader<'a> = &'a dyn Fn() -> Option<(u64, u64)>;

/// The request and the response as the benchmark sends and the mock answers them.
struct Exchange {
    body: Vec<u8>,
    content_type: &'static str,
    /// The response body as its callbacks deliver it (one chunk for JSON, one per event for SSE).
    chunks: Vec<Vec<u8>>,
}

fn exchange(stream: bool) -> Result<Exchange, String> {
    let body = workload::chat_body(&workload::bench_prompt(), stream);
    let controls = Controls { mode: Mode::Fixed(workload::bench_answer()), ..Controls::default() };
    // token-counter asks for usage on streams (`stream_options.include_usage`): the answer carries it.
    let mut upstream: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if stream {
        upstream["stream_options"] = serde_json::json!({"include_usage": true});
    }
    let reply = build(Api::OpenAi, 1, upstream.to_string().as_bytes(), &controls, None)?;
    Ok(if stream {
        let mut chunks: Vec<Vec<u8>> =
            reply.sse_events(Some(STREAM_CHUNKS)).into_iter().map(String::into_bytes).collect();
        chunks.push(Vec::new());
        Exchange { body, content_type: "text/event-stream", chunks }
    } else {
        Exchange { body, content_type: "application/json", chunks: vec![reply.json_body().to_string().into_bytes()] }
    })
}

fn host() -> FakeHost {
    FakeHost::new()
        .with_header(":method", "POST")
        .with_header(":path", PATH)
        .with_header("content-type", "application/json")
        .with_property(&["source", "address"], "127.0.0.1:40000")
        .with_time_nanos(1_767_225_600_000_000_000)
}

/// One request through one filter's pure path; panics are not expected (the filters' code
/// has none) but a wrong configuration is an error.
type Run = Box<dyn Fn()>;

fn runner(filter: &'static str, config: &str, ex: Exchange) -> Result<Run, String> {
    let host = host();
    let shape = ApiShape::from_path(PATH);
    Ok(match filter {
        "pii-mask" => {
            let config = pii_mask::config::from_json(Some(config.as_bytes())).map_err(|e| e.to_string())?;
            Box::new(move || {
                use pii_mask::policy::{self, ResponseGuard, ResponseHead};
                let _ = policy::request_scope(&config, &host, shape, Some("application/json"), None);
                let _ = policy::on_request(&config, &host, shape, &ex.body);
                let mut guard = ResponseGuard::default();
                let head =
                    ResponseHead { content_type: Some(ex.content_type), content_encoding: None, end_of_stream: false };
                let _ = guard.on_headers(&config, &host, true, head);
                let last = ex.chunks.len().saturating_sub(1);
                let mut held: Vec<u8> = Vec::new();
                for (i, chunk) in ex.chunks.iter().enumerate() {
                    // Envoy hands a paused filter everything buffered so far.
                    held.extend_from_slice(chunk);
                    let read = || held.clone();
                    match guard.on_body(&config, &host, shape, held.len(), i == last, &read) {
                        pii_mask::policy::BodyStep::Pause => {}
                        _ => held.clear(),
                    }
                }
                guard.report(&config, &host);
            })
        }
        "prompt-template" => {
            let config = prompt_template::config::from_json(Some(config.as_bytes())).map_err(|e| e.to_string())?;
            let shape = shape.ok_or("no shape")?;
            Box::new(move || {
                if let Ok(set) = prompt_template::tenant::select(&config, &host) {
                    let _ = prompt_template::request::process(&config, set, shape, &ex.body, &host);
                }
            })
        }
        "semantic-cache" => {
            let config = semantic_cache::config::from_json(Some(config.as_bytes())).map_err(|e| e.to_string())?;
            let shape = shape.ok_or("no shape")?;
            Box::new(move || {
                let mut exchange = semantic_cache::exchange::Exchange::new(&config, &host, shape, None);
                let _ = exchange.on_request(&config, &host, Some(&ex.body));
                let _ = exchange.response_headers(&config, &host, Some(200), Some(ex.content_type), None);
                let last = ex.chunks.len().saturating_sub(1);
                for (i, chunk) in ex.chunks.iter().enumerate() {
                    exchange.response_body(&config, &host, chunk, i == last);
                }
                exchange.finish(&host, true);
            })
        }
        "token-counter" => {
            let config = token_counter::config::from_json(Some(config.as_bytes())).map_err(|e| e.to_string())?;
            Box::new(move || {
                let mut stream = token_counter::exchange::Stream::new(&config, &host, PATH);
                let action = stream.request_body(&config, &host, &ex.body);
                let _ = stream.decision(action);
                let _ = stream.rate_headers(&config, &host);
                let _ = stream.response_headers(&config, Some(200), Some(ex.content_type), None);
                let last = ex.chunks.len().saturating_sub(1);
                for (i, chunk) in ex.chunks.iter().enumerate() {
                    let _ = stream.response_body(&host, chunk, i == last);
                }
                let _ = stream.finish(&config, &host, true, false);
            })
        }
        "model-router" => {
            let config = model_router::config::from_json(Some(config.as_bytes())).map_err(|e| e.to_string())?;
            let model_router::config::Config::Downstream(config) = config else {
                return Err("model-router: the benchmark runs the downstream instance".into());
            };
            Box::new(move || {
                let _ = model_router::plan::headers_to_strip(&config, PATH);
                let _ = model_router::plan::route_request(&config, &host, PATH, &ex.body);
            })
        }
        other => return Err(format!("unknown filter {other}")),
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

/// Times every filter's path on the JSON and the streamed request: `warmup` runs, then `runs`
/// runs timed one by one. Allocations are those of one run after the warm-up.
pub fn measure(
    configs: &BTreeMap<String, String>,
    warmup: usize,
    runs: usize,
    count: AllocReader<'_>,
) -> Result<Vec<PathCost>, String> {
    let mut out = Vec::new();
    for filter in ["pii-mask", "prompt-template", "semantic-cache", "token-counter", "model-router"] {
        let config = configs.get(filter).ok_or_else(|| format!("no configuration for {filter}"))?;
        for (variant, stream) in [("JSON", false), ("streamed", true)] {
            let run = runner(filter, config, exchange(stream)?)?;
            out.push(time(filter, variant, &*run, warmup, runs, count));
        }
    }
    Ok(out)
}

/// A named reference step, borrowing the body it measures.
type ReferenceStep<'a> = (&'static str, Box<dyn Fn() + 'a>);

/// Reference costs on the benchmark's request body, to read the paths against: the full
/// `serde_json::Value` parse every body-reading filter used to make, the one-field read
/// model-router makes now (`aigw_shared::body::json_object_field`), and a re-serialisation.
pub fn reference(warmup: usize, runs: usize, count: AllocReader<'_>) -> Vec<PathCost> {
    let body = workload::chat_body(&workload::bench_prompt(), false);
    let parsed = aigw_shared::body::parse_json_object(&body).unwrap_or_default();
    let steps: Vec<ReferenceStep<'_>> = vec![
        ("full parse (Value)", Box::new(|| drop(aigw_shared::body::parse_json_object(&body)))),
        ("one field (model)", Box::new(|| drop(aigw_shared::body::json_object_field(&body, "model")))),
        ("re-serialise (Value)", Box::new(|| drop(serde_json::to_vec(&parsed)))),
    ];
    let mut out = Vec::new();
    for (name, run) in steps {
        out.push(time("reference", name, &*run, warmup, runs, count));
    }
    out
}

fn time(
    filter: &'static str,
    variant: &'static str,
    run: &dyn Fn(),
    warmup: usize,
    runs: usize,
    count: AllocReader<'_>,
) -> PathCost {
    for _ in 0..warmup {
        run();
    }
    let before = count();
    run();
    let after = count();
    let (allocations, allocated_bytes) = match (before, after) {
        (Some((a0, b0)), Some((a1, b1))) => (Some(a1 - a0), Some(b1 - b0)),
        _ => (None, None),
    };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        run();
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    PathCost {
        filter,
        variant,
        runs,
        median_us: percentile(&times, 50.0),
        p10_us: percentile(&times, 10.0),
        p90_us: percentile(&times, 90.0),
        allocations,
        allocated_bytes,
    }
}

/// The figures as a Markdown table.
pub fn table(costs: &[PathCost]) -> String {
    let mut out = String::from(
        "| filter | request | median µs | p10–p90 µs | allocations | KiB allocated |\n|---|---|---:|---:|---:|---:|\n",
    );
    for c in costs {
        let allocations = c.allocations.map_or("-".to_string(), |n| n.to_string());
        let kib = c.allocated_bytes.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1024.0));
        out.push_str(&format!(
            "| {} | {} | {:.1} | {:.1}–{:.1} | {allocations} | {kib} |\n",
            c.filter, c.variant, c.median_us, c.p10_us, c.p90_us
        ));
    }
    out
}
