//! Engram's turn stream and job state, two real implementations each:
//!
//! - [`nats`]: a NATS JetStream stream with a durable pull consumer, and a
//!   JetStream key-value bucket for job records (the distributed mode);
//! - [`local`]: a durable queue and job table in one embedded transactional
//!   database file in the data directory (what `engram serve` uses alone).
//!
//! Both give the same guarantees to [`engram_core::TurnStream`] users:
//! at-least-once delivery, de-duplication by message id inside a window,
//! redelivery of unacknowledged messages after a restart, and a dead-letter
//! place for messages a consumer gives up on.

pub mod local;
pub mod nats;

pub use local::{LocalJobs, LocalQueue, LocalQueueOptions};
pub use nats::{NatsJobs, NatsOptions, NatsStream, Retention};
