//! Session-level steps of the deep pipeline: how much a conversation as a
//! whole is like the query, and how many conversations the turn list
//! reaches. A turn is judged with its session; a memory chunk, which is in
//! no session, is a group of its own.

use crate::search::Ranked;
use engram_core::{PointPayload, ScoredPoint};
use std::collections::{HashMap, HashSet};

/// The group a turn is judged with: its session; a memory chunk, which is
/// in no session, is a group of its own.
pub(crate) fn group_key(p: &PointPayload) -> &str {
    if p.session_id.is_empty() {
        p.fragment_id.as_str()
    } else {
        p.session_id.as_str()
    }
}

/// Makes `turns` reach at least `min` groups (sessions) when `scored`, the
/// candidates best first, has them: the best candidate of each group not
/// listed yet is appended, into free places up to `len` first, then into
/// places given up from the end of the list by turns whose group is listed
/// more than once. The first `head` turns never move.
pub(crate) fn cover_sessions(
    turns: &mut Vec<Ranked>,
    scored: &[(f32, PointPayload)],
    len: usize,
    head: usize,
    min: usize,
) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for t in turns.iter() {
        *count.entry(group_key(&t.payload).to_owned()).or_default() += 1;
    }
    if count.len() >= min {
        return;
    }
    let mut fresh = HashSet::new();
    let newcomers: Vec<&(f32, PointPayload)> = scored
        .iter()
        .filter(|(_, p)| {
            let g = group_key(p);
            !count.contains_key(g) && fresh.insert(g)
        })
        .take(min - count.len())
        .collect();
    let mut room = len.saturating_sub(turns.len());
    let mut i = turns.len();
    while room < newcomers.len() && i > head {
        i -= 1;
        let g = group_key(&turns[i].payload);
        if let Some(n) = count.get_mut(g)
            && *n > 1
        {
            *n -= 1;
            turns.remove(i);
            room += 1;
        }
    }
    turns.extend(
        newcomers
            .into_iter()
            .take(room)
            .map(|(score, payload)| Ranked {
                payload: payload.clone(),
                score: *score,
            }),
    );
}

/// How much each session is about the query, from the dense cosines of the
/// direct hits: the mean of its best [`SIMILARITY_DEPTH`] cosines, the
/// weakest cosine of the list standing in for the turns it did not place
/// (a turn outside the list is at most that like the query). A
/// conversation that keeps matching what the query needs scores above one
/// that matches it in a single turn, which is what need-shaped queries
/// ("what should I do next?") look for; measured per step in
/// `BENCHMARKS.md`.
///
/// [`SIMILARITY_DEPTH`]: crate::params::SIMILARITY_DEPTH
pub(crate) struct Likeness {
    by_group: HashMap<String, f32>,
    floor: f32,
}

impl Likeness {
    /// The likeness of the groups of `direct`; `None` without any cosine.
    pub(crate) fn of(direct: &[ScoredPoint]) -> Option<Self> {
        let depth = crate::params::SIMILARITY_DEPTH;
        let cosines: Vec<(&str, f32)> = direct
            .iter()
            .filter_map(|p| {
                p.dense_score
                    .filter(|c| c.is_finite())
                    .map(|c| (group_key(&p.payload), c))
            })
            .collect();
        let floor = cosines.iter().map(|(_, c)| *c).reduce(f32::min)?;
        let mut by: HashMap<&str, Vec<f32>> = HashMap::new();
        for (g, c) in cosines {
            by.entry(g).or_default().push(c);
        }
        let by_group = by
            .into_iter()
            .map(|(g, mut cs)| {
                cs.sort_by(|a, b| b.total_cmp(a));
                cs.resize(depth, floor);
                (g.to_owned(), cs.iter().sum::<f32>() / depth as f32)
            })
            .collect();
        Some(Self { by_group, floor })
    }

    /// A group's likeness in [0, 1]; a group without a direct hit gets the
    /// floor.
    pub(crate) fn of_group(&self, key: &str) -> f32 {
        self.by_group
            .get(key)
            .copied()
            .unwrap_or(self.floor)
            .clamp(0.0, 1.0)
    }
}

/// A turn of `session` with id `id` and nothing else, for tests.
#[cfg(test)]
pub(crate) fn test_turn(session: &str, id: &str) -> PointPayload {
    let scope = engram_core::Scope {
        org_id: "o".into(),
        user_id: "u".into(),
        session_id: session.into(),
    };
    PointPayload::new(
        id.into(),
        scope,
        engram_core::Kind::Turn,
        String::new(),
        0,
        String::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(session: &str, id: &str, cosine: Option<f32>) -> ScoredPoint {
        ScoredPoint {
            payload: test_turn(session, id),
            score: 0.0,
            dense_score: cosine,
            dense_rank: None,
            sparse_rank: None,
        }
    }

    #[test]
    fn likeness_lifts_a_conversation_about_the_query_over_a_lone_match() {
        let direct = [
            hit("lone", "a", Some(0.9)),
            hit("thread", "b", Some(0.7)),
            hit("thread", "c", Some(0.7)),
            hit("thread", "d", Some(0.7)),
            hit("", "chunk", Some(0.8)),
            hit("other", "e", Some(0.1)),
            hit("nan", "f", Some(f32::NAN)),
        ];
        let l = Likeness::of(&direct).unwrap();
        // lone: (0.9 + 0.1 + 0.1) / 3, thread: 0.7, filled with the floor 0.1.
        assert!((l.of_group("lone") - 1.1 / 3.0).abs() < 1e-6);
        assert!((l.of_group("thread") - 0.7).abs() < 1e-6);
        assert!(l.of_group("thread") > l.of_group("lone"));
        // A memory chunk is its own group; an unseen group gets the floor;
        // a NaN cosine is ignored.
        assert!((l.of_group("chunk") - 1.0 / 3.0).abs() < 1e-6);
        assert!((l.of_group("unseen") - 0.1).abs() < 1e-6);
        assert!((l.of_group("nan") - 0.1).abs() < 1e-6);
        assert!(Likeness::of(&[hit("s", "x", None)]).is_none());
        // Negative cosines never lower a score below the fusion's.
        let neg = Likeness::of(&[hit("s", "x", Some(-0.5))]).unwrap();
        assert_eq!(neg.of_group("s"), 0.0);
    }

    #[test]
    fn the_tail_of_the_list_reaches_more_conversations() {
        let ranked = |session: &str, id: &str, score: f32| Ranked {
            payload: test_turn(session, id),
            score,
        };
        let ids = |turns: &[Ranked]| -> Vec<String> {
            turns
                .iter()
                .map(|t| t.payload.fragment_id.clone())
                .collect()
        };
        let list = || {
            vec![
                ranked("a", "a1", 0.9),
                ranked("a", "a2", 0.8),
                ranked("b", "b1", 0.7),
                ranked("a", "a3", 0.6),
                ranked("b", "b2", 0.5),
                ranked("a", "a4", 0.4),
            ]
        };
        let scored: Vec<(f32, PointPayload)> = list()
            .into_iter()
            .chain([
                ranked("c", "c1", 0.3),
                ranked("c", "c2", 0.25),
                ranked("", "chunk", 0.2),
                ranked("d", "d1", 0.1),
            ])
            .map(|r| (r.score, r.payload))
            .collect();
        // Two newcomers (c, the chunk) take the places of the last repeats.
        let mut turns = list();
        cover_sessions(&mut turns, &scored, 6, 2, 4);
        assert_eq!(ids(&turns), ["a1", "a2", "b1", "a3", "c1", "chunk"]);
        // Free places are used before any turn gives way.
        let mut turns = list();
        cover_sessions(&mut turns, &scored, 8, 2, 4);
        assert_eq!(
            ids(&turns),
            ["a1", "a2", "b1", "a3", "b2", "a4", "c1", "chunk"]
        );
        // The head never moves, and a session's only turn never goes.
        let mut turns = list();
        cover_sessions(&mut turns, &scored, 6, 5, 10);
        assert_eq!(ids(&turns), ["a1", "a2", "b1", "a3", "b2", "c1"]);
        let mut short = vec![ranked("a", "a1", 0.9), ranked("b", "b1", 0.7)];
        cover_sessions(&mut short, &scored, 2, 0, 5);
        assert_eq!(ids(&short), ["a1", "b1"]);
        // Enough sessions already, or no floor: nothing changes.
        let mut turns = list();
        cover_sessions(&mut turns, &scored, 6, 0, 2);
        assert_eq!(ids(&turns), ids(&list()));
        cover_sessions(&mut turns, &scored, 6, 0, 0);
        assert_eq!(ids(&turns), ids(&list()));
    }
}
