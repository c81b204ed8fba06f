//! pii-mask: proxy-wasm glue. Placeholder that passes traffic through until the
//! filter's own issue lands.

pub mod actions;
pub mod config;
pub mod custom;
pub mod detectors;
pub mod scan;
pub mod sha256;
pub mod stream;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match config::from_json(self.get_plugin_configuration().as_deref()) {
            Ok(_) => true,
            Err(err) => {
                aigw_shared::host::log(LogLevel::Error, &format!("pii-mask: invalid configuration: {err}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Passthrough))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Passthrough;

impl Context for Passthrough {}
impl HttpContext for Passthrough {}
