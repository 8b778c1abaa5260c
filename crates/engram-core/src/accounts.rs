//! The workspace-account ports: credit wallets with their append-only
//! ledger, and team collections. Both have an embedded implementation (one
//! redb file) and a distributed one (NATS key-value buckets and a JetStream
//! stream).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Errors of the account stores.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The store cannot be reached; the caller may retry.
    #[error("account store unavailable: {0}")]
    Unavailable(String),
    /// The store failed for a reason a retry will not fix.
    #[error("account store failed: {0}")]
    Internal(String),
    /// The wallet holds less than the charge.
    #[error("insufficient credits: {required} required, {available} available")]
    Insufficient {
        /// What the charge needs.
        required: u64,
        /// What the wallet holds.
        available: i64,
    },
    /// The same key was used before for a different operation or amount.
    #[error("conflict: {0}")]
    Conflict(String),
}

/// What a wallet operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// The ledger row of the operation (the first one, when the operation
    /// was a repeat that moved nothing).
    pub tx_id: String,
    /// Credits moved by this call: zero when the key had already been
    /// charged (or refunded, or topped up).
    pub amount: u64,
    /// Wallet balance after the call.
    pub balance: i64,
}

/// What a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// Credits taken before work starts.
    Charge,
    /// A charge given back because its work failed.
    Refund,
    /// Credits added by an admin.
    TopUp,
    /// Memory erased on request (no credits move).
    Erasure,
}

impl LedgerKind {
    /// The spelling used in the ledger and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Charge => "charge",
            LedgerKind::Refund => "refund",
            LedgerKind::TopUp => "top_up",
            LedgerKind::Erasure => "erasure",
        }
    }
}

/// One row of a workspace's append-only ledger. It never holds memory text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Row id (UUID); `x-billing-tx` of the call that wrote it.
    pub tx_id: String,
    /// Tenant.
    pub org_id: String,
    /// What happened.
    pub kind: LedgerKind,
    /// Signed change of the balance: negative for a charge.
    pub delta: i64,
    /// Balance after this row.
    pub balance_after: i64,
    /// The operation's idempotency key (a memory id, a top-up key, an
    /// erasure id).
    pub key: String,
    /// When it was written, epoch ms.
    pub at_ms: i64,
    /// Structured details without personal text (counts, reasons, hashed
    /// subjects).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

/// Credit wallets, one per workspace (`org_id`), and their ledger.
///
/// Every balance change is atomic (compare-and-set, or one transaction) and
/// appended to the ledger; the ledger's deltas always sum to the balance.
/// Keys make every operation idempotent: a key that was charged is not
/// charged again until it is refunded, and a key is refunded at most once
/// per charge.
#[async_trait]
pub trait Credits: Send + Sync + 'static {
    /// Takes `amount` from the wallet for the work named `key`. A key whose
    /// charge is still standing moves nothing (`amount` 0, its tx id).
    /// `Insufficient` when the balance is lower than `amount`; nothing is
    /// taken then.
    async fn charge(&self, org_id: &str, key: &str, amount: u64)
    -> Result<Movement, AccountsError>;

    /// Gives back the standing charge of `key`, once. `None` when `key` has
    /// no standing charge (never charged, or already refunded).
    async fn refund(
        &self,
        org_id: &str,
        key: &str,
        reason: &str,
    ) -> Result<Option<Movement>, AccountsError>;

    /// Adds `amount` to the wallet, once per `key`. `Conflict` when `key`
    /// was used with another amount.
    async fn top_up(&self, org_id: &str, key: &str, amount: u64)
    -> Result<Movement, AccountsError>;

    /// The wallet balance (0 for a workspace never topped up).
    async fn balance(&self, org_id: &str) -> Result<i64, AccountsError>;

    /// Appends a row that moves no credits (an erasure), once per `key`;
    /// returns its tx id.
    async fn record(
        &self,
        org_id: &str,
        kind: LedgerKind,
        key: &str,
        detail: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, AccountsError>;

    /// The ledger of a workspace, oldest first, at most `limit` rows from
    /// the newest end.
    async fn ledger(&self, org_id: &str, limit: usize) -> Result<Vec<LedgerEntry>, AccountsError>;

    /// Whether the store answers.
    async fn ready(&self) -> Result<(), AccountsError>;
}

/// A team collection: a named set of memories its members share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// Collection id.
    pub collection_id: String,
    /// Tenant.
    pub org_id: String,
    /// Display name, unique inside the workspace.
    pub name: String,
    /// User ids that may read and write its user memories.
    pub members: Vec<String>,
    /// Who created it.
    pub created_by: String,
    /// When, epoch ms.
    pub created_ms: i64,
}

/// Where team collections are kept. Personal collections are implicit and
/// never stored.
#[async_trait]
pub trait Collections: Send + Sync + 'static {
    /// Stores `collection` unless one with its id exists; returns the
    /// stored record (the existing one when there was one).
    async fn create(&self, collection: &Collection) -> Result<Collection, AccountsError>;

    /// The collection, if it exists in the tenant.
    async fn get(
        &self,
        org_id: &str,
        collection_id: &str,
    ) -> Result<Option<Collection>, AccountsError>;

    /// Every team collection of the tenant, by name.
    async fn list(&self, org_id: &str) -> Result<Vec<Collection>, AccountsError>;

    /// Removes the collection; returns whether it existed.
    async fn delete(&self, org_id: &str, collection_id: &str) -> Result<bool, AccountsError>;

    /// Whether the store answers.
    async fn ready(&self) -> Result<(), AccountsError>;
}
