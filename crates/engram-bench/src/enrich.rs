//! `bench enrich`: the background path. Remember calls whose turns carry
//! caller-supplied observations, and for each write the time until its job
//! reads READY through `JobService.GetJob`, measured through gRPC against
//! whatever backends the server runs (the embedded queue, or NATS
//! JetStream with `--config`).

use crate::dataset;
use crate::server::{Target, authed};
use crate::stats::{IngestRun, Latency};
use anyhow::bail;
use clap::Args;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::{GetJobRequest, JobState, RememberRequest, Scope, Turn};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Tenant of the traffic.
const ORG: &str = "enrich";

/// Options of `bench enrich`.
#[derive(Debug, Clone, Args)]
pub struct EnrichArgs {
    /// The LoCoMo data file (source of texts).
    #[arg(long, default_value = "../shared/bench/locomo10.json")]
    pub data: PathBuf,
    /// Remember calls.
    #[arg(long, default_value_t = 300)]
    pub writes: usize,
    /// Turns per Remember call; each turn carries one observation.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Concurrent Remember clients.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// How often a pending job is polled, milliseconds.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
    /// Each client waits for its job to be ready before the next write, so
    /// Remember → ready is measured without a backlog.
    #[arg(long)]
    pub wait_ready: bool,
    /// Label of the run in the report (e.g. "embedded", "jetstream").
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Results of `bench enrich`.
#[derive(Debug, Clone, Serialize)]
pub struct EnrichReport {
    /// The run's label.
    pub label: String,
    /// The ingest side: turns/s and Remember latency with the stream in the path.
    pub ingest: IngestRun,
    /// From sending Remember to the job reading READY.
    pub to_ready: Latency,
    /// Observation points written per second over the run (until the last job was ready).
    pub observations_per_sec: f64,
    /// Jobs that ended FAILED.
    pub failed: usize,
    /// Peak RSS of the spawned server, MiB.
    pub peak_rss_mib: Option<f64>,
}

impl EnrichReport {
    /// The report as a Markdown table row with its header.
    pub fn markdown(&self) -> String {
        format!(
            "| run | turns/s | Remember p50 / p99 ms | Remember → job ready p50 / p99 ms | observations/s | failed | peak RSS MiB |\n|---|---|---|---|---|---|---|\n| {} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {} | {} |",
            self.label,
            self.ingest.turns_per_sec,
            self.ingest.remember.p50_ms,
            self.ingest.remember.p99_ms,
            self.to_ready.p50_ms,
            self.to_ready.p99_ms,
            self.observations_per_sec,
            self.failed,
            self.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}")),
        )
    }
}

/// Runs the benchmark against `target`.
pub async fn run(target: &Target, args: &EnrichArgs) -> anyhow::Result<EnrichReport> {
    let texts: Vec<(String, String)> = dataset::load(&args.data)?
        .into_iter()
        .flat_map(|c| c.sessions.into_iter().flat_map(|s| s.turns))
        .map(|t| (t.speaker.clone(), t.indexed_text()))
        .collect();
    if texts.is_empty() || args.batch == 0 || args.writes == 0 {
        bail!("nothing to write: check --data, --batch and --writes");
    }
    let texts = Arc::new(texts);
    let channel = target.connect().await?;
    let next = Arc::new(AtomicUsize::new(0));
    let remember_lat = Arc::new(Mutex::new(Vec::new()));
    let ready_lat = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (channel, next, texts, args) =
            (channel.clone(), next.clone(), texts.clone(), args.clone());
        let (remember_lat, ready_lat, failed) =
            (remember_lat.clone(), ready_lat.clone(), failed.clone());
        let token = target.token(ORG, "bench")?;
        workers.push(tokio::spawn(async move {
            let mut ingest = IngestServiceClient::new(channel.clone());
            let mut pollers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.writes {
                    break;
                }
                let req = request(i, &texts, args.batch);
                let sent = Instant::now();
                let resp = ingest.remember(authed(req, &token)?).await?.into_inner();
                remember_lat.lock().await.push(sent.elapsed());
                let Some(job_id) = resp.passive_job_id else {
                    bail!("the server returned no passive job: is enrichment off?");
                };
                let (channel, token, ready_lat, failed) = (
                    channel.clone(),
                    token.clone(),
                    ready_lat.clone(),
                    failed.clone(),
                );
                let poll = Duration::from_millis(args.poll_ms);
                let poller = tokio::spawn(async move {
                    let mut jobs = JobServiceClient::new(channel);
                    loop {
                        let r = jobs
                            .get_job(authed(
                                GetJobRequest {
                                    job_id: job_id.clone(),
                                },
                                &token,
                            )?)
                            .await;
                        if let Ok(r) = r {
                            match r.into_inner().job.map(|j| j.state()) {
                                Some(JobState::Ready) => break,
                                Some(JobState::Failed) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                _ => {}
                            }
                        }
                        tokio::time::sleep(poll).await;
                    }
                    ready_lat.lock().await.push(sent.elapsed());
                    anyhow::Ok(())
                });
                if args.wait_ready {
                    poller.await??;
                } else {
                    pollers.push(poller);
                }
            }
            let ingest_done = Instant::now();
            for p in pollers {
                p.await??;
            }
            anyhow::Ok(ingest_done)
        }));
    }
    let mut ingest_end = started;
    for w in workers {
        ingest_end = ingest_end.max(w.await??);
    }
    let all_ready = started.elapsed().as_secs_f64();
    let remember_lat = remember_lat.lock().await.clone();
    let turns = args.writes * args.batch;
    Ok(EnrichReport {
        label: args.label.clone(),
        ingest: IngestRun::new(turns, &remember_lat, (ingest_end - started).as_secs_f64()),
        to_ready: Latency::of(&ready_lat.lock().await),
        observations_per_sec: turns as f64 / all_ready,
        failed: failed.load(Ordering::Relaxed),
        peak_rss_mib: target.memory().map(|m| m.hwm_mib()),
    })
}

/// Write `i`: `batch` consecutive corpus turns in a session of its own,
/// each with one observation (what a caller that extracts its own facts
/// would send).
fn request(i: usize, texts: &[(String, String)], batch: usize) -> RememberRequest {
    let turns = (0..batch)
        .map(|j| {
            let (speaker, text) = &texts[(i * batch + j) % texts.len()];
            Turn {
                role: if j % 2 == 0 { "user" } else { "assistant" }.into(),
                text: text.clone(),
                timestamp: format!(
                    "2024-01-01T{:02}:{:02}:{:02}Z",
                    (i / 3600) % 24,
                    (i / 60) % 60,
                    j
                ),
                observations: vec![format!("{speaker} said: {text}")],
            }
        })
        .collect();
    RememberRequest {
        scope: Some(Scope {
            org_id: ORG.into(),
            user_id: format!("user-{}", i % 50),
            session_id: format!("session-{i}"),
        }),
        turns,
        options: None,
        metadata: None,
    }
}
