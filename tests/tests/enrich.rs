//! Enrichment on the embedded default: Remember → local queue → consumer →
//! observation points → job ready → Recall, and the job RPC's contract.

use engram_proto::v1::*;
use engram_tests::{TestServer, authed, token};
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt;

const JOB_WAIT: Duration = Duration::from_secs(30);

fn scope(org: &str) -> Option<Scope> {
    Some(Scope {
        org_id: org.into(),
        user_id: String::new(),
        session_id: "chat-1".into(),
    })
}

fn turn(text: &str, ts: &str, observations: &[&str]) -> Turn {
    Turn {
        role: "user".into(),
        text: text.into(),
        timestamp: ts.into(),
        observations: observations.iter().map(|s| s.to_string()).collect(),
    }
}

fn request(org: &str, options: Option<RememberOptions>) -> RememberRequest {
    RememberRequest {
        scope: scope(org),
        turns: vec![
            turn(
                "I'm allergic to shellfish.",
                "2026-05-08T14:00:00Z",
                &["User is allergic to shellfish."],
            ),
            turn(
                "We're flying to Lisbon on Friday.",
                "2026-05-08T14:01:00Z",
                &["User travels to Lisbon on Friday 2026-05-15."],
            ),
        ],
        options,
        metadata: None,
    }
}

fn recall(org: &str, q: &str) -> RecallRequest {
    RecallRequest {
        scope: scope(org),
        q: q.into(),
        mode: RecallMode::Active as i32,
        top_k: Some(10),
        include_timeline: false,
        filter: None,
        collection_ids: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_observations_become_recallable_once_the_job_is_ready() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_a", "u1", 3600);
    let mut ingest = server.ingest().await?;
    let r = ingest
        .remember(authed(request("org_a", None), &tok))
        .await?
        .into_inner();
    let job_id = r
        .passive_job_id
        .clone()
        .expect("enrichment is on by default");
    assert_eq!(r.active_fragment_ids.len(), 2);

    let job = server.wait_job(&tok, &job_id, JOB_WAIT).await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    // Two caller observations, and the extractor's own: its "User is
    // allergic to shellfish." is the caller's and counts once; the flight
    // adds one with the date resolved.
    assert_eq!((job.turns, job.observations, job.attempts), (2, 3, 1));
    assert!(job.entities >= 1, "Lisbon at least: {job:?}");
    assert_eq!(
        job.usage.unwrap_or_default(),
        Usage::default(),
        "rules spend no tokens"
    );
    assert!(job.extractor_fallback.is_empty());
    assert!(job.error.is_empty());
    let (created, updated) = (job.created_at.unwrap(), job.updated_at.unwrap());
    assert!(
        updated.seconds * 1000 + i64::from(updated.nanos / 1_000_000)
            >= created.seconds * 1000 + i64::from(created.nanos / 1_000_000)
    );

    let mut rc = server.recall().await?;
    let hits = rc
        .recall(authed(
            recall("org_a", "what is the user allergic to?"),
            &tok,
        ))
        .await?
        .into_inner()
        .hits
        .unwrap();
    // The allergy turn is returned, so the observation that only repeats
    // it is not; the flight's caller observation adds a date and is.
    let obs: Vec<&str> = hits.observations.iter().map(|h| h.text.as_str()).collect();
    assert!(
        hits.turns
            .iter()
            .any(|h| h.text.ends_with("I'm allergic to shellfish.")),
        "{hits:?}"
    );
    assert!(!obs.contains(&"User is allergic to shellfish."), "{obs:?}");
    assert!(
        obs.contains(&"User travels to Lisbon on Friday 2026-05-15."),
        "{obs:?}"
    );
    assert!(
        hits.observations
            .iter()
            .all(|h| h.kind() == HitKind::Observation && h.source_ids.len() == 1)
    );
    // The observation carries its turn's time.
    let flight = hits
        .observations
        .iter()
        .find(|h| h.text.starts_with("User travels"))
        .unwrap();
    assert_eq!(flight.timestamp, "1778248860000");
    assert_eq!(flight.source_ids, vec![r.active_fragment_ids[1].clone()]);

    // Re-sending the write neither re-runs the job nor duplicates its points.
    let again = ingest
        .remember(authed(request("org_a", None), &tok))
        .await?
        .into_inner();
    assert_eq!(again.passive_job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(again.usage.unwrap().tokens_in, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = server.wait_job(&tok, &job_id, JOB_WAIT).await?;
    assert_eq!(job.attempts, 1);
    let hits = rc
        .recall(authed(recall("org_a", "flying to Lisbon"), &tok))
        .await?
        .into_inner()
        .hits
        .unwrap();
    let flights = hits
        .observations
        .iter()
        .filter(|h| h.text == "User travels to Lisbon on Friday 2026-05-15.")
        .count();
    assert_eq!(flights, 1, "{hits:?}");
    let job = server.wait_job(&tok, &job_id, JOB_WAIT).await?;
    assert_eq!(
        job.observations, 3,
        "a redelivery would not add points anyway"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_only_write_stores_observations_but_no_turns() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_p", "u1", 3600);
    let mut ingest = server.ingest().await?;
    let options = Some(RememberOptions {
        write_active: Some(false),
        write_passive: Some(true),
    });
    let r = ingest
        .remember(authed(request("org_p", options), &tok))
        .await?
        .into_inner();
    assert!(r.active_fragment_ids.is_empty());
    assert!(
        r.usage.unwrap().tokens_in > 0,
        "a passive write is billed once"
    );
    let job = server
        .wait_job(&tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
        .await?;
    assert_eq!(job.state(), JobState::Ready);
    let again = ingest
        .remember(authed(request("org_p", options), &tok))
        .await?
        .into_inner();
    assert_eq!(again.usage.unwrap().tokens_in, 0, "and never twice");

    let hits = server
        .recall()
        .await?
        .recall(authed(recall("org_p", "flying to Lisbon"), &tok))
        .await?
        .into_inner()
        .hits
        .unwrap();
    assert!(hits.turns.is_empty(), "{:?}", hits.turns);
    assert!(hits.observations.iter().any(|h| h.text.contains("Lisbon")));

    // Active only: no job at all.
    let r = ingest
        .remember(authed(
            request(
                "org_p",
                Some(RememberOptions {
                    write_active: Some(true),
                    write_passive: Some(false),
                }),
            ),
            &tok,
        ))
        .await?
        .into_inner();
    assert_eq!(r.passive_job_id, None);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_rpc_checks_ids_tokens_and_tenants() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_a", "u1", 3600);
    let r = server
        .ingest()
        .await?
        .remember(authed(request("org_a", None), &tok))
        .await?
        .into_inner();
    let job_id = r.passive_job_id.unwrap();
    let mut jobs = server.jobs().await?;
    let get = |id: &str, tok: &str| authed(GetJobRequest { job_id: id.into() }, tok);

    let e = jobs.get_job(get("not-hex", &tok)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, ["job_id"]);

    let e = jobs.get_job(get(&"0".repeat(32), &tok)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let e = jobs
        .get_job(get(&job_id, &token("org_b", "u9", 3600)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        !e.message().contains("org_a"),
        "no other tenant's name leaks: {}",
        e.message()
    );

    let e = jobs
        .get_job(GetJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    assert_eq!(
        server.wait_job(&tok, &job_id, JOB_WAIT).await?.state(),
        JobState::Ready
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_no_tier_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_a", "u1", 3600);
    let options = Some(RememberOptions {
        write_active: Some(false),
        write_passive: Some(false),
    });
    let e = server
        .ingest()
        .await?
        .remember(authed(request("org_a", options), &tok))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, ["options"]);
    server.stop().await
}

/// Chat text as users send it (mixed scripts, emoji sequences, arrows,
/// typographic quotes, accents, RTL and zero-width characters): every job
/// ends ready, none failed, and the facts are still extracted. Half of such
/// jobs ended failed when the segmenter sliced inside '→'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_world_chat_text_never_fails_a_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let tok = token("org_u", "u1", 3600);
    let texts = [
        "I moved to Berlin →. Next week I start at Siemens 🎉",
        "We went to “Café Olé” → it was great!! 😍😍 Then I drove home…",
        "My sister Ana → moved to Lyon last May. Ça va? 👍🏽",
        "I'm learning 日本語 → 3 hours/day. My teacher is Sato-san.",
        "Je suis allé à Zürich. I love it→. שלום! I adopted a cat named Ünal.",
        "I ran 5 km ⇒ then 10km. “I’m done,” I said — and I meant it.",
        "Dr.→ Smith said I'm fine.\u{200B}\u{200D} I quit smoking in 2020 🚭.",
        "My family 👨‍👩‍👧‍👦 → Lisbon 🇵🇹 in June. مرحبا! I’m thrilled.",
        "I bought a bike for €450 → “best purchase ever” ✨\u{202E}olleh\u{202C}",
        "Ünal: I work at Škoda now → finally!! e\u{301}te\u{301} was long.",
    ];
    let mut ingest = server.ingest().await?;
    let mut jobs = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let r = ingest
            .remember(authed(
                RememberRequest {
                    scope: scope("org_u"),
                    turns: vec![turn(text, &format!("2026-05-08T14:0{i}:00Z"), &[])],
                    options: None,
                    metadata: None,
                },
                &tok,
            ))
            .await?
            .into_inner();
        jobs.push(r.passive_job_id.expect("enrichment is on"));
    }
    let mut observations = 0;
    for job_id in &jobs {
        let job = server.wait_job(&tok, job_id, JOB_WAIT).await?;
        assert_eq!(job.state(), JobState::Ready, "{job:?}");
        assert!(job.error.is_empty(), "{job:?}");
        observations += job.observations;
    }
    assert!(
        observations >= texts.len() as u32,
        "{observations} observations"
    );

    let hits = server
        .recall()
        .await?
        .recall(authed(recall("org_u", "Where did Ana move?"), &tok))
        .await?
        .into_inner()
        .hits
        .unwrap();
    assert!(
        hits.observations.iter().any(|h| h.text.contains("Lyon"))
            || hits.turns.iter().any(|h| h.text.contains("Lyon")),
        "{hits:?}"
    );
    server.stop().await
}
