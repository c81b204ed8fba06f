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
/// Where Istio (1.24 and later) has `jwt_authn` put the verified payload.
pub const ISTIO_JWT_PAYLOAD_KEY: &str = "payload";

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
    /// A JWT claim is looked up under our `jwt_payload` key first, then under
    /// Istio's `payload` ([`Source::fallback_path`]).
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

    /// The second place a value may be: a JWT claim as Istio's
    /// `RequestAuthentication` leaves it. Only `jwt_authn` writes either
    /// namespace, after verifying the token, so neither can be spoofed.
    fn fallback_path(&self) -> Option<Vec<&str>> {
        match self {
            Source::JwtClaim(claim) => {
                let mut path = vec!["metadata", "filter_metadata", JWT_AUTHN_FILTER, ISTIO_JWT_PAYLOAD_KEY];
                path.extend(claim.iter().map(String::as_str));
                Some(path)
            }
            _ => None,
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
                let bytes = host
                    .property(&self.property_path()?)
                    .or_else(|| self.fallback_path().and_then(|path| host.property(&path)))?;
                // A value we cannot decode (nested too deep, say) is treated as absent.
                envoy_value::try_decode(&bytes).ok()
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
    //! Envoy's serialisation of property values (its Wasm `getProperty`), as
    //! observed from Envoy 1.40 with a probe filter behind `jwt_authn`:
    //!
    //! - strings: raw UTF-8;
    //! - numbers from metadata (JSON numbers are doubles there): 8-byte
    //!   little-endian f64;
    //! - booleans: one byte, 0 or 1;
    //! - maps: proxy-wasm's "pairs" layout (a u32 count, then a u32 key size
    //!   and a u32 value size per pair, then each key and value followed by a
    //!   NUL), values serialised recursively by these same rules;
    //! - lists: the same pairs layout, each element as a key with an empty value.
    //!
    //! [`decode`] cannot know the type from the bytes alone. It tries the pairs
    //! layout first (it is self-checking: every size must add up exactly, and a
    //! plain claim string practically never does), then booleans, numbers and
    //! text. A map whose values are all empty decodes as a list of its keys,
    //! which is also how Envoy writes a list.
    //!
    //! Decoding recurses once per level of nesting, and the bytes come from
    //! metadata a client may shape (JWT claims). Nesting deeper than
    //! [`MAX_DEPTH`] is refused with [`TooDeep`] instead of exhausting the
    //! Wasm stack, which would abort the VM and every request on it.

    use serde_json::{Map, Number, Value};
    use std::fmt;

    /// The deepest nesting [`try_decode`] accepts: serde_json's own limit
    /// when it parses JSON text, so every `Value` a filter holds, parsed or
    /// decoded, has at most this many levels.
    pub const MAX_DEPTH: usize = 128;

    /// A property value nested deeper than [`MAX_DEPTH`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TooDeep;

    impl fmt::Display for TooDeep {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a property value is nested deeper than {MAX_DEPTH} levels")
        }
    }

    impl std::error::Error for TooDeep {}

    /// Encodes a JSON value the way Envoy answers a property lookup.
    pub fn encode(value: &Value) -> Vec<u8> {
        match value {
            Value::Null => Vec::new(),
            Value::Bool(flag) => vec![u8::from(*flag)],
            Value::Number(number) => number.as_f64().unwrap_or(0.0).to_le_bytes().to_vec(),
            Value::String(text) => text.as_bytes().to_vec(),
            Value::Object(map) => {
                encode_pairs(map.iter().map(|(key, value)| (key.as_bytes().to_vec(), encode(value))).collect())
            }
            Value::Array(items) => encode_pairs(items.iter().map(|item| (encode(item), Vec::new())).collect()),
        }
    }

    fn encode_pairs(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for (key, value) in &pairs {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        for (key, value) in &pairs {
            out.extend_from_slice(key);
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }

    /// Decodes a property value. See the module docs for the rules. A value
    /// that cannot be decoded, including one nested deeper than
    /// [`MAX_DEPTH`], reads as `null`; [`try_decode`] tells the two apart.
    pub fn decode(bytes: &[u8]) -> Value {
        try_decode(bytes).unwrap_or(Value::Null)
    }

    /// Decodes a property value, refusing nesting deeper than [`MAX_DEPTH`].
    pub fn try_decode(bytes: &[u8]) -> Result<Value, TooDeep> {
        decode_at(bytes, 0)
    }

    fn decode_at(bytes: &[u8], depth: usize) -> Result<Value, TooDeep> {
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        if let Some(pairs) = decode_pairs(bytes) {
            if depth >= MAX_DEPTH {
                return Err(TooDeep);
            }
            if pairs.iter().all(|(_, value)| value.is_empty()) {
                return pairs
                    .iter()
                    .map(|(key, _)| decode_at(key, depth + 1))
                    .collect::<Result<_, _>>()
                    .map(Value::Array);
            }
            let mut map = Map::new();
            for (key, value) in pairs {
                let Ok(key) = String::from_utf8(key.to_vec()) else { return Ok(Value::Null) };
                map.insert(key, decode_at(value, depth + 1)?);
            }
            return Ok(Value::Object(map));
        }
        Ok(decode_scalar(bytes))
    }

    fn decode_scalar(bytes: &[u8]) -> Value {
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

    fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    }

    /// The pairs layout, only if every size and terminator checks out and the
    /// sizes account for every byte.
    fn decode_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
        let count = read_u32(bytes, 0)?;
        // Each pair needs at least 8 bytes of sizes and 2 terminators.
        if count.checked_mul(10)? > bytes.len() {
            return None;
        }
        let mut sizes = Vec::with_capacity(count);
        for index in 0..count {
            let at = 4 + index * 8;
            sizes.push((read_u32(bytes, at)?, read_u32(bytes, at + 4)?));
        }
        let mut pos = 4 + count * 8;
        let mut pairs = Vec::with_capacity(count);
        for (key_len, value_len) in sizes {
            let key = bytes.get(pos..pos.checked_add(key_len)?)?;
            pos += key_len;
            if bytes.get(pos) != Some(&0) {
                return None;
            }
            pos += 1;
            let value = bytes.get(pos..pos.checked_add(value_len)?)?;
            pos += value_len;
            if bytes.get(pos) != Some(&0) {
                return None;
            }
            pos += 1;
            pairs.push((key, value));
        }
        (pos == bytes.len()).then_some(pairs)
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
    fn finds_jwt_claims_where_istio_puts_them() {
        fn istio(claim: &'static str) -> Vec<&'static str> {
            vec!["metadata", "filter_metadata", JWT_AUTHN_FILTER, ISTIO_JWT_PAYLOAD_KEY, claim]
        }
        let host = FakeHost::new()
            .with_property(&istio("sub"), envoy_value::encode(&json!("istio-user")))
            .with_property(&istio("llms"), envoy_value::encode(&json!({"openai": ["gpt-4o"]})));
        assert_eq!(Source::parse("jwt:sub").unwrap().resolve(&host).as_deref(), Some("istio-user"));
        assert_eq!(Source::parse("jwt:llms").unwrap().resolve_json(&host), Some(json!({"openai": ["gpt-4o"]})));
        // Our own key wins where both exist.
        let both = FakeHost::new()
            .with_property(&jwt_path(&["sub"]), envoy_value::encode(&json!("ours")))
            .with_property(&istio("sub"), envoy_value::encode(&json!("istio")));
        assert_eq!(Source::parse("jwt:sub").unwrap().resolve(&both).as_deref(), Some("ours"));
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
        // (An empty map reads back as an empty list: Envoy writes both as a zero count.)
        let value = json!({"a": [1.5, "x", true, null, {"b": {"c": []}}], "d": {"k": "v"}, "e": "long ".repeat(40)});
        assert_eq!(envoy_value::decode(&envoy_value::encode(&value)), value);
        assert_eq!(envoy_value::decode(&envoy_value::encode(&json!(["a", "b"]))), json!(["a", "b"]));
        assert_eq!(envoy_value::decode(b"plain text"), json!("plain text"));
        assert_eq!(envoy_value::decode(b""), Value::Null);
        assert_eq!(envoy_value::decode(&envoy_value::encode(&json!(2.0))), json!(2.0));
    }

    #[test]
    fn decodes_bytes_observed_from_envoy_1_40() {
        // get_property(jwt_payload.llms) behind jwt_authn for the claim
        // {"openai": ["gpt-4", "gpt-3.5-turbo"], "anthropic": ["claude-3-opus"]}.
        let hex = "02000000090000001b000000060000002a000000616e7468726f70696300010000000d00000000000000636c617564652d332d6f7075730000006f70656e6169000200000005000000000000000d000000000000006770742d3400006770742d332e352d747572626f000000";
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let expected = json!({"anthropic": ["claude-3-opus"], "openai": ["gpt-4", "gpt-3.5-turbo"]});
        assert_eq!(envoy_value::decode(&bytes), expected);
        assert_eq!(envoy_value::encode(&expected), bytes);
        // Numbers and booleans as Envoy sent them.
        assert_eq!(envoy_value::decode(&[0, 0, 0, 0, 0, 0, 8, 0x40]), json!(3.0));
        assert_eq!(envoy_value::decode(&[1]), json!(true));
    }

    /// `depth` lists, each holding the next, around the string "x", in Envoy's
    /// serialisation (built directly: encoding a deep `Value` would recurse).
    fn nested_lists(depth: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for level in (0..depth).rev() {
            // The element at this level: the `level` lists inside it around "x".
            let inner_len = 1 + 14 * level as u32;
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.extend_from_slice(&inner_len.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        bytes.push(b'x');
        bytes.extend(std::iter::repeat_n(0, 2 * depth));
        bytes
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed_into() {
        // Regression: 5,000 nested lists overflowed a 1 MiB Wasm stack.
        assert_eq!(envoy_value::try_decode(&nested_lists(5000)), Err(envoy_value::TooDeep));
        assert_eq!(envoy_value::decode(&nested_lists(5000)), Value::Null);
        assert_eq!(envoy_value::try_decode(&nested_lists(envoy_value::MAX_DEPTH + 1)), Err(envoy_value::TooDeep));
        let deepest = envoy_value::try_decode(&nested_lists(envoy_value::MAX_DEPTH)).unwrap();
        let mut levels = 0;
        let mut cursor = &deepest;
        while let Value::Array(items) = cursor {
            levels += 1;
            cursor = &items[0];
        }
        assert_eq!((levels, cursor), (envoy_value::MAX_DEPTH, &json!("x")));
        assert_eq!(envoy_value::decode(&nested_lists(2)), json!([["x"]]));
        // Through a source, a value too deep to decode reads as absent.
        let host = FakeHost::new().with_property(&jwt_path(&["llms"]), nested_lists(5000));
        assert_eq!(Source::parse("jwt:llms").unwrap().resolve_json(&host), None);
    }

    #[test]
    fn ordinary_strings_do_not_decode_as_structures() {
        for text in ["team-a", "user@example.com", "gpt-4o", "1234", "Zürich"] {
            assert_eq!(envoy_value::decode(text.as_bytes()), json!(text), "{text}");
        }
    }
}
