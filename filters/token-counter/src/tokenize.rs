//! Token counting with OpenAI's BPE encodings, with a bounded amount of
//! work per request.
//!
//! * The encoding is chosen by model name: `o200k_base` for the gpt-4o,
//!   gpt-4.1, gpt-4.5, gpt-5 and o-series families, `cl100k_base` for gpt-4 and
//!   gpt-3.5. Other providers' models (Claude, Gemini, Llama, ...) have no
//!   public BPE here: they are counted with `cl100k_base` and multiplied by a
//!   documented factor (an *approximation*; the exact usage from the response
//!   settles the reservation afterwards). The map is overridable in config.
//! * The BPE tables are static data built at compile time ([`crate::bpe`],
//!   the same tokens as tiktoken-rs): nothing is built when a VM starts.
//! * Work per request is capped: runs of more than [`MAX_RUN_BYTES`] bytes
//!   without a class change (one "word" of 50 000 letters, a megabyte of
//!   spaces) are cut into pieces before the BPE sees them, and past
//!   `max_exact_bytes` of text per request the rest is estimated from the
//!   ratio measured on the exact part (or 4 bytes per token).

use crate::bpe::{Bpe, CL100K_BASE, O200K_BASE};

/// Longest run of same-class characters (whitespace or not) handed to the
/// BPE in one piece. Ordinary text never has such runs, so its counts stay
/// exact; a pathological run is cut, which costs at most one token per cut.
pub const MAX_RUN_BYTES: usize = 1024;

/// Default cap on text tokenized exactly per request (256 KiB ≈ 64k tokens):
/// the tokenizer runs at roughly 20 MB/s inside a Wasm VM, so this bounds it
/// at a few tens of milliseconds per request in the worst case.
pub const DEFAULT_MAX_EXACT_BYTES: usize = 256 * 1024;

/// Bytes per token assumed when nothing exact was measured (OpenAI's rule of
/// thumb for English text).
pub const FALLBACK_BYTES_PER_TOKEN: u64 = 4;

/// The BPE encodings compiled into the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    pub const ALL: [Encoding; 2] = [Encoding::O200kBase, Encoding::Cl100kBase];

    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "o200k_base" => Some(Encoding::O200kBase),
            "cl100k_base" => Some(Encoding::Cl100kBase),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }
}

/// The BPE for `encoding`. Always `Some`: the tables are compiled in (the
/// `Option` keeps callers' fallback to the byte estimate in place).
pub fn bpe(encoding: Encoding) -> Option<&'static Bpe> {
    Some(match encoding {
        Encoding::O200kBase => &O200K_BASE,
        Encoding::Cl100kBase => &CL100K_BASE,
    })
}

/// Whether the table for `encoding` is ready in this VM: always, since it is
/// static data.
pub fn is_loaded(encoding: Encoding) -> bool {
    bpe(encoding).is_some()
}

/// How prompts for one model are counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counting {
    pub encoding: Encoding,
    /// Multiplier applied to the count (1.0 for OpenAI models).
    pub factor: f64,
    /// False when the model has no public tokenizer and the count is an
    /// approximation (reported in a metric).
    pub exact: bool,
}

impl Counting {
    pub const fn exact(encoding: Encoding) -> Self {
        Counting { encoding, factor: 1.0, exact: true }
    }

    pub const fn approximate(encoding: Encoding, factor: f64) -> Self {
        Counting { encoding, factor, exact: false }
    }
}

/// A model-name pattern: an exact name, or a prefix written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    pub fn parse(text: &str) -> Result<ModelPattern, String> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Err("a model pattern needs at least one character before an optional trailing `*`".into());
        }
        match text.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => Err("`*` is only allowed at the end of a model pattern".into()),
            Some(prefix) => Ok(ModelPattern::Prefix(prefix.to_ascii_lowercase())),
            None if text.contains('*') => Err("`*` is only allowed at the end of a model pattern".into()),
            None => Ok(ModelPattern::Exact(text.to_ascii_lowercase())),
        }
    }

    /// How specific a match is: exact names beat any prefix, longer prefixes
    /// beat shorter ones. `None` if the pattern does not match.
    pub fn specificity(&self, model_lower: &str) -> Option<usize> {
        match self {
            ModelPattern::Exact(name) => (name == model_lower).then_some(usize::MAX),
            ModelPattern::Prefix(prefix) => model_lower.starts_with(prefix.as_str()).then_some(prefix.len()),
        }
    }
}

/// A table from model patterns to values; the most specific match wins.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTable<T> {
    entries: Vec<(ModelPattern, T)>,
}

impl<T> Default for ModelTable<T> {
    fn default() -> Self {
        ModelTable { entries: Vec::new() }
    }
}

impl<T> ModelTable<T> {
    pub fn new(entries: Vec<(ModelPattern, T)>) -> Self {
        ModelTable { entries }
    }

    pub fn lookup(&self, model: &str) -> Option<&T> {
        let lower = model.trim().to_ascii_lowercase();
        self.entries
            .iter()
            .filter_map(|(pattern, value)| pattern.specificity(&lower).map(|score| (score, value)))
            .max_by_key(|(score, _)| *score)
            .map(|(_, value)| value)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, value)| value)
    }
}

/// Factor applied to `o200k_base` counts for Anthropic's Claude models, whose
/// tokenizer is not public. Claude's tokenizer yields noticeably more tokens
/// than OpenAI's for the same English text; 1.2 errs on the side of reserving
/// a little too much rather than too little. (`o200k_base`, not `cl100k_base`:
/// the approximation is as good with either, and it is the encoding of
/// current OpenAI models.)
pub const CLAUDE_FACTOR: f64 = 1.2;

/// The built-in model map. Config entries are consulted first.
pub fn builtin_models() -> ModelTable<Counting> {
    let o200k = Counting::exact(Encoding::O200kBase);
    let cl100k = Counting::exact(Encoding::Cl100kBase);
    let entries = [
        ("gpt-4o*", o200k),
        ("chatgpt-4o*", o200k),
        ("gpt-4.1*", o200k),
        ("gpt-4.5*", o200k),
        ("gpt-5*", o200k),
        ("o1*", o200k),
        ("o3*", o200k),
        ("o4*", o200k),
        ("gpt-4*", cl100k),
        ("gpt-3.5*", cl100k),
        ("gpt-35*", cl100k),
        ("claude*", Counting::approximate(Encoding::O200kBase, CLAUDE_FACTOR)),
    ];
    ModelTable::new(
        entries
            .into_iter()
            .filter_map(|(pattern, counting)| ModelPattern::parse(pattern).ok().map(|p| (p, counting)))
            .collect(),
    )
}

/// Model name → counting rule: config overrides, then the built-ins, then the
/// default for unknown models.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMap {
    pub overrides: ModelTable<Counting>,
    pub builtins: ModelTable<Counting>,
    /// For models nobody knows; always an approximation.
    pub unknown: Counting,
}

impl Default for ModelMap {
    fn default() -> Self {
        ModelMap {
            overrides: ModelTable::default(),
            builtins: builtin_models(),
            unknown: Counting::approximate(Encoding::O200kBase, 1.0),
        }
    }
}

impl ModelMap {
    /// The counting rule for `model`, and whether the model was known.
    pub fn resolve(&self, model: &str) -> (Counting, bool) {
        if let Some(counting) = self.overrides.lookup(model).or_else(|| self.builtins.lookup(model)) {
            return (*counting, true);
        }
        (self.unknown, false)
    }

    /// Every encoding some model may select.
    /// The encodings worth building when the VM starts: `o200k_base` (current
    /// OpenAI models, and the base of the approximations) and whatever the
    /// configuration names. `cl100k_base`, needed only for exact counts of
    /// legacy gpt-4 / gpt-3.5 models, is built on the first such request.
    pub fn preload_encodings(&self) -> Vec<Encoding> {
        let mut out = vec![Encoding::O200kBase];
        for counting in self.overrides.values().chain(std::iter::once(&self.unknown)) {
            if !out.contains(&counting.encoding) {
                out.push(counting.encoding);
            }
        }
        out
    }

    pub fn encodings(&self) -> Vec<Encoding> {
        let mut out: Vec<Encoding> = Vec::new();
        for counting in self.overrides.values().chain(self.builtins.values()).chain(std::iter::once(&self.unknown)) {
            if !out.contains(&counting.encoding) {
                out.push(counting.encoding);
            }
        }
        out
    }
}

/// Counts the texts of one request against a per-request budget of exact work.
pub struct TokenCounter {
    bpe: Option<&'static Bpe>,
    counting: Counting,
    remaining_exact_bytes: usize,
    exact_bytes: u64,
    exact_tokens: u64,
    estimated_bytes: u64,
    /// Raw tokens (before the factor) counted so far.
    raw_tokens: u64,
    /// Tokens added as fixed amounts (message overhead, images), not scaled.
    fixed_tokens: u64,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter")
            .field("encoding", &self.counting.encoding)
            .field("tokenizes", &self.bpe.is_some())
            .field("exact_bytes", &self.exact_bytes)
            .field("estimated_bytes", &self.estimated_bytes)
            .finish()
    }
}

impl TokenCounter {
    pub fn new(counting: Counting, max_exact_bytes: usize) -> Self {
        TokenCounter {
            bpe: bpe(counting.encoding),
            counting,
            remaining_exact_bytes: max_exact_bytes,
            exact_bytes: 0,
            exact_tokens: 0,
            estimated_bytes: 0,
            raw_tokens: 0,
            fixed_tokens: 0,
        }
    }

    /// A counter that never tokenizes (used when a body cannot be read).
    pub fn estimate_only(counting: Counting) -> Self {
        let mut counter = TokenCounter::new(counting, 0);
        counter.bpe = None;
        counter
    }

    pub fn counting(&self) -> Counting {
        self.counting
    }

    /// Counts one text.
    pub fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let Some(bpe) = self.bpe else {
            self.estimated_bytes = self.estimated_bytes.saturating_add(text.len() as u64);
            return;
        };
        let exact_part = floor_char_boundary(text, self.remaining_exact_bytes.min(text.len()));
        let (head, tail) = text.split_at(exact_part);
        if !head.is_empty() {
            let tokens = count_bounded(bpe, head);
            self.remaining_exact_bytes -= head.len();
            self.exact_bytes = self.exact_bytes.saturating_add(head.len() as u64);
            self.exact_tokens = self.exact_tokens.saturating_add(tokens);
            self.raw_tokens = self.raw_tokens.saturating_add(tokens);
        }
        self.estimated_bytes = self.estimated_bytes.saturating_add(tail.len() as u64);
    }

    /// Adds tokens that are not text (per-message overhead, images).
    /// Saturates: `image_tokens` from config times the image parts a client
    /// sends must never wrap around to a small count that slips under a limit.
    pub fn fixed(&mut self, tokens: u64) {
        self.fixed_tokens = self.fixed_tokens.saturating_add(tokens);
    }

    /// Whether part of the text was estimated rather than tokenized.
    pub fn estimated(&self) -> bool {
        self.estimated_bytes > 0
    }

    /// The total: exact tokens, plus the estimate for the rest (at the ratio
    /// measured on the exact part when there is enough of it), times the
    /// model's factor, plus the fixed tokens.
    pub fn total(&self) -> u64 {
        let estimate = if self.estimated_bytes == 0 {
            0
        } else if self.exact_bytes >= 1024 && self.exact_tokens > 0 {
            // Same density as the exact part, rounded up.
            let scaled = u128::from(self.estimated_bytes) * u128::from(self.exact_tokens);
            u64::try_from(scaled.div_ceil(u128::from(self.exact_bytes))).unwrap_or(u64::MAX)
        } else {
            self.estimated_bytes.div_ceil(FALLBACK_BYTES_PER_TOKEN)
        };
        let raw = self.raw_tokens.saturating_add(estimate);
        scale(raw, self.counting.factor).saturating_add(self.fixed_tokens)
    }
}

/// `tokens × factor`, rounded up (an approximation should not under-reserve).
pub fn scale(tokens: u64, factor: f64) -> u64 {
    if (factor - 1.0).abs() < f64::EPSILON {
        return tokens;
    }
    let scaled = (tokens as f64 * factor).ceil();
    if scaled.is_finite() && scaled >= 0.0 {
        // Saturating conversion: values past u64::MAX become u64::MAX.
        scaled as u64
    } else {
        tokens
    }
}

/// Counts `text` exactly, except that same-class runs longer than
/// [`MAX_RUN_BYTES`] are cut into pieces first so that neither the regex
/// split (the pre-tokenizer) nor the BPE merge sees an unbounded piece.
pub fn count_bounded(bpe: &Bpe, text: &str) -> u64 {
    let mut total = 0u64;
    for segment in bounded_segments(text) {
        total = total.saturating_add(bpe.count(segment) as u64);
    }
    total
}

/// Splits `text` only where a run of whitespace or of non-whitespace grows
/// past [`MAX_RUN_BYTES`]; ordinary text comes back as one segment.
pub fn bounded_segments(text: &str) -> Vec<&str> {
    let mut segments = Vec::new();
    let mut segment_start = 0;
    let mut run_start = 0;
    let mut run_is_space: Option<bool> = None;
    for (index, ch) in text.char_indices() {
        let is_space = ch.is_whitespace();
        if run_is_space != Some(is_space) {
            run_is_space = Some(is_space);
            run_start = index;
        } else if index + ch.len_utf8() - run_start > MAX_RUN_BYTES {
            if let Some(segment) = text.get(segment_start..index) {
                segments.push(segment);
            }
            segment_start = index;
            run_start = index;
        }
    }
    if let Some(segment) = text.get(segment_start..) {
        if !segment.is_empty() {
            segments.push(segment);
        }
    }
    segments
}

/// The largest char boundary at or below `index`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(encoding: Encoding, text: &str) -> u64 {
        count_bounded(bpe(encoding).unwrap(), text)
    }

    #[test]
    fn known_encodings() {
        // Values from OpenAI's cookbook ("How to count tokens with tiktoken").
        assert_eq!(count(Encoding::Cl100kBase, "hello world"), 2);
        assert_eq!(count(Encoding::O200kBase, "hello world"), 2);
        assert_eq!(count(Encoding::Cl100kBase, "tiktoken is great!"), 6);
        assert_eq!(count(Encoding::Cl100kBase, ""), 0);
    }

    #[test]
    fn model_map_picks_encodings() {
        let map = ModelMap::default();
        for model in
            ["gpt-4o", "gpt-4o-mini-2024-07-18", "gpt-4.1-nano", "gpt-5", "o1-preview", "o3-mini", "o4-mini", "GPT-4O"]
        {
            assert_eq!(map.resolve(model), (Counting::exact(Encoding::O200kBase), true), "{model}");
        }
        for model in ["gpt-4", "gpt-4-turbo", "gpt-4-0613", "gpt-3.5-turbo", "gpt-35-turbo"] {
            assert_eq!(map.resolve(model), (Counting::exact(Encoding::Cl100kBase), true), "{model}");
        }
        let (claude, known) = map.resolve("claude-3-5-sonnet-20241022");
        assert!(known);
        assert!(!claude.exact);
        assert_eq!(claude.factor, CLAUDE_FACTOR);
        assert_eq!(claude.encoding, Encoding::O200kBase);
        let (unknown, known) = map.resolve("llama-3-70b");
        assert!(!known);
        assert!(!unknown.exact);
        // Only o200k_base is built at start-up unless the config asks for more.
        assert_eq!(map.preload_encodings(), vec![Encoding::O200kBase]);
    }

    #[test]
    fn overrides_win_and_exact_beats_prefix() {
        let map = ModelMap {
            overrides: ModelTable::new(vec![
                (ModelPattern::parse("gpt-4o-special").unwrap(), Counting::exact(Encoding::Cl100kBase)),
                (ModelPattern::parse("my-*").unwrap(), Counting::exact(Encoding::O200kBase)),
            ]),
            ..ModelMap::default()
        };
        assert_eq!(map.resolve("gpt-4o-special").0.encoding, Encoding::Cl100kBase);
        assert_eq!(map.resolve("gpt-4o").0.encoding, Encoding::O200kBase);
        assert_eq!(map.resolve("my-model"), (Counting::exact(Encoding::O200kBase), true));
        assert!(ModelPattern::parse("a*b").is_err());
        assert!(ModelPattern::parse("*").is_err());
        assert!(ModelPattern::parse("").is_err());
    }

    #[test]
    fn ordinary_text_is_one_segment() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(200);
        assert_eq!(bounded_segments(&text), vec![text.as_str()]);
    }

    #[test]
    fn long_runs_are_cut() {
        let text = format!("start {} end", "a".repeat(5000));
        let segments = bounded_segments(&text);
        assert!(segments.len() >= 5);
        assert_eq!(segments.concat(), text);
        assert!(segments.iter().all(|s| s.len() <= MAX_RUN_BYTES + 6));
        // Multi-byte characters are never split.
        let wide = "日".repeat(2000);
        let segments = bounded_segments(&wide);
        assert_eq!(segments.concat(), wide);
        assert!(segments.len() > 1);
    }

    /// The BPE merge of one piece costs up to the square of its length, so
    /// the sum of squared segment lengths bounds the tokenizer's work.
    fn merge_work(text: &str) -> usize {
        bounded_segments(text).iter().map(|segment| segment.len() * segment.len()).sum()
    }

    #[test]
    fn long_single_letter_words_cost_linear_work() {
        // Counted, not timed: 4× the letters may cost at most ~4× the work.
        for letter in ["a", " ", "日", "7"] {
            let small = merge_work(&letter.repeat(50_000));
            let large = merge_work(&letter.repeat(200_000));
            let bytes = letter.len() * 200_000;
            assert!(large <= 4 * small + 4 * MAX_RUN_BYTES * MAX_RUN_BYTES, "{letter:?}: {large} vs {small}");
            assert!(large <= bytes * (MAX_RUN_BYTES + 4), "{letter:?}: {large} for {bytes} bytes");
        }
    }

    #[test]
    fn pathological_inputs_finish_with_plausible_counts() {
        // 50 000 copies of one letter took 113 s in js-tiktoken (openai/tiktoken#195).
        for text in ["a".repeat(200_000), " ".repeat(200_000), "A".repeat(200_000), "\n".repeat(100_000)] {
            let mut counter = TokenCounter::new(Counting::exact(Encoding::O200kBase), DEFAULT_MAX_EXACT_BYTES);
            counter.text(&text);
            let total = counter.total();
            assert!(total > 0 && total <= text.len() as u64, "{total}");
        }
    }

    #[test]
    fn work_past_the_cap_is_estimated() {
        let sentence = "Tokens are counted exactly until the budget runs out. ";
        let text = sentence.repeat(1000);
        let mut exact = TokenCounter::new(Counting::exact(Encoding::Cl100kBase), usize::MAX);
        exact.text(&text);
        assert!(!exact.estimated());
        let mut capped = TokenCounter::new(Counting::exact(Encoding::Cl100kBase), 4096);
        capped.text(&text);
        assert!(capped.estimated());
        // Same density extrapolated: within 2% of the exact count.
        let (a, b) = (exact.total() as f64, capped.total() as f64);
        assert!((a - b).abs() / a < 0.02, "{a} vs {b}");
        // Without an exact part, 4 bytes per token.
        let mut blind = TokenCounter::estimate_only(Counting::exact(Encoding::Cl100kBase));
        blind.text("12345678");
        assert_eq!(blind.total(), 2);
    }

    #[test]
    fn factor_scales_text_but_not_fixed_tokens() {
        let mut counter = TokenCounter::new(Counting::approximate(Encoding::Cl100kBase, 1.5), usize::MAX);
        counter.text("hello world"); // 2 tokens
        counter.fixed(3);
        assert_eq!(counter.total(), 3 + 3);
        assert_eq!(scale(10, 1.15), 12);
        assert_eq!(scale(10, 1.0), 10);
    }
}
