//! Remember and recall over a real socket on the embedded default.

use engram_proto::v1::*;
use engram_tests::{TestServer, authed, claims, token};
use tonic::Code;
use tonic_types::StatusExt;

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
        observations: vec![],
    }
}

fn seed_request(org: &str) -> RememberRequest {
    RememberRequest {
        scope: scope(org, "chat-1"),
        turns: vec![
            turn("user", "I'm allergic to shellfish.", "2026-05-08T14:00:00Z"),
            turn("assistant", "Got it.", "2026-05-08T14:00:01Z"),
            turn(
                "user",
                "My favourite colour is green.",
                "2026-05-08T14:01:00Z",
            ),
            turn(
                "user",
                "I drive a blue Toyota to work.",
                "2026-05-08T14:02:00Z",
            ),
        ],
        options: None,
        metadata: None,
    }
}

fn recall_req(org: &str, q: &str, top_k: Option<i32>) -> RecallRequest {
    RecallRequest {
        scope: scope(org, "chat-1"),
        q: q.into(),
        mode: RecallMode::Active as i32,
        top_k,
        include_timeline: false,
        filter: None,
        collection_ids: Vec::new(),
    }
}

fn violation_fields(s: &tonic::Status) -> Vec<String> {
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|f| f.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_recall_idempotency_isolation_and_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_a", "u1", 600);
    let mut ingest = server.ingest().await?;
    let mut recall = server.recall().await?;

    // Remember, then the seed's question finds the allergy first.
    let first = ingest
        .remember(authed(seed_request("org_a"), &tok))
        .await?
        .into_inner();
    assert_eq!(first.job_id.len(), 32);
    assert_eq!(first.active_fragment_ids.len(), 4);
    assert!(first.active_fragment_ids.iter().all(|id| id.len() == 64));
    assert!(first.usage.unwrap().tokens_in > 0);
    // Enrichment is on by default: the job id doubles as the passive job.
    assert_eq!(first.passive_job_id.as_deref(), Some(first.job_id.as_str()));

    let r = recall
        .recall(authed(
            recall_req("org_a", "any food restrictions?", Some(3)),
            &tok,
        ))
        .await?
        .into_inner();
    let hits = r.hits.unwrap();
    assert_eq!(hits.turns.len(), 3);
    let top = &hits.turns[0];
    assert_eq!(
        top.text,
        "[Date: 2026-05-08T14:00:00Z] [user] I'm allergic to shellfish."
    );
    assert_eq!(top.id, first.active_fragment_ids[0]);
    assert_eq!(top.timestamp, "1778248800000");
    assert_eq!(top.kind, HitKind::Turn as i32);
    // Scores are in (0, 1] and rank the hits: the third hit, matched by
    // neither retriever first, cannot score like the first.
    assert!(hits.turns.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hits.turns.iter().all(|h| h.score > 0.0 && h.score <= 1.0));
    assert!(hits.turns[2].score < top.score, "{:?}", hits.turns);
    assert!((0.0..=1.0).contains(&r.confidence));
    assert_eq!(r.mode, RecallMode::Active as i32);
    assert!(r.timeline.is_none());
    let usage = r.usage.unwrap();
    assert!(usage.tokens_in > 0 && usage.tokens_out > 0);

    // Timeline: chronological.
    let mut req = recall_req("org_a", "what do you know about me?", None);
    req.include_timeline = true;
    let r = recall.recall(authed(req, &tok)).await?.into_inner();
    let tl = r.timeline.expect("timeline asked for");
    // One `date | who | what` line per turn, in the order they were said
    // (all on one day, so the order within the day is by time). Lines of
    // observations join them once enrichment has run, which this test
    // does not wait for.
    let lines: Vec<&str> = tl
        .lines()
        .filter(|l| l.contains(" | user | ") || l.contains(" | assistant | "))
        .collect();
    assert!(tl.lines().all(|l| l.starts_with("2026-05-08 | ")), "{tl}");
    assert_eq!(
        lines,
        vec![
            "2026-05-08 | user | I'm allergic to shellfish.",
            "2026-05-08 | assistant | Got it.",
            "2026-05-08 | user | My favourite colour is green.",
            "2026-05-08 | user | I drive a blue Toyota to work.",
        ],
        "{tl}"
    );

    // Idempotency: same job id and fragments, zero usage, nothing new stored.
    let again = ingest
        .remember(authed(seed_request("org_a"), &tok))
        .await?
        .into_inner();
    assert_eq!(again.job_id, first.job_id);
    assert_eq!(again.active_fragment_ids, first.active_fragment_ids);
    assert_eq!(again.usage.unwrap().tokens_in, 0);
    let r = recall
        .recall(authed(
            recall_req("org_a", "shellfish allergy", Some(30)),
            &tok,
        ))
        .await?
        .into_inner();
    assert_eq!(r.hits.unwrap().turns.len(), 4, "one fragment per turn");

    // Isolation: org B sees nothing of org A, and cannot forge scope.org_id.
    let tok_b = token("org_b", "u1", 600);
    let r = recall
        .recall(authed(
            recall_req("org_b", "any food restrictions?", None),
            &tok_b,
        ))
        .await?
        .into_inner();
    assert!(r.hits.unwrap().turns.is_empty());
    let e = recall
        .recall(authed(
            recall_req("org_a", "any food restrictions?", None),
            &tok_b,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = ingest
        .remember(authed(seed_request("org_a"), &tok_b))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Restart on the same data directory: memory is still there.
    server.stop().await?;
    let server = TestServer::start(dir.path()).await?;
    let mut recall = server.recall().await?;
    let r = recall
        .recall(authed(
            recall_req("org_a", "any food restrictions?", Some(1)),
            &tok,
        ))
        .await?
        .into_inner();
    assert_eq!(r.hits.unwrap().turns[0].id, first.active_fragment_ids[0]);
    let mut ingest = server.ingest().await?;
    let again = ingest
        .remember(authed(seed_request("org_a"), &tok))
        .await?
        .into_inner();
    assert_eq!(
        again.usage.unwrap().tokens_in,
        0,
        "restart keeps idempotency"
    );
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_and_auth_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_a", "u1", 600);
    let mut ingest = server.ingest().await?;
    let mut recall = server.recall().await?;

    let cases: Vec<(RememberRequest, &str)> = vec![
        (
            RememberRequest {
                turns: vec![],
                ..seed_request("org_a")
            },
            "turns",
        ),
        (
            RememberRequest {
                turns: vec![turn("user", "  ", "2026-05-08T14:00:00Z")],
                ..seed_request("org_a")
            },
            "turns[0].text",
        ),
        (
            RememberRequest {
                turns: vec![turn("user", &"x".repeat(16_001), "2026-05-08T14:00:00Z")],
                ..seed_request("org_a")
            },
            "turns[0].text",
        ),
        (
            RememberRequest {
                turns: vec![turn("user", "hi", "yesterday")],
                ..seed_request("org_a")
            },
            "turns[0].timestamp",
        ),
        (
            RememberRequest {
                turns: vec![turn("robot", "hi", "2026-05-08T14:00:00Z")],
                ..seed_request("org_a")
            },
            "turns[0].role",
        ),
        (
            RememberRequest {
                scope: scope("", "chat-1"),
                ..seed_request("org_a")
            },
            "scope.org_id",
        ),
    ];
    for (req, field) in cases {
        let e = ingest.remember(authed(req, &tok)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violation_fields(&e), [field]);
    }
    let recall_cases = vec![
        (recall_req("org_a", "", None), "q"),
        (recall_req("org_a", "x", Some(0)), "top_k"),
        (recall_req("org_a", "x", Some(51)), "top_k"),
        (recall_req("", "x", None), "scope.org_id"),
    ];
    for (req, field) in recall_cases {
        let e = recall.recall(authed(req, &tok)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violation_fields(&e), [field]);
    }
    // top_k 50 is valid and capped at 30 at run time.
    recall
        .recall(authed(recall_req("org_a", "x", Some(50)), &tok))
        .await?;

    // Missing, expired and wrongly signed tokens.
    let e = recall
        .recall(tonic::Request::new(recall_req("org_a", "x", None)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = recall
        .recall(authed(
            recall_req("org_a", "x", None),
            &token("org_a", "u1", -300),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let forged = engram_auth::mint_hs256(
        b"some-other-secret-0123456789abcdef",
        &claims("org_a", "u1", 600),
    )?;
    let e = ingest
        .remember(authed(seed_request("org_a"), &forged))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_public_key_configuration_accepts_only_its_tokens() -> anyhow::Result<()> {
    let keys =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/engram-auth/testdata");
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.auth.hs256_secret = None;
        c.auth.es256_public_key_file = Some(keys.join("es256-public.pem"));
    })
    .await?;
    let private = std::fs::read(keys.join("es256-private.pem"))?;
    let es_token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims("org_a", "u1", 600),
        &jsonwebtoken::EncodingKey::from_ec_pem(&private)?,
    )?;
    let mut ingest = server.ingest().await?;
    let mut recall = server.recall().await?;
    ingest
        .remember(authed(seed_request("org_a"), &es_token))
        .await?;
    let hits = recall
        .recall(authed(
            recall_req("org_a", "any food restrictions?", Some(1)),
            &es_token,
        ))
        .await?
        .into_inner()
        .hits
        .unwrap_or_default();
    assert!(hits.turns[0].text.contains("shellfish"), "{:?}", hits.turns);

    // An HS256 token is refused outright once the server trusts a public
    // key, even one signed with a secret the server once had.
    let e = recall
        .recall(authed(
            recall_req("org_a", "x", None),
            &token("org_a", "u1", 600),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    server.stop().await?;
    Ok(())
}
