//! Text nobody here wrote: `proptest` strategies for every function that
//! touches user text.
//!
//! [`hostile_text`] mixes what real chat and documents carry and what
//! breaks byte-index slicing: multi-byte punctuation (arrows, typographic
//! quotes, dashes, ellipses), accents precomposed and as combining marks,
//! emoji with skin tones, ZWJ families, flags and keycaps, right-to-left
//! scripts with their direction marks, zero-width characters and the BOM,
//! NUL and other controls, CJK, characters whose case mapping changes
//! their length ("İ", "ẞ", the Kelvin sign), and sentence punctuation
//! glued to all of them. [`long_text`] repeats such text past 40,000
//! characters.

use proptest::prelude::*;

/// Pieces that are hard on text code, each a complete grapheme or mark.
const HARD: &[&str] = &[
    "→",
    "←",
    "⇒",
    "—",
    "–",
    "…",
    "‘",
    "’",
    "“",
    "”",
    "«",
    "»",
    "„",
    "′",
    "•",
    "·",
    "€",
    "£",
    "°",
    "é",
    "e\u{301}",
    "a\u{308}\u{304}",
    "n\u{303}",
    "\u{301}",
    "\u{20DD}",
    "ç",
    "ø",
    "Å",
    "😀",
    "👍🏽",
    "👨\u{200D}👩\u{200D}👧\u{200D}👦",
    "🏳\u{FE0F}\u{200D}🌈",
    "🇩🇪",
    "🇯🇵",
    "1\u{FE0F}\u{20E3}",
    "❤\u{FE0F}",
    "🙂",
    "🤷\u{200D}♀\u{FE0F}",
    "\u{1F9D1}\u{1F3FF}",
    "\u{E0067}",
    "مرحبا",
    "שלום",
    "\u{200F}",
    "\u{200E}",
    "\u{202E}",
    "\u{202C}",
    "\u{2067}",
    "\u{2069}",
    "\u{200B}",
    "\u{200C}",
    "\u{200D}",
    "\u{FEFF}",
    "\u{2060}",
    "\u{00AD}",
    "\u{0}",
    "\u{1}",
    "\u{7F}",
    "\u{85}",
    "\u{2028}",
    "\u{2029}",
    "\r\n",
    "\t",
    "\u{A0}",
    "\u{3000}",
    "日本語",
    "中文",
    "한국어",
    "ไทย",
    "हिन्दी",
    "Ελληνικά",
    "Привет",
    "İ",
    "ı",
    "ẞ",
    "ß",
    "\u{212A}",
    "ﬁ",
    "Ω",
    "ǅ",
    "ΐ",
    "\u{10FFFF}",
    "\u{FFFD}",
    "\u{E000}",
    "𝕏",
    "𐍈",
];

/// Ordinary words and punctuation, so that the rules find sentences,
/// clauses, names, dates and numbers to work on around the hard pieces.
const PLAIN: &[&str] = &[
    "I",
    "I'm",
    "my",
    "sister",
    "Ana",
    "moved",
    "to",
    "Berlin",
    "last",
    "May",
    "and",
    "but",
    "we",
    "love",
    "it",
    "yesterday",
    "on",
    "7",
    "May",
    "2023",
    "3.5",
    "1,000",
    "km",
    "$20",
    "Dr.",
    "Mr.",
    "e.g.",
    "U.S.",
    "Jan.",
    "since",
    "when",
    "because",
    "Mel",
    "Caroline",
    "next",
    "week",
    "two",
    "years",
    "ago",
    "my",
    "husband",
    "co-worker",
    "H&M",
    "at",
    "Google",
    ".",
    "!",
    "?",
    "...",
    ",",
    ";",
    ":",
    "-",
    " - ",
    "--",
    "\"",
    "'",
    "(",
    ")",
    ":)",
    "<3",
    "xD",
    "\n",
    " ",
    " ",
    " ",
    "  ",
];

/// One piece: a plain word, a hard piece, or any character at all.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(PLAIN).prop_map(str::to_string),
        3 => proptest::sample::select(HARD).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ]
}

/// Text of up to `max_pieces` pieces (plain words, hard pieces, any
/// character), joined with or without blanks so that hard pieces also
/// touch words and punctuation directly.
pub fn text_of(max_pieces: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec((piece(), any::<bool>()), 0..=max_pieces).prop_map(|parts| {
        let mut out = String::new();
        for (p, spaced) in parts {
            out.push_str(&p);
            if spaced {
                out.push(' ');
            }
        }
        out
    })
}

/// Hostile text of everyday size (up to about 60 pieces), or arbitrary
/// `String`s.
pub fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => text_of(60),
        1 => any::<String>(),
    ]
}

/// Hostile text repeated to at least `min_chars` characters (40,000 for a
/// turn at the limit).
pub fn long_text(min_chars: usize) -> impl Strategy<Value = String> {
    text_of(40).prop_map(move |seed| {
        let seed = if seed.is_empty() {
            "I moved to Berlin → 🇩🇪. ".to_string()
        } else {
            seed
        };
        let n = seed.chars().count().max(1);
        seed.repeat(min_chars.div_ceil(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn long_text_is_long(t in long_text(40_000)) {
            prop_assert!(t.chars().count() >= 40_000);
        }
    }

    #[test]
    fn hard_pieces_are_multi_byte_or_control() {
        for p in HARD {
            assert!(
                p.len() > p.chars().count() || p.chars().any(char::is_control) || p.contains('\t'),
                "{p:?} would not exercise byte slicing"
            );
        }
    }
}
