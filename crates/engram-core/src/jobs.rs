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

/// Keeps job records, keyed by job id.
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
}
