//! The checks: each gets a fresh, empty store of dense dimension
//! [`DIM`](crate::DIM) and panics on the first behaviour that differs from
//! the contract. They use nothing but the [`VectorStore`] trait.
//!
//! The checks of metadata conditions and of stored memories live in
//! submodules (re-exported here) to keep each file readable.

mod filters;
mod memories;
mod scan;

pub use filters::*;
pub use memories::*;
pub use scan::*;

use crate::fixtures::{
    bulk, bulk_data, check_bulk_search, ids, point, query, scope, weighted_query,
};
use engram_core::{HybridQuery, Kind, RRF_K, ScopeFilter, StoreError, VectorStore};
use std::sync::Arc;

/// Every check by name, in the order the macro lists them; a test of this
/// crate keeps the two in sync.
pub const ALL: &[&str] = &[
    "upsert_then_existing_reports_only_own_org_and_known_ids",
    "get_returns_full_payloads_of_own_points_only",
    "upsert_rejects_malformed_points",
    "tenants_never_see_each_other_even_with_identical_vectors",
    "user_and_session_filters_narrow_results",
    "hybrid_search_fuses_a_semantic_and_a_lexical_match_by_rrf",
    "bm25_weights_are_the_querys_own",
    "hybrid_search_checks_the_query_and_honours_a_zero_limit",
    "kinds_filter_matches_any_of_the_kinds",
    "time_range_includes_from_and_excludes_until",
    "re_upserting_a_fragment_overwrites_it",
    "delete_removes_only_the_tenants_own_points",
    "count_is_exact_for_every_filter",
    "bulk_search_stays_correct_with_3000_points",
    "closed_store_answers_unavailable",
    "metadata_equality_matches_strings_integers_and_bools",
    "metadata_any_of_and_ranges",
    "metadata_exists_and_combinations",
    "top_k_is_exact_under_a_selective_filter",
    "workspace_visibility_of_memories",
    "source_memory_and_collection_id_filters",
    "scroll_returns_every_match_up_to_the_limit",
    "memory_chunks_round_trip_through_every_read",
    "scan_pages_through_every_point_of_every_tenant",
    "model_tag_round_trips",
];

/// `existing` reports the ids stored for the asking tenant only; unknown
/// and malformed ids are simply absent.
pub async fn upsert_then_existing_reports_only_own_org_and_known_ids(store: Arc<dyn VectorStore>) {
    let a = scope("org_a", "u1", "s1");
    let p1 = point(&a, Kind::Turn, "hello there", 1, [1.0, 0.0, 0.0, 0.0]);
    let p2 = point(&a, Kind::Turn, "general kenobi", 2, [0.0, 1.0, 0.0, 0.0]);
    let absent = point(&a, Kind::Turn, "never stored", 3, [0.0, 0.0, 1.0, 0.0]);
    store.upsert(vec![p1.clone(), p2.clone()]).await.unwrap();

    let asked = vec![
        p1.fragment_id.clone(),
        p2.fragment_id.clone(),
        absent.fragment_id.clone(),
        "not-a-fragment-id".to_owned(),
    ];
    let found = store.existing("org_a", &asked).await.unwrap();
    assert_eq!(found.len(), 2);
    assert!(found.contains(&p1.fragment_id) && found.contains(&p2.fragment_id));
    assert!(store.existing("org_b", &asked).await.unwrap().is_empty());
    assert!(store.existing("org_a", &[]).await.unwrap().is_empty());
    // An id sharing the first 16 bytes (the point id) with a stored
    // fragment is not that fragment.
    let mut twin = p1.fragment_id.clone();
    twin.replace_range(63.., if twin.ends_with('0') { "1" } else { "0" });
    assert!(store.existing("org_a", &[twin]).await.unwrap().is_empty());
    store.upsert(Vec::new()).await.unwrap();
    store.ready().await.unwrap();
}

/// `get` returns every payload field as written, for the asking tenant's
/// points only; unknown, malformed and foreign ids are left out.
pub async fn get_returns_full_payloads_of_own_points_only(store: Arc<dyn VectorStore>) {
    let a = scope("org_a", "u1", "s1");
    let b = scope("org_b", "u1", "s1");
    let turn = point(
        &a,
        Kind::Turn,
        "my sister Ana moved",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    let obs = point(
        &a,
        Kind::Observation,
        "Ana moved to Lyon.",
        2,
        [0.0, 1.0, 0.0, 0.0],
    );
    let ent = point(&a, Kind::Entity, "Ana Lopez", 3, [0.0, 0.0, 1.0, 0.0]);
    let foreign = point(
        &b,
        Kind::Turn,
        "my sister Ana moved",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    store
        .upsert(vec![
            turn.clone(),
            obs.clone(),
            ent.clone(),
            foreign.clone(),
        ])
        .await
        .unwrap();
    let absent = point(&a, Kind::Turn, "never stored", 4, [0.0, 0.0, 0.0, 1.0]);
    let asked = vec![
        turn.fragment_id.clone(),
        obs.fragment_id.clone(),
        ent.fragment_id.clone(),
        foreign.fragment_id.clone(),
        absent.fragment_id.clone(),
        "not-a-fragment-id".to_owned(),
    ];
    let mut got = store.get("org_a", &asked).await.unwrap();
    got.sort_by_key(|p| p.ts_ms);
    assert_eq!(got, vec![turn.payload, obs.payload, ent.payload]);
    let theirs = store.get("org_b", &asked).await.unwrap();
    assert_eq!(theirs, vec![foreign.payload]);
    assert!(store.get("org_a", &[]).await.unwrap().is_empty());
}

/// Wrong dimension, a malformed id, a payload id that differs, a non-finite
/// value or a ragged sparse vector: rejected as `Internal`, nothing written.
pub async fn upsert_rejects_malformed_points(store: Arc<dyn VectorStore>) {
    let a = scope("org_a", "u1", "s1");
    let good = point(&a, Kind::Turn, "fine", 1, [1.0, 0.0, 0.0, 0.0]);

    let mut wrong_dim = good.clone();
    wrong_dim.dense = vec![1.0; 5];
    let mut bad_id = good.clone();
    bad_id.fragment_id = "xyz".into();
    let mut other_payload_id = good.clone();
    other_payload_id.payload.fragment_id = "b".repeat(64);
    let mut nan = good.clone();
    nan.dense[0] = f32::NAN;
    let mut ragged = good.clone();
    ragged.sparse.values.push(1.0);
    for bad in [wrong_dim, bad_id, other_payload_id, nan, ragged] {
        // Alone, and with a good point beside it: the whole call is refused.
        for batch in [vec![bad.clone()], vec![good.clone(), bad]] {
            let err = store.upsert(batch).await.unwrap_err();
            assert!(matches!(err, StoreError::Internal(_)), "{err}");
        }
    }
    assert_eq!(store.count(&ScopeFilter::tenant("org_a")).await.unwrap(), 0);
}

/// Identical vectors and texts in two tenants: each tenant's search, count
/// and `existing` see only its own points.
pub async fn tenants_never_see_each_other_even_with_identical_vectors(store: Arc<dyn VectorStore>) {
    let a = scope("org_a", "u1", "s1");
    let b = scope("org_b", "u1", "s1");
    let v = [0.5, 0.5, 0.5, 0.5];
    let text = "my passport number is in the drawer";
    let pa: Vec<_> = (0..3).map(|i| point(&a, Kind::Turn, text, i, v)).collect();
    let pb = point(&b, Kind::Turn, text, 0, v);
    store.upsert(pa.clone()).await.unwrap();
    store.upsert(vec![pb.clone()]).await.unwrap();

    let hits = store
        .hybrid_search(&query(ScopeFilter::tenant("org_b"), v, "passport drawer"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), vec![pb.fragment_id.as_str()]);
    assert!(hits.iter().all(|h| h.payload.org_id == "org_b"));

    let hits = store
        .hybrid_search(&query(ScopeFilter::tenant("org_a"), v, "passport drawer"))
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| h.payload.org_id == "org_a"));

    assert_eq!(store.count(&ScopeFilter::tenant("org_a")).await.unwrap(), 3);
    assert_eq!(store.count(&ScopeFilter::tenant("org_b")).await.unwrap(), 1);
    assert_eq!(store.count(&ScopeFilter::tenant("org_c")).await.unwrap(), 0);
    let a_ids: Vec<_> = pa.iter().map(|p| p.fragment_id.clone()).collect();
    assert!(store.existing("org_b", &a_ids).await.unwrap().is_empty());
}

/// `user_id` and `session_id` narrow searches and counts, alone or together.
pub async fn user_and_session_filters_narrow_results(store: Arc<dyn VectorStore>) {
    let v = [0.0, 1.0, 0.0, 0.0];
    let s1 = point(&scope("org", "u1", "s1"), Kind::Turn, "one", 1, v);
    let s2 = point(&scope("org", "u1", "s2"), Kind::Turn, "two", 2, v);
    let u2 = point(&scope("org", "u2", "s1"), Kind::Turn, "three", 3, v);
    store
        .upsert(vec![s1.clone(), s2.clone(), u2.clone()])
        .await
        .unwrap();

    let mut f = ScopeFilter::tenant("org");
    f.user_id = Some("u1".into());
    f.session_id = Some("s1".into());
    let hits = store.hybrid_search(&query(f.clone(), v, "")).await.unwrap();
    assert_eq!(ids(&hits), vec![s1.fragment_id.as_str()]);
    assert_eq!(store.count(&f).await.unwrap(), 1);

    f.session_id = None;
    assert_eq!(store.count(&f).await.unwrap(), 2);
    let mut f = ScopeFilter::tenant("org");
    f.session_id = Some("s1".into());
    assert_eq!(store.count(&f).await.unwrap(), 2);
}

/// A point close in meaning and a point sharing the rare query word are
/// fused by RRF with k = [`RRF_K`]: the first hit of both lists scores
/// exactly `2 / RRF_K` = 1.0, payloads come back as written and
/// `dense_score` is the cosine to the query.
pub async fn hybrid_search_fuses_a_semantic_and_a_lexical_match_by_rrf(
    store: Arc<dyn VectorStore>,
) {
    let s = scope("org", "u", "s");
    // Close to the query in meaning, no shared word.
    let semantic = point(
        &s,
        Kind::Turn,
        "We went hiking in the mountains",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    // Shares the rare word, orthogonal embedding.
    let lexical = point(
        &s,
        Kind::Observation,
        "I am allergic to shellfish",
        2,
        [0.0, 0.0, 1.0, 0.0],
    );
    let noise_a = point(
        &s,
        Kind::Turn,
        "The weather is nice",
        3,
        [0.0, -1.0, 0.0, 0.0],
    );
    let noise_b = point(
        &s,
        Kind::Turn,
        "My cat sleeps a lot",
        4,
        [-1.0, 0.0, 0.0, 0.0],
    );
    store
        .upsert(vec![
            semantic.clone(),
            lexical.clone(),
            noise_a.clone(),
            noise_b.clone(),
        ])
        .await
        .unwrap();

    let q = [0.9, 0.1, 0.0, 0.0];
    let hits = store
        .hybrid_search(&query(ScopeFilter::tenant("org"), q, "shellfish"))
        .await
        .unwrap();
    // Dense ranks: semantic 0, lexical 1 (cosine 0), noise_a 2, noise_b 3;
    // BM25 ranks: lexical 0. RRF with k = 2 scores 1 / (rank + 2) per list.
    assert_eq!(RRF_K, 2, "the expected scores below assume k = 2");
    assert_eq!(
        ids(&hits),
        vec![
            lexical.fragment_id.as_str(),
            semantic.fragment_id.as_str(),
            noise_a.fragment_id.as_str(),
            noise_b.fragment_id.as_str(),
        ]
    );
    let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
    for (got, want) in scores.iter().zip([1.0 / 2.0 + 1.0 / 3.0, 0.5, 0.25, 0.2]) {
        assert!((got - want).abs() < 1e-5, "scores {scores:?}");
    }
    // Payload comes back as written; dense_score is the cosine to the query.
    assert_eq!(hits[1].payload, semantic.payload);
    assert_eq!(hits[0].payload, lexical.payload);
    let cos = 0.9 / (0.82f32).sqrt();
    assert!((hits[1].dense_score.unwrap() - cos).abs() < 1e-4);
    assert!(hits[0].dense_score.unwrap().abs() < 1e-4);
    assert!((hits[3].dense_score.unwrap() + cos).abs() < 1e-4);
    // The fused query does not expose per-prefetch ranks.
    assert!(
        hits.iter()
            .all(|h| h.dense_rank.is_none() && h.sparse_rank.is_none())
    );

    // The first hit of both lists scores exactly 2 / RRF_K = 1.0, the top
    // of the scale recall normalizes by.
    let mut both = query(
        ScopeFilter::tenant("org"),
        [0.0, 0.0, 1.0, 0.0],
        "shellfish",
    );
    both.limit = 1;
    let hits = store.hybrid_search(&both).await.unwrap();
    assert_eq!(ids(&hits), vec![lexical.fragment_id.as_str()]);
    assert!((hits[0].score - 2.0 / RRF_K as f32).abs() < 1e-6);
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    assert!((hits[0].dense_score.unwrap() - 1.0).abs() < 1e-4);

    // Without query terms only the dense list is fused.
    let hits = store
        .hybrid_search(&query(ScopeFilter::tenant("org"), q, "the"))
        .await
        .unwrap();
    assert_eq!(hits[0].payload.fragment_id, semantic.fragment_id);
    assert!((hits[0].score - 0.5).abs() < 1e-5);
    assert!((hits[1].score - 1.0 / 3.0).abs() < 1e-5);

    // The limit caps the fused list, and a prefetch shorter than the limit
    // is raised to it.
    let mut limited = query(ScopeFilter::tenant("org"), q, "shellfish");
    limited.limit = 2;
    limited.prefetch = 1;
    let hits = store.hybrid_search(&limited).await.unwrap();
    assert_eq!(
        ids(&hits),
        vec![lexical.fragment_id.as_str(), semantic.fragment_id.as_str()]
    );
}

/// The store scores BM25 as the dot product of the query's term weights
/// and the stored term-frequency parts, multiplying in nothing of its own:
/// recall weighs terms by the IDF of the searching user's memory, and an
/// IDF the store counted over its points (Qdrant's modifier) would mix in
/// every tenant (here another tenant's 30 "lyon" points would make "lyon"
/// worth almost nothing). Ranks are read off the exact RRF scores: the
/// dense list is fixed (lyon, quiet, rome), so the score of "rome" tells
/// where the BM25 list put it. Tenants of its own, so a store that holds
/// other points can be checked too.
pub async fn bm25_weights_are_the_querys_own(store: Arc<dyn VectorStore>) {
    let u = scope("weights-org", "u", "s");
    let rome = point(&u, Kind::Turn, "rome", 3, [0.0, 1.0, 0.0, 0.0]);
    let mut points = vec![
        point(&u, Kind::Turn, "lyon", 1, [1.0, 0.0, 0.0, 0.0]),
        point(&u, Kind::Turn, "quiet evening", 2, [0.0, 0.0, 1.0, 0.0]),
        rome.clone(),
    ];
    let other = scope("weights-other", "x", "s");
    points.extend((0..30).map(|i| {
        point(
            &other,
            Kind::Turn,
            &format!("lyon w{i}"),
            i,
            [0.0, 0.0, 0.0, 1.0],
        )
    }));
    store.upsert(points).await.unwrap();
    let score_of_rome = |weights: &'static [(&'static str, f32)]| {
        let store = Arc::clone(&store);
        let rome = rome.fragment_id.clone();
        async move {
            // Dense: lyon (cosine 0.6), quiet (0.4), rome (0.1).
            let mut q = weighted_query(
                ScopeFilter::tenant("weights-org"),
                [0.6, 0.1, 0.4, 0.0],
                weights,
            );
            q.prefetch = 3;
            q.limit = 3;
            let hits = store.hybrid_search(&q).await.unwrap();
            assert_eq!(hits.len(), 3, "{:?}", ids(&hits));
            hits.into_iter()
                .find(|h| h.payload.fragment_id == rome)
                .map(|h| h.score)
                .expect("rome is found")
        }
    };
    assert_eq!(RRF_K, 2, "the expected scores below assume k = 2");
    // Weighed higher, "lyon" leads the BM25 list: rome is second there.
    let second = score_of_rome(&[("lyon", 1.5), ("rome", 1.0)]).await;
    assert!((second - (1.0 / 4.0 + 1.0 / 3.0)).abs() < 1e-5, "{second}");
    let first = score_of_rome(&[("lyon", 1.0), ("rome", 1.5)]).await;
    assert!((first - (1.0 / 4.0 + 1.0 / 2.0)).abs() < 1e-5, "{first}");
}

/// A query vector of the wrong dimension is refused as `Internal`; a zero
/// limit returns nothing; an unnormalized query still gets cosines.
pub async fn hybrid_search_checks_the_query_and_honours_a_zero_limit(store: Arc<dyn VectorStore>) {
    let s = scope("org", "u", "s");
    let p = point(&s, Kind::Turn, "a lone point", 1, [0.0, 1.0, 0.0, 0.0]);
    store.upsert(vec![p.clone()]).await.unwrap();

    let mut wrong = query(ScopeFilter::tenant("org"), [0.0, 1.0, 0.0, 0.0], "lone");
    wrong.dense = vec![0.5; 5];
    let err = store.hybrid_search(&wrong).await.unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err}");

    let mut zero = query(ScopeFilter::tenant("org"), [0.0, 1.0, 0.0, 0.0], "lone");
    zero.limit = 0;
    assert!(store.hybrid_search(&zero).await.unwrap().is_empty());

    let unnormalized = HybridQuery {
        dense: vec![0.0, 3.0, 0.0, 4.0],
        ..query(ScopeFilter::tenant("org"), [0.0, 1.0, 0.0, 0.0], "")
    };
    let hits = store.hybrid_search(&unnormalized).await.unwrap();
    assert_eq!(ids(&hits), vec![p.fragment_id.as_str()]);
    assert!((hits[0].dense_score.unwrap() - 0.6).abs() < 1e-4);
}

/// `kinds` matches any of the listed kinds.
pub async fn kinds_filter_matches_any_of_the_kinds(store: Arc<dyn VectorStore>) {
    let s = scope("org", "u", "s");
    let v = [0.0, 0.0, 0.0, 1.0];
    let turn = point(&s, Kind::Turn, "a turn", 1, v);
    let obs = point(&s, Kind::Observation, "an observation", 2, v);
    let ent = point(&s, Kind::Entity, "an entity", 3, v);
    store
        .upsert(vec![turn.clone(), obs.clone(), ent.clone()])
        .await
        .unwrap();

    let mut f = ScopeFilter::tenant("org");
    f.kinds = vec![Kind::Observation, Kind::Entity];
    let hits = store
        .hybrid_search(&query(f.clone(), v, "turn"))
        .await
        .unwrap();
    let mut got = ids(&hits);
    got.sort_unstable();
    let mut want = vec![obs.fragment_id.as_str(), ent.fragment_id.as_str()];
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(store.count(&f).await.unwrap(), 2);
    f.kinds = vec![Kind::Memory];
    assert_eq!(store.count(&f).await.unwrap(), 0);
}

/// `from_ms` is inclusive, `until_ms` exclusive.
pub async fn time_range_includes_from_and_excludes_until(store: Arc<dyn VectorStore>) {
    let s = scope("org", "u", "s");
    let v = [1.0, 1.0, 0.0, 0.0];
    let base = 1_780_000_000_000_i64;
    let points: Vec<_> = (0..3)
        .map(|i| point(&s, Kind::Turn, "event", base + i * 100, v))
        .collect();
    store.upsert(points.clone()).await.unwrap();

    let mut f = ScopeFilter::tenant("org");
    f.from_ms = Some(base + 100);
    f.until_ms = Some(base + 200);
    let hits = store
        .hybrid_search(&query(f.clone(), v, "event"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), vec![points[1].fragment_id.as_str()]);
    assert_eq!(store.count(&f).await.unwrap(), 1);

    f.until_ms = None;
    assert_eq!(store.count(&f).await.unwrap(), 2);
    f.from_ms = None;
    f.until_ms = Some(base + 100);
    assert_eq!(store.count(&f).await.unwrap(), 1);
}

/// Upserting a fragment again (also twice in one call) keeps one point,
/// with the last payload.
pub async fn re_upserting_a_fragment_overwrites_it(store: Arc<dyn VectorStore>) {
    let s = scope("org", "u", "s");
    let p = point(&s, Kind::Turn, "first version", 1, [1.0, 0.0, 0.0, 0.0]);
    store.upsert(vec![p.clone()]).await.unwrap();
    store.upsert(vec![p.clone()]).await.unwrap();
    let mut changed = p.clone();
    changed.payload.job_id = "job-2".into();
    store
        .upsert(vec![changed.clone(), changed.clone()])
        .await
        .unwrap();

    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 1);
    let hits = store
        .hybrid_search(&query(
            ScopeFilter::tenant("org"),
            [1.0, 0.0, 0.0, 0.0],
            "version",
        ))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].payload.job_id, "job-2");
}

/// `delete` removes the asking tenant's points with those ids and nothing
/// else: another tenant's ids, unknown and malformed ids are ignored.
/// A store that reports a write generation moves it with every applied
/// write; one that cannot tell (`None`) never starts telling.
fn assert_moved(before: Option<u64>, after: Option<u64>) {
    assert_eq!(before.is_some(), after.is_some(), "{before:?} → {after:?}");
    if before.is_some() {
        assert_ne!(
            before, after,
            "a write left the write generation where it was"
        );
    }
}

/// Deleted points are gone from `existing`, counts and searches, and can be
/// written again; a write generation, where the store has one, moves.
pub async fn delete_removes_only_the_tenants_own_points(store: Arc<dyn VectorStore>) {
    let a = scope("org_a", "u", "s");
    let b = scope("org_b", "u", "s");
    let v = [0.0, 1.0, 1.0, 0.0];
    let a1 = point(&a, Kind::Turn, "alpha fact", 1, v);
    let a2 = point(&a, Kind::Turn, "beta fact", 2, v);
    let a3 = point(&a, Kind::Memory, "gamma fact", 3, v);
    let b1 = point(&b, Kind::Turn, "alpha fact", 1, v);
    let never = point(&a, Kind::Turn, "never stored", 4, v);
    let empty = store.write_generation();
    store
        .upsert(vec![a1.clone(), a2.clone(), a3.clone(), b1.clone()])
        .await
        .unwrap();
    let written = store.write_generation();
    assert_moved(empty, written);

    // org_b asking to delete org_a's ids changes nothing.
    let a_ids = vec![a1.fragment_id.clone(), a2.fragment_id.clone()];
    store.delete("org_b", &a_ids).await.unwrap();
    assert_eq!(store.existing("org_a", &a_ids).await.unwrap().len(), 2);

    let asked = vec![
        a1.fragment_id.clone(),
        a2.fragment_id.clone(),
        b1.fragment_id.clone(),
        never.fragment_id.clone(),
        "not-a-fragment-id".to_owned(),
    ];
    store.delete("org_a", &asked).await.unwrap();
    assert_moved(written, store.write_generation());
    assert!(store.existing("org_a", &asked).await.unwrap().is_empty());
    assert_eq!(store.count(&ScopeFilter::tenant("org_a")).await.unwrap(), 1);
    assert_eq!(store.count(&ScopeFilter::tenant("org_b")).await.unwrap(), 1);
    let b_left = store
        .existing("org_b", std::slice::from_ref(&b1.fragment_id))
        .await
        .unwrap();
    assert!(b_left.contains(&b1.fragment_id));
    let hits = store
        .hybrid_search(&query(ScopeFilter::tenant("org_a"), v, "fact"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), vec![a3.fragment_id.as_str()]);
    let hits = store
        .hybrid_search(&query(ScopeFilter::tenant("org_b"), v, "alpha"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), vec![b1.fragment_id.as_str()]);

    // Deleting again, or nothing, is harmless.
    store.delete("org_a", &asked).await.unwrap();
    store.delete("org_a", &[]).await.unwrap();
    assert_eq!(store.count(&ScopeFilter::tenant("org_a")).await.unwrap(), 1);

    // A deleted fragment can be written again.
    store.upsert(vec![a1.clone()]).await.unwrap();
    let back = store
        .existing("org_a", std::slice::from_ref(&a1.fragment_id))
        .await
        .unwrap();
    assert!(back.contains(&a1.fragment_id));
    assert_eq!(store.count(&ScopeFilter::tenant("org_a")).await.unwrap(), 2);
}

/// `count` is exact for every combination of filter fields, and zero on an
/// empty store.
pub async fn count_is_exact_for_every_filter(store: Arc<dyn VectorStore>) {
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 0);
    let kinds = [Kind::Turn, Kind::Observation, Kind::Entity, Kind::Memory];
    // 2 users x 3 sessions x 4 kinds x 5 timestamps = 120 points.
    let mut points = Vec::new();
    for user in ["u1", "u2"] {
        for session in ["s1", "s2", "s3"] {
            let s = scope("org", user, session);
            for kind in kinds {
                for t in 0..5 {
                    points.push(point(&s, kind, "counted", t * 10, [1.0, 0.0, 0.0, 0.0]));
                }
            }
        }
    }
    store.upsert(points).await.unwrap();
    store.upsert(bulk("other", 7, 0)).await.unwrap();

    let count = |f: ScopeFilter| {
        let store = Arc::clone(&store);
        async move { store.count(&f).await.unwrap() }
    };
    assert_eq!(count(ScopeFilter::tenant("org")).await, 120);
    assert_eq!(count(ScopeFilter::tenant("other")).await, 7);
    let mut f = ScopeFilter::tenant("org");
    f.user_id = Some("u2".into());
    assert_eq!(count(f.clone()).await, 60);
    f.session_id = Some("s3".into());
    assert_eq!(count(f.clone()).await, 20);
    f.kinds = vec![Kind::Entity, Kind::Memory];
    assert_eq!(count(f.clone()).await, 10);
    f.from_ms = Some(10);
    assert_eq!(count(f.clone()).await, 8);
    f.until_ms = Some(40);
    assert_eq!(count(f.clone()).await, 6);
    f.user_id = Some("u3".into());
    assert_eq!(count(f).await, 0);
}

/// 3,000 points in two tenants, written in batches of 500: the fused
/// ranking, tenancy and counts of [`check_bulk_search`] hold.
pub async fn bulk_search_stays_correct_with_3000_points(store: Arc<dyn VectorStore>) {
    let (a, b) = bulk_data();
    for chunk in a.chunks(500).chain(b.chunks(500)) {
        store.upsert(chunk.to_vec()).await.unwrap();
    }
    check_bulk_search(store.as_ref(), &a).await;
}

/// After `close` every call, even one with nothing to do, fails with
/// `Unavailable`; closing again is harmless.
pub async fn closed_store_answers_unavailable(store: Arc<dyn VectorStore>) {
    let s = scope("org", "u", "s");
    let p = point(
        &s,
        Kind::Memory,
        "remember the milk",
        7,
        [0.0, 1.0, 1.0, 0.0],
    );
    store.upsert(vec![p.clone()]).await.unwrap();
    store.close().await.unwrap();

    let q = query(ScopeFilter::tenant("org"), [0.0, 1.0, 1.0, 0.0], "milk");
    let mut zero = q.clone();
    zero.limit = 0;
    let id = std::slice::from_ref(&p.fragment_id);
    for err in [
        store.ready().await.unwrap_err(),
        store.count(&ScopeFilter::tenant("org")).await.unwrap_err(),
        store.upsert(vec![p.clone()]).await.unwrap_err(),
        store.upsert(Vec::new()).await.unwrap_err(),
        store.existing("org", id).await.unwrap_err(),
        store.existing("org", &[]).await.unwrap_err(),
        store.get("org", id).await.unwrap_err(),
        store.delete("org", id).await.unwrap_err(),
        store.delete("org", &[]).await.unwrap_err(),
        store.hybrid_search(&q).await.unwrap_err(),
        store.hybrid_search(&zero).await.unwrap_err(),
        store
            .scroll(&ScopeFilter::tenant("org"), 10)
            .await
            .unwrap_err(),
        store
            .scroll(&ScopeFilter::tenant("org"), 0)
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    }
    // Closing twice is harmless.
    store.close().await.unwrap();
}
