//! Decorators of the ports that add spans and metrics around every call,
//! whichever implementation (embedded or distributed) they wrap.
//!
//! Health probes (`ready`) pass through untraced: they run every couple of
//! seconds and would drown the traces that matter.

use crate::metrics::{
    EMBED_BATCH, EMBED_DURATION, JOBS, STORE_DURATION, STREAM_DELIVERIES, STREAM_PUBLISHED,
    STREAM_REDELIVERIES,
};
use crate::trace::context_fields;
use async_trait::async_trait;
use engram_core::{
    Delivery, EmbedError, Embedder, HybridQuery, Job, JobStore, JobStoreError, KeptEvent,
    OutboundMessage, Point, PointPayload, PublishAck, ScopeFilter, ScoredPoint, StoreError,
    StreamError, Subscription, TurnStream, VectorStore,
};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// A [`VectorStore`] whose calls are spans and latency histograms.
pub struct InstrumentedStore {
    inner: Arc<dyn VectorStore>,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn VectorStore>) -> Self {
        Self { inner }
    }
}

async fn store_call<T>(
    op: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let span = tracing::info_span!(
        "vector_store",
        otel.name = %format_args!("vector_store {op}"),
        otel.kind = "client",
        db.operation = op,
    );
    let started = Instant::now();
    let result = call.instrument(span).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!(STORE_DURATION, "op" => op, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

#[async_trait]
impl VectorStore for InstrumentedStore {
    async fn existing(&self, org_id: &str, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        store_call("existing", self.inner.existing(org_id, ids)).await
    }

    async fn get(&self, org_id: &str, ids: &[String]) -> Result<Vec<PointPayload>, StoreError> {
        store_call("get", self.inner.get(org_id, ids)).await
    }

    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        store_call("upsert", self.inner.upsert(points)).await
    }

    async fn delete(&self, org_id: &str, ids: &[String]) -> Result<(), StoreError> {
        store_call("delete", self.inner.delete(org_id, ids)).await
    }

    async fn hybrid_search(&self, query: &HybridQuery) -> Result<Vec<ScoredPoint>, StoreError> {
        store_call("hybrid_search", self.inner.hybrid_search(query)).await
    }

    async fn count(&self, filter: &ScopeFilter) -> Result<u64, StoreError> {
        store_call("count", self.inner.count(filter)).await
    }

    async fn scroll(
        &self,
        filter: &ScopeFilter,
        limit: usize,
    ) -> Result<Vec<PointPayload>, StoreError> {
        store_call("scroll", self.inner.scroll(filter, limit)).await
    }

    async fn scan(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<PointPayload>, Option<String>), StoreError> {
        store_call("scan", self.inner.scan(cursor, limit)).await
    }

    async fn model_tag(&self) -> Result<engram_core::ModelTag, StoreError> {
        store_call("model_tag", self.inner.model_tag()).await
    }

    async fn set_model_tag(&self, tag: &engram_core::ModelTag) -> Result<(), StoreError> {
        store_call("set_model_tag", self.inner.set_model_tag(tag)).await
    }

    fn write_generation(&self) -> Option<u64> {
        self.inner.write_generation()
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

/// An [`Embedder`] whose batches are spans, with latency and batch-size
/// histograms.
pub struct InstrumentedEmbedder {
    inner: Arc<dyn Embedder>,
}

impl InstrumentedEmbedder {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Embedder>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Embedder for InstrumentedEmbedder {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let span = tracing::info_span!("embed", otel.name = "embed", batch_size = texts.len());
        let started = Instant::now();
        let result = self.inner.embed(texts).instrument(span).await;
        metrics::histogram!(EMBED_DURATION).record(started.elapsed().as_secs_f64());
        metrics::histogram!(EMBED_BATCH).record(texts.len() as f64);
        result
    }

    async fn embed_queries(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let span = tracing::info_span!(
            "embed",
            otel.name = "embed",
            batch_size = texts.len(),
            query = true
        );
        let started = Instant::now();
        let result = self.inner.embed_queries(texts).instrument(span).await;
        metrics::histogram!(EMBED_DURATION).record(started.elapsed().as_secs_f64());
        metrics::histogram!(EMBED_BATCH).record(texts.len() as f64);
        result
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.inner.count_tokens(text)
    }
}

/// A [`TurnStream`] whose publishes are producer spans that hand their
/// trace context to the message, and whose deliveries are counted.
pub struct InstrumentedStream {
    inner: Arc<dyn TurnStream>,
}

impl InstrumentedStream {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn TurnStream>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl TurnStream for InstrumentedStream {
    async fn publish(&self, mut message: OutboundMessage) -> Result<PublishAck, StreamError> {
        let span = tracing::info_span!(
            "publish",
            otel.name = "publish turns",
            otel.kind = "producer",
            job_id = %message.job_id,
        );
        if message.trace_context.is_empty() {
            message.trace_context = context_fields(&span);
        }
        let result = self.inner.publish(message).instrument(span).await;
        let outcome = match &result {
            Ok(ack) if ack.duplicate => "duplicate",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        metrics::counter!(STREAM_PUBLISHED, "outcome" => outcome).increment(1);
        result
    }

    async fn subscribe(&self) -> Result<Box<dyn Subscription>, StreamError> {
        let inner = self.inner.subscribe().await?;
        Ok(Box::new(CountedSubscription { inner }))
    }

    async fn ready(&self) -> Result<(), StreamError> {
        self.inner.ready().await
    }

    async fn backlog(&self) -> Result<u64, StreamError> {
        self.inner.backlog().await
    }
}

struct CountedSubscription {
    inner: Box<dyn Subscription>,
}

#[async_trait]
impl Subscription for CountedSubscription {
    async fn next(&mut self) -> Result<Box<dyn Delivery>, StreamError> {
        let delivery = self.inner.next().await?;
        metrics::counter!(STREAM_DELIVERIES).increment(1);
        if delivery.attempt() > 1 {
            metrics::counter!(STREAM_REDELIVERIES).increment(1);
        }
        Ok(delivery)
    }
}

/// A [`JobStore`] that counts the records it writes by state.
pub struct InstrumentedJobs {
    inner: Arc<dyn JobStore>,
}

impl InstrumentedJobs {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobStore>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl JobStore for InstrumentedJobs {
    async fn create(&self, job: &Job) -> Result<bool, JobStoreError> {
        let created = self.inner.create(job).await?;
        if created {
            metrics::counter!(JOBS, "state" => job.state.as_str()).increment(1);
        }
        Ok(created)
    }

    async fn put(&self, job: &Job) -> Result<(), JobStoreError> {
        self.inner.put(job).await?;
        metrics::counter!(JOBS, "state" => job.state.as_str()).increment(1);
        Ok(())
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>, JobStoreError> {
        self.inner.get(job_id).await
    }

    async fn ready(&self) -> Result<(), JobStoreError> {
        self.inner.ready().await
    }

    async fn keep_event(&self, event: &KeptEvent) -> Result<(), JobStoreError> {
        self.inner.keep_event(event).await
    }

    async fn drop_event(&self, job_id: &str) -> Result<(), JobStoreError> {
        self.inner.drop_event(job_id).await
    }

    async fn kept_event(&self, job_id: &str) -> Result<Option<KeptEvent>, JobStoreError> {
        self.inner.kept_event(job_id).await
    }

    async fn kept_events(&self, limit: usize) -> Result<Vec<KeptEvent>, JobStoreError> {
        self.inner.kept_events(limit).await
    }
}
