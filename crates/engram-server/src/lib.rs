//! Wiring of Engram: configuration, the backends, and the server of each
//! role (gRPC, grpc-web, REST and MCP on one port; MCP on stdio).
//!
//! [`run`] serves every role in one process, by default on the embedded
//! parts (Qdrant Edge and the durable local queue in the data directory,
//! ONNX Runtime embeddings); [`run_role`] serves one role (ingest, recall or
//! enrich) against NATS JetStream and a Qdrant server. Every role serves
//! `grpc.health.v1` (NOT_SERVING while a dependency does not answer),
//! server reflection and JWT auth until `shutdown` resolves; then it drains
//! in-flight calls and enrichment and flushes the store.

mod backends;
mod config;
mod limits;
mod mcp;
mod priority;
mod reembed;
mod role;
mod secret;
mod serve;
mod surfaces;

pub use backends::Backends;
pub use config::{
    AuthSettings, BackendSettings, Config, EmbedderKind, EmbedderSettings, EnrichSettings,
    ExtractSettings, ExtractorKind, LimitsSettings, LogSettings, MetricsSettings, QueueSettings,
    ServerSettings, StorageSettings, StreamKind, VectorStoreKind,
};
pub use priority::lower_priority;
pub use reembed::{ReembedReport, reembed};
pub use role::Role;
pub use secret::{dev_secret_path, load_or_create_dev_secret};
pub use serve::{Front, LIVENESS, OVERDUE_JOBS, run, run_front, run_mcp, run_role, run_with};

/// Errors of start-up and serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid; the message says which key and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The vector store could not be opened.
    #[error(transparent)]
    Store(#[from] engram_core::StoreError),
    /// The embedding model could not be loaded.
    #[error("embedder: {0}")]
    Embed(String),
    /// The auth keys could not be loaded.
    #[error(transparent)]
    Auth(#[from] engram_auth::AuthError),
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The MCP session on stdio could not start.
    #[error("mcp: {0}")]
    Mcp(String),
    /// The process's CPU priority could not be read or lowered.
    #[error("cpu priority: {0}")]
    Priority(std::io::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}
