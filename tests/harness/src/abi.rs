//! The host functions: proxy-wasm ABI 0.2.1 (`env`) and the WASI preview1
//! calls Rust filters import. Semantics follow Envoy's Wasm host; where Envoy
//! would answer with a status the SDK does not accept (so the guest panics),
//! the harness does the same and records a note saying why.

use crate::headers::{deserialize_map, serialize_map, Headers};
use crate::state::{status, ForeignCall, HostState, HttpCall, LogLevel, LogLine, MetricKind, StreamState};
use aigw_shared::attributes::envoy_value;
use serde_json::Value;
use wasmtime::{Caller, Error, Linker, Result};

type C<'a> = Caller<'a, HostState>;

const ENV: &str = "env";
const WASI: &str = "wasi_snapshot_preview1";

fn unsupported(name: &str) -> Error {
    Error::msg(format!(
        "aigw-harness does not support the host call `{name}` (the filter called it; add it to tests/harness if a filter needs it)"
    ))
}

// ---------------------------------------------------------------------------
// Guest memory

fn memory(caller: &C<'_>) -> Result<wasmtime::Memory> {
    caller
        .data()
        .guest
        .as_ref()
        .map(|g| g.memory)
        .ok_or_else(|| Error::msg("host call before the module was instantiated"))
}

fn read(caller: &C<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    if len == 0 {
        return Ok(Vec::new());
    }
    let memory = memory(caller)?;
    memory
        .data(caller)
        .get(start..start.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| Error::msg(format!("guest passed an out-of-bounds slice ({start}+{len})")))
}

fn read_str(caller: &C<'_>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

fn write(caller: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    let start = ptr as u32 as usize;
    let slot = memory
        .data_mut(&mut *caller)
        .get_mut(start..start.saturating_add(bytes.len()))
        .ok_or_else(|| Error::msg(format!("guest passed an out-of-bounds pointer ({start})")))?;
    slot.copy_from_slice(bytes);
    Ok(())
}

fn write_u32(caller: &mut C<'_>, ptr: i32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

fn write_u64(caller: &mut C<'_>, ptr: i32, value: u64) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest like Envoy: allocated with the guest's
/// `proxy_on_memory_allocate`, pointer and size written to the out-params. An
/// empty value is a null pointer and size 0.
fn copy_out(caller: &mut C<'_>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<()> {
    let mut address = 0u32;
    if !bytes.is_empty() {
        let malloc = caller
            .data()
            .guest
            .as_ref()
            .map(|g| g.malloc.clone())
            .ok_or_else(|| Error::msg("host call before the module was instantiated"))?;
        let len = i32::try_from(bytes.len()).map_err(|_| Error::msg("value too large for wasm32"))?;
        let ptr = malloc.call(&mut *caller, len)?;
        if ptr == 0 {
            return Err(Error::msg(format!("proxy_on_memory_allocate({len}) returned null")));
        }
        write(caller, ptr, bytes)?;
        address = ptr as u32;
    }
    write_u32(caller, ptr_ptr, address)?;
    write_u32(caller, size_ptr, bytes.len() as u32)
}

// ---------------------------------------------------------------------------
// Maps and buffers of the effective context

#[derive(Clone, Copy, Debug)]
enum MapKind {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    CallResponseHeaders,
    CallResponseTrailers,
}

fn map_kind(raw: i32) -> Option<MapKind> {
    Some(match raw {
        0 => MapKind::RequestHeaders,
        1 => MapKind::RequestTrailers,
        2 => MapKind::ResponseHeaders,
        3 => MapKind::ResponseTrailers,
        6 => MapKind::CallResponseHeaders,
        7 => MapKind::CallResponseTrailers,
        _ => return None,
    })
}

/// The map the filter can read now, as Envoy exposes it: request/response headers from their
/// callback until they are forwarded (or `continue_stream`), trailers until forwarded, the
/// final maps (read-only) during `proxy_on_log`, the call response during its callback.
fn map_ref(state: &HostState, kind: MapKind) -> Option<&Headers> {
    match kind {
        MapKind::CallResponseHeaders => return state.call_response.as_ref().map(|r| &r.headers),
        MapKind::CallResponseTrailers => return state.call_response.as_ref().map(|r| &r.trailers),
        _ => {}
    }
    let stream = state.streams.get(&state.effective)?;
    let log_phase = state.callback == "proxy_on_log";
    let direction = match kind {
        MapKind::RequestHeaders | MapKind::RequestTrailers => &stream.request,
        _ => &stream.response,
    };
    match kind {
        MapKind::RequestHeaders | MapKind::ResponseHeaders => {
            if log_phase {
                direction.forwarded_headers.as_ref().or(direction.headers.as_ref())
            } else if direction.exposed {
                direction.headers.as_ref()
            } else {
                None
            }
        }
        _ => {
            if log_phase {
                direction.forwarded_trailers.as_ref().or(direction.trailers.as_ref())
            } else if direction.forwarded_trailers.is_none() {
                direction.trailers.as_ref()
            } else {
                None
            }
        }
    }
}

/// Why a map is not available, for the note shown when the SDK then panics.
fn unavailable(kind: MapKind, state: &HostState) -> String {
    let context = if state.streams.contains_key(&state.effective) { "" } else { " (not an HTTP context)" };
    format!(
        "{kind:?} are not available in {}{context}: Envoy exposes a header map only from its callback until it is \
         forwarded (Continue, or continue_stream) and answers BadArgument otherwise, which makes the SDK panic",
        state.callback
    )
}

/// The map a write goes to, or a note saying why there is none.
fn map_mut(state: &mut HostState, kind: MapKind) -> Result<&mut Headers, String> {
    if state.callback == "proxy_on_log" || map_ref(state, kind).is_none() {
        return Err(unavailable(kind, state));
    }
    let late = state.streams.get(&state.effective).is_some_and(|s| match kind {
        MapKind::RequestHeaders => s.request.forwarded_headers.is_some(),
        MapKind::ResponseHeaders => s.response.forwarded_headers.is_some(),
        _ => false,
    });
    if late {
        // Envoy still holds the map (a body callback released the paused headers) and accepts
        // the edit, but the next hop already has the headers.
        state.note(format!("{kind:?} edited after they were forwarded: the next hop never sees this edit"));
    }
    let effective = state.effective;
    let stream = state.streams.get_mut(&effective).ok_or_else(|| "no stream".to_string())?;
    let map = match kind {
        MapKind::RequestHeaders => stream.request.headers.as_mut(),
        MapKind::RequestTrailers => stream.request.trailers.as_mut(),
        MapKind::ResponseHeaders => stream.response.headers.as_mut(),
        MapKind::ResponseTrailers => stream.response.trailers.as_mut(),
        MapKind::CallResponseHeaders | MapKind::CallResponseTrailers => None,
    };
    map.ok_or_else(|| format!("{kind:?} cannot be modified"))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum BufferKind {
    RequestBody,
    ResponseBody,
    CallResponseBody,
    GrpcReceive,
    VmConfiguration,
    PluginConfiguration,
    Other(i32),
}

fn buffer_kind(raw: i32) -> BufferKind {
    match raw {
        0 => BufferKind::RequestBody,
        1 => BufferKind::ResponseBody,
        4 => BufferKind::CallResponseBody,
        5 => BufferKind::GrpcReceive,
        6 => BufferKind::VmConfiguration,
        7 => BufferKind::PluginConfiguration,
        other => BufferKind::Other(other),
    }
}

/// A body buffer is readable during its body callback, and later while Envoy
/// still holds buffered data for the filter (e.g. in an http call response).
fn body_ref(stream: &StreamState, kind: BufferKind) -> Option<&Vec<u8>> {
    let direction = match kind {
        BufferKind::RequestBody => &stream.request,
        BufferKind::ResponseBody => &stream.response,
        _ => return None,
    };
    (direction.in_body_callback || !direction.buffer.is_empty()).then_some(&direction.buffer)
}

fn buffer_ref(state: &HostState, kind: BufferKind) -> Option<&Vec<u8>> {
    match kind {
        BufferKind::RequestBody | BufferKind::ResponseBody => body_ref(state.streams.get(&state.effective)?, kind),
        BufferKind::CallResponseBody => state.call_response.as_ref().map(|r| &r.body),
        BufferKind::GrpcReceive => state.grpc_response.as_ref(),
        // Envoy hands the configurations out only during the callback that consumes them.
        BufferKind::VmConfiguration => (state.callback == "proxy_on_vm_start").then_some(&state.vm_config),
        BufferKind::PluginConfiguration => (state.callback == "proxy_on_configure").then_some(&state.plugin_config),
        BufferKind::Other(_) => None,
    }
}

// ---------------------------------------------------------------------------
// Properties

fn split_path(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Walks `rest` into a JSON value (object keys, list indexes).
fn walk<'v>(mut value: &'v Value, rest: &[String]) -> Option<&'v Value> {
    for segment in rest {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

fn metadata_lookup(namespaces: &std::collections::BTreeMap<String, Value>, rest: &[String]) -> Option<Vec<u8>> {
    let (namespace, rest) = rest.split_first()?;
    let value = walk(namespaces.get(namespace)?, rest)?;
    Some(envoy_value::encode(value))
}

/// Answers a property like Envoy: what the test or the filter set, then
/// metadata, then VM-level values, then a few attributes derived from headers.
pub(crate) fn lookup_property(state: &HostState, context: u32, path: &[String]) -> Option<Vec<u8>> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let stream = state.streams.get(&context);
    if let Some(stream) = stream {
        if let Some(value) = stream.properties.get(path) {
            return Some(value.clone());
        }
        if let ["metadata", "filter_metadata", ..] = segments.as_slice() {
            return metadata_lookup(&stream.metadata, path.get(2..)?);
        }
    }
    if let ["xds", "route_metadata", "filter_metadata", ..] = segments.as_slice() {
        let rest = path.get(3..)?;
        if let Some(found) = stream.and_then(|s| metadata_lookup(&s.route_metadata, rest)) {
            return Some(found);
        }
        return metadata_lookup(&state.vm_route_metadata, rest);
    }
    if let Some(value) = state.vm_properties.get(path) {
        return Some(value.clone());
    }
    match segments.as_slice() {
        ["plugin_name"] => return Some(state.plugin_name.clone().into_bytes()),
        ["plugin_vm_id"] => return Some(state.vm_id.clone().into_bytes()),
        ["plugin_root_id"] => return Some(state.root_id_name.clone().into_bytes()),
        _ => {}
    }
    let stream = stream?;
    let request = stream.request.headers.as_ref();
    let header = |name: &str| request.and_then(|h| h.get(name)).map(|v| v.as_bytes().to_vec());
    match segments.as_slice() {
        ["request", "path"] => header(":path"),
        ["request", "url_path"] => header(":path").map(|p| p.split(|b| *b == b'?').next().unwrap_or_default().to_vec()),
        ["request", "method"] => header(":method"),
        ["request", "host"] => header(":authority"),
        ["request", "scheme"] => header(":scheme"),
        ["request", "id"] => header("x-request-id"),
        ["request", "headers", name] => header(name),
        ["response", "code"] => stream
            .response
            .headers
            .as_ref()
            .and_then(|h| h.get(":status"))
            .and_then(|s| s.parse::<i64>().ok())
            .map(|code| code.to_le_bytes().to_vec()),
        ["response", "headers", name] => {
            stream.response.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_bytes().to_vec())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------

fn stream_type_name(raw: i32) -> &'static str {
    match raw {
        0 => "HttpRequest",
        1 => "HttpResponse",
        2 => "Downstream",
        3 => "Upstream",
        _ => "unknown",
    }
}

fn random_fill(state: &mut HostState, out: &mut [u8]) {
    // xorshift64*: deterministic, so tests are reproducible.
    for byte in out {
        let mut x = state.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.random_state = x;
        *byte = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
    }
}

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    link_env(linker)?;
    link_wasi(linker)?;
    Ok(())
}

/// Every `env` import, one group of the ABI per function.
fn link_env(l: &mut Linker<HostState>) -> Result<()> {
    link_logs_and_time(l)?;
    link_buffers(l)?;
    link_header_maps(l)?;
    link_properties(l)?;
    link_shared_data(l)?;
    link_stream_control(l)?;
    link_http_calls(l)?;
    link_contexts(l)?;
    link_metrics(l)
}

/// Logs, the clock and the tick period.
fn link_logs_and_time(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(ENV, "proxy_log", |c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
        let message = read_str(&c, ptr, len)?;
        let mut c = c;
        let Some(level) = LogLevel::from_raw(level) else {
            c.data_mut().note(format!("proxy_log with unknown level {level}"));
            return Ok(status::BAD_ARGUMENT);
        };
        c.data_mut().logs.push(LogLine { level, message });
        Ok(status::OK)
    })?;
    l.func_wrap(ENV, "proxy_get_log_level", |mut c: C<'_>, ret: i32| -> Result<i32> {
        let level = c.data().log_level as u32;
        write_u32(&mut c, ret, level)?;
        Ok(status::OK)
    })?;
    l.func_wrap(ENV, "proxy_get_current_time_nanoseconds", |mut c: C<'_>, ret: i32| -> Result<i32> {
        let now = c.data().harness.clock_nanos.get();
        write_u64(&mut c, ret, now)?;
        Ok(status::OK)
    })?;
    l.func_wrap(ENV, "proxy_set_tick_period_milliseconds", |mut c: C<'_>, period: i32| -> Result<i32> {
        c.data_mut().tick_period_ms = Some(period as u32).filter(|p| *p > 0);
        Ok(status::OK)
    })?;
    Ok(())
}

/// Body buffers: request, response, call response, configurations.
fn link_buffers(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        ENV,
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let kind = buffer_kind(kind);
            let Some(buffer) = buffer_ref(c.data(), kind) else {
                return Ok(status::NOT_FOUND);
            };
            let (start, max) = (u64::from(start as u32), u64::from(max as u32));
            let len = buffer.len() as u64;
            if start >= len || max == 0 {
                return Ok(status::OK); // Envoy copies nothing and leaves the out-params alone.
            }
            let end = start.saturating_add(max).min(len);
            let slice = buffer.get(start as usize..end as usize).map(<[u8]>::to_vec).unwrap_or_default();
            copy_out(&mut c, &slice, ret_ptr, ret_size)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        ENV,
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, kind: i32, start: i32, size: i32, data: i32, data_len: i32| -> Result<i32> {
            let bytes = read(&c, data, data_len)?;
            let kind = buffer_kind(kind);
            let state = c.data_mut();
            let effective = state.effective;
            let body = match (kind, state.streams.get_mut(&effective)) {
                (BufferKind::RequestBody | BufferKind::ResponseBody, Some(stream)) => {
                    let available = body_ref(stream, kind).is_some();
                    let direction =
                        if kind == BufferKind::RequestBody { &mut stream.request } else { &mut stream.response };
                    available.then_some(&mut direction.buffer)
                }
                _ => None,
            };
            let Some(body) = body else {
                state.note(format!("proxy_set_buffer_bytes({kind:?}): no such buffer in this callback"));
                return Ok(status::NOT_FOUND);
            };
            // Envoy's Buffer::copyFrom: start 0 drains `size` bytes then prepends; start at or past
            // the end appends; anything else is refused.
            let (start, size) = (start as u32 as usize, size as u32 as usize);
            if start == 0 {
                let drain = size.min(body.len());
                body.splice(..drain, bytes);
            } else if start >= body.len() {
                body.extend_from_slice(&bytes);
            } else {
                state.note(format!(
                    "proxy_set_buffer_bytes({kind:?}, start={start}): Envoy only replaces from 0 or appends"
                ));
                return Ok(status::BAD_ARGUMENT);
            }
            Ok(status::OK)
        },
    )?;
    Ok(())
}

/// Header maps: reads, edits, pairs, with Envoy's reachability rules.
fn link_header_maps(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        ENV,
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, kind: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let Some(kind) = map_kind(kind) else {
                c.data_mut().note(format!("proxy_get_header_map_pairs: unsupported map type {kind}"));
                return Ok(status::BAD_ARGUMENT);
            };
            let bytes = serialize_map(map_ref(c.data(), kind).unwrap_or(&Headers::new()));
            copy_out(&mut c, &bytes, ret_ptr, ret_size)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(ENV, "proxy_set_header_map_pairs", |mut c: C<'_>, kind: i32, ptr: i32, len: i32| -> Result<i32> {
        let bytes = read(&c, ptr, len)?;
        let pairs = deserialize_map(&bytes).map_err(Error::msg)?;
        let state = c.data_mut();
        let Some(kind) = map_kind(kind) else {
            state.note(format!("proxy_set_header_map_pairs: unsupported map type {kind}"));
            return Ok(status::BAD_ARGUMENT);
        };

        match map_mut(state, kind) {
            Ok(map) => {
                *map = Headers::from_owned(pairs);
                Ok(status::OK)
            }
            Err(why) => {
                state.note(format!("proxy_set_header_map_pairs: {why}"));
                Ok(status::BAD_ARGUMENT)
            }
        }
    })?;
    l.func_wrap(
        ENV,
        "proxy_get_header_map_value",
        |mut c: C<'_>, kind: i32, key: i32, key_len: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let key = read_str(&c, key, key_len)?;
            let Some(kind) = map_kind(kind) else {
                c.data_mut().note(format!("proxy_get_header_map_value: unsupported map type {kind}"));
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(map) = map_ref(c.data(), kind) else {
                if c.data().callback == "proxy_on_log" {
                    return Ok(status::NOT_FOUND);
                }
                let why = unavailable(kind, c.data());
                c.data_mut().note(format!("proxy_get_header_map_value({key}): {why}"));
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(value) = map.get(&key).map(|v| v.as_bytes().to_vec()) else {
                return Ok(status::NOT_FOUND);
            };
            copy_out(&mut c, &value, ret_ptr, ret_size)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        ENV,
        "proxy_replace_header_map_value",
        |mut c: C<'_>, kind: i32, key: i32, key_len: i32, value: i32, value_len: i32| -> Result<i32> {
            let key = read_str(&c, key, key_len)?;
            let value = read_str(&c, value, value_len)?;
            edit_map(c.data_mut(), "proxy_replace_header_map_value", kind, |map| map.replace(&key, value))
        },
    )?;
    l.func_wrap(
        ENV,
        "proxy_add_header_map_value",
        |mut c: C<'_>, kind: i32, key: i32, key_len: i32, value: i32, value_len: i32| -> Result<i32> {
            let key = read_str(&c, key, key_len)?;
            let value = read_str(&c, value, value_len)?;
            edit_map(c.data_mut(), "proxy_add_header_map_value", kind, |map| map.add(&key, value))
        },
    )?;
    l.func_wrap(
        ENV,
        "proxy_remove_header_map_value",
        |mut c: C<'_>, kind: i32, key: i32, key_len: i32| -> Result<i32> {
            let key = read_str(&c, key, key_len)?;
            edit_map(c.data_mut(), "proxy_remove_header_map_value", kind, |map| map.remove(&key))
        },
    )?;
    Ok(())
}

/// Properties (attributes) and filter state.
fn link_properties(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        ENV,
        "proxy_get_property",
        |mut c: C<'_>, path: i32, path_len: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let path = split_path(&read(&c, path, path_len)?);
            let effective = c.data().effective;
            match lookup_property(c.data(), effective, &path) {
                Some(value) => {
                    copy_out(&mut c, &value, ret_ptr, ret_size)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        ENV,
        "proxy_set_property",
        |mut c: C<'_>, path: i32, path_len: i32, value: i32, value_len: i32| -> Result<i32> {
            let path = split_path(&read(&c, path, path_len)?);
            let value = read(&c, value, value_len)?;
            let state = c.data_mut();
            let effective = state.effective;
            match state.streams.get_mut(&effective) {
                Some(stream) => {
                    stream.properties.insert(path, value);
                    Ok(status::OK)
                }
                None => {
                    // Envoy keeps filter state on the stream; the root context has none.
                    state.note(format!("proxy_set_property({path:?}) outside an HTTP context: Envoy answers NotFound"));
                    Ok(status::NOT_FOUND)
                }
            }
        },
    )?;
    Ok(())
}

/// Shared data with compare-and-swap, per vm_id.
fn link_shared_data(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        ENV,
        "proxy_get_shared_data",
        |mut c: C<'_>, key: i32, key_len: i32, ret_ptr: i32, ret_size: i32, ret_cas: i32| -> Result<i32> {
            let key = read_str(&c, key, key_len)?;
            let harness = c.data().harness.clone();
            let vm_id = c.data().vm_id.clone();
            let result = match harness.shared_get(&vm_id, &key) {
                Some((value, cas)) => {
                    copy_out(&mut c, &value, ret_ptr, ret_size)?;
                    write_u32(&mut c, ret_cas, cas)?;
                    status::OK
                }
                None => status::NOT_FOUND,
            };
            // Interleaving hooks: another "worker" acts between this read and the filter's write.
            for hook in harness.take_get_hooks(&vm_id, &key) {
                (hook.run)();
            }
            Ok(result)
        },
    )?;
    l.func_wrap(
        ENV,
        "proxy_set_shared_data",
        |c: C<'_>, key: i32, key_len: i32, value: i32, value_len: i32, cas: i32| -> Result<i32> {
            let key = read_str(&c, key, key_len)?;
            let value = read(&c, value, value_len)?;
            let state = c.data();
            match state.harness.shared_set(&state.vm_id, &key, &value, cas as u32) {
                Ok(()) => Ok(status::OK),
                Err(()) => Ok(status::CAS_MISMATCH),
            }
        },
    )?;
    l.func_wrap(ENV, "proxy_register_shared_queue", |_: C<'_>, _: i32, _: i32, _: i32| -> Result<i32> {
        Err(unsupported("proxy_register_shared_queue"))
    })?;
    l.func_wrap(
        ENV,
        "proxy_resolve_shared_queue",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32| -> Result<i32> {
            Err(unsupported("proxy_resolve_shared_queue"))
        },
    )?;
    l.func_wrap(ENV, "proxy_dequeue_shared_queue", |_: C<'_>, _: i32, _: i32, _: i32| -> Result<i32> {
        Err(unsupported("proxy_dequeue_shared_queue"))
    })?;
    l.func_wrap(ENV, "proxy_enqueue_shared_queue", |_: C<'_>, _: i32, _: i32, _: i32| -> Result<i32> {
        Err(unsupported("proxy_enqueue_shared_queue"))
    })?;
    Ok(())
}

/// Local replies, continue and close.
fn link_stream_control(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(ENV, "proxy_continue_stream", |mut c: C<'_>, kind: i32| -> Result<i32> {
        let state = c.data_mut();
        let effective = state.effective;
        let Some(stream) = state.streams.get_mut(&effective) else {
            state.note(format!("proxy_continue_stream({}) outside an HTTP context: ignored", stream_type_name(kind)));
            return Ok(status::OK);
        };
        // Envoy defers the continue until the current VM call returns, and stops exposing the
        // request headers at once (for either stream type: Envoy 1.40 clears the request side).
        if kind == 0 || kind == 1 {
            stream.request.exposed = false;
        }
        match kind {
            0 => stream.continue_request = true,
            1 => stream.continue_response = true,
            _ => {
                state.note(format!("proxy_continue_stream({}) is not an HTTP stream type", stream_type_name(kind)));
                return Ok(status::BAD_ARGUMENT);
            }
        }
        Ok(status::OK)
    })?;
    l.func_wrap(ENV, "proxy_close_stream", |mut c: C<'_>, kind: i32| -> Result<i32> {
        let state = c.data_mut();
        let effective = state.effective;
        match (kind, state.streams.get_mut(&effective)) {
            (0 | 1, Some(stream)) => {
                stream.closed = true;
                Ok(status::OK)
            }
            (0 | 1, None) => {
                // Envoy has no stream to reset there and answers Ok.
                state.note(format!(
                    "proxy_close_stream({}) outside an HTTP context: nothing reset",
                    stream_type_name(kind)
                ));
                Ok(status::OK)
            }
            _ => {
                state.note(format!("proxy_close_stream({}) is not an HTTP stream type", stream_type_name(kind)));
                Ok(status::BAD_ARGUMENT)
            }
        }
    })?;
    l.func_wrap(
        ENV,
        "proxy_send_local_response",
        |mut c: C<'_>,
         status_code: i32,
         details: i32,
         details_len: i32,
         body: i32,
         body_len: i32,
         headers: i32,
         headers_len: i32,
         grpc_status: i32|
         -> Result<i32> {
            let details = read_str(&c, details, details_len)?;
            let body = read(&c, body, body_len)?;
            let headers = Headers::from_owned(deserialize_map(&read(&c, headers, headers_len)?).map_err(Error::msg)?);
            let state = c.data_mut();
            let effective = state.effective;
            let Some(stream) = state.streams.get_mut(&effective) else {
                // Envoy answers Ok and sends nothing: there is no stream to reply on.
                state.note("proxy_send_local_response outside an HTTP context: nothing sent".to_string());
                return Ok(status::OK);
            };
            if stream.local_reply.is_some() {
                state.note("a second proxy_send_local_response on the same stream: ignored".to_string());
                return Ok(status::OK);
            }
            stream.reply_pending = true;
            stream.local_reply =
                Some(crate::LocalReply { status: status_code as u32, headers, body, details, grpc_status });
            Ok(status::OK)
        },
    )?;
    Ok(())
}

/// HTTP calls (dispatch_http_call) and their answers.
fn link_http_calls(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        ENV,
        "proxy_http_call",
        |mut c: C<'_>,
         upstream: i32,
         upstream_len: i32,
         headers: i32,
         headers_len: i32,
         body: i32,
         body_len: i32,
         trailers: i32,
         trailers_len: i32,
         timeout_ms: i32,
         ret_token: i32|
         -> Result<i32> {
            let cluster = read_str(&c, upstream, upstream_len)?;
            let headers = Headers::from_owned(deserialize_map(&read(&c, headers, headers_len)?).map_err(Error::msg)?);
            let body = read(&c, body, body_len)?;
            let trailers =
                Headers::from_owned(deserialize_map(&read(&c, trailers, trailers_len)?).map_err(Error::msg)?);
            let state = c.data_mut();
            if let Some(known) = &state.clusters {
                if !known.contains(&cluster) {
                    state.note(format!("proxy_http_call to unknown cluster `{cluster}`"));
                    return Ok(status::BAD_ARGUMENT);
                }
            }
            // Envoy refuses a call without :method, :path and :authority.
            for required in [":method", ":path", ":authority"] {
                if !headers.contains(required) {
                    state.note(format!("proxy_http_call to `{cluster}` without the `{required}` header"));
                    return Ok(status::BAD_ARGUMENT);
                }
            }
            let mut headers = headers;
            if !body.is_empty() {
                // Envoy sets it on the outgoing call.
                headers.replace("content-length", body.len().to_string());
            }
            let token = state.next_token;
            state.next_token += 1;
            let context_id = state.effective;
            state.http_calls.push(HttpCall {
                token,
                context_id,
                cluster,
                headers,
                body,
                trailers,
                timeout_ms: timeout_ms as u32,
                answered: false,
            });
            write_u32(&mut c, ret_token, token)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        ENV,
        "proxy_grpc_call",
        |mut c: C<'_>,
         upstream: i32,
         upstream_len: i32,
         service: i32,
         service_len: i32,
         method: i32,
         method_len: i32,
         _metadata: i32,
         _metadata_len: i32,
         message: i32,
         message_len: i32,
         timeout_ms: i32,
         ret_token: i32|
         -> Result<i32> {
            let cluster = read_str(&c, upstream, upstream_len)?;
            let service = read_str(&c, service, service_len)?;
            let method = read_str(&c, method, method_len)?;
            let message = read(&c, message, message_len)?;
            let state = c.data_mut();
            if let Some(known) = &state.clusters {
                if !known.contains(&cluster) {
                    // Envoy answers a call to a cluster it does not have with BadArgument (which the
                    // Rust SDK's dispatch_grpc_call turns into a panic).
                    state.note(format!("proxy_grpc_call to unknown cluster `{cluster}`"));
                    return Ok(status::BAD_ARGUMENT);
                }
            }
            let token = state.next_token;
            state.next_token += 1;
            let context_id = state.effective;
            state.grpc_calls.push(crate::state::GrpcCall {
                token,
                context_id,
                cluster,
                service,
                method,
                message,
                timeout_ms: timeout_ms as u32,
                answered: false,
            });
            write_u32(&mut c, ret_token, token)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        ENV,
        "proxy_grpc_stream",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> Result<i32> {
            Err(unsupported("proxy_grpc_stream"))
        },
    )?;
    l.func_wrap(ENV, "proxy_grpc_send", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| -> Result<i32> {
        Err(unsupported("proxy_grpc_send"))
    })?;
    l.func_wrap(ENV, "proxy_grpc_cancel", |_: C<'_>, _: i32| -> Result<i32> { Err(unsupported("proxy_grpc_cancel")) })?;
    l.func_wrap(ENV, "proxy_grpc_close", |_: C<'_>, _: i32| -> Result<i32> { Err(unsupported("proxy_grpc_close")) })?;
    l.func_wrap(ENV, "proxy_get_status", |_: C<'_>, _: i32, _: i32, _: i32| -> Result<i32> {
        Err(unsupported("proxy_get_status (gRPC status)"))
    })?;
    Ok(())
}

/// Effective context, foreign functions, and the calls that are stubs.
fn link_contexts(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(ENV, "proxy_set_effective_context", |mut c: C<'_>, context: i32| -> Result<i32> {
        let state = c.data_mut();
        let context = context as u32;
        if context == state.root_id || state.streams.contains_key(&context) {
            state.effective = context;
            Ok(status::OK)
        } else {
            state.note(format!("proxy_set_effective_context({context}): no such context"));
            Ok(status::BAD_ARGUMENT)
        }
    })?;
    l.func_wrap(ENV, "proxy_done", |_: C<'_>| -> Result<i32> { Ok(status::OK) })?;
    l.func_wrap(
        ENV,
        "proxy_call_foreign_function",
        |mut c: C<'_>,
         name: i32,
         name_len: i32,
         args: i32,
         args_len: i32,
         _ret_ptr: i32,
         _ret_size: i32|
         -> Result<i32> {
            let name = read_str(&c, name, name_len)?;
            let arguments = read(&c, args, args_len)?;
            let state = c.data_mut();
            let context_id = state.effective;
            let known = matches!(name.as_str(), "clear_route_cache" | "set_envoy_filter_state" | "declare_property");
            state.foreign_calls.push(ForeignCall { context_id, name: name.clone(), arguments });
            if known {
                Ok(status::OK)
            } else {
                state.note(format!("proxy_call_foreign_function(`{name}`): Envoy has no such function"));
                Ok(status::NOT_FOUND)
            }
        },
    )?;
    Ok(())
}

/// Metrics, stored in the harness: Envoy's workers share one stats store.
fn link_metrics(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        ENV,
        "proxy_define_metric",
        |mut c: C<'_>, kind: i32, name: i32, name_len: i32, ret_id: i32| -> Result<i32> {
            let name = read_str(&c, name, name_len)?;
            let state = c.data_mut();
            let Some(kind) = MetricKind::from_raw(kind) else {
                state.note(format!("proxy_define_metric(`{name}`) with unknown type {kind}"));
                return Ok(status::BAD_ARGUMENT);
            };
            {
                let mut stats = state.harness.stats.borrow_mut();
                match kind {
                    MetricKind::Counter => {
                        stats.counters.entry(name.clone()).or_insert(0);
                    }
                    MetricKind::Gauge => {
                        stats.gauges.entry(name.clone()).or_insert(0);
                    }
                    MetricKind::Histogram => {
                        stats.histograms.entry(name.clone()).or_default();
                    }
                }
            }
            let id = state.next_metric_id;
            state.next_metric_id += 1;
            state.metric_ids.insert(id, (kind, name));
            write_u32(&mut c, ret_id, id)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(ENV, "proxy_increment_metric", |mut c: C<'_>, id: i32, offset: i64| -> Result<i32> {
        let state = c.data_mut();
        let Some((kind, name)) = state.metric_ids.get(&(id as u32)).cloned() else {
            return Ok(status::NOT_FOUND);
        };
        let result = {
            let mut stats = state.harness.stats.borrow_mut();
            match kind {
                MetricKind::Counter if offset > 0 => {
                    let value = stats.counters.entry(name.clone()).or_insert(0);
                    *value = value.saturating_add(offset.unsigned_abs());
                    status::OK
                }
                MetricKind::Counter | MetricKind::Histogram => status::BAD_ARGUMENT,
                MetricKind::Gauge => {
                    let value = stats.gauges.entry(name.clone()).or_insert(0);
                    *value = value.saturating_add(offset);
                    status::OK
                }
            }
        };
        if result != status::OK {
            state.note(format!(
                "proxy_increment_metric(`{name}`, {offset}) refused: {kind:?} (Envoy counters only go up)"
            ));
        }
        Ok(result)
    })?;
    l.func_wrap(ENV, "proxy_record_metric", |mut c: C<'_>, id: i32, value: i64| -> Result<i32> {
        let state = c.data_mut();
        let Some((kind, name)) = state.metric_ids.get(&(id as u32)).cloned() else {
            return Ok(status::NOT_FOUND);
        };
        let value = value as u64;
        let mut stats = state.harness.stats.borrow_mut();
        match kind {
            MetricKind::Counter => {
                let counter = stats.counters.entry(name).or_insert(0);
                *counter = counter.saturating_add(value);
            }
            MetricKind::Gauge => {
                stats.gauges.insert(name, value as i64);
            }
            MetricKind::Histogram => stats.histograms.entry(name).or_default().push(value),
        }
        Ok(status::OK)
    })?;
    l.func_wrap(ENV, "proxy_get_metric", |mut c: C<'_>, id: i32, ret: i32| -> Result<i32> {
        let state = c.data();
        let Some((kind, name)) = state.metric_ids.get(&(id as u32)).cloned() else {
            return Ok(status::NOT_FOUND);
        };
        let value = {
            let stats = state.harness.stats.borrow();
            match kind {
                MetricKind::Counter => stats.counters.get(&name).copied(),
                MetricKind::Gauge => stats.gauges.get(&name).map(|g| *g as u64),
                MetricKind::Histogram => None,
            }
        };
        match value {
            Some(value) => {
                write_u64(&mut c, ret, value)?;
                Ok(status::OK)
            }
            None => Ok(status::BAD_ARGUMENT),
        }
    })?;
    Ok(())
}

fn edit_map(state: &mut HostState, call: &str, kind: i32, edit: impl FnOnce(&mut Headers)) -> Result<i32> {
    let Some(kind) = map_kind(kind) else {
        state.note(format!("{call}: unsupported map type {kind}"));
        return Ok(status::BAD_ARGUMENT);
    };

    match map_mut(state, kind) {
        Ok(map) => {
            edit(map);
            Ok(status::OK)
        }
        Err(why) => {
            state.note(format!("{call}: {why}"));
            Ok(status::BAD_ARGUMENT)
        }
    }
}

// WASI errno values.
const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;

fn link_wasi(l: &mut Linker<HostState>) -> Result<()> {
    // No environment and no arguments, like Envoy.
    for name in ["environ_sizes_get", "args_sizes_get"] {
        l.func_wrap(WASI, name, |mut c: C<'_>, count: i32, size: i32| -> Result<i32> {
            write_u32(&mut c, count, 0)?;
            write_u32(&mut c, size, 0)?;
            Ok(ESUCCESS)
        })?;
    }
    for name in ["environ_get", "args_get"] {
        l.func_wrap(WASI, name, |_: C<'_>, _: i32, _: i32| -> Result<i32> { Ok(ESUCCESS) })?;
    }
    l.func_wrap(WASI, "fd_write", |mut c: C<'_>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| -> Result<i32> {
        if fd != 1 && fd != 2 {
            return Ok(EBADF);
        }
        let mut text = Vec::new();
        for i in 0..iovs_len {
            let iov = read(&c, iovs.wrapping_add(i * 8), 8)?;
            let word =
                |at: usize| iov.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_le_bytes);
            let (Some(ptr), Some(len)) = (word(0), word(4)) else {
                return Err(Error::msg("fd_write: bad iovec"));
            };
            text.extend(read(&c, ptr as i32, len as i32)?);
        }
        write_u32(&mut c, nwritten, text.len() as u32)?;
        // Envoy logs a filter's stdout at info and stderr at error.
        let level = if fd == 1 { LogLevel::Info } else { LogLevel::Error };
        let message = String::from_utf8_lossy(&text).trim_end_matches('\n').to_string();
        c.data_mut().logs.push(LogLine { level, message });
        Ok(ESUCCESS)
    })?;
    l.func_wrap(WASI, "proc_exit", |_: C<'_>, code: i32| -> Result<()> {
        Err(Error::msg(format!("the filter called WASI proc_exit({code})")))
    })?;
    l.func_wrap(WASI, "clock_time_get", |mut c: C<'_>, _clock: i32, _precision: i64, ret: i32| -> Result<i32> {
        let now = c.data().harness.clock_nanos.get();
        write_u64(&mut c, ret, now)?;
        Ok(ESUCCESS)
    })?;
    l.func_wrap(WASI, "clock_res_get", |mut c: C<'_>, _clock: i32, ret: i32| -> Result<i32> {
        write_u64(&mut c, ret, 1)?;
        Ok(ESUCCESS)
    })?;
    l.func_wrap(WASI, "random_get", |mut c: C<'_>, buf: i32, len: i32| -> Result<i32> {
        let mut bytes = vec![0u8; len as u32 as usize];
        random_fill(c.data_mut(), &mut bytes);
        write(&mut c, buf, &bytes)?;
        Ok(ESUCCESS)
    })?;
    l.func_wrap(WASI, "sched_yield", |_: C<'_>| -> Result<i32> { Ok(ESUCCESS) })?;
    // No files: stdio only, no preopened directories.
    l.func_wrap(WASI, "fd_prestat_get", |_: C<'_>, _: i32, _: i32| -> Result<i32> { Ok(EBADF) })?;
    l.func_wrap(WASI, "fd_prestat_dir_name", |_: C<'_>, _: i32, _: i32, _: i32| -> Result<i32> { Ok(EBADF) })?;
    l.func_wrap(WASI, "fd_close", |_: C<'_>, _: i32| -> Result<i32> { Ok(EBADF) })?;
    l.func_wrap(WASI, "fd_read", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| -> Result<i32> { Ok(EBADF) })?;
    l.func_wrap(WASI, "fd_seek", |_: C<'_>, _: i32, _: i64, _: i32, _: i32| -> Result<i32> { Ok(EBADF) })?;
    l.func_wrap(WASI, "fd_fdstat_get", |mut c: C<'_>, fd: i32, ret: i32| -> Result<i32> {
        if !(0..=2).contains(&fd) {
            return Ok(EBADF);
        }
        // filetype character device (2), no flags, no rights: enough for stdio.
        let mut stat = [0u8; 24];
        stat[0] = 2;
        write(&mut c, ret, &stat)?;
        Ok(ESUCCESS)
    })?;
    l.func_wrap(WASI, "poll_oneoff", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| -> Result<i32> {
        Err(unsupported("poll_oneoff"))
    })?;
    Ok(())
}
