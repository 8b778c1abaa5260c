//! `bench speed`: ingest throughput, recall latency and server memory as the
//! store grows.
//!
//! The store is grown in steps (e.g. to 10k, then to 100k fragments) with
//! synthetic but realistic traffic: the ~5.9k LoCoMo turns replayed by many
//! users of one tenant (org `speed`), each user a 100-turn conversation cut
//! from the corpus at its own offset. Texts therefore repeat across users,
//! as common phrases do in a real deployment, while fragment ids differ
//! because the scope is part of the id.

use crate::dataset;
use crate::server::{Memory, Target, authed};
use crate::stats::{IngestRun, Latency};
use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::{RecallMode, RecallRequest, RememberRequest, Scope, Turn};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Tenant of the synthetic traffic.
const ORG: &str = "speed";
/// Start of the synthetic users' conversations.
const BASE_TIME: &str = "2024-01-01T09:00:00Z";

/// Options of `bench speed`.
#[derive(Debug, Clone, Args)]
pub struct SpeedArgs {
    /// The LoCoMo data file (source of texts and questions).
    #[arg(long, default_value = "../shared/bench/locomo10.json")]
    pub data: PathBuf,
    /// Store sizes to grow to and measure at, ascending, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub fragments: Vec<usize>,
    /// Recall calls measured at each size (sequential, then concurrent).
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Turns per Remember call.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Concurrent Remember clients.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Concurrent Recall clients of the throughput run.
    #[arg(long, default_value_t = 4)]
    pub recall_concurrency: usize,
    /// Fragments per synthetic user (one user = one conversation).
    #[arg(long, default_value_t = 100)]
    pub fragments_per_user: usize,
    /// `top_k` of each Recall (active mode).
    #[arg(long, default_value_t = 15)]
    pub top_k: i32,
    /// Unmeasured Recall calls before each measurement.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Seed of the query and user choice.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Measurements at one store size.
#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    /// Fragments in the store (of org `speed`).
    pub fragments: usize,
    /// Users holding them.
    pub users: usize,
    /// The growth step that reached this size.
    pub ingest: IngestRun,
    /// Recall latency, one client, calls in sequence.
    pub recall_sequential: Latency,
    /// Recall latency with `recall_concurrency` clients.
    pub recall_concurrent: Latency,
    /// Recall calls per second with `recall_concurrency` clients.
    pub recall_qps: f64,
    /// Recalls that returned no turn (should be none).
    pub empty_recalls: usize,
    /// Server memory after the measurements.
    pub memory: Option<Memory>,
}

/// Everything `bench speed` measured.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedReport {
    /// Server URL.
    pub endpoint: String,
    /// Turns per Remember call.
    pub batch: usize,
    /// Concurrent Remember clients.
    pub concurrency: usize,
    /// Concurrent Recall clients of the throughput run.
    pub recall_concurrency: usize,
    /// Recall calls per measurement.
    pub queries: usize,
    /// `top_k` of each Recall.
    pub top_k: i32,
    /// One entry per size.
    pub sizes: Vec<SizeReport>,
}

/// SplitMix64: a tiny seeded generator, so runs pick the same queries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One Remember call of the synthetic traffic.
#[derive(Debug, Clone)]
struct Call {
    user: usize,
    request: RememberRequest,
}

/// The Remember calls writing fragments `start..end`. Fragment `i` is turn
/// `j = i % per_user` of user `i / per_user`; a call holds up to `batch`
/// consecutive turns of one user, and each call is its own session.
fn plan_calls(
    start: usize,
    end: usize,
    per_user: usize,
    batch: usize,
    corpus: &[String],
    base: DateTime<Utc>,
) -> Vec<Call> {
    let (per_user, batch) = (per_user.max(1), batch.max(1));
    let mut calls = Vec::new();
    let mut i = start;
    while i < end {
        let (user, j) = (i / per_user, i % per_user);
        let session = j / batch;
        let stop = end.min(user * per_user + per_user.min((session + 1) * batch));
        let turns = (i..stop)
            .map(|f| {
                let j = f % per_user;
                // A prime stride spreads users over the corpus.
                let text = &corpus[(user.wrapping_mul(7919) + j) % corpus.len()];
                Turn {
                    role: if j % 2 == 0 { "user" } else { "assistant" }.into(),
                    text: text.clone(),
                    timestamp: (base + TimeDelta::minutes(j as i64))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    observations: Vec::new(),
                }
            })
            .collect();
        calls.push(Call {
            user,
            request: RememberRequest {
                scope: Some(Scope {
                    org_id: ORG.into(),
                    user_id: user_name(user),
                    session_id: format!("s{session}"),
                }),
                turns,
                options: None,
                metadata: None,
            },
        });
        i = stop;
    }
    calls
}

fn user_name(user: usize) -> String {
    format!("u{user}")
}

/// Runs the speed benchmark against `target`.
pub async fn run(target: &Target, args: &SpeedArgs) -> anyhow::Result<SpeedReport> {
    if args.fragments.windows(2).any(|w| w[0] >= w[1]) || args.fragments.is_empty() {
        bail!("--fragments must be ascending sizes, e.g. 10000,100000");
    }
    let convs = dataset::load(&args.data)?;
    let corpus: Vec<String> = convs
        .iter()
        .flat_map(|c| {
            c.sessions
                .iter()
                .flat_map(|s| s.turns.iter().map(|t| t.indexed_text()))
        })
        .collect();
    let questions: Vec<String> = convs
        .iter()
        .flat_map(|c| c.qa.iter().map(|q| q.question.clone()))
        .collect();
    if corpus.is_empty() || questions.is_empty() {
        bail!("the data file holds no turns or no questions");
    }
    let per_user = args.fragments_per_user.max(1);
    let max = args.fragments.last().copied().unwrap_or_default();
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..max.div_ceil(per_user))
            .map(|u| target.token(ORG, &user_name(u)))
            .collect::<anyhow::Result<_>>()?,
    );
    let base: DateTime<Utc> = BASE_TIME.parse()?;
    let mut rng = Rng(args.seed);
    let mut sizes = Vec::new();
    let mut have = 0;
    for &size in &args.fragments {
        eprintln!("speed: growing the store from {have} to {size} fragments");
        let calls = plan_calls(have, size, per_user, args.batch, &corpus, base);
        let ingest = ingest(target, calls, tokens.clone(), args.concurrency).await?;
        eprintln!(
            "speed: wrote {} turns in {:.1} s ({:.1} turns/s)",
            ingest.turns, ingest.seconds, ingest.turns_per_sec
        );
        have = size;
        let users = size.div_ceil(per_user);
        let plan: Vec<(usize, String)> = (0..args.warmup + args.queries)
            .map(|_| {
                (
                    rng.below(users),
                    questions[rng.below(questions.len())].clone(),
                )
            })
            .collect();
        let (warm, measured) = plan.split_at(args.warmup.min(plan.len()));
        recall_run(target, warm, &tokens, args.top_k, 1).await?;
        let seq = recall_run(target, measured, &tokens, args.top_k, 1).await?;
        let conc = recall_run(
            target,
            measured,
            &tokens,
            args.top_k,
            args.recall_concurrency,
        )
        .await?;
        let report = SizeReport {
            fragments: size,
            users,
            ingest,
            recall_sequential: Latency::of(&seq.latencies),
            recall_concurrent: Latency::of(&conc.latencies),
            recall_qps: conc.latencies.len() as f64 / conc.wall.as_secs_f64().max(1e-9),
            empty_recalls: seq.empty + conc.empty,
            memory: target.memory(),
        };
        eprintln!(
            "speed: at {size} fragments recall p50 {:.1} ms, p99 {:.1} ms, {:.1} qps with {} clients",
            report.recall_sequential.p50_ms,
            report.recall_sequential.p99_ms,
            report.recall_qps,
            args.recall_concurrency
        );
        sizes.push(report);
    }
    Ok(SpeedReport {
        endpoint: target.endpoint().to_string(),
        batch: args.batch,
        concurrency: args.concurrency,
        recall_concurrency: args.recall_concurrency,
        queries: args.queries,
        top_k: args.top_k,
        sizes,
    })
}

/// Sends `calls` with `concurrency` clients, each on its own connection,
/// taking the next call from a shared counter.
async fn ingest(
    target: &Target,
    calls: Vec<Call>,
    tokens: Arc<Vec<String>>,
    concurrency: usize,
) -> anyhow::Result<IngestRun> {
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
                // Progress about every tenth of the step, from whichever worker gets there.
                if n >= 10 && (i + 1) % (n / 10) == 0 {
                    eprintln!("speed: {} of {n} remember calls done", i + 1);
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for w in workers {
        lat.extend(w.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(IngestRun::new(turns, &lat, seconds))
}

/// Latencies of a recall run.
struct RecallRun {
    latencies: Vec<Duration>,
    wall: Duration,
    empty: usize,
}

/// Runs `plan` (user, question) with `concurrency` clients.
async fn recall_run(
    target: &Target,
    plan: &[(usize, String)],
    tokens: &Arc<Vec<String>>,
    top_k: i32,
    concurrency: usize,
) -> anyhow::Result<RecallRun> {
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
        workers.push(tokio::spawn(async move {
            let (mut lat, mut empty) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((user, q)) = plan.get(i) else { break };
                let req = RecallRequest {
                    scope: Some(Scope {
                        org_id: ORG.into(),
                        user_id: user_name(*user),
                        session_id: String::new(),
                    }),
                    q: q.clone(),
                    mode: RecallMode::Active as i32,
                    top_k: Some(top_k),
                    include_timeline: false,
                    filter: None,
                    collection_ids: Vec::new(),
                };
                let req = authed(req, &tokens[*user])?;
                let t = Instant::now();
                let resp = client
                    .recall(req)
                    .await
                    .with_context(|| format!("recall for user {user}"))?
                    .into_inner();
                lat.push(t.elapsed());
                empty += usize::from(resp.hits.is_none_or(|h| h.turns.is_empty()));
            }
            anyhow::Ok((lat, empty))
        }));
    }
    let mut out = RecallRun {
        latencies: Vec::with_capacity(plan.len()),
        wall: Duration::ZERO,
        empty: 0,
    };
    for w in workers {
        let (lat, empty) = w.await??;
        out.latencies.extend(lat);
        out.empty += empty;
    }
    out.wall = started.elapsed();
    Ok(out)
}

fn mem_cell(m: Option<Memory>, f: fn(&Memory) -> f64) -> String {
    m.map_or_else(|| "n/a".into(), |m| format!("{:.0}", f(&m)))
}

impl SpeedReport {
    /// The report as a markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Speed: Remember {} turns/call with {} clients; Recall active top_k {}, {} queries, 1 client then {} clients\n",
            self.batch, self.concurrency, self.top_k, self.queries, self.recall_concurrency
        );
        let c = self.recall_concurrency;
        let _ = writeln!(
            s,
            "| fragments | users | ingest turns/s | Remember p50 / p99 ms | Recall p50 / p99 / mean ms | Recall QPS ({c} clients) | Recall p50 / p99 ms ({c} clients) | VmHWM MiB | VmRSS MiB |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.sizes {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.1} | {:.1} / {:.1} | {} | {} |",
                r.fragments,
                r.users,
                r.ingest.turns_per_sec,
                r.ingest.remember.p50_ms,
                r.ingest.remember.p99_ms,
                r.recall_sequential.p50_ms,
                r.recall_sequential.p99_ms,
                r.recall_sequential.mean_ms,
                r.recall_qps,
                r.recall_concurrent.p50_ms,
                r.recall_concurrent.p99_ms,
                mem_cell(r.memory, Memory::hwm_mib),
                mem_cell(r.memory, Memory::rss_mib),
            );
        }
        let empty: usize = self.sizes.iter().map(|r| r.empty_recalls).sum();
        if empty > 0 {
            let _ = writeln!(s, "\n{empty} recalls returned no turn.");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        (0..50).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn plan_covers_the_range_in_user_batches() {
        let base: DateTime<Utc> = BASE_TIME.parse().unwrap();
        let calls = plan_calls(0, 250, 100, 16, &corpus(), base);
        let turns: usize = calls.iter().map(|c| c.request.turns.len()).sum();
        assert_eq!(turns, 250);
        // Per user: 6 calls of 16 and one of 4; user 2 gets 50 turns: 3×16 + 2.
        assert_eq!(calls.len(), 7 + 7 + 4);
        assert!(calls.iter().all(|c| c.request.turns.len() <= 16));
        assert_eq!(calls[6].request.turns.len(), 4);
        assert_eq!(calls[7].user, 1);
        let s = calls[7].request.scope.as_ref().unwrap();
        assert_eq!((s.user_id.as_str(), s.session_id.as_str()), ("u1", "s0"));
        // Growing further continues user 2 where it stopped.
        let more = plan_calls(250, 300, 100, 16, &corpus(), base);
        assert_eq!(more[0].user, 2);
        assert_eq!(more[0].request.turns.len(), 14);
        assert_eq!(
            more.iter().map(|c| c.request.turns.len()).sum::<usize>(),
            50
        );
        assert_eq!(more[0].request.turns[0].timestamp, "2024-01-01T09:50:00Z");
    }

    #[test]
    fn rng_is_seeded_and_bounded() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        let xs: Vec<usize> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<usize> = (0..100).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 10));
    }
}
