//! Every manifest in envoy-config/k8s/ against the real CRD schemas of the releases the k8s README names
//! (Istio 1.22–1.30, Envoy Gateway 1.1–1.9 with the Gateway API CRDs it installs), kept as test data in
//! tests/e2e/testdata/crds/ (extract.py: source repository, path and release tags per entry).
//!
//! The validator is the subset of OpenAPI v3 that Kubernetes structural schemas use, applied as a strict
//! API server (`kubectl apply --validate=strict`) does: types (with int-or-string and nullable), required,
//! enum, pattern, length/size/number bounds, oneOf/anyOf/allOf, and unknown fields rejected unless the
//! schema has `x-kubernetes-preserve-unknown-fields` or `additionalProperties`. CEL rules
//! (`x-kubernetes-validations`) are not evaluated. The README's version table must agree with the result.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::{k8s, repo_root};
use serde_json::Value;
use std::collections::BTreeMap;

struct Validator {
    errors: Vec<String>,
    /// Inside oneOf/anyOf/allOf branches only constraints apply, not the unknown-field check.
    in_branch: bool,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Validator {
    fn check(&mut self, path: &str, value: &Value, schema: &Value) {
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        let actual = type_name(value);
        if schema["x-kubernetes-int-or-string"] == true {
            if actual != "integer" && actual != "string" {
                self.errors.push(format!("{path}: {actual}, expected integer or string"));
            }
        } else if let Some(expected) = schema["type"].as_str() {
            let ok = expected == actual || (expected == "number" && actual == "integer");
            if !ok {
                self.errors.push(format!("{path}: {actual}, expected {expected}"));
                return;
            }
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                self.errors.push(format!("{path}: {value} is not one of {}", Value::Array(allowed.clone())));
            }
        }
        self.bounds(path, value, schema);
        for combinator in ["allOf", "anyOf", "oneOf"] {
            if let Some(branches) = schema[combinator].as_array() {
                let passing = branches.iter().filter(|branch| self.passes(path, value, branch)).count();
                let ok = match combinator {
                    "allOf" => passing == branches.len(),
                    "anyOf" => passing >= 1,
                    _ => passing == 1,
                };
                if !ok {
                    self.errors.push(format!("{path}: {passing} of the {combinator} branches match"));
                }
            }
        }
        if let Some(negated) = schema.get("not") {
            if self.passes(path, value, negated) {
                self.errors.push(format!("{path}: matches a `not` schema"));
            }
        }
        match value {
            Value::Object(map) => self.object(path, map, schema),
            Value::Array(items) if schema.get("items").is_some() => {
                for (i, item) in items.iter().enumerate() {
                    self.check(&format!("{path}[{i}]"), item, &schema["items"]);
                }
            }
            _ => {}
        }
    }

    fn passes(&self, path: &str, value: &Value, branch: &Value) -> bool {
        let mut inner = Validator { errors: Vec::new(), in_branch: true };
        inner.check(path, value, branch);
        inner.errors.is_empty()
    }

    fn object(&mut self, path: &str, map: &serde_json::Map<String, Value>, schema: &Value) {
        if let Some(required) = schema["required"].as_array() {
            for name in required.iter().filter_map(|n| n.as_str()) {
                if !map.contains_key(name) {
                    self.errors.push(format!("{path}: required field {name} is missing"));
                }
            }
        }
        let properties = schema["properties"].as_object();
        let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
        for (name, value) in map {
            let child = format!("{path}.{name}");
            if let Some(sub) = properties.and_then(|p| p.get(name)) {
                self.check(&child, value, sub);
            } else if let Some(additional) = schema.get("additionalProperties") {
                if additional.is_object() {
                    self.check(&child, value, additional);
                } else if additional == false && !self.in_branch {
                    self.errors.push(format!("{child}: unknown field"));
                }
            } else if !preserve && !self.in_branch && (properties.is_some() || schema["type"] == "object") {
                self.errors.push(format!("{child}: unknown field"));
            }
        }
    }

    fn bounds(&mut self, path: &str, value: &Value, schema: &Value) {
        let limit = |key: &str| schema[key].as_f64();
        let mut over = |what: &str, ok: bool| {
            if !ok {
                self.errors.push(format!("{path}: violates {what} ({value})"));
            }
        };
        let length = match value {
            Value::String(s) => Some(s.chars().count() as f64),
            _ => None,
        };
        if let (Some(n), Some(max)) = (length, limit("maxLength")) {
            over("maxLength", n <= max);
        }
        if let (Some(n), Some(min)) = (length, limit("minLength")) {
            over("minLength", n >= min);
        }
        if let Value::Array(items) = value {
            if let Some(max) = limit("maxItems") {
                over("maxItems", items.len() as f64 <= max);
            }
            if let Some(min) = limit("minItems") {
                over("minItems", items.len() as f64 >= min);
            }
        }
        if let Value::Object(map) = value {
            if let Some(max) = limit("maxProperties") {
                over("maxProperties", map.len() as f64 <= max);
            }
            if let Some(min) = limit("minProperties") {
                over("minProperties", map.len() as f64 >= min);
            }
        }
        if let Some(n) = value.as_f64() {
            if let Some(max) = limit("maximum") {
                over("maximum", n <= max);
            }
            if let Some(min) = limit("minimum") {
                over("minimum", n >= min);
            }
        }
        if let (Value::String(s), Some(pattern)) = (value, schema["pattern"].as_str()) {
            // Kubernetes patterns are RE2 (unanchored, like Rust's regex).
            match regex::Regex::new(pattern) {
                Ok(re) => over(&format!("pattern {pattern}"), re.is_match(s)),
                Err(err) => self.errors.push(format!("{path}: pattern {pattern} does not compile here: {err}")),
            }
        }
    }
}

/// The test data of one project: (kind, apiVersion) -> [(releases, entry)].
struct Project {
    name: &'static str,
    groups: &'static [&'static str],
    releases: Vec<String>,
    schemas: Vec<Value>,
}

fn project(name: &'static str, groups: &'static [&'static str]) -> Project {
    let path = repo_root().join(format!("tests/e2e/testdata/crds/{name}.json"));
    let data: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let releases = data["releases"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    Project { name, groups, releases, schemas: data["schemas"].as_array().unwrap().clone() }
}

/// Every manifest document (as JSON) with its file.
fn manifests() -> Vec<(String, Value)> {
    k8s::read_manifests(&repo_root().join("envoy-config/k8s"))
        .unwrap()
        .into_iter()
        .map(|(path, doc)| {
            let where_ = path.strip_prefix(repo_root()).unwrap_or(&path).display().to_string();
            (where_, serde_json::to_value(doc).unwrap())
        })
        .collect()
}

/// Validation errors of every manifest of this project's groups against one release's schemas.
fn errors_for(project: &Project, release: &str) -> Vec<String> {
    errors_for_docs(project, release, manifests())
}

fn errors_for_docs(project: &Project, release: &str, docs: Vec<(String, Value)>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut checked = 0;
    for (file, doc) in docs {
        let api_version = doc["apiVersion"].as_str().unwrap_or("");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if !project.groups.contains(&group) {
            continue;
        }
        checked += 1;
        let kind = doc["kind"].as_str().unwrap_or("");
        let name = format!("{file} {kind}/{}", doc["metadata"]["name"].as_str().unwrap_or("?"));
        let entry = project.schemas.iter().find(|e| {
            e["group"] == group
                && e["kind"] == kind
                && e["version"] == version
                && e["releases"].as_array().unwrap().iter().any(|r| r == release)
        });
        let Some(entry) = entry else {
            errors.push(format!("{name}: no schema data for {release} (re-run extract.py)"));
            continue;
        };
        if entry["served"] != true || entry["schema"].is_null() {
            errors.push(format!("{name}: {api_version} {kind} is not served by {release}"));
            continue;
        }
        // ObjectMeta is validated by the API server itself: only the fields the manifests use.
        for key in doc["metadata"].as_object().unwrap().keys() {
            if !["name", "namespace", "labels", "annotations"].contains(&key.as_str()) {
                errors.push(format!("{name}: metadata.{key} is not expected"));
            }
        }
        let mut spec_only = entry["schema"].clone();
        spec_only["properties"].as_object_mut().unwrap().remove("metadata");
        // apiVersion and kind were checked above (served version); metadata just before.
        let mut body = doc.clone();
        for key in ["apiVersion", "kind", "metadata"] {
            body.as_object_mut().unwrap().remove(key);
        }
        let mut validator = Validator { errors: Vec::new(), in_branch: false };
        validator.check(&name, &body, &spec_only);
        errors.extend(validator.errors);
    }
    assert!(checked > 0, "{}: no manifest checked", project.name);
    errors
}

fn projects() -> Vec<Project> {
    vec![
        project("istio", &["networking.istio.io", "security.istio.io", "extensions.istio.io"]),
        project("envoy-gateway", &["gateway.envoyproxy.io", "gateway.networking.k8s.io"]),
    ]
}

/// `1.22.8` / `v1.22.8` -> `1.22`.
fn minor(release: &str) -> String {
    let release = release.trim_start_matches('v');
    release.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The README's version table: ("Istio 1.27", "yes"/"no").
fn readme_table() -> BTreeMap<String, bool> {
    let readme = std::fs::read_to_string(repo_root().join("envoy-config/k8s/README.md")).unwrap();
    let mut rows = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 4 && (cells[1].starts_with("Istio 1.") || cells[1].starts_with("Envoy Gateway 1.")) {
            let accepted = cells[2].starts_with("yes");
            assert!(accepted || cells[2].starts_with("no"), "README row {line}: say yes or no");
            rows.insert(cells[1].to_string(), accepted);
        }
    }
    rows
}

#[test]
fn manifests_validate_against_the_crd_schemas_as_the_readme_says() {
    let table = readme_table();
    let mut report = Vec::new();
    for project in projects() {
        let label = if project.name == "istio" { "Istio" } else { "Envoy Gateway" };
        for release in &project.releases {
            let errors = errors_for(&project, release);
            let row = format!("{label} {}", minor(release));
            eprintln!("{row} ({release}): {}", if errors.is_empty() { "valid".to_string() } else { errors.join("; ") });
            match table.get(&row) {
                None => report.push(format!("README has no row for {row}")),
                Some(true) if !errors.is_empty() => {
                    report.push(format!("README says {row} accepts the manifests, but: {}", errors.join("; ")))
                }
                Some(false) if errors.is_empty() => {
                    report.push(format!("README says {row} rejects them, but all validate"))
                }
                _ => {}
            }
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn the_validator_rejects_what_a_strict_api_server_rejects() {
    // The newest releases' schemas reject an unknown field, a wrong type and a bad enum value.
    let istio = project("istio", &["extensions.istio.io"]);
    let newest = istio.releases.last().unwrap().clone();
    let entry = istio
        .schemas
        .iter()
        .find(|e| e["kind"] == "WasmPlugin" && e["releases"].as_array().unwrap().iter().any(|r| *r == newest.as_str()))
        .unwrap();
    let (_, good) = manifests().into_iter().find(|(_, d)| d["kind"] == "WasmPlugin").unwrap();
    let mut good = good;
    for key in ["apiVersion", "kind", "metadata"] {
        good.as_object_mut().unwrap().remove(key);
    }
    let mut schema = entry["schema"].clone();
    schema["properties"].as_object_mut().unwrap().remove("metadata");
    let run = |doc: &Value| {
        let mut v = Validator { errors: Vec::new(), in_branch: false };
        v.check("doc", doc, &schema);
        v.errors
    };
    assert_eq!(run(&good), Vec::<String>::new());
    let mut unknown = good.clone();
    unknown["spec"]["allowOnHeadersStopIteration"] = Value::Bool(true);
    assert!(run(&unknown).iter().any(|e| e.contains("unknown field")), "{:?}", run(&unknown));
    let mut wrong_type = good.clone();
    wrong_type["spec"]["priority"] = Value::String("high".into());
    assert!(!run(&wrong_type).is_empty());
    let mut bad_enum = good.clone();
    bad_enum["spec"]["failStrategy"] = Value::String("FAIL_SOMETIMES".into());
    assert!(run(&bad_enum).iter().any(|e| e.contains("is not one of")), "{:?}", run(&bad_enum));
    // pluginConfig is free-form (x-kubernetes-preserve-unknown-fields): any filter config passes.
    let mut free = good.clone();
    free["spec"]["pluginConfig"]["anything"] = Value::Bool(true);
    assert_eq!(run(&free), Vec::<String>::new());
}

#[test]
fn istio_before_1_27_accepts_them_with_fail_close() {
    // The README's advice for Istio 1.22–1.26, where FAIL_RELOAD does not exist yet.
    let istio = &projects()[0];
    let docs: Vec<(String, Value)> = manifests()
        .into_iter()
        .map(|(file, mut doc)| {
            if doc["kind"] == "WasmPlugin" {
                doc["spec"]["failStrategy"] = Value::String("FAIL_CLOSE".into());
            }
            (file, doc)
        })
        .collect();
    for release in istio.releases.iter().filter(|r| minor(r).as_str() < "1.27") {
        let errors = errors_for_docs(istio, release, docs.clone());
        assert!(errors.is_empty(), "Istio {release} with FAIL_CLOSE: {}", errors.join("; "));
    }
}
