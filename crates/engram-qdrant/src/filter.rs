//! Translation of engram-core's backend-neutral [`Cond`] tree into Qdrant's
//! gRPC [`Filter`].
//!
//! Who may see a point is decided once, in engram-core
//! (`ScopeFilter::condition`); this module only spells the tree in the
//! gRPC types, node for node, exactly as `engram-store`'s `filter` module
//! does for Qdrant Edge, so both backends filter alike and inside the
//! search (which keeps `top_k` exact).

use engram_core::{Bounds, Cond, ScopeFilter};
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::{
    Condition, DatetimeRange, Filter, Range, RepeatedIntegers, RepeatedStrings, Timestamp,
};

/// Epoch milliseconds a datetime bound is clamped to (about ±253,000
/// years): inside the range the server converts to (chrono), and far
/// beyond any stored date, so clamping never changes which points match
/// while an out-of-range bound from a caller cannot fail the query. The
/// embedded store clamps alike.
const DATE_LIMIT_MS: i64 = 8_000_000_000_000_000;

/// The filter of a scope: its whole condition tree, tenant first.
pub(crate) fn scope_filter(scope: &ScopeFilter) -> Filter {
    to_filter(&scope.condition())
}

/// The filter of a condition tree. A top-level [`Cond::All`] becomes the
/// filter's `must` list directly, so the tenant condition stays a
/// top-level conjunct the server can use as the partition key.
///
/// Field names are passed through; the server refuses a malformed one
/// (`InvalidArgument`, reported as `Internal`).
pub(crate) fn to_filter(cond: &Cond) -> Filter {
    match cond {
        Cond::All(all) => Filter::must(all.iter().map(condition)),
        other => Filter::must([condition(other)]),
    }
}

/// One node of the tree as one condition; composite nodes become a nested
/// filter.
fn condition(cond: &Cond) -> Condition {
    match cond {
        // Keywords are built explicitly: the client's `From<String>` turns
        // a value with whitespace into a full-text match.
        Cond::Keyword { field, values } => match values.as_slice() {
            [] => never(),
            [one] => Condition::matches(field.as_str(), MatchValue::Keyword(one.clone())),
            many => Condition::matches(
                field.as_str(),
                MatchValue::Keywords(RepeatedStrings {
                    strings: many.to_vec(),
                }),
            ),
        },
        Cond::Integer { field, values } => match values.as_slice() {
            [] => never(),
            [one] => Condition::matches(field.as_str(), MatchValue::Integer(*one)),
            many => Condition::matches(
                field.as_str(),
                MatchValue::Integers(RepeatedIntegers {
                    integers: many.to_vec(),
                }),
            ),
        },
        Cond::Bool { field, value } => {
            Condition::matches(field.as_str(), MatchValue::Boolean(*value))
        }
        Cond::Range { field, bounds } => Condition::range(
            field.as_str(),
            Range {
                gt: bounds.gt,
                gte: bounds.gte,
                lt: bounds.lt,
                lte: bounds.lte,
            },
        ),
        Cond::DateRange { field, bounds } => {
            Condition::datetime_range(field.as_str(), datetime_range(bounds))
        }
        // Is-empty also holds for a missing field and for null; is-null
        // adds arrays holding a null, which are not a value either.
        Cond::Exists { field } => Filter::must_not([
            Condition::is_empty(field.as_str()),
            Condition::is_null(field.as_str()),
        ])
        .into(),
        Cond::All(all) => Filter::must(all.iter().map(condition)).into(),
        // The server reads an empty `should` as "no should clause", which
        // holds for every point; an empty disjunction holds for none.
        Cond::Any(any) if any.is_empty() => never(),
        Cond::Any(any) => Filter::should(any.iter().map(condition)).into(),
        Cond::Not(inner) => Filter::must_not([condition(inner)]).into(),
    }
}

/// A condition no point satisfies: the negation of the empty filter,
/// which every point satisfies.
fn never() -> Condition {
    Filter::must_not([Condition::from(Filter::default())]).into()
}

fn datetime_range(bounds: &Bounds<i64>) -> DatetimeRange {
    DatetimeRange {
        gt: bounds.gt.map(timestamp),
        gte: bounds.gte.map(timestamp),
        lt: bounds.lt.map(timestamp),
        lte: bounds.lte.map(timestamp),
    }
}

/// Epoch milliseconds as a protobuf timestamp (seconds and non-negative
/// nanoseconds, also before 1970).
fn timestamp(ms: i64) -> Timestamp {
    let ms = ms.clamp(-DATE_LIMIT_MS, DATE_LIMIT_MS);
    Timestamp {
        seconds: ms.div_euclid(1_000),
        // In 0..1e9, so the cast is exact.
        nanos: (ms.rem_euclid(1_000) * 1_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_core::{Kind, MemoryAccess};
    use qdrant_client::qdrant::FieldCondition;
    use qdrant_client::qdrant::condition::ConditionOneOf;

    fn field(c: &Condition) -> &FieldCondition {
        match &c.condition_one_of {
            Some(ConditionOneOf::Field(f)) => f,
            other => panic!("not a field condition: {other:?}"),
        }
    }

    fn nested(c: &Condition) -> &Filter {
        match &c.condition_one_of {
            Some(ConditionOneOf::Filter(f)) => f,
            other => panic!("not a nested filter: {other:?}"),
        }
    }

    fn match_value(c: &Condition) -> Option<&MatchValue> {
        field(c).r#match.as_ref()?.match_value.as_ref()
    }

    #[test]
    fn the_tenant_is_always_the_first_top_level_condition() {
        let f = scope_filter(&ScopeFilter::tenant("org_a"));
        assert_eq!(f.must.len(), 1);
        assert_eq!(field(&f.must[0]).key, "org_id");
        assert_eq!(
            match_value(&f.must[0]),
            Some(&MatchValue::Keyword("org_a".into()))
        );
        assert!(f.should.is_empty() && f.must_not.is_empty());
    }

    #[test]
    fn only_the_set_restrictions_become_conditions() {
        let mut scope = ScopeFilter::tenant("org_a");
        scope.user_id = Some("u".into());
        scope.session_id = Some("s".into());
        scope.kinds = vec![Kind::Turn, Kind::Memory];
        scope.from_ms = Some(10);
        scope.source_ids = vec!["x".into()];
        let f = scope_filter(&scope);
        assert_eq!(f.must.len(), 6);
        assert!(matches!(
            match_value(&f.must[1]),
            Some(MatchValue::Keywords(_))
        ));
    }

    #[test]
    fn values_with_whitespace_stay_keywords() {
        let f = to_filter(&Cond::eq("metadata.title", "two words"));
        assert_eq!(
            match_value(&f.must[0]),
            Some(&MatchValue::Keyword("two words".into()))
        );
        let f = to_filter(&Cond::Integer {
            field: "metadata.n".into(),
            values: vec![1, 2],
        });
        assert_eq!(
            match_value(&f.must[0]),
            Some(&MatchValue::Integers(RepeatedIntegers {
                integers: vec![1, 2]
            }))
        );
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
        let f = to_filter(&cond);
        let any = nested(&f.must[1]);
        assert_eq!(any.should.len(), 2);
        assert_eq!(
            match_value(&any.should[0]),
            Some(&MatchValue::Boolean(true))
        );
        let not = nested(&any.should[1]);
        let exists = nested(&not.must_not[0]);
        assert!(matches!(
            exists.must_not[0].condition_one_of,
            Some(ConditionOneOf::IsEmpty(_))
        ));
        assert!(matches!(
            exists.must_not[1].condition_one_of,
            Some(ConditionOneOf::IsNull(_))
        ));
    }

    #[test]
    fn date_bounds_become_timestamps() {
        let f = to_filter(&Cond::DateRange {
            field: "metadata.due".into(),
            bounds: Bounds {
                gte: Some(1_772_323_200_123),
                lt: Some(-1),
                lte: Some(i64::MAX),
                ..Bounds::default()
            },
        });
        let r = field(&f.must[0]).datetime_range.unwrap();
        assert_eq!(
            r.gte,
            Some(Timestamp {
                seconds: 1_772_323_200,
                nanos: 123_000_000
            })
        );
        assert_eq!(
            r.lt,
            Some(Timestamp {
                seconds: -1,
                nanos: 999_000_000
            })
        );
        assert_eq!(r.lte.map(|t| t.seconds), Some(DATE_LIMIT_MS / 1_000));
        assert!(r.gt.is_none());
    }

    #[test]
    fn empty_any_and_empty_value_lists_match_nothing() {
        for cond in [
            Cond::Any(Vec::new()),
            Cond::any_of("kind", Vec::<String>::new()),
        ] {
            assert_eq!(to_filter(&cond).must, vec![never()]);
        }
        let never = never();
        let inner = nested(&never);
        assert_eq!(inner.must_not, vec![Condition::from(Filter::default())]);
    }

    #[test]
    fn workspace_visibility_translates() {
        let mut scope = ScopeFilter::tenant("org");
        scope.user_id = Some("u".into());
        scope.memories = Some(MemoryAccess {
            team_collections: vec!["team".into()],
        });
        let f = scope_filter(&scope);
        assert_eq!(nested(&f.must[1]).should.len(), 4);
    }
}
