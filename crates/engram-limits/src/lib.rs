//! Overload protection without a transport.
//!
//! A [`Limiter`] admits or refuses one call of one tenant (the token's
//! `org_id`) against the limits of [`LimitsConfig`]:
//!
//! - a server-wide cap on calls in flight, so that a burst is refused at
//!   once instead of queueing until every caller times out;
//! - per tenant, calls in flight and a request rate (a token bucket:
//!   GCRA from `governor`), so that one tenant cannot take the capacity of
//!   the others;
//! - per tenant, the writes whose enrichment is not finished yet
//!   ([`Backlog`]), so that a tenant cannot queue more background work
//!   than the enrichment tier can drain while reads keep being answered.
//!
//! An admitted call holds a [`Permit`] until it is answered. The gRPC
//! layer that applies it lives with the server's wiring; status mapping
//! lives in `engram-api`.

mod backlog;

pub use backlog::{Backlog, TrackedJobs};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// `ErrorInfo.reason` when the server has too many calls in flight.
pub const REASON_SERVER_OVERLOADED: &str = "SERVER_OVERLOADED";
/// `ErrorInfo.reason` when a tenant is over its request rate.
pub const REASON_RATE_LIMITED: &str = "RATE_LIMITED";
/// `ErrorInfo.reason` when a tenant has too many calls in flight.
pub const REASON_TOO_MANY_CONCURRENT_CALLS: &str = "TOO_MANY_CONCURRENT_CALLS";
/// `ErrorInfo.reason` when a tenant's enrichment backlog is full.
pub const REASON_BACKLOG_FULL: &str = "BACKLOG_FULL";
/// `ErrorInfo.reason` when a request message is larger than allowed.
pub const REASON_REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";

/// Retry hint for a refusal on concurrency grounds: calls of this service
/// take milliseconds to a few hundred, so a slot frees up soon.
const CONCURRENCY_RETRY: Duration = Duration::from_millis(100);
/// Retry hint when the backlog is full: enrichment drains jobs at tens per
/// second, not in milliseconds.
const BACKLOG_RETRY: Duration = Duration::from_secs(1);
/// Admissions between two sweeps of idle tenants out of the rate limiter.
const HOUSEKEEPING_EVERY: u64 = 4096;

/// The limits, as configured (`[limits]`). `0` switches a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Sustained calls per second of one tenant.
    pub requests_per_sec_per_org: u32,
    /// Calls one tenant may make at once above its rate (the bucket's
    /// size); `0` means one second's worth.
    pub burst_per_org: u32,
    /// Calls of one tenant in flight at once.
    pub concurrent_calls_per_org: u32,
    /// Writes of one tenant whose enrichment is not finished.
    pub max_backlog_per_org: u64,
    /// Calls in flight in the whole process.
    pub max_concurrent_requests: u32,
}

impl Default for LimitsConfig {
    /// Generous limits: far above what one tenant of a 2-core node can
    /// use, so they only stop runaway clients.
    fn default() -> Self {
        Self {
            requests_per_sec_per_org: 1_000,
            burst_per_org: 2_000,
            concurrent_calls_per_org: 128,
            max_backlog_per_org: 10_000,
            max_concurrent_requests: 512,
        }
    }
}

/// Why a call was refused, or why the limits cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The process has `limit` calls in flight.
    #[error("server overloaded: {limit} calls in flight; retry later")]
    ServerOverloaded {
        /// `limits.max_concurrent_requests`.
        limit: u32,
    },
    /// The tenant is over its request rate.
    #[error(
        "rate limited: over {rate} requests per second (burst {burst}) for this org; retry in {} ms",
        retry_after.as_millis()
    )]
    RateLimited {
        /// `limits.requests_per_sec_per_org`.
        rate: u32,
        /// The bucket's size.
        burst: u32,
        /// When the next call would be admitted.
        retry_after: Duration,
    },
    /// The tenant has `limit` calls in flight.
    #[error("too many concurrent calls: {limit} in flight for this org; retry later")]
    TooManyConcurrentCalls {
        /// `limits.concurrent_calls_per_org`.
        limit: u32,
    },
    /// The tenant has `pending` writes whose enrichment is not finished.
    #[error(
        "enrichment backlog full: {pending} writes of this org are not enriched yet (limit {limit}); retry later"
    )]
    BacklogFull {
        /// Writes counted against the limit (including those in flight).
        pending: u64,
        /// `limits.max_backlog_per_org`.
        limit: u64,
    },
    /// A request message is larger than `limit` bytes.
    #[error("request too large: a message of {size} bytes exceeds the limit of {limit} bytes")]
    RequestTooLarge {
        /// The message's length.
        size: usize,
        /// `limits.max_request_bytes`.
        limit: usize,
    },
    /// The configuration cannot be used.
    #[error("limits: {0}")]
    Config(String),
}

impl LimitError {
    /// The `ErrorInfo.reason` of a refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            LimitError::ServerOverloaded { .. } => REASON_SERVER_OVERLOADED,
            LimitError::RateLimited { .. } => REASON_RATE_LIMITED,
            LimitError::TooManyConcurrentCalls { .. } => REASON_TOO_MANY_CONCURRENT_CALLS,
            LimitError::BacklogFull { .. } => REASON_BACKLOG_FULL,
            LimitError::RequestTooLarge { .. } => REASON_REQUEST_TOO_LARGE,
            LimitError::Config(_) => "LIMITS_MISCONFIGURED",
        }
    }

    /// The configuration key of the limit that refused, and its value.
    pub fn limit(&self) -> Option<(&'static str, String)> {
        match self {
            LimitError::ServerOverloaded { limit } => {
                Some(("limits.max_concurrent_requests", limit.to_string()))
            }
            LimitError::RateLimited { rate, .. } => {
                Some(("limits.requests_per_sec_per_org", rate.to_string()))
            }
            LimitError::TooManyConcurrentCalls { limit } => {
                Some(("limits.concurrent_calls_per_org", limit.to_string()))
            }
            LimitError::BacklogFull { limit, .. } => {
                Some(("limits.max_backlog_per_org", limit.to_string()))
            }
            LimitError::RequestTooLarge { limit, .. } => {
                Some(("limits.max_request_bytes", limit.to_string()))
            }
            LimitError::Config(_) => None,
        }
    }

    /// When a retry may succeed; `None` when retrying the same call cannot.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitError::ServerOverloaded { .. } | LimitError::TooManyConcurrentCalls { .. } => {
                Some(CONCURRENCY_RETRY)
            }
            LimitError::RateLimited { retry_after, .. } => Some(*retry_after),
            LimitError::BacklogFull { .. } => Some(BACKLOG_RETRY),
            LimitError::RequestTooLarge { .. } | LimitError::Config(_) => None,
        }
    }
}

/// Admits calls against [`LimitsConfig`]. Cheap to call on every request:
/// two atomics, one short mutex and one GCRA cell; only a write of a tenant
/// at its backlog limit may ask the job store.
pub struct Limiter {
    config: LimitsConfig,
    rate: Option<DefaultKeyedRateLimiter<String>>,
    in_flight: AtomicU32,
    per_org: Mutex<HashMap<String, u32>>,
    backlog: Option<Arc<Backlog>>,
    admissions: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("config", &self.config)
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter for `config`. The backlog limit needs the job store the
    /// writes record their jobs in (`None`, as in a recall-only process,
    /// switches it off); wrap that store with [`Limiter::track`] so the
    /// limiter sees jobs start and finish.
    pub fn new(
        config: LimitsConfig,
        jobs: Option<Arc<dyn engram_core::JobStore>>,
    ) -> Result<Self, LimitError> {
        let rate = match NonZeroU32::new(config.requests_per_sec_per_org) {
            None => None,
            Some(rate) => {
                let burst = NonZeroU32::new(config.burst_per_org).unwrap_or(rate);
                Some(DefaultKeyedRateLimiter::keyed(
                    Quota::per_second(rate).allow_burst(burst),
                ))
            }
        };
        if config.concurrent_calls_per_org > 0
            && config.max_concurrent_requests > 0
            && config.concurrent_calls_per_org > config.max_concurrent_requests
        {
            return Err(LimitError::Config(format!(
                "concurrent_calls_per_org ({}) must not exceed max_concurrent_requests ({})",
                config.concurrent_calls_per_org, config.max_concurrent_requests
            )));
        }
        let backlog = match (config.max_backlog_per_org, jobs) {
            (0, _) | (_, None) => None,
            (limit, Some(jobs)) => Some(Arc::new(Backlog::new(limit, jobs))),
        };
        Ok(Self {
            config,
            rate,
            in_flight: AtomicU32::new(0),
            per_org: Mutex::new(HashMap::new()),
            backlog,
            admissions: AtomicU64::new(0),
        })
    }

    /// The configured limits.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// `jobs`, wrapped so that the backlog limit counts the jobs recorded
    /// through it; `jobs` itself when the backlog limit is off.
    pub fn track(&self, jobs: Arc<dyn engram_core::JobStore>) -> Arc<dyn engram_core::JobStore> {
        match &self.backlog {
            Some(backlog) => Arc::new(TrackedJobs::new(jobs, Arc::clone(backlog))),
            None => jobs,
        }
    }

    /// The backlog counter, when the backlog limit is on.
    pub fn backlog(&self) -> Option<&Arc<Backlog>> {
        self.backlog.as_ref()
    }

    /// Calls in flight in the process (admitted and not answered).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Admits one call of `org_id`; `write` marks a call that enqueues
    /// enrichment (Remember, StoreMemory), which also counts against the
    /// backlog. Checks in order: the process cap, the tenant's calls in
    /// flight, its rate (a refused call spends no token of it), its
    /// backlog. Never waits for capacity: a refusal comes back at once.
    pub async fn admit(self: &Arc<Self>, org_id: &str, write: bool) -> Result<Permit, LimitError> {
        let mut permit = Permit {
            limiter: Arc::clone(self),
            org_id: None,
            global: false,
            backlog: None,
        };
        if self.config.max_concurrent_requests > 0 {
            let limit = self.config.max_concurrent_requests;
            self.in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                })
                .map_err(|_| LimitError::ServerOverloaded { limit })?;
        } else {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
        }
        permit.global = true;

        if self.config.concurrent_calls_per_org > 0 {
            let limit = self.config.concurrent_calls_per_org;
            let mut per_org = self.per_org.lock();
            let n = per_org.entry(org_id.to_owned()).or_insert(0);
            if *n >= limit {
                return Err(LimitError::TooManyConcurrentCalls { limit });
            }
            *n += 1;
            drop(per_org);
            permit.org_id = Some(org_id.to_owned());
        }

        if let Some(rate) = &self.rate {
            if self
                .admissions
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(HOUSEKEEPING_EVERY)
            {
                // Tenants whose bucket is full again hold no information.
                rate.retain_recent();
            }
            if let Err(not_until) = rate.check_key(&org_id.to_owned()) {
                let retry_after = not_until
                    .wait_time_from(rate.clock().now())
                    .max(Duration::from_millis(1));
                return Err(LimitError::RateLimited {
                    rate: self.config.requests_per_sec_per_org,
                    burst: NonZeroU32::new(self.config.burst_per_org)
                        .map_or(self.config.requests_per_sec_per_org, NonZeroU32::get),
                    retry_after,
                });
            }
        }

        if write && let Some(backlog) = &self.backlog {
            permit.backlog = Some(backlog.reserve(org_id).await?);
        }
        Ok(permit)
    }

    fn release_org(&self, org_id: &str) {
        let mut per_org = self.per_org.lock();
        if let Some(n) = per_org.get_mut(org_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Idle tenants take no memory.
                per_org.remove(org_id);
            }
        }
    }
}

impl Limiter {
    /// Admits one write of `org_id` against its backlog only: for a call
    /// already admitted as a read whose write the HTTP layer could not see
    /// (an MCP tool call inside a JSON-RPC body). The permit holds the
    /// backlog slot until it is dropped; `None` backlog configured admits
    /// every write.
    pub async fn admit_backlog(self: &Arc<Self>, org_id: &str) -> Result<Permit, LimitError> {
        let mut permit = Permit {
            limiter: Arc::clone(self),
            org_id: None,
            global: false,
            backlog: None,
        };
        if let Some(backlog) = &self.backlog {
            permit.backlog = Some(backlog.reserve(org_id).await?);
        }
        Ok(permit)
    }
}

/// What an admitted call holds until it is answered; dropping it gives the
/// capacity back.
#[must_use = "the call is admitted only while its permit is held"]
pub struct Permit {
    limiter: Arc<Limiter>,
    org_id: Option<String>,
    global: bool,
    backlog: Option<backlog::Reservation>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("org_id", &self.org_id)
            .field("write", &self.backlog.is_some())
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.global {
            self.limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(org) = self.org_id.take() {
            self.limiter.release_org(&org);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(config: LimitsConfig) -> Arc<Limiter> {
        Arc::new(Limiter::new(config, None).expect("valid limits"))
    }

    fn off() -> LimitsConfig {
        LimitsConfig {
            requests_per_sec_per_org: 0,
            burst_per_org: 0,
            concurrent_calls_per_org: 0,
            max_backlog_per_org: 0,
            max_concurrent_requests: 0,
        }
    }

    #[tokio::test]
    async fn rate_is_per_org_with_a_retry_hint() {
        let l = limiter(LimitsConfig {
            requests_per_sec_per_org: 2,
            burst_per_org: 3,
            ..off()
        });
        for _ in 0..3 {
            drop(l.admit("a", false).await.expect("within the burst"));
        }
        let e = l.admit("a", false).await.unwrap_err();
        assert_eq!(e.reason(), REASON_RATE_LIMITED);
        let retry = e.retry_after().expect("a hint");
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_millis(500),
            "{retry:?}"
        );
        assert_eq!(e.limit().unwrap().0, "limits.requests_per_sec_per_org");
        // Another tenant has a bucket of its own.
        drop(l.admit("b", false).await.expect("other org unaffected"));
        assert_eq!(l.in_flight(), 0, "refusals hold nothing");
    }

    #[tokio::test]
    async fn concurrency_is_capped_per_org_and_per_process() {
        let l = limiter(LimitsConfig {
            concurrent_calls_per_org: 2,
            max_concurrent_requests: 3,
            ..off()
        });
        let a1 = l.admit("a", false).await.unwrap();
        let _a2 = l.admit("a", false).await.unwrap();
        let e = l.admit("a", false).await.unwrap_err();
        assert_eq!(e, LimitError::TooManyConcurrentCalls { limit: 2 });
        let _b1 = l.admit("b", false).await.unwrap();
        let e = l.admit("c", false).await.unwrap_err();
        assert_eq!(e, LimitError::ServerOverloaded { limit: 3 });
        assert_eq!(e.reason(), REASON_SERVER_OVERLOADED);
        drop(a1);
        let _a3 = l.admit("a", false).await.expect("a slot freed");
        assert_eq!(l.in_flight(), 3);
    }

    #[tokio::test]
    async fn zero_switches_limits_off() {
        let l = limiter(off());
        let permits: Vec<_> = admit_many(&l, 1000).await;
        assert_eq!(permits.len(), 1000);
        assert_eq!(l.in_flight(), 1000);
    }

    async fn admit_many(l: &Arc<Limiter>, n: usize) -> Vec<Permit> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(l.admit("a", true).await.expect("no limit"));
        }
        out
    }

    #[test]
    fn per_org_concurrency_above_the_process_cap_is_refused() {
        let e = Limiter::new(
            LimitsConfig {
                concurrent_calls_per_org: 10,
                max_concurrent_requests: 5,
                ..off()
            },
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("must not exceed"), "{e}");
    }
}
