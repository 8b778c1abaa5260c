//! The optional LLM extractor inside a running server: its facts become
//! observations, its token use is reported on the job, and a malformed
//! answer falls back to the rules with the reason on the job. The model is
//! a scripted OpenAI-compatible server inside the test.

use engram_proto::v1::*;
use engram_server::ExtractorKind;
use engram_testkit::chat::{ChatServer, completion};
use engram_tests::{TestServer, authed, token};
use std::time::Duration;

const JOB_WAIT: Duration = Duration::from_secs(30);

async fn start(dir: &std::path::Path, chat: &ChatServer) -> anyhow::Result<TestServer> {
    let url = chat.url.clone();
    TestServer::start_with(dir, move |c| {
        c.extract.extractor = ExtractorKind::Llm;
        c.extract.llm_url = url;
        c.extract.llm_model = "test-model".into();
        c.extract.llm_api_key = Some("sk-test".into());
        c.extract.llm_timeout_ms = 5_000;
    })
    .await
}

fn remember(text: &str) -> RememberRequest {
    RememberRequest {
        scope: Some(Scope {
            org_id: "org_l".into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        turns: vec![Turn {
            role: "user".into(),
            text: text.into(),
            timestamp: "2026-01-10T09:00:00Z".into(),
            observations: Vec::new(),
        }],
        options: None,
        metadata: None,
    }
}

async fn observations(server: &TestServer, tok: &str, q: &str) -> anyhow::Result<Vec<Hit>> {
    let resp = server
        .recall()
        .await?
        .recall(authed(
            RecallRequest {
                scope: Some(Scope {
                    org_id: "org_l".into(),
                    user_id: String::new(),
                    session_id: "chat-1".into(),
                }),
                q: q.into(),
                mode: RecallMode::Deep as i32,
                top_k: Some(9),
                include_timeline: false,
                filter: None,
                collection_ids: Vec::new(),
            },
            tok,
        ))
        .await?
        .into_inner();
    Ok(resp.hits.unwrap().observations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_facts_are_stored_and_its_tokens_reported() -> anyhow::Result<()> {
    let answer = serde_json::json!({
        "observations": [{
            "turn": 0,
            "subject": "User",
            "category": "health",
            "text": "User cannot eat shrimp, crab or lobster.",
            "date": null
        }],
        "entities": [{"label": "shrimp", "kind": "product", "turns": [0]}]
    });
    let chat = ChatServer::start(vec![completion(&answer.to_string(), 412, 57)]).await;
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), &chat).await?;
    let tok = token("org_l", "u1", 3600);
    let r = server
        .ingest()
        .await?
        .remember(authed(remember("I'm allergic to shellfish."), &tok))
        .await?
        .into_inner();
    let job = server
        .wait_job(&tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
        .await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    assert_eq!(
        job.usage,
        Some(Usage {
            tokens_in: 412,
            tokens_out: 57
        })
    );
    assert!(job.extractor_fallback.is_empty(), "{job:?}");
    assert_eq!((job.observations, job.entities), (1, 1));

    let requests = chat.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization").as_deref(),
        Some("Bearer sk-test")
    );
    assert!(
        requests[0]
            .user_message()
            .contains("I'm allergic to shellfish.")
    );

    let obs = observations(&server, &tok, "which seafood can the user not eat").await?;
    let fact = obs
        .iter()
        .find(|o| o.text == "User cannot eat shrimp, crab or lobster.")
        .unwrap_or_else(|| panic!("{obs:?}"));
    assert_eq!(fact.source_ids, r.active_fragment_ids);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_falls_back_to_the_rules_and_says_so() -> anyhow::Result<()> {
    // Valid JSON, wrong schema (an unknown field), and tokens were spent.
    let chat = ChatServer::start(vec![completion(r#"{"facts": ["x"]}"#, 300, 5)]).await;
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), &chat).await?;
    let tok = token("org_l", "u1", 3600);
    let r = server
        .ingest()
        .await?
        .remember(authed(
            remember("My sister Ana moved to Lyon last May."),
            &tok,
        ))
        .await?
        .into_inner();
    let job = server
        .wait_job(&tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
        .await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    assert!(!job.extractor_fallback.is_empty(), "{job:?}");
    assert_eq!(
        job.usage.unwrap().tokens_in,
        300,
        "spent tokens still count"
    );
    // The rules extracted instead.
    let obs = observations(&server, &tok, "when did Ana move to Lyon").await?;
    assert!(
        obs.iter()
            .any(|o| o.text == "Ana moved to Lyon in May 2025."),
        "{obs:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_extractor_without_a_url_is_refused_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let err = TestServer::start_with(dir.path(), |c| {
        c.extract.extractor = ExtractorKind::Llm;
        c.extract.llm_model = "m".into();
    })
    .await
    .err()
    .expect("no url: refused");
    assert!(err.to_string().contains("extract"), "{err}");
    Ok(())
}
