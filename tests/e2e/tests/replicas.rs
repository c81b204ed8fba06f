//! token-counter's budgets shared by two real Envoys (two workers each) through Envoy's rate limit
//! service API: our service (tools/ratelimit-redis, in-process here) counting in a real redis-server.
//!
//! - A subject alternating between the replicas is refused once the combined budget is spent.
//! - 200 concurrent requests spread over both replicas: what is charged stays within the budget (the
//!   bound in token-counter's DESIGN.md, with output capped by `max_tokens` and returns on), and equals
//!   what the provider reported, token for token.
//! - Redis down, then the service down: fail-open admits, fail-closed answers 503, both count
//!   `store_errors` and log it; nothing panics; requests are counted again once Redis is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::{repo_root, Gateway, HttpResponse};
use ratelimit_redis::counting::Limiter;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A redis-server on a loopback port (`apt-get install redis-server`; `just` installs it).
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every counter of a domain, summed (the e2e budgets use one rule and one subject per domain).
    fn total(&self, domain: &str) -> u64 {
        let cli = |args: &[&str]| {
            let out = Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let pattern = format!("aigw-rl|{}:{domain}|*", domain.len());
        cli(&["--scan", "--pattern", &pattern])
            .lines()
            .filter(|key| !key.is_empty())
            .map(|key| cli(&["GET", key]).trim().parse::<u64>().unwrap_or(0))
            .sum()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Our rate limit service, served from a thread of this test until stopped.
struct Service {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(port: u16, redis: &str) -> Service {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let redis = redis.to_string();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
                ready_tx.send(()).unwrap();
                tokio::select! {
                    _ = ratelimit_redis::server::serve(listener, Arc::new(Limiter::new(redis))) => {}
                    _ = stopped => {}
                }
            });
        });
        ready.recv_timeout(Duration::from_secs(10)).unwrap();
        Service { stop: Some(stop), thread: Some(thread) }
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// gateway.yaml with the `ratelimit` cluster pointed at `port`.
fn config_with_service(port: u16) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string(repo_root().join("envoy-config/gateway.yaml")).unwrap();
    assert_eq!(yaml.matches("port_value: 18181 }").count(), 1, "the ratelimit cluster's port");
    let path = std::env::temp_dir().join(format!("aigw-replicas-{}-{port}.yaml", std::process::id()));
    std::fs::write(&path, yaml.replace("port_value: 18181 }", &format!("port_value: {port} }}"))).unwrap();
    path
}

fn token_counter(domain: &str, limit: u64, failure_mode: &str) -> String {
    json!({
        "store": {"rls": {"cluster": "ratelimit", "domain": domain, "timeout_ms": 1000}},
        "failure_mode": failure_mode,
        "rules": [{"name": "team", "key": "header:x-team", "limit": limit, "window": "day"}]
    })
    .to_string()
}

fn replicas(service_port: u16, domain: &str, limit: u64, modes: [&str; 2]) -> (Gateway, Gateway) {
    let config = config_with_service(service_port);
    let builder = |mode: &str| {
        Gateway::builder()
            .config_path(config.clone())
            .only_filters(&["token-counter"])
            .filter_config("token-counter", token_counter(domain, limit, mode))
            .log_level("info")
    };
    let first = builder(modes[0]).start();
    let second = builder(modes[1]).start_replica(&first);
    (first, second)
}

/// A short chat whose reply is one word (`x-mock-mode: fixed:`), so usage stays under the reservation.
fn chat(gw: &Gateway, team: &str) -> HttpResponse {
    chat_at(gw.addr(), team)
}

fn chat_at(addr: std::net::SocketAddr, team: &str) -> HttpResponse {
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 40,
        "messages": [{"role": "user", "content": "count these few words please"}]});
    let headers = [("content-type", "application/json"), ("x-team", team), ("x-mock-mode", "fixed:done")];
    aigw_e2e::http::request(addr, "POST", "/v1/chat/completions", &headers, body.to_string().as_bytes())
        .unwrap_or_else(|err| panic!("request to {addr} failed: {err}"))
}

fn header_u64(response: &HttpResponse, name: &str) -> u64 {
    response.header(name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {name}: {:?}", response.headers))
}

fn reported_total(response: &HttpResponse) -> u64 {
    let body: Value = response.json();
    body["usage"]["total_tokens"].as_u64().unwrap_or_else(|| panic!("no usage in {body}"))
}

/// Waits until the settlements (sent by each VM's root context every 20 ms) have reached Redis.
fn settled(redis: &Redis, domain: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total = redis.total(domain);
        if total == expected || Instant::now() > deadline {
            return total;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replicas_share_one_budget_and_charge_exactly_what_the_provider_reported() {
    let redis = Redis::start(free_port());
    let service_port = free_port();
    let _service = Service::start(service_port, &redis.address());
    let (a, b) = replicas(service_port, "alternating", 600, ["open", "open"]);

    // One team alternating between the replicas: each request reserves its prompt + 40 and settles to its
    // usage (about 6 tokens); the combined 600 run out after about 90 requests, whichever replica serves
    // (one replica alone would count only its own half).
    let mut reported = 0;
    let mut served = [0, 0];
    let refused = (0..200).find_map(|i| {
        let (gw, index) = if i % 2 == 0 { (&a, 0) } else { (&b, 1) };
        let response = chat(gw, "blue");
        match response.status {
            200 => {
                reported += reported_total(&response);
                served[index] += 1;
                // Its return reached Redis before the next request (the concurrent part below does
                // not wait): the refusal comes exactly when the next reservation no longer fits.
                assert_eq!(settled(&redis, "alternating", reported), reported);
                assert!(response.header("x-ratelimit-remaining-tokens").is_some());
                None
            }
            429 => Some((index, response)),
            other => panic!("unexpected {other}: {}", response.text()),
        }
    });
    let (index, refused) = refused.expect("the combined budget never ran out");
    eprintln!("alternating: {served:?} served by the two replicas, {reported} tokens, then 429");
    let body: Value = refused.json();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(refused.header("x-ratelimit-limit-tokens"), Some("600"));
    assert!(served[0] >= 2 && served[1] >= 2, "both replicas served: {served:?}");
    // One replica alone would have admitted up to 600 on its own: together they stopped at 600.
    assert!(reported <= 600, "{reported} tokens served past the 600 budget");
    // Refused exactly when the next reservation (prompt + 40) no longer fitted.
    // The 429 reports what is left of the combined budget: less than one reservation (prompt + 40).
    let remaining = header_u64(&refused, "x-ratelimit-remaining-tokens");
    assert_eq!(remaining, 600 - reported, "the 429's remaining count");
    assert!(remaining < 80, "refused with {remaining} left");
    // The other replica refuses too: the budget is one.
    let other = if index == 0 { &b } else { &a };
    assert_eq!(chat(other, "blue").status, 429);
    // Charged = reported (returns bring every reservation down to the real usage).
    assert_eq!(settled(&redis, "alternating", reported), reported, "charged vs reported");

    // 200 concurrent requests of another team, 100 on each replica, 25 connections at a time; their
    // usage (about 1200 tokens) passes the budget, so some are refused whatever the timing.
    drop(b);
    drop(a);
    let budget = 1000;
    let (a, b) = replicas(service_port, "crowd", budget, ["open", "open"]);
    let addresses = [a.addr(), b.addr()];
    let results: Vec<(u16, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..25)
            .map(|worker| {
                scope.spawn(move || {
                    (0..8)
                        .map(|i| {
                            let response = chat_at(addresses[(worker + i) % 2], "crowd");
                            let tokens = if response.status == 200 { reported_total(&response) } else { 0 };
                            (response.status, tokens)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(results.len(), 200);
    let admitted = results.iter().filter(|(status, _)| *status == 200).count();
    let refused = results.iter().filter(|(status, _)| *status == 429).count();
    assert_eq!(admitted + refused, 200, "only 200 and 429: {results:?}");
    let reported: u64 = results.iter().map(|(_, tokens)| tokens).sum();
    eprintln!("200 concurrent over 2 replicas: {admitted} admitted, {refused} refused, {reported} of {budget} tokens");
    // The bound (DESIGN.md): charged ≤ limit + Σ usage above each reservation; here usage ≤ reservation.
    assert!(reported <= budget, "{reported} tokens admitted past the {budget} budget");
    assert!(refused > 0 && admitted > 0);
    let charged = settled(&redis, "crowd", reported);
    assert_eq!(charged, reported, "charged/reported = {:.3}", charged as f64 / reported as f64);
    for gw in [&a, &b] {
        assert!(!gw.envoy_log().contains("panicked"), "{}", gw.envoy_log());
    }
}

#[test]
fn an_unavailable_store_applies_the_failure_mode_and_recovers() {
    let redis_port = free_port();
    let mut redis = Redis::start(redis_port);
    let service_port = free_port();
    let mut service = Service::start(service_port, &redis.address());
    // Replica 0 fails open, replica 1 fails closed.
    let (open, closed) = replicas(service_port, "outage", 100_000, ["open", "closed"]);
    assert_eq!(chat(&open, "green").status, 200);
    assert_eq!(chat(&closed, "green").status, 200);
    let errors = |gw: &Gateway| gw.stat("wasmcustom.aigw.token_counter.ratelimit.rule.team.store_errors").unwrap_or(0);
    assert_eq!((errors(&open), errors(&closed)), (0, 0));

    for outage in ["redis", "service"] {
        match outage {
            "redis" => redis.stop(),
            _ => service.stop(),
        }
        let served = chat(&open, "green");
        assert_eq!(served.status, 200, "fail open during the {outage} outage: {}", served.text());
        let refused = chat(&closed, "green");
        assert_eq!(refused.status, 503, "fail closed during the {outage} outage: {}", refused.text());
        assert_eq!(refused.json()["error"]["code"], "rate_limit_unavailable");
        assert!(errors(&open) > 0 && errors(&closed) > 0, "store_errors counted");
        match outage {
            "redis" => redis = Redis::start(redis_port),
            _ => service = Service::start(service_port, &redis.address()),
        }
        // Back: admitted and counted again.
        let before = redis.total("outage");
        let deadline = Instant::now() + Duration::from_secs(15);
        let back = loop {
            let response = chat(&closed, "green");
            if response.status == 200 || Instant::now() > deadline {
                break response;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(back.status, 200, "recovered after the {outage} outage: {}", back.text());
        let used = reported_total(&back);
        assert!(settled(&redis, "outage", before + used) >= before + used);
    }
    for gw in [&open, &closed] {
        let log = gw.envoy_log();
        assert!(!log.contains("panicked"), "{log}");
        assert!(log.contains("rate limit service (cluster ratelimit) unavailable"), "{log}");
    }
    // Each worker's VM keeps its own view of the store's health and logs its own recovery: the worker
    // that refused a request logs "answers again" when it next reaches the store. Envoy hands each new
    // connection to either worker, so the requests go on until that worker got one.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !closed.envoy_log().contains("answers again") && Instant::now() < deadline {
        assert_eq!(chat(&closed, "green").status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed.envoy_log().contains("answers again"), "{}", closed.envoy_log());
}

/// The latency a remote reservation adds, against the shared-data default: one Envoy, requests one at a
/// time, p50/p99 of the whole request (recorded in BENCHMARKS.md). Not a pass/fail test (no timing
/// assertions): `cargo test -p aigw-e2e --test replicas -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_remote_reservation_latency() {
    let redis = Redis::start(free_port());
    let service_port = free_port();
    let _service = Service::start(service_port, &redis.address());
    let config = config_with_service(service_port);
    let rules = json!([{"name": "team", "key": "header:x-team", "limit": 4_000_000_000u64, "window": "day"}]);
    let variants = [
        ("shared_data", json!({"rules": rules})),
        ("rls", json!({"store": {"rls": {"cluster": "ratelimit", "domain": "bench"}}, "rules": rules})),
    ];
    let rounds = std::env::var("AIGW_LATENCY_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(400);
    for round in 0..2 {
        for (name, filter_config) in &variants {
            let gw = Gateway::builder()
                .config_path(config.clone())
                .only_filters(&["token-counter"])
                .filter_config("token-counter", filter_config.to_string())
                .start();
            for _ in 0..20 {
                assert_eq!(chat(&gw, "warm").status, 200);
            }
            let mut micros: Vec<u128> = (0..rounds)
                .map(|_| {
                    let started = Instant::now();
                    assert_eq!(chat(&gw, "bench").status, 200);
                    started.elapsed().as_micros()
                })
                .collect();
            micros.sort_unstable();
            let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
            println!("round {round} {name}: {rounds} requests, p50 {} µs, p99 {} µs", at(0.5), at(0.99));
        }
    }
}
