//! Fault injection around real components: a vector store whose first
//! write of observation points fails or hangs, or whose every write of
//! memory chunks fails (everything else goes through); and a TCP proxy a
//! test can open late or cut, in front of a real server.

use async_trait::async_trait;
use engram_core::{
    HybridQuery, Kind, Point, PointPayload, ScopeFilter, ScoredPoint, StoreError, VectorStore,
};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

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

    async fn scan(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<PointPayload>, Option<String>), StoreError> {
        self.inner.scan(cursor, limit).await
    }

    async fn model_tag(&self) -> Result<engram_core::ModelTag, StoreError> {
        self.inner.model_tag().await
    }

    async fn set_model_tag(&self, tag: &engram_core::ModelTag) -> Result<(), StoreError> {
        self.inner.set_model_tag(tag).await
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

/// Forwards TCP connections from a local address to `upstream` until cut
/// or dropped: a server that "appears" when the proxy starts and "goes
/// away" (port closed, open connections reset) when it is cut.
pub struct TcpProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl TcpProxy {
    /// Listens on `listen` (port 0: any free port) and forwards to
    /// `upstream` (`host:port`).
    pub async fn start(listen: SocketAddr, upstream: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            // Owned by the accept task, so cutting it drops every forward.
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self { addr, tasks })
    }

    /// Closes the port and every forwarded connection; returns the address
    /// so that a test can start it again there.
    pub fn cut(mut self) -> SocketAddr {
        self.tasks.abort_all();
        self.addr
    }
}

/// A local address nothing listens on (bound, then released), for a
/// dependency that is not there yet.
pub async fn vacant_addr() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    listener.local_addr()
}
