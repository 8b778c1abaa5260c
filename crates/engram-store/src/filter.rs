//! Translation of engram-core's backend-neutral [`Cond`] tree into Qdrant
//! Edge's [`Filter`].
//!
//! Who may see a point is decided once, in engram-core
//! (`ScopeFilter::condition`); this module only spells the tree in Edge's
//! types, node for node, so the filter runs inside the search (which keeps
//! `top_k` exact) and means exactly what it means on a Qdrant server
//! (`engram-qdrant`'s `filter` module is the same translation for the gRPC
//! types).

use crate::mapping::internal;
use engram_core::{Bounds, Cond, ScopeFilter, StoreError};
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    AnyVariants, Condition, DateTimeWrapper, FieldCondition, Filter, IsEmptyCondition,
    IsNullCondition, JsonPath, Match, Range, ValueVariants,
};

/// Epoch milliseconds a datetime bound is clamped to (about ±253,000
/// years): inside both chrono's range and Qdrant's i64 microseconds, and
/// far beyond any stored date, so clamping never changes which points
/// match while an out-of-range bound from a caller cannot fail the query.
const DATE_LIMIT_MS: i64 = 8_000_000_000_000_000;

/// The Edge filter of a scope: its whole condition tree, tenant first.
pub(crate) fn scope_filter(scope: &ScopeFilter) -> Result<Filter, StoreError> {
    to_filter(&scope.condition())
}

/// The Edge filter of a condition tree. A top-level [`Cond::All`] becomes
/// the filter's `must` list directly, so the tenant condition stays a
/// top-level conjunct the planner can use as the partition key.
pub(crate) fn to_filter(cond: &Cond) -> Result<Filter, StoreError> {
    let must = match cond {
        Cond::All(all) => conditions(all)?,
        other => vec![condition(other)?],
    };
    Ok(Filter {
        must: Some(must),
        ..Filter::default()
    })
}

fn conditions(conds: &[Cond]) -> Result<Vec<Condition>, StoreError> {
    conds.iter().map(condition).collect()
}

/// One node of the tree as one Edge condition; composite nodes become a
/// nested filter.
fn condition(cond: &Cond) -> Result<Condition, StoreError> {
    Ok(match cond {
        Cond::Keyword { field, values } => match values.as_slice() {
            [] => never(),
            [one] => matching(field, Match::from(ValueVariants::String(one.clone())))?,
            many => matching(
                field,
                Match::from(AnyVariants::Strings(many.iter().cloned().collect())),
            )?,
        },
        Cond::Integer { field, values } => match values.as_slice() {
            [] => never(),
            [one] => matching(field, Match::from(ValueVariants::Integer(*one)))?,
            many => matching(
                field,
                Match::from(AnyVariants::Integers(many.iter().copied().collect())),
            )?,
        },
        Cond::Bool { field, value } => matching(field, Match::from(ValueVariants::Bool(*value)))?,
        Cond::Range { field, bounds } => Condition::Field(FieldCondition::new_range(
            path(field)?,
            range(bounds, |v| Ok(OrderedFloat(v)))?,
        )),
        Cond::DateRange { field, bounds } => Condition::Field(FieldCondition::new_datetime_range(
            path(field)?,
            range(bounds, datetime)?,
        )),
        Cond::Exists { field } => {
            // Is-empty also holds for a missing field and for null; is-null
            // adds arrays holding a null, which are not a value either.
            let key = path(field)?;
            nested(Filter {
                must_not: Some(vec![
                    Condition::IsEmpty(IsEmptyCondition::from(key.clone())),
                    Condition::IsNull(IsNullCondition::from(key)),
                ]),
                ..Filter::default()
            })
        }
        Cond::All(all) => nested(Filter {
            must: Some(conditions(all)?),
            ..Filter::default()
        }),
        // Spelled out rather than left to the engine: an empty `should`
        // holds nothing on Edge, but a Qdrant server reads an empty list as
        // "no should clause", which holds everything.
        Cond::Any(any) if any.is_empty() => never(),
        Cond::Any(any) => nested(Filter {
            should: Some(conditions(any)?),
            ..Filter::default()
        }),
        Cond::Not(inner) => nested(Filter {
            must_not: Some(vec![condition(inner)?]),
            ..Filter::default()
        }),
    })
}

/// A condition no point satisfies: the negation of the empty filter,
/// which every point satisfies.
fn never() -> Condition {
    nested(Filter {
        must_not: Some(vec![Condition::Filter(Filter::default())]),
        ..Filter::default()
    })
}

fn nested(filter: Filter) -> Condition {
    Condition::Filter(filter)
}

fn matching(field: &str, m: Match) -> Result<Condition, StoreError> {
    Ok(Condition::Field(FieldCondition::new_match(path(field)?, m)))
}

/// The JSON path of a payload field. Field names come from callers
/// (metadata keys), so a malformed one is an error, never a panic.
fn path(field: &str) -> Result<JsonPath, StoreError> {
    field
        .parse()
        .map_err(|()| internal(format!("invalid payload field path {field:?}")))
}

fn range<T: Copy, U>(
    bounds: &Bounds<T>,
    f: impl Fn(T) -> Result<U, StoreError>,
) -> Result<Range<U>, StoreError> {
    Ok(Range {
        gt: bounds.gt.map(&f).transpose()?,
        gte: bounds.gte.map(&f).transpose()?,
        lt: bounds.lt.map(&f).transpose()?,
        lte: bounds.lte.map(&f).transpose()?,
    })
}

/// An epoch-milliseconds bound as Qdrant's datetime (microseconds inside).
fn datetime(ms: i64) -> Result<DateTimeWrapper, StoreError> {
    let micros = ms.clamp(-DATE_LIMIT_MS, DATE_LIMIT_MS) * 1_000;
    // Inside chrono's range by construction of DATE_LIMIT_MS, so this
    // never fails; the error only keeps the function total.
    DateTimeWrapper::from_timestamp(micros)
        .ok_or_else(|| internal(format!("date bound {ms} ms is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_core::{Kind, MemoryAccess};

    fn must(f: &Filter) -> &[Condition] {
        f.must.as_deref().unwrap_or_default()
    }

    #[test]
    fn the_tenant_is_always_the_first_top_level_condition() {
        let f = scope_filter(&ScopeFilter::tenant("org_a")).unwrap();
        assert_eq!(must(&f).len(), 1);
        let Condition::Field(c) = &must(&f)[0] else {
            panic!("tenant is a field condition");
        };
        assert_eq!(c.key.to_string(), "org_id");
        assert_eq!(
            c.r#match,
            Some(Match::from(ValueVariants::String("org_a".into())))
        );
        assert!(f.should.is_none() && f.must_not.is_none());
    }

    #[test]
    fn only_the_set_restrictions_become_conditions() {
        let mut scope = ScopeFilter::tenant("org_a");
        scope.user_id = Some("u".into());
        scope.session_id = Some("s".into());
        scope.kinds = vec![Kind::Turn, Kind::Memory];
        scope.from_ms = Some(10);
        scope.source_ids = vec!["x".into()];
        let f = scope_filter(&scope).unwrap();
        assert_eq!(must(&f).len(), 6);
        let Condition::Field(kinds) = &must(&f)[1] else {
            panic!("kinds is a field condition");
        };
        assert!(matches!(kinds.r#match, Some(Match::Any(_))));
    }

    #[test]
    fn composite_nodes_nest_as_must_should_and_must_not() {
        let cond = Cond::All(vec![
            Cond::eq("org_id", "o"),
            Cond::Any(vec![
                Cond::Bool {
                    field: "metadata.flag".into(),
                    value: true,
                },
                Cond::Not(Box::new(Cond::Exists {
                    field: "metadata.tier".into(),
                })),
            ]),
        ]);
        let f = to_filter(&cond).unwrap();
        let Condition::Filter(any) = &must(&f)[1] else {
            panic!("Any nests as a filter");
        };
        let should = any.should.as_deref().unwrap();
        assert_eq!(should.len(), 2);
        let Condition::Filter(not) = &should[1] else {
            panic!("Not nests as a filter");
        };
        let Condition::Filter(exists) = &not.must_not.as_deref().unwrap()[0] else {
            panic!("Exists nests as a filter");
        };
        let negated = exists.must_not.as_deref().unwrap();
        assert!(matches!(negated[0], Condition::IsEmpty(_)));
        assert!(matches!(negated[1], Condition::IsNull(_)));
    }

    #[test]
    fn ranges_keep_their_bounds_and_dates_become_datetimes() {
        let f = to_filter(&Cond::DateRange {
            field: "metadata.due".into(),
            bounds: Bounds {
                gte: Some(1_772_323_200_000),
                lt: Some(i64::MAX),
                ..Bounds::default()
            },
        })
        .unwrap();
        let Condition::Field(c) = &must(&f)[0] else {
            panic!("date range is a field condition");
        };
        let Some(qdrant_edge::RangeInterface::DateTime(r)) = c.range else {
            panic!("a datetime range");
        };
        assert_eq!(r.gte.map(|d| d.timestamp()), Some(1_772_323_200_000_000));
        // An absurd bound is clamped, not refused.
        assert_eq!(r.lt.map(|d| d.timestamp()), Some(DATE_LIMIT_MS * 1_000));
        assert!(r.gt.is_none() && r.lte.is_none());

        let f = to_filter(&Cond::Range {
            field: "metadata.score".into(),
            bounds: Bounds {
                gt: Some(0.5),
                lte: Some(2.0),
                ..Bounds::default()
            },
        })
        .unwrap();
        let Condition::Field(c) = &must(&f)[0] else {
            panic!("range is a field condition");
        };
        let Some(qdrant_edge::RangeInterface::Float(r)) = c.range else {
            panic!("a float range");
        };
        assert_eq!(
            (r.gt, r.lte),
            (Some(OrderedFloat(0.5)), Some(OrderedFloat(2.0)))
        );
    }

    #[test]
    fn empty_any_and_empty_value_lists_match_nothing() {
        for cond in [
            Cond::Any(Vec::new()),
            Cond::any_of("kind", Vec::<String>::new()),
        ] {
            let f = to_filter(&cond).unwrap();
            assert_eq!(must(&f), &[never()]);
        }
    }

    #[test]
    fn a_malformed_field_path_is_an_error() {
        let err = to_filter(&Cond::eq("metadata.a b", "x")).unwrap_err();
        assert!(err.to_string().contains("metadata.a b"), "{err}");
    }

    #[test]
    fn workspace_visibility_translates() {
        let mut scope = ScopeFilter::tenant("org");
        scope.user_id = Some("u".into());
        scope.memories = Some(MemoryAccess {
            team_collections: vec!["team".into()],
        });
        let f = scope_filter(&scope).unwrap();
        let Condition::Filter(visibility) = &must(&f)[1] else {
            panic!("visibility is a nested filter");
        };
        assert_eq!(visibility.should.as_ref().map(Vec::len), Some(4));
    }
}
