//! Engram's turn stream, job state, credit wallets with their ledger, and
//! team collections, two real implementations each:
//!
//! - [`nats`]: a NATS JetStream stream with a durable pull consumer, and
//!   JetStream key-value buckets for job records, wallets and collections
//!   plus a ledger stream (the distributed mode);
//! - [`local`]: a durable queue and tables in one embedded transactional
//!   database file in the data directory (what `engram serve` uses alone).
//!
//! Both give the same guarantees to [`engram_core::TurnStream`] users:
//! at-least-once delivery, de-duplication by message id inside a window,
//! redelivery of unacknowledged messages after a restart, and a dead-letter
//! place for messages a consumer gives up on.

mod accounts;
pub mod local;
pub mod nats;

pub use local::{LocalCollections, LocalCredits, LocalJobs, LocalQueue, LocalQueueOptions};
pub use nats::{NatsCollections, NatsCredits, NatsJobs, NatsOptions, NatsStream, Retention};
