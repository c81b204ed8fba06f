//! One direction of a stream through the stages, as Envoy would run them as
//! separate filters: the same callbacks in the same order, the same view of
//! the body.
//!
//! Envoy hands a filter chain's buffered body from filter to filter; here all
//! stages share the one buffer of the bundle's filter instance. What differs
//! is only what a stage sees after another paused:
//!
//! - the stages *before* a stage that paused had already passed the bytes
//!   they saw; when more arrive, they see only the new ones (a *window* that
//!   starts where the retained bytes end), as they would as separate filters;
//! - the stage that paused sees everything since its own window started (the
//!   body it is collecting), as Envoy's buffering gives it;
//! - the stages *after* it see nothing until it continues, then everything
//!   it passed (with `end_of_stream` as it was).
//!
//! A stage that paused for a call to another service is resumed by its own
//! answer ([`Lane::resume`]); the stages after it then run, and Envoy is
//! resumed only when the last one continued. A stage that sent a local reply
//! ends the direction: no later stage sees the request.

/// A callback of the direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Headers { end_of_stream: bool },
    Body { end_of_stream: bool },
    Trailers,
}

/// What one stage is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageCall {
    Headers {
        end_of_stream: bool,
    },
    /// The stage's window of the buffered body: `size` bytes from `start`.
    Body {
        start: usize,
        size: usize,
        end_of_stream: bool,
    },
    /// Trailers; the stage's window (which it may read and replace as its body ends) starts at `start`.
    Trailers {
        start: usize,
    },
}

/// What a stage answered to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The stage returned `Continue` (else `Pause`).
    pub proceed: bool,
    /// The stage sent a local reply.
    pub local_reply: bool,
    /// The stage replaced its window with this many bytes.
    pub replaced: Option<usize>,
}

impl Outcome {
    pub const CONTINUE: Outcome = Outcome { proceed: true, local_reply: false, replaced: None };
    pub const PAUSE: Outcome = Outcome { proceed: false, local_reply: false, replaced: None };
}

/// One stage's place in a lane.
#[derive(Debug, Clone, Copy, Default)]
struct Seat {
    /// The stage (an index into the bundle's stages).
    stage: usize,
    /// Where the stage's window starts in the buffer.
    start: usize,
    /// The buffer's length when the stage last saw it.
    seen: usize,
    /// The stage passed the end of the body.
    ended: bool,
}

/// One direction's progress through the stages.
#[derive(Debug, Clone)]
pub struct Lane {
    /// The stages in this direction's order.
    seats: Vec<Seat>,
    /// The buffered body's length.
    len: usize,
    /// The position that paused, and the event it paused on.
    pending: Option<(usize, Event)>,
    /// A stage sent a local reply.
    stopped: bool,
}

fn ends_body(event: Event) -> bool {
    matches!(event, Event::Body { end_of_stream: true } | Event::Trailers)
}

impl Lane {
    /// A lane through the stages `order` (indices into the bundle's stages).
    pub fn new(order: Vec<usize>) -> Self {
        let seats = order.into_iter().map(|stage| Seat { stage, ..Seat::default() }).collect();
        Lane { seats, len: 0, pending: None, stopped: false }
    }

    /// How many stages this lane runs.
    pub fn stages(&self) -> usize {
        self.seats.len()
    }

    /// A stage sent a local reply: nothing more runs in this direction.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.pending = None;
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The stage that paused (an index into the bundle's stages).
    pub fn paused_stage(&self) -> Option<usize> {
        self.pending.and_then(|(position, _)| self.seats.get(position)).map(|seat| seat.stage)
    }

    /// Where `stage`'s window starts (for its calls' answers, which may read or replace its body).
    pub fn window_start(&self, stage: usize) -> usize {
        self.seats.iter().find(|seat| seat.stage == stage).map_or(0, |seat| seat.start)
    }

    /// `stage` replaced its window (outside a callback: in a call's answer) with `size` bytes.
    pub fn replaced(&mut self, stage: usize, size: usize) {
        if let Some(seat) = self.seats.iter_mut().find(|seat| seat.stage == stage) {
            self.len = seat.start + size;
            seat.seen = self.len;
        }
    }

    /// Envoy's callback: headers, a body callback with the buffer now `size`
    /// bytes long, or trailers. Returns true to continue (false: pause).
    pub fn on_event(&mut self, event: Event, size: usize, call: &mut dyn FnMut(usize, StageCall) -> Outcome) -> bool {
        if self.stopped {
            return false;
        }
        if matches!(event, Event::Body { .. }) {
            self.len = size;
        }
        self.run_from(0, event, call)
    }

    /// The paused stage asked to resume (its call was answered): the stages
    /// after it run. Returns true when the last one continued (Envoy may resume).
    pub fn resume(&mut self, stage: usize, call: &mut dyn FnMut(usize, StageCall) -> Outcome) -> bool {
        let Some((position, event)) = self.pending else { return false };
        if self.stopped || self.seats.get(position).map(|seat| seat.stage) != Some(stage) {
            return false;
        }
        self.pending = None;
        if let Some(seat) = self.seats.get_mut(position) {
            // A stage resumes only once its body is complete.
            seat.ended = ends_body(event);
        }
        self.run_from(position + 1, event, call)
    }

    fn run_from(&mut self, first: usize, event: Event, call: &mut dyn FnMut(usize, StageCall) -> Outcome) -> bool {
        for position in first..self.seats.len() {
            let Some(outcome) = self.run_stage(position, event, call) else { continue };
            if outcome.local_reply {
                self.stop();
                return false;
            }
            if !outcome.proceed {
                // Envoy keeps the whole buffer; the stages before this one have seen it all.
                let len = self.len;
                for earlier in self.seats.iter_mut().take(position) {
                    earlier.start = len;
                    earlier.seen = len;
                }
                self.pending = Some((position, event));
                return false;
            }
            if let (true, Some(seat)) = (ends_body(event), self.seats.get_mut(position)) {
                seat.ended = true;
            }
        }
        self.pending = None;
        if matches!(event, Event::Body { .. }) {
            // Every stage passed the buffer on: Envoy forwards and drains it.
            for seat in &mut self.seats {
                seat.start = 0;
                seat.seen = 0;
            }
            self.len = 0;
        }
        true
    }

    /// Calls one stage; `None` when it has nothing to see.
    fn run_stage(
        &mut self,
        position: usize,
        event: Event,
        call: &mut dyn FnMut(usize, StageCall) -> Outcome,
    ) -> Option<Outcome> {
        let seat = *self.seats.get(position)?;
        match event {
            Event::Headers { end_of_stream } => Some(call(seat.stage, StageCall::Headers { end_of_stream })),
            Event::Body { end_of_stream } => {
                let unseen = self.len > seat.seen;
                if seat.ended || !(unseen || end_of_stream) {
                    return None;
                }
                Some(self.body(position, end_of_stream, call))
            }
            Event::Trailers => {
                if seat.ended {
                    return None;
                }
                // A stage that has not seen the buffered body gets it first, as Envoy
                // gives it with `end_of_stream` false before the trailers.
                if self.len > seat.seen {
                    let outcome = self.body(position, false, call);
                    if outcome.local_reply {
                        return Some(outcome);
                    }
                }
                let start = seat.start.min(self.len);
                let outcome = call(seat.stage, StageCall::Trailers { start });
                self.saw(position, start, outcome.replaced);
                Some(outcome)
            }
        }
    }

    fn body(
        &mut self,
        position: usize,
        end_of_stream: bool,
        call: &mut dyn FnMut(usize, StageCall) -> Outcome,
    ) -> Outcome {
        let Some(seat) = self.seats.get(position).copied() else { return Outcome::CONTINUE };
        let start = seat.start.min(self.len);
        let outcome = call(seat.stage, StageCall::Body { start, size: self.len - start, end_of_stream });
        self.saw(position, start, outcome.replaced);
        outcome
    }

    /// The stage at `position` saw its window from `start` and maybe replaced it.
    fn saw(&mut self, position: usize, start: usize, replaced: Option<usize>) {
        if let Some(size) = replaced {
            self.len = start + size;
        }
        let len = self.len;
        if let Some(seat) = self.seats.get_mut(position) {
            seat.seen = len;
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // the fake buffer's windows are in range by construction
mod tests {
    use super::*;

    /// A fake buffer and stages: each stage's behaviour is a closure over its window's bytes.
    struct Run {
        buffer: Vec<u8>,
        log: Vec<String>,
    }

    type Behaviour<'a> = &'a mut dyn FnMut(usize, &[u8], bool) -> (Outcome, Option<Vec<u8>>);

    impl Run {
        fn call(&mut self, stage: usize, what: StageCall, behave: Behaviour<'_>) -> Outcome {
            match what {
                StageCall::Body { start, size, end_of_stream } => {
                    let window = &self.buffer[start..start + size];
                    let mark = if end_of_stream { "$" } else { "" };
                    self.log.push(format!("{stage}:{}{mark}", String::from_utf8_lossy(window)));
                    self.behave_on(stage, start, start + size, end_of_stream, behave)
                }
                StageCall::Headers { .. } => {
                    self.log.push(format!("{stage}:H"));
                    Outcome::CONTINUE
                }
                StageCall::Trailers { start } => {
                    self.log.push(format!("{stage}:T"));
                    self.behave_on(stage, start, self.buffer.len(), true, behave)
                }
            }
        }

        /// Runs a stage on the window `start..end`, replacing the window with what it returns.
        fn behave_on(&mut self, stage: usize, start: usize, end: usize, eos: bool, behave: Behaviour<'_>) -> Outcome {
            let (outcome, replacement) = behave(stage, &self.buffer[start..end], eos);
            let Some(bytes) = replacement else { return outcome };
            self.buffer.truncate(start);
            self.buffer.extend_from_slice(&bytes);
            Outcome { replaced: Some(bytes.len()), ..outcome }
        }

        /// Envoy appends `chunk` to what it retained and calls the lane.
        fn chunk(&mut self, lane: &mut Lane, chunk: &[u8], end_of_stream: bool, behave: Behaviour<'_>) -> bool {
            self.buffer.extend_from_slice(chunk);
            let size = self.buffer.len();
            let proceed =
                lane.on_event(Event::Body { end_of_stream }, size, &mut |stage, what| self.call(stage, what, behave));
            if proceed {
                self.buffer.clear(); // passed on
            }
            proceed
        }
    }

    fn run() -> Run {
        Run { buffer: Vec::new(), log: Vec::new() }
    }

    #[test]
    fn streaming_stages_see_each_chunk_once_and_in_order() {
        let mut lane = Lane::new(vec![0, 1, 2]);
        let mut r = run();
        let mut upper = |stage: usize, window: &[u8], _eos: bool| {
            let out = if stage == 1 { window.to_ascii_uppercase() } else { window.to_vec() };
            (Outcome::CONTINUE, Some(out))
        };
        assert!(r.chunk(&mut lane, b"ab", false, &mut upper));
        assert!(r.chunk(&mut lane, b"cd", true, &mut upper));
        assert_eq!(r.log, ["0:ab", "1:ab", "2:AB", "0:cd$", "1:cd$", "2:CD$"]);
    }

    #[test]
    fn a_collecting_stage_holds_the_later_ones_and_the_earlier_ones_see_only_new_bytes() {
        // Stage 1 collects until the end; stage 0 rewrites every chunk it sees.
        let mut lane = Lane::new(vec![0, 1, 2]);
        let mut r = run();
        let mut behave = |stage: usize, window: &[u8], eos: bool| match stage {
            0 => (Outcome::CONTINUE, Some([window, b"."].concat())),
            1 if !eos => (Outcome::PAUSE, None),
            _ => (Outcome::CONTINUE, None),
        };
        assert!(!r.chunk(&mut lane, b"ab", false, &mut behave));
        assert!(!r.chunk(&mut lane, b"cd", false, &mut behave));
        assert!(r.chunk(&mut lane, b"ef", true, &mut behave));
        assert_eq!(r.log, ["0:ab", "1:ab.", "0:cd", "1:ab.cd.", "0:ef$", "1:ab.cd.ef.$", "2:ab.cd.ef.$"]);
    }

    #[test]
    fn a_stage_paused_for_a_call_resumes_the_later_ones_with_its_own_edit() {
        let mut lane = Lane::new(vec![0, 1, 2]);
        let mut r = run();
        let mut behave = |stage: usize, window: &[u8], eos: bool| match stage {
            1 if eos => (Outcome::PAUSE, None), // dispatches a call
            _ => (Outcome::CONTINUE, Some(window.to_vec())),
        };
        assert!(!r.chunk(&mut lane, b"body", true, &mut behave));
        assert_eq!(lane.paused_stage(), Some(1));
        // The answer arrives: stage 1 rewrites its body, then asks to resume.
        r.buffer = b"BODY!".to_vec();
        lane.replaced(1, 5);
        let proceed = lane.resume(1, &mut |stage, what| r.call(stage, what, &mut behave));
        assert!(proceed);
        assert_eq!(r.log, ["0:body$", "1:body$", "2:BODY!$"]);
        // A resume from a stage that is not the paused one does nothing.
        assert!(!lane.resume(1, &mut |_, _| panic!("no stage may run")));
    }

    #[test]
    fn a_local_reply_ends_the_direction() {
        let mut lane = Lane::new(vec![0, 1, 2]);
        let mut r = run();
        let mut behave = |stage: usize, _: &[u8], _eos: bool| match stage {
            1 => (Outcome { local_reply: true, ..Outcome::PAUSE }, None),
            _ => (Outcome::CONTINUE, None),
        };
        assert!(!r.chunk(&mut lane, b"x", true, &mut behave));
        assert!(lane.stopped());
        assert!(!lane.on_event(Event::Trailers, 0, &mut |_, _| panic!("no stage may run")));
        assert_eq!(r.log, ["0:x$", "1:x$"]);
    }

    #[test]
    fn trailers_end_the_body_for_every_stage_and_show_the_held_bytes_first() {
        let mut lane = Lane::new(vec![0, 1]);
        let mut r = run();
        // Stage 0 collects until the trailers, then rewrites the body (longer): stage 1 sees all of it.
        let mut behave = |stage: usize, window: &[u8], eos: bool| match stage {
            0 if !eos => (Outcome::PAUSE, None),
            0 => (Outcome::CONTINUE, Some(window.to_ascii_uppercase().repeat(2))),
            _ => (Outcome::CONTINUE, None),
        };
        assert!(!r.chunk(&mut lane, b"ab", false, &mut behave));
        let proceed =
            lane.on_event(Event::Trailers, r.buffer.len(), &mut |stage, what| r.call(stage, what, &mut behave));
        assert!(proceed);
        assert_eq!(r.log, ["0:ab", "0:T", "1:ABAB", "1:T"]);
    }

    #[test]
    fn an_empty_end_of_stream_reaches_every_stage() {
        let mut lane = Lane::new(vec![2, 1, 0]);
        let mut r = run();
        assert!(r.chunk(&mut lane, b"", true, &mut |_, _, _| (Outcome::CONTINUE, None)));
        assert_eq!(r.log, ["2:$", "1:$", "0:$"]);
    }

    #[test]
    fn headers_run_every_stage_in_order() {
        let mut lane = Lane::new(vec![1, 0]);
        let mut seen = Vec::new();
        assert!(lane.on_event(Event::Headers { end_of_stream: true }, 0, &mut |stage, _| {
            seen.push(stage);
            Outcome::CONTINUE
        }));
        assert_eq!(seen, [1, 0]);
    }
}
