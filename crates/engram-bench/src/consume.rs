//! `bench consume`: enrichment throughput of the consumer alone.
//!
//! Unlike the other commands this one runs in-process, because it measures
//! the passive tier with nothing else on the CPU: every LoCoMo session is
//! published as a `TurnsIngested` event to a real durable local queue (one
//! job record each, as ingest would create), then the real consumer
//! (`engram_enrich::run` with the default rule extractor, the real
//! embedding model and Qdrant Edge) drains the backlog. Throughput is turns
//! whose job reached `ready`, per second of draining. The rule extractor's
//! own speed is measured separately on the same turns.

use crate::dataset::{self, Conversation};
use crate::server::Memory;
use anyhow::{Context, bail};
use clap::Args;
use engram_core::{
    Embedder, Job, JobState, JobStore, OutboundMessage, Role, Scope, TurnStream, VectorStore, ids,
};
use engram_extract::{RuleExtractor, TurnInput};
use engram_proto::events::v1::{IngestedTurn, TurnsIngested};
use prost::Message;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `bench consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// The LoCoMo data file.
    #[arg(long, default_value = "../shared/bench/locomo10.json")]
    pub data: PathBuf,
    /// Use only the first N conversations.
    #[arg(long)]
    pub limit_conversations: Option<usize>,
    /// The models directory (scripts/setup.sh fills `models/`).
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Events the consumer processes at the same time.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `bench consume` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    /// Events (one per session) drained.
    pub events: usize,
    /// Turns in them.
    pub turns: usize,
    /// Consumer concurrency.
    pub concurrency: usize,
    /// Draining time, seconds.
    pub seconds: f64,
    /// Turns per second through the consumer.
    pub turns_per_sec: f64,
    /// Observation points written.
    pub observations: u64,
    /// Entity points written or updated.
    pub entities: u64,
    /// Turns per second of the rule extractor alone (one thread).
    pub extract_turns_per_sec: f64,
    /// This process's peak memory.
    pub memory: Option<Memory>,
}

/// One event and its job record.
fn event(conv: &Conversation, session: &dataset::Session) -> (TurnsIngested, Job) {
    let scope = Scope {
        org_id: "locomo".into(),
        user_id: conv.sample_id.clone(),
        session_id: format!("session_{}", session.number),
    };
    let turns: Vec<IngestedTurn> = session
        .turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let role = if t.speaker == conv.speaker_a {
                Role::User
            } else {
                Role::Assistant
            };
            let ts_ms = session.date.timestamp_millis() + i as i64 * 1000;
            let text = t.indexed_text();
            IngestedTurn {
                fragment_id: ids::fragment_id(&scope, role, &text, ts_ms),
                role: role.as_str().into(),
                text,
                ts_ms,
                observations: Vec::new(),
            }
        })
        .collect();
    let fragment_ids: Vec<String> = turns.iter().map(|t| t.fragment_id.clone()).collect();
    let job_id = ids::job_id(&scope, &fragment_ids, &[true, true]);
    let job = Job::pending(
        job_id.clone(),
        scope.org_id.clone(),
        turns.len() as u32,
        chrono::Utc::now().timestamp_millis(),
    );
    let event = TurnsIngested {
        job_id,
        org_id: scope.org_id,
        user_id: scope.user_id,
        session_id: scope.session_id,
        turns,
        metadata: None,
        ingested_at: None,
        active_written: true,
    };
    (event, job)
}

fn extract_speed(events: &[TurnsIngested]) -> f64 {
    let rules = RuleExtractor::new();
    let inputs: Vec<Vec<TurnInput>> = events.iter().map(engram_enrich::turn_inputs).collect();
    let turns: usize = inputs.iter().map(Vec::len).sum();
    let t = Instant::now();
    for batch in &inputs {
        std::hint::black_box(rules.extract_sync(batch));
    }
    turns as f64 / t.elapsed().as_secs_f64()
}

/// Runs the benchmark.
pub async fn run(args: &ConsumeArgs) -> anyhow::Result<ConsumeReport> {
    let mut convs = dataset::load(&args.data)?;
    if let Some(n) = args.limit_conversations {
        convs.truncate(n);
    }
    let events: Vec<(TurnsIngested, Job)> = convs
        .iter()
        .flat_map(|c| c.sessions.iter().map(move |s| event(c, s)))
        .collect();
    if events.is_empty() {
        bail!("no sessions to enrich");
    }
    let turns: usize = events.iter().map(|(e, _)| e.turns.len()).sum();
    let extract_turns_per_sec =
        extract_speed(&events.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>());

    let dir = tempfile::tempdir()?;
    let embedder: Arc<dyn Embedder> = Arc::new(
        engram_embed::OrtEmbedder::load(engram_embed::OrtEmbedderOptions::from_models_dir(
            &args.models_dir,
        ))
        .context("embedding model (run scripts/setup.sh)")?,
    );
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
    for (event, job) in &events {
        jobs.create(job).await?;
        stream
            .publish(OutboundMessage {
                msg_id: event.job_id.clone(),
                job_id: event.job_id.clone(),
                payload: engram_proto::events::v1::Event {
                    kind: Some(engram_proto::events::v1::event::Kind::Turns(event.clone())),
                }
                .encode_to_vec(),
                ..Default::default()
            })
            .await?;
    }
    eprintln!("consume: {} events, {turns} turns queued", events.len());

    let enricher = Arc::new(engram_enrich::Enricher::new(
        store.clone(),
        embedder,
        jobs.clone(),
        Arc::new(RuleExtractor::new()),
    ));
    let config = engram_enrich::EnrichConfig {
        concurrency: args.concurrency,
        ..engram_enrich::EnrichConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let consumer = tokio::spawn(engram_enrich::run(enricher, stream, config, async {
        let _ = stop_rx.await;
    }));
    let (mut observations, mut entities) = (0u64, 0u64);
    for (event, _) in &events {
        loop {
            match jobs.get(&event.job_id).await? {
                Some(j) if j.state == JobState::Ready => {
                    observations += u64::from(j.observations);
                    entities += u64::from(j.entities);
                    break;
                }
                Some(j) if j.state == JobState::Failed => {
                    bail!("job {} failed: {:?}", j.job_id, j.error)
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    consumer.await?;
    store.close().await?;
    Ok(ConsumeReport {
        events: events.len(),
        turns,
        concurrency: args.concurrency,
        seconds,
        turns_per_sec: turns as f64 / seconds,
        observations,
        entities,
        extract_turns_per_sec,
        memory: Memory::of_this_process(),
    })
}

impl ConsumeReport {
    /// The report as a markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## Enrichment consumer, in-process (rule extractor)\n");
        let _ = writeln!(s, "| measure | value |");
        let _ = writeln!(s, "|---|---:|");
        let _ = writeln!(s, "| events (sessions) | {} |", self.events);
        let _ = writeln!(s, "| turns | {} |", self.turns);
        let _ = writeln!(s, "| consumer concurrency | {} |", self.concurrency);
        let _ = writeln!(s, "| draining time | {:.1} s |", self.seconds);
        let _ = writeln!(
            s,
            "| **throughput** | **{:.0} turns/s** |",
            self.turns_per_sec
        );
        let _ = writeln!(s, "| observations written | {} |", self.observations);
        let _ = writeln!(
            s,
            "| entity points written or updated | {} |",
            self.entities
        );
        let _ = writeln!(
            s,
            "| rule extractor alone (one thread) | {:.0} turns/s |",
            self.extract_turns_per_sec
        );
        if let Some(m) = self.memory {
            let _ = writeln!(s, "| peak memory (VmHWM) | {:.0} MiB |", m.hwm_mib());
        }
        s
    }
}
