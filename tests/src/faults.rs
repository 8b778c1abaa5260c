//! Fault injection around a real vector store: the first write of
//! observation points fails or hangs, or every write of memory chunks
//! fails; everything else goes through.

use async_trait::async_trait;
use engram_core::{
    HybridQuery, Kind, Point, PointPayload, ScopeFilter, ScoredPoint, StoreError, VectorStore,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::Notify;

/// What happens to the first observation write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// It fails with `Unavailable`, as if the store dropped the call.
    FailOnce,
    /// It never returns, as if the consumer froze mid-job.
    HangOnce,
    /// Observations go through; every write of memory chunks fails with
    /// `Internal`, as if the store refused them for good.
    FailMemoryChunks,
}

/// A real store whose first observation write misbehaves.
pub struct FaultyStore {
    inner: Arc<dyn VectorStore>,
    fault: Fault,
    observation_writes: AtomicU32,
    /// Notified when the faulty write is reached.
    pub reached: Notify,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn VectorStore>, fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fault,
            observation_writes: AtomicU32::new(0),
            reached: Notify::new(),
        })
    }
}

#[async_trait]
impl VectorStore for FaultyStore {
    async fn existing(&self, org_id: &str, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        self.inner.existing(org_id, ids).await
    }

    async fn get(&self, org_id: &str, ids: &[String]) -> Result<Vec<PointPayload>, StoreError> {
        self.inner.get(org_id, ids).await
    }

    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        if self.fault == Fault::FailMemoryChunks {
            if points.iter().any(|p| p.payload.kind == Kind::Memory) {
                self.reached.notify_one();
                return Err(StoreError::Internal("injected refusal".into()));
            }
            return self.inner.upsert(points).await;
        }
        let observations = points.iter().any(|p| p.payload.kind == Kind::Observation);
        if observations && self.observation_writes.fetch_add(1, Ordering::SeqCst) == 0 {
            self.reached.notify_one();
            match self.fault {
                Fault::FailOnce => {
                    return Err(StoreError::Unavailable("injected failure".into()));
                }
                Fault::HangOnce => std::future::pending::<()>().await,
                Fault::FailMemoryChunks => {}
            }
        }
        self.inner.upsert(points).await
    }

    async fn delete(&self, org_id: &str, ids: &[String]) -> Result<(), StoreError> {
        self.inner.delete(org_id, ids).await
    }

    async fn hybrid_search(&self, query: &HybridQuery) -> Result<Vec<ScoredPoint>, StoreError> {
        self.inner.hybrid_search(query).await
    }

    async fn count(&self, filter: &ScopeFilter) -> Result<u64, StoreError> {
        self.inner.count(filter).await
    }

    async fn scroll(
        &self,
        filter: &ScopeFilter,
        limit: usize,
    ) -> Result<Vec<PointPayload>, StoreError> {
        self.inner.scroll(filter, limit).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
