//! Payload indexes for caller metadata keys, created on first use.
//!
//! A Recall filtered on `metadata.<key>` is exact either way (the filter
//! runs inside the search), but without a payload index on the key Qdrant
//! cannot tell how selective the condition is and checks candidates one
//! by one: a 1% filter costs ~17× the unfiltered search at 100k points.
//! With an index the planner starts from the matching points. Both stores
//! ask [`MetadataIndexes`] which indexes a filter needs that they have not
//! made yet, and make them before searching.
//!
//! Only indexes that answer their conditions exactly are made: keyword
//! (string equality), bool, float (numeric ranges: Qdrant's float index
//! holds integer and fractional numbers alike) and datetime (date ranges).
//! Integer equality gets no index of its own: an integer index would miss
//! fractional values of the same key when it later served a range. A key
//! keeps the first index type it was given, because Qdrant holds one index
//! per key and would otherwise rebuild it on every change of type; a
//! condition of another type on it is still answered exactly, by payload.
//! The number of keys is bounded ([`MAX_METADATA_INDEXES`]) because any
//! caller can name any key.

use crate::filter::Cond;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most caller metadata keys a store indexes; filters on further keys are
/// answered without an index (and logged once).
pub const MAX_METADATA_INDEXES: usize = 64;

/// The payload index type a metadata key gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetadataIndexKind {
    /// String equality (`Cond::Keyword`).
    Keyword,
    /// Boolean equality.
    Bool,
    /// Numeric ranges, integer and fractional values alike.
    Float,
    /// RFC 3339 date-time ranges.
    Datetime,
}

impl MetadataIndexKind {
    /// The Qdrant spelling of the schema type.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataIndexKind::Keyword => "keyword",
            MetadataIndexKind::Bool => "bool",
            MetadataIndexKind::Float => "float",
            MetadataIndexKind::Datetime => "datetime",
        }
    }
}

/// The `(field, kind)` pairs a condition tree could use an index for, in
/// the order they appear, each field once (its first condition decides).
pub fn metadata_index_wishes(cond: &Cond) -> Vec<(String, MetadataIndexKind)> {
    fn walk(cond: &Cond, out: &mut Vec<(String, MetadataIndexKind)>) {
        let (field, kind) = match cond {
            Cond::Keyword { field, .. } => (field, MetadataIndexKind::Keyword),
            Cond::Bool { field, .. } => (field, MetadataIndexKind::Bool),
            Cond::Range { field, .. } => (field, MetadataIndexKind::Float),
            Cond::DateRange { field, .. } => (field, MetadataIndexKind::Datetime),
            Cond::Integer { .. } | Cond::Exists { .. } => return,
            Cond::All(all) | Cond::Any(all) => {
                all.iter().for_each(|c| walk(c, out));
                return;
            }
            Cond::Not(inner) => return walk(inner, out),
        };
        if field.starts_with("metadata.") && !out.iter().any(|(f, _)| f == field) {
            out.push((field.clone(), kind));
        }
    }
    let mut out = Vec::new();
    walk(cond, &mut out);
    out
}

/// What a store has indexed (or asked for) so far.
#[derive(Debug, Default)]
pub struct MetadataIndexes {
    known: Mutex<HashMap<String, MetadataIndexKind>>,
    warned: std::sync::atomic::AtomicBool,
}

impl MetadataIndexes {
    /// Remembers indexes that already exist (read from the store's schema
    /// when it opens), so a key keeps its type across restarts.
    pub fn seed(&self, existing: impl IntoIterator<Item = (String, MetadataIndexKind)>) {
        let mut known = self.lock();
        for (field, kind) in existing {
            if field.starts_with("metadata.") {
                known.entry(field).or_insert(kind);
            }
        }
    }

    /// The indexes `metadata` needs that were not made or asked for yet,
    /// marked as asked for. A store that fails to make one calls
    /// [`MetadataIndexes::failed`], so the next search tries again.
    pub fn missing(&self, metadata: Option<&Cond>) -> Vec<(String, MetadataIndexKind)> {
        let Some(cond) = metadata else {
            return Vec::new();
        };
        let wishes = metadata_index_wishes(cond);
        if wishes.is_empty() {
            return wishes;
        }
        let mut known = self.lock();
        let mut out = Vec::new();
        for (field, kind) in wishes {
            if known.contains_key(&field) {
                continue;
            }
            if known.len() >= MAX_METADATA_INDEXES {
                if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        field = %field,
                        limit = MAX_METADATA_INDEXES,
                        "metadata index limit reached; further keys are filtered without an index"
                    );
                }
                break;
            }
            known.insert(field.clone(), kind);
            out.push((field, kind));
        }
        out
    }

    /// Forgets a request that failed, so it is retried.
    pub fn failed(&self, field: &str) {
        self.lock().remove(field);
    }

    /// The keys indexed or asked for, with their types.
    pub fn known(&self) -> Vec<(String, MetadataIndexKind)> {
        let mut v: Vec<_> = self.lock().iter().map(|(f, k)| (f.clone(), *k)).collect();
        v.sort();
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MetadataIndexKind>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Bounds;
    use proptest::prelude::*;

    fn range(field: &str) -> Cond {
        Cond::Range {
            field: field.into(),
            bounds: Bounds {
                gte: Some(1.0),
                ..Bounds::default()
            },
        }
    }

    #[test]
    fn wishes_cover_nested_metadata_conditions_once() {
        let cond = Cond::All(vec![
            Cond::eq("org_id", "o"),
            Cond::eq("metadata.tier", "gold"),
            Cond::Any(vec![range("metadata.score"), range("metadata.tier")]),
            Cond::Not(Box::new(Cond::Bool {
                field: "metadata.flag".into(),
                value: true,
            })),
            Cond::Integer {
                field: "metadata.n".into(),
                values: vec![3],
            },
            Cond::Exists {
                field: "metadata.e".into(),
            },
        ]);
        assert_eq!(
            metadata_index_wishes(&cond),
            vec![
                ("metadata.tier".into(), MetadataIndexKind::Keyword),
                ("metadata.score".into(), MetadataIndexKind::Float),
                ("metadata.flag".into(), MetadataIndexKind::Bool),
            ]
        );
    }

    #[test]
    fn each_key_is_asked_for_once_and_keeps_its_type() {
        let idx = MetadataIndexes::default();
        idx.seed([
            ("metadata.due".to_owned(), MetadataIndexKind::Datetime),
            ("org_id".to_owned(), MetadataIndexKind::Keyword),
        ]);
        let c = Cond::All(vec![Cond::eq("metadata.tier", "t"), range("metadata.due")]);
        assert_eq!(
            idx.missing(Some(&c)),
            vec![("metadata.tier".to_owned(), MetadataIndexKind::Keyword)]
        );
        assert!(idx.missing(Some(&c)).is_empty());
        // Another type later does not change the key's index.
        assert!(idx.missing(Some(&range("metadata.tier"))).is_empty());
        idx.failed("metadata.tier");
        assert_eq!(idx.missing(Some(&range("metadata.tier"))).len(), 1);
        assert!(idx.missing(None).is_empty());
        assert_eq!(idx.known().len(), 2);
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let idx = MetadataIndexes::default();
        for i in 0..(MAX_METADATA_INDEXES + 10) {
            idx.missing(Some(&Cond::eq(&format!("metadata.k{i}"), "v")));
        }
        assert_eq!(idx.known().len(), MAX_METADATA_INDEXES);
    }

    proptest! {
        /// Any key text: wishes never panic, name only metadata fields, and
        /// a second ask returns nothing.
        #[test]
        fn any_key_text_is_handled(keys in prop::collection::vec(any::<String>(), 0..8)) {
            let cond = Cond::Any(keys.iter().map(|k| Cond::eq(&format!("metadata.{k}"), k.clone())).collect());
            let idx = MetadataIndexes::default();
            let first = idx.missing(Some(&cond));
            prop_assert!(first.iter().all(|(f, _)| f.starts_with("metadata.")));
            prop_assert!(idx.missing(Some(&cond)).is_empty());
        }
    }
}
