//! model-router: proxy-wasm glue.
//!
//! One binary, two roles chosen by the plugin configuration's `mode`:
//! [`downstream::DownstreamFilter`] in the listener's chain picks the route,
//! [`upstream::UpstreamFilter`] on each provider cluster adapts every attempt
//! to its backend. The logic lives in the pure modules below.

pub mod access;
pub mod config;
pub mod local;
pub mod plan;
pub mod provider;
mod respond;
mod respond_responses;
pub mod route;
pub mod translate;

mod downstream;
mod upstream;

use aigw_shared::glue::Plugin;
use config::Config;
use proxy_wasm::traits::{Context, HttpContext};
use std::rc::Rc;

aigw_shared::filter_entry_point!(ModelRouter);

struct ModelRouter;

impl Plugin for ModelRouter {
    type Config = Config;
    const NAME: &'static str = "model-router";
    fn parse(bytes: Option<&[u8]>) -> Result<Config, aigw_shared::config::ConfigError> {
        config::from_json(bytes)
    }
    fn summary(config: &Config) -> String {
        match config {
            Config::Downstream(d) => format!(
                "downstream, {} backends, {} exact models, {} patterns, {} rules",
                d.backends.len(),
                d.exact.len(),
                d.patterns.len(),
                d.rules.len()
            ),
            Config::Upstream(u) => {
                let backends: Vec<String> =
                    u.backends.iter().map(|b| format!("{} ({})", b.name, b.provider.as_str())).collect();
                format!("upstream for {}", backends.join(", "))
            }
        }
    }
    fn http_context(config: &Rc<Config>) -> Box<dyn HttpContext> {
        match config.as_ref() {
            Config::Downstream(_) => Box::new(downstream::DownstreamFilter::new(config)),
            Config::Upstream(_) => Box::new(upstream::UpstreamFilter::new(config)),
        }
    }
}

/// Unix time in seconds from the host clock.
fn unix_seconds(ctx: &dyn Context) -> u64 {
    ctx.get_current_time().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
