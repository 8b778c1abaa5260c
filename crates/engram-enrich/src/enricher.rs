//! What enrichment does with one event.

use crate::EnrichError;
use crate::derive;
use engram_core::{
    Credits, Embedder, Job, JobState, JobStore, MemoryRef, PointPayload, VectorStore,
};
use engram_extract::Extractor;
use engram_proto::events::v1::{Event, TurnsIngested, event};
use futures::FutureExt;
use prost::Message;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// Reads a stream payload: an [`Event`], or a bare [`TurnsIngested`] as
/// earlier versions published (it decodes as an `Event` without a kind,
/// because the envelope's field numbers are unused by `TurnsIngested`).
pub(crate) fn decode(payload: &[u8]) -> Result<event::Kind, EnrichError> {
    let decoded = Event::decode(payload).map_err(|e| EnrichError::Decode(e.to_string()))?;
    match decoded.kind {
        Some(kind) => Ok(kind),
        None => TurnsIngested::decode(payload)
            .map(event::Kind::Turns)
            .map_err(|e| EnrichError::Decode(e.to_string())),
    }
}

/// Turns events into stored points and job records.
pub struct Enricher {
    pub(crate) store: Arc<dyn VectorStore>,
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) jobs: Arc<dyn JobStore>,
    extractor: Arc<dyn Extractor>,
    /// Where the charge of a stored memory whose processing failed for
    /// good is refunded; `None` when nothing is ever charged.
    credits: Option<Arc<dyn Credits>>,
    /// Serializes the entity read-modify-write inside this process.
    entity_lock: tokio::sync::Mutex<()>,
    /// Vectors of entity labels already embedded.
    label_vectors: parking_lot::Mutex<std::collections::HashMap<String, Vec<f32>>>,
    /// BM25 average lengths of each user's observations, entities and
    /// memory chunks.
    pub(crate) lengths: engram_core::CorpusLengths,
    /// Interactive load: the consumer runs one event at a time while it
    /// is high. `None`: always the configured concurrency.
    pub(crate) pressure: Option<Arc<dyn engram_core::Pressure>>,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Enricher {
    /// An enricher extracting with `extractor`, writing to `store`,
    /// embedding with `embedder`, recording progress in `jobs`.
    pub fn new(
        store: Arc<dyn VectorStore>,
        embedder: Arc<dyn Embedder>,
        jobs: Arc<dyn JobStore>,
        extractor: Arc<dyn Extractor>,
    ) -> Self {
        Self {
            store,
            embedder,
            jobs,
            extractor,
            credits: None,
            entity_lock: tokio::sync::Mutex::new(()),
            label_vectors: parking_lot::Mutex::new(std::collections::HashMap::new()),
            lengths: engram_core::CorpusLengths::new(),
            pressure: None,
        }
    }

    /// Refunds the charge of a stored memory whose processing fails for
    /// good through `credits`.
    pub fn with_credits(mut self, credits: Arc<dyn Credits>) -> Self {
        self.credits = Some(credits);
        self
    }

    /// Makes the consumer adapt to interactive load: while `pressure`
    /// says calls a person waits for are being served, it takes one event
    /// at a time instead of the configured concurrency.
    pub fn with_pressure(mut self, pressure: Arc<dyn engram_core::Pressure>) -> Self {
        self.pressure = Some(pressure);
        self
    }

    /// Processes one delivery of an event: marks its job processing, writes
    /// what it derives (observation and entity points of a Remember; chunk,
    /// observation and entity points of a stored memory), marks the job
    /// ready. Returns the number of observation points. Safe to run again
    /// for the same event. `known` is the job's record when the caller has
    /// just read it.
    pub async fn process(
        &self,
        payload: &[u8],
        attempt: u64,
        known: Option<Job>,
    ) -> Result<u32, EnrichError> {
        match decode(payload)? {
            event::Kind::Turns(event) => self.process_turns(event, attempt, known).await,
            event::Kind::Memory(memory) => self.process_memory(memory, attempt, known).await,
        }
    }

    async fn process_turns(
        &self,
        event: TurnsIngested,
        attempt: u64,
        known: Option<Job>,
    ) -> Result<u32, EnrichError> {
        let mut job = match known {
            Some(job) if job.job_id == event.job_id => job,
            _ => self.job(&event).await?,
        };
        job.state = JobState::Processing;
        job.attempts = attempt;
        job.updated_ms = now_ms();
        self.jobs.put(&job).await?;

        let derived = self.derive_and_write(&event, None).await?;

        job.state = JobState::Ready;
        job.observations = derived.observations;
        job.entities = derived.entities;
        job.tokens_in = derived.usage.tokens_in;
        job.tokens_out = derived.usage.tokens_out;
        job.fallback = derived.fallback;
        job.error = derived.contained;
        job.updated_ms = now_ms();
        self.jobs.put(&job).await?;
        self.drop_kept(&job.job_id).await;
        tracing::info!(
            job_id = %event.job_id,
            org_id = %event.org_id,
            attempt,
            extractor = self.extractor.name(),
            observations = derived.observations,
            entities = derived.entities,
            "enriched write"
        );
        Ok(derived.observations)
    }

    /// The job's record: the one ingest created, or a new one when ingest
    /// could not record it.
    async fn job(&self, event: &TurnsIngested) -> Result<Job, EnrichError> {
        if let Some(job) = self.jobs.get(&event.job_id).await? {
            return Ok(job);
        }
        let created_ms = event
            .ingested_at
            .as_ref()
            .map_or_else(now_ms, engram_proto::time::to_ms);
        Ok(Job::pending(
            event.job_id.clone(),
            event.org_id.clone(),
            event.turns.len() as u32,
            created_ms,
        ))
    }

    /// Records a job's failure (the last delivery failed, or the message
    /// cannot be read). A job whose record cannot be found is created so the
    /// caller can see why.
    ///
    /// A stored memory's charge is refunded first (at most once: refunds
    /// are keyed by the charge). An error leaves the message unsettled, so
    /// the refund and the record are tried again on its next delivery.
    pub(crate) async fn fail(
        &self,
        job_id: &str,
        payload: &[u8],
        attempt: u64,
        error: &str,
    ) -> Result<(), EnrichError> {
        let decoded = decode(payload).ok();
        if let (Some(event::Kind::Memory(m)), Some(credits)) = (&decoded, &self.credits)
            && !m.charge_key.is_empty()
        {
            let refunded = credits.refund(&m.org_id, &m.charge_key, error).await?;
            if let Some(r) = refunded {
                tracing::info!(memory_id = %m.memory_id, tx_id = %r.tx_id, amount = r.amount, "refunded the charge of a failed memory");
            }
        }
        let mut job = match self.jobs.get(job_id).await? {
            Some(job) => job,
            None => match &decoded {
                Some(event::Kind::Turns(event)) => self.job(event).await?,
                Some(event::Kind::Memory(m)) => crate::memory::pending_job(m),
                // Without an event there is no tenant to show the job to.
                None => return Ok(()),
            },
        };
        job.state = JobState::Failed;
        job.attempts = attempt;
        job.error = Some(error.to_owned());
        job.updated_ms = now_ms();
        self.jobs.put(&job).await?;
        self.drop_kept(job_id).await;
        Ok(())
    }

    /// Forgets the kept event of a job that is final. A failure costs only
    /// a sweep that finds the job final and drops it then.
    pub(crate) async fn drop_kept(&self, job_id: &str) {
        if let Err(error) = self.jobs.drop_event(job_id).await {
            tracing::warn!(job_id, %error, "cannot drop the kept event of a finished job");
        }
    }

    /// Which delivery this really is: the stream's count, or one more than
    /// the attempts the job record already shows while it is unfinished.
    /// The record covers what the stream may not: on nats-server 2.9 a
    /// message whose consumer process stopped mid-job came back with a
    /// delivery count of 1, which would let a crash loop dodge
    /// `max_deliver`.
    /// Also returns the record it read, so processing does not read it again.
    pub(crate) async fn effective_attempt(
        &self,
        job_id: &str,
        delivered: u64,
    ) -> (u64, Option<Job>) {
        match self.jobs.get(job_id).await {
            Ok(Some(job)) => {
                let attempt = if job.state == JobState::Processing {
                    delivered.max(job.attempts + 1)
                } else {
                    delivered
                };
                (attempt, Some(job))
            }
            _ => (delivered, None),
        }
    }

    /// Notes a transient error on a job that will be retried.
    pub(crate) async fn note_retry(&self, job_id: &str, attempt: u64, error: &str) {
        let Ok(Some(mut job)) = self.jobs.get(job_id).await else {
            return;
        };
        if job.state.is_final() {
            return;
        }
        job.attempts = attempt;
        job.error = Some(error.to_owned());
        job.updated_ms = now_ms();
        if let Err(e) = self.jobs.put(&job).await {
            tracing::warn!(job_id, error = %e, "cannot record retry on job");
        }
    }

    /// Extracts from the event's turns (outside any lock: a model-backed
    /// extractor may take seconds), then writes the observation and entity
    /// points. Entity merging is a read-modify-write of points shared by
    /// the user's writes, so it runs under the entity lock: two events
    /// naming the same person must not both start from the same count.
    ///
    /// `memory` is set when the "turns" are the chunks of a stored memory:
    /// the observations then carry its reference, so they are as visible as
    /// the memory itself.
    pub(crate) async fn derive_and_write(
        &self,
        event: &TurnsIngested,
        memory: Option<&MemoryRef>,
    ) -> Result<Derived, EnrichError> {
        let turns = derive::turn_inputs(event);
        let (extraction, contained) = self.extract_contained(event, &turns).await?;
        let metadata = event
            .metadata
            .as_ref()
            .map(engram_proto::json::struct_to_json)
            .unwrap_or_default();
        let mut observations = derive::observation_payloads(event, &extraction, &metadata);
        for (p, _) in &mut observations {
            p.memory = memory.cloned();
        }
        let _guard = self.entity_lock.lock().await;
        let entities =
            derive::entity_payloads(self.store.as_ref(), event, &extraction, &observations).await?;
        let derived = Derived {
            observations: observations.len() as u32,
            entities: entities.len() as u32,
            usage: extraction.usage,
            fallback: extraction.fallback,
            contained,
        };
        let payloads: Vec<PointPayload> = observations
            .into_iter()
            .map(|(p, _)| p)
            .chain(entities)
            .collect();
        if payloads.is_empty() {
            return Ok(derived);
        }
        let vectors = self.vectors(&payloads).await?;
        let points = self
            .lengths
            .points(
                self.store.as_ref(),
                self.embedder.as_ref(),
                payloads,
                vectors,
            )
            .await?;
        self.store.upsert(points).await?;
        Ok(derived)
    }
}

impl Enricher {
    /// Runs the extractor with a panic contained: a panic on some text
    /// would come back on every delivery of the event, so instead of
    /// failing the delivery the write keeps the caller's observations
    /// (no entities), the reason is returned for the job record, and the
    /// panic is counted.
    async fn extract_contained(
        &self,
        event: &TurnsIngested,
        turns: &[engram_extract::TurnInput],
    ) -> Result<(engram_extract::Extraction, Option<String>), EnrichError> {
        match AssertUnwindSafe(self.extractor.extract(turns))
            .catch_unwind()
            .await
        {
            Ok(extraction) => Ok((extraction?, None)),
            Err(panic) => {
                let reason = format!(
                    "the {} extractor panicked ({}); only the caller's observations were stored",
                    self.extractor.name(),
                    crate::panic_message(panic.as_ref())
                );
                metrics::counter!(engram_telemetry::metrics::ENRICH_PANICS, "stage" => "extract")
                    .increment(1);
                tracing::error!(job_id = %event.job_id, org_id = %event.org_id, reason, "extraction panicked; contained");
                let mut extraction = engram_extract::caller_observations(turns);
                extraction.fallback = Some(reason.clone());
                Ok((extraction, Some(reason)))
            }
        }
    }

    /// Dense vectors for `payloads`, in order. Entity labels repeat across
    /// writes (a speaker's name is in every one), so their vectors come from
    /// a cache when they can; everything else is embedded in one batch.
    async fn vectors(&self, payloads: &[PointPayload]) -> Result<Vec<Vec<f32>>, EnrichError> {
        let mut out: Vec<Option<Vec<f32>>> = {
            let cache = self.label_vectors.lock();
            payloads
                .iter()
                .map(|p| {
                    (p.kind == engram_core::Kind::Entity)
                        .then(|| cache.get(&p.text).cloned())
                        .flatten()
                })
                .collect()
        };
        let missing: Vec<usize> = (0..payloads.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let texts: Vec<String> = missing.iter().map(|&i| payloads[i].text.clone()).collect();
            let fresh = self.embedder.embed(&texts).await?;
            let mut cache = self.label_vectors.lock();
            for (&i, v) in missing.iter().zip(fresh) {
                if payloads[i].kind == engram_core::Kind::Entity {
                    if cache.len() >= LABEL_CACHE {
                        // Crude but bounded: labels come back soon enough.
                        cache.clear();
                    }
                    cache.insert(payloads[i].text.clone(), v.clone());
                }
                out[i] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| {
                v.ok_or_else(|| {
                    EnrichError::Embed(engram_core::EmbedError::Internal(
                        "embedder returned too few vectors".into(),
                    ))
                })
            })
            .collect()
    }
}

/// Entity label vectors kept per process.
const LABEL_CACHE: usize = 20_000;

/// What one event yields.
pub(crate) struct Derived {
    pub(crate) observations: u32,
    pub(crate) entities: u32,
    pub(crate) usage: engram_extract::ExtractUsage,
    pub(crate) fallback: Option<String>,
    /// Set when the extractor panicked and only the caller's observations
    /// were stored: why (the job records it as its error).
    pub(crate) contained: Option<String>,
}
