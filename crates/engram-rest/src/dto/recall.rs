//! The bodies of `POST /recall`.

use super::{Scope, Usage};
use engram_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
