//! The two messages of Envoy's rate limit service API, encoded and decoded
//! by hand: `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
//!
//! token-counter (the client, inside Wasm) and our Redis-backed service (the
//! server, `tools/ratelimit-redis`) both use this module, so the two sides
//! cannot drift. A protobuf crate would bring code generation and a runtime
//! into the filter for five small messages; the subset below is what the
//! protocol needs, and fields this module does not know are skipped as the
//! protobuf rules require (so a newer service or client still interoperates).
//!
//! Field numbers, from `api/envoy/service/ratelimit/v3/rls.proto` and
//! `api/envoy/extensions/common/ratelimit/v3/ratelimit.proto`:
//!
//! ```text
//! RateLimitRequest     domain = 1 (string), descriptors = 2 (RateLimitDescriptor), hits_addend = 3 (uint32)
//! RateLimitDescriptor  entries = 1 (Entry {key = 1, value = 2}), limit = 2 (RateLimitOverride)
//! RateLimitOverride    requests_per_unit = 1 (uint32), unit = 2 (enum RateLimitUnit)
//! RateLimitResponse    overall_code = 1 (enum Code), statuses = 2 (DescriptorStatus)
//! DescriptorStatus     code = 1, current_limit = 2 (RateLimit {requests_per_unit = 1, unit = 2}),
//!                      limit_remaining = 3 (uint32), duration_until_reset = 4 (Duration {seconds = 1, nanos = 2})
//! ```

/// The gRPC service and method names for `dispatch_grpc_call`.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// The HTTP/2 path of the method.
pub const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// aigw's two extensions of the protocol, which our service
/// (`tools/ratelimit-redis`) understands and a stock service leaves harmless:
///
/// - A request that also carries the descriptor `[(OP_KEY, OP_RESERVE)]` is
///   a *reservation*: refused without being counted when it does not fit. A
///   request without it counts its hits whatever the outcome, as
///   envoyproxy/ratelimit does (a stock service sees a descriptor it has no
///   limit for, and answers OK for it).
/// - A descriptor whose last entry is `(REFUND_KEY, "<unit>/<window>")`
///   gives `hits_addend` back to the same descriptor without that entry, in
///   the fixed window `window` of `unit` (numbers as in [`Unit`]), floored at
///   zero. It carries no limit override, so a stock service that does not
///   know it matches no limit and counts nothing: returns are lost, never
///   double-charged.
pub const OP_KEY: &str = "aigw_op";
pub const OP_RESERVE: &str = "reserve";
pub const REFUND_KEY: &str = "aigw_refund";

/// The value of a [`REFUND_KEY`] entry.
pub fn refund_value(unit: Unit, window: u64) -> String {
    format!("{}/{window}", unit.number())
}

/// Reads a [`REFUND_KEY`] value back.
pub fn parse_refund_value(value: &str) -> Option<(Unit, u64)> {
    let (unit, window) = value.split_once('/')?;
    let unit = Unit::from_number(unit.parse().ok()?);
    unit.seconds()?;
    Some((unit, window.parse().ok()?))
}

/// `RateLimitUnit` (`type.v3.RateLimitUnit` and `RateLimitResponse.RateLimit.Unit` share the numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Unknown,
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Unit {
    pub fn number(self) -> u64 {
        match self {
            Unit::Unknown => 0,
            Unit::Second => 1,
            Unit::Minute => 2,
            Unit::Hour => 3,
            Unit::Day => 4,
            Unit::Month => 5,
            Unit::Year => 6,
        }
    }

    pub fn from_number(number: u64) -> Unit {
        match number {
            1 => Unit::Second,
            2 => Unit::Minute,
            3 => Unit::Hour,
            4 => Unit::Day,
            5 => Unit::Month,
            6 => Unit::Year,
            _ => Unit::Unknown,
        }
    }

    /// Length of a fixed window of this unit (months and years have none).
    pub fn seconds(self) -> Option<u64> {
        match self {
            Unit::Second => Some(1),
            Unit::Minute => Some(60),
            Unit::Hour => Some(3600),
            Unit::Day => Some(86_400),
            Unit::Unknown | Unit::Month | Unit::Year => None,
        }
    }
}

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown,
    Ok,
    OverLimit,
}

impl Code {
    pub fn number(self) -> u64 {
        match self {
            Code::Unknown => 0,
            Code::Ok => 1,
            Code::OverLimit => 2,
        }
    }

    pub fn from_number(number: u64) -> Code {
        match number {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// `RateLimitDescriptor.RateLimitOverride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOverride {
    pub requests_per_unit: u32,
    pub unit: Unit,
}

/// `RateLimitDescriptor`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Descriptor {
    pub entries: Vec<(String, String)>,
    pub limit: Option<LimitOverride>,
}

impl Descriptor {
    /// The value of the entry `key`, if any.
    pub fn entry(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}

/// `RateLimitRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub domain: String,
    pub descriptors: Vec<Descriptor>,
    /// 0 means "not set": the service counts 1.
    pub hits_addend: u32,
}

/// `RateLimitResponse.DescriptorStatus` (the fields we use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub current_limit: Option<LimitOverride>,
    pub limit_remaining: u32,
    pub duration_until_reset_seconds: Option<u64>,
}

/// `RateLimitResponse` (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub overall_code: Code,
    pub statuses: Vec<Status>,
}

/// Why bytes did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed protobuf message")
    }
}

// ---- wire format -------------------------------------------------------

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;
const FIXED32: u64 = 5;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    put_varint(out, (field << 3) | wire_type);
}

/// A varint field; proto3 leaves zero values out.
fn put_uint(out: &mut Vec<u8>, field: u64, value: u64) {
    if value != 0 {
        put_tag(out, field, VARINT);
        put_varint(out, value);
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_tag(out, field, LENGTH_DELIMITED);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads fields one by one, skipping the wire types it is not asked about.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

enum Value<'a> {
    Uint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(DecodeError)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(len).ok_or(DecodeError)?;
        let slice = self.bytes.get(self.at..end).ok_or(DecodeError)?;
        self.at = end;
        Ok(slice)
    }

    /// The next `(field, value)`, or `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = tag >> 3;
        if field == 0 {
            return Err(DecodeError);
        }
        let value = match tag & 7 {
            VARINT => Value::Uint(self.varint()?),
            LENGTH_DELIMITED => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError)?;
                Value::Bytes(self.take(len)?)
            }
            FIXED64 => {
                self.take(8)?;
                Value::Other
            }
            FIXED32 => {
                self.take(4)?;
                Value::Other
            }
            _ => return Err(DecodeError),
        };
        Ok(Some((field, value)))
    }
}

fn text(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError)
}

fn small(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

// ---- request -----------------------------------------------------------

fn encode_limit(limit: &LimitOverride) -> Vec<u8> {
    let mut out = Vec::new();
    put_uint(&mut out, 1, u64::from(limit.requests_per_unit));
    put_uint(&mut out, 2, limit.unit.number());
    out
}

fn decode_limit(bytes: &[u8]) -> Result<LimitOverride, DecodeError> {
    let mut limit = LimitOverride { requests_per_unit: 0, unit: Unit::Unknown };
    let mut reader = Reader::new(bytes);
    while let Some((field, value)) = reader.next_field()? {
        match (field, value) {
            (1, Value::Uint(n)) => limit.requests_per_unit = small(n),
            (2, Value::Uint(n)) => limit.unit = Unit::from_number(n),
            _ => {}
        }
    }
    Ok(limit)
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.domain.is_empty() {
            put_bytes(&mut out, 1, self.domain.as_bytes());
        }
        for descriptor in &self.descriptors {
            let mut inner = Vec::new();
            for (key, value) in &descriptor.entries {
                let mut entry = Vec::new();
                put_bytes(&mut entry, 1, key.as_bytes());
                put_bytes(&mut entry, 2, value.as_bytes());
                put_bytes(&mut inner, 1, &entry);
            }
            if let Some(limit) = &descriptor.limit {
                put_bytes(&mut inner, 2, &encode_limit(limit));
            }
            put_bytes(&mut out, 2, &inner);
        }
        put_uint(&mut out, 3, u64::from(self.hits_addend));
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let mut request = Request::default();
        let mut reader = Reader::new(bytes);
        while let Some((field, value)) = reader.next_field()? {
            match (field, value) {
                (1, Value::Bytes(b)) => request.domain = text(b)?,
                (2, Value::Bytes(b)) => request.descriptors.push(decode_descriptor(b)?),
                (3, Value::Uint(n)) => request.hits_addend = small(n),
                _ => {}
            }
        }
        Ok(request)
    }
}

fn decode_descriptor(bytes: &[u8]) -> Result<Descriptor, DecodeError> {
    let mut descriptor = Descriptor::default();
    let mut reader = Reader::new(bytes);
    while let Some((field, value)) = reader.next_field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => {
                let (mut key, mut entry_value) = (String::new(), String::new());
                let mut entry = Reader::new(b);
                while let Some((field, value)) = entry.next_field()? {
                    match (field, value) {
                        (1, Value::Bytes(b)) => key = text(b)?,
                        (2, Value::Bytes(b)) => entry_value = text(b)?,
                        _ => {}
                    }
                }
                descriptor.entries.push((key, entry_value));
            }
            (2, Value::Bytes(b)) => descriptor.limit = Some(decode_limit(b)?),
            _ => {}
        }
    }
    Ok(descriptor)
}

// ---- response ----------------------------------------------------------

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_uint(&mut out, 1, self.overall_code.number());
        for status in &self.statuses {
            let mut inner = Vec::new();
            put_uint(&mut inner, 1, status.code.number());
            if let Some(limit) = &status.current_limit {
                put_bytes(&mut inner, 2, &encode_limit(limit));
            }
            put_uint(&mut inner, 3, u64::from(status.limit_remaining));
            if let Some(seconds) = status.duration_until_reset_seconds {
                let mut duration = Vec::new();
                put_uint(&mut duration, 1, seconds);
                put_bytes(&mut inner, 4, &duration);
            }
            put_bytes(&mut out, 2, &inner);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Response, DecodeError> {
        let mut response = Response { overall_code: Code::Unknown, statuses: Vec::new() };
        let mut reader = Reader::new(bytes);
        while let Some((field, value)) = reader.next_field()? {
            match (field, value) {
                (1, Value::Uint(n)) => response.overall_code = Code::from_number(n),
                (2, Value::Bytes(b)) => response.statuses.push(decode_status(b)?),
                _ => {}
            }
        }
        Ok(response)
    }
}

fn decode_status(bytes: &[u8]) -> Result<Status, DecodeError> {
    let mut status =
        Status { code: Code::Unknown, current_limit: None, limit_remaining: 0, duration_until_reset_seconds: None };
    let mut reader = Reader::new(bytes);
    while let Some((field, value)) = reader.next_field()? {
        match (field, value) {
            (1, Value::Uint(n)) => status.code = Code::from_number(n),
            // `RateLimit` has the same numbers as the override for these two fields.
            (2, Value::Bytes(b)) => status.current_limit = Some(decode_limit(b)?),
            (3, Value::Uint(n)) => status.limit_remaining = small(n),
            (4, Value::Bytes(b)) => {
                let mut seconds = 0;
                let mut duration = Reader::new(b);
                while let Some((field, value)) = duration.next_field()? {
                    if let (1, Value::Uint(n)) = (field, value) {
                        seconds = n;
                    }
                }
                status.duration_until_reset_seconds = Some(seconds);
            }
            _ => {}
        }
    }
    Ok(status)
}

// ---- gRPC framing (for the service side and tests) ---------------------

/// A gRPC message frame: not compressed, big-endian length, message.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The first complete, uncompressed message in a gRPC body, and how many
/// bytes it took; `None` while the frame is incomplete (or compressed).
pub fn grpc_unframe(body: &[u8]) -> Option<(&[u8], usize)> {
    let header = body.get(..5)?;
    if header.first() != Some(&0) {
        return None;
    }
    let len = usize::try_from(u32::from_be_bytes(header.get(1..5)?.try_into().ok()?)).ok()?;
    let message = body.get(5..5usize.checked_add(len)?)?;
    Some((message, 5 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            domain: "aigw".into(),
            descriptors: vec![Descriptor {
                entries: vec![("aigw_rule".into(), "team".into()), ("subject".into(), "alice".into())],
                limit: Some(LimitOverride { requests_per_unit: 500, unit: Unit::Hour }),
            }],
            hits_addend: 300,
        }
    }

    /// Bytes written by hand from the .proto field numbers, not by this
    /// module: a mistake in a field number or wire type fails here.
    #[test]
    fn request_bytes_match_the_proto_by_hand() {
        let entry = |k: &[u8], v: &[u8]| {
            let mut e = vec![0x0a, k.len() as u8];
            e.extend_from_slice(k);
            e.extend_from_slice(&[0x12, v.len() as u8]);
            e.extend_from_slice(v);
            e
        };
        let mut descriptor = Vec::new();
        for e in [entry(b"aigw_rule", b"team"), entry(b"subject", b"alice")] {
            descriptor.extend_from_slice(&[0x0a, e.len() as u8]); // entries = 1, length-delimited
            descriptor.extend_from_slice(&e);
        }
        // limit = 2 { requests_per_unit = 1: 500 (varint 0xf4 0x03), unit = 2: HOUR (3) }
        descriptor.extend_from_slice(&[0x12, 0x05, 0x08, 0xf4, 0x03, 0x10, 0x03]);
        let mut expected = vec![0x0a, 0x04];
        expected.extend_from_slice(b"aigw"); // domain = 1
        expected.extend_from_slice(&[0x12, descriptor.len() as u8]); // descriptors = 2
        expected.extend_from_slice(&descriptor);
        expected.extend_from_slice(&[0x18, 0xac, 0x02]); // hits_addend = 3: 300
        assert_eq!(request().encode(), expected);
        assert_eq!(Request::decode(&expected).unwrap(), request());
    }

    #[test]
    fn response_bytes_match_the_proto_by_hand() {
        // overall_code = 1: OVER_LIMIT (2); statuses = 2 { code = 1: OVER_LIMIT, current_limit = 2
        // { requests_per_unit = 1: 500, unit = 2: HOUR }, limit_remaining = 3: 7,
        // duration_until_reset = 4 { seconds = 1: 60 } }
        let bytes = [
            0x08, 0x02, 0x12, 0x0f, 0x08, 0x02, 0x12, 0x05, 0x08, 0xf4, 0x03, 0x10, 0x03, 0x18, 0x07, 0x22, 0x02, 0x08,
            0x3c,
        ];
        let response = Response {
            overall_code: Code::OverLimit,
            statuses: vec![Status {
                code: Code::OverLimit,
                current_limit: Some(LimitOverride { requests_per_unit: 500, unit: Unit::Hour }),
                limit_remaining: 7,
                duration_until_reset_seconds: Some(60),
            }],
        };
        assert_eq!(response.encode(), bytes);
        assert_eq!(Response::decode(&bytes).unwrap(), response);
    }

    #[test]
    fn unknown_fields_are_skipped_and_garbage_is_refused() {
        let mut bytes = request().encode();
        // A field 9 of every wire type a newer peer might add: varint, fixed64, bytes, fixed32.
        bytes.extend_from_slice(&[0x48, 0x01, 0x49, 0, 0, 0, 0, 0, 0, 0, 0, 0x4a, 0x01, 0xff, 0x4d, 0, 0, 0, 0]);
        assert_eq!(Request::decode(&bytes).unwrap(), request());
        // response_headers_to_add = 3 (a HeaderValue) is ignored.
        assert_eq!(
            Response::decode(&[0x08, 0x01, 0x1a, 0x02, 0x0a, 0x00]).unwrap(),
            Response { overall_code: Code::Ok, statuses: vec![] }
        );
        for garbage in [&[0x0a, 0x09, b'a'][..], &[0x80], &[0x0b], &[0x12, 0x02, 0x0a, 0x05]] {
            assert!(Request::decode(garbage).is_err(), "{garbage:?}");
        }
        assert!(Response::decode(&[0x08]).is_err());
    }

    #[test]
    fn grpc_frames_round_trip() {
        let framed = grpc_frame(b"abc");
        assert_eq!(framed, [0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(grpc_unframe(&framed), Some((&b"abc"[..], 8)));
        assert_eq!(grpc_unframe(&framed[..6]), None);
        assert_eq!(grpc_unframe(&[1, 0, 0, 0, 0]), None, "compressed frames are not read");
    }

    #[test]
    fn units_and_codes_use_the_proto_numbers() {
        for (unit, n) in [(Unit::Second, 1), (Unit::Minute, 2), (Unit::Hour, 3), (Unit::Day, 4), (Unit::Year, 6)] {
            assert_eq!((unit.number(), Unit::from_number(n)), (n, unit));
        }
        assert_eq!(Code::from_number(2), Code::OverLimit);
        assert_eq!(Unit::Hour.seconds(), Some(3600));
        assert_eq!(parse_refund_value(&refund_value(Unit::Minute, 42)), Some((Unit::Minute, 42)));
        assert_eq!(parse_refund_value("6/1"), None, "years have no fixed window");
        assert_eq!(parse_refund_value("3"), None);
    }
}
