//! The Grafana dashboard (envoy-config/observability/grafana-dashboard.json) against a real Prometheus
//! (Debian's `prometheus`, installed by `just obs-tools`) scraping a real Envoy running gateway.yaml
//! with envoy-config/observability/prometheus.yml, after mixed traffic: every panel's every query must
//! return data. A panel whose metric was renamed, lost its label or was never emitted fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::http::request;
use aigw_e2e::{jwt, repo_root, Gateway, DEMO_KEYS};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Runs Prometheus with the shipped scrape config, its target swapped for `admin` and the interval
    /// shortened so the test needs seconds, not minutes.
    fn start(admin: SocketAddr, dir: &std::path::Path) -> Prometheus {
        let shipped = std::fs::read_to_string(repo_root().join("envoy-config/observability/prometheus.yml")).unwrap();
        assert!(shipped.contains("\"127.0.0.1:9901\""), "the shipped config scrapes `just up`'s admin port");
        let config = shipped.replace("127.0.0.1:9901", &admin.to_string()).replace("5s", "1s");
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is not installed: run `just obs-tools`");
        Prometheus { child, addr }
    }

    fn query(&self, promql: &str) -> Value {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let response = request(self.addr, "GET", &path, &[], b"").unwrap();
        assert_eq!(response.status, 200, "{promql}: {}", response.text());
        response.json()
    }

    fn wait_until(&self, what: &str, promql: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = request(self.addr, "GET", "/-/ready", &[], b"").is_ok_and(|r| r.status == 200);
            if ready && self.query(promql)["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Traffic that moves every panel: keys of two teams, PII, streams, a failover, provider errors, a
/// budget refusal, an unknown model, a content filter, a repeated question for the cache.
fn mixed_traffic(gw: &Gateway) {
    let retail = format!("Bearer {}", DEMO_KEYS[0].0);
    let wealth = format!("Bearer {}", DEMO_KEYS[1].0);
    for (key, model) in [(&retail, "gpt-4o-mini"), (&wealth, "gpt-4o"), (&wealth, "claude-sonnet-4-5")] {
        let headers = [("authorization", key.as_str()), ("x-mock-chunk-delay-ms", "5")];
        assert_eq!(gw.chat_with(&headers, &chat(model, "Hello, my email is jane@example.com", false)).status, 200);
        assert_eq!(gw.chat_with(&headers, &chat(model, "Stream a few words back to me", true)).status, 200);
    }
    let question = "What is the return policy for electronics in store 12?";
    // `temperature: 0`: semantic-cache stores only deterministic answers (by default).
    let mut repeated = chat("gpt-4o-mini", question, false);
    repeated["temperature"] = json!(0);
    for _ in 0..2 {
        assert_eq!(gw.chat(&repeated).status, 200);
    }
    let failover = [("x-mock-status", "503"), ("x-mock-fault-backend", "mock")];
    assert_eq!(gw.chat_with(&failover, &chat("failover-demo", "fail over", false)).status, 200);
    assert_eq!(gw.chat_with(&[("x-mock-status", "429")], &chat("gpt-4o", "limited", false)).status, 429);
    assert_eq!(gw.chat_with(&[("x-mock-status", "500")], &chat("gpt-4o", "broken", false)).status, 500);
    assert_eq!(gw.chat_with(&[("x-mock-finish", "content_filter")], &chat("gpt-4o", "filtered", false)).status, 200);
    assert_eq!(gw.chat(&chat("no-such-model", "who?", false)).status, 404);
    let bearer = format!("Bearer {}", jwt::demo_token(json!({"sub": "dashboard-budget"})));
    let long = chat("gpt-4o-mini", &"budget ".repeat(300), false);
    let refused = (0..6).any(|_| gw.chat_with(&[("authorization", bearer.as_str())], &long).status == 429);
    assert!(refused, "the per-sub budget refused a request");
}

#[test]
fn every_dashboard_panel_has_data_in_a_real_prometheus() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("envoy-config/observability/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let gw = Gateway::start();
    mixed_traffic(&gw);

    let dir = std::env::temp_dir().join(format!("aigw-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let prometheus = Prometheus::start(gw.admin_addr(), &dir);
    // Rates need two samples in the window: wait for three scrapes, then move the counters again.
    prometheus.wait_until("three scrapes", "count_over_time(up{job=\"aigw\"}[5m]) >= 3");
    mixed_traffic(&gw);
    prometheus.wait_until("a scrape after the second round", "changes(aigw_routed_requests[5m]) > 0");

    let mut empty = Vec::new();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let promql = expr.replace("$__rate_interval", "1m").replace("$__range", "5m");
            let answer = prometheus.query(&promql);
            assert_eq!(answer["status"], "success", "{}: {promql}: {answer}", panel["title"]);
            queries += 1;
            if answer["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
                empty.push(format!("{}: {promql}", panel["title"]));
            }
        }
    }
    assert!(queries >= 18, "the dashboard lost panels ({queries} queries)");
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
}

/// Every panel's queries name only metrics the gateway can emit, and the dashboard covers the seed's list.
#[test]
fn the_dashboard_covers_the_seed_list() {
    let text = std::fs::read_to_string(repo_root().join("envoy-config/observability/grafana-dashboard.json")).unwrap();
    for seed_item in [
        "token consumption by model",
        "request distribution across providers",
        "concurrent requests",
        "error rates by type",
        "cost per request by model",
        "budget adherence by team",
        "TTFT",
        "TPOT",
        "tokens per second",
        "total latency",
        "semantic cache hit rates",
    ] {
        assert!(text.to_lowercase().contains(&seed_item.to_lowercase()), "no panel says it serves {seed_item:?}");
    }
}
