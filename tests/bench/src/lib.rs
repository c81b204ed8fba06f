//! `just bench`: the aigw filter chain against the same Envoy without it.
//! See BENCHMARKS.md at the repository root for the method and the results.

pub mod fleet;
pub mod http;
pub mod load;
pub mod native;
pub mod procfs;
pub mod report;
pub mod run;
pub mod stats;
pub mod workload;
