//! [`NatsStream`]: the turn stream on a JetStream stream.

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, PublishError, PublishErrorKind};
use async_trait::async_trait;
use engram_core::{OutboundMessage, PublishAck, StreamError, Subscription, TurnStream};

use super::collections::NatsCollections;
use super::connection::{Failure, Shared, is_not_found};
use super::credits::NatsCredits;
use super::jobs::NatsJobs;
use super::options::NatsOptions;
use super::subscription::NatsSubscription;
use super::{JOB_ID_HEADER, header_value};

/// The turn stream on NATS JetStream: publishes go to
/// [`NatsOptions::subject`] with `Nats-Msg-Id` de-duplication, and
/// [`TurnStream::subscribe`] opens the durable pull consumer
/// [`NatsOptions::consumer`].
///
/// Cloning is cheap and shares the connection.
#[derive(Debug, Clone)]
pub struct NatsStream {
    shared: Arc<Shared>,
}

impl NatsStream {
    /// Validates `options` and connects in the background: this returns at
    /// once even when NATS is down, and operations report
    /// [`StreamError::Unavailable`] until it is reachable. The stream is
    /// created or updated from `options` on first use.
    ///
    /// Fails with [`StreamError::Internal`] only for invalid options.
    pub async fn connect(options: NatsOptions) -> Result<Self, StreamError> {
        let shared = Shared::connect(options).await?;
        Ok(NatsStream {
            shared: Arc::new(shared),
        })
    }

    /// The job store on the same connection (bucket
    /// [`NatsOptions::jobs_bucket`], created on first use).
    pub fn job_store(&self) -> NatsJobs {
        NatsJobs::new(self.shared.clone())
    }

    /// The credit wallets and ledger on the same connection (bucket
    /// [`NatsOptions::wallets_bucket`], stream [`NatsOptions::ledger_stream`],
    /// created on first use). Obtain it once and clone it.
    pub fn credits(&self) -> NatsCredits {
        NatsCredits::new(self.shared.clone())
    }

    /// The team collections on the same connection (bucket
    /// [`NatsOptions::collections_bucket`], created on first use).
    pub fn collections(&self) -> NatsCollections {
        NatsCollections::new(self.shared.clone())
    }

    /// The options this stream was connected with.
    pub fn options(&self) -> &NatsOptions {
        &self.shared.options
    }

    async fn publish_once(&self, message: &OutboundMessage) -> Result<PublishAck, Failure> {
        let shared = &self.shared;
        shared.ensure_stream().await?;
        let mut headers = HeaderMap::new();
        if !message.msg_id.is_empty() {
            headers.insert(NATS_MESSAGE_ID, header_value("msg_id", &message.msg_id)?);
        }
        if !message.job_id.is_empty() {
            headers.insert(JOB_ID_HEADER, header_value("job_id", &message.job_id)?);
        }
        for (name, value) in &message.trace_context {
            if engram_core::TRACE_CONTEXT_FIELDS.contains(&name.as_str()) {
                headers.insert(name.as_str(), header_value(name, value)?);
            }
        }
        let ack = match self.send(headers.clone(), message).await {
            // No stream answered: it was deleted or the server lost its state.
            // Recreating it and publishing again (same msg id, so no duplicate)
            // is worth one more try.
            Err(err) if err.kind() == PublishErrorKind::StreamNotFound => {
                tracing::warn!(stream = %shared.options.stream, "no stream answered the publish, checking it again");
                shared.recheck_stream();
                shared.ensure_stream().await?;
                self.send(headers, message).await
            }
            other => other,
        }
        .map_err(publish_failure)?;
        Ok(PublishAck {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    async fn send(
        &self,
        headers: HeaderMap,
        message: &OutboundMessage,
    ) -> Result<async_nats::jetstream::publish::PublishAck, PublishError> {
        self.shared
            .js
            .publish_with_headers(
                self.shared.options.subject.clone(),
                headers,
                message.payload.clone().into(),
            )
            .await?
            .await
    }
}

#[async_trait]
impl TurnStream for NatsStream {
    async fn publish(&self, message: OutboundMessage) -> Result<PublishAck, StreamError> {
        let shared = &self.shared;
        let result = shared
            .bounded("publishing", shared.deadline(), self.publish_once(&message))
            .await;
        match result {
            Ok(ack) => {
                tracing::debug!(
                    msg_id = %message.msg_id,
                    job_id = %message.job_id,
                    sequence = ack.sequence,
                    duplicate = ack.duplicate,
                    "turns published"
                );
                Ok(ack)
            }
            Err(failure) => {
                shared.recheck_stream();
                tracing::warn!(msg_id = %message.msg_id, job_id = %message.job_id, error = ?failure, "publish failed");
                Err(failure.into())
            }
        }
    }

    async fn subscribe(&self) -> Result<Box<dyn Subscription>, StreamError> {
        let mut subscription = NatsSubscription::new(self.shared.clone());
        match subscription.open().await {
            Ok(()) => {}
            // The subscription opens itself on `next`; a consumer process may
            // start before NATS does.
            Err(Failure::Unavailable(why)) => {
                tracing::warn!(consumer = %self.shared.options.consumer, error = %why, "consumer not opened yet, will retry");
            }
            Err(failure) => return Err(failure.into()),
        }
        Ok(Box::new(subscription))
    }

    async fn ready(&self) -> Result<(), StreamError> {
        let shared = &self.shared;
        let result = shared
            .bounded("checking the stream", shared.deadline(), async {
                shared.ensure_stream().await?;
                // A real round trip even when the stream was checked before.
                shared
                    .js
                    .get_stream_no_info(&shared.options.stream)
                    .await
                    .map_err(|err| Failure::classify("reading the stream", &err))?
                    .get_info()
                    .await
                    .map_err(|err| Failure::classify("reading the stream", &err))?;
                Ok(())
            })
            .await;
        if result.is_err() {
            shared.recheck_stream();
        }
        result.map_err(Into::into)
    }

    async fn backlog(&self) -> Result<u64, StreamError> {
        let shared = &self.shared;
        shared
            .bounded("reading the consumer", shared.deadline(), async {
                shared.ensure_stream().await?;
                let stream = shared
                    .js
                    .get_stream_no_info(&shared.options.stream)
                    .await
                    .map_err(|err| Failure::classify("reading the stream", &err))?;
                match stream.consumer_info(&shared.options.consumer).await {
                    Ok(info) => Ok(info.num_pending + info.num_ack_pending as u64),
                    // No consumer yet: everything on the stream is waiting.
                    Err(err)
                        if err.kind() == ConsumerInfoErrorKind::NotFound || is_not_found(&err) =>
                    {
                        stream
                            .get_info()
                            .await
                            .map(|info| info.state.messages)
                            .map_err(|err| Failure::classify("reading the stream", &err))
                    }
                    Err(err) => Err(Failure::classify("reading the consumer", &err)),
                }
            })
            .await
            .map_err(Into::into)
    }
}

pub(crate) fn publish_failure(err: PublishError) -> Failure {
    const WHAT: &str = "publishing";
    match err.kind() {
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => Failure::unavailable(WHAT, err),
        PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => Failure::internal(WHAT, err),
        PublishErrorKind::Other => Failure::classify(WHAT, &err),
    }
}
