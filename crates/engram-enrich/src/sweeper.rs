//! The sweeper: jobs whose event was lost are published again.
//!
//! An acknowledged write keeps its event in the job store's outbox until
//! its job is final (see [`engram_core::JobStore::keep_event`]). An event
//! can still vanish from the stream after that: JetStream acknowledges a
//! publish before it is synced to disk unless `sync_interval: always`, a
//! process can die between keeping the event and publishing it, a stream
//! can be purged. The sweeper reads the outbox every `interval`; a kept
//! event whose job is not final and has not moved for `overdue_after` is
//! overdue: it is published again (under a new message id, so the stream's
//! duplicate window cannot swallow it) and its job record is created if it
//! is missing. Processing is idempotent and a delivery of a job that is
//! already ready is acknowledged without work, so a second copy costs
//! nothing. Kept events of final jobs are dropped.

use crate::EnrichError;
use engram_core::{Job, JobStore, KeptEvent, OutboundMessage, TurnStream};
use engram_proto::events::v1::event;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How the sweeper runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// Time between sweeps.
    pub interval: Duration,
    /// A job that has not changed for this long is overdue.
    pub overdue_after: Duration,
    /// Kept events read per sweep.
    pub batch: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            // Well past a normal job (seconds) and the stream's redelivery
            // after a silent consumer (ack wait, 30 s), so a job on its way
            // is not published twice.
            overdue_after: Duration::from_secs(300),
            batch: 1000,
        }
    }
}

/// What one sweep found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Kept events read.
    pub kept: usize,
    /// Of those, jobs overdue.
    pub overdue: usize,
    /// Overdue events published again.
    pub republished: usize,
    /// Kept events of final jobs dropped.
    pub dropped: usize,
}

/// One sweep at `now_ms`. With `stream` absent (a role that does not
/// enrich) it only counts overdue jobs and drops kept events of final ones.
pub async fn sweep_once(
    jobs: &dyn JobStore,
    stream: Option<&dyn TurnStream>,
    config: &SweepConfig,
    now_ms: i64,
) -> Result<SweepReport, EnrichError> {
    let mut report = SweepReport::default();
    let kept = jobs.kept_events(config.batch).await?;
    report.kept = kept.len();
    let overdue_ms = i64::try_from(config.overdue_after.as_millis()).unwrap_or(i64::MAX);
    for mut entry in kept {
        let job = jobs.get(&entry.job_id).await?;
        if job.as_ref().is_some_and(|j| j.state.is_final()) {
            jobs.drop_event(&entry.job_id).await?;
            report.dropped += 1;
            continue;
        }
        let last_moved = job
            .as_ref()
            .map_or(entry.kept_ms, |j| j.updated_ms.max(entry.kept_ms))
            .max(entry.republished_ms.unwrap_or(i64::MIN));
        if now_ms.saturating_sub(last_moved) < overdue_ms {
            continue;
        }
        report.overdue += 1;
        let Some(stream) = stream else { continue };
        if job.is_none() {
            // The write's process died between keeping the event and
            // recording the job: record it, as ingest would have.
            jobs.create(&pending_job(&entry, now_ms)).await?;
        }
        stream
            .publish(OutboundMessage {
                msg_id: format!("{}.swept.{now_ms}", entry.msg_id),
                job_id: entry.job_id.clone(),
                payload: entry.payload.clone(),
                ..Default::default()
            })
            .await?;
        entry.republished_ms = Some(now_ms);
        jobs.keep_event(&entry).await?;
        report.republished += 1;
        tracing::warn!(
            job_id = %entry.job_id,
            org_id = %entry.org_id,
            state = job.as_ref().map_or("missing", |j| j.state.as_str()),
            still_ms = now_ms.saturating_sub(last_moved),
            "overdue job: published its event again"
        );
    }
    Ok(report)
}

/// The record a job would have had: pending, with its turn count (or, for
/// a stored memory, its owner) read from the event.
fn pending_job(entry: &KeptEvent, now_ms: i64) -> Job {
    match crate::enricher::decode(&entry.payload) {
        Ok(event::Kind::Memory(m)) => crate::memory::pending_job(&m),
        Ok(event::Kind::Turns(t)) => Job::pending(
            entry.job_id.clone(),
            entry.org_id.clone(),
            t.turns.len() as u32,
            entry.kept_ms,
        ),
        // The consumer fails an undecodable event with a record of its own.
        Err(_) => Job::pending(entry.job_id.clone(), entry.org_id.clone(), 0, now_ms),
    }
}

/// Sweeps every `config.interval` until `shutdown` resolves, publishing
/// overdue events again when `stream` is given. The number of overdue jobs
/// of the last sweep goes to `overdue` and to the `engram_jobs_overdue`
/// gauge; republished events are counted in `engram_jobs_republished_total`.
pub async fn run(
    jobs: Arc<dyn JobStore>,
    stream: Option<Arc<dyn TurnStream>>,
    config: SweepConfig,
    overdue: Arc<AtomicU64>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    tracing::info!(
        interval_ms = config.interval.as_millis() as u64,
        overdue_after_ms = config.overdue_after.as_millis() as u64,
        republishes = stream.is_some(),
        "job sweeper started"
    );
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(config.interval) => {}
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        match sweep_once(jobs.as_ref(), stream.as_deref(), &config, now_ms).await {
            Ok(report) => {
                overdue.store(report.overdue as u64, Ordering::Relaxed);
                engram_telemetry::metrics::set_overdue(report.overdue as u64);
                if report.republished > 0 {
                    metrics::counter!(engram_telemetry::metrics::JOBS_REPUBLISHED)
                        .increment(report.republished as u64);
                }
                if report.overdue > 0 || report.dropped > 0 {
                    tracing::info!(
                        kept = report.kept,
                        overdue = report.overdue,
                        republished = report.republished,
                        dropped = report.dropped,
                        "swept jobs"
                    );
                }
            }
            // The dependencies are down; health says so. Try again later.
            Err(error) => tracing::debug!(%error, "cannot sweep jobs"),
        }
    }
    tracing::info!("job sweeper stopped");
}
