//! Operator-defined rules: named regular expressions and deny-word lists.
//!
//! Regexes use the `regex` crate rather than the design card's `regex-lite`:
//! inside Wasm (V8) it ran custom rules about 300× faster on a 100 KiB prompt
//! (BENCHMARKS.md, scenario 3), and like regex-lite it matches in linear time,
//! so an operator's pattern cannot stall a worker by backtracking.
//!
//! For streams each rule also says where a match could still be in progress
//! at the end of the text seen so far ([`RegexRule::pending_start`],
//! [`DenyWords::pending_start`]), so the stream masker holds back only that.

use crate::detectors::Span;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Capture, Hir, HirKind, Look, Repetition};
use std::cell::Cell;
use std::collections::HashSet;

/// A named regex. `max_match_chars` bounds what the stream masker holds back
/// for it: matches longer than that are caught in whole bodies but are not
/// guaranteed to be caught across stream chunks.
#[derive(Debug)]
pub struct RegexRule {
    pub regex: regex::Regex,
    pub max_match_chars: usize,
    /// Whether a match may still be in progress; `None` if the automaton
    /// could not be built (then every start in the window counts as pending).
    /// Boxed: the DFA is large and rules sit in an enum with small variants.
    live: Option<Box<LiveMatches>>,
}

impl RegexRule {
    pub fn new(regex: regex::Regex, max_match_chars: usize) -> Self {
        let live = LiveMatches::new(regex.as_str()).map(Box::new);
        RegexRule { regex, max_match_chars, live }
    }

    /// Appends every non-empty match that starts at or after `from` (the text
    /// before `from` is context for `\b` and `^`).
    pub fn find(&self, text: &str, from: usize, out: &mut Vec<Span>) {
        let mut pos = from;
        while pos <= text.len() {
            let Some(found) = self.regex.find_at(text, pos) else { break };
            if found.end() > found.start() {
                out.push(Span { start: found.start(), end: found.end() });
                pos = found.end();
            } else {
                // An empty match: step over one character.
                pos = found.end()
                    + text.get(found.end()..).and_then(|rest| rest.chars().next()).map_or(1, char::len_utf8);
            }
        }
    }

    /// The earliest start at or after `from` where a match could still be in
    /// progress at the end of `text` (more text could make it, extend it or
    /// decide a `\b` after it). Only starts within the last
    /// `max_match_chars + 1` characters count: a longer match is not
    /// guaranteed across chunks.
    pub fn pending_start(&self, text: &str, from: usize) -> Option<usize> {
        let window = chars_back(text, self.max_match_chars + 1).max(from);
        let tail = text.get(window..)?;
        let Some(live) = &self.live else {
            return (!tail.is_empty()).then_some(window);
        };
        let mut cache = live.cache.take().unwrap_or_else(|| live.dfa.create_cache());
        let found = tail
            .char_indices()
            .map(|(offset, _)| window + offset)
            .find(|&start| live.alive_at_end(&mut cache, text.as_bytes(), start));
        live.cache.set(Some(cache));
        found
    }
}

/// A lazy DFA of a rule's pattern that reports every thread, not only the
/// leftmost-first one (`MatchKind::All`), started anchored at a candidate
/// start: if its state at the end of the text is dead, no match starting
/// there can reach past the end, so that start is decided.
///
/// Unicode word boundaries (`\b` with Unicode on, the default) are dropped
/// from the automaton: a lazy DFA cannot evaluate them on non-ASCII text.
/// Dropping an assertion only lets more text match, so the automaton is
/// alive wherever the real pattern could be: it may hold a little more,
/// never less.
struct LiveMatches {
    dfa: DFA,
    /// The DFA's mutable state, taken while in use.
    cache: Cell<Option<Cache>>,
}

impl std::fmt::Debug for LiveMatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveMatches")
    }
}

impl LiveMatches {
    fn new(pattern: &str) -> Option<Self> {
        // The same parser settings as `regex::Regex::new`.
        let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).ok()?;
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().which_captures(WhichCaptures::None))
            .build_from_hir(&without_unicode_word_boundaries(hir))
            .ok()?;
        let dfa = DFA::builder().configure(DFA::config().match_kind(MatchKind::All)).build_from_nfa(nfa).ok()?;
        Some(LiveMatches { dfa, cache: Cell::new(None) })
    }

    /// Whether a match starting at `start` could still cover bytes after the
    /// end of `text`. Any error of the automaton counts as alive.
    fn alive_at_end(&self, cache: &mut Cache, text: &[u8], start: usize) -> bool {
        let behind = start.checked_sub(1).and_then(|i| text.get(i)).copied();
        let config = start::Config::new().anchored(Anchored::Yes).look_behind(behind);
        let Ok(mut state) = self.dfa.start_state(cache, &config) else { return true };
        for &byte in text.get(start..).unwrap_or_default() {
            match self.dfa.next_state(cache, state, byte) {
                Ok(next) if next.is_dead() => return false,
                Ok(next) if next.is_quit() => return true,
                Ok(next) => state = next,
                Err(_) => return true,
            }
        }
        true
    }
}

/// `hir` with every Unicode word-boundary assertion replaced by the empty
/// expression (see [`LiveMatches`]).
fn without_unicode_word_boundaries(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Look(
            Look::WordUnicode
            | Look::WordUnicodeNegate
            | Look::WordStartUnicode
            | Look::WordEndUnicode
            | Look::WordStartHalfUnicode
            | Look::WordEndHalfUnicode,
        ) => Hir::empty(),
        HirKind::Look(look) => Hir::look(look),
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(literal) => Hir::literal(literal.0),
        HirKind::Class(class) => Hir::class(class),
        HirKind::Repetition(rep) => {
            Hir::repetition(Repetition { sub: Box::new(without_unicode_word_boundaries(*rep.sub)), ..rep })
        }
        HirKind::Capture(capture) => {
            Hir::capture(Capture { sub: Box::new(without_unicode_word_boundaries(*capture.sub)), ..capture })
        }
        HirKind::Concat(subs) => Hir::concat(subs.into_iter().map(without_unicode_word_boundaries).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.into_iter().map(without_unicode_word_boundaries).collect()),
    }
}

/// The offset `chars` characters before the end (0 if the text is shorter).
fn chars_back(text: &str, chars: usize) -> usize {
    if chars == 0 {
        return text.len();
    }
    text.char_indices().rev().nth(chars - 1).map_or(0, |(i, _)| i)
}

/// Deny words and phrases, matched case-insensitively on word boundaries.
#[derive(Debug, Default)]
pub struct DenyWords {
    /// Single words, lower-cased.
    words: HashSet<String>,
    min_word_bytes: usize,
    max_word_bytes: usize,
    /// The single words again, sorted, with `ς` written `σ` (lower-casing a
    /// word's beginning may give a final sigma its end would not): what a
    /// trailing word is compared with while it may still grow into one.
    sorted_words: Vec<String>,
    /// Entries with spaces or punctuation, ASCII lower-cased.
    phrases: Vec<String>,
    /// Longest entry in characters (the stream window for this rule).
    pub max_chars: usize,
    /// Whether an entry has non-ASCII characters.
    pub has_non_ascii: bool,
}

/// `ς` written as `σ`: a word's beginning and the whole word may lower-case
/// the same sigma differently.
fn without_final_sigma(lower: &str) -> String {
    lower.replace('ς', "σ")
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl DenyWords {
    /// Builds the list; `Err(index)` names an empty entry.
    pub fn new(entries: &[String]) -> Result<Self, usize> {
        let mut list = DenyWords { min_word_bytes: usize::MAX, ..Default::default() };
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(i);
            }
            list.max_chars = list.max_chars.max(entry.chars().count());
            list.has_non_ascii |= !entry.is_ascii();
            if entry.chars().all(is_word_char) {
                let lower = entry.to_lowercase();
                list.min_word_bytes = list.min_word_bytes.min(lower.len());
                list.max_word_bytes = list.max_word_bytes.max(lower.len());
                list.sorted_words.push(without_final_sigma(&lower));
                list.words.insert(lower);
            } else {
                list.phrases.push(entry.to_ascii_lowercase());
            }
        }
        list.sorted_words.sort();
        Ok(list)
    }

    /// The earliest start at or after `from` where an entry could still be
    /// matching at the end of `text`: the trailing word while it is the
    /// beginning of a listed word (or a whole one: a letter more would undo
    /// it), and the earliest trailing piece that begins a phrase.
    pub fn pending_start(&self, text: &str, from: usize) -> Option<usize> {
        let mut pending = None;
        if !self.sorted_words.is_empty() {
            let word_start = text.char_indices().rev().take_while(|&(_, c)| is_word_char(c)).last().map(|(i, _)| i);
            if let Some(start) = word_start.filter(|&start| start >= from) {
                let word = without_final_sigma(&text.get(start..).unwrap_or_default().to_lowercase());
                let next = self.sorted_words.partition_point(|listed| listed.as_str() < word.as_str());
                if self.sorted_words.get(next).is_some_and(|listed| listed.starts_with(&word)) {
                    pending = Some(start);
                }
            }
        }
        for phrase in &self.phrases {
            let earliest = text.len().saturating_sub(phrase.len()).max(from);
            let phrase_starts_word = phrase.chars().next().is_some_and(is_word_char);
            let Some(tail) = text.get(earliest..) else { continue };
            for (offset, _) in tail.char_indices() {
                let start = earliest + offset;
                if pending.is_some_and(|p| p <= start) {
                    break;
                }
                let glued_before = phrase_starts_word
                    && text.get(..start).and_then(|head| head.chars().next_back()).is_some_and(is_word_char);
                let rest = tail.get(offset..).unwrap_or_default();
                let begins_phrase =
                    phrase.as_bytes().get(..rest.len()).is_some_and(|head| head.eq_ignore_ascii_case(rest.as_bytes()));
                if begins_phrase && !glued_before {
                    pending = Some(start);
                    break;
                }
            }
        }
        pending
    }

    pub fn find(&self, text: &str, from: usize, out: &mut Vec<Span>) {
        if !self.words.is_empty() {
            let mut start: Option<usize> = None;
            let tail = text.get(from..).unwrap_or_default();
            let starts_inside = text.get(..from).and_then(|head| head.chars().next_back()).is_some_and(is_word_char);
            let mut skip_first = starts_inside;
            for (offset, c) in tail.char_indices().chain(std::iter::once((tail.len(), ' '))) {
                let pos = from + offset;
                if is_word_char(c) && offset < tail.len() {
                    if start.is_none() {
                        start = Some(pos);
                    }
                } else if let Some(word_start) = start.take() {
                    if skip_first {
                        skip_first = false;
                        continue;
                    }
                    self.check_word(text, word_start, pos, out);
                } else {
                    skip_first = false;
                }
            }
        }
        if !self.phrases.is_empty() {
            let lower = text.to_ascii_lowercase();
            for phrase in &self.phrases {
                let mut pos = from;
                while let Some(found) = lower.get(pos..).and_then(|rest| rest.find(phrase.as_str())) {
                    let start = pos + found;
                    let end = start + phrase.len();
                    let before = text.get(..start).and_then(|head| head.chars().next_back());
                    let after = text.get(end..).and_then(|rest| rest.chars().next());
                    let phrase_starts_word = phrase.chars().next().is_some_and(is_word_char);
                    let phrase_ends_word = phrase.chars().next_back().is_some_and(is_word_char);
                    let glued_before = phrase_starts_word && before.is_some_and(is_word_char);
                    let glued_after = phrase_ends_word && after.is_some_and(is_word_char);
                    let bounded = !glued_before && !glued_after;
                    if bounded {
                        out.push(Span { start, end });
                    }
                    pos = start + phrase.chars().next().map_or(1, char::len_utf8);
                }
            }
        }
    }

    fn check_word(&self, text: &str, start: usize, end: usize, out: &mut Vec<Span>) {
        let len = end - start;
        // Lower-casing may change the length a little; compare loosely.
        if len * 2 < self.min_word_bytes || len > self.max_word_bytes * 2 {
            return;
        }
        if let Some(word) = text.get(start..end) {
            if self.words.contains(&word.to_lowercase()) {
                out.push(Span { start, end });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str], text: &str, from: usize) -> Vec<String> {
        let deny = DenyWords::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut out = Vec::new();
        deny.find(text, from, &mut out);
        out.sort_by_key(|s| s.start);
        out.iter().map(|s| text[s.start..s.end].to_string()).collect()
    }

    #[test]
    fn deny_words_match_whole_words_case_insensitively() {
        assert_eq!(
            words(&["bluebird"], "Project BlueBird, bluebirds, bluebird_x, bluebird.", 0),
            vec!["BlueBird", "bluebird"]
        );
        assert_eq!(words(&["Ärger"], "kein ärger hier", 0), vec!["ärger"]);
        assert_eq!(words(&["project x"], "the PROJECT X plan, project xy", 0), vec!["PROJECT X"]);
        assert!(words(&["cat"], "concatenate", 0).is_empty());
    }

    #[test]
    fn deny_words_respect_from() {
        // "bird" starts before `from`: a word already decided.
        assert!(words(&["bird"], "bird", 2).is_empty());
        assert_eq!(words(&["bird"], "xx bird", 2), vec!["bird"]);
    }

    #[test]
    fn empty_entry_is_an_error() {
        assert_eq!(DenyWords::new(&["a".into(), " ".into()]).unwrap_err(), 1);
    }

    #[test]
    fn regex_rule_finds_all_and_skips_empty() {
        let rule = RegexRule::new(regex::Regex::new(r"\bEMP-\d{4}\b|x*").unwrap(), 16);
        let mut out = Vec::new();
        let text = "EMP-1234 and EMP-5678";
        rule.find(text, 0, &mut out);
        let found: Vec<&str> = out.iter().map(|s| &text[s.start..s.end]).collect();
        assert_eq!(found, vec!["EMP-1234", "EMP-5678"]);
    }
}
