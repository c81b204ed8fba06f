//! `mock-llm`: the mock LLM provider as a process (used by `just up`).
//!
//! ```text
//! mock-llm --listen 127.0.0.1:18080 [--name primary] [--listen 127.0.0.1:18081 --name secondary]
//! ```
//! Each `--listen` starts one backend; the `--name` after it (default `mock-<port>`)
//! is echoed in `x-mock-backend` and recorded with its requests.

use mock_llm::{serve, Backend};
use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: mock-llm --listen ADDR [--name NAME] [--listen ADDR [--name NAME]]...";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Vec<(SocketAddr, Option<String>)>, String> {
    let mut backends: Vec<(SocketAddr, Option<String>)> = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or("--listen needs an address")?;
                let addr = value.parse().map_err(|_| format!("--listen: not an address: {value}"))?;
                backends.push((addr, None));
            }
            "--name" => {
                let value = args.next().ok_or("--name needs a value")?;
                match backends.last_mut() {
                    Some((_, name @ None)) => *name = Some(value),
                    _ => return Err("--name must follow its --listen".to_string()),
                }
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if backends.is_empty() {
        backends.push((SocketAddr::from(([127, 0, 0, 1], 18080)), None));
    }
    Ok(backends)
}

fn main() -> ExitCode {
    let backends = match parse_args(std::env::args().skip(1)) {
        Ok(backends) => backends,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mock-llm: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for (addr, name) in backends {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => listener,
                Err(err) => {
                    eprintln!("mock-llm: cannot listen on {addr}: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let name = name.unwrap_or_else(|| format!("mock-{}", addr.port()));
            println!("mock-llm: backend {name:?} listening on http://{addr}");
            tasks.push(tokio::spawn(serve(listener, Backend::new(&name), rx.clone())));
        }
        wait_for_signal().await;
        let _ = shutdown.send(true);
        for task in tasks {
            let _ = task.await;
        }
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(term) => { term.recv().await; } None => std::future::pending().await } } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Vec<(SocketAddr, Option<String>)>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn pairs_names_with_listeners() {
        let parsed = args(&["--listen", "127.0.0.1:1", "--name", "a", "--listen", "127.0.0.1:2"]).unwrap();
        assert_eq!(
            parsed,
            [("127.0.0.1:1".parse().unwrap(), Some("a".into())), ("127.0.0.1:2".parse().unwrap(), None)]
        );
        assert!(args(&["--name", "a"]).is_err());
        assert!(args(&["--listen", "nope"]).is_err());
        assert_eq!(args(&[]).unwrap().len(), 1);
    }
}
