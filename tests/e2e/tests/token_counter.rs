//! token-counter through a real Envoy: a JWT subject hits the shipped 500 tokens/hour budget and gets an
//! OpenAI-style 429 while other subjects are still served; every response carries the rate-limit headers;
//! streamed usage is requested upstream and hidden from the client; the metrics appear on the admin
//! endpoint with their labels; and Envoy's global rate limit filter is charged with the real token count
//! (`hits_addend`) through a stand-in rate limit service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::http::sse_data;
use aigw_e2e::{jwt, repo_root, validate_config, Gateway, HttpResponse};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shipped gateway.yaml with only this filter (jwt_authn and the router stay), its shipped config:
/// `per-client` (1 000 000 tokens/hour by client address) and `per-sub` (500 tokens/hour per JWT `sub`).
fn gateway() -> Gateway {
    Gateway::builder().only_filters(&["token-counter"]).start()
}

fn bearer(sub: &str) -> String {
    format!("Bearer {}", jwt::demo_token(json!({"sub": sub})))
}

/// About 120 prompt tokens; the mock echoes the last user message, so about 120 output tokens too.
fn long_chat() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "budget ".repeat(120)}]
    })
}

fn header_u64(response: &HttpResponse, name: &str) -> u64 {
    response
        .header(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {:?}", response.header(name)))
}

/// The value of the first Prometheus sample of `family` whose labels contain every `labels` pair.
fn sample(prometheus: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    prometheus.lines().find_map(|line| {
        let rest = line.strip_prefix(family)?.strip_prefix('{')?;
        let (label_text, value) = rest.split_once("} ")?;
        labels.iter().all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\""))).then(|| value.trim().parse().ok())?
    })
}

#[test]
fn a_subject_hits_its_budget_while_others_are_served_and_metrics_show_it() {
    let gw = gateway();
    let alice = bearer("alice");

    // alice spends her 500 tokens: each request reserves ~220 and settles to ~240.
    let mut served = 0;
    let refused = loop {
        let response = gw.chat_with(&[("authorization", alice.as_str())], &long_chat());
        if response.status == 429 {
            break response;
        }
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("x-ratelimit-limit-tokens"), Some("500"), "the tighter rule is reported");
        assert!(header_u64(&response, "x-ratelimit-remaining-tokens") < 500);
        served += 1;
        assert!(served < 5, "alice was never refused");
    };
    assert!(served >= 1, "the first request fits the budget");

    // The 429: OpenAI's error shape, headers and retry-after.
    let error = refused.json();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert_eq!(error["error"]["type"], "rate_limit_exceeded");
    assert!(error["error"]["message"].as_str().unwrap().contains("per-sub"));
    assert_eq!(refused.header("x-ratelimit-limit-tokens"), Some("500"));
    let remaining = header_u64(&refused, "x-ratelimit-remaining-tokens");
    assert!(remaining < 230, "remaining {remaining} should be below what a request needs");
    let retry_after = header_u64(&refused, "retry-after");
    assert!((1..=3600).contains(&retry_after));
    assert!(refused.header("x-ratelimit-reset-tokens").is_some_and(|v| v.ends_with('s')));
    // The refused request never reached the provider.
    let upstream_chats = gw.upstream_requests().iter().filter(|r| r.path.ends_with("/chat/completions")).count();
    assert_eq!(upstream_chats, served);

    // bob has his own budget.
    let bob = gw.chat_with(&[("authorization", bearer("bob").as_str())], &long_chat());
    assert_eq!(bob.status, 200, "{}", bob.text());
    assert_eq!(bob.header("x-ratelimit-limit-tokens"), Some("500"));
    // A request without a JWT is only under the per-client rule.
    let anonymous = gw.chat(&long_chat());
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.header("x-ratelimit-limit-tokens"), Some("1000000"));

    // The access log carries the counts (filter state set by token-counter).
    let entries = gw.access_log_entries(served + 3);
    let ok: Vec<&Value> = entries.iter().filter(|e| e["status"] == 200).collect();
    assert!(!ok.is_empty());
    for entry in &ok {
        let input: u64 = entry["tokens_in"].as_str().unwrap().parse().unwrap();
        let output: u64 = entry["tokens_out"].as_str().unwrap().parse().unwrap();
        assert!(input > 100 && output > 100, "{entry}");
    }

    // Metrics with their labels on /stats/prometheus.
    let prometheus = gw.prometheus();
    let rejected = sample(&prometheus, "aigw_ratelimit_rejected", &[("rule", "per-sub")]);
    assert_eq!(rejected, Some(1.0), "{}", grep(&prometheus, "aigw_"));
    assert_eq!(sample(&prometheus, "aigw_ratelimit_key_rejected", &[("rule", "per-sub"), ("key", "alice")]), Some(1.0));
    assert!(sample(&prometheus, "aigw_ratelimit_key_tokens", &[("key", "bob")]).is_some_and(|v| v > 200.0));
    let input = sample(&prometheus, "aigw_tokens_input", &[("model", "gpt-4o-mini"), ("aigw_filter", "token_counter")]);
    assert!(input.is_some_and(|v| v > 300.0), "{}", grep(&prometheus, "aigw_tokens"));
    assert!(sample(&prometheus, "aigw_tokens_output", &[("model", "gpt-4o-mini")]).is_some_and(|v| v > 300.0));
    assert_eq!(sample(&prometheus, "aigw_requests_total", &[("model", "gpt-4o-mini")]), Some((served + 2) as f64));
    // gpt-4o-mini is priced in the shipped config.
    assert!(sample(&prometheus, "aigw_cost_micro_usd", &[("model", "gpt-4o-mini")]).is_some_and(|v| v > 0.0));
    // Histograms appear after Envoy's stats flush (every 5 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let prometheus = gw.prometheus();
        if sample(&prometheus, "aigw_latency_total_ms_count", &[("model", "gpt-4o-mini")]).is_some_and(|v| v >= 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no latency histogram: {}", grep(&prometheus, "aigw_latency"));
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn grep(text: &str, needle: &str) -> String {
    text.lines().filter(|l| l.contains(needle)).collect::<Vec<_>>().join("\n")
}

#[test]
fn streams_get_usage_upstream_without_showing_it_to_the_client() {
    let gw = gateway();
    let body = json!({"model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": "count these few words please"}]});
    let response = gw.request(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json"), ("x-mock-chunks", "4")],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.header("x-ratelimit-remaining-tokens").is_some());
    assert!(response.header("content-length").is_none());
    // The provider was asked for usage...
    let upstream = gw.mock("mock").requests();
    let sent = upstream.iter().find(|r| r.path.ends_with("/chat/completions")).unwrap().body_json().unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["messages"][0]["content"], "count these few words please");
    // ...and the client, who did not ask, got no usage chunk, but everything else.
    let events = sse_data(&response.text());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events.iter().all(|e| !e.contains("\"usage\":{")), "{events:?}");
    let text = aigw_e2e::http::openai_stream_text(&response.text());
    assert_eq!(text, "count these few words please");
    // The usage was read from the removed chunk.
    let entry = gw.access_log_entries(1).into_iter().next().unwrap();
    assert_eq!(entry["tokens_out"], "5", "{entry}");
    assert!(gw.prometheus().contains("aigw_usage_chunks_removed"), "counter is exported");
}

// ---- Envoy's global rate limit filter, charged with the token count --------------------------------------

/// What the stand-in rate limit service received: one entry per descriptor of each call.
#[derive(Debug, Clone, PartialEq)]
struct Charge {
    domain: String,
    entries: Vec<(String, String)>,
    /// The descriptor's own hits_addend, else the request's.
    hits_addend: Option<u64>,
}

#[test]
fn the_global_rate_limit_service_is_charged_with_the_token_total() {
    let example = repo_root().join("filters/token-counter/examples/global-ratelimit.yaml");
    validate_config(&example).unwrap();

    let service = StandInRateLimitService::start();
    let yaml = std::fs::read_to_string(&example).unwrap();
    let rendered = yaml.replace("port_value: 8081", &format!("port_value: {}", service.port));
    assert_ne!(rendered, yaml, "the example's rate limit service port moved");
    let path = std::env::temp_dir().join(format!("aigw-global-ratelimit-{}.yaml", std::process::id()));
    std::fs::write(&path, rendered).unwrap();
    let gw = Gateway::builder().config_file(path.to_str().unwrap()).start();

    let response = gw.request(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json"), ("x-user", "alice")],
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(response.status, 200, "{}\n{}", response.text(), gw.envoy_log());
    let total = response.json()["usage"]["total_tokens"].as_u64().unwrap();
    assert!(total > 0);

    // The check before forwarding adds nothing; the charge at stream end adds the token total.
    let deadline = Instant::now() + Duration::from_secs(10);
    let charges = loop {
        let charges = service.charges();
        if charges.len() >= 2 || Instant::now() > deadline {
            break charges;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let user = vec![("user".to_string(), "alice".to_string())];
    assert_eq!(
        charges,
        vec![
            Charge { domain: "aigw-tokens".into(), entries: user.clone(), hits_addend: Some(0) },
            Charge { domain: "aigw-tokens".into(), entries: user, hits_addend: Some(total) },
        ],
        "{}",
        gw.envoy_log()
    );
    let entry = gw.access_log_entries(1).into_iter().next().unwrap();
    assert_eq!(entry["tokens_total"], total.to_string());
    let _ = std::fs::remove_file(&path);
}

/// A minimal gRPC rate limit service (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) over
/// cleartext HTTP/2, enough for Envoy's rate limit filter: it records each request and answers OK.
struct StandInRateLimitService {
    port: u16,
    charges: Arc<Mutex<Vec<Charge>>>,
}

impl StandInRateLimitService {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let charges = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&charges);
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || {
                    let _ = serve_h2(connection, &recorded);
                });
            }
        });
        StandInRateLimitService { port, charges }
    }

    fn charges(&self) -> Vec<Charge> {
        self.charges.lock().unwrap().clone()
    }
}

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;

fn write_frame(out: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> std::io::Result<()> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(payload);
    out.write_all(&frame)
}

/// HPACK: a literal header field without indexing, new name, no Huffman coding.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
    out
}

fn serve_h2(mut connection: TcpStream, charges: &Mutex<Vec<Charge>>) -> std::io::Result<()> {
    let mut preface = [0u8; 24];
    connection.read_exact(&mut preface)?;
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "not an HTTP/2 client");
    write_frame(&mut connection, FRAME_SETTINGS, 0, 0, &[])?;
    let mut bodies: std::collections::HashMap<u32, Vec<u8>> = std::collections::HashMap::new();
    loop {
        let mut header = [0u8; 9];
        connection.read_exact(&mut header)?;
        let len = (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        connection.read_exact(&mut payload)?;
        let mut ended = false;
        match kind {
            FRAME_SETTINGS if flags & FLAG_ACK == 0 => write_frame(&mut connection, FRAME_SETTINGS, FLAG_ACK, 0, &[])?,
            FRAME_PING if flags & FLAG_ACK == 0 => write_frame(&mut connection, FRAME_PING, FLAG_ACK, 0, &payload)?,
            FRAME_GOAWAY => return Ok(()),
            // The request headers (path, content-type) are not needed: HPACK state is not tracked.
            FRAME_HEADERS => ended = flags & FLAG_END_STREAM != 0,
            FRAME_DATA => {
                let data = if flags & FLAG_PADDED != 0 {
                    let pad = usize::from(payload[0]);
                    payload[1..payload.len() - pad].to_vec()
                } else {
                    payload
                };
                bodies.entry(stream).or_default().extend_from_slice(&data);
                ended = flags & FLAG_END_STREAM != 0;
            }
            _ => {}
        }
        if ended {
            let body = bodies.remove(&stream).unwrap_or_default();
            // gRPC framing: compressed flag, 4-byte length, message.
            if body.len() >= 5 {
                charges.lock().unwrap().extend(parse_rate_limit_request(&body[5..]));
            }
            let mut headers = vec![0x88]; // :status 200 (static table index 8)
            headers.extend(literal("content-type", "application/grpc"));
            write_frame(&mut connection, FRAME_HEADERS, FLAG_END_HEADERS, stream, &headers)?;
            // RateLimitResponse { overall_code: OK (1) }
            write_frame(&mut connection, FRAME_DATA, 0, stream, &[0, 0, 0, 0, 2, 0x08, 0x01])?;
            write_frame(
                &mut connection,
                FRAME_HEADERS,
                FLAG_END_HEADERS | FLAG_END_STREAM,
                stream,
                &literal("grpc-status", "0"),
            )?;
        }
    }
}

/// Protobuf fields of a message: (field number, varint value or bytes).
fn fields(mut bytes: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes[0];
            *bytes = &bytes[1..];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        value
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        match key & 7 {
            0 => out.push((key >> 3, Ok(varint(&mut bytes)))),
            2 => {
                let len = varint(&mut bytes) as usize;
                out.push((key >> 3, Err(bytes[..len].to_vec())));
                bytes = &bytes[len..];
            }
            1 => bytes = &bytes[8..],
            5 => bytes = &bytes[4..],
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

/// RateLimitRequest { domain = 1; repeated RateLimitDescriptor descriptors = 2; uint32 hits_addend = 3 },
/// RateLimitDescriptor { repeated Entry entries = 1 {key = 1, value = 2}; ...; UInt64Value hits_addend = 3 }.
fn parse_rate_limit_request(message: &[u8]) -> Vec<Charge> {
    let top = fields(message);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let domain = top.iter().find_map(|(n, v)| (*n == 1).then(|| v.clone().err()).flatten()).map(|b| text(&b));
    let request_hits = top.iter().find_map(|(n, v)| (*n == 3).then(|| v.clone().ok()).flatten());
    top.iter()
        .filter(|(n, _)| *n == 2)
        .filter_map(|(_, v)| v.clone().err())
        .map(|descriptor| {
            let mut entries = Vec::new();
            let mut hits = None;
            for (n, v) in fields(&descriptor) {
                match (n, v) {
                    (1, Err(entry)) => {
                        let parts = fields(&entry);
                        let get = |i: u64| {
                            parts
                                .iter()
                                .find_map(|(n, v)| (*n == i).then(|| v.clone().err()).flatten())
                                .map(|b| text(&b))
                        };
                        entries.push((get(1).unwrap_or_default(), get(2).unwrap_or_default()));
                    }
                    // google.protobuf.UInt64Value { value = 1 }; an empty wrapper is 0.
                    (3, Err(wrapper)) => {
                        hits = Some(
                            fields(&wrapper)
                                .iter()
                                .find_map(|(n, v)| (*n == 1).then(|| v.clone().ok()).flatten())
                                .unwrap_or(0),
                        );
                    }
                    _ => {}
                }
            }
            Charge { domain: domain.clone().unwrap_or_default(), entries, hits_addend: hits.or(request_hits) }
        })
        .collect()
}
