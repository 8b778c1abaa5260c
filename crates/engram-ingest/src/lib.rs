//! The ingest service: `IngestService.Remember`, and `JobService.GetJob`
//! for the background jobs a write starts.
//!
//! A write is validated completely before anything happens, then its turns
//! get content-derived fragment ids, the turns not yet stored are embedded
//! in one batch and upserted as active memory; then one `TurnsIngested`
//! event per write goes to the turn stream for enrichment. Because ids derive from
//! content, a re-sent request stores nothing new and bills nothing.

mod jobs;
mod service;
mod validate;

pub use jobs::JobServiceImpl;
pub use service::{IngestConfig, IngestServiceImpl};
pub use validate::ValidTurn;
