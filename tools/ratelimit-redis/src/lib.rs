//! Envoy's rate limit service API (`ShouldRateLimit`, gRPC over HTTP/2) on
//! Redis. The counting engine is Redis: every call is one atomic Lua script
//! ([`counting::SCRIPT`]). This crate is protocol glue: HTTP/2 and gRPC
//! framing ([`server`]), the messages (`aigw_shared::ratelimit_proto`, the
//! same code token-counter sends them with) and a small RESP client ([`resp`]).

pub mod counting;
pub mod resp;
pub mod server;
