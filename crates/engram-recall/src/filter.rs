//! Recall's metadata filter: the wire `Filter` checked and turned into the
//! store-neutral [`Cond`] on `metadata.<key>` payload fields.

use engram_api::Violations;
use engram_core::{Bounds, Cond};
use engram_proto::v1::{self as pb, filter::Condition};
use prost_types::value::Kind as ValueKind;

/// Deepest nesting of all / any / negate.
const MAX_DEPTH: usize = 8;
/// Most filters in one all / any.
const MAX_LIST: usize = 32;
/// Most values of one one_of.
const MAX_VALUES: usize = 100;
/// Longest metadata key.
const MAX_KEY_CHARS: usize = 64;
/// Largest integer a JSON number carries exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// The condition of `filter`, or `None` with the problems added to `v`
/// under `path` (for example `filter.all.filters[1].equals.key`).
pub(crate) fn to_cond(filter: &pb::Filter, path: &str, v: &mut Violations) -> Option<Cond> {
    convert(filter, path, v, 0)
}

fn convert(filter: &pb::Filter, path: &str, v: &mut Violations, depth: usize) -> Option<Cond> {
    if depth > MAX_DEPTH {
        v.add(path, format!("nested deeper than {MAX_DEPTH} levels"));
        return None;
    }
    let Some(condition) = &filter.condition else {
        v.add(
            path,
            "an operator is required: one of equals, one_of, range, date_range, exists, all, any, negate",
        );
        return None;
    };
    match condition {
        Condition::Equals(e) => {
            let field = key(&e.key, &format!("{path}.equals.key"), v)?;
            let at = format!("{path}.equals.value");
            match e.value.as_ref().and_then(|x| x.kind.as_ref()) {
                Some(ValueKind::StringValue(s)) => Some(Cond::Keyword {
                    field,
                    values: vec![s.clone()],
                }),
                Some(ValueKind::BoolValue(b)) => Some(Cond::Bool { field, value: *b }),
                Some(ValueKind::NumberValue(n)) => integer(*n, &at, v).map(|i| Cond::Integer {
                    field,
                    values: vec![i],
                }),
                _ => {
                    v.add(
                        at,
                        "unsupported value type: use a string, an integral number or a boolean",
                    );
                    None
                }
            }
        }
        Condition::OneOf(o) => {
            let field = key(&o.key, &format!("{path}.one_of.key"), v);
            let at = format!("{path}.one_of.values");
            if o.values.is_empty() || o.values.len() > MAX_VALUES {
                v.add(&at, format!("1 to {MAX_VALUES} values"));
                return None;
            }
            let kinds: Vec<Option<&ValueKind>> = o.values.iter().map(|x| x.kind.as_ref()).collect();
            if kinds
                .iter()
                .all(|k| matches!(k, Some(ValueKind::StringValue(_))))
            {
                let values = kinds
                    .into_iter()
                    .filter_map(|k| match k {
                        Some(ValueKind::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                return field.map(|field| Cond::Keyword { field, values });
            }
            if kinds
                .iter()
                .all(|k| matches!(k, Some(ValueKind::NumberValue(_))))
            {
                let values: Option<Vec<i64>> = kinds
                    .into_iter()
                    .map(|k| match k {
                        Some(ValueKind::NumberValue(n)) => integer(*n, &at, v),
                        _ => None,
                    })
                    .collect();
                return Some(Cond::Integer {
                    field: field?,
                    values: values?,
                });
            }
            v.add(at, "all strings or all integral numbers");
            None
        }
        Condition::Range(r) => {
            let field = key(&r.key, &format!("{path}.range.key"), v);
            let bounds = Bounds {
                gt: r.gt,
                gte: r.gte,
                lt: r.lt,
                lte: r.lte,
            };
            let all = [r.gt, r.gte, r.lt, r.lte];
            if all.iter().all(Option::is_none) {
                v.add(format!("{path}.range"), "at least one of gt, gte, lt, lte");
                return None;
            }
            if all.iter().flatten().any(|x| !x.is_finite()) {
                v.add(format!("{path}.range"), "bounds must be finite numbers");
                return None;
            }
            Some(Cond::Range {
                field: field?,
                bounds,
            })
        }
        Condition::DateRange(r) => {
            let field = key(&r.key, &format!("{path}.date_range.key"), v);
            let mut bad = false;
            let mut ms = |t: &Option<prost_types::Timestamp>, name: &str| {
                let t = t.as_ref()?;
                if !engram_proto::time::is_valid(t) {
                    v.add(
                        format!("{path}.date_range.{name}"),
                        "a timestamp between 0001-01-01 and 9999-12-31 with nanos in 0..=999999999",
                    );
                    bad = true;
                }
                Some(engram_proto::time::to_ms(t))
            };
            let bounds = Bounds {
                gt: ms(&r.gt, "gt"),
                gte: ms(&r.gte, "gte"),
                lt: ms(&r.lt, "lt"),
                lte: ms(&r.lte, "lte"),
            };
            if bad {
                return None;
            }
            if [bounds.gt, bounds.gte, bounds.lt, bounds.lte]
                .iter()
                .all(Option::is_none)
            {
                v.add(
                    format!("{path}.date_range"),
                    "at least one of gt, gte, lt, lte",
                );
                return None;
            }
            Some(Cond::DateRange {
                field: field?,
                bounds,
            })
        }
        Condition::Exists(e) => Some(Cond::Exists {
            field: key(&e.key, &format!("{path}.exists.key"), v)?,
        }),
        Condition::All(list) => list_of(list, &format!("{path}.all"), v, depth).map(Cond::All),
        Condition::Any(list) => list_of(list, &format!("{path}.any"), v, depth).map(Cond::Any),
        Condition::Negate(inner) => {
            convert(inner, &format!("{path}.negate"), v, depth + 1).map(|c| Cond::Not(Box::new(c)))
        }
    }
}

fn list_of(
    list: &pb::FilterList,
    path: &str,
    v: &mut Violations,
    depth: usize,
) -> Option<Vec<Cond>> {
    if list.filters.is_empty() || list.filters.len() > MAX_LIST {
        v.add(
            format!("{path}.filters"),
            format!("1 to {MAX_LIST} filters"),
        );
        return None;
    }
    let out: Vec<Option<Cond>> = list
        .filters
        .iter()
        .enumerate()
        .map(|(i, f)| convert(f, &format!("{path}.filters[{i}]"), v, depth + 1))
        .collect();
    out.into_iter().collect()
}

/// The payload field of a metadata key.
fn key(key: &str, path: &str, v: &mut Violations) -> Option<String> {
    let ok = !key.is_empty()
        && key.chars().count() <= MAX_KEY_CHARS
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        v.add(
            path,
            format!("a metadata key: 1 to {MAX_KEY_CHARS} letters, digits, '_' or '-'"),
        );
        return None;
    }
    Some(format!("metadata.{key}"))
}

fn integer(n: f64, path: &str, v: &mut Violations) -> Option<i64> {
    if n.fract() != 0.0 || !n.is_finite() || n.abs() > MAX_EXACT {
        v.add(
            path,
            "numbers match exactly only as integers: use a range for other numbers",
        );
        return None;
    }
    Some(n as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Value;

    fn string(s: &str) -> Value {
        Value {
            kind: Some(ValueKind::StringValue(s.into())),
        }
    }

    fn number(n: f64) -> Value {
        Value {
            kind: Some(ValueKind::NumberValue(n)),
        }
    }

    fn equals(key: &str, value: Value) -> pb::Filter {
        pb::Filter {
            condition: Some(Condition::Equals(pb::Equals {
                key: key.into(),
                value: Some(value),
            })),
        }
    }

    fn fields(v: Violations) -> Vec<String> {
        v.into_result().unwrap_err().violated_fields()
    }

    #[test]
    fn a_combination_becomes_one_condition() {
        let f = pb::Filter {
            condition: Some(Condition::All(pb::FilterList {
                filters: vec![
                    equals("tier", string("gold")),
                    pb::Filter {
                        condition: Some(Condition::Negate(Box::new(equals(
                            "year",
                            number(2024.0),
                        )))),
                    },
                ],
            })),
        };
        let mut v = Violations::new();
        let c = to_cond(&f, "filter", &mut v).unwrap();
        assert!(v.is_empty());
        assert_eq!(
            c,
            Cond::All(vec![
                Cond::eq("metadata.tier", "gold"),
                Cond::Not(Box::new(Cond::Integer {
                    field: "metadata.year".into(),
                    values: vec![2024]
                })),
            ])
        );
    }

    #[test]
    fn unknown_operators_and_value_types_name_their_field() {
        let mut v = Violations::new();
        let f = pb::Filter {
            condition: Some(Condition::Any(pb::FilterList {
                filters: vec![
                    pb::Filter { condition: None },
                    equals(
                        "tier",
                        Value {
                            kind: Some(ValueKind::NullValue(0)),
                        },
                    ),
                    equals("bad key!", string("x")),
                    equals("score", number(1.5)),
                ],
            })),
        };
        assert!(to_cond(&f, "filter", &mut v).is_none());
        assert_eq!(
            fields(v),
            [
                "filter.any.filters[0]",
                "filter.any.filters[1].equals.value",
                "filter.any.filters[2].equals.key",
                "filter.any.filters[3].equals.value",
            ]
        );
    }

    #[test]
    fn mixed_one_of_and_empty_ranges_are_refused() {
        let mut v = Violations::new();
        let mixed = pb::Filter {
            condition: Some(Condition::OneOf(pb::OneOf {
                key: "k".into(),
                values: vec![string("a"), number(1.0)],
            })),
        };
        assert!(to_cond(&mixed, "filter", &mut v).is_none());
        let empty = pb::Filter {
            condition: Some(Condition::Range(pb::NumberRange {
                key: "k".into(),
                ..Default::default()
            })),
        };
        assert!(to_cond(&empty, "f2", &mut v).is_none());
        assert_eq!(fields(v), ["filter.one_of.values", "f2.range"]);
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::hostile_text;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                hostile_text().prop_map(|s| Value {
                    kind: Some(ValueKind::StringValue(s))
                }),
                any::<f64>().prop_map(number),
                any::<bool>().prop_map(|b| Value {
                    kind: Some(ValueKind::BoolValue(b))
                }),
                Just(Value {
                    kind: Some(ValueKind::NullValue(0))
                }),
                Just(Value { kind: None }),
            ]
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                hostile_text(),
                Just("department".to_string()),
                Just(String::new())
            ]
        }

        fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
            proptest::option::of(
                (any::<i64>(), any::<i32>())
                    .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
            )
        }

        fn leaf() -> impl Strategy<Value = pb::Filter> {
            let opt = || proptest::option::of(any::<f64>());
            prop_oneof![
                (key(), proptest::option::of(value()))
                    .prop_map(|(key, value)| Condition::Equals(pb::Equals { key, value })),
                (key(), proptest::collection::vec(value(), 0..4))
                    .prop_map(|(key, values)| Condition::OneOf(pb::OneOf { key, values })),
                (key(), opt(), opt(), opt(), opt()).prop_map(|(key, gt, gte, lt, lte)| {
                    Condition::Range(pb::NumberRange {
                        key,
                        gt,
                        gte,
                        lt,
                        lte,
                    })
                }),
                (key(), timestamp(), timestamp(), timestamp(), timestamp()).prop_map(
                    |(key, gt, gte, lt, lte)| Condition::DateRange(pb::DateRange {
                        key,
                        gt,
                        gte,
                        lt,
                        lte
                    })
                ),
                key().prop_map(|key| Condition::Exists(pb::Exists { key })),
            ]
            .prop_map(|c| pb::Filter { condition: Some(c) })
        }

        /// Filter trees up to twelve levels deep (past the limit of eight).
        fn tree() -> impl Strategy<Value = pb::Filter> {
            leaf().prop_recursive(12, 64, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(|filters| Condition::All(pb::FilterList { filters })),
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(|filters| Condition::Any(pb::FilterList { filters })),
                    inner.prop_map(|f| Condition::Negate(Box::new(f))),
                ]
                .prop_map(|c| pb::Filter { condition: Some(c) })
            })
        }

        fn depth(f: &pb::Filter) -> usize {
            match &f.condition {
                Some(Condition::All(l)) | Some(Condition::Any(l)) => {
                    1 + l.filters.iter().map(depth).max().unwrap_or(0)
                }
                Some(Condition::Negate(inner)) => 1 + depth(inner),
                _ => 0,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// Any filter tree is turned into a condition or refused with
            /// field violations under `filter`; never a panic, and nothing
            /// deeper than the limit gets through.
            #[test]
            fn hostile_filter_trees_are_checked(f in tree()) {
                let mut v = Violations::new();
                match to_cond(&f, "filter", &mut v) {
                    Some(_) => {
                        prop_assert!(v.into_result().is_ok());
                        prop_assert!(depth(&f) <= MAX_DEPTH);
                    }
                    None => {
                        let names = fields(v);
                        prop_assert!(!names.is_empty());
                        prop_assert!(names.iter().all(|n| n.starts_with("filter")), "{:?}", names);
                    }
                }
            }
        }
    }
}
