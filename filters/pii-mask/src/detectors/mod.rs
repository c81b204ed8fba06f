//! Built-in detectors, one module per family, named as Presidio names them.
//!
//! Every detector is a hand-written linear scanner: it finds cheap anchors
//! (`@`, digit runs, `:`, word starts with a known prefix) and validates the
//! candidate around them (Luhn, mod-97, SSN rules, octet ranges). No regex
//! engine runs for the built-ins; see the README for the measured speed.
//!
//! Detectors read the text through a [`Haystack`]. It records when a
//! detector had to look past the end of the text to decide about a candidate:
//! that candidate is *pending* (more text could change the decision), which
//! is what lets the stream masker release everything before it and hold back
//! only what is still undecided.

pub mod card;
pub mod email;
pub mod iban;
pub mod ip;
pub mod phone;
pub mod secrets;
pub mod ssn;

use std::cell::{Cell, OnceCell};

/// A byte range of the text: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// The built-in entity types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    EmailAddress,
    PhoneNumber,
    CreditCard,
    UsSsn,
    IpAddress,
    IbanCode,
    OpenAiApiKey,
    AwsAccessKey,
    GithubToken,
    SlackToken,
    Jwt,
    PrivateKey,
}

impl Entity {
    pub const ALL: [Entity; 12] = [
        Entity::EmailAddress,
        Entity::PhoneNumber,
        Entity::CreditCard,
        Entity::UsSsn,
        Entity::IpAddress,
        Entity::IbanCode,
        Entity::OpenAiApiKey,
        Entity::AwsAccessKey,
        Entity::GithubToken,
        Entity::SlackToken,
        Entity::Jwt,
        Entity::PrivateKey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Entity::EmailAddress => "EMAIL_ADDRESS",
            Entity::PhoneNumber => "PHONE_NUMBER",
            Entity::CreditCard => "CREDIT_CARD",
            Entity::UsSsn => "US_SSN",
            Entity::IpAddress => "IP_ADDRESS",
            Entity::IbanCode => "IBAN_CODE",
            Entity::OpenAiApiKey => "OPENAI_API_KEY",
            Entity::AwsAccessKey => "AWS_ACCESS_KEY",
            Entity::GithubToken => "GITHUB_TOKEN",
            Entity::SlackToken => "SLACK_TOKEN",
            Entity::Jwt => "JWT",
            Entity::PrivateKey => "PRIVATE_KEY",
        }
    }

    pub fn from_name(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|entity| entity.name() == name)
    }

    /// The longest text one match can span, in bytes (every built-in match is
    /// ASCII). The stream masker never holds back more than this per pending
    /// candidate; the README lists the values.
    pub fn max_len(self) -> usize {
        match self {
            Entity::EmailAddress => email::MAX_LEN,
            Entity::PhoneNumber => phone::MAX_LEN,
            Entity::CreditCard => card::MAX_LEN,
            Entity::UsSsn => ssn::MAX_LEN,
            Entity::IpAddress => ip::MAX_LEN,
            Entity::IbanCode => iban::MAX_LEN,
            Entity::OpenAiApiKey => secrets::OPENAI_MAX_LEN,
            Entity::AwsAccessKey => secrets::AWS_LEN,
            Entity::GithubToken => secrets::GITHUB_MAX_LEN,
            Entity::SlackToken => secrets::SLACK_MAX_LEN,
            Entity::Jwt => secrets::JWT_MAX_LEN,
            Entity::PrivateKey => secrets::PEM_MAX_LEN,
        }
    }

    /// Appends every candidate that starts at or after `hay.from`.
    pub fn find(self, hay: &Haystack<'_>, out: &mut Vec<Span>) {
        match self {
            Entity::EmailAddress => email::find(hay, out),
            Entity::PhoneNumber => phone::find(hay, out),
            Entity::CreditCard => card::find(hay, out),
            Entity::UsSsn => ssn::find(hay, out),
            Entity::IpAddress => ip::find(hay, out),
            Entity::IbanCode => iban::find(hay, out),
            Entity::OpenAiApiKey => secrets::find_openai(hay, out),
            Entity::AwsAccessKey => secrets::find_aws(hay, out),
            Entity::GithubToken => secrets::find_github(hay, out),
            Entity::SlackToken => secrets::find_slack(hay, out),
            Entity::Jwt => secrets::find_jwt(hay, out),
            Entity::PrivateKey => secrets::find_private_key(hay, out),
        }
    }
}

/// Left context the detectors may read before `from`, in bytes. The stream
/// masker keeps this much already-released text in front of what it scans.
/// The email local part (64) plus a boundary character is the longest reach.
pub const LEFT_CONTEXT: usize = 96;

/// The text a detector scans, with the bookkeeping for pending candidates.
pub struct Haystack<'a> {
    text: &'a [u8],
    /// Candidates must start at or after this offset; bytes before it are
    /// context only (already decided).
    pub from: usize,
    /// Whether the end of `text` is the end of the whole text (flush), or more
    /// text may follow (stream).
    pub complete: bool,
    /// Set when a detector reads at or past the end while evaluating a candidate.
    hit_end: Cell<bool>,
    /// Earliest start of a candidate that could still change with more text.
    pending: Cell<usize>,
    digit_runs: OnceCell<Vec<usize>>,
    word_starts: OnceCell<Vec<usize>>,
    /// Bytes the detectors read through [`Haystack::at`] and
    /// [`Haystack::before`], plus the steps they report with
    /// [`Haystack::step`]: the work, for the complexity tests.
    steps: Cell<u64>,
}

impl<'a> Haystack<'a> {
    pub fn new(text: &'a str, from: usize, complete: bool) -> Self {
        let bytes = text.as_bytes();
        Haystack {
            text: bytes,
            from: from.min(bytes.len()),
            complete,
            hit_end: Cell::new(false),
            pending: Cell::new(usize::MAX),
            digit_runs: OnceCell::new(),
            word_starts: OnceCell::new(),
            steps: Cell::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.text
    }

    /// The byte at `i`, recording a read past the end.
    #[inline]
    pub fn at(&self, i: usize) -> Option<u8> {
        self.step(1);
        match self.text.get(i) {
            Some(&b) => Some(b),
            None => {
                self.hit_end.set(true);
                None
            }
        }
    }

    /// The byte before `i` (context reads never make a candidate pending).
    #[inline]
    pub fn before(&self, i: usize) -> Option<u8> {
        self.step(1);
        i.checked_sub(1).and_then(|j| self.text.get(j).copied())
    }

    /// Records `n` steps of work done without [`Haystack::at`].
    #[inline]
    pub fn step(&self, n: usize) {
        self.steps.set(self.steps.get().wrapping_add(n as u64));
    }

    /// The work done on this text so far.
    pub fn steps(&self) -> u64 {
        self.steps.get()
    }

    /// Starts the evaluation of one candidate.
    #[inline]
    pub fn begin(&self) {
        self.hit_end.set(false);
    }

    /// Ends the evaluation of the candidate that starts at `start`: if it read
    /// past the end of an incomplete text, it is pending. Returns whether the
    /// decision is final.
    #[inline]
    pub fn settle(&self, start: usize) -> bool {
        if self.hit_end.get() && !self.complete {
            if start < self.pending.get() {
                self.pending.set(start);
            }
            false
        } else {
            true
        }
    }

    /// Marks `start` pending directly (a candidate whose anchor has not arrived yet).
    pub fn mark_pending(&self, start: usize) {
        if !self.complete && start < self.pending.get() {
            self.pending.set(start);
        }
    }

    /// The earliest pending candidate start, if any.
    pub fn pending(&self) -> Option<usize> {
        let pending = self.pending.get();
        (pending != usize::MAX).then_some(pending)
    }

    /// Starts of maximal runs of ASCII digits (over the whole text, context included).
    pub fn digit_runs(&self) -> &[usize] {
        self.digit_runs.get_or_init(|| {
            let mut runs = Vec::new();
            let mut prev_digit = false;
            for (i, b) in self.text.iter().enumerate() {
                let digit = b.is_ascii_digit();
                if digit && !prev_digit {
                    runs.push(i);
                }
                prev_digit = digit;
            }
            runs
        })
    }

    /// Offsets at or after `from` where a word starts (a word byte not preceded by one).
    pub fn word_starts(&self) -> &[usize] {
        self.word_starts.get_or_init(|| {
            let mut starts = Vec::new();
            let mut prev_word = self.before(self.from).is_some_and(is_word);
            for (i, &b) in self.text.iter().enumerate().skip(self.from) {
                let word = is_word(b);
                if word && !prev_word {
                    starts.push(i);
                }
                prev_word = word;
            }
            starts
        })
    }

    /// Whether `text[i..]` starts with `prefix`, recording a read past the end
    /// when the text ends inside a partial prefix.
    pub fn starts_with_at(&self, i: usize, prefix: &[u8]) -> bool {
        let rest = self.text.get(i..).unwrap_or_default();
        if rest.len() >= prefix.len() {
            rest.get(..prefix.len()) == Some(prefix)
        } else {
            if prefix.starts_with(rest) {
                self.hit_end.set(true);
            }
            false
        }
    }

    /// Offset of the next `needle` at or after `from`, word-at-a-time.
    pub fn find_byte(&self, from: usize, needle: u8) -> Option<usize> {
        find_byte(self.text, from, needle)
    }
}

/// ASCII letters, digits and `_`.
#[inline]
pub fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Offset of the next `needle` in `hay` at or after `from` (SWAR, 8 bytes per step).
pub fn find_byte(hay: &[u8], from: usize, needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let rest = hay.get(from..)?;
    let pattern = u64::from_ne_bytes([needle; 8]);
    let mut offset = 0;
    for chunk in rest.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ pattern;
        if x.wrapping_sub(LO) & !x & HI != 0 {
            break;
        }
        offset += 8;
    }
    rest.get(offset..)?.iter().position(|&b| b == needle).map(|p| from + offset + p)
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// Spans of `entity` in a complete text, as strings.
    pub fn found(entity: Entity, text: &str) -> Vec<String> {
        let hay = Haystack::new(text, 0, true);
        let mut out = Vec::new();
        entity.find(&hay, &mut out);
        out.iter().map(|span| text[span.start..span.end].to_string()).collect()
    }

    pub fn assert_finds(entity: Entity, text: &str, expected: &str) {
        assert_eq!(found(entity, text), vec![expected.to_string()], "{:?} in {text:?}", entity);
    }

    pub fn assert_none(entity: Entity, text: &str) {
        assert_eq!(found(entity, text), Vec::<String>::new(), "{:?} in {text:?}", entity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_naive() {
        let text = b"abcdefghijklmnopqrstuvwxyz@0123456789@@xyz";
        for from in 0..text.len() + 2 {
            let naive = text.get(from..).and_then(|rest| rest.iter().position(|&b| b == b'@')).map(|p| p + from);
            assert_eq!(find_byte(text, from, b'@'), naive, "from {from}");
        }
        assert_eq!(find_byte(b"\x80\x81\xc0abc", 0, b'c'), Some(5));
    }

    #[test]
    fn names_round_trip() {
        for entity in Entity::ALL {
            assert_eq!(Entity::from_name(entity.name()), Some(entity));
        }
        assert_eq!(Entity::from_name("EMAIL"), None);
    }

    /// Adversarial texts at two sizes: each detector's work grows linearly
    /// (4× the text, at most 4.5× the steps) and stays a small multiple of
    /// the text's length, whatever the content.
    #[test]
    fn detector_work_is_linear_on_adversarial_texts() {
        let units = ["1 ", "1-", "12", "1.", "a@", "@a.", "1:", "a:", "+1 ", "(1", "DE89 ", "sk-", "x", "é"];
        for unit in units {
            for (entity, complete) in Entity::ALL.into_iter().flat_map(|e| [(e, true), (e, false)]) {
                let work = |n: usize| {
                    let text = unit.repeat(n);
                    let hay = Haystack::new(&text, 0, complete);
                    let mut out = Vec::new();
                    entity.find(&hay, &mut out);
                    (hay.steps(), text.len() as u64)
                };
                let (small, _) = work(5_000);
                let (large, len) = work(20_000);
                assert!(large * 2 <= small.max(1) * 9, "{entity:?}/{complete} on {unit:?}: {small} -> {large} steps");
                assert!(large <= len * 400, "{entity:?}/{complete} on {unit:?}: {large} steps for {len} bytes");
            }
        }
    }

    #[test]
    fn pending_bookkeeping() {
        let hay = Haystack::new("ab", 0, false);
        hay.begin();
        assert_eq!(hay.at(5), None);
        assert!(!hay.settle(1));
        assert_eq!(hay.pending(), Some(1));
        let complete = Haystack::new("ab", 0, true);
        complete.begin();
        complete.at(5);
        assert!(complete.settle(0));
        assert_eq!(complete.pending(), None);
    }
}
