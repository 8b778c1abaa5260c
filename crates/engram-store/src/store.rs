//! [`EdgeStore`]: the [`VectorStore`] port on one Qdrant Edge shard.

use crate::journal::{Entry, Journal};
use crate::mapping::{self, internal};
use crate::options::EdgeStoreOptions;
use async_trait::async_trait;
use engram_core::{
    HybridQuery, Point, PointPayload, ScopeFilter, ScoredPoint, StoreError, VectorStore,
};
use parking_lot::{Mutex, RwLock};
use qdrant_edge::{
    CountRequest, EdgeShard, Filter, PointId, ScrollRequest, WithPayloadInterface, WithVector,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// File Edge writes when it creates a shard; its presence means "load".
const EDGE_CONFIG_FILE: &str = "edge_config.json";

/// Our file beside the shard naming the embedding model of its vectors.
const MODEL_TAG_FILE: &str = "embedding-model.json";

/// Figures about the shard, for health pages and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeStoreStats {
    /// Segments in the shard.
    pub segments: usize,
    /// Points in the shard (approximate while an optimization runs).
    pub points: usize,
    /// Vectors reachable through an index: every BM25 vector (sparse vectors
    /// are always indexed) plus the dense vectors of HNSW-indexed segments;
    /// the remaining dense vectors are scanned.
    pub indexed_vectors: usize,
    /// Bytes of upserts journaled since the last checkpoint.
    pub journal_bytes: u64,
}

/// The embedded vector store: one Qdrant Edge shard in a directory, plus a
/// redo journal (see the `journal` module) and a background task that
/// optimizes and checkpoints the shard.
///
/// Edge is synchronous, so every call runs on tokio's blocking pool. The
/// shard sits behind an `RwLock<Option<_>>`: all operations, including
/// optimization, share the read side (Edge does its own fine-grained
/// locking), and only [`close`](VectorStore::close) takes the write side to
/// remove the shard.
#[derive(Debug)]
pub struct EdgeStore {
    inner: Arc<Inner>,
    maintenance_task: Mutex<Option<JoinHandle<()>>>,
}

/// State shared by the store, its blocking calls and its background task.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) options: EdgeStoreOptions,
    /// `None` once closed.
    pub(crate) shard: RwLock<Option<EdgeShard>>,
    /// Held while an upsert or delete journals and applies itself, and while a
    /// checkpoint flushes and empties the journal: a checkpoint must never
    /// drop a record the shard has not applied yet. It also keeps `update`
    /// off Edge's WAL mutex while `EdgeShard::flush` runs, since `flush`
    /// panics rather than wait for that mutex.
    pub(crate) journal: Mutex<Journal>,
    /// Held by `optimize` and by checkpoints: `EdgeShard::flush` panics when
    /// the optimizer holds (or waits for) the segment holder's write lock.
    pub(crate) maintenance: Mutex<()>,
    /// Points written since the last maintenance pass.
    pub(crate) pending: AtomicU64,
    /// When the last write happened, in ms since `epoch`.
    pub(crate) last_write_ms: AtomicU64,
    /// Writes applied since open ([`VectorStore::write_generation`]):
    /// raised after the shard applied each one, so a reader that saw a
    /// value before reading the shard sees a different one after any
    /// write that reading could have missed.
    pub(crate) generation: AtomicU64,
    pub(crate) epoch: Instant,
    /// Wakes the background task early when enough points are pending.
    pub(crate) wake: Arc<Notify>,
    /// Caller metadata keys indexed so far (see `engram_core::metadata_index`).
    pub(crate) metadata_indexes: engram_core::MetadataIndexes,
}

pub(crate) fn closed() -> StoreError {
    StoreError::Unavailable("embedded vector store is closed".into())
}

impl EdgeStore {
    /// Opens the store in `dir`: creates the shard when the directory holds
    /// none, otherwise loads it (checking that `options.dense_dim` matches),
    /// replays the journal, and starts the background optimizer.
    ///
    /// Must be called inside a tokio runtime (the optimizer is a tokio
    /// task). It does blocking file I/O, which is fine at startup.
    pub fn open(dir: &Path, options: EdgeStoreOptions) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Internal("EdgeStore::open must be called inside a tokio runtime".into())
        })?;
        if options.dense_dim == 0 {
            return Err(StoreError::Internal("dense_dim must be positive".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Internal(format!(
                "cannot create store directory {}: {e}",
                dir.display()
            ))
        })?;

        let started = Instant::now();
        let config = mapping::edge_config(&options);
        crate::layout::recover(dir)?;
        let existed = dir.join(EDGE_CONFIG_FILE).exists();
        let legacy = existed && crate::layout::is_legacy(dir)?;
        if existed {
            crate::edge_wal::trim(dir)?;
        }
        if let Some(model) = &options.embedding_model {
            match read_model_tag(dir, existed)? {
                Some(tag) => tag
                    .check(model, &format!("the embedded store in {}", dir.display()))
                    .map_err(StoreError::Internal)?,
                None => write_model_tag(dir, &engram_core::ModelTag::of(model.clone()))?,
            }
        }
        let cannot_open =
            |e| StoreError::Internal(format!("cannot open shard in {}: {e}", dir.display()));
        let shard = if legacy {
            // Its own configuration: the current one would not fit its segments.
            EdgeShard::load(dir, None)
        } else if existed {
            EdgeShard::load(dir, Some(config.clone()))
        } else {
            EdgeShard::new(dir, config.clone())
        }
        .map_err(cannot_open)?;
        for op in mapping::index_operations() {
            shard.update(op).map_err(internal)?;
        }
        let metadata_indexes = engram_core::MetadataIndexes::default();
        metadata_indexes.seed(shard.info().payload_schema.into_iter().map(|(key, info)| {
            (
                key.to_string(),
                mapping::metadata_index_kind(info.data_type),
            )
        }));

        let (mut journal, entries) = Journal::open(dir).map_err(|e| {
            StoreError::Internal(format!("cannot open journal in {}: {e}", dir.display()))
        })?;
        let mut replayed = 0;
        for entry in &entries {
            // An entry the shard rejects would be rejected on every start;
            // skipping it (loudly) keeps the store usable.
            match replay(&shard, entry) {
                Ok(n) => replayed += n,
                Err(err) => tracing::error!(
                    entry = entry.describe(),
                    error = %err,
                    "skipping journal entry the shard rejects"
                ),
            }
        }
        // Persist the index schema and the replayed points, then start with
        // an empty journal.
        shard.flush();
        journal.reset().map_err(internal)?;
        let shard = if legacy {
            let points = crate::layout::migrate(dir, shard, config.clone())?;
            tracing::info!(
                dir = %dir.display(),
                points,
                "embedded store moved to per-user bm25 weights"
            );
            EdgeShard::load(dir, Some(config)).map_err(cannot_open)?
        } else {
            shard
        };

        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            options,
            shard: RwLock::new(Some(shard)),
            journal: Mutex::new(journal),
            maintenance: Mutex::new(()),
            // Replayed writes have not been through the optimizer yet.
            pending: AtomicU64::new(replayed as u64),
            last_write_ms: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            epoch: Instant::now(),
            wake: Arc::new(Notify::new()),
            metadata_indexes,
        });
        let task = runtime.spawn(crate::maintenance::run(
            Arc::downgrade(&inner),
            Arc::clone(&inner.wake),
        ));
        tracing::info!(
            dir = %dir.display(),
            created = !existed,
            replayed_writes = replayed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded vector store open"
        );
        Ok(Self {
            inner,
            maintenance_task: Mutex::new(Some(task)),
        })
    }

    /// Runs the optimizer now (merging segments, building HNSW indexes where
    /// segments passed the indexing threshold) and checkpoints the shard.
    /// Returns whether any segment changed.
    ///
    /// Searches and upserts keep running meanwhile: Edge builds the new
    /// segment beside the old ones and only locks the segment list to swap
    /// them.
    pub async fn optimize_now(&self) -> Result<bool, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking("optimize", move || inner.maintain("explicit")).await
    }

    /// Merges the shard down to `compact_segment_number` segments now, as
    /// the background task does once writes have paused for
    /// `compact_when_idle`. Returns whether a segment changed.
    pub async fn compact_now(&self) -> Result<bool, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking("compaction", move || inner.compact()).await
    }

    /// Segment, point and index figures of the shard.
    pub async fn stats(&self) -> Result<EdgeStoreStats, StoreError> {
        self.with_shard("stats", |inner, shard| {
            let info = shard.info();
            Ok(EdgeStoreStats {
                segments: info.segments_count,
                points: info.points_count,
                indexed_vectors: info.indexed_vectors_count,
                journal_bytes: inner.journal.lock().bytes(),
            })
        })
        .await
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs `f` on the open shard in the blocking pool.
    async fn with_shard<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &EdgeShard) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(what, move || {
            let guard = inner.shard.read();
            let shard = guard.as_ref().ok_or_else(closed)?;
            f(&inner, shard)
        })
        .await
    }

    /// Creates the payload indexes `filter`'s metadata conditions can use
    /// and the store does not have yet (once per key; see
    /// `engram_core::metadata_index`). The first filtered search on a key
    /// pays for building its index; every later one starts from it.
    async fn index_metadata(&self, filter: &ScopeFilter) -> Result<(), StoreError> {
        let missing = self
            .inner
            .metadata_indexes
            .missing(filter.metadata.as_ref());
        if missing.is_empty() {
            return Ok(());
        }
        self.with_shard("create metadata index", move |inner, shard| {
            for (field, kind) in missing {
                let started = Instant::now();
                let made = mapping::metadata_index_operation(&field, kind).and_then(|op| {
                    // Edge's `update` must not run while a checkpoint flushes.
                    let _journal = inner.journal.lock();
                    shard.update(op).map_err(internal)
                });
                match made {
                    Ok(()) => tracing::info!(
                        field = %field,
                        kind = kind.as_str(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "metadata payload index created"
                    ),
                    Err(err) => {
                        inner.metadata_indexes.failed(&field);
                        return Err(err);
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// The caller metadata keys indexed so far, with their index types.
    pub fn metadata_indexes(&self) -> Vec<(String, engram_core::MetadataIndexKind)> {
        self.inner.metadata_indexes.known()
    }

    fn stop_maintenance(&self) {
        if let Some(task) = self.maintenance_task.lock().take() {
            task.abort();
        }
    }
}

/// Applies one journal entry to the shard; returns how many points it wrote
/// or removed, for the optimizer policy.
fn replay(shard: &EdgeShard, entry: &Entry) -> Result<usize, StoreError> {
    match entry {
        Entry::Upsert(points) => {
            shard
                .update(mapping::upsert_operation(points)?)
                .map_err(internal)?;
            Ok(points.len())
        }
        Entry::Delete(fragment_ids) => {
            let ids = fragment_ids
                .iter()
                .map(|id| mapping::point_id(id))
                .collect::<Result<Vec<_>, _>>()?;
            shard
                .update(mapping::delete_operation(ids))
                .map_err(internal)?;
            Ok(fragment_ids.len())
        }
    }
}

impl Entry {
    /// A short description for logs (the full entry may be megabytes).
    fn describe(&self) -> String {
        match self {
            Entry::Upsert(points) => format!("upsert of {} points", points.len()),
            Entry::Delete(ids) => format!("delete of {} points", ids.len()),
        }
    }
}

/// The fragment ids among `wanted` (point id → fragment id) that the shard
/// holds for tenant `org_id`; blocking.
fn own_fragments(
    shard: &EdgeShard,
    org_id: &str,
    wanted: &HashMap<PointId, String>,
) -> Result<HashSet<String>, StoreError> {
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    let point_ids: Vec<_> = wanted.keys().copied().collect();
    let fields = vec![
        mapping::field_path("org_id"),
        mapping::field_path("fragment_id"),
    ];
    let records = shard
        .retrieve(
            &point_ids,
            Some(WithPayloadInterface::Fields(fields)),
            Some(WithVector::Bool(false)),
        )
        .map_err(internal)?;
    Ok(records
        .into_iter()
        .filter_map(|record| {
            let payload = record.payload?.0;
            let fragment_id = wanted.get(&record.id)?;
            // Same org, and the full 64-hex id: the point id only covers
            // its first half.
            (payload.get("org_id")?.as_str()? == org_id
                && payload.get("fragment_id")?.as_str()? == fragment_id)
                .then(|| fragment_id.clone())
        })
        .collect())
}

/// The full payloads of the `wanted` points that belong to `org_id`.
fn own_payloads(
    shard: &EdgeShard,
    org_id: &str,
    wanted: &HashMap<PointId, String>,
) -> Result<Vec<PointPayload>, StoreError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let point_ids: Vec<_> = wanted.keys().copied().collect();
    let records = shard
        .retrieve(
            &point_ids,
            Some(WithPayloadInterface::Bool(true)),
            Some(WithVector::Bool(false)),
        )
        .map_err(internal)?;
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let Some(fragment_id) = wanted.get(&record.id) else {
            continue;
        };
        let payload = mapping::decode_payload(record.payload)?;
        if payload.org_id == org_id && &payload.fragment_id == fragment_id {
            out.push(payload);
        }
    }
    Ok(out)
}

/// Payloads per scroll page: bounds the memory of one engine call, while
/// the caller's `limit` bounds the answer.
const SCROLL_PAGE: usize = 1_000;

/// Up to `limit` payloads of the points matching `filter`, page by page in
/// point id order; blocking. A payload that does not decode fails the
/// call: a caller deleting what it got must not silently miss a point.
fn scroll_payloads(
    shard: &EdgeShard,
    filter: Filter,
    limit: usize,
) -> Result<Vec<PointPayload>, StoreError> {
    let mut out = Vec::new();
    let mut offset = None;
    while out.len() < limit {
        let (records, next) = shard
            .scroll(ScrollRequest {
                offset,
                limit: Some((limit - out.len()).min(SCROLL_PAGE)),
                filter: Some(filter.clone()),
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(false),
                order_by: None,
            })
            .map_err(internal)?;
        for record in records {
            let payload = mapping::decode_payload(record.payload)
                .map_err(|e| StoreError::Internal(format!("point {}: {e}", record.id)))?;
            out.push(payload);
        }
        // `next` is the first id of the following page, `None` at the end.
        match next {
            Some(id) => offset = Some(id),
            None => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// The tag in `dir`; an existing shard without one was filled by
/// [`engram_core::UNTAGGED_MODEL`], a new one has none yet.
fn read_model_tag(dir: &Path, existed: bool) -> Result<Option<engram_core::ModelTag>, StoreError> {
    let path = dir.join(MODEL_TAG_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StoreError::Internal(format!("{} is not a model tag: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(existed.then(|| engram_core::ModelTag::of(engram_core::UNTAGGED_MODEL)))
        }
        Err(e) => Err(StoreError::Internal(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Replaces the tag in `dir` atomically and durably (temporary file,
/// fsync, rename, fsync of the directory).
fn write_model_tag(dir: &Path, tag: &engram_core::ModelTag) -> Result<(), StoreError> {
    use std::io::Write as _;
    let path = dir.join(MODEL_TAG_FILE);
    let tmp = dir.join(format!("{MODEL_TAG_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(tag).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| StoreError::Internal(format!("cannot write {}: {e}", path.display())))
}

/// Point id → fragment id of the well-formed ids among `ids`. Malformed ids
/// cannot be stored, so they are simply absent.
fn wanted_points(ids: &[String]) -> HashMap<PointId, String> {
    ids.iter()
        .filter_map(|id| mapping::point_id(id).ok().map(|pid| (pid, id.clone())))
        .collect()
}

/// Runs a synchronous store call on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(what: &'static str, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal(format!("{what} failed: {e}")))?
}

impl Inner {
    /// Records `n` written points for the optimizer policy.
    fn note_writes(&self, n: usize) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let pending = self.pending.fetch_add(n as u64, Ordering::AcqRel) + n as u64;
        self.last_write_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
        if pending >= self.options.optimize_after_points {
            self.wake.notify_one();
        }
    }

    /// Time since the last write (since open when there was none).
    pub(crate) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_write_ms.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Optimizes and checkpoints the shard, then reopens it if Edge's WAL
    /// grew past its limit; blocking. Returns whether the optimizer changed
    /// any segment.
    pub(crate) fn maintain(&self, reason: &'static str) -> Result<bool, StoreError> {
        let optimized = self.optimize_and_checkpoint(reason, None)?;
        self.trim_wal_if_over()?;
        Ok(optimized)
    }

    /// One optimizer pass and a checkpoint; with `merge_to`, the pass
    /// merges the shard down to that many segments (nothing to do when it
    /// has no more).
    pub(crate) fn optimize_and_checkpoint(
        &self,
        reason: &'static str,
        merge_to: Option<usize>,
    ) -> Result<bool, StoreError> {
        let guard = self.shard.read();
        let shard = guard.as_ref().ok_or_else(closed)?;
        let _maintenance = self.maintenance.lock();
        if merge_to.is_some_and(|target| shard.info().segments_count <= target) {
            return Ok(false);
        }
        let pending = self.pending.load(Ordering::Acquire);

        let started = Instant::now();
        let optimized = match merge_to {
            None => shard.optimize().map_err(internal),
            Some(target) => crate::maintenance::optimize_down_to(shard, target),
        };
        let optimize_ms = started.elapsed().as_millis() as u64;
        // Checkpoint even when the optimizer failed: the journal should not
        // grow because of it.
        let checkpoint = self.checkpoint(shard);
        let optimized = optimized?;
        checkpoint?;
        self.pending.fetch_sub(pending, Ordering::AcqRel);

        let info = shard.info();
        tracing::info!(
            reason,
            pending_points = pending,
            optimized,
            optimize_ms,
            total_ms = started.elapsed().as_millis() as u64,
            segments = info.segments_count,
            points = info.points_count,
            indexed_vectors = info.indexed_vectors_count,
            "vector store maintained"
        );
        Ok(optimized)
    }

    /// Makes the shard durable and empties the journal. The caller holds
    /// `maintenance` (or the shard's write lock), so no optimization runs.
    pub(crate) fn checkpoint(&self, shard: &EdgeShard) -> Result<(), StoreError> {
        let mut journal = self.journal.lock();
        shard.flush();
        journal.reset().map_err(|e| {
            StoreError::Internal(format!(
                "cannot reset journal {}: {e}",
                journal.path().display()
            ))
        })
    }
}

impl Drop for EdgeStore {
    fn drop(&mut self) {
        // The task holds the store only weakly, so the shard is dropped (and
        // flushed by Edge) here, or once a blocking call still in flight
        // ends. The journal stays and is replayed, harmlessly, on the next
        // open.
        self.stop_maintenance();
    }
}

#[async_trait]
impl VectorStore for EdgeStore {
    async fn existing(&self, org_id: &str, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let wanted = wanted_points(ids);
        let org_id = org_id.to_owned();
        self.with_shard("existing", move |_, shard| {
            own_fragments(shard, &org_id, &wanted)
        })
        .await
    }

    async fn get(&self, org_id: &str, ids: &[String]) -> Result<Vec<PointPayload>, StoreError> {
        let wanted = wanted_points(ids);
        let org_id = org_id.to_owned();
        self.with_shard("get", move |_, shard| own_payloads(shard, &org_id, &wanted))
            .await
    }

    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        if points.is_empty() {
            // Nothing to write, but a closed store still says so.
            return self.ready().await;
        }
        let dim = self.inner.options.dense_dim;
        for point in &points {
            point.validate(dim)?;
        }
        let n = points.len();
        self.with_shard("upsert", move |inner, shard| {
            let op = mapping::upsert_operation(&points)?;
            let mut journal = inner.journal.lock();
            journal.append(&points).map_err(|e| {
                StoreError::Internal(format!(
                    "cannot write journal {}: {e}",
                    journal.path().display()
                ))
            })?;
            shard.update(op).map_err(internal)?;
            drop(journal);
            inner.note_writes(n);
            Ok(())
        })
        .await
    }

    async fn delete(&self, org_id: &str, ids: &[String]) -> Result<(), StoreError> {
        let wanted = wanted_points(ids);
        let org_id = org_id.to_owned();
        self.with_shard("delete", move |inner, shard| {
            // The tenant check, the journal record and the delete happen
            // under the journal lock, so no upsert interleaves and a
            // checkpoint cannot empty the journal before the shard applied
            // the delete.
            let mut journal = inner.journal.lock();
            // Only the tenant's own points: a foreign id is ignored like a
            // missing one.
            let own: Vec<String> = own_fragments(shard, &org_id, &wanted)?
                .into_iter()
                .collect();
            if own.is_empty() {
                return Ok(());
            }
            let point_ids = own
                .iter()
                .map(|id| mapping::point_id(id))
                .collect::<Result<Vec<_>, _>>()?;
            // Journaled before it is applied, like an upsert: otherwise a
            // crash before the next checkpoint would replay an earlier
            // upsert of these points and bring them back.
            journal.append_delete(&own).map_err(|e| {
                StoreError::Internal(format!(
                    "cannot write journal {}: {e}",
                    journal.path().display()
                ))
            })?;
            shard
                .update(mapping::delete_operation(point_ids))
                .map_err(internal)?;
            drop(journal);
            inner.note_writes(own.len());
            Ok(())
        })
        .await
    }

    async fn hybrid_search(&self, query: &HybridQuery) -> Result<Vec<ScoredPoint>, StoreError> {
        let dim = self.inner.options.dense_dim;
        if query.dense.len() != dim {
            return Err(StoreError::Internal(format!(
                "query vector has dimension {}, store expects {dim}",
                query.dense.len()
            )));
        }
        if query.limit == 0 {
            return self.ready().await.map(|()| Vec::new());
        }
        self.index_metadata(&query.filter).await?;
        let mut query = query.clone();
        // A prefetch shorter than the limit would starve the fused list.
        query.prefetch = query.prefetch.max(query.limit);
        let request = mapping::hybrid_request(&query)?;
        let unit_query = mapping::normalized(&query.dense);
        self.with_shard("hybrid search", move |_, shard| {
            let hits = shard.query(request).map_err(internal)?;
            let mut out = Vec::with_capacity(hits.len());
            for hit in hits {
                let dense_score = mapping::dense_vector(hit.vector.as_ref())
                    .map(|v| mapping::dot(&unit_query, v));
                match mapping::decode_payload(hit.payload) {
                    Ok(payload) => out.push(ScoredPoint {
                        payload,
                        score: hit.score,
                        dense_score,
                        // The fused query does not expose per-prefetch ranks.
                        dense_rank: None,
                        sparse_rank: None,
                    }),
                    Err(err) => tracing::warn!(
                        point_id = %hit.id,
                        error = %err,
                        "skipping hit whose payload does not decode"
                    ),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn count(&self, filter: &ScopeFilter) -> Result<u64, StoreError> {
        let request = CountRequest {
            filter: Some(crate::filter::scope_filter(filter)?),
            exact: true,
        };
        self.index_metadata(filter).await?;
        self.with_shard("count", move |_, shard| {
            shard.count(request).map(|n| n as u64).map_err(internal)
        })
        .await
    }

    async fn scroll(
        &self,
        filter: &ScopeFilter,
        limit: usize,
    ) -> Result<Vec<PointPayload>, StoreError> {
        let edge_filter = crate::filter::scope_filter(filter)?;
        self.index_metadata(filter).await?;
        let filter = edge_filter;
        self.with_shard("scroll", move |_, shard| {
            scroll_payloads(shard, filter, limit)
        })
        .await
    }

    async fn scan(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<PointPayload>, Option<String>), StoreError> {
        let offset = cursor
            .map(|c| {
                uuid::Uuid::parse_str(&c)
                    .map(PointId::Uuid)
                    .map_err(|_| StoreError::Internal(format!("invalid scan cursor {c:?}")))
            })
            .transpose()?;
        self.with_shard("scan", move |_, shard| {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(limit.clamp(1, SCROLL_PAGE)),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(false),
                    order_by: None,
                })
                .map_err(internal)?;
            let payloads = records
                .into_iter()
                .map(|record| {
                    mapping::decode_payload(record.payload)
                        .map_err(|e| StoreError::Internal(format!("point {}: {e}", record.id)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((payloads, next.map(|id| id.to_string())))
        })
        .await
    }

    async fn model_tag(&self) -> Result<engram_core::ModelTag, StoreError> {
        let dir = self.inner.dir.clone();
        blocking("model tag", move || {
            Ok(read_model_tag(&dir, true)?
                .unwrap_or_else(|| engram_core::ModelTag::of(engram_core::UNTAGGED_MODEL)))
        })
        .await
    }

    async fn set_model_tag(&self, tag: &engram_core::ModelTag) -> Result<(), StoreError> {
        let dir = self.inner.dir.clone();
        let tag = tag.clone();
        blocking("model tag", move || write_model_tag(&dir, &tag)).await
    }

    fn write_generation(&self) -> Option<u64> {
        // Every write goes through this store: the process owns the
        // shard's directory.
        Some(self.inner.generation.load(Ordering::Acquire))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        // `try_read` so a health check never waits behind a closing store.
        match self.inner.shard.try_read() {
            Some(guard) if guard.is_some() => Ok(()),
            _ => Err(closed()),
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.stop_maintenance();
        let inner = Arc::clone(&self.inner);
        blocking("close", move || {
            // Waits for running calls (including an optimization) to end.
            let mut guard = inner.shard.write();
            let Some(shard) = guard.take() else {
                return Ok(());
            };
            inner.checkpoint(&shard)?;
            drop(shard);
            tracing::info!(dir = %inner.dir.display(), "embedded vector store closed");
            Ok(())
        })
        .await
    }
}
