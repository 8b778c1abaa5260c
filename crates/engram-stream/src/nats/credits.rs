//! [`NatsCredits`]: credit wallets in a key-value bucket, their ledger in a
//! JetStream stream.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_trait::async_trait;
use engram_core::{AccountsError, Credits, LedgerEntry, LedgerKind, Movement};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::LEDGER_SEQ_HEADER;
use super::accounts::{Bucket, header, run, scan, token};
use super::connection::{Failure, Shared, is_not_found};
use super::stream::publish_failure;
use crate::accounts::{self as rules, Change, Family, Outcome};

/// Locks that serialize one process's operations on a wallet: concurrent
/// callers then queue instead of racing compare-and-sets they would mostly
/// lose. Striped, so memory stays fixed whatever the number of workspaces.
const LOCK_STRIPES: usize = 64;

/// Compare-and-set attempts before giving up on a wallet other processes
/// keep changing.
const MAX_CAS_ATTEMPTS: usize = 32;

/// How long a replica that lost a compare-and-set waits before it reads the
/// wallet again: a random time below 1, 2, 4, … 32 ms. Without it the
/// replica with the shortest round trip wins every race and a slower one
/// can lose all its attempts under load (seen: 32 in a row on a loaded
/// 2-core machine).
fn cas_backoff(attempt: usize) -> Duration {
    let cap_us = 1_000u64 << attempt.min(5);
    Duration::from_micros(fastrand::u64(0..cap_us))
}

/// Request timeouts one operation may take: a few round trips, plus a
/// compare-and-set retried after a conflict.
const ROUND_TRIPS: u32 = 3;

/// How long the ledger stream remembers a row id to drop a re-published
/// row. Rows left unpublished by a crash are checked against the stream
/// before they are published again, so the window only needs to cover
/// concurrent publishers of the same row.
const LEDGER_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A wallet as stored in the bucket, JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Wallet {
    balance: i64,
    /// Rows written so far: the newest row's number.
    rows: u64,
    /// Rows committed with the balance but not yet known to be on the
    /// ledger stream (the outbox). Usually empty or one row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outbox: Vec<Pending>,
}

/// A committed ledger row and its number.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    seq: u64,
    row: LedgerEntry,
}

/// A wallet and the revision it was read at (`None`: no value yet).
struct Snapshot {
    wallet: Wallet,
    revision: Option<u64>,
}

/// [`Credits`] on NATS JetStream, sharing the stream's connection
/// ([`super::NatsStream::credits`]). Obtain it once and clone it: clones
/// share the per-wallet locks and the cached handles.
///
/// # Layout
///
/// - Wallets: bucket [`super::NatsOptions::wallets_bucket`], one key per
///   workspace (the escaped org id), a small JSON value: balance, row count
///   and the outbox of committed but unpublished ledger rows.
/// - Ledger: stream [`super::NatsOptions::ledger_stream`], one message per
///   row (the `LedgerEntry` as JSON, with `Nats-Msg-Id` = tx id and
///   [`LEDGER_SEQ_HEADER`] = the row's number in the workspace) on
///   `<ledger_subject>.<org>.<family>.<key>`, where the family is `charge`
///   (charges and their refunds), `top_up` or `erasure`. Kept forever,
///   deletes and purges denied.
///
/// # Why per-key subjects
///
/// Idempotency needs "what did this key last do" for every key ever used,
/// with no time limit. Keeping standing charges in the wallet value would
/// make the value grow with every successful charge (charges are rarely
/// refunded) and every compare-and-set rewrite it, so it would need a bound
/// that breaks the guarantee for older keys. Per-key subjects make the
/// ledger itself that index: the last message on a key's subject (one
/// `STREAM.MSG.GET` by subject, answered by the stream leader) is the key's
/// newest published row, and the wallet's outbox holds the newer ones.
///
/// # One operation
///
/// Under the wallet's local lock: read the wallet (revision r); publish the
/// outbox rows that are not on the stream yet (a row whose key subject
/// already shows it or a later row is skipped, the others are published
/// with their tx id as `Nats-Msg-Id`); read the key's last row; decide;
/// then one compare-and-set at r writes the new balance, the row count and
/// an outbox of just the new row. That CAS is the commit: a conflict starts
/// over, so two charges never both pass the balance check, and a key's
/// row can only be decided once the rows before it are on the stream.
/// After the commit the row is published and a second CAS empties the
/// outbox; if either fails (or the process dies) the row stays in the
/// outbox and the next operation on the wallet publishes it, so no row is
/// ever lost and none is appended twice. Rows of one key reach the stream
/// in order, because a row is only written after its wallet's outbox was
/// flushed.
///
/// The ledger read takes the rows numbered up to the wallet's row count
/// from the stream plus the outbox, de-duplicated by number, so its deltas
/// sum to the balance it was read with.
#[derive(Debug, Clone)]
pub struct NatsCredits {
    shared: Arc<Shared>,
    wallets: Arc<Bucket>,
    /// Whether the ledger stream is known to exist with our subjects.
    ledger_checked: Arc<tokio::sync::Mutex<bool>>,
    locks: Arc<Vec<tokio::sync::Mutex<()>>>,
}

impl NatsCredits {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let wallets = Bucket::new(&shared.options.wallets_bucket, "Engram credit wallets");
        NatsCredits {
            shared,
            wallets: Arc::new(wallets),
            ledger_checked: Arc::new(tokio::sync::Mutex::new(false)),
            locks: Arc::new(
                (0..LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
        }
    }

    fn lock_for(&self, org_id: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        org_id.hash(&mut hasher);
        &self.locks[(hasher.finish() % LOCK_STRIPES as u64) as usize]
    }

    /// Waits for the wallet's lock, at most as long as an operation may take.
    async fn locked(&self, org_id: &str) -> Result<tokio::sync::MutexGuard<'_, ()>, AccountsError> {
        let wait = self.shared.options.request_timeout() * ROUND_TRIPS;
        tokio::time::timeout(wait, self.lock_for(org_id).lock())
            .await
            .map_err(|_| {
                AccountsError::Unavailable(format!("wallet busy for longer than {wait:?}"))
            })
    }

    fn ledger_stream(&self) -> &str {
        &self.shared.options.ledger_stream
    }

    fn row_subject(&self, org_id: &str, family: Family, key: &str) -> String {
        format!(
            "{}.{}.{}.{}",
            self.shared.options.ledger_subject,
            token(org_id),
            family.as_str(),
            token(key)
        )
    }

    /// Makes sure the ledger stream exists and takes our subjects, once
    /// (until a failure makes us check again).
    async fn ensure_ledger(&self) -> Result<(), Failure> {
        let mut checked = self.ledger_checked.lock().await;
        if *checked {
            return Ok(());
        }
        let options = &self.shared.options;
        let subjects = vec![format!("{}.>", options.ledger_subject)];
        match self.shared.js.get_stream(&options.ledger_stream).await {
            Ok(handle) => {
                let mut config = handle.cached_info().config.clone();
                if config.subjects != subjects {
                    config.subjects = subjects;
                    self.shared
                        .js
                        .update_stream(&config)
                        .await
                        .map_err(|err| Failure::classify("updating the ledger stream", &err))?;
                    tracing::info!(stream = %options.ledger_stream, subject = %options.ledger_subject, "ledger stream subjects updated");
                }
            }
            Err(err) if is_not_found(&err) => {
                let config = stream::Config {
                    name: options.ledger_stream.clone(),
                    description: Some("Engram credit ledger".to_owned()),
                    subjects,
                    retention: stream::RetentionPolicy::Limits,
                    max_age: Duration::ZERO,
                    max_bytes: -1,
                    storage: stream::StorageType::File,
                    num_replicas: options.replicas,
                    duplicate_window: LEDGER_DUPLICATE_WINDOW,
                    // An audit trail: never dropped, never edited.
                    discard: stream::DiscardPolicy::New,
                    deny_delete: true,
                    deny_purge: true,
                    ..Default::default()
                };
                self.shared
                    .js
                    .create_stream(config)
                    .await
                    .map_err(|err| Failure::classify("creating the ledger stream", &err))?;
                tracing::info!(stream = %options.ledger_stream, subject = %options.ledger_subject, "ledger stream created");
            }
            Err(err) => return Err(Failure::classify("reading the ledger stream", &err)),
        }
        *checked = true;
        Ok(())
    }

    /// Forgets cached handles after a failure that may mean the server was
    /// replaced.
    async fn forget(&self, error: &AccountsError) {
        if matches!(error, AccountsError::Unavailable(_)) {
            *self.ledger_checked.lock().await = false;
            self.wallets.forget().await;
        }
    }

    /// Reads the wallet of `org_key` (an escaped org id).
    async fn read(&self, store: &kv::Store, org_key: &str) -> Result<Snapshot, Failure> {
        let entry = store
            .entry(org_key)
            .await
            .map_err(|err| Failure::classify("reading a wallet", &err))?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                let wallet = serde_json::from_slice(&entry.value).map_err(|err| {
                    Failure::internal(&format!("wallet {org_key} is not valid json"), err)
                })?;
                Ok(Snapshot {
                    wallet,
                    revision: Some(entry.revision),
                })
            }
            // Never written (a delete marker is overwritten by `create`).
            _ => Ok(Snapshot {
                wallet: Wallet::default(),
                revision: None,
            }),
        }
    }

    /// Compare-and-set: writes `wallet` if the value is still at `revision`;
    /// `None` when another writer came first.
    async fn write(
        &self,
        store: &kv::Store,
        org_key: &str,
        wallet: &Wallet,
        revision: Option<u64>,
    ) -> Result<Option<u64>, Failure> {
        let value = serde_json::to_vec(wallet)
            .map_err(|err| Failure::internal("encoding a wallet", err))?;
        match revision {
            Some(revision) => match store.update(org_key, value.into(), revision).await {
                Ok(revision) => Ok(Some(revision)),
                Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(err) => Err(Failure::classify("writing a wallet", &err)),
            },
            None => match store.create(org_key, value.into()).await {
                Ok(revision) => Ok(Some(revision)),
                Err(err) if err.kind() == CreateErrorKind::AlreadyExists => Ok(None),
                Err(err) => Err(Failure::classify("writing a wallet", &err)),
            },
        }
    }

    /// The newest row on `subject` and its number.
    async fn last_row(&self, subject: &str) -> Result<Option<(u64, LedgerEntry)>, Failure> {
        const WHAT: &str = "reading a ledger row";
        let handle = self
            .shared
            .js
            .get_stream_no_info(self.ledger_stream())
            .await
            .map_err(|err| Failure::classify(WHAT, &err))?;
        let message = match handle.get_last_raw_message_by_subject(subject).await {
            Ok(message) => message,
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            // 404: the stream is gone; it is recreated after the next check.
            Err(err) => match err.kind() {
                LastRawMessageErrorKind::JetStream(api)
                    if api.code() != 503 && api.code() != 404 =>
                {
                    return Err(Failure::internal(WHAT, err));
                }
                _ => return Err(Failure::unavailable(WHAT, err)),
            },
        };
        let seq = message
            .headers
            .get(LEDGER_SEQ_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .ok_or_else(|| {
                Failure::Internal(format!(
                    "ledger row on {subject} has no {LEDGER_SEQ_HEADER}"
                ))
            })?;
        let row = serde_json::from_slice(&message.payload)
            .map_err(|err| Failure::internal("decoding a ledger row", err))?;
        Ok(Some((seq, row)))
    }

    /// Appends a committed row to the ledger stream; a row already there
    /// (inside the duplicate window) is dropped by the server.
    async fn publish(&self, pending: &Pending) -> Result<(), Failure> {
        let row = &pending.row;
        let subject = self.row_subject(&row.org_id, Family::of(row.kind), &row.key);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, row.tx_id.as_str());
        headers.insert(LEDGER_SEQ_HEADER, pending.seq.to_string().as_str());
        let payload =
            serde_json::to_vec(row).map_err(|err| Failure::internal("encoding a row", err))?;
        self.shared
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(publish_failure)?
            .await
            .map_err(publish_failure)?;
        Ok(())
    }

    /// Publishes outbox rows left by an earlier operation that may have
    /// died, skipping those already on the stream: their duplicate window
    /// may have passed.
    async fn flush(&self, outbox: &[Pending]) -> Result<(), Failure> {
        for pending in outbox {
            let row = &pending.row;
            let subject = self.row_subject(&row.org_id, Family::of(row.kind), &row.key);
            let published = self
                .last_row(&subject)
                .await?
                .is_some_and(|(seq, _)| seq >= pending.seq);
            if !published {
                self.publish(pending).await?;
                tracing::info!(org_id = %row.org_id, tx_id = %row.tx_id, seq = pending.seq, "left-over ledger row published");
            }
        }
        Ok(())
    }

    /// Empties the outbox of a wallet written at `revision`; a conflict
    /// leaves it to the next operation.
    async fn clear_outbox(&self, store: &kv::Store, org_key: &str, wallet: &Wallet, revision: u64) {
        let cleared = Wallet {
            outbox: Vec::new(),
            ..wallet.clone()
        };
        match self.write(store, org_key, &cleared, Some(revision)).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::debug!(wallet = %org_key, "outbox changed meanwhile, left to the next operation")
            }
            Err(error) => tracing::debug!(wallet = %org_key, ?error, "cannot empty the outbox yet"),
        }
    }

    /// One wallet operation (see the type's documentation).
    async fn apply<D>(
        &self,
        org_id: &str,
        family: Family,
        key: &str,
        decide: D,
    ) -> Result<Outcome, AccountsError>
    where
        D: Fn(i64, Option<&LedgerEntry>) -> Result<Option<Change>, AccountsError>,
    {
        rules::check_id("org_id", org_id)?;
        rules::check_id("key", key)?;
        let org_key = token(org_id);
        let subject = self.row_subject(org_id, family, key);
        let _guard = self.locked(org_id).await?;
        let shared = &self.shared;
        let committed = run(shared, "changing a wallet", ROUND_TRIPS, async {
            self.ensure_ledger().await?;
            let store = self.wallets.get(shared).await?;
            for attempt in 0..MAX_CAS_ATTEMPTS {
                let snapshot = self.read(&store, &org_key).await?;
                let wallet = snapshot.wallet;
                self.flush(&wallet.outbox).await?;
                let previous = self.last_row(&subject).await?.map(|(_, row)| row);
                let Some(change) = decide(wallet.balance, previous.as_ref())? else {
                    if let (false, Some(revision)) = (wallet.outbox.is_empty(), snapshot.revision) {
                        self.clear_outbox(&store, &org_key, &wallet, revision).await;
                    }
                    let outcome = Outcome {
                        balance: wallet.balance,
                        previous,
                        written: None,
                    };
                    return Ok((outcome, None));
                };
                let row = rules::row(org_id, key, wallet.balance, change)?;
                let pending = Pending {
                    seq: wallet.rows + 1,
                    row,
                };
                let next = Wallet {
                    balance: pending.row.balance_after,
                    rows: pending.seq,
                    outbox: vec![pending.clone()],
                };
                match self
                    .write(&store, &org_key, &next, snapshot.revision)
                    .await?
                {
                    Some(revision) => {
                        let outcome = Outcome {
                            balance: next.balance,
                            previous,
                            written: Some(pending.row.clone()),
                        };
                        return Ok((outcome, Some((store, next, revision, pending))));
                    }
                    None => {
                        tracing::debug!(wallet = %org_key, attempt, "wallet changed meanwhile, trying again");
                        tokio::time::sleep(cas_backoff(attempt)).await;
                    }
                }
            }
            Err(AccountsError::Unavailable(format!(
                "wallet of {org_id} kept changing through {MAX_CAS_ATTEMPTS} attempts"
            )))
        })
        .await;
        let (outcome, written) = match committed {
            Ok(done) => done,
            Err(error) => {
                // Refusals (insufficient credits, conflicting keys) are answers,
                // not failures of the store.
                if matches!(
                    error,
                    AccountsError::Unavailable(_) | AccountsError::Internal(_)
                ) {
                    self.forget(&error).await;
                    tracing::warn!(org_id, key, family = family.as_str(), %error, "wallet operation failed");
                }
                return Err(error);
            }
        };
        // Committed: from here on failures only delay the row's publication
        // to the next operation, so they are not the caller's concern.
        if let Some((store, wallet, revision, pending)) = written {
            let row = &pending.row;
            let published = run(shared, "publishing a ledger row", 2, async {
                self.publish(&pending).await?;
                self.clear_outbox(&store, &org_key, &wallet, revision).await;
                Ok(())
            })
            .await;
            match published {
                Ok(()) => {
                    tracing::debug!(org_id, kind = row.kind.as_str(), delta = row.delta, balance = row.balance_after, tx_id = %row.tx_id, seq = pending.seq, "ledger row written")
                }
                Err(error) => {
                    self.forget(&error).await;
                    tracing::warn!(org_id, tx_id = %row.tx_id, %error, "ledger row committed, publication left to the next operation");
                }
            }
        }
        Ok(outcome)
    }

    /// The rows numbered up to the wallet's row count: the stream's and the
    /// outbox's, by number.
    async fn read_ledger(&self, org_id: &str) -> Result<(Wallet, Vec<LedgerEntry>), AccountsError> {
        let org_key = token(org_id);
        let snapshot = {
            let _guard = self.locked(org_id).await?;
            run(&self.shared, "reading a wallet", ROUND_TRIPS, async {
                self.ensure_ledger().await?;
                let store = self.wallets.get(&self.shared).await?;
                let snapshot = self.read(&store, &org_key).await?;
                // Best effort: the rows are merged from the outbox anyway.
                if let (false, Some(revision)) =
                    (snapshot.wallet.outbox.is_empty(), snapshot.revision)
                    && self.flush(&snapshot.wallet.outbox).await.is_ok()
                {
                    self.clear_outbox(&store, &org_key, &snapshot.wallet, revision)
                        .await;
                }
                Ok(snapshot)
            })
            .await?
        };
        let wallet = snapshot.wallet;
        if wallet.rows == 0 {
            return Ok((wallet, Vec::new()));
        }
        let filter = format!("{}.{}.>", self.shared.options.ledger_subject, org_key);
        let messages = run(&self.shared, "reading the ledger", ROUND_TRIPS, async {
            Ok(scan(
                &self.shared,
                self.ledger_stream(),
                filter,
                DeliverPolicy::All,
            )
            .await?)
        })
        .await?;
        let mut rows = BTreeMap::new();
        for message in messages {
            let seq: u64 = header(&message.message, LEDGER_SEQ_HEADER)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    AccountsError::Internal(format!(
                        "ledger row on {} has no {LEDGER_SEQ_HEADER}",
                        message.message.subject
                    ))
                })?;
            if seq > wallet.rows {
                continue;
            }
            let row: LedgerEntry = serde_json::from_slice(&message.message.payload)
                .map_err(|err| AccountsError::Internal(format!("decoding a ledger row: {err}")))?;
            rows.insert(seq, row);
        }
        for pending in &wallet.outbox {
            rows.insert(pending.seq, pending.row.clone());
        }
        let rows: Vec<LedgerEntry> = rows.into_values().collect();
        let sum: i64 = rows.iter().map(|row| row.delta).sum();
        if sum != wallet.balance || rows.len() as u64 != wallet.rows {
            tracing::warn!(
                org_id,
                balance = wallet.balance,
                sum,
                rows = rows.len(),
                expected_rows = wallet.rows,
                "ledger does not add up to the wallet"
            );
        }
        Ok((wallet, rows))
    }
}

#[async_trait]
impl Credits for NatsCredits {
    async fn charge(
        &self,
        org_id: &str,
        key: &str,
        amount: u64,
    ) -> Result<Movement, AccountsError> {
        let outcome = self
            .apply(org_id, Family::Charge, key, |balance, previous| {
                rules::charge(balance, previous, amount)
            })
            .await?;
        rules::movement(outcome)
    }

    async fn refund(
        &self,
        org_id: &str,
        key: &str,
        reason: &str,
    ) -> Result<Option<Movement>, AccountsError> {
        let outcome = self
            .apply(org_id, Family::Charge, key, |_, previous| {
                Ok(rules::refund(previous, reason))
            })
            .await?;
        Ok(outcome.written.map(|row| Movement {
            tx_id: row.tx_id,
            amount: row.delta.unsigned_abs(),
            balance: outcome.balance,
        }))
    }

    async fn top_up(
        &self,
        org_id: &str,
        key: &str,
        amount: u64,
    ) -> Result<Movement, AccountsError> {
        let outcome = self
            .apply(org_id, Family::TopUp, key, |_, previous| {
                rules::top_up(previous, key, amount)
            })
            .await?;
        rules::movement(outcome)
    }

    async fn balance(&self, org_id: &str) -> Result<i64, AccountsError> {
        rules::check_id("org_id", org_id)?;
        let org_key = token(org_id);
        let result = run(&self.shared, "reading a wallet", 2, async {
            let store = self.wallets.get(&self.shared).await?;
            Ok(self.read(&store, &org_key).await?.wallet.balance)
        })
        .await;
        if let Err(error) = &result {
            self.forget(error).await;
        }
        result
    }

    async fn record(
        &self,
        org_id: &str,
        kind: LedgerKind,
        key: &str,
        detail: Map<String, Value>,
    ) -> Result<String, AccountsError> {
        rules::check_record(kind, &detail)?;
        let outcome = self
            .apply(org_id, Family::of(kind), key, |_, previous| {
                Ok(rules::record(previous, kind, detail.clone()))
            })
            .await?;
        rules::movement(outcome).map(|movement| movement.tx_id)
    }

    async fn ledger(&self, org_id: &str, limit: usize) -> Result<Vec<LedgerEntry>, AccountsError> {
        rules::check_id("org_id", org_id)?;
        let result = self.read_ledger(org_id).await;
        match result {
            Ok((_, mut rows)) => {
                let skip = rows.len().saturating_sub(limit);
                Ok(rows.split_off(skip))
            }
            Err(error) => {
                self.forget(&error).await;
                Err(error)
            }
        }
    }

    async fn ready(&self) -> Result<(), AccountsError> {
        let result = run(&self.shared, "checking the wallets", ROUND_TRIPS, async {
            self.ensure_ledger().await?;
            let store = self.wallets.get(&self.shared).await?;
            // A real round trip even when the handle is cached.
            store
                .status()
                .await
                .map_err(|err| Failure::classify("reading the wallets bucket", &err))?;
            Ok(())
        })
        .await;
        if let Err(error) = &result {
            self.forget(error).await;
        }
        result
    }
}
