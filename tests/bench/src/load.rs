//! The load generator: open-loop requests at a fixed rate, and SSE streams.
//!
//! Open loop: request `i` is due at `start + i / rate`, whatever happened to
//! earlier requests. A pool of worker threads, each with its own keep-alive
//! connection, takes the next due request; a worker that is late (all were
//! busy) sends at once, and the latency is still counted from the time the
//! request was *due* (no coordinated omission: a stall shows in the
//! percentiles instead of silently lowering the offered rate).

use crate::http::Conn;
use crate::stats::{summarize, Summary};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One fixed-rate run.
#[derive(Debug, Clone)]
pub struct RateRun {
    pub addr: SocketAddr,
    pub request: Arc<Vec<u8>>,
    /// Requests per second offered.
    pub rate: f64,
    /// Measured part.
    pub duration: Duration,
    /// Sent before the measured part at the same rate, not recorded.
    pub warmup: Duration,
    /// Worker threads (and connections).
    pub connections: usize,
}

/// What a fixed-rate run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    pub offered_rps: f64,
    /// Completed (any status) recorded requests per second of the measured part.
    pub achieved_rps: f64,
    pub ok: u64,
    /// Non-200 answers and transport errors, recorded part.
    pub errors: u64,
    pub latency: Summary,
    /// Requests sent in all, warm-up included (for CPU per request).
    pub sent_total: u64,
    #[serde(skip)]
    pub samples_ns: Vec<u64>,
    /// First non-200 status or error text, for the report.
    pub first_error: Option<String>,
}

struct WorkerOut {
    samples: Vec<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

/// Runs requests at a fixed rate and returns latencies from their due times.
pub fn run_rate(run: &RateRun) -> RateResult {
    let warmup_n = (run.rate * run.warmup.as_secs_f64()).round() as u64;
    let measured_n = ((run.rate * run.duration.as_secs_f64()).round() as u64).max(1);
    let total = warmup_n + measured_n;
    let period_ns = 1e9 / run.rate;
    let next = Arc::new(AtomicU64::new(0));
    // Threads start connecting now; the schedule starts a little later.
    let start = Instant::now() + Duration::from_millis(50);
    let measured_start = start + Duration::from_nanos((warmup_n as f64 * period_ns) as u64);
    let mut handles = Vec::new();
    for _ in 0..run.connections.max(1) {
        let next = Arc::clone(&next);
        let run = run.clone();
        handles.push(std::thread::spawn(move || {
            let mut out = WorkerOut { samples: Vec::new(), ok: 0, errors: 0, first_error: None, last_done: None };
            let mut conn: Option<Conn> = Conn::connect(run.addr, IO_TIMEOUT).ok();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = start + Duration::from_nanos((i as f64 * period_ns) as u64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let result = one_request(&mut conn, &run);
                let done = Instant::now();
                if i < warmup_n {
                    continue;
                }
                out.last_done = Some(done);
                match result {
                    Ok(200) => {
                        out.ok += 1;
                        out.samples.push(done.saturating_duration_since(due).as_nanos() as u64);
                    }
                    Ok(status) => {
                        out.errors += 1;
                        out.first_error.get_or_insert_with(|| format!("status {status}"));
                    }
                    Err(err) => {
                        out.errors += 1;
                        out.first_error.get_or_insert_with(|| err.to_string());
                    }
                }
            }
            out
        }));
    }
    let mut samples = Vec::new();
    let (mut ok, mut errors, mut first_error, mut last_done) = (0, 0, None, measured_start);
    for handle in handles {
        match handle.join() {
            Ok(out) => {
                samples.extend(out.samples);
                ok += out.ok;
                errors += out.errors;
                if first_error.is_none() {
                    first_error = out.first_error;
                }
                if let Some(done) = out.last_done {
                    last_done = last_done.max(done);
                }
            }
            Err(_) => {
                errors += 1;
                first_error.get_or_insert_with(|| "load worker panicked".to_string());
            }
        }
    }
    let elapsed = last_done.saturating_duration_since(measured_start).as_secs_f64().max(run.duration.as_secs_f64());
    RateResult {
        offered_rps: run.rate,
        achieved_rps: (ok + errors) as f64 / elapsed,
        ok,
        errors,
        latency: summarize(&samples),
        sent_total: total,
        samples_ns: samples,
        first_error,
    }
}

fn one_request(conn: &mut Option<Conn>, run: &RateRun) -> Result<u16, std::io::Error> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => Conn::connect(run.addr, IO_TIMEOUT)?,
    };
    c.send(&run.request)?;
    let info = c.read_response(&mut |_, _| {}, &mut |_, _| {})?;
    if info.keep_alive {
        *conn = Some(c);
    }
    Ok(info.status)
}

/// Timing of one streamed (SSE) response.
#[derive(Debug, Clone, Default)]
pub struct StreamTiming {
    pub status: u16,
    /// Send → response head.
    pub head_ns: u64,
    /// Send → first body byte.
    pub first_byte_ns: u64,
    /// Send → first event with non-empty `choices[0].delta.content` (time to first token).
    pub first_token_ns: u64,
    /// Gaps between successive content-bearing events.
    pub gaps_ns: Vec<u64>,
    pub content_events: usize,
    /// The concatenated content (to check the chain delivered it all).
    pub content: String,
    pub error: Option<String>,
}

/// Sends `count` streaming requests, one connection each, started `stagger` apart.
pub fn run_streams(addr: SocketAddr, request: Arc<Vec<u8>>, count: usize, stagger: Duration) -> Vec<StreamTiming> {
    let start = Instant::now() + Duration::from_millis(50);
    let handles: Vec<_> = (0..count)
        .map(|k| {
            let request = Arc::clone(&request);
            std::thread::spawn(move || {
                let due = start + stagger * k as u32;
                let mut conn = match Conn::connect(addr, IO_TIMEOUT) {
                    Ok(conn) => conn,
                    Err(err) => return StreamTiming { error: Some(err.to_string()), ..StreamTiming::default() },
                };
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                one_stream(&mut conn, &request)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| StreamTiming { error: Some("panicked".into()), ..Default::default() }))
        .collect()
}

fn one_stream(conn: &mut Conn, request: &[u8]) -> StreamTiming {
    let mut timing = StreamTiming::default();
    let sent = Instant::now();
    if let Err(err) = conn.send(request) {
        timing.error = Some(err.to_string());
        return timing;
    }
    let since = |t: Instant| t.saturating_duration_since(sent).as_nanos() as u64;
    let mut pending: Vec<u8> = Vec::new();
    let mut last_token: Option<Instant> = None;
    let (mut head_ns, mut status) = (0, 0);
    let mut first_byte: Option<u64> = None;
    let mut gaps = Vec::new();
    let mut content = String::new();
    let (mut first_token, mut events) = (None, 0usize);
    let result = conn.read_response(
        &mut |s, at| {
            status = s;
            head_ns = since(at);
        },
        &mut |piece, at| {
            first_byte.get_or_insert_with(|| since(at));
            pending.extend_from_slice(piece);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
                    let Some(delta) = content_of(data.trim()) else { continue };
                    content.push_str(&delta);
                    events += 1;
                    first_token.get_or_insert_with(|| since(at));
                    if let Some(prev) = last_token {
                        gaps.push(at.saturating_duration_since(prev).as_nanos() as u64);
                    }
                    last_token = Some(at);
                }
            }
        },
    );
    timing.status = status;
    timing.head_ns = head_ns;
    timing.first_byte_ns = first_byte.unwrap_or(0);
    timing.first_token_ns = first_token.unwrap_or(0);
    timing.gaps_ns = gaps;
    timing.content_events = events;
    timing.content = content;
    if let Err(err) = result {
        timing.error = Some(err.to_string());
    }
    timing
}

/// `choices[0].delta.content` of an OpenAI stream event, when non-empty.
fn content_of(data: &str) -> Option<String> {
    if data == "[DONE]" {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    let text = value.get("choices")?.get(0)?.get("delta")?.get("content")?.as_str()?;
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_of_stream_events() {
        assert_eq!(content_of(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#).as_deref(), Some("Hi"));
        assert_eq!(content_of(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#), None);
        assert_eq!(content_of(r#"{"choices":[],"usage":{"total_tokens":3}}"#), None);
        assert_eq!(content_of("[DONE]"), None);
    }
}
