//! Enrichment that earns its name, end to end on the embedded default:
//! extracted observations point to their sources, entities are merged and
//! linked, deep recall finds what active misses, the timeline is in order.

use engram_proto::v1::*;
use engram_tests::{TestServer, authed, token};
use std::time::Duration;

const JOB_WAIT: Duration = Duration::from_secs(60);

fn scope(org: &str, session: &str) -> Option<Scope> {
    Some(Scope {
        org_id: org.into(),
        user_id: String::new(),
        session_id: session.into(),
    })
}

fn turn(role: &str, text: &str, ts: &str) -> Turn {
    Turn {
        role: role.into(),
        text: text.into(),
        timestamp: ts.into(),
        observations: Vec::new(),
    }
}

fn recall(org: &str, q: &str, mode: RecallMode, top_k: i32) -> RecallRequest {
    RecallRequest {
        // Empty session: every session of the user.
        scope: scope(org, ""),
        q: q.into(),
        mode: mode as i32,
        top_k: Some(top_k),
        include_timeline: true,
        filter: None,
        collection_ids: Vec::new(),
    }
}

/// Writes `turns` into `session` and waits until enrichment is done;
/// returns the turns' fragment ids.
async fn remember(
    server: &TestServer,
    tok: &str,
    org: &str,
    session: &str,
    turns: Vec<Turn>,
) -> anyhow::Result<Vec<String>> {
    let r = server
        .ingest()
        .await?
        .remember(authed(
            RememberRequest {
                scope: scope(org, session),
                turns,
                options: None,
                metadata: None,
            },
            tok,
        ))
        .await?
        .into_inner();
    let job = server
        .wait_job(tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
        .await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    Ok(r.active_fragment_ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_and_entities_point_back_to_their_turns() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_e", "u1", 3600);
    let ids = remember(
        &server,
        &tok,
        "org_e",
        "chat-1",
        vec![
            turn("user", "I'm allergic to shellfish.", "2026-01-10T09:00:00Z"),
            turn(
                "user",
                "My sister Ana moved to Lyon last May.",
                "2026-01-10T09:01:00Z",
            ),
        ],
    )
    .await?;
    let later = remember(
        &server,
        &tok,
        "org_e",
        "chat-2",
        vec![turn(
            "user",
            "Ana Lopez is starting a new job at Airbus next week.",
            "2026-02-02T18:00:00Z",
        )],
    )
    .await?;

    let mut rc = server.recall().await?;
    let resp = rc
        .recall(authed(
            recall(
                "org_e",
                "what is the user allergic to?",
                RecallMode::Deep,
                10,
            ),
            &tok,
        ))
        .await?
        .into_inner();
    let hits = resp.hits.unwrap();
    // The turn itself is a hit; its observation says nothing new and is
    // dropped as a repeat, or says it and points back to the turn.
    assert!(hits.turns.iter().any(|h| h.id == ids[0]), "{hits:?}");
    for o in &hits.observations {
        assert_eq!(o.kind(), HitKind::Observation);
        assert!(!o.source_ids.is_empty(), "{o:?}");
    }

    // The relative month is resolved against the turn's date, and the
    // observation cites its turn.
    let resp = rc
        .recall(authed(
            recall("org_e", "When did Ana move to Lyon?", RecallMode::Deep, 10),
            &tok,
        ))
        .await?
        .into_inner();
    let hits = resp.hits.unwrap();
    let moved = hits
        .observations
        .iter()
        .find(|o| o.text.contains("Lyon"))
        .unwrap_or_else(|| panic!("no observation about the move: {hits:?}"));
    assert!(moved.text.contains("May 2025"), "{moved:?}");
    assert_eq!(moved.source_ids, vec![ids[1].clone()]);
    assert_eq!(moved.kind(), HitKind::Observation);

    // "Ana" and "Ana Lopez" in two sessions are one person, mentioned twice.
    let ana = hits
        .entities
        .iter()
        .find(|e| e.label.starts_with("Ana"))
        .unwrap_or_else(|| panic!("no entity for Ana: {:?}", hits.entities));
    assert_eq!(ana.label, "Ana Lopez");
    assert_eq!(ana.kind, "person");
    assert_eq!(ana.mentions, 2);
    assert!(ana.id.as_deref().is_some_and(|id| id.len() == 64));
    assert!((0.0..=1.0).contains(&ana.score));
    assert!(ids.len() == 2 && later.len() == 1);

    // The timeline is chronological: by when things happened, the move
    // (May 2025) before the allergy statement (January 2026).
    let timeline = resp.timeline.unwrap();
    let lines: Vec<&str> = timeline.lines().collect();
    let mut dates: Vec<&str> = lines.iter().map(|l| &l[..10]).collect();
    let sorted = {
        let mut d = dates.clone();
        d.sort();
        d
    };
    assert_eq!(dates, sorted, "{timeline}");
    dates.dedup();
    assert!(
        lines.iter().any(|l| l.starts_with("2025-05-01 | Ana |")),
        "{timeline}"
    );
    // The same memory renders the same timeline.
    let again = rc
        .recall(authed(
            recall("org_e", "When did Ana move to Lyon?", RecallMode::Deep, 10),
            &tok,
        ))
        .await?
        .into_inner();
    assert_eq!(again.timeline.unwrap(), timeline);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_finds_what_active_misses() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_d", "u1", 3600);
    // The answer ("pottery") shares no word with the question; what ties
    // them is the time ("in May 2023") and the conversation around it.
    let ids = remember(
        &server,
        &tok,
        "org_d",
        "chat-1",
        vec![
            turn(
                "user",
                "What should I do with Ana this weekend? We always do the same things.",
                "2023-03-01T10:00:00Z",
            ),
            turn(
                "assistant",
                "You and Ana could do something new together, like a class.",
                "2023-03-01T10:00:05Z",
            ),
            turn(
                "user",
                "Ana and I did a hike together in the hills.",
                "2023-03-04T10:00:00Z",
            ),
            turn(
                "user",
                "Spent the whole weekend at the pottery studio, throwing bowls.",
                "2023-05-14T10:00:00Z",
            ),
            turn(
                "user",
                "Ana came along and loved it.",
                "2023-05-14T10:00:30Z",
            ),
            turn(
                "user",
                "Ana and I did a picnic together by the lake.",
                "2023-08-20T10:00:00Z",
            ),
        ],
    )
    .await?;
    let pottery = &ids[3];
    let q = "What did I do with Ana in May 2023?";
    let mut rc = server.recall().await?;
    let active = rc
        .recall(authed(recall("org_d", q, RecallMode::Active, 2), &tok))
        .await?
        .into_inner();
    let deep = rc
        .recall(authed(recall("org_d", q, RecallMode::Deep, 2), &tok))
        .await?
        .into_inner();
    let active_ids: Vec<&str> = active
        .hits
        .as_ref()
        .unwrap()
        .turns
        .iter()
        .map(|h| h.id.as_str())
        .collect();
    let deep_hits = deep.hits.clone().unwrap();
    let deep_ids: Vec<&str> = deep_hits.turns.iter().map(|h| h.id.as_str()).collect();
    assert!(
        !active_ids.contains(&pottery.as_str()),
        "active: {active:?}"
    );
    assert!(deep_ids.contains(&pottery.as_str()), "deep: {deep_hits:?}");
    assert_eq!(deep.mode(), RecallMode::Deep);
    assert!((0.0..=1.0).contains(&deep.confidence));
    server.stop().await
}
