//! A panic inside one job's processing is contained: the real consumer on a
//! real local queue, Qdrant Edge and the real embedding model, with an
//! extractor (and, for the second case, an embedder) that panics on one
//! input. The job does not loop through redeliveries: a panicking
//! extractor leaves the write with the caller's observations and the job
//! ready with the error recorded; a panic elsewhere fails the job at once.
//! Both are counted in `engram_enrich_panics_total`.

use async_trait::async_trait;
use engram_core::{
    EmbedError, Embedder, Job, JobState, JobStore, OutboundMessage, Role, Scope, TurnStream,
    VectorStore, ids,
};
use engram_extract::{ExtractError, Extraction, Extractor, RuleExtractor, TurnInput};
use engram_proto::events::v1::{Event, IngestedTurn, TurnsIngested, event};
use prost::Message;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The rules, except on a turn containing "PANIC", where it panics the way
/// the segmenter did on "→" before the fix.
struct Fragile;

#[async_trait]
impl Extractor for Fragile {
    fn name(&self) -> &'static str {
        "fragile"
    }

    async fn extract(&self, turns: &[TurnInput]) -> Result<Extraction, ExtractError> {
        if turns.iter().any(|t| t.text.contains("PANIC")) {
            let s = std::hint::black_box("I moved →");
            let _ = &s[..s.len() - 1];
        }
        RuleExtractor::new().extract(turns).await
    }
}

/// The real model, except on a text containing "BOOM".
struct FragileEmbedder(Arc<dyn Embedder>);

#[async_trait]
impl Embedder for FragileEmbedder {
    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn model(&self) -> &str {
        self.0.model()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        assert!(
            !texts.iter().any(|t| t.contains("BOOM")),
            "embedder blew up"
        );
        self.0.embed(texts).await
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
}

fn models_dir() -> std::path::PathBuf {
    std::env::var_os("ENGRAM_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

fn scope() -> Scope {
    Scope {
        org_id: "org_p".into(),
        user_id: "u1".into(),
        session_id: "s1".into(),
    }
}

fn event(text: &str, observation: &str) -> (TurnsIngested, Job) {
    let scope = scope();
    let ts_ms = 1_778_248_800_000;
    let fragment_id = ids::fragment_id(&scope, Role::User, text, ts_ms);
    let job_id = ids::job_id(&scope, std::slice::from_ref(&fragment_id), &[true]);
    let job = Job::pending(job_id.clone(), scope.org_id.clone(), 1, ts_ms);
    let event = TurnsIngested {
        job_id,
        org_id: scope.org_id,
        user_id: scope.user_id,
        session_id: scope.session_id,
        turns: vec![IngestedTurn {
            fragment_id,
            role: "user".into(),
            text: text.into(),
            ts_ms,
            observations: vec![observation.into()],
        }],
        metadata: None,
        ingested_at: None,
        active_written: true,
    };
    (event, job)
}

async fn wait_final(jobs: &dyn JobStore, job_id: &str) -> anyhow::Result<Job> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(j) = jobs.get(job_id).await?
            && j.state.is_final()
        {
            return Ok(j);
        }
        anyhow::ensure!(Instant::now() < deadline, "job {job_id} never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_in_processing_are_contained_recorded_and_counted() -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let dir = tempfile::tempdir()?;
    let model: Arc<dyn Embedder> = Arc::new(engram_embed::OrtEmbedder::load(
        engram_embed::OrtEmbedderOptions::from_models_dir(&models_dir()),
    )?);
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

    let extract_panics = event("PANIC → “quoted” 🇩🇪", "User likes tea.");
    let process_panics = event("BOOM", "User likes BOOM coffee.");
    let fine = event("I moved to Lyon → last May 🎉", "User lives in Lyon.");
    for (e, job) in [&extract_panics, &process_panics, &fine] {
        jobs.create(job).await?;
        stream
            .publish(OutboundMessage {
                msg_id: e.job_id.clone(),
                job_id: e.job_id.clone(),
                payload: Event {
                    kind: Some(event::Kind::Turns(e.clone())),
                }
                .encode_to_vec(),
                ..Default::default()
            })
            .await?;
    }

    let enricher = Arc::new(engram_enrich::Enricher::new(
        store.clone(),
        Arc::new(FragileEmbedder(model)),
        jobs.clone(),
        Arc::new(Fragile),
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(engram_enrich::run(
        enricher,
        stream,
        engram_enrich::EnrichConfig {
            backoff_base: Duration::from_millis(10),
            ..engram_enrich::EnrichConfig::default()
        },
        async {
            let _ = stop_rx.await;
        },
    ));

    // The extractor's panic: ready, with the caller's observation alone and
    // the reason on the job, on the first delivery.
    let job = wait_final(jobs.as_ref(), &extract_panics.0.job_id).await?;
    assert_eq!(job.state, JobState::Ready, "{job:?}");
    assert_eq!((job.attempts, job.observations, job.entities), (1, 1, 0));
    let error = job.error.clone().unwrap_or_default();
    assert!(
        error.contains("panicked") && error.contains("caller's observations"),
        "{job:?}"
    );
    let obs_id = ids::observation_id(
        &scope(),
        &extract_panics.0.turns[0].fragment_id,
        "User likes tea.",
    );
    let stored = store.get("org_p", &[obs_id]).await?;
    assert_eq!(stored.len(), 1, "the caller's observation is recallable");

    // A panic past the extractor: failed at once, not retried max_deliver
    // times.
    let job = wait_final(jobs.as_ref(), &process_panics.0.job_id).await?;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert_eq!(job.attempts, 1, "no redelivery loop: {job:?}");
    assert!(
        job.error
            .as_deref()
            .unwrap_or_default()
            .contains("embedder blew up"),
        "{job:?}"
    );

    // The same consumer goes on with the next job.
    let job = wait_final(jobs.as_ref(), &fine.0.job_id).await?;
    assert_eq!(job.state, JobState::Ready, "{job:?}");
    assert!(job.error.is_none() && job.observations >= 2, "{job:?}");

    let text = metrics.render();
    for stage in ["extract", "process"] {
        let line = format!("engram_enrich_panics_total{{stage=\"{stage}\"}} 1");
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
    let _ = stop_tx.send(());
    consumer.await?;
    store.close().await?;
    Ok(())
}
