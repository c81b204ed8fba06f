//! Differential test: token-counter's compiled-in BPE (`token_counter::bpe`)
//! against tiktoken-rs, the reference, on a varied corpus and on generated
//! text, for both encodings. It compares
//! * the pre-tokenizer's pieces with the splits of tiktoken's own patterns
//!   run by fancy-regex (the engine tiktoken-rs uses), including every
//!   Unicode code point in several contexts, and
//! * the token ranks with `CoreBPE::encode_ordinary` (so the counts too).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use fancy_regex::Regex;
use tiktoken_rs::CoreBPE;
use token_counter::bpe::{Bpe, CL100K_BASE, O200K_BASE};

/// cl100k_base's pattern as tiktoken-rs compiles it (`cl100k_base()`).
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

struct Pair {
    name: &'static str,
    ours: &'static Bpe,
    reference: CoreBPE,
    pattern: Regex,
}

fn pairs() -> Vec<Pair> {
    vec![
        Pair {
            name: "o200k_base",
            ours: &O200K_BASE,
            reference: tiktoken_rs::o200k_base().unwrap(),
            pattern: Regex::new(tiktoken_rs::O200K_BASE_PAT_STR).unwrap(),
        },
        Pair {
            name: "cl100k_base",
            ours: &CL100K_BASE,
            reference: tiktoken_rs::cl100k_base().unwrap(),
            pattern: Regex::new(CL100K_PATTERN).unwrap(),
        },
    ]
}

fn reference_pieces<'a>(pattern: &Regex, text: &'a str) -> Vec<&'a str> {
    pattern.find_iter(text).map(|found| found.unwrap().as_str()).collect()
}

/// Compares pieces, ranks and count; on a mismatch, names the first
/// differing piece rather than dumping the whole text.
fn check(pair: &Pair, text: &str) {
    let ours: Vec<&str> = pair.ours.pieces(text).collect();
    let reference = reference_pieces(&pair.pattern, text);
    if ours != reference {
        let at = ours.iter().zip(&reference).position(|(a, b)| a != b).unwrap_or(ours.len().min(reference.len()));
        panic!(
            "{}: pieces differ at piece {at}: ours {:?}, tiktoken {:?}",
            pair.name,
            around(&ours, at),
            around(&reference, at)
        );
    }
    let expected = pair.reference.encode_ordinary(text);
    assert_eq!(pair.ours.encode(text), expected, "{}: tokens differ for {text:?}", pair.name);
    assert_eq!(pair.ours.count(text), expected.len(), "{}", pair.name);
}

/// The pieces around index `at`, for a readable failure.
fn around<'a>(pieces: &[&'a str], at: usize) -> Vec<&'a str> {
    pieces.iter().skip(at.saturating_sub(2)).take(5).copied().collect()
}

fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        // English prose, contractions in every case.
        "The quick brown fox jumps over the lazy dog. It's what they'd've said; you're right, I'm sure we'll see.",
        "DON'T SHOUT! We'RE Here'S THE Answer'LL 've 'd 's 't 'm 'll 're 'x O'Neil rock'n'roll",
        "Straße ſ 'ſ ǅemal ǅ ʰello ʰ Ⅻ ½ ² x² ™ © ® \u{301}a A\u{301} A\u{301}B aʰB",
        "Hello, world! How are you?\nI'm fine, thanks.\r\nAnd you?\r\n\r\n\tIndented\n",
        // Code.
        "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n    println!(\"{x:?}\"); // comment\n}\n",
        "def f(a, b=2, *args, **kw):\n\treturn a/b if b else None  # trailing  \n\n\n",
        "#include <stdio.h>\nint main(void){printf(\"%d\\n\", 42);return 0;}\n/* block */ //line\n",
        "const url = 'https://example.com/a/b?c=d&e=f#g'; // a/b/c //// ///\n/\n/\n",
        "SELECT id, name FROM users WHERE email LIKE '%@example.com' AND created_at > NOW() - INTERVAL '1 day';",
        "<html><body><div class=\"x\">Hello&nbsp;World</div></body></html>",
        // JSON.
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi!"}],"max_tokens":100,"temperature":0.7}"#,
        "{\n  \"a\": [1, 2.5, -3e10, true, null],\n  \"b\": {\"c\": \"d\\u00e9\"}\n}\n",
        // CJK and other scripts.
        "日本語のテキストです。東京タワーは333メートル。ラーメンを食べたい！",
        "中文文本：人工智能正在改变世界，大型语言模型（LLM）越来越强大。",
        "한국어 텍스트입니다. 안녕하세요, 세계!",
        "Привет, мир! Это тест. ΕΛΛΗΝΙΚΑ ελληνικά. עברית. العربية: مرحبا بالعالم ١٢٣٤٥",
        "हिन्दी पाठ: नमस्ते दुनिया। क्षत्रिय ज्ञान। ไทย: สวัสดีครับ ภาษาไทย",
        "Tiếng Việt có dấu: Xin chào thế giới. Ελληνικά, Ñandú, Øre, Ærø, İstanbul, ǈ ǋ",
        // Emoji.
        "I ❤️ emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 #️⃣ 1️⃣ 🏳️‍🌈 ☕️",
        "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀",
        // White space runs.
        "a    b\t\t\tc\n\n\n\nd \n \n e\r\n\r\n  f   ",
        "   leading and trailing   ",
        "\n\n\n",
        " ",
        "x\u{a0}\u{a0}y\u{3000}z\u{85}w\u{2028}v\u{2029}u\u{200b}t\u{200d}s\u{feff}r",
        "\t \t \n\t\n \r \r\n \u{b}\u{c}",
        // Digits.
        "1234567890 3.14159 -42 1,000,000 0x1F 2024-11-30T23:59:59Z ١٢٣ ０１２３ ⅣⅤ",
        "12345678901234567890123456789012345678901234567890",
        // Mixed.
        "GPT-4o costs $5.00/1M input tokens; Claude 3.5 Sonnet: $3/MTok. Résumé naïve café.",
        "email: alice@example.com, phone: +1 (555) 123-4567, IBAN DE89 3704 0044 0532 0130 00",
        "",
        "'",
        "''''''",
        "'s",
        "a'",
        "!!!???...,,,;;;:::---___===+++***&&&^^^%%%$$$###@@@~~~```",
        "A\r\n/B\n//C !\n/ ?\r\r\n/",
    ]
    .iter()
    .map(|text| text.to_string())
    .collect();
    // Long pieces: the heap merge (100 bytes and more) and long runs.
    texts.push("a".repeat(1000));
    texts.push("ab".repeat(300));
    texts.push(" ".repeat(700));
    texts.push("\n".repeat(300));
    texts.push("Supercalifragilisticexpialidocious".repeat(10));
    texts.push("日本".repeat(200));
    texts.push("0123456789".repeat(40));
    texts.push("!?".repeat(300));
    texts.push("x".repeat(99) + " " + &"y".repeat(100) + " " + &"z".repeat(101));
    texts.push("😀".repeat(60));
    texts
}

#[test]
fn corpus_matches_tiktoken() {
    for pair in pairs() {
        for text in corpus() {
            check(&pair, &text);
        }
        // The whole corpus as one text too (pieces meet across the joins).
        check(&pair, &corpus().join(""));
    }
}

/// A small deterministic generator (xorshift), so the test needs no crate
/// and every run sees the same texts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Characters from every category the patterns tell apart, and the ones
/// they name (\r, \n, /, ', the contraction letters).
const ALPHABET: &[&str] = &[
    "a", "b", "e", "l", "r", "s", "t", "v", "m", "d", "A", "E", "L", "R", "S", "T", "V", "M", "D", "ſ", "ǅ", "ʰ", "ー",
    "日", "本", "한", "é", "É", "ß", "\u{301}", "\u{308}", "\u{93f}", "\u{94d}", "क", "ी", "1", "7", "٣", "０", "½",
    "Ⅻ", "²", " ", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\u{a0}", "\u{3000}", "\u{85}", "\u{2028}", "\u{b}", "'",
    "'", "/", "//", "!", ".", ",", "-", "_", "\"", "(", "{", "😀", "👍🏽", "\u{200d}", "\u{fe0f}", "\u{200b}", "\u{0}",
    "\u{7f}", "\u{e000}", "🇫", "#", "$", "€",
];

#[test]
fn generated_text_matches_tiktoken() {
    let pairs = pairs();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..3000 {
        let len = 1 + rng.below(if round % 10 == 0 { 400 } else { 40 });
        let mut text = String::new();
        while text.chars().count() < len {
            let piece = ALPHABET[rng.below(ALPHABET.len())];
            // Runs of one character now and then, to make long words and spaces.
            let repeat = if rng.below(8) == 0 { 1 + rng.below(12) } else { 1 };
            for _ in 0..repeat {
                text.push_str(piece);
            }
        }
        for pair in &pairs {
            check(pair, &text);
        }
    }
}

/// Contexts that put a character through each alternative of the patterns:
/// inside and between words of each case, as a word's prefix, next to
/// digits, apostrophes, spaces and newlines.
const CONTEXTS: [&str; 10] =
    ["a{}b ", "{}{}A ", " {}'s", "A{}a\n", "1{}2 {}\n", " {} x", "\r{}", "{}  y", "Ab{}", "{}"];

fn check_code_points(code_points: impl Iterator<Item = u32>) {
    let pairs = pairs();
    let chars: Vec<char> = code_points.filter_map(char::from_u32).collect();
    let mut text = String::new();
    for chunk in chars.chunks(512) {
        text.clear();
        for &c in chunk {
            for context in CONTEXTS {
                text.push_str(&context.replace("{}", &c.to_string()));
            }
        }
        for pair in &pairs {
            let ours: Vec<&str> = pair.ours.pieces(&text).collect();
            let reference = reference_pieces(&pair.pattern, &text);
            if ours != reference {
                let at = ours.iter().zip(&reference).position(|(a, b)| a != b).unwrap_or(0);
                panic!(
                    "{}: pieces differ near U+{:04X}: ours {:?}, tiktoken {:?}",
                    pair.name,
                    u32::from(chunk[0]),
                    around(&ours, at),
                    around(&reference, at)
                );
            }
        }
    }
}

/// Code points in contexts: the pieces must agree. Every code point below
/// U+3400 (the alphabets, combining marks, punctuation, symbols) and every
/// 31st one above; the exhaustive run is the ignored test below.
#[test]
fn code_points_split_like_tiktoken() {
    check_code_points((0..0x3400).chain((0x3400..=0x10_FFFF).step_by(31)));
}

/// Every Unicode code point (a minute or more in a debug build):
/// `cargo test --release -p token-counter --test bpe_differential -- --ignored`.
#[test]
#[ignore]
fn every_code_point_splits_like_tiktoken() {
    check_code_points(0..=0x10_FFFF);
}
