//! Sentence-aware chunking of stored memories.
//!
//! The embedding model reads at most 256 word pieces and truncates the
//! rest, so a chunk must stay well under that (about 800 characters of
//! English is 170–200 pieces). Chunks end at sentence boundaries; a
//! sentence longer than a chunk is cut at word boundaries. The last
//! sentence of a chunk is repeated at the start of the next when it is
//! short, so a fact spread over a boundary is still found in one piece.

/// Longest chunk, in characters.
pub const MAX_CHUNK_CHARS: usize = 800;
/// A chunk's last sentence is carried into the next one when it is at most
/// this long.
const OVERLAP_CHARS: usize = 200;

/// Splits `text` into chunks of at most [`MAX_CHUNK_CHARS`] characters,
/// in order, none empty. Whitespace inside a chunk is kept as written.
pub fn chunks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut len = 0usize;
    for sentence in sentences(text).into_iter().flat_map(split_long) {
        let n = sentence.chars().count();
        if len > 0 && len + 1 + n > MAX_CHUNK_CHARS {
            out.push(current.join(" "));
            let carry = current
                .last()
                .copied()
                .filter(|s| s.chars().count() <= OVERLAP_CHARS && current.len() > 1);
            current.clear();
            len = 0;
            if let Some(c) = carry.filter(|c| c.chars().count() + 1 + n <= MAX_CHUNK_CHARS) {
                current.push(c);
                len = c.chars().count();
            }
        }
        len += n + usize::from(len > 0);
        current.push(sentence);
    }
    if !current.is_empty() {
        out.push(current.join(" "));
    }
    out
}

/// Sentences and paragraph lines of `text`, trimmed, none empty. A
/// sentence ends after `.`, `!` or `?` (and any closing quotes or
/// brackets) followed by whitespace, or at a line break.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let mut chars = line.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if !matches!(c, '.' | '!' | '?') {
                continue;
            }
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if matches!(d, '"' | '\'' | ')' | ']' | '”' | '’' | '.' | '!' | '?') {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.peek().is_some_and(|&(_, d)| d.is_whitespace()) {
                push_trimmed(&mut out, &line[start..end]);
                start = end;
            }
        }
        push_trimmed(&mut out, &line[start..]);
    }
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s);
    }
}

/// A sentence longer than a chunk, cut at word boundaries (or anywhere,
/// for a single word longer than a chunk).
fn split_long(sentence: &str) -> Vec<&str> {
    if sentence.chars().count() <= MAX_CHUNK_CHARS {
        return vec![sentence];
    }
    let mut out = Vec::new();
    let mut rest = sentence;
    while rest.chars().count() > MAX_CHUNK_CHARS {
        let limit = rest
            .char_indices()
            .nth(MAX_CHUNK_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let cut = rest[..limit]
            .rfind(char::is_whitespace)
            .filter(|&i| i > 0)
            .unwrap_or(limit);
        push_trimmed(&mut out, &rest[..cut]);
        rest = rest[cut..].trim_start();
    }
    push_trimmed(&mut out, rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(
            chunks("  Hello there. How are you?  "),
            ["Hello there. How are you?"]
        );
        assert!(chunks(" \n ").is_empty());
    }

    #[test]
    fn chunks_end_at_sentences_and_respect_the_limit() {
        let sentence = "The quarterly report lists revenue by region and product line.";
        let text = std::iter::repeat_n(sentence, 60)
            .collect::<Vec<_>>()
            .join(" ");
        let out = chunks(&text);
        assert!(out.len() > 3);
        for c in &out {
            assert!(c.chars().count() <= MAX_CHUNK_CHARS, "{} chars", c.len());
            assert!(c.ends_with('.'), "chunk cut mid-sentence: {c:?}");
        }
        // Every sentence is somewhere, the last one in the last chunk.
        assert!(out.last().unwrap().ends_with(sentence));
    }

    #[test]
    fn a_short_last_sentence_overlaps_into_the_next_chunk() {
        let long = "a".repeat(500) + ".";
        let text = format!("{long} Short bridge sentence. {long}");
        let out = chunks(&text);
        assert_eq!(out.len(), 2);
        assert!(out[0].ends_with("Short bridge sentence."));
        assert!(out[1].starts_with("Short bridge sentence."));
    }

    #[test]
    fn overlong_sentences_are_cut_at_words_and_unicode_is_safe() {
        let word = "mémoire ";
        let text = word.repeat(400);
        let out = chunks(&text);
        assert!(out.len() >= 4);
        for c in &out {
            assert!(c.chars().count() <= MAX_CHUNK_CHARS);
            assert!(!c.starts_with(' ') && !c.ends_with(' '));
            assert!(c.split(' ').all(|w| w == "mémoire"));
        }
        let blob = "x".repeat(2000);
        let out = chunks(&blob);
        assert_eq!(out.iter().map(|c| c.len()).sum::<usize>(), 2000);
    }

    #[test]
    fn line_breaks_and_abbreviations() {
        let out = chunks("Title line\nFirst point: v1.2 is out! Second point?\n\nDone");
        assert_eq!(
            out,
            ["Title line First point: v1.2 is out! Second point? Done"]
        );
        assert_eq!(
            sentences("Title line\nFirst point: v1.2 is out! Second point?\n\nDone"),
            [
                "Title line",
                "First point: v1.2 is out!",
                "Second point?",
                "Done"
            ]
        );
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::{hostile_text, long_text};
        use proptest::prelude::*;

        fn visible(s: &str) -> usize {
            s.chars().filter(|c| !c.is_whitespace()).count()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn chunks_of_hostile_text_are_bounded_and_lose_nothing(
                text in prop_oneof![6 => hostile_text(), 1 => long_text(20_000)],
            ) {
                let out = chunks(&text);
                for c in &out {
                    prop_assert!(!c.trim().is_empty());
                    prop_assert!(c.chars().count() <= MAX_CHUNK_CHARS);
                }
                // Overlap repeats sentences, never drops one.
                let kept: usize = out.iter().map(|c| visible(c)).sum();
                prop_assert!(kept >= visible(&text));
            }
        }
    }
}
