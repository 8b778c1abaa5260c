//! The tunable constants of the deep pipeline.
//!
//! Each step of `deep` can be turned off through its parameter, which is how
//! `BENCHMARKS.md` measures what each one is worth: observation fusion with
//! `observation_weight = 0`, neighbours with `expand = 0`, time boosts with
//! `time_boost = 1`, MMR with `mmr_lambda = 1`, entities with
//! `max_entities = 0`, session evidence with `session_weight = 0`, session
//! likeness with `session_similarity = 0`, the conversation floor with
//! `min_sessions = 0`. The defaults are chosen on the fit splits of both
//! development benchmarks (LoCoMo conversations 1–5, RealMem people 1–5)
//! and reported on the others.

use serde::{Deserialize, Serialize};

/// Parameters of the deep pipeline (`[recall.deep]` in the server config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepParams {
    /// Reciprocal-rank constant of the turn and observation lists: small
    /// values trust the first places more.
    pub rrf_k: f32,
    /// Weight of a turn's place in the observation list against its own
    /// place in the turn list (0 = observations lend nothing).
    pub observation_weight: f32,
    /// Share of a strong turn's score its first neighbour gets.
    pub neighbour_decay: f32,
    /// Factor on a turn said (or about an event) in the query's time range
    /// (1 = no boost).
    pub time_boost: f32,
    /// Strongest turns whose neighbours join the pool (0 = none).
    pub expand: usize,
    /// Neighbours pulled per strong turn.
    pub neighbours: usize,
    /// Neighbours are looked for this close in time, ms.
    pub neighbour_window_ms: i64,
    /// Relevance weight of the MMR selection (1 = plain ranking).
    pub mmr_lambda: f32,
    /// Entity hits returned (0 = no entity search).
    pub max_entities: usize,
    /// Weight of the session's evidence in a turn's score (0 = none): the
    /// candidates of a session, best first, add up with weights 1, 1/2,
    /// 1/3, … (at most [`SESSION_DEPTH`] of them), so a turn of a
    /// conversation that keeps matching the query rises above a lone turn
    /// that shares a few words with it.
    pub session_weight: f32,
    /// Factor on a turn's relevance for each turn of its session already
    /// picked (1 = none): the list reaches more conversations instead of
    /// filling up with one.
    pub session_repeat: f32,
    /// Weight of the session's likeness to the query (0 = none): the mean
    /// cosine of its best [`SIMILARITY_DEPTH`] turns among the direct hits,
    /// a session with fewer filled with the weakest cosine of the list. A
    /// turn of a conversation that is about what the query needs rises above
    /// a turn that matches it alone; in units of the first place of the turn
    /// list, per unit of cosine.
    pub session_similarity: f32,
    /// Conversations the turn list reaches, when the candidates allow (0 =
    /// no floor). The first half of the list keeps its order; past it, a
    /// turn of a session listed more than once gives way to the best turn
    /// of a session not listed yet, so session evidence, which lifts the
    /// turns of a few strong conversations together, cannot crowd every
    /// other conversation out of the list.
    pub min_sessions: usize,
}

/// Most candidates of one session that add to its evidence.
pub const SESSION_DEPTH: usize = 5;

/// Best turns of one session whose cosines make its likeness.
pub const SIMILARITY_DEPTH: usize = 3;

impl Default for DeepParams {
    fn default() -> Self {
        Self {
            rrf_k: 10.0,
            observation_weight: 0.5,
            neighbour_decay: 0.3,
            time_boost: 2.0,
            expand: 3,
            neighbours: 2,
            neighbour_window_ms: 5 * 60 * 1000,
            mmr_lambda: 1.0,
            max_entities: 5,
            session_weight: 0.5,
            session_repeat: 1.0,
            session_similarity: 1.0,
            min_sessions: 10,
        }
    }
}

impl DeepParams {
    /// Why these parameters cannot be used, if they cannot; `prefix` names
    /// the config section in the message.
    pub fn check(&self, prefix: &str) -> Result<(), String> {
        let finite = [
            self.rrf_k,
            self.observation_weight,
            self.neighbour_decay,
            self.time_boost,
            self.mmr_lambda,
            self.session_weight,
            self.session_repeat,
            self.session_similarity,
        ]
        .iter()
        .all(|v| v.is_finite());
        if !finite {
            return Err(format!("{prefix}: every value must be a finite number"));
        }
        let checks = [
            (self.rrf_k > 0.0, "rrf_k must be above 0"),
            (
                (0.0..=10.0).contains(&self.observation_weight),
                "observation_weight must be in 0..=10",
            ),
            (
                (0.0..=1.0).contains(&self.neighbour_decay),
                "neighbour_decay must be in 0..=1",
            ),
            (
                (1.0..=10.0).contains(&self.time_boost),
                "time_boost must be in 1..=10",
            ),
            (self.expand <= 20, "expand must be at most 20"),
            (self.neighbours <= 10, "neighbours must be at most 10"),
            (
                (0..=86_400_000).contains(&self.neighbour_window_ms),
                "neighbour_window_ms must be in 0..=86400000",
            ),
            (
                (0.0..=1.0).contains(&self.mmr_lambda),
                "mmr_lambda must be in 0..=1",
            ),
            (self.max_entities <= 20, "max_entities must be at most 20"),
            (self.min_sessions <= 50, "min_sessions must be at most 50"),
            (
                (0.0..=10.0).contains(&self.session_weight),
                "session_weight must be in 0..=10",
            ),
            (
                (0.0..=1.0).contains(&self.session_repeat) && self.session_repeat > 0.0,
                "session_repeat must be in (0, 1]",
            ),
            (
                (0.0..=10.0).contains(&self.session_similarity),
                "session_similarity must be in 0..=10",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(format!("{prefix}.{why}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_bound_is_checked() {
        assert_eq!(DeepParams::default().check("recall.deep"), Ok(()));
        let bad = [
            DeepParams {
                rrf_k: 0.0,
                ..DeepParams::default()
            },
            DeepParams {
                time_boost: 0.5,
                ..DeepParams::default()
            },
            DeepParams {
                mmr_lambda: f32::NAN,
                ..DeepParams::default()
            },
            DeepParams {
                expand: 21,
                ..DeepParams::default()
            },
            DeepParams {
                neighbour_window_ms: -1,
                ..DeepParams::default()
            },
            DeepParams {
                min_sessions: 51,
                ..DeepParams::default()
            },
            DeepParams {
                session_similarity: -0.5,
                ..DeepParams::default()
            },
            DeepParams {
                session_similarity: f32::INFINITY,
                ..DeepParams::default()
            },
        ];
        for p in bad {
            let e = p.check("recall.deep").unwrap_err();
            assert!(e.starts_with("recall.deep"), "{e}");
        }
    }

    #[test]
    fn off_switches_are_valid() {
        let off = DeepParams {
            observation_weight: 0.0,
            expand: 0,
            time_boost: 1.0,
            mmr_lambda: 1.0,
            max_entities: 0,
            session_weight: 0.0,
            session_similarity: 0.0,
            ..DeepParams::default()
        };
        assert_eq!(off.check("recall.deep"), Ok(()));
    }
}
