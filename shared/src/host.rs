//! The host seam: the few host calls the filters' logic needs, behind a trait.
//!
//! Filter logic takes `&dyn Host` (or `impl Host`) instead of calling
//! proxy-wasm directly, so it runs natively in unit tests against
//! [`fake::FakeHost`]. [`ProxyWasmHost`] is the real implementation.

use crate::counter::{SharedStore, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

/// What filter logic may ask of the host.
pub trait Host: SharedStore {
    /// Nanoseconds since the Unix epoch, from the host's clock.
    fn now_nanos(&self) -> u64;
    /// A request header, if present and valid UTF-8.
    fn request_header(&self, name: &str) -> Option<String>;
    /// A property (attribute) in Envoy's serialisation, e.g. `["xds", "route_name"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Adds `by` to a counter, defining it on first use.
    fn increment_counter(&self, name: &str, by: u64);
    /// Records a value in a histogram, defining it on first use.
    fn record_histogram(&self, name: &str, value: u64);
    /// Sets a gauge, defining it on first use.
    fn set_gauge(&self, name: &str, value: u64);
}

/// The real host: proxy-wasm hostcalls.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyWasmHost;

/// Envoy keeps every metric a VM defines for the life of the VM. Names built
/// from request data (model names, keys) are capped so that a client cannot
/// grow the stats table without bound; past the cap, they are dropped.
pub const MAX_METRICS_PER_VM: usize = 2048;

/// The ids of the metrics this VM defined: one map per kind, keyed by name, so a lookup
/// borrows the name (no allocation) and a metric is defined with the host once per VM.
#[derive(Default)]
struct MetricIds {
    counters: HashMap<String, u32>,
    histograms: HashMap<String, u32>,
    gauges: HashMap<String, u32>,
}

thread_local! {
    // Wasm VMs are single-threaded: one table per VM.
    static METRIC_IDS: RefCell<MetricIds> = RefCell::new(MetricIds::default());
}

fn metric_id(name: &str, kind: MetricType) -> Option<u32> {
    METRIC_IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let total = ids.counters.len() + ids.histograms.len() + ids.gauges.len();
        let map = match kind {
            MetricType::Counter => &mut ids.counters,
            MetricType::Histogram => &mut ids.histograms,
            MetricType::Gauge => &mut ids.gauges,
            // A kind added to proxy-wasm later: not cached, never defined by these filters.
            _ => return hostcalls::define_metric(kind, name).ok(),
        };
        if let Some(id) = map.get(name) {
            return Some(*id);
        }
        if total >= MAX_METRICS_PER_VM {
            return None;
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        map.insert(name.to_string(), id);
        Some(id)
    })
}

impl SharedStore for ProxyWasmHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Failed),
        }
    }
}

impl Host for ProxyWasmHost {
    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn request_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name).ok().flatten()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn increment_counter(&self, name: &str, by: u64) {
        // Defined even when `by` is 0, so the stat exists (at 0) for dashboards; adding 0
        // would be a host call that changes nothing (and Envoy refuses it).
        if let Some(id) = metric_id(name, MetricType::Counter).filter(|_| by > 0) {
            let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    fn record_histogram(&self, name: &str, value: u64) {
        if let Some(id) = metric_id(name, MetricType::Histogram) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn set_gauge(&self, name: &str, value: u64) {
        if let Some(id) = metric_id(name, MetricType::Gauge) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// The real host, with the request headers captured at their callback.
///
/// Envoy exposes the request headers only until their callback continues
/// (a later read fails and the SDK aborts the VM), and the aigw filters never
/// pause them (see `crate::gate`). Logic that runs when the body is complete
/// and reads a request header (routing rules, template variables, budget
/// keys) reads this copy instead.
#[derive(Debug, Default, Clone)]
pub struct CapturedHost {
    /// Lower-case names, in order.
    headers: std::rc::Rc<Vec<(String, String)>>,
}

impl CapturedHost {
    /// Captures the current request headers (call in the request headers callback).
    pub fn capture() -> Self {
        let pairs = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
        let headers = pairs.into_iter().map(|(name, value)| (name.to_ascii_lowercase(), value)).collect();
        CapturedHost { headers: std::rc::Rc::new(headers) }
    }

    /// This copy with `name` set to `value`, or removed: what the request holds after that edit.
    pub fn edited(&self, name: &str, value: Option<&str>) -> Self {
        let name = name.to_ascii_lowercase();
        let mut headers: Vec<(String, String)> = self.headers.iter().filter(|(key, _)| *key != name).cloned().collect();
        if let Some(value) = value {
            headers.push((name, value.to_string()));
        }
        CapturedHost { headers: std::rc::Rc::new(headers) }
    }

    /// The first value of a captured header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

impl SharedStore for CapturedHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        ProxyWasmHost.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        ProxyWasmHost.set(key, value, cas)
    }
}

impl Host for CapturedHost {
    fn now_nanos(&self) -> u64 {
        ProxyWasmHost.now_nanos()
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.header(name).map(str::to_string)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        ProxyWasmHost.property(path)
    }

    fn increment_counter(&self, name: &str, by: u64) {
        ProxyWasmHost.increment_counter(name, by)
    }

    fn record_histogram(&self, name: &str, value: u64) {
        ProxyWasmHost.record_histogram(name, value)
    }

    fn set_gauge(&self, name: &str, value: u64) {
        ProxyWasmHost.set_gauge(name, value)
    }
}

/// Writes a log line through the host. Callers must never pass prompt text,
/// matched values or credentials: log what happened and where, not the data.
pub fn log(level: proxy_wasm::types::LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Makes a value safe as one segment of a metric name: Envoy splits names on
/// `.` and tag extraction regexes expect `[A-Za-z0-9_-]`. Long values are cut.
pub fn metric_segment(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

#[cfg(any(test, feature = "testing"))]
pub mod fake {
    //! An in-memory host for native unit tests.
    use super::Host;
    use crate::counter::memory::MemoryStore;
    use crate::counter::{SharedStore, StoreError};
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    #[derive(Debug, Default)]
    pub struct FakeHost {
        pub now_nanos: Cell<u64>,
        pub headers: HashMap<String, String>,
        pub properties: HashMap<Vec<String>, Vec<u8>>,
        pub store: MemoryStore,
        pub counters: RefCell<HashMap<String, u64>>,
        pub histograms: RefCell<HashMap<String, Vec<u64>>>,
        pub gauges: RefCell<HashMap<String, u64>>,
    }

    impl FakeHost {
        pub fn new() -> Self {
            Self::default()
        }

        pub fn with_header(mut self, name: &str, value: &str) -> Self {
            self.headers.insert(name.to_ascii_lowercase(), value.to_string());
            self
        }

        pub fn with_property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
            self.properties.insert(path.iter().map(|s| s.to_string()).collect(), value.into());
            self
        }

        pub fn with_time_nanos(self, nanos: u64) -> Self {
            self.now_nanos.set(nanos);
            self
        }

        pub fn counter(&self, name: &str) -> u64 {
            self.counters.borrow().get(name).copied().unwrap_or(0)
        }

        pub fn gauge(&self, name: &str) -> Option<u64> {
            self.gauges.borrow().get(name).copied()
        }
    }

    impl SharedStore for FakeHost {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.store.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.store.set(key, value, cas)
        }
    }

    impl Host for FakeHost {
        fn now_nanos(&self) -> u64 {
            self.now_nanos.get()
        }
        fn request_header(&self, name: &str) -> Option<String> {
            self.headers.get(&name.to_ascii_lowercase()).cloned()
        }
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            self.properties.get(&key).cloned()
        }
        fn increment_counter(&self, name: &str, by: u64) {
            *self.counters.borrow_mut().entry(name.to_string()).or_insert(0) += by;
        }
        fn record_histogram(&self, name: &str, value: u64) {
            self.histograms.borrow_mut().entry(name.to_string()).or_default().push(value);
        }
        fn set_gauge(&self, name: &str, value: u64) {
            self.gauges.borrow_mut().insert(name.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeHost;
    use super::*;

    #[test]
    fn metric_segments_are_sanitised() {
        assert_eq!(metric_segment("gpt-4o.mini/2024"), "gpt-4o_mini_2024");
        assert_eq!(metric_segment(""), "unknown");
        assert_eq!(metric_segment(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn fake_host_records() {
        let host = FakeHost::new().with_header("X-Team", "blue").with_property(&["xds", "route_name"], "r1");
        assert_eq!(host.request_header("x-team").as_deref(), Some("blue"));
        assert_eq!(host.property(&["xds", "route_name"]), Some(b"r1".to_vec()));
        host.increment_counter("c", 2);
        host.increment_counter("c", 3);
        assert_eq!(host.counter("c"), 5);
    }
}
