//! `aigw-render-config`: renders an Envoy config from envoy-config/ for a local run.
//!
//! ```text
//! aigw-render-config --config envoy-config/gateway.yaml --out .run/gateway.yaml \
//!     [--dist DIR] [--listener-port N] [--admin-port N] [--cluster NAME=PORT]... \
//!     [--filter-config NAME=FILE]... [--without-filter NAME]... [--otlp HOST:PORT]
//! ```
//! `--otlp` turns on OpenTelemetry tracing to that OTLP/gRPC collector
//! (envoy-config/observability/tracing.yaml).
//! `--cluster openai=18082` points the `openai` cluster at a plaintext server on
//! 127.0.0.1:18082 (the mock), which is how `just up` runs without provider keys.

use aigw_e2e::config::{render, RenderOptions};
use std::path::PathBuf;
use std::process::ExitCode;

fn parse(args: &[String]) -> Result<(PathBuf, PathBuf, RenderOptions), String> {
    let mut config = None;
    let mut out = None;
    let mut options = RenderOptions::default();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        let pair = |v: String| -> Result<(String, String), String> {
            v.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("expected NAME=VALUE, got {v}"))
        };
        let port = |v: String| v.parse::<u16>().map_err(|_| format!("not a port: {v}"));
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--dist" => {
                let dir = PathBuf::from(value()?);
                options.dist_dir = Some(dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?);
            }
            "--listener-port" => options.listener_port = Some(port(value()?)?),
            "--admin-port" => options.admin_port = Some(port(value()?)?),
            "--cluster" => {
                let (name, p) = pair(value()?)?;
                options.cluster_ports.insert(name, port(p)?);
            }
            "--filter-config" => {
                let (name, file) = pair(value()?)?;
                let json = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
                options.filter_configs.insert(name, json);
            }
            "--without-filter" => options.remove_filters.push(value()?),
            "--otlp" => {
                let endpoint = value()?;
                let (host, p) =
                    endpoint.rsplit_once(':').ok_or_else(|| format!("expected HOST:PORT, got {endpoint}"))?;
                options.otlp_collector = Some((host.to_string(), port(p.to_string())?));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((config.ok_or("--config is required")?, out.ok_or("--out is required")?, options))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&args).and_then(|(config, out, options)| {
        let source = std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        let rendered = render(&source, &options)?;
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let header = format!("# Rendered from {} by aigw-render-config; do not edit.\n", config.display());
        std::fs::write(&out, header + &rendered).map_err(|e| format!("{}: {e}", out.display()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("aigw-render-config: {message}");
            ExitCode::from(2)
        }
    }
}
