//! The seam for the one-pass build (`filters/aigw`, `dist/aigw.wasm`), which
//! runs several filters' HTTP contexts inside one Wasm filter instance.
//!
//! A filter does a few things through the host that mean something different
//! when it is one stage of several in one filter instance:
//!
//! - reading its plugin configuration (a stage gets its own block of the
//!   bundle's configuration, not the whole of it);
//! - resuming a paused request (the stages after it must run first: the
//!   bundle resumes Envoy once the last stage continued);
//! - asking for a tick (the bundle's root ticks for all stages);
//! - dispatching calls (the bundle routes each answer to the stage that
//!   dispatched it);
//! - sending a local reply (the stages after it must not run);
//! - reading and replacing the buffered body (after a stage paused, the stages
//!   before it see only the bytes that arrived since: a window of the buffer).
//!
//! Every filter does these through the functions here (and through
//! [`crate::glue`], which uses them). Outside a bundle they are the plain host
//! calls: one thread-local flag read each.

use crate::host::CapturedHost;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::cell::RefCell;
use std::time::Duration;

/// A direction of an exchange: its body buffer and its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// One value per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PerDirection<T> {
    pub request: T,
    pub response: T,
}

impl<T: Copy> PerDirection<T> {
    pub fn get(&self, direction: Direction) -> T {
        match direction {
            Direction::Request => self.request,
            Direction::Response => self.response,
        }
    }

    fn set(&mut self, direction: Direction, value: T) {
        match direction {
            Direction::Request => self.request = value,
            Direction::Response => self.response = value,
        }
    }
}

impl Direction {
    fn buffer(self) -> BufferType {
        match self {
            Direction::Request => BufferType::HttpRequestBody,
            Direction::Response => BufferType::HttpResponseBody,
        }
    }
}

/// What the running stage did through this seam (read back by the bundle
/// after each call into a stage).
#[derive(Debug, Default)]
struct Seam {
    composed: bool,
    /// The configuration block of the stage being configured.
    configuration: Option<Vec<u8>>,
    resume_requested: bool,
    local_reply_sent: bool,
    tick: Option<Duration>,
    dispatched: Vec<u32>,
    /// Where the running stage's window starts in each direction's buffer.
    window_start: PerDirection<usize>,
    /// The new length of the window the running stage replaced, per direction.
    replaced: PerDirection<Option<usize>>,
    /// The request headers as the stages see them, read once per request headers callback (the
    /// stages' own edits applied): each stage would otherwise read the whole map again.
    request_headers: Option<CapturedHost>,
    /// The last window of each body read or written during the current Envoy callback: the next
    /// stage reads it from here instead of copying it out of the host again.
    request_body: Option<Window>,
    response_body: Option<Window>,
}

/// Bytes of a body buffer from `start`.
#[derive(Debug)]
struct Window {
    start: usize,
    bytes: Vec<u8>,
}

impl Seam {
    fn body(&mut self, direction: Direction) -> &mut Option<Window> {
        match direction {
            Direction::Request => &mut self.request_body,
            Direction::Response => &mut self.response_body,
        }
    }
}

thread_local! {
    // A Wasm VM is single-threaded, and one bundle or one filter owns it.
    static SEAM: RefCell<Seam> = RefCell::new(Seam::default());
}

fn with<T>(f: impl FnOnce(&mut Seam) -> T) -> T {
    SEAM.with(|seam| f(&mut seam.borrow_mut()))
}

/// True inside a bundle.
pub fn composed() -> bool {
    with(|seam| seam.composed)
}

// ---- What filters call -------------------------------------------------------------------------

/// The plugin configuration: the stage's own block inside a bundle.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    match with(|seam| seam.composed.then(|| seam.configuration.clone())) {
        Some(block) => block,
        None => hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten(),
    }
}

/// Resumes the paused request (inside a bundle: once the later stages continued too).
pub fn resume_request() {
    if !with(|seam| {
        seam.resume_requested = seam.composed;
        seam.composed
    }) {
        let _ = hostcalls::resume_http_request();
    }
}

/// Asks for `on_tick` every `period` (inside a bundle, the bundle's root ticks).
pub fn set_tick_period(period: Duration) {
    if !with(|seam| {
        if seam.composed {
            seam.tick = Some(seam.tick.map_or(period, |tick| tick.min(period)));
        }
        seam.composed
    }) {
        let _ = hostcalls::set_tick_period(period);
    }
}

/// Records a dispatched call's token (a bundle routes its answer).
pub fn dispatched(token: u32) {
    with(|seam| {
        if seam.composed {
            seam.dispatched.push(token);
        }
    });
}

/// Sends a local reply.
pub fn send_response(status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
    with(|seam| seam.local_reply_sent = seam.composed);
    let _ = hostcalls::send_http_response(status, headers, Some(body));
}

/// The running stage's view of the buffered body: `size` bytes from its window's start.
pub fn body_bytes(direction: Direction, size: usize) -> Vec<u8> {
    let (composed, start, cached) = with(|seam| {
        let start = seam.window_start.get(direction);
        let cached = match seam.body(direction) {
            Some(window) if window.start == start && window.bytes.len() == size => Some(window.bytes.clone()),
            _ => None,
        };
        (seam.composed, start, cached)
    });
    if let Some(bytes) = cached {
        return bytes;
    }
    let bytes = hostcalls::get_buffer(direction.buffer(), start, size).ok().flatten().unwrap_or_default();
    if composed {
        with(|seam| *seam.body(direction) = Some(Window { start, bytes: bytes.clone() }));
    }
    bytes
}

/// Replaces the running stage's view of the buffered body (`size` bytes from its
/// window's start) by `body`.
pub fn replace_body(direction: Direction, size: usize, body: &[u8]) {
    let start = with(|seam| {
        let start = seam.window_start.get(direction);
        if seam.composed {
            seam.replaced.set(direction, Some(body.len()));
            *seam.body(direction) = Some(Window { start, bytes: body.to_vec() });
        }
        start
    });
    if start == 0 {
        let _ = hostcalls::set_buffer(direction.buffer(), 0, size, body);
        return;
    }
    // Envoy replaces a body only from its start (or appends at its end): the
    // bytes before the window are written back with the new window.
    let mut whole = hostcalls::get_buffer(direction.buffer(), 0, start).ok().flatten().unwrap_or_default();
    whole.extend_from_slice(body);
    let _ = hostcalls::set_buffer(direction.buffer(), 0, start + size, &whole);
}

/// The current request headers (call in the request headers callback).
pub fn request_headers() -> CapturedHost {
    if let Some(headers) = with(|seam| seam.request_headers.clone()) {
        return headers;
    }
    let headers = CapturedHost::capture();
    with(|seam| {
        if seam.composed {
            seam.request_headers = Some(headers.clone());
        }
    });
    headers
}

/// Sets (`Some`) or removes (`None`) a request header (in the request headers callback).
pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    with(|seam| {
        if let Some(headers) = seam.request_headers.take() {
            seam.request_headers = Some(headers.edited(name, value));
        }
    });
}

// ---- What the bundle calls ---------------------------------------------------------------------

/// Makes this VM a bundle.
pub fn enter_bundle() {
    with(|seam| seam.composed = true);
}

/// Runs `configure` (a stage root's `on_configure`) with `block` as its configuration.
pub fn configure_stage<T>(block: Vec<u8>, configure: impl FnOnce() -> T) -> T {
    with(|seam| seam.configuration = Some(block));
    let result = configure();
    with(|seam| seam.configuration = None);
    result
}

/// What a stage did through the seam during one call into it.
#[derive(Debug, Default, PartialEq)]
pub struct StageEffects {
    pub resume_requested: bool,
    pub local_reply_sent: bool,
    pub tick: Option<Duration>,
    pub dispatched: Vec<u32>,
    /// The new length of the window it replaced, per direction.
    pub replaced: PerDirection<Option<usize>>,
}

impl StageEffects {
    pub fn replaced(&self, direction: Direction) -> Option<usize> {
        self.replaced.get(direction)
    }
}

/// Sets where the next stage's windows start (request, response).
pub fn set_windows(request_start: usize, response_start: usize) {
    with(|seam| seam.window_start = PerDirection { request: request_start, response: response_start });
}

/// Takes what the stage just called did.
pub fn take_effects() -> StageEffects {
    with(|seam| StageEffects {
        resume_requested: std::mem::take(&mut seam.resume_requested),
        local_reply_sent: std::mem::take(&mut seam.local_reply_sent),
        tick: seam.tick.take(),
        dispatched: std::mem::take(&mut seam.dispatched),
        replaced: std::mem::take(&mut seam.replaced),
    })
}

/// A new Envoy callback begins (or a call's answer arrives): what the stages read during the last
/// one may have changed.
pub fn new_callback() {
    with(|seam| {
        seam.request_headers = None;
        seam.request_body = None;
        seam.response_body = None;
    });
}
