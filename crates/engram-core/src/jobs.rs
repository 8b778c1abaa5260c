//! The job-state port: where the progress of background enrichment is kept.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Errors a job store reports.
#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    /// The store cannot be reached; the caller may retry.
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    /// The store failed for a reason a retry will not fix.
    #[error("job store failed: {0}")]
    Internal(String),
}

/// Where a background job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Published, not yet picked up.
    Pending,
    /// A consumer is working on it.
    Processing,
    /// Done; its results are recallable.
    Ready,
    /// Gave up after the last delivery; `error` says why.
    Failed,
}

impl JobState {
    /// The spelling used in logs and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Processing => "processing",
            JobState::Ready => "ready",
            JobState::Failed => "failed",
        }
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Ready | JobState::Failed)
    }
}

/// A background enrichment job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job id (the write's `passive_job_id`).
    pub job_id: String,
    /// Tenant that owns it; only this tenant may read it.
    pub org_id: String,
    /// Where it is.
    pub state: JobState,
    /// When it was enqueued, epoch ms.
    pub created_ms: i64,
    /// When its state last changed, epoch ms.
    pub updated_ms: i64,
    /// Deliveries so far (1 on the first).
    pub attempts: u64,
    /// Why it failed, or the last transient error while it is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Turns in the write; chunks, for a stored memory.
    pub turns: u32,
    /// Observation points written.
    pub observations: u32,
    /// Entity points written or updated.
    #[serde(default)]
    pub entities: u32,
    /// Model tokens the extractor spent (zero without an LLM).
    #[serde(default)]
    pub tokens_in: u64,
    /// Model tokens the extractor's answers took.
    #[serde(default)]
    pub tokens_out: u64,
    /// Why a model-backed extractor fell back to the rules, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// For a personal stored memory: the only user (besides admins) who
    /// may read its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl Job {
    /// A job just enqueued at `created_ms`, with nothing done yet.
    pub fn pending(
        job_id: impl Into<String>,
        org_id: impl Into<String>,
        turns: u32,
        created_ms: i64,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            org_id: org_id.into(),
            state: JobState::Pending,
            created_ms,
            updated_ms: created_ms,
            attempts: 0,
            error: None,
            turns,
            observations: 0,
            entities: 0,
            tokens_in: 0,
            tokens_out: 0,
            fallback: None,
            owner: None,
        }
    }
}

/// A write's event kept beside its job until the job is final (the
/// outbox), so that an event lost after the write was acknowledged (a crash
/// between the write and the publish, a stream that acknowledged before it
/// synced, a purged stream) can be published again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptEvent {
    /// The job the event enqueues.
    pub job_id: String,
    /// Tenant of the job.
    pub org_id: String,
    /// The message id it is published with (the stream drops a repeat
    /// inside its duplicate window).
    pub msg_id: String,
    /// The encoded `engram.events.v1.Event`.
    pub payload: Vec<u8>,
    /// When it was kept, epoch ms.
    pub kept_ms: i64,
    /// When a sweeper last published it again, epoch ms.
    pub republished_ms: Option<i64>,
}

/// The header of a [`KeptEvent`] as both stores encode it (the payload
/// follows it raw, so a large event is not inflated by an encoding).
#[derive(Serialize, Deserialize)]
struct KeptHeader {
    job_id: String,
    org_id: String,
    msg_id: String,
    kept_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    republished_ms: Option<i64>,
}

impl KeptEvent {
    /// Bytes of the stored form: a 4-byte big-endian header length, the
    /// header as JSON, then the payload.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&KeptHeader {
            job_id: self.job_id.clone(),
            org_id: self.org_id.clone(),
            msg_id: self.msg_id.clone(),
            kept_ms: self.kept_ms,
            republished_ms: self.republished_ms,
        })
        .expect("a header of strings and integers always encodes");
        let mut out = Vec::with_capacity(4 + header.len() + self.payload.len());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads the stored form back.
    pub fn decode(bytes: &[u8]) -> Result<Self, JobStoreError> {
        let bad = |why: &str| JobStoreError::Internal(format!("kept event: {why}"));
        let len = bytes
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad("shorter than its header length"))?;
        let header = bytes
            .get(4..4 + len)
            .ok_or_else(|| bad("shorter than its header"))?;
        let h: KeptHeader =
            serde_json::from_slice(header).map_err(|e| bad(&format!("header: {e}")))?;
        Ok(Self {
            job_id: h.job_id,
            org_id: h.org_id,
            msg_id: h.msg_id,
            payload: bytes[4 + len..].to_vec(),
            kept_ms: h.kept_ms,
            republished_ms: h.republished_ms,
        })
    }
}

/// Keeps job records, keyed by job id, and the events of unfinished jobs
/// (the outbox).
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores `job` unless a record with its id exists; returns whether it
    /// was stored. Used for `pending`, which must never overwrite progress.
    async fn create(&self, job: &Job) -> Result<bool, JobStoreError>;

    /// Stores `job`, replacing any record with its id.
    async fn put(&self, job: &Job) -> Result<(), JobStoreError>;

    /// The record of `job_id`, if any.
    async fn get(&self, job_id: &str) -> Result<Option<Job>, JobStoreError>;

    /// Whether the store answers.
    async fn ready(&self) -> Result<(), JobStoreError>;

    /// Keeps `event` (replacing a kept event of the same job). Durable on
    /// return, or (the embedded queue, which shares one database with its
    /// stream) together with the publish that follows it.
    async fn keep_event(&self, event: &KeptEvent) -> Result<(), JobStoreError>;

    /// Forgets the kept event of `job_id`, if any (its job is final).
    async fn drop_event(&self, job_id: &str) -> Result<(), JobStoreError>;

    /// The kept event of `job_id`, if any.
    async fn kept_event(&self, job_id: &str) -> Result<Option<KeptEvent>, JobStoreError>;

    /// Kept events, at most `limit`, in no particular order.
    async fn kept_events(&self, limit: usize) -> Result<Vec<KeptEvent>, JobStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_events_round_trip_with_any_payload() {
        let e = KeptEvent {
            job_id: "j".into(),
            org_id: "o".into(),
            msg_id: "j".into(),
            payload: vec![0, 255, 10, 123, 34],
            kept_ms: 5,
            republished_ms: Some(9),
        };
        assert_eq!(KeptEvent::decode(&e.encode()).unwrap(), e);
        assert!(KeptEvent::decode(&[0, 0, 0, 9, b'{']).is_err());
        assert!(KeptEvent::decode(&[]).is_err());
    }
}
