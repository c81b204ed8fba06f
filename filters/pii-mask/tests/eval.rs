//! Recall and false positives of the built pii-mask.wasm (through the wasmtime
//! harness, default configuration) on:
//!
//! - `tests/eval/presidio_cases.jsonl`: Presidio's own recognizer test cases
//!   for the six entities, restated as data (`restate_presidio_cases.py`);
//! - `tests/eval/generated.jsonl`: a seeded Faker set in twelve locales with
//!   look-alike negatives (`generate.py`).
//!
//! A value counts as found when the masked text no longer contains it and
//! holds a placeholder of the expected entity for every value of the case. A
//! generated negative is a false positive when anything in it changed; a
//! Presidio negative when its file's entity was reported. The table is
//! printed next to Presidio's figures on the same cases
//! (`tests/eval/presidio_figures.json`, from `presidio_baseline.py`), and the
//! test fails below the targets (`cargo test -p pii-mask --test eval -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use aigw_harness::{wasm_path, Action, Harness, Vm};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ENTITIES: [&str; 6] = ["PHONE_NUMBER", "CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "US_SSN"];

/// Lowest recall per entity on the generated set, and the highest false-positive rate.
const TARGETS: [(&str, f64); 6] = [
    ("PHONE_NUMBER", 0.85),
    ("CREDIT_CARD", 0.97),
    ("EMAIL_ADDRESS", 0.99),
    ("IBAN_CODE", 0.99),
    ("IP_ADDRESS", 0.97),
    ("US_SSN", 0.95),
];
const MAX_FALSE_POSITIVE_RATE: f64 = 0.005;

struct Case {
    entity: Option<String>,
    text: String,
    values: Vec<String>,
    locale: String,
}

fn load(name: &str) -> Vec<Case> {
    // PII_EVAL_GENERATED points at another generated set (a held-out seed).
    let path = match std::env::var("PII_EVAL_GENERATED") {
        Ok(path) if name == "generated.jsonl" => path,
        _ => format!("{}/tests/eval/{name}", env!("CARGO_MANIFEST_DIR")),
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{path}: {err}"))
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Case {
                entity: v["entity"].as_str().map(String::from),
                text: v["text"].as_str().unwrap().to_string(),
                values: v["values"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                locale: v["locale"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect()
}

/// Masks every text through the filter, many messages per request.
fn mask_all(vm: &Vm, texts: &[&str]) -> Vec<String> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(200) {
        let messages: Vec<Value> = batch.iter().map(|t| json!({"role": "user", "content": t})).collect();
        let body = json!({"model": "m", "messages": messages}).to_string();
        let mut stream = vm.stream();
        let length = body.len().to_string();
        let headers = [
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
            ("content-type", "application/json"),
            ("content-length", length.as_str()),
        ];
        assert_eq!(
            stream.send_request_headers(&headers, false),
            Action::Continue,
            "headers go on; the body is held until complete"
        );
        stream.send_request_body(body.as_bytes(), true);
        let upstream: Value = serde_json::from_slice(&stream.upstream_request_body()).unwrap();
        for message in upstream["messages"].as_array().unwrap() {
            out.push(message["content"].as_str().unwrap().to_string());
        }
    }
    out
}

#[derive(Default, Clone, Copy)]
struct Tally {
    hit: u64,
    total: u64,
}

impl Tally {
    fn rate(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.hit as f64 / self.total as f64
        }
    }
}

/// Scores one set: recall per entity (and per locale for the generated set) and negatives.
fn score(cases: &[Case], masked: &[String], presidio_set: bool) -> (BTreeMap<String, Tally>, Vec<String>) {
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut misses = Vec::new();
    for (case, out) in cases.iter().zip(masked) {
        match &case.entity {
            Some(entity) if !case.values.is_empty() => {
                let placeholder = format!("[{entity}]");
                let placeholders = out.matches(&placeholder).count();
                for (i, value) in case.values.iter().enumerate() {
                    let found = !out.contains(value.as_str()) && placeholders > i;
                    for key in [entity.clone(), format!("{entity}/{}", case.locale)] {
                        let tally = tallies.entry(key).or_default();
                        tally.total += 1;
                        tally.hit += u64::from(found);
                    }
                    if !found {
                        misses.push(format!("{entity} {}: {:?} -> {:?}", case.locale, case.text, out));
                    }
                }
            }
            _ => {
                let false_positive = if presidio_set {
                    case.entity.as_ref().is_some_and(|e| out.contains(&format!("[{e}]")))
                } else {
                    *out != case.text
                };
                let tally = tallies.entry("NEGATIVE".into()).or_default();
                tally.total += 1;
                tally.hit += u64::from(false_positive);
                if false_positive {
                    misses.push(format!("false positive: {:?} -> {:?}", case.text, out));
                }
            }
        }
    }
    (tallies, misses)
}

fn presidio_figure(figures: &Value, set: &str, entity: &str) -> String {
    let f = &figures[set][entity];
    match (f["hit"].as_u64(), f["total"].as_u64()) {
        (Some(hit), Some(total)) if total > 0 => format!("{:.3} ({hit}/{total})", hit as f64 / total as f64),
        _ => "–".into(),
    }
}

#[test]
fn recall_and_false_positives_meet_the_targets() {
    let harness = Harness::new();
    let vm = harness.vm(wasm_path("pii-mask")).config("{}").vm_id("pii-mask").start();
    assert!(vm.configured(), "{:?}", vm.logs());
    let figures: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/tests/eval/presidio_figures.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    let mut results = BTreeMap::new();
    for (set, file) in [("presidio", "presidio_cases.jsonl"), ("generated", "generated.jsonl")] {
        let cases = load(file);
        let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
        let masked = mask_all(&vm, &texts);
        assert_eq!(masked.len(), cases.len());
        let (tallies, misses) = score(&cases, &masked, set == "presidio");
        if std::env::var_os("PII_EVAL_MISSES").is_some() {
            for miss in &misses {
                println!("{set}: {miss}");
            }
        }
        results.insert(set, tallies);
    }
    println!("| set | entity | pii-mask recall | Presidio recall (threshold 0) |");
    println!("|---|---|---|---|");
    for set in ["presidio", "generated"] {
        for entity in ENTITIES {
            let tally = results[set].get(entity).copied().unwrap_or_default();
            println!(
                "| {set} | {entity} | {:.3} ({}/{}) | {} |",
                tally.rate(),
                tally.hit,
                tally.total,
                presidio_figure(&figures, set, entity)
            );
        }
        let negatives = results[set].get("NEGATIVE").copied().unwrap_or_default();
        println!(
            "| {set} | false positives on negatives | {:.4} ({}/{}) | {} |",
            negatives.rate(),
            negatives.hit,
            negatives.total,
            presidio_figure(&figures, set, "NEGATIVE")
        );
    }
    println!("\nPhone recall per locale (generated):");
    for (key, tally) in &results["generated"] {
        if let Some(locale) = key.strip_prefix("PHONE_NUMBER/") {
            println!("  {locale}: {:.3} ({}/{})", tally.rate(), tally.hit, tally.total);
        }
    }
    let generated = &results["generated"];
    let mut failures = Vec::new();
    for (entity, target) in TARGETS {
        let recall = generated.get(entity).copied().unwrap_or_default().rate();
        if recall < target {
            failures.push(format!("{entity} recall {recall:.3} < {target}"));
        }
    }
    for set in ["presidio", "generated"] {
        let fp = results[set].get("NEGATIVE").copied().unwrap_or_default().rate();
        if fp > MAX_FALSE_POSITIVE_RATE {
            failures.push(format!("{set} false-positive rate {fp:.4} > {MAX_FALSE_POSITIVE_RATE}"));
        }
    }
    assert!(failures.is_empty(), "below target: {failures:?}");
}
