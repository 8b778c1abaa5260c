//! The enrichment backlog of each tenant: its writes whose job is not
//! final yet.
//!
//! What is counted: jobs recorded through a [`TrackedJobs`] store (the job
//! store this process's writes record their jobs in) that have not been
//! seen final, plus the tenant's writes in flight. A job leaves the count
//! when this process writes it final (the enricher of `engram serve`
//! shares the store), reads it final (GetJob, or the re-check below), or
//! drops its kept event. When the enricher runs in another process, only
//! the re-check sees its jobs finish: a tenant at its limit has its
//! counted jobs read back from the shared job store, at most every
//! [`RECHECK_EVERY`], so the count is exact (to within the tenant's calls
//! in flight) again after at most that delay.
//!
//! Limits of the count: it is per process (behind a load balancer with
//! `n` ingest replicas a tenant can have up to `n` times the limit), and
//! it starts empty, so jobs enqueued before a restart are not counted
//! until a consumer writes them again.

use crate::LimitError;
use async_trait::async_trait;
use engram_core::{Job, JobStore, JobStoreError, KeptEvent};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shortest pause between two re-checks of one tenant's jobs.
pub const RECHECK_EVERY: Duration = Duration::from_millis(500);
/// Most jobs read back in one re-check (bounds the job-store reads one
/// refused write can cause).
const RECHECK_BATCH: usize = 1024;

/// Counts each tenant's unfinished writes; see the module docs.
pub struct Backlog {
    limit: u64,
    jobs: Arc<dyn JobStore>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Unfinished jobs seen through the tracked store, and their tenant.
    jobs: HashMap<String, String>,
    orgs: HashMap<String, Org>,
}

#[derive(Default)]
struct Org {
    tracked: u64,
    reserved: u64,
    checked: Option<Instant>,
    checking: bool,
}

impl Org {
    fn pending(&self) -> u64 {
        self.tracked + self.reserved
    }

    fn idle(&self) -> bool {
        self.tracked == 0 && self.reserved == 0 && !self.checking
    }
}

impl State {
    fn finish(&mut self, job_id: &str) {
        if let Some(org_id) = self.jobs.remove(job_id) {
            let org = self.orgs.entry(org_id.clone()).or_default();
            org.tracked = org.tracked.saturating_sub(1);
            self.forget_if_idle(&org_id);
        }
    }

    fn forget_if_idle(&mut self, org_id: &str) {
        if self.orgs.get(org_id).is_some_and(Org::idle) {
            self.orgs.remove(org_id);
        }
    }
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog")
            .field("limit", &self.limit)
            .field("tracked", &self.state.lock().jobs.len())
            .finish_non_exhaustive()
    }
}

impl Backlog {
    /// A backlog of at most `limit` writes per tenant, re-checked against
    /// `jobs` (the store itself, not a [`TrackedJobs`] over it).
    pub fn new(limit: u64, jobs: Arc<dyn JobStore>) -> Self {
        Self {
            limit,
            jobs,
            state: Mutex::new(State::default()),
        }
    }

    /// `limits.max_backlog_per_org`.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The writes of `org_id` counted now: unfinished jobs and writes in
    /// flight.
    pub fn pending(&self, org_id: &str) -> u64 {
        self.state.lock().orgs.get(org_id).map_or(0, Org::pending)
    }

    fn track(&self, job: &Job) {
        let mut s = self.state.lock();
        if !s.jobs.contains_key(&job.job_id) {
            s.jobs.insert(job.job_id.clone(), job.org_id.clone());
            s.orgs.entry(job.org_id.clone()).or_default().tracked += 1;
        }
    }

    fn finish(&self, job_id: &str) {
        self.state.lock().finish(job_id);
    }

    /// Counts one write of `org_id` until the reservation is dropped, or
    /// refuses it when the tenant is at its limit after a re-check.
    pub(crate) async fn reserve(self: &Arc<Self>, org_id: &str) -> Result<Reservation, LimitError> {
        let ids: Vec<String> = {
            let mut s = self.state.lock();
            let org = s.orgs.entry(org_id.to_owned()).or_default();
            if org.pending() < self.limit {
                org.reserved += 1;
                return Ok(self.reservation(org_id));
            }
            let due = !org.checking && org.checked.is_none_or(|t| t.elapsed() >= RECHECK_EVERY);
            if !due {
                return Err(self.full(org));
            }
            org.checking = true;
            s.jobs
                .iter()
                .filter(|(_, org)| org.as_str() == org_id)
                .map(|(id, _)| id.clone())
                .take(RECHECK_BATCH)
                .collect()
        };
        // Cleared even when the caller goes away mid-check.
        let guard = Checking {
            backlog: self,
            org_id,
        };
        let mut done = Vec::new();
        for id in ids {
            match self.jobs.get(&id).await {
                Ok(Some(job)) if !job.state.is_final() => {}
                // Gone (expired or deleted) counts as finished.
                Ok(_) => done.push(id),
                Err(error) => {
                    tracing::debug!(org_id, %error, "cannot re-check the backlog; counting it as it was");
                    break;
                }
            }
        }
        std::mem::forget(guard);
        let mut s = self.state.lock();
        for id in &done {
            s.finish(id);
        }
        let org = s.orgs.entry(org_id.to_owned()).or_default();
        org.checking = false;
        org.checked = Some(Instant::now());
        tracing::debug!(
            org_id,
            finished = done.len(),
            pending = org.pending(),
            "re-checked the backlog"
        );
        if org.pending() < self.limit {
            org.reserved += 1;
            Ok(self.reservation(org_id))
        } else {
            Err(self.full(org))
        }
    }

    fn full(&self, org: &Org) -> LimitError {
        LimitError::BacklogFull {
            pending: org.pending(),
            limit: self.limit,
        }
    }

    fn reservation(self: &Arc<Self>, org_id: &str) -> Reservation {
        Reservation {
            backlog: Arc::clone(self),
            org_id: org_id.to_owned(),
        }
    }
}

/// Resets a tenant's re-check flag if the re-check is abandoned.
struct Checking<'a> {
    backlog: &'a Backlog,
    org_id: &'a str,
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        let mut s = self.backlog.state.lock();
        if let Some(org) = s.orgs.get_mut(self.org_id) {
            org.checking = false;
        }
        s.forget_if_idle(self.org_id);
    }
}

/// One write in flight, counted until it is dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    backlog: Arc<Backlog>,
    org_id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut s = self.backlog.state.lock();
        if let Some(org) = s.orgs.get_mut(&self.org_id) {
            org.reserved = org.reserved.saturating_sub(1);
        }
        s.forget_if_idle(&self.org_id);
    }
}

/// A job store that tells a [`Backlog`] which jobs start and finish.
pub struct TrackedJobs {
    inner: Arc<dyn JobStore>,
    backlog: Arc<Backlog>,
}

impl TrackedJobs {
    /// `inner`, reporting to `backlog`.
    pub fn new(inner: Arc<dyn JobStore>, backlog: Arc<Backlog>) -> Self {
        Self { inner, backlog }
    }
}

#[async_trait]
impl JobStore for TrackedJobs {
    async fn create(&self, job: &Job) -> Result<bool, JobStoreError> {
        let created = self.inner.create(job).await?;
        if created && !job.state.is_final() {
            self.backlog.track(job);
        }
        Ok(created)
    }

    async fn put(&self, job: &Job) -> Result<(), JobStoreError> {
        self.inner.put(job).await?;
        if job.state.is_final() {
            self.backlog.finish(&job.job_id);
        } else {
            self.backlog.track(job);
        }
        Ok(())
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>, JobStoreError> {
        let job = self.inner.get(job_id).await?;
        // A poll that sees the job final (GetJob) settles it here too.
        if job.as_ref().is_some_and(|j| j.state.is_final()) {
            self.backlog.finish(job_id);
        }
        Ok(job)
    }

    async fn ready(&self) -> Result<(), JobStoreError> {
        self.inner.ready().await
    }

    async fn keep_event(&self, event: &KeptEvent) -> Result<(), JobStoreError> {
        self.inner.keep_event(event).await
    }

    async fn drop_event(&self, job_id: &str) -> Result<(), JobStoreError> {
        self.inner.drop_event(job_id).await?;
        // An event is dropped once its job is final.
        self.backlog.finish(job_id);
        Ok(())
    }

    async fn kept_event(&self, job_id: &str) -> Result<Option<KeptEvent>, JobStoreError> {
        self.inner.kept_event(job_id).await
    }

    async fn kept_events(&self, limit: usize) -> Result<Vec<KeptEvent>, JobStoreError> {
        self.inner.kept_events(limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_core::JobState;
    use engram_stream::{LocalQueue, LocalQueueOptions};

    fn job(id: &str, org: &str) -> Job {
        Job::pending(id, org, 1, 1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_unfinished_jobs_per_org_and_rechecks_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let queue = LocalQueue::open(dir.path(), LocalQueueOptions::default()).unwrap();
        let store: Arc<dyn JobStore> = Arc::new(queue.job_store());
        let backlog = Arc::new(Backlog::new(2, Arc::clone(&store)));
        let tracked = TrackedJobs::new(Arc::clone(&store), Arc::clone(&backlog));

        // A write in flight counts, and gives its place back when it ends.
        let r = backlog.reserve("a").await.unwrap();
        assert_eq!(backlog.pending("a"), 1);
        drop(r);
        assert_eq!(backlog.pending("a"), 0);

        assert!(tracked.create(&job("j1", "a")).await.unwrap());
        assert!(!tracked.create(&job("j1", "a")).await.unwrap(), "exists");
        tracked.put(&job("j2", "a")).await.unwrap();
        assert_eq!(backlog.pending("a"), 2);
        let e = backlog.reserve("a").await.unwrap_err();
        assert_eq!(
            e,
            LimitError::BacklogFull {
                pending: 2,
                limit: 2
            }
        );
        assert!(
            backlog.reserve("b").await.is_ok(),
            "another org is unaffected"
        );

        // Finished through the tracked store: counted out at once.
        let mut done = job("j1", "a");
        done.state = JobState::Ready;
        tracked.put(&done).await.unwrap();
        assert_eq!(backlog.pending("a"), 1);

        // Finished by another process (straight into the store): the next
        // refused write after the re-check pause reads it back.
        tracked.put(&job("j3", "a")).await.unwrap();
        let mut failed = job("j2", "a");
        failed.state = JobState::Failed;
        store.put(&failed).await.unwrap();
        tokio::time::sleep(RECHECK_EVERY).await;
        let r = backlog.reserve("a").await.expect("re-check finds j2 final");
        assert_eq!(backlog.pending("a"), 2, "j3 and the new write");
        drop(r);
        queue.close();
    }
}
