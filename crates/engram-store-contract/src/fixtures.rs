//! Points, scopes and queries the checks are built from, public so that a
//! backend's own tests (reopen, optimizer, journal) can use the same data.
//!
//! Dense vectors have [`DIM`] = 4 dimensions so a check can reason about
//! cosines by hand; sparse vectors are real BM25 vectors from
//! [`engram_core::bm25`], and fragment ids are real content ids from
//! [`engram_core::ids::fragment_id`].

use crate::DIM;
use engram_core::bm25;
use engram_core::ids::fragment_id;
use engram_core::{
    HybridQuery, Kind, MemoryRef, MemoryType, Point, PointPayload, Role, Scope, ScopeFilter,
    ScoredPoint, VectorStore,
};

/// A scope from its three parts.
pub fn scope(org: &str, user: &str, session: &str) -> Scope {
    Scope {
        org_id: org.into(),
        user_id: user.into(),
        session_id: session.into(),
    }
}

/// A point of `kind` in `scope` with the BM25 vector of `text` and the
/// normalized `dense` vector.
///
/// The fragment id covers the kind and the text, so points that differ in
/// either never collide. Every optional payload field is set for some kind
/// (a role and a token count for turns; source ids, subject and event time for observations;
/// entity kind and mentions for entities; metadata always) so that
/// payload round trips are checked in full.
pub fn point(scope: &Scope, kind: Kind, text: &str, ts_ms: i64, dense: [f32; DIM]) -> Point {
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
            entity_kind: (kind == Kind::Entity).then_some(engram_core::EntityKind::Person),
            mentions: (kind == Kind::Entity).then_some(3),
            subject: (kind == Kind::Observation).then(|| "User".to_owned()),
            event_ms: (kind == Kind::Observation).then_some(ts_ms - 86_400_000),
            metadata,
            memory: None,
            // Any count will do: stores keep it as given.
            tokens: (kind == Kind::Turn).then(|| text.split_whitespace().count() as u32),
        },
        dense: normalized(dense.to_vec()),
        sparse: bm25::document_vector(text),
    }
}

/// `point` with the entries of the JSON object `entries` added to its
/// metadata (beside the fixture's `"source": "test"`).
///
/// # Panics
/// When `entries` is not an object.
pub fn with_metadata(mut point: Point, entries: serde_json::Value) -> Point {
    let serde_json::Value::Object(entries) = entries else {
        panic!("metadata entries must be a JSON object, not {entries}");
    };
    point.payload.metadata.extend(entries);
    point
}

/// A reference to chunk `chunk` of the memory named `name` (its id is the
/// real memory id of that name) in `collection_id`, titled after the name.
pub fn memory_ref(
    name: &str,
    memory_type: MemoryType,
    collection_id: &str,
    chunk: u32,
) -> MemoryRef {
    MemoryRef {
        memory_id: engram_core::ids::memory_id(&[name]),
        collection_id: collection_id.into(),
        memory_type,
        title: format!("About {name}"),
        chunk,
    }
}

/// A chunk of a stored memory written by `user` of `org`, as the memory
/// writer stores it: kind `memory`, in no session, with the real chunk
/// fragment id, the BM25 vector of `text` and the normalized `dense`
/// vector.
pub fn memory_chunk(
    org: &str,
    user: &str,
    memory: MemoryRef,
    text: &str,
    dense: [f32; DIM],
) -> Point {
    let fragment_id = engram_core::ids::memory_chunk_id(org, &memory.memory_id, memory.chunk);
    let mut point = point(&scope(org, user, ""), Kind::Memory, text, 1_000, dense);
    point.fragment_id = fragment_id.clone();
    point.payload.fragment_id = fragment_id;
    point.payload.job_id = memory.memory_id.clone();
    point.payload.memory = Some(memory);
    point
}

/// `v` scaled to unit length.
pub fn normalized(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// A hybrid query with the normalized `dense` vector and the BM25 query
/// vector of `text`; 20 candidates per prefetch, 10 results.
pub fn query(filter: ScopeFilter, dense: [f32; DIM], text: &str) -> HybridQuery {
    HybridQuery {
        filter,
        dense: normalized(dense.to_vec()),
        sparse: bm25::query_vector(text),
        prefetch: 20,
        limit: 10,
    }
}

/// A hybrid query with the normalized `dense` vector and BM25 query terms
/// with the given weights (as recall weighs them, by IDF); 20 candidates
/// per prefetch, 10 results.
pub fn weighted_query(
    filter: ScopeFilter,
    dense: [f32; DIM],
    terms: &[(&str, f32)],
) -> HybridQuery {
    let mut terms: Vec<(u32, f32)> = terms.iter().map(|(t, w)| (bm25::term_id(t), *w)).collect();
    terms.sort_by_key(|(t, _)| *t);
    HybridQuery {
        filter,
        dense: normalized(dense.to_vec()),
        sparse: engram_core::SparseVector {
            indices: terms.iter().map(|(t, _)| *t).collect(),
            values: terms.iter().map(|(_, w)| *w).collect(),
        },
        prefetch: 20,
        limit: 10,
    }
}

/// The fragment ids of `hits`, in order.
pub fn ids(hits: &[ScoredPoint]) -> Vec<&str> {
    hits.iter()
        .map(|h| h.payload.fragment_id.as_str())
        .collect()
}

/// Deterministic pseudo-random vectors (xorshift), for bulk data.
pub fn vector(seed: u64) -> [f32; DIM] {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = [0.0; DIM];
    for v in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *v = ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
    }
    out
}

/// `n` turns of tenant `org`, numbered from `offset`: turn `i` is in
/// session `s{i % 10}`, has the unique word `w{i}x` and the shared words
/// "note" and "topic", timestamp `i` and the vector [`vector`]`(i)`.
pub fn bulk(org: &str, n: usize, offset: usize) -> Vec<Point> {
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

/// The bulk data of [`check_bulk_search`]: 2,000 points of `org_a`
/// ([`bulk`] from 0) and 1,000 of `org_b` (from 2,000).
pub fn bulk_data() -> (Vec<Point>, Vec<Point>) {
    (bulk("org_a", 2_000, 0), bulk("org_b", 1_000, 2_000))
}

/// Checks a store holding exactly [`bulk_data`]: dense query = point 123's
/// vector, query term = point 1,234's word, so 1,234 comes first (BM25 rank
/// 0 plus a dense rank) and 123 second (dense rank 0 only); filters and
/// counts hold. The prefetch covers all of org_a, so 1,234 is sure to have a
/// dense rank: with a shorter one it could tie with 123.
pub async fn check_bulk_search(store: &dyn VectorStore, a: &[Point]) {
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
