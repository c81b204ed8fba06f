//! Header maps and the proxy-wasm wire encoding of maps.

use std::fmt;

/// An HTTP header (or trailer) map as Envoy holds it: names lower-cased,
/// order kept, repeated names allowed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, String)>,
}

impl Headers {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from `(name, value)` pairs; names are lower-cased like Envoy's codecs do.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Headers { pairs: pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_string())).collect() }
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The pairs in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Iterates over `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Envoy's `replaceHeaderMapValue`: drop every value of `name`, then set one.
    pub(crate) fn replace(&mut self, name: &str, value: String) {
        let name = name.to_ascii_lowercase();
        match self.pairs.iter().position(|(k, _)| *k == name) {
            Some(first) => {
                self.pairs[first].1 = value;
                let mut index = 0;
                self.pairs.retain(|(k, _)| {
                    let keep = index <= first || *k != name;
                    index += 1;
                    keep
                });
            }
            None => self.pairs.push((name, value)),
        }
    }

    pub(crate) fn add(&mut self, name: &str, value: String) {
        self.pairs.push((name.to_ascii_lowercase(), value));
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.pairs.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    pub(crate) fn from_owned(pairs: Vec<(String, String)>) -> Self {
        Headers { pairs: pairs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect() }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pairs.iter().map(|(k, v)| format!("{k}: {v}"))).finish()
    }
}

/// Serialises a map the way the host hands it to the guest: a u32 count, then
/// (u32 name length, u32 value length) per pair, then `name\0value\0` per pair.
pub(crate) fn serialize_map(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers.iter() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in headers.iter() {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Parses a map the guest passed (same layout as [`serialize_map`]).
pub(crate) fn deserialize_map(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> Result<usize, String> {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
            .ok_or_else(|| format!("header map truncated at byte {at}"))
    };
    let count = word(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        sizes.push((word(4 + i * 8)?, word(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut take = |len: usize| -> Result<String, String> {
        let slice = bytes.get(at..at + len).ok_or_else(|| format!("header map truncated at byte {at}"))?;
        let text = String::from_utf8_lossy(slice).into_owned();
        at += len + 1; // the NUL after each name and value
        Ok(text)
    };
    let mut pairs = Vec::with_capacity(sizes.len());
    for (name_len, value_len) in sizes {
        let name = take(name_len)?;
        let value = take(value_len)?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trips() {
        let headers = Headers::from_pairs(&[(":path", "/v1"), ("X-A", "1"), ("x-a", "")]);
        let pairs = deserialize_map(&serialize_map(&headers)).unwrap();
        assert_eq!(Headers::from_owned(pairs), headers);
        assert_eq!(headers.get_all("x-a"), vec!["1", ""]);
    }

    #[test]
    fn replace_keeps_position_and_drops_duplicates() {
        let mut headers = Headers::from_pairs(&[("a", "1"), ("b", "2"), ("a", "3")]);
        headers.replace("A", "x".into());
        assert_eq!(headers, Headers::from_pairs(&[("a", "x"), ("b", "2")]));
        headers.replace("c", "y".into());
        assert_eq!(headers.get("c"), Some("y"));
    }

    #[test]
    fn truncated_map_is_an_error() {
        assert!(deserialize_map(&[1, 0, 0, 0, 5, 0]).is_err());
    }
}
