//! Engram's workspace services over gRPC:
//!
//! - `MemoryService`: `StoreMemory` (validate, authorize, charge, publish a
//!   `MemoryStored` event; the enrichment consumer chunks, embeds and
//!   extracts), `GetMemoryStatus`, and `Forget` (a fragment, a memory, a
//!   session or all of a user's data, with everything derived from it);
//! - `CollectionService`: team collections;
//! - `CreditService`: the workspace wallet and its ledger.
//!
//! They depend on the ports only: [`VectorStore`], [`Embedder`],
//! [`TurnStream`], [`JobStore`], [`Credits`] and [`Collections`].

mod collections;
mod credits;
mod forget;
mod service;
mod validate;

pub use collections::CollectionServiceImpl;
pub use credits::CreditServiceImpl;
pub use service::MemoryServiceImpl;

use engram_api::ApiError;
use engram_core::{Collections, Credits, Embedder, JobStore, TurnStream, VectorStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Limits and prices of the workspace services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Longest memory text, in characters.
    pub max_text_chars: usize,
    /// Charge StoreMemory to the workspace wallet.
    pub credits_enabled: bool,
    /// Price of one stored character, micro-credits.
    pub price_per_char: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_text_chars: 100_000,
            credits_enabled: false,
            price_per_char: 50,
        }
    }
}

/// How long callers are told to wait while the memory layer is still
/// being provisioned (the store's collection created, the model loaded).
pub const PROVISIONING_RETRY: Duration = Duration::from_secs(10);

/// Everything the workspace services use, shared by the three of them.
pub struct Workspace {
    /// Memory chunks, observations and entities.
    pub store: Arc<dyn VectorStore>,
    /// Re-embeds entity labels whose mentions change when memory is forgotten.
    pub embedder: Arc<dyn Embedder>,
    /// Where `MemoryStored` events go.
    pub stream: Arc<dyn TurnStream>,
    /// Memory processing records (the memory id is the job id).
    pub jobs: Arc<dyn JobStore>,
    /// The wallet and ledger.
    pub credits: Arc<dyn Credits>,
    /// Team collections.
    pub collections: Arc<dyn Collections>,
    /// Limits and prices.
    pub config: MemoryConfig,
    /// Set once every dependency has answered for the first time; until
    /// then writes are refused with MEMORY_INFRA_NOT_READY.
    pub provisioned: Arc<AtomicBool>,
}

impl Workspace {
    /// UNAVAILABLE with reason MEMORY_INFRA_NOT_READY and a retry hint
    /// while the memory layer is not provisioned yet.
    pub(crate) fn ensure_provisioned(&self) -> Result<(), ApiError> {
        if self.provisioned.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(engram_api::unavailable_after(
            engram_api::REASON_NOT_READY,
            PROVISIONING_RETRY,
            "the memory layer is still being provisioned; retry in about 10 s",
        ))
    }
}

/// What a billed call reports besides its answer: the wallet after it,
/// what it charged and the ledger row. gRPC sends these as response
/// metadata, REST as the headers of the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Billing {
    /// Wallet balance after the call, micro-credits.
    pub balance: i64,
    /// Micro-credits charged by this call.
    pub charged: u64,
    /// The ledger row of the charge; `None` when the call charged nothing.
    pub tx: Option<String>,
}

impl Billing {
    /// Wallet balance after the call (`x-credit-balance`).
    pub const BALANCE: &str = "x-credit-balance";
    /// Micro-credits charged by this call (`x-credit-charged`).
    pub const CHARGED: &str = "x-credit-charged";
    /// The ledger row of the charge (`x-billing-tx`).
    pub const TX: &str = "x-billing-tx";

    /// The billing of a charge.
    pub fn of(m: &engram_core::Movement) -> Self {
        Self {
            balance: m.balance,
            charged: m.amount,
            tx: Some(m.tx_id.clone()),
        }
    }

    /// The headers (names and values) that carry it; `x-billing-tx` left
    /// out when the call charged nothing and names no row.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (Self::BALANCE, self.balance.to_string()),
            (Self::CHARGED, self.charged.to_string()),
        ];
        if let Some(tx) = &self.tx {
            h.push((Self::TX, tx.clone()));
        }
        h
    }

    /// Writes the headers into gRPC response metadata. Decimal numbers and
    /// UUIDs are always valid ASCII metadata; anything else is left out.
    pub fn to_metadata(&self, map: &mut tonic::metadata::MetadataMap) {
        for (name, value) in self.headers() {
            if let Ok(v) = tonic::metadata::MetadataValue::try_from(value) {
                map.insert(name, v);
            }
        }
    }
}

/// An answer and its billing, if the call is billed.
#[derive(Debug, Clone, PartialEq)]
pub struct Billed<T> {
    /// The answer.
    pub value: T,
    /// The wallet headers; `None` when credits are off.
    pub billing: Option<Billing>,
}

impl<T> Billed<T> {
    /// The gRPC response: the answer with the billing as metadata.
    pub fn into_grpc(self) -> tonic::Response<T> {
        let mut response = tonic::Response::new(self.value);
        if let Some(b) = &self.billing {
            b.to_metadata(response.metadata_mut());
        }
        response
    }
}
