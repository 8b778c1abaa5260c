//! The ports: small traits the services depend on. Each has an embedded and
//! a distributed implementation in its own crate.

use crate::filter::ScopeFilter;
use crate::model::{Point, PointPayload, ScoredPoint};
use async_trait::async_trait;
use std::collections::HashSet;
use std::time::Duration;

/// Errors a vector store reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is not ready; the caller may retry.
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    /// The store refused or failed the operation for a reason a retry will not fix.
    #[error("vector store failed: {0}")]
    Internal(String),
}

/// A hybrid query: dense and BM25 prefetches fused by reciprocal rank fusion.
#[derive(Debug, Clone)]
pub struct HybridQuery {
    /// Who may be seen.
    pub filter: ScopeFilter,
    /// Query embedding.
    pub dense: Vec<f32>,
    /// Query terms with their weights (recall gives each its IDF in the
    /// searching user's memory); the store multiplies nothing in.
    pub sparse: crate::SparseVector,
    /// How many candidates each prefetch contributes to the fusion.
    pub prefetch: usize,
    /// How many fused results to return.
    pub limit: usize,
}

/// Storage of points with dense and sparse vectors, multitenant by `org_id`.
#[async_trait]
pub trait VectorStore: Send + Sync + 'static {
    /// The fragment ids among `ids` that already exist for tenant `org_id`.
    async fn existing(&self, org_id: &str, ids: &[String]) -> Result<HashSet<String>, StoreError>;

    /// The payloads of the points of tenant `org_id` with these fragment
    /// ids, in no particular order; ids that do not exist, are malformed or
    /// belong to another tenant are left out.
    async fn get(&self, org_id: &str, ids: &[String]) -> Result<Vec<PointPayload>, StoreError>;

    /// Insert or overwrite points (keyed by fragment id). Durable on return.
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError>;

    /// Removes the points of tenant `org_id` with these fragment ids (ids
    /// that do not exist, or belong to another tenant, are ignored). Used to
    /// roll back a write whose event could not be published.
    async fn delete(&self, org_id: &str, ids: &[String]) -> Result<(), StoreError>;

    /// Hybrid search inside the filter, best first.
    async fn hybrid_search(&self, query: &HybridQuery) -> Result<Vec<ScoredPoint>, StoreError>;

    /// How many points match the filter.
    async fn count(&self, filter: &ScopeFilter) -> Result<u64, StoreError>;

    /// The payloads of every point matching the filter, in no particular
    /// order, at most `limit` of them (`limit` guards a caller against an
    /// unbounded answer; callers that need all page by narrowing the filter
    /// or deleting what they got). Used by forgetting, never by recall.
    async fn scroll(
        &self,
        filter: &ScopeFilter,
        limit: usize,
    ) -> Result<Vec<PointPayload>, StoreError>;

    /// Every point of every tenant, a page of at most `limit` at a time, in
    /// the store's own order: `cursor` `None` starts, the returned cursor
    /// (opaque) continues, `None` means the end. Points written during a
    /// scan may or may not be seen. Used by `engram reembed`, never by a
    /// request.
    async fn scan(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<PointPayload>, Option<String>), StoreError>;

    /// The embedding model the store's vectors came from; a store written
    /// before stores were tagged reports [`crate::UNTAGGED_MODEL`].
    async fn model_tag(&self) -> Result<crate::ModelTag, StoreError>;

    /// Records the embedding model of the store's vectors (durably).
    async fn set_model_tag(&self, tag: &crate::ModelTag) -> Result<(), StoreError>;

    /// A number that changes whenever a write (upsert or delete) has been
    /// applied, for a store that sees every write made to it: the embedded
    /// store, which one process owns. `None` (the default) for a store
    /// that other processes write to, such as a Qdrant server. Callers use
    /// an unchanged generation to skip re-reading what cannot have changed
    /// (recall's term statistics); it never stands for a read.
    fn write_generation(&self) -> Option<u64> {
        None
    }

    /// Whether the store answers (used by health checks).
    async fn ready(&self) -> Result<(), StoreError>;

    /// Flush and release resources; further calls fail with `Unavailable`.
    async fn close(&self) -> Result<(), StoreError>;
}

/// Errors an embedder reports.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model is not loaded or its backend does not answer; the caller may retry.
    #[error("embedder unavailable: {0}")]
    Unavailable(String),
    /// The model failed on this input.
    #[error("embedding failed: {0}")]
    Internal(String),
}

/// Turns text into dense vectors and counts model tokens.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// Dimension of the vectors it returns.
    fn dim(&self) -> usize;

    /// Names the vector space: stores are tagged with it, so a store filled
    /// by one model is never searched with another's vectors (two models of
    /// the same dimension would otherwise mix silently).
    fn model(&self) -> &str;

    /// Embed a batch of stored texts (turns, observations, entities) in one
    /// model call; vectors are L2-normalized.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Embed search queries. Asymmetric models (e5, BGE) encode a query
    /// differently from the passage it should find; symmetric ones, like
    /// all-MiniLM-L6-v2, use [`Embedder::embed`].
    async fn embed_queries(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed(texts).await
    }

    /// Number of model tokens in `text`, without special tokens; used for usage.
    fn count_tokens(&self, text: &str) -> usize;
}

/// Whether calls a person waits for (Recall, Remember) are being served
/// right now. Background work (enrichment) takes less at once while they
/// are, so an interactive burst gets the CPU; the embedding lanes answer.
pub trait Pressure: Send + Sync + 'static {
    /// True while interactive calls wait or were served very recently.
    fn interactive_busy(&self) -> bool;
}

/// Reciprocal rank fusion constant of every [`VectorStore`]: the point at
/// 0-based position `r` of a retriever's list contributes `1 / (r + RRF_K)`
/// (Qdrant's formula and default), so a hybrid score lies in
/// `(0, 2 / RRF_K]` and is exactly 1.0 for the first hit of both lists.
pub const RRF_K: usize = 2;

/// How long clients should wait before retrying after `Unavailable`.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
