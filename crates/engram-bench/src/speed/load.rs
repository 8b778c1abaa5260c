//! The clients of `bench speed`: Remember writers and Recall readers, each
//! on its own connection, taking the next call from a shared counter.

use super::ORG;
use super::plan::{Call, user_name};
use crate::server::{Target, authed};
use crate::stats::IngestRun;
use anyhow::{Context, bail};
use engram_core::Embedder;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::{GetJobRequest, JobState, RecallMode, RecallRequest, Scope};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A finished write phase.
pub(crate) struct Written {
    pub(crate) run: IngestRun,
    /// The enrichment job of the last call sent, with its user, when the
    /// calls enqueued any.
    pub(crate) last_job: Option<(usize, String)>,
}

/// Sends `calls` with `concurrency` clients.
pub(crate) async fn ingest(
    target: &Target,
    calls: Vec<Call>,
    tokens: Arc<Vec<String>>,
    concurrency: usize,
    progress: bool,
) -> anyhow::Result<Written> {
    let turns: usize = calls.iter().map(|c| c.request.turns.len()).sum();
    let n = calls.len();
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(0));
    // Connect every client before the clock starts, so connection set-up
    // is not billed to the first calls.
    let mut clients = Vec::new();
    for _ in 0..concurrency.max(1) {
        clients.push(IngestServiceClient::new(target.connect().await?));
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for mut client in clients {
        let (calls, next, tokens) = (calls.clone(), next.clone(), tokens.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut last_job: Option<(usize, usize, String)> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(call) = calls.get(i) else { break };
                let req = authed(call.request.clone(), &tokens[call.user])?;
                let t = Instant::now();
                let resp = client
                    .remember(req)
                    .await
                    .with_context(|| format!("remember for user {}", call.user))?
                    .into_inner();
                lat.push(t.elapsed());
                if resp.active_fragment_ids.len() != call.request.turns.len() {
                    bail!(
                        "remember returned {} ids for {} turns",
                        resp.active_fragment_ids.len(),
                        call.request.turns.len()
                    );
                }
                if let Some(job) = resp.passive_job_id {
                    last_job = Some((i, call.user, job));
                }
                // Progress about every tenth of the step, from whichever worker gets there.
                if progress && n >= 10 && (i + 1) % (n / 10) == 0 {
                    eprintln!("speed: {} of {n} remember calls done", i + 1);
                }
            }
            anyhow::Ok((lat, last_job))
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut last: Option<(usize, usize, String)> = None;
    for w in workers {
        let (l, job) = w.await??;
        lat.extend(l);
        if let Some(job) = job
            && last.as_ref().is_none_or(|l| job.0 > l.0)
        {
            last = Some(job);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Written {
        run: IngestRun::new(turns, &lat, seconds),
        last_job: last.map(|(_, user, job)| (user, job)),
    })
}

/// The Recall of `q` for `user` of the bench's tenant.
fn recall_request(user: usize, q: &str, mode: RecallMode, top_k: i32) -> RecallRequest {
    RecallRequest {
        scope: Some(Scope {
            org_id: ORG.into(),
            user_id: user_name(user),
            session_id: String::new(),
        }),
        q: q.to_owned(),
        mode: mode as i32,
        top_k: Some(top_k),
        ..Default::default()
    }
}

/// Latencies of a recall run.
pub(crate) struct RecallRun {
    pub(crate) latencies: Vec<Duration>,
    /// The model alone on each call's query, timed in process right before
    /// the call (one-client runs given a model): a floor measured in step
    /// with the calls, so drift of the machine during a run is in both.
    pub(crate) paired_floor: Vec<Duration>,
    pub(crate) wall: Duration,
    pub(crate) empty: usize,
}

/// Runs `plan` (user, question) with `concurrency` clients. With one
/// client and a `floor` model, each call's query is first embedded in
/// process and timed ([`RecallRun::paired_floor`]).
pub(crate) async fn recall_run(
    target: &Target,
    plan: &[(usize, String)],
    tokens: &Arc<Vec<String>>,
    mode: RecallMode,
    top_k: i32,
    concurrency: usize,
    floor: Option<&Arc<dyn Embedder>>,
) -> anyhow::Result<RecallRun> {
    let floor = floor.filter(|_| concurrency <= 1).cloned();
    let plan = Arc::new(plan.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..concurrency.max(1) {
        clients.push(RecallServiceClient::new(target.connect().await?));
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for mut client in clients {
        let (plan, next, tokens) = (plan.clone(), next.clone(), tokens.clone());
        let floor = floor.clone();
        workers.push(tokio::spawn(async move {
            let (mut lat, mut paired, mut empty) = (Vec::new(), Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((user, q)) = plan.get(i) else { break };
                if let Some(model) = &floor {
                    let t = Instant::now();
                    model.embed_queries(std::slice::from_ref(q)).await?;
                    paired.push(t.elapsed());
                }
                let req = authed(recall_request(*user, q, mode, top_k), &tokens[*user])?;
                let t = Instant::now();
                let resp = client
                    .recall(req)
                    .await
                    .with_context(|| format!("recall for user {user}"))?
                    .into_inner();
                lat.push(t.elapsed());
                empty += usize::from(resp.hits.is_none_or(|h| h.turns.is_empty()));
            }
            anyhow::Ok((lat, paired, empty))
        }));
    }
    let mut out = RecallRun {
        latencies: Vec::with_capacity(plan.len()),
        paired_floor: Vec::new(),
        wall: Duration::ZERO,
        empty: 0,
    };
    for w in workers {
        let (lat, paired, empty) = w.await??;
        out.latencies.extend(lat);
        out.paired_floor.extend(paired);
        out.empty += empty;
    }
    // The wall clock of a paired run includes the in-process embeddings.
    out.wall = started
        .elapsed()
        .saturating_sub(out.paired_floor.iter().sum());
    Ok(out)
}

/// The same calls over gRPC and over REST (`POST /recall`, JSON, HTTP/1.1
/// keep-alive, as curl-like clients send it), one client each, call by
/// call: each question goes to both surfaces, the order alternating, so
/// drift of the machine and warm caches fall on both alike. With a
/// `floor` model each call's query is first embedded in process, once for
/// both (its time is the floor of both runs).
pub(crate) async fn recall_pair_run(
    target: &Target,
    plan: &[(usize, String)],
    tokens: &Arc<Vec<String>>,
    mode: RecallMode,
    top_k: i32,
    floor: Option<&Arc<dyn Embedder>>,
) -> anyhow::Result<(RecallRun, RecallRun)> {
    let mut grpc = RecallServiceClient::new(target.connect().await?);
    let http = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .build()?;
    let url = format!("{}/recall", target.endpoint().trim_end_matches('/'));
    let mode_name = if mode == RecallMode::Deep {
        "deep"
    } else {
        "active"
    };
    let empty_run = || RecallRun {
        latencies: Vec::with_capacity(plan.len()),
        paired_floor: Vec::new(),
        wall: Duration::ZERO,
        empty: 0,
    };
    let (mut g, mut r) = (empty_run(), empty_run());
    for (i, (user, q)) in plan.iter().enumerate() {
        if let Some(model) = floor {
            let t = Instant::now();
            model.embed_queries(std::slice::from_ref(q)).await?;
            let took = t.elapsed();
            g.paired_floor.push(took);
            r.paired_floor.push(took);
        }
        let req = recall_request(*user, q, mode, top_k);
        let body = serde_json::json!({
            "scope": {"org_id": ORG, "user_id": user_name(*user)},
            "q": q,
            "mode": mode_name,
            "top_k": top_k,
        })
        .to_string();
        for surface in [i % 2, 1 - i % 2] {
            if surface == 0 {
                let req = authed(req.clone(), &tokens[*user])?;
                let t = Instant::now();
                let resp = grpc
                    .recall(req)
                    .await
                    .with_context(|| format!("recall for user {user}"))?
                    .into_inner();
                g.latencies.push(t.elapsed());
                g.empty += usize::from(resp.hits.is_none_or(|h| h.turns.is_empty()));
            } else {
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .bearer_auth(&tokens[*user])
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .with_context(|| format!("REST recall for user {user}"))?;
                let status = resp.status();
                let bytes = resp.bytes().await?;
                r.latencies.push(t.elapsed());
                if !status.is_success() {
                    bail!(
                        "REST recall for user {user}: {status} {}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(&bytes)?;
                r.empty += usize::from(v["hits"]["turns"].as_array().is_none_or(|t| t.is_empty()));
            }
        }
    }
    g.wall = g.latencies.iter().sum();
    r.wall = r.latencies.iter().sum();
    Ok((g, r))
}

/// Whether an enrichment job is still waiting or running.
pub(crate) async fn job_pending(
    target: &Target,
    token: &str,
    job_id: &str,
) -> anyhow::Result<bool> {
    let mut client = JobServiceClient::new(target.connect().await?);
    let req = authed(
        GetJobRequest {
            job_id: job_id.to_owned(),
        },
        token,
    )?;
    match client.get_job(req).await {
        Ok(resp) => {
            let state = resp
                .into_inner()
                .job
                .map_or(JobState::Pending as i32, |j| j.state);
            Ok(state == JobState::Pending as i32 || state == JobState::Processing as i32)
        }
        // Not recorded yet: still in the queue.
        Err(status) if status.code() == tonic::Code::NotFound => Ok(true),
        Err(status) => Err(status).context("get job"),
    }
}

/// Waits until the job is done (or `limit` passed); returns the wait.
pub(crate) async fn wait_for_job(
    target: &Target,
    token: &str,
    job_id: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while job_pending(target, token, job_id).await? && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(started.elapsed())
}
