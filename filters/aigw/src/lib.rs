//! aigw: the one-pass build. One Wasm module (`dist/aigw.wasm`) that runs the
//! filters as stages of one filter instance: one VM per worker instead of
//! five, one filter context per stream, one body buffer.
//!
//! Wiring only: [`config`] says which stages run, [`chain`] runs a direction
//! through them as Envoy would run separate filters, and each stage is the
//! filter crate's own root and HTTP context, unchanged
//! (`aigw_shared::compose` is the seam they share with this module). See
//! README.md for the configuration and DESIGN.md for the design.

pub mod chain;
pub mod config;
mod root;
mod stream;

use aigw_shared::compose;
use config::Stage;
use proxy_wasm::traits::RootContext;

#[cfg(all(target_arch = "wasm32", feature = "entry-point"))]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| new_root());
}}

/// A new root context: one per VM and plugin configuration.
pub fn new_root() -> Box<dyn RootContext> {
    compose::enter_bundle();
    Box::new(root::BundleRoot::default())
}

/// A stage filter's own root context.
pub(crate) fn stage_root(stage: Stage) -> Box<dyn RootContext> {
    match stage {
        Stage::PiiMask => pii_mask::new_root(),
        Stage::PromptTemplate => prompt_template::new_root(),
        Stage::SemanticCache => semantic_cache::new_root(),
        Stage::TokenCounter => token_counter::new_root(),
        Stage::ModelRouter => model_router::new_root(),
    }
}
