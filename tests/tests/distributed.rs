//! The distributed shape against a real `nats-server -js` started by the
//! test (free port, its own store directory): Remember → JetStream →
//! consumer → observations → job ready → Recall; redelivery, dead letters,
//! NATS outages and restarts, health, and the three roles side by side.

use engram_core::{
    Job as JobRecord, JobState as State, JobStore, Kind, OutboundMessage, ScopeFilter, TurnStream,
};
use engram_proto::v1::*;
use engram_server::{Backends, Config, Role};
use engram_testkit::NatsServer;
use engram_tests::faults::{Fault, FaultyStore};
use engram_tests::{TestServer, authed, nats_test_config, token, wait_health};
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const JOB_WAIT: Duration = Duration::from_secs(40);

fn nats_config(dir: &Path, nats: &NatsServer) -> Config {
    let mut c = nats_test_config(dir, nats.url());
    c.enrich.max_deliver = 3;
    c
}

/// Observation points of [`request`]: its two caller observations and the
/// rule extractor's four ("User is allergic to shellfish.", "Ana is
/// User's sister.", "Ana lives in Lyon.", "User drives a blue Toyota.").
const OBSERVATIONS: u32 = 6;

fn request(org: &str) -> RememberRequest {
    let turn = |text: &str, ts: &str, obs: &[&str]| Turn {
        role: "user".into(),
        text: text.into(),
        timestamp: ts.into(),
        observations: obs.iter().map(|s| s.to_string()).collect(),
    };
    RememberRequest {
        scope: Some(Scope {
            org_id: org.into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        turns: vec![
            turn(
                "I'm allergic to shellfish.",
                "2026-05-08T14:00:00Z",
                &["User is allergic to shellfish and carries an EpiPen."],
            ),
            turn(
                "My sister Ana lives in Lyon.",
                "2026-05-08T14:01:00Z",
                &["User's sister Ana lives in Lyon, France."],
            ),
            turn("I drive a blue Toyota.", "2026-05-08T14:02:00Z", &[]),
        ],
        options: None,
        metadata: None,
    }
}

fn recall(org: &str, q: &str) -> RecallRequest {
    RecallRequest {
        scope: Some(Scope {
            org_id: org.into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        q: q.into(),
        mode: RecallMode::Active as i32,
        top_k: Some(10),
        include_timeline: false,
        filter: None,
        collection_ids: Vec::new(),
    }
}

async fn count(backends: &Backends, org: &str, kind: Kind) -> u64 {
    let filter = ScopeFilter {
        kinds: vec![kind],
        ..ScopeFilter::tenant(org)
    };
    backends.store.count(&filter).await.expect("count")
}

/// Remember until it succeeds (NATS may still be reconnecting).
async fn remember_eventually(
    server: &TestServer,
    req: RememberRequest,
    tok: &str,
) -> RememberResponse {
    let mut ingest = server.ingest().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match ingest.remember(authed(req.clone(), tok)).await {
            Ok(r) => return r.into_inner(),
            Err(s) if s.code() == Code::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("remember failed: {s:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_flows_through_jetstream_to_recallable_observations() -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    let server = TestServer::start_with(dir.path(), |c| *c = config.clone()).await?;
    let tok = token("org_a", "u1", 3600);
    let r = server
        .ingest()
        .await?
        .remember(authed(request("org_a"), &tok))
        .await?
        .into_inner();
    let job_id = r.passive_job_id.expect("a passive job");
    let job = server.wait_job(&tok, &job_id, JOB_WAIT).await?;
    assert_eq!(
        (job.state(), job.observations, job.attempts),
        (JobState::Ready, OBSERVATIONS, 1),
        "{job:?}"
    );

    let hits = server
        .recall()
        .await?
        .recall(authed(recall("org_a", "where does the sister live?"), &tok))
        .await?
        .into_inner()
        .hits
        .unwrap();
    assert!(
        hits.observations
            .iter()
            .any(|h| h.text == "User's sister Ana lives in Lyon, France."),
        "{:?}",
        hits.observations
    );

    // The event is on the stream once, with the job id as its message id;
    // a second publish with that id inside the window is dropped.
    let stream = engram_stream::NatsStream::connect(config.nats.clone()).await?;
    let ack = stream
        .publish(OutboundMessage {
            msg_id: job_id.clone(),
            job_id: job_id.clone(),
            payload: b"again".to_vec(),
            ..Default::default()
        })
        .await?;
    assert!(ack.duplicate);
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let info = js
        .get_stream(&config.nats.stream)
        .await?
        .info()
        .await?
        .clone();
    assert_eq!(info.state.messages, 1);
    server.stop().await
}

/// Opens the NATS-backed backends of `config` with the store wrapped in a fault.
async fn faulty_backends(config: &Config, fault: Fault) -> (Backends, Arc<FaultyStore>) {
    let mut backends = Backends::open(config, Role::Serve).await.expect("backends");
    let faulty = FaultyStore::new(backends.store.clone(), fault);
    backends.store = faulty.clone();
    (backends, faulty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_once_is_redelivered_and_stored_once() -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    let (backends, _faulty) = faulty_backends(&config, Fault::FailOnce).await;
    let server = TestServer::start_role(Role::Serve, config, backends.clone()).await?;
    let tok = token("org_a", "u1", 3600);
    let r = server
        .ingest()
        .await?
        .remember(authed(request("org_a"), &tok))
        .await?
        .into_inner();
    let job = server
        .wait_job(&tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
        .await?;
    assert_eq!((job.state(), job.attempts), (JobState::Ready, 2), "{job:?}");
    assert!(
        job.error.is_empty(),
        "a job that ended ready shows no error: {job:?}"
    );
    assert_eq!(
        count(&backends, "org_a", Kind::Observation).await,
        u64::from(OBSERVATIONS)
    );
    assert_eq!(count(&backends, "org_a", Kind::Turn).await, 3);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_mid_job_leaves_it_to_the_next_one() -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    let tok = token("org_a", "u1", 3600);
    let job_id = {
        let (backends, faulty) = faulty_backends(&config, Fault::HangOnce).await;
        let server = TestServer::start_role(Role::Serve, config.clone(), backends).await?;
        let r = server
            .ingest()
            .await?
            .remember(authed(request("org_a"), &tok))
            .await?
            .into_inner();
        tokio::time::timeout(Duration::from_secs(20), faulty.reached.notified()).await?;
        // Stopped while the job hangs in its store write: never acked.
        server.stop().await?;
        r.passive_job_id.unwrap()
    };
    let backends = Backends::open(&config, Role::Serve).await?;
    let server = TestServer::start_role(Role::Serve, config, backends.clone()).await?;
    let job = server.wait_job(&tok, &job_id, JOB_WAIT).await?;
    // At least the second delivery; a pull the stopped consumer had still
    // outstanding may have taken one more before the ack wait ran out.
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    assert!(
        job.attempts >= 2,
        "the interrupted delivery counts: {job:?}"
    );
    assert_eq!(
        count(&backends, "org_a", Kind::Observation).await,
        u64::from(OBSERVATIONS)
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_and_fails_its_job_after_max_deliver()
-> anyhow::Result<()> {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    let server = TestServer::start_with(dir.path(), |c| *c = config.clone()).await?;
    let tok = token("org_a", "u1", 3600);
    let stream = engram_stream::NatsStream::connect(config.nats.clone()).await?;
    let job_id = "ab".repeat(16);
    let now = chrono_now_ms();
    stream
        .job_store()
        .create(&JobRecord {
            job_id: job_id.clone(),
            org_id: "org_a".into(),
            state: State::Pending,
            created_ms: now,
            updated_ms: now,
            attempts: 0,
            error: None,
            turns: 1,
            observations: 0,
            entities: 0,
            tokens_in: 0,
            tokens_out: 0,
            fallback: None,
            owner: None,
        })
        .await?;
    stream
        .publish(OutboundMessage {
            msg_id: job_id.clone(),
            job_id: job_id.clone(),
            payload: vec![0xff, 0xff, 0xff],
            ..Default::default()
        })
        .await?;
    let job = server.wait_job(&tok, &job_id, JOB_WAIT).await?;
    assert_eq!(
        (job.state(), job.attempts),
        (JobState::Failed, 3),
        "{job:?}"
    );
    assert!(job.error.contains("undecodable"), "{job:?}");

    // The message sits on the dead-letter subject with its job id.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let consumer = js
        .get_stream(&config.nats.stream)
        .await?
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: config.nats.dead_letter_subject.clone(),
            ..Default::default()
        })
        .await?;
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await?;
    let dead = batch
        .next()
        .await
        .expect("one dead letter")
        .map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(dead.payload.as_ref(), [0xff, 0xff, 0xff]);
    let headers = dead.headers.clone().expect("headers");
    assert_eq!(
        headers.get("Engram-Job-Id").map(|v| v.as_str()),
        Some(job_id.as_str())
    );
    assert!(batch.next().await.is_none(), "exactly one dead letter");
    server.stop().await
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_at_remember_is_unavailable_and_the_retry_stores_once() -> anyhow::Result<()> {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    let backends = Backends::open(&config, Role::Serve).await?;
    let server = TestServer::start_role(Role::Serve, config, backends.clone()).await?;
    wait_health(&server, "engram.v1.IngestService", ServingStatus::Serving).await;
    let tok = token("org_a", "u1", 3600);

    nats.stop();
    let e = server
        .ingest()
        .await?
        .remember(authed(request("org_a"), &tok))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(
        e.get_details_error_info().unwrap().reason,
        "MEMORY_UNREACHABLE"
    );
    assert!(e.get_details_retry_info().unwrap().retry_delay.is_some());
    assert_eq!(
        count(&backends, "org_a", Kind::Turn).await,
        0,
        "nothing half-written"
    );
    wait_health(
        &server,
        "engram.v1.IngestService",
        ServingStatus::NotServing,
    )
    .await;
    assert_eq!(
        server.health("engram.v1.RecallService").await?,
        ServingStatus::Serving,
        "recall needs no NATS"
    );

    nats.start_again();
    let r = remember_eventually(&server, request("org_a"), &tok).await;
    assert!(
        r.usage.unwrap().tokens_in > 0,
        "the write that failed was never billed, so the retry is"
    );
    let again = remember_eventually(&server, request("org_a"), &tok).await;
    assert_eq!(again.usage.unwrap().tokens_in, 0);
    let job = server
        .wait_job(&tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
        .await?;
    assert_eq!(job.state(), JobState::Ready);
    assert_eq!(count(&backends, "org_a", Kind::Turn).await, 3);
    assert_eq!(
        count(&backends, "org_a", Kind::Observation).await,
        u64::from(OBSERVATIONS)
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_rides_out_a_nats_restart() -> anyhow::Result<()> {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    let server = TestServer::start_with(dir.path(), |c| *c = config.clone()).await?;
    let tok = token("org_a", "u1", 3600);
    let first = remember_eventually(&server, request("org_a"), &tok).await;
    assert_eq!(
        server
            .wait_job(&tok, first.passive_job_id.as_deref().unwrap(), JOB_WAIT)
            .await?
            .state(),
        JobState::Ready
    );

    nats.restart();
    let second = remember_eventually(&server, request("org_b"), &token("org_b", "u1", 3600)).await;
    let job = server
        .wait_job(
            &token("org_b", "u1", 3600),
            second.passive_job_id.as_deref().unwrap(),
            JOB_WAIT,
        )
        .await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_until_nats_answers() -> anyhow::Result<()> {
    let mut nats = NatsServer::start();
    nats.stop();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    let server = TestServer::start_with(dir.path(), |c| *c = config.clone()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.health("").await?, ServingStatus::NotServing);
    assert_eq!(
        server.health("engram.v1.IngestService").await?,
        ServingStatus::NotServing
    );
    // Alive all the same: a liveness probe must not restart it.
    assert_eq!(
        server.health(engram_server::LIVENESS).await?,
        ServingStatus::Serving
    );
    nats.start_again();
    wait_health(&server, "", ServingStatus::Serving).await;
    wait_health(&server, "engram.v1.IngestService", ServingStatus::Serving).await;
    let tok = token("org_a", "u1", 3600);
    let r = remember_eventually(&server, request("org_a"), &tok).await;
    assert_eq!(
        server
            .wait_job(&tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
            .await?
            .state(),
        JobState::Ready
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_roles_share_one_nats_and_one_store() -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    // One Qdrant Edge store can only be open in one process, so the three
    // roles run as three servers in this process on shared backends.
    let backends = Backends::open(&config, Role::Serve).await?;
    let ingest = TestServer::start_role(Role::Ingest, config.clone(), backends.clone()).await?;
    let recall_srv = TestServer::start_role(Role::Recall, config.clone(), backends.clone()).await?;
    let enrich = TestServer::start_role(Role::Enrich, config, backends.clone()).await?;
    wait_health(&enrich, "", ServingStatus::Serving).await;
    let tok = token("org_a", "u1", 3600);

    let r = ingest
        .ingest()
        .await?
        .remember(authed(request("org_a"), &tok))
        .await?
        .into_inner();
    let job = ingest
        .wait_job(&tok, r.passive_job_id.as_deref().unwrap(), JOB_WAIT)
        .await?;
    assert_eq!(job.state(), JobState::Ready);
    let hits = recall_srv
        .recall()
        .await?
        .recall(authed(recall("org_a", "shellfish"), &tok))
        .await?
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

    // Each role serves only its own services.
    let e = recall_srv
        .ingest()
        .await?
        .remember(authed(request("org_a"), &tok))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let e = ingest
        .recall()
        .await?
        .recall(authed(recall("org_a", "x"), &tok))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let e = enrich
        .recall()
        .await?
        .recall(authed(recall("org_a", "x"), &tok))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);

    enrich.stop().await?;
    recall_srv.stop().await?;
    ingest.stop().await
}
