//! Opening the ports a process needs, embedded or distributed per config.

use crate::config::{StreamKind, VectorStoreKind};
use crate::{Config, Role, ServerError};
use engram_core::{Embedder, JobStore, TurnStream, VectorStore};
use std::sync::Arc;
use std::time::Duration;

/// The ports a server runs on.
#[derive(Clone)]
pub struct Backends {
    /// Where memory is stored.
    pub store: Arc<dyn VectorStore>,
    /// How text is embedded.
    pub embedder: Arc<dyn Embedder>,
    /// Where writes go for enrichment (absent in a recall-only process).
    pub stream: Option<Arc<dyn TurnStream>>,
    /// Where job records live (absent in a recall-only process).
    pub jobs: Option<Arc<dyn JobStore>>,
}

/// The turn stream and job store of a process, absent together.
type QueuePorts = (Option<Arc<dyn TurnStream>>, Option<Arc<dyn JobStore>>);

/// Pause between attempts to reach a Qdrant server at start-up.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

impl Backends {
    /// Opens what `role` needs, as `config.backends` says: the embedding
    /// model always; Qdrant Edge in the data directory or a Qdrant server;
    /// the local queue in the data directory or NATS JetStream.
    pub async fn open(config: &Config, role: Role) -> Result<Self, ServerError> {
        let embedder = load_embedder(config).await?;
        let store: Arc<dyn VectorStore> = match config.backends.vector_store {
            VectorStoreKind::Edge => Arc::new(open_edge(config, embedder.dim())?),
            VectorStoreKind::Qdrant => Arc::new(connect_qdrant(config, embedder.dim()).await?),
        };
        let (stream, jobs): QueuePorts = if role == Role::Recall {
            (None, None)
        } else {
            match config.backends.stream {
                StreamKind::Local => {
                    let queue = engram_stream::LocalQueue::open(
                        &config.storage.data_dir.join("queue"),
                        engram_stream::LocalQueueOptions {
                            duplicate_window: Duration::from_secs(
                                config.queue.duplicate_window_secs,
                            ),
                        },
                    )
                    .map_err(|e| ServerError::Config(format!("local queue: {e}")))?;
                    (
                        Some(Arc::new(queue.clone())),
                        Some(Arc::new(queue.job_store())),
                    )
                }
                StreamKind::Nats => {
                    // Connects in the background: a NATS that is down at
                    // start keeps health NOT_SERVING instead of failing.
                    let nats = engram_stream::NatsStream::connect(config.nats.clone())
                        .await
                        .map_err(|e| ServerError::Config(format!("nats: {e}")))?;
                    let jobs = nats.job_store();
                    (Some(Arc::new(nats)), Some(Arc::new(jobs)))
                }
            }
        };
        Ok(Self {
            store,
            embedder,
            stream,
            jobs,
        })
    }

    /// The same ports wrapped so that every call is traced and measured
    /// (see `engram_telemetry::instrument`).
    pub fn instrumented(self) -> Self {
        use engram_telemetry::instrument::{
            InstrumentedEmbedder, InstrumentedJobs, InstrumentedStore, InstrumentedStream,
        };
        Self {
            store: Arc::new(InstrumentedStore::new(self.store)),
            embedder: Arc::new(InstrumentedEmbedder::new(self.embedder)),
            stream: self
                .stream
                .map(|s| Arc::new(InstrumentedStream::new(s)) as Arc<dyn TurnStream>),
            jobs: self
                .jobs
                .map(|j| Arc::new(InstrumentedJobs::new(j)) as Arc<dyn JobStore>),
        }
    }

    /// The embedded default (Qdrant Edge, local queue) for every role.
    pub async fn embedded(config: &Config) -> Result<Self, ServerError> {
        let mut config = config.clone();
        config.backends = Default::default();
        Self::open(&config, Role::Serve).await
    }
}

async fn load_embedder(config: &Config) -> Result<Arc<dyn Embedder>, ServerError> {
    let models = config.embedder.models_dir.clone();
    let threads = config.embedder.threads;
    let embedder = tokio::task::spawn_blocking(move || {
        let mut opts = engram_embed::OrtEmbedderOptions::from_models_dir(&models);
        opts.intra_threads = threads;
        engram_embed::OrtEmbedder::load(opts)
    })
    .await
    .map_err(|e| ServerError::Embed(e.to_string()))?
    .map_err(|e| ServerError::Embed(e.to_string()))?;
    Ok(Arc::new(embedder))
}

fn open_edge(config: &Config, dim: usize) -> Result<engram_store::EdgeStore, ServerError> {
    let dir = config.storage.data_dir.join("qdrant");
    // Opening replays the journal; it is start-up work, done once.
    Ok(engram_store::EdgeStore::open(
        &dir,
        engram_store::EdgeStoreOptions {
            dense_dim: dim,
            // An HNSW build on every core would stall embedding and
            // searches while it runs; half leaves the rest serving.
            indexing_threads: std::thread::available_parallelism()
                .map_or(1, |n| (n.get() / 2).max(1)),
            ..Default::default()
        },
    )?)
}

/// Connects to the Qdrant server, waiting for it while it is unreachable
/// (a pod often starts before its database); a mismatched collection or
/// any other refusal fails at once.
async fn connect_qdrant(
    config: &Config,
    dim: usize,
) -> Result<engram_qdrant::QdrantStore, ServerError> {
    let mut options = config.qdrant.clone();
    options.dense_dim = dim;
    loop {
        match engram_qdrant::QdrantStore::connect(options.clone()).await {
            Ok(store) => return Ok(store),
            Err(engram_core::StoreError::Unavailable(error)) => {
                tracing::warn!(url = %options.url, %error, "qdrant unreachable; retrying");
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
