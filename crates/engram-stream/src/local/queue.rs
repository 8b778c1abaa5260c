//! The queue itself: tables, publish, the consumer's scan and settlement.

use super::{internal, now_ms};
use async_trait::async_trait;
use engram_core::{Delivery, OutboundMessage, PublishAck, StreamError, Subscription, TurnStream};
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Message bookkeeping, by sequence.
const META: TableDefinition<u64, &str> = TableDefinition::new("messages_meta");
/// Message payloads, by sequence (kept apart so a scan never reads them).
const PAYLOAD: TableDefinition<u64, &[u8]> = TableDefinition::new("messages_payload");
/// Message ids seen inside the duplicate window: id → (sequence, publish time).
const DEDUP: TableDefinition<&str, (u64, i64)> = TableDefinition::new("dedup");
/// Messages given up on, by sequence.
const DEAD_META: TableDefinition<u64, &str> = TableDefinition::new("dead_meta");
const DEAD_PAYLOAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_payload");
/// Counters: the next sequence number.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Job records (see `jobs.rs`): job id → JSON of `Job`.
pub(super) const JOBS: TableDefinition<&str, &str> = TableDefinition::new("jobs");
/// Events of unfinished jobs (see `jobs.rs`): job id → `KeptEvent::encode`.
pub(super) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");

/// File name of the database inside the queue directory.
const FILE: &str = "queue.redb";
/// Expired de-duplication ids are swept after this many publishes.
const SWEEP_EVERY: u64 = 256;
/// Longest a waiting consumer sleeps before it scans again anyway.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);

/// Options of the local queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalQueueOptions {
    /// A second publish with the same message id within this window is dropped.
    pub duplicate_window: Duration,
}

impl Default for LocalQueueOptions {
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    msg_id: String,
    job_id: String,
    /// Deliveries handed out so far (persisted before each hand-out).
    deliveries: u64,
    /// Not to be delivered before this time (epoch ms): a nak's delay.
    not_before_ms: i64,
    published_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead_reason: Option<String>,
    /// The publisher's trace context (older records have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trace_context: Vec<(String, String)>,
}

/// A message moved to the dead-letter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its message id.
    pub msg_id: String,
    /// Its job.
    pub job_id: String,
    /// Deliveries it had.
    pub attempts: u64,
    /// Why the consumer gave up.
    pub reason: String,
    /// The payload as published.
    pub payload: Vec<u8>,
}

/// State shared by the queue, its subscriptions, deliveries and job store.
pub(crate) struct Shared {
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    options: LocalQueueOptions,
    /// Sequences handed to a consumer and not yet settled. In memory on
    /// purpose: after a restart every unsettled message is deliverable again.
    inflight: Mutex<HashSet<u64>>,
    notify: Notify,
    publishes: AtomicU64,
}

impl Shared {
    pub(super) fn db(&self) -> Result<Arc<Database>, StreamError> {
        self.db.read().clone().ok_or(StreamError::Closed)
    }

    fn release(&self, seq: u64) {
        self.inflight.lock().remove(&seq);
        self.notify.notify_waiters();
    }
}

/// The embedded durable queue; cheap to clone.
#[derive(Clone)]
pub struct LocalQueue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue")
            .field("path", &self.shared.path)
            .finish()
    }
}

async fn blocking<T, F>(shared: &Arc<Shared>, f: F) -> Result<T, StreamError>
where
    T: Send + 'static,
    F: FnOnce(&Shared, &Database) -> Result<T, StreamError> + Send + 'static,
{
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let db = shared.db()?;
        f(&shared, &db)
    })
    .await
    .map_err(internal)?
}

fn encode(meta: &Meta) -> Result<String, StreamError> {
    serde_json::to_string(meta).map_err(internal)
}

fn decode(s: &str) -> Result<Meta, StreamError> {
    serde_json::from_str(s).map_err(internal)
}

impl LocalQueue {
    /// Opens (or creates) the queue in `dir`. Messages left unsettled by an
    /// earlier process are deliverable at once.
    pub fn open(dir: &Path, options: LocalQueueOptions) -> Result<Self, StreamError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StreamError::Internal(format!(
                "cannot create queue directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE);
        let db = Database::create(&path).map_err(|e| {
            StreamError::Internal(format!("cannot open queue {}: {e}", path.display()))
        })?;
        // Every table exists from the start, so read transactions never
        // meet a missing one.
        let tx = db.begin_write().map_err(internal)?;
        {
            tx.open_table(META).map_err(internal)?;
            tx.open_table(PAYLOAD).map_err(internal)?;
            tx.open_table(DEDUP).map_err(internal)?;
            tx.open_table(DEAD_META).map_err(internal)?;
            tx.open_table(DEAD_PAYLOAD).map_err(internal)?;
            tx.open_table(COUNTERS).map_err(internal)?;
            tx.open_table(JOBS).map_err(internal)?;
            tx.open_table(OUTBOX).map_err(internal)?;
            tx.open_table(super::credits::WALLETS).map_err(internal)?;
            tx.open_table(super::credits::LEDGER).map_err(internal)?;
            tx.open_table(super::credits::KEYS).map_err(internal)?;
            tx.open_table(super::collections::COLLECTIONS)
                .map_err(internal)?;
        }
        tx.commit().map_err(internal)?;
        let queue = Self {
            shared: Arc::new(Shared {
                db: RwLock::new(Some(Arc::new(db))),
                path,
                options,
                inflight: Mutex::new(HashSet::new()),
                notify: Notify::new(),
                publishes: AtomicU64::new(0),
            }),
        };
        queue.sweep_dedup()?;
        let pending = queue.pending_blocking()?;
        tracing::info!(path = %queue.shared.path.display(), pending, "local queue opened");
        Ok(queue)
    }

    /// The job store kept in the same database.
    pub fn job_store(&self) -> super::LocalJobs {
        super::LocalJobs {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The credit wallets and their ledger kept in the same database.
    pub fn credits(&self) -> super::LocalCredits {
        super::LocalCredits {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The team collections kept in the same database.
    pub fn collections(&self) -> super::LocalCollections {
        super::LocalCollections {
            shared: Arc::clone(&self.shared),
        }
    }

    fn pending_blocking(&self) -> Result<u64, StreamError> {
        let db = self.shared.db()?;
        let tx = db.begin_read().map_err(internal)?;
        let table = tx.open_table(META).map_err(internal)?;
        redb::ReadableTableMetadata::len(&table).map_err(internal)
    }

    /// The dead-lettered messages, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StreamError> {
        blocking(&self.shared, |_, db| {
            let tx = db.begin_read().map_err(internal)?;
            let metas = tx.open_table(DEAD_META).map_err(internal)?;
            let payloads = tx.open_table(DEAD_PAYLOAD).map_err(internal)?;
            let mut out = Vec::new();
            for item in metas.iter().map_err(internal)? {
                let (seq, meta) = item.map_err(internal)?;
                let meta = decode(meta.value())?;
                let payload = payloads
                    .get(seq.value())
                    .map_err(internal)?
                    .map(|p| p.value().to_vec())
                    .unwrap_or_default();
                out.push(DeadLetter {
                    msg_id: meta.msg_id,
                    job_id: meta.job_id,
                    attempts: meta.deliveries,
                    reason: meta.dead_reason.unwrap_or_default(),
                    payload,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Closes the database; later calls fail with [`StreamError::Closed`].
    pub fn close(&self) {
        self.shared.db.write().take();
        self.shared.notify.notify_waiters();
    }

    /// Drops de-duplication ids older than the window.
    fn sweep_dedup(&self) -> Result<(), StreamError> {
        let db = self.shared.db()?;
        let horizon = now_ms() - self.shared.options.duplicate_window.as_millis() as i64;
        let tx = super::lazy_write(&db)?;
        {
            let mut table = tx.open_table(DEDUP).map_err(internal)?;
            table
                .retain(|_, (_, published_ms)| published_ms >= horizon)
                .map_err(internal)?;
        }
        tx.commit().map_err(internal)
    }
}

#[async_trait]
impl TurnStream for LocalQueue {
    async fn backlog(&self) -> Result<u64, StreamError> {
        let q = self.clone();
        tokio::task::spawn_blocking(move || q.pending_blocking())
            .await
            .map_err(internal)?
    }

    async fn publish(&self, message: OutboundMessage) -> Result<PublishAck, StreamError> {
        let ack = blocking(&self.shared, move |shared, db| {
            let now = now_ms();
            let window = shared.options.duplicate_window.as_millis() as i64;
            let tx = db.begin_write().map_err(internal)?;
            let ack = {
                let mut dedup = tx.open_table(DEDUP).map_err(internal)?;
                let seen = dedup
                    .get(message.msg_id.as_str())
                    .map_err(internal)?
                    .map(|v| v.value());
                match seen {
                    Some((sequence, at)) if at + window > now => PublishAck {
                        sequence,
                        duplicate: true,
                    },
                    _ => {
                        let mut counters = tx.open_table(COUNTERS).map_err(internal)?;
                        let sequence = counters
                            .get("next_seq")
                            .map_err(internal)?
                            .map_or(1, |v| v.value());
                        counters
                            .insert("next_seq", sequence + 1)
                            .map_err(internal)?;
                        let meta = Meta {
                            msg_id: message.msg_id.clone(),
                            job_id: message.job_id.clone(),
                            deliveries: 0,
                            not_before_ms: 0,
                            published_ms: now,
                            dead_reason: None,
                            trace_context: message.trace_context.clone(),
                        };
                        tx.open_table(META)
                            .map_err(internal)?
                            .insert(sequence, encode(&meta)?.as_str())
                            .map_err(internal)?;
                        tx.open_table(PAYLOAD)
                            .map_err(internal)?
                            .insert(sequence, message.payload.as_slice())
                            .map_err(internal)?;
                        dedup
                            .insert(message.msg_id.as_str(), (sequence, now))
                            .map_err(internal)?;
                        PublishAck {
                            sequence,
                            duplicate: false,
                        }
                    }
                }
            };
            tx.commit().map_err(internal)?;
            Ok(ack)
        })
        .await?;
        if !ack.duplicate {
            self.shared.notify.notify_waiters();
            if self.shared.publishes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY
                == SWEEP_EVERY - 1
            {
                let q = self.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(error) = q.sweep_dedup() {
                        tracing::warn!(%error, "cannot sweep expired message ids");
                    }
                });
            }
        }
        Ok(ack)
    }

    async fn subscribe(&self) -> Result<Box<dyn Subscription>, StreamError> {
        self.shared.db()?;
        Ok(Box::new(LocalSubscription {
            shared: Arc::clone(&self.shared),
        }))
    }

    async fn ready(&self) -> Result<(), StreamError> {
        self.shared.db().map(|_| ())
    }
}

struct LocalSubscription {
    shared: Arc<Shared>,
}

/// What a scan found: a message to hand out, or how long to wait.
enum Scan {
    Found(LocalDelivery),
    Wait(Duration),
}

fn claim(shared: &Arc<Shared>, db: &Database) -> Result<Scan, StreamError> {
    let now = now_ms();
    // The in-flight lock is held across the scan and the claim so that two
    // subscriptions never hand out the same message.
    let mut inflight = shared.inflight.lock();
    let tx = super::lazy_write(db)?;
    let mut wait = MAX_IDLE_WAIT;
    let found = {
        let mut metas = tx.open_table(META).map_err(internal)?;
        let mut hit = None;
        for item in metas.iter().map_err(internal)? {
            let (seq, meta) = item.map_err(internal)?;
            let seq = seq.value();
            if inflight.contains(&seq) {
                continue;
            }
            let meta = decode(meta.value())?;
            if meta.not_before_ms > now {
                let until = Duration::from_millis((meta.not_before_ms - now) as u64);
                wait = wait.min(until);
                continue;
            }
            hit = Some((seq, meta));
            break;
        }
        match hit {
            Some((seq, mut meta)) => {
                meta.deliveries += 1;
                metas
                    .insert(seq, encode(&meta)?.as_str())
                    .map_err(internal)?;
                let payload = tx
                    .open_table(PAYLOAD)
                    .map_err(internal)?
                    .get(seq)
                    .map_err(internal)?
                    .map(|p| p.value().to_vec())
                    .unwrap_or_default();
                Some((seq, meta, payload))
            }
            None => None,
        }
    };
    let Some((seq, meta, payload)) = found else {
        drop(tx);
        return Ok(Scan::Wait(wait));
    };
    // The delivery count is durable before the message is handed out, so a
    // crash mid-work still counts towards the consumer's limit.
    tx.commit().map_err(internal)?;
    inflight.insert(seq);
    Ok(Scan::Found(LocalDelivery {
        shared: Arc::clone(shared),
        seq,
        msg_id: meta.msg_id,
        job_id: meta.job_id,
        attempt: meta.deliveries,
        trace_context: meta.trace_context,
        payload,
        settled: AtomicBool::new(false),
    }))
}

#[async_trait]
impl Subscription for LocalSubscription {
    async fn next(&mut self) -> Result<Box<dyn Delivery>, StreamError> {
        loop {
            // Registered before the scan so a publish during it is not missed.
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let shared = Arc::clone(&self.shared);
            let scan = blocking(&self.shared, move |_, db| claim(&shared, db)).await?;
            match scan {
                Scan::Found(delivery) => return Ok(Box::new(delivery)),
                Scan::Wait(wait) => {
                    let _ = tokio::time::timeout(wait, notified).await;
                }
            }
        }
    }
}

struct LocalDelivery {
    shared: Arc<Shared>,
    seq: u64,
    msg_id: String,
    job_id: String,
    attempt: u64,
    trace_context: Vec<(String, String)>,
    payload: Vec<u8>,
    settled: AtomicBool,
}

impl LocalDelivery {
    /// Runs a settling transaction once; the message leaves the in-flight
    /// set afterwards whatever the outcome.
    async fn settle<F>(&self, durable: bool, f: F) -> Result<(), StreamError>
    where
        F: FnOnce(&redb::WriteTransaction, u64) -> Result<(), StreamError> + Send + 'static,
    {
        if self.settled.swap(true, Ordering::SeqCst) {
            return Err(StreamError::Internal("delivery already settled".into()));
        }
        let seq = self.seq;
        let shared = Arc::clone(&self.shared);
        // Released inside the blocking task, so a caller that stops waiting
        // cannot leave the message claimed forever.
        tokio::task::spawn_blocking(move || {
            let result = shared.db().and_then(|db| {
                let tx = if durable {
                    db.begin_write().map_err(internal)?
                } else {
                    super::lazy_write(&db)?
                };
                f(&tx, seq)?;
                tx.commit().map_err(internal)
            });
            shared.release(seq);
            result
        })
        .await
        .map_err(internal)?
    }
}

fn remove(tx: &redb::WriteTransaction, seq: u64) -> Result<Option<Meta>, StreamError> {
    let meta = tx
        .open_table(META)
        .map_err(internal)?
        .remove(seq)
        .map_err(internal)?
        .map(|m| decode(m.value()))
        .transpose()?;
    tx.open_table(PAYLOAD)
        .map_err(internal)?
        .remove(seq)
        .map_err(internal)?;
    Ok(meta)
}

#[async_trait]
impl Delivery for LocalDelivery {
    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn job_id(&self) -> &str {
        &self.job_id
    }

    fn attempt(&self) -> u64 {
        self.attempt
    }

    fn trace_context(&self) -> Vec<(String, String)> {
        self.trace_context.clone()
    }

    async fn ack(&self) -> Result<(), StreamError> {
        self.settle(false, |tx, seq| remove(tx, seq).map(|_| ()))
            .await
    }

    async fn nak(&self, delay: Duration) -> Result<(), StreamError> {
        self.settle(false, move |tx, seq| {
            let mut metas = tx.open_table(META).map_err(internal)?;
            let meta = metas.get(seq).map_err(internal)?.map(|m| decode(m.value()));
            if let Some(meta) = meta {
                let mut meta = meta?;
                meta.not_before_ms = now_ms() + delay.as_millis() as i64;
                metas
                    .insert(seq, encode(&meta)?.as_str())
                    .map_err(internal)?;
            }
            Ok(())
        })
        .await
    }

    async fn progress(&self) -> Result<(), StreamError> {
        // In-flight messages stay claimed for as long as this process lives,
        // so there is no timer to extend.
        self.shared.db().map(|_| ())
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), StreamError> {
        let reason = reason.to_owned();
        let payload = self.payload.clone();
        tracing::warn!(msg_id = %self.msg_id, job_id = %self.job_id, attempts = self.attempt, %reason, "message dead-lettered");
        // Dead letters are rare and are what an operator inspects: on disk.
        self.settle(true, move |tx, seq| {
            if let Some(mut meta) = remove(tx, seq)? {
                meta.dead_reason = Some(reason);
                tx.open_table(DEAD_META)
                    .map_err(internal)?
                    .insert(seq, encode(&meta)?.as_str())
                    .map_err(internal)?;
                tx.open_table(DEAD_PAYLOAD)
                    .map_err(internal)?
                    .insert(seq, payload.as_slice())
                    .map_err(internal)?;
            }
            Ok(())
        })
        .await
    }
}

impl Drop for LocalDelivery {
    fn drop(&mut self) {
        // Dropped unsettled (a consumer task was cancelled): deliverable again.
        if !self.settled.load(Ordering::SeqCst) {
            self.shared.release(self.seq);
        }
    }
}
