//! Domain model of Engram and the ports the services depend on.
//!
//! The services (ingest, recall) never see Qdrant, NATS or ONNX Runtime
//! types: they talk to a [`VectorStore`], an [`Embedder`], a [`TurnStream`]
//! and a [`JobStore`], each of which has an embedded and a distributed implementation in its own crate.

pub mod accounts;
pub mod bm25;
pub mod corpus;
pub mod filter;
pub mod ids;
pub mod jobs;
pub mod metadata_index;
pub mod model;
pub mod model_tag;
pub mod ports;
pub mod stream;

pub use accounts::*;
pub use corpus::CorpusLengths;
pub use filter::*;
pub use jobs::*;
pub use metadata_index::{MAX_METADATA_INDEXES, MetadataIndexKind, MetadataIndexes};
pub use model::*;
pub use model_tag::{ModelTag, UNTAGGED_MODEL};
pub use ports::*;
pub use stream::*;
