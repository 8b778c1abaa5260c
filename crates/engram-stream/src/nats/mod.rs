//! The distributed turn stream and job store on NATS JetStream.
//!
//! - [`NatsStream`] implements [`engram_core::TurnStream`]: a file-backed
//!   stream over [`NatsOptions::subject`] and
//!   [`NatsOptions::dead_letter_subject`], published to with `Nats-Msg-Id`
//!   de-duplication and consumed by the durable pull consumer
//!   [`NatsOptions::consumer`] (explicit acks, no server-side delivery limit:
//!   the Engram consumer counts attempts and dead-letters itself).
//! - [`NatsJobs`] implements [`engram_core::JobStore`] on a key-value
//!   bucket, sharing the stream's connection ([`NatsStream::job_store`]).
//! - [`NatsCredits`] implements [`engram_core::Credits`]: wallets in a
//!   key-value bucket changed by compare-and-set, the ledger on its own
//!   stream ([`NatsStream::credits`]).
//! - [`NatsCollections`] implements [`engram_core::Collections`] on a
//!   key-value bucket ([`NatsStream::collections`]).
//!
//! The client speaks the JetStream API of nats-server 2.9 (newer servers
//! accept it too). It connects in the background and never gives up
//! reconnecting; every operation is bounded by
//! [`NatsOptions::request_timeout_ms`] and fails with `Unavailable` while
//! NATS cannot be reached, instead of queueing work that would take effect
//! later behind the caller's back.
//!
//! Headers on the stream's messages: `Nats-Msg-Id` (de-duplication),
//! [`JOB_ID_HEADER`]; dead letters add [`DEAD_REASON_HEADER`] and
//! [`ATTEMPTS_HEADER`] and carry the original id with `.dead` appended.

mod accounts;
mod collections;
mod connection;
mod credits;
mod jobs;
mod options;
mod stream;
mod subscription;

pub use collections::NatsCollections;
pub use credits::NatsCredits;
pub use jobs::NatsJobs;
pub use options::{NatsOptions, Retention};
pub use stream::NatsStream;

use connection::Failure;

/// Header carrying the job id beside the payload.
pub const JOB_ID_HEADER: &str = "Engram-Job-Id";

/// Header of a dead letter: why the consumer gave up.
pub const DEAD_REASON_HEADER: &str = "Engram-Dead-Reason";

/// Header of a dead letter: how many deliveries were made.
pub const ATTEMPTS_HEADER: &str = "Engram-Attempts";

/// Header of a ledger row: its number in the workspace's ledger (1, 2, …),
/// the order rows are read in.
pub const LEDGER_SEQ_HEADER: &str = "Engram-Ledger-Seq";

/// A header value must be a single line; ids never contain line breaks, so
/// one that does is a bug upstream, not something to repair here.
fn header_value(field: &str, value: &str) -> Result<String, Failure> {
    if value.contains(['\r', '\n']) {
        return Err(Failure::Internal(format!(
            "{field} {value:?} contains a line break and cannot be a header"
        )));
    }
    Ok(value.to_owned())
}
