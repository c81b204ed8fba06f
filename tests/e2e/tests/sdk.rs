//! The real OpenAI and Anthropic Python SDKs against a real Envoy running gateway.yaml: the demo keys
//! in every header form, a wrong key (AuthenticationError), a model outside a key's list
//! (PermissionDeniedError), a JWT as the API key. The SDKs live in the project venv (`just sdk-tools`);
//! the calls are made by tests/e2e/sdk/sdk_check.py.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test helpers outside #[test] fns

use aigw_e2e::{jwt, repo_root, Gateway, DEMO_KEYS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn the_openai_and_anthropic_sdks_use_keys_and_jwts() {
    let python = repo_root().join(".tools/bin/python");
    let probe = Command::new(&python).args(["-c", "import openai, anthropic"]).output();
    assert!(
        probe.as_ref().is_ok_and(|out| out.status.success()),
        "the SDKs are not installed in .tools: run `just sdk-tools` ({probe:?})"
    );
    let gw = Gateway::start();
    let token = jwt::demo_token(json!({"sub": "sdk-user"}));
    let output = Command::new(&python)
        .arg(repo_root().join("tests/e2e/sdk/sdk_check.py"))
        .args([gw.url().as_str(), DEMO_KEYS[0].0, DEMO_KEYS[1].0, token.as_str()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let cases: BTreeMap<String, Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|case| (case["case"].as_str().unwrap().to_string(), case))
        .collect();
    for name in ["openai-bearer", "openai-x-api-key", "openai-api-key", "openai-jwt", "anthropic-key"] {
        assert_eq!(cases[name]["ok"], true, "{name}: {stdout}");
        assert_eq!(cases[name]["content"], "hi", "{name}: {stdout}");
    }
    assert_eq!(
        cases["openai-wrong-key"],
        json!({"case": "openai-wrong-key", "ok": true, "status": 401, "code": "invalid_api_key"})
    );
    assert_eq!(
        cases["openai-model-not-allowed"],
        json!({"case": "openai-model-not-allowed", "ok": true, "status": 403, "code": "model_not_allowed"})
    );
    assert_eq!(
        cases["anthropic-wrong-key"],
        json!({"case": "anthropic-wrong-key", "ok": true, "status": 401, "error_type": "authentication_error"})
    );
}

/// The root README's quick-start Python snippet, as written, against a gateway (its port swapped in).
#[test]
fn the_readme_quick_start_snippet_works() {
    let python = repo_root().join(".tools/bin/python");
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (_, after) = readme.split_once("<!-- quickstart:python").expect("README has the quick-start marker");
    let (_, code) = after.split_once("```python\n").unwrap();
    let (code, _) = code.split_once("```").unwrap();
    assert!(code.contains("http://127.0.0.1:10000/v1"), "{code}");
    let readme_key = readme.split("export OPENAI_API_KEY=").nth(1).and_then(|rest| rest.split_whitespace().next());
    assert_eq!(readme_key, Some(DEMO_KEYS[0].0));

    let gw = Gateway::start();
    let code = code.replace("http://127.0.0.1:10000", &gw.url());
    let output = Command::new(&python)
        .args(["-c", &code])
        .env("OPENAI_API_KEY", DEMO_KEYS[0].0)
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Hello, my email is"), "{stdout}");
    // The provider never saw the address.
    let sent = gw.upstream_requests();
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].body.contains("jane@example.com"), "{}", sent[0].body);
}
