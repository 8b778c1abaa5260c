//! The records Engram stores and returns.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A system prompt or instruction.
    System,
    /// Output of a tool call.
    Tool,
}

impl Role {
    /// The wire and payload spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "system" => Ok(Role::System),
            "tool" => Ok(Role::Tool),
            other => Err(format!(
                "unknown role {other:?}: expected one of user, assistant, system, tool"
            )),
        }
    }
}

/// What a stored point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A raw conversation turn (active memory).
    Turn,
    /// An atomic fact extracted from turns.
    Observation,
    /// A person, place, organisation or thing mentioned in turns.
    Entity,
    /// A chunk of a stored memory document.
    Memory,
}

impl Kind {
    /// The payload spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Turn => "turn",
            Kind::Observation => "observation",
            Kind::Entity => "entity",
            Kind::Memory => "memory",
        }
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "turn" => Ok(Kind::Turn),
            "observation" => Ok(Kind::Observation),
            "entity" => Ok(Kind::Entity),
            "memory" => Ok(Kind::Memory),
            other => Err(format!("unknown kind {other:?}")),
        }
    }
}

/// What an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// A person, named or by relation ("my sister").
    Person,
    /// A city, country, region or named place.
    Place,
    /// A company, school, team or other organisation.
    Organization,
    /// A named product or brand.
    Product,
    /// A calendar date or period.
    Date,
    /// An amount with its unit ("3 kids", "$500").
    Quantity,
}

impl EntityKind {
    /// The payload spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "person",
            EntityKind::Place => "place",
            EntityKind::Organization => "organization",
            EntityKind::Product => "product",
            EntityKind::Date => "date",
            EntityKind::Quantity => "quantity",
        }
    }
}

impl FromStr for EntityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "person" => Ok(EntityKind::Person),
            "place" => Ok(EntityKind::Place),
            "organization" | "organisation" => Ok(EntityKind::Organization),
            "product" => Ok(EntityKind::Product),
            "date" => Ok(EntityKind::Date),
            "quantity" => Ok(EntityKind::Quantity),
            other => Err(format!(
                "unknown entity kind {other:?}: expected person, place, organization, product, date or quantity"
            )),
        }
    }
}

/// The partition a memory belongs to. `org_id` is the tenant and always
/// comes from the caller's token, never from the request body alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// Tenant.
    pub org_id: String,
    /// End user inside the tenant.
    pub user_id: String,
    /// Conversation, channel or task.
    pub session_id: String,
}

/// A sparse vector: sorted unique indices with their weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    /// Term ids, strictly increasing.
    pub indices: Vec<u32>,
    /// Weight of each term id.
    pub values: Vec<f32>,
}

/// A point to write into the vector store.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The 64-hex fragment id; the store derives its own point id from it.
    pub fragment_id: String,
    /// Everything stored beside the vectors.
    pub payload: PointPayload,
    /// L2-normalized dense embedding.
    pub dense: Vec<f32>,
    /// BM25 term-frequency vector (the store applies IDF).
    pub sparse: SparseVector,
}

/// The payload of a stored point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointPayload {
    /// The 64-hex fragment id.
    pub fragment_id: String,
    /// Tenant.
    pub org_id: String,
    /// End user.
    pub user_id: String,
    /// Session.
    pub session_id: String,
    /// What the point is.
    pub kind: Kind,
    /// Speaker, for turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The text as written.
    pub text: String,
    /// When it was said, epoch milliseconds.
    pub ts_ms: i64,
    /// The write that created it.
    pub job_id: String,
    /// Fragments this point was derived from (observations, entities).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ids: Vec<String>,
    /// For entities: what the entity is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_kind: Option<EntityKind>,
    /// For entities: how many distinct turns mention it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<u32>,
    /// For observations: who the fact is about ("User", "Ana").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// For observations: when the fact happened (epoch ms, start of the
    /// day or month it names), when the text names a date; `ts_ms` stays
    /// the time it was said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ms: Option<i64>,
    /// Caller metadata of the write, stored as given.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// For memory chunks (and what is derived from them): the stored
    /// memory, its collection, type and title.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryRef>,
    /// Model tokens of [`PointPayload::returned_text`], counted when the
    /// point is written (by [`crate::CorpusLengths::points`], with the
    /// embedder of the write), so that a Recall's `usage.tokens_out` needs
    /// no tokenizer: counting ten hits took more of a Recall at 100k points
    /// than its search. Absent on entities (never billed) and on points
    /// written before it was kept, which Recall counts itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u32>,
}

/// RFC 3339 in UTC with a `Z`, seconds precision unless milliseconds matter.
pub fn format_ts(ts_ms: i64) -> String {
    use chrono::{DateTime, SecondsFormat, Utc};
    match DateTime::<Utc>::from_timestamp_millis(ts_ms) {
        Some(t) if ts_ms % 1000 == 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ts_ms.to_string(),
    }
}

impl PointPayload {
    /// The payload of a point of `scope` with what every point has; the
    /// optional fields (role, sources, entity and observation fields,
    /// metadata, memory, token count) empty, for the caller to set.
    pub fn new(
        fragment_id: String,
        scope: Scope,
        kind: Kind,
        text: String,
        ts_ms: i64,
        job_id: String,
    ) -> Self {
        Self {
            fragment_id,
            org_id: scope.org_id,
            user_id: scope.user_id,
            session_id: scope.session_id,
            kind,
            role: None,
            text,
            ts_ms,
            job_id,
            source_ids: Vec::new(),
            entity_kind: None,
            mentions: None,
            subject: None,
            event_ms: None,
            metadata: serde_json::Map::new(),
            memory: None,
            tokens: None,
        }
    }

    /// The text a Recall returns for this point: a turn reads with its
    /// date and speaker (`[Date: 2026-05-08T14:00:00Z] [user] I'm allergic
    /// to shellfish.`), anything else as written. [`PointPayload::tokens`]
    /// counts this text, so changing it means counting stored points again
    /// (`engram reembed` does).
    pub fn returned_text(&self) -> String {
        match (self.kind, self.role) {
            (Kind::Turn, Some(role)) => {
                format!("[Date: {}] [{}] {}", format_ts(self.ts_ms), role, self.text)
            }
            (Kind::Turn, None) => format!("[Date: {}] {}", format_ts(self.ts_ms), self.text),
            _ => self.text.clone(),
        }
    }

    /// Sets [`PointPayload::tokens`] with `count` (the embedder's token
    /// counter); entities are never billed and get none.
    pub fn count_tokens(&mut self, count: impl Fn(&str) -> usize) {
        self.tokens = (self.kind != Kind::Entity)
            .then(|| u32::try_from(count(&self.returned_text())).unwrap_or(u32::MAX));
    }
}

/// What a point derived from a stored memory says about that memory.
/// Flattened into the payload, so `memory_id`, `collection_id` and
/// `memory_type` are top-level (indexed) payload fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRef {
    /// The memory (32 hex).
    pub memory_id: String,
    /// Its collection.
    pub collection_id: String,
    /// Who may read it.
    pub memory_type: crate::filter::MemoryType,
    /// Its display title (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// 0-based position of the chunk in the memory.
    #[serde(default)]
    pub chunk: u32,
}

/// A point returned by a search, with its fused score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    /// The stored payload.
    pub payload: PointPayload,
    /// Fused (RRF) score: higher is better.
    pub score: f32,
    /// Cosine similarity of the dense vector to the query, when known.
    pub dense_score: Option<f32>,
    /// Rank in the dense prefetch (0-based), when the point was in it.
    pub dense_rank: Option<usize>,
    /// Rank in the BM25 prefetch (0-based), when the point was in it.
    pub sparse_rank: Option<usize>,
}

impl Point {
    /// Checks what every vector store requires before it writes a point: a
    /// 64-hex fragment id equal to the payload's, a dense vector of `dim`
    /// values, a sparse vector with as many indices as values, and only
    /// finite numbers. Both backends refuse the same input with the same
    /// error before anything is written (or, for Edge, journaled, where a
    /// bad point would fail again on every replay).
    pub fn validate(&self, dim: usize) -> Result<(), crate::StoreError> {
        use crate::StoreError;
        if crate::ids::point_uuid(&self.fragment_id).is_none() {
            return Err(StoreError::Internal(format!(
                "invalid fragment id {:?}",
                self.fragment_id
            )));
        }
        if self.payload.fragment_id != self.fragment_id {
            return Err(StoreError::Internal(format!(
                "payload fragment id {:?} differs from point fragment id {:?}",
                self.payload.fragment_id, self.fragment_id
            )));
        }
        if self.dense.len() != dim {
            return Err(StoreError::Internal(format!(
                "dense vector of fragment {} has dimension {}, store expects {dim}",
                self.fragment_id,
                self.dense.len()
            )));
        }
        let sparse = &self.sparse;
        if sparse.indices.len() != sparse.values.len() {
            return Err(StoreError::Internal(format!(
                "sparse vector of fragment {} has {} indices but {} values",
                self.fragment_id,
                sparse.indices.len(),
                sparse.values.len()
            )));
        }
        if !self
            .dense
            .iter()
            .chain(&sparse.values)
            .all(|v| v.is_finite())
        {
            return Err(StoreError::Internal(format!(
                "vector of fragment {} holds a non-finite value",
                self.fragment_id
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(kind: Kind, role: Option<Role>, text: &str) -> PointPayload {
        let scope = Scope {
            org_id: "o".into(),
            user_id: "u".into(),
            session_id: "s".into(),
        };
        PointPayload {
            role,
            ..PointPayload::new(
                "f".into(),
                scope,
                kind,
                text.into(),
                1_778_248_800_000,
                "j".into(),
            )
        }
    }

    /// A stand-in counter: words separated by spaces.
    fn words(text: &str) -> usize {
        text.split(' ').count()
    }

    #[test]
    fn turns_read_with_date_and_speaker_and_the_rest_as_written() {
        let turn = payload(Kind::Turn, Some(Role::User), "I'm allergic to shellfish.");
        assert_eq!(
            turn.returned_text(),
            "[Date: 2026-05-08T14:00:00Z] [user] I'm allergic to shellfish."
        );
        let unattributed = payload(Kind::Turn, None, "hello");
        assert_eq!(
            unattributed.returned_text(),
            "[Date: 2026-05-08T14:00:00Z] hello"
        );
        for kind in [Kind::Observation, Kind::Memory, Kind::Entity] {
            assert_eq!(
                payload(kind, None, "Ana lives in Lyon.").returned_text(),
                "Ana lives in Lyon."
            );
        }
        assert_eq!(format_ts(1_778_248_800_123), "2026-05-08T14:00:00.123Z");
    }

    #[test]
    fn the_stored_count_is_of_the_returned_text_and_entities_get_none() {
        let mut turn = payload(Kind::Turn, Some(Role::Assistant), "two words");
        turn.count_tokens(words);
        // `[Date: …]` `[assistant]` `two` `words`, as `words` splits it.
        assert_eq!(turn.tokens, Some(5));
        let mut observation = payload(Kind::Observation, None, "two words");
        observation.count_tokens(words);
        assert_eq!(observation.tokens, Some(2));
        let mut entity = payload(Kind::Entity, None, "Ana");
        entity.tokens = Some(9);
        entity.count_tokens(words);
        assert_eq!(entity.tokens, None);
        let mut huge = payload(Kind::Memory, None, "x");
        huge.count_tokens(|_| usize::MAX);
        assert_eq!(huge.tokens, Some(u32::MAX));
    }

    #[test]
    fn the_count_round_trips_and_old_payloads_have_none() {
        let mut p = payload(Kind::Turn, Some(Role::User), "hi");
        let old: PointPayload = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(old.tokens, None);
        assert!(serde_json::to_value(&p).unwrap().get("tokens").is_none());
        p.tokens = Some(12);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["tokens"], 12);
        assert_eq!(serde_json::from_value::<PointPayload>(json).unwrap(), p);
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::{hostile_text, long_text};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_text_reads_back_whole_and_counts(
                text in prop_oneof![hostile_text(), long_text(20_000)],
                ts in any::<i64>(),
                turn in any::<bool>(),
            ) {
                let kind = if turn { Kind::Turn } else { Kind::Observation };
                let mut p = payload(kind, turn.then_some(Role::User), &text);
                p.ts_ms = ts;
                let returned = p.returned_text();
                prop_assert!(returned.ends_with(text.as_str()));
                p.count_tokens(|t| t.chars().count());
                prop_assert_eq!(p.tokens, Some(u32::try_from(returned.chars().count()).unwrap()));
            }
        }
    }
}
