//! BM25 sparse vectors, computed here so every backend scores alike.
//!
//! Documents carry the BM25 term-frequency part
//! `tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`; a query carries
//! each of its terms weighted by the term's inverse document frequency
//! ([`idf`]) in the searching user's own memory, so the dot product the
//! store computes is BM25. The store multiplies nothing in: an IDF the
//! store computed would count every tenant's points.

use crate::model::SparseVector;
use std::collections::BTreeMap;

const K1: f32 = 1.2;
const B: f32 = 0.75;
/// The average length assumed where no stored text says otherwise (a
/// user's first write, tests); real writes use the user's own average
/// ([`crate::corpus::CorpusLengths`]).
pub const DEFAULT_AVGDL: f32 = 10.0;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "did", "do", "does", "for",
    "from", "had", "has", "have", "he", "her", "him", "his", "i", "if", "in", "into", "is", "it",
    "its", "me", "my", "of", "on", "or", "our", "she", "so", "that", "the", "their", "them",
    "then", "there", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which",
    "who", "will", "with", "would", "you", "your", "how", "about", "am", "any", "can", "just", "s",
    "t", "ve", "ll", "re", "d", "m",
];

/// Lowercased word tokens without stop words, lightly stemmed.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| stem(&w.to_lowercase()))
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// A deliberately small suffix stripper: plural and common verb endings, so
/// "restrictions" meets "restriction" and "moved" meets "move".
fn stem(word: &str) -> String {
    let n = word.chars().count();
    if n <= 3 || !word.is_ascii() {
        return word.to_string();
    }
    for (suffix, keep) in [
        ("ies", "y"),
        ("sses", "ss"),
        ("ing", ""),
        ("ed", ""),
        ("s", ""),
    ] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.len() >= 3
            && !(suffix == "s" && (stem.ends_with('s') || stem.ends_with('u')))
        {
            return strip_final_e(format!("{stem}{keep}"));
        }
    }
    strip_final_e(word.to_string())
}

fn strip_final_e(mut word: String) -> String {
    if word.len() > 4 && word.ends_with('e') {
        word.pop();
    }
    word
}

/// Stable 32-bit term id (FNV-1a), identical on every platform and backend.
pub fn term_id(token: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in token.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The BM25 document vector of `text` at [`DEFAULT_AVGDL`].
pub fn document_vector(text: &str) -> SparseVector {
    document_vector_at(text, DEFAULT_AVGDL)
}

/// The number of BM25 tokens of `text` (its document length).
pub fn doc_len(text: &str) -> usize {
    tokenize(text).len()
}

/// The BM25 document vector of `text` in a corpus whose documents average
/// `avgdl` tokens (values below 1 count as 1).
pub fn document_vector_at(text: &str, avgdl: f32) -> SparseVector {
    let avgdl = if avgdl.is_finite() {
        avgdl.max(1.0)
    } else {
        DEFAULT_AVGDL
    };
    let tokens = tokenize(text);
    let dl = tokens.len() as f32;
    let mut tf: BTreeMap<u32, f32> = BTreeMap::new();
    for t in &tokens {
        *tf.entry(term_id(t)).or_default() += 1.0;
    }
    let norm = K1 * (1.0 - B + B * dl / avgdl);
    let (indices, values) = tf
        .into_iter()
        .map(|(id, f)| (id, f * (K1 + 1.0) / (f + norm)))
        .unzip();
    SparseVector { indices, values }
}

/// The distinct term ids of `text`, increasing.
pub fn terms(text: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = tokenize(text).iter().map(|t| term_id(t)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// BM25's inverse document frequency of a term found in `df` of `n`
/// documents, in the form that is never negative (Lucene's, and Qdrant's
/// IDF modifier): `ln(1 + (n - df + 0.5) / (df + 0.5))`. `df` above `n`
/// counts as `n`; non-finite or negative inputs count as 0.
pub fn idf(n: f64, df: f64) -> f32 {
    let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
    let n = clean(n);
    let df = clean(df).min(n);
    ((n - df + 0.5) / (df + 0.5)).ln_1p() as f32
}

/// The BM25 query vector of `text`: weight 1 per distinct term (term
/// frequencies only; see [`idf`] for the weights recall gives them).
pub fn query_vector(text: &str) -> SparseVector {
    let ids = terms(text);
    let values = vec![1.0; ids.len()];
    SparseVector {
        indices: ids,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_drops_stopwords_and_stems() {
        assert_eq!(
            tokenize("Any food restrictions? I'm allergic to shellfish."),
            vec!["food", "restriction", "allergic", "shellfish"]
        );
        assert_eq!(tokenize("She moved to Lyon"), vec!["mov", "lyon"]);
        assert_eq!(stem("moving"), "mov");
    }

    #[test]
    fn document_vector_is_sorted_and_saturating() {
        let v = document_vector("cat cat cat dog");
        assert!(v.indices.windows(2).all(|w| w[0] < w[1]));
        let cat = v.values[v.indices.iter().position(|i| *i == term_id("cat")).unwrap()];
        let dog = v.values[v.indices.iter().position(|i| *i == term_id("dog")).unwrap()];
        assert!(cat > dog && cat < (K1 + 1.0));
    }

    fn doc_len_distinct(text: &str) -> usize {
        let mut ids: Vec<u32> = tokenize(text).iter().map(|t| term_id(t)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    #[test]
    fn a_long_corpus_average_lifts_long_documents() {
        let long = "lyon ".to_owned() + &"word ".repeat(59);
        // At the default average a 60-token answer is ten times too long;
        // in a corpus of such answers it is ordinary.
        let short_corpus = document_vector_at(&long, DEFAULT_AVGDL);
        let long_corpus = document_vector_at(&long, 60.0);
        let lyon = term_id("lyon");
        let at = |v: &SparseVector| v.values[v.indices.iter().position(|i| *i == lyon).unwrap()];
        assert!(at(&long_corpus) > 2.0 * at(&short_corpus));
        assert_eq!(doc_len(&long), 60);
        assert_eq!(document_vector(&long), short_corpus);
    }

    #[test]
    fn query_vector_dedups_terms() {
        let q = query_vector("shellfish shellfish allergy");
        assert_eq!(q.indices.len(), 2);
        assert!(q.values.iter().all(|v| *v == 1.0));
    }

    #[test]
    fn idf_falls_with_document_frequency_and_stays_positive() {
        assert!(idf(100.0, 1.0) > idf(100.0, 10.0));
        assert!(idf(100.0, 10.0) > idf(100.0, 100.0));
        assert!(idf(100.0, 100.0) > 0.0);
        // Lucene's value for a term in half the documents: ln(1 + 50.5/50.5).
        assert!((idf(100.0, 50.0) - 2f32.ln()).abs() < 1e-6);
        assert_eq!(idf(10.0, 50.0), idf(10.0, 10.0));
        for (n, df) in [
            (0.0, 0.0),
            (f64::NAN, 1.0),
            (5.0, -1.0),
            (f64::INFINITY, 2.0),
        ] {
            let v = idf(n, df);
            assert!(v.is_finite() && v > 0.0, "idf({n}, {df}) = {v}");
        }
        assert_eq!(
            terms("Shellfish, shellfish allergy"),
            query_vector("allergy shellfish").indices
        );
    }

    #[test]
    fn empty_text_gives_empty_vectors() {
        assert!(document_vector("the a of").indices.is_empty());
        assert!(query_vector("?!").indices.is_empty());
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::{hostile_text, long_text};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn vectors_of_hostile_text_are_well_formed(
                text in prop_oneof![8 => hostile_text(), 1 => long_text(40_000)],
            ) {
                for t in tokenize(&text) {
                    // Lowercasing may add marks ("İ" → "i̇"), never blanks.
                    prop_assert!(!t.is_empty() && !t.chars().any(char::is_whitespace));
                }
                let d = document_vector(&text);
                prop_assert!(d.indices.windows(2).all(|w| w[0] < w[1]));
                prop_assert_eq!(d.indices.len(), d.values.len());
                prop_assert!(d.values.iter().all(|v| v.is_finite() && *v > 0.0));
                let q = query_vector(&text);
                prop_assert!(q.indices.windows(2).all(|w| w[0] < w[1]));
                for avgdl in [0.0, 1.0, 250.0, f32::NAN, f32::INFINITY] {
                    let d = document_vector_at(&text, avgdl);
                    prop_assert!(d.values.iter().all(|v| v.is_finite() && *v > 0.0));
                    prop_assert_eq!(d.indices.len(), doc_len_distinct(&text));
                }
            }
        }
    }
}
