//! Code shared by the four aigw filters.
//!
//! Everything here is pure Rust that runs natively in unit tests, except the
//! proxy-wasm side of the seams: [`host::ProxyWasmHost`] and [`glue`] (the
//! filter skeleton that turns the pure modules' decisions into host calls).

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
