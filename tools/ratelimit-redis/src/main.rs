//! `ratelimit-redis --listen 127.0.0.1:8081 --redis 127.0.0.1:6379`
//!
//! Prints `listening on <address>` once it accepts connections (with port 0,
//! the port it got).

use ratelimit_redis::counting::Limiter;
use std::sync::Arc;

fn main() {
    let mut listen = "127.0.0.1:8081".to_string();
    let mut redis = "127.0.0.1:6379".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => listen = value,
            ("--redis", Some(value)) => redis = value,
            _ => {
                eprintln!("usage: ratelimit-redis [--listen ADDRESS] [--redis HOST:PORT]");
                std::process::exit(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ratelimit-redis: {err}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("ratelimit-redis: cannot listen on {listen}: {err}");
                std::process::exit(1);
            }
        };
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
        println!("listening on {address}");
        eprintln!("ratelimit-redis: serving ShouldRateLimit on {address}, counting in Redis at {redis}");
        let server = tokio::spawn(ratelimit_redis::server::serve(listener, Arc::new(Limiter::new(redis))));
        tokio::select! {
            _ = server => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}
