//! The consumer adapts its concurrency to interactive load: with the
//! lanes reporting calls people wait for, it takes one event at a time;
//! without, up to its configured concurrency. The real consumer, a real
//! local queue, Qdrant Edge and the real model behind real embedding lanes;
//! the extractor is the rule extractor, slowed down and counting how many
//! events it works on at once.

use async_trait::async_trait;
use engram_core::{
    Job, JobStore, OutboundMessage, Pressure, Role, Scope, TurnStream, VectorStore, ids,
};
use engram_extract::{ExtractError, Extraction, Extractor, RuleExtractor, TurnInput};
use engram_proto::events::v1::{Event, IngestedTurn, TurnsIngested, event};
use prost::Message;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The rules, taking 150 ms and recording the most events in flight.
#[derive(Default)]
struct Counting {
    now: AtomicUsize,
    most: AtomicUsize,
}

#[async_trait]
impl Extractor for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    async fn extract(&self, turns: &[TurnInput]) -> Result<Extraction, ExtractError> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        RuleExtractor::new().extract(turns).await
    }
}

/// Interactive load switched by the test.
struct Switch(AtomicBool);

impl Pressure for Switch {
    fn interactive_busy(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn models_dir() -> std::path::PathBuf {
    std::env::var_os("ENGRAM_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

/// Publishes `n` one-turn events (distinct per `round`) and returns their jobs.
async fn publish(
    stream: &dyn TurnStream,
    jobs: &dyn JobStore,
    round: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for i in 0..n {
        let scope = Scope {
            org_id: "org_l".into(),
            user_id: format!("u{i}"),
            session_id: "s1".into(),
        };
        let text = format!("{round}: I adopted a dog named Rex {i} years ago 🐕");
        let ts_ms = 1_778_248_800_000;
        let fragment_id = ids::fragment_id(&scope, Role::User, &text, ts_ms);
        let job_id = ids::job_id(&scope, std::slice::from_ref(&fragment_id), &[true]);
        jobs.create(&Job::pending(
            job_id.clone(),
            scope.org_id.clone(),
            1,
            ts_ms,
        ))
        .await?;
        let e = TurnsIngested {
            job_id: job_id.clone(),
            org_id: scope.org_id,
            user_id: scope.user_id,
            session_id: scope.session_id,
            turns: vec![IngestedTurn {
                fragment_id,
                role: "user".into(),
                text,
                ts_ms,
                observations: Vec::new(),
            }],
            metadata: None,
            ingested_at: None,
            active_written: true,
        };
        stream
            .publish(OutboundMessage {
                msg_id: job_id.clone(),
                job_id: job_id.clone(),
                payload: Event {
                    kind: Some(event::Kind::Turns(e)),
                }
                .encode_to_vec(),
                ..Default::default()
            })
            .await?;
        out.push(job_id);
    }
    Ok(out)
}

async fn all_ready(jobs: &dyn JobStore, ids: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in ids {
        loop {
            if let Some(j) = jobs.get(id).await?
                && j.state.is_final()
            {
                anyhow::ensure!(j.state == engram_core::JobState::Ready, "{j:?}");
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "job {id} never settled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_takes_one_event_at_a_time_under_interactive_load() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let model = engram_embed::OrtEmbedder::load(
        engram_embed::OrtEmbedderOptions::from_models_dir(&models_dir()),
    )?;
    let lanes = engram_embed::Lanes::start(Arc::new(model), engram_embed::LaneOptions::default());
    let store: Arc<dyn VectorStore> = Arc::new(engram_store::EdgeStore::open(
        &dir.path().join("store"),
        engram_store::EdgeStoreOptions::default(),
    )?);
    let queue = engram_stream::LocalQueue::open(
        &dir.path().join("queue"),
        engram_stream::LocalQueueOptions::default(),
    )?;
    let jobs: Arc<dyn JobStore> = Arc::new(queue.job_store());
    let stream: Arc<dyn TurnStream> = Arc::new(queue);
    let extractor = Arc::new(Counting::default());
    let switch = Arc::new(Switch(AtomicBool::new(true)));
    let enricher = Arc::new(
        engram_enrich::Enricher::new(
            store.clone(),
            lanes.background(),
            jobs.clone(),
            extractor.clone(),
        )
        .with_pressure(switch.clone()),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(engram_enrich::run(
        enricher,
        stream.clone(),
        engram_enrich::EnrichConfig {
            concurrency: 4,
            ..engram_enrich::EnrichConfig::default()
        },
        async {
            let _ = stop_rx.await;
        },
    ));

    // Under load: every job is done, one at a time.
    let busy = publish(stream.as_ref(), jobs.as_ref(), "busy", 6).await?;
    all_ready(jobs.as_ref(), &busy).await?;
    assert_eq!(extractor.most.load(Ordering::SeqCst), 1);

    // Load gone: the configured concurrency comes back.
    switch.0.store(false, Ordering::SeqCst);
    let idle = publish(stream.as_ref(), jobs.as_ref(), "idle", 8).await?;
    all_ready(jobs.as_ref(), &idle).await?;
    assert!(
        extractor.most.load(Ordering::SeqCst) > 1,
        "no concurrency without load"
    );

    let _ = stop_tx.send(());
    consumer.await?;
    store.close().await?;
    Ok(())
}
