//! CREDIT_CARD: 12–19 digits that pass the Luhn check, written ungrouped or
//! in the groupings card issuers print (separated by single spaces or single
//! dashes, one kind per number): 4-4-4-4, 4-4-4-4-3, 4-4-4-1…4-4-4-3
//! (Visa 13, Amex/UATP 15 as some wallets print them), 4-6-5 (Amex), 4-6-4
//! (Diners), 4-5-6 (UATP), 4-4-4 (Maestro 12). The issuer ranges depend on
//! the length: 12 digits only under Maestro prefixes (`50`, `56`–`58`,
//! `6304`, `6390`, `67`), 13 only Visa (`4`), 15 also `1` (UATP, JCB
//! `1800`), otherwise a first digit of 2–6. A number labelled `EAN`, `ISBN`,
//! `GTIN`, `UPC` or `barcode` is a product code, not a card.
//!
//! A number written next to other digits (`4111 1111 1111 1111 123` with a
//! CVV, two cards one after the other, `qty 2 4111 …`) is searched for card
//! sub-runs on group boundaries: for every group, the longest run of whole
//! groups from it that is a card is a candidate (the scanner keeps the
//! earliest, longest). Grouping patterns are what keep order numbers
//! (`299-9280890-6668988`) and UUID segments out even when they pass Luhn.

use super::{Haystack, Span};

pub const MIN_DIGITS: usize = 12;
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

/// One group of digits of a separated number.
#[derive(Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    /// The separator before this group (none for the first).
    sep: Option<u8>,
}

/// Whether groups of these lengths are a grouping card issuers print.
fn real_grouping(lens: &[usize]) -> bool {
    match lens {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] | [4, 5, 6] | [4, 4, 4] => true,
        [init @ .., last] => init.len() >= 3 && init.iter().all(|&len| len == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Whether `groups` (the rest of a number) hold at most `limit` digits in
/// all; reads at most `limit + 1` groups, so the check is bounded however
/// long the number is.
fn reaches_end_within(hay: &Haystack<'_>, groups: &[Group], limit: usize) -> bool {
    let mut digits = 0;
    for group in groups {
        hay.step(1);
        digits += group.end - group.start;
        if digits > limit {
            return false;
        }
    }
    true
}

/// Maestro issues 12-digit numbers under these IIN prefixes.
const MAESTRO_12_PREFIXES: [&[u8]; 7] = [b"50", b"56", b"57", b"58", b"6304", b"6390", b"67"];

/// Words that label a number as a product or book code, not a card.
const PRODUCT_CODE_LABELS: [&[u8]; 5] = [b"ean", b"isbn", b"gtin", b"upc", b"barcode"];

/// Whether a card of `count` digits may start with `digits` (the IIN ranges
/// by length: 12 Maestro, 13 Visa, 15 also UATP/JCB `1…`, otherwise 2–6).
fn issuer_ok(digits: &[u8], count: usize) -> bool {
    let first = digits.first().copied().unwrap_or(0);
    match count {
        12 => MAESTRO_12_PREFIXES.iter().any(|prefix| digits.starts_with(prefix)),
        13 => first == b'4',
        15 => matches!(first, b'1'..=b'6'),
        _ => matches!(first, b'2'..=b'6'),
    }
}

/// Whether a product-code label (`EAN`, `ISBN`, …) stands just before `start`.
fn labelled_as_product_code(hay: &Haystack<'_>, start: usize) -> bool {
    let text = hay.bytes();
    let window = text.get(start.saturating_sub(16)..start).unwrap_or_default();
    let lower: Vec<u8> = window.iter().map(u8::to_ascii_lowercase).collect();
    PRODUCT_CODE_LABELS.iter().any(|label| lower.windows(label.len()).any(|w| w == *label))
}

pub fn find(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let text = hay.bytes();
    let mut groups: Vec<Group> = Vec::new();
    let mut digits = [0u8; MAX_DIGITS];
    let mut lens = [0usize; MAX_DIGITS];
    let mut next_run = 0;
    for &p in hay.digit_runs() {
        // Runs already read as part of an earlier number.
        if p < next_run || !number_starts_at(hay, p) {
            continue;
        }
        // The separated number that starts here: groups joined by one space or dash.
        groups.clear();
        let mut i = p;
        let mut sep = None;
        loop {
            let start = i;
            while text.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            hay.step(i - start + 1);
            groups.push(Group { start, end: i, sep });
            match (text.get(i), text.get(i + 1)) {
                (Some(&s @ (b' ' | b'-')), Some(b'0'..=b'9')) => {
                    sep = Some(s);
                    i += 1;
                }
                _ => break,
            }
        }
        next_run = i;
        let last_end = groups.last().map_or(p, |g| g.end);
        // Whether more text could still change this number: more digits, a
        // separator and digits, or a byte that decides how it ends (`/27`, `x`).
        let open = !hay.complete && last_end + 1 >= text.len();
        // Whether the whole number ends cleanly (not glued to a word, not continued by `/27`, `.5`).
        hay.begin();
        let clean_end = number_ends_at(hay, last_end);
        let count_groups = groups.len();
        for first in 0..count_groups {
            let Some(g) = groups.get(first) else { break };
            if g.start < hay.from {
                continue;
            }
            // Candidates from this group are undecided while the number can
            // still grow within 19 digits of it; a group that is already too
            // long to start a card never is.
            if open && reaches_end_within(hay, groups.get(first..).unwrap_or_default(), MAX_DIGITS) {
                hay.mark_pending(g.start);
                break;
            }
            let mut count = 0;
            let mut best = None;
            for (n, group) in groups.get(first..).unwrap_or_default().iter().enumerate() {
                let len = group.end - group.start;
                hay.step(len + 1);
                if count + len > MAX_DIGITS {
                    break;
                }
                if n > 0 && group.sep != groups.get(first + 1).and_then(|g| g.sep) {
                    break;
                }
                if let (Some(slot), Some(src)) = (digits.get_mut(count..count + len), text.get(group.start..group.end))
                {
                    slot.copy_from_slice(src);
                }
                if let Some(slot) = lens.get_mut(n) {
                    *slot = len;
                }
                count += len;
                let is_last = first + n + 1 == count_groups;
                let ends_ok = !is_last || clean_end;
                if (MIN_DIGITS..=MAX_DIGITS).contains(&count)
                    && ends_ok
                    && issuer_ok(digits.get(..count).unwrap_or_default(), count)
                    && real_grouping(lens.get(..=n).unwrap_or_default())
                    && luhn_valid(digits.get(..count).unwrap_or_default())
                {
                    best = Some(group.end);
                }
            }
            if let Some(end) = best.filter(|_| !labelled_as_product_code(hay, g.start)) {
                out.push(Span { start: g.start, end });
            }
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
    fn cards_next_to_other_digits() {
        assert_finds(C, "card 4111 1111 1111 1111 123 cvv", "4111 1111 1111 1111");
        assert_finds(C, "card 4111 1111 1111 1111 12/27 123", "4111 1111 1111 1111");
        assert_finds(C, "qty 2 4111 1111 1111 1111", "4111 1111 1111 1111");
        assert_finds(C, "inside 12 4111 1111 1111 1111", "4111 1111 1111 1111");
        assert_eq!(
            super::super::test_util::found(C, "cards 4111 1111 1111 1111 5555 5555 5555 4444 ok"),
            vec!["4111 1111 1111 1111", "5555 5555 5555 4444"]
        );
        assert_eq!(
            super::super::test_util::found(C, "4111111111111111 5555555555554444"),
            vec!["4111111111111111", "5555555555554444"]
        );
        assert_finds(C, "amex 3782-8224-6310-005.", "3782-8224-6310-005");
        assert_finds(C, "19 4111 1111 1111 1111 110", "4111 1111 1111 1111 110");
    }

    #[test]
    fn maestro_12() {
        assert_finds(C, "maestro 5020 3439 0950.", "5020 3439 0950");
        assert_finds(C, "maestro 676387496547", "676387496547");
    }

    #[test]
    fn uatp_and_jcb15() {
        assert_finds(C, "uatp 135410014004955", "135410014004955");
        assert_finds(C, "uatp 1354 10014 004955", "1354 10014 004955");
        assert_finds(C, "jcb 180000000000002", "180000000000002");
        assert_none(C, "sixteen 1111111111111117");
    }

    #[test]
    fn false_positives() {
        assert_none(C, "order 299-9280890-6668988 shipped");
        assert_none(C, "id 41953829-6068-4784-9b1f-2f4a3c1d5e6f");
        assert_none(C, "id 4195 38296 0684 7849");
        assert_none(C, "EAN 4941268991289 and ISBN 9780306406157");
        assert_none(C, "thirteen 3715542806153");
        assert_none(C, "twelve 412345678905");
        assert_none(C, "card 4111111111111112 fails Luhn");
        assert_none(C, "card 4111 1111 1111 1112");
        assert_none(C, "too short 4111111111116");
        assert_none(C, "too long 41111111111111111111111");
        assert_none(C, "glued x4111111111111111 or 4111111111111111x");
        assert_none(C, "mixed 4111 1111-1111 1111");
        assert_none(C, "leading 1 1111111111111117 or 9 9999999999999995");
        assert_none(C, "order 0000000000000000");
    }
}
