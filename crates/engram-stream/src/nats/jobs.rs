//! [`NatsJobs`]: job records in a JetStream key-value bucket.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_trait::async_trait;
use engram_core::{Job, JobStore, JobStoreError};

use super::connection::{Failure, Shared, is_not_found};
use super::options::NatsOptions;

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
}

impl NatsJobs {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        NatsJobs {
            shared,
            bucket: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The bucket, created if missing (first use, or after it was lost).
    async fn bucket(&self) -> Result<kv::Store, Failure> {
        let mut cached = self.bucket.lock().await;
        if let Some(store) = cached.as_ref() {
            return Ok(store.clone());
        }
        let options = &self.shared.options;
        let js = &self.shared.js;
        let store = match js.get_key_value(&options.jobs_bucket).await {
            Ok(store) => store,
            Err(err) if is_not_found(&err) => {
                js.create_stream(bucket_stream_config(options))
                    .await
                    .map_err(|err| Failure::classify("creating the jobs bucket", &err))?;
                let store = js
                    .get_key_value(&options.jobs_bucket)
                    .await
                    .map_err(|err| Failure::classify("opening the jobs bucket", &err))?;
                tracing::info!(bucket = %options.jobs_bucket, max_age_secs = options.jobs_max_age_secs, "jobs bucket created");
                store
            }
            Err(err) => return Err(Failure::classify("opening the jobs bucket", &err)),
        };
        *cached = Some(store.clone());
        Ok(store)
    }

    /// Runs `op` on the bucket within the request timeout; forgets the
    /// bucket after a failure so that the next call checks it again.
    async fn with_bucket<T, F, Fut>(&self, what: &str, op: F) -> Result<T, JobStoreError>
    where
        F: FnOnce(kv::Store) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let shared = &self.shared;
        let result = shared
            .bounded(what, shared.deadline(), async {
                let store = self.bucket().await?;
                op(store).await
            })
            .await;
        if let Err(failure) = &result {
            if matches!(failure, Failure::Unavailable(_)) {
                *self.bucket.lock().await = None;
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
}

/// The stream behind a key-value bucket, as async-nats would create it.
///
/// `Context::create_key_value` first reads the account info, whose
/// async-nats type requires fields (`reserved_memory`, `reserved_storage`)
/// that nats-server 2.9 does not send, so it always fails there; creating
/// the stream directly works with every server version.
fn bucket_stream_config(options: &NatsOptions) -> stream::Config {
    let bucket = &options.jobs_bucket;
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("Engram enrichment job records".to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        // One revision per key: a job record's history is not needed.
        max_messages_per_subject: 1,
        max_bytes: -1,
        max_age: Duration::from_secs(options.jobs_max_age_secs),
        storage: StorageType::File,
        num_replicas: options.replicas,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        ..Default::default()
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
