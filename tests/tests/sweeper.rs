//! Self-healing jobs: an acknowledged write whose event is lost still
//! completes. Against a real `nats-server -js` the event is purged from
//! the stream after the write was acknowledged; on the embedded default a
//! write's process "died" between keeping its event and publishing it (the
//! kept event is there, the job record and the message are not). In both
//! the sweeper publishes the event again and the job reaches READY.

use engram_core::{KeptEvent, Kind, ScopeFilter, ids};
use engram_proto::events::v1::{Event, IngestedTurn, TurnsIngested, event};
use engram_proto::v1::*;
use engram_server::{Backends, Config, OVERDUE_JOBS, Role};
use engram_testkit::NatsServer;
use engram_tests::{TestServer, authed, nats_test_config, test_config, token, wait_health};
use prost::Message;
use std::path::Path;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;

const JOB_WAIT: Duration = Duration::from_secs(40);

fn fast_sweeps(c: &mut Config) {
    c.enrich.sweep_interval_ms = 200;
    c.enrich.overdue_after_secs = 1;
}

fn nats_config(dir: &Path, nats: &NatsServer) -> Config {
    let mut c = nats_test_config(dir, nats.url());
    fast_sweeps(&mut c);
    c
}

fn request(org: &str) -> RememberRequest {
    RememberRequest {
        scope: Some(Scope {
            org_id: org.into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        turns: vec![Turn {
            role: "user".into(),
            text: "My sister Ana moved to Lyon → last May 🎉".into(),
            timestamp: "2026-05-08T14:00:00Z".into(),
            observations: vec!["User's sister Ana lives in Lyon.".into()],
        }],
        options: None,
        metadata: None,
    }
}

async fn observations(backends: &Backends, org: &str) -> u64 {
    let filter = ScopeFilter {
        kinds: vec![Kind::Observation],
        ..ScopeFilter::tenant(org)
    };
    backends.store.count(&filter).await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_purged_from_the_stream_is_published_again() -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let config = nats_config(dir.path(), &nats);
    let backends = Backends::open(&config, Role::Serve).await?;
    // Ingest alone: nothing consumes the event before it is lost.
    let ingest = TestServer::start_role(Role::Ingest, config.clone(), backends.clone()).await?;
    wait_health(&ingest, "engram.v1.IngestService", ServingStatus::Serving).await;
    let tok = token("org_s", "u1", 3600);
    let r = ingest
        .ingest()
        .await?
        .remember(authed(request("org_s"), &tok))
        .await?
        .into_inner();
    let job_id = r.passive_job_id.expect("enrichment is on");

    // The acknowledged event vanishes (a lost lazy fsync, a purge).
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let mut stream = js.get_stream(&config.nats.stream).await?;
    stream.purge().await?;
    assert_eq!(stream.info().await?.state.messages, 0);

    // The ingest role counts it overdue (it does not enrich, so it does
    // not publish).
    wait_health(&ingest, OVERDUE_JOBS, ServingStatus::NotServing).await;
    let job = ingest
        .jobs()
        .await?
        .get_job(authed(
            GetJobRequest {
                job_id: job_id.clone(),
            },
            &tok,
        ))
        .await?
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.state(), JobState::Pending, "stuck without a sweeper");

    let enrich = TestServer::start_role(Role::Enrich, config.clone(), backends.clone()).await?;
    let job = ingest.wait_job(&tok, &job_id, JOB_WAIT).await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    assert!(job.observations >= 1, "{job:?}");
    assert!(observations(&backends, "org_s").await >= 1);
    wait_health(&ingest, OVERDUE_JOBS, ServingStatus::Serving).await;
    wait_health(&enrich, OVERDUE_JOBS, ServingStatus::Serving).await;
    let jobs = backends.jobs.clone().unwrap();
    assert!(
        jobs.kept_events(10).await?.is_empty(),
        "the kept event goes with the finished job"
    );

    // Re-sent: the same job, nothing billed, nothing published again.
    let again = ingest
        .ingest()
        .await?
        .remember(authed(request("org_s"), &tok))
        .await?
        .into_inner();
    assert_eq!(again.passive_job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(again.usage.unwrap().tokens_in, 0);
    enrich.stop().await?;
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_event_never_published_completes_on_the_embedded_default() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    fast_sweeps(&mut config);
    let backends = Backends::open(&config, Role::Serve).await?;
    let jobs = backends.jobs.clone().unwrap();

    // What a Remember leaves when its process dies right after keeping the
    // event: no job record, no message.
    let scope = engram_core::Scope {
        org_id: "org_k".into(),
        user_id: "u1".into(),
        session_id: "chat-1".into(),
    };
    let (text, ts_ms) = (
        "I adopted a cat named Ünal → best day 🐈",
        1_778_248_800_000,
    );
    let fragment_id = ids::fragment_id(&scope, engram_core::Role::User, text, ts_ms);
    let job_id = ids::job_id(&scope, std::slice::from_ref(&fragment_id), &[false, true]);
    let payload = Event {
        kind: Some(event::Kind::Turns(TurnsIngested {
            job_id: job_id.clone(),
            org_id: scope.org_id.clone(),
            user_id: scope.user_id.clone(),
            session_id: scope.session_id.clone(),
            turns: vec![IngestedTurn {
                fragment_id,
                role: "user".into(),
                text: text.into(),
                ts_ms,
                observations: vec!["User has a cat named Ünal.".into()],
            }],
            metadata: None,
            ingested_at: None,
            active_written: false,
        })),
    }
    .encode_to_vec();
    jobs.keep_event(&KeptEvent {
        job_id: job_id.clone(),
        org_id: scope.org_id.clone(),
        msg_id: job_id.clone(),
        payload,
        kept_ms: chrono_now_ms() - 5_000,
        republished_ms: None,
    })
    .await?;
    assert!(jobs.get(&job_id).await?.is_none());

    let server = TestServer::start_role(Role::Serve, config, backends.clone()).await?;
    let tok = token("org_k", "u1", 3600);
    let job = server.wait_job(&tok, &job_id, JOB_WAIT).await?;
    assert_eq!(job.state(), JobState::Ready, "{job:?}");
    assert!(observations(&backends, "org_k").await >= 1);
    wait_health(&server, OVERDUE_JOBS, ServingStatus::Serving).await;
    assert!(jobs.kept_events(10).await?.is_empty());
    server.stop().await
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
