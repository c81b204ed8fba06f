//! CREDIT_CARD: 13–19 digits, optionally in groups separated by single spaces
//! or single dashes (one kind per number), starting with 2–6 (Mastercard 2-series,
//! Amex/Diners/JCB, Visa, Mastercard, Discover/UnionPay), that pass the Luhn
//! check. A longer run of digit groups is one number and not a card, so no
//! card is carved out of it.

use super::{Haystack, Span};

pub const MAX_DIGITS: usize = 19;
/// 19 digits and 18 separators.
pub const MAX_LEN: usize = 2 * MAX_DIGITS - 1;

/// Whether a number may start at `p`: not glued to a word, and not the
/// continuation of a separated number (`12 34`, `12-34`, `1.2`).
pub(crate) fn number_starts_at(hay: &Haystack<'_>, p: usize) -> bool {
    match hay.before(p) {
        None => true,
        Some(b) if super::is_word(b) => false,
        Some(b' ' | b'-' | b'.' | b'/' | b',') => {
            // After `<digits><sep>`, this is a continuation unless those digits
            // end a word such as `mc2` or `v2`.
            let mut j = p - 1;
            let mut digits = 0;
            while digits < 24 && hay.before(j).is_some_and(|b| b.is_ascii_digit()) {
                j -= 1;
                digits += 1;
            }
            digits == 0 || (digits < 24 && hay.before(j).is_some_and(|b| b.is_ascii_alphabetic() || b == b'_'))
        }
        Some(_) => true,
    }
}

/// Whether a number that ends at `end` really ends there: not followed by a
/// word byte, nor by a separator and another digit. Reads past the end are
/// recorded (more text could extend the number).
pub(crate) fn number_ends_at(hay: &Haystack<'_>, end: usize) -> bool {
    match hay.at(end) {
        None => true,
        Some(b) if super::is_word(b) => false,
        Some(b' ' | b'-' | b'.' | b'/' | b',') => !hay.at(end + 1).is_some_and(|b| b.is_ascii_digit()),
        Some(_) => true,
    }
}

pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

pub fn find(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let mut digits = [0u8; MAX_DIGITS + 1];
    for &p in hay.digit_runs() {
        if p < hay.from || !number_starts_at(hay, p) || !matches!(hay.bytes().get(p), Some(b'2'..=b'6')) {
            continue;
        }
        hay.begin();
        let mut count = 0;
        let mut i = p;
        let mut end = p;
        let mut sep: Option<u8> = None;
        let mut too_long = false;
        'groups: loop {
            while let Some(b) = hay.at(i) {
                if !b.is_ascii_digit() {
                    break;
                }
                if let Some(slot) = digits.get_mut(count) {
                    *slot = b;
                }
                count += 1;
                i += 1;
                if count > MAX_DIGITS {
                    too_long = true;
                    break 'groups;
                }
            }
            end = i;
            match hay.at(i) {
                Some(s @ (b' ' | b'-')) if sep.is_none_or(|known| known == s) => {
                    if hay.at(i + 1).is_some_and(|b| b.is_ascii_digit()) {
                        sep = Some(s);
                        i += 1;
                    } else {
                        break;
                    }
                }
                _ => break,
            }
        }
        let valid = !too_long
            && (13..=MAX_DIGITS).contains(&count)
            && number_ends_at(hay, end)
            && luhn_valid(digits.get(..count).unwrap_or_default());
        if hay.settle(p) && valid {
            out.push(Span { start: p, end });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_finds, assert_none};
    use super::super::Entity::CreditCard as C;
    use super::luhn_valid;

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b"79927398710"));
    }

    #[test]
    fn true_positives() {
        assert_finds(C, "card 4111111111111111 ok", "4111111111111111");
        assert_finds(C, "card 4111 1111 1111 1111.", "4111 1111 1111 1111");
        assert_finds(C, "card: 4111-1111-1111-1111", "4111-1111-1111-1111");
        assert_finds(C, "amex 3782 822463 10005", "3782 822463 10005");
        assert_finds(C, "mc 5555555555554444;", "5555555555554444");
        assert_finds(C, "mc2 2223003122003222", "2223003122003222");
        assert_finds(C, "discover (6011111111111117)", "6011111111111117");
        assert_finds(C, "19 digits 4222222222222222224 here", "4222222222222222224");
    }

    #[test]
    fn false_positives() {
        assert_none(C, "card 4111111111111112 fails Luhn");
        assert_none(C, "card 4111 1111 1111 1112");
        assert_none(C, "too short 4111111111116");
        assert_none(C, "too long 41111111111111111111111");
        assert_none(C, "glued x4111111111111111 or 4111111111111111x");
        assert_none(C, "mixed 4111 1111-1111 1111");
        assert_none(C, "inside 12 4111 1111 1111 1111");
        assert_none(C, "leading 1 1111111111111117 or 9 9999999999999995");
        assert_none(C, "order 0000000000000000");
    }
}
