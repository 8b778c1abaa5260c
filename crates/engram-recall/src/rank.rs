//! Ranking helpers shared by both modes: text similarity, diversification
//! (maximal marginal relevance) and the test for an observation that only
//! repeats its source turn.

use engram_core::bm25;
use std::collections::HashSet;

/// Content tokens of a text (BM25's tokenizer: lowercased, stemmed, no stop
/// words), as a set.
pub(crate) fn tokens(text: &str) -> HashSet<String> {
    bm25::tokenize(text).into_iter().collect()
}

/// Jaccard similarity of two token sets (0 when both are empty).
pub(crate) fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f32 {
    let inter = a.intersection(b).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f32 / union as f32
    }
}

/// Whether an observation adds nothing to its source turn: more than 80% of
/// its content tokens, beyond its subject, are already in the turn (one new
/// word in five is news). A date
/// the extractor resolved ("on 7 May 2023" for "yesterday") is new
/// information and keeps it.
pub(crate) fn repeats(observation: &str, subject: Option<&str>, turn: &str) -> bool {
    let subject = subject.map(tokens).unwrap_or_default();
    let obs: Vec<String> = tokens(observation)
        .into_iter()
        .filter(|t| !subject.contains(t))
        .collect();
    if obs.is_empty() {
        return true;
    }
    let turn = tokens(turn);
    let known = obs.iter().filter(|t| turn.contains(*t)).count();
    known * 5 > obs.len() * 4
}

/// Maximal marginal relevance: picks up to `k` of `items` (given best
/// first with their relevance), each time the one maximizing
/// `lambda * relevance - (1 - lambda) * max similarity to those picked`.
/// Returns indices into `items`, in pick order.
pub(crate) fn mmr(
    relevance: &[f32],
    token_sets: &[HashSet<String>],
    k: usize,
    lambda: f32,
) -> Vec<usize> {
    let n = relevance.len().min(token_sets.len());
    let mut picked: Vec<usize> = Vec::with_capacity(k.min(n));
    let mut max_sim = vec![0.0f32; n];
    let mut taken = vec![false; n];
    while picked.len() < k.min(n) {
        let mut best: Option<(usize, f32)> = None;
        for i in 0..n {
            if taken[i] {
                continue;
            }
            let value = lambda * relevance[i] - (1.0 - lambda) * max_sim[i];
            if best.is_none_or(|(_, b)| value > b) {
                best = Some((i, value));
            }
        }
        let Some((i, _)) = best else { break };
        taken[i] = true;
        picked.push(i);
        for j in 0..n {
            if !taken[j] {
                max_sim[j] = max_sim[j].max(jaccard(&token_sets[i], &token_sets[j]));
            }
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observation_with_nothing_new_repeats_its_turn() {
        let turn = "Caroline: I went to a LGBTQ support group yesterday.";
        assert!(repeats(
            "Caroline went to a LGBTQ support group.",
            Some("Caroline"),
            turn
        ));
        assert!(!repeats(
            "Caroline went to a LGBTQ support group on 7 May 2023.",
            Some("Caroline"),
            turn
        ));
        assert!(!repeats("Ana is User's sister.", Some("Ana"), "I love tea"));
        assert!(!repeats(
            "User's sister Ana lives in Lyon, France.",
            Some("User"),
            "My sister Ana lives in Lyon."
        ));
    }

    #[test]
    fn mmr_skips_a_near_duplicate_in_favour_of_a_new_topic() {
        let texts = [
            "Melanie painted a lake sunrise",
            "Melanie painted the lake sunrise again",
            "Melanie runs a charity race",
        ];
        let sets: Vec<_> = texts.iter().map(|t| tokens(t)).collect();
        let picked = mmr(&[1.0, 0.95, 0.8], &sets, 2, 0.7);
        assert_eq!(picked, vec![0, 2]);
        // With lambda 1 it is plain relevance order.
        assert_eq!(mmr(&[1.0, 0.95, 0.8], &sets, 3, 1.0), vec![0, 1, 2]);
        assert!(mmr(&[], &[], 3, 0.5).is_empty());
    }
}
