//! The LLM extractor against a scripted OpenAI-compatible server on
//! 127.0.0.1: what it sends, what it makes of good answers, and how it
//! falls back to the rules on bad ones.

use std::time::{Duration, Instant};

use engram_core::{EntityKind, Role};
use engram_extract::{
    Category, EntityMention, ExtractUsage, Extraction, Extractor, LlmConfig, LlmExtractor,
    Observation, RuleExtractor, TurnInput,
};
use engram_testkit::chat::{ChatServer as Server, Script, completion};
use serde_json::{Value, json};

/// 2023-05-07T14:03:00Z.
const T0: i64 = 1_683_468_180_000;
/// 2023-05-07T00:00:00Z.
const MAY_7_2023: i64 = 1_683_417_600_000;

fn config(url: &str) -> LlmConfig {
    LlmConfig {
        url: url.to_owned(),
        model: "test-model".to_owned(),
        api_key: Some("sk-test".to_owned()),
        timeout: Duration::from_secs(10),
        max_turns_per_call: 16,
        max_input_chars: 12_000,
        max_output_tokens: 1024,
        temperature: 0.0,
    }
}

fn extractor(config: LlmConfig) -> LlmExtractor {
    LlmExtractor::new(config, RuleExtractor::new()).unwrap()
}

fn turn(n: usize, role: Role, text: &str) -> TurnInput {
    TurnInput {
        fragment_id: format!("{n:064x}"),
        role,
        text: text.to_owned(),
        ts_ms: T0 + n as i64 * 60_000,
        observations: Vec::new(),
    }
}

fn conversation() -> Vec<TurnInput> {
    vec![
        turn(
            0,
            Role::User,
            "I'm allergic to shellfish, and my friend Ana Lopez is coming to Lyon today.",
        ),
        turn(1, Role::Assistant, "Good to know! I'll keep that in mind."),
        turn(2, Role::User, "Ana loves sushi, funnily enough."),
    ]
}

fn id(n: usize) -> String {
    format!("{n:064x}")
}

fn good_answer() -> String {
    json!({
        "observations": [
            {"turn": 0, "subject": "User", "category": "health",
             "text": "User is allergic to shellfish.", "date": null},
            {"turn": 0, "subject": "Ana", "category": "plan",
             "text": "Ana Lopez is coming to Lyon on 7 May 2023.", "date": "2023-05-07"},
            {"turn": 2, "subject": "Ana", "category": "preference",
             "text": "Ana loves sushi.", "date": null}
        ],
        "entities": [
            {"label": "Ana Lopez", "kind": "person", "turns": [0]},
            {"label": "Lyon", "kind": "place", "turns": [0]},
            {"label": "Ana", "kind": "person", "turns": [2]}
        ]
    })
    .to_string()
}

/// (1) A valid answer is taken as the model said it; the request carries
/// the key, the model, JSON mode and the numbered turns.
#[tokio::test]
async fn valid_answer_is_used() {
    let server = Server::start(vec![completion(&good_answer(), 321, 88)]).await;
    let llm = extractor(config(&server.url));
    assert_eq!(llm.name(), "llm");
    let turns = conversation();
    let got = llm.extract(&turns).await.unwrap();

    let obs =
        |n: usize, subject: &str, category, text: &str, event_ms, keys: &[&str]| Observation {
            text: text.to_owned(),
            subject: subject.to_owned(),
            category,
            source_ids: vec![id(n)],
            ts_ms: turns[n].ts_ms,
            event_ms,
            entity_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        };
    let expected = Extraction {
        observations: vec![
            obs(
                0,
                "User",
                Category::Health,
                "User is allergic to shellfish.",
                None,
                &[],
            ),
            obs(
                0,
                "Ana",
                Category::Plan,
                "Ana Lopez is coming to Lyon on 7 May 2023.",
                Some(MAY_7_2023),
                &["person:ana", "place:lyon"],
            ),
            obs(
                2,
                "Ana",
                Category::Preference,
                "Ana loves sushi.",
                None,
                &["person:ana"],
            ),
        ],
        entities: vec![
            EntityMention {
                key: "person:ana".to_owned(),
                label: "Ana Lopez".to_owned(),
                kind: EntityKind::Person,
                source_ids: vec![id(0), id(2)],
            },
            EntityMention {
                key: "place:lyon".to_owned(),
                label: "Lyon".to_owned(),
                kind: EntityKind::Place,
                source_ids: vec![id(0)],
            },
        ],
        usage: ExtractUsage {
            tokens_in: 321,
            tokens_out: 88,
        },
        fallback: None,
    };
    assert_eq!(got, expected);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert!(
        req.head
            .starts_with("POST /v1/chat/completions HTTP/1.1\r\n")
    );
    assert_eq!(
        req.header("authorization").as_deref(),
        Some("Bearer sk-test")
    );
    assert!(
        req.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(req.body["model"], "test-model");
    assert_eq!(req.body["response_format"], json!({"type": "json_object"}));
    assert_eq!(req.body["max_tokens"], 1024);
    assert_eq!(req.body["temperature"], 0.0);
    assert_eq!(req.body["messages"][0]["role"], "system");
    let system = req.body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains(r#""observations""#) && system.contains("on 7 May 2023"));
    assert_eq!(req.body["messages"][1]["role"], "user");
    let user = req.user_message();
    for line in [
        "[0] 2023-05-07T14:03:00Z user: I'm allergic to shellfish, and my friend Ana Lopez is coming to Lyon today.",
        "[1] 2023-05-07T14:04:00Z assistant: Good to know! I'll keep that in mind.",
        "[2] 2023-05-07T14:05:00Z user: Ana loves sushi, funnily enough.",
    ] {
        assert!(user.lines().any(|l| l == line), "{line} not in {user}");
    }
}

/// The rules' output for `turns`, with the usage and fallback reason the
/// LLM extractor reports.
fn rules_output(turns: &[TurnInput], got: &Extraction, usage: ExtractUsage) -> Extraction {
    let mut expected = RuleExtractor::new().extract_sync(turns);
    expected.usage = usage;
    expected.fallback = got.fallback.clone();
    expected
}

/// (2) An answer that is not JSON, has an unknown field or a turn out of
/// range sends the batch to the rules; the tokens still count.
#[tokio::test]
async fn malformed_answers_fall_back_to_rules() {
    let turns = conversation();
    let cases = [
        ("{not json", "not the expected JSON"),
        (
            r#"{"observations":[],"entities":[],"notes":"extra"}"#,
            "unknown field",
        ),
        (
            r#"{"observations":[{"turn":0,"subject":"User","category":"health","text":"User is allergic.","date":null,"confidence":0.9}],"entities":[]}"#,
            "unknown field",
        ),
        (
            r#"{"observations":[{"turn":3,"subject":"User","category":"health","text":"User is allergic.","date":null}],"entities":[]}"#,
            "out of range",
        ),
        (
            r#"{"observations":[{"turn":0,"subject":"User","category":"mood","text":"User is happy.","date":null}],"entities":[]}"#,
            "unknown category",
        ),
        (
            r#"{"observations":[{"turn":0,"subject":"User","category":"event","text":"User met Ana.","date":"May 2023"}],"entities":[]}"#,
            "date",
        ),
    ];
    for (content, why) in cases {
        let server = Server::start(vec![completion(content, 50, 7)]).await;
        let got = extractor(config(&server.url))
            .extract(&turns)
            .await
            .unwrap();
        let usage = ExtractUsage {
            tokens_in: 50,
            tokens_out: 7,
        };
        assert_eq!(got, rules_output(&turns, &got, usage), "{content}");
        let reason = got.fallback.expect("fallback reason");
        assert!(reason.contains(why), "{content}: {reason}");
        assert_eq!(server.requests().len(), 1);
    }

    // A body that is not a chat completion at all.
    let server = Server::start(vec![Script::Reply(200, "<html>oops</html>".to_owned())]).await;
    let got = extractor(config(&server.url))
        .extract(&turns)
        .await
        .unwrap();
    assert_eq!(got, rules_output(&turns, &got, ExtractUsage::default()));
    assert!(got.fallback.unwrap().contains("not JSON"));

    // No choices: usage still counted.
    let body = json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 0}});
    let server = Server::start(vec![Script::Reply(200, body.to_string())]).await;
    let got = extractor(config(&server.url))
        .extract(&turns)
        .await
        .unwrap();
    let usage = ExtractUsage {
        tokens_in: 9,
        tokens_out: 0,
    };
    assert_eq!(got, rules_output(&turns, &got, usage));
    assert!(got.fallback.unwrap().contains("no choices"));
}

/// (3) An error status falls back; so does a refused connection.
#[tokio::test]
async fn error_status_and_refused_connection_fall_back() {
    let turns = conversation();
    let server = Server::start(vec![Script::Reply(
        500,
        r#"{"error":{"message":"model overloaded"}}"#.to_owned(),
    )])
    .await;
    let got = extractor(config(&server.url))
        .extract(&turns)
        .await
        .unwrap();
    assert_eq!(got, rules_output(&turns, &got, ExtractUsage::default()));
    let reason = got.fallback.unwrap();
    assert!(reason.contains("500"), "{reason}");
    assert!(reason.contains("model overloaded"), "{reason}");

    // Nothing listens on a port just released.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let started = Instant::now();
    let got = extractor(config(&url)).extract(&turns).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(got, rules_output(&turns, &got, ExtractUsage::default()));
    assert!(got.fallback.is_some());
}

/// (4) A server that never answers: the timeout is honoured.
#[tokio::test]
async fn silent_server_times_out_and_falls_back() {
    let turns = conversation();
    let server = Server::start(vec![Script::Hang]).await;
    let llm = extractor(LlmConfig {
        timeout: Duration::from_millis(300),
        ..config(&server.url)
    });
    let started = Instant::now();
    let got = llm.extract(&turns).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(got, rules_output(&turns, &got, ExtractUsage::default()));
    let reason = got.fallback.unwrap();
    assert!(reason.contains("timed out"), "{reason}");
    assert_eq!(server.requests().len(), 1);
}

/// (5) Caller-supplied observations are kept, first for their turn, even
/// when the model leaves them out — and when it fails.
#[tokio::test]
async fn caller_observations_survive() {
    let mut turns = conversation();
    turns[2].observations = vec![
        "Ana is User's oldest friend.".to_owned(),
        "  trimmed  ".to_owned(),
        // Blank: left out, as the rules do.
        "   ".to_owned(),
    ];
    let server = Server::start(vec![
        completion(&good_answer(), 10, 10),
        completion("{not json", 10, 10),
    ])
    .await;
    let llm = extractor(config(&server.url));

    let got = llm.extract(&turns).await.unwrap();
    assert!(got.fallback.is_none());
    let listed: Vec<_> = got
        .observations
        .iter()
        .map(|o| (o.text.as_str(), o.category, o.source_ids[0].as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("User is allergic to shellfish.", Category::Health, &*id(0)),
            (
                "Ana Lopez is coming to Lyon on 7 May 2023.",
                Category::Plan,
                &*id(0)
            ),
            ("Ana is User's oldest friend.", Category::Given, &*id(2)),
            ("trimmed", Category::Given, &*id(2)),
            ("Ana loves sushi.", Category::Preference, &*id(2)),
        ]
    );
    let given = &got.observations[2];
    assert_eq!(given.subject, "User");
    assert_eq!(given.ts_ms, turns[2].ts_ms);
    assert_eq!(given.entity_keys, vec!["person:ana"]);

    // The rules keep them too, the same way.
    let mapped = got;
    let got = llm.extract(&turns).await.unwrap();
    assert!(got.fallback.is_some());
    let given = |e: &Extraction| -> Vec<(String, String, Option<i64>)> {
        e.observations
            .iter()
            .filter(|o| o.category == Category::Given)
            .map(|o| (o.subject.clone(), o.text.clone(), o.event_ms))
            .collect()
    };
    assert_eq!(given(&got), given(&mapped));
    assert_eq!(given(&got).len(), 2);
}

/// (6) Five turns, two per call: three requests, answers mapped back to
/// the right turns and concatenated in order, usage summed.
#[tokio::test]
async fn batches_are_split() {
    let turns: Vec<_> = [
        "I live in Lyon.",
        "Nice city.",
        "I started working at Acme last month.",
        "Congratulations!",
        "My daughter Mia turned 5.",
    ]
    .iter()
    .enumerate()
    .map(|(n, text)| {
        turn(
            n,
            if n % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            },
            text,
        )
    })
    .collect();
    let reply =
        |obs: Value, ents: Value| json!({"observations": obs, "entities": ents}).to_string();
    let server = Server::start(vec![
        completion(
            &reply(
                json!([{"turn": 0, "subject": "User", "category": "place", "text": "User lives in Lyon.", "date": null}]),
                json!([{"label": "Lyon", "kind": "place", "turns": [0, 1]}]),
            ),
            100,
            10,
        ),
        completion(
            &reply(
                json!([{"turn": 0, "subject": "User", "category": "work", "text": "User started working at Acme in April 2023.", "date": "2023-04"}]),
                json!([{"label": "Acme", "kind": "organization", "turns": [0]}]),
            ),
            200,
            20,
        ),
        completion(
            &reply(
                json!([
                    {"turn": 0, "subject": "User", "category": "relationship", "text": "User's daughter Mia turned 5.", "date": null},
                    // Repeats the first call's fact: kept once.
                    {"turn": 0, "subject": "User", "category": "place", "text": "User lives in Lyon.", "date": null}
                ]),
                json!([{"label": "Mia", "kind": "person", "turns": [0]}]),
            ),
            300,
            30,
        ),
    ])
    .await;
    let llm = extractor(LlmConfig {
        max_turns_per_call: 2,
        ..config(&server.url)
    });
    let got = llm.extract(&turns).await.unwrap();
    assert!(got.fallback.is_none(), "{:?}", got.fallback);

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for (req, first) in requests.iter().zip([0usize, 2, 4]) {
        let user = req.user_message();
        let lines: Vec<_> = user.lines().filter(|l| l.starts_with('[')).collect();
        let expected = (first..(first + 2).min(5)).count();
        assert_eq!(lines.len(), expected, "{user}");
        assert!(lines[0].starts_with("[0] "));
        assert!(lines[0].ends_with(turns[first].text.as_str()), "{user}");
    }

    let listed: Vec<_> = got
        .observations
        .iter()
        .map(|o| (o.text.as_str(), o.source_ids.clone(), o.entity_keys.clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "User lives in Lyon.",
                vec![id(0), id(4)],
                vec!["place:lyon".to_owned()]
            ),
            (
                "User started working at Acme in April 2023.",
                vec![id(2)],
                vec!["organization:acme".to_owned()]
            ),
            (
                "User's daughter Mia turned 5.",
                vec![id(4)],
                vec!["person:mia".to_owned()]
            ),
        ]
    );
    assert_eq!(got.observations[1].event_ms, Some(1_680_307_200_000));
    let entities: Vec<_> = got
        .entities
        .iter()
        .map(|e| (e.key.as_str(), e.source_ids.clone()))
        .collect();
    assert_eq!(
        entities,
        vec![
            ("place:lyon", vec![id(0), id(1)]),
            ("organization:acme", vec![id(2)]),
            ("person:mia", vec![id(4)]),
        ]
    );
    assert_eq!(
        got.usage,
        ExtractUsage {
            tokens_in: 600,
            tokens_out: 60
        }
    );
}

/// One failed call of three falls back for its own turns only.
#[tokio::test]
async fn one_failed_call_falls_back_alone() {
    let turns: Vec<_> = (0..5)
        .map(|n| {
            turn(
                n,
                Role::User,
                &format!("I adopted a cat named Tom {n} days ago."),
            )
        })
        .collect();
    let empty = json!({"observations": [], "entities": []}).to_string();
    let server = Server::start(vec![
        completion(&empty, 1, 1),
        Script::Reply(503, "{}".to_owned()),
        completion(&empty, 1, 1),
    ])
    .await;
    let llm = extractor(LlmConfig {
        max_turns_per_call: 2,
        ..config(&server.url)
    });
    let got = llm.extract(&turns).await.unwrap();
    let rules = RuleExtractor::new().extract_sync(&turns[2..4]);
    assert_eq!(got.observations, rules.observations);
    assert_eq!(got.entities, rules.entities);
    assert_eq!(
        got.usage,
        ExtractUsage {
            tokens_in: 2,
            tokens_out: 2
        }
    );
    let reason = got.fallback.unwrap();
    assert!(
        reason.starts_with("call 2 of 3: http status 503"),
        "{reason}"
    );
}

/// A long turn is cut to fit `max_input_chars`; calls split by size.
#[tokio::test]
async fn prompt_size_is_bounded() {
    let turns = vec![
        turn(0, Role::User, "short one"),
        turn(1, Role::User, &"long ".repeat(400)),
        turn(2, Role::User, "short two"),
    ];
    let empty = json!({"observations": [], "entities": []}).to_string();
    let server = Server::start(vec![
        completion(&empty, 0, 0),
        completion(&empty, 0, 0),
        completion(&empty, 0, 0),
    ])
    .await;
    let llm = extractor(LlmConfig {
        max_input_chars: 300,
        ..config(&server.url)
    });
    let got = llm.extract(&turns).await.unwrap();
    assert!(got.fallback.is_none());
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for req in &requests {
        let lines: usize = req
            .user_message()
            .lines()
            .filter(|l| l.starts_with('['))
            .map(|l| l.chars().count() + 1)
            .sum();
        assert!(lines <= 300, "{lines}");
    }
    assert!(requests[1].user_message().contains("long long"));
    assert!(requests[1].user_message().contains('…'));

    // Nothing to extract: no call.
    assert_eq!(llm.extract(&[]).await.unwrap(), Extraction::default());
    assert_eq!(server.requests().len(), 3);
}
