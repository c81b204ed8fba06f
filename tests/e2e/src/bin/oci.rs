//! `aigw-oci [registry]` (`just oci`): an OCI image layout per filter and for the one-pass build
//! (`dist/oci/aigw/`), `dist/oci/<filter>/` (oci-layout,
//! index.json tagged with the workspace version, blobs/sha256/...), from `dist/<filter>.wasm`, in the format
//! Istio's and Envoy Gateway's Wasm fetchers accept (src/oci.rs); then the Kubernetes manifests with
//! `registry` (default registry.example.com/aigw) and every image pinned to its manifest digest, into
//! `dist/k8s/` (the committed envoy-config/k8s/ carries the tag only: digests change with every build).

use aigw_e2e::config::FILTERS;
use aigw_e2e::{k8s, oci, repo_root};
use std::process::ExitCode;

fn run() -> Result<(), String> {
    let root = repo_root();
    let mut images = k8s::Images::default();
    if let Some(registry) = std::env::args().nth(1).filter(|r| !r.is_empty()) {
        images.registry = registry.trim_end_matches('/').to_string();
    }
    for filter in FILTERS {
        let wasm_path = root.join("dist").join(format!("{filter}.wasm"));
        let wasm = std::fs::read(&wasm_path).map_err(|e| format!("{}: {e} (run `just build`)", wasm_path.display()))?;
        let dir = root.join("dist/oci").join(filter);
        let built = oci::write_layout(&dir, &wasm, filter, &images.tag)?;
        println!("dist/oci/{filter}  manifest {}  index {}", built.manifest_digest, built.index_digest);
        images.digests.insert(filter.to_string(), built.hex().to_string());
        images.index_digests.insert(filter.to_string(), built.index_hex().to_string());
    }
    // The one-pass build (filters/aigw) in the same format; the shipped manifests load the five modules.
    let wasm_path = root.join("dist/aigw.wasm");
    let wasm = std::fs::read(&wasm_path).map_err(|e| format!("{}: {e} (run `just build`)", wasm_path.display()))?;
    let built = oci::write_layout(&root.join("dist/oci/aigw"), &wasm, "aigw", &images.tag)?;
    println!("dist/oci/aigw  manifest {}  index {}", built.manifest_digest, built.index_digest);
    let gateway = std::fs::read_to_string(root.join("envoy-config/gateway.yaml")).map_err(|e| e.to_string())?;
    let out = root.join("dist/k8s");
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    for (path, content) in k8s::manifests(&gateway, &images)? {
        let relative = path.strip_prefix("envoy-config/k8s").unwrap_or(&path);
        let target = out.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&target, content).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    println!("dist/k8s/: the manifests with images in {} pinned to these digests", images.registry);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("aigw-oci: {message}");
            ExitCode::FAILURE
        }
    }
}
