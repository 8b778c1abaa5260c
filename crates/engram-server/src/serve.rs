//! The gRPC server: services, health, reflection, auth and shutdown.

use crate::{Config, ServerError};
use engram_auth::{AuthLayer, JwtVerifier};
use engram_core::{Embedder, VectorStore};
use engram_ingest::{IngestConfig, IngestServiceImpl};
use engram_proto::v1::ingest_service_server::IngestServiceServer;
use engram_proto::v1::recall_service_server::RecallServiceServer;
use engram_recall::{RecallConfig, RecallServiceImpl};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// The ports a server runs on.
#[derive(Clone)]
pub struct Backends {
    /// Where memory is stored.
    pub store: Arc<dyn VectorStore>,
    /// How text is embedded.
    pub embedder: Arc<dyn Embedder>,
}

impl Backends {
    /// Opens the embedded default: Qdrant Edge under the data directory and
    /// ONNX Runtime with the model files of `embedder.models_dir`.
    pub async fn embedded(config: &Config) -> Result<Self, ServerError> {
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
        let dir = config.storage.data_dir.join("qdrant");
        // Opening replays the journal; it is start-up work, done once.
        let store = engram_store::EdgeStore::open(
            &dir,
            engram_store::EdgeStoreOptions {
                dense_dim: embedder.dim(),
                // An HNSW build on every core would stall embedding and
                // searches while it runs; half leaves the rest serving.
                indexing_threads: std::thread::available_parallelism()
                    .map_or(1, |n| (n.get() / 2).max(1)),
                ..Default::default()
            },
        )?;
        Ok(Self {
            store: Arc::new(store),
            embedder: Arc::new(embedder),
        })
    }
}

/// Runs every role in one process on the embedded default until `shutdown`
/// resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let backends = Backends::embedded(&config).await?;
    run_with(config, backends, listener, shutdown).await
}

/// Runs the gRPC server on given backends until `shutdown` resolves, then
/// drains in-flight calls (bounded by `server.shutdown_grace_secs`) and
/// closes the store.
pub async fn run_with(
    config: Config,
    backends: Backends,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let verifier = Arc::new(JwtVerifier::new(config.auth_config()?)?);
    let ingest = IngestServiceImpl::new(
        backends.store.clone(),
        backends.embedder.clone(),
        IngestConfig {
            max_text_chars: config.ingest.max_text_chars,
            max_turns_per_call: config.ingest.max_turns_per_call,
            max_metadata_bytes: config.ingest.max_metadata_bytes,
        },
    );
    let recall = RecallServiceImpl::new(
        backends.store.clone(),
        backends.embedder.clone(),
        RecallConfig {
            prefetch_active: config.recall.prefetch_active,
            prefetch_deep: config.recall.prefetch_deep,
            ..RecallConfig::default()
        },
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<IngestServiceServer<IngestServiceImpl>>()
        .await;
    health
        .set_serving::<RecallServiceServer<RecallServiceImpl>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(engram_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Config(format!("reflection: {e}")))?;
    // grpcurl and many tools still speak only v1alpha reflection.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(engram_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Config(format!("reflection: {e}")))?;

    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        path: "listener".into(),
        source,
    })?;
    tracing::info!(%addr, data_dir = %config.storage.data_dir.display(), "engram serving");

    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let health_on_stop = health.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
        // Probes see NOT_SERVING while in-flight calls drain.
        health_on_stop
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = stopping_tx.send(());
    };
    // Nagle's algorithm would hold a response's last small frame until the
    // client's delayed ACK (~40 ms on Linux): every unary call would pay it.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let server = Server::builder()
        .layer(AuthLayer::new(verifier))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(IngestServiceServer::new(ingest))
        .add_service(RecallServiceServer::new(recall))
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "drain timed out; closing with calls in flight");
            Ok(())
        }
    };
    backends.store.close().await?;
    tracing::info!("engram stopped");
    result.map_err(ServerError::from)
}
