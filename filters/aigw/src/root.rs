//! The bundle's root context: the stages' own roots, configured with their
//! blocks, ticked at the periods they ask for, and given the answers to the
//! calls they dispatched.

use crate::config::{self, Stage};
use crate::stage_root;
use crate::stream::Bundle;
use aigw_shared::compose::{self, StageEffects};
use aigw_shared::host::log;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

struct StageRoot {
    stage: Stage,
    root: Box<dyn RootContext>,
    /// The tick the stage asked for, and when it is next due.
    tick: Option<(Duration, SystemTime)>,
}

#[derive(Default)]
pub(crate) struct BundleRoot {
    stages: Vec<StageRoot>,
    /// Calls the stages' roots dispatched (token → stage position).
    calls: HashMap<u32, usize>,
}

impl BundleRoot {
    fn record(&mut self, position: usize, effects: StageEffects) {
        for token in effects.dispatched {
            self.calls.insert(token, position);
        }
    }
}

impl Context for BundleRoot {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
        let Some(position) = self.calls.remove(&token_id) else { return };
        if let Some(stage) = self.stages.get_mut(position) {
            stage.root.on_http_call_response(token_id, num_headers, body_size, num_trailers);
        }
        let effects = compose::take_effects();
        self.record(position, effects);
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(position) = self.calls.remove(&token_id) else { return };
        if let Some(stage) = self.stages.get_mut(position) {
            stage.root.on_grpc_call_response(token_id, status_code, response_size);
        }
        let effects = compose::take_effects();
        self.record(position, effects);
    }
}

impl RootContext for BundleRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let blocks = match config::from_json(self.get_plugin_configuration().as_deref()) {
            Ok(blocks) => blocks,
            Err(err) => {
                log(LogLevel::Error, &format!("aigw: invalid configuration: {err}"));
                return false;
            }
        };
        let mut stages = Vec::with_capacity(blocks.len());
        let now = self.get_current_time();
        for (stage, block) in blocks {
            let mut root = stage_root(stage);
            let size = block.len();
            // The stage logs its own error, with the field path inside its block.
            if !compose::configure_stage(block, || root.on_configure(size)) {
                log(LogLevel::Error, &format!("aigw: invalid configuration: {}: refused by the filter", stage.name()));
                let _ = compose::take_effects();
                return false;
            }
            let tick = compose::take_effects().tick.map(|period| (period, now + period));
            stages.push(StageRoot { stage, root, tick });
        }
        if let Some(period) = stages.iter().filter_map(|s| s.tick.map(|(period, _)| period)).min() {
            self.set_tick_period(period);
        }
        let names: Vec<&str> = stages.iter().map(|s| s.stage.name()).collect();
        log(LogLevel::Info, &format!("aigw: configured: stages {}", names.join(" → ")));
        self.stages = stages;
        self.calls.clear();
        true
    }

    fn on_tick(&mut self) {
        let now = self.get_current_time();
        for position in 0..self.stages.len() {
            let Some(stage) = self.stages.get_mut(position) else { continue };
            let Some((period, due)) = stage.tick else { continue };
            if now < due {
                continue;
            }
            stage.tick = Some((period, now + period));
            stage.root.on_tick();
            let effects = compose::take_effects();
            self.record(position, effects);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stages: Vec<Box<dyn HttpContext>> =
            self.stages.iter().filter_map(|s| s.root.create_http_context(context_id)).collect();
        Some(Box::new(Bundle::new(stages)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
