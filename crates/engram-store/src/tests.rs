//! Behaviour that is particular to [`EdgeStore`]: reopening, the redo
//! journal and the optimizer, on real shards in temporary directories.
//!
//! What every store must do is checked by the contract suite
//! (`engram-store-contract`, run on this store by `tests/contract.rs`).

use crate::journal::Journal;
use crate::{EdgeStore, EdgeStoreOptions};
use engram_core::{Kind, Point, ScopeFilter, StoreError, VectorStore};
use engram_store_contract::fixtures::{
    bulk, bulk_data, check_bulk_search, ids, point, query, scope,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// Small vectors so tests can reason about cosines by hand; the background
/// optimizer only runs (and compacts) when a test asks for it.
fn options() -> EdgeStoreOptions {
    EdgeStoreOptions {
        dense_dim: engram_store_contract::DIM,
        optimize_when_idle: Duration::from_secs(3600),
        optimize_after_points: u64::MAX,
        compact_when_idle: None,
        ..EdgeStoreOptions::default()
    }
}

/// Opens a store in `dir`. Every test closes its store at the end, as a
/// server does: a maintenance pass still running when the temporary
/// directory is removed would flush into a deleted directory.
fn open(dir: &Path) -> EdgeStore {
    EdgeStore::open(dir, options()).expect("store opens")
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

        // What any closed store answers is in the contract suite; these
        // calls are Edge's own.
        for err in [
            store.optimize_now().await.unwrap_err(),
            store.stats().await.unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        }
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
    store.close().await.unwrap();
}

/// The fragment ids of `points`.
fn fragment_ids(points: &[Point]) -> Vec<String> {
    points.iter().map(|p| p.fragment_id.clone()).collect()
}

/// What the delete tests expect after reopening: of org's ten points the
/// first four are gone, and org_b's point (whose id org asked to delete
/// too) is still there.
async fn check_after_delete(store: &EdgeStore, org: &[Point], other: &Point) {
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 6);
    let found = store.existing("org", &fragment_ids(org)).await.unwrap();
    assert_eq!(found.len(), 6);
    assert!(org[..4].iter().all(|p| !found.contains(&p.fragment_id)));
    let hits = store
        .hybrid_search(&query(
            ScopeFilter::tenant("org"),
            [1.0, 0.0, 0.0, 0.0],
            "w2x",
        ))
        .await
        .unwrap();
    assert!(!ids(&hits).contains(&org[2].fragment_id.as_str()));
    assert_eq!(hits.len(), 6);
    let b = store
        .existing("org_b", std::slice::from_ref(&other.fragment_id))
        .await
        .unwrap();
    assert!(b.contains(&other.fragment_id));
}

/// Writes ten points of `org` and one of `org_b`, then deletes org's first
/// four plus org_b's point in org's name (which must be ignored).
async fn write_then_delete(store: &EdgeStore) -> (Vec<Point>, Point) {
    let org = bulk("org", 10, 0);
    let other = point(
        &scope("org_b", "u", "s"),
        Kind::Turn,
        "not yours",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    store.upsert(org.clone()).await.unwrap();
    store.upsert(vec![other.clone()]).await.unwrap();
    let mut doomed = fragment_ids(&org[..4]);
    doomed.push(other.fragment_id.clone());
    store.delete("org", &doomed).await.unwrap();
    (org, other)
}

#[tokio::test]
async fn delete_survives_drop_without_close_and_reopen() {
    // Dropping without close stands for a crash: the journal still holds
    // the upserts, and without the delete after them the reopen would
    // bring the deleted points back.
    let dir = tempfile::tempdir().unwrap();
    let (org, other) = {
        let store = open(dir.path());
        let written = write_then_delete(&store).await;
        assert!(store.stats().await.unwrap().journal_bytes > 0);
        written
    };
    let store = open(dir.path());
    check_after_delete(&store, &org, &other).await;
    store.close().await.unwrap();

    // And once more after the replay's own checkpoint.
    let store = open(dir.path());
    check_after_delete(&store, &org, &other).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn delete_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (org, other) = {
        let store = open(dir.path());
        let written = write_then_delete(&store).await;
        store.close().await.unwrap();
        written
    };
    let store = open(dir.path());
    check_after_delete(&store, &org, &other).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn delete_after_a_checkpoint_survives_drop_without_close() {
    // The upserts are already flushed into the segments and gone from the
    // journal; only the delete is journaled when the store is dropped.
    let dir = tempfile::tempdir().unwrap();
    let org = bulk("org", 10, 0);
    let other = point(
        &scope("org_b", "u", "s"),
        Kind::Turn,
        "not yours",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    {
        let store = open(dir.path());
        store.upsert(org.clone()).await.unwrap();
        store.upsert(vec![other.clone()]).await.unwrap();
        store.optimize_now().await.unwrap();
        assert_eq!(store.stats().await.unwrap().journal_bytes, 0);
        let mut doomed = fragment_ids(&org[..4]);
        doomed.push(other.fragment_id.clone());
        store.delete("org", &doomed).await.unwrap();
        assert!(store.stats().await.unwrap().journal_bytes > 0);
    }
    let store = open(dir.path());
    check_after_delete(&store, &org, &other).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn journaled_deletes_are_replayed_in_order_on_open() {
    // Upsert, delete, upsert again of the same point, as a crash would
    // leave them: the point exists. Then upsert and delete: it does not.
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).close().await.unwrap();
    let points = bulk("org", 3, 0);
    let (kept, gone) = (&points[0], &points[1]);
    {
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.append(&points).unwrap();
        journal
            .append_delete(&[kept.fragment_id.clone(), gone.fragment_id.clone()])
            .unwrap();
        journal.append(std::slice::from_ref(kept)).unwrap();
    }

    let store = open(dir.path());
    let found = store.existing("org", &fragment_ids(&points)).await.unwrap();
    assert!(found.contains(&kept.fragment_id));
    assert!(!found.contains(&gone.fragment_id));
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 2);
    assert_eq!(store.stats().await.unwrap().journal_bytes, 0);
    store.close().await.unwrap();
}

/// Options under which 3,000 four-dimensional vectors (48 KB) are enough
/// for the optimizer to build an HNSW index.
fn indexing_options() -> EdgeStoreOptions {
    EdgeStoreOptions {
        indexing_threshold_kb: Some(10),
        ..options()
    }
}

#[tokio::test]
async fn search_stays_correct_after_optimize_with_3000_points() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path(), indexing_options()).unwrap();
    let (a, b) = bulk_data();
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
    store.close().await.unwrap();
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

/// Options under which each optimizer pass over 500 new points makes a
/// segment of its own, as a growing server's store does.
fn growing_options() -> EdgeStoreOptions {
    EdgeStoreOptions {
        indexing_threshold_kb: Some(5),
        ..options()
    }
}

/// Writes [`bulk_data`] in six batches with an optimizer pass after each:
/// seven segments (six indexed, one appendable).
async fn grow(store: &EdgeStore) -> Vec<Point> {
    let (a, b) = bulk_data();
    for chunk in a.chunks(500).chain(b.chunks(500)) {
        store.upsert(chunk.to_vec()).await.unwrap();
        store.optimize_now().await.unwrap();
    }
    a
}

/// The optimizer target persisted in the shard's configuration file.
fn persisted_segment_number(dir: &Path) -> u64 {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("edge_config.json")).unwrap()).unwrap();
    config["optimizers"]["default_segment_number"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn compaction_merges_segments_and_restores_the_usual_target() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path(), growing_options()).unwrap();
    let a = grow(&store).await;
    let grown = store.stats().await.unwrap();
    assert!(grown.segments >= 6, "{grown:?}");
    check_bulk_search(&store, &a).await;

    assert!(store.compact_now().await.unwrap());
    let compacted = store.stats().await.unwrap();
    // Two segments, and possibly the empty appendable one Edge adds when
    // a merge took the last.
    assert!(compacted.segments <= 3, "{compacted:?}");
    assert_eq!(compacted.points, 3_000);
    assert!(compacted.indexed_vectors >= 6_000, "{compacted:?}");
    assert_eq!(compacted.journal_bytes, 0);
    check_bulk_search(&store, &a).await;
    // Nothing left to merge.
    assert!(!store.compact_now().await.unwrap());

    // The usual target is back: later writes get segments of their own
    // again instead of a merge of everything on every pass.
    assert_eq!(persisted_segment_number(dir.path()), 8);
    for chunk in bulk("org_c", 1_500, 3_000).chunks(500) {
        store.upsert(chunk.to_vec()).await.unwrap();
        store.optimize_now().await.unwrap();
    }
    let regrown = store.stats().await.unwrap();
    assert!(regrown.segments > compacted.segments + 1, "{regrown:?}");

    // The compacted layout loads again.
    store.close().await.unwrap();
    let store = EdgeStore::open(dir.path(), growing_options()).unwrap();
    assert_eq!(store.stats().await.unwrap().segments, regrown.segments);
    check_bulk_search(&store, &a).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn background_task_compacts_once_writes_pause() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EdgeStoreOptions {
        compact_when_idle: Some(Duration::from_secs(1)),
        ..growing_options()
    };
    let store = EdgeStore::open(dir.path(), opts).unwrap();
    // Without compaction this is seven segments (see the test above).
    let a = grow(&store).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Merged, and the pass over: the usual target is back.
        let stats = store.stats().await.unwrap();
        if stats.segments <= 3 && persisted_segment_number(dir.path()) == 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted in time: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check_bulk_search(&store, &a).await;
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

/// Filters stay exact on optimized (HNSW-indexed) segments: a filter that
/// 5 of 3,005 points pass, on an unindexed metadata field or on the
/// indexed `memory_id`, still yields exactly those 5 for a top 5 even
/// though they are the farthest from the query; and a scroll sees every
/// point once across segments, also after reopening.
#[tokio::test]
async fn selective_filters_stay_exact_after_optimize() {
    use engram_core::MemoryType;
    use engram_store_contract::fixtures::{memory_chunk, memory_ref, with_metadata};

    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path(), indexing_options()).unwrap();
    let (a, b) = bulk_data();
    for chunk in a.chunks(500).chain(b.chunks(500)) {
        store.upsert(chunk.to_vec()).await.unwrap();
    }
    let target = a[123].dense.clone();
    let rare: Vec<Point> = (0..5u32)
        .map(|k| {
            let mut far = [0.0; engram_store_contract::DIM];
            for (f, t) in far.iter_mut().zip(&target) {
                *f = -t + 0.01 * k as f32;
            }
            let chunk = memory_chunk(
                "org_a",
                "u",
                memory_ref("rare", MemoryType::Knowledge, "col", k),
                &format!("rare chunk {k}"),
                far,
            );
            with_metadata(chunk, serde_json::json!({"tier": "gold"}))
        })
        .collect();
    store.upsert(rare.clone()).await.unwrap();
    assert!(store.optimize_now().await.unwrap());
    assert!(store.stats().await.unwrap().indexed_vectors >= 6_000);
    check_selective_filters(&store, &target, &rare).await;
    // The first search filtered on `metadata.tier` created its index.
    let tier = (
        "metadata.tier".to_owned(),
        engram_core::MetadataIndexKind::Keyword,
    );
    assert_eq!(store.metadata_indexes(), vec![tier.clone()]);

    store.close().await.unwrap();
    let store = EdgeStore::open(dir.path(), indexing_options()).unwrap();
    // Read back from the shard's schema: the index outlived the process.
    assert_eq!(store.metadata_indexes(), vec![tier]);
    check_selective_filters(&store, &target, &rare).await;
    store.close().await.unwrap();
}

/// The assertions of [`selective_filters_stay_exact_after_optimize`].
async fn check_selective_filters(store: &EdgeStore, target: &[f32], rare: &[Point]) {
    use engram_core::{Cond, HybridQuery, SparseVector};
    use std::collections::HashSet;

    let want: HashSet<&str> = rare.iter().map(|p| p.fragment_id.as_str()).collect();
    let mut gold = ScopeFilter::tenant("org_a");
    gold.metadata = Some(Cond::eq("metadata.tier", "gold"));
    let mut memory = ScopeFilter::tenant("org_a");
    memory.memory_ids = vec![engram_core::ids::memory_id(&["rare"])];
    for filter in [gold, memory] {
        let q = HybridQuery {
            filter: filter.clone(),
            dense: target.to_vec(),
            sparse: SparseVector::default(),
            prefetch: 5,
            limit: 5,
        };
        let hits = store.hybrid_search(&q).await.unwrap();
        let got: HashSet<&str> = ids(&hits).into_iter().collect();
        assert_eq!(got, want, "{filter:?}");
        assert_eq!(store.count(&filter).await.unwrap(), 5);
    }
    let all = store
        .scroll(&ScopeFilter::tenant("org_a"), 10_000)
        .await
        .unwrap();
    let unique: HashSet<&str> = all.iter().map(|p| p.fragment_id.as_str()).collect();
    assert_eq!((all.len(), unique.len()), (2_005, 2_005));
}

/// A store is tagged with the model of the process that created it; a
/// process with another model is refused with a message naming both and
/// `engram reembed`; a store from before tags counts as all-MiniLM-L6-v2;
/// opening without a model (re-embedding) accepts any store.
#[tokio::test]
async fn the_model_tag_guards_the_vectors() {
    let with = |model: Option<&str>| EdgeStoreOptions {
        embedding_model: model.map(str::to_owned),
        ..options()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path(), with(Some("model-a"))).unwrap();
    assert_eq!(
        store.model_tag().await.unwrap(),
        engram_core::ModelTag::of("model-a")
    );
    store.close().await.unwrap();
    let Err(StoreError::Internal(err)) = EdgeStore::open(dir.path(), with(Some("model-b"))) else {
        panic!("a store of model-a opened for model-b");
    };
    assert!(
        err.contains("model-a") && err.contains("model-b") && err.contains("engram reembed"),
        "{err}"
    );
    let store = EdgeStore::open(dir.path(), with(None)).unwrap();
    store
        .set_model_tag(&engram_core::ModelTag {
            model: "model-a".into(),
            reembedding_to: Some("model-b".into()),
        })
        .await
        .unwrap();
    store.close().await.unwrap();
    for model in ["model-a", "model-b"] {
        let Err(StoreError::Internal(err)) = EdgeStore::open(dir.path(), with(Some(model))) else {
            panic!("a half re-embedded store opened for {model}");
        };
        assert!(err.contains("again"), "{err}");
    }

    // A store written before tags existed.
    let old = tempfile::tempdir().unwrap();
    EdgeStore::open(old.path(), with(None))
        .unwrap()
        .close()
        .await
        .unwrap();
    assert!(EdgeStore::open(old.path(), with(Some("multilingual-e5-small"))).is_err());
    let store = EdgeStore::open(old.path(), with(Some(engram_core::UNTAGGED_MODEL))).unwrap();
    store.close().await.unwrap();
}

/// BM25 lengths come from the user's own stored memory: a user's first
/// write seen by a process is seeded from what the store holds for them,
/// per kind; a user with nothing stored starts from the batch itself.
#[tokio::test]
async fn corpus_lengths_are_seeded_from_the_users_stored_points() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = scope("org", "u", "s");
    let long = "alpha beta gamma delta epsilon zeta eta theta iota kappa ".repeat(4);
    let stored: Vec<Point> = (0..6)
        .map(|i| {
            point(
                &s,
                Kind::Turn,
                &format!("{long} item{i}"),
                i,
                [1.0, 0.0, 0.0, 0.0],
            )
        })
        .collect();
    store.upsert(stored.clone()).await.unwrap();
    let stored_len = engram_core::bm25::doc_len(&stored[0].payload.text) as f32;
    assert_eq!(stored_len, 41.0);

    let lengths = engram_core::CorpusLengths::new();
    let new_turn = point(&s, Kind::Turn, "short note", 10, [0.0, 1.0, 0.0, 0.0]);
    let new_obs = point(
        &s,
        Kind::Observation,
        "User likes tea.",
        11,
        [0.0, 1.0, 0.0, 0.0],
    );
    let other = point(
        &scope("org", "v", "s"),
        Kind::Turn,
        "one two three four",
        12,
        [0.0, 0.0, 1.0, 0.0],
    );
    let vectors = lengths
        .document_vectors(
            &store,
            &[&new_turn.payload, &new_obs.payload, &other.payload],
        )
        .await
        .unwrap();
    assert_eq!(vectors.len(), 3);
    let avg = lengths.average("org", "u", Kind::Turn).unwrap();
    assert!((avg - (6.0 * 41.0 + 2.0) / 7.0).abs() < 1e-3, "{avg}");
    // Memory chunks share the turns' corpus; observations have their own.
    assert_eq!(lengths.average("org", "u", Kind::Memory), Some(avg));
    assert_eq!(lengths.average("org", "u", Kind::Observation), Some(3.0));
    assert_eq!(lengths.average("org", "v", Kind::Turn), Some(4.0));
    assert_eq!(
        vectors[0],
        engram_core::bm25::document_vector_at("short note", avg)
    );
    store.close().await.unwrap();
}

/// Closed segments of Edge's own WAL in `dir`.
fn closed_wal_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("closed-")
        })
        .count()
}

/// Writes 200 points with 4,000-character texts 90 times over, enough to
/// fill more than two of Edge's 32 MiB WAL segments; returns the points.
async fn fill_the_wal(store: &EdgeStore, dense: [f32; 4]) -> Vec<Point> {
    let s = scope("org", "u", "s");
    let filler = "x".repeat(4_000);
    let base: Vec<Point> = (0..200)
        .map(|i| point(&s, Kind::Turn, &format!("{i} {filler}"), i, dense))
        .collect();
    for _ in 0..90 {
        store.upsert(base.clone()).await.unwrap();
    }
    base
}

#[tokio::test]
async fn the_edge_wal_is_trimmed_on_open_and_later_updates_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let base = fill_the_wal(&store, [1.0, 0.0, 0.0, 0.0]).await;
    store.close().await.unwrap();
    drop(store);
    assert!(closed_wal_segments(dir.path()) >= 2);

    let store = open(dir.path());
    assert_eq!(closed_wal_segments(dir.path()), 1);
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 200);
    // The WAL numbers operations on from where it was, so an update of an
    // existing point is newer than the point and applies; a log numbered
    // from 0 again would be ignored as outdated.
    let mut changed = base[0].clone();
    changed.payload.text = "changed".into();
    store.upsert(vec![changed.clone()]).await.unwrap();
    let ids = [changed.fragment_id.clone()];
    assert_eq!(store.get("org", &ids).await.unwrap()[0].text, "changed");
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.get("org", &ids).await.unwrap()[0].text, "changed");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_maintenance_pass_reopens_the_shard_when_its_wal_is_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(
        dir.path(),
        EdgeStoreOptions {
            wal_limit_bytes: 1,
            ..options()
        },
    )
    .unwrap();
    let base = fill_the_wal(&store, [0.0, 1.0, 0.0, 0.0]).await;
    assert!(closed_wal_segments(dir.path()) >= 2);
    store.optimize_now().await.unwrap();
    // Trimmed while the store stays open and serving.
    assert_eq!(closed_wal_segments(dir.path()), 1);
    store.ready().await.unwrap();
    assert_eq!(store.stats().await.unwrap().journal_bytes, 0);
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 200);
    let mut changed = base[3].clone();
    changed.payload.text = "changed after the reopen".into();
    // A vector of its own, so the search below has one best answer.
    changed.dense = vec![1.0, 0.0, 0.0, 0.0];
    store.upsert(vec![changed.clone()]).await.unwrap();
    let ids = [changed.fragment_id.clone()];
    assert_eq!(
        store.get("org", &ids).await.unwrap()[0].text,
        "changed after the reopen"
    );
    let hits = store
        .hybrid_search(&query(
            ScopeFilter::tenant("org"),
            [1.0, 0.0, 0.0, 0.0],
            "changed reopen",
        ))
        .await
        .unwrap();
    assert_eq!(hits[0].payload.fragment_id, changed.fragment_id);
    store.close().await.unwrap();
}

/// The write generation moves with every applied write and with nothing
/// else: not with reads, a delete of nothing, another tenant's ids, an
/// optimization or a compaction.
#[tokio::test]
async fn write_generation_moves_with_writes_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let generation = || store.write_generation().expect("the embedded store tells");
    let start = generation();
    let points = bulk("org", 20, 0);
    let ids: Vec<String> = points
        .iter()
        .map(|p| p.payload.fragment_id.clone())
        .collect();
    store.upsert(points).await.unwrap();
    let written = generation();
    assert_ne!(written, start);

    store.get("org", &ids).await.unwrap();
    store.count(&ScopeFilter::tenant("org")).await.unwrap();
    store
        .hybrid_search(&query(
            ScopeFilter::tenant("org"),
            [1.0, 0.0, 0.0, 0.0],
            "note",
        ))
        .await
        .unwrap();
    store.delete("org", &["f_missing".into()]).await.unwrap();
    store.delete("other", &ids).await.unwrap();
    store.optimize_now().await.unwrap();
    store.compact_now().await.unwrap();
    assert_eq!(generation(), written);

    store.delete("org", &ids[..1]).await.unwrap();
    assert_ne!(generation(), written);
    store.close().await.unwrap();
}
