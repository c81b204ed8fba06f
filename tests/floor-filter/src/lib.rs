//! The benchmark's floor probe (issue #19): a proxy-wasm filter that does only
//! what any body-reading filter must, so `just bench` can report the aigw
//! filters' CPU per request as a ratio to this floor.
//!
//! Configuration `{"mode": "..."}`:
//!
//! | mode     | request and response                                                       |
//! |----------|----------------------------------------------------------------------------|
//! | `noop`   | every callback returns Continue (the cost of the VM and its callbacks)     |
//! | `buffer` | holds each body until its end (as the aigw gate does), then forwards it     |
//! | `parse`  | `buffer`, then reads the body, parses it with serde_json and writes it back re-serialised (what a filter that edits JSON at least does) |
//!
//! Headers always continue (the aigw filters never pause headers; see
//! `shared/src/gate.rs`); in `parse` mode `content-length` is removed at the
//! headers, as the aigw gate does, since the re-serialised body may differ in
//! length (Envoy's `buffer` filter after the chain sets it again).

pub mod mode;

#[cfg(target_arch = "wasm32")]
mod glue;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
    proxy_wasm::set_root_context(|_| glue::new_root());
}}
