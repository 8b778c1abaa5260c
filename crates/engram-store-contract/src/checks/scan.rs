//! Checks of what `engram reembed` relies on: `scan` pages through every
//! point of every tenant, and the model tag round-trips.

use crate::fixtures::{point, scope};
use engram_core::{Kind, ModelTag, UNTAGGED_MODEL, VectorStore};
use std::collections::HashMap;
use std::sync::Arc;

/// `scan` returns every point of every tenant exactly once, in pages of at
/// most the limit, with full payloads, and ends with no cursor; an empty
/// store ends at once.
pub async fn scan_pages_through_every_point_of_every_tenant(store: Arc<dyn VectorStore>) {
    let (empty, next) = store.scan(None, 10).await.unwrap();
    assert!(
        empty.is_empty() && next.is_none(),
        "an empty store scans empty"
    );

    let mut written = HashMap::new();
    for (org, n) in [("org_a", 17), ("org_b", 6)] {
        let s = scope(org, "u", "s");
        let points: Vec<_> = (0..n)
            .map(|i| {
                let kind = if i % 3 == 0 {
                    Kind::Observation
                } else {
                    Kind::Turn
                };
                let mut v = [0.0; crate::DIM];
                v[i % crate::DIM] = 1.0;
                point(
                    &s,
                    kind,
                    &format!("{org} note {i} ✓ naïve"),
                    1_000 + i as i64,
                    v,
                )
            })
            .collect();
        written.extend(
            points
                .iter()
                .map(|p| (p.fragment_id.clone(), p.payload.clone())),
        );
        store.upsert(points).await.unwrap();
    }

    let mut seen = HashMap::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let (page, next) = store.scan(cursor, 5).await.unwrap();
        assert!(page.len() <= 5, "a page of {} for a limit of 5", page.len());
        for payload in page {
            assert!(
                seen.insert(payload.fragment_id.clone(), payload).is_none(),
                "a point scanned twice"
            );
        }
        pages += 1;
        assert!(pages < 100, "the scan does not end");
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen, written,
        "scan must return every point, payload intact"
    );
    assert!(
        pages >= 5,
        "23 points in pages of 5 take at least 5 pages, not {pages}"
    );
}

/// A store nobody tagged reports the model of untagged stores; a tag set
/// is read back, and replacing a re-embedding tag with a plain one clears
/// `reembedding_to`.
pub async fn model_tag_round_trips(store: Arc<dyn VectorStore>) {
    assert_eq!(
        store.model_tag().await.unwrap(),
        ModelTag::of(UNTAGGED_MODEL)
    );
    let half = ModelTag {
        model: UNTAGGED_MODEL.to_owned(),
        reembedding_to: Some("multilingual-e5-small".into()),
    };
    store.set_model_tag(&half).await.unwrap();
    assert_eq!(store.model_tag().await.unwrap(), half);
    let done = ModelTag::of("multilingual-e5-small");
    store.set_model_tag(&done).await.unwrap();
    assert_eq!(store.model_tag().await.unwrap(), done);
}
