//! One request through the cache, as a state machine the glue drives:
//!
//! ```text
//! request body complete ─► bypass ───────────────────────────────► forward (x-aigw-cache: bypass)
//!                       ├─► exact hit ───────────────────────────► local reply (x-aigw-cache: hit)
//!                       ├─► embed ─► embeddings answer ─► semantic hit ─► local reply
//!                       │                              └► miss ─────────► forward
//!                       └─► miss (no semantic lookup) ──────────────────► forward (x-aigw-cache: miss)
//! response (miss) ─► collect ─► complete and final? ─► store
//! ```
//!
//! With an external store (`store.chroma`), a local semantic miss asks the
//! store before forwarding (`Step::Store`, answered in [`Exchange::on_store`];
//! the first call of a VM resolves the collection's id first), and a stored
//! answer with a vector is queued for the root context to write
//! ([`chroma::Writer`]): the response never waits for the store.
//!
//! Everything here runs natively against `FakeHost`; `lib.rs` only carries
//! the decisions out.

use crate::answer::{self, Collector, HitInfo};
use crate::chroma::{self, StoreError};
use crate::config::{Config, Policy};
use crate::embedding;
use crate::key::{self, Bypass, CacheRequest};
use crate::metrics;
use crate::store::{Cache, Lookup, NewEntry};
use aigw_shared::api::ApiShape;
use aigw_shared::contract::{HEADER_CACHE, HEADER_CACHE_BYPASS, HEADER_CACHE_SIMILARITY};
use aigw_shared::host::Host;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// What the glue does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Let the request go upstream.
    Forward,
    /// Call the embeddings endpoint with these headers and body, then [`Exchange::on_embedding`].
    Embed { headers: Vec<(String, String)>, body: Vec<u8> },
    /// Answer from the cache with a 200 local reply.
    Hit(HitReply),
    /// Call the external store (`store.chroma.cluster`), then [`Exchange::on_store`].
    Store(chroma::StoreCall),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HitReply {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub similarity: f64,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the request body.
    Request,
    Bypass(Bypass),
    /// Waiting for the embeddings call.
    Embedding {
        request: CacheRequest,
        policy: Policy,
        started_nanos: u64,
    },
    /// Waiting for the external store's nearest entry (`resolving`: its collection id first).
    StoreLookup {
        request: CacheRequest,
        policy: Policy,
        vector: Vec<f32>,
        started_nanos: u64,
        resolving: bool,
    },
    /// Forwarded; the answer may be stored under `vector` (empty: exact only).
    Miss {
        request: CacheRequest,
        policy: Policy,
        vector: Vec<f32>,
        collector: Option<Collector>,
    },
    Hit,
    Done,
}

/// One request's cache state.
#[derive(Debug)]
pub struct Exchange {
    shape: ApiShape,
    tenant: String,
    tenant_id: u64,
    no_cache: bool,
    no_store: bool,
    phase: Phase,
    /// Entries and bytes last seen in the index, for the gauges.
    pub usage: Option<(u64, u64)>,
}

impl Exchange {
    /// A chat request of `shape` (known at the request headers).
    pub fn new(config: &Config, host: &dyn Host, shape: ApiShape, cache_control: Option<&str>) -> Exchange {
        let tenant = config.tenant.resolve(host).unwrap_or_else(|| crate::config::DEFAULT_TENANT.to_string());
        let (no_cache, no_store) = key::cache_control(cache_control);
        Exchange {
            shape,
            tenant_id: key::tenant_id(&tenant),
            tenant,
            no_cache,
            no_store,
            phase: Phase::Request,
            usage: None,
        }
    }

    /// `hit`, `miss` or `bypass` (the `x-aigw-cache` value and filter state).
    pub fn label(&self) -> &'static str {
        match self.phase {
            Phase::Hit => "hit",
            Phase::Bypass(_) => "bypass",
            // `no-cache`: looked nothing up (the answer may still be stored).
            _ if self.no_cache => "bypass",
            _ => "miss",
        }
    }

    pub fn is_hit(&self) -> bool {
        matches!(self.phase, Phase::Hit)
    }

    fn bypass(&mut self, host: &dyn Host, reason: Bypass) -> Step {
        host.increment_counter(&metrics::bypass(reason.reason()), 1);
        self.phase = Phase::Bypass(reason);
        Step::Forward
    }

    fn cache<'h>(&self, config: &Config, host: &'h dyn Host) -> Cache<'h, dyn Host + 'h> {
        Cache::new(host, config.max_entries)
    }

    /// The request body is complete (`None`: too large or unreadable to parse).
    pub fn on_request(&mut self, config: &Config, host: &dyn Host, body: Option<&[u8]>) -> Step {
        let Some(body) = body else { return self.bypass(host, Bypass::Unreadable) };
        let input = config.semantic.as_ref().map(|s| s.input).unwrap_or(crate::config::EmbedInput::LastUserMessage);
        let request = match key::read(self.shape, body, &self.tenant, input) {
            Ok(request) => request,
            Err(reason) => return self.bypass(host, reason),
        };
        let policy = config.policy(&self.tenant, &request.model);
        if !policy.enabled {
            return self.bypass(host, Bypass::Disabled);
        }
        if request.sampling && !config.cache_when_sampling {
            return self.bypass(host, Bypass::Sampling);
        }
        let now_s = host.now_nanos() / NANOS_PER_SECOND;
        if !self.no_cache {
            let cache = self.cache(config, host);
            match cache.index() {
                Some(index) => {
                    self.usage = Some(index.usage());
                    let lookup = cache.lookup_exact(&index, self.tenant_id, request.exact, now_s);
                    if let Some(step) = self.found(config, host, &request, lookup, "exact", now_s) {
                        return step;
                    }
                }
                None => host.increment_counter(metrics::CORRUPT, 1),
            }
        }
        if self.no_cache {
            host.increment_counter(&metrics::bypass(Bypass::NoCache.reason()), 1);
        }
        match (&config.semantic, policy.threshold, &request.embed_text) {
            (Some(semantic), Some(_), Some(text)) if !(self.no_cache && self.no_store) => {
                let (headers, body) = embedding::call(semantic, text);
                self.phase = Phase::Embedding { request, policy, started_nanos: host.now_nanos() };
                Step::Embed { headers, body }
            }
            _ => self.miss(host, request, policy, Vec::new()),
        }
    }

    /// The embeddings call could not be sent.
    pub fn embedding_not_sent(&mut self, host: &dyn Host) -> Step {
        host.increment_counter(&metrics::embedding_failed(embedding::EmbeddingError::Dispatch.reason()), 1);
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Embedding { request, policy, .. } => self.miss(host, request, policy, Vec::new()),
            other => {
                self.phase = other;
                Step::Forward
            }
        }
    }

    /// The embeddings call answered (`status` absent: timeout or reset).
    pub fn on_embedding(
        &mut self,
        config: &Config,
        host: &dyn Host,
        status: Option<&str>,
        body: Option<&[u8]>,
    ) -> Step {
        let Phase::Embedding { request, policy, started_nanos } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return Step::Forward;
        };
        let elapsed_ms = host.now_nanos().saturating_sub(started_nanos) / 1_000_000;
        host.record_histogram(metrics::EMBEDDING_LATENCY, elapsed_ms);
        let Some(semantic) = &config.semantic else { return self.miss(host, request, policy, Vec::new()) };
        let vector = match embedding::parse(semantic, status, body) {
            Ok(vector) => vector,
            Err(err) => {
                // Fail open: forward as a miss; the answer is stored for exact matches only.
                host.increment_counter(&metrics::embedding_failed(err.reason()), 1);
                return self.miss(host, request, policy, Vec::new());
            }
        };
        if let (false, Some(threshold)) = (self.no_cache, policy.threshold) {
            let now_s = host.now_nanos() / NANOS_PER_SECOND;
            let cache = self.cache(config, host);
            if let Some(index) = cache.index() {
                let lookup = cache.lookup_semantic(&index, self.tenant_id, request.context, &vector, threshold, now_s);
                host.record_histogram(metrics::COMPARED, lookup.compared as u64);
                if let Some(nearest) = lookup.best_below {
                    host.record_histogram(metrics::NEAREST_MISS, metrics::permille(nearest));
                }
                if let Some(step) = self.found(config, host, &request, lookup, "semantic", now_s) {
                    return step;
                }
            }
            // Not in this replica: another may have stored it.
            if config.store.is_some() {
                let started_nanos = host.now_nanos();
                self.phase = Phase::StoreLookup { request, policy, vector, started_nanos, resolving: false };
                return self.next_store_call(config, host);
            }
        }
        self.miss(host, request, policy, vector)
    }

    /// The call the pending lookup needs: the collection id first, once per VM.
    fn next_store_call(&mut self, config: &Config, host: &dyn Host) -> Step {
        let Some(store) = &config.store else { return self.store_failed(host, StoreError::Dispatch) };
        let now_s = host.now_nanos() / NANOS_PER_SECOND;
        let Phase::StoreLookup { request, vector, resolving, .. } = &mut self.phase else { return Step::Forward };
        match chroma::known_collection() {
            None => {
                *resolving = true;
                Step::Store(chroma::resolve_call(store))
            }
            Some(id) => {
                *resolving = false;
                Step::Store(chroma::query_call(store, &id, self.tenant_id, request.context, vector, now_s))
            }
        }
    }

    /// The store call could not be sent.
    pub fn store_not_sent(&mut self, host: &dyn Host) -> Step {
        self.store_failed(host, StoreError::Dispatch)
    }

    /// Fail open: the lookup becomes a miss.
    fn store_failed(&mut self, host: &dyn Host, err: StoreError) -> Step {
        host.increment_counter(&metrics::store_failed(err.reason()), 1);
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::StoreLookup { request, policy, vector, .. } => self.miss(host, request, policy, vector),
            other => {
                self.phase = other;
                Step::Forward
            }
        }
    }

    /// The store answered (`status` absent: timeout or reset).
    pub fn on_store(&mut self, config: &Config, host: &dyn Host, status: Option<&str>, body: Option<&[u8]>) -> Step {
        let resolving = match &self.phase {
            Phase::StoreLookup { resolving, .. } => *resolving,
            _ => return Step::Forward,
        };
        if resolving {
            return match chroma::parse_resolve(status, body) {
                Ok(id) => {
                    chroma::remember_collection(Some(id));
                    self.next_store_call(config, host)
                }
                Err(err) => self.store_failed(host, err),
            };
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::StoreLookup { request, policy, vector, started_nanos, .. } => {
                let elapsed_ms = host.now_nanos().saturating_sub(started_nanos) / 1_000_000;
                host.record_histogram(metrics::STORE_LATENCY, elapsed_ms);
                let threshold = policy.threshold.unwrap_or(1.0);
                match chroma::parse_query(status, body, self.tenant_id, request.context, &vector, threshold) {
                    Ok(lookup) => {
                        host.record_histogram(metrics::COMPARED, lookup.compared as u64);
                        if let Some(nearest) = lookup.best_below {
                            host.record_histogram(metrics::NEAREST_MISS, metrics::permille(nearest));
                        }
                        let now_s = host.now_nanos() / NANOS_PER_SECOND;
                        if let Some(step) = self.found(config, host, &request, lookup, "semantic", now_s) {
                            return step;
                        }
                    }
                    Err(err) => {
                        self.forget_on_status(host, err);
                    }
                }
                self.miss(host, request, policy, vector)
            }
            other => {
                self.phase = other;
                Step::Forward
            }
        }
    }

    /// Counts a failed call; a 404 means the collection was deleted (or the
    /// store reset), so the next call resolves its id again (and recreates it).
    fn forget_on_status(&mut self, host: &dyn Host, err: StoreError) {
        host.increment_counter(&metrics::store_failed(err.reason()), 1);
        if err == StoreError::NotFound {
            chroma::remember_collection(None);
        }
    }

    fn miss(&mut self, host: &dyn Host, request: CacheRequest, policy: Policy, vector: Vec<f32>) -> Step {
        if !self.no_cache {
            host.increment_counter(metrics::MISS, 1);
        }
        self.phase = Phase::Miss { request, policy, vector, collector: None };
        Step::Forward
    }

    /// Turns a lookup into a hit reply, counting what it saved.
    fn found(
        &mut self,
        config: &Config,
        host: &dyn Host,
        request: &CacheRequest,
        lookup: Lookup,
        kind: &str,
        now_s: u64,
    ) -> Option<Step> {
        if lookup.corrupt > 0 {
            host.increment_counter(metrics::CORRUPT, lookup.corrupt as u64);
        }
        let found = lookup.found?;
        let age_seconds = now_s.saturating_sub(found.created_s);
        let hit = HitInfo { similarity: found.similarity, age_seconds };
        let Some((content_type, body)) =
            answer::replay(self.shape, &found.answer, request.stream, request.include_usage, hit)
        else {
            host.increment_counter(metrics::CORRUPT, 1);
            return None;
        };
        if let Ok(stored) = serde_json::from_slice::<serde_json::Value>(&found.answer) {
            let (input, output) = answer::usage_tokens(self.shape, &stored);
            host.increment_counter(metrics::SAVED_INPUT, input);
            host.increment_counter(metrics::SAVED_OUTPUT, output);
            if let Some(price) = config.price(&request.model) {
                let micro_usd = input as f64 * price.input + output as f64 * price.output;
                host.increment_counter(metrics::SAVED_COST, micro_usd.round() as u64);
            }
        }
        host.increment_counter(&metrics::hit(kind), 1);
        host.record_histogram(metrics::SIMILARITY, metrics::permille(found.similarity));
        self.phase = Phase::Hit;
        let similarity = format!("{:.3}", found.similarity);
        Some(Step::Hit(HitReply {
            headers: vec![
                ("content-type".to_string(), content_type.to_string()),
                (HEADER_CACHE.to_string(), "hit".to_string()),
                (HEADER_CACHE_SIMILARITY.to_string(), similarity),
                ("age".to_string(), age_seconds.to_string()),
            ],
            body,
            similarity: found.similarity,
        }))
    }

    /// Headers to add to the response (not on a hit: the local reply has its own).
    pub fn response_headers(
        &mut self,
        config: &Config,
        host: &dyn Host,
        status: Option<u16>,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        match &mut self.phase {
            Phase::Bypass(reason) => {
                vec![(HEADER_CACHE, "bypass".to_string()), (HEADER_CACHE_BYPASS, reason.reason().to_string())]
            }
            Phase::Miss { collector, .. } => {
                if self.no_store {
                    host.increment_counter(&metrics::store_skipped("no_store"), 1);
                } else {
                    match Collector::start(status, content_type, content_encoding, config.max_entry_bytes) {
                        Ok(started) => *collector = Some(started),
                        Err(skip) => host.increment_counter(&metrics::store_skipped(skip.reason()), 1),
                    }
                }
                if self.no_cache {
                    vec![
                        (HEADER_CACHE, "bypass".to_string()),
                        (HEADER_CACHE_BYPASS, Bypass::NoCache.reason().to_string()),
                    ]
                } else {
                    vec![(HEADER_CACHE, "miss".to_string())]
                }
            }
            _ => Vec::new(),
        }
    }

    /// Whether the response body is collected (a miss that may be stored): otherwise the glue
    /// need not read it from the host at all.
    pub fn wants_response_body(&self) -> bool {
        matches!(self.phase, Phase::Miss { collector: Some(_), .. })
    }

    /// A chunk of the response body; at the end the answer is stored if it qualifies.
    pub fn response_body(&mut self, config: &Config, host: &dyn Host, chunk: &[u8], end_of_stream: bool) {
        let Phase::Miss { collector: Some(collector), .. } = &mut self.phase else { return };
        collector.push(chunk);
        if end_of_stream {
            self.store(config, host);
        }
    }

    /// The stream ended (`completed`: the response reached its end).
    pub fn finish(&mut self, host: &dyn Host, completed: bool) {
        if let Phase::Miss { collector: Some(_), .. } = &self.phase {
            if !completed {
                host.increment_counter(&metrics::store_skipped(answer::Skip::Incomplete.reason()), 1);
            }
        }
        if !matches!(self.phase, Phase::Hit) {
            self.phase = Phase::Done;
        }
    }

    fn store(&mut self, config: &Config, host: &dyn Host) {
        let Phase::Miss { request, policy, vector, collector: Some(collector) } =
            std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return;
        };
        let answer = match collector.finish(self.shape) {
            Ok(answer) => answer,
            Err(skip) => {
                host.increment_counter(&metrics::store_skipped(skip.reason()), 1);
                return;
            }
        };
        let entry = NewEntry {
            tenant: self.tenant_id,
            exact: request.exact,
            context: request.context,
            vector,
            answer,
            ttl_seconds: policy.ttl_seconds,
        };
        let now_s = host.now_nanos() / NANOS_PER_SECOND;
        let cache = self.cache(config, host);
        match cache.insert(&entry, now_s, config.max_entry_bytes, config.max_bytes) {
            Ok(inserted) => {
                host.increment_counter(metrics::STORED, 1);
                if inserted.evicted > 0 {
                    host.increment_counter(metrics::EVICTED, inserted.evicted as u64);
                }
                if inserted.reset {
                    host.increment_counter(metrics::CORRUPT, 1);
                }
                self.usage = cache.index().map(|index| index.usage());
            }
            Err(err) => host.increment_counter(&metrics::store_skipped(err.reason()), 1),
        }
        // Entries with a vector go to the external store too (written by the root context);
        // exact-only ones stay in this replica.
        if config.store.is_some() && !entry.vector.is_empty() {
            if let Err(err) = chroma::enqueue(entry, now_s) {
                host.increment_counter(&metrics::store_failed(err.reason()), 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;
    use aigw_shared::host::fake::FakeHost;
    use serde_json::{json, Value};

    const CONFIG: &str = r#"{"semantic": {"cluster": "mock", "threshold": 0.9},
        "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}}"#;
    const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Thirty days."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":3,"total_tokens":23}}"#;

    fn body(question: &str, stream: bool) -> Vec<u8> {
        json!({"model": "gpt-4o-mini", "temperature": 0, "stream": stream,
               "messages": [{"role": "user", "content": question}]})
        .to_string()
        .into_bytes()
    }

    fn embedding_body(vector: &[f32]) -> Vec<u8> {
        json!({"data": [{"embedding": vector}]}).to_string().into_bytes()
    }

    fn host() -> FakeHost {
        FakeHost::new().with_header("x-aigw-client", "retail").with_time_nanos(1_000 * NANOS_PER_SECOND)
    }

    /// A miss whose answer is stored under `vector`.
    fn store_one(config: &Config, host: &FakeHost, question: &str, vector: &[f32]) {
        let mut exchange = Exchange::new(config, host, ApiShape::OpenAiChat, None);
        assert!(matches!(exchange.on_request(config, host, Some(&body(question, false))), Step::Embed { .. }));
        let step = exchange.on_embedding(config, host, Some("200"), Some(&embedding_body(vector)));
        assert_eq!(step, Step::Forward);
        let headers = exchange.response_headers(config, host, Some(200), Some("application/json"), None);
        assert_eq!(headers, vec![(HEADER_CACHE, "miss".to_string())]);
        exchange.response_body(config, host, ANSWER.as_bytes(), true);
        assert_eq!(host.counter(metrics::STORED), 1);
    }

    #[test]
    fn miss_stores_then_exact_and_semantic_hits() {
        let config = from_json(Some(CONFIG.as_bytes())).unwrap();
        let host = host();
        Cache::new(&host as &dyn Host, config.max_entries).ensure_index();
        store_one(&config, &host, "What is the return policy?", &[1.0, 0.0]);

        // The same request: an exact hit, without an embeddings call.
        let mut exact = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        let Step::Hit(reply) = exact.on_request(&config, &host, Some(&body("What is the return policy?", false)))
        else {
            panic!("expected an exact hit")
        };
        assert_eq!(reply.similarity, 1.0);
        assert!(reply.headers.contains(&("x-aigw-cache".into(), "hit".into())));
        assert!(reply.headers.contains(&("age".into(), "0".into())));
        let value: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(value["choices"][0]["message"]["content"], "Thirty days.");
        assert_eq!(value["usage"]["aigw_cache"]["upstream_tokens"], 0);
        assert_eq!(host.counter(&metrics::hit("exact")), 1);
        assert_eq!(host.counter(metrics::SAVED_INPUT), 20);
        assert_eq!(host.counter(metrics::SAVED_COST), 5); // 20 × 0.15 + 3 × 0.6 = 4.8 micro-dollars

        // A reworded question, streamed: a semantic hit replayed as SSE.
        host.now_nanos.set(1_010 * NANOS_PER_SECOND);
        let mut near = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        let step = near.on_request(&config, &host, Some(&body("What is the return policy, please?", true)));
        assert!(matches!(step, Step::Embed { .. }));
        let Step::Hit(reply) = near.on_embedding(&config, &host, Some("200"), Some(&embedding_body(&[0.99, 0.1])))
        else {
            panic!("expected a semantic hit")
        };
        assert!(reply.headers.contains(&("content-type".into(), "text/event-stream".into())));
        assert!(reply.headers.contains(&("age".into(), "10".into())));
        assert!(String::from_utf8(reply.body).unwrap().ends_with("data: [DONE]\n\n"));
        assert_eq!(host.counter(&metrics::hit("semantic")), 1);
        assert!(near.is_hit());
        assert!(near.response_headers(&config, &host, Some(200), Some("text/event-stream"), None).is_empty());

        // Another tenant: a miss.
        let other = FakeHost::new().with_header("x-aigw-client", "wealth").with_time_nanos(1_000 * NANOS_PER_SECOND);
        let mut wealth = Exchange::new(&config, &other, ApiShape::OpenAiChat, None);
        // Give the other host the same shared data: copy the index and records.
        for key in [crate::store::index_key(), crate::store::vector_key(0), crate::store::answer_key(0)] {
            let (value, _) = aigw_shared::counter::SharedStore::get(&host, &key);
            aigw_shared::counter::SharedStore::set(&other, &key, &value.unwrap(), None).unwrap();
        }
        assert!(matches!(
            wealth.on_request(&config, &other, Some(&body("What is the return policy?", false))),
            Step::Embed { .. }
        ));
        assert_eq!(
            wealth.on_embedding(&config, &other, Some("200"), Some(&embedding_body(&[1.0, 0.0]))),
            Step::Forward
        );
        assert_eq!(wealth.label(), "miss");
    }

    #[test]
    fn bypasses_and_fail_open() {
        let config = from_json(Some(CONFIG.as_bytes())).unwrap();
        let host = host();
        let mut no_cache = Exchange::new(&config, &host, ApiShape::OpenAiChat, Some("no-cache"));
        assert!(matches!(no_cache.on_request(&config, &host, Some(&body("q", false))), Step::Embed { .. }));
        assert_eq!(no_cache.on_embedding(&config, &host, None, None), Step::Forward);
        let headers = no_cache.response_headers(&config, &host, Some(200), Some("application/json"), None);
        assert!(headers.contains(&(HEADER_CACHE, "bypass".to_string())));
        assert_eq!(no_cache.label(), "bypass");
        assert_eq!(host.counter(&metrics::bypass("no_cache")), 1);
        assert_eq!(host.counter(&metrics::embedding_failed("no_response")), 1);
        // Fail-open still stores the answer, for exact matches.
        no_cache.response_body(&config, &host, ANSWER.as_bytes(), true);
        assert_eq!(host.counter(metrics::STORED), 1);

        let sampling = json!({"model": "m", "messages": [{"role": "user", "content": "q"}]}).to_string();
        let mut exchange = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        assert_eq!(exchange.on_request(&config, &host, Some(sampling.as_bytes())), Step::Forward);
        assert_eq!(exchange.label(), "bypass");
        let headers = exchange.response_headers(&config, &host, Some(200), None, None);
        assert!(headers.contains(&(HEADER_CACHE_BYPASS, "sampling".to_string())));

        let mut no_store = Exchange::new(&config, &host, ApiShape::OpenAiChat, Some("no-store"));
        assert!(matches!(no_store.on_request(&config, &host, Some(&body("other", false))), Step::Embed { .. }));
        no_store.embedding_not_sent(&host);
        no_store.response_headers(&config, &host, Some(200), Some("application/json"), None);
        no_store.response_body(&config, &host, ANSWER.as_bytes(), true);
        assert_eq!(host.counter(metrics::STORED), 1, "no-store: not stored");
        assert_eq!(host.counter(&metrics::store_skipped("no_store")), 1);

        let mut unreadable = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        assert_eq!(unreadable.on_request(&config, &host, None), Step::Forward);
        assert_eq!(host.counter(&metrics::bypass("unreadable")), 1);
    }

    #[test]
    fn truncated_or_failed_answers_are_not_stored() {
        let config = from_json(Some(br#"{}"#)).unwrap();
        let host = host();
        let mut exchange = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        assert_eq!(exchange.on_request(&config, &host, Some(&body("q", false))), Step::Forward);
        exchange.response_headers(&config, &host, Some(200), Some("application/json"), None);
        exchange.response_body(&config, &host, ANSWER.replace("\"stop\"", "\"length\"").as_bytes(), true);
        assert_eq!(host.counter(&metrics::store_skipped("not_final")), 1);
        let mut failed = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        failed.on_request(&config, &host, Some(&body("q", false)));
        failed.response_headers(&config, &host, Some(500), Some("application/json"), None);
        assert_eq!(host.counter(&metrics::store_skipped("status")), 1);
        let mut reset = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        reset.on_request(&config, &host, Some(&body("q", false)));
        reset.response_headers(&config, &host, Some(200), Some("application/json"), None);
        reset.response_body(&config, &host, b"{", false);
        reset.finish(&host, false);
        assert_eq!(host.counter(&metrics::store_skipped("incomplete")), 1);
        assert_eq!(host.counter(metrics::STORED), 0);
    }

    const STORE_CONFIG: &str = r#"{"semantic": {"cluster": "mock", "threshold": 0.9},
        "store": {"chroma": {"cluster": "chroma", "collection": "answers", "timeout_ms": 300}}}"#;
    const COLLECTIONS: &str = "/api/v2/tenants/default_tenant/databases/default_database/collections";

    fn call_of(step: Step) -> chroma::StoreCall {
        match step {
            Step::Store(call) => call,
            other => panic!("expected a store call, got {other:?}"),
        }
    }

    fn path(call: &chroma::StoreCall) -> &str {
        call.headers.iter().find(|(n, _)| n == ":path").map(|(_, v)| v.as_str()).unwrap()
    }

    fn json_of(call: &chroma::StoreCall) -> Value {
        serde_json::from_slice(&call.body).unwrap()
    }

    /// What Chroma answers to a query that found the entry `upsert` wrote.
    fn found_by_query(upsert: &Value) -> Vec<u8> {
        json!({"ids": [[upsert["ids"][0]]], "embeddings": [[upsert["embeddings"][0]]],
               "documents": [[upsert["documents"][0]]], "metadatas": [[upsert["metadatas"][0]]],
               "distances": null, "uris": null})
        .to_string()
        .into_bytes()
    }

    const NOTHING_FOUND: &[u8] = br#"{"ids":[[]],"embeddings":[[]],"documents":[[]],"metadatas":[[]]}"#;

    /// Replica A misses everywhere, stores locally and writes the entry to the store;
    /// replica B (its own shared data) answers the reworded question from the store.
    #[test]
    fn replicas_share_entries_through_the_external_store() {
        chroma::remember_collection(None);
        let config = from_json(Some(STORE_CONFIG.as_bytes())).unwrap();
        let a = host();
        Cache::new(&a as &dyn Host, config.max_entries).ensure_index();
        let mut exchange = Exchange::new(&config, &a, ApiShape::OpenAiChat, None);
        assert!(matches!(
            exchange.on_request(&config, &a, Some(&body("What is the return policy?", false))),
            Step::Embed { .. }
        ));
        // Local miss → the collection id first (once per VM), then the query.
        let resolve = call_of(exchange.on_embedding(&config, &a, Some("200"), Some(&embedding_body(&[1.0, 0.0]))));
        assert_eq!(path(&resolve), COLLECTIONS);
        assert_eq!(
            json_of(&resolve),
            json!({"name": "answers", "get_or_create": true, "metadata": {"hnsw:space": "cosine"}})
        );
        let query = call_of(exchange.on_store(&config, &a, Some("200"), Some(br#"{"id":"0a1b-2c"}"#)));
        assert_eq!(path(&query), format!("{COLLECTIONS}/0a1b-2c/query"));
        let sent = json_of(&query);
        let tenant = format!("{:016x}", key::tenant_id("retail"));
        assert_eq!(sent["where"]["$and"][0]["tenant"]["$eq"], tenant, "the tenant filter is always sent");
        assert_eq!(sent["where"]["$and"][2]["expires_s"]["$gt"], 1_000);
        assert_eq!(sent["query_embeddings"], json!([[1.0, 0.0]]));
        assert_eq!(exchange.on_store(&config, &a, Some("200"), Some(NOTHING_FOUND)), Step::Forward);
        assert_eq!(exchange.label(), "miss");
        assert_eq!(a.counter(metrics::MISS), 1);
        exchange.response_headers(&config, &a, Some(200), Some("application/json"), None);
        exchange.response_body(&config, &a, ANSWER.as_bytes(), true);
        assert_eq!(a.counter(metrics::STORED), 1, "stored locally as well");
        assert_eq!(chroma::queued(), 1, "queued for the root context: the response does not wait");
        let store = config.store.clone().unwrap();
        let mut writer = chroma::Writer::default();
        let write = writer.on_tick(&store).unwrap();
        assert_eq!(path(&write), format!("{COLLECTIONS}/0a1b-2c/upsert"));
        let upsert = json_of(&write);
        assert_eq!(upsert["metadatas"][0]["tenant"], tenant);
        assert_eq!(upsert["metadatas"][0]["expires_s"], 1_000 + 3_600);
        let document: Value = serde_json::from_str(upsert["documents"][0].as_str().unwrap()).unwrap();
        assert_eq!(document, serde_json::from_str::<Value>(ANSWER).unwrap(), "the stored answer is the document");
        assert_eq!(writer.on_response(Some("200"), Some(b"{}")), chroma::Written::Entries(1));

        // Replica B: nothing in its shared data; the store has A's entry.
        let b = host();
        b.now_nanos.set(1_030 * NANOS_PER_SECOND);
        Cache::new(&b as &dyn Host, config.max_entries).ensure_index();
        let mut near = Exchange::new(&config, &b, ApiShape::OpenAiChat, None);
        assert!(matches!(
            near.on_request(&config, &b, Some(&body("What is the return policy, please?", false))),
            Step::Embed { .. }
        ));
        let query = call_of(near.on_embedding(&config, &b, Some("200"), Some(&embedding_body(&[0.99, 0.1]))));
        assert!(path(&query).ends_with("/0a1b-2c/query"), "the collection id is kept in the VM");
        let Step::Hit(reply) = near.on_store(&config, &b, Some("200"), Some(&found_by_query(&upsert))) else {
            panic!("expected a hit from the store")
        };
        assert!(reply.similarity > 0.99 && reply.similarity < 1.0, "{}", reply.similarity);
        assert!(reply.headers.contains(&("age".into(), "30".into())));
        let value: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(value["choices"][0]["message"]["content"], "Thirty days.");
        assert_eq!(b.counter(&metrics::hit("semantic")), 1);
        assert_eq!(b.counter(metrics::MISS), 0);

        // Below the threshold (computed here from the returned vector): a miss.
        let mut far = Exchange::new(&config, &b, ApiShape::OpenAiChat, None);
        far.on_request(&config, &b, Some(&body("Something else entirely", false)));
        call_of(far.on_embedding(&config, &b, Some("200"), Some(&embedding_body(&[0.0, 1.0]))));
        assert_eq!(far.on_store(&config, &b, Some("200"), Some(&found_by_query(&upsert))), Step::Forward);
        assert_eq!(far.label(), "miss");

        // Another tenant: its own filter; a store that answered with retail's entry anyway is not served.
        let w = FakeHost::new().with_header("x-aigw-client", "wealth").with_time_nanos(1_000 * NANOS_PER_SECOND);
        let mut wealth = Exchange::new(&config, &w, ApiShape::OpenAiChat, None);
        wealth.on_request(&config, &w, Some(&body("What is the return policy?", false)));
        let query = call_of(wealth.on_embedding(&config, &w, Some("200"), Some(&embedding_body(&[1.0, 0.0]))));
        assert_eq!(json_of(&query)["where"]["$and"][0]["tenant"]["$eq"], format!("{:016x}", key::tenant_id("wealth")));
        assert_eq!(wealth.on_store(&config, &w, Some("200"), Some(&found_by_query(&upsert))), Step::Forward);
        assert_eq!(wealth.label(), "miss");
        assert_eq!(w.counter(&metrics::store_failed("bad_body")), 1);
        chroma::remember_collection(None);
    }

    /// Every store failure makes the request a miss that goes on; a failed write is dropped.
    #[test]
    fn store_failures_fail_open() {
        chroma::remember_collection(Some("c-1".to_string()));
        let config = from_json(Some(STORE_CONFIG.as_bytes())).unwrap();
        let host = host();
        Cache::new(&host as &dyn Host, config.max_entries).ensure_index();
        let cases: [(Option<&str>, &[u8], &str); 5] = [
            (None, b"", "no_response"),
            (Some("500"), b"{}", "bad_status"),
            (Some("200"), b"<html>", "bad_body"),
            (Some("200"), br#"{"ids":[["x"]],"embeddings":[["a"]]}"#, "bad_body"),
            (Some("404"), br#"{"error":"NotFoundError"}"#, "not_found"),
        ];
        for (status, reply, reason) in cases {
            let mut exchange = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
            exchange.on_request(&config, &host, Some(&body("q", false)));
            let query = call_of(exchange.on_embedding(&config, &host, Some("200"), Some(&embedding_body(&[1.0, 0.0]))));
            assert!(path(&query).ends_with("/c-1/query"), "{reason}");
            assert_eq!(exchange.on_store(&config, &host, status, Some(reply)), Step::Forward, "{reason}");
            assert_eq!(exchange.label(), "miss", "{reason}");
        }
        assert_eq!(host.counter(&metrics::store_failed("no_response")), 1);
        assert_eq!(host.counter(&metrics::store_failed("bad_status")), 1);
        assert_eq!(host.counter(&metrics::store_failed("bad_body")), 2);
        assert_eq!(host.counter(&metrics::store_failed("not_found")), 1);
        assert_eq!(host.counter(metrics::MISS), 5);
        assert_eq!(chroma::known_collection(), None, "a 404 forgets the collection id");

        // The call could not be sent; then the id cannot be resolved.
        let mut exchange = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        exchange.on_request(&config, &host, Some(&body("q", false)));
        let resolve = call_of(exchange.on_embedding(&config, &host, Some("200"), Some(&embedding_body(&[1.0, 0.0]))));
        assert_eq!(path(&resolve), COLLECTIONS);
        assert_eq!(exchange.store_not_sent(&host), Step::Forward);
        assert_eq!(exchange.label(), "miss");
        assert_eq!(host.counter(&metrics::store_failed("dispatch_failed")), 1);
        let mut exchange = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        exchange.on_request(&config, &host, Some(&body("q", false)));
        call_of(exchange.on_embedding(&config, &host, Some("200"), Some(&embedding_body(&[1.0, 0.0]))));
        assert_eq!(exchange.on_store(&config, &host, Some("503"), Some(b"")), Step::Forward);
        assert_eq!(exchange.label(), "miss");
        // The answer is stored locally and queued for the store.
        exchange.response_headers(&config, &host, Some(200), Some("application/json"), None);
        exchange.response_body(&config, &host, ANSWER.as_bytes(), true);
        assert_eq!(host.counter(metrics::STORED), 1);
        assert_eq!(chroma::queued(), 1);

        // no-cache: no lookup in the store either, but the fresh answer is queued.
        let mut exchange = Exchange::new(&config, &host, ApiShape::OpenAiChat, Some("no-cache"));
        assert!(matches!(exchange.on_request(&config, &host, Some(&body("fresh", false))), Step::Embed { .. }));
        assert_eq!(
            exchange.on_embedding(&config, &host, Some("200"), Some(&embedding_body(&[0.0, 1.0]))),
            Step::Forward
        );
        exchange.response_headers(&config, &host, Some(200), Some("application/json"), None);
        exchange.response_body(&config, &host, ANSWER.as_bytes(), true);
        assert_eq!(chroma::queued(), 2);

        // Exact-only entries (the embeddings call failed) stay in this replica.
        let mut exchange = Exchange::new(&config, &host, ApiShape::OpenAiChat, None);
        exchange.on_request(&config, &host, Some(&body("exact only", false)));
        assert_eq!(exchange.on_embedding(&config, &host, None, None), Step::Forward);
        exchange.response_headers(&config, &host, Some(200), Some("application/json"), None);
        exchange.response_body(&config, &host, ANSWER.as_bytes(), true);
        assert_eq!(chroma::queued(), 2);
        let mut writer = chroma::Writer::default();
        writer.on_tick(&config.store.clone().unwrap()).unwrap();
        assert_eq!(writer.not_sent(), chroma::Written::Failed(StoreError::Dispatch, 2), "the queue is emptied");
        chroma::remember_collection(None);
    }
}
