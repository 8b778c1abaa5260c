//! Embedding lanes: one model, two priorities, batched under concurrency.
//!
//! A process has one embedding model and three kinds of callers: Recall
//! (one query, a person waiting), Remember (a few turns, a person waiting)
//! and enrichment (observations and chunks, nobody waiting). Calling the
//! model directly from each would let a backlog of enrichment sit in front
//! of every Recall and would run concurrent Recalls one by one although the
//! model embeds sixteen texts in little more time than one.
//!
//! [`Lanes`] owns the model and a scheduler task. Callers hold one of two
//! handles, both [`Embedder`]s:
//! - [`Lanes::interactive`]: jobs queued here always run before background
//!   ones, and the jobs waiting together (of the same kind: queries or
//!   stored texts) run as **one** model call, each caller getting its own
//!   vectors back. While the lane is under load (the last run served
//!   several callers) the scheduler waits at most [`LaneOptions::window`]
//!   for as many callers as the last run had, so that a closed loop of
//!   clients stays in step; when idle it never waits. Queries are looked
//!   up in a small cache of recent query vectors first.
//! - [`Lanes::background`]: a call is cut into pieces of
//!   [`LaneOptions::background_chunk`] texts, run one at a time; between
//!   two pieces any waiting interactive job goes first, so an interactive
//!   call waits for at most one piece, never for a backlog.
//!
//! A panic inside the model is caught and answered as an error to the
//! callers of that run; the scheduler keeps serving.

use engram_core::{EmbedError, Embedder};
use futures::FutureExt as _;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// How the scheduler batches and yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneOptions {
    /// Longest wait for company before an interactive run, applied only
    /// while the lane is under load (zero: never wait).
    pub window: Duration,
    /// Most texts in one interactive model run.
    pub max_batch: usize,
    /// Texts per background model run; an interactive job waits for at
    /// most one such run.
    pub background_chunk: usize,
    /// Query vectors kept in the cache (zero: no cache).
    pub query_cache: usize,
}

impl Default for LaneOptions {
    fn default() -> Self {
        Self {
            window: Duration::from_micros(1_000),
            max_batch: 64,
            background_chunk: 8,
            query_cache: 4_096,
        }
    }
}

/// Counters of the scheduler, for the benchmark and the logs.
#[derive(Debug, Default)]
pub struct LaneStats {
    /// Model runs for interactive jobs.
    pub interactive_runs: AtomicU64,
    /// Interactive jobs served (a run serves one or more).
    pub interactive_jobs: AtomicU64,
    /// Model runs for background pieces.
    pub background_runs: AtomicU64,
    /// Queries answered from the cache.
    pub cache_hits: AtomicU64,
    /// Model runs that panicked.
    pub panics: AtomicU64,
}

/// Whether texts are search queries or stored texts (asymmetric models
/// encode them differently, so the two never share a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Query,
    Passage,
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

struct Job {
    kind: Kind,
    texts: Vec<String>,
    reply: Reply,
}

#[derive(Default)]
struct Queues {
    interactive: VecDeque<Job>,
    background: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    model: Arc<dyn Embedder>,
    options: LaneOptions,
    queues: Mutex<Queues>,
    wake: Notify,
    stats: LaneStats,
    cache: Option<quick_cache::sync::Cache<String, Arc<Vec<f32>>>>,
    /// When the last interactive run ended, µs since `epoch` (0: never).
    last_interactive_us: AtomicU64,
    /// An interactive run is in the model now.
    interactive_running: std::sync::atomic::AtomicBool,
    epoch: Instant,
}

/// The model behind two priority lanes (see the module documentation).
/// When `Lanes` and every handle are dropped, the scheduler finishes what
/// is queued and stops.
#[derive(Clone)]
pub struct Lanes {
    owner: Arc<Owner>,
}

/// Held by `Lanes` and every handle; the last one dropped closes the queues.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.queues.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Lanes {
    /// Starts the scheduler for `model` on the current Tokio runtime.
    pub fn start(model: Arc<dyn Embedder>, options: LaneOptions) -> Self {
        let options = LaneOptions {
            max_batch: options.max_batch.max(1),
            background_chunk: options.background_chunk.max(1),
            ..options
        };
        let shared = Arc::new(Shared {
            model,
            cache: (options.query_cache > 0)
                .then(|| quick_cache::sync::Cache::new(options.query_cache)),
            options,
            queues: Mutex::new(Queues::default()),
            wake: Notify::new(),
            stats: LaneStats::default(),
            last_interactive_us: AtomicU64::new(0),
            interactive_running: std::sync::atomic::AtomicBool::new(false),
            epoch: Instant::now(),
        });
        tokio::spawn(schedule(Arc::clone(&shared)));
        Self {
            owner: Arc::new(Owner { shared }),
        }
    }

    /// The handle for calls a person waits for (Recall, Remember).
    pub fn interactive(&self) -> Arc<dyn Embedder> {
        Arc::new(Lane {
            owner: Arc::clone(&self.owner),
            background: false,
        })
    }

    /// The handle for enrichment and other background work.
    pub fn background(&self) -> Arc<dyn Embedder> {
        Arc::new(Lane {
            owner: Arc::clone(&self.owner),
            background: true,
        })
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> &LaneStats {
        &self.owner.shared.stats
    }

    /// The lanes' load, for background work to adapt to.
    pub fn pressure(&self) -> Arc<dyn engram_core::Pressure> {
        Arc::new(self.clone())
    }
}

/// How long after the last interactive run the lanes still count as busy:
/// a closed loop of clients leaves gaps of a few milliseconds between calls.
const BUSY_AFTER: Duration = Duration::from_millis(100);

impl engram_core::Pressure for Lanes {
    fn interactive_busy(&self) -> bool {
        let s = &self.owner.shared;
        if s.interactive_running.load(Ordering::Relaxed) || !s.queues.lock().interactive.is_empty()
        {
            return true;
        }
        let last = s.last_interactive_us.load(Ordering::Relaxed);
        last > 0 && s.epoch.elapsed().as_micros() as u64 <= last + BUSY_AFTER.as_micros() as u64
    }
}

/// One of the two handles.
struct Lane {
    owner: Arc<Owner>,
    background: bool,
}

impl Lane {
    fn shared(&self) -> &Shared {
        &self.owner.shared
    }

    async fn submit(&self, kind: Kind, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        {
            let mut q = self.shared().queues.lock();
            if q.closed {
                return Err(EmbedError::Unavailable("embedder stopped".into()));
            }
            let job = Job { kind, texts, reply };
            if self.background {
                q.background.push_back(job);
            } else {
                q.interactive.push_back(job);
            }
        }
        self.shared().wake.notify_one();
        answer
            .await
            .map_err(|_| EmbedError::Unavailable("embedding scheduler stopped".into()))?
    }

    async fn embed_kind(&self, kind: Kind, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if self.background {
            let mut out = Vec::with_capacity(texts.len());
            for piece in texts.chunks(self.shared().options.background_chunk) {
                out.extend(self.submit(kind, piece.to_vec()).await?);
            }
            return Ok(out);
        }
        let cache = match (&self.shared().cache, kind) {
            (Some(cache), Kind::Query) => cache,
            _ => return self.submit(kind, texts.to_vec()).await,
        };
        // Look up each query; embed only the misses, in one job.
        let mut out: Vec<Option<Vec<f32>>> = texts
            .iter()
            .map(|t| cache.get(t).map(|v| v.as_ref().clone()))
            .collect();
        let misses: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        let hits = (texts.len() - misses.len()) as u64;
        self.shared()
            .stats
            .cache_hits
            .fetch_add(hits, Ordering::Relaxed);
        if !misses.is_empty() {
            let fresh = self
                .submit(kind, misses.iter().map(|&i| texts[i].clone()).collect())
                .await?;
            for (&i, v) in misses.iter().zip(fresh) {
                cache.insert(texts[i].clone(), Arc::new(v.clone()));
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }
}

#[async_trait::async_trait]
impl Embedder for Lane {
    fn dim(&self) -> usize {
        self.shared().model.dim()
    }

    fn model(&self) -> &str {
        self.shared().model.model()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_kind(Kind::Passage, texts).await
    }

    async fn embed_queries(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_kind(Kind::Query, texts).await
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.shared().model.count_tokens(text)
    }
}

/// How long an interactive run counts as traffic in progress: a closed
/// loop of calls leaves the model idle for the search and the round trip
/// between two embeddings, a few milliseconds.
pub(crate) const TRAFFIC_GAP: Duration = Duration::from_millis(3);

/// Background work runs at least once per this long, whatever the traffic,
/// so enrichment never starves (one piece delays one interactive call by
/// at most one piece's run).
pub(crate) const BACKGROUND_SHARE: Duration = Duration::from_millis(100);

/// How long a due background piece should wait for interactive traffic to
/// pause, or `None` to run it now.
fn background_wait(s: &Shared, since_background: Duration) -> Option<Duration> {
    if since_background >= BACKGROUND_SHARE {
        return None;
    }
    let last = s.last_interactive_us.load(Ordering::Relaxed);
    if last == 0 {
        return None;
    }
    let since = (s.epoch.elapsed().as_micros() as u64).saturating_sub(last);
    let gap = TRAFFIC_GAP.as_micros() as u64;
    (since < gap)
        .then(|| Duration::from_micros(gap - since).min(BACKGROUND_SHARE - since_background))
}

/// What one model run serves.
struct Run {
    kind: Kind,
    jobs: Vec<Job>,
    background: bool,
}

/// Takes the interactive jobs at the front of the queue that share the
/// first one's kind, up to `max_batch` texts (always at least one job).
fn take_interactive(q: &mut Queues, kind: Kind, max_batch: usize, run: &mut Vec<Job>) {
    let mut texts: usize = run.iter().map(|j| j.texts.len()).sum();
    let mut i = 0;
    while i < q.interactive.len() {
        let job = &q.interactive[i];
        if job.kind != kind {
            i += 1;
            continue;
        }
        if !run.is_empty() && texts + job.texts.len() > max_batch {
            break;
        }
        texts += job.texts.len();
        if let Some(job) = q.interactive.remove(i) {
            run.push(job);
        }
    }
}

/// The next run: interactive jobs first, else one background piece.
fn next_run(q: &mut Queues, max_batch: usize) -> Option<Run> {
    if let Some(kind) = q.interactive.front().map(|j| j.kind) {
        let mut jobs = Vec::new();
        take_interactive(q, kind, max_batch, &mut jobs);
        return Some(Run {
            kind,
            jobs,
            background: false,
        });
    }
    q.background.pop_front().map(|job| Run {
        kind: job.kind,
        jobs: vec![job],
        background: true,
    })
}

async fn schedule(s: Arc<Shared>) {
    // Callers the last interactive run served: the company to wait for.
    let mut last_company = 0usize;
    let mut last_background = Instant::now();
    loop {
        let next = {
            let mut q = s.queues.lock();
            next_run(&mut q, s.options.max_batch).ok_or(q.closed)
        };
        let mut run = match next {
            Ok(run) => run,
            Err(true) => return,
            Err(false) => {
                // `notify_one` leaves a permit when nobody waits, so a job
                // queued between the check and here is not missed.
                s.wake.notified().await;
                continue;
            }
        };
        if run.background
            && let Some(wait) = background_wait(&s, last_background.elapsed())
        {
            // Interactive traffic is in progress: a caller is between its
            // embedding and its next call. Hold the piece back until the
            // traffic pauses (or its share is due), so the next call finds
            // the model free.
            {
                let mut q = s.queues.lock();
                for job in run.jobs.into_iter().rev() {
                    q.background.push_front(job);
                }
            }
            let _ = tokio::time::timeout(wait, s.wake.notified()).await;
            continue;
        }
        if run.background {
            last_background = Instant::now();
        }
        if !run.background && last_company > 1 && run.jobs.len() < last_company {
            // Under load: give the other callers of the loop a moment to
            // arrive, so they share this run instead of queuing behind it.
            let deadline = Instant::now() + s.options.window;
            while run.jobs.len() < last_company
                && run.jobs.iter().map(|j| j.texts.len()).sum::<usize>() < s.options.max_batch
            {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // Woken by each new job; the main loop re-checks the queues
                // afterwards, so a wake taken here for a background job is
                // not lost.
                let _ = tokio::time::timeout(left, s.wake.notified()).await;
                take_interactive(
                    &mut s.queues.lock(),
                    run.kind,
                    s.options.max_batch,
                    &mut run.jobs,
                );
            }
        }
        let interactive = !run.background;
        if interactive {
            last_company = run.jobs.len();
            s.interactive_running.store(true, Ordering::Relaxed);
        }
        execute(&s, run).await;
        if interactive {
            let now = (s.epoch.elapsed().as_micros() as u64).max(1);
            s.last_interactive_us.store(now, Ordering::Relaxed);
            s.interactive_running.store(false, Ordering::Relaxed);
        }
    }
}

async fn execute(s: &Shared, run: Run) {
    let texts: Vec<String> = run
        .jobs
        .iter()
        .flat_map(|j| j.texts.iter().cloned())
        .collect();
    let counter = if run.background {
        &s.stats.background_runs
    } else {
        s.stats
            .interactive_jobs
            .fetch_add(run.jobs.len() as u64, Ordering::Relaxed);
        &s.stats.interactive_runs
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let model = &s.model;
    let call = async {
        match run.kind {
            Kind::Query => model.embed_queries(&texts).await,
            Kind::Passage => model.embed(&texts).await,
        }
    };
    let result = match AssertUnwindSafe(call).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            s.stats.panics.fetch_add(1, Ordering::Relaxed);
            let what = panic
                .downcast_ref::<&str>()
                .map(|m| (*m).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %what, texts = texts.len(), "embedding model panicked");
            Err(EmbedError::Internal(format!(
                "embedding model panicked: {what}"
            )))
        }
    };
    match result {
        Ok(vectors) if vectors.len() == texts.len() => {
            let mut vectors = vectors.into_iter();
            for job in run.jobs {
                let mine: Vec<Vec<f32>> = vectors.by_ref().take(job.texts.len()).collect();
                let _ = job.reply.send(Ok(mine));
            }
        }
        Ok(vectors) => {
            let error = format!(
                "embedder returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            );
            for job in run.jobs {
                let _ = job.reply.send(Err(EmbedError::Internal(error.clone())));
            }
        }
        Err(e) => {
            // Every caller of the run gets the error; the message says
            // which kind so a retryable one stays retryable.
            for job in run.jobs {
                let copy = match &e {
                    EmbedError::Unavailable(m) => EmbedError::Unavailable(m.clone()),
                    EmbedError::Internal(m) => EmbedError::Internal(m.clone()),
                };
                let _ = job.reply.send(Err(copy));
            }
        }
    }
}

#[cfg(test)]
mod tests;
