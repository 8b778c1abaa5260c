//! Extraction: what enrichment learns from a batch of turns.
//!
//! An [`Extractor`] turns the turns of one write into atomic, third-person
//! [`Observation`]s ("User is allergic to shellfish.") and normalized
//! [`EntityMention`]s (people, places, organisations, products, dates,
//! quantities). Two implementations exist: [`RuleExtractor`], the default,
//! works offline with no model; [`LlmExtractor`] asks an OpenAI-compatible
//! chat endpoint and falls back to the rules whenever the endpoint fails or
//! answers something that is not the JSON it was asked for.
//!
//! Caller-supplied observations are kept exactly as given by both.

pub mod dates;
mod llm;
mod numbers;
mod rules;
mod speaker;

pub use llm::{LlmConfig, LlmExtractor};
pub use rules::RuleExtractor;
pub use speaker::split_speaker;

/// The caller-supplied observations of `turns` alone, as both extractors
/// give them (trimmed, about the turn's speaker, dated by the first date
/// they name), with no entities: what enrichment stores when an extractor
/// failed on a write in a way that would fail again on every delivery.
pub fn caller_observations(turns: &[TurnInput]) -> Extraction {
    Extraction {
        observations: turns.iter().flat_map(llm::given).collect(),
        ..Extraction::default()
    }
}

use async_trait::async_trait;
use engram_core::{EntityKind, Role};
use serde::{Deserialize, Serialize};

/// One turn to extract from.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnInput {
    /// The turn's 64-hex fragment id; observations cite it.
    pub fragment_id: String,
    /// Who spoke.
    pub role: Role,
    /// What was said. A leading `"Name: "` (one to three capitalized words
    /// and a colon) names the speaker, as transcripts write it.
    pub text: String,
    /// When it was said, epoch milliseconds (UTC); relative dates resolve
    /// against it.
    pub ts_ms: i64,
    /// Facts the caller supplied; kept as given.
    pub observations: Vec<String>,
}

/// What an observation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Likes, dislikes, favourites.
    Preference,
    /// Intentions and scheduled things.
    Plan,
    /// Allergies, conditions, diets, medication.
    Health,
    /// Things someone has or owns.
    Possession,
    /// Family, friends, partners, colleagues.
    Relationship,
    /// Where someone lives, moved, travelled.
    Place,
    /// Jobs, employers, studies.
    Work,
    /// Something that happened (a dated event, an activity).
    Event,
    /// Supplied by the caller.
    Given,
    /// A self-statement that fits no other category.
    Other,
}

impl Category {
    /// The payload spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Preference => "preference",
            Category::Plan => "plan",
            Category::Health => "health",
            Category::Possession => "possession",
            Category::Relationship => "relationship",
            Category::Place => "place",
            Category::Work => "work",
            Category::Event => "event",
            Category::Given => "given",
            Category::Other => "other",
        }
    }
}

/// An atomic fact derived from one or more turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// One third-person sentence ending with a period, e.g.
    /// `"Ana moved to Lyon in May 2025."`.
    pub text: String,
    /// Who it is about: `"User"`, `"Assistant"`, the speaker's name or a
    /// named third person.
    pub subject: String,
    /// What kind of fact it is.
    pub category: Category,
    /// Fragment ids of the turns it came from (at least one).
    pub source_ids: Vec<String>,
    /// When it was said: the source turn's time, epoch ms.
    pub ts_ms: i64,
    /// When it happened, when the text names or implies a date: epoch ms of
    /// the start (UTC midnight) of the resolved day, month or year.
    pub event_ms: Option<i64>,
    /// Keys ([`EntityMention::key`]) of the entities it mentions.
    pub entity_keys: Vec<String>,
}

/// An entity mentioned in a batch, merged across the batch's turns.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityMention {
    /// Normalized identity inside the batch: `"<kind>:<normalized label>"`,
    /// e.g. `"person:ana"`; for people the normalized label is the first
    /// name, so "Ana" and "Ana Lopez" share a key.
    pub key: String,
    /// The label to show: the fullest form seen ("Ana Lopez"), possessives
    /// stripped ("Ana's" → "Ana"), original capitalization.
    pub label: String,
    /// What it is.
    pub kind: EntityKind,
    /// Fragment ids of the turns that mention it (distinct, in input order).
    pub source_ids: Vec<String>,
}

/// Model tokens an extractor spent (zero for the rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractUsage {
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
}

/// What an extractor found in a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extraction {
    /// Observations, caller-supplied ones first for each turn, without
    /// duplicates (same text and subject).
    pub observations: Vec<Observation>,
    /// Entities, one per key.
    pub entities: Vec<EntityMention>,
    /// Tokens spent.
    pub usage: ExtractUsage,
    /// Set when a model-backed extractor fell back to the rules: why.
    pub fallback: Option<String>,
}

/// Why extraction failed. The rules never fail; the LLM extractor falls
/// back instead of failing, so this is reserved for misconfiguration.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The extractor cannot run with its configuration.
    #[error("extractor misconfigured: {0}")]
    Config(String),
}

/// Turns a batch of turns into observations and entities.
#[async_trait]
pub trait Extractor: Send + Sync + 'static {
    /// A short name for logs ("rules", "llm").
    fn name(&self) -> &'static str;

    /// Extracts from `turns` (one write, in order).
    async fn extract(&self, turns: &[TurnInput]) -> Result<Extraction, ExtractError>;
}
