//! The ingest service: `IngestService.Remember`.
//!
//! A write is validated completely before anything happens, then its turns
//! get content-derived fragment ids, the turns not yet stored are embedded
//! in one batch and upserted as active memory. Because ids derive from
//! content, a re-sent request stores nothing new and bills nothing.

mod convert;
mod service;
mod validate;

pub use service::{IngestConfig, IngestServiceImpl};
pub use validate::ValidTurn;
