//! Domain model of Engram and the ports the services depend on.
//!
//! The services (ingest, recall) never see Qdrant, NATS or ONNX Runtime
//! types: they talk to a [`VectorStore`] and an [`Embedder`], each of which
//! has an embedded and a distributed implementation in its own crate.

pub mod bm25;
pub mod ids;
pub mod model;
pub mod ports;

pub use model::*;
pub use ports::*;
