//! How hits read: turn text, timestamps and the timeline.

use chrono::{DateTime, Utc};
use engram_core::{Kind, PointPayload};

/// `2023-05-07`, the UTC day of `ms`.
fn day(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

/// One timeline entry: `(when, said, id, line)`.
fn entry(p: &PointPayload) -> (i64, i64, String, String) {
    let when = p.event_ms.unwrap_or(p.ts_ms);
    let (who, what) = match p.kind {
        Kind::Observation => {
            let who = p.subject.clone().unwrap_or_else(|| "memory".into());
            (who, p.text.clone())
        }
        _ => match engram_extract::split_speaker(&p.text) {
            Some((name, rest)) => (name.to_owned(), rest.to_owned()),
            None => (
                p.role
                    .map_or_else(|| p.kind.as_str().to_owned(), |r| r.to_string()),
                p.text.clone(),
            ),
        },
    };
    (
        when,
        p.ts_ms,
        p.fragment_id.clone(),
        format!("{} | {} | {}", day(when), who, what),
    )
}

/// A chronological summary: one line `date | who | what` per hit and per
/// observation of the hits, ordered by when it happened (an observation's
/// resolved date, else when it was said), then when it was said, then id,
/// so the same memory always renders the same timeline. Identical lines
/// appear once.
pub fn timeline(hits: &[&PointPayload]) -> String {
    let mut entries: Vec<_> = hits.iter().map(|p| entry(p)).collect();
    entries.sort();
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|e| seen.insert(e.3.clone()))
        .map(|e| e.3)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_core::Role;

    fn payload(id: &str, ts_ms: i64, text: &str) -> PointPayload {
        let scope = engram_core::Scope {
            org_id: "o".into(),
            user_id: "u".into(),
            session_id: "s".into(),
        };
        PointPayload {
            role: Some(Role::User),
            ..PointPayload::new(id.into(), scope, Kind::Turn, text.into(), ts_ms, "j".into())
        }
    }

    #[test]
    fn a_turn_reads_in_the_seed_format() {
        let p = payload("a", 1_778_248_800_000, "I'm allergic to shellfish.");
        assert_eq!(
            p.returned_text(),
            "[Date: 2026-05-08T14:00:00Z] [user] I'm allergic to shellfish."
        );
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn timeline_is_chronological_and_deterministic() {
        let a = payload(
            "b",
            20 * DAY,
            "Caroline: I went to a support group yesterday.",
        );
        let b = payload("a", 10 * DAY, "first");
        let c = payload("a0", 20 * DAY, "Melanie: tie");
        let mut obs = payload(
            "o",
            20 * DAY,
            "Caroline went to a support group on 20 January 1970.",
        );
        obs.kind = Kind::Observation;
        obs.role = None;
        obs.subject = Some("Caroline".into());
        obs.event_ms = Some(19 * DAY);
        let t = timeline(&[&a, &b, &c, &obs, &obs]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines,
            vec![
                "1970-01-11 | user | first",
                "1970-01-20 | Caroline | Caroline went to a support group on 20 January 1970.",
                "1970-01-21 | Melanie | tie",
                "1970-01-21 | Caroline | I went to a support group yesterday.",
            ]
        );
        assert_eq!(t, timeline(&[&obs, &c, &b, &a]));
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::hostile_text;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn rendering_hostile_hits_never_panics(
                texts in proptest::collection::vec((hostile_text(), any::<i64>(), proptest::option::of(any::<i64>()), any::<bool>()), 0..6),
            ) {
                let payloads: Vec<PointPayload> = texts
                    .iter()
                    .enumerate()
                    .map(|(n, (t, ts, event, obs))| {
                        let mut p = payload(&format!("{n}"), *ts, t);
                        if *obs {
                            p.kind = Kind::Observation;
                            p.subject = Some(t.chars().take(8).collect());
                            p.event_ms = *event;
                        }
                        p
                    })
                    .collect();
                for p in &payloads {
                    prop_assert!(p.returned_text().ends_with(p.text.as_str()));
                }
                let refs: Vec<&PointPayload> = payloads.iter().collect();
                let t = timeline(&refs);
                let mut rev = refs.clone();
                rev.reverse();
                prop_assert_eq!(t, timeline(&rev));
            }
        }
    }
}
