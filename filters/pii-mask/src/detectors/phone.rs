//! PHONE_NUMBER, in the written forms people use:
//!
//! - international: `+` (or the `00` / `011` exit codes) and 8–15 digits in
//!   all (E.164), in groups separated by single spaces, dashes or dots, with
//!   optional parentheses: `+1 415 555 0132`, `+44 (0)20 7946 0958`,
//!   `+44(0)20 7946 0958`, `+14155550132`, `0044 20 7946 0958`;
//! - North American: `(415) 555-0132`, `415-555-0132`, `415.555.0132`,
//!   `1-800-555-0199` (3-3-4 digits, optional leading 1, separators required);
//! - national with a trunk `0`: `020 7946 0958`, `06 12 34 56 78`,
//!   `01.42.68.53.00`, `030-1234567`, `030/901820` (9–12 digits, at least two
//!   groups of two or more digits);
//! - an area code in parentheses: `(11) 98765-4321`, `(030) 1234567`;
//! - unseparated national numbers, only after a phone word (`tel`, `call`,
//!   `mobile`, `portable`, `Handy`, …) within a few words: per-region lengths
//!   and prefixes (see [`NATIONAL`]), e.g. FR `0612345678`, UK `07700900123`,
//!   IT `3123456789`, IN `9876543210`, US `4155550132`.
//!
//! An extension (`x123`, `ext. 123`, `ext 123`) is part of the number. A number
//! followed by a note (`(mobile)`) ends at its last complete group. Plain
//! digit runs without context, dates (`2024-01-15`, `15.01.2024`), card
//! numbers, SSNs (3-2-4) and IPv4 addresses do not match these shapes.

use super::card::{number_ends_at, number_starts_at};
use super::{Haystack, Span};

pub const MAX_DIGITS: usize = 15;
pub const MAX_GROUPS: usize = 8;
/// Longest extension, in digits.
const MAX_EXT_DIGITS: usize = 6;
/// `+`, 17 digits (15 and an exit code), per group two parentheses and a separator, and ` ext. ` with 6 digits.
pub const MAX_LEN: usize = 1 + MAX_DIGITS + 2 + 3 * MAX_GROUPS + 6 + MAX_EXT_DIGITS;
/// How far back (bytes) a phone word may stand before an unseparated number.
pub const CONTEXT_BYTES: usize = 40;

/// Words that say a number nearby is a phone number (lower case, ASCII folding
/// only; matched as a substring of the lower-cased context).
#[rustfmt::skip]
const CONTEXT_WORDS: &[&str] = &[
    "phone", "tel", "call", "mobile", "cell", "fax", "sms", "whatsapp", "text", "contact", "reach", "ring", "mob",
    "number", "nummer", "numero", "numer", "número", "portable", "téléphone", "appel", "telefon", "handy", "anruf",
    "rufnummer", "cellulare", "telefono", "chiama", "celular", "móvil", "movil", "ligue", "telemóvel", "contatto",
    "gsm", "номер", "телефон", "電話", "携帯", "手机", "电话", "tlf", "puhelin",
];

/// Unseparated national numbers written with a phone word nearby: (first
/// digits, total length). Our own table of the per-region numbering plans
/// (ITU-T national plans, the same facts libphonenumber's metadata encodes).
pub const NATIONAL: &[(&str, usize)] = &[
    // France: 0 + 9 digits (01–05 geographic, 06/07 mobile, 08/09).
    ("01", 10),
    ("02", 10),
    ("03", 10),
    ("04", 10),
    ("05", 10),
    ("06", 10),
    ("07", 10),
    ("08", 10),
    ("09", 10),
    // United Kingdom: 0 + 10 digits (01/02 geographic, 07 mobile, 03/08).
    ("01", 11),
    ("02", 11),
    ("03", 11),
    ("07", 11),
    ("08", 11),
    // Germany: 0 + 9–11 digits (area code and subscriber vary; mobile 015/016/017).
    ("015", 11),
    ("016", 11),
    ("017", 11),
    ("015", 12),
    ("03", 11),
    ("04", 11),
    ("08", 11),
    // Italy: mobile 3 + 9 digits; landline 0 + 5–10 (here the common 9–10).
    ("3", 10),
    ("0", 9),
    ("0", 10),
    // Spain: 6/7 mobile, 8/9 landline, 9 digits.
    ("6", 9),
    ("7", 9),
    ("9", 9),
    // India: mobile 6–9 + 9 digits.
    ("6", 10),
    ("7", 10),
    ("8", 10),
    ("9", 10),
    // Brazil: area code (2 digits, no 0) + 9-digit mobile or 8-digit landline.
    ("1", 11),
    ("2", 11),
    ("3", 11),
    ("4", 11),
    ("5", 11),
    ("1", 10),
    ("2", 10),
    ("4", 10),
    ("5", 10),
    // Japan: 0 + 9–10 digits (090/080/070 mobile).
    ("090", 11),
    ("080", 11),
    ("070", 11),
    // China: mobile 1[3-9] + 9 digits.
    ("13", 11),
    ("14", 11),
    ("15", 11),
    ("16", 11),
    ("17", 11),
    ("18", 11),
    ("19", 11),
    // North America: NXX NXX XXXX (the 2–9 rule is checked separately).
    ("2", 10),
    ("3", 10),
    ("4", 10),
    ("5", 10),
    ("6", 10),
    ("7", 10),
    ("8", 10),
    ("9", 10),
    // Netherlands / Belgium / Sweden / Poland style: 0 + 9, or 9 bare digits.
    ("0", 10),
    ("4", 9),
    ("5", 9),
    ("8", 9),
    // India landline and others: 0 + 10 digits.
    ("0", 11),
];

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

/// Whether a phone word stands within [`CONTEXT_BYTES`] before `start`.
fn phone_context(hay: &Haystack<'_>, start: usize) -> bool {
    let text = hay.bytes();
    let mut from = start.saturating_sub(CONTEXT_BYTES);
    // Start on a char boundary (UTF-8 continuation bytes are 0b10xx_xxxx).
    while from < start && text.get(from).is_some_and(|&b| b & 0xC0 == 0x80) {
        from += 1;
    }
    let Some(window) = text.get(from..start) else { return false };
    let lower: Vec<u8> = window.iter().map(u8::to_ascii_lowercase).collect();
    CONTEXT_WORDS.iter().any(|word| lower.windows(word.len()).any(|w| w == word.as_bytes()))
}

/// An extension after a number ending at `end` (` x123`, `x123`, ` ext. 123`,
/// ` ext 123`, `#123`): the end of the extension, if there is one.
fn extension(hay: &Haystack<'_>, end: usize) -> Option<usize> {
    let text = hay.bytes();
    let mut i = end;
    if text.get(i) == Some(&b' ') {
        i += 1;
    }
    let rest = text.get(i..)?;
    const MARKERS: [&[u8]; 6] = [b"ext. ", b"ext.", b"ext ", b"ext", b"x", b"#"];
    let marker = MARKERS
        .iter()
        .find(|m| rest.len() >= m.len() && rest.get(..m.len()).is_some_and(|r| r.eq_ignore_ascii_case(m)))?;
    i += marker.len();
    let digits_start = i;
    while hay.at(i).is_some_and(|b| b.is_ascii_digit()) && i - digits_start <= MAX_EXT_DIGITS {
        i += 1;
    }
    let count = i - digits_start;
    ((1..=MAX_EXT_DIGITS).contains(&count) && !hay.at(i).is_some_and(super::is_word)).then_some(i)
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
    let mut slashes = 0;
    let mut end = i;
    // A separator read but not yet confirmed by a complete group after it.
    let mut pending_sep: Option<u8> = None;
    // Whether the number stopped before something that is not part of it
    // (`(mobile)`, too many digits after a `+`): it then ends at its last complete group.
    let mut cut_short = false;
    loop {
        let paren = hay.at(i) == Some(b'(');
        let mut j = if paren { i + 1 } else { i };
        let group_start = j;
        while hay.at(j).is_some_and(|b| b.is_ascii_digit()) {
            j += 1;
            // A run already too long for any phone number: decided without reading on.
            if j - group_start > MAX_DIGITS + 2 {
                return None;
            }
        }
        let len = j - group_start;
        let closed = !paren || hay.at(j) == Some(b')');
        if len == 0 || !closed {
            if count == 0 {
                return None;
            }
            cut_short = true;
            break;
        }
        if paren {
            j += 1;
        }
        // An exit code (`00`, `011`) adds up to 3 digits to the 15 of E.164.
        if digits + len > MAX_DIGITS + 2 {
            return None;
        }
        if let Some(sep) = pending_sep.take() {
            separators += 1;
            dots += usize::from(sep == b'.');
            slashes += usize::from(sep == b'/');
        }
        digits += len;
        let text = hay.bytes();
        let group = groups.get_mut(count)?;
        *group = Group { len, first: text.get(group_start).copied().unwrap_or(0), paren };
        count += 1;
        i = j;
        end = j;
        // What joins this group to the next one, if anything.
        match hay.at(i) {
            Some(sep @ (b' ' | b'-' | b'.' | b'/'))
                if hay.at(i + 1).is_some_and(|b| b.is_ascii_digit() || b == b'(') =>
            {
                pending_sep = Some(sep);
                i += 1;
            }
            // `(0)20`, `+44(0)20`: a parenthesised group joins without a separator.
            Some(b'(') => {}
            Some(b'0'..=b'9') if paren => {}
            _ => break,
        }
        if count == MAX_GROUPS {
            return None;
        }
    }
    let end = match extension(hay, end) {
        Some(ext_end) => ext_end,
        None if cut_short => end,
        None => {
            if !number_ends_at(hay, end) {
                return None;
            }
            end
        }
    };
    let groups = groups.get(..count)?;
    valid(hay, start, plus, groups, digits, separators, dots, slashes).then_some(end)
}

#[allow(clippy::too_many_arguments)]
fn valid(
    hay: &Haystack<'_>,
    start: usize,
    plus: bool,
    groups: &[Group],
    digits: usize,
    separators: usize,
    dots: usize,
    slashes: usize,
) -> bool {
    let parens = groups.iter().filter(|g| g.paren).count();
    if plus {
        return (8..=MAX_DIGITS).contains(&digits) && slashes == 0;
    }
    let Some(first) = groups.first() else { return false };
    // International with an exit code: `00 44 …`, `0044 …`, `011 44 …`.
    let head = hay.bytes().get(start..start + first.len.min(3)).unwrap_or_default();
    let exit_code = !first.paren && (head.starts_with(b"00") || (head == b"011" && first.len == 3));
    // After the exit code: a country code and a national number, 8–13 digits
    // in the numbering plans people write (longer runs are order numbers).
    let exit_len = if head == b"011" { 3 } else { 2 };
    let international = digits.checked_sub(exit_len).is_some_and(|rest| (8..=13).contains(&rest));
    if exit_code && slashes == 0 && dots == 0 && international && first.len <= 5 {
        let unseparated_zeros = groups.len() == 1 && hay.bytes().get(start + 2) == Some(&b'0');
        if !unseparated_zeros && (groups.len() > 1 || phone_context(hay, start)) {
            return true;
        }
    }
    if separators + parens == 0 {
        // One bare run: only with a phone word nearby, and only in a length and
        // prefix some numbering plan uses.
        let len = first.len;
        let Some(run) = hay.bytes().get(start..start + len) else { return false };
        // Ten digits: a NANP number's exchange starts with 2–9; Indian
        // mobiles (6–9) and trunk-0 numbers have no such rule.
        let nanp_ok =
            len != 10 || matches!(run.first(), Some(b'0' | b'6'..=b'9')) || (run.get(3).is_some_and(|&b| b >= b'2'));
        return nanp_ok
            && NATIONAL.iter().any(|(prefix, total)| *total == len && run.starts_with(prefix.as_bytes()))
            && phone_context(hay, start);
    }
    if dots > 0 && dots != separators {
        return false;
    }
    if slashes > 1 || (slashes == 1 && (first.paren || first.first != b'0')) {
        return false;
    }
    let lens = |gs: &[Group]| gs.iter().map(|g| g.len).collect::<Vec<_>>();
    // North American 3-3-4, optionally after a country code 1.
    let nanp = match groups {
        [a, b, c] => lens(groups) == [3, 3, 4] && !b.paren && !c.paren && (a.paren || dots == 0 || dots == 2),
        [one, a, b, c] => {
            one.len == 1 && one.first == b'1' && [a.len, b.len, c.len] == [3, 3, 4] && !b.paren && !c.paren
        }
        _ => false,
    };
    if nanp && slashes == 0 {
        return true;
    }
    // An area code in parentheses: `(11) 98765-4321`, `(030) 1234567`.
    let area = first.paren
        && (2..=4).contains(&first.len)
        && groups.len() >= 2
        && groups.iter().skip(1).all(|g| !g.paren)
        && groups.last().is_some_and(|g| g.len >= 4)
        && (9..=12).contains(&digits)
        && dots == 0;
    if area {
        return true;
    }
    // A national number with a trunk 0. Dotted only in the five pairs of the
    // French style (`01.42.68.53.00`): other dotted numbers are dates or versions.
    // The 3-2-4 shape is an SSN's (the more specific entity), not a phone's;
    // three or more groups of exactly four digits are a serial's or a card's.
    let dotted_ok = dots == 0 || (groups.len() == 5 && groups.iter().all(|g| g.len == 2));
    let ssn_shape = lens(groups) == [3, 2, 4];
    let serial_shape = groups.len() >= 3 && groups.iter().all(|g| g.len == 4);
    let trunk = first.first == b'0'
        && dotted_ok
        && !ssn_shape
        && !serial_shape
        && (9..=12).contains(&digits)
        && groups.len() >= 2
        && groups.iter().all(|g| g.len >= 2);
    if trunk {
        return true;
    }
    // Any other grouped number of a national length (`576 722 601`,
    // `53 1125-2133`, `22 149 57 66`), only with a phone word nearby: without
    // one these are amounts with thousands separators or references.
    dotted_ok
        && !ssn_shape
        && !serial_shape
        && slashes == 0
        && (9..=12).contains(&digits)
        && groups.iter().all(|g| (2..=5).contains(&g.len))
        && phone_context(hay, start)
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
    fn a_note_after_the_number_ends_it_at_its_last_group() {
        assert_finds(P, "call +1 415 555 0132 (mobile)", "+1 415 555 0132");
        assert_finds(P, "call (415) 555-0132 (cell)", "(415) 555-0132");
        assert_finds(P, "tél 01 42 68 53 00 (bureau)", "01 42 68 53 00");
    }

    #[test]
    fn national_formats() {
        assert_finds(P, "uk +44(0)20 7946 0958 ok", "+44(0)20 7946 0958");
        assert_finds(P, "de +49(0)30 901820", "+49(0)30 901820");
        assert_finds(P, "br (11) 98765-4321", "(11) 98765-4321");
        assert_finds(P, "us 415-555-0132 x123 ok", "415-555-0132 x123");
        assert_finds(P, "us 415-555-0132 ext. 123", "415-555-0132 ext. 123");
        assert_finds(P, "uk 0044 20 7946 0958", "0044 20 7946 0958");
        assert_finds(P, "us 011 44 20 7946 0958", "011 44 20 7946 0958");
        assert_finds(P, "fr 01.42.68.53.00", "01.42.68.53.00");
        assert_finds(P, "de 030/901820", "030/901820");
        assert_finds(P, "mon portable: 0612345678", "0612345678");
        assert_finds(P, "mobile 07700900123", "07700900123");
        assert_finds(P, "cellulare 3123456789", "3123456789");
        assert_finds(P, "call me at 9876543210", "9876543210");
        assert_finds(P, "Phone: 8680712106", "8680712106");
        assert_finds(P, "Phone: 4155550132", "4155550132");
        assert_finds(P, "my number is 576 722 601", "576 722 601");
        assert_finds(P, "call 53 1125-2133", "53 1125-2133");
        assert_finds(P, "tel. 22 149 57 66", "22 149 57 66");
    }

    #[test]
    fn ssn_shape_is_not_a_phone() {
        assert_none(P, "ssn 078-05-1120");
    }

    #[test]
    fn long_digit_runs_are_decided_without_reading_to_the_end() {
        use super::super::Haystack;
        let text = "1".repeat(1000);
        let hay = Haystack::new(&text, 0, false);
        let mut out = Vec::new();
        super::find(&hay, &mut out);
        assert!(out.is_empty());
        assert_eq!(hay.pending(), None, "a run too long for a phone is not pending");
    }

    #[test]
    fn false_positives() {
        assert_none(P, "order 4155550132 plain");
        assert_none(P, "isbn 0306406152 and order 0612345678");
        assert_none(P, "tel 1234567 short");
        assert_none(P, "serial 0586-0438-1729 and amount 576 722 601 EUR");
        assert_none(P, "order 008-8944682-1983071 shipped");
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
