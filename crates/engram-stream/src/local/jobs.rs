//! Job records in the local database.

use super::queue::{JOBS, OUTBOX, Shared};
use async_trait::async_trait;
use engram_core::{Job, JobStore, JobStoreError, KeptEvent};
use redb::ReadableTable;
use std::sync::Arc;

/// [`JobStore`] on the local queue's database; obtained from
/// [`super::LocalQueue::job_store`].
#[derive(Clone)]
pub struct LocalJobs {
    pub(super) shared: Arc<Shared>,
}

fn internal(e: impl std::fmt::Display) -> JobStoreError {
    JobStoreError::Internal(e.to_string())
}

impl LocalJobs {
    async fn blocking<T, F>(&self, f: F) -> Result<T, JobStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::Database) -> Result<T, JobStoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let db = shared
                .db()
                .map_err(|_| JobStoreError::Unavailable("local queue closed".into()))?;
            f(&db)
        })
        .await
        .map_err(internal)?
    }

    fn write(db: &redb::Database, job: &Job, only_if_absent: bool) -> Result<bool, JobStoreError> {
        let value = serde_json::to_string(job).map_err(internal)?;
        let tx = super::lazy_write(db).map_err(internal)?;
        let stored = {
            let mut table = tx.open_table(JOBS).map_err(internal)?;
            if only_if_absent && table.get(job.job_id.as_str()).map_err(internal)?.is_some() {
                false
            } else {
                table
                    .insert(job.job_id.as_str(), value.as_str())
                    .map_err(internal)?;
                true
            }
        };
        tx.commit().map_err(internal)?;
        Ok(stored)
    }
}

#[async_trait]
impl JobStore for LocalJobs {
    async fn create(&self, job: &Job) -> Result<bool, JobStoreError> {
        let job = job.clone();
        self.blocking(move |db| Self::write(db, &job, true)).await
    }

    async fn put(&self, job: &Job) -> Result<(), JobStoreError> {
        let job = job.clone();
        self.blocking(move |db| Self::write(db, &job, false).map(|_| ()))
            .await
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>, JobStoreError> {
        let job_id = job_id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(JOBS).map_err(internal)?;
            match table.get(job_id.as_str()).map_err(internal)? {
                Some(v) => serde_json::from_str(v.value()).map(Some).map_err(internal),
                None => Ok(None),
            }
        })
        .await
    }

    async fn ready(&self) -> Result<(), JobStoreError> {
        self.blocking(|_| Ok(())).await
    }

    async fn keep_event(&self, event: &KeptEvent) -> Result<(), JobStoreError> {
        let (key, value) = (event.job_id.clone(), event.encode());
        self.blocking(move |db| {
            // Lazily: the durable publish that follows persists it too
            // (redb keeps commit order), and a crash before that publish
            // means the write was never acknowledged.
            let tx = super::lazy_write(db).map_err(internal)?;
            tx.open_table(OUTBOX)
                .map_err(internal)?
                .insert(key.as_str(), value.as_slice())
                .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn drop_event(&self, job_id: &str) -> Result<(), JobStoreError> {
        let key = job_id.to_owned();
        self.blocking(move |db| {
            // Losing a drop in a crash only costs a sweep that finds the
            // job final and drops it again.
            let tx = super::lazy_write(db).map_err(internal)?;
            tx.open_table(OUTBOX)
                .map_err(internal)?
                .remove(key.as_str())
                .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn kept_event(&self, job_id: &str) -> Result<Option<KeptEvent>, JobStoreError> {
        let key = job_id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(OUTBOX).map_err(internal)?;
            match table.get(key.as_str()).map_err(internal)? {
                Some(v) => KeptEvent::decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn kept_events(&self, limit: usize) -> Result<Vec<KeptEvent>, JobStoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(OUTBOX).map_err(internal)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(internal)?.take(limit) {
                let (_, value) = row.map_err(internal)?;
                out.push(KeptEvent::decode(value.value())?);
            }
            Ok(out)
        })
        .await
    }
}
