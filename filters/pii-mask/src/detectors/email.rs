//! EMAIL_ADDRESS: `local@domain.tld`, anchored on `@`.
//!
//! The local part is the run of `[A-Za-z0-9._%+'-]` before the `@` (at most
//! 64 characters, no leading or trailing dot); the domain is at least two
//! dot-separated labels of `[A-Za-z0-9-]` (1–63 characters each, no leading or
//! trailing hyphen) ending in an alphabetic top-level label of two or more
//! letters, at most 253 characters in all. A sentence-ending dot is not part
//! of the address.

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

pub fn find(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let text = hay.bytes();
    let mut search = hay.from;
    while let Some(at) = hay.find_byte(search, b'@') {
        search = at + 1;
        let mut start = at;
        while start > 0 && at - start < MAX_LOCAL && hay.before(start).is_some_and(is_local) {
            start -= 1;
        }
        while start < at && matches!(text.get(start), Some(b'.' | b'\'' | b'-')) {
            start += 1;
        }
        if start == at || start < hay.from || hay.before(at) == Some(b'.') {
            continue;
        }
        hay.begin();
        let domain_start = at + 1;
        let mut end = domain_start;
        while let Some(b) = hay.at(end) {
            if !is_domain(b) || end - domain_start > MAX_DOMAIN {
                break;
            }
            end += 1;
        }
        let domain_end = if end - domain_start > MAX_DOMAIN { None } else { valid_domain(text, domain_start, end) };
        if hay.settle(start) {
            if let Some(domain_end) = domain_end {
                out.push(Span { start, end: domain_end });
            }
        }
    }
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
    for label in run.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > 63 || label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return None;
        }
        labels += 1;
        last = label;
    }
    if labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic) {
        Some(start + run.len())
    } else {
        None
    }
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
        assert_finds(E, "café: jose@exämple.com? no; jose@example.com yes", "jose@example.com");
        assert_eq!(found(E, "a@x.com,b@y.org"), vec!["a@x.com", "b@y.org"]);
        assert_finds(E, "JOHN@EXAMPLE.COM", "JOHN@EXAMPLE.COM");
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
