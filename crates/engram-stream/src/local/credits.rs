//! Credit wallets and their ledger in the local database.

use super::queue::Shared;
use crate::accounts::{self as rules, Change, Family, Outcome};
use async_trait::async_trait;
use engram_core::{AccountsError, Credits, LedgerEntry, LedgerKind, Movement};
use redb::{ReadableTable, TableDefinition};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Wallets: org → (balance, rows written so far).
pub(super) const WALLETS: TableDefinition<&str, (i64, u64)> =
    TableDefinition::new("credit_wallets");
/// The ledger: (org, row number from 1) → JSON of `LedgerEntry`.
pub(super) const LEDGER: TableDefinition<(&str, u64), &str> = TableDefinition::new("credit_ledger");
/// The idempotency index: (org, family, key) → row number of the newest
/// row written for that key (a standing charge is a `charge` row there).
pub(super) const KEYS: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("credit_keys");

/// [`Credits`] on the local queue's database; obtained from
/// [`super::LocalQueue::credits`]. Cloning is cheap.
///
/// Every operation is one durable (fsync'd) redb write transaction that
/// reads the wallet and the key's newest row, checks, writes the ledger
/// row, points the key at it and updates the balance; redb serializes
/// write transactions, so concurrent charges never overdraw a wallet, and
/// the ledger's deltas sum to the balance by construction. The key index
/// keeps one entry per key forever, so idempotency has no time limit.
#[derive(Clone)]
pub struct LocalCredits {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalCredits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCredits").finish_non_exhaustive()
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> AccountsError {
    AccountsError::Internal(e.to_string())
}

/// Runs `f` on the database on the blocking pool.
pub(super) async fn blocking<T, F>(shared: &Arc<Shared>, f: F) -> Result<T, AccountsError>
where
    T: Send + 'static,
    F: FnOnce(&redb::Database) -> Result<T, AccountsError> + Send + 'static,
{
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let db = shared
            .db()
            .map_err(|_| AccountsError::Unavailable("local queue closed".into()))?;
        f(&db)
    })
    .await
    .map_err(internal)?
}

fn decode(json: &str) -> Result<LedgerEntry, AccountsError> {
    serde_json::from_str(json).map_err(|e| internal(format!("ledger row is not valid json: {e}")))
}

/// One wallet operation: the whole read-check-write is a single durable
/// transaction; nothing is committed when `decide` writes nothing or fails.
fn apply<D>(
    db: &redb::Database,
    org_id: &str,
    family: Family,
    key: &str,
    decide: D,
) -> Result<Outcome, AccountsError>
where
    D: FnOnce(i64, Option<&LedgerEntry>) -> Result<Option<Change>, AccountsError>,
{
    let tx = db.begin_write().map_err(internal)?;
    let outcome = {
        let mut wallets = tx.open_table(WALLETS).map_err(internal)?;
        let mut ledger = tx.open_table(LEDGER).map_err(internal)?;
        let mut keys = tx.open_table(KEYS).map_err(internal)?;
        let (balance, rows) = wallets
            .get(org_id)
            .map_err(internal)?
            .map_or((0, 0), |v| v.value());
        let previous_seq = keys
            .get((org_id, family.as_str(), key))
            .map_err(internal)?
            .map(|v| v.value());
        let previous = match previous_seq {
            Some(seq) => match ledger.get((org_id, seq)).map_err(internal)? {
                Some(json) => Some(decode(json.value())?),
                None => {
                    return Err(internal(format!(
                        "key {key:?} of {org_id} points at missing ledger row {seq}"
                    )));
                }
            },
            None => None,
        };
        match decide(balance, previous.as_ref())? {
            None => Outcome {
                balance,
                previous,
                written: None,
            },
            Some(change) => {
                let row = rules::row(org_id, key, balance, change)?;
                let seq = rows + 1;
                let json = serde_json::to_string(&row).map_err(internal)?;
                ledger
                    .insert((org_id, seq), json.as_str())
                    .map_err(internal)?;
                keys.insert((org_id, family.as_str(), key), seq)
                    .map_err(internal)?;
                wallets
                    .insert(org_id, (row.balance_after, seq))
                    .map_err(internal)?;
                Outcome {
                    balance: row.balance_after,
                    previous,
                    written: Some(row),
                }
            }
        }
    };
    if outcome.written.is_some() {
        tx.commit().map_err(internal)?;
    } else {
        tx.abort().map_err(internal)?;
    }
    Ok(outcome)
}

impl LocalCredits {
    async fn run<D>(
        &self,
        org_id: &str,
        family: Family,
        key: &str,
        decide: D,
    ) -> Result<Outcome, AccountsError>
    where
        D: FnOnce(i64, Option<&LedgerEntry>) -> Result<Option<Change>, AccountsError>
            + Send
            + 'static,
    {
        rules::check_id("org_id", org_id)?;
        rules::check_id("key", key)?;
        let (org, key) = (org_id.to_owned(), key.to_owned());
        let outcome = blocking(&self.shared, move |db| {
            apply(db, &org, family, &key, decide)
        })
        .await?;
        if let Some(row) = &outcome.written {
            tracing::debug!(org_id = %row.org_id, kind = row.kind.as_str(), delta = row.delta, balance = row.balance_after, tx_id = %row.tx_id, "ledger row written");
        }
        Ok(outcome)
    }
}

#[async_trait]
impl Credits for LocalCredits {
    async fn charge(
        &self,
        org_id: &str,
        key: &str,
        amount: u64,
    ) -> Result<Movement, AccountsError> {
        let outcome = self
            .run(org_id, Family::Charge, key, move |balance, previous| {
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
        let reason = reason.to_owned();
        let outcome = self
            .run(org_id, Family::Charge, key, move |_, previous| {
                Ok(rules::refund(previous, &reason))
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
        let owned_key = key.to_owned();
        let outcome = self
            .run(org_id, Family::TopUp, key, move |_, previous| {
                rules::top_up(previous, &owned_key, amount)
            })
            .await?;
        rules::movement(outcome)
    }

    async fn balance(&self, org_id: &str) -> Result<i64, AccountsError> {
        rules::check_id("org_id", org_id)?;
        let org = org_id.to_owned();
        blocking(&self.shared, move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let wallets = tx.open_table(WALLETS).map_err(internal)?;
            Ok(wallets
                .get(org.as_str())
                .map_err(internal)?
                .map_or(0, |v| v.value().0))
        })
        .await
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
            .run(org_id, Family::of(kind), key, move |_, previous| {
                Ok(rules::record(previous, kind, detail))
            })
            .await?;
        rules::movement(outcome).map(|movement| movement.tx_id)
    }

    async fn ledger(&self, org_id: &str, limit: usize) -> Result<Vec<LedgerEntry>, AccountsError> {
        rules::check_id("org_id", org_id)?;
        let org = org_id.to_owned();
        blocking(&self.shared, move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let ledger = tx.open_table(LEDGER).map_err(internal)?;
            let mut rows = Vec::with_capacity(limit.min(1024));
            for item in ledger
                .range((org.as_str(), 0)..=(org.as_str(), u64::MAX))
                .map_err(internal)?
                .rev()
                .take(limit)
            {
                let (_, json) = item.map_err(internal)?;
                rows.push(decode(json.value())?);
            }
            rows.reverse();
            Ok(rows)
        })
        .await
    }

    async fn ready(&self) -> Result<(), AccountsError> {
        blocking(&self.shared, |_| Ok(())).await
    }
}
