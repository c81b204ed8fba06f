//! The real OpenAI and Anthropic Python SDKs against a real Envoy running gateway.yaml: the demo keys
//! in every header form, a wrong key (AuthenticationError), a model outside a key's list
//! (PermissionDeniedError), a JWT as the API key. The SDKs live in the project venv (`just sdk-tools`);
//! the calls are made by tests/e2e/sdk/sdk_check.py.

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
