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

use engram_core::{Collections, Credits, Embedder, JobStore, TurnStream, VectorStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::Status;

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
    pub(crate) fn ensure_provisioned(&self) -> Result<(), Status> {
        if self.provisioned.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(engram_rpc::unavailable_after(
            engram_rpc::REASON_NOT_READY,
            PROVISIONING_RETRY,
            "the memory layer is still being provisioned; retry in about 10 s",
        ))
    }
}

/// Response metadata of a billed call.
pub(crate) mod billing {
    use engram_core::Movement;
    use tonic::metadata::{MetadataMap, MetadataValue};

    /// Wallet balance after the call, micro-credits.
    pub const BALANCE: &str = "x-credit-balance";
    /// Micro-credits charged by this call.
    pub const CHARGED: &str = "x-credit-charged";
    /// The ledger row of the charge.
    pub const TX: &str = "x-billing-tx";

    /// Writes the three headers of `movement` (`tx` left out when the call
    /// charged nothing and names no row).
    pub fn headers(map: &mut MetadataMap, balance: i64, charged: u64, tx: Option<&str>) {
        // Decimal numbers and UUIDs are always valid ASCII metadata.
        if let Ok(v) = MetadataValue::try_from(balance.to_string()) {
            map.insert(BALANCE, v);
        }
        if let Ok(v) = MetadataValue::try_from(charged.to_string()) {
            map.insert(CHARGED, v);
        }
        if let Some(v) = tx.and_then(|t| MetadataValue::try_from(t).ok()) {
            map.insert(TX, v);
        }
    }

    /// The headers of a charge.
    pub fn charge(map: &mut MetadataMap, m: &Movement) {
        headers(map, m.balance, m.amount, Some(&m.tx_id));
    }
}
