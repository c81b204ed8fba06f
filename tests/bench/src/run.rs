//! The scenarios of issue #8, each as A (Envoy without Wasm filters) against
//! B (the same Envoy with filters), same mock, same request, alternating
//! rounds A, B, A, B… The median of the rounds is reported.

// serde_json::Value indexed by key: a missing key reads as Null (no panic), and writes go to objects
// built here, so `value["key"]` is safe in this file.
#![allow(clippy::indexing_slicing)]

use crate::fleet::{Instance, Launcher, Spec};
use crate::http;
use crate::load::{run_rate, run_streams, RateResult, RateRun, StreamTiming};
use crate::procfs::{self, WasmMemory};
use crate::report::Table;
use crate::stats::{median, percentile, summarize};
use crate::workload;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long and how hard each scenario runs.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub smoke: bool,
    pub rounds: usize,
    /// The fixed moderate rate for latency (requests/s) and its run length.
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    /// Max-throughput search: start, growth factor, step length, p99 ceiling.
    pub ladder_start: f64,
    pub ladder_factor: f64,
    pub step_s: f64,
    pub ceiling_ms: f64,
    pub max_connections: usize,
    /// Streaming: concurrent streams per round, chunks per stream, pacing.
    pub streams: usize,
    pub stream_chunks: usize,
    pub chunk_delay_ms: u64,
    /// Stream hold-back (scenario 7): chunks per stream, pacing, streams per round.
    pub release_chunks: usize,
    pub release_delay_ms: u64,
    pub release_streams: usize,
    /// 100 KiB prompts: rate and run length.
    pub large_bytes: usize,
    pub large_rate: f64,
    pub large_duration_s: f64,
    /// Run scenarios 2, 3, 5 and the per-filter memory (not in smoke mode).
    pub per_filter: bool,
    /// Run only scenario 7 (`--stream-hold`).
    pub stream_hold_only: bool,
}

impl Plan {
    pub fn full() -> Plan {
        Plan {
            smoke: false,
            rounds: 3,
            rate: 300.0,
            duration_s: 4.0,
            warmup_s: 0.5,
            connections: 32,
            ladder_start: 400.0,
            ladder_factor: 1.3,
            step_s: 1.5,
            ceiling_ms: 10.0,
            max_connections: 64,
            streams: 8,
            stream_chunks: 200,
            chunk_delay_ms: 10,
            release_chunks: 60,
            release_delay_ms: 20,
            release_streams: 4,
            large_bytes: 100 * 1024,
            large_rate: 20.0,
            large_duration_s: 3.0,
            per_filter: true,
            stream_hold_only: false,
        }
    }

    /// A few hundred requests in seconds: checks that every part works.
    pub fn smoke() -> Plan {
        Plan {
            smoke: true,
            rounds: 1,
            rate: 100.0,
            duration_s: 1.0,
            warmup_s: 0.2,
            connections: 8,
            ladder_start: 200.0,
            ladder_factor: 2.0,
            step_s: 0.5,
            ceiling_ms: 10.0,
            max_connections: 16,
            streams: 2,
            stream_chunks: 20,
            chunk_delay_ms: 10,
            release_chunks: 15,
            release_delay_ms: 20,
            release_streams: 2,
            large_bytes: 100 * 1024,
            large_rate: 10.0,
            large_duration_s: 0.5,
            per_filter: false,
            stream_hold_only: false,
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn progress(message: &str) {
    eprintln!("[aigw-bench] {message}");
}

/// One side of an A/B round at a fixed rate.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub ok: u64,
    pub errors: u64,
    pub achieved_rps: f64,
    pub cpu_ms_per_1k: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// A fixed-rate A/B comparison over several rounds.
#[derive(Debug, Clone, Serialize)]
pub struct AbRate {
    pub a: String,
    pub b: String,
    pub rate_rps: f64,
    pub rounds: Vec<[Side; 2]>,
    pub a_p50_us: f64,
    pub b_p50_us: f64,
    /// Median over rounds of (B − A).
    pub added_p50_us: f64,
    pub a_p99_us: f64,
    pub b_p99_us: f64,
    pub added_p99_us: f64,
    pub a_cpu_ms_per_1k: f64,
    pub b_cpu_ms_per_1k: f64,
    pub errors: u64,
}

fn side(result: &RateResult, cpu: Duration) -> Side {
    Side {
        p50_us: result.latency.p50_us,
        p90_us: result.latency.p90_us,
        p99_us: result.latency.p99_us,
        ok: result.ok,
        errors: result.errors,
        achieved_rps: result.achieved_rps,
        cpu_ms_per_1k: cpu.as_secs_f64() * 1e3 / result.sent_total.max(1) as f64 * 1e3,
        first_error: result.first_error.clone(),
    }
}

/// Everything a run needs.
pub struct Bench {
    pub plan: Plan,
    launcher: Launcher,
    shipped: BTreeMap<String, String>,
    pub table: Table,
    pub results: Map<String, Value>,
    small: Arc<Vec<u8>>,
    prompt_1k: String,
    answer_2k: String,
}

impl Bench {
    pub fn new(plan: Plan, launcher: Launcher) -> Result<Bench, String> {
        let gateway_yaml = std::fs::read_to_string(aigw_e2e::repo_root().join("envoy-config/gateway.yaml"))
            .map_err(|e| format!("gateway.yaml: {e}"))?;
        let shipped: BTreeMap<String, String> = aigw_e2e::config::wasm_configs(&gateway_yaml)?.into_iter().collect();
        let prompt_1k = workload::bench_prompt();
        let answer_2k = workload::bench_answer();
        let mode = format!("fixed:{answer_2k}");
        let small = Arc::new(http::post(
            "/v1/chat/completions",
            &[("x-mock-mode", &mode)],
            &workload::chat_body(&prompt_1k, false),
        ));
        Ok(Bench { plan, launcher, shipped, table: Table::default(), results: Map::new(), small, prompt_1k, answer_2k })
    }

    fn shipped(&self, filter: &str) -> Result<&str, String> {
        self.shipped.get(filter).map(String::as_str).ok_or_else(|| format!("gateway.yaml has no {filter} filter"))
    }

    /// The overrides every filtered config gets (budgets raised, model-router routing to the mock).
    fn common_overrides(&self) -> Result<BTreeMap<String, String>, String> {
        let mut configs = workload::chain_configs(&self.shipped)?;
        // The other filters run gateway.yaml's own configuration (the launcher's default).
        configs.retain(|filter, _| filter == "token-counter" || filter == "model-router");
        Ok(configs)
    }

    fn spec(&self, name: &str, only: Option<&[&str]>, extra: &[(&str, String)]) -> Result<Spec, String> {
        let mut filter_configs = self.common_overrides()?;
        if let Some(only) = only {
            filter_configs.retain(|f, _| only.contains(&f.as_str()));
        }
        for (filter, config) in extra {
            filter_configs.insert(filter.to_string(), config.clone());
        }
        Ok(Spec {
            name: name.to_string(),
            config_file: "gateway.yaml".to_string(),
            only_filters: only.map(|o| o.iter().map(|s| s.to_string()).collect()),
            filter_configs,
            leading_filters: Vec::new(),
        })
    }

    fn start(&self, spec: Spec) -> Result<Instance, String> {
        progress(&format!("starting Envoy `{}`", spec.name));
        let instance = Instance::start(&self.launcher, spec)?;
        // Let start-up work (V8 tier-up, stats flush) settle before idle figures.
        std::thread::sleep(Duration::from_millis(if self.plan.smoke { 200 } else { 1000 }));
        Ok(instance)
    }

    fn check(&self, instance: &Instance, request: &[u8]) -> Result<usize, String> {
        let mut conn = http::Conn::connect(instance.info.addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        conn.send(request).map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        let info = conn
            .read_response(&mut |_, _| {}, &mut |piece, _| body.extend_from_slice(piece))
            .map_err(|e| e.to_string())?;
        if info.status != 200 {
            return Err(format!(
                "`{}` answered {} to the benchmark request: {}",
                instance.name(),
                info.status,
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(info.body_bytes)
    }

    fn rate_run(
        &self,
        addr: SocketAddr,
        request: &Arc<Vec<u8>>,
        rate: f64,
        duration: f64,
        connections: usize,
    ) -> RateRun {
        RateRun {
            addr,
            request: Arc::clone(request),
            rate,
            duration: secs(duration),
            warmup: secs(self.plan.warmup_s),
            connections,
        }
    }

    /// Fixed-rate rounds A, B, A, B…
    fn ab_rate(&self, a: &mut Instance, b: &mut Instance, request: &Arc<Vec<u8>>, rate: f64, duration: f64) -> AbRate {
        let mut rounds = Vec::new();
        for round in 0..self.plan.rounds {
            let mut pair = Vec::new();
            for instance in [&mut *a, &mut *b] {
                let cpu_before = instance.cpu_time();
                let result =
                    run_rate(&self.rate_run(instance.info.addr, request, rate, duration, self.plan.connections));
                let cpu = instance.cpu_time().saturating_sub(cpu_before);
                instance.clear_mocks();
                progress(&format!(
                    "  round {} {:<16} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>7.1} rps  errors {}",
                    round + 1,
                    instance.name(),
                    result.latency.p50_us,
                    result.latency.p99_us,
                    result.achieved_rps,
                    result.errors
                ));
                pair.push(side(&result, cpu));
            }
            if let [sa, sb] = pair.as_slice() {
                rounds.push([sa.clone(), sb.clone()]);
            }
        }
        let pick = |f: &dyn Fn(&[Side; 2]) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        AbRate {
            a: a.name().to_string(),
            b: b.name().to_string(),
            rate_rps: rate,
            a_p50_us: pick(&|r| r[0].p50_us),
            b_p50_us: pick(&|r| r[1].p50_us),
            added_p50_us: pick(&|r| r[1].p50_us - r[0].p50_us),
            a_p99_us: pick(&|r| r[0].p99_us),
            b_p99_us: pick(&|r| r[1].p99_us),
            added_p99_us: pick(&|r| r[1].p99_us - r[0].p99_us),
            a_cpu_ms_per_1k: pick(&|r| r[0].cpu_ms_per_1k),
            b_cpu_ms_per_1k: pick(&|r| r[1].cpu_ms_per_1k),
            errors: rounds.iter().map(|r| r[0].errors + r[1].errors).sum(),
            rounds,
        }
    }

    /// Highest offered rate whose p99 stays under the ceiling with no errors
    /// and ≥ 95 % of the offered rate achieved. Geometric ladder, then two bisections.
    fn max_throughput(&self, instance: &mut Instance, start: f64) -> Value {
        let plan = &self.plan;
        let mut steps = Vec::new();
        let mut step = |rate: f64, instance: &mut Instance| -> (bool, Value) {
            let cpu_before = instance.cpu_time();
            let wall = Instant::now();
            let result =
                run_rate(&self.rate_run(instance.info.addr, &self.small, rate, plan.step_s, plan.max_connections));
            let cpu = instance.cpu_time().saturating_sub(cpu_before).as_secs_f64();
            let util = cpu / wall.elapsed().as_secs_f64().max(1e-9);
            instance.clear_mocks();
            let pass = result.errors == 0
                && result.achieved_rps >= 0.95 * rate
                && result.latency.p99_us <= plan.ceiling_ms * 1e3;
            let record = json!({
                "offered_rps": rate, "achieved_rps": result.achieved_rps, "p50_us": result.latency.p50_us,
                "p99_us": result.latency.p99_us, "errors": result.errors, "envoy_cpu_util": util, "pass": pass,
            });
            steps.push(record.clone());
            (pass, record)
        };
        // A failed step is tried once more before it counts: one scheduling hiccup on a 2-core
        // machine should not end the search (applies to A and B alike).
        let mut attempt = |rate: f64, instance: &mut Instance| -> (bool, Value) {
            let (pass, record) = step(rate, instance);
            if pass {
                (pass, record)
            } else {
                step(rate, instance)
            }
        };
        let mut rate = start;
        let mut best: Option<Value> = None;
        let mut fail_rate = None;
        for _ in 0..40 {
            let (pass, record) = attempt(rate, instance);
            if pass {
                best = Some(record);
                rate *= plan.ladder_factor;
            } else if best.is_none() && rate > 50.0 {
                rate /= 2.0;
            } else {
                fail_rate = Some(rate);
                break;
            }
        }
        if let (Some(mut hi), false) = (fail_rate, plan.smoke) {
            for _ in 0..2 {
                let lo = best.as_ref().and_then(|b| b["offered_rps"].as_f64()).unwrap_or(hi / 2.0);
                let mid = (lo * hi).sqrt();
                let (pass, record) = attempt(mid, instance);
                if pass {
                    best = Some(record);
                } else {
                    hi = mid;
                }
            }
        }
        let best = best.unwrap_or(Value::Null);
        progress(&format!(
            "  {:<16} max {:>7.0} rps (p99 {:.0} µs, Envoy CPU {:.0} %)",
            instance.name(),
            best["achieved_rps"].as_f64().unwrap_or(0.0),
            best["p99_us"].as_f64().unwrap_or(0.0),
            best["envoy_cpu_util"].as_f64().unwrap_or(0.0) * 100.0
        ));
        json!({"best": best, "steps": steps})
    }

    fn memory(&self, instance: &Instance) -> Value {
        let memories = instance.wasm_memories();
        json!({
            "rss_kib": instance.rss_kib(),
            "wasm_memories": memories,
            "wasm_max_size_kib": memories.iter().map(|m| m.size_kib).max().unwrap_or(0),
        })
    }

    /// Runs everything; the figures land in `self.results` and `self.table`.
    pub fn run(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut bare = self.start(Spec {
            name: "bare".to_string(),
            config_file: "bare.yaml".to_string(),
            only_filters: None,
            filter_configs: BTreeMap::new(),
            leading_filters: Vec::new(),
        })?;
        if self.plan.stream_hold_only {
            progress("(7) what pii-mask holds back on streams (token-sized chunks), alone");
            self.check(&bare, &self.small)?;
            let release = self.stream_release(&mut bare)?;
            self.results.insert("stream_release".into(), release);
            self.results.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
            return Ok(());
        }
        let mut chain = self.start(self.spec("full-chain", None, &[])?)?;
        // The one-pass build (issue #19): the same five filters and configurations as stages of one
        // filter (dist/aigw.wasm, envoy-config/gateway-bundle.yaml).
        let mut one_pass =
            self.start(Spec { config_file: "gateway-bundle.yaml".to_string(), ..self.spec("one-pass", None, &[])? })?;
        let completion_bytes = self.check(&bare, &self.small)?;
        let chain_completion_bytes = self.check(&chain, &self.small)?;
        self.check(&one_pass, &self.small)?;
        let one_pass_effects = chain_effects(&mut one_pass);
        progress(&format!("one-pass build did its work upstream: {one_pass_effects}"));
        self.results.insert("one_pass_effects".into(), one_pass_effects);
        let mut effects = chain_effects(&mut chain);
        let mode = format!("fixed:{}", self.answer_2k);
        if let Ok(response) = aigw_e2e::http::request(
            chain.info.addr,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json"), ("x-mock-mode", &mode)],
            &workload::chat_body(&self.prompt_1k, false),
        ) {
            effects["response_x_aigw_backend"] = json!(response.header("x-aigw-backend"));
            effects["response_x_ratelimit_remaining_tokens"] = json!(response.header("x-ratelimit-remaining-tokens"));
        }
        progress(&format!("full chain did its work upstream: {effects}"));
        self.results.insert("full_chain_effects".into(), effects);
        let mut memory = Map::new();
        memory.insert("bare_idle".into(), self.memory(&bare));
        memory.insert("full_chain_idle".into(), self.memory(&chain));
        memory.insert("one_pass_idle".into(), self.memory(&one_pass));
        let mut ready = Map::new();
        ready.insert("bare".into(), json!(bare.info.ready_ms));
        ready.insert("full-chain".into(), json!(chain.info.ready_ms));
        ready.insert("one-pass".into(), json!(one_pass.info.ready_ms));
        self.results.insert(
            "request".into(),
            json!({
                "prompt_bytes": self.prompt_1k.len(),
                "completion_text_bytes": self.answer_2k.len(),
                "completion_json_bytes_bare": completion_bytes,
                "completion_json_bytes_chain": chain_completion_bytes,
                "request_bytes": self.small.len(),
            }),
        );

        // (1) Full chain at a fixed moderate rate.
        progress(&format!("(1) full chain, {} rps fixed rate", self.plan.rate));
        let fixed = self.ab_rate(&mut bare, &mut chain, &self.small.clone(), self.plan.rate, self.plan.duration_s);
        self.table.ab_latency("1 full chain", "latency", &fixed);
        self.table.row(
            "1 full chain",
            "Envoy CPU ms / 1k req",
            fixed.a_cpu_ms_per_1k,
            fixed.b_cpu_ms_per_1k,
            "ms",
            Some(ratio(fixed.b_cpu_ms_per_1k, fixed.a_cpu_ms_per_1k)),
        );
        self.results.insert("full_chain_fixed_rate".into(), serde_json::to_value(&fixed).unwrap_or_default());

        // (0) Floors: what the proxy-wasm machinery costs before any aigw logic, in the same rounds.
        progress("(0) floors: the probe filter ×1 and ×4 (no-op, buffer, parse) beside bare, the chain and the one-pass build");
        let floors = self.floors(&mut bare, &mut chain, &mut one_pass)?;
        self.results.insert("floors".into(), floors);
        memory.insert("one_pass_after".into(), self.memory(&one_pass));
        drop(one_pass);

        // (1) Max throughput under the p99 ceiling, alternating.
        progress(&format!("(1) full chain, max throughput with p99 ≤ {} ms", self.plan.ceiling_ms));
        let mut rounds = Vec::new();
        let (mut start_a, mut start_b) = (self.plan.ladder_start, self.plan.ladder_start);
        for _ in 0..self.plan.rounds {
            let a = self.max_throughput(&mut bare, start_a);
            let b = self.max_throughput(&mut chain, start_b);
            let rps = |v: &Value| v["best"]["achieved_rps"].as_f64().unwrap_or(0.0);
            // The next round starts below this round's result, to spend the time near the knee.
            start_a = (rps(&a) * 0.6).max(self.plan.ladder_start / 2.0);
            start_b = (rps(&b) * 0.6).max(self.plan.ladder_start / 2.0);
            rounds.push(json!({"bare": a, "full_chain": b, "ratio": ratio(rps(&b), rps(&a))}));
        }
        let med = |key: &str| {
            median(&rounds.iter().map(|r| r[key]["best"]["achieved_rps"].as_f64().unwrap_or(0.0)).collect::<Vec<_>>())
        };
        let tput_ratio = median(&rounds.iter().map(|r| r["ratio"].as_f64().unwrap_or(0.0)).collect::<Vec<_>>());
        let util = |key: &str| {
            median(&rounds.iter().map(|r| r[key]["best"]["envoy_cpu_util"].as_f64().unwrap_or(0.0)).collect::<Vec<_>>())
        };
        // Requests per second of Envoy CPU at the best step: what one fully busy Envoy core would
        // serve. The bare Envoy's max above is usually limited by CPU 0 (load generator + mock), so
        // this ratio is the fairer view of the filters' cost.
        let per_core = |key: &str| {
            median(
                &rounds
                    .iter()
                    .map(|r| {
                        let best = &r[key]["best"];
                        best["achieved_rps"].as_f64().unwrap_or(0.0)
                            / best["envoy_cpu_util"].as_f64().unwrap_or(f64::NAN)
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let (bare_per_core, chain_per_core) = (per_core("bare"), per_core("full_chain"));
        let (bare_rps, chain_rps) = (med("bare"), med("full_chain"));
        let (bare_util, chain_util) = (util("bare"), util("full_chain"));
        self.table.row("1 full chain", "max rps, p99 ≤ ceiling", bare_rps, chain_rps, "rps", Some(tput_ratio));
        self.table.row("1 full chain", "Envoy CPU at max", bare_util * 100.0, chain_util * 100.0, "%", None);
        self.table.row("1 full chain", "rps per Envoy core (at max)", bare_per_core, chain_per_core, "rps", None);
        self.results.insert(
            "full_chain_max_throughput".into(),
            json!({
                "ceiling_p99_ms": self.plan.ceiling_ms, "bare_rps": bare_rps, "full_chain_rps": chain_rps,
                "ratio": tput_ratio, "bare_envoy_cpu_util": bare_util, "full_chain_envoy_cpu_util": chain_util,
                "bare_rps_per_envoy_core": bare_per_core, "full_chain_rps_per_envoy_core": chain_per_core,
                "per_core_ratio": ratio(chain_per_core, bare_per_core),
                "rounds": rounds,
            }),
        );

        // (4) Streaming through the full chain.
        progress("(4) streaming SSE through the full chain");
        let streaming = self.streaming(&mut bare, &mut chain, "4 streaming, full chain", self.plan.streams);
        self.results.insert("streaming".into(), streaming);

        memory.insert("bare_after".into(), self.memory(&bare));
        memory.insert("full_chain_after".into(), self.memory(&chain));
        drop(chain);

        // (8) semantic-cache: a miss (embedding excluded / included), a hit, memory per 1,000 entries.
        progress("(8) semantic-cache alone: miss, hit, memory per 1,000 entries");
        let cache = self.semantic_cache(&mut bare)?;
        self.results.insert("semantic_cache".into(), cache);
        let scan = self.native_cache_scan();
        self.results.insert("semantic_cache_native_scan".into(), scan);

        let native = self.native_tokenizer();
        self.results.insert("tokenizer_native".into(), native);
        progress("(7) what pii-mask holds back on streams (token-sized chunks)");
        let release = self.stream_release(&mut bare)?;
        self.results.insert("stream_release".into(), release);
        if self.plan.per_filter {
            self.per_filter(&mut bare, &mut memory, &mut ready)?;
        }
        memory.insert("bare_end".into(), self.memory(&bare));
        drop(bare);
        self.memory_rows(&memory, &ready);
        self.results.insert("memory".into(), Value::Object(memory));
        self.results.insert("ready_ms".into(), Value::Object(ready));
        self.results.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
        Ok(())
    }

    /// (0) Floors (issue #19): the probe filter (tests/floor-filter) in three modes — no-op, buffer both
    /// bodies, buffer + parse + re-serialise the JSON — as 1 and as 4 filters (one VM each, like the
    /// four aigw filters), measured in the same rounds as the bare Envoy and the full chain: each
    /// round runs every instance once, in turn, at the same fixed rate. Reported: Envoy CPU per
    /// request (median of rounds), its ratio to bare, and the chain's ratio to each floor.
    fn floors(&mut self, bare: &mut Instance, chain: &mut Instance, one_pass: &mut Instance) -> Result<Value, String> {
        let module = aigw_e2e::repo_root().join("target/wasm32-wasip1/release/floor_filter.wasm");
        if !module.exists() {
            return Ok(json!({"skipped": format!("{} not built (just bench builds it)", module.display())}));
        }
        let plan = self.plan.clone();
        let mut probes = Vec::new();
        for mode in ["noop", "buffer", "parse"] {
            for copies in [1usize, 4] {
                let spec = Spec {
                    name: format!("floor {mode} x{copies}"),
                    config_file: "gateway.yaml".to_string(),
                    // No aigw filter: the probes stand in their place (Envoy's buffer filter stays).
                    only_filters: Some(Vec::new()),
                    filter_configs: BTreeMap::new(),
                    leading_filters: (1..=copies).map(|i| floor_filter_yaml(&module, mode, i)).collect(),
                };
                let instance = self.start(spec)?;
                self.check(&instance, &self.small)?;
                probes.push(instance);
            }
        }
        let small = Arc::clone(&self.small);
        let mut cpu: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut p50: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for round in 0..plan.rounds {
            let mut instances: Vec<&mut Instance> = vec![&mut *bare];
            instances.extend(probes.iter_mut());
            instances.push(&mut *chain);
            instances.push(&mut *one_pass);
            for instance in instances {
                let cpu_before = instance.cpu_time();
                let result =
                    run_rate(&self.rate_run(instance.info.addr, &small, plan.rate, plan.duration_s, plan.connections));
                let used = instance.cpu_time().saturating_sub(cpu_before);
                instance.clear_mocks();
                let figures = side(&result, used);
                progress(&format!(
                    "  round {} {:<18} Envoy CPU {:>7.1} µs/request  p50 {:>8.1} µs  errors {}",
                    round + 1,
                    instance.name(),
                    figures.cpu_ms_per_1k,
                    figures.p50_us,
                    figures.errors
                ));
                // ms per 1,000 requests is µs per request.
                cpu.entry(instance.name().to_string()).or_default().push(figures.cpu_ms_per_1k);
                p50.entry(instance.name().to_string()).or_default().push(figures.p50_us);
            }
        }
        drop(probes);
        let median_of = |map: &BTreeMap<String, Vec<f64>>, name: &str| map.get(name).map_or(f64::NAN, |v| median(v));
        let spread = |name: &str| {
            let values = cpu.get(name).cloned().unwrap_or_default();
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (min, max)
        };
        let bare_cpu = median_of(&cpu, "bare");
        let chain_name = chain.name().to_string();
        let chain_cpu = median_of(&cpu, &chain_name);
        let one_pass_name = one_pass.name().to_string();
        let one_pass_cpu = median_of(&cpu, &one_pass_name);
        let mut out = Map::new();
        for name in cpu.keys() {
            let value = median_of(&cpu, name);
            let (min, max) = spread(name);
            out.insert(
                name.clone(),
                json!({"envoy_cpu_us_per_request": value, "ratio_to_bare": ratio(value, bare_cpu),
                       "min_of_rounds": min, "max_of_rounds": max, "p50_us": median_of(&p50, name),
                       "rounds": cpu.get(name)}),
            );
        }
        let scenario = "0 Envoy CPU per request";
        for name in
            ["floor noop x1", "floor buffer x1", "floor parse x1", "floor noop x4", "floor buffer x4", "floor parse x4"]
        {
            let value = median_of(&cpu, name);
            self.table.row(scenario, name, bare_cpu, value, "µs", None);
            let (min, max) = spread(name);
            self.table.note(scenario, &format!("rounds {min:.0}–{max:.0} µs"));
        }
        self.table.row(scenario, "full chain", bare_cpu, chain_cpu, "µs", None);
        let (min, max) = spread(&chain_name);
        self.table.note(scenario, &format!("rounds {min:.0}–{max:.0} µs"));
        let mut floor_ratios = Map::new();
        for floor in ["floor noop x4", "floor buffer x4", "floor parse x4"] {
            let value = ratio(chain_cpu, median_of(&cpu, floor));
            floor_ratios.insert(floor.to_string(), json!(value));
            self.table.note(scenario, &format!("chain / {floor} {value:.2}×"));
        }
        out.insert("chain_over_floor".into(), Value::Object(floor_ratios));
        self.table.row(scenario, "one-pass build (aigw.wasm)", bare_cpu, one_pass_cpu, "µs", None);
        let (min, max) = spread(&one_pass_name);
        self.table.note(scenario, &format!("rounds {min:.0}–{max:.0} µs"));
        let mut one_pass_ratios = Map::new();
        for floor in ["floor noop x1", "floor buffer x1", "floor parse x1", "floor parse x4"] {
            let value = ratio(one_pass_cpu, median_of(&cpu, floor));
            one_pass_ratios.insert(floor.to_string(), json!(value));
            self.table.note(scenario, &format!("one-pass / {floor} {value:.2}×"));
        }
        self.table.note(scenario, &format!("one-pass / chain {:.2}×", ratio(one_pass_cpu, chain_cpu)));
        out.insert("one_pass_over_floor".into(), Value::Object(one_pass_ratios));
        // Latency added at the fixed rate of these rounds (median of rounds' p50s, against bare's).
        let added = |name: &str| (median_of(&p50, name) - median_of(&p50, "bare")) / 1e3;
        out.insert("added_p50_ms".into(), json!({"full_chain": added(&chain_name), "one_pass": added(&one_pass_name)}));
        out.insert(
            "method".into(),
            json!(format!(
                "{} rounds; each round runs bare, the six probes, the chain and the one-pass build once each, in turn, at {} rps for {} s",
                plan.rounds, plan.rate, plan.duration_s
            )),
        );
        Ok(Value::Object(out))
    }

    /// semantic-cache alone (shipped config, its cache sizes kept), against the bare Envoy:
    /// - a miss without the embeddings call (`semantic` removed: exact lookup only), and with it (the
    ///   mock's /v1/embeddings, then a brute-force scan of 200 stored entries of the same context):
    ///   requests carry `cache-control: no-store`, so each one is looked up and forwarded, never stored;
    /// - a hit (the first request stores the answer, every later one is answered from the cache), whose
    ///   latency compares with the bare Envoy's round trip to the mock provider;
    /// - Envoy's memory (RSS) and the cache's own bytes gauge after storing 1,000 distinct answers.
    fn semantic_cache(&mut self, bare: &mut Instance) -> Result<Value, String> {
        let plan = self.plan.clone();
        let shipped: Value =
            serde_json::from_str(self.shipped("semantic-cache")?).map_err(|e| format!("semantic-cache config: {e}"))?;
        let mut exact_only = shipped.clone();
        if let Some(map) = exact_only.as_object_mut() {
            map.remove("semantic");
        }
        let mut sized = shipped.clone();
        sized["max_entries"] = json!(2000);
        let mode = format!("fixed:{}", self.answer_2k);
        let question =
            |i: usize| format!("Question {i}: what does clause {i} of contract {} say about {i} days?", i * 7);
        let body = |text: &str| {
            json!({"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": text}]})
                .to_string()
                .into_bytes()
        };
        let no_store = Arc::new(http::post(
            "/v1/chat/completions",
            &[("x-mock-mode", &mode), ("cache-control", "no-store")],
            &body(&self.prompt_1k),
        ));
        let cacheable = Arc::new(http::post("/v1/chat/completions", &[("x-mock-mode", &mode)], &body(&self.prompt_1k)));
        let only: &[&str] = &["semantic-cache"];
        let mut out = Map::new();
        let stored = |instance: &Instance, count: usize, offset: usize| -> Result<(), String> {
            for i in offset..offset + count {
                let request = http::post("/v1/chat/completions", &[("x-mock-mode", "fixed:OK.")], &body(&question(i)));
                let mut conn =
                    http::Conn::connect(instance.info.addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
                conn.send(&request).map_err(|e| e.to_string())?;
                let info = conn.read_response(&mut |_, _| {}, &mut |_, _| {}).map_err(|e| e.to_string())?;
                if info.status != 200 {
                    return Err(format!("storing entry {i}: status {}", info.status));
                }
            }
            Ok(())
        };
        for (key, label, config, prefill) in [
            ("miss_exact_only", "8 cache miss, no embedding", exact_only.to_string(), 0),
            ("miss_with_embedding", "8 cache miss, embedding + scan of 200", shipped.to_string(), 200),
        ] {
            let mut instance = self.start(self.spec(key, Some(only), &[("semantic-cache", config)])?)?;
            stored(&instance, prefill, 0)?;
            self.check(&instance, &no_store)?;
            let ab = self.ab_rate(bare, &mut instance, &no_store, plan.rate, plan.duration_s);
            self.table.ab_latency(label, "latency", &ab);
            out.insert(key.into(), serde_json::to_value(&ab).unwrap_or_default());
        }
        let mut instance =
            self.start(self.spec("cache-hit", Some(only), &[("semantic-cache", sized.to_string())])?)?;
        self.check(&instance, &cacheable)?;
        let ab = self.ab_rate(bare, &mut instance, &cacheable, plan.rate, plan.duration_s);
        self.table.ab_latency("8 cache hit (B) vs mock provider (A)", "latency", &ab);
        out.insert("hit".into(), serde_json::to_value(&ab).unwrap_or_default());
        let stat = |instance: &Instance, name: &str| -> u64 {
            aigw_e2e::http::request(instance.info.admin, "GET", &format!("/stats?filter={name}"), &[], b"")
                .ok()
                .and_then(|r| {
                    r.text().lines().find_map(|l| l.split_once(": ").and_then(|(_, v)| v.trim().parse().ok()))
                })
                .unwrap_or(0)
        };
        let hits = stat(&instance, "semantic_cache.hit.kind.exact");
        let before = self.memory(&instance);
        let bytes_before = stat(&instance, "semantic_cache.bytes$");
        let entries = if plan.smoke { 100 } else { 1000 };
        stored(&instance, entries, 10_000)?;
        let after = self.memory(&instance);
        let bytes_after = stat(&instance, "semantic_cache.bytes$");
        let rss = |v: &Value| v["rss_kib"].as_f64().unwrap_or(0.0);
        let per_1000 = |delta: f64| delta * 1000.0 / entries as f64;
        let rss_per_1000 = per_1000(rss(&after) - rss(&before));
        let bytes_per_1000 = per_1000(bytes_after.saturating_sub(bytes_before) as f64) / 1024.0;
        self.table.row(
            "8 cache memory",
            "per 1,000 entries: Envoy RSS / cache bytes",
            rss_per_1000,
            bytes_per_1000,
            "KiB",
            None,
        );
        self.table.note(
            "8 cache memory",
            &format!("A = RSS growth, B = aigw.semantic_cache.bytes; {entries} short answers (~2 KiB each with the 256-d vector)"),
        );
        out.insert(
            "memory".into(),
            json!({"entries_added": entries, "rss_before": before, "rss_after": after,
                   "cache_bytes_before": bytes_before, "cache_bytes_after": bytes_after,
                   "rss_kib_per_1000_entries": rss_per_1000, "cache_kib_per_1000_entries": bytes_per_1000,
                   "exact_hits_during_hit_run": hits}),
        );
        Ok(Value::Object(out))
    }

    fn streaming(&mut self, bare: &mut Instance, chain: &mut Instance, scenario: &str, streams: usize) -> Value {
        let plan = self.plan.clone();
        let text = workload::answer_prose(plan.stream_chunks * 6);
        let mode = format!("fixed:{text}");
        let chunks = plan.stream_chunks.to_string();
        let delay = plan.chunk_delay_ms.to_string();
        let request = Arc::new(http::post(
            "/v1/chat/completions",
            &[("x-mock-mode", &mode), ("x-mock-chunks", &chunks), ("x-mock-chunk-delay-ms", &delay)],
            &workload::chat_body(&self.prompt_1k, true),
        ));
        let mut rounds = Vec::new();
        for round in 0..plan.rounds {
            let mut pair = Map::new();
            for instance in [&mut *bare, &mut *chain] {
                let timings = run_streams(instance.info.addr, Arc::clone(&request), streams, secs(0.1));
                instance.clear_mocks();
                let figures = stream_figures(&timings, &text);
                progress(&format!(
                    "  round {} {:<16} TTFT p50 {:>8.1} µs  gap p50 {:>8.1} µs p99 {:>8.1} µs  events {} bad {}",
                    round + 1,
                    instance.name(),
                    figures["first_token_p50_us"].as_f64().unwrap_or(0.0),
                    figures["gap_p50_us"].as_f64().unwrap_or(0.0),
                    figures["gap_p99_us"].as_f64().unwrap_or(0.0),
                    figures["content_events_p50"],
                    figures["bad_streams"]
                ));
                pair.insert(if instance.name() == "bare" { "bare" } else { "filtered" }.into(), figures);
            }
            rounds.push(Value::Object(pair));
        }
        let pick = |side: &str, key: &str| {
            median(&rounds.iter().map(|r| r[side][key].as_f64().unwrap_or(f64::NAN)).collect::<Vec<_>>())
        };
        let added = |key: &str| {
            median(
                &rounds
                    .iter()
                    .map(|r| {
                        r["filtered"][key].as_f64().unwrap_or(f64::NAN) - r["bare"][key].as_f64().unwrap_or(f64::NAN)
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let mut out = json!({
            "streams_per_round": streams, "chunks": plan.stream_chunks, "chunk_delay_ms": plan.chunk_delay_ms,
            "rounds": rounds,
        });
        for key in ["head_p50_us", "first_byte_p50_us", "first_token_p50_us", "gap_p50_us", "gap_p99_us"] {
            out[format!("bare_{key}")] = json!(pick("bare", key));
            out[format!("filtered_{key}")] = json!(pick("filtered", key));
            out[format!("added_{key}")] = json!(added(key));
        }
        for (label, key) in [
            ("time to first content token", "first_token_p50_us"),
            ("time to first body byte", "first_byte_p50_us"),
            ("inter-chunk gap p50", "gap_p50_us"),
            ("inter-chunk gap p99", "gap_p99_us"),
        ] {
            self.table.row(scenario, label, pick("bare", key), pick("filtered", key), "µs", None);
        }
        out
    }

    /// (7) Time to first token and gaps between tokens that pii-mask adds on a
    /// stream of prose without PII, in token-sized chunks, paced
    /// `release_delay_ms` apart: built-ins only, the shipped config, and the
    /// shipped config plus a rule any word can begin. Reported in
    /// milliseconds and in chunk intervals (added / pacing).
    fn stream_release(&mut self, bare: &mut Instance) -> Result<Value, String> {
        let plan = self.plan.clone();
        let shipped = self.shipped("pii-mask")?.to_string();
        let delay_ms = plan.release_delay_ms;
        let mut out = Map::new();
        for (key, label, config) in [
            ("builtin_only", "built-ins only", workload::pii_builtin_only(&shipped)?),
            ("shipped", "shipped config", shipped.clone()),
            ("word_prefix_rule", "shipped + ACCOUNT_REF", workload::pii_word_prefix_rule(&shipped)?),
        ] {
            let name = format!("pii-mask {key}");
            let mut instance = self.start(self.spec(&name, Some(&["pii-mask"]), &[("pii-mask", config)])?)?;
            self.check(&instance, &self.small)?;
            let mut per_chunking = Map::new();
            for (chunking, chunk_chars) in
                [("4-char chunks", Some(4)), ("6-char chunks", Some(6)), ("word chunks", None)]
            {
                let text = workload::answer_prose(plan.release_chunks * chunk_chars.unwrap_or(6));
                let mode = format!("fixed:{text}");
                let chunks = chunk_chars.map(|size| text.chars().count().div_ceil(size).to_string());
                let delay = delay_ms.to_string();
                let mut headers = vec![("x-mock-mode", mode.as_str()), ("x-mock-chunk-delay-ms", delay.as_str())];
                if let Some(chunks) = &chunks {
                    headers.push(("x-mock-chunks", chunks.as_str()));
                }
                let request =
                    Arc::new(http::post("/v1/chat/completions", &headers, &workload::chat_body(&self.prompt_1k, true)));
                let mut rounds = Vec::new();
                for _ in 0..plan.rounds {
                    let mut pair = Map::new();
                    for instance in [&mut *bare, &mut instance] {
                        let timings =
                            run_streams(instance.info.addr, Arc::clone(&request), plan.release_streams, secs(0.05));
                        instance.clear_mocks();
                        let side = if instance.name() == "bare" { "bare" } else { "filtered" };
                        pair.insert(side.into(), stream_figures(&timings, &text));
                    }
                    rounds.push(Value::Object(pair));
                }
                let added = |key: &str| {
                    median(
                        &rounds
                            .iter()
                            .map(|r| {
                                r["filtered"][key].as_f64().unwrap_or(f64::NAN)
                                    - r["bare"][key].as_f64().unwrap_or(f64::NAN)
                            })
                            .collect::<Vec<_>>(),
                    )
                };
                let bad: u64 = rounds.iter().map(|r| r["filtered"]["bad_streams"].as_u64().unwrap_or(1)).sum();
                let interval_us = delay_ms as f64 * 1e3;
                let (ttft, gap50, gap99) = (added("first_token_p50_us"), added("gap_p50_us"), added("gap_p99_us"));
                let scenario = format!("7 stream hold, {label}");
                let pick = |side: &str, key: &str| {
                    median(&rounds.iter().map(|r| r[side][key].as_f64().unwrap_or(f64::NAN)).collect::<Vec<_>>())
                };
                for (metric, key, value) in [
                    ("time to first token", "first_token_p50_us", ttft),
                    ("inter-token gap p50", "gap_p50_us", gap50),
                    ("inter-token gap p99", "gap_p99_us", gap99),
                ] {
                    self.table.row(
                        &scenario,
                        &format!("{metric}, {chunking}"),
                        pick("bare", key) / 1e3,
                        pick("filtered", key) / 1e3,
                        "ms",
                        None,
                    );
                    self.table.note(
                        &scenario,
                        &format!(
                            "added {:+.2} ms = {:+.2} intervals of {delay_ms} ms",
                            value / 1e3,
                            value / interval_us
                        ),
                    );
                }
                if bad > 0 {
                    self.table.note(&scenario, &format!("{bad} BAD STREAMS"));
                }
                progress(&format!(
                    "  {label:<24} {chunking:<14} TTFT added {:>6.2} ms = {:>5.2} intervals, gap p50/p99 added {:>6.2}/{:>6.2} ms",
                    ttft / 1e3,
                    ttft / interval_us,
                    gap50 / 1e3,
                    gap99 / 1e3
                ));
                per_chunking.insert(
                    chunking.into(),
                    json!({
                        "chunk_chars": chunk_chars, "chunk_delay_ms": delay_ms, "bad_streams": bad,
                        "added_first_token_p50_ms": ttft / 1e3, "added_first_token_intervals": ttft / interval_us,
                        "added_gap_p50_ms": gap50 / 1e3, "added_gap_p50_intervals": gap50 / interval_us,
                        "added_gap_p99_ms": gap99 / 1e3, "added_gap_p99_intervals": gap99 / interval_us,
                        "rounds": rounds,
                    }),
                );
            }
            out.insert(key.into(), Value::Object(per_chunking));
        }
        Ok(Value::Object(out))
    }

    /// (6) Table rows for memory and start-up.
    fn memory_rows(&mut self, memory: &Map<String, Value>, ready: &Map<String, Value>) {
        let mib = |key: &str, field: &str| memory.get(key).and_then(|m| m[field].as_f64()).unwrap_or(f64::NAN) / 1024.0;
        let ms = |key: &str| ready.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
        self.table.row(
            "6 memory, full chain",
            "Envoy RSS idle",
            mib("bare_idle", "rss_kib"),
            mib("full_chain_idle", "rss_kib"),
            "MiB",
            None,
        );
        self.table.row(
            "6 memory, full chain",
            "Envoy RSS after traffic",
            mib("bare_after", "rss_kib"),
            mib("full_chain_after", "rss_kib"),
            "MiB",
            None,
        );
        self.table.row("6 start-up, full chain", "Envoy start to ready", ms("bare"), ms("full-chain"), "ms", None);
        if memory.contains_key("one_pass_idle") {
            let scenario = "6 memory, one-pass build";
            self.table.row(
                scenario,
                "Envoy RSS idle",
                mib("bare_idle", "rss_kib"),
                mib("one_pass_idle", "rss_kib"),
                "MiB",
                None,
            );
            self.table.row(
                scenario,
                "Envoy RSS after traffic",
                mib("bare_after", "rss_kib"),
                mib("one_pass_after", "rss_kib"),
                "MiB",
                None,
            );
            self.table.row(
                scenario,
                "largest VM linear memory",
                f64::NAN,
                mib("one_pass_after", "wasm_max_size_kib"),
                "MiB",
                None,
            );
            self.table.row(
                "6 start-up, one-pass build",
                "Envoy start to ready",
                ms("bare"),
                ms("one-pass"),
                "ms",
                None,
            );
        }
        for filter in aigw_e2e::config::FILTERS {
            let (idle, after) = (format!("{filter}_alone_idle"), format!("{filter}_alone_after"));
            if !memory.contains_key(&idle) {
                continue;
            }
            let scenario = format!("6 memory, {filter} alone");
            self.table.row(
                &scenario,
                "Envoy RSS after traffic",
                mib("bare_after", "rss_kib"),
                mib(&after, "rss_kib"),
                "MiB",
                None,
            );
            self.table.row(
                &scenario,
                "largest VM linear memory",
                f64::NAN,
                mib(&after, "wasm_max_size_kib"),
                "MiB",
                None,
            );
            self.table.note(&scenario, &format!("idle {:.1} MiB; limit 32 MiB", mib(&idle, "wasm_max_size_kib")));
            self.table.row(
                &format!("6 start-up, {filter} alone"),
                "Envoy start to ready",
                ms("bare"),
                ms(filter),
                "ms",
                None,
            );
        }
    }

    /// Scenarios 2, 3 and 5, and each filter's memory, one filter at a time.
    fn per_filter(
        &mut self,
        bare: &mut Instance,
        memory: &mut Map<String, Value>,
        ready: &mut Map<String, Value>,
    ) -> Result<(), String> {
        let plan = self.plan.clone();
        let large_prompt = workload::prose_with_pii(plan.large_bytes);
        let large = Arc::new(http::post(
            "/v1/chat/completions",
            &[("x-mock-mode", "fixed:OK.")],
            &workload::chat_body(&large_prompt, false),
        ));
        self.check(bare, &large)?;
        let small = Arc::clone(&self.small);
        let mut alone = Map::new();
        let mut large_results = Map::new();
        let mut streaming_alone = Map::new();
        for filter in aigw_e2e::config::FILTERS {
            let mut instance = self.start(self.spec(filter, Some(&[filter]), &[])?)?;
            self.check(&instance, &small)?;
            ready.insert(filter.into(), json!(instance.info.ready_ms));
            memory.insert(format!("{filter}_alone_idle"), self.memory(&instance));
            progress(&format!("(2) {filter} alone, {} rps fixed rate", plan.rate));
            let ab = self.ab_rate(bare, &mut instance, &small, plan.rate, plan.duration_s);
            self.table.ab_latency(&format!("2 {filter} alone"), "latency", &ab);
            self.table.row(
                &format!("2 {filter} alone"),
                "Envoy CPU per request",
                ab.a_cpu_ms_per_1k,
                ab.b_cpu_ms_per_1k,
                "µs",
                None,
            );
            let floor =
                self.results.get("floors").and_then(|f| f["floor parse x1"]["envoy_cpu_us_per_request"].as_f64());
            if let Some(floor) = floor {
                let over = ratio(ab.b_cpu_ms_per_1k, floor);
                self.table.note(&format!("2 {filter} alone"), &format!("{over:.2}× the parse floor ×1 (scenario 0)"));
            }
            progress(&format!("(4) streaming through {filter} alone"));
            let streaming =
                self.streaming(bare, &mut instance, &format!("4 streaming, {filter} alone"), plan.streams / 2);
            streaming_alone.insert(filter.into(), streaming);
            if filter == "pii-mask" {
                let figures = self.large_prompt(
                    bare,
                    &mut instance,
                    &large,
                    large_prompt.len(),
                    "shipped config (1 custom rule)",
                )?;
                large_results.insert("shipped_1_custom_rule".into(), figures);
            }
            if filter == "token-counter" {
                let figures = self.token_counting(bare, &mut instance, &large, &large_prompt, ab.added_p50_us)?;
                self.results.insert("token_counting".into(), figures);
            }
            memory.insert(format!("{filter}_alone_after"), self.memory(&instance));
            alone.insert(filter.into(), serde_json::to_value(&ab).unwrap_or_default());
        }
        // token-counter is the most expensive filter per request: how much of it is the budgets
        // (reservation and settlement through shared data, rate-limit headers)?
        let no_rules = workload::token_counter_without_rules(self.shipped("token-counter")?)?;
        let name = "token-counter no-rules";
        let mut instance = self.start(self.spec(name, Some(&["token-counter"]), &[("token-counter", no_rules)])?)?;
        self.check(&instance, &small)?;
        progress(&format!("(2) {name}, {} rps fixed rate", plan.rate));
        let ab = self.ab_rate(bare, &mut instance, &small, plan.rate, plan.duration_s);
        self.table.ab_latency("2 token-counter, no budget rules", "latency", &ab);
        alone.insert("token-counter-without-rules".into(), serde_json::to_value(&ab).unwrap_or_default());
        drop(instance);
        self.results.insert("filter_alone".into(), Value::Object(alone));
        self.results.insert("streaming_filter_alone".into(), Value::Object(streaming_alone));

        let shipped = self.shipped("pii-mask")?.to_string();
        for (key, label, config) in [
            ("builtin_only", "built-in scanners only", workload::pii_builtin_only(&shipped)?),
            ("three_custom_rules", "3 custom regex rules", workload::pii_three_custom_rules(&shipped)?),
        ] {
            let name = format!("pii-mask {key}");
            let mut instance = self.start(self.spec(&name, Some(&["pii-mask"]), &[("pii-mask", config)])?)?;
            self.check(&instance, &large)?;
            let figures = self.large_prompt(bare, &mut instance, &large, large_prompt.len(), label)?;
            large_results.insert(key.into(), figures);
        }
        self.results.insert("large_prompt_pii_mask".into(), Value::Object(large_results));
        let engines = self.regex_engines_in_wasm(&large_prompt);
        self.results.insert("regex_engines_in_wasm".into(), engines);
        Ok(())
    }

    /// regex-lite against regex inside Wasm on the same 100 KiB text: the probe module
    /// (tests/bench/regex-probe, built by `just bench`) run by Node's V8 through WASI.
    /// Envoy's V8 is not scriptable this way; Node's is the same engine (another version).
    fn regex_engines_in_wasm(&mut self, text: &str) -> Value {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let root = aigw_e2e::repo_root();
        let module = root.join("target/regex-probe/wasm32-wasip1/release/aigw-regex-probe.wasm");
        let runner = root.join("tests/bench/regex-probe/run.mjs");
        if !module.exists() {
            return json!({"skipped": format!("{} not built (just bench builds it)", module.display())});
        }
        progress("(3) regex vs regex-lite inside Wasm (Node's V8, WASI)");
        // Envoy's V8 (proxy-wasm-cpp-host) turns Liftoff off and compiles everything with TurboFan;
        // so does the probe, or the first rounds would time baseline code.
        let child = Command::new("node")
            .arg("--no-liftoff")
            .arg("--no-warnings")
            .arg(&runner)
            .arg(&module)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(err) => return json!({"skipped": format!("node: {err}")}),
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(text.as_bytes());
        }
        let output = match child.wait_with_output() {
            Ok(output) if output.status.success() => output,
            Ok(output) => return json!({"skipped": String::from_utf8_lossy(&output.stderr).trim().to_string()}),
            Err(err) => return json!({"skipped": err.to_string()}),
        };
        let node_version = Command::new("node")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let lines: Vec<Value> =
            String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let find = |engine: &str, set: &str| {
            lines
                .iter()
                .find(|l| l["engine"] == engine && l["set"] == set)
                .map(|l| l["mb_per_s"].as_f64().unwrap_or(f64::NAN))
        };
        for (set, label) in [("custom_rules", "3 custom rules"), ("pii_patterns", "5 PII patterns")] {
            if let (Some(lite), Some(full)) = (find("regex-lite", set), find("regex", set)) {
                self.table.row(
                    "3 regex in Wasm (Node V8)",
                    &format!("{label}: regex-lite vs regex"),
                    lite,
                    full,
                    "MB/s",
                    None,
                );
            }
        }
        json!({"runtime": format!("node {node_version} (V8, --no-liftoff as in Envoy), WASI preview1"), "text_bytes": text.len(), "results": lines})
    }

    /// (3) A 100 KiB prompt through pii-mask alone.
    fn large_prompt(
        &mut self,
        bare: &mut Instance,
        instance: &mut Instance,
        large: &Arc<Vec<u8>>,
        prompt_bytes: usize,
        label: &str,
    ) -> Result<Value, String> {
        progress(&format!("(3) {} KiB prompt through pii-mask ({label})", prompt_bytes / 1024));
        self.check(instance, large)?;
        let ab = self.ab_rate(bare, instance, large, self.plan.large_rate, self.plan.large_duration_s);
        let added_s = ab.added_p50_us / 1e6;
        let mb_per_s = if added_s > 0.0 { prompt_bytes as f64 / added_s / 1e6 } else { f64::INFINITY };
        self.table.ab_latency(&format!("3 100 KiB prompt, {label}"), "latency", &ab);
        self.table.note(
            &format!("3 100 KiB prompt, {label}"),
            &format!("effective {mb_per_s:.1} MB/s (prompt bytes / p50 added)"),
        );
        Ok(json!({
            "label": label, "prompt_bytes": prompt_bytes, "added_p50_ms": ab.added_p50_us / 1e3,
            "added_p99_ms": ab.added_p99_us / 1e3, "effective_mb_per_s": mb_per_s, "ab": ab,
        }))
    }

    /// (5) Tokens per second in the Wasm VM (token-counter alone, 100 KiB prompt) against native tiktoken-rs.
    fn token_counting(
        &mut self,
        bare: &mut Instance,
        instance: &mut Instance,
        large: &Arc<Vec<u8>>,
        prompt: &str,
        added_1k_us: f64,
    ) -> Result<Value, String> {
        progress("(5) token counting: 100 KiB prompt through token-counter alone");
        let bpe = tiktoken_rs::o200k_base().map_err(|e| format!("o200k_base: {e}"))?;
        let tokens_large = bpe.encode_ordinary(prompt).len() as f64;
        let tokens_1k = bpe.encode_ordinary(&self.prompt_1k).len() as f64;
        self.check(instance, large)?;
        let ab = self.ab_rate(bare, instance, large, self.plan.large_rate, self.plan.large_duration_s);
        let effective = tokens_large / (ab.added_p50_us / 1e6);
        let marginal = (tokens_large - tokens_1k) / ((ab.added_p50_us - added_1k_us) / 1e6);
        let native = self.results.get("tokenizer_native").cloned().unwrap_or(Value::Null);
        let native_tps = native["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
        self.table.ab_latency("5 token-counter, 100 KiB prompt", "latency", &ab);
        self.table.row("5 tokenizer", "tokens/s (native vs Wasm, effective)", native_tps, effective, "tok/s", None);
        self.table.row("5 tokenizer", "tokens/s (native vs Wasm, marginal)", native_tps, marginal, "tok/s", None);
        Ok(json!({
            "encoding": "o200k_base", "prompt_bytes": prompt.len(), "prompt_tokens": tokens_large,
            "added_p50_ms": ab.added_p50_us / 1e3, "added_1k_prompt_p50_ms": added_1k_us / 1e3,
            "wasm_tokens_per_s_effective": effective, "wasm_tokens_per_s_marginal": marginal,
            "wasm_mb_per_s_effective": prompt.len() as f64 / (ab.added_p50_us / 1e6) / 1e6,
            "native_tokens_per_s": native_tps, "wasm_vs_native": effective / native_tps, "ab": ab,
        }))
    }

    /// Native tiktoken-rs (o200k_base, encode_ordinary, as token-counter uses) on the same 100 KiB text.
    /// semantic-cache's lookup natively (the same code the filter runs, over an in-memory store with
    /// Envoy's semantics): 1,000 entries of one tenant and context, a semantic lookup compares every
    /// vector. 256 dimensions (the mock's) and 1,536 (text-embedding-3-small).
    pub fn native_cache_scan(&mut self) -> Value {
        use aigw_shared::counter::memory::MemoryStore;
        use semantic_cache::store::{Cache, NewEntry};
        let entries = 1000;
        let mut out = Map::new();
        let mut row = Vec::new();
        for dims in [256usize, 1536] {
            let store = MemoryStore::new();
            let cache = Cache::new(&store, entries);
            cache.ensure_index();
            let vector = |seed: usize| {
                let raw: Vec<f32> = (0..dims).map(|i| ((i * 31 + seed * 17) % 97) as f32 - 48.0).collect();
                semantic_cache::embedding::normalise(raw).unwrap_or_default()
            };
            for i in 0..entries {
                let entry = NewEntry {
                    tenant: 1,
                    exact: i as u128,
                    context: 7,
                    vector: vector(i),
                    answer: vec![b'x'; 1500],
                    ttl_seconds: 3600,
                };
                if cache.insert(&entry, 100, 1 << 20, 1 << 30).is_err() {
                    return json!({"error": format!("insert {i} failed")});
                }
            }
            let probe = vector(entries + 1);
            let (batches, per_batch) = if self.plan.smoke { (2, 2) } else { (7, 5) };
            let mut best_scan = f64::INFINITY;
            let mut best_index = f64::INFINITY;
            let mut compared = 0;
            for _ in 0..batches {
                let started = Instant::now();
                for _ in 0..per_batch {
                    let _ = cache.index();
                }
                best_index = best_index.min(started.elapsed().as_secs_f64() / per_batch as f64);
                let started = Instant::now();
                for _ in 0..per_batch {
                    if let Some(index) = cache.index() {
                        compared = cache.lookup_semantic(&index, 1, 7, &probe, 0.99, 200).compared;
                    }
                }
                best_scan = best_scan.min(started.elapsed().as_secs_f64() / per_batch as f64);
            }
            row.push(best_scan * 1e6);
            out.insert(
                format!("dims_{dims}"),
                json!({"entries": entries, "compared": compared, "index_read_us": best_index * 1e6,
                       "lookup_us": best_scan * 1e6}),
            );
        }
        if let [a, b] = row.as_slice() {
            self.table.row(
                "8 cache scan, native, 1,000 entries",
                "semantic lookup (256-d / 1,536-d)",
                *a,
                *b,
                "µs",
                None,
            );
        }
        Value::Object(out)
    }

    pub fn native_tokenizer(&self) -> Value {
        let text = workload::prose_with_pii(self.plan.large_bytes);
        let load = Instant::now();
        let Ok(bpe) = tiktoken_rs::o200k_base() else { return json!({"error": "o200k_base did not load"}) };
        let load_ms = load.elapsed().as_secs_f64() * 1e3;
        let tokens = bpe.encode_ordinary(&text).len();
        // The fastest of several batches: a ~2 ms measurement on a 2-core machine is easily
        // disturbed by any other process on CPU 0, and the minimum is the code's own speed.
        let (batches, per_batch) = if self.plan.smoke { (2, 1) } else { (9, 3) };
        let mut sink = 0;
        let mut per = f64::INFINITY;
        for _ in 0..batches {
            let started = Instant::now();
            for _ in 0..per_batch {
                sink += bpe.encode_ordinary(&text).len();
            }
            per = per.min(started.elapsed().as_secs_f64() / per_batch as f64);
        }
        json!({
            "encoding": "o200k_base", "bytes": text.len(), "tokens": tokens, "ms_per_prompt": per * 1e3,
            "tokens_per_s": tokens as f64 / per, "mb_per_s": text.len() as f64 / per / 1e6,
            "table_load_ms": load_ms, "checksum": sink,
        })
    }

    /// Each target of issue #8: value, limit, met.
    pub fn targets(&self) -> Vec<Value> {
        let r = &self.results;
        let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        // Issue #20: one chunk interval held at most, plus 2 ms for the work itself.
        let mut stream_hold = Vec::new();
        if let Some(release) = r.get("stream_release") {
            let allowance_ms = self.plan.release_delay_ms as f64 + 2.0;
            for chunking in ["4-char chunks", "word chunks"] {
                stream_hold.push(target(
                    &format!("pii-mask TTFT added ≤ 1 chunk interval + 2 ms (shipped config, prose, {chunking})"),
                    num(&release["shipped"][chunking]["added_first_token_p50_ms"]),
                    allowance_ms,
                    false,
                    "ms",
                ));
            }
        }
        if self.plan.stream_hold_only {
            return stream_hold;
        }
        let mut targets = vec![
            target("full chain throughput ≥ 0.8× bare", num(&r["full_chain_max_throughput"]["ratio"]), 0.8, true, "×"),
            target(
                "full chain p50 added ≤ 0.2 ms",
                num(&r["full_chain_fixed_rate"]["added_p50_us"]) / 1e3,
                0.2,
                false,
                "ms",
            ),
            target("TTFT added ≤ 1 ms", num(&r["streaming"]["added_first_token_p50_us"]) / 1e3, 1.0, false, "ms"),
        ];

        // Issue #19: the chain and the one-pass build against bare Envoy, in the same rounds (scenario 0).
        if let Some(floors) = r.get("floors").filter(|f| f.get("one-pass").is_some()) {
            let cpu = |name: &str| num(&floors[name]["ratio_to_bare"]);
            targets.push(target(
                "separate-module chain Envoy CPU per request ≤ 2.0× bare",
                cpu("full-chain"),
                2.0,
                false,
                "×",
            ));
            targets.push(target(
                "one-pass build Envoy CPU per request ≤ 1.35× bare",
                cpu("one-pass"),
                1.35,
                false,
                "×",
            ));
            let added = |name: &str| num(&floors["added_p50_ms"][name]);
            targets.push(target("separate-module chain p50 added ≤ 0.25 ms", added("full_chain"), 0.25, false, "ms"));
            targets.push(target("one-pass build p50 added ≤ 0.15 ms", added("one_pass"), 0.15, false, "ms"));
        }
        let rss = |key: &str| num(&r["memory"][key]["rss_kib"]) / 1024.0;
        let ready = |key: &str| num(&r["ready_ms"][key]) / 1e3;
        targets.push(target(
            "Envoy RSS with the full chain ≤ 150 MiB (after traffic)",
            rss("full_chain_after"),
            150.0,
            false,
            "MiB",
        ));
        if r["memory"].get("one_pass_after").is_some() {
            targets.push(target(
                "Envoy RSS with the one-pass build ≤ 110 MiB (after traffic)",
                rss("one_pass_after"),
                110.0,
                false,
                "MiB",
            ));
            targets.push(target("one-pass build start to ready ≤ 1.5 s", ready("one-pass"), 1.5, false, "s"));
        }
        targets.push(target("full chain start to ready ≤ 1.5 s", ready("full-chain"), 1.5, false, "s"));

        if let Some(large) = r.get("large_prompt_pii_mask") {
            targets.push(target(
                "100 KiB prompt scanned ≤ 2 ms (pii-mask alone, shipped config, p50 added)",
                num(&large["shipped_1_custom_rule"]["added_p50_ms"]),
                2.0,
                false,
                "ms",
            ));
        }
        for filter in aigw_e2e::config::FILTERS {
            if let Some(after) = r.get("memory").and_then(|m| m.get(format!("{filter}_alone_after"))) {
                targets.push(target(
                    &format!("{filter} VM linear memory ≤ 32 MiB (after traffic)"),
                    num(&after["wasm_max_size_kib"]) / 1024.0,
                    32.0,
                    false,
                    "MiB",
                ));
            }
        }
        targets.extend(stream_hold);
        targets
    }
}

/// What the full chain changed in the request the provider received, as
/// evidence that every filter was active (not a silent pass-through).
fn chain_effects(chain: &mut Instance) -> Value {
    let Some(request) = chain.last_upstream_request() else { return json!({"error": "no upstream request recorded"}) };
    let body = request.body_json().unwrap_or_default();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let user =
        messages.iter().rev().find(|m| m["role"] == "user").map(|m| m["content"].to_string()).unwrap_or_default();
    json!({
        "pii_masked": !user.contains("jane.doe@example.com") && user.contains("EMAIL_ADDRESS"),
        "system_prompt_prepended": messages.first().is_some_and(|m| m["role"] == "system"),
        "route_header": request.header("x-aigw-route"),
        "stream_options_or_usage_added": body.get("stream_options").is_some(),
        "messages_upstream": messages.len(),
        "upstream_header_names": request.headers.iter().map(|(n, _)| n.as_str()).filter(|n| !n.starts_with("x-mock")).collect::<Vec<_>>(),
    })
}

/// The probe filter as an HTTP filter entry: its own plugin name and VM (`floor-<i>`), like each aigw filter.
fn floor_filter_yaml(module: &std::path::Path, mode: &str, index: usize) -> String {
    format!(
        r#"
name: aigw.floor-{index}
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
  config:
    name: floor-{index}
    root_id: floor-{index}
    vm_config: {{ vm_id: floor-{index}, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: {} }} }} }}
    configuration:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: '{{"mode": "{mode}"}}'
"#,
        module.display()
    )
}

fn target(name: &str, value: f64, limit: f64, at_least: bool, unit: &str) -> Value {
    let met = if at_least { value >= limit } else { value <= limit };
    json!({"target": name, "value": value, "limit": limit, "unit": unit, "met": met && !value.is_nan()})
}

/// B / A, NaN when A is zero.
pub fn ratio(b: f64, a: f64) -> f64 {
    if a == 0.0 {
        f64::NAN
    } else {
        b / a
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// Percentiles of one round of streams. A stream is bad if it failed, was
/// not 200, or did not deliver exactly the text the mock sent.
fn stream_figures(timings: &[StreamTiming], expected: &str) -> Value {
    let good: Vec<&StreamTiming> = timings.iter().filter(|t| t.status == 200 && t.error.is_none()).collect();
    let bad = timings.len() - good.iter().filter(|t| t.content == expected).count();
    let p50 = |f: &dyn Fn(&StreamTiming) -> u64| {
        let mut v: Vec<u64> = good.iter().map(|t| f(t)).collect();
        v.sort_unstable();
        us(percentile(&v, 50.0))
    };
    let gaps: Vec<u64> = good.iter().flat_map(|t| t.gaps_ns.iter().copied()).collect();
    let gap = summarize(&gaps);
    let mut events: Vec<u64> = good.iter().map(|t| t.content_events as u64).collect();
    events.sort_unstable();
    json!({
        "streams": timings.len(), "bad_streams": bad,
        "first_error": timings.iter().find_map(|t| t.error.clone()),
        "content_events_p50": percentile(&events, 50.0),
        "head_p50_us": p50(&|t| t.head_ns), "first_byte_p50_us": p50(&|t| t.first_byte_ns),
        "first_token_p50_us": p50(&|t| t.first_token_ns),
        "gap_p50_us": gap.p50_us, "gap_p99_us": gap.p99_us, "gap_max_us": gap.max_us, "gaps": gap.count,
    })
}

/// Wasm memories as JSON (for the serve child's report).
pub fn memories_json(memories: &[WasmMemory]) -> Value {
    serde_json::to_value(memories).unwrap_or_default()
}

/// Machine facts for the report.
pub fn machine() -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpus": procfs::cpus(), "cpu_model": procfs::cpu_model(), "kernel": kernel.trim(),
        "load_average_1m_at_start": procfs::load_average(),
    })
}
