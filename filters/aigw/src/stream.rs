//! One stream through the stages: each Envoy callback runs a direction's
//! [`Lane`] over the stages' own HTTP contexts, and each call's answer goes to
//! the stage that dispatched it.

use crate::chain::{Event, Lane, Outcome, StageCall};
use aigw_shared::compose::{self, Direction};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::collections::HashMap;

/// One stream through the stages.
pub(crate) struct Bundle {
    stages: Vec<Box<dyn HttpContext>>,
    request: Lane,
    /// Made at the response headers: the stages that saw the request, in reverse.
    response: Option<Lane>,
    /// How many stages saw the request headers (the others never see this stream).
    reached: usize,
    /// Calls the stages dispatched (token → stage).
    calls: HashMap<u32, usize>,
}

/// Where the stage's view of this direction's body starts.
fn set_window(direction: Direction, start: usize) {
    match direction {
        Direction::Request => compose::set_windows(start, 0),
        Direction::Response => compose::set_windows(0, start),
    }
}

/// Calls one stage with one callback and reads back what it did.
fn call_stage(
    stage: &mut dyn HttpContext,
    index: usize,
    calls: &mut HashMap<u32, usize>,
    direction: Direction,
    call: StageCall,
) -> Outcome {
    let action = match (direction, call) {
        (Direction::Request, StageCall::Headers { end_of_stream }) => stage.on_http_request_headers(0, end_of_stream),
        (Direction::Response, StageCall::Headers { end_of_stream }) => stage.on_http_response_headers(0, end_of_stream),
        (direction, StageCall::Body { start, size, end_of_stream }) => {
            set_window(direction, start);
            let action = match direction {
                Direction::Request => stage.on_http_request_body(size, end_of_stream),
                Direction::Response => stage.on_http_response_body(size, end_of_stream),
            };
            compose::set_windows(0, 0);
            action
        }
        (direction, StageCall::Trailers { start }) => {
            set_window(direction, start);
            let action = match direction {
                Direction::Request => stage.on_http_request_trailers(0),
                Direction::Response => stage.on_http_response_trailers(0),
            };
            compose::set_windows(0, 0);
            action
        }
    };
    let effects = compose::take_effects();
    for token in &effects.dispatched {
        calls.insert(*token, index);
    }
    Outcome {
        proceed: action == Action::Continue,
        local_reply: effects.local_reply_sent,
        replaced: effects.replaced(direction),
    }
}

impl Bundle {
    pub(crate) fn new(stages: Vec<Box<dyn HttpContext>>) -> Self {
        let request = Lane::new((0..stages.len()).collect());
        Bundle { stages, request, response: None, reached: 0, calls: HashMap::new() }
    }

    fn run(&mut self, direction: Direction, event: Event, size: usize) -> Action {
        compose::new_callback();
        let Bundle { stages, request, response, reached, calls } = self;
        let lane = match direction {
            Direction::Request => request,
            Direction::Response => response.get_or_insert_with(|| Lane::new((0..*reached).rev().collect())),
        };
        let mut call = |index: usize, call: StageCall| -> Outcome {
            if direction == Direction::Request && matches!(call, StageCall::Headers { .. }) {
                *reached = (*reached).max(index + 1);
            }
            match stages.get_mut(index) {
                Some(stage) => call_stage(stage.as_mut(), index, calls, direction, call),
                None => Outcome::CONTINUE,
            }
        };
        if lane.on_event(event, size, &mut call) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    /// A call's answer reached the stage that dispatched it.
    fn answered(&mut self, index: usize, answer: impl FnOnce(&mut dyn HttpContext)) {
        let request_start = self.request.window_start(index);
        let response_start = self.response.as_ref().map_or(0, |lane| lane.window_start(index));
        let Some(stage) = self.stages.get_mut(index) else { return };
        compose::new_callback();
        compose::set_windows(request_start, response_start);
        answer(stage.as_mut());
        compose::set_windows(0, 0);
        let effects = compose::take_effects();
        for token in &effects.dispatched {
            self.calls.insert(*token, index);
        }
        if let Some(size) = effects.replaced(Direction::Request) {
            self.request.replaced(index, size);
        }
        if let (Some(size), Some(lane)) = (effects.replaced(Direction::Response), self.response.as_mut()) {
            lane.replaced(index, size);
        }
        if effects.local_reply_sent {
            self.request.stop();
            return;
        }
        if effects.resume_requested && self.request.paused_stage() == Some(index) {
            let Bundle { stages, request, calls, .. } = self;
            let mut call = |i: usize, call: StageCall| match stages.get_mut(i) {
                Some(stage) => call_stage(stage.as_mut(), i, calls, Direction::Request, call),
                None => Outcome::CONTINUE,
            };
            if request.resume(index, &mut call) {
                let _ = proxy_wasm::hostcalls::resume_http_request();
            }
        }
    }
}

impl Context for Bundle {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
        let Some(index) = self.calls.remove(&token_id) else { return };
        self.answered(index, |stage| stage.on_http_call_response(token_id, num_headers, body_size, num_trailers));
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(index) = self.calls.remove(&token_id) else { return };
        self.answered(index, |stage| stage.on_grpc_call_response(token_id, status_code, response_size));
    }
}

impl HttpContext for Bundle {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.run(Direction::Request, Event::Headers { end_of_stream }, 0)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.run(Direction::Request, Event::Body { end_of_stream }, body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.run(Direction::Request, Event::Trailers, 0)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.run(Direction::Response, Event::Headers { end_of_stream }, 0)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.run(Direction::Response, Event::Body { end_of_stream }, body_size)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.run(Direction::Response, Event::Trailers, 0)
    }

    fn on_log(&mut self) {
        for stage in self.stages.iter_mut().take(self.reached) {
            stage.on_log();
        }
        let _ = compose::take_effects();
    }
}
