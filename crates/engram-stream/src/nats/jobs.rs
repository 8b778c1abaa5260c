//! [`NatsJobs`]: job records in a JetStream key-value bucket.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind};
use async_trait::async_trait;
use engram_core::{Job, JobStore, JobStoreError, KeptEvent};
use futures::StreamExt;

use super::connection::{Failure, Shared};

/// Job records as JSON values in the key-value bucket
/// [`super::NatsOptions::jobs_bucket`], keyed by job id, one revision kept.
///
/// Obtained from [`super::NatsStream::job_store`], so it shares the
/// stream's connection. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct NatsJobs {
    shared: Arc<Shared>,
    /// The bucket handle once it is known to exist.
    bucket: Arc<tokio::sync::Mutex<Option<kv::Store>>>,
    /// The outbox bucket (`<jobs_bucket>_outbox`) once it is known to exist.
    outbox: Arc<tokio::sync::Mutex<Option<kv::Store>>>,
}

/// Which of the two buckets.
#[derive(Clone, Copy)]
enum Bucket {
    Jobs,
    Outbox,
}

impl NatsJobs {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        NatsJobs {
            shared,
            bucket: Arc::new(tokio::sync::Mutex::new(None)),
            outbox: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The bucket holding kept events: the jobs bucket's name with
    /// `_outbox`, so it needs no setting of its own.
    pub fn outbox_bucket(&self) -> String {
        format!("{}_outbox", self.shared.options.jobs_bucket)
    }

    fn slot(&self, which: Bucket) -> &tokio::sync::Mutex<Option<kv::Store>> {
        match which {
            Bucket::Jobs => &self.bucket,
            Bucket::Outbox => &self.outbox,
        }
    }

    /// The bucket, created if missing (first use, or after it was lost).
    async fn bucket(&self, which: Bucket) -> Result<kv::Store, Failure> {
        let mut cached = self.slot(which).lock().await;
        if let Some(store) = cached.as_ref() {
            return Ok(store.clone());
        }
        let options = &self.shared.options;
        let (name, description) = match which {
            Bucket::Jobs => (options.jobs_bucket.clone(), "Engram enrichment job records"),
            Bucket::Outbox => (
                self.outbox_bucket(),
                "Engram events of unfinished jobs (re-published by the sweeper)",
            ),
        };
        let store = self
            .shared
            .open_bucket(
                &name,
                description,
                Duration::from_secs(options.jobs_max_age_secs),
            )
            .await?;
        *cached = Some(store.clone());
        Ok(store)
    }

    /// Runs `op` on the jobs bucket within the request timeout.
    async fn with_bucket<T, F, Fut>(&self, what: &str, op: F) -> Result<T, JobStoreError>
    where
        F: FnOnce(kv::Store) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.with(Bucket::Jobs, what, op).await
    }

    /// Runs `op` on a bucket within the request timeout; forgets the
    /// bucket after a failure so that the next call checks it again.
    async fn with<T, F, Fut>(&self, which: Bucket, what: &str, op: F) -> Result<T, JobStoreError>
    where
        F: FnOnce(kv::Store) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let shared = &self.shared;
        let result = shared
            .bounded(what, shared.deadline(), async {
                let store = self.bucket(which).await?;
                op(store).await
            })
            .await;
        if let Err(failure) = &result {
            if matches!(failure, Failure::Unavailable(_)) {
                *self.slot(which).lock().await = None;
            }
            tracing::warn!(bucket = %shared.options.jobs_bucket, error = ?failure, "{what} failed");
        }
        result.map_err(Into::into)
    }
}

#[async_trait]
impl JobStore for NatsJobs {
    async fn create(&self, job: &Job) -> Result<bool, JobStoreError> {
        let key = key(&job.job_id)?;
        let value = encode(job)?;
        self.with_bucket("creating a job", |store| async move {
            match store.create(key, value.into()).await {
                Ok(_) => Ok(true),
                Err(err) if err.kind() == CreateErrorKind::AlreadyExists => Ok(false),
                Err(err) => Err(Failure::classify("creating a job", &err)),
            }
        })
        .await
    }

    async fn put(&self, job: &Job) -> Result<(), JobStoreError> {
        let key = key(&job.job_id)?;
        let value = encode(job)?;
        self.with_bucket("storing a job", |store| async move {
            store
                .put(key, value.into())
                .await
                .map(|_| ())
                .map_err(|err| Failure::classify("storing a job", &err))
        })
        .await
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>, JobStoreError> {
        // No record can be stored under a key NATS refuses.
        let Ok(key) = key(job_id) else {
            return Ok(None);
        };
        let value = self
            .with_bucket("reading a job", |store| async move {
                store
                    .get(key)
                    .await
                    .map_err(|err| Failure::classify("reading a job", &err))
            })
            .await?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|err| {
                    JobStoreError::Internal(format!("job {job_id} is not valid json: {err}"))
                })
            })
            .transpose()
    }

    async fn ready(&self) -> Result<(), JobStoreError> {
        self.with_bucket("checking the jobs bucket", |store| async move {
            // A real round trip even when the bucket handle is cached.
            store
                .status()
                .await
                .map(|_| ())
                .map_err(|err| Failure::classify("reading the jobs bucket", &err))
        })
        .await
    }

    async fn keep_event(&self, event: &KeptEvent) -> Result<(), JobStoreError> {
        let key = key(&event.job_id)?;
        let value = event.encode();
        self.with(Bucket::Outbox, "keeping an event", |store| async move {
            store
                .put(key, value.into())
                .await
                .map(|_| ())
                .map_err(|err| Failure::classify("keeping an event", &err))
        })
        .await
    }

    async fn drop_event(&self, job_id: &str) -> Result<(), JobStoreError> {
        let Ok(key) = key(job_id) else {
            return Ok(());
        };
        // Purge drops the value at once; its small marker ages out with the
        // bucket's max age.
        self.with(Bucket::Outbox, "dropping an event", |store| async move {
            store
                .purge(key)
                .await
                .map_err(|err| Failure::classify("dropping an event", &err))
        })
        .await
    }

    async fn kept_event(&self, job_id: &str) -> Result<Option<KeptEvent>, JobStoreError> {
        let Ok(key) = key(job_id) else {
            return Ok(None);
        };
        let value = self
            .with(Bucket::Outbox, "reading a kept event", |store| async move {
                store
                    .get(key)
                    .await
                    .map_err(|err| Failure::classify("reading a kept event", &err))
            })
            .await?;
        value.map(|b| KeptEvent::decode(&b)).transpose()
    }

    async fn kept_events(&self, limit: usize) -> Result<Vec<KeptEvent>, JobStoreError> {
        let entries = self
            .with(Bucket::Outbox, "listing kept events", |store| async move {
                let mut keys = store
                    .keys()
                    .await
                    .map_err(|err| Failure::classify("listing kept events", &err))?;
                let mut out = Vec::new();
                while out.len() < limit {
                    let Some(key) = keys.next().await else { break };
                    let key = key.map_err(|err| Failure::classify("listing kept events", &err))?;
                    // Gone between the listing and the read: finished.
                    if let Some(value) = store
                        .get(&key)
                        .await
                        .map_err(|err| Failure::classify("reading a kept event", &err))?
                    {
                        out.push(value);
                    }
                }
                Ok(out)
            })
            .await?;
        entries.iter().map(|b| KeptEvent::decode(b)).collect()
    }
}

/// Job ids are content digests (hex), which are valid keys; anything else is
/// refused rather than escaped, since no caller should produce it.
fn key(job_id: &str) -> Result<String, JobStoreError> {
    let valid = !job_id.is_empty()
        && !job_id.starts_with('.')
        && !job_id.ends_with('.')
        && job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=' | '.'));
    if valid {
        Ok(job_id.to_owned())
    } else {
        Err(JobStoreError::Internal(format!(
            "job id {job_id:?} is not a valid key"
        )))
    }
}

fn encode(job: &Job) -> Result<Vec<u8>, JobStoreError> {
    serde_json::to_vec(job)
        .map_err(|err| JobStoreError::Internal(format!("encoding job {}: {err}", job.job_id)))
}
