//! The JSON bodies of the REST API (the seeds' field names; enums as
//! lowercase strings) and their conversions to and from the service
//! messages. Request bodies refuse unknown fields, so a misspelt option is
//! a 400 naming it, not a silent default.

mod recall;
mod workspace;

pub use recall::*;
pub use workspace::*;

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
