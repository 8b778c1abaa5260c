//! The two recall pipelines.
//!
//! `active` is one hybrid query over turns and observations; an
//! observation hit also brings its source turn into the turn list (a turn is
//! found through the facts extracted from it). `deep` runs three queries
//! (turns and memory chunks, observations, entities) concurrently, fuses
//! the turn evidence of the first two by reciprocal rank, expands the
//! strongest turns with their neighbours in the same session, boosts what
//! falls inside a time expression of the query, and diversifies.

use crate::sessions::{Likeness, cover_sessions, group_key};
use crate::timeq::{self, TimeHint};
use crate::{DeepParams, rank};
use engram_core::{
    Cond, HybridQuery, Kind, MemoryAccess, PointPayload, ScopeFilter, ScoredPoint, StoreError,
    VectorStore,
};
use std::collections::{HashMap, HashSet};

/// What a query asks, resolved.
pub(crate) struct Query<'a> {
    /// The store to search.
    pub store: &'a dyn VectorStore,
    /// Tenant.
    pub org_id: &'a str,
    /// End user.
    pub user_id: &'a str,
    /// Session, when the search is limited to one.
    pub session_id: Option<&'a str>,
    /// Query text.
    pub q: &'a str,
    /// Query embedding.
    pub dense: Vec<f32>,
    /// Query terms, weighed by their IDF in each corpus searched.
    pub terms: crate::idf::QueryTerms,
    /// Candidates per retriever.
    pub prefetch: usize,
    /// Hits to return across turns and observations.
    pub top_k: usize,
    /// The time of the request, for relative dates in `q`.
    pub now_ms: i64,
    /// Which stored memories besides the user's own are visible.
    pub access: MemoryAccess,
    /// The caller's metadata condition.
    pub metadata: Option<Cond>,
    /// Only stored memories of these collections.
    pub collection_ids: Vec<String>,
    /// The deep pipeline's constants.
    pub deep: &'a DeepParams,
}

/// A ranked hit.
#[derive(Debug, Clone)]
pub(crate) struct Ranked {
    /// The stored point.
    pub payload: PointPayload,
    /// Score in [0, 1].
    pub score: f32,
}

/// What a pipeline returns.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Turn (and memory chunk) hits, best first.
    pub turns: Vec<Ranked>,
    /// Observation hits, best first, without mere repeats of a returned turn.
    pub observations: Vec<Ranked>,
    /// Observations of the returned turns, for the timeline.
    pub context: Vec<PointPayload>,
    /// Linked entities.
    pub entities: Vec<Ranked>,
    /// Confidence features.
    pub signals: Signals,
}

/// Raw evidence for the confidence model.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Signals {
    /// Best dense cosine among the direct hits.
    pub best_cosine: Option<f32>,
    /// Whether the first direct hit is also the best dense match.
    pub agree: bool,
    /// Score of the first turn hit, in [0, 1].
    pub top_score: f32,
    /// Share of the query's content tokens found in the first three turns
    /// and their observations.
    pub coverage: f32,
}

impl Query<'_> {
    fn filter(&self, kinds: Vec<Kind>) -> ScopeFilter {
        ScopeFilter {
            user_id: Some(self.user_id.to_owned()),
            session_id: self.session_id.map(str::to_owned),
            kinds,
            memories: Some(self.access.clone()),
            collection_ids: self.collection_ids.clone(),
            metadata: self.metadata.clone(),
            ..ScopeFilter::tenant(self.org_id)
        }
    }

    /// Whether entities can answer: they carry no metadata and belong to
    /// no collection, so a query restricted by either gets none.
    fn wants_entities(&self) -> bool {
        self.metadata.is_none() && self.collection_ids.is_empty()
    }

    async fn search(
        &self,
        filter: ScopeFilter,
        limit: usize,
    ) -> Result<Vec<ScoredPoint>, StoreError> {
        let sparse = self.terms.for_kinds(&filter.kinds);
        self.store
            .hybrid_search(&HybridQuery {
                filter,
                dense: self.dense.clone(),
                sparse,
                prefetch: self.prefetch.max(limit),
                limit,
            })
            .await
    }

    /// Turn (and memory chunk) payloads by id, kept only when the query's
    /// filter would let them through (an observation's sources always are;
    /// this is the belt to its braces).
    async fn turns_by_id(&self, ids: Vec<String>) -> Result<Vec<PointPayload>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let filter = self.filter(Vec::new());
        Ok(self
            .store
            .get(self.org_id, &ids)
            .await?
            .into_iter()
            .filter(|p| {
                matches!(p.kind, Kind::Turn | Kind::Memory)
                    && filter.visible(p)
                    && (self.collection_ids.is_empty()
                        || p.memory
                            .as_ref()
                            .is_some_and(|m| self.collection_ids.contains(&m.collection_id)))
            })
            .collect())
    }
}

/// Normalizes a store (RRF, k = 2) score to [0, 1]: 1 = first in both
/// retrievers.
pub(crate) fn store_score(score: f32) -> f32 {
    (score / (2.0 / engram_core::RRF_K as f32)).clamp(0.0, 1.0)
}

fn signals_of(direct: &[ScoredPoint]) -> (Option<f32>, bool) {
    let best = direct
        .iter()
        .filter_map(|p| p.dense_score)
        .fold(None, |m: Option<f32>, c| Some(m.map_or(c, |m| m.max(c))));
    let agree = match (direct.first().and_then(|p| p.dense_score), best) {
        (Some(top), Some(best)) => top >= best,
        _ => false,
    };
    (best, agree)
}

fn coverage(q: &str, turns: &[Ranked], observations: &[PointPayload]) -> f32 {
    let wanted = rank::tokens(q);
    if wanted.is_empty() {
        return 0.0;
    }
    let top: Vec<&Ranked> = turns.iter().take(3).collect();
    let ids: HashSet<&str> = top.iter().map(|r| r.payload.fragment_id.as_str()).collect();
    let mut seen = HashSet::new();
    for r in &top {
        seen.extend(rank::tokens(&r.payload.text));
    }
    for o in observations {
        if o.source_ids.iter().any(|s| ids.contains(s.as_str())) {
            seen.extend(rank::tokens(&o.text));
        }
    }
    wanted.iter().filter(|t| seen.contains(*t)).count() as f32 / wanted.len() as f32
}

/// How many observations may take places among `top_k` hits.
fn observation_share(top_k: usize) -> usize {
    top_k / 3
}

/// Observation hits that say more than a returned turn, at most `max`.
fn novel_observations(found: &[Ranked], turns: &[Ranked], max: usize) -> Vec<Ranked> {
    let by_id: HashMap<&str, &PointPayload> = turns
        .iter()
        .map(|r| (r.payload.fragment_id.as_str(), &r.payload))
        .collect();
    found
        .iter()
        .filter(|o| {
            !o.payload.source_ids.iter().any(|s| {
                by_id.get(s.as_str()).is_some_and(|t| {
                    rank::repeats(&o.payload.text, o.payload.subject.as_deref(), &t.text)
                })
            })
        })
        .take(max)
        .cloned()
        .collect()
}

/// `active`: one hybrid query; observations lend their rank to their turns.
pub(crate) async fn active(query: &Query<'_>) -> Result<Outcome, StoreError> {
    let limit = query.top_k + query.top_k / 2;
    let found = query
        .search(
            query.filter(vec![Kind::Turn, Kind::Observation, Kind::Memory]),
            limit,
        )
        .await?;
    let (best_cosine, agree) = signals_of(&found);

    // The turn list in hit order: a turn at its own place or at the place
    // of the first observation derived from it, whichever comes first.
    let mut order: Vec<(String, f32)> = Vec::new();
    let mut listed = HashSet::new();
    let mut payloads: HashMap<String, PointPayload> = HashMap::new();
    let mut observations = Vec::new();
    for p in &found {
        let score = store_score(p.score);
        match p.payload.kind {
            Kind::Observation => {
                for s in &p.payload.source_ids {
                    if listed.insert(s.clone()) {
                        order.push((s.clone(), score));
                    }
                }
                observations.push(ranked(p));
            }
            _ => {
                if listed.insert(p.payload.fragment_id.clone()) {
                    order.push((p.payload.fragment_id.clone(), score));
                }
                payloads.insert(p.payload.fragment_id.clone(), p.payload.clone());
            }
        }
    }
    let missing: Vec<String> = order
        .iter()
        .filter(|(id, _)| !payloads.contains_key(id))
        .map(|(id, _)| id.clone())
        .collect();
    for p in query.turns_by_id(missing).await? {
        payloads.insert(p.fragment_id.clone(), p);
    }
    let all_turns: Vec<Ranked> = order
        .into_iter()
        .filter_map(|(id, score)| {
            payloads
                .remove(&id)
                .map(|payload| Ranked { payload, score })
        })
        .collect();
    let observations =
        novel_observations(&observations, &all_turns, observation_share(query.top_k));
    let mut turns = all_turns;
    turns.truncate(query.top_k - observations.len());
    let context: Vec<PointPayload> = found
        .iter()
        .filter(|p| p.payload.kind == Kind::Observation)
        .map(|p| p.payload.clone())
        .collect();
    Ok(outcome(
        query,
        turns,
        observations,
        context,
        Vec::new(),
        (best_cosine, agree),
    ))
}

/// The outcome of a pipeline, with its confidence signals.
fn outcome(
    query: &Query<'_>,
    turns: Vec<Ranked>,
    observations: Vec<Ranked>,
    context: Vec<PointPayload>,
    entities: Vec<Ranked>,
    (best_cosine, agree): (Option<f32>, bool),
) -> Outcome {
    let signals = Signals {
        best_cosine,
        agree,
        top_score: turns.first().map_or(0.0, |r| r.score),
        coverage: coverage(query.q, &turns, &context),
    };
    Outcome {
        turns,
        observations,
        context,
        entities,
        signals,
    }
}

/// A store hit with its score scaled to [0, 1].
fn ranked(p: &ScoredPoint) -> Ranked {
    Ranked {
        payload: p.payload.clone(),
        score: store_score(p.score),
    }
}

/// A turn candidate of the deep fusion.
#[derive(Default)]
struct Candidate {
    payload: Option<PointPayload>,
    turn_rank: Option<usize>,
    obs_rank: Option<usize>,
    /// Score lent by a strong neighbour (the best one, when several).
    neighbour: f32,
    /// Event times of the observations that cite it.
    event_ms: Vec<i64>,
}

impl Candidate {
    /// Evidence of its own: reciprocal ranks in the turn and observation lists.
    fn own(&self, p: &DeepParams) -> f32 {
        let rrf = |r: Option<usize>, w: f32| r.map_or(0.0, |r| w / (p.rrf_k + r as f32));
        rrf(self.turn_rank, 1.0) + rrf(self.obs_rank, p.observation_weight)
    }

    /// Its own evidence, or what a strong neighbour lends it if that is more
    /// (a reply and the message it answers are read together).
    fn fused(&self, p: &DeepParams) -> f32 {
        self.own(p).max(self.neighbour)
    }
}

/// Highest fused score a candidate can reach (first in both lists, time
/// boost), for scaling to [0, 1].
fn deep_max(p: &DeepParams) -> f32 {
    (1.0 + p.observation_weight + p.session_similarity) / p.rrf_k * p.time_boost
}

/// The share of a strong turn's score its `rank`-th neighbour (0-based,
/// the strong turn itself left out) gets.
fn neighbour_share(p: &DeepParams, rank: usize) -> f32 {
    p.neighbour_decay / (1.0 + rank as f32 * 0.5)
}

/// `deep`: turns, observations and entities, fused, expanded, diversified.
pub(crate) async fn deep(query: &Query<'_>) -> Result<Outcome, StoreError> {
    let wide = (query.top_k * 2).max(40);
    let entity_filter = ScopeFilter {
        session_id: None,
        ..query.filter(vec![Kind::Entity])
    };
    let params = query.deep;
    let entity_limit = if query.wants_entities() {
        params.max_entities
    } else {
        0
    };
    let (direct, obs, entities) = tokio::try_join!(
        query.search(query.filter(vec![Kind::Turn, Kind::Memory]), wide),
        query.search(query.filter(vec![Kind::Observation]), wide),
        async {
            if entity_limit == 0 {
                return Ok(Vec::new());
            }
            query.search(entity_filter, entity_limit).await
        },
    )?;
    let (best_cosine, agree) = signals_of(&direct);

    let mut cands: HashMap<String, Candidate> = HashMap::new();
    for (rank, p) in direct.iter().enumerate() {
        let c = cands.entry(p.payload.fragment_id.clone()).or_default();
        c.turn_rank.get_or_insert(rank);
        c.payload = Some(p.payload.clone());
    }
    for (rank, p) in obs.iter().enumerate() {
        for s in &p.payload.source_ids {
            let c = cands.entry(s.clone()).or_default();
            c.obs_rank = Some(c.obs_rank.map_or(rank, |r| r.min(rank)));
            c.event_ms.extend(p.payload.event_ms);
        }
    }
    let missing: Vec<String> = cands
        .iter()
        .filter(|(_, c)| c.payload.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    for p in query.turns_by_id(missing).await? {
        if let Some(c) = cands.get_mut(&p.fragment_id) {
            c.payload = Some(p);
        }
    }
    cands.retain(|_, c| c.payload.is_some());

    expand_neighbours(query, &mut cands).await?;

    let hint = resolve_time(query, &obs).await?;
    let sessions = session_evidence(&cands, params);
    let likeness = if params.session_similarity > 0.0 {
        Likeness::of(&direct)
    } else {
        None
    };
    let mut scored: Vec<(f32, PointPayload)> = cands
        .into_values()
        .filter_map(|c| {
            let fused = c.fused(params);
            let payload = c.payload?;
            let mut s = with_session(fused, sessions.get(&payload.session_id), params);
            if let Some(l) = &likeness {
                s += params.session_similarity / params.rrf_k * l.of_group(group_key(&payload));
            }
            if let Some(h) = &hint
                && (h.contains(payload.ts_ms) || c.event_ms.iter().any(|&e| h.contains(e)))
            {
                s *= params.time_boost;
            }
            Some(((s / deep_max(params)).clamp(0.0, 1.0), payload))
        })
        .collect();
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.fragment_id.cmp(&b.1.fragment_id))
    });

    let obs_ranked: Vec<Ranked> = obs.iter().map(ranked).collect();
    // Pick turns with MMR from the best candidates, then the observations
    // that still say something new, then fill the turn list.
    let pool = scored.len().min(query.top_k * 3);
    // Token sets only matter when MMR weighs similarity (lambda < 1);
    // stemming the whole pool is the costliest step of the selection.
    let sets: Vec<_> = scored[..pool]
        .iter()
        .map(|(_, p)| {
            if params.mmr_lambda < 1.0 {
                rank::tokens(&p.text)
            } else {
                HashSet::new()
            }
        })
        .collect();
    let relevance: Vec<f32> = scored[..pool].iter().map(|(s, _)| *s).collect();
    let mut session_ids: HashMap<&str, usize> = HashMap::new();
    let groups: Vec<usize> = scored[..pool]
        .iter()
        .map(|(_, p)| {
            let next = session_ids.len();
            *session_ids.entry(group_key(p)).or_insert(next)
        })
        .collect();
    let picked = rank::mmr_grouped(
        &relevance,
        &sets,
        &groups,
        params.session_repeat,
        query.top_k,
        params.mmr_lambda,
    );
    let all_turns: Vec<Ranked> = picked
        .into_iter()
        .map(|i| Ranked {
            payload: scored[i].1.clone(),
            score: scored[i].0,
        })
        .collect();
    let observations = novel_observations(&obs_ranked, &all_turns, observation_share(query.top_k));
    let mut turns = all_turns;
    turns.truncate(query.top_k - observations.len());
    cover_sessions(
        &mut turns,
        &scored,
        query.top_k - observations.len(),
        query.top_k / 2,
        params.min_sessions,
    );

    let returned: HashSet<&str> = turns
        .iter()
        .map(|r| r.payload.fragment_id.as_str())
        .collect();
    let context: Vec<PointPayload> = obs
        .iter()
        .filter(|p| {
            p.payload
                .source_ids
                .iter()
                .any(|s| returned.contains(s.as_str()))
        })
        .map(|p| p.payload.clone())
        .collect();
    let entities = entities.iter().map(ranked).collect();
    Ok(outcome(
        query,
        turns,
        observations,
        context,
        entities,
        (best_cosine, agree),
    ))
}

/// Each session's evidence: its candidates' fused scores, best first,
/// weighted 1, 1/2, 1/3, … (at most `SESSION_DEPTH`). Memory chunks,
/// which belong to no session, have none.
fn session_evidence(cands: &HashMap<String, Candidate>, p: &DeepParams) -> HashMap<String, f32> {
    if p.session_weight == 0.0 {
        return HashMap::new();
    }
    let mut by_session: HashMap<&str, Vec<f32>> = HashMap::new();
    for c in cands.values() {
        if let Some(payload) = &c.payload
            && !payload.session_id.is_empty()
        {
            by_session
                .entry(payload.session_id.as_str())
                .or_default()
                .push(c.fused(p));
        }
    }
    by_session
        .into_iter()
        .map(|(session, mut scores)| {
            scores.sort_by(|a, b| b.total_cmp(a));
            let sum = scores
                .iter()
                .take(crate::params::SESSION_DEPTH)
                .enumerate()
                .map(|(i, s)| s / (i + 1) as f32)
                .sum();
            (session.to_owned(), sum)
        })
        .collect()
}

/// A fused score with its session's evidence mixed in, scaled back so the
/// best possible stays what it was without (a session whose every turn is
/// at the top).
fn with_session(fused: f32, session: Option<&f32>, p: &DeepParams) -> f32 {
    if p.session_weight == 0.0 {
        return fused;
    }
    let depth: f32 = (1..=crate::params::SESSION_DEPTH)
        .map(|i| 1.0 / i as f32)
        .sum();
    (fused + p.session_weight * session.copied().unwrap_or(0.0)) / (1.0 + p.session_weight * depth)
}

/// Pulls the neighbours (same session, close in time, most relevant to the
/// query) of the strongest candidates into the pool.
async fn expand_neighbours(
    query: &Query<'_>,
    cands: &mut HashMap<String, Candidate>,
) -> Result<(), StoreError> {
    let params = query.deep;
    let mut best: Vec<(f32, &str, &PointPayload)> = cands
        .iter()
        .filter_map(|(id, c)| c.payload.as_ref().map(|p| (c.own(params), id.as_str(), p)))
        .filter(|(_, _, p)| p.kind == Kind::Turn)
        .collect();
    best.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    best.truncate(params.expand);
    let parents: Vec<(f32, String)> = best
        .iter()
        .map(|(s, id, _)| (*s, (*id).to_owned()))
        .collect();
    let searches: Vec<_> = best
        .iter()
        .map(|(_, _, p)| {
            let filter = ScopeFilter {
                session_id: Some(p.session_id.clone()),
                from_ms: Some(p.ts_ms.saturating_sub(params.neighbour_window_ms)),
                until_ms: Some(
                    p.ts_ms
                        .saturating_add(params.neighbour_window_ms)
                        .saturating_add(1),
                ),
                ..query.filter(vec![Kind::Turn])
            };
            query.search(filter, params.neighbours + 1)
        })
        .collect();
    let lists = futures::future::try_join_all(searches).await?;
    for ((parent_score, parent_id), list) in parents.into_iter().zip(lists) {
        let others = list
            .into_iter()
            .filter(|p| p.payload.fragment_id != parent_id)
            .take(params.neighbours);
        for (rank, p) in others.enumerate() {
            let c = cands.entry(p.payload.fragment_id.clone()).or_default();
            c.neighbour = c
                .neighbour
                .max(parent_score * neighbour_share(params, rank));
            if c.payload.is_none() {
                c.payload = Some(p.payload);
            }
        }
    }
    Ok(())
}

/// The query's time hint with an event resolved to its time: the best
/// observation hit of the query that names every word of the event phrase
/// (by stem prefix, so "move" finds "moved"), at its event date or, without
/// one, when it was said. An event no observation names gives no hint.
async fn resolve_time(
    query: &Query<'_>,
    obs: &[ScoredPoint],
) -> Result<Option<TimeHint>, StoreError> {
    let Some(hint) = timeq::parse(query.q, query.now_ms) else {
        return Ok(None);
    };
    let TimeHint::Event { phrase, relation } = &hint else {
        return Ok(Some(hint));
    };
    let words = rank::tokens(phrase);
    let stem = |w: &str| w.chars().take(4).collect::<String>();
    let anchor = obs.iter().find(|p| {
        let t: HashSet<String> = rank::tokens(&p.payload.text)
            .iter()
            .map(|w| stem(w))
            .collect();
        !words.is_empty() && words.iter().all(|w| t.contains(&stem(w)))
    });
    Ok(anchor.map(|p| TimeHint::around(*relation, p.payload.event_ms.unwrap_or(p.payload.ts_ms))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_core::RRF_K;

    /// A retriever's contribution at 0-based position `r` (Qdrant's RRF).
    fn rrf(r: usize) -> f32 {
        1.0 / (r + RRF_K) as f32
    }

    #[test]
    fn store_scores_span_zero_to_one_and_keep_order() {
        assert_eq!(store_score(rrf(0) + rrf(0)), 1.0);
        assert_eq!(store_score(rrf(0)), 0.5);
        let second = store_score(rrf(1));
        assert!(second < 0.5 && second > store_score(rrf(2)));
        assert!(store_score(rrf(0) + rrf(5)) < 1.0);
    }

    fn turn_in(session: &str, id: &str, turn_rank: usize) -> (String, Candidate) {
        let payload = crate::sessions::test_turn(session, id);
        (
            id.into(),
            Candidate {
                payload: Some(payload),
                turn_rank: Some(turn_rank),
                ..Candidate::default()
            },
        )
    }

    #[test]
    fn session_evidence_lifts_a_conversation_over_a_lone_match() {
        let cands: HashMap<String, Candidate> = [
            turn_in("lone", "a", 0),
            turn_in("thread", "b", 1),
            turn_in("thread", "c", 2),
            turn_in("thread", "d", 3),
        ]
        .into_iter()
        .collect();
        let off = DeepParams {
            session_weight: 0.0,
            ..DeepParams::default()
        };
        let on = DeepParams {
            session_weight: 1.0,
            ..DeepParams::default()
        };
        let score = |p: &DeepParams, id: &str| {
            let ev = session_evidence(&cands, p);
            let c = &cands[id];
            with_session(
                c.fused(p),
                ev.get(&c.payload.as_ref().unwrap().session_id),
                p,
            )
        };
        assert!(score(&off, "a") > score(&off, "b"));
        assert!(score(&on, "b") > score(&on, "a"));
        assert!(session_evidence(&cands, &off).is_empty());
        // The best possible stays within the scale of the fusion.
        let all_top = deep_max(&on) * (1.0 + 1.0 / 2.0 + 1.0 / 3.0 + 1.0 / 4.0 + 1.0 / 5.0);
        let top = with_session(deep_max(&on), Some(&all_top), &on);
        assert!(top <= deep_max(&on) * 1.0001);
    }

    #[test]
    fn deep_fusion_rewards_agreeing_lists_and_stays_in_range() {
        let both = Candidate {
            turn_rank: Some(0),
            obs_rank: Some(0),
            ..Candidate::default()
        };
        let one = Candidate {
            turn_rank: Some(0),
            ..Candidate::default()
        };
        let p = DeepParams::default();
        let neighbour = Candidate {
            neighbour: one.own(&p) * neighbour_share(&p, 0),
            ..Candidate::default()
        };
        assert!(both.fused(&p) > one.fused(&p));
        assert!(one.fused(&p) > neighbour.fused(&p));
        assert!(neighbour_share(&p, 0) > neighbour_share(&p, 1));
        assert!(both.fused(&p) * p.time_boost / deep_max(&p) <= 1.0);
        assert_eq!(observation_share(25), 8);
    }
}
