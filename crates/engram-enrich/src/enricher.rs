//! What enrichment does with one event.

use crate::EnrichError;
use crate::derive;
use engram_core::{Embedder, Job, JobState, JobStore, Point, PointPayload, VectorStore, bm25};
use engram_extract::Extractor;
use engram_proto::events::v1::TurnsIngested;
use prost::Message;
use std::sync::Arc;

/// Turns events into stored points and job records.
pub struct Enricher {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    jobs: Arc<dyn JobStore>,
    extractor: Arc<dyn Extractor>,
    /// Serializes the entity read-modify-write inside this process.
    entity_lock: tokio::sync::Mutex<()>,
    /// Vectors of entity labels already embedded.
    label_vectors: parking_lot::Mutex<std::collections::HashMap<String, Vec<f32>>>,
}

fn now_ms() -> i64 {
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
            entity_lock: tokio::sync::Mutex::new(()),
            label_vectors: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Processes one delivery of an event: marks its job processing, writes
    /// its observation points, marks the job ready. Returns the number of
    /// observation points. Safe to run again for the same event. `known` is
    /// the job's record when the caller has just read it.
    pub async fn process(
        &self,
        payload: &[u8],
        attempt: u64,
        known: Option<Job>,
    ) -> Result<u32, EnrichError> {
        let event =
            TurnsIngested::decode(payload).map_err(|e| EnrichError::Decode(e.to_string()))?;
        let mut job = match known {
            Some(job) if job.job_id == event.job_id => job,
            _ => self.job(&event).await?,
        };
        job.state = JobState::Processing;
        job.attempts = attempt;
        job.updated_ms = now_ms();
        self.jobs.put(&job).await?;

        let derived = self.derive_and_write(&event).await?;

        job.state = JobState::Ready;
        job.observations = derived.observations;
        job.entities = derived.entities;
        job.tokens_in = derived.usage.tokens_in;
        job.tokens_out = derived.usage.tokens_out;
        job.fallback = derived.fallback;
        job.error = None;
        job.updated_ms = now_ms();
        self.jobs.put(&job).await?;
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
        let created_ms = event.ingested_at.as_ref().map_or_else(now_ms, |t| {
            t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
        });
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
    pub(crate) async fn fail(
        &self,
        job_id: &str,
        payload: &[u8],
        attempt: u64,
        error: &str,
    ) -> Result<(), EnrichError> {
        let mut job = match self.jobs.get(job_id).await? {
            Some(job) => job,
            None => match TurnsIngested::decode(payload) {
                Ok(event) => self.job(&event).await?,
                // Without an event there is no tenant to show the job to.
                Err(_) => return Ok(()),
            },
        };
        job.state = JobState::Failed;
        job.attempts = attempt;
        job.error = Some(error.to_owned());
        job.updated_ms = now_ms();
        self.jobs.put(&job).await?;
        Ok(())
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
    async fn derive_and_write(&self, event: &TurnsIngested) -> Result<Derived, EnrichError> {
        let turns = derive::turn_inputs(event);
        let extraction = self.extractor.extract(&turns).await?;
        let metadata = event
            .metadata
            .as_ref()
            .map(engram_proto::json::struct_to_json)
            .unwrap_or_default();
        let observations = derive::observation_payloads(event, &extraction, &metadata);
        let _guard = self.entity_lock.lock().await;
        let entities =
            derive::entity_payloads(self.store.as_ref(), event, &extraction, &observations).await?;
        let derived = Derived {
            observations: observations.len() as u32,
            entities: entities.len() as u32,
            usage: extraction.usage,
            fallback: extraction.fallback,
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
        let points = payloads
            .into_iter()
            .zip(vectors)
            .map(|(payload, dense)| Point {
                fragment_id: payload.fragment_id.clone(),
                sparse: bm25::document_vector(&payload.text),
                payload,
                dense,
            })
            .collect();
        self.store.upsert(points).await?;
        Ok(derived)
    }
}

impl Enricher {
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
struct Derived {
    observations: u32,
    entities: u32,
    usage: engram_extract::ExtractUsage,
    fallback: Option<String>,
}
