//! What both account-store implementations share: argument checks and the
//! decision rules of the wallet operations.
//!
//! Both stores keep, per workspace, a balance, a row counter and an index
//! from `(family, key)` to the newest ledger row written for that key. An
//! operation reads those, asks one of the rules below what to write (if
//! anything), and commits the row and the new balance atomically (one redb
//! transaction, or one key-value compare-and-set). Keeping the rules here
//! makes the two stores agree on every edge case.

use engram_core::{AccountsError, LedgerEntry, LedgerKind};
use serde_json::{Map, Value};

/// Longest org id, key or collection id accepted, in bytes. Keys become
/// parts of NATS subjects and key-value keys, which must stay short.
pub(crate) const MAX_ID_LEN: usize = 256;

/// Largest serialized `detail` of a ledger row, in bytes: rows are audit
/// records with counts and reasons, never payloads.
const MAX_DETAIL_LEN: usize = 4096;

/// Longest refund reason kept in a row.
const MAX_REASON_LEN: usize = 512;

/// The idempotency namespace of a key: a charge and its refund share one,
/// so that a refund finds the charge it gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Charges and refunds.
    Charge,
    /// Top-ups.
    TopUp,
    /// Rows that move nothing (erasures).
    Erasure,
}

impl Family {
    /// The spelling used in index keys and subjects.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Family::Charge => "charge",
            Family::TopUp => "top_up",
            Family::Erasure => "erasure",
        }
    }

    /// The family a row of `kind` belongs to.
    pub(crate) fn of(kind: LedgerKind) -> Self {
        match kind {
            LedgerKind::Charge | LedgerKind::Refund => Family::Charge,
            LedgerKind::TopUp => Family::TopUp,
            LedgerKind::Erasure => Family::Erasure,
        }
    }
}

/// A row a rule decided to write, before it gets its id and balance.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) kind: LedgerKind,
    pub(crate) delta: i64,
    pub(crate) detail: Map<String, Value>,
}

/// What an operation found and did.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Balance after the operation.
    pub(crate) balance: i64,
    /// The newest row of the key before the operation.
    pub(crate) previous: Option<LedgerEntry>,
    /// The row written, if any.
    pub(crate) written: Option<LedgerEntry>,
}

/// Refuses ids the stores cannot key on. An empty or oversized id is a bug
/// in the caller, not a state a retry changes.
pub(crate) fn check_id(field: &str, value: &str) -> Result<(), AccountsError> {
    if value.is_empty() {
        return Err(AccountsError::Internal(format!(
            "{field} must not be empty"
        )));
    }
    if value.len() > MAX_ID_LEN {
        return Err(AccountsError::Internal(format!(
            "{field} is longer than {MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

/// An amount as a signed delta.
pub(crate) fn signed(amount: u64) -> Result<i64, AccountsError> {
    i64::try_from(amount)
        .map_err(|_| AccountsError::Internal(format!("amount {amount} is out of range")))
}

/// Charge `amount` unless the key's charge is standing.
pub(crate) fn charge(
    balance: i64,
    previous: Option<&LedgerEntry>,
    amount: u64,
) -> Result<Option<Change>, AccountsError> {
    if previous.is_some_and(|row| row.kind == LedgerKind::Charge) {
        return Ok(None);
    }
    let delta = signed(amount)?;
    if balance < delta {
        return Err(AccountsError::Insufficient {
            required: amount,
            available: balance,
        });
    }
    Ok(Some(Change {
        kind: LedgerKind::Charge,
        delta: -delta,
        detail: Map::new(),
    }))
}

/// Give back the key's standing charge, if there is one.
pub(crate) fn refund(previous: Option<&LedgerEntry>, reason: &str) -> Option<Change> {
    let charged = previous.filter(|row| row.kind == LedgerKind::Charge)?;
    let mut detail = Map::new();
    detail.insert("charge_tx".into(), Value::String(charged.tx_id.clone()));
    if !reason.is_empty() {
        detail.insert(
            "reason".into(),
            Value::String(truncate(reason, MAX_REASON_LEN)),
        );
    }
    Some(Change {
        kind: LedgerKind::Refund,
        delta: -charged.delta,
        detail,
    })
}

/// Add `amount` once per key; the same key with another amount conflicts.
pub(crate) fn top_up(
    previous: Option<&LedgerEntry>,
    key: &str,
    amount: u64,
) -> Result<Option<Change>, AccountsError> {
    let delta = signed(amount)?;
    match previous {
        Some(row) if row.delta == delta => Ok(None),
        Some(row) => Err(AccountsError::Conflict(format!(
            "top-up key {key:?} was used for {} credits, not {amount}",
            row.delta
        ))),
        None => Ok(Some(Change {
            kind: LedgerKind::TopUp,
            delta,
            detail: Map::new(),
        })),
    }
}

/// Checks the arguments of `Credits::record`: only rows that move nothing
/// may be recorded, and their detail stays small.
pub(crate) fn check_record(
    kind: LedgerKind,
    detail: &Map<String, Value>,
) -> Result<(), AccountsError> {
    if kind != LedgerKind::Erasure {
        return Err(AccountsError::Internal(format!(
            "record takes rows that move no credits, not {}",
            kind.as_str()
        )));
    }
    let len = serde_json::to_vec(detail)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len > MAX_DETAIL_LEN {
        return Err(AccountsError::Internal(format!(
            "ledger detail of {len} bytes exceeds {MAX_DETAIL_LEN}"
        )));
    }
    Ok(())
}

/// Record a row once per key.
pub(crate) fn record(
    previous: Option<&LedgerEntry>,
    kind: LedgerKind,
    detail: Map<String, Value>,
) -> Option<Change> {
    match previous {
        Some(_) => None,
        None => Some(Change {
            kind,
            delta: 0,
            detail,
        }),
    }
}

/// The ledger row of `change` applied to `balance`: a fresh tx id, the
/// balance after it, the time now.
pub(crate) fn row(
    org_id: &str,
    key: &str,
    balance: i64,
    change: Change,
) -> Result<LedgerEntry, AccountsError> {
    let balance_after = balance.checked_add(change.delta).ok_or_else(|| {
        AccountsError::Internal(format!("balance {balance} + {} overflows", change.delta))
    })?;
    Ok(LedgerEntry {
        tx_id: uuid::Uuid::new_v4().to_string(),
        org_id: org_id.to_owned(),
        kind: change.kind,
        delta: change.delta,
        balance_after,
        key: key.to_owned(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        detail: change.detail,
    })
}

/// The movement of a charge or top-up: the row written, or the first one
/// with nothing moved.
pub(crate) fn movement(outcome: Outcome) -> Result<engram_core::Movement, AccountsError> {
    let (tx_id, amount) = match (outcome.written, outcome.previous) {
        (Some(row), _) => (row.tx_id, row.delta.unsigned_abs()),
        (None, Some(previous)) => (previous.tx_id, 0),
        (None, None) => {
            return Err(AccountsError::Internal(
                "operation wrote nothing and found no earlier row".into(),
            ));
        }
    };
    Ok(engram_core::Movement {
        tx_id,
        amount,
        balance: outcome.balance,
    })
}

/// The order `Collections::list` promises: by name, then id for equal names.
pub(crate) fn sort_by_name(collections: &mut [engram_core::Collection]) {
    collections.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.collection_id.cmp(&b.collection_id))
    });
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prior(kind: LedgerKind, delta: i64) -> LedgerEntry {
        LedgerEntry {
            tx_id: "tx-1".into(),
            org_id: "org".into(),
            kind,
            delta,
            balance_after: 0,
            key: "k".into(),
            at_ms: 0,
            detail: Map::new(),
        }
    }

    #[test]
    fn charge_rules() {
        assert_eq!(charge(10, None, 7).unwrap().unwrap().delta, -7);
        assert!(
            charge(10, Some(&prior(LedgerKind::Charge, -7)), 7)
                .unwrap()
                .is_none()
        );
        assert!(
            charge(10, Some(&prior(LedgerKind::Refund, 7)), 7)
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            charge(6, None, 7),
            Err(AccountsError::Insufficient {
                required: 7,
                available: 6
            })
        ));
        assert!(matches!(
            charge(0, None, u64::MAX),
            Err(AccountsError::Internal(_))
        ));
    }

    #[test]
    fn refund_rules() {
        let back = refund(Some(&prior(LedgerKind::Charge, -7)), "failed").unwrap();
        assert_eq!(back.delta, 7);
        assert_eq!(back.detail["charge_tx"], "tx-1");
        assert!(refund(Some(&prior(LedgerKind::Refund, 7)), "again").is_none());
        assert!(refund(None, "never").is_none());
    }

    #[test]
    fn top_up_and_record_rules() {
        assert!(top_up(None, "t", 5).unwrap().is_some());
        assert!(
            top_up(Some(&prior(LedgerKind::TopUp, 5)), "t", 5)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            top_up(Some(&prior(LedgerKind::TopUp, 5)), "t", 6),
            Err(AccountsError::Conflict(_))
        ));
        assert!(check_record(LedgerKind::Charge, &Map::new()).is_err());
        assert!(check_record(LedgerKind::Erasure, &Map::new()).is_ok());
        assert!(
            record(
                Some(&prior(LedgerKind::Erasure, 0)),
                LedgerKind::Erasure,
                Map::new()
            )
            .is_none()
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("org_id", "").is_err());
        assert!(check_id("org_id", &"x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(check_id("org_id", "org-1").is_ok());
    }
}
