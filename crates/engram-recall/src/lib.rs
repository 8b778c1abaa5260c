//! The recall service: `RecallService.Recall`.
//!
//! `active` embeds the query and runs one hybrid search (dense cosine and
//! BM25 fused by reciprocal rank inside the vector store) over turns and
//! observations, filtered to the caller's tenant and scope; an observation
//! hit brings its source turn along. `deep` searches turns, observations
//! and entities, fuses them, expands strong turns with their neighbours,
//! honours time expressions in the query and diversifies (see
//! [`search`](crate::search) internals). Hits are rendered the way a model
//! reads them and given a calibrated confidence.

mod confidence;
mod filter;
mod idf;
mod params;
mod rank;
mod render;
mod search;
mod service;
mod sessions;
mod timeq;

pub use confidence::{ACTIVE, Calibration, DEEP, FEATURE_NAMES, FEATURES, features};
pub use params::{DeepParams, SESSION_DEPTH};
pub use render::timeline;
pub use service::{EXPLAIN_KEY, RecallConfig, RecallServiceImpl, Recalled};
