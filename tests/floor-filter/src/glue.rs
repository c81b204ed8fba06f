//! proxy-wasm wiring of the probe (Wasm only): the mode decides, the callbacks follow.

use crate::mode::{reserialise, Mode};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

pub fn new_root() -> Box<dyn RootContext> {
    Box::new(Root { mode: Mode::Noop })
}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match Mode::from_config(self.get_plugin_configuration().as_deref()) {
            Some(mode) => {
                self.mode = mode;
                true
            }
            None => {
                let _ = hostcalls::log(
                    LogLevel::Error,
                    "floor-filter: configuration must be {\"mode\": \"noop|buffer|parse\"}",
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { mode: self.mode }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    mode: Mode,
}

impl Probe {
    /// A body callback: hold until the end, then (in `parse` mode) rewrite the whole body.
    fn body(&self, buffer: BufferType, size: usize, end_of_stream: bool) -> Action {
        if !self.mode.buffers() {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if self.mode.rewrites() {
            let body = hostcalls::get_buffer(buffer, 0, size).ok().flatten().unwrap_or_default();
            if let Some(out) = reserialise(&body) {
                let _ = hostcalls::set_buffer(buffer, 0, size, &out);
            }
        }
        Action::Continue
    }
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.mode.rewrites() {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "content-length", None);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body(BufferType::HttpRequestBody, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.mode.rewrites() {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body(BufferType::HttpResponseBody, body_size, end_of_stream)
    }
}
