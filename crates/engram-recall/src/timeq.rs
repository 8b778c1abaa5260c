//! Time expressions in a query: "last week", "in May 2023", "before the
//! move". Dates resolve against the time of the request; an event named
//! after before/after is looked up among the user's observations by the
//! deep pipeline.

use chrono::{DateTime, Utc};
use engram_extract::dates::{self, Relation};

/// What a query says about time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TimeHint {
    /// A period, possibly open on one side: points inside it are boosted.
    Range {
        /// Inclusive start, epoch ms (`None`: open).
        from_ms: Option<i64>,
        /// Exclusive end, epoch ms (`None`: open).
        until_ms: Option<i64>,
    },
    /// Before or after an event the query names ("before the move"); its
    /// time comes from the best matching observation.
    Event {
        /// The words naming the event ("the move").
        phrase: String,
        /// `Before` or `After`.
        relation: Relation,
    },
}

impl TimeHint {
    /// Whether `ms` falls inside a resolved range.
    pub(crate) fn contains(&self, ms: i64) -> bool {
        match self {
            TimeHint::Range { from_ms, until_ms } => {
                from_ms.is_none_or(|f| ms >= f) && until_ms.is_none_or(|u| ms < u)
            }
            TimeHint::Event { .. } => false,
        }
    }

    /// The range before or after an event that happened at `event_ms`.
    pub(crate) fn around(relation: Relation, event_ms: i64) -> TimeHint {
        match relation {
            Relation::Before => TimeHint::Range {
                from_ms: None,
                until_ms: Some(event_ms),
            },
            _ => TimeHint::Range {
                from_ms: Some(event_ms),
                until_ms: None,
            },
        }
    }
}

/// Words that end an event phrase after "before the"/"after the".
const PHRASE_END: &[&str] = &[
    "and", "or", "but", "when", "while", "did", "does", "do", "was", "were", "is", "has", "had",
];

/// The first time expression of `q`, resolved against `now_ms`.
pub(crate) fn parse(q: &str, now_ms: i64) -> Option<TimeHint> {
    let anchor = DateTime::<Utc>::from_timestamp_millis(now_ms)?.date_naive();
    if let Some(m) = dates::find_dates(q, anchor).into_iter().next() {
        let (from, until) = (m.period.from_ms(), m.period.until_ms());
        return Some(match m.relation {
            Relation::Before => TimeHint::Range {
                from_ms: None,
                until_ms: Some(from),
            },
            Relation::After => TimeHint::Range {
                from_ms: Some(until),
                until_ms: None,
            },
            Relation::At => TimeHint::Range {
                from_ms: Some(from),
                until_ms: Some(until),
            },
        });
    }
    event_phrase(q)
}

/// "before the move" → `Event { phrase: "move", relation: Before }`.
fn event_phrase(q: &str) -> Option<TimeHint> {
    let lower = q.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let relation = match *w {
            "before" => Relation::Before,
            "after" | "since" => Relation::After,
            _ => continue,
        };
        let rest = &words[i + 1..];
        let start =
            usize::from(rest.first().is_some_and(|w| {
                matches!(*w, "the" | "a" | "an" | "my" | "her" | "his" | "their")
            }));
        let phrase: Vec<&str> = rest[start.min(rest.len())..]
            .iter()
            .take_while(|w| !PHRASE_END.contains(w))
            .take(4)
            .copied()
            .collect();
        if !phrase.is_empty() {
            return Some(TimeHint::Event {
                phrase: phrase.join(" "),
                relation,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn ms(y: i32, m: u32, d: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    #[test]
    fn absolute_month_becomes_a_closed_range() {
        let hint = parse("what did I cook in May 2023?", ms(2026, 1, 10)).unwrap();
        assert_eq!(
            hint,
            TimeHint::Range {
                from_ms: Some(ms(2023, 5, 1)),
                until_ms: Some(ms(2023, 6, 1)),
            }
        );
        assert!(hint.contains(ms(2023, 5, 31)));
        assert!(!hint.contains(ms(2023, 6, 1)));
    }

    #[test]
    fn relative_week_resolves_against_now() {
        // 2023-05-10 is a Wednesday; last week is Mon 1 May .. Mon 8 May.
        let hint = parse("where did we eat last week", ms(2023, 5, 10)).unwrap();
        assert!(hint.contains(ms(2023, 5, 3)));
        assert!(!hint.contains(ms(2023, 5, 9)));
    }

    #[test]
    fn before_a_date_is_open_at_the_start() {
        let hint = parse("jobs before 2020", ms(2026, 1, 1)).unwrap();
        assert!(hint.contains(ms(2019, 12, 31)));
        assert!(!hint.contains(ms(2020, 1, 1)));
    }

    #[test]
    fn before_an_event_names_the_event() {
        assert_eq!(
            parse(
                "Where did Ana live before the move to Lyon?",
                ms(2026, 1, 1)
            ),
            Some(TimeHint::Event {
                phrase: "move to lyon".into(),
                relation: Relation::Before,
            })
        );
        assert_eq!(parse("what does Ana like", ms(2026, 1, 1)), None);
        let around = TimeHint::around(Relation::After, 100);
        assert!(around.contains(100) && !around.contains(99));
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::hostile_text;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn time_hints_of_hostile_questions(
                q in hostile_text(),
                now in prop_oneof![Just(i64::MAX), Just(i64::MIN), any::<i64>(), 0i64..4_102_444_800_000],
            ) {
                if let Some(TimeHint::Range { from_ms: Some(f), until_ms: Some(u) }) = parse(&q, now) {
                    prop_assert!(f <= u);
                }
            }
        }
    }
}
