//! Code shared by the five aigw filters and the one-pass build (filters/aigw).
//!
//! Everything here is pure Rust that runs natively in unit tests, except the
//! proxy-wasm side of the seams: [`host::ProxyWasmHost`], [`glue`] (the
//! filter skeleton that turns the pure modules' decisions into host calls) and
//! [`compose`] (what changes when a filter runs as a stage of the one-pass build).

pub mod api;
pub mod attributes;
pub mod body;
pub mod compose;
pub mod config;
pub mod contract;
pub mod counter;
pub mod error;
pub mod gate;
pub mod glue;
pub mod host;
pub mod outcome;
pub mod ratelimit_proto;
pub mod sse;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{ApiError, ErrorDialect};
