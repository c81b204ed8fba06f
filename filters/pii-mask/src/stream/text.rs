//! One logical text arriving in pieces (one choice's content, one tool
//! call's arguments, one Anthropic content block).
//!
//! [`TextStream`] appends each piece to a carry, runs the scanner over the
//! carry's decoded view (JSON escapes for tool arguments, obfuscations when
//! configured), releases the text whose decisions are final and holds back
//! only what a match still in progress could cover (see
//! [`crate::scan::Scanner::find_partial`]). The output is exactly what masking
//! the whole text at once gives; the unit tests check that at every split.
//!
//! **Bound.** The carry is at most [`LEFT_CONTEXT`] bytes of released context
//! plus the held text, and the held text never exceeds
//! [`Scanner::hold_limit_bytes`] (the longest possible match, times the
//! largest expansion of an escape). Every detector reports a candidate as
//! pending only while it can still become a match within its longest match,
//! so the limit is a backstop that well-formed detectors never reach. Each
//! push therefore scans at most the piece plus that bound: the work of a
//! stream is linear in its length, whatever its content.

use crate::actions::HashSettings;
use crate::detectors::LEFT_CONTEXT;
use crate::scan::view::{JsonStringState, View};
use crate::scan::{Findings, Scanner};

/// What one push released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Text now final, masked.
    pub text: String,
    /// Set when a match with the reject action was found: `text` then ends
    /// just before it, and nothing more may be released.
    pub reject: Option<usize>,
}

/// One logical text arriving in pieces.
#[derive(Debug, Default)]
pub struct TextStream {
    /// Context already released (at most [`LEFT_CONTEXT`] decoded bytes)
    /// followed by text not yet released.
    carry: String,
    /// Where the unreleased text starts inside `carry`.
    from: usize,
    /// The text is JSON (tool-call arguments): escapes are decoded for
    /// matching, and this is the string state at the start of `carry`.
    json: Option<JsonStringState>,
    /// Bytes scanned so far (the carry's length at every release): the
    /// stream's work, for the complexity tests.
    scanned: u64,
}

impl TextStream {
    /// A text of prose.
    pub fn new() -> Self {
        TextStream::default()
    }

    /// A text that is JSON arriving in fragments (tool-call arguments,
    /// Anthropic `partial_json`).
    pub fn json() -> Self {
        TextStream { json: Some(JsonStringState::default()), ..TextStream::default() }
    }

    /// Bytes held back (not yet released).
    pub fn held(&self) -> usize {
        self.carry.len() - self.from
    }

    /// Bytes scanned so far, over all pushes.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Appends a piece and releases what is final.
    pub fn push(&mut self, piece: &str, scanner: &Scanner, hash: &HashSettings, findings: &mut Findings) -> Released {
        self.carry.push_str(piece);
        self.release(scanner, hash, findings, false)
    }

    /// Ends the text: releases everything.
    pub fn finish(&mut self, scanner: &Scanner, hash: &HashSettings, findings: &mut Findings) -> Released {
        self.release(scanner, hash, findings, true)
    }

    fn release(&mut self, scanner: &Scanner, hash: &HashSettings, findings: &mut Findings, complete: bool) -> Released {
        self.scanned += self.carry.len() as u64;
        let view = View::new(&self.carry, scanner.view_options(self.json.is_some()), complete);
        let view_from = view.from_original(self.from);
        let (matches, view_cut) = scanner.find_partial(&view.text, view_from, complete);
        let mut released = Released::default();
        let reject_at = matches.iter().position(|m| scanner.rules.get(m.rule).is_some_and(|r| r.action.is_reject()));
        if let Some(at) = reject_at {
            let (before, rejected) = matches.split_at(at);
            let stop = rejected.first().map_or(self.from, |m| view.start_in_original(m.start));
            scanner.render_into(
                &self.carry,
                &view,
                self.from,
                stop,
                before,
                self.json,
                hash,
                &mut released.text,
                findings,
            );
            if let Some(m) = rejected.first() {
                findings.counts.resize(findings.counts.len().max(scanner.rules.len()), 0);
                if let Some(count) = findings.counts.get_mut(m.rule) {
                    *count += 1;
                }
                findings.reject.get_or_insert(m.rule);
                released.reject = Some(m.rule);
            }
            self.carry.clear();
            self.from = 0;
            return released;
        }
        let mut cut = view.start_in_original(view_cut);
        if let Some(incomplete) = view.incomplete {
            cut = cut.min(incomplete);
        }
        // The backstop: never hold more than the documented limit.
        let floor = self.carry.len().saturating_sub(scanner.hold_limit_bytes());
        if cut < floor && matches.last().is_none_or(|m| view.end_in_original(m.end) <= floor) {
            cut = view.unit_boundary_at_or_before(floor);
            while !self.carry.is_char_boundary(cut) {
                cut -= 1;
            }
        }
        let cut = cut.max(self.from);
        scanner.render_into(
            &self.carry,
            &view,
            self.from,
            cut,
            &matches,
            self.json,
            hash,
            &mut released.text,
            findings,
        );
        // Keep a little released text as context for the next scan, measured
        // in decoded bytes (what the detectors read back), cut on a boundary
        // of the original that splits no escape and no character.
        let keep_view = view.from_original(cut).saturating_sub(LEFT_CONTEXT);
        let mut keep_from = view.start_in_original(keep_view).min(cut);
        while keep_from > 0 && !self.carry.is_char_boundary(keep_from) {
            keep_from -= 1;
        }
        drop(view);
        if let Some(state) = self.json.as_mut() {
            state.advance(self.carry.as_bytes().get(..keep_from).unwrap_or_default());
        }
        self.carry.drain(..keep_from);
        self.from = cut - keep_from;
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Action;
    use crate::detectors::Entity;
    use crate::scan::{Rule, RuleKind};

    pub(crate) fn scanner_with(action: impl Fn(Entity) -> Action) -> Scanner {
        Scanner::new(
            Entity::ALL
                .iter()
                .map(|&e| Rule { name: e.name().into(), kind: RuleKind::Builtin(e), action: action(e) })
                .collect(),
        )
    }

    pub(crate) fn replace_all() -> Scanner {
        scanner_with(|e| Action::Replace { text: format!("[{}]", e.name()) })
    }

    fn hash() -> HashSettings {
        HashSettings { salt: "s".into(), chars: 8 }
    }

    include!("../../tests/common/samples.rs");

    fn whole(scanner: &Scanner, text: &str) -> String {
        scanner.mask(text, &hash(), &mut Findings::default()).unwrap_or_else(|| text.to_string())
    }

    fn pieces_of(mut stream: TextStream, scanner: &Scanner, parts: &[&str]) -> String {
        let mut findings = Findings::default();
        let mut out = String::new();
        for part in parts {
            out.push_str(&stream.push(part, scanner, &hash(), &mut findings).text);
        }
        out.push_str(&stream.finish(scanner, &hash(), &mut findings).text);
        out
    }

    fn pieces(scanner: &Scanner, parts: &[&str]) -> String {
        pieces_of(TextStream::new(), scanner, parts)
    }

    #[test]
    fn every_split_equals_whole_text_masking() {
        let scanner = replace_all();
        for (name, value) in SAMPLES {
            let text = format!("Hi, é my value is {value} and that's it.");
            let expected = whole(&scanner, &text);
            assert!(expected.contains(&format!("[{name}]")), "{name}: {expected}");
            assert!(!expected.contains(value), "{name}");
            let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
            for &cut in &cuts {
                assert_eq!(pieces(&scanner, &[&text[..cut], &text[cut..]]), expected, "{name} split at {cut}");
            }
            // Three pieces at every pair of cuts for the region around the value.
            let start = text.find(value).unwrap().saturating_sub(3);
            let end = (start + value.len() + 6).min(text.len());
            for &a in cuts.iter().filter(|&&c| c >= start && c <= end) {
                for &b in cuts.iter().filter(|&&c| c >= a && c <= end) {
                    assert_eq!(
                        pieces(&scanner, &[&text[..a], &text[a..b], &text[b..]]),
                        expected,
                        "{name} splits at {a},{b}"
                    );
                }
            }
        }
    }

    /// New detector shapes: values next to other digits, notes after phones,
    /// Unicode addresses, national formats. Each split gives the whole-text result.
    #[test]
    fn new_shapes_split_anywhere_equal_whole_text_masking() {
        let scanner = replace_all();
        for text in [
            "card 4111 1111 1111 1111 123 and 12/27 ok",
            "cards 4111 1111 1111 1111 5555 5555 5555 4444.",
            "call +1 415 555 0132 (mobile) or (415) 555-0132 x12 now",
            "mail josé.garcía@bücher.de today",
            "tel: 0612345678 or 01.42.68.53.00 or +44(0)20 7946 0958",
            "ssn 078-05-1120 and iban DE89-3704-0044-0532-0130-00 end",
            "ip ::ffff:192.0.2.128 and fe80::1%eth0/64 end",
        ] {
            let expected = whole(&scanner, text);
            for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                assert_eq!(pieces(&scanner, &[&text[..cut], &text[cut..]]), expected, "{text} split at {cut}");
            }
        }
    }

    #[test]
    fn char_by_char_equals_whole_text_masking() {
        let scanner = replace_all();
        let mut text = String::from("Start. ");
        for (_, value) in SAMPLES {
            text.push_str(value);
            text.push_str(" then ");
        }
        let expected = whole(&scanner, &text);
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(pieces(&scanner, &parts), expected);
        for (_, value) in SAMPLES {
            assert!(!expected.contains(value));
        }
    }

    #[test]
    fn json_fragments_with_escapes_split_anywhere() {
        let scanner = replace_all();
        let args = r#"{"email": "ana.silva\u0040example.com", "card": 4111111111111111, "note": "line\ncall +1 415 555 0132\"", "x": "\uD83D\uDE00"}"#;
        let mut expected = whole(&scanner, args);
        assert_eq!(
            expected,
            r#"{"email": "[EMAIL_ADDRESS]", "card": "[CREDIT_CARD]", "note": "line\ncall [PHONE_NUMBER]\"", "x": "\uD83D\uDE00"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&expected).unwrap();
        assert_eq!(parsed["email"], "[EMAIL_ADDRESS]");
        expected = parsed.to_string();
        for a in 0..=args.len() {
            let out = pieces_of(TextStream::json(), &scanner, &[&args[..a], &args[a..]]);
            let reparsed: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out} at {a}"));
            assert_eq!(reparsed.to_string(), expected, "split at {a}");
        }
        // Every pair of cuts around the escaped address.
        let around = args.find("ana").unwrap();
        for a in around..around + 30 {
            for b in a..around + 30 {
                let out = pieces_of(TextStream::json(), &scanner, &[&args[..a], &args[a..b], &args[b..]]);
                assert!(!out.contains("ana.silva"), "{out} at {a},{b}");
                assert!(out.contains("[EMAIL_ADDRESS]"), "{out} at {a},{b}");
            }
        }
    }

    #[test]
    fn hold_back_is_bounded_and_small_for_prose() {
        let scanner = replace_all();
        let mut stream = TextStream::new();
        let mut findings = Findings::default();
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(50);
        let mut released = 0;
        for word in prose.split_inclusive(' ') {
            released += stream.push(word, &scanner, &hash(), &mut findings).text.len();
            assert!(stream.held() <= crate::scan::TRAILING_TOKEN_MAX);
        }
        assert_eq!(released, prose.len(), "prose ending in a space is released at once");
        // A long run without spaces is held only up to the window.
        let mut stream = TextStream::new();
        for _ in 0..1000 {
            stream.push("x", &scanner, &hash(), &mut findings);
            assert!(stream.held() <= scanner.window_bytes());
        }
    }

    /// Feeds `digits` digits in 5-digit pieces; returns (bytes scanned, most held).
    fn digit_run_work(scanner: &Scanner, digits: usize, separator: &str) -> (u64, usize) {
        let mut stream = TextStream::new();
        let mut findings = Findings::default();
        let mut most_held = 0;
        let piece = format!("12345{separator}");
        for _ in 0..digits / 5 {
            stream.push(&piece, scanner, &hash(), &mut findings);
            most_held = most_held.max(stream.held());
        }
        stream.finish(scanner, &hash(), &mut findings);
        (stream.scanned(), most_held)
    }

    /// A model printing one long number: the run is already too long for any
    /// entity, so nothing of it is held beyond the bound and the work grows
    /// linearly (4× the digits, about 4× the bytes scanned).
    #[test]
    fn long_digit_runs_cost_linear_work_and_bounded_hold() {
        let scanner = replace_all();
        for separator in ["", " ", "-"] {
            let (small, held_small) = digit_run_work(&scanner, 20_000, separator);
            let (large, held_large) = digit_run_work(&scanner, 80_000, separator);
            let bound = scanner.hold_limit_bytes();
            assert!(held_small <= bound && held_large <= bound, "held {held_small}/{held_large} > {bound}");
            eprintln!("{separator:?}: scanned {small} / {large}, held {held_small} / {held_large}");
            // Linear: 4× the input may cost at most 4.5× the work (quadratic would be 16×).
            assert!(large * 2 <= small * 9, "separator {separator:?}: {small} -> {large}");
            // And the constant is small: each byte is scanned a bounded number of times.
            let input = 80_000 + 80_000 / 5 * separator.len();
            assert!(large <= (input as u64) * 64, "separator {separator:?}: {large} scanned for {input}");
        }
    }

    #[test]
    fn non_ascii_prose_is_not_held_back() {
        let scanner = replace_all();
        let mut stream = TextStream::new();
        let mut findings = Findings::default();
        let mut out = String::new();
        for piece in ["日本語の", "文章です。", "メールは", "a@b.com", "です"] {
            out.push_str(&stream.push(piece, &scanner, &hash(), &mut findings).text);
            if !piece.is_ascii() {
                assert_eq!(stream.held(), 0, "nothing held after {piece}");
            }
        }
        assert_eq!(out, "日本語の文章です。メールは[EMAIL_ADDRESS]です");
    }

    /// The built-ins plus the shipped custom rule (`EMPLOYEE_ID`), a rule
    /// that any capitalised word could begin (`NAME_PAIR`), a rule without a
    /// literal prefix and deny words and phrases.
    pub(crate) fn with_custom_rules() -> Scanner {
        use crate::custom::{DenyWords, RegexRule};
        let mut rules: Vec<Rule> = replace_all().rules;
        let regex = |name: &str, pattern: &str, max: usize| Rule {
            name: name.into(),
            kind: RuleKind::Regex(RegexRule::new(regex::Regex::new(pattern).unwrap(), max)),
            action: Action::Replace { text: format!("[{name}]") },
        };
        rules.push(regex("EMPLOYEE_ID", r"\bEMP-[0-9]{6}\b", 10));
        rules.push(regex("NAME_PAIR", r"\b[A-Z][a-z]+ [A-Z][a-z]+\b", 40));
        rules.push(regex("TICKET", r"[a-z]{2}#\d{3,5}", 12));
        let words: Vec<String> = ["bluebird", "Ärger", "project x", "top-secret"].map(String::from).to_vec();
        rules.push(Rule {
            name: "DENY".into(),
            kind: RuleKind::Words(DenyWords::new(&words).unwrap()),
            action: Action::Replace { text: "[DENY]".into() },
        });
        Scanner::new(rules)
    }

    /// A small deterministic generator (xorshift), so the property test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Texts mixing ordinary words, punctuation, every sample value, custom
    /// rule values, deny words and near misses (prefixes of values).
    fn generated_texts(count: usize, seed: u64) -> Vec<String> {
        let words = [
            "The",
            "quick",
            "report",
            "Margins",
            "Held",
            "Steady",
            "EMP",
            "E",
            "EMP-",
            "EMP-12345",
            "EMP-123456",
            "EMP-1234567",
            "sk",
            "AKIA",
            "ghp",
            "xox",
            "eyJ",
            "DE",
            "fe80",
            "mail",
            "john",
            "bluebird",
            "Bluebird",
            "bluebirds",
            "blue",
            "project",
            "x",
            "Project X",
            "top-secret",
            "top",
            "Ärger",
            "ärgerlich",
            "café",
            "日本語",
            "ab#1234",
            "zz#12",
            "a",
            "1",
            "12",
            "415",
            "-----BEGIN",
            "Ana Silva",
            "ana@",
            "@example.com",
        ];
        let separators = [" ", " ", " ", ", ", ". ", "(", ") ", ":", "-", "", "\n", "; ", "! ", "\"", "/"];
        let mut rng = Rng(seed);
        (0..count)
            .map(|_| {
                let mut text = String::new();
                for _ in 0..4 + rng.below(10) {
                    match rng.below(4) {
                        0 => text.push_str(SAMPLES[rng.below(SAMPLES.len())].1),
                        _ => text.push_str(words[rng.below(words.len())]),
                    }
                    text.push_str(separators[rng.below(separators.len())]);
                }
                text
            })
            .collect()
    }

    /// Consecutive pieces of about `size` bytes, cut on char boundaries.
    fn fixed_pieces(text: &str, size: usize) -> Vec<&str> {
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let mut end = (start + size).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            pieces.push(&text[start..end]);
            start = end;
        }
        pieces
    }

    /// The property: for many generated texts, masking in pieces equals
    /// masking whole, cut at every offset into two pieces and cut into
    /// consecutive pieces of 1 to 7 bytes, with built-ins alone and with
    /// custom rules and deny words.
    #[test]
    fn piecewise_equals_whole_for_generated_texts_at_every_split() {
        let scanners = [replace_all(), with_custom_rules()];
        let mut checked = 0;
        for (text_index, text) in generated_texts(160, 0x9E37_79B9_7F4A_7C15).iter().enumerate() {
            for scanner in &scanners {
                let expected = whole(scanner, text);
                for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                    let out = pieces(scanner, &[&text[..cut], &text[cut..]]);
                    assert_eq!(out, expected, "text {text_index} {text:?} split at {cut}");
                    checked += 1;
                }
                for size in 1..=7 {
                    let parts = fixed_pieces(text, size);
                    assert_eq!(pieces(scanner, &parts), expected, "text {text_index} {text:?} in {size}-byte pieces");
                    checked += 1;
                }
            }
        }
        assert!(checked > 20_000, "{checked}");
    }

    /// A value that starts exactly where a piece starts, after every kind of
    /// text a piece can end with: masked as in the whole text.
    #[test]
    fn values_starting_at_a_piece_boundary_are_masked() {
        let scanner = with_custom_rules();
        let mut values: Vec<&str> = SAMPLES.iter().map(|(_, value)| *value).collect();
        values.extend(["EMP-123456", "Ana Silva", "ab#1234", "bluebird", "Ärger", "project x", "top-secret"]);
        for value in values {
            for before in ["", "Hi ", "Hi,", "Hi, ", "(", "mail:", "x\n", "é "] {
                for after in ["", " ok", ", ok", ".", ")"] {
                    let text = format!("{before}{value}{after}");
                    let expected = whole(&scanner, &text);
                    if ["", "Hi ", "Hi, "].contains(&before) {
                        assert_ne!(expected, text, "{text:?} is masked whole");
                    }
                    assert_eq!(pieces(&scanner, &[before, &format!("{value}{after}")]), expected, "{text:?}");
                    // The value alone in its own piece, and the value's pieces of 4 bytes.
                    assert_eq!(pieces(&scanner, &[before, value, after]), expected, "{text:?}");
                    let mut parts = vec![before];
                    parts.extend(fixed_pieces(value, 4));
                    parts.push(after);
                    assert_eq!(pieces(&scanner, &parts), expected, "{text:?} in 4-byte pieces");
                }
            }
        }
    }

    /// The built-ins plus the shipped config's custom rule.
    pub(crate) fn shipped() -> Scanner {
        use crate::custom::RegexRule;
        let mut rules: Vec<Rule> = replace_all().rules;
        rules.push(Rule {
            name: "EMPLOYEE_ID".into(),
            kind: RuleKind::Regex(RegexRule::new(regex::Regex::new(r"\bEMP-[0-9]{6}\b").unwrap(), 10)),
            action: Action::Replace { text: "[EMPLOYEE_ID]".into() },
        });
        Scanner::new(rules)
    }

    /// Prose in token-sized pieces with the shipped custom rule: the first
    /// text goes out by the second piece at the latest, and a piece ending in
    /// a space or punctuation that no entity contains is released at once
    /// (with the old fixed window, 11 characters stayed behind).
    #[test]
    fn prose_is_released_at_word_ends_with_the_shipped_rule() {
        let prose = "Revenue grew in every region this quarter, led by strong demand for the new tiers! \
                     Margins held steady (despite costs); the risks are \"supplier concentration\" and timing? ";
        let scanner = shipped();
        // 4-byte pieces, words with their space after, and words with the
        // space before (as models' tokens come).
        let words_after: Vec<&str> = prose.split_inclusive(' ').collect();
        let words_before: Vec<String> =
            prose.split(' ').enumerate().map(|(i, w)| if i == 0 { w.to_string() } else { format!(" {w}") }).collect();
        let words_before: Vec<&str> = words_before.iter().map(String::as_str).collect();
        for parts in [fixed_pieces(prose, 4), words_after, words_before] {
            let mut stream = TextStream::new();
            let mut findings = Findings::default();
            let (mut pushed, mut released) = (0, 0);
            let mut first_release = None;
            for (index, part) in parts.iter().enumerate() {
                released += stream.push(part, &scanner, &hash(), &mut findings).text.len();
                pushed += part.len();
                if released > 0 {
                    first_release.get_or_insert(index);
                }
                if part.ends_with([' ', ',', '!', ';', ')', '"', '?']) {
                    assert_eq!(released, pushed, "held after {part:?}");
                }
            }
            assert!(first_release.is_some_and(|index| index <= 1), "{first_release:?} for {parts:?}");
            assert_eq!(prose.len(), pushed);
        }
    }

    #[test]
    fn reject_stops_before_the_value() {
        let scanner = scanner_with(|e| {
            if e == Entity::UsSsn {
                Action::Reject { message: "no".into() }
            } else {
                Action::Replace { text: "[X]".into() }
            }
        });
        let mut stream = TextStream::new();
        let mut findings = Findings::default();
        let a = stream.push("mail a@b.com, ssn 123-4", &scanner, &hash(), &mut findings);
        assert_eq!(a.reject, None);
        let b = stream.push("5-6789 tail", &scanner, &hash(), &mut findings);
        assert_eq!(format!("{}{}", a.text, b.text), "mail [X], ssn ");
        assert!(b.reject.is_some());
    }
}
