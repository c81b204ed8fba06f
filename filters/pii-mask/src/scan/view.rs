//! The text the detectors see, and the way back to the bytes a peer reads.
//!
//! Two things hide a value from a scanner that reads raw bytes:
//!
//! - **JSON inside JSON.** Tool-call `arguments` and tool results are JSON
//!   text carried in a JSON string. After the outer parse they still hold
//!   escapes: `ana.silva\u0040example.com` is an e-mail address once the
//!   client parses the arguments. In JSON mode the view decodes string
//!   escapes (`\uXXXX` with surrogate pairs, `\"`, `\\`, `\n`, …).
//! - **Obfuscation** (configurable): full-width letters and digits
//!   (`４１１１`), zero-width characters and soft hyphens inside a value, and
//!   `%40`, `&#64;`, `&#x40;`, `&commat;` for `@`.
//!
//! A [`View`] is the decoded text plus a sparse list of the edits that made
//! it, so that a match found in the view maps back to a byte range of the
//! original, which is where the replacement goes. Text without anything to
//! decode costs one byte search and no copy.

use std::borrow::Cow;

/// What to decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// The text is JSON: decode string escapes.
    pub json: bool,
    /// Undo the obfuscations listed in the module docs.
    pub deobfuscate: bool,
}

/// One place where the view differs from the original: `original[orig_start..orig_end]`
/// became `view[norm_start..norm_end]` (possibly empty: a dropped character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edit {
    norm_start: usize,
    norm_end: usize,
    orig_start: usize,
    orig_end: usize,
}

/// The decoded text of an original text.
#[derive(Debug)]
pub struct View<'a> {
    pub text: Cow<'a, str>,
    edits: Vec<Edit>,
    /// In a text that may continue: the original offset of an escape or
    /// entity that has begun but not ended (`\u00`, `%4`, `&#6`). The view
    /// stops there; nothing from there on may be released yet.
    pub incomplete: Option<usize>,
}

/// Full-width ASCII variants (U+FF01–U+FF5E) map to ASCII by this offset.
const FULL_WIDTH_OFFSET: u32 = 0xFEE0;

/// Whether `c` is invisible and dropped: zero-width space, non-joiner,
/// joiner, word joiner, byte-order mark, soft hyphen.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

/// The plain form of a character under obfuscation rules (`None`: dropped).
fn plain(c: char) -> Option<char> {
    if invisible(c) {
        return None;
    }
    let code = u32::from(c);
    if (0xFF01..=0xFF5E).contains(&code) {
        return char::from_u32(code - FULL_WIDTH_OFFSET).or(Some(c));
    }
    if c == '\u{3000}' {
        return Some(' ');
    }
    Some(c)
}

/// Encoded `@` forms, matched case-insensitively.
const AT_FORMS: [&str; 4] = ["%40", "&#64;", "&#x40;", "&commat;"];

/// What a decoder reads at one position of the original.
enum Unit {
    /// A character that decodes to itself.
    Same(usize),
    /// `len` original bytes that decode to `out` (or to nothing).
    Decoded { len: usize, out: Option<char> },
    /// The text ends inside an escape or entity.
    Incomplete,
}

fn hex4(bytes: &[u8]) -> Option<u32> {
    let digits = std::str::from_utf8(bytes.get(..4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// A JSON escape at `i` (which holds `\`).
fn json_escape(bytes: &[u8], i: usize, complete: bool) -> Unit {
    let Some(&kind) = bytes.get(i + 1) else {
        return if complete { Unit::Same(1) } else { Unit::Incomplete };
    };
    let simple = match kind {
        b'"' => Some('"'),
        b'\\' => Some('\\'),
        b'/' => Some('/'),
        b'b' => Some('\u{8}'),
        b'f' => Some('\u{c}'),
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        _ => None,
    };
    if let Some(out) = simple {
        return Unit::Decoded { len: 2, out: Some(out) };
    }
    if kind != b'u' {
        return Unit::Same(1);
    }
    let rest = bytes.get(i + 2..).unwrap_or_default();
    if rest.len() < 4 {
        let partial = rest.iter().all(u8::is_ascii_hexdigit);
        return if !complete && partial { Unit::Incomplete } else { Unit::Same(1) };
    }
    let Some(high) = hex4(rest) else { return Unit::Same(1) };
    if (0xD800..0xDC00).contains(&high) {
        // A surrogate pair: `\uD83D\uDE00`.
        let tail = bytes.get(i + 6..).unwrap_or_default();
        let prefix = b"\\u";
        if tail.len() < 6 {
            let may_follow = tail.iter().zip(prefix.iter()).all(|(a, b)| a == b)
                && tail.get(2..).unwrap_or_default().iter().all(u8::is_ascii_hexdigit);
            if !complete && may_follow {
                return Unit::Incomplete;
            }
        } else if tail.starts_with(prefix) {
            if let Some(low) = tail.get(2..).and_then(hex4).filter(|low| (0xDC00..0xE000).contains(low)) {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Unit::Decoded { len: 12, out: char::from_u32(code) };
            }
        }
        return Unit::Decoded { len: 6, out: Some('\u{FFFD}') };
    }
    Unit::Decoded { len: 6, out: Some(char::from_u32(high).unwrap_or('\u{FFFD}')) }
}

/// An encoded `@` at `i` (which holds `%` or `&`).
fn encoded_at(bytes: &[u8], i: usize, complete: bool) -> Unit {
    let rest = bytes.get(i..).unwrap_or_default();
    for form in AT_FORMS {
        let form = form.as_bytes();
        if rest.len() >= form.len() {
            if rest.get(..form.len()).is_some_and(|r| r.eq_ignore_ascii_case(form)) {
                return Unit::Decoded { len: form.len(), out: Some('@') };
            }
        } else if !complete && form.get(..rest.len()).is_some_and(|f| f.eq_ignore_ascii_case(rest)) {
            return Unit::Incomplete;
        }
    }
    Unit::Same(1)
}

/// Whether the bytes at `i` may start an obfuscation: an encoded `@` (or
/// the start of one at the end of the text), or the UTF-8 of a character
/// [`plain`] changes (soft hyphen C2 AD, zero-width E2 80 8B–8D, word joiner
/// E2 81 A0, ideographic space E3 80 80, full-width EF BC xx / EF BD xx, BOM EF BB BF).
fn obfuscation_at(bytes: &[u8], i: usize) -> bool {
    let next = |k: usize| bytes.get(i + k).copied();
    match bytes.get(i) {
        Some(b'%') => matches!(next(1), None | Some(b'4')),
        Some(b'&') => matches!(next(1), None | Some(b'#' | b'c' | b'C')),
        Some(0xC2) => next(1) == Some(0xAD),
        Some(0xE2) => matches!((next(1), next(2)), (Some(0x80), Some(0x8B..=0x8D)) | (Some(0x81), Some(0xA0))),
        Some(0xE3) => (next(1), next(2)) == (Some(0x80), Some(0x80)),
        Some(0xEF) => matches!((next(1), next(2)), (Some(0xBC | 0xBD), _) | (Some(0xBB), Some(0xBF))),
        _ => false,
    }
}

/// Whether anything in `text` could decode differently (one pass, no copy).
fn needs_decoding(text: &str, options: Options) -> bool {
    let bytes = text.as_bytes();
    (options.json && bytes.contains(&b'\\'))
        || (options.deobfuscate
            // A branch-free pass first (it vectorises): plain ASCII prose stops here.
            && bytes.iter().fold(false, |seen, &b| seen | (b == b'%') | (b == b'&') | (b >= 0xC2))
            && bytes
                .iter()
                .enumerate()
                .any(|(i, &b)| matches!(b, b'%' | b'&' | 0xC2 | 0xE2 | 0xE3 | 0xEF) && obfuscation_at(bytes, i)))
}

impl<'a> View<'a> {
    /// The view of a text that needs no decoding.
    pub fn identity(text: &'a str) -> Self {
        View { text: Cow::Borrowed(text), edits: Vec::new(), incomplete: None }
    }

    /// Decodes `original`. With `complete` false, an escape cut by the end of
    /// the text is not decoded and [`View::incomplete`] says where it starts.
    pub fn new(original: &'a str, options: Options, complete: bool) -> Self {
        if !needs_decoding(original, options) {
            return View::identity(original);
        }
        let bytes = original.as_bytes();
        let mut text = String::with_capacity(original.len());
        let mut edits: Vec<Edit> = Vec::new();
        let mut incomplete = None;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            let unit = if options.json && b == b'\\' {
                json_escape(bytes, i, complete)
            } else if options.deobfuscate && (b == b'%' || b == b'&') {
                encoded_at(bytes, i, complete)
            } else {
                let width = original.get(i..).and_then(|rest| rest.chars().next()).map_or(1, char::len_utf8);
                Unit::Same(width)
            };
            let (len, out) = match unit {
                Unit::Incomplete => {
                    incomplete = Some(i);
                    break;
                }
                Unit::Same(len) => {
                    let c = original.get(i..i + len).and_then(|s| s.chars().next());
                    match c.filter(|_| options.deobfuscate).map(plain) {
                        Some(decoded) if decoded != c => (len, decoded),
                        _ => {
                            text.push_str(original.get(i..i + len).unwrap_or_default());
                            i += len;
                            continue;
                        }
                    }
                }
                Unit::Decoded { len, out } => (len, if options.deobfuscate { out.and_then(plain) } else { out }),
            };
            let norm_start = text.len();
            if let Some(c) = out {
                text.push(c);
            }
            let edit = Edit { norm_start, norm_end: text.len(), orig_start: i, orig_end: i + len };
            match edits.last_mut() {
                // Adjacent dropped characters merge into one edit.
                Some(last)
                    if last.orig_end == i && last.norm_start == last.norm_end && edit.norm_start == edit.norm_end =>
                {
                    last.orig_end = edit.orig_end;
                }
                _ => edits.push(edit),
            }
            i += len;
        }
        View { text: Cow::Owned(text), edits, incomplete }
    }

    /// Whether the view is the original text, byte for byte.
    pub fn is_identity(&self) -> bool {
        self.edits.is_empty()
    }

    /// The original offset where a view range that starts at `p` starts.
    pub fn start_in_original(&self, p: usize) -> usize {
        self.to_original(p, false)
    }

    /// The original offset where a view range that ends at `p` ends.
    pub fn end_in_original(&self, p: usize) -> usize {
        self.to_original(p, true)
    }

    fn to_original(&self, p: usize, end: bool) -> usize {
        let before = self.edits.partition_point(|e| e.norm_end <= p);
        if let Some(inside) = self.edits.get(before).filter(|e| e.norm_start < p) {
            return if end { inside.orig_end } else { inside.orig_start };
        }
        match before.checked_sub(1).and_then(|i| self.edits.get(i)) {
            Some(e) => e.orig_end + (p - e.norm_end),
            None => p,
        }
    }

    /// The view offset of original offset `o` (an edit boundary or outside edits).
    pub fn from_original(&self, o: usize) -> usize {
        let before = self.edits.partition_point(|e| e.orig_end <= o);
        if let Some(inside) = self.edits.get(before).filter(|e| e.orig_start < o) {
            return inside.norm_start;
        }
        match before.checked_sub(1).and_then(|i| self.edits.get(i)) {
            Some(e) => e.norm_end + (o - e.orig_end),
            None => o,
        }
    }

    /// The largest original offset at or before `o` that is not inside an
    /// edit (where the original may be cut without splitting an escape).
    pub fn unit_boundary_at_or_before(&self, o: usize) -> usize {
        let before = self.edits.partition_point(|e| e.orig_end <= o);
        match self.edits.get(before).filter(|e| e.orig_start < o) {
            Some(inside) => inside.orig_start,
            None => o,
        }
    }
}

/// Whether a JSON text is inside a string literal, tracked byte by byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonStringState {
    pub in_string: bool,
    escaped: bool,
}

impl JsonStringState {
    /// Advances over `bytes`.
    pub fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.escaped {
                self.escaped = false;
            } else if self.in_string && b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = !self.in_string;
            }
        }
    }
}

/// Whether a whole text is a JSON object or array (tool arguments, a tool
/// result, a string value that holds JSON): it is then scanned in JSON mode.
pub fn is_json_document(text: &str) -> bool {
    let trimmed = text.trim_start();
    (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Appends `value` escaped for the inside of a JSON string.
pub fn push_json_escaped(value: &str, out: &mut String) {
    let quoted = serde_json::Value::String(value.to_string()).to_string();
    out.push_str(quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Options = Options { json: true, deobfuscate: false };
    const OBF: Options = Options { json: false, deobfuscate: true };
    const BOTH: Options = Options { json: true, deobfuscate: true };

    #[test]
    fn plain_text_is_borrowed() {
        for text in ["a@b.com, nothing to decode", "50% off, Müller & Söhne, 日本語、テキスト"] {
            let view = View::new(text, BOTH, true);
            assert!(matches!(view.text, Cow::Borrowed(_)), "{text}");
            assert!(view.is_identity());
        }
    }

    #[test]
    fn json_escapes_decode_and_map_back() {
        let original = r#"{"to":"ana.silva\u0040example.com","n":"a\nb"}"#;
        let view = View::new(original, JSON, true);
        assert_eq!(view.text, "{\"to\":\"ana.silva@example.com\",\"n\":\"a\nb\"}");
        let start = view.text.find("ana").unwrap();
        let end = view.text.find(".com").unwrap() + 4;
        assert_eq!(&original[view.start_in_original(start)..view.end_in_original(end)], r"ana.silva\u0040example.com");
        let at = view.text.find('@').unwrap();
        assert_eq!(&original[view.start_in_original(at)..view.end_in_original(at + 1)], r"\u0040");
        assert_eq!(view.from_original(original.find(".com").unwrap()), view.text.find(".com").unwrap());
    }

    #[test]
    fn surrogate_pairs_and_bad_escapes() {
        let view = View::new(r"x\uD83D\uDE00y \q \uZZZZ", JSON, true);
        assert_eq!(view.text, "x😀y \\q \\uZZZZ");
        let view = View::new(r"x\uD83Dy", JSON, true);
        assert_eq!(view.text, "x\u{FFFD}y");
    }

    #[test]
    fn unfinished_escapes_are_incomplete_in_streams() {
        for (text, at) in [(r"ab\u00", 2), (r"ab\", 2), (r"ab\uD83D\u", 2), ("ab%4", 2), ("ab&#6", 2), ("ab&", 2)] {
            let view = View::new(text, BOTH, false);
            assert_eq!(view.incomplete, Some(at), "{text}");
            assert_eq!(view.text, "ab", "{text}");
            let done = View::new(text, BOTH, true);
            assert_eq!(done.incomplete, None, "{text}");
        }
        assert_eq!(View::new("50% off & more", OBF, false).incomplete, None);
    }

    #[test]
    fn obfuscations_decode() {
        let original =
            "ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ 4111\u{200B}1111 a%40b.com c&#64;d.org e&#X40;f.net g&commat;h.io";
        let view = View::new(original, OBF, true);
        assert_eq!(view.text, "john@example.com 41111111 a@b.com c@d.org e@f.net g@h.io");
        let s = view.text.find("4111").unwrap();
        assert_eq!(&original[view.start_in_original(s)..view.end_in_original(s + 8)], "4111\u{200B}1111");
        assert_eq!(&original[view.start_in_original(0)..view.end_in_original(16)], "ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ");
    }

    #[test]
    fn json_and_obfuscation_compose() {
        let view = View::new(r#"{"a":"x\uff20y.com\u200b"}"#, BOTH, true);
        assert_eq!(view.text, r#"{"a":"x@y.com"}"#);
    }

    #[test]
    fn string_state_and_documents() {
        let mut state = JsonStringState::default();
        state.advance(br#"{"a":"x\"y"#);
        assert!(state.in_string);
        state.advance(br#"","b":"#);
        assert!(!state.in_string);
        assert!(is_json_document(" {\"a\": [1, \"x\"]}"));
        assert!(!is_json_document("[citation] not json"));
        assert!(!is_json_document("hello"));
        let mut out = String::new();
        push_json_escaped("a\"b\\c\n", &mut out);
        assert_eq!(out, r#"a\"b\\c\n"#);
    }

    #[test]
    fn boundaries() {
        let original = r"ab\u0040cd";
        let view = View::new(original, JSON, true);
        assert_eq!(view.unit_boundary_at_or_before(4), 2);
        assert_eq!(view.unit_boundary_at_or_before(8), 8);
        assert_eq!(view.unit_boundary_at_or_before(1), 1);
    }
}
