//! The embedded durable local queue, job table, credit wallets with their
//! ledger, and team collections: one `redb` database file in the data
//! directory.
//!
//! `engram serve` runs ingest and enrichment in one process, so the queue
//! needs no network, only the guarantees the consumer relies on: a publish
//! is fsync'd before it is acknowledged, a message stays until it is acked
//! or dead-lettered, a message being worked on when the process dies is
//! delivered again after the restart (its delivery count was persisted when
//! it was handed out), and a message id seen inside the duplicate window is
//! dropped. redb commits are atomic and durable, which is all of that.

mod collections;
mod credits;
mod jobs;
mod queue;

pub use collections::LocalCollections;
pub use credits::LocalCredits;
pub use jobs::LocalJobs;
pub use queue::{DeadLetter, LocalQueue, LocalQueueOptions};

use engram_core::StreamError;

/// A write transaction that commits without waiting for the disk.
///
/// Only a publish must be on disk before it is acknowledged: losing a claim,
/// an ack or a job-state change in a crash only means a redelivery (which
/// is idempotent) or a job record the consumer rewrites. redb persists an
/// eventual commit with the next durable one, so order is kept. Each fsync
/// costs tens of milliseconds here; a job used to pay six of them.
fn lazy_write(db: &redb::Database) -> Result<redb::WriteTransaction, StreamError> {
    let mut tx = db.begin_write().map_err(internal)?;
    tx.set_durability(redb::Durability::Eventual);
    Ok(tx)
}

fn internal(e: impl std::fmt::Display) -> StreamError {
    StreamError::Internal(e.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
