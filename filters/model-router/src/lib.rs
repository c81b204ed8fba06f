//! model-router: proxy-wasm glue.
//!
//! One binary, two roles chosen by the plugin configuration's `mode`:
//! [`downstream::DownstreamFilter`] in the listener's chain picks the route,
//! [`upstream::UpstreamFilter`] on each provider cluster adapts every attempt
//! to its backend. The logic lives in the pure modules below.

pub mod access;
pub mod config;
pub mod plan;
pub mod provider;
mod respond;
pub mod route;
pub mod translate;

mod downstream;
mod upstream;

use aigw_shared::host::log;
use config::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

// The Wasm entry point (`_initialize`). Only built for Wasm: natively the
// crate is a library whose logic the tests call directly.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| new_root());
}}

/// A new root context: one per VM and plugin configuration.
pub fn new_root() -> Box<dyn RootContext> {
    Box::new(Root { config: None })
}

struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match config::from_json(self.get_plugin_configuration().as_deref()) {
            Ok(config) => {
                let what = match &config {
                    Config::Downstream(d) => {
                        format!(
                            "downstream, {} backends, {} exact models, {} patterns, {} rules",
                            d.backends.len(),
                            d.exact.len(),
                            d.patterns.len(),
                            d.rules.len()
                        )
                    }
                    Config::Upstream(u) => {
                        format!(
                            "upstream for {}",
                            u.backends
                                .iter()
                                .map(|b| format!("{} ({})", b.name, b.provider.as_str()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                };
                log(LogLevel::Info, &format!("model-router: configured: {what}"));
                self.config = Some(Rc::new(config));
                true
            }
            Err(err) => {
                log(LogLevel::Error, &format!("model-router: invalid configuration: {err}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.config {
            Some(config) if matches!(config.as_ref(), Config::Downstream(_)) => {
                Some(Box::new(downstream::DownstreamFilter::new(config)))
            }
            Some(config) => Some(Box::new(upstream::UpstreamFilter::new(config))),
            // Envoy refuses a plugin whose on_configure failed, so no stream
            // reaches an unconfigured root; pass it through if one ever does.
            None => Some(Box::new(Passthrough)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Passthrough;

impl Context for Passthrough {}
impl HttpContext for Passthrough {}

/// Unix time in seconds from the host clock.
fn unix_seconds(ctx: &dyn Context) -> u64 {
    ctx.get_current_time().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
