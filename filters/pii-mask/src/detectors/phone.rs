//! PHONE_NUMBER, in the written forms people use:
//!
//! - international: `+` and 8–15 digits in all (E.164), in groups separated
//!   by single spaces, dashes or dots, with optional parentheses:
//!   `+1 415 555 0132`, `+44 (0)20 7946 0958`, `+14155550132`;
//! - North American: `(415) 555-0132`, `415-555-0132`, `415.555.0132`,
//!   `1-800-555-0199` (3-3-4 digits, optional leading 1, separators required);
//! - national with a trunk `0`: `020 7946 0958`, `06 12 34 56 78`,
//!   `030-1234567` (9–12 digits, at least two groups of two or more digits,
//!   separators required).
//!
//! Plain digit runs without `+` or separators, dates (`2024-01-15`), card
//! numbers (13+ digits), SSNs (3-2-4) and IPv4 addresses (four dotted groups)
//! do not match these shapes.

use super::card::{number_ends_at, number_starts_at};
use super::{Haystack, Span};

pub const MAX_DIGITS: usize = 15;
pub const MAX_GROUPS: usize = 8;
/// `+`, 15 digits, and per group two parentheses and a separator.
pub const MAX_LEN: usize = 1 + MAX_DIGITS + 3 * MAX_GROUPS;

#[derive(Clone, Copy, Default)]
struct Group {
    len: usize,
    first: u8,
    paren: bool,
}

pub fn find(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    for &p in hay.digit_runs() {
        let start = match hay.before(p) {
            Some(b'+') | Some(b'(') => p - 1,
            _ => p,
        };
        if start < hay.from {
            continue;
        }
        let boundary = if start < p {
            !hay.before(start).is_some_and(|b| super::is_word(b) || b == b'+' || b == b'(')
        } else {
            number_starts_at(hay, p)
        };
        if !boundary {
            continue;
        }
        hay.begin();
        let end = parse(hay, start);
        if hay.settle(start) {
            if let Some(end) = end {
                out.push(Span { start, end });
            }
        }
    }
}

fn parse(hay: &Haystack<'_>, start: usize) -> Option<usize> {
    let mut i = start;
    let plus = hay.at(i) == Some(b'+');
    if plus {
        i += 1;
    }
    let mut groups = [Group::default(); MAX_GROUPS];
    let mut count = 0;
    let mut digits = 0;
    let mut separators = 0;
    let mut dots = 0;
    let mut end;
    loop {
        let paren = hay.at(i) == Some(b'(');
        if paren {
            i += 1;
        }
        let group_start = i;
        while hay.at(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
        let len = i - group_start;
        if len == 0 {
            return None;
        }
        if paren {
            if hay.at(i) != Some(b')') {
                return None;
            }
            i += 1;
        }
        digits += len;
        let group = groups.get_mut(count)?;
        *group = Group { len, first: hay.bytes().get(group_start).copied().unwrap_or(0), paren };
        count += 1;
        if digits > MAX_DIGITS {
            return None;
        }
        end = i;
        // What joins this group to the next one, if anything.
        let next = hay.at(i);
        match next {
            Some(sep @ (b' ' | b'-' | b'.')) if hay.at(i + 1).is_some_and(|b| b.is_ascii_digit() || b == b'(') => {
                separators += 1;
                if sep == b'.' {
                    dots += 1;
                }
                i += 1;
            }
            Some(b'(') | Some(b'0'..=b'9') if paren => {}
            _ => break,
        }
        if count == MAX_GROUPS {
            return None;
        }
    }
    if !number_ends_at(hay, end) {
        return None;
    }
    let groups = groups.get(..count)?;
    let parens = groups.iter().filter(|g| g.paren).count();
    if plus {
        return (8..=MAX_DIGITS).contains(&digits).then_some(end);
    }
    if separators + parens == 0 || (dots > 0 && dots != separators) {
        return None;
    }
    // North American 3-3-4, optionally after a country code 1.
    let nanp = match groups {
        [a, b, c] => [a.len, b.len, c.len] == [3, 3, 4] && !b.paren && !c.paren,
        [one, a, b, c] => {
            one.len == 1 && one.first == b'1' && [a.len, b.len, c.len] == [3, 3, 4] && !b.paren && !c.paren
        }
        _ => false,
    };
    if nanp {
        return Some(end);
    }
    // A national number with a trunk 0 (dots are dates there, not phones).
    let trunk = groups.first().is_some_and(|g| g.first == b'0')
        && dots == 0
        && (9..=12).contains(&digits)
        && count >= 2
        && groups.iter().all(|g| g.len >= 2);
    trunk.then_some(end)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_finds, assert_none, found};
    use super::super::Entity::PhoneNumber as P;

    #[test]
    fn international() {
        assert_finds(P, "call +1 415 555 0132.", "+1 415 555 0132");
        assert_finds(P, "uk +44 (0)20 7946 0958 now", "+44 (0)20 7946 0958");
        assert_finds(P, "de +49-30-1234567", "+49-30-1234567");
        assert_finds(P, "fr +33 1 23 45 67 89", "+33 1 23 45 67 89");
        assert_finds(P, "e164 +14155550132,", "+14155550132");
        // The overlapping national candidate is dropped by the scanner.
        assert_eq!(found(P, "us +1 (415) 555-0132")[0], "+1 (415) 555-0132");
    }

    #[test]
    fn national() {
        assert_finds(P, "call (415) 555-0132 today", "(415) 555-0132");
        assert_finds(P, "call 415-555-0132", "415-555-0132");
        assert_finds(P, "call 415.555.0132", "415.555.0132");
        assert_finds(P, "call 415 555 0132", "415 555 0132");
        assert_finds(P, "toll free 1-800-555-0199", "1-800-555-0199");
        assert_finds(P, "london 020 7946 0958", "020 7946 0958");
        assert_finds(P, "paris 06 12 34 56 78", "06 12 34 56 78");
        assert_finds(P, "berlin 030-1234567", "030-1234567");
        assert_eq!(found(P, "a 415-555-0132, b 416-555-0133"), vec!["415-555-0132", "416-555-0133"]);
    }

    #[test]
    fn false_positives() {
        assert_none(P, "order 4155550132 plain");
        assert_none(P, "date 2024-01-15 and 15.01.2024 and 01.02.2023");
        assert_none(P, "card 4111 1111 1111 1111");
        assert_none(P, "ssn 123-45-6789");
        assert_none(P, "ip 192.168.100.100");
        assert_none(P, "short +1 234");
        assert_none(P, "too long +1 234 567 890 123 456 7");
        assert_none(P, "version 1.2.3 and 10-20-30");
        assert_none(P, "x415-555-0132 glued");
        assert_none(P, "415-555-0132-99 continued");
        assert_none(P, "zip 12345 price 3.50");
        assert_none(P, "mixed 415.555-0132");
    }
}
