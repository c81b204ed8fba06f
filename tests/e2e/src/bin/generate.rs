//! `aigw-generate`: regenerates the files derived from envoy-config/gateway.yaml: envoy-config/bare.yaml
//! (the same Envoy without the Wasm filters), envoy-config/k8s/ (Istio WasmPlugins and the Envoy
//! Gateway EnvoyExtensionPolicy carrying the filters' configurations), envoy-config/observability/k8s/
//! (tracing for both targets, from envoy-config/observability/tracing.yaml), and the controller renders
//! envoy-config/gateway-istio.yaml and gateway-envoy-gateway.yaml (gateway.yaml as Istio and Envoy
//! Gateway run it: tests/e2e/src/controllers.rs).
//! `--check` only reports stale files (exit 1).

use aigw_e2e::{controllers, k8s, repo_root, tracing_k8s};
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().nth(1).as_deref() == Some("--check");
    let root = repo_root();
    let files = std::fs::read_to_string(root.join("envoy-config/gateway.yaml"))
        .map_err(|e| format!("envoy-config/gateway.yaml: {e}"))
        .and_then(|yaml| {
            let mut files = k8s::generate(&yaml)?;
            files.extend(controllers::generate(&yaml)?);
            let tracing = std::fs::read_to_string(root.join("envoy-config/observability/tracing.yaml"))
                .map_err(|e| format!("envoy-config/observability/tracing.yaml: {e}"))?;
            files.extend(tracing_k8s::manifests(&tracing)?);
            Ok(files)
        });
    let files = match files {
        Ok(files) => files,
        Err(message) => {
            eprintln!("aigw-generate: {message}");
            return ExitCode::from(2);
        }
    };
    let mut stale = 0;
    for (path, content) in files {
        let full = root.join(&path);
        if std::fs::read_to_string(&full).ok().as_deref() == Some(content.as_str()) {
            continue;
        }
        stale += 1;
        if check {
            eprintln!("stale: {}", path.display());
            continue;
        }
        let written =
            full.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&full, content));
        match written {
            Ok(()) => println!("wrote {}", path.display()),
            Err(err) => {
                eprintln!("aigw-generate: {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if check && stale > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
