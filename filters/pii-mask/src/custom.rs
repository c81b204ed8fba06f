//! Operator-defined rules: named regular expressions and deny-word lists.
//!
//! Regexes use the `regex` crate rather than the design card's `regex-lite`:
//! inside Wasm (V8) it ran custom rules about 300× faster on a 100 KiB prompt
//! (BENCHMARKS.md, scenario 3), and like regex-lite it matches in linear time,
//! so an operator's pattern cannot stall a worker by backtracking.

use crate::detectors::Span;
use std::collections::HashSet;

/// A named regex. `max_match_chars` bounds what the stream masker holds back
/// for it: matches longer than that are caught in whole bodies but are not
/// guaranteed to be caught across stream chunks.
#[derive(Debug)]
pub struct RegexRule {
    pub regex: regex::Regex,
    pub max_match_chars: usize,
}

impl RegexRule {
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
}

/// Deny words and phrases, matched case-insensitively on word boundaries.
#[derive(Debug, Default)]
pub struct DenyWords {
    /// Single words, lower-cased.
    words: HashSet<String>,
    min_word_bytes: usize,
    max_word_bytes: usize,
    /// Entries with spaces or punctuation, ASCII lower-cased.
    phrases: Vec<String>,
    /// Longest entry in characters (the stream window for this rule).
    pub max_chars: usize,
    /// Whether an entry has non-ASCII characters.
    pub has_non_ascii: bool,
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
                list.words.insert(lower);
            } else {
                list.phrases.push(entry.to_ascii_lowercase());
            }
        }
        Ok(list)
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
        let rule = RegexRule { regex: regex::Regex::new(r"\bEMP-\d{4}\b|x*").unwrap(), max_match_chars: 16 };
        let mut out = Vec::new();
        let text = "EMP-1234 and EMP-5678";
        rule.find(text, 0, &mut out);
        let found: Vec<&str> = out.iter().map(|s| &text[s.start..s.end]).collect();
        assert_eq!(found, vec!["EMP-1234", "EMP-5678"]);
    }
}
