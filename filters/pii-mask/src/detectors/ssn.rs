//! US_SSN: `AAA-GG-SSSS`, also with spaces or dots (the same separator twice).
//! Invalid by the SSA's rules and not matched: area 000, 666 or 900–999,
//! group 00, serial 0000. Nine digits without separators are not matched:
//! they are indistinguishable from order numbers and ids.

use super::card::{number_ends_at, number_starts_at};
use super::{Haystack, Span};

pub const MAX_LEN: usize = 11;

pub fn find(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    for &p in hay.digit_runs() {
        if p < hay.from || !number_starts_at(hay, p) {
            continue;
        }
        hay.begin();
        let valid = parse(hay, p);
        if hay.settle(p) && valid {
            out.push(Span { start: p, end: p + MAX_LEN });
        }
    }
}

fn parse(hay: &Haystack<'_>, p: usize) -> bool {
    let mut value = [0u8; 9];
    let mut n = 0;
    let mut sep = None;
    for (i, kind) in b"DDDSDDSDDDD".iter().enumerate() {
        let Some(b) = hay.at(p + i) else { return false };
        match kind {
            b'D' => {
                if !b.is_ascii_digit() {
                    return false;
                }
                if let Some(slot) = value.get_mut(n) {
                    *slot = b - b'0';
                }
                n += 1;
            }
            _ => {
                if !matches!(b, b'-' | b' ' | b'.') || sep.is_some_and(|s| s != b) {
                    return false;
                }
                sep = Some(b);
            }
        }
    }
    if !number_ends_at(hay, p + MAX_LEN) {
        return false;
    }
    let [a1, a2, a3, g1, g2, s1, s2, s3, s4] = value;
    let area = u32::from(a1) * 100 + u32::from(a2) * 10 + u32::from(a3);
    area != 0 && area != 666 && area < 900 && (g1, g2) != (0, 0) && (s1, s2, s3, s4) != (0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_finds, assert_none};
    use super::super::Entity::UsSsn as S;

    #[test]
    fn true_positives() {
        assert_finds(S, "ssn 123-45-6789.", "123-45-6789");
        assert_finds(S, "ssn 536 90 4399", "536 90 4399");
        assert_finds(S, "(078.05.1120)", "078.05.1120");
        assert_finds(S, "899-99-9999", "899-99-9999");
    }

    #[test]
    fn invalid_numbers_are_excluded() {
        assert_none(S, "000-12-3456");
        assert_none(S, "666-12-3456");
        assert_none(S, "900-12-3456 and 999-12-3456");
        assert_none(S, "123-00-4567");
        assert_none(S, "123-45-0000");
    }

    #[test]
    fn false_positives() {
        assert_none(S, "123456789 plain");
        assert_none(S, "123-45 6789 mixed");
        assert_none(S, "1234-56-7890 long area");
        assert_none(S, "123-45-67890 long serial");
        assert_none(S, "x123-45-6789 glued");
        assert_none(S, "123-45-6789-1 continued");
        assert_none(S, "phone 555-123-4567");
    }
}
