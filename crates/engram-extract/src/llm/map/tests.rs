//! Unit tests of validation, mapping, dates and merging.

use super::super::wire::{Answer, Reply, parse_answer};
use super::*;

const DAY_MS: i64 = 86_400_000;

fn turn(n: usize, role: Role, text: &str) -> TurnInput {
    TurnInput {
        fragment_id: format!("{n:064x}"),
        role,
        text: text.to_owned(),
        ts_ms: 1_683_468_180_000 + n as i64 * 1000,
        observations: Vec::new(),
    }
}

fn answer(json: &str) -> Answer {
    parse_answer(&Reply {
        content: json.to_owned(),
        finish_reason: None,
    })
    .unwrap()
}

#[test]
fn dates() {
    // 2023-05-07 is day 19484 of the epoch.
    assert_eq!(parse_date("2023-05-07"), Ok(19_484 * DAY_MS));
    assert_eq!(parse_date("2023-05"), Ok((19_484 - 6) * DAY_MS));
    assert_eq!(parse_date("2023"), Ok((19_484 - 126) * DAY_MS));
    assert_eq!(parse_date("1970"), Ok(0));
    assert_eq!(parse_date("2024-02-29"), Ok(19_782 * DAY_MS));
    for bad in [
        "",
        "23",
        "2023-5-7",
        "2023-05-7",
        "2023-13",
        "2023-02-30",
        "2023-00-10",
        "0000",
        "2023/05/07",
        "7 May 2023",
        "2023-05-07T00:00:00Z",
        "+2023",
        "2023-05-07-01",
        "２０２３",
    ] {
        assert!(parse_date(bad).is_err(), "{bad}");
    }
}

#[test]
fn normalization() {
    assert_eq!(normalize(EntityKind::Person, "Ana  Lopez"), "ana");
    assert_eq!(normalize(EntityKind::Person, "Ana's"), "ana");
    assert_eq!(normalize(EntityKind::Person, "James'"), "james");
    assert_eq!(normalize(EntityKind::Place, " New   York’s "), "new york");
    assert_eq!(
        normalize(EntityKind::Organization, "Acme Corp"),
        "acme corp"
    );
    assert_eq!(normalize(EntityKind::Person, "Dr. Ana Lopez"), "ana");
    assert_eq!(normalize(EntityKind::Person, "Mr Bo"), "bo");
    // Dates key like the rules' when the label is one expression.
    let may_7 = 19_484 * DAY_MS + 50_580_000;
    assert_eq!(
        date_key("7 May 2023", may_7).as_deref(),
        Some("2023-05-07/day")
    );
    assert_eq!(
        date_key("yesterday", may_7).as_deref(),
        Some("2023-05-06/day")
    );
    assert_eq!(date_key("2022", may_7).as_deref(), Some("2022-01-01/year"));
    assert_eq!(date_key("a rainy day", may_7), None);
    assert_eq!(strip_possessive("Ana's"), "Ana");
    assert_eq!(strip_possessive("Paris"), "Paris");
    assert_eq!(strip_possessive("Boss'"), "Boss");
    assert!(contains_word("user met ana lopez.", "ana lopez"));
    assert!(contains_word("ana's sister", "ana"));
    assert!(!contains_word("user likes bananas.", "ana"));
    assert!(!contains_word("anything", ""));
}

#[test]
fn speakers() {
    assert_eq!(speaker(&turn(0, Role::User, "Ana Lopez: hi")), "Ana Lopez");
    assert_eq!(speaker(&turn(0, Role::User, "hi: there")), "User");
    assert_eq!(speaker(&turn(0, Role::Assistant, "Sure.")), "Assistant");
    assert_eq!(speaker(&turn(0, Role::User, "A B C D: x")), "User");
    assert_eq!(speaker(&turn(0, Role::Tool, "result")), "Tool");
    assert_eq!(speaker(&turn(0, Role::User, "Note: buy milk")), "User");
    assert_eq!(speaker(&turn(0, Role::User, "At 10:30 we met")), "User");
    assert_eq!(speaker(&turn(0, Role::User, "  Mel: hey")), "Mel");
}

#[test]
fn maps_a_valid_answer() {
    let mut turns = vec![
        turn(
            0,
            Role::User,
            "I'm allergic to shellfish. Ana's coming next week.",
        ),
        turn(1, Role::Assistant, "Noted."),
        turn(2, Role::User, "Ana Lopez is my sister."),
    ];
    turns[2].observations = vec!["User has a sister.".to_owned(), "  ".to_owned()];
    let got = to_extraction(
        &turns,
        answer(
            r#"{"observations":[
            {"turn":2,"subject":"User","category":"relationship","text":"User's sister is Ana Lopez"},
            {"turn":0,"subject":"User","category":"health","text":"User is allergic to shellfish.","date":null},
            {"turn":0,"subject":"Ana","category":"plan","text":" Ana is  visiting User in May 2023.","date":"2023-05"}
        ],"entities":[
            {"label":"Ana's","kind":"person","turns":[0]},
            {"label":"Ana Lopez","kind":"person","turns":[2,2]},
            {"label":"May 2023","kind":"date","turns":[0]}
        ]}"#,
        ),
    )
    .unwrap();
    let texts: Vec<_> = got
        .observations
        .iter()
        .map(|o| (o.subject.as_str(), o.text.as_str(), o.category))
        .collect();
    assert_eq!(
        texts,
        vec![
            ("User", "User is allergic to shellfish.", Category::Health),
            ("Ana", "Ana is visiting User in May 2023.", Category::Plan),
            ("User", "User has a sister.", Category::Given),
            (
                "User",
                "User's sister is Ana Lopez.",
                Category::Relationship
            ),
        ]
    );
    let ana = &got.observations[1];
    assert_eq!(ana.source_ids, vec![turns[0].fragment_id.clone()]);
    assert_eq!(ana.ts_ms, turns[0].ts_ms);
    assert_eq!(ana.event_ms, Some((19_484 - 6) * DAY_MS));
    assert_eq!(ana.entity_keys, vec!["person:ana", "date:2023-05-01/month"]);
    assert_eq!(got.observations[3].entity_keys, vec!["person:ana"]);
    assert!(got.observations[2].entity_keys.is_empty());
    assert_eq!(
        got.observations[2].source_ids,
        vec![turns[2].fragment_id.clone()]
    );

    assert_eq!(got.entities.len(), 2);
    assert_eq!(got.entities[0].key, "person:ana");
    assert_eq!(got.entities[0].label, "Ana Lopez");
    assert_eq!(got.entities[0].kind, EntityKind::Person);
    assert_eq!(
        got.entities[0].source_ids,
        vec![turns[0].fragment_id.clone(), turns[2].fragment_id.clone()]
    );
    assert_eq!(got.entities[1].key, "date:2023-05-01/month");
    assert_eq!(got.entities[1].label, "May 2023");
}

#[test]
fn given_observations() {
    let mut t = turn(0, Role::User, "Mel: hi");
    t.observations = vec![
        " Mel met Ana yesterday. ".to_owned(),
        String::new(),
        "Mel likes tea.".to_owned(),
    ];
    let got: Vec<_> = given(&t).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].text, "Mel met Ana yesterday.");
    assert_eq!(got[0].subject, "Mel");
    assert_eq!(got[0].category, Category::Given);
    // The turn was said on 7 May 2023.
    assert_eq!(got[0].event_ms, Some(19_483 * DAY_MS));
    assert_eq!(got[1].event_ms, None);
    assert_eq!(got[1].source_ids, vec![t.fragment_id.clone()]);
}

#[test]
fn rejects_invalid_answers() {
    let turns = vec![turn(0, Role::User, "hi"), turn(1, Role::User, "there")];
    let obs = |fields: &str| format!(r#"{{"observations":[{{{fields}}}],"entities":[]}}"#);
    let long = "x".repeat(MAX_TEXT_CHARS + 1);
    let cases = [
        obs(r#""turn":2,"subject":"User","category":"other","text":"t""#),
        obs(r#""turn":0,"subject":"User","category":"given","text":"t""#),
        obs(r#""turn":0,"subject":"User","category":"Health","text":"t""#),
        obs(r#""turn":0,"subject":" ","category":"other","text":"t""#),
        obs(r#""turn":0,"subject":"User","category":"other","text":"  ""#),
        obs(&format!(
            r#""turn":0,"subject":"User","category":"other","text":"{long}""#
        )),
        obs(r#""turn":0,"subject":"User","category":"other","text":"t","date":"May 2023""#),
        obs(r#""turn":0,"subject":"User","category":"other","text":"t","date":"2023-02-30""#),
        r#"{"observations":[],"entities":[{"label":"A","kind":"animal","turns":[0]}]}"#.to_owned(),
        r#"{"observations":[],"entities":[{"label":"A","kind":"person","turns":[0,2]}]}"#
            .to_owned(),
        r#"{"observations":[],"entities":[{"label":"A","kind":"person","turns":[]}]}"#.to_owned(),
        r#"{"observations":[],"entities":[{"label":" ","kind":"person","turns":[0]}]}"#.to_owned(),
    ];
    for case in cases {
        assert!(to_extraction(&turns, answer(&case)).is_err(), "{case}");
    }
    // A text of exactly the limit passes; an empty date is no date.
    let ok = "x".repeat(MAX_TEXT_CHARS - 1) + ".";
    let case = obs(&format!(
        r#""turn":1,"subject":"User","category":"other","text":"{ok}","date":"""#
    ));
    let got = to_extraction(&turns, answer(&case)).unwrap();
    assert_eq!(got.observations[0].event_ms, None);
}

#[test]
fn merging() {
    let obs = |subject: &str, text: &str, category, id: &str| Observation {
        text: text.to_owned(),
        subject: subject.to_owned(),
        category,
        source_ids: vec![id.to_owned()],
        ts_ms: 0,
        event_ms: None,
        entity_keys: Vec::new(),
    };
    let ent = |key: &str, label: &str, id: &str| EntityMention {
        key: key.to_owned(),
        label: label.to_owned(),
        kind: EntityKind::Person,
        source_ids: vec![id.to_owned()],
    };
    let a = Extraction {
        observations: vec![
            obs("User", "User likes tea.", Category::Preference, "a"),
            obs("User", "User has a cat.", Category::Possession, "a"),
        ],
        entities: vec![ent("person:ana", "Ana", "a")],
        usage: crate::ExtractUsage {
            tokens_in: 1,
            tokens_out: 2,
        },
        fallback: None,
    };
    let b = Extraction {
        observations: vec![
            obs("User", "User likes tea.", Category::Given, "b"),
            obs("Ana", "User has a cat.", Category::Possession, "b"),
        ],
        entities: vec![
            ent("person:bo", "Bo", "b"),
            ent("person:ana", "Ana Lopez", "b"),
        ],
        usage: crate::ExtractUsage {
            tokens_in: 10,
            tokens_out: 20,
        },
        fallback: None,
    };
    let got = merge(vec![a, b]);
    assert_eq!(got.observations.len(), 3);
    assert_eq!(got.observations[0].category, Category::Given);
    assert_eq!(got.observations[0].source_ids, vec!["a", "b"]);
    assert_eq!(got.observations[2].subject, "Ana");
    assert_eq!(got.entities.len(), 2);
    assert_eq!(got.entities[0].label, "Ana Lopez");
    assert_eq!(got.entities[0].source_ids, vec!["a", "b"]);
    assert_eq!(
        got.usage,
        crate::ExtractUsage {
            tokens_in: 11,
            tokens_out: 22
        }
    );
}

mod hostile {
    //! The model's answer is text nobody here wrote: whatever strings it
    //! holds, mapping validates or refuses them, never panics.

    use super::super::super::wire::{AnswerEntity, AnswerObservation};
    use super::*;
    use engram_testkit::text::hostile_text;
    use proptest::prelude::*;

    const CATEGORIES: &[&str] = &["preference", "plan", "health", "event", "other", "x"];
    const KINDS: &[&str] = &[
        "person",
        "place",
        "organization",
        "product",
        "date",
        "quantity",
        "?",
    ];

    fn observation() -> impl Strategy<Value = AnswerObservation> {
        (
            0usize..4,
            hostile_text(),
            proptest::sample::select(CATEGORIES),
            hostile_text(),
            proptest::option::of(prop_oneof![
                hostile_text(),
                Just("2023-05-07".to_string()),
                Just("2023-02".to_string())
            ]),
        )
            .prop_map(|(turn, subject, category, text, date)| AnswerObservation {
                turn,
                subject,
                category: category.to_string(),
                text,
                date,
            })
    }

    fn entity() -> impl Strategy<Value = AnswerEntity> {
        (
            hostile_text(),
            proptest::sample::select(KINDS),
            proptest::collection::vec(0usize..4, 0..3),
        )
            .prop_map(|(label, kind, turns)| AnswerEntity {
                label,
                kind: kind.to_string(),
                turns,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn mapping_hostile_answers_never_panics(
            texts in proptest::collection::vec(hostile_text(), 3),
            observations in proptest::collection::vec(observation(), 0..4),
            entities in proptest::collection::vec(entity(), 0..4),
        ) {
            let turns: Vec<TurnInput> = texts
                .iter()
                .enumerate()
                .map(|(n, t)| turn(n, Role::User, t))
                .collect();
            if let Ok(x) = to_extraction(&turns, Answer { observations, entities }) {
                for o in &x.observations {
                    prop_assert!(!o.text.is_empty());
                    prop_assert!(o.text.chars().count() <= MAX_TEXT_CHARS + 1);
                }
            }
        }

        #[test]
        fn dates_and_labels_never_panic(s in hostile_text()) {
            let _ = parse_date(&s);
            for kind in [EntityKind::Person, EntityKind::Place, EntityKind::Date] {
                let _ = normalize(kind, &s);
            }
            let _ = date_key(&s, 1_683_468_180_000);
            let _ = contains_word(&s.to_lowercase(), "ana");
        }
    }
}
