//! Request attributes a filter can key on or read values from, named in
//! configuration as short strings:
//!
//! | config string                          | value                                                        |
//! |----------------------------------------|--------------------------------------------------------------|
//! | `header:<name>`                        | a request header                                             |
//! | `jwt:<claim>[.<sub>…]`                 | a claim verified by Envoy's `jwt_authn` (`payload_in_metadata: jwt_payload`) |
//! | `route`                                | the route name (`xds.route_name`)                            |
//! | `client_address`                       | the downstream client's IP address, without the port         |
//! | `route_metadata:<filter>:<key>[.<sub>…]` | route metadata under `filter_metadata.<filter>`            |
//! | `metadata:<filter>:<key>[.<sub>…]`     | dynamic metadata written by an earlier Envoy filter          |
//! | `filter_state:<name>`                  | a value an earlier aigw filter stored with `set_property`    |
//!
//! JWT claims are read from Envoy's metadata, never from a header, so a
//! client cannot spoof them: only `jwt_authn` writes that metadata, after it
//! has verified the token.

use crate::host::Host;
use serde::de::{self, Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;

/// The `jwt_authn` filter's name, under which it writes its metadata.
pub const JWT_AUTHN_FILTER: &str = "envoy.filters.http.jwt_authn";
/// The `payload_in_metadata` key our configs give `jwt_authn` providers.
pub const JWT_PAYLOAD_KEY: &str = "jwt_payload";

/// Where a value comes from. See the module docs for the config syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(String),
    JwtClaim(Vec<String>),
    RouteName,
    ClientAddress,
    RouteMetadata { filter: String, path: Vec<String> },
    DynamicMetadata { filter: String, path: Vec<String> },
    FilterState(String),
}

fn dotted(path: &str, what: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("{what} path `{path}` has an empty segment"));
    }
    Ok(parts)
}

fn filter_and_path(rest: &str, kind: &str) -> Result<(String, Vec<String>), String> {
    match rest.split_once(':') {
        Some((filter, path)) if !filter.is_empty() && !path.is_empty() => Ok((filter.to_string(), dotted(path, kind)?)),
        _ => Err(format!("expected `{kind}:<filter>:<key>`, got `{kind}:{rest}`")),
    }
}

impl Source {
    /// Parses a config string such as `header:x-team` or `jwt:sub`.
    pub fn parse(text: &str) -> Result<Source, String> {
        let text = text.trim();
        match text {
            "route" => return Ok(Source::RouteName),
            "client_address" => return Ok(Source::ClientAddress),
            _ => {}
        }
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(format!(
                "unknown attribute `{text}`: expected header:<name>, jwt:<claim>, route, client_address, \
                 route_metadata:<filter>:<key>, metadata:<filter>:<key> or filter_state:<name>"
            ));
        };
        if rest.is_empty() {
            return Err(format!("`{kind}:` needs a name after the colon"));
        }
        match kind {
            "header" => {
                if rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b':') {
                    Ok(Source::Header(rest.to_ascii_lowercase()))
                } else {
                    Err(format!("`{rest}` is not a valid header name"))
                }
            }
            "jwt" => Ok(Source::JwtClaim(dotted(rest, "jwt claim")?)),
            "route_metadata" => {
                let (filter, path) = filter_and_path(rest, "route_metadata")?;
                Ok(Source::RouteMetadata { filter, path })
            }
            "metadata" => {
                let (filter, path) = filter_and_path(rest, "metadata")?;
                Ok(Source::DynamicMetadata { filter, path })
            }
            "filter_state" => Ok(Source::FilterState(rest.to_string())),
            _ => Err(format!("unknown attribute kind `{kind}` in `{text}`")),
        }
    }

    /// The property path Envoy answers for this source (headers have none).
    fn property_path(&self) -> Option<Vec<&str>> {
        match self {
            Source::Header(_) => None,
            Source::JwtClaim(claim) => {
                let mut path = vec!["metadata", "filter_metadata", JWT_AUTHN_FILTER, JWT_PAYLOAD_KEY];
                path.extend(claim.iter().map(String::as_str));
                Some(path)
            }
            Source::RouteName => Some(vec!["xds", "route_name"]),
            Source::ClientAddress => Some(vec!["source", "address"]),
            Source::RouteMetadata { filter, path } => {
                let mut full = vec!["xds", "route_metadata", "filter_metadata", filter.as_str()];
                full.extend(path.iter().map(String::as_str));
                Some(full)
            }
            Source::DynamicMetadata { filter, path } => {
                let mut full = vec!["metadata", "filter_metadata", filter.as_str()];
                full.extend(path.iter().map(String::as_str));
                Some(full)
            }
            Source::FilterState(name) => Some(vec![name.as_str()]),
        }
    }

    /// The value as text: strings as they are, numbers and booleans printed.
    /// `None` when absent, empty or not representable as text.
    pub fn resolve(&self, host: &dyn Host) -> Option<String> {
        let text = match self {
            Source::Header(name) => host.request_header(name)?,
            Source::ClientAddress => strip_port(&String::from_utf8(host.property(&self.property_path()?)?).ok()?),
            _ => match self.resolve_json(host)? {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                _ => return None,
            },
        };
        if text.is_empty() {
            None
        } else {
            Some(text)
        }
    }

    /// The value as JSON: maps and lists (e.g. a JWT claim holding an
    /// allow-list) decoded from Envoy's serialisation.
    pub fn resolve_json(&self, host: &dyn Host) -> Option<Value> {
        match self {
            Source::Header(name) => host.request_header(name).map(Value::String),
            Source::ClientAddress => self.resolve(host).map(Value::String),
            _ => {
                let bytes = host.property(&self.property_path()?)?;
                Some(envoy_value::decode(&bytes))
            }
        }
    }
}

/// `10.0.0.1:5555` → `10.0.0.1`, `[::1]:5555` → `::1`; a bare address is kept.
fn strip_port(address: &str) -> String {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match address.rsplit_once(':') {
        // One colon: IPv4 with a port. More than one: a bare IPv6 address.
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
        _ => address.to_string(),
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Source::parse(&text).map_err(de::Error::custom)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Header(name) => write!(f, "header:{name}"),
            Source::JwtClaim(path) => write!(f, "jwt:{}", path.join(".")),
            Source::RouteName => write!(f, "route"),
            Source::ClientAddress => write!(f, "client_address"),
            Source::RouteMetadata { filter, path } => write!(f, "route_metadata:{filter}:{}", path.join(".")),
            Source::DynamicMetadata { filter, path } => write!(f, "metadata:{filter}:{}", path.join(".")),
            Source::FilterState(name) => write!(f, "filter_state:{name}"),
        }
    }
}

pub mod envoy_value {
    //! Envoy's serialisation of property values (its Wasm `getProperty`):
    //! strings as raw UTF-8, numbers from metadata as an 8-byte little-endian
    //! f64, booleans as one byte, maps as a serialised `google.protobuf.Struct`
    //! and lists as a serialised `google.protobuf.ListValue`.
    //!
    //! [`decode`] cannot know the type from the bytes alone; it tries the
    //! structured forms first (plain strings practically never parse as a
    //! well-formed Struct), then text.

    use serde_json::{Map, Number, Value};

    const WIRE_VARINT: u8 = 0;
    const WIRE_FIXED64: u8 = 1;
    const WIRE_LEN: u8 = 2;
    const WIRE_FIXED32: u8 = 5;

    /// Encodes a JSON value the way Envoy answers a property lookup.
    pub fn encode(value: &Value) -> Vec<u8> {
        match value {
            Value::Null => Vec::new(),
            Value::Bool(flag) => vec![u8::from(*flag)],
            Value::Number(number) => number.as_f64().unwrap_or(0.0).to_le_bytes().to_vec(),
            Value::String(text) => text.as_bytes().to_vec(),
            Value::Object(map) => encode_struct(map),
            Value::Array(items) => encode_list(items),
        }
    }

    fn push_varint(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn push_len_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
        out.push((field << 3) | WIRE_LEN);
        push_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn encode_struct(map: &Map<String, Value>) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in map {
            let mut entry = Vec::new();
            push_len_field(&mut entry, 1, key.as_bytes());
            push_len_field(&mut entry, 2, &encode_value_message(value));
            push_len_field(&mut out, 1, &entry);
        }
        out
    }

    fn encode_list(items: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            push_len_field(&mut out, 1, &encode_value_message(item));
        }
        out
    }

    /// A `google.protobuf.Value` message.
    fn encode_value_message(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        match value {
            Value::Null => {
                out.push((1 << 3) | WIRE_VARINT);
                out.push(0);
            }
            Value::Number(number) => {
                out.push((2 << 3) | WIRE_FIXED64);
                out.extend_from_slice(&number.as_f64().unwrap_or(0.0).to_le_bytes());
            }
            Value::String(text) => push_len_field(&mut out, 3, text.as_bytes()),
            Value::Bool(flag) => {
                out.push((4 << 3) | WIRE_VARINT);
                out.push(u8::from(*flag));
            }
            Value::Object(map) => push_len_field(&mut out, 5, &encode_struct(map)),
            Value::Array(items) => push_len_field(&mut out, 6, &encode_list(items)),
        }
        out
    }

    /// Decodes a property value: a Struct or ListValue when the bytes are one,
    /// otherwise UTF-8 text, otherwise an 8-byte number, otherwise null.
    pub fn decode(bytes: &[u8]) -> Value {
        if bytes.is_empty() {
            return Value::Null;
        }
        if let Some(map) = decode_struct(bytes) {
            return Value::Object(map);
        }
        if let Some(items) = decode_list(bytes) {
            return Value::Array(items);
        }
        // Booleans and numbers are binary; claims and headers are text without
        // control characters.
        let has_control = bytes.iter().any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'));
        match (bytes, <[u8; 8]>::try_from(bytes)) {
            ([flag @ (0 | 1)], _) => return Value::Bool(*flag == 1),
            (_, Ok(raw)) if has_control => {
                return Number::from_f64(f64::from_le_bytes(raw)).map(Value::Number).unwrap_or(Value::Null)
            }
            _ => {}
        }
        match std::str::from_utf8(bytes) {
            Ok(text) if !has_control => Value::String(text.to_string()),
            _ => Value::Null,
        }
    }

    struct Reader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn done(&self) -> bool {
            self.pos >= self.bytes.len()
        }

        fn varint(&mut self) -> Option<u64> {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = *self.bytes.get(self.pos)?;
                self.pos += 1;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return Some(value);
                }
            }
            None
        }

        fn take(&mut self, len: usize) -> Option<&'a [u8]> {
            let slice = self.bytes.get(self.pos..self.pos.checked_add(len)?)?;
            self.pos += len;
            Some(slice)
        }

        /// The next field's number, wire type and (for LEN fields) payload;
        /// other wire types are skipped and yield `None` as payload.
        fn field(&mut self) -> Option<(u64, u8, Option<&'a [u8]>, u64)> {
            let key = self.varint()?;
            let field = key >> 3;
            let wire = (key & 7) as u8;
            if field == 0 {
                return None;
            }
            match wire {
                WIRE_VARINT => Some((field, wire, None, self.varint()?)),
                WIRE_FIXED64 => {
                    let raw = self.take(8)?;
                    Some((field, wire, Some(raw), 0))
                }
                WIRE_LEN => {
                    let len = usize::try_from(self.varint()?).ok()?;
                    Some((field, wire, Some(self.take(len)?), 0))
                }
                WIRE_FIXED32 => {
                    self.take(4)?;
                    Some((field, wire, None, 0))
                }
                _ => None,
            }
        }
    }

    fn decode_struct(bytes: &[u8]) -> Option<Map<String, Value>> {
        let mut reader = Reader { bytes, pos: 0 };
        let mut map = Map::new();
        while !reader.done() {
            let (field, wire, payload, _) = reader.field()?;
            if field != 1 || wire != WIRE_LEN {
                return None;
            }
            let mut entry = Reader { bytes: payload?, pos: 0 };
            let mut key = None;
            let mut value = Value::Null;
            while !entry.done() {
                match entry.field()? {
                    (1, WIRE_LEN, Some(raw), _) => key = Some(std::str::from_utf8(raw).ok()?.to_string()),
                    (2, WIRE_LEN, Some(raw), _) => value = decode_value_message(raw)?,
                    _ => return None,
                }
            }
            map.insert(key?, value);
        }
        Some(map)
    }

    fn decode_list(bytes: &[u8]) -> Option<Vec<Value>> {
        let mut reader = Reader { bytes, pos: 0 };
        let mut items = Vec::new();
        while !reader.done() {
            match reader.field()? {
                (1, WIRE_LEN, Some(raw), _) => items.push(decode_value_message(raw)?),
                _ => return None,
            }
        }
        Some(items)
    }

    fn decode_value_message(bytes: &[u8]) -> Option<Value> {
        let mut reader = Reader { bytes, pos: 0 };
        let mut value = Value::Null;
        while !reader.done() {
            value = match reader.field()? {
                (1, WIRE_VARINT, _, _) => Value::Null,
                (2, WIRE_FIXED64, Some(raw), _) => {
                    let raw: [u8; 8] = raw.try_into().ok()?;
                    Number::from_f64(f64::from_le_bytes(raw)).map(Value::Number).unwrap_or(Value::Null)
                }
                (3, WIRE_LEN, Some(raw), _) => Value::String(std::str::from_utf8(raw).ok()?.to_string()),
                (4, WIRE_VARINT, _, flag) => Value::Bool(flag != 0),
                (5, WIRE_LEN, Some(raw), _) => Value::Object(decode_struct(raw)?),
                (6, WIRE_LEN, Some(raw), _) => Value::Array(decode_list(raw)?),
                _ => return None,
            };
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use serde_json::json;

    fn jwt_path(claim: &[&str]) -> Vec<&'static str> {
        let mut path = vec!["metadata", "filter_metadata", JWT_AUTHN_FILTER, JWT_PAYLOAD_KEY];
        for part in claim {
            path.push(Box::leak(part.to_string().into_boxed_str()));
        }
        path
    }

    #[test]
    fn parses_every_kind_and_displays_back() {
        for text in [
            "header:x-team",
            "jwt:sub",
            "jwt:llms.openai",
            "route",
            "client_address",
            "route_metadata:aigw:tier",
            "metadata:envoy.filters.http.ext_authz:tenant.id",
            "filter_state:aigw.pii.detected",
        ] {
            let source = Source::parse(text).unwrap();
            assert_eq!(source.to_string(), text);
        }
        assert_eq!(Source::parse("header:X-Team").unwrap(), Source::Header("x-team".into()));
    }

    #[test]
    fn rejects_bad_strings_with_reasons() {
        assert!(Source::parse("cookie:x").unwrap_err().contains("unknown attribute kind"));
        assert!(Source::parse("header:").unwrap_err().contains("needs a name"));
        assert!(Source::parse("header:bad header").unwrap_err().contains("not a valid header"));
        assert!(Source::parse("jwt:a..b").unwrap_err().contains("empty segment"));
        assert!(Source::parse("route_metadata:onlyfilter").is_err());
        assert!(Source::parse("team").unwrap_err().contains("expected header:<name>"));
        let err = serde_json::from_str::<Source>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("unknown attribute"));
    }

    #[test]
    fn resolves_headers_route_and_client_address() {
        let host = FakeHost::new()
            .with_header("x-team", "blue")
            .with_property(&["xds", "route_name"], "chat")
            .with_property(&["source", "address"], "10.1.2.3:45678");
        assert_eq!(Source::parse("header:x-team").unwrap().resolve(&host).as_deref(), Some("blue"));
        assert_eq!(Source::parse("header:x-none").unwrap().resolve(&host), None);
        assert_eq!(Source::RouteName.resolve(&host).as_deref(), Some("chat"));
        assert_eq!(Source::ClientAddress.resolve(&host).as_deref(), Some("10.1.2.3"));
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn resolves_jwt_claims_in_envoy_serialisation() {
        let llms = json!({"openai": ["gpt-4", "gpt-3.5-turbo"], "anthropic": ["claude-3-opus"]});
        let host = FakeHost::new()
            .with_property(&jwt_path(&["sub"]), envoy_value::encode(&json!("user-1")))
            .with_property(&jwt_path(&["admin"]), envoy_value::encode(&json!(true)))
            .with_property(&jwt_path(&["tier"]), envoy_value::encode(&json!(3)))
            .with_property(&jwt_path(&["llms"]), envoy_value::encode(&llms))
            .with_property(&jwt_path(&["llms", "openai"]), envoy_value::encode(&llms["openai"]));
        assert_eq!(Source::parse("jwt:sub").unwrap().resolve(&host).as_deref(), Some("user-1"));
        assert_eq!(Source::parse("jwt:admin").unwrap().resolve(&host).as_deref(), Some("true"));
        assert_eq!(Source::parse("jwt:tier").unwrap().resolve(&host).as_deref(), Some("3.0"));
        assert_eq!(Source::parse("jwt:llms").unwrap().resolve_json(&host), Some(llms.clone()));
        assert_eq!(Source::parse("jwt:llms.openai").unwrap().resolve_json(&host), Some(llms["openai"].clone()));
        assert_eq!(Source::parse("jwt:llms").unwrap().resolve(&host), None);
        assert_eq!(Source::parse("jwt:missing").unwrap().resolve(&host), None);
    }

    #[test]
    fn filter_state_and_metadata() {
        let host = FakeHost::new()
            .with_property(&["aigw.pii.detected"], "EMAIL_ADDRESS")
            .with_property(&["xds", "route_metadata", "filter_metadata", "aigw", "tier"], "gold");
        assert_eq!(
            Source::parse("filter_state:aigw.pii.detected").unwrap().resolve(&host).as_deref(),
            Some("EMAIL_ADDRESS")
        );
        assert_eq!(Source::parse("route_metadata:aigw:tier").unwrap().resolve(&host).as_deref(), Some("gold"));
    }

    #[test]
    fn envoy_value_round_trips_nested_structures() {
        let value = json!({"a": [1.5, "x", true, null, {"b": {"c": []}}], "d": {}, "e": "long ".repeat(40)});
        assert_eq!(envoy_value::decode(&envoy_value::encode(&value)), value);
        assert_eq!(envoy_value::decode(&envoy_value::encode(&json!(["a", "b"]))), json!(["a", "b"]));
        assert_eq!(envoy_value::decode(b"plain text"), json!("plain text"));
        assert_eq!(envoy_value::decode(b""), Value::Null);
        assert_eq!(envoy_value::decode(&envoy_value::encode(&json!(2.0))), json!(2.0));
    }

    #[test]
    fn ordinary_strings_do_not_decode_as_structures() {
        for text in ["team-a", "user@example.com", "gpt-4o", "1234", "Zürich"] {
            assert_eq!(envoy_value::decode(text.as_bytes()), json!(text), "{text}");
        }
    }
}
