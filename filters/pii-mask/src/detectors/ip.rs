//! IP_ADDRESS: IPv4 dotted quads (octets 0–255 without leading zeros, optional
//! `/0`–`/32` prefix) and IPv6 in full, compressed (`::`) and IPv4-embedded
//! forms. A run of hex digits and colons that is not a valid address (a time
//! such as `12:30:45`, `std::vec`) is not matched.

use super::card::number_starts_at;
use super::{is_word, Haystack, Span};

/// `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255` is 45 bytes.
pub const MAX_V6: usize = 45;
/// Longest zone index kept with an address (`%eth0`, `%25en0`).
pub const MAX_ZONE: usize = 16;
/// An IPv6 address, `%` and a zone, and `/128`.
pub const MAX_LEN: usize = MAX_V6 + 1 + MAX_ZONE + 4;

pub fn find(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let mut v4 = Vec::new();
    find_v4(hay, &mut v4);
    let first_v6 = out.len();
    find_v6(hay, out);
    // A quad inside an IPv6 address (`::ffff:192.0.2.1`) is part of it, not a
    // second address. Both lists are in text order: one merge pass.
    let mut kept = Vec::with_capacity(v4.len());
    let mut v6 = out.get(first_v6..).unwrap_or_default().iter().peekable();
    for quad in v4 {
        while v6.peek().is_some_and(|span| span.end <= quad.start) {
            v6.next();
        }
        let inside = v6.peek().is_some_and(|span| span.start <= quad.start && quad.end <= span.end);
        if !inside {
            kept.push(quad);
        }
    }
    out.extend(kept);
}

fn find_v4(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    for &p in hay.digit_runs() {
        // After a `:` too (`host:10.0.0.1`, an IPv6 form glued to a word): where
        // a valid IPv6 address holds this quad, its candidate starts earlier and wins.
        if p < hay.from || !number_starts_at(hay, p) {
            continue;
        }
        hay.begin();
        let end = parse_v4(hay, p);
        if hay.settle(p) {
            if let Some(end) = end {
                out.push(Span { start: p, end });
            }
        }
    }
}

/// Reads one octet at `i`: its end, if valid.
fn octet(hay: &Haystack<'_>, i: usize) -> Option<usize> {
    let mut value = 0u32;
    let mut len = 0;
    while let Some(b) = hay.at(i + len) {
        if !b.is_ascii_digit() {
            break;
        }
        value = value * 10 + u32::from(b - b'0');
        len += 1;
        if len > 3 {
            return None;
        }
    }
    let leading_zero = len > 1 && hay.bytes().get(i) == Some(&b'0');
    (len > 0 && value <= 255 && !leading_zero).then_some(i + len)
}

fn parse_v4(hay: &Haystack<'_>, p: usize) -> Option<usize> {
    let mut i = octet(hay, p)?;
    for _ in 0..3 {
        if hay.at(i) != Some(b'.') {
            return None;
        }
        i = octet(hay, i + 1)?;
    }
    // Optional CIDR prefix length.
    if hay.at(i) == Some(b'/') {
        let mut j = i + 1;
        let mut value = 0u32;
        while let Some(b) = hay.at(j) {
            if !b.is_ascii_digit() || j - i > 2 {
                break;
            }
            value = value * 10 + u32::from(b - b'0');
            j += 1;
        }
        if j > i + 1 && j - i <= 3 && value <= 32 && !hay.at(j).is_some_and(|b| b.is_ascii_digit()) {
            i = j;
        }
    }
    // Not the start of a longer dotted number or a word.
    match hay.at(i) {
        Some(b) if is_word(b) => None,
        Some(b'.') if hay.at(i + 1).is_some_and(|b| b.is_ascii_digit()) => None,
        _ => Some(i),
    }
}

fn is_v6_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

fn find_v6(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let text = hay.bytes();
    let mut search = hay.from;
    while let Some(colon) = hay.find_byte(search, b':') {
        // The run of hex digits, colons and dots around this colon.
        let mut start = colon;
        while start > 0 && colon - start <= MAX_V6 && hay.before(start).is_some_and(is_v6_byte) {
            start -= 1;
        }
        hay.begin();
        let mut end = colon;
        while hay.at(end).is_some_and(is_v6_byte) && end - start <= MAX_V6 {
            end += 1;
        }
        search = end.max(colon + 1);
        if start < hay.from {
            continue;
        }
        let too_long = end - start > MAX_V6;
        // Sentence punctuation after an address is not part of it.
        let mut trimmed = end;
        while trimmed > start && matches!(text.get(trimmed - 1), Some(b'.')) {
            trimmed -= 1;
        }
        if trimmed > start + 1 && text.get(trimmed - 1) == Some(&b':') && text.get(trimmed - 2) != Some(&b':') {
            trimmed -= 1;
        }
        let bounded = !hay.before(start).is_some_and(is_word) && !hay.at(end).is_some_and(is_word);
        let valid = !too_long && bounded && text.get(start..trimmed).is_some_and(valid_v6);
        let end = if valid && trimmed == end { v6_suffix(hay, end) } else { trimmed };
        if hay.settle(start) && valid {
            out.push(Span { start, end });
        }
    }
}

/// A zone index (`%eth0`) and a prefix length (`/0`–`/128`) after an IPv6
/// address ending at `end`: the end with whatever of them is there.
fn v6_suffix(hay: &Haystack<'_>, end: usize) -> usize {
    let mut end = end;
    if hay.at(end) == Some(b'%') {
        let mut j = end + 1;
        while hay.at(j).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_') && j - end <= MAX_ZONE {
            j += 1;
        }
        if j > end + 1 && j - end <= MAX_ZONE && !hay.at(j).is_some_and(is_word) {
            end = j;
        }
    }
    if hay.at(end) == Some(b'/') {
        let mut j = end + 1;
        let mut value = 0u32;
        while let Some(b) = hay.at(j).filter(u8::is_ascii_digit) {
            if j - end > 3 {
                break;
            }
            value = value * 10 + u32::from(b - b'0');
            j += 1;
        }
        if j > end + 1 && value <= 128 && !hay.at(j).is_some_and(is_word) {
            end = j;
        }
    }
    end
}

/// Whether `s` is an IPv6 address (RFC 4291 text forms).
pub fn valid_v6(s: &[u8]) -> bool {
    fn groups(part: &[u8], allow_v4_tail: bool) -> Option<usize> {
        if part.is_empty() {
            return Some(0);
        }
        let pieces: Vec<&[u8]> = part.split(|&b| b == b':').collect();
        let mut count = 0;
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            if last && allow_v4_tail && piece.contains(&b'.') {
                if !valid_v4_text(piece) {
                    return None;
                }
                count += 2;
            } else if (1..=4).contains(&piece.len()) && piece.iter().all(u8::is_ascii_hexdigit) {
                count += 1;
            } else {
                return None;
            }
        }
        Some(count)
    }
    let text = s;
    let double = text.windows(2).filter(|w| w == b"::").count();
    match double {
        0 => groups(text, true) == Some(8),
        1 => {
            let Some(at) = text.windows(2).position(|w| w == b"::") else { return false };
            let head = text.get(..at).unwrap_or_default();
            let tail = text.get(at + 2..).unwrap_or_default();
            if text.windows(3).any(|w| w == b":::") {
                return false;
            }
            // Compressed forms need a decimal digit somewhere, so that code
            // such as `a::b` or `Foo::bar` is not an address.
            let has_digit = text.iter().any(u8::is_ascii_digit);
            match (groups(head, false), groups(tail, true)) {
                (Some(h), Some(t)) => h + t <= 7 && h + t >= 1 && has_digit,
                _ => false,
            }
        }
        _ => false,
    }
}

fn valid_v4_text(s: &[u8]) -> bool {
    let parts: Vec<&[u8]> = s.split(|&b| b == b'.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            (1..=3).contains(&p.len())
                && p.iter().all(u8::is_ascii_digit)
                && !(p.len() > 1 && p.first() == Some(&b'0'))
                && p.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')) <= 255
        })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_finds, assert_none, found};
    use super::super::Entity::IpAddress as I;
    use super::valid_v6;

    #[test]
    fn ipv4() {
        assert_finds(I, "host 192.168.1.20 is up", "192.168.1.20");
        assert_finds(I, "at 10.0.0.1.", "10.0.0.1");
        assert_finds(I, "net 10.20.0.0/16 routed", "10.20.0.0/16");
        assert_finds(I, "edge 255.255.255.255", "255.255.255.255");
        assert_finds(I, "(8.8.8.8)", "8.8.8.8");
    }

    #[test]
    fn ipv4_false_positives() {
        assert_none(I, "octet 256.1.1.1");
        assert_none(I, "three 1.2.3 parts");
        assert_none(I, "five 1.2.3.4.5 parts");
        assert_none(I, "zeros 01.02.03.04");
        assert_none(I, "glued v1.2.3.4");
        assert_none(I, "price 3.50");
    }

    #[test]
    fn ipv6() {
        assert_finds(I, "addr 2001:0db8:85a3:0000:0000:8a2e:0370:7334 ok", "2001:0db8:85a3:0000:0000:8a2e:0370:7334");
        assert_finds(I, "addr 2001:db8::1.", "2001:db8::1");
        assert_finds(I, "link fe80::1ff:fe23:4567:890a, ok", "fe80::1ff:fe23:4567:890a");
        assert_finds(I, "lo ::1 here", "::1");
        assert_finds(I, "mapped ::ffff:192.0.2.128 here", "::ffff:192.0.2.128");
        assert_finds(I, "[2001:db8::]:443", "2001:db8::");
        assert_eq!(found(I, "a 2001:db8::1 b 10.1.2.3"), vec!["2001:db8::1", "10.1.2.3"]);
    }

    #[test]
    fn ipv4_mapped_forms() {
        assert_finds(I, "m ::FFFF:10.0.0.1 x", "::FFFF:10.0.0.1");
        assert_finds(I, "m 0:0:0:0:0:ffff:192.0.2.1 x", "0:0:0:0:0:ffff:192.0.2.1");
        assert_finds(I, "m [::ffff:192.0.2.128]:80 x", "::ffff:192.0.2.128");
        assert_finds(I, "m ::ffff:c000:280 x", "::ffff:c000:280");
        assert_finds(I, "from=::ffff:192.0.2.128;", "::ffff:192.0.2.128");
        assert_finds(I, "::192.168.1.1", "::192.168.1.1");
        assert_finds(I, "mask ::ffff:192.168.1.0/96 x", "::ffff:192.168.1.0/96");
        assert_finds(I, "net 2001:db8::/32.", "2001:db8::/32");
        assert_finds(I, "if fe80::1%eth0 up", "fe80::1%eth0");
        assert_finds(I, "if fe80::1%eth0/64 up", "fe80::1%eth0/64");
        assert_finds(I, "bad 2001:db8::/9999", "2001:db8::");
        assert_finds(I, "text::ffff:192.0.2.1", "192.0.2.1");
        assert_finds(I, "host:10.0.0.1 up", "10.0.0.1");
        assert_finds(I, "m ::ffff:0:192.0.2.1 x", "::ffff:0:192.0.2.1");
    }

    #[test]
    fn ipv6_false_positives() {
        assert_none(I, "time 12:30:45");
        assert_none(I, "rust std::vec::Vec and a::b");
        assert_none(I, "Note: ok, key:value");
        assert_none(I, "1:2:3:4:5:6:7 seven groups");
        assert_none(I, "1:2:3:4:5:6:7:8:9 nine");
        assert_none(I, "2001:db8::1::2 two doubles");
        assert_none(I, "12345::1 long group");
        assert_none(I, "::: triple and :: alone");
        assert_none(I, "dead::beef and cafe::face");
    }

    #[test]
    fn v6_validator() {
        assert!(valid_v6(b"1:2:3:4:5:6:7:8"));
        assert!(valid_v6(b"1::8"));
        assert!(valid_v6(b"::"[..].iter().chain(b"1").copied().collect::<Vec<u8>>().as_slice()));
        assert!(!valid_v6(b"::"));
        assert!(valid_v6(b"64:ff9b::192.0.2.33"));
        assert!(!valid_v6(b"64:ff9b::192.0.2.333"));
    }
}
