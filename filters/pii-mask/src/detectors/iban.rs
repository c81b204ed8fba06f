//! IBAN_CODE: two upper-case country letters, two check digits and an
//! alphanumeric BBAN, 15–34 characters in all, written compact
//! (`DE89370400440532013000`) or in groups of four separated by single spaces
//! (`DE89 3704 0044 0532 0130 00`) or dashes (`DE89-3704-…`), validated by
//! ISO 13616 mod-97 (the remainder must be 1). Where a grouped run is longer
//! than the IBAN it holds (a word in capitals after it), a shorter prefix is
//! accepted only at the country's fixed length ([`COUNTRY_LENGTHS`]): that is
//! what refuses an invalid IBAN whose shorter prefix happens to pass mod-97.

use super::{is_word, Haystack, Span};

pub const MIN_CHARS: usize = 15;
pub const MAX_CHARS: usize = 34;
/// 34 characters and 8 separators.
pub const MAX_LEN: usize = MAX_CHARS + 8;

/// IBAN length per country, from the SWIFT IBAN registry.
pub const COUNTRY_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// Whether `len` characters is a valid IBAN length for the country `cc`
/// (15–34 for a country not in the table).
fn length_ok(cc: &[u8], len: usize) -> bool {
    match COUNTRY_LENGTHS.iter().find(|(code, _)| code.as_slice() == cc) {
        Some((_, expected)) => len == *expected,
        None => (MIN_CHARS..=MAX_CHARS).contains(&len),
    }
}

fn is_bban(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// ISO 13616 check: move the first four characters to the end, turn letters
/// into 10–35, and the number modulo 97 must be 1.
pub fn mod97_valid(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let (head, tail) = chars.split_at(4);
    let mut remainder = 0u32;
    for &b in tail.iter().chain(head.iter()) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

pub fn find(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let text = hay.bytes();
    for &p in hay.digit_runs() {
        // `p` is the first check digit; the country code sits just before it.
        let Some(start) = p.checked_sub(2) else { continue };
        if start < hay.from
            || !text.get(start..p).is_some_and(|cc| cc.iter().all(u8::is_ascii_uppercase))
            || hay.before(start).is_some_and(is_word)
        {
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
    if !hay.at(start + 3).is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut chars: Vec<u8> = Vec::with_capacity(MAX_CHARS);
    let cc = hay.bytes().get(start..start + 2).unwrap_or_default();
    if let Some(sep @ (b' ' | b'-')) = hay.at(start + 4) {
        // Grouped: `CCdd` then groups of four, the last one 1–4 long. Try
        // every group boundary from the longest, so that a word in capitals
        // after the IBAN does not spoil it.
        let mut ends: Vec<(usize, usize)> = Vec::new();
        chars.extend(hay.bytes().get(start..start + 4)?);
        let mut i = start + 4;
        loop {
            if hay.at(i) != Some(sep) || !hay.at(i + 1).is_some_and(is_bban) {
                break;
            }
            let group_start = i + 1;
            let mut j = group_start;
            while j - group_start < 4 && hay.at(j).is_some_and(is_bban) {
                j += 1;
            }
            let group = j - group_start;
            if hay.at(j).is_some_and(is_word) {
                // A fifth character glued to the group: not this format.
                break;
            }
            chars.extend(hay.bytes().get(group_start..j)?);
            if chars.len() > MAX_CHARS {
                break;
            }
            ends.push((j, chars.len()));
            i = j;
            if group < 4 {
                break;
            }
        }
        // The whole grouped run may be any IBAN length; a shorter prefix of it
        // only the country's own length (so a prefix that happens to pass
        // mod-97 inside an invalid IBAN is not one).
        let longest = ends.last().map(|(_, len)| *len);
        ends.iter()
            .rev()
            .find(|(_, len)| {
                let whole = Some(*len) == longest;
                (if whole { (MIN_CHARS..=MAX_CHARS).contains(len) } else { length_ok(cc, *len) })
                    && mod97_valid(chars.get(..*len).unwrap_or_default())
            })
            .map(|(end, _)| *end)
    } else {
        let mut i = start;
        while hay.at(i).is_some_and(is_bban) {
            i += 1;
            if i - start > MAX_CHARS {
                return None;
            }
        }
        if hay.at(i).is_some_and(is_word) {
            return None;
        }
        chars.extend(hay.bytes().get(start..i)?);
        ((MIN_CHARS..=MAX_CHARS).contains(&chars.len()) && mod97_valid(&chars)).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_finds, assert_none};
    use super::super::Entity::IbanCode as B;
    use super::mod97_valid;

    #[test]
    fn checksum() {
        assert!(mod97_valid(b"DE89370400440532013000"));
        assert!(mod97_valid(b"GB82WEST12345698765432"));
        assert!(mod97_valid(b"FR1420041010050500013M02606"));
        assert!(!mod97_valid(b"DE89370400440532013001"));
        assert!(!mod97_valid(b"GB82WEST12345698765433"));
    }

    #[test]
    fn true_positives() {
        assert_finds(B, "iban DE89370400440532013000.", "DE89370400440532013000");
        assert_finds(B, "iban DE89 3704 0044 0532 0130 00 thanks", "DE89 3704 0044 0532 0130 00");
        assert_finds(B, "GB82 WEST 1234 5698 7654 32 AND MORE", "GB82 WEST 1234 5698 7654 32");
        assert_finds(B, "FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606");
        assert_finds(B, "NL91ABNA0417164300", "NL91ABNA0417164300");
        assert_finds(B, "(NO9386011117947)", "NO9386011117947");
        assert_finds(B, "iban DE89-3704-0044-0532-0130-00.", "DE89-3704-0044-0532-0130-00");
    }

    #[test]
    fn false_positives() {
        assert_none(B, "DE89370400440532013001 bad checksum");
        assert_none(B, "DE89 3704 0044 0532 0130 01 bad checksum");
        assert_none(B, "xDE89370400440532013000 glued");
        assert_none(B, "DE89370400440532013000x glued");
        assert_none(B, "AB12 short");
        assert_none(B, "de89370400440532013000 lower case");
        assert_none(B, "DE89 37040044 0532013000 irregular groups");
        assert_none(B, "DE89 3704-0044 0532 0130 00 mixed separators");
        // A German IBAN is 22 characters: a 34-character one is invalid even
        // where a shorter prefix passes mod-97.
        assert!(super::mod97_valid(b"DE291234567890123456"));
        assert_none(B, "DE29 1234 5678 9012 3456 78");
    }
}
