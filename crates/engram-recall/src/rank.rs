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
/// `lambda * relevance - (1 - lambda) * max similarity to those picked`,
/// and returns indices into `items` in pick order. Each item may belong to
/// a group (`groups[i]`; items past its end are in no group), and its
/// relevance is multiplied by `repeat` once for every item of its group
/// already picked: with `repeat < 1` a few strong groups cannot fill the
/// whole list.
pub(crate) fn mmr_grouped(
    relevance: &[f32],
    token_sets: &[HashSet<String>],
    groups: &[usize],
    repeat: f32,
    k: usize,
    lambda: f32,
) -> Vec<usize> {
    let n = relevance.len().min(token_sets.len());
    let mut picked: Vec<usize> = Vec::with_capacity(k.min(n));
    let mut max_sim = vec![0.0f32; n];
    let mut taken = vec![false; n];
    let mut in_group: std::collections::HashMap<usize, i32> = std::collections::HashMap::new();
    while picked.len() < k.min(n) {
        let mut best: Option<(usize, f32)> = None;
        for i in 0..n {
            if taken[i] {
                continue;
            }
            let seen = groups
                .get(i)
                .and_then(|g| in_group.get(g))
                .copied()
                .unwrap_or(0);
            let rel = relevance[i] * repeat.powi(seen);
            let value = lambda * rel - (1.0 - lambda) * max_sim[i];
            if best.is_none_or(|(_, b)| value > b) {
                best = Some((i, value));
            }
        }
        let Some((i, _)) = best else { break };
        taken[i] = true;
        picked.push(i);
        if let Some(g) = groups.get(i) {
            *in_group.entry(*g).or_default() += 1;
        }
        // At lambda 1 similarity has no weight: skip its quadratic update.
        if lambda >= 1.0 {
            continue;
        }
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
        let picked = mmr_grouped(&[1.0, 0.95, 0.8], &sets, &[], 1.0, 2, 0.7);
        assert_eq!(picked, vec![0, 2]);
        // With lambda 1 it is plain relevance order.
        assert_eq!(
            mmr_grouped(&[1.0, 0.95, 0.8], &sets, &[], 1.0, 3, 1.0),
            vec![0, 1, 2]
        );
        assert!(mmr_grouped(&[], &[], &[], 1.0, 3, 0.5).is_empty());
        // Three strong items of one group and a weaker one of another: with
        // a repeat penalty the other group gets in before the third.
        let disjoint: Vec<HashSet<String>> =
            (0..4).map(|i| HashSet::from([format!("w{i}")])).collect();
        let rel = [1.0, 0.9, 0.85, 0.6];
        assert_eq!(
            mmr_grouped(&rel, &disjoint, &[0, 0, 0, 1], 1.0, 3, 1.0),
            vec![0, 1, 2]
        );
        assert_eq!(
            mmr_grouped(&rel, &disjoint, &[0, 0, 0, 1], 0.6, 3, 1.0),
            vec![0, 3, 1]
        );
    }
}
