//! Code shared by the four aigw filters.
//!
//! Everything here is pure Rust that runs natively in unit tests; the only
//! proxy-wasm dependency is [`host::ProxyWasmHost`], the real side of the
//! host seam.

pub mod api;
pub mod attributes;
pub mod body;
pub mod config;
pub mod counter;
pub mod error;
pub mod host;
pub mod sse;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::ApiError;
