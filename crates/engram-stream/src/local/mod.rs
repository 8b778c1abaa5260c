//! The embedded durable local queue and job table: one `redb` database file
//! in the data directory.
//!
//! `engram serve` runs ingest and enrichment in one process, so the queue
//! needs no network, only the guarantees the consumer relies on: a publish
//! is fsync'd before it is acknowledged, a message stays until it is acked
//! or dead-lettered, a message being worked on when the process dies is
//! delivered again after the restart (its delivery count was persisted when
//! it was handed out), and a message id seen inside the duplicate window is
//! dropped. redb commits are atomic and durable, which is all of that.

mod jobs;
mod queue;

pub use jobs::LocalJobs;
pub use queue::{DeadLetter, LocalQueue, LocalQueueOptions};

use engram_core::StreamError;

fn internal(e: impl std::fmt::Display) -> StreamError {
    StreamError::Internal(e.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
