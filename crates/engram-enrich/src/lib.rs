//! Engram's enrichment consumer.
//!
//! It reads `engram.events.v1.Event`s (a Remember's turns, or a stored
//! memory to chunk and embed) from a
//! [`engram_core::TurnStream`] (NATS JetStream or the embedded queue),
//! writes what it derives from each write into the vector store, and keeps
//! the write's job record current: an [`engram_extract::Extractor`] turns
//! the write's turns into observations (each linked to its source turns)
//! and entities (merged per user with what is stored, linked to the turns
//! and observations that mention them).
//!
//! Delivery is at least once, so every write it makes is an upsert keyed by
//! a content-derived fragment id: a redelivered event rewrites the same
//! points. A message is acknowledged only after the store write returned;
//! a failure naks it with a growing delay, and the last allowed delivery
//! dead-letters it and fails its job.
//!
//! A panic never turns into a redelivery loop: one inside the extractor
//! is contained (the write keeps the caller's observations and its job
//! records why), one anywhere else in processing fails the job at once
//! and dead-letters the message; both are counted in
//! `engram_enrich_panics_total`.

pub mod chunk;
mod consumer;
mod derive;
mod enricher;
mod memory;
pub mod sweeper;

pub use consumer::{EnrichConfig, run};
pub use derive::turn_inputs;
pub use enricher::Enricher;

use engram_core::{AccountsError, EmbedError, JobStoreError, StoreError, StreamError};

/// The message of a caught panic (`panic!` with a string, or a formatted
/// one); something generic for any other payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Why processing one event failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// The payload is not an `Event` (nor a bare `TurnsIngested`).
    #[error("undecodable event: {0}")]
    Decode(String),
    /// The vector store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The job store failed.
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    /// The stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The extractor cannot run.
    #[error(transparent)]
    Extract(#[from] engram_extract::ExtractError),
    /// The credit store failed (refunding a failed memory).
    #[error(transparent)]
    Accounts(#[from] AccountsError),
}
