//! EMAIL_ADDRESS: `local@domain.tld`, anchored on `@`.
//!
//! The local part is the run of letters and digits of any script and
//! `[._%+'-]` before the `@` (at most 64 bytes, no leading or trailing dot);
//! the domain is at least two dot-separated labels of letters and digits of
//! any script and `-` (1–63 bytes each, no leading or trailing hyphen) ending
//! in a top-level label of two or more ASCII letters, a punycode label
//! (`xn--p1ai`) or a label of non-ASCII letters (`рф`), at most 253 bytes in
//! all. So `josé.garcía@example.com`, `user@bücher.de` and `山田@例え.jp` are
//! addresses. A sentence-ending dot is not part of the address, and prose
//! glued after an ASCII top-level label (`a@b.jpです`) ends it.

use super::{Haystack, Span};

pub const MAX_LOCAL: usize = 64;
pub const MAX_DOMAIN: usize = 253;
pub const MAX_LEN: usize = MAX_LOCAL + 1 + MAX_DOMAIN;

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// The char that starts at byte `i` and its length, if `i` starts a non-ASCII letter or digit.
fn letter_at(text: &[u8], i: usize) -> Option<usize> {
    let width = match text.get(i)? {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return None,
    };
    let c = std::str::from_utf8(text.get(i..i + width)?).ok()?.chars().next()?;
    c.is_alphanumeric().then_some(width)
}

/// The start of the non-ASCII letter or digit that ends at byte `end`, if any.
fn letter_before(text: &[u8], end: usize) -> Option<usize> {
    let mut i = end.checked_sub(1)?;
    while text.get(i).is_some_and(|&b| b & 0xC0 == 0x80) && end - i < 4 {
        i = i.checked_sub(1)?;
    }
    (letter_at(text, i)? == end - i).then_some(i)
}

pub fn find(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let text = hay.bytes();
    let mut search = hay.from;
    while let Some(at) = hay.find_byte(search, b'@') {
        search = at + 1;
        let mut start = at;
        loop {
            if hay.before(start).is_some_and(is_local) && at - start < MAX_LOCAL {
                start -= 1;
            } else if let Some(letter) = letter_before(text, start).filter(|&l| at - l <= MAX_LOCAL) {
                start = letter;
            } else {
                break;
            }
        }
        while start < at && matches!(text.get(start), Some(b'.' | b'\'' | b'-')) {
            start += 1;
        }
        // A local part that began in text already released (a stream's
        // context) is masked from the release point on rather than not at all.
        if start < hay.from && hay.from < at {
            start = hay.from;
        }
        if start == at || start < hay.from || hay.before(at) == Some(b'.') {
            continue;
        }
        hay.begin();
        let domain_start = at + 1;
        let mut end = domain_start;
        while end - domain_start <= MAX_DOMAIN {
            match hay.at(end) {
                Some(b) if is_domain(b) => end += 1,
                // CJK directly after an ASCII letter or digit is prose glued to
                // the address (`a@b.comです`): the domain ends there, without
                // waiting for more text.
                Some(b) if b >= 0xE2 && hay.before(end).is_some_and(|p| p.is_ascii_alphanumeric()) => break,
                Some(_) => match letter_at(text, end) {
                    Some(width) => end += width,
                    None => break,
                },
                None => break,
            }
        }
        let domain_end = if end - domain_start > MAX_DOMAIN { None } else { valid_domain(text, domain_start, end) };
        if hay.settle(start) {
            if let Some(domain_end) = domain_end {
                out.push(Span { start, end: domain_end });
            }
        }
    }
}

/// A top-level label: two or more ASCII letters, punycode (`xn--…`), or
/// non-ASCII letters. Returns its usable length: ASCII letters followed by
/// other-script prose (`jpです`) end after the ASCII part.
fn tld_len(label: &[u8]) -> Option<usize> {
    if label.len() > 4 && label.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"xn--")) {
        return label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-').then_some(label.len());
    }
    let ascii = label.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    if ascii >= 2 {
        // The rest must be other-script prose glued on, not digits or hyphens.
        return (ascii == label.len() || label.get(ascii).is_some_and(|&b| b >= 0x80)).then_some(ascii);
    }
    (ascii == 0 && !label.is_empty() && label.iter().all(|&b| b >= 0x80)).then_some(label.len())
}

/// The end of the longest valid domain that starts at `start` inside
/// `text[start..end]` (a run of domain bytes), if any.
fn valid_domain(text: &[u8], start: usize, end: usize) -> Option<usize> {
    let run = text.get(start..end)?;
    // Trailing dots and hyphens end a sentence, not an address.
    let mut len = run.len();
    while len > 0 && matches!(run.get(len - 1), Some(b'.' | b'-')) {
        len -= 1;
    }
    // An empty label (`..`) ends the domain.
    let run = run.get(..len)?;
    let cut = run.windows(2).position(|pair| pair == b"..").unwrap_or(run.len());
    let run = run.get(..cut)?;
    let mut labels = 0;
    let mut last: &[u8] = &[];
    let mut last_start = 0;
    let mut offset = 0;
    for label in run.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > 63 || label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return None;
        }
        labels += 1;
        last = label;
        last_start = offset;
        offset += label.len() + 1;
    }
    if labels < 2 {
        return None;
    }
    tld_len(last).map(|tld| start + last_start + tld)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_finds, assert_none, found};
    use super::super::Entity::EmailAddress as E;

    #[test]
    fn true_positives() {
        assert_finds(E, "mail john.doe@example.com now", "john.doe@example.com");
        assert_finds(E, "x (first.last+tag@sub.mail.example.co.uk).", "first.last+tag@sub.mail.example.co.uk");
        assert_finds(E, "Write to a@b.io.", "a@b.io");
        assert_finds(E, "<o'brien_1%x@my-host.example.org>", "o'brien_1%x@my-host.example.org");
        assert_eq!(
            found(E, "café: jose@exämple.com? yes; jose@example.com yes"),
            vec!["jose@exämple.com", "jose@example.com"]
        );
        assert_eq!(found(E, "a@x.com,b@y.org"), vec!["a@x.com", "b@y.org"]);
        assert_finds(E, "JOHN@EXAMPLE.COM", "JOHN@EXAMPLE.COM");
    }

    #[test]
    fn unicode_addresses() {
        assert_finds(E, "mail josé.garcía@example.com now", "josé.garcía@example.com");
        assert_finds(E, "mail user@bücher.de.", "user@bücher.de");
        assert_finds(E, "メール: 山田@例え.jp", "山田@例え.jp");
        assert_finds(E, "a@b.jpです", "a@b.jp");
        assert_finds(E, "info@пример.рф,", "info@пример.рф");
        assert_finds(E, "x info@xn--e1afmkfd.xn--p1ai y", "info@xn--e1afmkfd.xn--p1ai");
        assert_finds(E, "Ünïcödé@exämple.de", "Ünïcödé@exämple.de");
    }

    #[test]
    fn false_positives() {
        assert_none(E, "user@localhost is not routable");
        assert_none(E, "decorator @property and @ alone");
        assert_none(E, "a@b.c single-letter tld");
        assert_none(E, "x@-bad.com and y@bad-.com");
        assert_none(E, "version@1.2 and name@host.123");
        assert_none(E, ".@example.com");
        assert_none(E, "john.@example.com");
        assert_none(E, &format!("a@{}.com", "x".repeat(260)));
    }

    #[test]
    fn dots_end_the_domain() {
        assert_finds(E, "mail a@b.com..and more", "a@b.com");
        assert_finds(E, "mail a@b.com. And more", "a@b.com");
    }

    #[test]
    fn long_local_part_is_cut_at_64() {
        let local = "l".repeat(80);
        let text = format!("{local}@example.com");
        assert_eq!(found(E, &text), vec![format!("{}@example.com", "l".repeat(64))]);
    }
}
