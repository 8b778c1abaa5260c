//! The turn-stream port: how ingest hands writes to the enrichment tier.
//!
//! Delivery is at least once. A message stays on the stream until its
//! consumer acknowledges it; a consumer that dies or naks gets it again, so
//! whatever a consumer writes must be idempotent (fragment-id keyed upserts).

use async_trait::async_trait;
use std::time::Duration;

/// Errors a turn stream reports.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The stream's server cannot be reached or timed out; the caller may retry.
    #[error("turn stream unavailable: {0}")]
    Unavailable(String),
    /// The stream refused or failed the operation for a reason a retry will not fix.
    #[error("turn stream failed: {0}")]
    Internal(String),
    /// The stream was closed by this process (shutdown).
    #[error("turn stream closed")]
    Closed,
}

/// The W3C trace-context fields carried beside a message (and read from
/// gRPC metadata); any other field of a trace context is dropped.
pub const TRACE_CONTEXT_FIELDS: [&str; 2] = ["traceparent", "tracestate"];

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundMessage {
    /// De-duplication id: a second publish with the same id inside the
    /// stream's duplicate window is dropped (`Nats-Msg-Id` on JetStream).
    pub msg_id: String,
    /// The job the message belongs to, carried beside the payload so that a
    /// message whose payload cannot be decoded can still fail its job.
    pub job_id: String,
    /// Encoded event (`engram.events.v1.TurnsIngested`).
    pub payload: Vec<u8>,
    /// W3C trace-context fields (`traceparent`, `tracestate`) of the span
    /// that published, carried beside the payload (as NATS headers on
    /// JetStream) so the consumer's work joins the caller's trace. Empty
    /// when tracing is off.
    pub trace_context: Vec<(String, String)>,
}

/// What the stream answered to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// Position of the message in the stream.
    pub sequence: u64,
    /// The message was a duplicate inside the window and was dropped.
    pub duplicate: bool,
}

/// The stream ingest publishes to and enrichment consumes from.
#[async_trait]
pub trait TurnStream: Send + Sync + 'static {
    /// Publishes durably: on `Ok` the message is stored and will be delivered.
    async fn publish(&self, message: OutboundMessage) -> Result<PublishAck, StreamError>;

    /// Opens the durable consumer. Messages not acknowledged by an earlier
    /// consumer (including one in a process that died) are delivered again.
    async fn subscribe(&self) -> Result<Box<dyn Subscription>, StreamError>;

    /// Whether the stream answers (used by health checks and to refuse a
    /// write before any side effect when it does not).
    async fn ready(&self) -> Result<(), StreamError>;

    /// Messages published and not yet settled by the consumer: how far
    /// enrichment lags behind ingest.
    async fn backlog(&self) -> Result<u64, StreamError>;
}

/// A durable consumer's feed of messages.
#[async_trait]
pub trait Subscription: Send {
    /// The next message; waits until one is available. An `Unavailable`
    /// error is transient: call again after a pause.
    async fn next(&mut self) -> Result<Box<dyn Delivery>, StreamError>;
}

/// One delivery of a message. Exactly one of `ack`, `nak` or `dead_letter`
/// settles it; a delivery dropped unsettled is redelivered later.
#[async_trait]
pub trait Delivery: Send + Sync {
    /// The encoded event.
    fn payload(&self) -> &[u8];

    /// The job id published beside the payload.
    fn job_id(&self) -> &str;

    /// Which delivery this is: 1 for the first.
    fn attempt(&self) -> u64;

    /// The trace context the message was published with (see
    /// [`OutboundMessage::trace_context`]).
    fn trace_context(&self) -> Vec<(String, String)>;

    /// The work is done: never deliver this message again.
    async fn ack(&self) -> Result<(), StreamError>;

    /// The work failed transiently: deliver again after `delay`.
    async fn nak(&self, delay: Duration) -> Result<(), StreamError>;

    /// The work is still running: extend the time before redelivery.
    async fn progress(&self) -> Result<(), StreamError>;

    /// Give up: move the message to the dead-letter subject (with `reason`)
    /// and never deliver it again here.
    async fn dead_letter(&self, reason: &str) -> Result<(), StreamError>;
}
