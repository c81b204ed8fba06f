//! semantic-cache entries shared by two real Envoys (replicas) through the external vector store
//! (`store.chroma`): a real Chroma server (`chroma run`, PyPI `chromadb` in `.tools`, installed by
//! `just chroma`) on a loopback port, reached by each Envoy through a `chroma` cluster.
//!
//! - A question asked through replica A, reworded through replica B: B answers from the cache, and
//!   the providers saw one chat request in all. Another team is a miss. The store holds no prompt text.
//! - The admin path clears a team in the replica's shared data and in Chroma.
//! - Chroma killed mid-test: every request still succeeds (fail-open), and the failures are counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::{repo_root, Gateway, HttpResponse, DEMO_KEYS};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const QUESTION: &str = "What is the return policy for electronics in store 12?";
const REWORDED: &str = "What is the return policy for electronics in store 12, please?";
const COLLECTION: &str = "aigw-e2e-answers";
const ADMIN_TOKEN: &str = "e2e-cache-admin-token-0123";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `chroma run` on a loopback port with its data in a fresh directory.
struct Chroma {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Chroma {
    fn start() -> Chroma {
        let bin = repo_root().join(".tools/bin/chroma");
        assert!(bin.exists(), "{} is missing: run `just chroma` (pip install chromadb into .tools)", bin.display());
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("aigw-chroma-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("chroma.log")).unwrap();
        let child = Command::new(&bin)
            .args(["run", "--path"])
            .arg(dir.join("data"))
            .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("chroma run");
        let chroma = Chroma { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = aigw_e2e::http::request(chroma.addr(), "GET", "/api/v2/heartbeat", &[], b"")
                .is_ok_and(|response| response.status == 200);
            if ready {
                return chroma;
            }
            assert!(Instant::now() < deadline, "chroma did not start: {}", chroma.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chroma.log")).unwrap_or_default()
    }

    fn post(&self, path: &str, body: &Value) -> HttpResponse {
        let headers = [("content-type", "application/json")];
        aigw_e2e::http::request(self.addr(), "POST", path, &headers, body.to_string().as_bytes()).unwrap()
    }

    /// Every record of the filter's collection, as Chroma returns them.
    fn records(&self) -> Value {
        let base = "/api/v2/tenants/default_tenant/databases/default_database/collections";
        let collection = self.post(base, &json!({"name": COLLECTION, "get_or_create": true}));
        assert_eq!(collection.status, 200, "{}", collection.text());
        let id = collection.json()["id"].as_str().unwrap().to_string();
        let got = self.post(&format!("{base}/{id}/get"), &json!({"include": ["documents", "metadatas"]}));
        assert_eq!(got.status, 200, "{}", got.text());
        got.json()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Chroma {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// gateway.yaml with a `chroma` cluster (plain HTTP/1.1) on `port`, after the last cluster.
fn config_with_chroma(port: u16) -> PathBuf {
    let yaml = std::fs::read_to_string(repo_root().join("envoy-config/gateway.yaml")).unwrap();
    let anchor = "\n# Tag the Wasm filters' metrics";
    assert_eq!(yaml.matches(anchor).count(), 1, "the clusters end before stats_config");
    let cluster = format!(
        "
  - name: chroma
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: chroma
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"
    );
    let path = std::env::temp_dir().join(format!("aigw-cache-replicas-{}-{port}.yaml", std::process::id()));
    std::fs::write(&path, yaml.replacen(anchor, &format!("{cluster}{anchor}"), 1)).unwrap();
    path
}

/// The reference configuration (gateway.yaml's) plus the external store.
fn semantic_cache_config() -> String {
    json!({
        "tenant": "header:x-aigw-client",
        "ttl_seconds": 3600,
        "max_entries": 1000,
        "semantic": {"cluster": "mock", "path": "/v1/embeddings", "authority": "embeddings",
                     "model": "text-embedding-3-small", "timeout_ms": 500, "threshold": 0.9},
        "store": {"chroma": {"cluster": "chroma", "collection": COLLECTION, "timeout_ms": 1000}},
        "admin": {"path": "/aigw/cache/clear", "token": ADMIN_TOKEN}
    })
    .to_string()
}

fn replicas(chroma_port: u16) -> (Gateway, Gateway) {
    let config = config_with_chroma(chroma_port);
    let builder =
        || Gateway::builder().config_path(config.clone()).filter_config("semantic-cache", semantic_cache_config());
    let first = builder().start();
    let second = builder().start_replica(&first);
    (first, second)
}

fn chat(question: &str) -> Value {
    json!({"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": question}]})
}

/// The providers' answer (the mock's default would echo the question).
const ANSWER: &str = "Thirty days, with the receipt.";

fn ask(gw: &Gateway, key: &str, question: &str) -> HttpResponse {
    let bearer = format!("Bearer {key}");
    let mode = format!("fixed:{ANSWER}");
    gw.chat_with(&[("authorization", bearer.as_str()), ("x-mock-mode", mode.as_str())], &chat(question))
}

/// Chat requests this replica's providers received.
fn provider_chats(gw: &Gateway) -> usize {
    gw.upstream_requests().iter().filter(|r| r.path.ends_with("/chat/completions")).count()
}

fn content(response: &HttpResponse) -> String {
    response.json()["choices"][0]["message"]["content"].as_str().expect("an answer").to_string()
}

fn stat(gw: &Gateway, name: &str) -> u64 {
    gw.stat(&format!("wasmcustom.aigw.semantic_cache.{name}")).unwrap_or(0)
}

/// Waits until a counter reaches `expected` (writes to the store are sent by each VM's root context on
/// its 50 ms tick, after the response), then returns it.
fn settled(gw: &Gateway, name: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = stat(gw, name);
        if value >= expected || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn store_failures(gw: &Gateway) -> u64 {
    ["dispatch_failed", "no_response", "bad_status", "not_found", "bad_body", "not_text"]
        .iter()
        .map(|reason| stat(gw, &format!("store_failed.reason.{reason}")))
        .sum()
}

#[test]
fn replicas_share_answers_through_chroma_and_fail_open_without_it() {
    let mut chroma = Chroma::start();
    let (a, b) = replicas(chroma.port);
    let (retail, _) = DEMO_KEYS[0];
    let (wealth, _) = DEMO_KEYS[1];

    // 1. Replica A: a miss, answered by A's provider, stored in A's shared data and in Chroma.
    let first = ask(&a, retail, QUESTION);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-aigw-cache"), Some("miss"));
    assert_eq!(provider_chats(&a), 1);
    assert_eq!(settled(&a, "store.written", 1), 1, "{}", a.stats());

    // What the store holds: the answer, the vector, hashed tenant and context; no prompt text.
    let records = chroma.records();
    assert_eq!(records["ids"].as_array().unwrap().len(), 1, "{records}");
    let document: Value = serde_json::from_str(records["documents"][0].as_str().unwrap()).unwrap();
    assert_eq!(content(&first), ANSWER);
    assert_eq!(document["choices"][0]["message"]["content"].as_str().unwrap(), ANSWER);
    assert!(!records.to_string().contains("return policy"), "no prompt text in the store: {records}");
    let retail_tenant = records["metadatas"][0]["tenant"].clone();
    assert_eq!(retail_tenant.as_str().unwrap().len(), 16, "{records}");

    // 2. Replica B (its own shared data is empty): the reworded question is a hit from Chroma.
    let second = ask(&b, retail, REWORDED);
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.header("x-aigw-cache"), Some("hit"), "{}\n{}", second.text(), b.stats());
    let similarity: f64 = second.header("x-aigw-cache-similarity").unwrap().parse().unwrap();
    assert!((0.9..1.0).contains(&similarity), "similarity {similarity}");
    assert_eq!(content(&second), content(&first));
    assert_eq!(second.json()["usage"]["aigw_cache"]["upstream_tokens"], 0);
    assert_eq!(provider_chats(&a) + provider_chats(&b), 1, "the providers saw one chat request in all");
    assert_eq!(stat(&b, "hit.kind.semantic"), 1);
    let embedded: Vec<_> = b.upstream_requests().into_iter().filter(|r| r.path == "/v1/embeddings").collect();
    assert_eq!(embedded.len(), 1);
    assert_eq!(embedded[0].body_json().unwrap()["input"], REWORDED);

    // 3. Another team through B: a miss (the store is asked with wealth's tenant filter).
    let other_team = ask(&b, wealth, QUESTION);
    assert_eq!(other_team.status, 200, "{}", other_team.text());
    assert_eq!(other_team.header("x-aigw-cache"), Some("miss"));
    assert_eq!(provider_chats(&b), 1);
    assert_eq!(settled(&b, "store.written", 1), 1, "wealth's entry: {}", b.stats());
    assert_eq!(store_failures(&a) + store_failures(&b), 0, "{}\n{}", a.stats(), b.stats());

    // 4. The admin path (through A) clears retail in A's shared data and in Chroma; wealth's entry stays.
    let headers = [("x-aigw-cache-admin-token", ADMIN_TOKEN), ("x-aigw-cache-tenant", "retail")];
    let cleared = a.request("POST", "/aigw/cache/clear", &headers, b"");
    assert_eq!(cleared.status, 200, "{}", cleared.text());
    assert_eq!(cleared.json(), json!({"tenant": "retail", "cleared": 1, "store_deleted": 1}));
    let records = chroma.records();
    assert_eq!(records["ids"].as_array().unwrap().len(), 1, "wealth's entry: {records}");
    assert_ne!(records["metadatas"][0]["tenant"], retail_tenant, "{records}");
    let after_clear = ask(&b, retail, REWORDED);
    assert_eq!(after_clear.header("x-aigw-cache"), Some("miss"), "{}", after_clear.text());
    assert_eq!(provider_chats(&b), 2);
    assert_eq!(settled(&b, "store.written", 2), 2, "{}", b.stats());

    // 5. Chroma goes away: requests still succeed, as misses, and the failures are counted.
    chroma.stop();
    let shipping = "How long does shipping take to store 12?";
    let missed = ask(&b, retail, shipping);
    assert_eq!(missed.status, 200, "{}", missed.text());
    assert_eq!(missed.header("x-aigw-cache"), Some("miss"));
    assert_eq!(content(&missed), ANSWER);
    assert_eq!(provider_chats(&b), 3);
    let on_a = ask(&a, retail, &format!("{shipping} Thanks"));
    assert_eq!(on_a.status, 200, "{}", on_a.text());
    assert_eq!(on_a.header("x-aigw-cache"), Some("miss"));
    assert_eq!(provider_chats(&a), 2);
    // A replica's own shared data still answers (B stored the reworded question in step 4).
    let local = ask(&b, retail, REWORDED);
    assert_eq!(local.status, 200, "{}", local.text());
    assert_eq!(local.header("x-aigw-cache"), Some("hit"));
    assert_eq!(local.header("x-aigw-cache-similarity"), Some("1.000"));
    assert_eq!(content(&local), ANSWER);
    // Envoy answers a call to a cluster with no reachable host with a 503 of its own.
    assert_eq!(settled(&b, "store_failed.reason.bad_status", 2), 2, "B's lookup and write: {}", b.stats());
    assert_eq!(settled(&a, "store_failed.reason.bad_status", 2), 2, "A's lookup and write: {}", a.stats());
    assert_eq!(store_failures(&a) + store_failures(&b), 4);
    assert_eq!(provider_chats(&a) + provider_chats(&b), 5);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The latency the external store adds (not a test: `cargo test -p aigw-e2e --test semantic_cache_replicas
/// -- --ignored --nocapture`). A semantic hit from the replica's own shared data (A) against one from
/// Chroma (B: a local miss, then the query), both with the mock's embeddings call; and a `no-cache` miss
/// whose answer is queued for Chroma (A) against one stored in shared data only (C, no `store`).
#[test]
#[ignore]
fn measure_chroma_lookup_latency() {
    let chroma = Chroma::start();
    let config = config_with_chroma(chroma.port);
    let with_store =
        || Gateway::builder().config_path(config.clone()).filter_config("semantic-cache", semantic_cache_config());
    let a = with_store().start();
    let b = with_store().start_replica(&a);
    let c = Gateway::builder().start_replica(&a);
    let (retail, _) = DEMO_KEYS[0];
    assert_eq!(ask(&a, retail, QUESTION).header("x-aigw-cache"), Some("miss"));
    assert_eq!(settled(&a, "store.written", 1), 1);
    let timed = |gw: &Gateway, headers: &[(&str, &str)], body: &Value, expect: &str| {
        let bearer = format!("Bearer {retail}");
        let mode = format!("fixed:{ANSWER}");
        let mut all = vec![("authorization", bearer.as_str()), ("x-mock-mode", mode.as_str())];
        all.extend_from_slice(headers);
        let started = Instant::now();
        let response = gw.chat_with(&all, body);
        let elapsed = started.elapsed();
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("x-aigw-cache"), Some(expect), "{}", response.text());
        elapsed
    };
    for round in 0..2 {
        let (mut local, mut remote, mut written, mut unwritten) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Lookups first, while nothing is being written; then the misses (their writes go on meanwhile).
        for _ in 0..200 {
            local.push(timed(&a, &[], &chat(REWORDED), "hit"));
            remote.push(timed(&b, &[], &chat(REWORDED), "hit"));
        }
        for i in 0..200 {
            let fresh = chat(&format!("Question number {round} {i} about returns"));
            written.push(timed(&a, &[("cache-control", "no-cache")], &fresh, "bypass"));
            unwritten.push(timed(&c, &[("cache-control", "no-cache")], &fresh, "bypass"));
        }
        for (name, mut samples) in [
            ("hit from shared data (A)", local),
            ("hit from Chroma (B)", remote),
            ("no-cache miss, queued for Chroma (A)", written),
            ("no-cache miss, shared data only (C)", unwritten),
        ] {
            samples.sort();
            println!(
                "round {round}: {name:<40} p50 {:>7.0} µs  p99 {:>7.0} µs",
                percentile(&samples, 0.5).as_secs_f64() * 1e6,
                percentile(&samples, 0.99).as_secs_f64() * 1e6
            );
        }
    }
    println!("B's store latency histogram (lookups only): {}", b.admin("/stats?filter=store.latency").text());
    // Lookups while A's writes go on.
    let mut during = Vec::new();
    for i in 0..200 {
        let fresh = chat(&format!("Question during writes {i} about returns"));
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| timed(&a, &[("cache-control", "no-cache")], &fresh, "bypass"));
            during.push(timed(&b, &[], &chat(REWORDED), "hit"));
            writer.join().unwrap();
        });
    }
    during.sort();
    println!(
        "hit from Chroma (B) while A writes: p50 {:.0} µs  p99 {:.0} µs",
        percentile(&during, 0.5).as_secs_f64() * 1e6,
        percentile(&during, 0.99).as_secs_f64() * 1e6
    );
    println!("A's writes: {}", a.admin("/stats?filter=semantic_cache.store").text());
}
