//! Finding matches in a text: every enabled rule proposes candidates, then a
//! left-to-right pass keeps an ordered, non-overlapping set. Among candidates
//! that overlap, the one that starts first wins; at the same start the longer
//! one; at the same span the rule listed first (built-ins in the README's
//! order, then custom rules in configuration order).
//!
//! [`Scanner::find_partial`] is the same pass over a text that may continue
//! (a stream): it also says how far the decisions are final.

pub mod view;

use crate::actions::{render, Action, HashSettings};
use crate::custom::{DenyWords, RegexRule};
use crate::detectors::{Entity, Haystack, Span};
use view::{is_json_document, push_json_escaped, JsonStringState, Options, View};

/// What a rule looks for.
#[derive(Debug)]
pub enum RuleKind {
    Builtin(Entity),
    Regex(RegexRule),
    Words(DenyWords),
}

/// One enabled rule of one direction, with its action.
#[derive(Debug)]
pub struct Rule {
    /// Entity name (`EMAIL_ADDRESS`) or custom rule name.
    pub name: String,
    pub kind: RuleKind,
    pub action: Action,
}

/// A selected match: `text[start..end]` found by `rules[rule]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    pub rule: usize,
}

/// The trailing run of characters that a future anchor (an `@`, a `:`, check
/// digits) could still turn into the start of a built-in match is held back,
/// up to this many bytes: the longest reach back from an anchor (email local
/// part, 64) with room to spare.
pub const TRAILING_TOKEN_MAX: usize = 80;

/// The rules of one direction (request or response).
#[derive(Debug, Default)]
pub struct Scanner {
    pub rules: Vec<Rule>,
    /// Whether a built-in entity is enabled: only they need the trailing
    /// token held (their anchors come after the start of a match); custom
    /// rules report their own pending starts.
    has_builtins: bool,
    /// Undo obfuscations (full-width characters, zero-width characters,
    /// encoded `@`) before matching; see [`view`].
    deobfuscate: bool,
}

/// The most original bytes one decoded byte can come from (`&commat;` is 8
/// bytes for `@`; `\uXXXX` is 6), outside dropped zero-width characters.
pub const MAX_DECODED_EXPANSION: usize = 8;

/// What was found in a text, per rule.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Matches per rule index.
    pub counts: Vec<u64>,
    /// The first match whose action is reject, if any (rule index).
    pub reject: Option<usize>,
}

impl Findings {
    pub fn any(&self) -> bool {
        self.counts.iter().any(|&n| n > 0)
    }

    pub fn merge(&mut self, other: &Findings) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        if self.reject.is_none() {
            self.reject = other.reject;
        }
    }

    fn record(&mut self, rule: usize, reject: bool) {
        if self.counts.len() <= rule {
            self.counts.resize(rule + 1, 0);
        }
        if let Some(count) = self.counts.get_mut(rule) {
            *count += 1;
        }
        if reject && self.reject.is_none() {
            self.reject = Some(rule);
        }
    }
}

impl Scanner {
    pub fn new(rules: Vec<Rule>) -> Self {
        let has_builtins = rules.iter().any(|rule| matches!(rule.kind, RuleKind::Builtin(_)));
        Scanner { rules, has_builtins, deobfuscate: false }
    }

    /// Sets whether obfuscations are undone before matching.
    pub fn with_deobfuscation(mut self, deobfuscate: bool) -> Self {
        self.deobfuscate = deobfuscate;
        self
    }

    /// What the view of a text decodes; `json`: the text is JSON.
    pub fn view_options(&self, json: bool) -> Options {
        Options { json, deobfuscate: self.deobfuscate }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The longest possible match among the rules, in decoded bytes: the
    /// most text that one pending candidate holds back.
    pub fn window_bytes(&self) -> usize {
        self.rules
            .iter()
            .map(|rule| match &rule.kind {
                RuleKind::Builtin(entity) => entity.max_len(),
                RuleKind::Regex(regex) => regex.max_match_chars * 4,
                RuleKind::Words(words) => words.max_chars * 4,
            })
            .chain(std::iter::once(TRAILING_TOKEN_MAX))
            .max()
            .unwrap_or(0)
    }

    /// The documented bound on the original bytes the stream masker holds
    /// back for one text, whatever the input: the longest match, times the
    /// largest expansion of an escape or encoded character. Held text never
    /// exceeds it (text beyond it is released as final).
    pub fn hold_limit_bytes(&self) -> usize {
        self.window_bytes() * MAX_DECODED_EXPANSION
    }

    /// All candidates starting at or after `from`, and the earliest start
    /// of a candidate still in progress at the end of an incomplete text.
    fn candidates(&self, text: &str, from: usize, complete: bool) -> (Vec<Match>, Option<usize>) {
        let hay = Haystack::new(text, from, complete);
        let mut matches = Vec::new();
        let mut spans: Vec<Span> = Vec::new();
        let mut pending: Option<usize> = None;
        for (index, rule) in self.rules.iter().enumerate() {
            spans.clear();
            let rule_pending = match &rule.kind {
                RuleKind::Builtin(entity) => {
                    entity.find(&hay, &mut spans);
                    None
                }
                RuleKind::Regex(regex) => {
                    regex.find(text, from, &mut spans);
                    (!complete).then(|| regex.pending_start(text, from)).flatten()
                }
                RuleKind::Words(words) => {
                    words.find(text, from, &mut spans);
                    (!complete).then(|| words.pending_start(text, from)).flatten()
                }
            };
            pending = match (pending, rule_pending) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            matches.extend(spans.iter().filter(|span| span.start >= from).map(|span| Match {
                start: span.start,
                end: span.end,
                rule: index,
            }));
        }
        let pending = match (pending, hay.pending()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (matches, pending)
    }

    /// The selected matches of a complete text.
    pub fn find(&self, text: &str) -> Vec<Match> {
        self.find_partial(text, 0, true).0
    }

    /// Selected matches of `text[from..]` whose decision is final, and the
    /// offset up to which the text is final (`cut`, a char boundary). Text
    /// before `from` is context already released. With `complete`, the whole
    /// text is final.
    pub fn find_partial(&self, text: &str, from: usize, complete: bool) -> (Vec<Match>, usize) {
        let from = from.min(text.len());
        let (mut candidates, pending) =
            if self.rules.is_empty() { (Vec::new(), None) } else { self.candidates(text, from, complete) };
        let mut cut = text.len();
        if !complete {
            if let Some(pending) = pending {
                cut = cut.min(pending);
            }
            if self.has_builtins {
                cut = cut.min(trailing_token_start(text));
            }
        }
        let cut = cut.max(from);
        candidates.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then(a.rule.cmp(&b.rule)));
        let mut selected = Vec::new();
        let mut cursor = from;
        for candidate in candidates {
            if candidate.start >= cut {
                break;
            }
            if candidate.start >= cursor {
                cursor = candidate.end;
                selected.push(candidate);
            }
        }
        // A match that starts before the cut but ends after it is final, yet
        // releasing it would also release text the next scan sees only as
        // context (a local part glued to it, say), which the whole text would
        // resolve differently. Near the end it is held instead, so the next
        // scan decides it again with what follows; a match beyond the window
        // is released as before (held text stays bounded).
        if let Some(last) = selected.last().copied() {
            if !complete && last.end > cut && text.len() - last.start <= self.window_bytes() {
                selected.pop();
                return (selected, last.start);
            }
        }
        (selected, cut.max(cursor))
    }

    /// Appends `original[from..to]` to `out` with `matches` (view offsets,
    /// sorted, inside the range) rendered by their actions, and records them
    /// in `findings`. `json`: the original is JSON, in this string state at its
    /// offset 0; replacements are then escaped inside strings and quoted
    /// outside them, so the JSON stays valid.
    #[allow(clippy::too_many_arguments)]
    pub fn render_into(
        &self,
        original: &str,
        view: &View<'_>,
        from: usize,
        to: usize,
        matches: &[Match],
        json: Option<JsonStringState>,
        hash: &HashSettings,
        out: &mut String,
        findings: &mut Findings,
    ) {
        let mut pos = from;
        let mut state = json;
        let mut state_pos = 0;
        let mut rendered = String::new();
        for found in matches {
            let Some(rule) = self.rules.get(found.rule) else { continue };
            let start = view.start_in_original(found.start).max(pos);
            let end = view.end_in_original(found.end).max(start);
            out.push_str(original.get(pos..start).unwrap_or_default());
            findings.record(found.rule, rule.action.is_reject());
            let value = view.text.get(found.start..found.end).unwrap_or_default();
            match state.as_mut() {
                None => render(&rule.action, &rule.name, value, hash, out),
                Some(state) => {
                    state.advance(original.as_bytes().get(state_pos..start).unwrap_or_default());
                    state_pos = start;
                    rendered.clear();
                    render(&rule.action, &rule.name, value, hash, &mut rendered);
                    if state.in_string {
                        push_json_escaped(&rendered, out);
                    } else {
                        out.push('"');
                        push_json_escaped(&rendered, out);
                        out.push('"');
                    }
                }
            }
            pos = end;
        }
        out.push_str(original.get(pos..to).unwrap_or_default());
    }

    /// Masks a complete text: a JSON object or array (tool arguments, tool
    /// results, JSON held in a string) in JSON mode, anything else as prose.
    /// Returns the new text if anything matched.
    pub fn mask(&self, text: &str, hash: &HashSettings, findings: &mut Findings) -> Option<String> {
        if self.rules.is_empty() {
            return None;
        }
        let json = is_json_document(text);
        let view = View::new(text, self.view_options(json), true);
        let matches = self.find(&view.text);
        if matches.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let state = json.then(JsonStringState::default);
        self.render_into(text, &view, 0, text.len(), &matches, state, hash, &mut out, findings);
        Some(out)
    }
}

/// Characters that end a word and that no built-in match contains or starts
/// with: text ending in one of them after ordinary words holds nothing back
/// for the built-ins. (Detectors that read past a value, such as a card's
/// separator, report their own pending candidates.)
fn ends_token(c: char) -> bool {
    matches!(c, ',' | ';' | '!' | '?' | '"' | ')' | ']' | '}' | '>' | '*')
}

/// Start of the trailing run of characters that could still become the
/// beginning of a built-in match once its anchor arrives (an e-mail local
/// part before its `@`, a word before a `:`), at most [`TRAILING_TOKEN_MAX`]
/// bytes back, on a char boundary. The run is ASCII other than whitespace
/// and [`ends_token`], plus the letters an e-mail local part of an alphabetic
/// script can hold (Latin, Greek, Cyrillic: below U+0530); CJK prose and
/// emoji are not held (a CJK local part split from its `@` across stream
/// pieces is masked from the release point on). Custom rules report their
/// own pending starts.
fn trailing_token_start(text: &str) -> usize {
    let in_token = |c: char| {
        !c.is_whitespace() && !ends_token(c) && (c.is_ascii() || (c.is_alphanumeric() && u32::from(c) < 0x530))
    };
    let mut start = text.len();
    for (i, c) in text.char_indices().rev() {
        if !in_token(c) || text.len() - i > TRAILING_TOKEN_MAX {
            break;
        }
        start = i;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn builtins(entities: &[Entity]) -> Scanner {
        Scanner::new(
            entities
                .iter()
                .map(|&entity| Rule {
                    name: entity.name().to_string(),
                    kind: RuleKind::Builtin(entity),
                    action: Action::Replace { text: format!("[{}]", entity.name()) },
                })
                .collect(),
        )
    }

    fn masked(scanner: &Scanner, text: &str) -> String {
        let hash = HashSettings { salt: String::new(), chars: 8 };
        scanner.mask(text, &hash, &mut Findings::default()).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn all_builtins_mask_a_mixed_text() {
        let scanner = builtins(&Entity::ALL);
        let text = "Mail john@example.com or call +1 415 555 0132; card 4111 1111 1111 1111, ssn 123-45-6789, \
                    ip 10.0.0.1 and 2001:db8::1, iban DE89370400440532013000, key AKIAIOSFODNN7EXAMPLE.";
        assert_eq!(
            masked(&scanner, text),
            "Mail [EMAIL_ADDRESS] or call [PHONE_NUMBER]; card [CREDIT_CARD], ssn [US_SSN], \
             ip [IP_ADDRESS] and [IP_ADDRESS], iban [IBAN_CODE], key [AWS_ACCESS_KEY]."
        );
    }

    #[test]
    fn json_documents_are_decoded_and_stay_valid() {
        let scanner = builtins(&Entity::ALL);
        let args = r#"{"to":"ana.silva\u0040example.com","card":4111111111111111,"note":"x\nbob@example.org"}"#;
        let out = masked(&scanner, args);
        assert_eq!(out, r#"{"to":"[EMAIL_ADDRESS]","card":"[CREDIT_CARD]","note":"x\n[EMAIL_ADDRESS]"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["to"], "[EMAIL_ADDRESS]");
        // A replacement with a quote is escaped inside a string.
        let quoting = Scanner::new(vec![Rule {
            name: "EMAIL_ADDRESS".into(),
            kind: RuleKind::Builtin(Entity::EmailAddress),
            action: Action::Replace { text: "\"mail\"".into() },
        }]);
        let out = masked(&quoting, r#"["a\u0040b.com"]"#);
        assert_eq!(out, r#"["\"mail\""]"#);
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
        // Prose that only looks like JSON at the start is prose.
        assert_eq!(masked(&scanner, "[note] a\\u0040b.com"), "[note] a\\u0040b.com");
    }

    #[test]
    fn obfuscated_values_are_found_when_enabled() {
        let scanner = builtins(&Entity::ALL).with_deobfuscation(true);
        assert_eq!(masked(&scanner, "mail ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ now"), "mail [EMAIL_ADDRESS] now");
        assert_eq!(masked(&scanner, "card 4111 11\u{200B}11 1111 1111 ok"), "card [CREDIT_CARD] ok");
        assert_eq!(masked(&scanner, "a%40b.com and c&#64;d.org"), "[EMAIL_ADDRESS] and [EMAIL_ADDRESS]");
        let plain = builtins(&Entity::ALL);
        assert_eq!(masked(&plain, "a%40b.com"), "a%40b.com");
    }

    #[test]
    fn an_ssn_with_a_low_area_is_an_ssn_not_a_phone() {
        // Area 001–099 starts with the trunk 0 of national phone numbers.
        let scanner = builtins(&Entity::ALL);
        assert_eq!(masked(&scanner, "ssn 078-05-1120 and 012 34 5678"), "ssn [US_SSN] and [US_SSN]");
        assert_eq!(masked(&scanner, "tel 020 7946 0958"), "tel [PHONE_NUMBER]");
    }

    #[test]
    fn overlaps_resolve_to_earliest_then_longest() {
        let scanner = builtins(&[Entity::IpAddress, Entity::EmailAddress]);
        // The email starts first and contains the dotted quad.
        assert_eq!(masked(&scanner, "x a@1.2.3.4.example.com y"), "x [EMAIL_ADDRESS] y");
    }

    #[test]
    fn partial_holds_back_only_undecided_text() {
        let scanner = builtins(&Entity::ALL);
        let (matches, cut) = scanner.find_partial("hello there john@exa", 0, false);
        assert!(matches.is_empty());
        assert_eq!(cut, "hello there ".len());
        let (_, cut) = scanner.find_partial("plain words and more ", 0, false);
        assert_eq!(cut, "plain words and more ".len());
        let (_, cut) = scanner.find_partial("card 4111 1111 ", 0, false);
        assert_eq!(cut, "card ".len());
        let (matches, cut) = scanner.find_partial("a@b.com is mine ", 0, false);
        assert_eq!(matches.len(), 1);
        assert_eq!(cut, "a@b.com is mine ".len());
    }

    #[test]
    fn helpers() {
        assert_eq!(trailing_token_start("ab cd"), 3);
        assert_eq!(trailing_token_start("ab "), 3);
        assert_eq!(trailing_token_start("ab,"), 3);
        assert_eq!(trailing_token_start("ab (cd"), 3);
        assert_eq!(trailing_token_start(&"x".repeat(200)), 200 - TRAILING_TOKEN_MAX);
        assert_eq!(trailing_token_start("日本語abc"), "日本語".len());
        assert_eq!(trailing_token_start("日本語"), "日本語".len());
        assert_eq!(trailing_token_start("mail josé.garcí"), 5);
    }
}
