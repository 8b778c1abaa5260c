//! The bodies of the workspace routes: stored memories, forget,
//! collections, jobs, credits, and the error body every route shares.

use super::Usage;
use engram_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who a stored memory is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemoryType {
    /// The calling user's own (default).
    #[default]
    User,
    /// The workspace's knowledge base (admins and owners).
    Knowledge,
    /// Workspace-wide shared memory (admins and owners).
    Hive,
}

/// `POST /memory`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreBody {
    /// The token's org when left out; must be it when given.
    #[serde(default)]
    pub org_id: String,
    /// The token's user when left out.
    #[serde(default)]
    pub user_id: String,
    /// At most 100,000 characters.
    #[serde(default)]
    pub text: String,
    /// Display title.
    #[serde(default)]
    pub title: String,
    /// `user` (default), `knowledge` or `hive`.
    #[serde(default, rename = "type")]
    pub memory_type: MemoryType,
    /// Defaults to the caller's personal collection.
    #[serde(default)]
    pub collection_id: String,
    /// Extract facts from it.
    #[serde(default)]
    pub extract: bool,
    /// Filterable at search time.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

impl StoreBody {
    /// The service request, `org_id` defaulting to `org`.
    pub fn into_request(self, org: &str) -> pb::StoreMemoryRequest {
        let memory_type = match self.memory_type {
            MemoryType::User => pb::MemoryType::User,
            MemoryType::Knowledge => pb::MemoryType::Knowledge,
            MemoryType::Hive => pb::MemoryType::Hive,
        };
        pb::StoreMemoryRequest {
            org_id: or(self.org_id, org),
            user_id: self.user_id,
            text: self.text,
            title: self.title,
            r#type: memory_type as i32,
            collection_id: self.collection_id,
            extract: self.extract,
            metadata: self
                .metadata
                .as_ref()
                .map(engram_proto::json::json_to_struct),
        }
    }
}

/// `value`, or `default` when empty.
pub fn or(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_owned()
    } else {
        value
    }
}

fn memory_status(s: i32) -> &'static str {
    match pb::MemoryStatus::try_from(s) {
        Ok(pb::MemoryStatus::Pending) => "pending",
        Ok(pb::MemoryStatus::Processing) => "processing",
        Ok(pb::MemoryStatus::Ready) => "ready",
        Ok(pb::MemoryStatus::Failed) => "failed",
        _ => "unspecified",
    }
}

fn rfc3339(t: Option<prost_types::Timestamp>) -> Option<String> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The 202 of `POST /memory`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreReply {
    /// Always true: a failure is an error response.
    pub success: bool,
    /// Poll `GET /memory/{memory_id}/status`.
    pub memory_id: String,
    /// `pending` for a new memory; a re-sent one reports where it stands.
    pub status: &'static str,
    /// Where it is stored.
    pub collection_id: String,
    /// Characters billed (0 for a re-sent memory).
    pub characters: u64,
}

impl From<pb::StoreMemoryResponse> for StoreReply {
    fn from(r: pb::StoreMemoryResponse) -> Self {
        StoreReply {
            success: true,
            memory_id: r.memory_id,
            status: memory_status(r.status),
            collection_id: r.collection_id,
            characters: r.characters,
        }
    }
}

/// `GET /memory/{id}/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemoryStatusReply {
    /// The memory.
    pub memory_id: String,
    /// `pending`, `processing`, `ready` or `failed`.
    pub status: &'static str,
    /// Why it failed.
    pub error: String,
    /// Chunks written.
    pub chunks: u32,
    /// Observations extracted.
    pub observations: u32,
    /// Deliveries so far.
    pub attempts: u64,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
}

impl From<pb::GetMemoryStatusResponse> for MemoryStatusReply {
    fn from(r: pb::GetMemoryStatusResponse) -> Self {
        MemoryStatusReply {
            memory_id: r.memory_id,
            status: memory_status(r.status),
            error: r.error,
            chunks: r.chunks,
            observations: r.observations,
            attempts: r.attempts,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// `POST /memory/forget`: exactly one target.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetBody {
    /// The token's org when left out.
    #[serde(default)]
    pub org_id: String,
    /// The token's user when left out.
    #[serde(default)]
    pub user_id: String,
    /// One turn (and what was derived from it).
    pub fragment_id: Option<String>,
    /// One stored memory.
    pub memory_id: Option<String>,
    /// A session's turns.
    pub session_id: Option<String>,
    /// Everything of the user.
    pub all_user_data: Option<bool>,
}

impl ForgetBody {
    /// The service request; more than one target is a violation (`target`).
    pub fn into_request(self, org: &str) -> Result<pb::ForgetRequest, engram_api::ApiError> {
        use pb::forget_request::Target;
        let mut targets = Vec::new();
        if let Some(id) = self.fragment_id {
            targets.push(Target::FragmentId(id));
        }
        if let Some(id) = self.memory_id {
            targets.push(Target::MemoryId(id));
        }
        if let Some(id) = self.session_id {
            targets.push(Target::SessionId(id));
        }
        if let Some(all) = self.all_user_data {
            targets.push(Target::AllUserData(all));
        }
        if targets.len() > 1 {
            return Err(engram_api::ApiError::invalid(
                "target",
                "exactly one of fragment_id, memory_id, session_id, all_user_data",
            ));
        }
        Ok(pb::ForgetRequest {
            org_id: or(self.org_id, org),
            user_id: self.user_id,
            target: targets.pop(),
        })
    }
}

/// What a Forget removed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ForgetReply {
    /// Turns deleted.
    pub turns: u32,
    /// Memory chunks deleted.
    pub memory_chunks: u32,
    /// Observations deleted.
    pub observations: u32,
    /// Entities deleted (no mention left).
    pub entities_removed: u32,
    /// Entities kept with fewer mentions.
    pub entities_updated: u32,
    /// The erasure's ledger row.
    pub erasure_tx: String,
}

impl From<pb::ForgetResponse> for ForgetReply {
    fn from(r: pb::ForgetResponse) -> Self {
        ForgetReply {
            turns: r.turns,
            memory_chunks: r.memory_chunks,
            observations: r.observations,
            entities_removed: r.entities_removed,
            entities_updated: r.entities_updated,
            erasure_tx: r.erasure_tx,
        }
    }
}

/// `POST /memory/collections`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollectionBody {
    /// The token's org when left out.
    #[serde(default)]
    pub org_id: String,
    /// Unique within the workspace.
    #[serde(default)]
    pub name: String,
    /// User ids that may read and write it.
    #[serde(default)]
    pub members: Vec<String>,
}

/// A collection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Collection {
    /// Its id (pass it as `collection_id`).
    pub collection_id: String,
    /// Its name.
    pub name: String,
    /// The caller's own collection.
    pub personal: bool,
    /// Its members.
    pub members: Vec<String>,
    /// Who created it.
    pub created_by: String,
    /// RFC 3339; `null` for the personal collection.
    pub created_at: Option<String>,
}

impl From<pb::Collection> for Collection {
    fn from(c: pb::Collection) -> Self {
        Collection {
            collection_id: c.collection_id,
            name: c.name,
            personal: c.personal,
            members: c.members,
            created_by: c.created_by,
            created_at: rfc3339(c.created_at),
        }
    }
}

/// `GET /memory/collections`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Collections {
    /// The collections the caller can read.
    pub collections: Vec<Collection>,
}

/// `DELETE /memory/collections/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeletedCollection {
    /// Memory chunks deleted.
    pub memory_chunks: u32,
    /// Observations deleted.
    pub observations: u32,
}

/// `GET /jobs/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// The job.
    pub job_id: String,
    /// `pending`, `processing`, `ready` or `failed`.
    pub state: &'static str,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
    /// Deliveries so far.
    pub attempts: u64,
    /// Why it failed.
    pub error: String,
    /// Turns in it.
    pub turns: u32,
    /// Observations written.
    pub observations: u32,
    /// Entities written.
    pub entities: u32,
    /// Tokens billed.
    pub usage: Usage,
    /// Why the LLM extractor fell back to the rules, if it did.
    pub extractor_fallback: String,
}

impl From<pb::Job> for Job {
    fn from(j: pb::Job) -> Self {
        let state = match pb::JobState::try_from(j.state) {
            Ok(pb::JobState::Pending) => "pending",
            Ok(pb::JobState::Processing) => "processing",
            Ok(pb::JobState::Ready) => "ready",
            Ok(pb::JobState::Failed) => "failed",
            _ => "unspecified",
        };
        Job {
            job_id: j.job_id,
            state,
            created_at: rfc3339(j.created_at),
            updated_at: rfc3339(j.updated_at),
            attempts: j.attempts,
            error: j.error,
            turns: j.turns,
            observations: j.observations,
            entities: j.entities,
            usage: j.usage.into(),
            extractor_fallback: j.extractor_fallback,
        }
    }
}

/// `GET /credits/balance`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Balance {
    /// Micro-credits.
    pub balance: i64,
    /// Micro-credits per stored character.
    pub price_per_char: u64,
    /// Whether StoreMemory is charged.
    pub enabled: bool,
}

/// `POST /credits/top-up`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpBody {
    /// The token's org when left out.
    #[serde(default)]
    pub org_id: String,
    /// Micro-credits to add.
    #[serde(default)]
    pub amount: u64,
    /// The same key adds once.
    #[serde(default)]
    pub idempotency_key: String,
}

/// What a top-up did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TopUpReply {
    /// Balance after it.
    pub balance: i64,
    /// Its ledger row.
    pub tx_id: String,
    /// Micro-credits added (0 when the key was used before).
    pub added: u64,
}

/// `GET /credits/ledger?limit=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// Rows, at most 1,000 (default 100).
    pub limit: Option<u32>,
}

/// A ledger row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerRow {
    /// Row id.
    pub tx_id: String,
    /// `charge`, `refund`, `top_up` or `erasure`.
    pub kind: String,
    /// Signed change of the balance.
    pub delta: i64,
    /// Balance after it.
    pub balance_after: i64,
    /// The operation's key.
    pub key: String,
    /// RFC 3339.
    pub at: Option<String>,
    /// Details, never memory text.
    pub detail: Value,
}

/// The ledger, oldest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Ledger {
    /// Rows.
    pub rows: Vec<LedgerRow>,
}

impl From<pb::ListLedgerResponse> for Ledger {
    fn from(r: pb::ListLedgerResponse) -> Self {
        Ledger {
            rows: r
                .rows
                .into_iter()
                .map(|row| LedgerRow {
                    tx_id: row.tx_id,
                    kind: row.kind,
                    delta: row.delta,
                    balance_after: row.balance_after,
                    key: row.key,
                    at: rfc3339(row.at),
                    detail: serde_json::from_str(&row.detail_json).unwrap_or(Value::Null),
                })
                .collect(),
        }
    }
}

/// Every error answer: `code` is the reason (`INSUFFICIENT_CREDITS`,
/// `POLICY_DENY`, `MEMORY_UNREACHABLE`, `RATE_LIMITED`, `TOKEN_EXPIRED`, ...)
/// or, for an error without one, the gRPC status name; `status` the gRPC
/// status name of the same error on the gRPC surface.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The reason, e.g. `INSUFFICIENT_CREDITS`, or the status name.
    #[schema(example = "INSUFFICIENT_CREDITS")]
    pub code: String,
    /// The gRPC status name, e.g. `FAILED_PRECONDITION`.
    #[schema(example = "FAILED_PRECONDITION")]
    pub status: String,
    /// What went wrong, for people.
    pub message: String,
    /// `field_violations` ([{field, description}]) for bad input;
    /// `required`, `available`, `shortfall` for missing credits; `limit`,
    /// `value` for a limit; `retry_after_secs` when a retry may succeed.
    pub details: Map<String, Value>,
}
