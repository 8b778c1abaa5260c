//! Distributed vector store of Engram: [`engram_core::VectorStore`] on a
//! Qdrant server, through `qdrant-client`'s gRPC API.
//!
//! It behaves exactly like the embedded store (`engram-store`, Qdrant Edge)
//! and is held to the same contract suite (`engram-store-contract`). Layout
//! (DESIGN.md §4): one collection for all tenants with the named dense
//! vector `dense` (cosine) and the sparse vector `bm25` (no modifier:
//! queries carry each user's own IDF; a collection with Qdrant's IDF
//! modifier is moved on connect); the
//! payload is the JSON of [`engram_core::PointPayload`]; `org_id` is a
//! keyword index marked as tenant, the other filter fields are indexed as
//! on Edge; the point id is the UUID of the fragment id's first 16 bytes.
//! Hybrid search is the query API: a dense and a BM25 prefetch fused by
//! reciprocal rank fusion with k = [`engram_core::RRF_K`].
//!
//! Unlike Edge, the server persists and optimizes on its own, so this crate
//! needs no journal and no maintenance task: every write waits until the
//! server applied it.

mod error;
mod filter;
mod mapping;
mod options;
mod store;

pub use mapping::DenseLayout;
pub use options::QdrantOptions;
pub use store::QdrantStore;
