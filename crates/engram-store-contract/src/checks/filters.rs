//! Checks of metadata conditions ([`Cond`] in `ScopeFilter::metadata`):
//! every node type, their combinations, and that a filter is applied inside
//! the search so `top_k` stays exact.

use crate::fixtures::{ids, point, query, scope, vector, with_metadata};
use engram_core::{Bounds, Cond, HybridQuery, Kind, Point, ScopeFilter, VectorStore};
use serde_json::json;
use std::sync::Arc;

/// Asserts that exactly `want` (by text) match `filter`, through a hybrid
/// search whose limit covers every point and through `count`.
pub(crate) async fn assert_matches(store: &dyn VectorStore, filter: &ScopeFilter, want: &[&Point]) {
    let mut q = query(filter.clone(), [1.0, 1.0, 1.0, 1.0], "");
    q.limit = 1_000;
    q.prefetch = 1_000;
    let hits = store.hybrid_search(&q).await.unwrap();
    let mut got: Vec<&str> = hits.iter().map(|h| h.payload.text.as_str()).collect();
    got.sort_unstable();
    let mut expected: Vec<&str> = want.iter().map(|p| p.payload.text.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(got, expected, "search with {filter:?}");
    assert_eq!(
        store.count(filter).await.unwrap(),
        want.len() as u64,
        "count with {filter:?}"
    );
}

/// Tenant `org` with the metadata condition `cond`.
fn meta(cond: Cond) -> ScopeFilter {
    let mut f = ScopeFilter::tenant("org");
    f.metadata = Some(cond);
    f
}

fn key(k: &str) -> String {
    format!("metadata.{k}")
}

fn int(k: &str, values: &[i64]) -> Cond {
    Cond::Integer {
        field: key(k),
        values: values.to_vec(),
    }
}

fn boolean(k: &str, value: bool) -> Cond {
    Cond::Bool {
        field: key(k),
        value,
    }
}

fn range(k: &str, bounds: Bounds<f64>) -> Cond {
    Cond::Range {
        field: key(k),
        bounds,
    }
}

fn dates(k: &str, bounds: Bounds<i64>) -> Cond {
    Cond::DateRange {
        field: key(k),
        bounds,
    }
}

/// Bounds from (gt, gte, lt, lte).
fn b<T>(gt: Option<T>, gte: Option<T>, lt: Option<T>, lte: Option<T>) -> Bounds<T> {
    Bounds { gt, gte, lt, lte }
}

fn exists(k: &str) -> Cond {
    Cond::Exists { field: key(k) }
}

fn not(c: Cond) -> Cond {
    Cond::Not(Box::new(c))
}

/// A turn of `org`/`u`/`s` with the text `text` and metadata `entries`;
/// dense vectors differ per text so no two points tie.
fn tagged(text: &str, entries: serde_json::Value) -> Point {
    let seed = text.bytes().map(u64::from).sum::<u64>();
    with_metadata(
        point(&scope("org", "u", "s"), Kind::Turn, text, 1, vector(seed)),
        entries,
    )
}

/// Equality on string, integer and boolean metadata: typed (the string
/// "1" is not the integer 1), a value with spaces is one keyword (not a
/// full-text match), an array matches when any element does, and a point
/// without the key never matches.
pub async fn metadata_equality_matches_strings_integers_and_bools(store: Arc<dyn VectorStore>) {
    let gold = tagged(
        "gold",
        json!({"tier": "gold", "rank": 1, "active": true, "tags": ["a", "b"], "label": "two words"}),
    );
    let silver = tagged(
        "silver",
        json!({"tier": "silver", "rank": 2, "active": false, "tags": ["c"], "label": "two"}),
    );
    let typed = tagged(
        "typed",
        json!({"tier": "Gold", "rank": "1", "active": "true"}),
    );
    let bare = tagged("bare", json!({}));
    let other_org = with_metadata(
        point(
            &scope("org2", "u", "s"),
            Kind::Turn,
            "foreign gold",
            1,
            vector(9),
        ),
        json!({"tier": "gold", "rank": 1, "active": true}),
    );
    let all = [&gold, &silver, &typed, &bare, &other_org];
    store
        .upsert(all.iter().map(|p| (*p).clone()).collect())
        .await
        .unwrap();

    let s = store.as_ref();
    assert_matches(s, &meta(Cond::eq("metadata.tier", "gold")), &[&gold]).await;
    assert_matches(s, &meta(Cond::eq("metadata.tier", "Gold")), &[&typed]).await;
    assert_matches(s, &meta(int("rank", &[1])), &[&gold]).await;
    assert_matches(s, &meta(Cond::eq("metadata.rank", "1")), &[&typed]).await;
    assert_matches(s, &meta(boolean("active", true)), &[&gold]).await;
    assert_matches(s, &meta(boolean("active", false)), &[&silver]).await;
    assert_matches(s, &meta(Cond::eq("metadata.tags", "b")), &[&gold]).await;
    assert_matches(s, &meta(Cond::eq("metadata.label", "two words")), &[&gold]).await;
    assert_matches(s, &meta(Cond::eq("metadata.label", "two")), &[&silver]).await;
    assert_matches(s, &meta(Cond::eq("metadata.label", "words")), &[]).await;
    assert_matches(s, &meta(Cond::eq("metadata.missing", "gold")), &[]).await;
    // The fixture's own metadata: every point of the tenant has it.
    assert_matches(
        s,
        &meta(Cond::eq("metadata.source", "test")),
        &[&gold, &silver, &typed, &bare],
    )
    .await;
}

/// Any-of on keywords and integers, numeric ranges (each bound inclusive
/// or exclusive as named, integers and floats alike) and date ranges on
/// RFC 3339 strings (any offset; a string that is no date never matches).
pub async fn metadata_any_of_and_ranges(store: Arc<dyn VectorStore>) {
    let p1 = tagged(
        "p1",
        json!({"tier": "gold", "rank": 1, "score": 0.5, "due": "2026-03-01T00:00:00Z"}),
    );
    let p2 = tagged(
        "p2",
        json!({"tier": "silver", "rank": 2, "score": 1.5, "due": "2026-03-15T12:30:00+02:00"}),
    );
    let p3 = tagged(
        "p3",
        json!({"tier": "bronze", "rank": 3, "score": 2, "due": "2026-04-01T00:00:00Z"}),
    );
    let p4 = tagged("p4", json!({"tier": "iron", "score": 2.5, "due": "soon"}));
    let p5 = tagged("p5", json!({}));
    store
        .upsert(vec![
            p1.clone(),
            p2.clone(),
            p3.clone(),
            p4.clone(),
            p5.clone(),
        ])
        .await
        .unwrap();
    let s = store.as_ref();

    let any = Cond::any_of("metadata.tier", ["gold", "bronze", "platinum"]);
    assert_matches(s, &meta(any), &[&p1, &p3]).await;
    assert_matches(s, &meta(int("rank", &[1, 3, 7])), &[&p1, &p3]).await;

    assert_matches(
        s,
        &meta(range("score", b(None, Some(1.5), Some(2.5), None))),
        &[&p2, &p3],
    )
    .await;
    assert_matches(
        s,
        &meta(range("score", b(Some(0.5), None, None, Some(2.5)))),
        &[&p2, &p3, &p4],
    )
    .await;
    assert_matches(
        s,
        &meta(range("score", b(None, None, Some(2.0), None))),
        &[&p1, &p2],
    )
    .await;
    assert_matches(
        s,
        &meta(range("rank", b(None, Some(2.0), None, None))),
        &[&p2, &p3],
    )
    .await;

    // 2026-03-01T00:00Z, 2026-03-15T10:30Z (p2's local 12:30+02:00) and
    // 2026-04-01T00:00Z in epoch milliseconds.
    let (march, mid_march, april) = (1_772_323_200_000, 1_773_570_600_000, 1_775_001_600_000);
    assert_matches(
        s,
        &meta(dates("due", b(None, Some(march), Some(april), None))),
        &[&p1, &p2],
    )
    .await;
    assert_matches(
        s,
        &meta(dates("due", b(Some(march), None, None, Some(april)))),
        &[&p2, &p3],
    )
    .await;
    // The offset counts: p2 is at 10:30Z, so a bound at 10:30Z includes
    // it only when inclusive.
    assert_matches(
        s,
        &meta(dates("due", b(None, Some(mid_march), Some(april), None))),
        &[&p2],
    )
    .await;
    assert_matches(
        s,
        &meta(dates("due", b(Some(mid_march), None, Some(april), None))),
        &[],
    )
    .await;
    // Open on one side, and a bound out of any calendar's range.
    assert_matches(
        s,
        &meta(dates("due", b(None, None, None, Some(i64::MAX)))),
        &[&p1, &p2, &p3],
    )
    .await;
}

/// `Exists` holds for any value but null and the empty array (an empty
/// string and zero are values); All, Any and Not combine conditions at any
/// depth; an empty All holds for every point, an empty Any for none.
pub async fn metadata_exists_and_combinations(store: Arc<dyn VectorStore>) {
    let text = tagged("text", json!({"note": "x", "tier": "gold", "rank": 1}));
    let null = tagged("null", json!({"note": null, "tier": "gold", "rank": 2}));
    let empty = tagged("empty", json!({"note": [], "tier": "silver", "rank": 3}));
    let absent = tagged("absent", json!({"tier": "silver"}));
    let list = tagged("list", json!({"note": ["y"], "tier": "bronze", "rank": 5}));
    let zero = tagged("zero", json!({"note": 0, "rank": 8}));
    let blank = tagged("blank", json!({"note": ""}));
    let points = [&text, &null, &empty, &absent, &list, &zero, &blank];
    store
        .upsert(points.iter().map(|p| (*p).clone()).collect())
        .await
        .unwrap();
    let s = store.as_ref();

    assert_matches(s, &meta(exists("note")), &[&text, &list, &zero, &blank]).await;
    assert_matches(s, &meta(not(exists("note"))), &[&null, &empty, &absent]).await;
    assert_matches(s, &meta(exists("missing")), &[]).await;

    let gold = || Cond::eq("metadata.tier", "gold");
    let high = || {
        range(
            "rank",
            Bounds {
                gte: Some(3.0),
                ..Bounds::default()
            },
        )
    };
    assert_matches(s, &meta(Cond::All(vec![gold(), exists("note")])), &[&text]).await;
    assert_matches(
        s,
        &meta(Cond::Any(vec![gold(), high()])),
        &[&text, &null, &empty, &list, &zero],
    )
    .await;
    assert_matches(
        s,
        &meta(Cond::All(vec![not(gold()), not(high())])),
        &[&absent, &blank],
    )
    .await;
    // Not(Any) is neither; Any of an All and a Not nests two levels.
    assert_matches(
        s,
        &meta(not(Cond::Any(vec![gold(), high()]))),
        &[&absent, &blank],
    )
    .await;
    assert_matches(
        s,
        &meta(Cond::Any(vec![
            Cond::All(vec![gold(), not(exists("note"))]),
            Cond::All(vec![exists("rank"), not(exists("tier"))]),
        ])),
        &[&null, &zero],
    )
    .await;
    assert_matches(s, &meta(Cond::All(Vec::new())), &points).await;
    assert_matches(s, &meta(Cond::Any(Vec::new())), &[]).await;
    assert_matches(s, &meta(not(Cond::Any(Vec::new()))), &points).await;

    // A key filtered on by equality gets a payload index (on first use);
    // values that index does not hold (the number 0 under a keyword index,
    // the empty string) still exist, and null and [] still do not.
    assert_matches(s, &meta(Cond::eq("metadata.note", "x")), &[&text]).await;
    assert_matches(s, &meta(exists("note")), &[&text, &list, &zero, &blank]).await;
    assert_matches(s, &meta(not(exists("note"))), &[&null, &empty, &absent]).await;
    assert_matches(s, &meta(Cond::eq("metadata.note", "y")), &[&list]).await;
}

/// 200 points closer to the query than any other and 5 farther ones
/// tagged `tier = "gold"`: a search for 5 with 5 candidates per prefetch,
/// filtered on gold, returns exactly the 5 gold points, best first. Had
/// the filter been applied after the search, the 5 candidates would all
/// have been close, untagged points and nothing would come back.
pub async fn top_k_is_exact_under_a_selective_filter(store: Arc<dyn VectorStore>) {
    let s = scope("org", "u", "s");
    let close: Vec<Point> = (0..200)
        .map(|i| {
            let v = vector(i);
            let dense = [1.0, 0.1 * v[1], 0.1 * v[2], 0.1 * v[3]];
            let p = point(&s, Kind::Turn, &format!("close point {i}"), i as i64, dense);
            with_metadata(p, json!({"tier": "plain"}))
        })
        .collect();
    // Cosine to [1, 0, 0, 0] falls as k grows: gold 0 is the best of them.
    let gold: Vec<Point> = (0..5)
        .map(|k| {
            let dense = [0.3, 1.0, 0.0, 0.1 * k as f32];
            let p = point(&s, Kind::Turn, &format!("gold point {k}"), 1_000 + k, dense);
            with_metadata(p, json!({"tier": "gold"}))
        })
        .collect();
    store.upsert(close.clone()).await.unwrap();
    store.upsert(gold.clone()).await.unwrap();

    let mut filter = ScopeFilter::tenant("org");
    filter.metadata = Some(Cond::eq("metadata.tier", "gold"));
    let want: Vec<&str> = gold.iter().map(|p| p.fragment_id.as_str()).collect();
    // A query word only the close points have changes nothing: inside the
    // filter the BM25 prefetch finds no candidate.
    for text in ["", "close"] {
        let q = HybridQuery {
            prefetch: 5,
            limit: 5,
            ..query(filter.clone(), [1.0, 0.0, 0.0, 0.0], text)
        };
        let hits = store.hybrid_search(&q).await.unwrap();
        assert_eq!(ids(&hits), want, "query text {text:?}");
    }
    let q = HybridQuery {
        prefetch: 2,
        limit: 2,
        ..query(filter.clone(), [1.0, 0.0, 0.0, 0.0], "")
    };
    let hits = store.hybrid_search(&q).await.unwrap();
    assert_eq!(ids(&hits), want[..2]);
    assert_eq!(store.count(&filter).await.unwrap(), 5);

    // Unfiltered, the same search only finds close points.
    let q = HybridQuery {
        prefetch: 5,
        limit: 5,
        ..query(ScopeFilter::tenant("org"), [1.0, 0.0, 0.0, 0.0], "")
    };
    let hits = store.hybrid_search(&q).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.payload.text.starts_with("close")));
}
