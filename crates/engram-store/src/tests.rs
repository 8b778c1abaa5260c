//! Behaviour of [`EdgeStore`] through the [`VectorStore`] port, on real
//! shards in temporary directories.

use crate::journal::Journal;
use crate::{EdgeStore, EdgeStoreOptions};
use engram_core::bm25;
use engram_core::ids::fragment_id;
use engram_core::{
    HybridQuery, Kind, Point, PointPayload, Role, Scope, ScopeFilter, ScoredPoint, StoreError,
    VectorStore,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// Small vectors so tests can reason about cosines by hand; the background
/// optimizer only runs when a test asks for it.
fn options() -> EdgeStoreOptions {
    EdgeStoreOptions {
        dense_dim: 4,
        optimize_when_idle: Duration::from_secs(3600),
        optimize_after_points: u64::MAX,
        ..EdgeStoreOptions::default()
    }
}

/// Opens a store in `dir`. Every test closes its store at the end, as a
/// server does: a maintenance pass still running when the temporary
/// directory is removed would flush into a deleted directory.
fn open(dir: &Path) -> EdgeStore {
    EdgeStore::open(dir, options()).expect("store opens")
}

fn scope(org: &str, user: &str, session: &str) -> Scope {
    Scope {
        org_id: org.into(),
        user_id: user.into(),
        session_id: session.into(),
    }
}

fn point(scope: &Scope, kind: Kind, text: &str, ts_ms: i64, dense: [f32; 4]) -> Point {
    let fragment_id = fragment_id(scope, Role::User, &format!("{kind:?}/{text}"), ts_ms);
    let mut metadata = serde_json::Map::new();
    metadata.insert("source".into(), serde_json::json!("test"));
    Point {
        fragment_id: fragment_id.clone(),
        payload: PointPayload {
            fragment_id,
            org_id: scope.org_id.clone(),
            user_id: scope.user_id.clone(),
            session_id: scope.session_id.clone(),
            kind,
            role: (kind == Kind::Turn).then_some(Role::User),
            text: text.into(),
            ts_ms,
            job_id: "job-1".into(),
            source_ids: if kind == Kind::Observation {
                vec!["a".repeat(64)]
            } else {
                Vec::new()
            },
            metadata,
        },
        dense: normalized(dense.to_vec()),
        sparse: bm25::document_vector(text),
    }
}

fn normalized(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn query(filter: ScopeFilter, dense: [f32; 4], text: &str) -> HybridQuery {
    HybridQuery {
        filter,
        dense: normalized(dense.to_vec()),
        sparse: bm25::query_vector(text),
        prefetch: 20,
        limit: 10,
    }
}

fn ids(hits: &[ScoredPoint]) -> Vec<&str> {
    hits.iter()
        .map(|h| h.payload.fragment_id.as_str())
        .collect()
}

/// Deterministic pseudo-random unit vectors (xorshift), for bulk tests.
fn vector(seed: u64) -> [f32; 4] {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = [0.0; 4];
    for v in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *v = ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
    }
    out
}

fn bulk(org: &str, n: usize, offset: usize) -> Vec<Point> {
    (offset..offset + n)
        .map(|i| {
            let s = scope(org, "u", &format!("s{}", i % 10));
            point(
                &s,
                Kind::Turn,
                &format!("note w{i}x about topic"),
                i as i64,
                vector(i as u64),
            )
        })
        .collect()
}

#[tokio::test]
async fn upsert_then_existing_reports_only_own_org_and_known_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    store.ready().await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn upsert_rejects_malformed_points() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = scope("org_a", "u1", "s1");
    let good = point(&a, Kind::Turn, "fine", 1, [1.0, 0.0, 0.0, 0.0]);

    let mut wrong_dim = good.clone();
    wrong_dim.dense = vec![1.0; 5];
    let mut bad_id = good.clone();
    bad_id.fragment_id = "xyz".into();
    let mut nan = good.clone();
    nan.dense[0] = f32::NAN;
    for bad in [wrong_dim, bad_id, nan] {
        let err = store.upsert(vec![bad]).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err}");
    }
    assert_eq!(store.count(&ScopeFilter::tenant("org_a")).await.unwrap(), 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn tenants_never_see_each_other_even_with_identical_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    store.close().await.unwrap();
}

#[tokio::test]
async fn user_and_session_filters_narrow_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    store.close().await.unwrap();
}

#[tokio::test]
async fn hybrid_search_fuses_a_semantic_and_a_lexical_match_by_rrf() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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

    // Without query terms only the dense list is fused.
    let hits = store
        .hybrid_search(&query(ScopeFilter::tenant("org"), q, "the"))
        .await
        .unwrap();
    assert_eq!(hits[0].payload.fragment_id, semantic.fragment_id);
    assert!((hits[0].score - 0.5).abs() < 1e-5);
    assert!((hits[1].score - 1.0 / 3.0).abs() < 1e-5);

    // The limit caps the fused list.
    let mut limited = query(ScopeFilter::tenant("org"), q, "shellfish");
    limited.limit = 2;
    limited.prefetch = 1;
    let hits = store.hybrid_search(&limited).await.unwrap();
    assert_eq!(
        ids(&hits),
        vec![lexical.fragment_id.as_str(), semantic.fragment_id.as_str()]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn kinds_filter_matches_any_of_the_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    store.close().await.unwrap();
}

#[tokio::test]
async fn time_range_includes_from_and_excludes_until() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    store.close().await.unwrap();
}

#[tokio::test]
async fn re_upserting_a_fragment_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    store.close().await.unwrap();
}

#[tokio::test]
async fn close_then_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = scope("org", "u", "s");
    let points = bulk("org", 50, 0);
    let extra = point(
        &s,
        Kind::Memory,
        "remember the milk",
        7,
        [0.0, 1.0, 1.0, 0.0],
    );
    {
        let store = open(dir.path());
        store.upsert(points.clone()).await.unwrap();
        store.upsert(vec![extra.clone()]).await.unwrap();
        store.close().await.unwrap();

        for err in [
            store.ready().await.unwrap_err(),
            store.count(&ScopeFilter::tenant("org")).await.unwrap_err(),
            store.upsert(vec![extra.clone()]).await.unwrap_err(),
            store
                .existing("org", std::slice::from_ref(&extra.fragment_id))
                .await
                .unwrap_err(),
            store
                .hybrid_search(&query(
                    ScopeFilter::tenant("org"),
                    [0.0, 1.0, 1.0, 0.0],
                    "milk",
                ))
                .await
                .unwrap_err(),
            store.optimize_now().await.unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        }
        // Closing twice is harmless.
        store.close().await.unwrap();
    }

    let store = open(dir.path());
    store.ready().await.unwrap();
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 51);
    let found = store
        .existing("org", std::slice::from_ref(&extra.fragment_id))
        .await
        .unwrap();
    assert!(found.contains(&extra.fragment_id));
    let hits = store
        .hybrid_search(&query(
            ScopeFilter::tenant("org"),
            [0.0, 1.0, 1.0, 0.0],
            "milk",
        ))
        .await
        .unwrap();
    assert_eq!(hits[0].payload, extra.payload);
    assert_eq!(store.stats().await.unwrap().journal_bytes, 0);

    // The dimension is part of the shard.
    drop(store);
    let mut wrong = options();
    wrong.dense_dim = 8;
    assert!(EdgeStore::open(dir.path(), wrong).is_err());
}

#[tokio::test]
async fn dropping_without_close_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let points = bulk("org", 20, 0);
    {
        let store = open(dir.path());
        store.upsert(points.clone()).await.unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 20);
    store.close().await.unwrap();
}

#[tokio::test]
async fn journaled_batches_are_replayed_on_open() {
    // A crash between an upsert and the next checkpoint leaves the batch
    // only in the journal; write one by hand to stand for it.
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).close().await.unwrap();
    let points = bulk("org", 5, 0);
    {
        let (mut journal, pending) = Journal::open(dir.path()).unwrap();
        assert!(pending.is_empty());
        journal.append(&points).unwrap();
    }

    let store = open(dir.path());
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 5);
    assert_eq!(store.stats().await.unwrap().journal_bytes, 0);
    let ids: Vec<_> = points.iter().map(|p| p.fragment_id.clone()).collect();
    assert_eq!(store.existing("org", &ids).await.unwrap().len(), 5);
}

/// Options under which 3,000 four-dimensional vectors (48 KB) are enough
/// for the optimizer to build an HNSW index.
fn indexing_options() -> EdgeStoreOptions {
    EdgeStoreOptions {
        indexing_threshold_kb: Some(10),
        ..options()
    }
}

/// Dense query = point 123's vector, query term = point 1,234's word:
/// 1,234 comes first (BM25 rank 0 plus a dense rank), 123 second (dense
/// rank 0 only); filters and counts hold. The prefetch covers all of
/// org_a, so 1,234 is sure to have a dense rank: with a shorter one it
/// could tie with 123.
async fn check_bulk_search(store: &EdgeStore, a: &[Point]) {
    let q = HybridQuery {
        filter: ScopeFilter::tenant("org_a"),
        dense: a[123].dense.clone(),
        sparse: bm25::query_vector("w1234x"),
        prefetch: 2_000,
        limit: 10,
    };
    let hits = store.hybrid_search(&q).await.unwrap();
    assert_eq!(hits[0].payload.fragment_id, a[1234].fragment_id);
    assert_eq!(hits[1].payload.fragment_id, a[123].fragment_id);
    assert!((hits[1].dense_score.unwrap() - 1.0).abs() < 1e-4);
    assert!(hits.iter().all(|h| h.payload.org_id == "org_a"));
    assert_eq!(hits.len(), 10);

    // org_b's filter never yields org_a's points, whatever the vector.
    let mut q_b = q.clone();
    q_b.filter = ScopeFilter::tenant("org_b");
    let hits = store.hybrid_search(&q_b).await.unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.payload.org_id == "org_b"));

    let mut session = ScopeFilter::tenant("org_a");
    session.session_id = Some("s3".into());
    assert_eq!(store.count(&session).await.unwrap(), 200);
    assert_eq!(
        store.count(&ScopeFilter::tenant("org_a")).await.unwrap(),
        2_000
    );
    assert_eq!(
        store.count(&ScopeFilter::tenant("org_b")).await.unwrap(),
        1_000
    );
}

#[tokio::test]
async fn search_stays_correct_after_optimize_with_3000_points() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path(), indexing_options()).unwrap();
    let a = bulk("org_a", 2_000, 0);
    let b = bulk("org_b", 1_000, 2_000);
    for chunk in a.chunks(500).chain(b.chunks(500)) {
        store.upsert(chunk.to_vec()).await.unwrap();
    }
    let before = store.stats().await.unwrap();
    // Sparse vectors are always indexed; dense ones are not yet.
    assert_eq!(before.indexed_vectors, 3_000);

    check_bulk_search(&store, &a).await;

    assert!(store.optimize_now().await.unwrap());
    let after = store.stats().await.unwrap();
    assert!(after.indexed_vectors >= 6_000, "{after:?}");
    assert_eq!(after.journal_bytes, 0);
    check_bulk_search(&store, &a).await;

    // The optimized segments load again.
    store.close().await.unwrap();
    let store = EdgeStore::open(dir.path(), indexing_options()).unwrap();
    assert!(store.stats().await.unwrap().indexed_vectors >= 6_000);
    check_bulk_search(&store, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_upserts_keep_working_while_optimizing() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(EdgeStore::open(dir.path(), indexing_options()).unwrap());
    let first = bulk("org", 3_000, 0);
    for chunk in first.chunks(1_000) {
        store.upsert(chunk.to_vec()).await.unwrap();
    }

    let optimizer = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move { store.optimize_now().await })
    };
    let more = bulk("org", 500, 3_000);
    for chunk in more.chunks(25) {
        store.upsert(chunk.to_vec()).await.unwrap();
        let v: [f32; 4] = chunk[0].dense.clone().try_into().unwrap();
        let hits = store
            .hybrid_search(&query(ScopeFilter::tenant("org"), v, "topic"))
            .await
            .unwrap();
        assert_eq!(hits.len(), 10);
    }
    assert!(optimizer.await.unwrap().unwrap());
    // A second pass picks up what was written meanwhile and checkpoints.
    store.optimize_now().await.unwrap();
    assert_eq!(
        store.count(&ScopeFilter::tenant("org")).await.unwrap(),
        3_500
    );
    assert_eq!(store.stats().await.unwrap().journal_bytes, 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn background_task_optimizes_once_writes_go_idle() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EdgeStoreOptions {
        optimize_when_idle: Duration::from_millis(200),
        ..indexing_options()
    };
    let store = EdgeStore::open(dir.path(), opts).unwrap();
    for chunk in bulk("org", 3_000, 0).chunks(1_000) {
        store.upsert(chunk.to_vec()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = store.stats().await.unwrap();
        if stats.indexed_vectors >= 6_000 && stats.journal_bytes == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not optimized in time: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.count(&ScopeFilter::tenant("org")).await.unwrap(),
        3_000
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn background_task_optimizes_after_enough_points() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EdgeStoreOptions {
        optimize_after_points: 2_000,
        ..indexing_options()
    };
    let store = EdgeStore::open(dir.path(), opts).unwrap();
    for chunk in bulk("org", 3_000, 0).chunks(500) {
        store.upsert(chunk.to_vec()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.stats().await.unwrap().indexed_vectors < 6_000 {
        assert!(Instant::now() < deadline, "not optimized in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.close().await.unwrap();
}
