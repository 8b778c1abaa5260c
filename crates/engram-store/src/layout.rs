//! Moving a shard written for Qdrant's IDF modifier to the current layout.
//!
//! Stores written before BM25 weights came from each user's own memory
//! gave the `bm25` vector Qdrant's IDF modifier, which multiplies in an IDF
//! counted over every point of the shard (every tenant). The current layout
//! has no modifier: recall sends the user's IDF as the query weights. Edge
//! cannot change a vector's modifier in place (each segment records it and
//! a shard refuses segments that disagree), so the points, vectors and
//! payloads unchanged, are copied into a new shard beside the old one and
//! the shard's files are swapped. A crash during the copy leaves the old
//! shard as it was (the copy is dropped and redone on the next open); a
//! crash during the swap is finished on the next open.

use crate::mapping::{self, BM25, internal};
use engram_core::{Point, SparseVector, StoreError};
use qdrant_edge::{
    EdgeConfig, EdgeShard, Modifier, ScrollRequest, VectorInternal, VectorStructInternal,
    WithPayloadInterface, WithVector,
};
use std::path::Path;

/// Where the new shard is built, inside the store directory.
const MIGRATION_DIR: &str = ".bm25-layout";
/// Written into [`MIGRATION_DIR`] once the copy is complete and durable.
const DONE_FILE: &str = "complete";
/// The files and directories of an Edge shard.
const SHARD_ENTRIES: [&str; 3] = ["edge_config.json", "wal", "segments"];
/// Points copied per step.
const PAGE: usize = 1_000;

/// Whether the shard in `dir` has the old layout (BM25 with Qdrant's IDF).
pub(crate) fn is_legacy(dir: &Path) -> Result<bool, StoreError> {
    match EdgeConfig::load(dir) {
        None => Ok(false),
        Some(Ok(config)) => Ok(config
            .sparse_vectors
            .get(BM25)
            .is_some_and(|p| p.modifier == Some(Modifier::Idf))),
        Some(Err(e)) => Err(StoreError::Internal(format!(
            "cannot read the shard configuration in {}: {e}",
            dir.display()
        ))),
    }
}

/// Finishes a swap that a crash interrupted, or removes a copy it left
/// unfinished. Call before opening the shard.
pub(crate) fn recover(dir: &Path) -> Result<(), StoreError> {
    let staging = dir.join(MIGRATION_DIR);
    if !staging.exists() {
        return Ok(());
    }
    if staging.join(DONE_FILE).exists() {
        tracing::info!(dir = %dir.display(), "finishing an interrupted bm25 layout migration");
        swap(dir)
    } else {
        tracing::warn!(dir = %dir.display(), "dropping an unfinished bm25 layout migration");
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))
    }
}

/// Copies every point of `legacy` (the loaded old-layout shard of `dir`)
/// into a new shard with `config`, then swaps the new shard's files in.
/// Returns the number of points copied. `legacy` is consumed: it must be
/// closed before its files go.
pub(crate) fn migrate(
    dir: &Path,
    legacy: EdgeShard,
    config: EdgeConfig,
) -> Result<u64, StoreError> {
    let staging = dir.join(MIGRATION_DIR);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let fresh = EdgeShard::new(&staging, config).map_err(|e| {
        StoreError::Internal(format!("cannot create shard in {}: {e}", staging.display()))
    })?;
    for op in mapping::index_operations() {
        fresh.update(op).map_err(internal)?;
    }
    let mut copied = 0u64;
    let mut offset = None;
    loop {
        let (records, next) = legacy
            .scroll(ScrollRequest {
                offset,
                limit: Some(PAGE),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(true),
                order_by: None,
            })
            .map_err(internal)?;
        let points = records
            .into_iter()
            .map(|record| {
                let payload = mapping::decode_payload(record.payload)
                    .map_err(|e| StoreError::Internal(format!("point {}: {e}", record.id)))?;
                let dense = mapping::dense_vector(record.vector.as_ref())
                    .ok_or_else(|| {
                        StoreError::Internal(format!("point {} has no dense vector", record.id))
                    })?
                    .to_vec();
                Ok(Point {
                    fragment_id: payload.fragment_id.clone(),
                    sparse: sparse_vector(record.vector.as_ref()),
                    payload,
                    dense,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if !points.is_empty() {
            copied += points.len() as u64;
            fresh
                .update(mapping::upsert_operation(&points)?)
                .map_err(internal)?;
        }
        match next {
            Some(id) => offset = Some(id),
            None => break,
        }
    }
    fresh.flush();
    drop(fresh);
    drop(legacy);
    let done = staging.join(DONE_FILE);
    std::fs::write(&done, b"").map_err(|e| io(&done, e))?;
    sync_dir(&staging)?;
    swap(dir)?;
    Ok(copied)
}

/// The BM25 vector of a returned point (empty when it has none: a text of
/// stop words only).
fn sparse_vector(vectors: Option<&VectorStructInternal>) -> SparseVector {
    match vectors {
        Some(VectorStructInternal::Named(map)) => match map.get(BM25) {
            Some(VectorInternal::Sparse(v)) => SparseVector {
                indices: v.indices.clone(),
                values: v.values.clone(),
            },
            _ => SparseVector::default(),
        },
        _ => SparseVector::default(),
    }
}

/// Replaces the shard's entries in `dir` by those of the finished copy,
/// one by one; each step can be redone, so a crash half-way is finished by
/// [`recover`].
fn swap(dir: &Path) -> Result<(), StoreError> {
    let staging = dir.join(MIGRATION_DIR);
    for entry in SHARD_ENTRIES {
        let new = staging.join(entry);
        if !new.exists() {
            continue;
        }
        let old = dir.join(entry);
        if old.is_dir() {
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        } else if old.exists() {
            std::fs::remove_file(&old).map_err(|e| io(&old, e))?;
        }
        std::fs::rename(&new, &old).map_err(|e| io(&new, e))?;
    }
    sync_dir(dir)?;
    std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(dir, e))
}

fn io(path: &Path, err: std::io::Error) -> StoreError {
    StoreError::Internal(format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EdgeStore, EdgeStoreOptions};
    use engram_core::{Kind, ScopeFilter, VectorStore};
    use engram_store_contract::fixtures::{point, scope};
    use qdrant_edge::EdgeSparseVectorParams;

    fn options() -> EdgeStoreOptions {
        EdgeStoreOptions {
            dense_dim: engram_store_contract::DIM,
            ..EdgeStoreOptions::default()
        }
    }

    /// A shard as stores were written before: BM25 with Qdrant's IDF.
    fn legacy_config() -> EdgeConfig {
        let mut config = mapping::edge_config(&options());
        config.sparse_vectors.insert(
            BM25.to_owned(),
            EdgeSparseVectorParams::builder()
                .modifier(Modifier::Idf)
                .build(),
        );
        config
    }

    /// Points of two users: "lyon" is in every point of u's but rare in the
    /// shard as a whole, "rome" in one point of u's.
    fn points() -> Vec<Point> {
        let u = scope("org", "u", "s");
        let v = scope("org", "v", "s");
        let mut points: Vec<Point> = (0..4)
            .map(|i| {
                point(
                    &u,
                    Kind::Turn,
                    &format!("lyon note{i}"),
                    i,
                    [1.0, 0.0, 0.0, 0.0],
                )
            })
            .collect();
        points.push(point(&u, Kind::Turn, "rome", 9, [0.0, 1.0, 0.0, 0.0]));
        points.extend((0..30).map(|i| {
            point(
                &v,
                Kind::Turn,
                &format!("paris w{i}"),
                i,
                [0.0, 0.0, 1.0, 0.0],
            )
        }));
        points
    }

    fn write_legacy(dir: &Path) {
        let shard = EdgeShard::new(dir, legacy_config()).unwrap();
        for op in mapping::index_operations() {
            shard.update(op).unwrap();
        }
        shard
            .update(mapping::upsert_operation(&points()).unwrap())
            .unwrap();
        shard.flush();
    }

    async fn check_migrated(dir: &Path) {
        let store = EdgeStore::open(dir, options()).unwrap();
        assert!(!is_legacy(dir).unwrap());
        assert!(!dir.join(MIGRATION_DIR).exists());
        assert_eq!(
            store.count(&ScopeFilter::tenant("org")).await.unwrap(),
            points().len() as u64
        );
        let ids: Vec<String> = points().iter().map(|p| p.fragment_id.clone()).collect();
        let mut got = store.get("org", &ids).await.unwrap();
        got.sort_by(|a, b| a.fragment_id.cmp(&b.fragment_id));
        let mut want: Vec<_> = points().into_iter().map(|p| p.payload).collect();
        want.sort_by(|a, b| a.fragment_id.cmp(&b.fragment_id));
        assert_eq!(got, want);
        store.close().await.unwrap();
        // It scores BM25 by the query's weights alone (the contract's check,
        // on the migrated store beside its points).
        let store = std::sync::Arc::new(EdgeStore::open(dir, options()).unwrap());
        engram_store_contract::checks::bm25_weights_are_the_querys_own(store.clone()).await;
        store.close().await.unwrap();
        // And it opens again as a current store.
        EdgeStore::open(dir, options())
            .unwrap()
            .close()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_legacy_shard_is_moved_on_open() {
        let dir = tempfile::tempdir().unwrap();
        write_legacy(dir.path());
        assert!(is_legacy(dir.path()).unwrap());
        check_migrated(dir.path()).await;
    }

    #[tokio::test]
    async fn an_unfinished_copy_is_dropped_and_redone() {
        let dir = tempfile::tempdir().unwrap();
        write_legacy(dir.path());
        let staging = dir.path().join(MIGRATION_DIR);
        std::fs::create_dir_all(&staging).unwrap();
        // A crash during the copy: a half-filled shard, no completion mark.
        let half = EdgeShard::new(&staging, mapping::edge_config(&options())).unwrap();
        half.update(mapping::upsert_operation(&points()[..3]).unwrap())
            .unwrap();
        half.flush();
        drop(half);
        check_migrated(dir.path()).await;
    }

    #[tokio::test]
    async fn an_interrupted_swap_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        write_legacy(dir.path());
        let staging = dir.path().join(MIGRATION_DIR);
        std::fs::create_dir_all(&staging).unwrap();
        let full = EdgeShard::new(&staging, mapping::edge_config(&options())).unwrap();
        for op in mapping::index_operations() {
            full.update(op).unwrap();
        }
        full.update(mapping::upsert_operation(&points()).unwrap())
            .unwrap();
        full.flush();
        drop(full);
        std::fs::write(staging.join(DONE_FILE), b"").unwrap();
        // A crash after the configuration was swapped, before the rest.
        std::fs::remove_file(dir.path().join("edge_config.json")).unwrap();
        std::fs::rename(
            staging.join("edge_config.json"),
            dir.path().join("edge_config.json"),
        )
        .unwrap();
        check_migrated(dir.path()).await;
    }
}
