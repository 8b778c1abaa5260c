//! How hits read: turn text, timestamps and the timeline.

use chrono::{DateTime, SecondsFormat, Utc};
use engram_core::PointPayload;

/// RFC 3339 in UTC with a `Z`, seconds precision unless milliseconds matter.
pub fn format_ts(ts_ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ts_ms) {
        Some(t) if ts_ms % 1000 == 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ts_ms.to_string(),
    }
}

/// `[Date: 2026-05-08T14:00:00Z] [user] I'm allergic to shellfish.`
pub fn turn_text(p: &PointPayload) -> String {
    match p.role {
        Some(role) => format!("[Date: {}] [{}] {}", format_ts(p.ts_ms), role, p.text),
        None => format!("[Date: {}] {}", format_ts(p.ts_ms), p.text),
    }
}

/// One line per hit in time order (ties broken by id, so the same memory
/// always renders the same timeline).
pub fn timeline(hits: &[&PointPayload]) -> String {
    let mut sorted: Vec<&&PointPayload> = hits.iter().collect();
    sorted.sort_by(|a, b| {
        a.ts_ms
            .cmp(&b.ts_ms)
            .then_with(|| a.fragment_id.cmp(&b.fragment_id))
    });
    sorted
        .iter()
        .map(|p| {
            let who = p
                .role
                .map_or_else(|| p.kind.as_str().to_string(), |r| r.to_string());
            format!("{} [{}] {}", format_ts(p.ts_ms), who, p.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_core::{Kind, Role};

    fn payload(id: &str, ts_ms: i64, text: &str) -> PointPayload {
        PointPayload {
            fragment_id: id.into(),
            org_id: "o".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            kind: Kind::Turn,
            role: Some(Role::User),
            text: text.into(),
            ts_ms,
            job_id: "j".into(),
            source_ids: vec![],
            metadata: Default::default(),
        }
    }

    #[test]
    fn turn_text_matches_the_seed_format() {
        let p = payload("a", 1_778_248_800_000, "I'm allergic to shellfish.");
        assert_eq!(
            turn_text(&p),
            "[Date: 2026-05-08T14:00:00Z] [user] I'm allergic to shellfish."
        );
        assert_eq!(format_ts(1_778_248_800_123), "2026-05-08T14:00:00.123Z");
    }

    #[test]
    fn timeline_is_chronological_and_deterministic() {
        let a = payload("b", 2_000, "second");
        let b = payload("a", 1_000, "first");
        let c = payload("a0", 2_000, "tie");
        let t = timeline(&[&a, &b, &c]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].ends_with("first"));
        assert!(lines[1].ends_with("tie"));
        assert!(lines[2].ends_with("second"));
        assert_eq!(t, timeline(&[&c, &b, &a]));
    }
}
