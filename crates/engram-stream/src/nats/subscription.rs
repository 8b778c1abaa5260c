//! The durable pull consumer and its deliveries.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{AckKind, Message};
use async_trait::async_trait;
use engram_core::{Delivery, StreamError, Subscription};
use futures::StreamExt;

use super::connection::{Failure, Shared};
use super::{ATTEMPTS_HEADER, DEAD_REASON_HEADER, JOB_ID_HEADER, header_value};

/// Messages asked for per pull request. One: a message handed to the client
/// starts its ack timer, so prefetching would let queued messages expire and
/// be redelivered while an earlier one is still being enriched.
const PULL_BATCH: usize = 1;

/// How long one pull request stays open at the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// The server sends a heartbeat this often while it has nothing to deliver;
/// two missed ones mean the pull is dead (server gone, consumer lost).
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);

/// Longest dead-letter reason kept in the header.
const MAX_REASON_LEN: usize = 1024;

/// A feed from the durable pull consumer that reopens itself after
/// disconnections, server restarts and a deleted consumer.
pub(crate) struct NatsSubscription {
    shared: Arc<Shared>,
    messages: Option<pull::Stream>,
}

impl NatsSubscription {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        NatsSubscription {
            shared,
            messages: None,
        }
    }

    fn consumer_config(&self) -> pull::Config {
        let o = &self.shared.options;
        pull::Config {
            durable_name: Some(o.consumer.clone()),
            // Only the events: dead letters share the stream but must not
            // come back to the consumer that gave up on them.
            filter_subject: o.subject.clone(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: o.ack_wait(),
            max_ack_pending: o.max_ack_pending,
            // Unlimited: the Engram consumer counts attempts itself and
            // dead-letters, which a server-side limit would preempt silently.
            max_deliver: -1,
            ..Default::default()
        }
    }

    /// Makes sure the stream and the consumer exist (creating or updating
    /// them from the options) and opens a pull stream on the consumer.
    pub(crate) async fn open(&mut self) -> Result<(), Failure> {
        let shared = self.shared.clone();
        let config = self.consumer_config();
        // Three round trips at most: stream check, consumer create, pull.
        let deadline = shared.deadline() + shared.options.request_timeout() * 2;
        let result = shared
            .bounded("opening the consumer", deadline, async {
                shared.ensure_stream().await?;
                let stream = shared
                    .js
                    .get_stream_no_info(&shared.options.stream)
                    .await
                    .map_err(|err| Failure::classify("opening the stream", &err))?;
                // Create-or-update: idempotent, and applies changed options
                // (ack wait, max ack pending) to an existing consumer.
                let consumer = stream
                    .create_consumer(config)
                    .await
                    .map_err(|err| Failure::classify("creating the consumer", &err))?;
                consumer
                    .stream()
                    .max_messages_per_batch(PULL_BATCH)
                    .expires(PULL_EXPIRES)
                    .heartbeat(PULL_HEARTBEAT)
                    .messages()
                    .await
                    .map_err(|err| Failure::classify("opening the pull stream", &err))
            })
            .await;
        match result {
            Ok(messages) => {
                tracing::info!(
                    stream = %shared.options.stream,
                    consumer = %shared.options.consumer,
                    "consumer opened"
                );
                self.messages = Some(messages);
                Ok(())
            }
            Err(failure) => {
                shared.recheck_stream();
                Err(failure)
            }
        }
    }
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Result<Box<dyn Delivery>, StreamError> {
        // One reopen per call: a pull that fails again right away means NATS
        // is not usable now, and the caller should pause rather than spin.
        let mut reopened = false;
        loop {
            if self.messages.is_none() {
                if let Err(failure) = self.open().await {
                    tracing::warn!(consumer = %self.shared.options.consumer, error = ?failure, "cannot open the consumer");
                    return Err(failure.into());
                }
                reopened = true;
            }
            let Some(messages) = self.messages.as_mut() else {
                continue;
            };
            let failure = match messages.next().await {
                Some(Ok(message)) => {
                    return Ok(Box::new(NatsDelivery::new(message, self.shared.clone())));
                }
                Some(Err(err)) => {
                    tracing::warn!(
                        consumer = %self.shared.options.consumer,
                        kind = %err.kind(),
                        error = %err,
                        "pull stream failed, reopening it"
                    );
                    format!("pull stream failed: {err}")
                }
                None => {
                    tracing::warn!(consumer = %self.shared.options.consumer, "pull stream ended, reopening it");
                    "pull stream ended".to_owned()
                }
            };
            // Dropping the stream stops its background pull task.
            self.messages = None;
            self.shared.recheck_stream();
            if reopened {
                return Err(StreamError::Unavailable(failure));
            }
        }
    }
}

/// One delivery of a message from the durable consumer.
pub(crate) struct NatsDelivery {
    message: Message,
    job_id: String,
    attempt: u64,
    shared: Arc<Shared>,
}

impl NatsDelivery {
    fn new(message: Message, shared: Arc<Shared>) -> Self {
        let job_id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(JOB_ID_HEADER))
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default();
        let attempt = match message.info() {
            Ok(info) => u64::try_from(info.delivered).unwrap_or(1).max(1),
            Err(err) => {
                // Only a message without a JetStream reply subject lacks it,
                // which a pull consumer never hands out.
                tracing::warn!(error = %err, "delivery without jetstream metadata");
                1
            }
        };
        NatsDelivery {
            message,
            job_id,
            attempt,
            shared,
        }
    }

    /// Sends an acknowledgement of `kind` and waits for the server to
    /// confirm it, so that `Ok` means the server has recorded it.
    async fn settle(&self, what: &str, kind: AckKind) -> Result<(), Failure> {
        let shared = &self.shared;
        shared
            .bounded(what, shared.deadline(), async {
                self.message
                    .double_ack_with(kind)
                    .await
                    .map_err(|err| Failure::unavailable(what, err))
            })
            .await
    }

    /// The id the message was published with; the stream sequence when it
    /// was published without one, which identifies it just as well.
    fn msg_id(&self) -> String {
        self.message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(NATS_MESSAGE_ID))
            .map(|value| value.as_str().to_owned())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| match self.message.info() {
                Ok(info) => format!("{}.{}", info.stream, info.stream_sequence),
                Err(_) => "unknown".to_owned(),
            })
    }

    async fn move_to_dead_letters(&self, reason: &str) -> Result<(), Failure> {
        let shared = &self.shared;
        let mut headers = HeaderMap::new();
        headers.insert(
            NATS_MESSAGE_ID,
            header_value("msg_id", &format!("{}.dead", self.msg_id()))?,
        );
        if !self.job_id.is_empty() {
            headers.insert(JOB_ID_HEADER, self.job_id.as_str());
        }
        for (name, value) in self.trace_context() {
            headers.insert(name.as_str(), value);
        }
        headers.insert(DEAD_REASON_HEADER, sanitize_reason(reason));
        headers.insert(ATTEMPTS_HEADER, self.attempt.to_string());
        shared
            .bounded("publishing the dead letter", shared.deadline(), async {
                shared
                    .js
                    .publish_with_headers(
                        shared.options.dead_letter_subject.clone(),
                        headers,
                        self.message.payload.clone(),
                    )
                    .await
                    .map_err(|err| Failure::classify("publishing the dead letter", &err))?
                    .await
                    .map_err(|err| Failure::classify("publishing the dead letter", &err))
            })
            .await?;
        // Only now: terminating first would lose the message if the publish
        // failed. A crash in between redelivers it, and the dead letter is
        // then published again with the same id and dropped as a duplicate.
        self.settle("terminating the message", AckKind::Term).await
    }
}

#[async_trait]
impl Delivery for NatsDelivery {
    fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    fn job_id(&self) -> &str {
        &self.job_id
    }

    fn attempt(&self) -> u64 {
        self.attempt
    }

    fn trace_context(&self) -> Vec<(String, String)> {
        let Some(headers) = self.message.headers.as_ref() else {
            return Vec::new();
        };
        engram_core::TRACE_CONTEXT_FIELDS
            .iter()
            .filter_map(|name| {
                headers
                    .get(*name)
                    .map(|value| ((*name).to_owned(), value.as_str().to_owned()))
            })
            .collect()
    }

    async fn ack(&self) -> Result<(), StreamError> {
        self.settle("acknowledging", AckKind::Ack).await.map_err(|failure| {
            tracing::warn!(job_id = %self.job_id, attempt = self.attempt, error = ?failure, "ack failed");
            failure.into()
        })
    }

    async fn nak(&self, delay: Duration) -> Result<(), StreamError> {
        self.settle("rejecting", AckKind::Nak(Some(delay)))
            .await
            .map_err(|failure| {
                tracing::warn!(job_id = %self.job_id, attempt = self.attempt, error = ?failure, "nak failed");
                failure.into()
            })
    }

    async fn progress(&self) -> Result<(), StreamError> {
        self.settle("reporting progress", AckKind::Progress)
            .await
            .map_err(Into::into)
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), StreamError> {
        match self.move_to_dead_letters(reason).await {
            Ok(()) => {
                tracing::warn!(
                    job_id = %self.job_id,
                    attempt = self.attempt,
                    reason = %sanitize_reason(reason),
                    subject = %self.shared.options.dead_letter_subject,
                    "message dead-lettered"
                );
                Ok(())
            }
            Err(failure) => {
                tracing::warn!(job_id = %self.job_id, attempt = self.attempt, error = ?failure, "dead-lettering failed");
                Err(failure.into())
            }
        }
    }
}

/// A header value is one line; long reasons (stack-like error chains) are cut.
fn sanitize_reason(reason: &str) -> String {
    let mut clean: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::sanitize_reason;

    #[test]
    fn reasons_become_one_bounded_line() {
        assert_eq!(sanitize_reason("bad\r\npayload"), "bad  payload");
        let long = "é".repeat(2000);
        let clean = sanitize_reason(&long);
        assert!(clean.len() <= 1024);
        assert!(clean.chars().all(|c| c == 'é'));
    }
}
