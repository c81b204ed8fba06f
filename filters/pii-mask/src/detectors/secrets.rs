//! Credentials that must never reach a provider or a client:
//!
//! - OPENAI_API_KEY: `sk-` then 20+ of `[A-Za-z0-9_-]` with at least one digit
//!   (covers `sk-proj-…`, `sk-svcacct-…`, legacy `sk-…`, and `sk-ant-…` keys);
//! - AWS_ACCESS_KEY: `AKIA`, `ASIA`, `ABIA` or `ACCA` then 16 of `[A-Z0-9]`;
//! - GITHUB_TOKEN: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` then 36+ alphanumerics,
//!   or `github_pat_` then 22+ of `[A-Za-z0-9_]`;
//! - SLACK_TOKEN: `xoxb-`, `xoxa-`, `xoxp-`, `xoxr-`, `xoxs-` then 10+ of `[A-Za-z0-9-]`;
//! - JWT: three base64url segments, the first starting `eyJ` (`{"`), the
//!   second non-empty, the third (signature) possibly empty;
//! - PRIVATE_KEY: a PEM block from `-----BEGIN … PRIVATE KEY-----` to its
//!   `-----END … PRIVATE KEY-----`; a block cut short (no END within the cap)
//!   is matched through the end of its base64 body.
//!
//! Each token must start at a word boundary. Tokens longer than their cap are
//! matched up to the cap (the rest is not a separate match); the caps are far
//! above real token lengths.

use super::{is_word, Haystack, Span};

pub const OPENAI_MAX_LEN: usize = 256;
pub const AWS_LEN: usize = 20;
pub const GITHUB_MAX_LEN: usize = 255;
pub const SLACK_MAX_LEN: usize = 256;
pub const JWT_MAX_LEN: usize = 8192;
pub const PEM_MAX_LEN: usize = 16384;

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Reads a run of `class` bytes from `i`, at most `max` long. Returns its end.
fn run(hay: &Haystack<'_>, i: usize, max: usize, class: impl Fn(u8) -> bool) -> usize {
    let mut j = i;
    while j - i < max && hay.at(j).is_some_and(&class) {
        j += 1;
    }
    j
}

/// Runs `check` (which returns the end of a match) on every word start that
/// begins with `first`, recording pending candidates.
fn scan(hay: &Haystack<'_>, firsts: &[u8], out: &mut Vec<Span>, check: impl Fn(usize) -> Option<usize>) {
    let text = hay.bytes();
    for &start in hay.word_starts() {
        if !text.get(start).is_some_and(|b| firsts.contains(b)) {
            continue;
        }
        // `-` is not a word byte, so `sk-` after `my-` still starts a token;
        // but a token glued to a preceding `-` or `_` token run does not.
        if hay.before(start).is_some_and(|b| b == b'-') && hay.before(start - 1).is_some_and(is_word) {
            continue;
        }
        hay.begin();
        let end = check(start);
        if hay.settle(start) {
            if let Some(end) = end {
                out.push(Span { start, end });
            }
        }
    }
}

pub fn find_openai(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    scan(hay, b"s", out, |start| {
        if !hay.starts_with_at(start, b"sk-") {
            return None;
        }
        let end = run(hay, start + 3, OPENAI_MAX_LEN - 3, is_token);
        let body = hay.bytes().get(start + 3..end)?;
        let alnum = body.iter().filter(|b| b.is_ascii_alphanumeric()).count();
        (alnum >= 20 && body.iter().any(u8::is_ascii_digit)).then_some(end)
    });
}

pub fn find_aws(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    scan(hay, b"A", out, |start| {
        let prefixed = [b"AKIA", b"ASIA", b"ABIA", b"ACCA"].iter().any(|p| hay.starts_with_at(start, *p));
        if !prefixed {
            return None;
        }
        let end = run(hay, start + 4, 17, |b| b.is_ascii_uppercase() || b.is_ascii_digit());
        (end - start == AWS_LEN && !hay.at(end).is_some_and(is_word)).then_some(end)
    });
}

pub fn find_github(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    scan(hay, b"g", out, |start| {
        if hay.starts_with_at(start, b"github_pat_") {
            let end = run(hay, start + 11, GITHUB_MAX_LEN - 11, is_word);
            return (end - start - 11 >= 22).then_some(end);
        }
        let classic = [b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"].iter().any(|p| hay.starts_with_at(start, *p));
        if !classic {
            return None;
        }
        let end = run(hay, start + 4, GITHUB_MAX_LEN - 4, |b| b.is_ascii_alphanumeric());
        (end - start - 4 >= 36 && hay.at(end).is_none_or(|b| b != b'_')).then_some(end)
    });
}

pub fn find_slack(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    scan(hay, b"x", out, |start| {
        let prefixed = [b"xoxb-", b"xoxa-", b"xoxp-", b"xoxr-", b"xoxs-"].iter().any(|p| hay.starts_with_at(start, *p));
        if !prefixed {
            return None;
        }
        let end = run(hay, start + 5, SLACK_MAX_LEN - 5, |b| b.is_ascii_alphanumeric() || b == b'-');
        let body = hay.bytes().get(start + 5..end)?;
        (body.iter().filter(|b| b.is_ascii_alphanumeric()).count() >= 10).then_some(end)
    });
}

pub fn find_jwt(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    scan(hay, b"e", out, |start| {
        if !hay.starts_with_at(start, b"eyJ") {
            return None;
        }
        let header_end = run(hay, start, JWT_MAX_LEN, b64);
        if header_end - start < 10 || hay.at(header_end) != Some(b'.') {
            return None;
        }
        let payload_end = run(hay, header_end + 1, JWT_MAX_LEN - (header_end + 1 - start), b64);
        if payload_end - header_end - 1 < 2 || hay.at(payload_end) != Some(b'.') {
            return None;
        }
        let end = run(hay, payload_end + 1, JWT_MAX_LEN.saturating_sub(payload_end + 1 - start), b64);
        Some(end)
    });
}

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const KEY_TAIL: &[u8] = b"PRIVATE KEY-----";

fn is_pem_body(b: u8) -> bool {
    // Backslash too: inside JSON text (tool-call arguments) line breaks are written `\n`.
    b.is_ascii_alphanumeric()
        || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n' | b' ' | b'\t' | b':' | b',' | b'-' | b'\\')
}

/// Reads `-----BEGIN <label>PRIVATE KEY-----` or `-----END …` at `i` (label:
/// upper-case letters, digits and spaces, at most 40). Returns the line's end.
fn pem_line(hay: &Haystack<'_>, i: usize, marker: &[u8]) -> Option<usize> {
    if !hay.starts_with_at(i, marker) {
        return None;
    }
    let label_start = i + marker.len();
    let label_end = run(hay, label_start, 41, |b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    let label = hay.bytes().get(label_start..label_end)?;
    // The label ends with "PRIVATE KEY" followed by the dashes.
    let cut = label.windows(11).rposition(|w| w == b"PRIVATE KEY")?;
    let tail_start = label_start + cut;
    hay.starts_with_at(tail_start, KEY_TAIL).then_some(tail_start + KEY_TAIL.len())
}

pub fn find_private_key(hay: &Haystack<'_>, out: &mut Vec<Span>) {
    let text = hay.bytes();
    let mut search = hay.from;
    while let Some(dash) = hay.find_byte(search, b'-') {
        search = dash + 1;
        if !text.get(dash..).is_some_and(|rest| rest.starts_with(b"-----B") || b"-----B".starts_with(rest)) {
            continue;
        }
        if hay.before(dash).is_some_and(|b| b == b'-') {
            continue;
        }
        hay.begin();
        let found = private_key_at(hay, dash);
        if hay.settle(dash) {
            if let Some(end) = found {
                out.push(Span { start: dash, end });
                search = end;
            }
        }
    }
}

fn private_key_at(hay: &Haystack<'_>, start: usize) -> Option<usize> {
    let header_end = pem_line(hay, start, BEGIN)?;
    let limit = start + PEM_MAX_LEN;
    // The body up to the first `-----END … PRIVATE KEY-----`.
    let mut i = header_end;
    while i < limit {
        match hay.at(i) {
            Some(b'-') => {
                if let Some(end) = pem_line(hay, i, END) {
                    return Some(end);
                }
                i += 1;
            }
            Some(b) if is_pem_body(b) => i += 1,
            _ => break,
        }
    }
    // No END (cut short or over the cap): the header and the body run.
    while i > header_end && hay.bytes().get(i - 1).is_some_and(|b| b.is_ascii_whitespace()) {
        i -= 1;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_finds, assert_none, found};
    use super::super::Entity::{AwsAccessKey, GithubToken, Jwt, OpenAiApiKey, PrivateKey, SlackToken};

    #[test]
    fn openai() {
        let key = "sk-proj-Ab3dEfGh1jKlMnOpQrStUvWxYz0123456789_-AbCdEf";
        assert_finds(OpenAiApiKey, &format!("key={key} ok"), key);
        assert_finds(
            OpenAiApiKey,
            "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL.",
            "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL",
        );
        assert_none(OpenAiApiKey, "ask-me-anything-about-everything-please");
        assert_none(OpenAiApiKey, "sk-this-is-not-a-real-key-just-words");
        assert_none(OpenAiApiKey, "sk-short123");
        assert_none(OpenAiApiKey, "risk-abcdefghijklmnopqrstuvwxyz0123456789");
    }

    #[test]
    fn aws() {
        assert_finds(AwsAccessKey, "id AKIAIOSFODNN7EXAMPLE.", "AKIAIOSFODNN7EXAMPLE");
        assert_finds(AwsAccessKey, "ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A");
        assert_none(AwsAccessKey, "AKIAIOSFODNN7EXAMPL short");
        assert_none(AwsAccessKey, "AKIAIOSFODNN7EXAMPLEX long");
        assert_none(AwsAccessKey, "XAKIAIOSFODNN7EXAMPLE glued");
        assert_none(AwsAccessKey, "AKIAiosfodnn7example lower");
    }

    #[test]
    fn github() {
        let classic = format!("ghp_{}", "aB3".repeat(12));
        assert_finds(GithubToken, &format!("token {classic}."), &classic);
        let fine = format!("github_pat_11ABCDEFG0{}", "x_Y9".repeat(15));
        assert_finds(GithubToken, &format!("{fine} end"), &fine);
        assert_none(GithubToken, &format!("ghp_{}", "a".repeat(30)));
        assert_none(GithubToken, "ghx_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_none(GithubToken, "github_pat_short");
    }

    #[test]
    fn slack() {
        assert_finds(
            SlackToken,
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp ok",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
        );
        assert_none(SlackToken, "xoxz-123456789012-1234567890123");
        assert_none(SlackToken, "xoxb-12");
    }

    #[test]
    fn jwt() {
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_finds(Jwt, &format!("Bearer {token} sent"), token);
        assert_finds(Jwt, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. unsigned", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.");
        assert_none(Jwt, "eyJhbGciOiJIUzI1NiJ9 only a header");
        assert_none(Jwt, "keyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig glued");
        assert_none(Jwt, "eyJ.x.y too short");
    }

    #[test]
    fn private_key() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx+ab/cd==\nQUJD\n-----END RSA PRIVATE KEY-----";
        assert_finds(PrivateKey, &format!("key:\n{pem}\nthanks"), pem);
        let pkcs8 = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
        assert_finds(PrivateKey, pkcs8, pkcs8);
        let cut = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA";
        assert_finds(PrivateKey, &format!("{cut}\n\n!"), cut);
        assert_none(PrivateKey, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
        assert_none(PrivateKey, "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----");
        assert_eq!(found(PrivateKey, &format!("{pkcs8}\n{pkcs8}")).len(), 2);
        // As JSON text (tool-call arguments), line breaks are escaped.
        let escaped = serde_json::to_string(pkcs8).unwrap();
        assert_finds(PrivateKey, &format!("{{\"key\": {escaped}}}"), escaped.trim_matches('"'));
    }
}
