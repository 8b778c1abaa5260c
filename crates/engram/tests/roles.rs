//! The three roles as three `engram` processes against one NATS JetStream
//! (started here) and one Qdrant server (from `QDRANT_URL`): what a
//! Kubernetes deployment runs. Skipped, with the reason printed, when
//! `QDRANT_URL` is not set; the same flow runs on a shared Qdrant Edge store
//! in `tests/tests/distributed.rs` either way.

use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::*;
use engram_testkit::NatsServer;
use std::time::{Duration, Instant};

mod common;

use common::{Process, SECRET, authed, channel, engram, models_dir, token, wait_job_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_recall_and_enrich_run_as_separate_processes() {
    let Ok(qdrant_url) = std::env::var("QDRANT_URL") else {
        println!(
            "skipped: QDRANT_URL is not set (point it at a Qdrant server's gRPC port, e.g. http://127.0.0.1:6334, to run the three roles as processes)"
        );
        return;
    };
    let nats = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let collection = format!("engram_roles_{}", std::process::id());
    let env: Vec<(String, String)> = [
        ("ENGRAM__BACKENDS__STREAM", "nats".to_owned()),
        ("ENGRAM__BACKENDS__VECTOR_STORE", "qdrant".to_owned()),
        ("ENGRAM__NATS__URL", nats.url()),
        ("ENGRAM__QDRANT__URL", qdrant_url),
        ("ENGRAM__QDRANT__COLLECTION", collection),
        ("ENGRAM__AUTH__HS256_SECRET", SECRET.to_owned()),
        (
            "ENGRAM__EMBEDDER__MODELS_DIR",
            models_dir().display().to_string(),
        ),
        (
            "ENGRAM__STORAGE__DATA_DIR",
            data.path().display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let token = token(&env, "org_a", "u1");

    let ingest = Process::spawn("ingest", &env);
    let recall = Process::spawn("recall", &env);
    let enrich = Process::spawn("enrich", &env);

    let mut ingest_client = IngestServiceClient::new(channel(&ingest.addr).await);
    let turn = Turn {
        role: "user".into(),
        text: "I'm allergic to shellfish.".into(),
        timestamp: "2026-05-08T14:00:00Z".into(),
        observations: vec!["User is allergic to shellfish and carries an EpiPen.".into()],
    };
    let scope = Some(Scope {
        org_id: "org_a".into(),
        user_id: String::new(),
        session_id: "s".into(),
    });
    let req = RememberRequest {
        scope: scope.clone(),
        turns: vec![turn],
        options: None,
        metadata: None,
    };
    // The roles may still be connecting to their dependencies.
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        match ingest_client.remember(authed(req.clone(), &token)).await {
            Ok(r) => break r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => panic!("remember: {s:?}"),
        }
    };
    let job_id = r.passive_job_id.unwrap();
    let mut jobs = JobServiceClient::new(channel(&ingest.addr).await);
    wait_job_ready(&mut jobs, &job_id, &token).await;
    let mut recall_client = RecallServiceClient::new(channel(&recall.addr).await);
    let hits = recall_client
        .recall(authed(
            RecallRequest {
                scope,
                q: "food allergy".into(),
                mode: RecallMode::Active as i32,
                top_k: Some(5),
                include_timeline: false,
                filter: None,
                collection_ids: Vec::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .hits
        .unwrap();
    assert!(
        hits.observations
            .iter()
            .any(|h| h.text == "User is allergic to shellfish and carries an EpiPen.")
    );
    assert!(
        hits.turns
            .iter()
            .any(|h| h.text.contains("allergic to shellfish"))
    );
    drop(enrich);
}

#[test]
fn a_role_refuses_the_embedded_backends_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "ENGRAM__STORAGE__DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        ("ENGRAM__AUTH__HS256_SECRET".to_owned(), SECRET.to_owned()),
    ];
    let out = engram(&["enrich", "--listen", "127.0.0.1:0"], &env)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backends.stream"), "{err}");
}
