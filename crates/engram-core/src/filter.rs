//! Backend-neutral filter conditions.
//!
//! Who may see a point (tenant, user, session, workspace visibility of
//! stored memories) and what a caller asked for (metadata conditions) are
//! decided here, once, as a [`Cond`] tree. Each vector store only translates
//! the tree into its own filter type, so both backends apply exactly the
//! same rules, inside the search (never after it, which keeps `top_k`
//! exact).

use crate::model::Kind;
use serde::{Deserialize, Serialize};

/// A condition on stored payload fields. Field names are payload paths
/// (`"user_id"`, `"metadata.tier"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cond {
    /// The keyword field equals one of `values` (an array field matches
    /// when any element does). One value is plain equality.
    Keyword {
        /// Payload path.
        field: String,
        /// Accepted values; never empty.
        values: Vec<String>,
    },
    /// The integer field equals one of `values`.
    Integer {
        /// Payload path.
        field: String,
        /// Accepted values; never empty.
        values: Vec<i64>,
    },
    /// The boolean field equals `value`.
    Bool {
        /// Payload path.
        field: String,
        /// Required value.
        value: bool,
    },
    /// The numeric field lies in the range (bounds that are `None` are open).
    Range {
        /// Payload path.
        field: String,
        /// Bounds.
        bounds: Bounds<f64>,
    },
    /// The field holds an RFC 3339 date-time inside the range, bounds in
    /// epoch milliseconds.
    DateRange {
        /// Payload path.
        field: String,
        /// Bounds.
        bounds: Bounds<i64>,
    },
    /// The field exists and is neither null nor an empty array.
    Exists {
        /// Payload path.
        field: String,
    },
    /// Every condition holds (true when empty).
    All(Vec<Cond>),
    /// At least one condition holds (false when empty).
    Any(Vec<Cond>),
    /// The condition does not hold.
    Not(Box<Cond>),
}

/// Range bounds; `None` leaves a side open.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Bounds<T> {
    /// Greater than.
    pub gt: Option<T>,
    /// Greater than or equal.
    pub gte: Option<T>,
    /// Less than.
    pub lt: Option<T>,
    /// Less than or equal.
    pub lte: Option<T>,
}

impl Cond {
    /// `field` equals `value`.
    pub fn eq(field: &str, value: impl Into<String>) -> Self {
        Cond::Keyword {
            field: field.to_owned(),
            values: vec![value.into()],
        }
    }

    /// `field` equals one of `values`.
    pub fn any_of<I, S>(field: &str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cond::Keyword {
            field: field.to_owned(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
}

/// Who wrote a stored memory for whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryType {
    /// Personal memory of the user who stored it.
    User,
    /// Shared knowledge-base entry, visible to the whole workspace.
    Knowledge,
    /// Workspace-wide shared memory, visible to the whole workspace.
    Hive,
}

impl MemoryType {
    /// The payload spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryType::User => "user",
            MemoryType::Knowledge => "knowledge",
            MemoryType::Hive => "hive",
        }
    }

    /// Whether every member of the workspace may read it.
    pub fn is_workspace_wide(self) -> bool {
        !matches!(self, MemoryType::User)
    }
}

impl std::str::FromStr for MemoryType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(MemoryType::User),
            "knowledge" => Ok(MemoryType::Knowledge),
            "hive" => Ok(MemoryType::Hive),
            other => Err(format!(
                "unknown memory type {other:?}: expected user, knowledge or hive"
            )),
        }
    }
}

/// Which stored memories a reader may see besides the conversation data
/// of its own user: its personal memories (any collection), every
/// workspace-wide memory (knowledge, hive), and the memories of the team
/// collections it belongs to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemoryAccess {
    /// Team collections the reader is a member of.
    pub team_collections: Vec<String>,
}

/// Which points a query, count or scroll may see. `org_id` is mandatory:
/// there is no way to express a cross-tenant query.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeFilter {
    /// Tenant.
    pub org_id: String,
    /// Restrict to one end user.
    pub user_id: Option<String>,
    /// Restrict to one session (memory chunks are in no session: with
    /// `memories` set they are not restricted by it).
    pub session_id: Option<String>,
    /// Restrict to these kinds (empty: all).
    pub kinds: Vec<Kind>,
    /// Only points at or after this time (epoch ms).
    pub from_ms: Option<i64>,
    /// Only points before this time (epoch ms).
    pub until_ms: Option<i64>,
    /// When set, memory chunks are visible by the workspace rules of
    /// [`MemoryAccess`] rather than by `user_id` alone.
    pub memories: Option<MemoryAccess>,
    /// Only points of these stored memories (empty: no restriction).
    pub memory_ids: Vec<String>,
    /// Only points in these collections (empty: no restriction).
    pub collection_ids: Vec<String>,
    /// Only points derived from one of these fragments (empty: no
    /// restriction).
    pub source_ids: Vec<String>,
    /// A caller's condition on metadata (fields `metadata.<key>`).
    pub metadata: Option<Cond>,
}

impl ScopeFilter {
    /// All points of one tenant.
    pub fn tenant(org_id: impl Into<String>) -> Self {
        Self {
            org_id: org_id.into(),
            user_id: None,
            session_id: None,
            kinds: Vec::new(),
            from_ms: None,
            until_ms: None,
            memories: None,
            memory_ids: Vec::new(),
            collection_ids: Vec::new(),
            source_ids: Vec::new(),
            metadata: None,
        }
    }

    /// The whole filter as one condition tree: the tenant always, then
    /// every restriction that is set.
    pub fn condition(&self) -> Cond {
        let mut all = vec![Cond::eq("org_id", &self.org_id)];
        if !self.kinds.is_empty() {
            all.push(Cond::any_of("kind", self.kinds.iter().map(|k| k.as_str())));
        }
        match &self.memories {
            None => {
                if let Some(user) = &self.user_id {
                    all.push(Cond::eq("user_id", user));
                }
                if let Some(session) = &self.session_id {
                    all.push(Cond::eq("session_id", session));
                }
            }
            Some(access) => all.push(self.visibility(access)),
        }
        if self.from_ms.is_some() || self.until_ms.is_some() {
            // Epoch milliseconds are far below 2^53, so the f64 range is exact.
            all.push(Cond::Range {
                field: "ts_ms".into(),
                bounds: Bounds {
                    gte: self.from_ms.map(|ms| ms as f64),
                    lt: self.until_ms.map(|ms| ms as f64),
                    ..Bounds::default()
                },
            });
        }
        for (field, values) in [
            ("memory_id", &self.memory_ids),
            ("collection_id", &self.collection_ids),
            ("source_ids", &self.source_ids),
        ] {
            if !values.is_empty() {
                all.push(Cond::any_of(field, values.iter().map(String::as_str)));
            }
        }
        if let Some(metadata) = &self.metadata {
            all.push(metadata.clone());
        }
        Cond::All(all)
    }

    /// Conversation data of the user (in the session, when one is set), or
    /// a memory chunk, or a point derived from one, that the user may read.
    /// Points derived from a stored memory carry its `memory_type`; that
    /// field is what separates them from conversation data, so the
    /// observations of a knowledge document are as visible as its chunks.
    fn visibility(&self, access: &MemoryAccess) -> Cond {
        let from_memory = Cond::Exists {
            field: "memory_type".into(),
        };
        let mut own = Vec::new();
        if let Some(user) = &self.user_id {
            own.push(Cond::eq("user_id", user));
        }
        let mut conversation = own.clone();
        conversation.push(Cond::Not(Box::new(from_memory)));
        if let Some(session) = &self.session_id {
            conversation.push(Cond::eq("session_id", session));
        }
        let mut personal = own;
        personal.push(Cond::eq("memory_type", MemoryType::User.as_str()));
        let mut branches = vec![
            Cond::All(conversation),
            Cond::All(personal),
            Cond::any_of(
                "memory_type",
                [MemoryType::Knowledge.as_str(), MemoryType::Hive.as_str()],
            ),
        ];
        if !access.team_collections.is_empty() {
            branches.push(Cond::All(vec![
                Cond::eq("memory_type", MemoryType::User.as_str()),
                Cond::any_of(
                    "collection_id",
                    access.team_collections.iter().map(String::as_str),
                ),
            ]));
        }
        Cond::Any(branches)
    }

    /// Whether a payload passes [`ScopeFilter::memories`]' visibility rules
    /// (tenant, user and session as in [`ScopeFilter::condition`]); for
    /// points fetched by id, which no search filter guarded.
    pub fn visible(&self, p: &crate::PointPayload) -> bool {
        if p.org_id != self.org_id {
            return false;
        }
        let own = self.user_id.as_ref().is_none_or(|u| *u == p.user_id);
        match (&p.memory, &self.memories) {
            (None, _) | (Some(_), None) => {
                own && self
                    .session_id
                    .as_ref()
                    .is_none_or(|s| *s == p.session_id || p.memory.is_some())
            }
            (Some(m), Some(access)) => {
                m.memory_type.is_workspace_wide()
                    || own
                    || access.team_collections.contains(&m.collection_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_alone_is_one_condition() {
        assert_eq!(
            ScopeFilter::tenant("org").condition(),
            Cond::All(vec![Cond::eq("org_id", "org")])
        );
    }

    #[test]
    fn without_memory_access_user_and_session_apply_to_everything() {
        let mut f = ScopeFilter::tenant("org");
        f.user_id = Some("u".into());
        f.session_id = Some("s".into());
        let Cond::All(all) = f.condition() else {
            panic!("not a conjunction")
        };
        assert!(all.contains(&Cond::eq("user_id", "u")));
        assert!(all.contains(&Cond::eq("session_id", "s")));
    }

    #[test]
    fn memory_access_keeps_the_session_off_memory_chunks() {
        let mut f = ScopeFilter::tenant("org");
        f.user_id = Some("u".into());
        f.session_id = Some("s".into());
        f.memories = Some(MemoryAccess {
            team_collections: vec!["team".into()],
        });
        let Cond::All(all) = f.condition() else {
            panic!("not a conjunction")
        };
        // The tenant stays a top-level conjunct whatever the visibility says.
        assert_eq!(all[0], Cond::eq("org_id", "org"));
        let Cond::Any(branches) = &all[1] else {
            panic!("visibility is a disjunction")
        };
        assert_eq!(branches.len(), 4);
        let text = format!("{branches:?}");
        assert!(text.contains("team"));
        assert!(text.contains("knowledge"));
    }

    fn payload(user: &str, session: &str, memory: Option<MemoryRef>) -> crate::PointPayload {
        let scope = crate::Scope {
            org_id: "org".into(),
            user_id: user.into(),
            session_id: session.into(),
        };
        let kind = if memory.is_some() {
            Kind::Memory
        } else {
            Kind::Turn
        };
        crate::PointPayload {
            memory,
            ..crate::PointPayload::new("f".repeat(64), scope, kind, "t".into(), 1, "j".into())
        }
    }

    fn memory(memory_type: MemoryType, collection: &str) -> Option<MemoryRef> {
        Some(MemoryRef {
            memory_id: "m".repeat(32),
            collection_id: collection.into(),
            memory_type,
            title: "T".into(),
            chunk: 3,
        })
    }

    use crate::MemoryRef;

    #[test]
    fn memory_fields_are_top_level_and_round_trip() {
        let with = payload("u", "", memory(MemoryType::Hive, "col_1"));
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(json["memory_type"], "hive");
        assert_eq!(json["collection_id"], "col_1");
        assert_eq!(json["chunk"], 3);
        assert_eq!(
            serde_json::from_value::<crate::PointPayload>(json).unwrap(),
            with
        );
        let without = payload("u", "s", None);
        let json = serde_json::to_value(&without).unwrap();
        assert!(json.get("memory_id").is_none() && json.get("chunk").is_none());
        assert_eq!(
            serde_json::from_value::<crate::PointPayload>(json).unwrap(),
            without
        );
    }

    #[test]
    fn visibility_of_fetched_points() {
        let mut f = ScopeFilter::tenant("org");
        f.user_id = Some("u".into());
        f.session_id = Some("s".into());
        f.memories = Some(MemoryAccess {
            team_collections: vec!["team".into()],
        });
        assert!(f.visible(&payload("u", "s", None)));
        assert!(!f.visible(&payload("u", "other", None)));
        assert!(!f.visible(&payload("v", "s", None)));
        assert!(f.visible(&payload("u", "", memory(MemoryType::User, "personal:u"))));
        assert!(!f.visible(&payload("v", "", memory(MemoryType::User, "personal:v"))));
        assert!(f.visible(&payload("v", "", memory(MemoryType::User, "team"))));
        assert!(f.visible(&payload(
            "v",
            "",
            memory(MemoryType::Knowledge, "personal:v")
        )));
    }
}
