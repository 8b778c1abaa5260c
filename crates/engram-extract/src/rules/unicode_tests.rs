//! Property tests over text nobody here wrote: every function of the rule
//! extractor that touches text, on hostile Unicode (see
//! `engram_testkit::text`), must not panic and must hand back ranges that
//! lie on character boundaries of the text they index.

use super::*;
use engram_testkit::text::{hostile_text, long_text};
use proptest::prelude::*;

/// 8 May 2023, 13:56 UTC.
const MAY8: i64 = 1_683_554_160_000;

fn boundary(text: &str, i: usize) -> bool {
    i <= text.len() && text.is_char_boundary(i)
}

/// Runs every segmentation step on `raw` as `extract_sync` does and checks
/// the ranges each returns.
fn segment_all(raw: &str) {
    let text = clean(raw);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "control character left in {text:?}"
    );
    let lower = text.to_ascii_lowercase();
    assert_eq!(
        lower.len(),
        text.len(),
        "lowercasing must keep byte offsets"
    );
    for w in words(&text, 0, text.len()) {
        assert!(w.s < w.e && boundary(&text, w.s) && boundary(&text, w.e));
    }
    let anchor = NaiveDate::from_ymd_opt(2023, 5, 8).unwrap();
    let dates = find_dates(&text, anchor);
    for m in &dates {
        assert!(m.start < m.end && boundary(&text, m.start) && boundary(&text, m.end));
    }
    let mut last_end = 0;
    for sent in sentences(&text) {
        assert!(sent.s >= last_end && sent.s < sent.e);
        assert!(boundary(&text, sent.s) && boundary(&text, sent.e));
        last_end = sent.e;
        for (s, e) in split_clauses(&text, &lower, &sent, &dates) {
            assert!(
                sent.s <= s && s <= e && e <= sent.e,
                "clause outside its sentence"
            );
            assert!(boundary(&text, s) && boundary(&text, e));
            let (ts, te) = trim_fillers(&text, &lower, s, e, &|w: &str| w == "Mel");
            assert!(ts <= te && boundary(&text, ts) && boundary(&text, te));
        }
    }
}

fn turn(n: usize, role: Role, text: String, ts_ms: i64, observations: Vec<String>) -> TurnInput {
    TurnInput {
        fragment_id: format!("{n:064x}"),
        role,
        text,
        ts_ms,
        observations,
    }
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::User),
        Just(Role::Assistant),
        Just(Role::System),
        Just(Role::Tool)
    ]
}

/// A turn time: mostly plausible, sometimes at the ends of what an i64 of
/// milliseconds can say (date arithmetic must not overflow there).
fn ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..4_102_444_800_000,
        1 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(253_402_300_799_000i64),
    ]
}

/// A turn's text, sometimes opened by a `"Name: "` speaker prefix that is
/// itself hostile.
fn turn_text() -> impl Strategy<Value = String> {
    (proptest::option::of(hostile_text()), hostile_text()).prop_map(|(name, body)| match name {
        Some(n) => format!("{}: {body}", n.chars().take(20).collect::<String>()),
        None => body,
    })
}

fn check(extraction: &Extraction, turns: &[TurnInput]) {
    for o in &extraction.observations {
        assert!(!o.text.trim().is_empty(), "empty observation");
        assert!(!o.subject.is_empty(), "observation without subject");
        assert!(
            o.source_ids
                .iter()
                .all(|id| turns.iter().any(|t| &t.fragment_id == id)),
            "observation cites a turn outside the batch"
        );
    }
    for e in &extraction.entities {
        assert!(!e.key.is_empty() && !e.label.is_empty());
        assert!(!e.source_ids.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn segmentation_keeps_to_character_boundaries(raw in hostile_text()) {
        segment_all(&raw);
    }

    #[test]
    fn finish_gives_one_short_sentence(raw in hostile_text()) {
        if let Some(s) = finish(&raw) {
            prop_assert!(s.ends_with('.'));
            prop_assert!(s.chars().count() <= 302, "{} characters", s.chars().count());
        }
    }

    #[test]
    fn extraction_never_panics_on_hostile_turns(
        parts in proptest::collection::vec(
            (role(), turn_text(), ts(), proptest::collection::vec(hostile_text(), 0..3)),
            1..5,
        )
    ) {
        let turns: Vec<TurnInput> = parts
            .into_iter()
            .enumerate()
            .map(|(n, (role, text, ts_ms, obs))| turn(n, role, text, ts_ms, obs))
            .collect();
        let x = RuleExtractor::new().extract_sync(&turns);
        check(&x, &turns);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// A turn at the 40,000-character limit.
    #[test]
    fn extraction_of_very_long_turns(text in long_text(40_000)) {
        segment_all(&text);
        let turns = [turn(0, Role::User, text, MAY8, Vec::new())];
        let x = RuleExtractor::new().extract_sync(&turns);
        check(&x, &turns);
    }
}

/// The report that opened this test: chat text mixing scripts, emoji,
/// arrows, typographic quotes and accents.
#[test]
fn mixed_script_chat_text_is_extracted() {
    let texts = [
        "I moved to Berlin →. Next week I start at Siemens 🎉",
        "Mel: We went to “Café Olé” → it was great!! 😍😍 Then I drove home…",
        "My sister Ana → moved to Lyon last May. Ça va? 👍🏽",
        "I'm learning 日本語 → 3 hours/day. My teacher is Sato-san.",
        "Je suis allé à Zürich. I love it→. שלום! I adopted a cat named Ünal.",
        "I ran 5 km ⇒ then 10km. “I’m done,” I said — and I meant it.",
        "Dr.→ Smith said I'm fine.\u{200B}\u{200D} I quit smoking in 2020 🚭.",
    ];
    let turns: Vec<TurnInput> = texts
        .iter()
        .enumerate()
        .map(|(n, t)| turn(n, Role::User, (*t).to_string(), MAY8, Vec::new()))
        .collect();
    for t in &turns {
        segment_all(&t.text);
    }
    let x = RuleExtractor::new().extract_sync(&turns);
    check(&x, &turns);
    let all: Vec<&str> = x.observations.iter().map(|o| o.text.as_str()).collect();
    assert!(
        all.iter().any(|o| o.contains("Berlin")),
        "the move is still extracted: {all:?}"
    );
    assert!(
        all.iter().any(|o| o.contains("Lyon")) || x.entities.iter().any(|e| e.label == "Lyon"),
        "Ana's move is still extracted: {all:?} {:?}",
        x.entities
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn speaker_prefix_is_a_part_of_the_text(raw in turn_text()) {
        if let Some((name, rest)) = split_speaker(&raw) {
            prop_assert!(!name.is_empty());
            prop_assert!(raw.contains(name) && raw.ends_with(rest));
        }
    }
}

#[test]
fn speaker_found_when_a_wide_character_straddles_byte_48() {
    // "Ana: " then arrows: byte 48 falls inside an arrow.
    let raw = format!("Ana: {}", "→".repeat(20));
    assert_eq!(split_speaker(&raw).map(|(n, _)| n), Some("Ana"));
}
