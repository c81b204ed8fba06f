//! Host-call counting: every import the filter calls (proxy-wasm `env` and WASI) goes
//! through a counting wrapper, so tests can assert how many calls a request costs.
//!
//! Each call into the host crosses the Wasm boundary (in Envoy: a V8 → C++ transition,
//! argument checks and often a copy through the guest's allocator), so the number of
//! calls per request is a deterministic proxy for the per-request overhead that timings
//! on a shared machine cannot show reliably.

use crate::state::HostState;
use std::collections::BTreeMap;
use wasmtime::{Extern, Func, Instance, Linker, Module, Store, Val};

/// Where a call came from and what it asked for: the export that was running, the import
/// called, and (for header-map and buffer calls) which map or buffer it named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct CallSite {
    pub callback: &'static str,
    pub import: usize,
    pub target: Option<i32>,
}

/// One kind of host call and how many times it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCallCount {
    /// The filter export that was running (`proxy_on_request_body`, ...).
    pub callback: &'static str,
    /// The import the filter called (`proxy_get_buffer_bytes`, `clock_time_get`, ...).
    pub function: String,
    /// The header map or buffer a map/buffer call named (`request_headers`, `response_body`, ...).
    pub target: Option<&'static str>,
    pub count: u64,
}

impl HostCallCount {
    /// The report's column for this call (see [`category`]).
    pub fn category(&self) -> &'static str {
        category(&self.function)
    }
}

/// The host calls a VM made since it started (or since [`crate::Vm::reset_host_calls`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCalls {
    pub counts: Vec<HostCallCount>,
}

impl HostCalls {
    /// All calls.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.count).sum()
    }

    /// Calls per report category ([`CATEGORIES`] order), zeros included.
    pub fn by_category(&self) -> Vec<(&'static str, u64)> {
        CATEGORIES
            .iter()
            .map(|name| (*name, self.counts.iter().filter(|c| c.category() == *name).map(|c| c.count).sum()))
            .collect()
    }

    /// Calls of one import (all callbacks and targets).
    pub fn of(&self, function: &str) -> u64 {
        self.counts.iter().filter(|c| c.function == function).map(|c| c.count).sum()
    }

    /// Calls made while `callback` ran.
    pub fn during(&self, callback: &str) -> u64 {
        self.counts.iter().filter(|c| c.callback == callback).map(|c| c.count).sum()
    }

    /// One line per call site, for a failure message or a report.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for c in &self.counts {
            let target = c.target.map(|t| format!("({t})")).unwrap_or_default();
            out.push_str(&format!("{:>5}  {:<28} {}{}\n", c.count, c.callback, c.function, target));
        }
        out
    }
}

/// The report's categories, in column order.
pub const CATEGORIES: [&str; 13] = [
    "header get",
    "header set",
    "buffer get",
    "buffer set",
    "property get",
    "property set",
    "metric define",
    "metric update",
    "shared get",
    "shared set",
    "log",
    "clock",
    "other",
];

/// The report category of an import.
pub fn category(function: &str) -> &'static str {
    match function {
        "proxy_get_header_map_pairs" | "proxy_get_header_map_value" => "header get",
        "proxy_set_header_map_pairs"
        | "proxy_replace_header_map_value"
        | "proxy_add_header_map_value"
        | "proxy_remove_header_map_value" => "header set",
        "proxy_get_buffer_bytes" => "buffer get",
        "proxy_set_buffer_bytes" => "buffer set",
        "proxy_get_property" => "property get",
        "proxy_set_property" => "property set",
        "proxy_define_metric" => "metric define",
        "proxy_increment_metric" | "proxy_record_metric" | "proxy_get_metric" => "metric update",
        "proxy_get_shared_data" => "shared get",
        "proxy_set_shared_data" => "shared set",
        "proxy_log" | "proxy_get_log_level" | "fd_write" => "log",
        "proxy_get_current_time_nanoseconds" | "clock_time_get" | "clock_res_get" => "clock",
        _ => "other",
    }
}

fn map_name(raw: i32) -> &'static str {
    match raw {
        0 => "request_headers",
        1 => "request_trailers",
        2 => "response_headers",
        3 => "response_trailers",
        4 => "grpc_initial_metadata",
        5 => "grpc_trailing_metadata",
        6 => "call_response_headers",
        7 => "call_response_trailers",
        _ => "unknown_map",
    }
}

fn buffer_name(raw: i32) -> &'static str {
    match raw {
        0 => "request_body",
        1 => "response_body",
        2 => "downstream_data",
        3 => "upstream_data",
        4 => "call_response_body",
        5 => "grpc_message",
        6 => "vm_configuration",
        7 => "plugin_configuration",
        _ => "unknown_buffer",
    }
}

/// What the first argument of an import names, if it names a map or a buffer.
#[derive(Clone, Copy)]
enum TargetArg {
    None,
    Map,
    Buffer,
}

fn target_arg(function: &str) -> TargetArg {
    if function.contains("header_map") {
        TargetArg::Map
    } else if function.contains("buffer_bytes") {
        TargetArg::Buffer
    } else {
        TargetArg::None
    }
}

impl HostState {
    fn record_host_call(&mut self, import: usize, target: Option<i32>) {
        let site = CallSite { callback: self.callback, import, target };
        *self.host_calls.entry(site).or_insert(0) += 1;
    }

    pub(crate) fn host_call_snapshot(&self) -> HostCalls {
        let mut counts: Vec<HostCallCount> = self
            .host_calls
            .iter()
            .map(|(site, count)| {
                let function = self.import_names.get(site.import).cloned().unwrap_or_default();
                let target = site.target.map(|raw| match target_arg(&function) {
                    TargetArg::Map => map_name(raw),
                    TargetArg::Buffer => buffer_name(raw),
                    TargetArg::None => "",
                });
                HostCallCount { callback: site.callback, function, target, count: *count }
            })
            .collect();
        counts.sort_by(|a, b| (a.callback, &a.function, a.target).cmp(&(b.callback, &b.function, b.target)));
        HostCalls { counts }
    }
}

/// Instantiates `module` with every import wrapped: the wrapper records the call (the export
/// running, the import, the map or buffer it names), then runs the real host function.
pub(crate) fn instantiate_counted(
    linker: &Linker<HostState>,
    store: &mut Store<HostState>,
    module: &Module,
) -> wasmtime::Result<Instance> {
    let mut externs = Vec::new();
    for import in module.imports() {
        let Some(definition) = linker.get_by_import(&mut *store, &import) else {
            return Err(wasmtime::Error::msg(format!("no host definition for {}::{}", import.module(), import.name())));
        };
        let Extern::Func(inner) = definition else {
            externs.push(definition);
            continue;
        };
        let ty = inner.ty(&*store);
        let kind = target_arg(import.name());
        let index = {
            let names: &mut Vec<String> = &mut store.data_mut().import_names;
            names.push(import.name().to_string());
            names.len() - 1
        };
        let wrapped = Func::new(&mut *store, ty, move |mut caller, params, results| {
            let target = match kind {
                TargetArg::None => None,
                TargetArg::Map | TargetArg::Buffer => params.first().and_then(Val::i32),
            };
            caller.data_mut().record_host_call(index, target);
            inner.call(&mut caller, params, results)
        });
        externs.push(Extern::Func(wrapped));
    }
    Instance::new(&mut *store, module, &externs)
}

/// Counts per category, as a map (for JSON reports).
pub fn category_map(calls: &HostCalls) -> BTreeMap<&'static str, u64> {
    calls.by_category().into_iter().filter(|(_, n)| *n > 0).collect()
}
