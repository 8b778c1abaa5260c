//! The JSON bodies of the REST API (the seeds' field names; enums as
//! lowercase strings) and their conversions to and from the service
//! messages. Request bodies refuse unknown fields, so a misspelt option is
//! a 400 naming it, not a silent default.

use engram_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who a call is about.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Required; must be the token's `org_id`.
    #[serde(default)]
    pub org_id: String,
    /// Defaults to the token's user.
    #[serde(default)]
    pub user_id: String,
    /// Defaults to the token's `session_id`, else `default-session`.
    #[serde(default)]
    pub session_id: String,
}

impl From<Scope> for pb::Scope {
    fn from(s: Scope) -> Self {
        pb::Scope {
            org_id: s.org_id,
            user_id: s.user_id,
            session_id: s.session_id,
        }
    }
}

/// One conversation turn.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// `user`, `assistant`, `system` or `tool`.
    #[serde(default)]
    pub role: String,
    /// What was said.
    #[serde(default)]
    pub text: String,
    /// RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// Facts the caller extracted itself.
    #[serde(default)]
    pub observations: Vec<String>,
}

/// Write toggles of an ingestion.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberOptions {
    /// Write the turns as active memory (default true).
    pub write_active: Option<bool>,
    /// Enrich them in the background (default true).
    pub write_passive: Option<bool>,
}

/// `POST /ingestion/memory`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberBody {
    /// Who the turns belong to.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// At least one turn.
    #[serde(default)]
    pub turns: Vec<Turn>,
    /// Write toggles.
    #[serde(default)]
    pub options: Option<RememberOptions>,
    /// Free-form metadata, filterable at recall.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

impl From<RememberBody> for pb::RememberRequest {
    fn from(b: RememberBody) -> Self {
        pb::RememberRequest {
            scope: b.scope.map(Into::into),
            turns: b
                .turns
                .into_iter()
                .map(|t| pb::Turn {
                    role: t.role,
                    text: t.text,
                    timestamp: t.timestamp,
                    observations: t.observations,
                })
                .collect(),
            options: b.options.map(|o| pb::RememberOptions {
                write_active: o.write_active,
                write_passive: o.write_passive,
            }),
            metadata: b.metadata.as_ref().map(engram_proto::json::json_to_struct),
        }
    }
}

/// Tokens billed for a call.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Tokens read.
    pub tokens_in: u64,
    /// Tokens returned.
    pub tokens_out: u64,
}

impl From<Option<pb::Usage>> for Usage {
    fn from(u: Option<pb::Usage>) -> Self {
        let u = u.unwrap_or_default();
        Usage {
            tokens_in: u.tokens_in,
            tokens_out: u.tokens_out,
        }
    }
}

/// The 202 of `POST /ingestion/memory`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RememberReply {
    /// Stable id of this write.
    pub job_id: String,
    /// Active-memory fragment ids, already recallable.
    pub active_fragment_ids: Vec<String>,
    /// The background enrichment job, `null` when none is needed.
    pub passive_job_id: Option<String>,
    /// Tokens billed.
    pub usage: Usage,
}

impl From<pb::RememberResponse> for RememberReply {
    fn from(r: pb::RememberResponse) -> Self {
        RememberReply {
            job_id: r.job_id,
            active_fragment_ids: r.active_fragment_ids,
            passive_job_id: r.passive_job_id,
            usage: r.usage.into(),
        }
    }
}

/// Retrieval depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One fused search (default).
    #[default]
    Active,
    /// Every retriever, neighbours, session evidence.
    Deep,
}

/// A metadata filter: one condition, or a combination.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Filter {
    /// `key` equals `value`.
    Equals {
        /// Metadata key.
        key: String,
        /// String, number or boolean.
        value: Value,
    },
    /// `key` equals one of `values`.
    OneOf {
        /// Metadata key.
        key: String,
        /// The values.
        values: Vec<Value>,
    },
    /// A number range.
    Range {
        /// Metadata key.
        key: String,
        /// Greater than.
        gt: Option<f64>,
        /// Greater than or equal.
        gte: Option<f64>,
        /// Less than.
        lt: Option<f64>,
        /// Less than or equal.
        lte: Option<f64>,
    },
    /// A date range (RFC 3339 bounds).
    DateRange {
        /// Metadata key.
        key: String,
        /// After.
        gt: Option<String>,
        /// At or after.
        gte: Option<String>,
        /// Before.
        lt: Option<String>,
        /// At or before.
        lte: Option<String>,
    },
    /// `key` is present.
    Exists {
        /// Metadata key.
        key: String,
    },
    /// Every filter holds.
    #[schema(no_recursion)]
    All(Vec<Filter>),
    /// At least one holds.
    #[schema(no_recursion)]
    Any(Vec<Filter>),
    /// The filter does not hold.
    #[schema(no_recursion)]
    Negate(Box<Filter>),
}

/// An RFC 3339 bound; one that does not parse becomes an invalid timestamp,
/// which the recall validation names as a violation.
fn timestamp(s: Option<String>) -> Option<prost_types::Timestamp> {
    s.map(|s| match chrono::DateTime::parse_from_rfc3339(&s) {
        Ok(t) => engram_proto::time::from_ms(t.timestamp_millis()),
        Err(_) => prost_types::Timestamp {
            seconds: i64::MIN,
            nanos: -1,
        },
    })
}

impl From<Filter> for pb::Filter {
    fn from(f: Filter) -> Self {
        use pb::filter::Condition as C;
        let list = |v: Vec<Filter>| pb::FilterList {
            filters: v.into_iter().map(Into::into).collect(),
        };
        let condition = match f {
            Filter::Equals { key, value } => C::Equals(pb::Equals {
                key,
                value: Some(engram_proto::json::json_to_value(&value)),
            }),
            Filter::OneOf { key, values } => C::OneOf(pb::OneOf {
                key,
                values: values
                    .iter()
                    .map(engram_proto::json::json_to_value)
                    .collect(),
            }),
            Filter::Range {
                key,
                gt,
                gte,
                lt,
                lte,
            } => C::Range(pb::NumberRange {
                key,
                gt,
                gte,
                lt,
                lte,
            }),
            Filter::DateRange {
                key,
                gt,
                gte,
                lt,
                lte,
            } => C::DateRange(pb::DateRange {
                key,
                gt: timestamp(gt),
                gte: timestamp(gte),
                lt: timestamp(lt),
                lte: timestamp(lte),
            }),
            Filter::Exists { key } => C::Exists(pb::Exists { key }),
            Filter::All(v) => C::All(list(v)),
            Filter::Any(v) => C::Any(list(v)),
            Filter::Negate(f) => C::Negate(Box::new((*f).into())),
        };
        pb::Filter {
            condition: Some(condition),
        }
    }
}

/// `POST /recall`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallBody {
    /// Whose memory.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// The question.
    #[serde(default)]
    pub q: String,
    /// `active` (default) or `deep`.
    #[serde(default)]
    pub mode: Mode,
    /// Hits across all kinds, 1 to 50 (capped at 30).
    pub top_k: Option<i32>,
    /// Attach a chronological summary.
    #[serde(default)]
    pub include_timeline: bool,
    /// Metadata filter.
    pub filter: Option<Filter>,
    /// Collections to search beside the caller's own memory.
    #[serde(default)]
    pub collection_ids: Vec<String>,
}

impl From<RecallBody> for pb::RecallRequest {
    fn from(b: RecallBody) -> Self {
        let mode = match b.mode {
            Mode::Active => pb::RecallMode::Active,
            Mode::Deep => pb::RecallMode::Deep,
        };
        pb::RecallRequest {
            scope: b.scope.map(Into::into),
            q: b.q,
            mode: mode as i32,
            top_k: b.top_k,
            include_timeline: b.include_timeline,
            filter: b.filter.map(Into::into),
            collection_ids: b.collection_ids,
        }
    }
}

/// A recalled turn, observation or memory chunk.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hit {
    /// Fragment id.
    pub id: String,
    /// The text to show the model.
    pub text: String,
    /// Fused rank score.
    pub score: f32,
    /// `turn`, `observation` or `memory`.
    #[schema(example = "turn")]
    pub kind: &'static str,
    /// Epoch milliseconds, as a string.
    #[schema(example = "1778061473326")]
    pub timestamp: String,
    /// The turns an observation was extracted from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_ids: Vec<String>,
    /// A memory chunk's memory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub memory_id: String,
    /// A memory chunk's title.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// A memory chunk's collection.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub collection_id: String,
}

fn hit(h: pb::Hit) -> Hit {
    let kind = match pb::HitKind::try_from(h.kind) {
        Ok(pb::HitKind::Observation) => "observation",
        Ok(pb::HitKind::Memory) => "memory",
        _ => "turn",
    };
    Hit {
        id: h.id,
        text: h.text,
        score: h.score,
        kind,
        timestamp: h.timestamp,
        source_ids: h.source_ids,
        memory_id: h.memory_id,
        title: h.title,
        collection_id: h.collection_id,
    }
}

/// A linked entity.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Entity {
    /// Entity id.
    pub id: Option<String>,
    /// Its fullest name.
    pub label: String,
    /// Fused rank score.
    pub score: f32,
    /// `person`, `place`, ...
    pub kind: String,
    /// How often it was mentioned.
    pub mentions: u32,
}

/// The hits by kind.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hits {
    /// Ranked raw turns (and memory chunks).
    pub turns: Vec<Hit>,
    /// Atomic facts.
    pub observations: Vec<Hit>,
    /// Linked entities.
    pub entities: Vec<Entity>,
}

/// The 200 of `POST /recall`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecallReply {
    /// The hits.
    pub hits: Hits,
    /// Calibrated, in [0, 1].
    pub confidence: f64,
    /// Chronological summary; `null` unless asked for.
    pub timeline: Option<String>,
    /// `active` or `deep`, as served.
    pub mode: Mode,
    /// Tokens billed.
    pub usage: Usage,
}

impl From<pb::RecallResponse> for RecallReply {
    fn from(r: pb::RecallResponse) -> Self {
        let hits = r.hits.unwrap_or_default();
        RecallReply {
            hits: Hits {
                turns: hits.turns.into_iter().map(hit).collect(),
                observations: hits.observations.into_iter().map(hit).collect(),
                entities: hits
                    .entities
                    .into_iter()
                    .map(|e| Entity {
                        id: e.id,
                        label: e.label,
                        score: e.score,
                        kind: e.kind,
                        mentions: e.mentions,
                    })
                    .collect(),
            },
            confidence: r.confidence,
            timeline: r.timeline,
            mode: if r.mode == pb::RecallMode::Deep as i32 {
                Mode::Deep
            } else {
                Mode::Active
            },
            usage: r.usage.into(),
        }
    }
}

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
