//! Processing of a stored memory: chunk, embed, write the chunk points,
//! and (when asked) extract observations and entities from the chunks.

use crate::EnrichError;
use crate::chunk;
use crate::enricher::{Enricher, now_ms};
use engram_core::{Job, JobState, Kind, MemoryRef, MemoryType, PointPayload, ids};
use engram_proto::events::v1::{IngestedTurn, MemoryStored, TurnsIngested};

/// Chunks embedded in one model call: bounds the memory a 100,000-character
/// document takes while keeping batches large enough to be efficient.
const EMBED_BATCH: usize = 32;

/// Epoch ms of an event timestamp (now when absent).
fn stored_ms(m: &MemoryStored) -> i64 {
    m.stored_at
        .as_ref()
        .map_or_else(now_ms, engram_proto::time::to_ms)
}

/// The record of a memory's job before any work: what StoreMemory writes,
/// and what the consumer writes when it finds none.
pub(crate) fn pending_job(m: &MemoryStored) -> Job {
    let mut job = Job::pending(m.memory_id.clone(), m.org_id.clone(), 0, stored_ms(m));
    if memory_type(m) == MemoryType::User {
        job.owner = Some(m.user_id.clone());
    }
    job
}

/// The memory's type; an event from a newer producer with a type this
/// version does not know is read as the most private one.
fn memory_type(m: &MemoryStored) -> MemoryType {
    m.memory_type.parse().unwrap_or(MemoryType::User)
}

impl Enricher {
    /// Processes a stored memory. Every point id derives from the memory id
    /// and the chunk index, so a redelivery rewrites the same points.
    pub(crate) async fn process_memory(
        &self,
        m: MemoryStored,
        attempt: u64,
        known: Option<Job>,
    ) -> Result<u32, EnrichError> {
        let mut job = match known {
            Some(job) if job.job_id == m.memory_id => job,
            _ => match self.jobs.get(&m.memory_id).await? {
                Some(job) => job,
                None => pending_job(&m),
            },
        };
        job.state = JobState::Processing;
        job.attempts = attempt;
        job.updated_ms = now_ms();
        self.jobs.put(&job).await?;

        let texts = chunk::chunks(&m.text);
        let ts_ms = stored_ms(&m);
        let reference = MemoryRef {
            memory_id: m.memory_id.clone(),
            collection_id: m.collection_id.clone(),
            memory_type: memory_type(&m),
            title: m.title.clone(),
            chunk: 0,
        };
        let metadata = m
            .metadata
            .as_ref()
            .map(engram_proto::json::struct_to_json)
            .unwrap_or_default();
        let chunk_ids: Vec<String> = (0..texts.len() as u32)
            .map(|i| ids::memory_chunk_id(&m.org_id, &m.memory_id, i))
            .collect();
        for (b, batch) in texts.chunks(EMBED_BATCH).enumerate() {
            let vectors = self.embedder.embed(batch).await?;
            let payloads: Vec<PointPayload> = batch
                .iter()
                .enumerate()
                .map(|(j, text)| {
                    let index = b * EMBED_BATCH + j;
                    PointPayload {
                        fragment_id: chunk_ids[index].clone(),
                        org_id: m.org_id.clone(),
                        user_id: m.user_id.clone(),
                        // Memories belong to no conversation.
                        session_id: String::new(),
                        kind: Kind::Memory,
                        role: None,
                        text: text.clone(),
                        ts_ms,
                        job_id: m.memory_id.clone(),
                        source_ids: Vec::new(),
                        entity_kind: None,
                        mentions: None,
                        subject: None,
                        event_ms: None,
                        metadata: metadata.clone(),
                        memory: Some(MemoryRef {
                            chunk: index as u32,
                            ..reference.clone()
                        }),
                        tokens: None,
                    }
                })
                .collect();
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
        }

        let (mut observations, mut entities) = (0, 0);
        let mut contained = None;
        if m.extract {
            // The extractor reads chunks like turns of the author; its
            // observations cite the chunks they came from.
            let event = TurnsIngested {
                job_id: m.memory_id.clone(),
                org_id: m.org_id.clone(),
                user_id: m.user_id.clone(),
                session_id: String::new(),
                turns: texts
                    .iter()
                    .zip(&chunk_ids)
                    .map(|(text, id)| IngestedTurn {
                        fragment_id: id.clone(),
                        role: "user".into(),
                        text: text.clone(),
                        ts_ms,
                        observations: Vec::new(),
                    })
                    .collect(),
                metadata: m.metadata.clone(),
                ingested_at: m.stored_at,
                active_written: true,
            };
            let derived = self.derive_and_write(&event, Some(&reference)).await?;
            observations = derived.observations;
            entities = derived.entities;
            job.tokens_in = derived.usage.tokens_in;
            job.tokens_out = derived.usage.tokens_out;
            job.fallback = derived.fallback;
            contained = derived.contained;
        }

        job.state = JobState::Ready;
        job.turns = texts.len() as u32;
        job.observations = observations;
        job.entities = entities;
        job.error = contained;
        job.updated_ms = now_ms();
        self.jobs.put(&job).await?;
        self.drop_kept(&job.job_id).await;
        tracing::info!(
            memory_id = %m.memory_id,
            org_id = %m.org_id,
            attempt,
            chunks = texts.len(),
            observations,
            entities,
            "stored memory processed"
        );
        Ok(observations)
    }
}
