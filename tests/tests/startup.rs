//! Starting without dependencies: every role listens at once, serves
//! `grpc.health.v1` (the `liveness` name SERVING, the others NOT_SERVING
//! while what they call is missing) and reflection, and answers UNAVAILABLE
//! with a retry hint while NATS or the Qdrant server cannot be reached; once
//! they appear it connects, creates the JetStream stream, key-value buckets
//! and Qdrant collection, and works without a restart.
//!
//! NATS is a real `nats-server` started late on a port reserved for it.
//! The part where a Qdrant server appears late runs when `QDRANT_URL` names
//! one (a TCP proxy opened late in front of it plays "appears"); otherwise
//! it prints why it is skipped.

use engram_proto::v1::*;
use engram_server::{Backends, Config, LIVENESS, Role, VectorStoreKind};
use engram_testkit::NatsServer;
use engram_tests::faults::{TcpProxy, vacant_addr};
use engram_tests::{TestServer, authed, nats_test_config, test_config, token, wait_health};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_types::StatusExt;

/// How soon after start a process must answer health and reflection while
/// its dependencies never answer (it measures 0.4-1.8 s here, model
/// loading included; the bound leaves room for a loaded CI machine and is
/// still far from "waits for the dependency", which would be forever).
const ANSWERS_WITHIN: Duration = Duration::from_secs(10);

/// NATS request timeout of these tests; also how long a call may wait for
/// a connection before it answers UNAVAILABLE.
const NATS_TIMEOUT: Duration = Duration::from_millis(1500);

/// Qdrant call timeout of these tests.
const QDRANT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Scheduling slack on top of a timeout (generous for a loaded CI machine;
/// waiting for the dependency would take forever).
const SLACK: Duration = Duration::from_secs(3);

const JOB_WAIT: Duration = Duration::from_secs(40);

const INGEST: &str = "engram.v1.IngestService";
const RECALL: &str = "engram.v1.RecallService";
const HEALTH: &str = "grpc.health.v1.Health";

fn nats_config(dir: &Path, nats: &NatsServer) -> Config {
    let mut c = nats_test_config(dir, nats.url());
    c.nats.request_timeout_ms = NATS_TIMEOUT.as_millis() as u64;
    c
}

fn with_qdrant(mut c: Config, addr: SocketAddr, collection: &str) -> Config {
    c.backends.vector_store = VectorStoreKind::Qdrant;
    c.qdrant.url = format!("http://{addr}");
    c.qdrant.collection = collection.to_owned();
    c.qdrant.timeout = QDRANT_TIMEOUT;
    c
}

/// A NATS server that is not running yet: its port and store directory are
/// reserved, [`NatsServer::start_again`] starts it.
fn nats_not_yet() -> NatsServer {
    let mut nats = NatsServer::start();
    nats.stop();
    nats
}

/// The Qdrant server's `host:port` from `QDRANT_URL`, or why the part of a
/// test that needs one is skipped.
fn qdrant_upstream() -> Result<String, String> {
    let url = std::env::var("QDRANT_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or("QDRANT_URL is not set (point it at a Qdrant server's gRPC port, e.g. http://127.0.0.1:6334)")?;
    let upstream = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("the TCP proxy needs a plain http:// QDRANT_URL, got {url}"))?;
    Ok(upstream.trim_end_matches('/').to_owned())
}

/// A collection name of this run.
fn collection(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn remember_request(org: &str) -> RememberRequest {
    RememberRequest {
        scope: Some(Scope {
            org_id: org.into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        turns: vec![Turn {
            role: "user".into(),
            text: "I'm allergic to shellfish.".into(),
            timestamp: "2026-05-08T14:00:00Z".into(),
            observations: vec!["User is allergic to shellfish and carries an EpiPen.".into()],
        }],
        options: None,
        metadata: None,
    }
}

fn recall_request(org: &str) -> RecallRequest {
    RecallRequest {
        scope: Some(Scope {
            org_id: org.into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        q: "food allergy".into(),
        mode: RecallMode::Active as i32,
        top_k: Some(5),
        include_timeline: false,
        filter: None,
        collection_ids: Vec::new(),
    }
}

/// Waits until `server` answers health for `service`; returns the status
/// and how long after `since` it answered.
async fn first_health(
    server: &TestServer,
    service: &str,
    since: Instant,
) -> (ServingStatus, Duration) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(status) = server.health(service).await {
            return (status, since.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "{} never answered health",
            server.addr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The services `server` lists through reflection (v1).
async fn reflected_services(server: &TestServer) -> anyhow::Result<Vec<String>> {
    let mut client = ServerReflectionClient::new(server.channel().await?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(futures::stream::iter([request]))
        .await?
        .into_inner();
    match answers.message().await?.and_then(|a| a.message_response) {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => anyhow::bail!("reflection answered {other:?}"),
    }
}

/// Asserts that `server`, started at `since`, answered health within
/// [`ANSWERS_WITHIN`] with liveness SERVING and every name in
/// `not_serving` NOT_SERVING, and lists `services` through reflection.
async fn assert_serves_not_ready(
    name: &str,
    server: &TestServer,
    since: Instant,
    not_serving: &[&str],
    services: &[&str],
) -> anyhow::Result<()> {
    let (liveness, took) = first_health(server, LIVENESS, since).await;
    println!("{name}: health answered {took:?} after start");
    assert_eq!(liveness, ServingStatus::Serving, "{name}: liveness");
    assert!(
        took <= ANSWERS_WITHIN,
        "{name}: health answered only after {took:?}"
    );
    for service in not_serving {
        assert_eq!(
            server.health(service).await?,
            ServingStatus::NotServing,
            "{name}: health of {service:?}"
        );
    }
    let listed = reflected_services(server).await?;
    for service in services.iter().chain([&HEALTH]) {
        assert!(
            listed.iter().any(|l| l == service),
            "{name}: {service} not in {listed:?}"
        );
    }
    Ok(())
}

/// Asserts `status` is UNAVAILABLE with reason `reason` and a retry delay,
/// and that it came within `bound`.
fn assert_unavailable(what: &str, status: &tonic::Status, took: Duration, bound: Duration) {
    println!("{what}: UNAVAILABLE after {took:?}");
    assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("{what}: no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, "MEMORY_UNREACHABLE", "{what}: {status:?}");
    assert!(
        status
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some(),
        "{what}: no retry delay in {status:?}"
    );
    assert!(took <= bound, "{what} took {took:?}, bound {bound:?}");
}

/// Remember on `server`, timed.
async fn remember(
    server: &TestServer,
    org: &str,
    tok: &str,
) -> (Result<RememberResponse, tonic::Status>, Duration) {
    let mut client = server.ingest().await.expect("ingest client");
    let started = Instant::now();
    let result = client.remember(authed(remember_request(org), tok)).await;
    (result.map(|r| r.into_inner()), started.elapsed())
}

/// Recall on `server`, timed.
async fn recall(
    server: &TestServer,
    org: &str,
    tok: &str,
) -> (Result<RecallResponse, tonic::Status>, Duration) {
    let mut client = server.recall().await.expect("recall client");
    let started = Instant::now();
    let result = client.recall(authed(recall_request(org), tok)).await;
    (result.map(|r| r.into_inner()), started.elapsed())
}

/// Remember until it succeeds (a dependency may still be connecting).
async fn remember_eventually(server: &TestServer, org: &str, tok: &str) -> RememberResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match remember(server, org, tok).await.0 {
            Ok(r) => return r,
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("remember failed: {s:?}"),
        }
    }
}

/// Asserts that the job of `r` becomes READY and that its observation can
/// be recalled from `reader`.
async fn assert_enriched_and_recallable(
    ingest: &TestServer,
    reader: &TestServer,
    r: &RememberResponse,
    org: &str,
    tok: &str,
) -> anyhow::Result<()> {
    let job = ingest
        .wait_job(
            tok,
            r.passive_job_id.as_deref().expect("a passive job"),
            JOB_WAIT,
        )
        .await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    let hits = recall(reader, org, tok).await.0?.hits.expect("hits");
    assert!(
        hits.observations
            .iter()
            .any(|h| h.text.contains("allergic to shellfish")),
        "{hits:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_nats_answers_at_once_without_nats_and_works_once_it_appears() -> anyhow::Result<()>
{
    let mut nats = nats_not_yet();
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let server =
        TestServer::start_role_opening(Role::Serve, nats_config(dir.path(), &nats)).await?;
    assert_serves_not_ready(
        "serve",
        &server,
        started,
        &["", INGEST, "engram.v1.JobService"],
        &[INGEST, RECALL],
    )
    .await?;
    let tok = token("org_a", "u1", 3600);
    // The first call may wait one request timeout for the connection; once
    // NATS has been missing that long, calls answer at once.
    let (first, took) = remember(&server, "org_a", &tok).await;
    assert_unavailable(
        "remember (first)",
        &first.unwrap_err(),
        took,
        NATS_TIMEOUT + SLACK,
    );
    let (second, took) = remember(&server, "org_a", &tok).await;
    assert_unavailable("remember (later)", &second.unwrap_err(), took, SLACK);

    nats.start_again();
    let took = wait_health(&server, "", ServingStatus::Serving).await;
    println!("serve: SERVING {took:?} after nats started");
    wait_health(&server, INGEST, ServingStatus::Serving).await;
    let r = remember_eventually(&server, "org_a", &tok).await;
    assert_enriched_and_recallable(&server, &server, &r, "org_a", &tok).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_enrich_and_recall_start_without_nats_and_work_once_it_appears() -> anyhow::Result<()>
{
    let mut nats = nats_not_yet();
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    // Qdrant Edge lives in one process, so this runs the roles on the
    // embedded store (ingest and recall sharing one, enrich on its own):
    // what matters here is the NATS side. Each role opens its ports the
    // way `engram <role>` does.
    let started = Instant::now();
    let shared = Backends::open(&nats_config(dirs[0].path(), &nats), Role::Serve).await?;
    let ingest = TestServer::start_role(
        Role::Ingest,
        nats_config(dirs[0].path(), &nats),
        shared.clone(),
    )
    .await?;
    assert_serves_not_ready("ingest", &ingest, started, &["", INGEST], &[INGEST]).await?;
    let started = Instant::now();
    let recall_srv =
        TestServer::start_role(Role::Recall, nats_config(dirs[0].path(), &nats), shared).await?;
    // Recall needs no stream; it reads team collections from NATS per call.
    assert_serves_not_ready("recall", &recall_srv, started, &[], &[RECALL]).await?;
    let started = Instant::now();
    let enrich_config = nats_config(dirs[1].path(), &nats);
    let enrich_backends = Backends::open(&enrich_config, Role::Enrich).await?;
    let enrich = TestServer::start_role(Role::Enrich, enrich_config, enrich_backends).await?;
    assert_serves_not_ready("enrich", &enrich, started, &[""], &[]).await?;
    let tok = token("org_a", "u1", 3600);
    let (r, took) = remember(&ingest, "org_a", &tok).await;
    assert_unavailable(
        "ingest remember",
        &r.unwrap_err(),
        took,
        NATS_TIMEOUT + SLACK,
    );
    // Recall reads the team collections from NATS.
    let (r, took) = recall(&recall_srv, "org_a", &tok).await;
    assert_unavailable("recall", &r.unwrap_err(), took, NATS_TIMEOUT + SLACK);

    nats.start_again();
    let nats_up = Instant::now();
    wait_health(&ingest, INGEST, ServingStatus::Serving).await;
    wait_health(&enrich, "", ServingStatus::Serving).await;
    println!(
        "ingest and enrich: SERVING {:?} after nats started",
        nats_up.elapsed()
    );
    // The consumer started before the stream existed; it must find it now.
    let r = remember_eventually(&ingest, "org_a", &tok).await;
    let job = ingest
        .wait_job(&tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
        .await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match recall(&recall_srv, "org_a", &tok).await.0 {
            Ok(_) => break,
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("recall failed: {s:?}"),
        }
    }
    enrich.stop().await?;
    recall_srv.stop().await?;
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_qdrant_answers_at_once_without_qdrant_and_works_once_it_appears()
-> anyhow::Result<()> {
    let addr = vacant_addr().await?;
    let dir = tempfile::tempdir()?;
    let name = collection("engram_startup");
    let config = with_qdrant(test_config(dir.path()), addr, &name);
    let started = Instant::now();
    let server = TestServer::start_role_opening(Role::Serve, config).await?;
    assert_serves_not_ready(
        "serve on qdrant",
        &server,
        started,
        &["", INGEST, RECALL],
        &[INGEST, RECALL],
    )
    .await?;
    let tok = token("org_q", "u1", 3600);
    for attempt in ["first", "later"] {
        let (r, took) = remember(&server, "org_q", &tok).await;
        assert_unavailable(
            &format!("remember ({attempt})"),
            &r.unwrap_err(),
            took,
            QDRANT_TIMEOUT + SLACK,
        );
        let (r, took) = recall(&server, "org_q", &tok).await;
        assert_unavailable(
            &format!("recall ({attempt})"),
            &r.unwrap_err(),
            took,
            QDRANT_TIMEOUT + SLACK,
        );
    }

    let upstream = match qdrant_upstream() {
        Ok(upstream) => upstream,
        Err(why) => {
            println!("the part where Qdrant appears is skipped: {why}");
            return server.stop().await;
        }
    };
    let _qdrant = TcpProxy::start(addr, upstream).await?;
    let took = wait_health(&server, "", ServingStatus::Serving).await;
    println!("serve on qdrant: SERVING {took:?} after qdrant appeared");
    let r = remember_eventually(&server, "org_q", &tok).await;
    assert_enriched_and_recallable(&server, &server, &r, "org_q", &tok).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_starts_without_nats_and_qdrant_and_works_once_they_appear() -> anyhow::Result<()>
{
    let mut nats = nats_not_yet();
    let addr = vacant_addr().await?;
    let name = collection("engram_roles");
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let config = |i: usize| with_qdrant(nats_config(dirs[i].path(), &nats), addr, &name);
    let started = Instant::now();
    let ingest = TestServer::start_role_opening(Role::Ingest, config(0)).await?;
    assert_serves_not_ready("ingest", &ingest, started, &["", INGEST], &[INGEST]).await?;
    let started = Instant::now();
    let enrich = TestServer::start_role_opening(Role::Enrich, config(1)).await?;
    assert_serves_not_ready("enrich", &enrich, started, &[""], &[]).await?;
    let started = Instant::now();
    let recall_srv = TestServer::start_role_opening(Role::Recall, config(2)).await?;
    assert_serves_not_ready("recall", &recall_srv, started, &["", RECALL], &[RECALL]).await?;
    let tok = token("org_r", "u1", 3600);
    let (r, took) = remember(&ingest, "org_r", &tok).await;
    assert_unavailable(
        "ingest remember",
        &r.unwrap_err(),
        took,
        NATS_TIMEOUT + SLACK,
    );
    let (r, took) = recall(&recall_srv, "org_r", &tok).await;
    assert_unavailable("recall", &r.unwrap_err(), took, NATS_TIMEOUT + SLACK);

    // NATS alone is not enough: the vector store is still missing.
    nats.start_again();
    // Until the client has reconnected the stream is what fails; then the
    // vector store.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, took) = loop {
        let (r, took) = remember(&ingest, "org_r", &tok).await;
        let status = r.expect_err("no vector store yet");
        if status.message().contains("vector store") {
            break (status, took);
        }
        assert!(
            Instant::now() < deadline,
            "still no answer from nats: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_unavailable(
        "ingest remember (nats up, qdrant missing)",
        &status,
        took,
        QDRANT_TIMEOUT + SLACK,
    );
    assert_eq!(ingest.health(INGEST).await?, ServingStatus::NotServing);

    let upstream = match qdrant_upstream() {
        Ok(upstream) => upstream,
        Err(why) => {
            println!("the part where Qdrant appears is skipped: {why}");
            enrich.stop().await?;
            recall_srv.stop().await?;
            return ingest.stop().await;
        }
    };
    let _qdrant = TcpProxy::start(addr, upstream).await?;
    let qdrant_up = Instant::now();
    for (role, server) in [
        ("ingest", &ingest),
        ("enrich", &enrich),
        ("recall", &recall_srv),
    ] {
        wait_health(server, "", ServingStatus::Serving).await;
        println!(
            "{role}: SERVING {:?} after qdrant appeared",
            qdrant_up.elapsed()
        );
    }
    let r = remember_eventually(&ingest, "org_r", &tok).await;
    assert_enriched_and_recallable(&ingest, &recall_srv, &r, "org_r", &tok).await?;
    enrich.stop().await?;
    recall_srv.stop().await?;
    ingest.stop().await
}
