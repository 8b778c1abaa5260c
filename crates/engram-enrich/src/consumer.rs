//! The consumer loop: bounded concurrency, settlement, back-off, drain.

use crate::Enricher;
use engram_core::{Delivery, JobState, StreamError, Subscription, TurnStream};
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

/// How the consumer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichConfig {
    /// Events processed at the same time.
    pub concurrency: usize,
    /// Deliveries of one event before it is dead-lettered and its job failed.
    pub max_deliver: u64,
    /// Delay before the second delivery; doubles with every further one.
    pub backoff_base: Duration,
    /// Longest delay between deliveries.
    pub backoff_max: Duration,
    /// How often a long-running event tells the stream it is still alive.
    pub progress_interval: Duration,
    /// Longest wait for in-flight events at shutdown; what is left is
    /// redelivered to the next consumer.
    pub drain_timeout: Duration,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_deliver: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            progress_interval: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl EnrichConfig {
    /// Delay before delivery `attempt + 1` after delivery `attempt` failed.
    pub fn backoff(&self, attempt: u64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20) as u32;
        self.backoff_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.backoff_max)
    }
}

/// How often a consumer held back by interactive load looks again.
const PRESSURE_RECHECK: Duration = Duration::from_millis(50);

/// Pause after the stream fails to hand out a message.
const STREAM_RETRY: Duration = Duration::from_secs(1);

/// Consumes `stream` until `shutdown` resolves, then stops taking messages
/// and waits (up to `drain_timeout`) for those in flight.
pub async fn run(
    enricher: Arc<Enricher>,
    stream: Arc<dyn TurnStream>,
    config: EnrichConfig,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    let Some(mut subscription) = subscribe(&stream, &mut shutdown).await else {
        return;
    };
    tracing::info!(
        concurrency = config.concurrency,
        max_deliver = config.max_deliver,
        "enrichment consumer started"
    );
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        // Under interactive load one event at a time: the others' CPU goes
        // to the calls people wait for. Checked before each new event, so
        // concurrency comes back as soon as the load is gone.
        let mut stopping = false;
        while !tasks.is_empty()
            && enricher
                .pressure
                .as_ref()
                .is_some_and(|p| p.interactive_busy())
        {
            tokio::select! {
                () = &mut shutdown => {
                    stopping = true;
                    break;
                }
                _ = tasks.join_next() => {}
                () = tokio::time::sleep(PRESSURE_RECHECK) => {}
            }
        }
        if stopping {
            break;
        }
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => p.expect("semaphore never closes"),
        };
        let next = tokio::select! {
            () = &mut shutdown => break,
            next = subscription.next() => next,
        };
        match next {
            Ok(delivery) => {
                let enricher = Arc::clone(&enricher);
                let config = config.clone();
                // Continues the trace of the call that published the turns.
                let span = engram_telemetry::consume_span(
                    delivery.job_id(),
                    delivery.attempt(),
                    &delivery.trace_context(),
                );
                tasks.spawn(
                    async move {
                        handle(&enricher, delivery, &config).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(StreamError::Closed) => break,
            Err(error) => {
                tracing::warn!(%error, "cannot take the next message; retrying");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(STREAM_RETRY) => {}
                }
            }
        }
    }
    let in_flight = tasks.len();
    tracing::info!(in_flight, "enrichment consumer draining");
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "drain timed out; unfinished messages will be redelivered"
        );
        tasks.abort_all();
    }
    tracing::info!("enrichment consumer stopped");
}

async fn subscribe(
    stream: &Arc<dyn TurnStream>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<Box<dyn Subscription>> {
    loop {
        match stream.subscribe().await {
            Ok(s) => return Some(s),
            Err(StreamError::Closed) => return None,
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to the turn stream; retrying");
                tokio::select! {
                    () = shutdown.as_mut() => return None,
                    () = tokio::time::sleep(STREAM_RETRY) => {}
                }
            }
        }
    }
}

/// Processes and settles one delivery. Never panics on failures: every
/// outcome (a panic in processing included) ends in ack, nak or dead
/// letter (or, if even that fails, in redelivery after the stream's ack
/// wait).
async fn handle(enricher: &Enricher, delivery: Box<dyn Delivery>, config: &EnrichConfig) {
    let job_id = delivery.job_id().to_owned();
    let (attempt, known) = enricher
        .effective_attempt(&job_id, delivery.attempt())
        .await;
    if known.as_ref().is_some_and(|j| j.state == JobState::Ready) {
        // A second copy of a finished job's event (the sweeper published it
        // again while the first was still on its way): nothing to redo.
        tracing::debug!(job_id = %job_id, "event of a ready job; acknowledged without work");
        enricher.drop_kept(&job_id).await;
        if let Err(error) = delivery.ack().await {
            tracing::warn!(job_id = %job_id, %error, "cannot ack; the message will be redelivered");
        }
        return;
    }
    if attempt > config.max_deliver {
        // Delivered more often than allowed without settling (a consumer
        // that kept crashing on it): give up without another try.
        give_up(
            enricher,
            delivery.as_ref(),
            attempt,
            "delivered more often than max_deliver without completing",
        )
        .await;
        return;
    }
    let started = std::time::Instant::now();
    let result = {
        // A panic here would leave the message unsettled and come back on
        // every delivery: it is caught and ends the job below.
        let work =
            AssertUnwindSafe(enricher.process(delivery.payload(), attempt, known)).catch_unwind();
        tokio::pin!(work);
        let mut ticker = tokio::time::interval(config.progress_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                r = &mut work => break r,
                _ = ticker.tick() => {
                    if let Err(error) = delivery.progress().await {
                        tracing::warn!(job_id = %job_id, %error, "cannot report progress");
                    }
                }
            }
        }
    };
    let result = match result {
        Ok(result) => result,
        Err(panic) => {
            let reason = format!(
                "enrichment panicked: {}",
                crate::panic_message(panic.as_ref())
            );
            metrics::counter!(engram_telemetry::metrics::ENRICH_PANICS, "stage" => "process")
                .increment(1);
            metrics::histogram!(engram_telemetry::metrics::ENRICH_DURATION, "outcome" => "panic")
                .record(started.elapsed().as_secs_f64());
            // The same input panics again: no retries.
            give_up(enricher, delivery.as_ref(), attempt, &reason).await;
            return;
        }
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!(engram_telemetry::metrics::ENRICH_DURATION, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(_) => {
            if let Err(error) = delivery.ack().await {
                // The work is done and idempotent: a redelivery redoes it.
                tracing::warn!(job_id = %job_id, %error, "cannot ack; the message will be redelivered");
            }
        }
        Err(error) if attempt >= config.max_deliver => {
            give_up(enricher, delivery.as_ref(), attempt, &error.to_string()).await;
        }
        Err(error) => {
            let delay = config.backoff(attempt);
            tracing::warn!(job_id = %job_id, attempt, delay_ms = delay.as_millis() as u64, %error, "enrichment failed; will retry");
            enricher
                .note_retry(&job_id, attempt, &error.to_string())
                .await;
            if let Err(error) = delivery.nak(delay).await {
                tracing::warn!(job_id = %job_id, %error, "cannot nak; the message will be redelivered after the ack wait");
            }
        }
    }
}

async fn give_up(enricher: &Enricher, delivery: &dyn Delivery, attempt: u64, reason: &str) {
    let job_id = delivery.job_id();
    tracing::error!(job_id, attempt, reason, "giving up on message");
    if let Err(error) = enricher
        .fail(job_id, delivery.payload(), attempt, reason)
        .await
    {
        // A refund or a failed record must not be lost with the message:
        // leave it to come back (past max_deliver, it ends here again).
        tracing::warn!(job_id, %error, "cannot mark job failed; will try again");
        if let Err(error) = delivery.nak(STREAM_RETRY).await {
            tracing::warn!(job_id, %error, "cannot nak; the message will be redelivered");
        }
        return;
    }
    if let Err(error) = delivery.dead_letter(reason).await {
        tracing::warn!(job_id, %error, "cannot dead-letter; the message will be redelivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = EnrichConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(700),
            ..EnrichConfig::default()
        };
        let delays: Vec<u128> = (1..=6).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 700, 700, 700]);
        assert_eq!(c.backoff(u64::MAX), Duration::from_millis(700));
    }
}
