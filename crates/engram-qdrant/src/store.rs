//! [`QdrantStore`]: the [`VectorStore`] port on a Qdrant server.

use crate::error::{classify, timed_out};
use crate::mapping;
use crate::options::QdrantOptions;
use async_trait::async_trait;
use engram_core::{
    HybridQuery, Point, PointPayload, ScopeFilter, ScoredPoint, StoreError, VectorStore,
};
use qdrant_client::qdrant::{
    CollectionConfig, CollectionInfo, CountPoints, CreateFieldIndexCollection, DeletePoints,
    GetCollectionInfoRequest, GetPoints, PayloadIncludeSelector, PayloadIndexParams,
    PointsSelector, ScrollPoints, UpdateCollection, UpsertPoints, WithPayloadSelector,
    WithVectorsSelector, points_selector, with_payload_selector, with_vectors_selector,
};
use qdrant_client::{Qdrant, QdrantError};
use std::collections::HashSet;
use std::future::Future;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The distributed vector store: one collection on a Qdrant server, shared
/// by all tenants, with the same layout and query semantics as the embedded
/// store (`engram-store`).
///
/// Every write waits until the server has applied it (`wait = true`), so
/// it is durable on return. Every call is bounded by the configured
/// timeout. The client is cheap to clone (a pool of HTTP/2 channels), so
/// calls run concurrently without locking each other.
///
/// The collection is provisioned (created or checked) by
/// [`QdrantStore::connect`], or, for a store made with
/// [`QdrantStore::open`], by the first call that reaches the server: until
/// then every call tries again and fails `Unavailable` while the server
/// cannot be reached.
pub struct QdrantStore {
    /// `None` once closed.
    client: RwLock<Option<Qdrant>>,
    url: String,
    collection: String,
    dense_dim: usize,
    embedding_model: Option<String>,
    dense: mapping::DenseLayout,
    timeout: Duration,
    /// Set once the collection is known to be there with this layout and
    /// its payload indexes; until then every call provisions first.
    provisioned: AtomicBool,
    /// One provisioning attempt at a time, and how the last one failed.
    provisioning: tokio::sync::Mutex<Option<Failed>>,
    /// Caller metadata keys indexed so far (see `engram_core::metadata_index`).
    metadata_indexes: engram_core::MetadataIndexes,
}

/// A failed provisioning attempt, kept so that the callers that queued
/// behind it get its outcome instead of each making an attempt of its own
/// (each may take the whole timeout while the server does not answer).
struct Failed {
    at: Instant,
    unavailable: bool,
    message: String,
}

impl Failed {
    fn new(error: &StoreError) -> Self {
        let (unavailable, message) = match error {
            StoreError::Unavailable(m) => (true, m.clone()),
            StoreError::Internal(m) => (false, m.clone()),
        };
        Self {
            at: Instant::now(),
            unavailable,
            message,
        }
    }

    fn error(&self) -> StoreError {
        if self.unavailable {
            StoreError::Unavailable(self.message.clone())
        } else {
            StoreError::Internal(self.message.clone())
        }
    }
}

impl std::fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the API key; show only where the store points.
        f.debug_struct("QdrantStore")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("dense_dim", &self.dense_dim)
            .field("timeout", &self.timeout)
            .field("provisioned", &self.provisioned.load(Ordering::Relaxed))
            .field("closed", &self.client().is_err())
            .finish()
    }
}

/// Payloads per scroll request: bounds one response's size, while the
/// caller's `limit` bounds the answer.
const SCROLL_PAGE: usize = 1_000;

fn closed() -> StoreError {
    StoreError::Unavailable("Qdrant vector store is closed".into())
}

impl QdrantStore {
    /// The records of the well-formed ids among `ids`, without vectors, with
    /// the asked id set (a point id covers only half a fragment id, so the
    /// caller checks each record's full id against it). Malformed ids
    /// cannot be stored, so they simply are not asked for.
    async fn points_by_id<'a>(
        &self,
        what: &'static str,
        ids: &'a [String],
        payload: WithPayloadSelector,
    ) -> Result<(HashSet<&'a str>, Vec<qdrant_client::qdrant::RetrievedPoint>), StoreError> {
        self.client()?;
        let asked: HashSet<&str> = ids
            .iter()
            .filter(|id| mapping::point_id(id).is_ok())
            .map(String::as_str)
            .collect();
        if asked.is_empty() {
            return Ok((asked, Vec::new()));
        }
        let point_ids = asked
            .iter()
            .map(|id| mapping::point_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let request = GetPoints {
            collection_name: self.collection.clone(),
            ids: point_ids,
            with_payload: Some(payload),
            with_vectors: Some(WithVectorsSelector {
                selector_options: Some(with_vectors_selector::SelectorOptions::Enable(false)),
            }),
            ..GetPoints::default()
        };
        let found = self
            .call(what, |c| async move { c.get_points(request).await })
            .await?;
        Ok((asked, found.result))
    }

    /// Connects to the server and provisions the collection (see
    /// [`QdrantStore::provision`]).
    ///
    /// Fails with `Unavailable` when the server cannot be reached within the
    /// timeout, `Internal` for invalid options or a mismatched collection.
    pub async fn connect(options: QdrantOptions) -> Result<Self, StoreError> {
        let store = Self::open(options)?;
        store.provision().await?;
        Ok(store)
    }

    /// Checks the options and builds the client without contacting the
    /// server (its gRPC channels connect on first use), so a process can
    /// start serving before its database is up. The collection is
    /// provisioned by the first call that reaches the server.
    ///
    /// Fails with `Internal` for invalid options.
    pub fn open(options: QdrantOptions) -> Result<Self, StoreError> {
        if options.dense_dim == 0 {
            return Err(StoreError::Internal("dense_dim must be positive".into()));
        }
        if options.collection.is_empty() {
            return Err(StoreError::Internal(
                "the Qdrant collection name must not be empty".into(),
            ));
        }
        if options.timeout.is_zero() {
            return Err(StoreError::Internal("timeout_ms must be positive".into()));
        }
        let mut config = Qdrant::from_url(&options.url)
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            // The compatibility check prints to stdout and blocks on a
            // thread of its own; connect() makes a real round trip anyway.
            .skip_compatibility_check();
        config.api_key = options.api_key.clone();
        let client = Qdrant::new(config).map_err(|e| {
            StoreError::Internal(format!("invalid Qdrant url {:?}: {e}", options.url))
        })?;
        Ok(Self {
            client: RwLock::new(Some(client)),
            url: options.url,
            collection: options.collection,
            dense_dim: options.dense_dim,
            timeout: options.timeout,
            embedding_model: options.embedding_model,
            dense: options.dense,
            provisioned: AtomicBool::new(false),
            provisioning: tokio::sync::Mutex::new(None),
            metadata_indexes: engram_core::MetadataIndexes::default(),
        })
    }

    /// Makes sure the collection is there, once: it is created with its
    /// payload indexes when missing; when it exists its vectors must match
    /// the options (`dense` of `dense_dim`, cosine; `bm25`), or this fails
    /// naming the mismatch; a `bm25` with Qdrant's IDF modifier loses it. The payload indexes are (re)created,
    /// which is a no-op for indexes that exist, so this is safe from several
    /// processes at once. Once it succeeded it returns at once.
    ///
    /// Fails with `Unavailable` when the server cannot be reached within the
    /// timeout (or another call's attempt is still waiting for it),
    /// `Internal` for a mismatched collection.
    pub async fn provision(&self) -> Result<(), StoreError> {
        if self.provisioned.load(Ordering::Acquire) {
            return Ok(());
        }
        let asked = Instant::now();
        let Ok(mut last) = tokio::time::timeout(self.timeout, self.provisioning.lock()).await
        else {
            return Err(StoreError::Unavailable(format!(
                "collection {:?} on Qdrant at {} is still being provisioned",
                self.collection, self.url
            )));
        };
        if self.provisioned.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(failed) = last.as_ref().filter(|f| f.at >= asked) {
            return Err(failed.error());
        }
        match self.ensure_collection().await {
            Ok(created) => {
                self.provisioned.store(true, Ordering::Release);
                *last = None;
                tracing::info!(
                    url = %self.url,
                    collection = %self.collection,
                    dense_dim = self.dense_dim,
                    created,
                    elapsed_ms = asked.elapsed().as_millis() as u64,
                    "qdrant vector store connected"
                );
                Ok(())
            }
            Err(error) => {
                // Callers and the health probe report it; this runs on
                // every call while the server is away.
                tracing::debug!(url = %self.url, collection = %self.collection, %error, "qdrant collection not provisioned");
                *last = Some(Failed::new(&error));
                Err(error)
            }
        }
    }

    /// The existing collection's info (configuration, payload schema), in
    /// one round trip, without provisioning.
    async fn collection_info(&self) -> Result<CollectionInfo, StoreError> {
        let request = GetCollectionInfoRequest {
            collection_name: self.collection.clone(),
        };
        let info = self
            .request("collection info", |c| async move {
                c.collection_info(request).await
            })
            .await?;
        Ok(info.result.unwrap_or_default())
    }

    /// The existing collection's configuration (vectors, metadata).
    async fn collection_config(&self) -> Result<CollectionConfig, StoreError> {
        Ok(self.collection_info().await?.config.unwrap_or_default())
    }

    /// The model tag in the collection's metadata (untagged:
    /// [`engram_core::UNTAGGED_MODEL`]), without provisioning.
    async fn read_tag(&self) -> Result<engram_core::ModelTag, StoreError> {
        Ok(mapping::tag_of_metadata(
            &self.collection_config().await?.metadata,
        ))
    }

    /// The collection this store uses.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The server's gRPC url.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates the collection if it is missing, otherwise checks its
    /// vectors; then makes sure of every payload index. Returns whether it
    /// created the collection.
    async fn ensure_collection(&self) -> Result<bool, StoreError> {
        let name = self.collection.clone();
        let exists = self
            .request("collection check", |c| async move {
                c.collection_exists(name).await
            })
            .await?;
        let mut created = false;
        if !exists {
            let mut request =
                mapping::create_collection(&self.collection, self.dense_dim, self.dense);
            if let Some(model) = &self.embedding_model {
                request.metadata = mapping::tag_metadata(&engram_core::ModelTag::of(model.clone()));
            }
            match self
                .request("collection create", |c| async move {
                    c.create_collection(request).await
                })
                .await
            {
                Ok(_) => created = true,
                // Another process may have created it since the check;
                // then it must match like any existing collection.
                Err(StoreError::Internal(err)) if err.contains("already exists") => {}
                Err(err) => return Err(err),
            }
        }
        if !created {
            self.check_collection().await?;
        }
        for spec in mapping::index_specs() {
            let request = CreateFieldIndexCollection {
                collection_name: self.collection.clone(),
                wait: Some(true),
                field_name: spec.field.to_owned(),
                field_type: Some(spec.field_type.into()),
                field_index_params: Some(PayloadIndexParams {
                    index_params: Some(spec.params),
                }),
                ..CreateFieldIndexCollection::default()
            };
            self.request("payload index create", |c| async move {
                c.create_field_index(request).await
            })
            .await?;
        }
        Ok(created)
    }

    /// Creates the payload indexes `filter`'s metadata conditions can use
    /// and the collection does not have yet (once per key; see
    /// `engram_core::metadata_index`), waiting until they are built.
    /// Provisions first: provisioning reads the indexes that exist.
    async fn index_metadata(&self, filter: &ScopeFilter) -> Result<(), StoreError> {
        if filter.metadata.is_none() {
            return Ok(());
        }
        self.provision().await?;
        let missing = self.metadata_indexes.missing(filter.metadata.as_ref());
        for (field, kind) in missing {
            let started = Instant::now();
            let request = CreateFieldIndexCollection {
                collection_name: self.collection.clone(),
                wait: Some(true),
                field_name: field.clone(),
                field_type: Some(mapping::metadata_field_type(kind).into()),
                ..CreateFieldIndexCollection::default()
            };
            match self
                .call("metadata index create", |c| async move {
                    c.create_field_index(request).await
                })
                .await
            {
                Ok(_) => tracing::info!(
                    field = %field,
                    kind = kind.as_str(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "metadata payload index created"
                ),
                Err(err) => {
                    self.metadata_indexes.failed(&field);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// The caller metadata keys indexed so far, with their index types.
    pub fn metadata_indexes(&self) -> Vec<(String, engram_core::MetadataIndexKind)> {
        self.metadata_indexes.known()
    }

    /// Fails naming the mismatch when the existing collection's vectors do
    /// not fit this store, or its model tag is not this process's model.
    /// Also learns which metadata keys earlier processes indexed, so they
    /// keep their type.
    async fn check_collection(&self) -> Result<(), StoreError> {
        let info = self.collection_info().await?;
        self.metadata_indexes.seed(
            info.payload_schema
                .into_iter()
                .map(|(field, schema)| (field, mapping::metadata_index_kind(schema.data_type))),
        );
        let config = info.config.unwrap_or_default();
        let quantized = mapping::has_quantization(&config);
        let params = config.params.unwrap_or_default();
        if let Some(mismatch) = mapping::layout_mismatch(
            &self.collection,
            self.dense_dim,
            params.vectors_config.as_ref(),
            params.sparse_vectors_config.as_ref(),
        ) {
            return Err(StoreError::Internal(mismatch));
        }
        if mapping::has_store_idf(params.sparse_vectors_config.as_ref()) {
            self.drop_store_idf().await?;
        }
        if quantized != self.dense.quantization {
            // The server rebuilds segments in the background; searches stay
            // exact meanwhile (rescoring, or no quantized copy yet).
            let update = mapping::quantization_update(&self.collection, self.dense.quantization);
            self.request("collection update", |c| async move {
                c.update_collection(update).await
            })
            .await?;
            tracing::info!(
                collection = %self.collection,
                quantization = self.dense.quantization,
                "collection quantization changed"
            );
        }
        if let Some(model) = &self.embedding_model {
            mapping::tag_of_metadata(&config.metadata)
                .check(
                    model,
                    &format!("collection {:?} on Qdrant at {}", self.collection, self.url),
                )
                .map_err(StoreError::Internal)?;
        }
        Ok(())
    }

    /// Moves a collection written with Qdrant's IDF modifier (which counts
    /// every tenant's points) to the current layout, where queries carry
    /// each user's own IDF. The stored vectors already are what the layout
    /// wants (term-frequency parts), so only the modifier goes; the update
    /// is idempotent, so processes starting together may all send it.
    async fn drop_store_idf(&self) -> Result<(), StoreError> {
        let update = mapping::drop_store_idf(&self.collection);
        self.request("collection update", |c| async move {
            c.update_collection(update).await
        })
        .await?;
        let config = self.collection_config().await?;
        let params = config.params.unwrap_or_default();
        if mapping::has_store_idf(params.sparse_vectors_config.as_ref()) {
            return Err(StoreError::Internal(format!(
                "collection {:?} on Qdrant at {} keeps the IDF modifier on {:?} after an \
                 update; this Qdrant cannot move it to per-user BM25 weights",
                self.collection,
                self.url,
                mapping::BM25
            )));
        }
        tracing::info!(
            collection = %self.collection,
            "collection moved to per-user bm25 weights (qdrant idf modifier dropped)"
        );
        Ok(())
    }

    /// The client, unless the store is closed.
    fn client(&self) -> Result<Qdrant, StoreError> {
        self.client
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or_else(closed)
    }

    /// Runs one client call on the provisioned collection (provisioning it
    /// first when that has not succeeded yet), like [`QdrantStore::request`].
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Qdrant) -> Fut,
        Fut: Future<Output = Result<T, QdrantError>>,
    {
        self.client()?;
        self.provision().await?;
        self.request(what, f).await
    }

    /// Runs one client call, bounded by the timeout, and classifies its
    /// error.
    ///
    /// The client has its own per-request timeout, but it retries a failed
    /// request once on a fresh connection; the outer bound keeps the whole
    /// call within the configured time.
    async fn request<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Qdrant) -> Fut,
        Fut: Future<Output = Result<T, QdrantError>>,
    {
        let client = self.client()?;
        match tokio::time::timeout(self.timeout, f(client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(what, &self.url, err)),
            Err(_) => Err(timed_out(what, &self.url, self.timeout)),
        }
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    async fn existing(&self, org_id: &str, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let payload = WithPayloadSelector {
            selector_options: Some(with_payload_selector::SelectorOptions::Include(
                PayloadIncludeSelector {
                    fields: vec!["org_id".into(), "fragment_id".into()],
                },
            )),
        };
        let (asked, found) = self.points_by_id("existing", ids, payload).await?;
        Ok(found
            .iter()
            .filter_map(|record| {
                let fragment_id = mapping::payload_str(&record.payload, "fragment_id")?;
                // Same org, and the full 64-hex id: the point id only
                // covers its first half.
                (mapping::payload_str(&record.payload, "org_id")? == org_id
                    && asked.contains(fragment_id))
                .then(|| fragment_id.to_owned())
            })
            .collect())
    }

    async fn get(&self, org_id: &str, ids: &[String]) -> Result<Vec<PointPayload>, StoreError> {
        let (asked, found) = self
            .points_by_id("get", ids, mapping::with_payload(true))
            .await?;
        let mut out = Vec::with_capacity(found.len());
        for record in found {
            let payload = mapping::decode_payload(record.payload)?;
            // Same org, and the full 64-hex id: the point id only covers
            // its first half.
            if payload.org_id == org_id && asked.contains(payload.fragment_id.as_str()) {
                out.push(payload);
            }
        }
        Ok(out)
    }

    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        self.client()?;
        if points.is_empty() {
            return Ok(());
        }
        // Validate everything first: a refused call writes nothing.
        for point in &points {
            point.validate(self.dense_dim)?;
        }
        let structs = points
            .iter()
            .map(mapping::point_struct)
            .collect::<Result<Vec<_>, _>>()?;
        let request = UpsertPoints {
            collection_name: self.collection.clone(),
            // Applied (and in the server's WAL) on return: durable.
            wait: Some(true),
            points: structs,
            ..UpsertPoints::default()
        };
        self.call("upsert", |c| async move { c.upsert_points(request).await })
            .await
            .map(drop)
    }

    async fn delete(&self, org_id: &str, ids: &[String]) -> Result<(), StoreError> {
        self.client()?;
        let valid: Vec<String> = ids
            .iter()
            .filter(|id| mapping::point_id(id).is_ok())
            .cloned()
            .collect();
        if valid.is_empty() {
            return Ok(());
        }
        // One filtered delete: the tenant check happens inside the server,
        // atomically with the delete, so a foreign or unknown id is ignored
        // like a missing one.
        let request = DeletePoints {
            collection_name: self.collection.clone(),
            wait: Some(true),
            points: Some(PointsSelector {
                points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(
                    mapping::own_points_filter(org_id, &valid),
                )),
            }),
            ..DeletePoints::default()
        };
        self.call("delete", |c| async move { c.delete_points(request).await })
            .await
            .map(drop)
    }

    async fn hybrid_search(&self, query: &HybridQuery) -> Result<Vec<ScoredPoint>, StoreError> {
        let dim = self.dense_dim;
        if query.dense.len() != dim {
            return Err(StoreError::Internal(format!(
                "query vector has dimension {}, store expects {dim}",
                query.dense.len()
            )));
        }
        self.client()?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        self.index_metadata(&query.filter).await?;
        let mut query = query.clone();
        // A prefetch shorter than the limit would starve the fused list.
        query.prefetch = query.prefetch.max(query.limit);
        let request = mapping::hybrid_query(&self.collection, &query);
        let unit_query = mapping::normalized(&query.dense);
        let response = self
            .call("hybrid search", |c| async move { c.query(request).await })
            .await?;
        let mut out = Vec::with_capacity(response.result.len());
        for hit in response.result {
            let dense_score =
                mapping::dense_vector(hit.vectors.as_ref()).map(|v| mapping::dot(&unit_query, &v));
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
                    point_id = ?hit.id,
                    error = %err,
                    "skipping hit whose payload does not decode"
                ),
            }
        }
        Ok(out)
    }

    async fn count(&self, filter: &ScopeFilter) -> Result<u64, StoreError> {
        self.index_metadata(filter).await?;
        let request = CountPoints {
            collection_name: self.collection.clone(),
            filter: Some(crate::filter::scope_filter(filter)),
            exact: Some(true),
            ..CountPoints::default()
        };
        let response = self
            .call("count", |c| async move { c.count(request).await })
            .await?;
        Ok(response.result.map_or(0, |r| r.count))
    }

    async fn scroll(
        &self,
        filter: &ScopeFilter,
        limit: usize,
    ) -> Result<Vec<PointPayload>, StoreError> {
        self.client()?;
        self.index_metadata(filter).await?;
        let filter = crate::filter::scope_filter(filter);
        let mut out = Vec::new();
        let mut offset = None;
        while out.len() < limit {
            let page = (limit - out.len()).min(SCROLL_PAGE);
            let request = ScrollPoints {
                collection_name: self.collection.clone(),
                filter: Some(filter.clone()),
                offset: offset.take(),
                // At most SCROLL_PAGE, so the cast is exact.
                limit: Some(page as u32),
                with_payload: Some(mapping::with_payload(true)),
                with_vectors: Some(WithVectorsSelector {
                    selector_options: Some(with_vectors_selector::SelectorOptions::Enable(false)),
                }),
                ..ScrollPoints::default()
            };
            let response = self
                .call("scroll", |c| async move { c.scroll(request).await })
                .await?;
            for record in response.result {
                // A payload that does not decode fails the call: a caller
                // deleting what it got must not silently miss a point.
                let payload = mapping::decode_payload(record.payload)
                    .map_err(|e| StoreError::Internal(format!("point {:?}: {e}", record.id)))?;
                out.push(payload);
            }
            // The id the next page starts at; `None` at the end.
            match response.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn scan(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<PointPayload>, Option<String>), StoreError> {
        self.client()?;
        let request = ScrollPoints {
            collection_name: self.collection.clone(),
            offset: cursor.map(qdrant_client::qdrant::PointId::from),
            // At most SCROLL_PAGE, so the cast is exact.
            limit: Some(limit.clamp(1, SCROLL_PAGE) as u32),
            with_payload: Some(mapping::with_payload(true)),
            with_vectors: Some(WithVectorsSelector {
                selector_options: Some(with_vectors_selector::SelectorOptions::Enable(false)),
            }),
            ..ScrollPoints::default()
        };
        let response = self
            .call("scan", |c| async move { c.scroll(request).await })
            .await?;
        let payloads = response
            .result
            .into_iter()
            .map(|record| {
                mapping::decode_payload(record.payload)
                    .map_err(|e| StoreError::Internal(format!("point {:?}: {e}", record.id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = response.next_page_offset.and_then(mapping::point_id_string);
        Ok((payloads, next))
    }

    async fn model_tag(&self) -> Result<engram_core::ModelTag, StoreError> {
        self.provision().await?;
        self.read_tag().await
    }

    async fn set_model_tag(&self, tag: &engram_core::ModelTag) -> Result<(), StoreError> {
        self.provision().await?;
        let request = UpdateCollection {
            collection_name: self.collection.clone(),
            metadata: mapping::tag_metadata(tag),
            ..UpdateCollection::default()
        };
        self.call("collection update", |c| async move {
            c.update_collection(request).await
        })
        .await?;
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        // A real round trip that also proves the collection is still there.
        let name = self.collection.clone();
        let exists = self
            .call("readiness check", |c| async move {
                c.collection_exists(name).await
            })
            .await?;
        if exists {
            Ok(())
        } else {
            Err(StoreError::Internal(format!(
                "collection {:?} no longer exists on Qdrant at {}",
                self.collection, self.url
            )))
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Every write already waited for the server, so there is nothing to
        // flush: dropping the client closes its channels once calls still
        // in flight end.
        let client = self
            .client
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if client.is_some() {
            tracing::info!(url = %self.url, collection = %self.collection, "Qdrant vector store closed");
        }
        Ok(())
    }
}
