//! Opening the ports a process needs, embedded or distributed per config.

use crate::config::{StreamKind, VectorStoreKind};
use crate::{Config, Role, ServerError};
use engram_core::{Collections, Credits, Embedder, JobStore, TurnStream, VectorStore};
use std::sync::Arc;
use std::time::Duration;

/// The ports a server runs on.
#[derive(Clone)]
pub struct Backends {
    /// Where memory is stored.
    pub store: Arc<dyn VectorStore>,
    /// How text is embedded for calls a person waits for (Recall,
    /// Remember, StoreMemory): the interactive lane.
    pub embedder: Arc<dyn Embedder>,
    /// How enrichment embeds: the background lane of the same model, which
    /// yields to the interactive one.
    pub background_embedder: Arc<dyn Embedder>,
    /// The lanes' interactive load, which enrichment adapts its
    /// concurrency to.
    pub pressure: Arc<dyn engram_core::Pressure>,
    /// Where writes go for enrichment (absent in a recall-only process).
    pub stream: Option<Arc<dyn TurnStream>>,
    /// Where job records live (absent in a recall-only process).
    pub jobs: Option<Arc<dyn JobStore>>,
    /// The workspace wallets and ledger (absent in a recall-only process).
    pub credits: Option<Arc<dyn Credits>>,
    /// Team collections.
    pub collections: Arc<dyn Collections>,
}

/// The turn stream, job store and credits of a process, absent together
/// (a recall-only process has none), and its collections.
struct QueuePorts {
    stream: Option<Arc<dyn TurnStream>>,
    jobs: Option<Arc<dyn JobStore>>,
    credits: Option<Arc<dyn Credits>>,
    collections: Arc<dyn Collections>,
}

/// Longest wait for a Qdrant server at start-up before serving without it:
/// probes must find the process listening within a couple of seconds.
const STARTUP_CHECK: Duration = Duration::from_secs(1);

impl Backends {
    /// Opens what `role` needs, as `config.backends` says: the embedding
    /// model always; Qdrant Edge in the data directory or a Qdrant server;
    /// the local queue in the data directory or NATS JetStream.
    pub async fn open(config: &Config, role: Role) -> Result<Self, ServerError> {
        let model = load_embedder(config).await?;
        let lanes = engram_embed::Lanes::start(model, config.embedder.lanes());
        let (embedder, background_embedder) = (lanes.interactive(), lanes.background());
        let pressure = lanes.pressure();
        let store = open_store(config, embedder.dim(), Some(embedder.model().to_owned())).await?;
        let ports = match config.backends.stream {
            StreamKind::Local => {
                let queue = engram_stream::LocalQueue::open(
                    &config.storage.data_dir.join("queue"),
                    engram_stream::LocalQueueOptions {
                        duplicate_window: Duration::from_secs(config.queue.duplicate_window_secs),
                    },
                )
                .map_err(|e| ServerError::Config(format!("local queue: {e}")))?;
                QueuePorts {
                    stream: Some(Arc::new(queue.clone())),
                    jobs: Some(Arc::new(queue.job_store())),
                    credits: Some(Arc::new(queue.credits())),
                    collections: Arc::new(queue.collections()),
                }
            }
            StreamKind::Nats => {
                // Connects in the background: a NATS that is down at
                // start keeps health NOT_SERVING instead of failing.
                let nats = engram_stream::NatsStream::connect(config.nats.clone())
                    .await
                    .map_err(|e| ServerError::Config(format!("nats: {e}")))?;
                QueuePorts {
                    jobs: Some(Arc::new(nats.job_store())),
                    credits: Some(Arc::new(nats.credits())),
                    collections: Arc::new(nats.collections()),
                    stream: Some(Arc::new(nats)),
                }
            }
        };
        // Recall reads team collections only; it never touches the stream.
        let recall_only = role == Role::Recall;
        Ok(Self {
            store,
            embedder,
            background_embedder,
            pressure,
            stream: ports.stream.filter(|_| !recall_only),
            jobs: ports.jobs.filter(|_| !recall_only),
            credits: ports.credits.filter(|_| !recall_only),
            collections: ports.collections,
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
            background_embedder: Arc::new(InstrumentedEmbedder::new(self.background_embedder)),
            pressure: self.pressure,
            stream: self
                .stream
                .map(|s| Arc::new(InstrumentedStream::new(s)) as Arc<dyn TurnStream>),
            jobs: self
                .jobs
                .map(|j| Arc::new(InstrumentedJobs::new(j)) as Arc<dyn JobStore>),
            credits: self.credits,
            collections: self.collections,
        }
    }

    /// The embedded default (Qdrant Edge, local queue) for every role.
    pub async fn embedded(config: &Config) -> Result<Self, ServerError> {
        let mut config = config.clone();
        config.backends = Default::default();
        Self::open(&config, Role::Serve).await
    }
}

/// The vector store `config` names, for vectors of `dim`. With `model`, a
/// store tagged with another embedding model is refused and a new one is
/// tagged; without, any store opens (re-embedding).
pub(crate) async fn open_store(
    config: &Config,
    dim: usize,
    model: Option<String>,
) -> Result<Arc<dyn VectorStore>, ServerError> {
    Ok(match config.backends.vector_store {
        VectorStoreKind::Edge => Arc::new(open_edge(config, dim, model)?),
        VectorStoreKind::Qdrant => Arc::new(open_qdrant(config, dim, model).await?),
    })
}

/// The embedder `config.embedder` describes: the in-process model, or a
/// connection to an OpenAI-compatible service (which must answer).
pub(crate) async fn load_embedder(config: &Config) -> Result<Arc<dyn Embedder>, ServerError> {
    if config.embedder.kind == crate::config::EmbedderKind::Openai {
        let embedder = engram_embed::OpenAiEmbedder::connect(config.embedder.openai())
            .await
            .map_err(|e| ServerError::Embed(e.to_string()))?;
        return Ok(Arc::new(embedder));
    }
    let models = config.embedder.models_dir.clone();
    let (threads, spinning) = (config.embedder.threads, config.embedder.spinning);
    let embedder = tokio::task::spawn_blocking(move || {
        let mut opts = engram_embed::OrtEmbedderOptions::from_models_dir(&models);
        opts.intra_threads = threads;
        opts.spinning = spinning;
        engram_embed::OrtEmbedder::load(opts)
    })
    .await
    .map_err(|e| ServerError::Embed(e.to_string()))?
    .map_err(|e| ServerError::Embed(e.to_string()))?;
    Ok(Arc::new(embedder))
}

fn open_edge(
    config: &Config,
    dim: usize,
    model: Option<String>,
) -> Result<engram_store::EdgeStore, ServerError> {
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
            embedding_model: model,
            quantization: config.storage.quantization,
            dense_on_disk: config.storage.dense_on_disk,
            wal_limit_bytes: config.storage.wal_limit_mb.saturating_mul(1 << 20),
            compact_when_idle: (config.storage.compact_when_idle_secs > 0)
                .then(|| Duration::from_secs(config.storage.compact_when_idle_secs)),
            ..Default::default()
        },
    )?)
}

/// Opens the Qdrant server store without waiting for the server: a pod
/// often starts before its database, and a process that does not listen
/// meanwhile looks dead to its probes. A server that answers at once gets
/// its collection provisioned now, so a mismatched collection fails the
/// start; one that does not is provisioned by the first call (the health
/// probe's, every two seconds) once it answers.
async fn open_qdrant(
    config: &Config,
    dim: usize,
    model: Option<String>,
) -> Result<engram_qdrant::QdrantStore, ServerError> {
    let mut options = config.qdrant.clone();
    options.dense_dim = dim;
    options.embedding_model = model;
    options.dense = engram_qdrant::DenseLayout {
        quantization: config.storage.quantization,
        on_disk: config.storage.dense_on_disk,
    };
    let store = engram_qdrant::QdrantStore::open(options)?;
    match tokio::time::timeout(STARTUP_CHECK.min(config.qdrant.timeout), store.provision()).await {
        Ok(Ok(())) => {}
        Ok(Err(engram_core::StoreError::Unavailable(error))) => {
            tracing::warn!(url = %store.url(), %error, "qdrant unreachable; serving without it until it answers");
        }
        Err(_) => {
            tracing::warn!(url = %store.url(), "qdrant not answering yet; serving without it until it answers");
        }
        Ok(Err(e)) => return Err(e.into()),
    }
    Ok(store)
}
