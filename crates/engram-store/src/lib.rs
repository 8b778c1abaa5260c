//! Embedded vector store of Engram: [`engram_core::VectorStore`] on one
//! Qdrant Edge (`qdrant-edge` 0.7.2) shard in the data directory.
//!
//! Layout (DESIGN.md §4): named vectors `dense` (cosine) and sparse `bm25`
//! (no modifier: queries carry each user's own IDF; a shard written with
//! Qdrant's IDF modifier is moved to this layout on open, see `layout`); payload is the JSON of [`engram_core::PointPayload`];
//! `org_id` is a tenant keyword index; the point id is the UUID of the
//! fragment id's first 16 bytes. Hybrid search is Qdrant's query API: a
//! dense and a BM25 prefetch fused by reciprocal rank fusion.
//!
//! Edge is an engine without a server around it, so this crate supplies
//! what a server would: a redo journal for durable upserts (Edge never
//! replays its WAL on load, nor truncates it: its old segments are removed
//! on open, see `edge_wal`), a background task that runs the optimizer and
//! checkpoints, and a blocking-pool bridge for its synchronous calls.

mod edge_wal;
mod filter;
mod journal;
mod layout;
mod maintenance;
mod mapping;
mod options;
mod store;

pub use options::EdgeStoreOptions;
pub use store::{EdgeStore, EdgeStoreStats};

#[cfg(test)]
mod tests;
