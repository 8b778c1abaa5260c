//! The recall service: `RecallService.Recall`.
//!
//! The query is embedded and searched with two prefetches (dense cosine and
//! BM25) fused by reciprocal rank fusion inside the vector store, filtered
//! to the caller's tenant and scope. Hits are rendered the way a model
//! reads them, scored, and given a confidence.

mod confidence;
mod render;
mod service;

pub use confidence::confidence;
pub use render::{format_ts, timeline, turn_text};
pub use service::{RecallConfig, RecallServiceImpl};
